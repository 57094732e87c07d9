//! Handwritten signatures (and characters): scan normalisation and the Siamese encoder,
//! loaded from a trained model file for enrollment and verification.

pub mod blur;
pub mod descriptor;
pub mod distortion;
pub mod encoder;
pub mod fusion;
pub mod preprocess;
pub mod reference;
pub mod shape;
pub mod superimpose;
pub mod variation;

use std::borrow::Borrow;
use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use image::{DynamicImage, GrayImage};

use crate::cpu::Isa;
use crate::error::{Error, Result};
use crate::models::{CropEmbedder, CropProblem, Embedded, WeightFile, embed_each, load_weights};
use crate::types::{Modality, TemplateShape};
use encoder::{EMBEDDING_DIM, PlaneEncoder, SignatureEncoder};
use fusion::ScoreFusion;
use preprocess::{Normalisation, Normalised, TemplateInput, normalise};

/// The shipped signature model in the models folder.
pub const SIGNATURE_MODEL_FILE: &str = "signature_encoder.safetensors";
/// The metadata key of the canvas the stroke descriptor is read on, when it is not the
/// encoder's.
pub const DESCRIPTOR_CANVAS_KEY: &str = "descriptor_canvas";
/// Smaller canvases leave the encoder's last block less than one pixel; larger ones
/// would not fit a training batch in memory, and a model file must not make every scan
/// allocate a poster.
const CANVAS_SIDES: std::ops::RangeInclusive<u32> = 32..=1024;
/// Canvases per forward pass: large enough to use the cores, small enough for memory.
const EMBED_BATCH: usize = 32;
/// A stored template: the embedding, then the stroke descriptor.
pub const TEMPLATE_LEN: usize = EMBEDDING_DIM + descriptor::DESCRIPTOR_LEN;
/// Every signature template: the encoder's unit embedding, then the descriptor.
pub const TEMPLATE_SHAPE: TemplateShape = TemplateShape {
    len: TEMPLATE_LEN,
    norm_of_first: EMBEDDING_DIM,
    norm: 0.99..=1.01,
};

/// The encoder in the form the device runs.
enum Encoder {
    Tensors(SignatureEncoder),
    /// On the CPU, by the kernels of `isa`.
    Planes(PlaneEncoder, Isa),
}

/// A trained encoder, the canvas it was trained on and, once fitted, the scorer that
/// weighs its embedding with the stroke descriptor.
pub struct SignatureModel {
    encoder: Encoder,
    fusion: Option<ScoreFusion>,
    device: Device,
    sha256: String,
    pub canvas: (u32, u32),
    /// The canvas the stroke descriptor is read on: each scan's ink is fitted onto it as
    /// onto the encoder's [default: the encoder's canvas itself].
    pub descriptor_canvas: (u32, u32),
    /// How scans are prepared for this model: as it was trained.
    pub normalisation: Normalisation,
    /// Provenance and metrics written by `vouch train`.
    pub metadata: HashMap<String, String>,
}

impl SignatureModel {
    /// On the CPU the encoder runs on planes by the chosen kernels (`Isa::chosen`), on
    /// another device on tensors.
    pub fn load(path: &Path, device: &Device) -> Result<Self> {
        let planes = device.is_cpu().then(Isa::chosen);
        Self::from_weights(load_weights(path, device)?, path, device, planes)
    }

    /// The encoder on the CPU's planes by `isa`'s kernels.
    pub fn load_on_cpu(path: &Path, isa: Isa) -> Result<Self> {
        let device = Device::Cpu;
        Self::from_weights(load_weights(path, &device)?, path, &device, Some(isa))
    }

    /// The encoder on tensors even on the CPU: what a GPU runs, to check it against the
    /// planes.
    pub fn load_on_tensors(path: &Path, device: &Device) -> Result<Self> {
        Self::from_weights(load_weights(path, device)?, path, device, None)
    }

