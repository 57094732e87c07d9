//! What a document examiner looks at beside the overall shape, measured on the normalised
//! canvas: how dark the ink lies (pressure, hesitation), which way the strokes run where
//! (layout), and the fine texture of the stroke edges (tremor). The Siamese embedding
//! learned the shape from only a few dozen writers; these fixed measurements do not need
//! training and catch what a careful forger changes.

use image::GrayImage;

/// Ink-level histogram bins (ink pixels only; paper is 0 on the canvas).
pub const INK_LEVELS: usize = 16;
/// Gradient-orientation histogram: cells down x cells across x unsigned orientations.
const GRADIENT_CELLS: (usize, usize) = (10, 10);
const ORIENTATIONS: usize = 9;
pub const GRADIENTS: usize = GRADIENT_CELLS.0 * GRADIENT_CELLS.1 * ORIENTATIONS;
/// Local-binary-pattern histograms: regions down x across x the 10 rotation-invariant
/// uniform codes of 8 neighbours (0-8 bright neighbours in one run, 9 for the rest).
const TEXTURE_REGIONS: (usize, usize) = (3, 3);
const TEXTURE_CODES: usize = 10;
pub const TEXTURE: usize = TEXTURE_REGIONS.0 * TEXTURE_REGIONS.1 * TEXTURE_CODES;
pub const DESCRIPTOR_LEN: usize = INK_LEVELS + GRADIENTS + TEXTURE;

/// The descriptor of a canvas: ink levels, gradient orientations, texture, concatenated.
pub fn describe(canvas: &GrayImage) -> Vec<f32> {
    let mut descriptor = Vec::with_capacity(DESCRIPTOR_LEN);
    descriptor.extend(ink_levels(canvas));
    descriptor.extend(gradient_orientations(canvas));
    descriptor.extend(texture(canvas));
    descriptor
}

/// The blocks of a descriptor and how two of a kind are compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Block {
    InkLevels,
    Gradients,
    Texture,
}

impl Block {
    pub const ALL: [Block; 3] = [Block::InkLevels, Block::Gradients, Block::Texture];

    pub fn range(self) -> std::ops::Range<usize> {
        match self {
            Block::InkLevels => 0..INK_LEVELS,
            Block::Gradients => INK_LEVELS..INK_LEVELS + GRADIENTS,
            Block::Texture => INK_LEVELS + GRADIENTS..DESCRIPTOR_LEN,
        }
    }

    /// Histograms that sum to one are compared by total variation (half the L1 distance),
    /// the unit-length gradient field by Euclidean distance.
    pub fn distance(self, a: &[f32], b: &[f32]) -> f32 {
        let (a, b) = (&a[self.range()], &b[self.range()]);
        match self {
            Block::InkLevels | Block::Texture => {
                0.5 * a.iter().zip(b).map(|(x, y)| (x - y).abs()).sum::<f32>()
            }
            Block::Gradients => crate::matching::euclidean_distance(a, b),
        }
    }
}

fn ink_levels(canvas: &GrayImage) -> [f32; INK_LEVELS] {
    let mut histogram = [0f32; INK_LEVELS];
    for &value in canvas.as_raw().iter().filter(|&&v| v > 0) {
        histogram[(usize::from(value - 1) * INK_LEVELS / 255).min(INK_LEVELS - 1)] += 1.0;
    }
    normalise_sum(&mut histogram);
    histogram
}

/// Gradient magnitude summed per cell and orientation (0..180 degrees), the whole field
/// scaled to unit length so that darker ink does not count as different strokes.
fn gradient_orientations(canvas: &GrayImage) -> Vec<f32> {
    let (width, height) = (canvas.width() as usize, canvas.height() as usize);
    let pixels = canvas.as_raw();
    let at = |x: isize, y: isize| -> f32 {
        if x < 0 || y < 0 || x >= width as isize || y >= height as isize {
            0.0
        } else {
            f32::from(pixels[y as usize * width + x as usize]) / 255.0
        }
    };
    let (cells_down, cells_across) = GRADIENT_CELLS;
    let mut histogram = vec![0f32; GRADIENTS];
    for y in 0..height {
        let cell_row = (y * cells_down / height).min(cells_down - 1);
        for x in 0..width {
            let (xi, yi) = (x as isize, y as isize);
            let dx = at(xi + 1, yi) - at(xi - 1, yi);
            let dy = at(xi, yi + 1) - at(xi, yi - 1);
            let magnitude = dx.hypot(dy);
            if magnitude == 0.0 {
                continue;
            }
            let angle = dy.atan2(dx).rem_euclid(std::f32::consts::PI);
            let bin = ((angle / std::f32::consts::PI * ORIENTATIONS as f32) as usize)
                .min(ORIENTATIONS - 1);
            let cell = cell_row * cells_across + (x * cells_across / width).min(cells_across - 1);
            histogram[cell * ORIENTATIONS + bin] += magnitude;
        }
    }
    let norm = histogram.iter().map(|v| v * v).sum::<f32>().sqrt();
    if norm > 0.0 {
        histogram.iter_mut().for_each(|v| *v /= norm);
    }
    histogram
}

