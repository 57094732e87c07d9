//! Verification statistics on scores (higher = more alike): EER, AUC, FAR and FRR at a
//! threshold, and the writer-independent signature protocol (enrol the first K genuine
//! scans of each identity, score the rest).

use std::sync::atomic::AtomicBool;

use serde::{Deserialize, Serialize};

use super::standards::{Acquisition, FnmrAtFmr, IdentityScores, REPORTED_FMRS, fnmr_at_fmr};

use crate::dataset::{Kind, LabelledScan};
use crate::error::{Error, Result};
use crate::face::FaceModels;
pub use crate::matching::{equal_error_rate, error_rates};
use crate::matching::{euclidean_distance, face_score};
use crate::signature::SignatureModel;
use crate::store::{PastDecision, StoredTemplate};
use crate::types::Bands;

/// The thresholds the workbench offers (and its presets land on): multiples of this.
pub const THRESHOLD_STEP: f64 = 0.0005;

/// The `index`th threshold of the grid, computed as a slider with `THRESHOLD_STEP` rounds
/// (in f64), so that a preset stays exactly where it landed.
fn grid_threshold(index: usize) -> f32 {
    (index as f64 * THRESHOLD_STEP) as f32
}

fn grid_len() -> usize {
    (1.0 / THRESHOLD_STEP).round() as usize + 1
}

/// Rates at many thresholds from sorted scores: (FAR, FRR) at `threshold`.
struct SortedScores {
    genuine: Vec<f32>,
    impostor: Vec<f32>,
}

impl SortedScores {
    fn new(genuine: &[f32], impostor: &[f32]) -> Self {
        let sorted = |values: &[f32]| {
            let mut values = values.to_vec();
            values.sort_by(f32::total_cmp);
            values
        };
        Self {
            genuine: sorted(genuine),
            impostor: sorted(impostor),
        }
    }

    fn rates(&self, threshold: f32) -> (f64, f64) {
        let accepted = self.impostor.len() - self.impostor.partition_point(|&s| s < threshold);
        let rejected = self.genuine.partition_point(|&s| s < threshold);
        (
            accepted as f64 / self.impostor.len().max(1) as f64,
            rejected as f64 / self.genuine.len().max(1) as f64,
        )
    }
}

/// The lowest threshold of the grid whose FAR is at most `target` (1.0 when none is: an
/// impostor scored the maximum).
pub fn threshold_for_far(impostor: &[f32], target: f64) -> f32 {
    let sorted = SortedScores::new(&[], impostor);
    (0..grid_len())
        .map(grid_threshold)
        .find(|&t| sorted.rates(t).0 <= target)
        .unwrap_or(1.0)
}

/// The threshold of the grid where FAR and FRR are closest (the lowest such), and the
/// equal error rate there (their mean): what the slider shows when set to it.
pub fn equal_error_point(genuine: &[f32], impostor: &[f32]) -> (f64, f32) {
    if genuine.is_empty() || impostor.is_empty() {
        return (f64::NAN, f32::NAN);
    }
    let sorted = SortedScores::new(genuine, impostor);
    let mut best = (f64::INFINITY, f64::NAN, 0.0);
    for threshold in (0..grid_len()).map(grid_threshold) {
        let (far, frr) = sorted.rates(threshold);
        let gap = (far - frr).abs();
        if gap < best.0 {
            best = (gap, (far + frr) / 2.0, threshold);
        }
    }
    (best.1, best.2)
}

