//! Where model weights live, how they are identified, and how they are imported.

pub mod faceapi;
pub mod minifasnet;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::types::{Modality, TemplateShape};

pub const DETECTOR_FILE: &str = "tiny_face_detector.safetensors";
pub const LANDMARKS_FILE: &str = "face_landmark_68.safetensors";
pub const RECOGNITION_FILE: &str = "face_recognition.safetensors";

/// The folder that holds the weights: `VOUCH_MODELS` if set, else `models/` beside the
/// executable (an installed copy), else the repository's `models/` (a checkout).
pub fn default_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("VOUCH_MODELS") {
        return PathBuf::from(dir);
    }
    if let Ok(exe) = std::env::current_exe()
        && let Some(dir) = exe.parent().map(|d| d.join("models"))
        && dir.join(RECOGNITION_FILE).is_file()
    {
        return dir;
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models")
}

/// A model that embeds the crops stored with templates (aligned face chips, a signature's
/// kept ink or, from before 2026-12-05, its canvas), so a new model version can rebuild the
/// gallery without the original photos.
pub trait CropEmbedder {
    fn modality(&self) -> Modality;
    /// Names the embedding space: templates of two ids are never compared.
    fn model_id(&self) -> String;
    /// What each of its templates must be.
    fn template_shape(&self) -> TemplateShape;
    /// The templates of stored crops' bytes, one per crop in order: a crop it cannot read,
    /// or not faithfully, is that crop's problem and the others are still embedded.
    fn embed_stored(&self, stored: &[&[u8]]) -> Result<Vec<Embedded>>;
}

/// One stored crop's new template, or why it has none.
pub type Embedded = std::result::Result<Vec<f32>, CropProblem>;

/// `embed` over the inputs that could be had from stored crops, in one batch; each
/// problem stays in its crop's place.
pub fn embed_each<I>(
    inputs: Vec<std::result::Result<I, CropProblem>>,
    embed: impl FnOnce(&[I]) -> Result<Vec<Vec<f32>>>,
) -> Result<Vec<Embedded>> {
    let mut readable = Vec::new();
    let places: Vec<std::result::Result<(), CropProblem>> = inputs
        .into_iter()
        .map(|input| input.map(|input| readable.push(input)))
        .collect();
    // A batch of none is not asked for: some networks refuse an empty batch.
    let embeddings = if readable.is_empty() {
        Vec::new()
    } else {
        embed(&readable)?
    };
    if embeddings.len() != readable.len() {
        return Err(Error::Invalid(format!(
            "{} templates for {} stored crops",
            embeddings.len(),
            readable.len()
        )));
    }
    let mut embeddings = embeddings.into_iter();
    Ok(places
        .into_iter()
        .map(|place| place.map(|()| embeddings.next().unwrap_or_default()))
        .collect())
}

/// Why a stored crop is not embedded by a new model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CropProblem {
    /// Damaged, or not an image: counted and left where it is.
    Unreadable(String),
    /// Readable, but not faithfully by this model (made for another input size): the
    /// person must enrol again.
    Refused(String),
}

/// A loaded weight file and the identity of its exact bytes, so that every embedding can
/// say which model made it.
pub struct WeightFile {
    pub tensors: HashMap<String, Tensor>,
    pub sha256: String,
    /// The file's `__metadata__`: provenance and metrics of a trained model.
    pub metadata: HashMap<String, String>,
}

pub fn load_weights(path: &Path, device: &Device) -> Result<WeightFile> {
    let bytes = std::fs::read(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => Error::MissingModel {
            path: path.to_path_buf(),
        },
        _ => Error::io(e, path),
    })?;
    let sha256 = hex::encode(Sha256::digest(&bytes));
    let tensors =
        candle_core::safetensors::load_buffer(&bytes, device).map_err(|e| Error::BadModel {
            reason: e.to_string(),
            path: path.to_path_buf(),
        })?;
    let metadata = safetensors::SafeTensors::read_metadata(&bytes)
        .ok()
        .and_then(|(_, header)| header.metadata().clone())
        .unwrap_or_default();
    Ok(WeightFile {
        tensors,
        sha256,
        metadata,
    })
}

/// Writes f32 tensors and metadata as safetensors, beside the target first and then
/// renamed into place, so a crash never leaves a half-written model under its name.
pub fn save_weights(
    path: &Path,
    tensors: &[(String, Tensor)],
    metadata: HashMap<String, String>,
) -> Result<()> {
    let bad = |reason: String| Error::BadModel {
        reason,
        path: path.to_path_buf(),
    };
    let bytes: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
        .iter()
        .map(|(name, tensor)| {
            let values = tensor
                .to_dtype(candle_core::DType::F32)?
                .flatten_all()?
                .to_vec1::<f32>()?;
            Ok((
                name.clone(),
                tensor.dims().to_vec(),
                values.iter().flat_map(|v| v.to_le_bytes()).collect(),
            ))
        })
        .collect::<Result<_>>()?;
    let views = bytes
        .iter()
        .map(|(name, shape, data)| {
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), data)
                .map(|view| (name.clone(), view))
                .map_err(|e| bad(e.to_string()))
        })
        .collect::<Result<Vec<_>>>()?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(e, dir))?;
    }
    let partial = path.with_extension("partial");
    safetensors::serialize_to_file(views, Some(metadata), &partial)
        .map_err(|e| bad(e.to_string()))?;
    std::fs::rename(&partial, path).map_err(|e| Error::io(e, path))
}
