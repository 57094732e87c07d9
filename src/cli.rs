//! The headless front end: `vouch <subcommand>`. With no subcommand the window opens.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use serde::Serialize;

use crate::device::DeviceChoice;
use crate::face::{Face, FaceModels};
use crate::gallery::Gallery;
use crate::matching::{Bands, DEFAULT_FACE_THRESHOLD, compare_faces};
use crate::signature::{SIGNATURE_MODEL_FILE, SignatureModel};
use crate::store::{AttendanceRecord, Modality, Punch, Store};
use crate::workflow::{CropEmbedder, EnrollRequest};
use crate::{eval, imageio, models, perf, workflow};

#[derive(Parser, Debug)]
#[command(
    name = "vouch",
    version,
    about = "Biometric enrollment and verification"
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Args, Debug, Clone)]
pub struct GlobalArgs {
    /// Where the networks run.
    #[arg(long, global = true, value_enum, default_value_t = DeviceChoice::Auto)]
    pub device: DeviceChoice,
    /// Folder with the model weights [default: $VOUCH_MODELS, or the models/ that ships with vouch].
    #[arg(long, global = true)]
    pub models: Option<PathBuf>,
    /// Lowest detector score accepted as a face (0..1).
    #[arg(long, global = true, default_value_t = crate::face::DEFAULT_MIN_DETECTION_SCORE)]
    pub min_face_score: f32,
    /// The signature model [default: signature_encoder.safetensors in the models folder].
    #[arg(long, global = true)]
    pub signature_model: Option<PathBuf>,
    /// The database [default: vouch.db in the user's data folder].
    #[arg(long, global = true)]
    pub db: Option<PathBuf>,
    /// Who is acting, for the audit log [default: $USER].
    #[arg(long, global = true)]
    pub operator: Option<String>,
    /// More logging (-v info, -vv debug); RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Face detection, embedding and 1:1 comparison.
    #[command(subcommand)]
    Face(FaceCommand),
    /// Accuracy on labelled data.
    #[command(subcommand)]
    Eval(EvalCommand),
    /// Speed of the pipeline stages on this machine.
    #[command(subcommand)]
    Bench(BenchCommand),
    /// Model weights.
    #[command(subcommand)]
    Models(ModelsCommand),
    /// Enroll a person from reference photos (one transaction: all good photos or nothing).
    Enroll {
        #[arg(long)]
        name: String,
        /// Employee number, account number, ...
        #[arg(long)]
        id: String,
        /// Enroll even if a face already matches ANOTHER enrolled person.
        #[arg(long)]
        force: bool,
        #[arg(required = true)]
        images: Vec<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Enroll many people from a CSV manifest (columns id,name,image; one row per
    /// image), each person in their own transaction. Ctrl-C stops between people.
    EnrollBatch {
        manifest: PathBuf,
        #[arg(long)]
        force: bool,
        #[arg(long)]
        json: bool,
    },
    /// Embed every stored crop with the current model (after a model change).
    Reembed {
        #[arg(long)]
        json: bool,
    },
    /// Decision thresholds per modality.
    #[command(subcommand)]
    Settings(SettingsCommand),
    /// Attendance as CSV or JSON, or a backup of the whole database.
    #[command(subcommand)]
    Export(ExportCommand),
    /// Attendance from CSV or JSON, or restore a backup.
    #[command(subcommand)]
    Import(ImportCommand),
    /// 1:1: does the photo show the person enrolled under `--id`?
    Verify {
        #[arg(long)]
        id: String,
        image: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// 1:N: who among the enrolled is this?
    Identify {
        image: PathBuf,
        #[arg(long, default_value_t = 5)]
        top: usize,
        #[arg(long)]
        json: bool,
    },
    /// Kiosk punch: identify the face and record a check-in or check-out.
    Checkin {
        image: PathBuf,
        /// A repeat punch within this many minutes is ignored.
        #[arg(long, default_value_t = 10)]
        window_minutes: i64,
        #[arg(long)]
        json: bool,
    },
    /// Train a Siamese encoder on labelled scans (a new model version; the shipped one is
    /// never overwritten). Ctrl-C stops cleanly, keeping the last finished epoch.
    Train(TrainArgs),
    /// Labelled scan lists (manifests) for training and evaluation.
    #[command(subcommand)]
    Dataset(DatasetCommand),
    /// Signature verification against references.
    #[command(subcommand)]
    Signature(SignatureCommand),
    /// Enrolled people.
    #[command(subcommand)]
    People(PeopleCommand),
    /// The hash-chained audit log.
    #[command(subcommand)]
    Audit(AuditCommand),
}

#[derive(Subcommand, Debug)]
pub enum PeopleCommand {
    List {
        #[arg(long)]
        json: bool,
    },
    Show {
        id: String,
        #[arg(long, value_enum, default_value_t = Modality::Face)]
        modality: Modality,
        #[arg(long)]
        json: bool,
    },
    /// Delete a person with their templates and crops (the audit keeps a row).
    Delete {
        id: String,
        #[arg(long, value_enum, default_value_t = Modality::Face)]
        modality: Modality,
        /// Confirm: without it nothing is deleted.
        #[arg(long)]
        yes: bool,
    },
}

#[derive(Args, Debug)]
pub struct TrainArgs {
    #[arg(long, value_enum)]
    pub modality: crate::train::TrainModality,
    /// A manifest (CSV path,identity,kind) or a folder (CEDAR layout, or one folder per
    /// identity); repeat to combine.
    #[arg(long, required = true)]
    pub data: Vec<PathBuf>,
    #[arg(long, value_enum, default_value_t = crate::train::Loss::Triplet)]
    pub loss: crate::train::Loss,
    #[arg(long, default_value_t = 20)]
    pub epochs: usize,
    /// Fine-tune from this model instead of random weights.
    #[arg(long)]
    pub init: Option<PathBuf>,
    #[arg(long, default_value_t = 6e-5)]
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
    /// The run's folder [default: models/<modality>-<time> in the user's data folder].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Continue the run in this folder from its last checkpoint.
    #[arg(long, value_name = "RUN_DIR", conflicts_with = "out")]
    pub resume: Option<PathBuf>,
    #[arg(long)]
    pub json: bool,
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
}

#[derive(Subcommand, Debug)]
pub enum SignatureCommand {
    /// Score a questioned signature against one or more references.
    Compare {
        #[arg(long = "ref", required = true)]
        references: Vec<PathBuf>,
        questioned: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Enroll an account holder's reference signatures (all good scans in one transaction).
    Enroll {
        #[arg(long)]
        name: String,
        /// Account number.
        #[arg(long)]
        id: String,
        #[arg(required = true)]
        scans: Vec<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Verify the signature on a scan against the account's enrolled references.
    Verify {
        #[arg(long)]
        id: String,
        scan: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Embed the enrolled signatures' stored canvases with the current signature model.
    Reembed {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum SettingsCommand {
    /// The accept / review / reject bands of each modality.
    Show {
        #[arg(long)]
        json: bool,
    },
    /// Accept at a score of HIGH or more, reject under LOW, send to review between.
    SetBands {
        #[arg(long, value_enum)]
        modality: Modality,
        #[arg(long)]
        low: f32,
        #[arg(long)]
        high: f32,
    },
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum ExportFormat {
    Csv,
    Json,
}

#[derive(Subcommand, Debug)]
pub enum ExportCommand {
    /// Check-ins and check-outs, oldest first.
    Attendance {
        #[arg(long, value_enum, default_value_t = ExportFormat::Csv)]
        format: ExportFormat,
        /// Only events at or after this RFC 3339 time (e.g. 2026-11-01T00:00:00Z).
        #[arg(long)]
        from: Option<String>,
        /// Only events at or before this time.
        #[arg(long)]
        to: Option<String>,
        /// Output file [default: standard output].
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// A consistent copy of the whole database (SQLite online backup; others may keep
    /// working meanwhile).
    Backup { out: PathBuf },
}

#[derive(Subcommand, Debug)]
pub enum ImportCommand {
    /// Attendance events from `export attendance` (CSV or JSON); repeats are skipped.
    Attendance {
        file: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Replace the database with a backup (checked first: it must be an intact Vouch
    /// database with an unbroken audit log).
    Backup {
        file: PathBuf,
        /// Confirm: without it nothing is replaced.
        #[arg(long)]
        yes: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum AuditCommand {
    /// Recompute the chain; exits non-zero if any row was edited or deleted.
    Verify {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum FaceCommand {
    /// Every face in the image: box, detector score, 68 landmarks, 128-D embedding.
    Embed {
        image: PathBuf,
        /// Also save each face's aligned 150x150 chip as DIR/<image stem>_face<N>.png.
        #[arg(long, value_name = "DIR")]
        chips: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Distance, similarity score in [0, 1] and decision for the main face of each image
    /// (the largest, weighted by detector confidence, among the faces covering the
    /// image's centre, or among all when none does).
    Compare {
        first: PathBuf,
        second: PathBuf,
        /// Decision threshold on the score.
        #[arg(long, default_value_t = DEFAULT_FACE_THRESHOLD)]
        threshold: f32,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum EvalCommand {
    /// Writer-independent verification: per identity, enrol the first K genuine scans and
    /// score the other genuines, its forgeries (skilled) and other identities (random).
    Verify {
        #[arg(long, value_enum, default_value_t = crate::train::TrainModality::Signature)]
        modality: crate::train::TrainModality,
        /// CSV path,identity,kind (or a folder, read as `vouch dataset manifest` does).
        #[arg(long)]
        manifest: PathBuf,
        /// Genuine references per identity; repeat for several (e.g. --refs 1 --refs 5).
        #[arg(long, default_value = "12")]
        refs: Vec<usize>,
        #[arg(long)]
        json: bool,
    },
    /// N-way one-shot classification in the standard runs format (run01..run20, each with
    /// training/, test/ and class_labels.txt).
    Oneshot {
        #[arg(long)]
        runs: PathBuf,
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

#[derive(Subcommand, Debug)]
pub enum BenchCommand {
    /// Median milliseconds for detect, landmarks, align, embed and the whole pipeline.
    Face {
        /// Photo with one face [default: tests/data/astronaut.png].
        #[arg(long)]
        image: Option<PathBuf>,
        #[arg(long, default_value_t = 30)]
        iterations: usize,
        #[arg(long)]
        json: bool,
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
    /// Fit the signature scorer (how the embedding and the stroke descriptor are weighed)
    /// of a signature model on writers with skilled forgeries, and write the model with it.
    FitScorer {
        /// The signature model whose encoder is kept.
        model: PathBuf,
        /// Labelled scans (manifest or folder); writers without forgeries are skipped.
        #[arg(long, required = true)]
        data: Vec<PathBuf>,
        /// Genuine scans enrolled per writer while fitting.
        #[arg(long, default_value_t = 12)]
        refs: usize,
        /// Output file (may be the input).
        #[arg(long)]
        out: PathBuf,
    },
}

pub fn run(args: impl IntoIterator<Item = OsString>) -> anyhow::Result<ExitCode> {
    let cli = Cli::parse_from(args);
    init_logging(cli.global.verbose);
    let models_dir = cli
        .global
        .models
        .clone()
        .unwrap_or_else(models::default_dir);
    let Some(command) = cli.command else {
        crate::gui::run(crate::gui::worker::WorkerConfig::new(
            models_dir,
            cli.global.signature_model.clone(),
            cli.global.db.clone().unwrap_or_else(default_db),
            cli.global.device,
            operator(&cli.global),
        )?)?;
        return Ok(ExitCode::SUCCESS);
    };
    let load = || -> anyhow::Result<FaceModels> {
        let device = cli.global.device.open()?;
        let mut models = FaceModels::load(&models_dir, &device)?;
        models.min_detection_score = cli.global.min_face_score;
        Ok(models)
    };
    let load_signature = || -> anyhow::Result<SignatureModel> {
        let device = cli.global.device.open()?;
        let path = cli
            .global
            .signature_model
            .clone()
            .unwrap_or_else(|| models_dir.join(SIGNATURE_MODEL_FILE));
        Ok(SignatureModel::load(&path, &device)?)
    };
    match command {
        Command::Face(FaceCommand::Embed { image, chips, json }) => {
            face_embed(&load()?, &image, chips.as_deref(), json)
        }
        Command::Face(FaceCommand::Compare {
            first,
            second,
            threshold,
            json,
        }) => face_compare(&load()?, &first, &second, threshold, json),
        Command::Eval(EvalCommand::Pairs {
            pairs,
            root,
            folds,
            limit,
            json,
        }) => eval_pairs(&load()?, &pairs, &root, folds, limit, json),
        Command::Bench(BenchCommand::Face {
            image,
            iterations,
            json,
        }) => {
            let image = image.unwrap_or_else(|| {
                PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/astronaut.png")
            });
            let picture = imageio::load_rgb(&image)?;
            let timings = perf::time_face_pipeline(&load()?, &picture, iterations)?;
            print_report(&timings, json, |t| {
                format!(
                    "device {}, {}x{} image, median of {}:\n  detect {:.2} ms\n  landmarks {:.2} ms\n  align {:.2} ms\n  embed {:.2} ms (batch of 8: {:.2} ms per chip)\n  whole pipeline {:.2} ms",
                    t.device,
                    t.image_width,
                    t.image_height,
                    t.iterations,
                    t.detect_ms,
                    t.landmarks_ms,
                    t.align_ms,
                    t.embed_ms,
                    t.embed_batch8_per_chip_ms,
                    t.pipeline_ms
                )
            })
        }
        Command::Enroll {
            name,
            id,
            force,
            images,
            json,
        } => enroll(
            &load()?,
            &mut open_store(&cli.global)?,
            &operator(&cli.global),
            &EnrollRequest {
                name,
                external_id: id,
                images,
            },
            force,
            json,
        ),
        Command::EnrollBatch {
            manifest,
            force,
            json,
        } => enroll_batch(
            &load()?,
            &mut open_store(&cli.global)?,
            &operator(&cli.global),
            &manifest,
            force,
            json,
        ),
        Command::Reembed { json } => reembed(
            &load()?,
            &mut open_store(&cli.global)?,
            &operator(&cli.global),
            json,
        ),
        Command::Settings(SettingsCommand::Show { json }) => {
            let store = open_store(&cli.global)?;
            let bands: Vec<(Modality, Bands)> = [Modality::Face, Modality::Signature]
                .into_iter()
                .map(|m| Ok((m, store.bands(m)?)))
                .collect::<anyhow::Result<_>>()?;
            print_report(&bands, json, |bands| {
                bands
                    .iter()
                    .map(|(m, b)| {
                        format!(
                            "{}: accept >= {:.3}, review, reject < {:.3}",
                            m.as_str(),
                            b.high,
                            b.low
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            })
        }
        Command::Settings(SettingsCommand::SetBands {
            modality,
            low,
            high,
        }) => {
            open_store(&cli.global)?.set_bands(
                modality,
                Bands { low, high },
                &operator(&cli.global),
            )?;
            println!(
                "{}: accept >= {high}, reject < {low} (saved, audited)",
                modality.as_str()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Export(ExportCommand::Attendance {
            format,
            from,
            to,
            out,
        }) => export_attendance(
            &open_store(&cli.global)?,
            format,
            from.as_deref(),
            to.as_deref(),
            out.as_deref(),
        ),
        Command::Export(ExportCommand::Backup { out }) => {
            open_store(&cli.global)?.backup_to(&out)?;
            println!("backup written to {}", out.display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Import(ImportCommand::Attendance { file, json }) => import_attendance(
            &mut open_store(&cli.global)?,
            &operator(&cli.global),
            &file,
            json,
        ),
        Command::Import(ImportCommand::Backup { file, yes }) => {
            if !yes {
                anyhow::bail!(
                    "this replaces everything in the database with {}: add --yes to confirm",
                    file.display()
                );
            }
            open_store(&cli.global)?.restore_from(&file, &operator(&cli.global))?;
            println!("restored from {}", file.display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Verify { id, image, json } => verify(
            &load()?,
            &mut open_store(&cli.global)?,
            &operator(&cli.global),
            &id,
            &image,
            json,
        ),
        Command::Identify { image, top, json } => {
            identify(&load()?, &open_store(&cli.global)?, &image, top, json)
        }
        Command::People(PeopleCommand::List { json }) => {
            let people = open_store(&cli.global)?.people(None)?;
            print_report(&people, json, |people| {
                people
                    .iter()
                    .map(|p| {
                        format!(
                            "{}\t{}\t{}\t{} template(s)\t{}",
                            p.external_id, p.name, p.modality, p.templates, p.created_at
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            })
        }
        Command::Checkin {
            image,
            window_minutes,
            json,
        } => checkin(
            &load()?,
            &mut open_store(&cli.global)?,
            &operator(&cli.global),
            &image,
            chrono::Duration::minutes(window_minutes),
            json,
        ),
        Command::People(PeopleCommand::Show { id, modality, json }) => {
            let person = open_store(&cli.global)?.person_by_external_id(&id, modality)?;
            print_report(&person, json, |p| {
                format!(
                    "{} ({})\nmodality {}\nreferences {}\nenrolled {}",
                    p.name, p.external_id, p.modality, p.templates, p.created_at
                )
            })
        }
        Command::People(PeopleCommand::Delete { id, modality, yes }) => {
            let mut store = open_store(&cli.global)?;
            let person = store.person_by_external_id(&id, modality)?;
            if !yes {
                anyhow::bail!(
                    "this deletes {} ({}) and all their templates: add --yes to confirm",
                    person.name,
                    person.external_id
                );
            }
            store.delete_person(person.id, &operator(&cli.global))?;
            println!("deleted {} ({})", person.name, person.external_id);
            Ok(ExitCode::SUCCESS)
        }
        Command::Audit(AuditCommand::Verify { json }) => {
            let report = open_store(&cli.global)?.audit_verify()?;
            print_report(&report, json, |r| match (&r.problem, r.first_bad_id) {
                (Some(problem), Some(id)) => format!(
                    "audit log BROKEN at row {id}: {problem} ({} rows read)",
                    r.rows
                ),
                _ => format!("audit log intact: {} rows", r.rows),
            })?;
            Ok(if report.intact {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Train(args) => train(args, &cli.global),
        Command::Dataset(DatasetCommand::Manifest { dir, numbered, out }) => {
            dataset_manifest(&dir, numbered.as_deref(), out.as_deref())
        }
        Command::Dataset(DatasetCommand::OneshotRuns {
            from,
            out,
            exclude,
            runs,
            ways,
            seed,
        }) => {
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
        Command::Eval(EvalCommand::Verify {
            modality,
            manifest,
            refs,
            json,
        }) => eval_verify(&load_signature()?, modality, &manifest, &refs, json),
        Command::Eval(EvalCommand::Oneshot { runs, json }) => {
            eval_oneshot(&load_signature()?, &runs, json)
        }
        Command::Signature(SignatureCommand::Compare {
            references,
            questioned,
            json,
        }) => signature_compare(
            &load_signature()?,
            &open_store_bands(&cli.global)?,
            &references,
            &questioned,
            json,
        ),
        Command::Signature(SignatureCommand::Enroll {
            name,
            id,
            scans,
            json,
        }) => signature_enroll(
            &load_signature()?,
            &mut open_store(&cli.global)?,
            &operator(&cli.global),
            &EnrollRequest {
                name,
                external_id: id,
                images: scans,
            },
            json,
        ),
        Command::Signature(SignatureCommand::Verify { id, scan, json }) => signature_verify(
            &load_signature()?,
            &mut open_store(&cli.global)?,
            &operator(&cli.global),
            &id,
            &scan,
            json,
        ),
        Command::Signature(SignatureCommand::Reembed { json }) => reembed(
            &load_signature()?,
            &mut open_store(&cli.global)?,
            &operator(&cli.global),
            json,
        ),
        Command::Models(ModelsCommand::ImportFaceapi { source, out }) => {
            let out = out.unwrap_or(models_dir);
            for path in models::faceapi::import_dir(&source, &out)? {
                println!("wrote {}", path.display());
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Models(ModelsCommand::FitScorer {
            model,
            data,
            refs,
            out,
        }) => {
            let mut scans = Vec::new();
            for source in &data {
                scans.extend(crate::dataset::load(source)?);
            }
            let (_, unusable) = crate::signature::fit_scorer(&model, &scans, refs, &out)?;
            for (path, reason) in &unusable {
                eprintln!("skipped {}: {reason}", path.display());
            }
            let fitted = crate::signature::SignatureModel::load(&out, &candle_core::Device::Cpu)?;
            println!("wrote {} ({})", out.display(), fitted.model_id());
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    // A second call (tests run several CLIs in one process) keeps the first subscriber.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

fn print_report<T: Serialize>(
    value: &T,
    json: bool,
    text: impl Fn(&T) -> String,
) -> anyhow::Result<ExitCode> {
    if json {
        println!("{}", serde_json::to_string_pretty(value)?);
    } else {
        println!("{}", text(value));
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Serialize)]
struct EmbedOutput<'a> {
    image: &'a Path,
    width: u32,
    height: u32,
    model: String,
    faces: Vec<Face>,
}

fn face_embed(
    models: &FaceModels,
    image: &Path,
    chips: Option<&Path>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let picture = imageio::load_rgb(image)?;
    let faces = models.analyze(&picture)?;
    if faces.is_empty() {
        return Err(crate::Error::NoFace(image.display().to_string()).into());
    }
    if let Some(dir) = chips {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let stem = image.file_stem().unwrap_or_default().to_string_lossy();
        for (index, face) in faces.iter().enumerate() {
            let path = dir.join(format!("{stem}_face{index}.png"));
            crate::face::align_chip(&picture, &face.landmarks)?
                .save(&path)
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
    }
    let output = EmbedOutput {
        image,
        width: picture.width(),
        height: picture.height(),
        model: models.model_id(),
        faces,
    };
    print_report(&output, json, |o| {
        let mut lines = vec![format!(
            "{} face(s) in {} ({}x{})",
            o.faces.len(),
            o.image.display(),
            o.width,
            o.height
        )];
        for (index, face) in o.faces.iter().enumerate() {
            lines.push(format!(
                "  #{index}: box x={:.0} y={:.0} w={:.0} h={:.0}, score {:.3}, embedding [{:.4}, {:.4}, {:.4}, ...]",
                face.bbox.x, face.bbox.y, face.bbox.width, face.bbox.height, face.detection_score,
                face.embedding[0], face.embedding[1], face.embedding[2]
            ));
        }
        lines.join("\n")
    })
}

#[derive(Serialize)]
struct CompareOutput<'a> {
    first: &'a Path,
    second: &'a Path,
    faces_in_first: usize,
    faces_in_second: usize,
    model: String,
    #[serde(flatten)]
    comparison: crate::matching::Comparison,
    decision: &'static str,
}

fn face_compare(
    models: &FaceModels,
    first: &Path,
    second: &Path,
    threshold: f32,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let main_face = |path: &Path| -> anyhow::Result<(Face, usize)> {
        let picture = imageio::load_rgb(path)?;
        let (face, count) = models.main_face(&picture, &path.display().to_string())?;
        if count > 1 {
            tracing::warn!(path = %path.display(), count, "several faces; comparing the main one (central, then largest)");
        }
        Ok((face, count))
    };
    let (a, faces_in_first) = main_face(first)?;
    let (b, faces_in_second) = main_face(second)?;
    let comparison = compare_faces(&a.embedding, &b.embedding, threshold);
    let output = CompareOutput {
        first,
        second,
        faces_in_first,
        faces_in_second,
        model: models.model_id(),
        comparison,
        decision: if comparison.same_person {
            "same person"
        } else {
            "different people"
        },
    };
    print_report(&output, json, |o| {
        format!(
            "{}: distance {:.4}, score {:.3} (threshold {:.3})",
            o.decision, o.comparison.distance, o.comparison.score, o.comparison.threshold
        )
    })
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
    let mut pairs = eval::parse_pairs(&text)?;
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
    let (scored, images, failed) =
        eval::score_pairs(models, &pairs, root, cancel_flag(), &mut |done, total| {
            bar.set_length(total as u64);
            bar.set_position(done as u64);
        })?;
    bar.finish_and_clear();
    let report = eval::report(
        &scored,
        images,
        failed,
        DEFAULT_FACE_THRESHOLD,
        folds,
        start.elapsed().as_secs_f64(),
    );
    print_report(&report, json, |r| {
        let mut text = format!(
            "{} pairs ({} same, {} different), {} images, {} without a detected face\nbest threshold: distance {:.3}, accuracy {:.2}%\ndefault threshold: distance {:.3}, accuracy {:.2}%",
            r.pairs,
            r.same_pairs,
            r.different_pairs,
            r.images,
            r.failed_detections,
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

fn default_db() -> PathBuf {
    dirs::data_dir()
        .unwrap_or_else(|| PathBuf::from("."))
        .join("vouch")
        .join("vouch.db")
}

fn open_store(global: &GlobalArgs) -> anyhow::Result<Store> {
    let path = global.db.clone().unwrap_or_else(default_db);
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    Ok(Store::open(&path)?)
}

fn operator(global: &GlobalArgs) -> String {
    global
        .operator
        .clone()
        .or_else(|| std::env::var("USER").ok())
        .unwrap_or_else(|| "unknown".to_string())
}

fn enroll(
    models: &FaceModels,
    store: &mut Store,
    actor: &str,
    request: &EnrollRequest,
    force: bool,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let mut gallery = Gallery::of_faces(store, &models.model_id())?;
    let report = workflow::enroll_face(models, store, &mut gallery, request, force, actor)?;
    print_enrollment(&report, json, "reference(s)")
}

/// The images that were refused on stderr, then the enrollment.
fn print_enrollment(
    report: &workflow::EnrollReport,
    json: bool,
    references: &str,
) -> anyhow::Result<ExitCode> {
    for rejected in &report.rejected {
        eprintln!("rejected {}: {}", rejected.path.display(), rejected.reason);
    }
    print_report(report, json, |r| {
        format!(
            "enrolled {} ({}) with {} {references}",
            r.name, r.external_id, r.enrolled
        )
    })
}

fn enroll_batch(
    models: &FaceModels,
    store: &mut Store,
    actor: &str,
    manifest: &Path,
    force: bool,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let requests = workflow::read_manifest(manifest)?;
    let bar = progress_bar("enrolling", "people")?;
    let report = workflow::enroll_batch(
        models,
        store,
        &requests,
        force,
        actor,
        cancel_flag(),
        &mut |p| {
            bar.set_length(p.total as u64);
            bar.set_position(p.done as u64);
            bar.set_message(format!("enrolling {}", p.current));
        },
    )?;
    bar.finish_and_clear();
    print_report(&report, json, |r| {
        let mut lines = vec![format!(
            "enrolled {} people, {} failed{}",
            r.enrolled.len(),
            r.failed.len(),
            if r.not_started > 0 {
                format!(", cancelled before {} more", r.not_started)
            } else {
                String::new()
            }
        )];
        for failure in &r.failed {
            lines.push(format!("  {}: {}", failure.external_id, failure.reason));
        }
        for enrolled in &r.enrolled {
            for rejected in &enrolled.rejected {
                lines.push(format!(
                    "  {}: rejected {}: {}",
                    enrolled.external_id,
                    rejected.path.display(),
                    rejected.reason
                ));
            }
        }
        lines.join("\n")
    })?;
    Ok(if report.failed.is_empty() && report.not_started == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn verify(
    models: &FaceModels,
    store: &mut Store,
    actor: &str,
    external_id: &str,
    image: &Path,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let picture = imageio::load_rgb(image)?;
    let report = workflow::verify_face(
        models,
        store,
        external_id,
        &picture,
        &image.display().to_string(),
        actor,
    )?;
    print_report(&report, json, |o| {
        format!(
            "{}: {} ({}), best score {:.3}, mean {:.3} over {} reference(s)",
            o.decision.as_str(),
            o.name,
            o.external_id,
            o.best_score,
            o.mean_score,
            o.references
        )
    })
}

fn identify(
    models: &FaceModels,
    store: &Store,
    image: &Path,
    top: usize,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let gallery = Gallery::of_faces(store, &models.model_id())?;
    let picture = imageio::load_rgb(image)?;
    let candidates = workflow::identify_face(
        models,
        store,
        &gallery,
        &picture,
        &image.display().to_string(),
        top,
    )?;
    print_report(&candidates, json, |candidates| {
        if candidates.is_empty() {
            return "nobody is enrolled".to_string();
        }
        candidates
            .iter()
            .map(|c| {
                format!(
                    "{:.3}\t{}\t{} ({})",
                    c.score,
                    c.decision.as_str(),
                    c.name,
                    c.external_id
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    })
}

fn checkin(
    models: &FaceModels,
    store: &mut Store,
    actor: &str,
    image: &Path,
    repeat_window: chrono::Duration,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let gallery = Gallery::of_faces(store, &models.model_id())?;
    let picture = imageio::load_rgb(image)?;
    let (face, _) = models.main_face(&picture, &image.display().to_string())?;
    let report = workflow::checkin(store, &gallery, &face.embedding, repeat_window, actor)?;
    print_report(&report, json, |o| match &o.punch {
        Punch::Recorded { kind, at } => {
            format!(
                "check-{kind}: {} ({}) at {at}, score {:.3}",
                o.name, o.external_id, o.score
            )
        }
        Punch::Repeat { last_kind, last_at } => format!(
            "ignored: {} ({}) already checked {last_kind} at {last_at}",
            o.name, o.external_id
        ),
    })
}

fn reembed(
    models: &dyn CropEmbedder,
    store: &mut Store,
    actor: &str,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let bar = progress_bar("re-embedding", "templates")?;
    let report = workflow::reembed(store, models, actor, cancel_flag(), &mut |p| {
        bar.set_length(p.total as u64);
        bar.set_position(p.done as u64);
    })?;
    bar.finish_and_clear();
    print_report(&report, json, |r| {
        format!(
            "{} template(s) embedded by {}{}{}",
            r.templates,
            r.model,
            if r.unreadable_crops > 0 {
                format!(", {} unreadable crop(s) skipped", r.unreadable_crops)
            } else {
                String::new()
            },
            if r.cancelled {
                " (cancelled: run again to finish)"
            } else {
                ""
            }
        )
    })?;
    Ok(if report.cancelled {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn progress_bar(message: &str, unit: &str) -> anyhow::Result<indicatif::ProgressBar> {
    let bar = indicatif::ProgressBar::new(0).with_style(
        indicatif::ProgressStyle::with_template(&format!(
            "{{msg}} [{{bar:40}}] {{pos}}/{{len}} {unit}, {{eta}} left"
        ))?
        .progress_chars("=> "),
    );
    bar.set_message(message.to_string());
    Ok(bar)
}

/// Set by Ctrl-C: long jobs stop at their next safe point (between transactions).
fn cancel_flag() -> &'static AtomicBool {
    static CANCEL: AtomicBool = AtomicBool::new(false);
    static HANDLER: std::sync::Once = std::sync::Once::new();
    HANDLER.call_once(|| {
        if let Err(error) = ctrlc::set_handler(|| CANCEL.store(true, Ordering::Relaxed)) {
            tracing::warn!(%error, "Ctrl-C will not stop long jobs cleanly");
        }
    });
    &CANCEL
}

fn export_attendance(
    store: &Store,
    format: ExportFormat,
    from: Option<&str>,
    to: Option<&str>,
    out: Option<&Path>,
) -> anyhow::Result<ExitCode> {
    let records = store.attendance(from, to)?;
    let mut bytes = Vec::new();
    match format {
        ExportFormat::Json => serde_json::to_writer_pretty(&mut bytes, &records)?,
        ExportFormat::Csv => {
            let mut writer = csv::Writer::from_writer(&mut bytes);
            for record in &records {
                writer.serialize(record)?;
            }
            writer.flush()?;
        }
    }
    match out {
        Some(path) => {
            write_whole_file(path, &bytes)?;
            eprintln!("{} event(s) written to {}", records.len(), path.display());
        }
        None => std::io::Write::write_all(&mut std::io::stdout(), &bytes)?,
    }
    Ok(ExitCode::SUCCESS)
}

/// Writes beside the target and renames, so a reader never sees half a file.
fn write_whole_file(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let partial = path.with_extension("partial");
    std::fs::write(&partial, bytes)
        .with_context(|| format!("cannot write {}", partial.display()))?;
    std::fs::rename(&partial, path).with_context(|| format!("cannot write {}", path.display()))
}

fn import_attendance(
    store: &mut Store,
    actor: &str,
    file: &Path,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let records: Vec<AttendanceRecord> = if text.trim_start().starts_with('[') {
        serde_json::from_str(&text)
            .with_context(|| format!("{} is not an attendance JSON export", file.display()))?
    } else {
        csv::Reader::from_reader(text.as_bytes())
            .deserialize()
            .collect::<Result<_, _>>()
            .with_context(|| {
                format!(
                    "{} is not an attendance CSV (columns at,kind,score,external_id,name)",
                    file.display()
                )
            })?
    };
    let (added, skipped) = store.import_attendance(&records, actor)?;
    print_report(
        &serde_json::json!({ "added": added, "skipped": skipped }),
        json,
        |_| format!("{added} event(s) added, {skipped} already present"),
    )
}

/// The bands of the database when there is one; the defaults otherwise (a comparison
/// outside any account needs no database).
fn open_store_bands(global: &GlobalArgs) -> anyhow::Result<Bands> {
    let path = global.db.clone().unwrap_or_else(default_db);
    if !path.exists() {
        return Ok(crate::matching::default_bands(Modality::Signature));
    }
    Ok(Store::open(&path)?.bands(Modality::Signature)?)
}

fn train(args: TrainArgs, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    use crate::train::{TrainConfig, TrainEvent};
    let device = global.device.open()?;
    let mut scans = Vec::new();
    for source in &args.data {
        scans.extend(crate::dataset::load(source)?);
    }
    let out = match (&args.resume, &args.out) {
        (Some(dir), _) | (None, Some(dir)) => dir.clone(),
        (None, None) => default_db().with_file_name("models").join(format!(
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
    config.init = args.init.clone();
    config.resume = args.resume.is_some();
    config.command = std::env::args().collect::<Vec<_>>().join(" ");
    let bar = progress_bar("training", "steps")?;
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "epoch {prefix} [{bar:30}] {pos}/{len} steps, loss {msg}, {eta} left",
        )?
        .progress_chars("=> "),
    );
    let report = crate::train::train(&config, &scans, &device, cancel_flag(), &mut |event| {
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
                bar.set_length(steps as u64);
                bar.set_position(step as u64);
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

#[derive(Serialize)]
struct VerifyEvaluation {
    manifest: PathBuf,
    model: String,
    scans: usize,
    unreadable: Vec<(PathBuf, String)>,
    runs: Vec<crate::eval::verification::VerificationReport>,
}

fn eval_verify(
    model: &SignatureModel,
    modality: crate::train::TrainModality,
    manifest: &Path,
    refs: &[usize],
    json: bool,
) -> anyhow::Result<ExitCode> {
    modality.canvas()?;
    let scans = crate::dataset::load(manifest)?;
    let bar = progress_bar("embedding", "scans")?;
    let (embedded, unreadable) = crate::eval::verification::embed_scans(
        model,
        &scans,
        cancel_flag(),
        &mut |done, total| {
            bar.set_length(total as u64);
            bar.set_position(done as u64);
        },
    )?;
    bar.finish_and_clear();
    let threshold = crate::matching::default_bands(Modality::Signature).high;
    let runs = refs
        .iter()
        .map(|&k| {
            crate::eval::verification::evaluate(&embedded, k, threshold, |r, q| model.score(r, q))
        })
        .collect();
    let report = VerifyEvaluation {
        manifest: manifest.to_path_buf(),
        model: model.model_id(),
        scans: scans.len(),
        unreadable,
        runs,
    };
    print_report(&report, json, |r| {
        let mut lines = vec![format!(
            "{} scans ({} unreadable), model {}",
            r.scans,
            r.unreadable.len(),
            r.model
        )];
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
            }
            lines.push(rates("random", &run.random));
        }
        lines.join("\n")
    })
}

fn signature_compare(
    model: &SignatureModel,
    bands: &Bands,
    references: &[PathBuf],
    questioned: &Path,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let embeddings = references
        .iter()
        .map(|path| Ok(model.embed_scan(path)?.1))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let (_, questioned_embedding) = model.embed_scan(questioned)?;
    let reference_slices: Vec<&[f32]> = embeddings.iter().map(Vec::as_slice).collect();
    let verdict =
        workflow::judge_signature(model, &reference_slices, &questioned_embedding, *bands);
    print_report(&verdict, json, |v| {
        let mut lines = vec![format!(
            "{}: score {:.3} (against {} reference(s); accept >= {:.3}, reject < {:.3})",
            v.decision.as_str(),
            v.score,
            v.reference_scores.len(),
            v.bands.high,
            v.bands.low
        )];
        for (path, score) in references.iter().zip(&v.reference_scores) {
            lines.push(format!("  {score:.3}  {}", path.display()));
        }
        lines.join("\n")
    })
}

fn signature_enroll(
    model: &SignatureModel,
    store: &mut Store,
    actor: &str,
    request: &EnrollRequest,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let report = workflow::enroll_signature(model, store, request, actor)?;
    print_enrollment(&report, json, "reference signature(s)")
}

fn signature_verify(
    model: &SignatureModel,
    store: &mut Store,
    actor: &str,
    external_id: &str,
    scan: &Path,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let report = workflow::verify_signature(model, store, external_id, scan, actor)?;
    print_report(&report, json, |r| {
        format!(
            "{}: {} ({}), score {:.3} (mean of {}: {})",
            r.verdict.decision.as_str(),
            r.name,
            r.external_id,
            r.verdict.score,
            r.verdict.reference_scores.len(),
            r.verdict
                .reference_scores
                .iter()
                .map(|s| format!("{s:.3}"))
                .collect::<Vec<_>>()
                .join(", ")
        )
    })
}

fn eval_oneshot(model: &SignatureModel, runs: &Path, json: bool) -> anyhow::Result<ExitCode> {
    let report = crate::eval::oneshot::evaluate_runs(model, runs)?;
    print_report(&report, json, |r| {
        format!(
            "{}-way one-shot over {} runs: accuracy {:.2}% ({} of {})",
            r.ways,
            r.runs,
            100.0 * r.accuracy,
            r.correct,
            r.trials
        )
    })
}