/// (FAR %, FRR %) as the threshold sweeps [0, 1] in 200 steps: a DET curve to plot.
pub fn det_percentages(genuine: &[f32], impostor: &[f32]) -> Vec<[f64; 2]> {
    (0..=200)
        .map(|i| {
            let (far, frr) = error_rates(genuine, impostor, i as f32 / 200.0);
            [100.0 * far, 100.0 * frr]
        })
        .collect()
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

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorRates {
    pub eer: f64,
    pub eer_threshold: f32,
    pub far_at_default: f64,
    pub frr_at_default: f64,
    pub auc: f64,
    pub genuine: usize,
    pub impostor: usize,
    /// FNMR at FMR 1e-2, 1e-3 and 1e-4, as standards report it.
    pub at_fmr: Vec<FnmrAtFmr>,
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
            at_fmr: REPORTED_FMRS
                .iter()
                .map(|&target| fnmr_at_fmr(genuine, impostor, target))
                .collect(),
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
    /// The same scores by the identity whose references they were compared with.
    #[serde(skip)]
    pub per_identity: Vec<IdentityScores>,
}

/// For each identity with more than `references` genuine scans: the first `references`
/// are enrolled; its other genuine scans, its forgeries (skilled) and every other
/// identity's genuine scans (random) are scored against them with `score`.
pub fn evaluate(
    scans: &[EmbeddedScan],
    references: usize,
    threshold: f32,
    score: impl Fn(&[&[f32]], &[f32]) -> Result<f32>,
) -> Result<VerificationReport> {
    let identities = crate::dataset::identities_of(scans.iter().map(|s| s.identity));
    let (mut genuine, mut skilled, mut random) = (Vec::new(), Vec::new(), Vec::new());
    let mut per_identity = Vec::new();
    for identity in &identities {
        let own_genuine: Vec<&EmbeddedScan> = scans
            .iter()
            .filter(|s| s.identity == identity.as_str() && s.kind == Kind::Genuine)
            .collect();
        if own_genuine.len() <= references {
            continue;
        }
        let mut own = IdentityScores {
            identity: identity.clone(),
            ..IdentityScores::default()
        };
        let enrolled: Vec<&[f32]> = own_genuine[..references]
            .iter()
            .map(|s| s.embedding.as_slice())
            .collect();
        for questioned in scans.iter().filter(|s| {
            !own_genuine[..references]
                .iter()
                .any(|r| std::ptr::eq(*r, *s))
        }) {
            let value = score(&enrolled, &questioned.embedding)?;
            match (questioned.identity == identity.as_str(), questioned.kind) {
                (true, Kind::Genuine) => {
                    genuine.push(value);
                    own.genuine.push(value);
                }
                (true, Kind::Forgery) => {
                    skilled.push(value);
                    own.impostor.push(value);
                }
                (false, Kind::Genuine) => {
                    random.push(value);
                    own.impostor.push(value);
                }
                (false, Kind::Forgery) => {}
            }
        }
        per_identity.push(own);
    }
    Ok(VerificationReport {
        identities: per_identity.len(),
        references,
        threshold,
        skilled: (!skilled.is_empty()).then(|| ErrorRates::new(&genuine, &skilled, threshold)),
        random: ErrorRates::new(&genuine, &random, threshold),
        genuine_scores: genuine,
        skilled_scores: skilled,
        random_scores: random,
        per_identity,
    })
}

/// The decision counts the threshold workbench shows for one threshold.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
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

/// A scan that could not be used, why, and the cause as failure-to-acquire counts it.
#[derive(Debug, Clone, Serialize)]
pub struct UnusableScan {
    pub path: std::path::PathBuf,
    pub cause: &'static str,
    pub error: String,
}

pub type Unusable = Vec<UnusableScan>;

/// Embeds every scan of a manifest with the signature model (in parallel batches);
/// scans that cannot be read or show no ink are returned with their error instead.
pub fn embed_scans<'a>(
    model: &SignatureModel,
    scans: &'a [LabelledScan],
    cancel: &AtomicBool,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<(Vec<EmbeddedScan<'a>>, Unusable)> {
    embed_varied_scans(model, scans, None, cancel, progress)
}

/// `embed_scans`, each scan first changed as a random branch would scan it
/// (`signature::variation::random_branch`) when `vary` gives a seed: every scan,
/// reference or questioned, as if it came from another branch's scanner, pen and paper.
/// The draw depends on the seed and the scan's path only.
pub fn embed_varied_scans<'a>(
    model: &SignatureModel,
    scans: &'a [LabelledScan],
    vary: Option<u64>,
    cancel: &AtomicBool,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<(Vec<EmbeddedScan<'a>>, Unusable)> {
    use rayon::prelude::*;
    let mut embedded = Vec::new();
    let mut failed = Vec::new();
    for (index, chunk) in scans.chunks(64).enumerate() {
        if cancel.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(Error::Cancelled);
        }
        progress(index * 64, scans.len());
        let normalised: Vec<Result<crate::signature::preprocess::Normalised>> = chunk
            .par_iter()
            .map(|scan| {
                let mut image = crate::imageio::load(&scan.path)?;
                if let Some(seed) = vary {
                    let mut rng = rand::SeedableRng::seed_from_u64(seed ^ path_seed(&scan.path));
                    image = image::DynamicImage::ImageLuma8(
                        crate::signature::variation::random_branch(&image.to_luma8(), &mut rng)?,
                    );
                }
                model.normalise(&image, &scan.path.display().to_string())
            })
            .collect();
        let mut good = Vec::new();
        let mut good_scans = Vec::new();
        for (scan, normalised) in chunk.iter().zip(&normalised) {
            match normalised {
                Ok(normalised) => {
                    good.push(normalised.template_input());
                    good_scans.push(scan);
                }
                Err(error) => failed.push(UnusableScan {
                    path: scan.path.clone(),
                    cause: error.acquisition_cause(),
                    error: error.to_string(),
                }),
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

/// A number drawn from a path alone (FNV-1a of its bytes), the same on every run.
pub(crate) fn path_seed(path: &std::path::Path) -> u64 {
    path.to_string_lossy()
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
            (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
        })
}

/// Genuine and impostor scores for the threshold workbench, and where they came from.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ScoreSet {
    pub genuine: Vec<f32>,
    /// Skilled forgeries of the identity itself (signatures from a labelled manifest).
    pub skilled: Vec<f32>,
    /// Other identities.
    pub random: Vec<f32>,
    pub source: String,
    /// The same scores by identity, for the problem-enrollee view.
    pub per_identity: Vec<IdentityScores>,
    /// Failure to enrol and to acquire, when the scores came from samples (a manifest)
    /// rather than references already enrolled.
    pub acquisition: Option<Acquisition>,
}

impl ScoreSet {
    /// Every impostor score, skilled then random.
    pub fn impostor(&self) -> Vec<f32> {
        self.skilled.iter().chain(&self.random).copied().collect()
    }
}

/// References enrolled per identity when the workbench scores a labelled manifest: a
/// typical account's references.
pub const WORKBENCH_REFERENCES: usize = 5;

/// Scores of a labelled manifest by the enrol-K protocol (`evaluate`), with the signature
/// model's scorer.
pub fn manifest_scores(
    model: &SignatureModel,
    scans: &[LabelledScan],
    references: usize,
    bands: Bands,
    cancel: &AtomicBool,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<ScoreSet> {
    let (embedded, unusable) = embed_scans(model, scans, cancel, progress)?;
    let report = evaluate(&embedded, references, bands.high, |r, q| model.score(r, q))?;
    Ok(enrol_k_scores(report, scans, &embedded, &unusable))
}

/// Scores of a labelled set of face photos (a manifest, or a folder per person) by the
/// same enrol-K protocol, a photo scoring its best match among the references as the
/// desk's verification does. A photo in which no face is found is a failure to acquire,
/// by its cause (too small, too dark, too blurred, no face), as ISO/IEC 19795-1 asks.
pub fn face_manifest_scores(
    models: &FaceModels,
    photos: &[LabelledScan],
    references: usize,
    bands: Bands,
    cancel: &AtomicBool,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<ScoreSet> {
    let mut embedded = Vec::new();
    let mut unusable = Vec::new();
    for (done, photo) in photos.iter().enumerate() {
        if cancel.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(Error::Cancelled);
        }
        progress(done, photos.len());
        let source = photo.path.display().to_string();
        let sighted = crate::imageio::load_rgb(&photo.path).and_then(|picture| {
            match models.main_face(&picture, &source) {
                Ok((face, _)) => Ok(Ok(face.embedding)),
                Err(Error::NoFace(_)) => Ok(Err(crate::face::quality::no_face_cause(&picture))),
                Err(other) => Err(other),
            }
        });
        match sighted {
            Ok(Ok(embedding)) => embedded.push(EmbeddedScan {
                identity: &photo.identity,
                kind: photo.kind,
                embedding,
            }),
            Ok(Err(cause)) => unusable.push(UnusableScan {
                path: photo.path.clone(),
                cause,
                error: format!("{source}: no face found ({cause})"),
            }),
            Err(error) => unusable.push(UnusableScan {
                path: photo.path.clone(),
                cause: error.acquisition_cause(),
                error: error.to_string(),
            }),
        }
    }
    progress(photos.len(), photos.len());
    let report = evaluate(&embedded, references, bands.high, |enrolled, questioned| {
        enrolled.iter().try_fold(0.0f32, |best, reference| {
            Ok(best.max(face_score(euclidean_distance(reference, questioned)?)))
        })
    })?;
    Ok(enrol_k_scores(report, photos, &embedded, &unusable))
}

fn enrol_k_scores(
    report: VerificationReport,
    samples: &[LabelledScan],
    embedded: &[EmbeddedScan],
    unusable: &[UnusableScan],
) -> ScoreSet {
    ScoreSet {
        genuine: report.genuine_scores,
        skilled: report.skilled_scores,
        random: report.random_scores,
        source: format!("{} references", report.references),
        per_identity: report.per_identity,
        acquisition: Some(acquisition(samples, embedded, unusable, report.references)),
    }
}

/// FTA over every scan presented; FTE over the identities with a genuine scan, an
/// identity failing when fewer than `references` of its genuine scans were usable.
pub fn acquisition(
    scans: &[LabelledScan],
    embedded: &[EmbeddedScan],
    unusable: &[UnusableScan],
    references: usize,
) -> Acquisition {
    let identities = crate::dataset::identities_of(
        scans
            .iter()
            .filter(|s| s.kind == Kind::Genuine)
            .map(|s| s.identity.as_str()),
    );
    let failed_to_enrol = identities
        .iter()
        .filter(|identity| {
            embedded
                .iter()
                .filter(|s| s.identity == identity.as_str() && s.kind == Kind::Genuine)
                .count()
                < references
        })
        .count();
    Acquisition::new(
        scans.len(),
        unusable.iter().map(|u| u.cause.to_string()),
        identities.len(),
        failed_to_enrol,
    )
}

/// Scores from the enrolled gallery itself: each person's first reference against their
/// other references (genuine) and against everyone else's (impostor).
pub fn gallery_scores(
    templates: &[StoredTemplate],
    bands: Bands,
    score: impl Fn(&[&[f32]], &[f32]) -> Result<f32>,
) -> Result<ScoreSet> {
    let names: Vec<String> = templates.iter().map(|t| t.person_id.to_string()).collect();
    let scans: Vec<EmbeddedScan> = templates
        .iter()
        .zip(&names)
        .map(|(t, name)| EmbeddedScan {
            identity: name,
            kind: Kind::Genuine,
            embedding: t.embedding.clone(),
        })
        .collect();
    let report = evaluate(&scans, 1, bands.high, score)?;
    if report.genuine_scores.is_empty() {
        return Err(Error::TooFewReferences);
    }
    Ok(ScoreSet {
        genuine: report.genuine_scores,
        skilled: Vec::new(),
        random: report.random_scores,
        source: "enrolled references".into(),
        per_identity: report.per_identity,
        acquisition: None,
    })
}

/// What new bands would do to the decisions already recorded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Replay {
    pub total: usize,
    /// Decisions the new bands would make differently.
    pub changed: usize,
    /// Of those, how many would now be accepts.
    pub now_accepted: usize,
    /// The decisions that would change, each with what it would become.
    pub flips: Vec<(PastDecision, crate::types::Decision)>,
}

/// Each past decision decided again by `bands_of` it (everyone's new bands, moved by the
/// person's own offset).
pub fn replay(past: &[PastDecision], bands_of: impl Fn(&PastDecision) -> Bands) -> Replay {
    let flips: Vec<_> = past
        .iter()
        .map(|p| (p.clone(), bands_of(p).decide(p.score)))
        .filter(|(before, after)| before.decision != *after)
        .collect();
    Replay {
        total: past.len(),
        changed: flips.len(),
        now_accepted: flips
            .iter()
            .filter(|(_, after)| *after == crate::types::Decision::Accept)
            .count(),
        flips,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::Decision;

    /// Scores like a short training run's: a few genuine, well apart from the impostors.
    fn separable() -> (Vec<f32>, Vec<f32>) {
        let genuine = vec![0.71, 0.74, 0.8, 0.83, 0.9, 0.95];
        let impostor: Vec<f32> = (0..2000).map(|i| 0.1 + 0.5 * (i as f32 / 2000.0)).collect();
        (genuine, impostor)
    }

    #[test]
    fn the_far_preset_lands_where_far_meets_its_label() {
        let (genuine, mut impostor) = separable();
        impostor.extend([0.65, 0.66, 0.72, 0.81]);
        for target in [0.01, 0.001, 0.0001] {
            let threshold = threshold_for_far(&impostor, target);
            let (far, _) = error_rates(&genuine, &impostor, threshold);
            assert!(far <= target, "FAR {far} at {threshold} for {target}");
            // The grid step below it would break the label: it is the lowest that keeps it.
            let below =
                grid_threshold((f64::from(threshold) / THRESHOLD_STEP).round() as usize - 1);
            assert!(error_rates(&genuine, &impostor, below).0 > target);
        }
    }

    #[test]
    fn the_eer_preset_shows_the_rates_it_names() {
        let (genuine, impostor) = separable();
        let (eer, threshold) = equal_error_point(&genuine, &impostor);
        let (far, frr) = error_rates(&genuine, &impostor, threshold);
        assert_eq!(eer, 0.0);
        assert_eq!((far, frr), (0.0, 0.0), "at {threshold}");
        // A slider with the same step keeps the value where the preset put it.
        let rounded = ((f64::from(threshold) / THRESHOLD_STEP).round() * THRESHOLD_STEP) as f32;
        assert_eq!(rounded, threshold);
    }

    #[test]
    fn replay_counts_what_new_bands_change() {
        let past = [
            (0.9, Decision::Accept),
            (0.5, Decision::Review),
            (0.2, Decision::Reject),
            (0.52, Decision::Review),
        ]
        .map(|(score, decision)| PastDecision {
            score,
            decision,
            at: "2026-12-01T08:00:00.000Z".into(),
            what: "kiosk punch".into(),
            person: None,
            person_id: None,
        });
        let same = Bands {
            low: 0.45,
            high: 0.55,
        };
        assert_eq!(replay(&past, |_| same).changed, 0);
        let looser = Bands {
            low: 0.1,
            high: 0.51,
        };
        let replayed = replay(&past, |_| looser);
        assert_eq!(
            (replayed.total, replayed.changed, replayed.now_accepted),
            (4, 2, 1)
        );
        assert_eq!(replayed.flips[0].0.score, 0.2);
        assert_eq!(replayed.flips[0].1, Decision::Review);
    }

    #[test]
    fn gallery_scores_need_two_references_and_keep_identities_apart() {
        let template = |person_id, value: f32| StoredTemplate {
            template_id: 0,
            person_id,
            embedding: vec![value],
        };
        let score = |r: &[&[f32]], q: &[f32]| Ok(1.0 - (r[0][0] - q[0]).abs());
        let bands = Bands {
            low: 0.4,
            high: 0.5,
        };
        assert!(gallery_scores(&[template(1, 0.0), template(2, 1.0)], bands, score).is_err());
        let set = gallery_scores(
            &[template(1, 0.0), template(1, 0.1), template(2, 0.9)],
            bands,
            score,
        )
        .unwrap();
        assert_eq!(set.genuine.len(), 1);
        assert!((set.genuine[0] - 0.9).abs() < 1e-6);
        assert!(set.skilled.is_empty());
        assert_eq!(set.impostor().len(), set.random.len());
    }

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
