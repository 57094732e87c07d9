//! Stage timings of the face pipeline on a real photo, for `vouch bench face`, and an
//! accelerator's embeddings against the CPU's, for `vouch bench devices`.

use std::time::Instant;

use image::{GrayImage, RgbImage};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::face::{FaceModels, align_chip};
use crate::matching::{distance_of_same_length, face_score};
use crate::signature::{SignatureModel, signature_score};

#[derive(Debug, Clone, Serialize)]
pub struct FaceTimings {
    pub device: String,
    /// The CPU kernels' instruction set (`cpu::Isa`); the tensor path on a GPU ignores it.
    pub kernel: String,
    /// The rayon threads the networks share.
    pub threads: usize,
    pub iterations: usize,
    pub image_width: u32,
    pub image_height: u32,
    pub detect_ms: f64,
    pub landmarks_ms: f64,
    pub align_ms: f64,
    /// One 150x150 chip through the recognition network.
    pub embed_ms: f64,
    /// Per chip when eight chips go through together.
    pub embed_batch8_per_chip_ms: f64,
    pub pipeline_ms: f64,
    /// Passive liveness of one face: both MiniFASNets on their crops (candle tensors).
    pub liveness_ms: f64,
}

/// Medians over `iterations` runs of each stage, after one warm-up run.
pub fn time_face_pipeline(
    models: &FaceModels,
    liveness: &crate::face::liveness::Liveness,
    image: &RgbImage,
    iterations: usize,
) -> Result<FaceTimings> {
    let iterations = iterations.max(1);
    let detections = models.detect(image)?;
    let detection = *detections
        .first()
        .ok_or_else(|| Error::NoFace("the benchmark image".into()))?;
    let landmarks = models.landmarks(image, &[detection])?.remove(0);
    let chip = align_chip(image, &landmarks)?;
    let batch = vec![chip.clone(); 8];
    let median_ms = |run: &mut dyn FnMut() -> Result<()>| median_ms(iterations, run);
    Ok(FaceTimings {
        device: crate::device::describe(models.device()).to_string(),
        kernel: models.isa.name().to_string(),
        threads: rayon::current_num_threads(),
        iterations,
        image_width: image.width(),
        image_height: image.height(),
        detect_ms: median_ms(&mut || models.detect(image).map(drop))?,
        landmarks_ms: median_ms(&mut || models.landmarks(image, &[detection]).map(drop))?,
        align_ms: median_ms(&mut || align_chip(image, &landmarks).map(drop))?,
        embed_ms: median_ms(&mut || {
            models
                .network_embeddings(std::slice::from_ref(&chip))
                .map(drop)
        })?,
        embed_batch8_per_chip_ms: median_ms(&mut || models.network_embeddings(&batch).map(drop))?
            / 8.0,
        pipeline_ms: median_ms(&mut || models.analyze(image).map(drop))?,
        liveness_ms: median_ms(&mut || liveness.score(image, &detection.bbox).map(drop))?,
    })
}

/// The median of `iterations` timed runs, in milliseconds, after one untimed warm-up run
/// (which on a GPU also loads the kernels).
fn median_ms(iterations: usize, run: &mut dyn FnMut() -> Result<()>) -> Result<f64> {
    run()?;
    let mut samples = Vec::with_capacity(iterations.max(1));
    for _ in 0..iterations.max(1) {
        let start = Instant::now();
        run()?;
        samples.push(start.elapsed().as_secs_f64() * 1e3);
    }
    samples.sort_by(f64::total_cmp);
    Ok(samples[samples.len() / 2])
}

/// The largest difference between an accelerator's embedding values and the CPU's that
/// still counts as the same embedding: the bar the project sets for running on a GPU.
pub const PARITY_TOLERANCE: f32 = 1e-4;

/// One model's embeddings of the same inputs on the CPU and on an accelerator.
#[derive(Debug, Clone, Serialize)]
pub struct ModalityParity {
    pub model: String,
    pub inputs: usize,
    /// The largest difference of any one embedding value.
    pub max_abs_difference: f32,
    /// The largest difference of the match score of any pair of inputs (the face score,
    /// or the signature embeddings' similarity).
    pub max_score_difference: f32,
    /// One input through the network.
    pub cpu_one_ms: f64,
    pub device_one_ms: f64,
    /// All the inputs through the network together.
    pub cpu_batch_ms: f64,
    pub device_batch_ms: f64,
}

