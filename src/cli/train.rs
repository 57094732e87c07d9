//! Model versions: `vouch train`, the scan lists it reads (`vouch dataset ...`), and
//! `vouch models ...` (converting the face weights, fitting a signature scorer).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Subcommand};

use super::governance::print_proposal;
use super::{cancel_flag, follow, open_as, print_report, progress_bar, write_whole_file};
use crate::context::Context;
use crate::train::{TrainConfig, TrainEvent};
use crate::types::Permission;
use crate::workflow::governance::{self, Reembedding};

#[derive(Args, Debug)]
pub struct TrainArgs {
    #[arg(long, value_enum)]
    pub modality: crate::train::TrainModality,
    /// A manifest (CSV path,identity,kind) or a folder (CEDAR layout, or one folder per
    /// identity); repeat to combine.
    #[arg(long, required = true)]
    pub data: Vec<PathBuf>,
    #[arg(long, value_enum, default_value_t = crate::train::RECIPE_LOSS)]
    pub loss: crate::train::Loss,
    #[arg(long, default_value_t = 20)]
    pub epochs: usize,
    /// Fine-tune from this model instead of random weights.
    #[arg(long)]
    pub init: Option<PathBuf>,
    #[arg(long, default_value_t = crate::train::RECIPE_LEARNING_RATE)]
    pub lr: f64,
    #[arg(long, default_value_t = 0.9)]
    pub beta1: f64,
    #[arg(long, default_value_t = 0.99)]
    pub beta2: f64,
    /// Loss margin [default: 1.0 contrastive, 0.3 triplet].
    #[arg(long)]
    pub margin: Option<f32>,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Steps per epoch [default: one pass over the training scans].
    #[arg(long)]
    pub steps_per_epoch: Option<usize>,
    /// Identities per batch.
    #[arg(long, default_value_t = 8)]
    pub identities_per_batch: usize,
    /// Share of identities held out to validate each epoch.
    #[arg(long, default_value_t = 0.2)]
    pub validation_fraction: f64,
    #[command(flatten)]
    pub recipe: ScanRecipe,
    /// Also train on each identity turned by 1, 2 and 3 quarters, as three new identities:
    /// a character on its side is another character (not for signatures).
    #[arg(long)]
    pub turned_classes: bool,
    /// The run's folder [default: models/<modality>-<time> in the user's data folder].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Continue the run in this folder from its last checkpoint.
    #[arg(long, value_name = "RUN_DIR", conflicts_with = "out")]
    pub resume: Option<PathBuf>,
    #[arg(long)]
    pub json: bool,
}

/// How training scans are prepared.
#[derive(Args, Debug)]
pub struct ScanRecipe {
    /// How ink levels reach the canvas [default: the --init model's, else paper-relative,
    /// as the shipped model].
    #[arg(long, value_enum)]
    pub normalisation: Option<crate::signature::preprocess::Normalisation>,
    /// Varied copies of each training scan (pen, paper, grey depth, a turned page, slant,
    /// JPEG), as other branches would scan it.
    #[arg(long, default_value_t = 0)]
    pub scan_variations: usize,
    /// How each batch is varied on the fly: the whole batch shifted (the shipped model's),
    /// or each scan turned, slanted, resized and shifted on its own.
    #[arg(long, value_enum, default_value_t = crate::train::Augmentation::Shift)]
    pub augmentation: crate::train::Augmentation,
    /// The canvas scans are normalised onto, HxW [default: the --init model's, else 150x220
    /// for signatures, 105x105 for handwriting].
    #[arg(long, value_name = "HxW", value_parser = parse_canvas)]
    pub canvas: Option<(u32, u32)>,
}

fn parse_canvas(text: &str) -> Result<(u32, u32), String> {
    crate::signature::parse_canvas(Some(text))
        .ok_or_else(|| format!("`{text}` is not a canvas: write HxW, e.g. 52x52"))
}

impl ScanRecipe {
    pub fn apply(&self, config: &mut TrainConfig) {
        config.normalisation = self.normalisation;
        config.scan_variations = self.scan_variations;
        config.augmentation = self.augmentation;
        config.canvas = self.canvas;
    }
}

