//! `vouch face ...` and `vouch bench ...`: one photo's faces, two photos compared, the
//! pipeline's speed, and an accelerator's embeddings against the CPU's.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Subcommand;
use serde::Serialize;

use super::print_report;
use crate::context::Context;
use crate::cpu::Isa;
use crate::face::{Face, FaceModels};
use crate::matching::{DEFAULT_FACE_THRESHOLD, compare_faces};
use crate::types::counted;
use crate::workflow::kiosk;
use crate::{imageio, perf};

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
    /// Passive liveness of the image's main face (MiniFASNet): live or a presentation
    /// attack (a printed photo, a screen), with each network's probabilities.
    Liveness {
        image: PathBuf,
        /// Also save each network's 80x80 input crop as DIR/<image stem>_liveness_<scale>.png.
        #[arg(long, value_name = "DIR")]
        crops: Option<PathBuf>,
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
        /// CPU kernels to time: avx512, avx2, neon, portable, or `all` (each one this CPU
        /// runs, one after the other) [default: the one Vouch would choose].
        #[arg(long)]
        kernel: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// An accelerator's embeddings against the CPU's, on the same face chips and signature
    /// canvases: the largest difference of any value and of any pair's score (it fails
    /// past 1e-4), and each device's median time for one input and for all of them.
    /// Needs a build with `--features cuda` (or `metal`) and `--device cuda` (or `metal`).
    Devices {
        /// Photos whose faces are compared [default: tests/data/astronaut.png,
        /// two_faces.png and kiosk/reference.jpg].
        #[arg(long = "face")]
        faces: Vec<PathBuf>,
        /// Signature scans [default: the scans in tests/data/signatures].
        #[arg(long = "signature")]
        signatures: Vec<PathBuf>,
        #[arg(long, default_value_t = 30)]
        iterations: usize,
        #[arg(long)]
        json: bool,
    },
    /// Replays a recorded kiosk sequence through the kiosk loop (the person enrolled in a
    /// scratch database in memory): frames per second, seconds from the face in view to
    /// the greeting, and the median of each stage.
    Kiosk {
        /// Folder with sequence.json, frame_NN.jpg and reference.jpg [default:
        /// tests/data/kiosk].
        #[arg(long)]
        sequence: Option<PathBuf>,
        /// Process every frame in turn, instead of the newest frame whenever the loop is
        /// free (the camera's pace, as the window runs it).
        #[arg(long)]
        every_frame: bool,
        /// CPU kernels to time: avx512, avx2, neon, portable, or `all` [default: the one
        /// Vouch would choose].
        #[arg(long)]
        kernel: Option<String>,
        #[arg(long)]
        json: bool,
    },
}

pub fn run(command: FaceCommand, context: &Context) -> anyhow::Result<ExitCode> {
    let models = context.load_faces()?;
    match command {
        FaceCommand::Embed { image, chips, json } => {
            face_embed(&models, &image, chips.as_deref(), json)
        }
        FaceCommand::Compare {
            first,
            second,
            threshold,
            json,
        } => face_compare(&models, &first, &second, threshold, json),
        FaceCommand::Liveness { image, crops, json } => {
            face_liveness(&models, context, &image, crops.as_deref(), json)
        }
    }
}

