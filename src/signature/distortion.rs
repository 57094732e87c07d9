//! Two drawings compared stroke by stroke, letting every small patch of one move a little
//! on its own to find its match in the other: the image distortion model of Keysers et
//! al. ("Deformation models for image recognition", IEEE PAMI 2007), a nearest-neighbour
//! distance for handwritten characters that tolerates the local wobble of a hand where
//! one global warp (`signature::shape`) cannot. Each drawing's ink is centred on its
//! centre of mass, sized by its spread, squeezed onto a small grid and blurred; every cell
//! is described by the grey-level gradients of the 3x3 cells around it; and each cell's
//! description is matched to the nearest one within `REACH` cells in the other drawing.
//! Nothing is learnt.

use image::imageops::{FilterType, resize};
use image::{GrayImage, ImageBuffer, Luma};

use super::shape::ink_threshold;
use crate::error::Result;

/// The grid, the reach and the blur were chosen on the Omniglot development folds
/// (models/README.md): on the harder fold, 24-48 cells, reaches of 2-4 and blurs of 0.7-1.5
/// scored 53.5-57.5%, these settings 57.25%.
pub const DISTORTION_SIDE: usize = 32;
/// Drawings larger than this on their longer side are reduced to it before centring.
const WORKING_SIDE: u32 = 256;
/// The centred square's side in radii of gyration of the ink, chosen on the Omniglot
/// development folds (models/README.md): 3-4.5 scored 76.9-78.25% on their mean, 3.5 the
/// most, a square as large as the drawing 73.0%.
const SPREADS_PER_SIDE: f64 = 3.5;
/// The smallest square, in pixels, so that a dot still has a grid to be drawn on.
const MIN_SQUARE: u32 = 8;
/// How far, in grid cells, a cell may move to find its match.
const REACH: isize = 3;
const BLUR_SIGMA: f32 = 1.0;
/// Two gradients (rows, columns) for each of the 3x3 cells about a cell.
const CONTEXT: usize = 18;

/// The grid with `REACH` cells of nothing about it, so that a match may be looked for
/// beyond the edge without a test per cell.
const PADDED_SIDE: usize = DISTORTION_SIDE + 2 * REACH as usize;

/// Every grid cell's local gradient context, one plane per context value (the cells of a
/// row side by side, so that one value of many cells is compared at once).
#[derive(Debug, Clone)]
pub struct GradientContexts {
    /// `CONTEXT` planes of `DISTORTION_SIDE`² cells, row-major.
    planes: Vec<f32>,
    /// The same planes inside a border of zeros (no ink), `PADDED_SIDE`² cells each.
    padded: Vec<f32>,
}

impl GradientContexts {
    /// The drawing's ink, centred and described; `source` names the drawing in the error
    /// when it has no ink.
    pub fn of(drawing: &GrayImage, source: &str) -> Result<Self> {
        let ink_below = ink_threshold(drawing, source)?;
        let ink = GrayImage::from_fn(drawing.width(), drawing.height(), |x, y| {
            Luma([if drawing.get_pixel(x, y).0[0] < ink_below {
                u8::MAX
            } else {
                0
            }])
        });
        let (mut count, mut sum_x, mut sum_y, mut sum_squares) = (0.0f64, 0.0f64, 0.0f64, 0.0f64);
        for (x, y, _) in ink.enumerate_pixels().filter(|(_, _, p)| p.0[0] > 0) {
            let (x, y) = (f64::from(x), f64::from(y));
            count += 1.0;
            sum_x += x;
            sum_y += y;
            sum_squares += x * x + y * y;
        }
        let (centre_x, centre_y) = (sum_x / count, sum_y / count);
        // The ink's radius of gyration: how far its pixels lie from their centre, on average.
        let spread = (sum_squares / count - centre_x * centre_x - centre_y * centre_y)
            .max(0.0)
            .sqrt();
        // A large scan's ink is first averaged down to a working size, so that the float
        // square below stays small whatever the scanner's resolution (the ink mask above
        // is one byte a pixel, like the scan) and a thin stroke thins out evenly instead
        // of breaking into dots.
        let scale = (f64::from(WORKING_SIDE) / f64::from(ink.width().max(ink.height()))).min(1.0);
        let (width, height) = (
            ((f64::from(ink.width()) * scale).round() as u32).max(1),
            ((f64::from(ink.height()) * scale).round() as u32).max(1),
        );
        let ink = if scale < 1.0 {
            resize(&ink, width, height, FilterType::Triangle)
        } else {
            ink
        };
        // A square centred on the ink's centre of mass and sized by its spread (moment
        // normalisation), so that neither where a character sits on the page nor how large
        // it was drawn matters. At 3.5 radii a straight stroke still fits; only ink far from
        // the rest (a stray mark) falls outside the square and is dropped.
        let side = ((SPREADS_PER_SIDE * spread * scale).round() as u32).max(MIN_SQUARE);
        let origin = |centre: f64| (centre * scale - f64::from(side) / 2.0).round() as i64;
        let (origin_x, origin_y) = (origin(centre_x), origin(centre_y));
        let centred: ImageBuffer<Luma<f32>, Vec<f32>> = ImageBuffer::from_fn(side, side, |x, y| {
            let (from_x, from_y) = (origin_x + i64::from(x), origin_y + i64::from(y));
            let inside =
                (0..i64::from(width)).contains(&from_x) && (0..i64::from(height)).contains(&from_y);
            Luma([if inside {
                f32::from(ink.get_pixel(from_x as u32, from_y as u32).0[0]) / f32::from(u8::MAX)
            } else {
                0.0
            }])
        });
        let grid_side = DISTORTION_SIDE as u32;
        let grid = resize(&centred, grid_side, grid_side, FilterType::Triangle);
        let blurred = image::imageops::blur(&grid, BLUR_SIGMA);
        Ok(Self::from_grid(blurred.as_raw()))
    }

