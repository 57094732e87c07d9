//! Verification statistics on scores (higher = more alike): EER, AUC, FAR and FRR at a
//! threshold, and the writer-independent signature protocol (enrol the first K genuine
//! scans of each identity, score the rest).

use serde::Serialize;

use crate::dataset::Kind;
use crate::matching::Bands;

/// Equal error rate and the threshold where FAR and FRR cross (a score at or above the
/// threshold is accepted).
pub fn equal_error_rate(genuine: &[f32], impostor: &[f32]) -> (f64, f32) {
    if genuine.is_empty() || impostor.is_empty() {
        return (f64::NAN, f32::NAN);
    }
    let mut thresholds: Vec<f32> = genuine.iter().chain(impostor).copied().collect();
    thresholds.sort_by(f32::total_cmp);
    thresholds.dedup();
    let mut best = (f64::INFINITY, 0.0, thresholds[0]);
    for &threshold in &thresholds {
        let (far, frr) = error_rates(genuine, impostor, threshold);
        let gap = (far - frr).abs();
        if gap < best.0 {
            best = (gap, (far + frr) / 2.0, threshold);
        }
    }
    (best.1, best.2)
}

/// (false accept rate, false reject rate) when scores at or above `threshold` accept.
pub fn error_rates(genuine: &[f32], impostor: &[f32], threshold: f32) -> (f64, f64) {
    let far = impostor.iter().filter(|&&s| s >= threshold).count() as f64 / impostor.len() as f64;
    let frr = genuine.iter().filter(|&&s| s < threshold).count() as f64 / genuine.len() as f64;
    (far, frr)
}

/// Area under the ROC curve: the chance that a random genuine score beats a random
/// impostor score (ties count half).
pub fn area_under_curve(genuine: &[f32], impostor: &[f32]) -> f64 {
    let mut sorted = impostor.to_vec();
    sorted.sort_by(f32::total_cmp);
    let wins: f64 = genuine
        .iter()
        .map(|&g| {
            let below = sorted.partition_point(|&i| i < g);
            let not_above = sorted.partition_point(|&i| i <= g);
            below as f64 + 0.5 * (not_above - below) as f64
        })
        .sum();
    wins / (genuine.len() as f64 * impostor.len() as f64)
}

/// One embedded scan of the evaluation set.
pub struct EmbeddedScan<'a> {
    pub identity: &'a str,
    pub kind: Kind,
    pub embedding: Vec<f32>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ErrorRates {
    pub eer: f64,
    pub eer_threshold: f32,
    pub far_at_default: f64,
    pub frr_at_default: f64,
    pub auc: f64,
    pub genuine: usize,
    pub impostor: usize,
}

