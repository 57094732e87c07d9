//! The headless front end: `vouch <subcommand>`. With no subcommand the window opens.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use serde::Serialize;

use crate::device::DeviceChoice;
use crate::face::{Face, FaceModels};
use crate::gallery::Gallery;
use crate::matching::{
    DEFAULT_FACE_THRESHOLD, FACE_BANDS, compare_faces, euclidean_distance, face_score,
};
use crate::store::{Modality, Store};
use crate::{enroll, eval, imageio, models, perf};

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
        #[arg(long)]
        json: bool,
    },
    /// Delete a person with their templates and crops (the audit keeps a row).
    Delete {
        id: String,
        /// Confirm: without it nothing is deleted.
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
    /// (the largest, weighted by detector confidence).
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
        crate::gui::run(models_dir, cli.global.device)?;
        return Ok(ExitCode::SUCCESS);
    };
    let load = || -> anyhow::Result<FaceModels> {
        let device = cli.global.device.open()?;
        let mut models = FaceModels::load(&models_dir, &device)?;
        models.min_detection_score = cli.global.min_face_score;
        Ok(models)
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
            &name,
            &id,
            force,
            &images,
            json,
        ),
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
        Command::People(PeopleCommand::Show { id, json }) => {
            let person = open_store(&cli.global)?.person_by_external_id(&id, Modality::Face)?;
            print_report(&person, json, |p| {
                format!(
                    "{} ({})\nmodality {}\nreferences {}\nenrolled {}",
                    p.name, p.external_id, p.modality, p.templates, p.created_at
                )
            })
        }
        Command::People(PeopleCommand::Delete { id, yes }) => {
            let mut store = open_store(&cli.global)?;
            let person = store.person_by_external_id(&id, Modality::Face)?;
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
        Command::Models(ModelsCommand::ImportFaceapi { source, out }) => {
            let out = out.unwrap_or(models_dir);
            for path in models::faceapi::import_dir(&source, &out)? {
                println!("wrote {}", path.display());
            }
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
            tracing::warn!(path = %path.display(), count, "several faces; comparing the most prominent");
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
    let bar = indicatif::ProgressBar::new(0).with_style(
        indicatif::ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} images, {eta} left")?
            .progress_chars("=> "),
    );
    bar.set_message("embedding");
    let start = Instant::now();
    let cancel = AtomicBool::new(false);
    let (scored, images, failed) =
        eval::score_pairs(models, &pairs, root, &cancel, &mut |done, total| {
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

#[derive(Serialize)]
struct EnrollOutput {
    person_id: i64,
    external_id: String,
    enrolled: usize,
    rejected: Vec<(PathBuf, String)>,
}

#[allow(clippy::too_many_arguments)]
fn enroll(
    models: &FaceModels,
    store: &mut Store,
    actor: &str,
    name: &str,
    external_id: &str,
    force: bool,
    images: &[PathBuf],
    json: bool,
) -> anyhow::Result<ExitCode> {
    let gallery = Gallery::of_faces(store, &models.model_id())?;
    let mut samples = Vec::new();
    let mut rejected = Vec::new();
    for path in images {
        let bytes =
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        let picture = imageio::decode_rgb(&bytes, path)?;
        match enroll::assess_face(models, &picture, &bytes)? {
            Err(rejection) => rejected.push((path.clone(), rejection.to_string())),
            Ok(sample) => {
                if let Some(best) = gallery.search(&sample.template.embedding, 1).first()
                    && best.score >= FACE_BANDS.high
                    && !force
                {
                    let other = store.person(best.person_id)?;
                    if other.external_id != external_id {
                        anyhow::bail!(
                            "{} already matches {} ({}) with score {:.3}: not enrolled (use --force if they are different people)",
                            path.display(),
                            other.name,
                            other.external_id,
                            best.score
                        );
                    }
                }
                samples.push(sample.template);
            }
        }
    }
    for (path, reason) in &rejected {
        eprintln!("rejected {}: {reason}", path.display());
    }
    if samples.is_empty() {
        anyhow::bail!("no usable reference photo: nothing enrolled");
    }
    let person_id = store.enroll(
        name,
        external_id,
        Modality::Face,
        &models.model_id(),
        &samples,
        actor,
    )?;
    let output = EnrollOutput {
        person_id,
        external_id: external_id.to_string(),
        enrolled: samples.len(),
        rejected,
    };
    print_report(&output, json, |o| {
        format!(
            "enrolled {name} ({}) with {} reference(s)",
            o.external_id, o.enrolled
        )
    })
}

#[derive(Serialize)]
struct VerifyOutput {
    external_id: String,
    name: String,
    references: usize,
    best_score: f32,
    mean_score: f32,
    decision: crate::matching::Decision,
    bands: crate::matching::Bands,
}

fn verify(
    models: &FaceModels,
    store: &mut Store,
    actor: &str,
    external_id: &str,
    image: &Path,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let person = store.person_by_external_id(external_id, Modality::Face)?;
    let references = store.person_templates(person.id, &models.model_id())?;
    if references.is_empty() {
        anyhow::bail!(
            "{} has no references made by model {}: run `vouch reembed`",
            person.name,
            models.model_id()
        );
    }
    let picture = imageio::load_rgb(image)?;
    let (face, _) = models.main_face(&picture, &image.display().to_string())?;
    let scores: Vec<f32> = references
        .iter()
        .map(|r| face_score(euclidean_distance(&face.embedding, &r.embedding)))
        .collect();
    let best_score = scores.iter().copied().fold(0.0, f32::max);
    let mean_score = scores.iter().sum::<f32>() / scores.len() as f32;
    let decision = FACE_BANDS.decide(best_score);
    store.record_decision(
        person.id,
        Modality::Face,
        best_score,
        FACE_BANDS,
        decision,
        actor,
    )?;
    let output = VerifyOutput {
        external_id: person.external_id,
        name: person.name,
        references: scores.len(),
        best_score,
        mean_score,
        decision,
        bands: FACE_BANDS,
    };
    print_report(&output, json, |o| {
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

#[derive(Serialize)]
struct IdentifyCandidate {
    external_id: String,
    name: String,
    score: f32,
    distance: f32,
    decision: crate::matching::Decision,
}

/// The `top` enrolled people nearest to the main face of the photo, nearest first.
fn nearest_people(
    models: &FaceModels,
    store: &Store,
    image: &Path,
    top: usize,
) -> anyhow::Result<Vec<crate::gallery::Candidate>> {
    let gallery = Gallery::of_faces(store, &models.model_id())?;
    let picture = imageio::load_rgb(image)?;
    let (face, _) = models.main_face(&picture, &image.display().to_string())?;
    Ok(gallery.search(&face.embedding, top))
}

fn identify(
    models: &FaceModels,
    store: &Store,
    image: &Path,
    top: usize,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let candidates = nearest_people(models, store, image, top)?
        .into_iter()
        .map(|c| {
            let person = store.person(c.person_id)?;
            Ok(IdentifyCandidate {
                external_id: person.external_id,
                name: person.name,
                score: c.score,
                distance: c.distance,
                decision: FACE_BANDS.decide(c.score),
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
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

#[derive(Serialize)]
struct CheckinOutput {
    external_id: String,
    name: String,
    score: f32,
    #[serde(flatten)]
    punch: crate::store::Punch,
}

fn checkin(
    models: &FaceModels,
    store: &mut Store,
    actor: &str,
    image: &Path,
    repeat_window: chrono::Duration,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let Some(best) = nearest_people(models, store, image, 1)?.pop() else {
        anyhow::bail!("nobody is enrolled: no check-in recorded");
    };
    if FACE_BANDS.decide(best.score) != crate::matching::Decision::Accept {
        anyhow::bail!(
            "not recognised (best score {:.3}, accept at {:.2}): no check-in recorded",
            best.score,
            FACE_BANDS.high
        );
    }
    let person = store.person(best.person_id)?;
    let punch = store.punch(person.id, best.score, repeat_window, actor)?;
    let output = CheckinOutput {
        external_id: person.external_id,
        name: person.name,
        score: best.score,
        punch,
    };
    print_report(&output, json, |o| match &o.punch {
        crate::store::Punch::Recorded { kind, at } => {
            format!(
                "check-{kind}: {} ({}) at {at}, score {:.3}",
                o.name, o.external_id, o.score
            )
        }
        crate::store::Punch::Repeat { last_kind, last_at } => format!(
            "ignored: {} ({}) already checked {last_kind} at {last_at}",
            o.name, o.external_id
        ),
    })
}