    /// `planes`: the CPU kernels to run the encoder by, else tensors.
    pub(crate) fn from_weights(
        weights: WeightFile,
        path: &Path,
        device: &Device,
        planes: Option<Isa>,
    ) -> Result<Self> {
        let bad = |reason: String| Error::BadModel {
            reason,
            path: path.to_path_buf(),
        };
        let canvas_of = |key: &str| -> Result<Option<(u32, u32)>> {
            let Some(text) = weights.metadata.get(key) else {
                return Ok(None);
            };
            let canvas = parse_canvas(Some(text))
                .ok_or_else(|| bad(format!("`{key}` is `{text}`, not HxW")))?;
            checked_canvas(canvas)
                .map(Some)
                .map_err(|e| bad(format!("`{key}`: {e}")))
        };
        let canvas =
            canvas_of("canvas")?.ok_or_else(|| bad("no `canvas` (HxW) in its metadata".into()))?;
        let descriptor_canvas = canvas_of(DESCRIPTOR_CANVAS_KEY)?.unwrap_or(canvas);
        let normalisation = Normalisation::from_metadata(
            weights
                .metadata
                .get(Normalisation::METADATA_KEY)
                .map(String::as_str),
        )
        .map_err(|e| bad(e.to_string()))?;
        let fusion = ScoreFusion::from_tensors(&weights.tensors).map_err(|e| bad(e.to_string()))?;
        let vb = VarBuilder::from_tensors(weights.tensors, DType::F32, device);
        let encoder = match planes {
            Some(isa) => PlaneEncoder::new(vb).map(|encoder| Encoder::Planes(encoder, isa)),
            None => SignatureEncoder::new(vb).map(Encoder::Tensors),
        }
        .map_err(|e| bad(e.to_string()))?;
        Ok(Self {
            encoder,
            fusion,
            device: device.clone(),
            sha256: weights.sha256,
            canvas,
            descriptor_canvas,
            normalisation,
            metadata: weights.metadata,
        })
    }

    /// Names the exact weights: templates made by another file are never compared.
    pub fn model_id(&self) -> String {
        format!("signet-lite@{}", &self.sha256[..12])
    }

    pub fn normalise(&self, scan: &DynamicImage, source: &str) -> Result<Normalised> {
        normalise(scan, self.canvas, self.normalisation, source)
    }

    /// Canvases of one size, each side within `CANVAS_SIDES`, to unit embeddings; any
    /// other is an error, never an embedding.
    pub fn embed_canvases<C: Borrow<GrayImage>>(&self, canvases: &[C]) -> Result<Vec<Vec<f32>>> {
        if let Some(first) = canvases.first() {
            let (width, height) = first.borrow().dimensions();
            checked_canvas((height, width))?;
            if let Some(other) = canvases
                .iter()
                .map(|canvas| canvas.borrow().dimensions())
                .find(|&size| size != (width, height))
            {
                return Err(Error::Invalid(format!(
                    "canvases of {height}x{width} and {}x{} cannot be embedded together",
                    other.1, other.0
                )));
            }
        }
        let mut embeddings = Vec::with_capacity(canvases.len());
        for batch in canvases.chunks(EMBED_BATCH) {
            match &self.encoder {
                Encoder::Tensors(encoder) => {
                    let input = canvas_tensor(batch, &self.device)?;
                    embeddings.extend(encoder.forward(&input)?.to_vec2::<f32>()?);
                }
                Encoder::Planes(encoder, isa) => {
                    let batch: Vec<&GrayImage> = batch.iter().map(Borrow::borrow).collect();
                    embeddings.extend(encoder.embed(&batch, *isa));
                }
            }
        }
        Ok(embeddings)
    }

