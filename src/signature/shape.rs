//! Two drawings compared by where their ink lies once one is laid onto the other: the ink
//! pixels of each on a small square grid, the best of a fixed set of affine warps (a scale
//! on each axis, a turn and a shift, about the ink's centre), and the modified Hausdorff
//! distance (Dubuisson & Jain, 1994) between the warped set and the other. Nothing here is
//! learnt, so it does not depend on which alphabets or hands a training run saw: it is the
//! "affine model" kind of baseline of Lake et al.'s Omniglot work, and a second opinion
//! beside an encoder trained on a few hundred characters.

use std::sync::LazyLock;

use image::GrayImage;
use image::imageops::{FilterType, resize};
use rayon::prelude::*;

use crate::error::{Error, Result};

/// The grid both drawings are resized onto. Chosen on the Omniglot development folds: 105
/// (Omniglot's own size) was no better than this and four times the work.
pub const SHAPE_SIDE: u32 = 52;
/// Less contrast than this between a drawing's darkest and lightest grey is a page
/// without ink.
const MIN_INK_CONTRAST: u8 = 48;

const SCALES: [f32; 5] = [0.8, 0.9, 1.0, 1.1, 1.25];
const TURNS_DEGREES: [f32; 5] = [-15.0, -7.5, 0.0, 7.5, 15.0];
/// Shifts in pixels of the `SHAPE_SIDE` grid, on top of laying the centres together.
const SHIFTS: [f32; 5] = [-3.0, -1.5, 0.0, 1.5, 3.0];

/// A drawing's ink on the grid and how far every cell of the grid lies from that ink.
#[derive(Debug, Clone)]
pub struct InkShape {
    /// (row, column) of every ink cell.
    points: Vec<[f32; 2]>,
    centre: [f32; 2],
    /// Euclidean distance from each cell (row-major) to the nearest ink cell.
    distance_to_ink: Vec<f32>,
}

/// A linear map (row-major 2x2) and a shift, applied about a centre.
#[derive(Debug, Clone, Copy)]
struct Warp {
    forward: [f32; 4],
    inverse: [f32; 4],
    shift: [f32; 2],
}

impl InkShape {
    /// The drawing's ink, squeezed onto the `SHAPE_SIDE` grid; `source` names the drawing in
    /// the error when it has no ink.
    pub fn of(drawing: &GrayImage, source: &str) -> Result<Self> {
        if drawing.width() == 0 || drawing.height() == 0 {
            return Err(Error::Invalid(format!("{source}: an empty image")));
        }
        let grid = resize(drawing, SHAPE_SIDE, SHAPE_SIDE, FilterType::Triangle);
        let ink_below = ink_threshold(&grid, source)?;
        let points: Vec<[f32; 2]> = grid
            .enumerate_pixels()
            .filter(|(_, _, pixel)| pixel.0[0] <= ink_below)
            .map(|(x, y, _)| [y as f32, x as f32])
            .collect();
        let count = points.len() as f32;
        let centre = points.iter().fold([0.0, 0.0], |sum, p| {
            [sum[0] + p[0] / count, sum[1] + p[1] / count]
        });
        let side = SHAPE_SIDE as usize;
        // Every cell against every ink cell: a few thousand by a few hundred, exact and
        // cheaper than the warp search that follows.
        let distance_to_ink = (0..side * side)
            .map(|cell| {
                let (row, column) = ((cell / side) as f32, (cell % side) as f32);
                points
                    .iter()
                    .map(|p| (p[0] - row).powi(2) + (p[1] - column).powi(2))
                    .fold(f32::INFINITY, f32::min)
                    .sqrt()
            })
            .collect();
        Ok(Self {
            points,
            centre,
            distance_to_ink,
        })
    }

    /// The modified Hausdorff distance in grid cells after the best warp: the larger of the
    /// two directed mean distances, minimised over the warps. 0 for a drawing and itself.
    pub fn distance(&self, other: &InkShape) -> f32 {
        WARPS.iter().fold(f32::INFINITY, |best, warp| {
            self.warped_distance(other, warp, best)
        })
    }

