//! What a training batch sees instead of the stored canvases: the same scans moved on the
//! page, so the encoder does not learn where ink happens to sit, or (affine) each scan
//! also turned, slanted and resized on its own, as a hand and a scanner vary them.

use candle_core::Tensor;
use rand::Rng;
use rand::rngs::StdRng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::Result;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Augmentation {
    /// The whole batch shifted by up to 5% of the canvas (the shipped signature model's).
    #[default]
    Shift,
    /// Each scan on its own: turned up to ±10°, slanted up to ±0.2, each axis scaled to
    /// 80-100%, shifted up to 5%.
    Affine,
}

const MAX_TURN_DEGREES: f32 = 10.0;
const MAX_SLANT: f32 = 0.2;
/// Shrinking only: `normalise` fits the ink to the canvas, so growing it would cut strokes off.
const SMALLEST_SCALE: f32 = 0.8;
const MAX_SHIFT: f32 = 0.05;

impl Augmentation {
    /// `(batch, 1, height, width)` canvases, paper 0, as this augmentation varies them.
    pub fn apply(self, images: &Tensor, rng: &mut StdRng) -> Result<Tensor> {
        match self {
            Augmentation::Shift => shift_batch(images, rng),
            Augmentation::Affine => affine_each(images, rng),
        }
    }
}

fn shift_batch(images: &Tensor, rng: &mut StdRng) -> Result<Tensor> {
    let (_, _, height, width) = images.dims4()?;
    let shift_x = rng.random_range(-(width as i64) / 20..=(width as i64) / 20);
    let shift_y = rng.random_range(-(height as i64) / 20..=(height as i64) / 20);
    let shifted = shift(images, 3, shift_x)?;
    Ok(shift(&shifted, 2, shift_y)?)
}

/// Moves content along `dim` by `by` pixels, filling with paper (0).
fn shift(images: &Tensor, dim: usize, by: i64) -> candle_core::Result<Tensor> {
    let size = images.dim(dim)?;
    let by_abs = by.unsigned_abs() as usize;
    if by == 0 || by_abs >= size {
        return Ok(images.clone());
    }
    let mut pad_shape = images.dims().to_vec();
    pad_shape[dim] = by_abs;
    let pad = Tensor::zeros(pad_shape, images.dtype(), images.device())?;
    if by > 0 {
        Tensor::cat(&[&pad, &images.narrow(dim, 0, size - by_abs)?], dim)
    } else {
        Tensor::cat(&[&images.narrow(dim, by_abs, size - by_abs)?, &pad], dim)
    }
}

/// Where each canvas pixel is read from: the inverse of turning, slanting and scaling
/// about the centre, then shifting.
#[derive(Debug, Clone, Copy)]
struct InverseMap {
    matrix: [[f32; 2]; 2],
    shift: (f32, f32),
}

impl InverseMap {
    fn draw(rng: &mut StdRng, (height, width): (usize, usize)) -> Self {
        let turn = rng
            .random_range(-MAX_TURN_DEGREES..=MAX_TURN_DEGREES)
            .to_radians();
        let slant = rng.random_range(-MAX_SLANT..=MAX_SLANT);
        let scale_x = rng.random_range(SMALLEST_SCALE..=1.0);
        let scale_y = rng.random_range(SMALLEST_SCALE..=1.0);
        let shift = (
            rng.random_range(-MAX_SHIFT..=MAX_SHIFT) * width as f32,
            rng.random_range(-MAX_SHIFT..=MAX_SHIFT) * height as f32,
        );
        // forward = turn · slant · scale; its inverse, written out.
        let (sin, cos) = turn.sin_cos();
        let forward = [
            [cos * scale_x, (cos * slant - sin) * scale_y],
            [sin * scale_x, (sin * slant + cos) * scale_y],
        ];
        let determinant = forward[0][0] * forward[1][1] - forward[0][1] * forward[1][0];
        let matrix = [
            [forward[1][1] / determinant, -forward[0][1] / determinant],
            [-forward[1][0] / determinant, forward[0][0] / determinant],
        ];
        Self { matrix, shift }
    }

