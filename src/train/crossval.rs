//! Writer-level k-fold cross-validation of signature verification. Each fold learns
//! everything on the other writers (the encoder when asked, the scorer, the bands) and is
//! scored on its own writers, so no figure it reports was seen while anything was fitted.
//! The bands themselves come from out-of-sample scores: an inner split of the training
//! writers, each part scored by a scorer fitted on the rest.

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;

use candle_core::Device;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use serde::Serialize;

use super::{TrainConfig, TrainEvent, enrollment_sizes, train, writer_templates};
use crate::dataset::{Kind, LabelledScan, identities};
use crate::error::{Error, Result};
use crate::eval::verification::{
    EmbeddedScan, VerificationReport, embed_varied_scans, equal_error_point, evaluate,
};
use crate::signature::SignatureModel;
use crate::signature::fusion::{FitOptions, ScoreFusion};
use crate::types::Bands;

/// Genuine signatures the review floor may reject outright (out of the training writers'
/// out-of-sample scores): below it, a genuine cheque is as rare as this.
pub const FLOOR_FRR: f64 = 0.01;
/// Parts the training writers are split into to fit the bands out of sample.
const INNER_FOLDS: usize = 3;

/// One fold: the writers it is tested on, and the rest, which it learns from.
#[derive(Debug, Clone, Serialize)]
pub struct FoldSplit {
    pub index: usize,
    pub train: Vec<String>,
    pub test: Vec<String>,
}

/// Deals the identities into `folds` parts of near-equal size after a seeded shuffle.
pub fn writer_folds(identities: &[String], folds: usize, seed: u64) -> Result<Vec<FoldSplit>> {
    if folds < 2 || identities.len() < 2 * folds {
        return Err(Error::Invalid(format!(
            "{folds} folds need at least 2 and at least two writers per fold ({} writers)",
            identities.len()
        )));
    }
    let mut shuffled = identities.to_vec();
    shuffled.shuffle(&mut rand::rngs::StdRng::seed_from_u64(seed));
    Ok((0..folds)
        .map(|index| {
            let in_fold = |fold: bool| {
                let mut names: Vec<String> = shuffled
                    .iter()
                    .enumerate()
                    .filter(|(rank, _)| (rank % folds == index) == fold)
                    .map(|(_, name)| name.clone())
                    .collect();
                names.sort();
                names
            };
            FoldSplit {
                index,
                train: in_fold(false),
                test: in_fold(true),
            }
        })
        .collect())
}

/// What to learn and report in each fold.
#[derive(Debug, Clone)]
pub struct CrossValidationPlan {
    pub folds: usize,
    pub seed: u64,
    /// Enrollment sizes reported.
    pub references: Vec<usize>,
    /// How each fold's scorer is fitted.
    pub fit: FitOptions,
    /// When set, every fold trains its own encoder on its training writers (and
    /// `extra_training`) with this configuration (its `out` is the folder of the folds'
    /// runs); otherwise the given model's encoder serves every fold.
    pub train_encoder: Option<TrainConfig>,
    /// Scans trained on in every fold, never tested (other data sets).
    pub extra_training: Vec<LabelledScan>,
    /// Writers every fold's scorer and bands are also fitted on, never tested (other data
    /// sets with skilled forgeries), embedded by the fold's encoder.
    pub extra_fitting: Vec<LabelledScan>,
    /// When set, every scan the folds fit on and test is first changed as a random branch
    /// would scan it (this seed draws the changes): pens, paper and scanners that vary
    /// independently of who signed.
    pub vary_scans: Option<u64>,
}

/// One fold's bands and its test writers' rates at each enrollment size.
#[derive(Debug, Clone, Serialize)]
pub struct FoldResult {
    pub split: FoldSplit,
    pub encoder: String,
    pub bands: Bands,
    pub runs: Vec<VerificationReport>,
    /// Test scans that could not be used (no ink, unreadable).
    pub unusable: usize,
}

/// Mean, standard deviation and range over the folds.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Spread {
    pub mean: f64,
    pub sd: f64,
    pub min: f64,
    pub max: f64,
}

impl Spread {
    fn of(values: &[f64]) -> Option<Self> {
        let values: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
        if values.is_empty() {
            return None;
        }
        let n = values.len() as f64;
        let mean = values.iter().sum::<f64>() / n;
        let variance = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
        Some(Self {
            mean,
            sd: variance.sqrt(),
            min: values.iter().copied().fold(f64::INFINITY, f64::min),
            max: values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        })
    }
}