    /// The distance under one warp, or `best` when it cannot beat it.
    fn warped_distance(&self, other: &InkShape, warp: &Warp, best: f32) -> f32 {
        let onto_other = self.mean_distance_to(other, &warp.forward, warp.shift, false);
        if onto_other >= best {
            return best;
        }
        let onto_self = other.mean_distance_to(self, &warp.inverse, warp.shift, true);
        best.min(onto_other.max(onto_self))
    }

    /// Mean distance from this shape's ink, mapped by `map` into `target`'s grid, to
    /// `target`'s ink. Forward: `map (p - centre) + target centre + shift`; inverse (the
    /// shift undone before the map): `map (p - centre - shift) + target centre`.
    fn mean_distance_to(
        &self,
        target: &InkShape,
        map: &[f32; 4],
        shift: [f32; 2],
        inverse: bool,
    ) -> f32 {
        let last = (SHAPE_SIDE - 1) as f32;
        let side = SHAPE_SIDE as usize;
        let (before, after) = if inverse {
            (shift, [0.0, 0.0])
        } else {
            ([0.0, 0.0], shift)
        };
        let sum: f32 = self
            .points
            .iter()
            .map(|p| {
                let (dy, dx) = (
                    p[0] - self.centre[0] - before[0],
                    p[1] - self.centre[1] - before[1],
                );
                let row = map[0] * dy + map[1] * dx + target.centre[0] + after[0];
                let column = map[2] * dy + map[3] * dx + target.centre[1] + after[1];
                let (row, column) = (
                    row.round().clamp(0.0, last) as usize,
                    column.round().clamp(0.0, last) as usize,
                );
                target.distance_to_ink[row * side + column]
            })
            .sum();
        sum / self.points.len() as f32
    }
}

/// The grey below which a drawing dark on light paper is ink: whatever lies nearer its
/// darkest grey than its lightest, so that a thin pen that resizing greys out still counts.
/// An error naming `source` when there is too little contrast for any ink.
pub(crate) fn ink_threshold(drawing: &GrayImage, source: &str) -> Result<u8> {
    if drawing.width() == 0 || drawing.height() == 0 {
        return Err(Error::Invalid(format!("{source}: an empty image")));
    }
    let (darkest, lightest) = drawing.pixels().fold((u8::MAX, u8::MIN), |(lo, hi), p| {
        (lo.min(p.0[0]), hi.max(p.0[0]))
    });
    if lightest - darkest < MIN_INK_CONTRAST {
        return Err(Error::Invalid(format!(
            "{source}: no ink (greys {darkest} to {lightest}, a blank page)"
        )));
    }
    Ok(darkest / 2 + lightest / 2)
}

/// Every warp the search tries: scales on each axis, then a turn, then a shift.
static WARPS: LazyLock<Vec<Warp>> = LazyLock::new(warps);

fn warps() -> Vec<Warp> {
    let mut warps = Vec::new();
    for &scale_rows in &SCALES {
        for &scale_columns in &SCALES {
            for &degrees in &TURNS_DEGREES {
                let (sin, cos) = degrees.to_radians().sin_cos();
                let forward = [
                    cos * scale_rows,
                    -sin * scale_columns,
                    sin * scale_rows,
                    cos * scale_columns,
                ];
                let determinant = forward[0] * forward[3] - forward[1] * forward[2];
                let inverse = [
                    forward[3] / determinant,
                    -forward[1] / determinant,
                    -forward[2] / determinant,
                    forward[0] / determinant,
                ];
                for &shift_rows in &SHIFTS {
                    for &shift_columns in &SHIFTS {
                        warps.push(Warp {
                            forward,
                            inverse,
                            shift: [shift_rows, shift_columns],
                        });
                    }
                }
            }
        }
    }
    warps
}

