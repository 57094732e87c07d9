//! `vouch eval ...`: accuracy on labelled data (face pairs, signature verification,
//! one-shot runs).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context as _;
use clap::Subcommand;
use serde::Serialize;

use super::{cancel_flag, follow, print_report, progress_bar};
use crate::context::Context;
use crate::eval::oneshot::OneshotWeights;
use crate::face::FaceModels;
use crate::matching::DEFAULT_FACE_THRESHOLD;
use crate::signature::SignatureModel;
use crate::signature::preprocess::{Normalisation, SIGNATURE_CANVAS};
use crate::types::Modality;

#[derive(Subcommand, Debug)]
pub enum EvalCommand {
    /// Writer-independent verification: per identity, enrol the first K genuine scans and
    /// score the other genuines, its forgeries (skilled) and other identities (random).
    // Without folds the model is scored as it is, so a scorer or scan recipe given there
    // would be ignored and its figures read as that recipe's: clap refuses them instead.
    #[command(
        mut_group("ScorerChoice", |group| group.requires("folds")),
        mut_group("ScanRecipe", |group| group.requires("train_epochs"))
    )]
    Verify {
        #[arg(long, value_enum, default_value_t = crate::train::TrainModality::Signature)]
        modality: crate::train::TrainModality,
        /// CSV path,identity,kind (or a folder, read as `vouch dataset manifest` does).
        #[arg(long)]
        manifest: PathBuf,
        /// Genuine references per identity; repeat for several (e.g. --refs 1 --refs 5).
        #[arg(long, default_value = "12")]
        refs: Vec<usize>,
        /// Change every scan as a random branch would scan it (pen, paper, grey depth, a
        /// turned page, slant, JPEG; this seed draws the changes) before anything is
        /// fitted or scored.
        #[arg(long)]
        vary_scans: Option<u64>,
        /// Writer-level k-fold cross-validation: each fold fits the scorer and the bands
        /// (and, with --train-epochs, trains the encoder) on the other writers only. The
        /// scorer's and the folds' options below need it; the scan recipe, --lr, --runs
        /// and the other training options need --train-epochs too.
        #[arg(long)]
        folds: Option<usize>,
        // Boxed: the folds' options dwarf every other command's.
        #[command(flatten)]
        folding: Box<FoldOptions>,
        #[arg(long)]
        json: bool,
    },
    /// The copy check on labelled scans: how often two signings of one hand, or a forgery
    /// and the hand it imitates, are taken for a copy, and how often copies of each
    /// identity's references (rescanned, slanted, turned and slanted, thinned) are caught or
    /// would be paid unseen.
    Copies {
        /// CSV path,identity,kind (or a folder, read as `vouch dataset manifest` does).
        #[arg(long)]
        manifest: PathBuf,
        /// Each copy is laid on its identity's first K genuine scans, the source among them.
        #[arg(long, default_value_t = 12)]
        refs: usize,
        /// How many of those references are copied, the first N.
        #[arg(long, default_value_t = 2)]
        copies_of: usize,
        #[arg(long)]
        json: bool,
    },
    /// N-way one-shot classification in the standard runs format (run01..run20, each with
    /// training/, test/ and class_labels.txt).
    Oneshot {
        #[arg(long)]
        runs: PathBuf,
        /// Weight of the drawings' aligned-ink distance beside the encoder's score; each
        /// opinion alone is reported too.
        #[arg(long, default_value_t = OneshotWeights::default().shape)]
        shape_weight: f32,
        /// Weight of the drawings' local-distortion distance (both weights 0: the encoder
        /// alone).
        #[arg(long, default_value_t = OneshotWeights::default().distortion)]
        distortion_weight: f32,
        #[arg(long)]
        json: bool,
    },
    /// LFW-format pair list: `Name i j` same person, `NameA i NameB j` different.
    Pairs {
        #[arg(long)]
        pairs: PathBuf,
        /// Folder with `Name/Name_0001.jpg` images.
        #[arg(long)]
        root: PathBuf,
        /// Also report k-fold accuracy (threshold chosen on the other folds).
        #[arg(long)]
        folds: Option<usize>,
        /// Only the first N same and first N different pairs.
        #[arg(long)]
        limit: Option<usize>,
        #[arg(long)]
        json: bool,
    },
}