    fn from_grid(grid: &[f32]) -> Self {
        let contexts = contexts(&gradients(grid));
        let cells = DISTORTION_SIDE * DISTORTION_SIDE;
        let mut planes = vec![0f32; CONTEXT * cells];
        let mut padded = vec![0f32; CONTEXT * PADDED_SIDE * PADDED_SIDE];
        let border = REACH as usize;
        for (cell, context) in contexts.iter().enumerate() {
            let (row, column) = (cell / DISTORTION_SIDE, cell % DISTORTION_SIDE);
            for (value, &v) in context.iter().enumerate() {
                planes[value * cells + cell] = v;
                padded[(value * PADDED_SIDE + row + border) * PADDED_SIDE + column + border] = v;
            }
        }
        Self { planes, padded }
    }

    /// The sum, over both drawings' cells, of each cell's squared distance to its best
    /// match within reach in the other. 0 for a drawing and itself.
    pub fn distance(&self, other: &GradientContexts) -> f32 {
        self.directed(other) + other.directed(self)
    }

    /// Each cell's squared distance to its nearest context within reach, summed. The
    /// offsets are tried one at a time over all cells, each cell's sum taken over the
    /// context values in order: the same numbers as comparing cell by cell, many cells at
    /// once.
    fn directed(&self, other: &GradientContexts) -> f32 {
        let (side, cells) = (DISTORTION_SIDE, DISTORTION_SIDE * DISTORTION_SIDE);
        let mut best = vec![f32::INFINITY; cells];
        let mut squared = vec![0f32; cells];
        for dy in -REACH..=REACH {
            for dx in -REACH..=REACH {
                squared.fill(0.0);
                for value in 0..CONTEXT {
                    let own = &self.planes[value * cells..(value + 1) * cells];
                    let theirs = &other.padded[value * PADDED_SIDE * PADDED_SIDE..];
                    for (row, sums) in squared.chunks_exact_mut(side).enumerate() {
                        let from = (row as isize + REACH + dy) as usize * PADDED_SIDE
                            + (REACH + dx) as usize;
                        for ((sum, a), b) in sums
                            .iter_mut()
                            .zip(&own[row * side..(row + 1) * side])
                            .zip(&theirs[from..from + side])
                        {
                            *sum += (a - b) * (a - b);
                        }
                    }
                }
                for (b, s) in best.iter_mut().zip(&squared) {
                    *b = b.min(*s);
                }
            }
        }
        best.iter().sum()
    }
}

/// Sobel gradients along rows and columns of a `DISTORTION_SIDE`² grid, the border
/// repeated beyond the edge.
fn gradients(grid: &[f32]) -> Vec<[f32; 2]> {
    let side = DISTORTION_SIDE as isize;
    let at = |row: isize, column: isize| {
        grid[(row.clamp(0, side - 1) * side + column.clamp(0, side - 1)) as usize]
    };
    let mut out = Vec::with_capacity(grid.len());
    for row in 0..side {
        for column in 0..side {
            let along_rows = (at(row + 1, column - 1)
                + 2.0 * at(row + 1, column)
                + at(row + 1, column + 1))
                - (at(row - 1, column - 1) + 2.0 * at(row - 1, column) + at(row - 1, column + 1));
            let along_columns = (at(row - 1, column + 1)
                + 2.0 * at(row, column + 1)
                + at(row + 1, column + 1))
                - (at(row - 1, column - 1) + 2.0 * at(row, column - 1) + at(row + 1, column - 1));
            out.push([along_rows, along_columns]);
        }
    }
    out
}