/// One enrollment size over all folds; the rates at the bands are at the accept
/// threshold each fold fitted for itself.
#[derive(Debug, Clone, Serialize)]
pub struct SizeSummary {
    pub references: usize,
    pub skilled_eer: Option<Spread>,
    pub random_eer: Option<Spread>,
    pub skilled_far_at_accept: Option<Spread>,
    pub random_far_at_accept: Option<Spread>,
    pub frr_at_accept: Option<Spread>,
    /// Genuine rejected outright (under the review floor).
    pub frr_under_floor: Option<Spread>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CrossValidation {
    pub writers: usize,
    pub folds: Vec<FoldResult>,
    pub summary: Vec<SizeSummary>,
    /// Whether each fold trained its own encoder; if not, the encoder may have seen
    /// test writers and the figures flatter it.
    pub encoder_refitted: bool,
}

/// Progress of a cross-validation, for a bar or a log.
pub enum FoldEvent<'a> {
    Training(usize, &'a TrainEvent),
    Embedding { fold: usize, done: usize, of: usize },
    Done(&'a FoldResult),
}

/// Runs the plan over `scans` (the writers tested in folds); `model` is the encoder used
/// when the plan trains none, and the starting point of nothing otherwise.
pub fn cross_validate(
    scans: &[LabelledScan],
    model: &SignatureModel,
    plan: &CrossValidationPlan,
    device: &Device,
    cancel: &AtomicBool,
    on_event: &mut dyn FnMut(FoldEvent),
) -> Result<CrossValidation> {
    let writers = identities(scans);
    if let Some(shared) = identities(&plan.extra_fitting)
        .into_iter()
        .find(|writer| writers.contains(writer))
    {
        return Err(Error::Invalid(format!(
            "writer `{shared}` is both tested and in the extra fitting data: it would be \
             fitted on in the folds that test it"
        )));
    }
    let fitted_or_tested: Vec<LabelledScan> =
        scans.iter().chain(&plan.extra_fitting).cloned().collect();
    let splits = writer_folds(&writers, plan.folds, plan.seed)?;
    if plan.train_encoder.is_none()
        && plan
            .fit
            .descriptor_canvas
            .is_some_and(|canvas| canvas != model.descriptor_canvas)
    {
        return Err(Error::Invalid(
            "without fold encoders the model's own descriptor canvas is used: fit its scorer \
             with that descriptor canvas first"
                .into(),
        ));
    }
    let mut folds = Vec::new();
    for split in splits {
        let mut trained;
        let encoder = match &plan.train_encoder {
            Some(config) => {
                trained =
                    train_fold_encoder(scans, &split, plan, config, device, cancel, on_event)?;
                if let Some(canvas) = plan.fit.descriptor_canvas {
                    trained.descriptor_canvas = canvas;
                }
                &trained
            }
            None => model,
        };
        let index = split.index;
        let (embedded, unusable) = embed_varied_scans(
            encoder,
            &fitted_or_tested,
            plan.vary_scans,
            cancel,
            &mut |done, of| {
                on_event(FoldEvent::Embedding {
                    fold: index,
                    done,
                    of,
                });
            },
        )?;
        let test_unusable = unusable
            .iter()
            .filter(|u| {
                scans
                    .iter()
                    .any(|s| s.path == u.path && split.test.contains(&s.identity))
            })
            .count();
        let result = run_fold(split, &embedded, encoder.model_id(), plan, test_unusable)?;
        on_event(FoldEvent::Done(&result));
        folds.push(result);
    }
    let summary = summarise(&folds, &plan.references);
    Ok(CrossValidation {
        writers: writers.len(),
        folds,
        summary,
        encoder_refitted: plan.train_encoder.is_some(),
    })
}

/// Trains the fold's encoder on its training writers and the extra data, in the fold's
/// own folder; a run that finished there before is reused, so a long evaluation resumes,
/// one that ran fewer epochs than asked is continued, and one that ran more is refused.
fn train_fold_encoder(
    scans: &[LabelledScan],
    split: &FoldSplit,
    plan: &CrossValidationPlan,
    config: &TrainConfig,
    device: &Device,
    cancel: &AtomicBool,
    on_event: &mut dyn FnMut(FoldEvent),
) -> Result<SignatureModel> {
    let mut config = config.clone();
    config.out = fold_folder(&config.out, split.index);
    config.seed = plan.seed + split.index as u64;
    let model_path = config.out.join(super::MODEL_FILE);
    let finished = match super::RunOutcome::of_model(&model_path)? {
        Some(outcome) => outcome.reusable_for(config.epochs, &config.out)? && model_path.is_file(),
        None => false,
    };
    if !finished {
        let training: Vec<LabelledScan> = scans
            .iter()
            .filter(|s| split.train.contains(&s.identity))
            .chain(&plan.extra_training)
            .cloned()
            .collect();
        config.resume = config.out.join(super::CHECKPOINT_FILE).is_file();
        let report = train(&config, &training, device, cancel, &mut |event| {
            on_event(FoldEvent::Training(split.index, &event));
        })?;
        if report.cancelled {
            return Err(Error::Cancelled);
        }
    }
    SignatureModel::load(&model_path, device)
}

pub fn fold_folder(out: &std::path::Path, index: usize) -> PathBuf {
    out.join(format!("fold-{}", index + 1))
}

/// Fits the fold's scorer and bands on its training writers and scores its test writers.
fn run_fold(
    split: FoldSplit,
    embedded: &[EmbeddedScan],
    encoder: String,
    plan: &CrossValidationPlan,
    unusable: usize,
) -> Result<FoldResult> {
    let (train, test) = part(embedded, &split.test);
    let bands = out_of_sample_bands(&train, &plan.fit, &plan.references, plan.seed)?;
    let fusion = ScoreFusion::fit(&writer_templates(&train), &plan.fit)?;
    let runs = plan
        .references
        .iter()
        .map(|&k| evaluate(&test, k, bands.high, |r, q| Ok(fusion.score(r, q))))
        .collect::<Result<_>>()?;
    Ok(FoldResult {
        split,
        encoder,
        bands,
        runs,
        unusable,
    })
}

/// (the scans of identities not in `held`, those in `held`).
fn part<'a>(
    embedded: &[EmbeddedScan<'a>],
    held: &[String],
) -> (Vec<EmbeddedScan<'a>>, Vec<EmbeddedScan<'a>>) {
    embedded
        .iter()
        .map(|s| EmbeddedScan {
            identity: s.identity,
            kind: s.kind,
            embedding: s.embedding.clone(),
        })
        .partition(|s| !held.iter().any(|h| h == s.identity))
}

/// Bands from scores the scorer never fitted on: the writers are split in `INNER_FOLDS`,
/// each part scored by a scorer fitted (as `fit` says) on the others, at every enrollment
/// size of `references`. Accept at their skilled equal-error point; the review floor where
/// `FLOOR_FRR` of the genuine fall under it.
pub fn out_of_sample_bands(
    train: &[EmbeddedScan],
    fit: &FitOptions,
    references: &[usize],
    seed: u64,
) -> Result<Bands> {
    let with_forgeries: Vec<String> = crate::dataset::identities_of(
        train
            .iter()
            .filter(|s| s.kind == Kind::Forgery)
            .map(|s| s.identity),
    );
    let inner = writer_folds(&with_forgeries, INNER_FOLDS, seed + 1000)?;
    let (mut genuine, mut skilled) = (Vec::new(), Vec::new());
    for split in inner {
        let (fit_on, scored) = part(train, &split.test);
        let fusion = ScoreFusion::fit(&writer_templates(&fit_on), fit)?;
        for &k in references {
            let report = evaluate(&scored, k, 0.5, |r, q| Ok(fusion.score(r, q)))?;
            genuine.extend(report.genuine_scores);
            skilled.extend(report.skilled_scores);
        }
    }
    bands_from(&genuine, &skilled)
}

/// Accept at the equal-error point of genuine against skilled forgeries; the floor at the
/// highest threshold that rejects at most `FLOOR_FRR` of the genuine (never above accept).
pub fn bands_from(genuine: &[f32], skilled: &[f32]) -> Result<Bands> {
    if genuine.is_empty() || skilled.is_empty() {
        return Err(Error::Invalid(
            "no out-of-sample genuine and forged scores to fit bands on".into(),
        ));
    }
    let (_, high) = equal_error_point(genuine, skilled);
    let mut sorted = genuine.to_vec();
    sorted.sort_by(f32::total_cmp);
    let allowed = (FLOOR_FRR * sorted.len() as f64).floor() as usize;
    let low = sorted[allowed.min(sorted.len() - 1)].min(high);
    Ok(Bands { low, high })
}

fn summarise(folds: &[FoldResult], references: &[usize]) -> Vec<SizeSummary> {
    references
        .iter()
        .map(|&k| {
            let runs: Vec<(&FoldResult, &VerificationReport)> = folds
                .iter()
                .filter_map(|f| f.runs.iter().find(|r| r.references == k).map(|r| (f, r)))
                .collect();
            let over = |value: &dyn Fn(&FoldResult, &VerificationReport) -> Option<f64>| {
                Spread::of(
                    &runs
                        .iter()
                        .filter_map(|(f, r)| value(f, r))
                        .collect::<Vec<_>>(),
                )
            };
            SizeSummary {
                references: k,
                skilled_eer: over(&|_, r| r.skilled.as_ref().map(|s| s.eer)),
                random_eer: over(&|_, r| Some(r.random.eer)),
                skilled_far_at_accept: over(&|_, r| r.skilled.as_ref().map(|s| s.far_at_default)),
                random_far_at_accept: over(&|_, r| Some(r.random.far_at_default)),
                frr_at_accept: over(&|_, r| Some(r.random.frr_at_default)),
                frr_under_floor: over(&|f, r| {
                    let under = r
                        .genuine_scores
                        .iter()
                        .filter(|&&s| s < f.bands.low)
                        .count();
                    Some(under as f64 / r.genuine_scores.len().max(1) as f64)
                }),
            }
        })
        .collect()
}

impl std::fmt::Display for CrossValidation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let percent = |s: &Option<Spread>| {
            s.map_or("-".to_string(), |s| {
                format!(
                    "{:.2}% ± {:.2} ({:.2}-{:.2})",
                    100.0 * s.mean,
                    100.0 * s.sd,
                    100.0 * s.min,
                    100.0 * s.max
                )
            })
        };
        writeln!(
            f,
            "{} writers in {} folds; encoder {}",
            self.writers,
            self.folds.len(),
            if self.encoder_refitted {
                "trained in each fold on its training writers"
            } else {
                "NOT refitted per fold: figures for writers it was trained on flatter it"
            }
        )?;
        for fold in &self.folds {
            writeln!(
                f,
                "fold {}: {} test writers, encoder {}, bands accept >= {:.3}, reject < {:.3}{}",
                fold.split.index + 1,
                fold.split.test.len(),
                fold.encoder,
                fold.bands.high,
                fold.bands.low,
                if fold.unusable > 0 {
                    format!(", {} unusable test scans", fold.unusable)
                } else {
                    String::new()
                }
            )?;
        }
        for size in &self.summary {
            writeln!(f, "K={} (mean ± sd over folds, range):", size.references)?;
            writeln!(f, "  skilled EER        {}", percent(&size.skilled_eer))?;
            writeln!(f, "  random EER         {}", percent(&size.random_eer))?;
            writeln!(f, "  FRR at accept      {}", percent(&size.frr_at_accept))?;
            writeln!(
                f,
                "  skilled FAR at acc {}",
                percent(&size.skilled_far_at_accept)
            )?;
            writeln!(
                f,
                "  random FAR at acc  {}",
                percent(&size.random_far_at_accept)
            )?;
            writeln!(f, "  genuine rejected   {}", percent(&size.frr_under_floor))?;
        }
        Ok(())
    }
}