/// What each cross-validation fold learns, beyond the scorer and bands it always fits.
#[derive(clap::Args, Debug)]
pub struct FoldOptions {
    /// Seed of the writers' split into folds (and of each fold's training).
    #[arg(long, default_value_t = 1, requires = "folds")]
    seed: u64,
    /// Enrollment sizes the scorer is fitted on [default: those of --refs].
    #[arg(long, requires = "folds")]
    fit_refs: Vec<usize>,
    #[command(flatten)]
    scorer: super::train::ScorerChoice,
    /// Train each fold's encoder from scratch for this many epochs; without it the
    /// model's own encoder serves every fold.
    #[arg(long, requires = "folds")]
    train_epochs: Option<usize>,
    /// Start each fold's encoder from this model's weights instead of random ones: a model
    /// that never saw the manifest's writers (one trained on Omniglot's characters, say).
    /// The folds keep the signature canvas and paper-relative ink unless --canvas and
    /// --normalisation say otherwise, whatever the model was trained on.
    #[arg(long, requires = "train_epochs")]
    train_init: Option<PathBuf>,
    /// The folds' training loss (contrastive, as the shipped model).
    #[arg(long, value_enum, default_value_t = crate::train::RECIPE_LOSS, requires = "train_epochs")]
    train_loss: crate::train::Loss,
    /// Learning rate of the folds' training.
    #[arg(long, default_value_t = crate::train::RECIPE_LEARNING_RATE, requires = "train_epochs")]
    lr: f64,
    #[command(flatten)]
    recipe: super::train::ScanRecipe,
    /// More scans every fold trains on and never tests (other data sets); repeatable.
    #[arg(long, requires = "train_epochs")]
    train_data: Vec<PathBuf>,
    /// More writers every fold's scorer and bands are fitted on and never tested (other
    /// data sets with skilled forgeries); repeatable.
    #[arg(long, requires = "folds")]
    fit_data: Vec<PathBuf>,
    /// The folds' training runs [default: crossval-<time> beside the database]. A fold
    /// whose run finished there is reused.
    #[arg(long, requires = "train_epochs")]
    runs: Option<PathBuf>,
}

pub fn run(command: EvalCommand, context: &Context) -> anyhow::Result<ExitCode> {
    match command {
        EvalCommand::Pairs {
            pairs,
            root,
            folds,
            limit,
            json,
        } => eval_pairs(&context.load_faces()?, &pairs, &root, folds, limit, json),
        EvalCommand::Verify {
            modality,
            manifest,
            refs,
            vary_scans,
            folds: None,
            json,
            ..
        } => eval_verify(
            &signature_model(context)?,
            modality,
            &manifest,
            &refs,
            vary_scans,
            json,
        ),
        EvalCommand::Verify {
            manifest,
            refs,
            vary_scans,
            folds: Some(folds),
            folding,
            json,
            ..
        } => eval_folds(context, &manifest, refs, folds, vary_scans, *folding, json),
        EvalCommand::Copies {
            manifest,
            refs,
            copies_of,
            json,
        } => eval_copies(&signature_model(context)?, &manifest, refs, copies_of, json),
        EvalCommand::Oneshot {
            runs,
            shape_weight,
            distortion_weight,
            json,
        } => {
            let weights = OneshotWeights {
                shape: shape_weight,
                distortion: distortion_weight,
            };
            eval_oneshot(&signature_model(context)?, &runs, weights, json)
        }
    }
}

/// The signature model in force for the database, when there is one.
fn signature_model(context: &Context) -> anyhow::Result<SignatureModel> {
    Ok(context.load_signature_model(context.existing_store()?.as_ref())?)
}

