//! Stage timings of the face pipeline on a real photo, for `vouch bench face`.

use std::time::Instant;

use image::RgbImage;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::face::{FaceModels, align_chip};

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
    let median_ms = |run: &mut dyn FnMut() -> Result<()>| -> Result<f64> {
        run()?;
        let mut samples = Vec::with_capacity(iterations);
        for _ in 0..iterations {
            let start = Instant::now();
            run()?;
            samples.push(start.elapsed().as_secs_f64() * 1e3);
        }
        samples.sort_by(f64::total_cmp);
        Ok(samples[samples.len() / 2])
    };
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
