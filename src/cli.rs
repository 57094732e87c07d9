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
use crate::matching::{DEFAULT_FACE_THRESHOLD, compare_faces};
use crate::{eval, imageio, models, perf};

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