    /// What the store keeps and the scorer compares: the embedding of each canvas followed
    /// by the stroke descriptor, read on the descriptor's canvas.
    pub fn templates(&self, inputs: &[TemplateInput<'_>]) -> Result<Vec<Vec<f32>>> {
        use rayon::prelude::*;
        let descriptors: Vec<Vec<f32>> = inputs
            .par_iter()
            .map(|input| self.describe(input))
            .collect::<Result<_>>()?;
        let canvases: Vec<&GrayImage> = inputs.iter().map(|input| &*input.canvas).collect();
        Ok(self
            .embed_canvases(&canvases)?
            .into_iter()
            .zip(descriptors)
            .map(|(mut template, descriptor)| {
                template.extend(descriptor);
                template
            })
            .collect())
    }

    /// The stroke descriptor: on the encoder's canvas, or on the ink fitted onto the
    /// descriptor's own canvas, as the model's scorer was fitted.
    fn describe(&self, input: &TemplateInput<'_>) -> Result<Vec<f32>> {
        if self.descriptor_canvas == self.canvas {
            return Ok(descriptor::describe(&input.canvas));
        }
        let ink = input.ink.as_deref().ok_or_else(|| {
            let (height, width) = self.descriptor_canvas;
            Error::Invalid(format!(
                "{} reads the stroke descriptor on the ink fitted onto {height}x{width}, \
                 and only a canvas was given",
                self.model_id()
            ))
        })?;
        Ok(descriptor::describe(&preprocess::centre(
            ink,
            self.descriptor_canvas,
        )))
    }

    /// Reads, normalises and describes one scan (its template).
    pub fn embed_scan(&self, path: &Path) -> Result<(Normalised, Vec<f32>)> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(e, path))?;
        self.embed_scan_bytes(&bytes, path)
    }

    /// The same for a scan's bytes already read (`path` only names them in errors): what
    /// is embedded is then what was hashed, not a second read of a file that may have
    /// changed between the two.
    pub fn embed_scan_bytes(&self, bytes: &[u8], path: &Path) -> Result<(Normalised, Vec<f32>)> {
        let scan = crate::imageio::decode(bytes, path)?;
        let normalised = self.normalise(&scan, &path.display().to_string())?;
        let template = self.templates(&[normalised.template_input()])?.remove(0);
        Ok((normalised, template))
    }

    /// A questioned template against a writer's reference templates, in [0, 1]: the fitted
    /// scorer's probability that the writer signed; a model without one (a fresh training
    /// run on data without forgeries) falls back to the mean embedding similarity. A
    /// template without this model's shape is an error, never a score.
    pub fn score(&self, references: &[&[f32]], questioned: &[f32]) -> Result<f32> {
        for (which, template) in references
            .iter()
            .map(|r| ("a reference", *r))
            .chain(std::iter::once(("the questioned scan", questioned)))
        {
            TEMPLATE_SHAPE.check(template).map_err(|reason| {
                Error::Invalid(format!(
                    "{which}'s signature template cannot be scored: {reason}"
                ))
            })?;
        }
        if references.is_empty() {
            return Err(Error::Invalid(
                "no reference signature to score against".into(),
            ));
        }
        if let Some(fusion) = &self.fusion {
            return Ok(fusion.score(references, questioned));
        }
        Ok(references
            .iter()
            .map(|r| signature_score(&r[..EMBEDDING_DIM], &questioned[..EMBEDDING_DIM]))
            .sum::<f32>()
            / references.len() as f32)
    }

    pub fn has_fitted_scorer(&self) -> bool {
        self.fusion.is_some()
    }
}

/// A canvas whose sides are within what the encoder and the descriptor can use.
pub fn checked_canvas((height, width): (u32, u32)) -> Result<(u32, u32)> {
    if CANVAS_SIDES.contains(&height) && CANVAS_SIDES.contains(&width) {
        Ok((height, width))
    } else {
        Err(Error::Invalid(format!(
            "a {height}x{width} canvas: each side must be {} to {} pixels",
            CANVAS_SIDES.start(),
            CANVAS_SIDES.end()
        )))
    }
}

pub fn parse_canvas(text: Option<&str>) -> Option<(u32, u32)> {
    let (height, width) = text?.split_once('x')?;
    Some((height.parse().ok()?, width.parse().ok()?))
}

pub fn canvas_metadata((height, width): (u32, u32)) -> String {
    format!("{height}x{width}")
}

/// `(batch, 1, height, width)` in [0, 1].
pub fn canvas_tensor<C: Borrow<GrayImage>>(canvases: &[C], device: &Device) -> Result<Tensor> {
    let (width, height) = canvases
        .first()
        .map(|canvas| canvas.borrow().dimensions())
        .ok_or_else(|| Error::Invalid("no canvas to embed".into()))?;
    let values: Vec<f32> = canvases
        .iter()
        .flat_map(|c| c.borrow().as_raw().iter().map(|&v| f32::from(v) / 255.0))
        .collect();
    Ok(Tensor::from_vec(
        values,
        (canvases.len(), 1, height as usize, width as usize),
        device,
    )?)
}

/// Similarity of two unit embeddings in [0, 1]: 1 - distance / 2.
pub fn signature_score(a: &[f32], b: &[f32]) -> f32 {
    (1.0 - crate::matching::distance_of_same_length(a, b) / 2.0).clamp(0.0, 1.0)
}

impl CropEmbedder for SignatureModel {
    fn modality(&self) -> Modality {
        Modality::Signature
    }

    fn model_id(&self) -> String {
        SignatureModel::model_id(self)
    }

    fn template_shape(&self) -> TemplateShape {
        TEMPLATE_SHAPE
    }

    /// A kept ink is fitted onto this model's canvases as the scan would have been; a
    /// canvas kept before ink crops were is refused unless this model reads it as it is.
    fn embed_stored(&self, stored: &[&[u8]]) -> Result<Vec<Embedded>> {
        use rayon::prelude::*;
        let inputs = stored
            .par_iter()
            .map(|bytes| {
                reference::read(bytes, "a stored signature reference")
                    .map_err(|e| CropProblem::Unreadable(e.to_string()))?
                    .template_input(self.canvas, self.descriptor_canvas, self.normalisation)
                    .map_err(CropProblem::Refused)
            })
            .collect();
        embed_each(inputs, |inputs| self.templates(inputs))
    }
}
