//! What a document examiner looks at beside the overall shape, measured on the normalised
//! canvas: how dark the ink lies (pressure, hesitation), which way the strokes run where
//! (layout), the fine texture of the stroke edges (tremor), and how the ink's grey level
//! changes from one pixel to the next (grey-level co-occurrence: a slow, careful forger's
//! stroke shades differently from a fluent one). The Siamese embedding
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
/// Grey-level co-occurrence: the canvas quantised to this many levels, pixel pairs at these
/// (down, across) offsets, four statistics of each matrix. The offsets are one and two
/// pixels at 0, 45, 90 and 135 degrees as scikit-image's `graycomatrix` rounds them, which
/// puts the two-pixel diagonals on the one-pixel ones: those count twice. That is the
/// block the scorer's cross-validation chose, and the prototype it was measured with.
const GREY_LEVELS: usize = 16;
const COOCCURRENCE_OFFSETS: [(isize, isize); 8] = [
    (0, 1),
    (1, 1),
    (1, 0),
    (1, -1),
    (0, 2),
    (1, 1),
    (2, 0),
    (1, -1),
];
const COOCCURRENCE_STATISTICS: usize = 4;
pub const COOCCURRENCE: usize = COOCCURRENCE_OFFSETS.len() * COOCCURRENCE_STATISTICS;
pub const DESCRIPTOR_LEN: usize = INK_LEVELS + GRADIENTS + TEXTURE + COOCCURRENCE;

/// The descriptor of a canvas: ink levels, gradient orientations, texture and grey-level
/// co-occurrence, concatenated.
pub fn describe(canvas: &GrayImage) -> Vec<f32> {
    let mut descriptor = Vec::with_capacity(DESCRIPTOR_LEN);
    descriptor.extend(ink_levels(canvas));
    descriptor.extend(gradient_orientations(canvas));
    descriptor.extend(texture(canvas));
    descriptor.extend(cooccurrence(canvas));
    descriptor
}

/// The blocks of a descriptor and how two of a kind are compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Block {
    InkLevels,
    Gradients,
    Texture,
    Cooccurrence,
}

impl Block {
    pub const ALL: [Block; 4] = [
        Block::InkLevels,
        Block::Gradients,
        Block::Texture,
        Block::Cooccurrence,
    ];

    pub fn range(self) -> std::ops::Range<usize> {
        const TEXTURE_END: usize = INK_LEVELS + GRADIENTS + TEXTURE;
        match self {
            Block::InkLevels => 0..INK_LEVELS,
            Block::Gradients => INK_LEVELS..INK_LEVELS + GRADIENTS,
            Block::Texture => INK_LEVELS + GRADIENTS..TEXTURE_END,
            Block::Cooccurrence => TEXTURE_END..DESCRIPTOR_LEN,
        }
    }