#[derive(Subcommand, Debug)]
pub enum DatasetCommand {
    /// Write the manifest (path,identity,kind) of a folder: CEDAR's layout or one folder
    /// per identity.
    Manifest {
        dir: PathBuf,
        /// Only identities numbered in this range, e.g. 1-30 (CEDAR writers).
        #[arg(long, value_name = "A-B")]
        numbered: Option<String>,
        /// Output file [default: standard output].
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Make N-way one-shot runs (the Omniglot runs format) from an `Alphabet/character/`
    /// folder, skipping alphabets that also appear under --exclude (seen in training).
    OneshotRuns {
        #[arg(long)]
        from: PathBuf,
        #[arg(long)]
        out: PathBuf,
        #[arg(long)]
        exclude: Option<PathBuf>,
        #[arg(long, default_value_t = 20)]
        runs: usize,
        #[arg(long, default_value_t = 20)]
        ways: usize,
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// Tight face crops (the face fills the frame, like ID and badge photos) of every
    /// image a pairs file names, in the same layout, for `eval pairs --root OUT`.
    FaceCrops {
        #[arg(long)]
        pairs: PathBuf,
        #[arg(long)]
        root: PathBuf,
        #[arg(long)]
        out: PathBuf,
        /// Grey crops, as IR and many kiosk cameras give.
        #[arg(long)]
        grey: bool,
        /// Light from one side, 0 to 1 (grey crops only): the far side keeps 1 - S of
        /// its brightness.
        #[arg(long, default_value_t = 0.0, requires = "grey")]
        side_light: f32,
        #[arg(long, default_value_t = 168)]
        width: u32,
        #[arg(long, default_value_t = 192)]
        height: u32,
    },
}

#[derive(Subcommand, Debug)]
pub enum ModelsCommand {
    /// Convert the face-api.js networks (the `model/` folder of the npm package
    /// `@vladmandic/face-api`) to safetensors.
    ImportFaceapi {
        source: PathBuf,
        /// Output folder [default: the models folder].
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Convert the Silent-Face-Anti-Spoofing MiniFASNet weights (the folder with
    /// `2.7_80x80_MiniFASNetV2.pth` and `4_0_0_80x80_MiniFASNetV1SE.pth`) to safetensors.
    ImportMinifasnet {
        source: PathBuf,
        /// Output folder [default: the models folder].
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Fit the signature scorer (how the embedding and the stroke descriptor are weighed)
    /// of a signature model on writers with skilled forgeries, and write the model with it.
    FitScorer {
        /// The signature model whose encoder is kept.
        model: PathBuf,
        /// Labelled scans (manifest or folder); writers without forgeries are skipped.
        #[arg(long, required = true)]
        data: Vec<PathBuf>,
        /// Genuine scans enrolled per writer while fitting; repeat to fit one scorer on
        /// several enrollment sizes (e.g. --refs 3 --refs 5 --refs 12).
        #[arg(long, default_value = "12")]
        refs: Vec<usize>,
        #[command(flatten)]
        scorer: ScorerChoice,
        /// Output file (may be the input).
        #[arg(long)]
        out: PathBuf,
    },
    /// Run the activation gate on a trained signature model (a finished run; held-out
    /// writers it never trained on; enough comparisons; no more skilled forgeries let
    /// through than the active model) and, when it passes, propose it. The references
    /// are re-embedded first; a second supervisor approves (`vouch proposals approve`).
    Activate {
        model: PathBuf,
        /// Labelled scans (manifest or folder) of writers the model never trained on.
        #[arg(long)]
        heldout: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Propose going back to a signature model that was active before (default: the
    /// shipped one).
    Rollback {
        #[arg(long)]
        to: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
}

/// What the signature scorer weighs, beyond the enrollment sizes it is fitted on.
#[derive(Args, Debug, Clone, Copy)]
pub struct ScorerChoice {
    /// Also weigh each account's own discriminant against the fitting writers' genuine
    /// scans (exemplar LDA on the embedding).
    #[arg(long)]
    writer_dependent: bool,
    /// Also read each distance against a cohort of other writers' genuine scans: how far
    /// they lie from the same references. This many (the last) from each fitting writer.
    #[arg(long, value_name = "SCANS_PER_WRITER", value_parser = clap::value_parser!(u16).range(1..))]
    cohort: Option<u16>,
    /// Shift the score with the number of references, so that genuine and forged cross at
    /// the same score for every enrollment size up to the largest fitted: one pair of
    /// bands then serves an account with 1 reference and one with 12.
    #[arg(long)]
    align_references: bool,
    /// Read the stroke descriptor on each scan's ink fitted onto this size, HxW, as onto
    /// the encoder's canvas [default: the one the model names, else the encoder's canvas
    /// itself].
    #[arg(long, value_name = "HxW", value_parser = parse_canvas)]
    descriptor_canvas: Option<(u32, u32)>,
    /// Also fit against other writers' hands: each account scores one genuine scan from
    /// each of this many other fitting writers as forged.
    #[arg(long, value_name = "OTHER_WRITERS", value_parser = clap::value_parser!(u16).range(1..))]
    random_negatives: Option<u16>,
}

impl ScorerChoice {
    pub fn fit_options(self, references: Vec<usize>) -> crate::signature::fusion::FitOptions {
        crate::signature::fusion::FitOptions {
            references,
            writer_dependent: self.writer_dependent,
            cohort: self.cohort.map(usize::from),
            aligned_across_references: self.align_references,
            descriptor_canvas: self.descriptor_canvas,
            random_negatives: self.random_negatives.map(usize::from),
        }
    }
}

pub fn models(command: ModelsCommand, context: &Context) -> anyhow::Result<ExitCode> {
    match command {
        ModelsCommand::Activate {
            model,
            heldout,
            json,
        } => activate(context, &model, &heldout, json),
        ModelsCommand::Rollback { to, json } => {
            let (mut store, session) = open_as(context, Permission::Govern)?;
            let shipped = context.shipped_signature_model();
            let to = to.unwrap_or_else(|| shipped.clone());
            let proposal = with_reembedding(context, |reembedding| {
                governance::propose_rollback(&mut store, &session, &to, &shipped, reembedding)
            })?;
            print_proposal(&proposal, json)
        }
        ModelsCommand::ImportFaceapi { source, out } => {
            let out = out.unwrap_or_else(|| context.models_dir.clone());
            print_written(&crate::models::faceapi::import_dir(&source, &out)?)
        }
        ModelsCommand::ImportMinifasnet { source, out } => {
            let out = out.unwrap_or_else(|| context.models_dir.clone());
            print_written(&crate::models::minifasnet::import_dir(&source, &out)?)
        }
        ModelsCommand::FitScorer {
            model,
            data,
            refs,
            scorer,
            out,
        } => {
            let scans = crate::dataset::load_all(&data)?;
            let (_, bands, unusable) =
                crate::train::fit_scorer(&model, &scans, &scorer.fit_options(refs), &out)?;
            for scan in &unusable {
                eprintln!("skipped {}: {}", scan.path.display(), scan.error);
            }
            let fitted = crate::signature::SignatureModel::load(&out, &candle_core::Device::Cpu)?;
            println!("wrote {} ({})", out.display(), fitted.model_id());
            if let Some(bands) = bands {
                println!(
                    "bands its out-of-sample scores suggest: accept >= {:.3}, reject < {:.3}",
                    bands.high, bands.low
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Gates a candidate model on held-out writers and proposes it when it passes.
fn activate(
    context: &Context,
    model: &Path,
    heldout: &Path,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let (mut store, session) = open_as(context, Permission::Govern)?;
    let active = context.load_signature_model(Some(&store))?;
    let scans = crate::dataset::load(heldout)?;
    let bar = progress_bar("scoring the held-out scans", "scans")?;
    let gate = governance::gate_signature_model(
        model,
        &active,
        &scans,
        store.bands(crate::types::Modality::Signature)?,
        &context.device,
        cancel_flag(),
        &mut follow(&bar),
    )?;
    bar.finish_and_clear();
    if !gate.passed {
        print_report(&gate, json, |g| {
            let mut lines = vec!["the model did not pass its gate:".to_string()];
            lines.extend(g.reasons.iter().map(|r| format!("  {r}")));
            lines.join("\n")
        })?;
        return Ok(ExitCode::FAILURE);
    }
    let proposal = with_reembedding(context, |reembedding| {
        governance::propose_signature_model(&mut store, &session, model, &gate, reembedding)
    })?;
    print_proposal(&proposal, json)
}

/// Runs `work` with a progress bar for the references it re-embeds.
pub(super) fn with_reembedding<T>(
    context: &Context,
    work: impl FnOnce(&mut Reembedding) -> crate::Result<T>,
) -> anyhow::Result<T> {
    let bar = progress_bar("re-embedding the references", "templates")?;
    let mut progress = |p: crate::workflow::Progress| {
        bar.set_length(p.total as u64);
        bar.set_position(p.done as u64);
    };
    let mut reembedding = Reembedding {
        device: &context.device,
        cancel: cancel_flag(),
        progress: &mut progress,
    };
    let result = work(&mut reembedding);
    bar.finish_and_clear();
    Ok(result?)
}

pub fn dataset(command: DatasetCommand, context: &Context) -> anyhow::Result<ExitCode> {
    match command {
        DatasetCommand::FaceCrops {
            pairs,
            root,
            out,
            grey,
            side_light,
            width,
            height,
        } => {
            anyhow::ensure!(
                (0.0..=1.0).contains(&side_light),
                "--side-light is between 0 and 1"
            );
            let text = std::fs::read_to_string(&pairs)
                .with_context(|| format!("cannot read {}", pairs.display()))?;
            let pairs = crate::eval::parse_pairs(&text)?;
            let models = context.load_faces()?;
            let bar = progress_bar("cropping", "images")?;
            let style = crate::eval::crops::CropStyle {
                size: (width, height),
                grey,
                side_light,
            };
            let written = crate::eval::crops::write_pair_crops(
                &models,
                &pairs,
                &root,
                &out,
                style,
                cancel_flag(),
                &mut follow(&bar),
            )?;
            bar.finish_and_clear();
            println!(
                "{} crops written to {} ({} centre crops where even the full photo showed no face)",
                written.images,
                out.display(),
                written.centre_crops
            );
            Ok(ExitCode::SUCCESS)
        }
        DatasetCommand::Manifest { dir, numbered, out } => {
            dataset_manifest(&dir, numbered.as_deref(), out.as_deref())
        }
        DatasetCommand::OneshotRuns {
            from,
            out,
            exclude,
            runs,
            ways,
            seed,
        } => {
            let excluded: Vec<String> = match exclude {
                Some(dir) => std::fs::read_dir(&dir)
                    .with_context(|| format!("cannot read {}", dir.display()))?
                    .filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect(),
                None => Vec::new(),
            };
            let made = crate::eval::oneshot::make_runs(&from, &out, runs, ways, &excluded, seed)?;
            println!("{made} runs written to {}", out.display());
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Training decides nothing by itself (a model is activated only through the gate and a
/// proposal), but where the site has operator accounts it is a supervisor's job, as in
/// the window, and the audit log says who started which run.
fn authorize_training(context: &Context) -> anyhow::Result<()> {
    let accounts = match context.existing_store()? {
        Some(store) => store.has_operators()?,
        None => false,
    };
    if accounts {
        let (mut store, session) = open_as(context, Permission::Train)?;
        let command = std::env::args().collect::<Vec<_>>().join(" ");
        store.audit_append(
            session.name(),
            "train",
            &serde_json::json!({ "command": command }).to_string(),
        )?;
    }
    Ok(())
}

/// A training run's progress on a bar with `{prefix}` for the epoch: steps move it,
/// preparation and finished epochs are printed above it.
pub(super) fn show_train_event(bar: &indicatif::ProgressBar, event: &TrainEvent) {
    match event {
        TrainEvent::Prepared {
            train_identities,
            train_scans,
            validation_identities,
            validation_scans,
        } => bar.suspend(|| eprintln!(
            "training on {train_scans} scans of {train_identities} identities, validating on {validation_scans} scans of {validation_identities}"
        )),
        TrainEvent::Step {
            epoch,
            step,
            steps,
            loss,
        } => {
            bar.set_prefix(epoch.to_string());
            bar.set_length(*steps as u64);
            bar.set_position(*step as u64);
            bar.set_message(format!("{loss:.4}"));
        }
        TrainEvent::Epoch(summary) => bar.suspend(|| eprintln!(
            "epoch {}: loss {:.4}, validation EER {:.2}%{}, {:.1} images/s, {:.0} s",
            summary.epoch,
            summary.train_loss,
            100.0 * summary.validation_eer,
            if summary.best { " (best so far, saved)" } else { "" },
            summary.images_per_second,
            summary.seconds
        )),
    }
}

/// The bar `show_train_event` moves.
pub(super) fn training_bar() -> anyhow::Result<indicatif::ProgressBar> {
    let bar = progress_bar("training", "steps")?;
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "epoch {prefix} [{bar:30}] {pos}/{len} steps, loss {msg}, {eta} left",
        )?
        .progress_chars("=> "),
    );
    Ok(bar)
}

pub fn train(args: TrainArgs, context: &Context) -> anyhow::Result<ExitCode> {
    authorize_training(context)?;
    let device = &context.device;
    let scans = crate::dataset::load_all(&args.data)?;
    let out = match (&args.resume, &args.out) {
        (Some(dir), _) | (None, Some(dir)) => dir.clone(),
        (None, None) => context.runs_dir().join(format!(
            "{}-{}",
            args.modality.as_str(),
            chrono::Utc::now().format("%Y%m%d-%H%M%S")
        )),
    };
    let mut config = TrainConfig::new(args.modality, args.loss, args.epochs, out);
    config.learning_rate = args.lr;
    config.beta1 = args.beta1;
    config.beta2 = args.beta2;
    if let Some(margin) = args.margin {
        config.margin = margin;
    }
    config.seed = args.seed;
    config.steps_per_epoch = args.steps_per_epoch;
    config.identities_per_batch = args.identities_per_batch;
    config.validation_fraction = args.validation_fraction;
    args.recipe.apply(&mut config);
    config.turned_classes = args.turned_classes;
    config.init = args.init.clone();
    config.resume = args.resume.is_some();
    config.command = std::env::args().collect::<Vec<_>>().join(" ");
    let bar = training_bar()?;
    let report = crate::train::train(&config, &scans, device, cancel_flag(), &mut |event| {
        show_train_event(&bar, &event)
    })?;
    bar.finish_and_clear();
    print_report(&report, args.json, |r| {
        let model = r
            .model
            .as_ref()
            .map_or("no epoch finished".to_string(), |m| m.display().to_string());
        format!(
            "{}model: {model}\nbest validation EER: {}\nscorer: {}\nresume with: vouch train --resume {} ...",
            if r.cancelled { "stopped early; " } else { "" },
            r.best_validation_eer
                .map_or("-".to_string(), |e| format!("{:.2}%", 100.0 * e)),
            r.scorer.as_deref().unwrap_or("-"),
            r.out.display()
        )
    })?;
    Ok(if report.cancelled {
        ExitCode::from(130)
    } else {
        ExitCode::SUCCESS
    })
}

fn dataset_manifest(
    dir: &Path,
    numbered: Option<&str>,
    out: Option<&Path>,
) -> anyhow::Result<ExitCode> {
    // Absolute paths: the manifest may be read from anywhere.
    let dir = dir
        .canonicalize()
        .with_context(|| format!("cannot read {}", dir.display()))?;
    let mut scans = crate::dataset::load(&dir)?;
    if let Some(range) = numbered {
        let (low, high) = range
            .split_once('-')
            .and_then(|(a, b)| Some((a.parse().ok()?, b.parse().ok()?)))
            .with_context(|| format!("--numbered takes A-B, not {range}"))?;
        scans = crate::dataset::numbered_between(scans, low..=high);
    }
    let mut bytes = Vec::new();
    crate::dataset::write_manifest(&scans, &mut bytes)?;
    match out {
        Some(path) => write_whole_file(path, &bytes)?,
        None => std::io::Write::write_all(&mut std::io::stdout(), &bytes)?,
    }
    Ok(ExitCode::SUCCESS)
}

fn print_written(paths: &[PathBuf]) -> anyhow::Result<ExitCode> {
    for path in paths {
        println!("wrote {}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}