impl ErrorRates {
    pub fn new(genuine: &[f32], impostor: &[f32], threshold: f32) -> Self {
        let (eer, eer_threshold) = equal_error_rate(genuine, impostor);
        let (far_at_default, frr_at_default) = error_rates(genuine, impostor, threshold);
        Self {
            eer,
            eer_threshold,
            far_at_default,
            frr_at_default,
            auc: area_under_curve(genuine, impostor),
            genuine: genuine.len(),
            impostor: impostor.len(),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct VerificationReport {
    pub identities: usize,
    pub references: usize,
    pub threshold: f32,
    /// Genuine against skilled forgeries of the same identity.
    pub skilled: Option<ErrorRates>,
    /// Genuine against other identities' genuine scans.
    pub random: ErrorRates,
    /// Every score, for histograms and DET curves.
    #[serde(skip)]
    pub genuine_scores: Vec<f32>,
    #[serde(skip)]
    pub skilled_scores: Vec<f32>,
    #[serde(skip)]
    pub random_scores: Vec<f32>,
}

/// For each identity with more than `references` genuine scans: the first `references`
/// are enrolled; its other genuine scans, its forgeries (skilled) and every other
/// identity's genuine scans (random) are scored against them with `score`.
pub fn evaluate(
    scans: &[EmbeddedScan],
    references: usize,
    threshold: f32,
    score: impl Fn(&[&[f32]], &[f32]) -> f32,
) -> VerificationReport {
    let identities = crate::dataset::identities_of(scans.iter().map(|s| s.identity));
    let (mut genuine, mut skilled, mut random) = (Vec::new(), Vec::new(), Vec::new());
    let mut evaluated = 0;
    for identity in &identities {
        let own_genuine: Vec<&EmbeddedScan> = scans
            .iter()
            .filter(|s| s.identity == identity.as_str() && s.kind == Kind::Genuine)
            .collect();
        if own_genuine.len() <= references {
            continue;
        }
        evaluated += 1;
        let enrolled: Vec<&[f32]> = own_genuine[..references]
            .iter()
            .map(|s| s.embedding.as_slice())
            .collect();
        for questioned in scans.iter().filter(|s| {
            !own_genuine[..references]
                .iter()
                .any(|r| std::ptr::eq(*r, *s))
        }) {
            let value = score(&enrolled, &questioned.embedding);
            match (questioned.identity == identity.as_str(), questioned.kind) {
                (true, Kind::Genuine) => genuine.push(value),
                (true, Kind::Forgery) => skilled.push(value),
                (false, Kind::Genuine) => random.push(value),
                (false, Kind::Forgery) => {}
            }
        }
    }
    VerificationReport {
        identities: evaluated,
        references,
        threshold,
        skilled: (!skilled.is_empty()).then(|| ErrorRates::new(&genuine, &skilled, threshold)),
        random: ErrorRates::new(&genuine, &random, threshold),
        genuine_scores: genuine,
        skilled_scores: skilled,
        random_scores: random,
    }
}

/// The decision counts the threshold workbench shows for one threshold.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Operating {
    pub far: f64,
    pub frr: f64,
    pub accuracy: f64,
    pub f1: f64,
    pub review_rate: f64,
}

/// FAR, FRR, accuracy and F1 at `bands.high`, and the share of all scores that fall in
/// the review band.
pub fn operating_point(genuine: &[f32], impostor: &[f32], bands: Bands) -> Operating {
    let (far, frr) = error_rates(genuine, impostor, bands.high);
    let true_accepts = (1.0 - frr) * genuine.len() as f64;
    let false_accepts = far * impostor.len() as f64;
    let total = (genuine.len() + impostor.len()) as f64;
    let correct = true_accepts + (impostor.len() as f64 - false_accepts);
    let precision = if true_accepts + false_accepts > 0.0 {
        true_accepts / (true_accepts + false_accepts)
    } else {
        0.0
    };
    let recall = 1.0 - frr;
    let in_review = genuine
        .iter()
        .chain(impostor)
        .filter(|&&s| s >= bands.low && s < bands.high)
        .count() as f64;
    Operating {
        far,
        frr,
        accuracy: correct / total,
        f1: if precision + recall > 0.0 {
            2.0 * precision * recall / (precision + recall)
        } else {
            0.0
        },
        review_rate: in_review / total,
    }
}

/// Embeds every scan of a manifest with the signature model (in parallel batches);
/// scans that cannot be read or show no ink are returned with their error instead.
/// Scans that could not be used, with the reason.
pub type Unusable = Vec<(std::path::PathBuf, String)>;

pub fn embed_scans<'a>(
    model: &crate::signature::SignatureModel,
    scans: &'a [crate::dataset::LabelledScan],
    cancel: &std::sync::atomic::AtomicBool,
    progress: &mut dyn FnMut(usize, usize),
) -> crate::Result<(Vec<EmbeddedScan<'a>>, Unusable)> {
    use rayon::prelude::*;
    let mut embedded = Vec::new();
    let mut failed = Vec::new();
    for (index, chunk) in scans.chunks(64).enumerate() {
        if cancel.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(crate::Error::Cancelled);
        }
        progress(index * 64, scans.len());
        let canvases: Vec<crate::Result<image::GrayImage>> = chunk
            .par_iter()
            .map(|scan| {
                let image = crate::imageio::load(&scan.path)?;
                Ok(model
                    .normalise(&image, &scan.path.display().to_string())?
                    .canvas)
            })
            .collect();
        let mut good = Vec::new();
        let mut good_scans = Vec::new();
        for (scan, canvas) in chunk.iter().zip(canvases) {
            match canvas {
                Ok(canvas) => {
                    good.push(canvas);
                    good_scans.push(scan);
                }
                Err(error) => failed.push((scan.path.clone(), error.to_string())),
            }
        }
        if good.is_empty() {
            continue;
        }
        for (scan, embedding) in good_scans.into_iter().zip(model.templates(&good)?) {
            embedded.push(EmbeddedScan {
                identity: &scan.identity,
                kind: scan.kind,
                embedding,
            });
        }
    }
    progress(scans.len(), scans.len());
    Ok((embedded, failed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn separated_scores_have_no_error_and_full_auc() {
        let genuine = [0.9, 0.8, 0.85];
        let impostor = [0.1, 0.3, 0.2, 0.4];
        let (eer, threshold) = equal_error_rate(&genuine, &impostor);
        assert_eq!(eer, 0.0);
        assert!((0.4..=0.8).contains(&threshold));
        assert_eq!(area_under_curve(&genuine, &impostor), 1.0);
    }

    #[test]
    fn overlapping_scores_cross_where_far_meets_frr() {
        let genuine = [0.2, 0.6, 0.7, 0.8];
        let impostor = [0.1, 0.3, 0.4, 0.65];
        let (eer, _) = equal_error_rate(&genuine, &impostor);
        assert_eq!(eer, 0.25);
        assert_eq!(error_rates(&genuine, &impostor, 0.5), (0.25, 0.25));
        assert_eq!(area_under_curve(&genuine, &impostor), 12.0 / 16.0);
    }
}