/// Whether an accelerator gives the CPU's embeddings, and how fast each runs them.
#[derive(Debug, Clone, Serialize)]
pub struct DeviceParity {
    pub device: String,
    /// The CPU kernels' instruction set for the face network (`cpu::Isa`).
    pub cpu_kernel: String,
    pub threads: usize,
    pub iterations: usize,
    pub tolerance: f32,
    pub face: ModalityParity,
    pub signature: ModalityParity,
}

impl DeviceParity {
    pub fn within_tolerance(&self) -> bool {
        [&self.face, &self.signature]
            .iter()
            .all(|m| m.max_abs_difference <= self.tolerance)
    }
}

/// The same models loaded twice: once on the CPU, once on the device under test.
pub struct ModelsOnTwoDevices<'a> {
    pub cpu_faces: &'a FaceModels,
    pub device_faces: &'a FaceModels,
    pub cpu_signatures: &'a SignatureModel,
    pub device_signatures: &'a SignatureModel,
}

/// Embeds aligned face chips and signature canvases on both devices and compares them:
/// the check to run before a kiosk or desk moves its networks onto a GPU.
pub fn compare_devices(
    models: &ModelsOnTwoDevices,
    chips: &[RgbImage],
    canvases: &[GrayImage],
    iterations: usize,
) -> Result<DeviceParity> {
    if chips.is_empty() || canvases.is_empty() {
        return Err(Error::Invalid(
            "the device comparison needs at least one face chip and one signature canvas".into(),
        ));
    }
    let face = compare_modality(
        models.cpu_faces.model_id(),
        chips,
        &|batch| models.cpu_faces.network_embeddings(batch),
        &|batch| models.device_faces.network_embeddings(batch),
        |a, b| face_score(distance_of_same_length(a, b)),
        iterations,
    )?;
    let signature = compare_modality(
        models.cpu_signatures.model_id(),
        canvases,
        &|batch| models.cpu_signatures.embed_canvases(batch),
        &|batch| models.device_signatures.embed_canvases(batch),
        signature_score,
        iterations,
    )?;
    Ok(DeviceParity {
        device: crate::device::describe(models.device_faces.device()).to_string(),
        cpu_kernel: models.cpu_faces.isa.name().to_string(),
        threads: rayon::current_num_threads(),
        iterations: iterations.max(1),
        tolerance: PARITY_TOLERANCE,
        face,
        signature,
    })
}

type Embed<'a, T> = &'a dyn Fn(&[T]) -> Result<Vec<Vec<f32>>>;

fn compare_modality<T>(
    model: String,
    inputs: &[T],
    on_cpu: Embed<T>,
    on_device: Embed<T>,
    score: fn(&[f32], &[f32]) -> f32,
    iterations: usize,
) -> Result<ModalityParity> {
    let reference = on_cpu(inputs)?;
    let candidate = on_device(inputs)?;
    if reference.len() != inputs.len() || candidate.len() != inputs.len() {
        return Err(Error::Invalid(format!(
            "{model}: {} inputs gave {} embeddings on the CPU and {} on the device",
            inputs.len(),
            reference.len(),
            candidate.len()
        )));
    }
    let mut max_abs_difference = 0f32;
    for (a, b) in reference.iter().zip(&candidate) {
        if a.len() != b.len() {
            return Err(Error::Invalid(format!(
                "{model}: the device gave {}-value embeddings, the CPU {}",
                b.len(),
                a.len()
            )));
        }
        for (x, y) in a.iter().zip(b) {
            // NaN on either side must fail the check, which `max` would hide.
            let difference = (x - y).abs();
            max_abs_difference = if difference.is_nan() {
                f32::INFINITY
            } else {
                max_abs_difference.max(difference)
            };
        }
    }
    let mut max_score_difference = 0f32;
    for i in 0..inputs.len() {
        for j in i + 1..inputs.len() {
            let difference =
                (score(&reference[i], &reference[j]) - score(&candidate[i], &candidate[j])).abs();
            max_score_difference = max_score_difference.max(difference);
        }
    }
    let one = &inputs[..1];
    Ok(ModalityParity {
        model,
        inputs: inputs.len(),
        max_abs_difference,
        max_score_difference,
        cpu_one_ms: median_ms(iterations, &mut || on_cpu(one).map(drop))?,
        device_one_ms: median_ms(iterations, &mut || on_device(one).map(drop))?,
        cpu_batch_ms: median_ms(iterations, &mut || on_cpu(inputs).map(drop))?,
        device_batch_ms: median_ms(iterations, &mut || on_device(inputs).map(drop))?,
    })
}
