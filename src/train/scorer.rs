//! Fitting a signature model's scorer: how the Siamese embedding and the stroke
//! descriptor are weighed, learnt on writers with skilled forgeries and written into the
//! model file beside the encoder (`fusion.*`), so a template is only ever scored by the
//! scorer of the model that made it.

use std::path::Path;

use candle_core::{Device, Tensor};

use super::crossval::out_of_sample_bands;
use crate::cpu::Isa;
use crate::dataset::{Kind, LabelledScan, identities_of};
use crate::error::Result;
use crate::eval::verification::{EmbeddedScan, Unusable, embed_scans};
use crate::models::{load_weights, save_weights};
use crate::signature::SignatureModel;
use crate::signature::fusion::{FUSION_PREFIX, FitOptions, ScoreFusion, WriterTemplates};
use crate::types::Bands;

/// Fits the scorer of the model at `path` on labelled scans (writers with skilled
/// forgeries, the first `references` genuine enrolled) and writes the model with it to
/// `out`. Returns the scorer, the bands its out-of-sample scores suggest (see
/// `crossval::out_of_sample_bands`, over the enrollment sizes fitted on) and the scans
/// that could not be used.
pub fn fit_scorer(
    path: &Path,
    scans: &[LabelledScan],
    options: &FitOptions,
    out: &Path,
) -> Result<(ScoreFusion, Option<Bands>, Unusable)> {
    let device = Device::Cpu;
    // The scorer being replaced plays no part, and may be one this version cannot read.
    let mut weights = load_weights(path, &device)?;
    weights
        .tensors
        .retain(|name, _| !name.starts_with(FUSION_PREFIX));
    if let Some(canvas) = options.descriptor_canvas {
        weights.metadata.insert(
            crate::signature::DESCRIPTOR_CANVAS_KEY.into(),
            crate::signature::canvas_metadata(canvas),
        );
    }
    let encoder_tensors = weights.tensors.clone();
    let mut metadata = weights.metadata.clone();
    let model = SignatureModel::from_weights(weights, path, &device, Some(Isa::chosen()))?;
    let (embedded, unusable) = embed_scans(
        &model,
        scans,
        &std::sync::atomic::AtomicBool::new(false),
        &mut |_, _| {},
    )?;
    let writers = writer_templates(&embedded);
    let fusion = ScoreFusion::fit(&writers, options)?;
    // Too few writers to split for bands is no reason to refuse the scorer itself.
    let bands = out_of_sample_bands(&embedded, options, &options.references, 1);
    let mut tensors: Vec<(String, Tensor)> = encoder_tensors.into_iter().collect();
    tensors.extend(fusion.tensors()?);
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    metadata.insert(
        "scorer".into(),
        format!(
            "logistic regression on embedding and descriptor distances{}, fitted on {} writers \
             with skilled forgeries, {} references each{}",
            options.extras(),
            writers
                .iter()
                .filter(|w| w.can_fit(options.references.iter().copied().min().unwrap_or(0)))
                .count(),
            enrollment_sizes(&options.references),
            if options.aligned_across_references {
                ", shifted by the number of references to cross at one score for 1 to the largest"
            } else {
                ""
            }
        ),
    );
    metadata.insert(
        "suggested_bands".into(),
        match &bands {
            Ok(bands) => format!(
                "accept >= {:.3}, reject < {:.3} (out-of-sample scores of the fitting writers)",
                bands.high, bands.low
            ),
            Err(error) => format!("none: {error}"),
        },
    );
    save_weights(out, &tensors, metadata)?;
    Ok((fusion, bands.ok(), unusable))
}

/// Each identity's templates, genuine in enrollment order and forgeries, for fitting.
pub fn writer_templates<'a>(embedded: &'a [EmbeddedScan]) -> Vec<WriterTemplates<'a>> {
    let of_kind = |identity: &str, kind| -> Vec<&'a [f32]> {
        embedded
            .iter()
            .filter(|s| s.identity == identity && s.kind == kind)
            .map(|s| s.embedding.as_slice())
            .collect()
    };
    identities_of(embedded.iter().map(|s| s.identity))
        .iter()
        .map(|identity| WriterTemplates {
            genuine: of_kind(identity, Kind::Genuine),
            forgeries: of_kind(identity, Kind::Forgery),
        })
        .collect()
}

/// "12", or "3, 5 and 12" for a scorer fitted on several enrollment sizes.
pub fn enrollment_sizes(references: &[usize]) -> String {
    let names: Vec<String> = references.iter().map(usize::to_string).collect();
    match names.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} and {last}", rest.join(", ")),
        _ => names.concat(),
    }
}