    /// Bilinear reading of `source` (one canvas, row-major) into `target`; outside is paper.
    fn warp(&self, source: &[f32], target: &mut [f32], (height, width): (usize, usize)) {
        let centre = ((width as f32 - 1.0) / 2.0, (height as f32 - 1.0) / 2.0);
        let at = |x: isize, y: isize| -> f32 {
            if x < 0 || y < 0 || x >= width as isize || y >= height as isize {
                0.0
            } else {
                source[y as usize * width + x as usize]
            }
        };
        for (y, row) in target.chunks_exact_mut(width).enumerate() {
            for (x, value) in row.iter_mut().enumerate() {
                let dx = x as f32 - centre.0 - self.shift.0;
                let dy = y as f32 - centre.1 - self.shift.1;
                let sx = self.matrix[0][0] * dx + self.matrix[0][1] * dy + centre.0;
                let sy = self.matrix[1][0] * dx + self.matrix[1][1] * dy + centre.1;
                let (x0, y0) = (sx.floor(), sy.floor());
                let (fx, fy) = (sx - x0, sy - y0);
                let (x0, y0) = (x0 as isize, y0 as isize);
                let top = at(x0, y0) * (1.0 - fx) + at(x0 + 1, y0) * fx;
                let bottom = at(x0, y0 + 1) * (1.0 - fx) + at(x0 + 1, y0 + 1) * fx;
                *value = top * (1.0 - fy) + bottom * fy;
            }
        }
    }
}

fn affine_each(images: &Tensor, rng: &mut StdRng) -> Result<Tensor> {
    let (count, channels, height, width) = images.dims4()?;
    let plane = height * width;
    let source: Vec<f32> = images.flatten_all()?.to_vec1()?;
    let maps: Vec<InverseMap> = (0..count * channels)
        .map(|_| InverseMap::draw(rng, (height, width)))
        .collect();
    let mut target = vec![0f32; source.len()];
    target
        .par_chunks_mut(plane)
        .zip(source.par_chunks(plane))
        .zip(&maps)
        .for_each(|((target, source), map)| map.warp(source, target, (height, width)));
    Ok(Tensor::from_vec(
        target,
        (count, channels, height, width),
        images.device(),
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    /// One bright dot a canvas, somewhere off-centre.
    fn dots(count: usize, (height, width): (usize, usize)) -> Tensor {
        let mut values = vec![0f32; count * height * width];
        for image in 0..count {
            let (x, y) = (width / 3 + image, height / 4 + 2 * image);
            values[image * height * width + y * width + x] = 1.0;
        }
        Tensor::from_vec(values, (count, 1, height, width), &candle_core::Device::Cpu).unwrap()
    }

    /// Each canvas of a 40x60 batch of dots after `augmentation`.
    fn varied(augmentation: Augmentation, count: usize, seed: u64) -> Vec<Vec<f32>> {
        let images = dots(count, (40, 60));
        let varied = augmentation
            .apply(&images, &mut StdRng::seed_from_u64(seed))
            .unwrap();
        assert_eq!(varied.dims(), images.dims());
        varied.flatten_from(1).unwrap().to_vec2().unwrap()
    }

    #[test]
    fn an_affine_batch_moves_each_scan_on_its_own_and_keeps_its_ink() {
        let planes = varied(Augmentation::Affine, 6, 3);
        let mut moves = Vec::new();
        for (index, plane) in planes.iter().enumerate() {
            let ink: f32 = plane.iter().sum();
            // A dot spread over at most four pixels, shrunk with its canvas by at most 0.8².
            assert!(
                (0.6..=1.6).contains(&ink),
                "image {index} kept {ink} of its ink"
            );
            let brightest = plane
                .iter()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(b.1))
                .map(|(at, _)| (at % 60, at / 60))
                .unwrap();
            moves.push((
                brightest.0 as isize - (20 + index as isize),
                brightest.1 as isize - (10 + 2 * index as isize),
            ));
        }
        moves.dedup();
        assert!(moves.len() > 3, "the scans moved together: {moves:?}");
    }

    #[test]
    fn a_shifted_batch_moves_as_one() {
        let planes = varied(Augmentation::Shift, 4, 5);
        let moves: Vec<isize> = planes
            .iter()
            .enumerate()
            .map(|(index, plane)| {
                let at = plane.iter().position(|&v| v == 1.0).unwrap() as isize;
                at - ((10 + 2 * index as isize) * 60 + 20 + index as isize)
            })
            .collect();
        assert!(moves.windows(2).all(|pair| pair[0] == pair[1]), "{moves:?}");
    }
}