    /// Histograms that sum to one are compared by total variation (half the L1 distance),
    /// the unit-length gradient field by Euclidean distance, and the co-occurrence
    /// statistics by Euclidean distance once the scorer has standardised them (their raw
    /// scales differ a hundredfold).
    pub fn distance(self, a: &[f32], b: &[f32]) -> f32 {
        let (a, b) = (&a[self.range()], &b[self.range()]);
        match self {
            Block::InkLevels | Block::Texture => {
                0.5 * a.iter().zip(b).map(|(x, y)| (x - y).abs()).sum::<f32>()
            }
            Block::Gradients | Block::Cooccurrence => {
                crate::matching::distance_of_same_length(a, b)
            }
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

/// Contrast, homogeneity, energy and correlation (scikit-image's `graycoprops`) of the
/// symmetric co-occurrence matrix at each offset, statistic after statistic. Pairs of
/// paper pixels are left out: they would only measure how much paper there is.
fn cooccurrence(canvas: &GrayImage) -> [f32; COOCCURRENCE] {
    let (width, height) = (canvas.width() as isize, canvas.height() as isize);
    let levels: Vec<usize> = canvas
        .as_raw()
        .iter()
        .map(|&v| usize::from(v) * GREY_LEVELS / 256)
        .collect();
    let level = |x: isize, y: isize| levels[(y * width + x) as usize];
    let offsets = COOCCURRENCE_OFFSETS.len();
    let mut statistics = [0f32; COOCCURRENCE];
    for (index, &(down, across)) in COOCCURRENCE_OFFSETS.iter().enumerate() {
        let mut matrix = [[0f64; GREY_LEVELS]; GREY_LEVELS];
        for y in 0.max(-down)..height.min(height - down) {
            for x in 0.max(-across)..width.min(width - across) {
                let (i, j) = (level(x, y), level(x + across, y + down));
                // Paper on paper, most of the canvas, is left out before it is counted.
                if i + j > 0 {
                    matrix[i][j] += 1.0;
                    matrix[j][i] += 1.0;
                }
            }
        }
        let total: f64 = matrix.iter().flatten().sum();
        if total == 0.0 {
            continue;
        }
        let cells = || {
            (0..GREY_LEVELS).flat_map(move |i| (0..GREY_LEVELS).map(move |j| (i as f64, j as f64)))
        };
        let p = |i: f64, j: f64| matrix[i as usize][j as usize] / total;
        let mean: f64 = cells().map(|(i, j)| i * p(i, j)).sum();
        let variance: f64 = cells().map(|(i, j)| (i - mean).powi(2) * p(i, j)).sum();
        let contrast: f64 = cells().map(|(i, j)| (i - j).powi(2) * p(i, j)).sum();
        let homogeneity: f64 = cells()
            .map(|(i, j)| p(i, j) / (1.0 + (i - j).powi(2)))
            .sum();
        let energy = cells().map(|(i, j)| p(i, j).powi(2)).sum::<f64>().sqrt();
        // The matrix is symmetric, so rows and columns share one mean and variance; a
        // single grey level has no spread and counts as perfectly correlated.
        let correlation = if variance < 1e-15 {
            1.0
        } else {
            cells()
                .map(|(i, j)| (i - mean) * (j - mean) * p(i, j))
                .sum::<f64>()
                / variance
        };
        for (statistic, value) in [contrast, homogeneity, energy, correlation]
            .into_iter()
            .enumerate()
        {
            statistics[statistic * offsets + index] = value as f32;
        }
    }
    statistics
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

    /// Against scikit-image 0.2x (`graycomatrix` at distances 1 and 2, the four angles,
    /// 16 levels, symmetric, the paper-paper cell zeroed, then `graycoprops`) on a small
    /// patch: an independent implementation of the same statistics.
    #[test]
    fn cooccurrence_matches_scikit_image() {
        let rows: [[u8; 7]; 5] = [
            [0, 0, 0, 0, 0, 0, 0],
            [0, 200, 180, 0, 0, 90, 0],
            [0, 220, 255, 240, 0, 100, 0],
            [0, 0, 160, 250, 0, 0, 0],
            [0, 0, 0, 0, 0, 0, 0],
        ];
        let patch = GrayImage::from_fn(7, 5, |x, y| Luma([rows[y as usize][x as usize]]));
        let expected: [f64; COOCCURRENCE] = [
            81.142857, 81.428571, 83.692308, 122.125, 133.0, 81.428571, 142.083333, 122.125,
            0.136369, 0.102109, 0.169423, 0.026833, 0.025954, 0.102109, 0.052775, 0.026833,
            0.231455, 0.231455, 0.217571, 0.286411, 0.311805, 0.231455, 0.353553, 0.286411,
            -0.078091, -0.081887, -0.158205, -0.576442, -0.612121, -0.081887, -0.748793, -0.576442,
        ];
        for (got, want) in cooccurrence(&patch).iter().zip(expected) {
            let got = f64::from(*got);
            assert!(
                (got - want).abs() < 1e-4 * want.abs().max(1.0),
                "{got} vs {want}"
            );
        }
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
        // Grey-level co-occurrence sees the lighter pen: fewer levels between ink and paper.
        assert!(Block::Cooccurrence.distance(&reference, &lighter) > 1.0);
    }
}