/// `distances[i][j]`: `queries[i]` against `candidates[j]` by `distance` (this module's or
/// `signature::distortion`'s), in parallel.
pub fn distance_matrix<T: Sync>(
    queries: &[T],
    candidates: &[T],
    distance: impl Fn(&T, &T) -> f32 + Sync,
) -> Vec<Vec<f32>> {
    queries
        .par_iter()
        .map(|query| candidates.iter().map(|c| distance(query, c)).collect())
        .collect()
}

/// Drawings and a check for the tests of this module and `signature::distortion`.
#[cfg(test)]
pub(crate) mod test_drawings {
    use image::{GrayImage, Luma};

    use super::distance_matrix;
    use crate::error::Result;

    /// A drawing described by `describe` is at distance 0 from itself, and more than
    /// `margin` times nearer its moved copy than a different drawing, in the distance
    /// matrix too.
    pub fn assert_moved_copy_is_nearer_than_another<T: Sync>(
        describe: impl Fn(&GrayImage, &str) -> Result<T>,
        distance: impl Fn(&T, &T) -> f32 + Sync + Copy,
        margin: f32,
    ) {
        let original = describe(&ell(105, 0.0), "ell").unwrap();
        assert_eq!(distance(&original, &original), 0.0);
        let moved = describe(&ell(105, 12.0), "moved ell").unwrap();
        let other = describe(&zigzag(105), "zigzag").unwrap();
        let (to_moved, to_other) = (distance(&original, &moved), distance(&original, &other));
        assert!(
            to_other > margin * to_moved,
            "{to_moved} against {to_other}"
        );
        let matrix = distance_matrix(&[moved, other], &[original], distance);
        assert!(matrix[0][0] < matrix[1][0]);
    }

    /// A dark stroke on white paper through the given (x, y) corners.
    fn drawing(size: u32, corners: &[(f32, f32)]) -> GrayImage {
        let mut image = GrayImage::from_pixel(size, size, Luma([255]));
        for pair in corners.windows(2) {
            let ((x0, y0), (x1, y1)) = (pair[0], pair[1]);
            let steps = ((x1 - x0).abs().max((y1 - y0).abs()) * 2.0) as usize + 1;
            for step in 0..=steps {
                let t = step as f32 / steps as f32;
                let (x, y) = (x0 + t * (x1 - x0), y0 + t * (y1 - y0));
                for (dx, dy) in [(0, 0), (1, 0), (0, 1), (1, 1)] {
                    image.put_pixel(x as u32 + dx, y as u32 + dy, Luma([0]));
                }
            }
        }
        image
    }

    pub fn ell(size: u32, offset: f32) -> GrayImage {
        let s = size as f32;
        drawing(
            size,
            &[
                (0.3 * s + offset, 0.2 * s),
                (0.3 * s + offset, 0.8 * s),
                (0.7 * s + offset, 0.8 * s),
            ],
        )
    }

    pub fn zigzag(size: u32) -> GrayImage {
        let s = size as f32;
        drawing(
            size,
            &[
                (0.2 * s, 0.3 * s),
                (0.4 * s, 0.7 * s),
                (0.6 * s, 0.3 * s),
                (0.8 * s, 0.7 * s),
            ],
        )
    }
}

#[cfg(test)]
mod tests {
    use super::test_drawings::{assert_moved_copy_is_nearer_than_another, ell};
    use super::*;

    #[test]
    fn a_drawing_is_nearer_its_moved_or_larger_copy_than_another_drawing() {
        assert_moved_copy_is_nearer_than_another(InkShape::of, InkShape::distance, 2.0);
        let original = InkShape::of(&ell(105, 0.0), "ell").unwrap();
        let moved = InkShape::of(&ell(105, 12.0), "moved ell").unwrap();
        let larger = InkShape::of(&ell(210, 0.0), "larger ell").unwrap();
        assert!(original.distance(&moved) < 0.5);
        assert!(original.distance(&larger) < 0.5);
    }
}