/// Rotation-invariant uniform local binary patterns of the ink pixels, one histogram per
/// region of the canvas.
fn texture(canvas: &GrayImage) -> Vec<f32> {
    const NEIGHBOURS: [(isize, isize); 8] = [
        (1, 0),
        (1, -1),
        (0, -1),
        (-1, -1),
        (-1, 0),
        (-1, 1),
        (0, 1),
        (1, 1),
    ];
    let (width, height) = (canvas.width() as usize, canvas.height() as usize);
    let pixels = canvas.as_raw();
    let at = |x: isize, y: isize| -> u8 {
        if x < 0 || y < 0 || x >= width as isize || y >= height as isize {
            0
        } else {
            pixels[y as usize * width + x as usize]
        }
    };
    let (regions_down, regions_across) = TEXTURE_REGIONS;
    let mut histogram = vec![0f32; TEXTURE];
    for y in 0..height {
        let region_row = (y * regions_down / height).min(regions_down - 1);
        for x in 0..width {
            let centre = pixels[y * width + x];
            if centre == 0 {
                continue;
            }
            let bits = NEIGHBOURS.map(|(dx, dy)| at(x as isize + dx, y as isize + dy) >= centre);
            let transitions = (0..8).filter(|&i| bits[i] != bits[(i + 1) % 8]).count();
            let code = if transitions <= 2 {
                bits.iter().filter(|&&b| b).count()
            } else {
                TEXTURE_CODES - 1
            };
            let region =
                region_row * regions_across + (x * regions_across / width).min(regions_across - 1);
            histogram[region * TEXTURE_CODES + code] += 1.0;
        }
    }
    for region in histogram.chunks_mut(TEXTURE_CODES) {
        normalise_sum(region);
    }
    histogram
}

fn normalise_sum(histogram: &mut [f32]) {
    let total: f32 = histogram.iter().sum();
    if total > 0.0 {
        histogram.iter_mut().for_each(|v| *v /= total);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::Luma;

    fn stroke(angle_degrees: f32, level: u8) -> GrayImage {
        let (sin, cos) = angle_degrees.to_radians().sin_cos();
        GrayImage::from_fn(220, 150, |x, y| {
            let (dx, dy) = (x as f32 - 110.0, y as f32 - 75.0);
            let across = (dx * sin - dy * cos).abs();
            Luma([if across < 3.0 && dx.hypot(dy) < 60.0 {
                level
            } else {
                0
            }])
        })
    }

    #[test]
    fn histograms_sum_to_one_and_the_gradient_field_has_unit_length() {
        let descriptor = describe(&stroke(30.0, 200));
        assert_eq!(descriptor.len(), DESCRIPTOR_LEN);
        let ink: f32 = descriptor[Block::InkLevels.range()].iter().sum();
        assert!((ink - 1.0).abs() < 1e-5, "{ink}");
        let gradients = &descriptor[Block::Gradients.range()];
        let norm = gradients.iter().map(|v| v * v).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5, "{norm}");
        // Only the regions the stroke crosses have ink; each of those sums to one.
        let regions: Vec<f32> = descriptor[Block::Texture.range()]
            .chunks(TEXTURE_CODES)
            .map(|region| region.iter().sum())
            .collect();
        assert!(
            regions.iter().all(|s| *s == 0.0 || (s - 1.0).abs() < 1e-5),
            "{regions:?}"
        );
        assert!(
            regions.iter().filter(|s| **s > 0.0).count() >= 3,
            "{regions:?}"
        );
    }

    #[test]
    fn each_block_tells_what_it_measures() {
        let reference = describe(&stroke(30.0, 200));
        let lighter = describe(&stroke(30.0, 90));
        let turned = describe(&stroke(120.0, 200));
        // Same stroke, lighter pen: the ink levels differ, the directions do not.
        assert!(Block::InkLevels.distance(&reference, &lighter) > 0.9);
        assert!(Block::Gradients.distance(&reference, &lighter) < 1e-3);
        // Same pen, another direction: the other way round.
        assert!(Block::InkLevels.distance(&reference, &turned) < 1e-6);
        assert!(Block::Gradients.distance(&reference, &turned) > 1.0);
        assert_eq!(Block::Texture.distance(&reference, &reference), 0.0);
    }
}