fn eval_pairs(
    models: &FaceModels,
    pairs_file: &Path,
    root: &Path,
    folds: Option<usize>,
    limit: Option<usize>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let text = std::fs::read_to_string(pairs_file)
        .with_context(|| format!("cannot read {}", pairs_file.display()))?;
    let mut pairs = crate::eval::parse_pairs(&text)?;
    if let Some(limit) = limit {
        let same: Vec<_> = pairs
            .iter()
            .filter(|p| p.same)
            .take(limit)
            .cloned()
            .collect();
        let different: Vec<_> = pairs
            .iter()
            .filter(|p| !p.same)
            .take(limit)
            .cloned()
            .collect();
        pairs = same.into_iter().chain(different).collect();
    }
    let bar = progress_bar("embedding", "images")?;
    let start = Instant::now();
    let (scored, acquisition) =
        crate::eval::score_pairs(models, &pairs, root, cancel_flag(), &mut follow(&bar))?;
    bar.finish_and_clear();
    let report = crate::eval::report(
        &scored,
        acquisition,
        DEFAULT_FACE_THRESHOLD,
        folds,
        start.elapsed().as_secs_f64(),
    );
    print_report(&report, json, |r| {
        let mut text = format!(
            "{} pairs ({} same, {} different), {} images, {} without a detected face\n{}\nbest threshold: distance {:.3}, accuracy {:.2}%\ndefault threshold: distance {:.3}, accuracy {:.2}%",
            r.pairs,
            r.same_pairs,
            r.different_pairs,
            r.images,
            r.failed_detections,
            r.failure_to_acquire,
            r.best_threshold_distance,
            100.0 * r.best_threshold_accuracy,
            r.default_threshold_distance,
            100.0 * r.default_threshold_accuracy
        );
        if let (Some(k), Some(mean), Some(std)) =
            (r.folds, r.fold_accuracy_mean, r.fold_accuracy_std)
        {
            text.push_str(&format!(
                "\n{k}-fold accuracy: {:.2}% ± {:.2}",
                100.0 * mean,
                100.0 * std
            ));
        }
        for error in &r.worst_errors {
            let distance = error
                .distance
                .map_or("no face".to_string(), |d| format!("{d:.3}"));
            let truth = if error.same { "same" } else { "different" };
            text.push_str(&format!(
                "\n  wrong: {} vs {} ({truth}, distance {distance})",
                error.first, error.second
            ));
        }
        text.push_str(&format!("\n{:.1} s", r.seconds));
        text
    })
}

#[derive(Serialize)]
struct VerifyEvaluation {
    manifest: PathBuf,
    model: String,
    scans: usize,
    unreadable: crate::eval::verification::Unusable,
    /// Failure to acquire over every scan, failure to enrol at the first K.
    acquisition: crate::eval::standards::Acquisition,
    runs: Vec<crate::eval::verification::VerificationReport>,
}

fn eval_verify(
    model: &SignatureModel,
    modality: crate::train::TrainModality,
    manifest: &Path,
    refs: &[usize],
    vary_scans: Option<u64>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    modality.canvas()?;
    let scans = crate::dataset::load(manifest)?;
    let bar = progress_bar("embedding", "scans")?;
    let (embedded, unreadable) = crate::eval::verification::embed_varied_scans(
        model,
        &scans,
        vary_scans,
        cancel_flag(),
        &mut follow(&bar),
    )?;
    bar.finish_and_clear();
    let threshold = crate::matching::default_bands(Modality::Signature).high;
    let runs = refs
        .iter()
        .map(|&k| {
            crate::eval::verification::evaluate(&embedded, k, threshold, |r, q| model.score(r, q))
        })
        .collect::<crate::Result<_>>()?;
    let acquisition = crate::eval::verification::acquisition(
        &scans,
        &embedded,
        &unreadable,
        refs.first().copied().unwrap_or(1),
    );
    let report = VerifyEvaluation {
        manifest: manifest.to_path_buf(),
        model: model.model_id(),
        scans: scans.len(),
        unreadable,
        acquisition,
        runs,
    };
    print_report(&report, json, |r| {
        let mut lines = vec![
            format!("{} scans, model {}", r.scans, r.model),
            r.acquisition.to_string(),
        ];
        let rates = |name: &str, e: &crate::eval::verification::ErrorRates| {
            format!(
                "  {name}: EER {:.2}% (at score {:.3}), FAR {:.2}% / FRR {:.2}% at {:.3}, AUC {:.4}, {} genuine vs {} impostor",
                100.0 * e.eer,
                e.eer_threshold,
                100.0 * e.far_at_default,
                100.0 * e.frr_at_default,
                r.runs.first().map_or(0.0, |run| run.threshold),
                e.auc,
                e.genuine,
                e.impostor
            )
        };
        for run in &r.runs {
            lines.push(format!(
                "K={} references, {} identities:",
                run.references, run.identities
            ));
            if let Some(skilled) = &run.skilled {
                lines.push(rates("skilled", skilled));
                lines.extend(skilled.at_fmr.iter().map(at_fmr_line));
            }
            lines.push(rates("random", &run.random));
            lines.extend(run.random.at_fmr.iter().map(at_fmr_line));
        }
        lines.join("\n")
    })
}