/// Each cell's 3x3 neighbourhood of gradients (zeros beyond the grid).
fn contexts(gradients: &[[f32; 2]]) -> Vec<[f32; CONTEXT]> {
    let side = DISTORTION_SIDE as isize;
    (0..side * side)
        .map(|cell| {
            let (row, column) = (cell / side, cell % side);
            let mut context = [0.0; CONTEXT];
            for (slot, (dy, dx)) in (-1..=1)
                .flat_map(|dy| (-1..=1).map(move |dx| (dy, dx)))
                .enumerate()
            {
                let (r, c) = (row + dy, column + dx);
                if (0..side).contains(&r) && (0..side).contains(&c) {
                    context[2 * slot..2 * slot + 2]
                        .copy_from_slice(&gradients[(r * side + c) as usize]);
                }
            }
            context
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signature::shape::InkShape;
    use crate::signature::shape::test_drawings::{
        assert_moved_copy_is_nearer_than_another, ell, zigzag,
    };

    /// The distance as first written, cell by cell: the layout above must give exactly it.
    fn directed_cell_by_cell(own: &GradientContexts, other: &GradientContexts) -> f32 {
        let cells = DISTORTION_SIDE * DISTORTION_SIDE;
        let per_cell = |c: &GradientContexts| -> Vec<[f32; CONTEXT]> {
            (0..cells)
                .map(|cell| std::array::from_fn(|value| c.planes[value * cells + cell]))
                .collect()
        };
        let (own, other) = (per_cell(own), per_cell(other));
        let side = DISTORTION_SIDE as isize;
        let mut total = 0.0;
        for row in 0..side {
            for column in 0..side {
                let mine = &own[(row * side + column) as usize];
                let mut best = f32::INFINITY;
                for dy in -REACH..=REACH {
                    for dx in -REACH..=REACH {
                        let (r, c) = (row + dy, column + dx);
                        let theirs = if (0..side).contains(&r) && (0..side).contains(&c) {
                            &other[(r * side + c) as usize]
                        } else {
                            &[0.0; CONTEXT]
                        };
                        let squared: f32 =
                            mine.iter().zip(theirs).map(|(a, b)| (a - b).powi(2)).sum();
                        best = best.min(squared);
                    }
                }
                total += best;
            }
        }
        total
    }

    #[test]
    fn comparing_many_cells_at_once_gives_the_cell_by_cell_distance_exactly() {
        let drawings: Vec<GradientContexts> = [ell(105, 0.0), ell(105, 12.0), zigzag(105)]
            .iter()
            .map(|drawing| GradientContexts::of(drawing, "test drawing").unwrap())
            .collect();
        for a in &drawings {
            for b in &drawings {
                assert_eq!(
                    a.directed(b).to_bits(),
                    directed_cell_by_cell(a, b).to_bits()
                );
            }
        }
    }

    #[test]
    fn a_drawing_is_nearer_its_moved_copy_than_another_drawing() {
        assert_moved_copy_is_nearer_than_another(
            GradientContexts::of,
            GradientContexts::distance,
            10.0,
        );
    }

    #[test]
    fn a_large_scan_is_reduced_first_and_still_told_apart() {
        let large = GradientContexts::of(&ell(1000, 0.0), "large ell").unwrap();
        let moved = GradientContexts::of(&ell(1000, 100.0), "moved ell").unwrap();
        let other = GradientContexts::of(&zigzag(1000), "large zigzag").unwrap();
        let (to_moved, to_other) = (large.distance(&moved), large.distance(&other));
        assert!(to_moved < 0.1 * to_other, "{to_moved} against {to_other}");
    }

    #[test]
    fn a_blank_page_is_an_error_that_names_it_in_both_comparisons() {
        let blank = GrayImage::from_pixel(105, 105, Luma([250]));
        let empty = GrayImage::new(0, 0);
        for error in [
            GradientContexts::of(&blank, "run01/test/item01.png").unwrap_err(),
            InkShape::of(&blank, "run01/test/item01.png").unwrap_err(),
        ] {
            let error = error.to_string();
            assert!(error.contains("run01/test/item01.png") && error.contains("no ink"));
        }
        assert!(GradientContexts::of(&empty, "empty").is_err());
        assert!(InkShape::of(&empty, "empty").is_err());
    }
}
