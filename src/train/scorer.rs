//! Fitting a signature model's scorer: how the Siamese embedding and the stroke
//! descriptor are weighed, learnt on writers with skilled forgeries and written into the
//! model file beside the encoder (`fusion.*`), so a template is only ever scored by the
//! scorer of the model that made it.

use std::path::Path;

use candle_core::{Device, Tensor};

use crate::dataset::{Kind, LabelledScan, identities_of};
use crate::error::Result;
use crate::eval::verification::{Unusable, embed_scans};
use crate::models::{load_weights, save_weights};
use crate::signature::SignatureModel;
use crate::signature::fusion::{FUSION_PREFIX, ScoreFusion, WriterTemplates};

/// Fits the scorer of the model at `path` on labelled scans (writers with skilled
/// forgeries, the first `references` genuine enrolled) and writes the model with it to
/// `out`. Returns the scorer and how many scans could not be used.
pub fn fit_scorer(
    path: &Path,
    scans: &[LabelledScan],
    references: usize,
    out: &Path,
) -> Result<(ScoreFusion, Unusable)> {
    let device = Device::Cpu;
    // The scorer being replaced plays no part, and may be one this version cannot read.
    let mut weights = load_weights(path, &device)?;
    weights
        .tensors
        .retain(|name, _| !name.starts_with(FUSION_PREFIX));
    let encoder_tensors = weights.tensors.clone();
    let mut metadata = weights.metadata.clone();
    let model = SignatureModel::from_weights(weights, path, &device)?;
    let (embedded, unusable) = embed_scans(
        &model,
        scans,
        &std::sync::atomic::AtomicBool::new(false),
        &mut |_, _| {},
    )?;
    let identities = identities_of(embedded.iter().map(|s| s.identity));
    let of_kind = |identity: &str, kind| -> Vec<&[f32]> {
        embedded
            .iter()
            .filter(|s| s.identity == identity && s.kind == kind)
            .map(|s| s.embedding.as_slice())
            .collect()
    };
    let writers: Vec<WriterTemplates> = identities
        .iter()
        .map(|identity| WriterTemplates {
            genuine: of_kind(identity, Kind::Genuine),
            forgeries: of_kind(identity, Kind::Forgery),
        })
        .collect();
    let fusion = ScoreFusion::fit(&writers, references)?;
    let mut tensors: Vec<(String, Tensor)> = encoder_tensors.into_iter().collect();
    tensors.extend(fusion.tensors()?);
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    metadata.insert(
        "scorer".into(),
        format!(
            "logistic regression on embedding and descriptor distances, fitted on {} writers \
             with skilled forgeries, {references} references each",
            writers.iter().filter(|w| w.can_fit(references)).count()
        ),
    );
    save_weights(out, &tensors, metadata)?;
    Ok((fusion, unusable))
}