fn eval_folds(
    context: &Context,
    manifest: &Path,
    references: Vec<usize>,
    folds: usize,
    vary_scans: Option<u64>,
    options: FoldOptions,
    json: bool,
) -> anyhow::Result<ExitCode> {
    use crate::train::crossval::{CrossValidationPlan, FoldEvent, cross_validate};
    let model = signature_model(context)?;
    let scans = crate::dataset::load(manifest)?;
    let runs = options.runs.unwrap_or_else(|| {
        context.runs_dir().join(format!(
            "crossval-{}",
            chrono::Utc::now().format("%Y%m%d-%H%M%S")
        ))
    });
    let train_encoder = options.train_epochs.map(|epochs| {
        let mut config = crate::train::TrainConfig::new(
            crate::train::TrainModality::Signature,
            options.train_loss,
            epochs,
            runs.clone(),
        );
        config.learning_rate = options.lr;
        options.recipe.apply(&mut config);
        if let Some(init) = &options.train_init {
            config.init = Some(init.clone());
            config.canvas = config.canvas.or(Some(SIGNATURE_CANVAS));
            config.normalisation = config.normalisation.or(Some(Normalisation::default()));
        }
        config.command = std::env::args().collect::<Vec<_>>().join(" ");
        config
    });
    let plan = CrossValidationPlan {
        folds,
        seed: options.seed,
        fit: options.scorer.fit_options(if options.fit_refs.is_empty() {
            references.clone()
        } else {
            options.fit_refs
        }),
        references,
        train_encoder,
        extra_training: crate::dataset::load_all(&options.train_data)?,
        extra_fitting: crate::dataset::load_all(&options.fit_data)?,
        vary_scans,
    };
    let training = super::train::training_bar()?;
    let embedding = progress_bar("embedding", "scans")?;
    let result = cross_validate(
        &scans,
        &model,
        &plan,
        &context.device,
        cancel_flag(),
        &mut |event| match event {
            FoldEvent::Training(fold, event) => {
                training.set_message(format!("fold {}", fold + 1));
                super::train::show_train_event(&training, event);
            }
            FoldEvent::Embedding { fold, done, of } => {
                embedding.set_message(format!("fold {}: embedding", fold + 1));
                follow(&embedding)(done, of);
            }
            FoldEvent::Done(result) => embedding.suspend(|| {
                eprintln!(
                    "fold {} done: bands accept >= {:.3}, reject < {:.3}",
                    result.split.index + 1,
                    result.bands.high,
                    result.bands.low
                )
            }),
        },
    )?;
    training.finish_and_clear();
    embedding.finish_and_clear();
    print_report(&result, json, |r| {
        format!(
            "{} scans of {manifest}; scorer fitted on {}\n{r}",
            scans.len(),
            crate::train::crossval::fitted_on(&plan),
            manifest = manifest.display()
        )
    })
}