fn face_liveness(
    models: &FaceModels,
    context: &Context,
    image: &Path,
    crops: Option<&Path>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    use crate::face::liveness;
    let checker = liveness::Liveness::load(&context.models_dir, &context.device)?;
    let picture = imageio::load_rgb(image)?;
    let report = liveness::assess(models, &checker, &picture, &image.display().to_string())?;
    if let Some(dir) = crops {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let stem = image.file_stem().unwrap_or_default().to_string_lossy();
        for (_, _, scale) in crate::models::minifasnet::NETWORKS {
            let path = dir.join(format!("{stem}_liveness_{scale}.png"));
            liveness::crop(&picture, &report.bbox, scale)
                .save(&path)
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
    }
    print_report(&report, json, |r| {
        format!(
            "{}: {} (live {:.3}; {})",
            image.display(),
            if r.score.is_live {
                "live face"
            } else {
                "presentation attack"
            },
            r.score.live,
            r.model
        )
    })
}

pub fn bench(command: BenchCommand, context: &Context) -> anyhow::Result<ExitCode> {
    let (image, iterations, kernel, json) = match command {
        BenchCommand::Face {
            image,
            iterations,
            kernel,
            json,
        } => (image, iterations, kernel, json),
        BenchCommand::Kiosk {
            sequence,
            every_frame,
            kernel,
            json,
        } => return bench_kiosk(context, sequence, !every_frame, kernel.as_deref(), json),
        BenchCommand::Devices {
            faces,
            signatures,
            iterations,
            json,
        } => return bench_devices(context, faces, signatures, iterations, json),
    };
    let image = image.unwrap_or_else(|| test_data("astronaut.png"));
    let picture = imageio::load_rgb(&image)?;
    let mut models = context.load_faces()?;
    let liveness = crate::face::liveness::Liveness::load(&context.models_dir, &context.device)?;
    let mut reports = Vec::new();
    for isa in kernels_to_time(kernel.as_deref())? {
        models.isa = isa;
        reports.push(perf::time_face_pipeline(
            &models, &liveness, &picture, iterations,
        )?);
    }
    print_report(&reports, json, |reports| {
        let lines: Vec<String> = reports.iter().map(describe_timings).collect();
        lines.join("\n")
    })
}

/// A file of the test data that ships with the source, which the benchmarks default to.
fn test_data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

fn bench_devices(
    context: &Context,
    faces: Vec<PathBuf>,
    signatures: Vec<PathBuf>,
    iterations: usize,
    json: bool,
) -> anyhow::Result<ExitCode> {
    if context.device.is_cpu() {
        anyhow::bail!(
            "`vouch bench devices` compares an accelerator with the CPU, and this run's device \
             is the CPU: build with `--features cuda` (or `metal`) and pass `--device cuda`"
        );
    }
    let faces = if faces.is_empty() {
        ["astronaut.png", "two_faces.png", "kiosk/reference.jpg"]
            .map(test_data)
            .to_vec()
    } else {
        faces
    };
    let signatures = if signatures.is_empty() {
        let folder = test_data("signatures");
        let mut scans: Vec<PathBuf> = std::fs::read_dir(&folder)
            .with_context(|| format!("cannot read {}", folder.display()))?
            .map(|entry| entry.map(|e| e.path()))
            .collect::<Result<_, _>>()?;
        scans.sort();
        scans
    } else {
        signatures
    };
    let on_cpu = Context {
        device: candle_core::Device::Cpu,
        ..context.clone()
    };
    let store = context.existing_store()?;
    let cpu_faces = on_cpu.load_faces()?;
    let cpu_signatures = on_cpu.load_signature_model(store.as_ref())?;
    let models = perf::ModelsOnTwoDevices {
        device_faces: &context.load_faces()?,
        device_signatures: &context.load_signature_model(store.as_ref())?,
        cpu_faces: &cpu_faces,
        cpu_signatures: &cpu_signatures,
    };
    let mut chips = Vec::new();
    for path in &faces {
        let picture = imageio::load_rgb(path)?;
        for face in cpu_faces.analyze(&picture)? {
            chips.push(crate::face::align_chip(&picture, &face.landmarks)?);
        }
    }
    let canvases = signatures
        .iter()
        .map(|path| {
            let scan = imageio::load(path)?;
            Ok(cpu_signatures
                .normalise(&scan, &path.display().to_string())?
                .canvas)
        })
        .collect::<crate::Result<Vec<_>>>()?;
    let report = perf::compare_devices(&models, &chips, &canvases, iterations)?;
    print_report(&report, json, describe_parity)?;
    if report.within_tolerance() {
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!(
            "the {} embeddings differ from the CPU's by more than {}: keep this machine on \
             the CPU (`--device cpu`)",
            report.device, report.tolerance
        );
        Ok(ExitCode::FAILURE)
    }
}

fn describe_parity(report: &perf::DeviceParity) -> String {
    let modality = |name: &str, m: &perf::ModalityParity| {
        format!(
            "  {name} ({}, {} inputs): largest difference {:.2e} in a value, {:.2e} in a score\n    \
             one input: cpu {:.2} ms, {} {:.2} ms; all together: cpu {:.2} ms, {} {:.2} ms",
            m.model,
            m.inputs,
            m.max_abs_difference,
            m.max_score_difference,
            m.cpu_one_ms,
            report.device,
            m.device_one_ms,
            m.cpu_batch_ms,
            report.device,
            m.device_batch_ms
        )
    };
    format!(
        "{} against the cpu ({} kernels, {} threads), median of {}: {}\n{}\n{}",
        report.device,
        report.cpu_kernel,
        report.threads,
        report.iterations,
        if report.within_tolerance() {
            format!("same embeddings (within {})", report.tolerance)
        } else {
            format!("DIFFERENT embeddings (past {})", report.tolerance)
        },
        modality("faces", &report.face),
        modality("signatures", &report.signature)
    )
}

fn bench_kiosk(
    context: &Context,
    sequence: Option<PathBuf>,
    real_time: bool,
    kernel: Option<&str>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let dir = sequence.unwrap_or_else(|| test_data("kiosk"));
    let sequence = kiosk::RecordedSequence::load(&dir)?;
    let mut faces = context.load_faces()?;
    let liveness = crate::face::liveness::Liveness::load(&context.models_dir, &context.device)?;
    let mut reports = Vec::new();
    for isa in kernels_to_time(kernel)? {
        faces.isa = isa;
        let models = kiosk::KioskModels {
            faces: &faces,
            liveness: Some(&liveness),
        };
        reports.push(kiosk::replay_scratch(models, &sequence, real_time)?.0);
    }
    print_report(&reports, json, |reports| {
        let lines: Vec<String> = reports.iter().map(describe_replay).collect();
        lines.join("\n")
    })
}

fn describe_replay(r: &kiosk::ReplayReport) -> String {
    let seconds = |s: Option<f64>| s.map_or_else(|| "never".to_string(), |s| format!("{s:.2} s"));
    format!(
        "{} kernels on {}, {} threads, {} of {} frames ({}):\n  {:.1} frames a second, median {:.1} ms a frame\n  recognised {} and greeted {} after the face came into view{}\n  detect {:.2} ms ({} followed, {} full), landmarks and chip {:.2} ms, embed {:.2} ms ({} frames), liveness {:.2} ms ({} frames)",
        r.kernel,
        r.device,
        r.threads,
        r.frames_processed,
        r.frames_in_sequence,
        if r.real_time {
            "at the camera's pace"
        } else {
            "every frame"
        },
        r.frames_per_second,
        r.median.total_ms,
        seconds(r.seconds_to_recognised),
        seconds(r.seconds_to_greeting),
        r.greeted
            .as_ref()
            .map_or_else(String::new, |name| format!(" ({name})")),
        r.median.detect_ms,
        r.tracked_frames,
        r.full_detections,
        r.median.landmarks_ms,
        r.median.embed_ms,
        r.embedded_frames,
        r.median.liveness_ms,
        r.liveness_frames,
    )
}

fn kernels_to_time(requested: Option<&str>) -> anyhow::Result<Vec<Isa>> {
    match requested {
        None => Ok(vec![Isa::chosen()]),
        Some("all") => Ok(Isa::available()),
        Some(name) => {
            let isa = Isa::parse(name).ok_or_else(|| {
                anyhow::anyhow!("unknown kernel {name:?}: use avx512, avx2, neon, portable or all")
            })?;
            anyhow::ensure!(isa.supported(), "this CPU cannot run the {name} kernels");
            Ok(vec![isa])
        }
    }
}

fn describe_timings(t: &perf::FaceTimings) -> String {
    format!(
        "{} kernels on {}, {} threads, {}x{} image, median of {}:\n  detect {:.2} ms\n  landmarks {:.2} ms\n  align {:.2} ms\n  embed {:.2} ms (batch of 8: {:.2} ms per chip)\n  whole pipeline {:.2} ms\n  liveness {:.2} ms",
        t.kernel,
        t.device,
        t.threads,
        t.image_width,
        t.image_height,
        t.iterations,
        t.detect_ms,
        t.landmarks_ms,
        t.align_ms,
        t.embed_ms,
        t.embed_batch8_per_chip_ms,
        t.pipeline_ms,
        t.liveness_ms
    )
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
            "{} in {} ({}x{})",
            counted(o.faces.len(), "face"),
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
    let comparison = compare_faces(&a.embedding, &b.embedding, threshold)?;
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