/// How the scorer was fitted, for reports: "3, 5 and 12 references".
pub fn fitted_on(plan: &CrossValidationPlan) -> String {
    format!(
        "{} references{}{}",
        enrollment_sizes(&plan.fit.references),
        plan.fit.extras(),
        if plan.fit.aligned_across_references {
            ", its score shifted to cross at one point for every number of references"
        } else {
            ""
        }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folds_cover_every_writer_once_and_never_test_what_they_train_on() {
        let writers: Vec<String> = (1..=40).map(|i| format!("cedar-{i}")).collect();
        let folds = writer_folds(&writers, 4, 7).unwrap();
        let mut tested: Vec<&String> = folds.iter().flat_map(|f| &f.test).collect();
        tested.sort();
        let mut all: Vec<&String> = writers.iter().collect();
        all.sort();
        assert_eq!(tested, all);
        for fold in &folds {
            assert_eq!(fold.test.len(), 10);
            assert_eq!(fold.train.len(), 30);
            assert!(fold.test.iter().all(|w| !fold.train.contains(w)));
        }
        assert_eq!(
            writer_folds(&writers, 4, 7).unwrap()[2].test,
            folds[2].test,
            "seeded"
        );
        assert!(writer_folds(&writers[..5], 4, 7).is_err());
    }

    #[test]
    fn bands_accept_at_the_crossing_and_reject_only_the_rarest_genuine() {
        let genuine: Vec<f32> = (0..200).map(|i| 0.4 + 0.6 * i as f32 / 200.0).collect();
        let skilled: Vec<f32> = (0..200).map(|i| 0.6 * i as f32 / 200.0).collect();
        let bands = bands_from(&genuine, &skilled).unwrap();
        assert!((0.39..=0.61).contains(&bands.high), "{bands:?}");
        let rejected = genuine.iter().filter(|&&g| g < bands.low).count();
        assert!(rejected <= 2, "{rejected} of 200 genuine under the floor");
        assert!(bands.low <= bands.high);
    }
}