fn eval_copies(
    model: &SignatureModel,
    manifest: &Path,
    references: usize,
    copied: usize,
    json: bool,
) -> anyhow::Result<ExitCode> {
    use crate::eval::copies::{COPY_RECIPES, CopyCheckPlan, evaluate_copy_check};
    let scans = crate::dataset::load(manifest)?;
    let plan = CopyCheckPlan {
        references,
        copied,
        recipes: &COPY_RECIPES,
        accept_from: crate::matching::default_bands(Modality::Signature).high,
    };
    let bar = progress_bar("laying on references", "identities")?;
    let report = evaluate_copy_check(model, &scans, &plan, cancel_flag(), &mut follow(&bar))?;
    bar.finish_and_clear();
    print_report(&report, json, |r| {
        let pairs = |name: &str, p: &crate::eval::copies::PairOverlaps| match &p.highest {
            Some(h) => format!(
                "{name} pairs: {}, {} flagged; the closest {:.3}: {} on {}",
                p.pairs,
                p.flagged,
                h.overlap,
                h.questioned.display(),
                h.reference.display()
            ),
            None => format!("{name} pairs: none"),
        };
        let mut lines = vec![
            format!(
                "{} scans of {} identities ({} unusable), model {}; a copy from overlap {:.2}, \
                 accepted from score {:.3}",
                scans.len(),
                r.identities,
                r.unusable.len(),
                r.model,
                r.threshold,
                r.accept_from
            ),
            pairs("genuine", &r.genuine_pairs),
            pairs("skilled", &r.skilled_pairs),
            format!(
                "copies of each identity's first {} of {} references ({} identities with \
                 fewer left out):",
                r.copied,
                r.references,
                r.too_few_references.len()
            ),
        ];
        let refused = |count: usize| match count {
            0 => String::new(),
            _ => format!(" ({count} refused by the desk: no ink left to read)"),
        };
        for group in &r.groups {
            lines.push(format!(
                "  {}: {} of {} caught, {} paid unseen{}",
                group.group,
                group.caught,
                group.made,
                group.paid_unseen,
                refused(group.refused)
            ));
            for copy in r.copies.iter().filter(|c| c.group == group.group) {
                lines.push(format!(
                    "    {:<32} {:>3} of {:>3} caught, lowest overlap {}, {} paid unseen{}",
                    copy.copy,
                    copy.caught,
                    copy.made,
                    copy.lowest_overlap
                        .map_or("-".into(), |o| format!("{o:.3}")),
                    copy.paid_unseen,
                    refused(copy.refused)
                ));
            }
        }
        lines.join("\n")
    })
}

/// One FNMR-at-FMR row: the rate, its 95% interval, the threshold and the counts, and
/// whether the impostor count can support the target at all.
fn at_fmr_line(at: &crate::eval::standards::FnmrAtFmr) -> String {
    let support = if at.supported {
        String::new()
    } else {
        format!(
            " (too few impostors: {} can support an FMR down to {:.2}% only)",
            at.impostors,
            100.0 * crate::eval::standards::lowest_supported_fmr(at.impostors)
        )
    };
    format!(
        "    FNMR {:.2}% [95% CI {:.2}-{:.2}%] at FMR <= {}% (threshold {:.4}; {} of {} impostors, {} of {} genuine){support}",
        100.0 * at.fnmr,
        100.0 * at.fnmr_interval.0,
        100.0 * at.fnmr_interval.1,
        100.0 * at.target_fmr,
        at.threshold,
        at.false_matches,
        at.impostors,
        at.false_non_matches,
        at.genuine,
    )
}

fn eval_oneshot(
    model: &SignatureModel,
    runs: &Path,
    weights: OneshotWeights,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let report = crate::eval::oneshot::evaluate_runs(model, runs, weights)?;
    print_report(&report, json, |r| {
        format!(
            "{}-way one-shot over {} runs: accuracy {:.2}% ({} of {}; the encoder with the \
             shape distance at weight {} and the distortion distance at weight {})\n  \
             encoder alone             {:.2}%\n  shape distance alone      {:.2}%\n  \
             distortion distance alone {:.2}%",
            r.ways,
            r.runs,
            100.0 * r.accuracy,
            r.correct,
            r.trials,
            r.weights.shape,
            r.weights.distortion,
            100.0 * r.encoder_accuracy,
            100.0 * r.shape_accuracy,
            100.0 * r.distortion_accuracy,
        )
    })
}
