//! Whether a questioned signature lies on one of the references stroke for stroke, as
//! only a copy of it would: nobody signs twice the same to the pixel, so a questioned scan
//! that does is that reference printed, pasted or scanned again. The scorer cannot say so,
//! because a copy of a reference is the most genuine-looking scan there is (models/README,
//! "A copy of a reference").

use std::collections::HashMap;
use std::ops::Range;

use image::GrayImage;
use rayon::prelude::*;

use super::preprocess::centre_to_show;
use super::variation::{slanted, turned, turned_and_slanted};
use crate::cpu::{Compiled, Isa};
use crate::matching::{dot, four_dots};

/// Turns tried on the questioned canvas, in whole degrees each way: a copy laid crooked on
/// the scanner.
const MOST_TURN: i32 = 5;

/// Slants tried on the questioned canvas, each way: a copy slanted to pass for a fresh
/// signing (unturned, and turned too in the second look).
const SHEARS: [f32; 6] = [-0.15, -0.10, -0.05, 0.05, 0.10, 0.15];

/// Shifts tried each way, in pixels of the halved canvas.
const REACH: i32 = 2;

/// At or above this overlap a questioned scan is taken for a copy of the reference.
/// Chosen on CEDAR writers 1-30 only (models/README, "A copy of a reference").
pub const COPY_OVERLAP: f32 = 0.85;

/// For each reference canvas, how closely the questioned canvas (the model's, ink bright
/// on black) lies on it: the best normalised cross-correlation over the poses tried and the
/// shifts, in [-1, 1], on canvases halved (each 2x2 block summed). A turn or slant is of the
/// canvas, its ink then fitted onto the canvas again, as the normaliser fits a crooked scan's.
///
/// Every reference is tried at each single turn and slant. When none reaches the threshold,
/// a reference the questioned canvas already lies on closely (`SECOND_LOOK`) is tried again
/// with turns and slants together, searched one way at a time from its best turn and its
/// best slant: a copy both turned and slanted lies on neither pose alone.
pub fn overlaps(questioned: &GrayImage, references: &[GrayImage]) -> Vec<f32> {
    let (width, height) = questioned.dimensions();
    let references: Vec<Halved> = references
        .par_iter()
        .map(|reference| {
            if reference.dimensions() == (width, height) {
                Halved::of(reference)
            } else {
                Halved::of(&centre_to_show(reference, (height, width)))
            }
        })
        .collect();
    let mut laid = Laid::new(questioned);
    let single: Vec<Pose> = (-MOST_TURN..=MOST_TURN)
        .map(|degrees| Pose {
            degrees,
            shear: None,
        })
        .chain((0..SHEARS.len()).map(|shear| Pose {
            degrees: 0,
            shear: Some(shear),
        }))
        .collect();
    laid.lay(&single);
    let mut tried: Vec<Tried> = references
        .par_iter()
        .map(|reference| laid.try_on(reference, &single).collect())
        .collect();
    let best = |tried: &Tried| tried.values().copied().fold(-1.0, f32::max);
    // A copy already found is a review whatever else lies on it: the search stops there.
    if tried.iter().all(|t| best(t) < COPY_OVERLAP) {
        let suspects: Vec<usize> = (0..tried.len())
            .filter(|&r| best(&tried[r]) >= SECOND_LOOK)
            .collect();
        for step in [along_both_axes as fn(&Tried) -> Vec<Pose>, across_the_best] {
            let wanted: Vec<Vec<Pose>> = suspects.iter().map(|&r| step(&tried[r])).collect();
            laid.lay(&wanted.concat());
            let found: Vec<Vec<(Pose, f32)>> = suspects
                .par_iter()
                .zip(&wanted)
                .map(|(&r, poses)| laid.try_on(&references[r], poses).collect())
                .collect();
            for (&r, found) in suspects.iter().zip(found) {
                tried[r].extend(found);
            }
        }
    }
    tried.iter().map(best).collect()
}

/// At or above this overlap with some pose alone, a reference is tried with turns and
/// slants together (stop 68's measurement: a copy turned and slanted lay at 0.596 or
/// better on its reference with one of the two undone; models/README).
const SECOND_LOOK: f32 = 0.55;

/// How the questioned canvas is laid before it is compared: turned by whole degrees, then
/// slanted by one of `SHEARS` (by its index).
// Ordered so that ties between equal overlaps break the same way on every run (a map has
// no order of its own).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct Pose {
    degrees: i32,
    shear: Option<usize>,
}

/// A reference's overlap at each pose tried on it.
type Tried = HashMap<Pose, f32>;

/// The best pose of `tried` among those `keep` admits.
fn best_pose(tried: &Tried, keep: impl Fn(&Pose) -> bool) -> Option<Pose> {
    tried
        .iter()
        .filter(|(pose, _)| keep(pose))
        .max_by(|a, b| a.1.total_cmp(b.1).then_with(|| b.0.cmp(a.0)))
        .map(|(pose, _)| *pose)
}

/// Every turn tried, in whole degrees (not 0, the canvas as it is).
fn every_turn() -> impl Iterator<Item = i32> {
    (-MOST_TURN..=MOST_TURN).filter(|&degrees| degrees != 0)
}

/// Every turn with the reference's best slant, and every slant with its best turn.
fn along_both_axes(tried: &Tried) -> Vec<Pose> {
    let turn = best_pose(tried, |p| p.shear.is_none()).map_or(0, |p| p.degrees);
    let shear = best_pose(tried, |p| p.degrees == 0 && p.shear.is_some()).and_then(|p| p.shear);
    let mut wanted = Vec::new();
    if turn != 0 {
        wanted.extend((0..SHEARS.len()).map(|s| Pose {
            degrees: turn,
            shear: Some(s),
        }));
    }
    wanted.extend(every_turn().map(|degrees| Pose { degrees, shear }));
    wanted.retain(|pose| !tried.contains_key(pose));
    wanted
}

/// From the best pose turned and slanted together, the way not yet searched through it.
fn across_the_best(tried: &Tried) -> Vec<Pose> {
    let Some(best) = best_pose(tried, |p| p.degrees != 0 && p.shear.is_some()) else {
        return Vec::new();
    };
    let mut wanted: Vec<Pose> = (0..SHEARS.len())
        .map(|s| Pose {
            degrees: best.degrees,
            shear: Some(s),
        })
        .chain(every_turn().map(|degrees| Pose {
            degrees,
            shear: best.shear,
        }))
        .collect();
    wanted.retain(|pose| !tried.contains_key(pose));
    wanted
}

/// The questioned canvas at each pose made so far, halved; each pose is made once.
struct Laid<'q> {
    questioned: &'q GrayImage,
    halves: HashMap<Pose, Halved>,
}

impl<'q> Laid<'q> {
    fn new(questioned: &'q GrayImage) -> Self {
        Self {
            questioned,
            halves: HashMap::new(),
        }
    }

    fn lay(&mut self, poses: &[Pose]) {
        let mut missing: Vec<Pose> = poses
            .iter()
            .filter(|pose| !self.halves.contains_key(pose))
            .copied()
            .collect();
        missing.sort();
        missing.dedup();
        let questioned = self.questioned;
        let (width, height) = questioned.dimensions();
        let refitted = |warped: GrayImage| {
            Halved::of(&centre_to_show(&cropped_to_ink(&warped), (height, width)))
        };
        let made: Vec<(Pose, Halved)> = missing
            .into_par_iter()
            .map(|pose| {
                let halved = match (pose.degrees, pose.shear.map(|s| SHEARS[s])) {
                    (0, None) => Halved::of(questioned),
                    (degrees, None) => refitted(turned(questioned, degrees as f32, 0)),
                    (0, Some(shear)) => refitted(slanted(questioned, shear, 0)),
                    (degrees, Some(shear)) => {
                        refitted(turned_and_slanted(questioned, degrees as f32, shear, 0))
                    }
                };
                (pose, halved)
            })
            .collect();
        self.halves.extend(made);
    }

    /// The reference's overlap at each of `poses`, all laid.
    fn try_on<'p>(
        &'p self,
        reference: &'p Halved,
        poses: &'p [Pose],
    ) -> impl Iterator<Item = (Pose, f32)> + 'p {
        poses
            .iter()
            .map(|pose| (*pose, reference.best_correlation(&self.halves[pose])))
    }
}

/// The smallest box holding every pixel that is not black (a turned ink grows black
/// corners); the image itself when it holds none.
fn cropped_to_ink(image: &GrayImage) -> GrayImage {
    let width = image.width() as usize;
    let rows = || image.as_raw().chunks_exact(width.max(1));
    // Row by row: a blank row is found by one pass the compiler vectorises, and an inked
    // row is searched from both ends only as far as its first and last ink. (Pixel by
    // pixel, with `image`'s crop, this was about a seventh of the copy check.)
    let mut inked = rows().enumerate().filter_map(|(y, row)| {
        if row.iter().fold(0, |most, &v| most.max(v)) == 0 {
            return None;
        }
        let first = row.iter().position(|&v| v > 0)?;
        let last = row.iter().rposition(|&v| v > 0)?;
        Some((y, first, last))
    });
    let Some((top, mut left, mut right)) = inked.next() else {
        return image.clone();
    };
    let mut bottom = top;
    for (y, first, last) in inked {
        (bottom, left, right) = (y, left.min(first), right.max(last));
    }
    // A row's span at once: byte by byte, through a flattened iterator, the copy was most
    // of what the crop cost.
    let mut pixels = Vec::with_capacity((bottom - top + 1) * (right - left + 1));
    for row in rows().skip(top).take(bottom - top + 1) {
        pixels.extend_from_slice(&row[left..=right]);
    }
    GrayImage::from_raw((right - left + 1) as u32, (bottom - top + 1) as u32, pixels)
        .expect("one byte a pixel")
}

/// A canvas at half its size, each value the sum of a 2x2 block, with the running sums
/// of its values and their squares (summed-area tables) that give any box's mean and
/// spread at once: only the products of a shifted pair need a pass over the pixels.
struct Halved {
    values: Vec<f32>,
    width: i32,
    height: i32,
    /// `sums[y * (width + 1) + x]`: the values above and left of (x, y), and their squares.
    sums: Vec<[f64; 2]>,
}

impl Halved {
    fn of(canvas: &GrayImage) -> Self {
        let (width, height) = (canvas.width() / 2, canvas.height() / 2);
        let mut values = Vec::with_capacity((width * height) as usize);
        for pair in canvas
            .as_raw()
            .chunks_exact(canvas.width() as usize * 2)
            .take(height as usize)
        {
            let (top, bottom) = pair.split_at(canvas.width() as usize);
            // Summed as integers, which the compiler widens, then made floats: four levels
            // sum to at most 1020, which a float holds exactly, so in any order the same.
            values.extend(
                top.chunks_exact(2)
                    .zip(bottom.chunks_exact(2))
                    .take(width as usize)
                    .map(|(t, b)| {
                        f32::from(
                            u16::from(t[0]) + u16::from(t[1]) + u16::from(b[0]) + u16::from(b[1]),
                        )
                    }),
            );
        }
        Self::from_values(values, width, height)
    }

    fn from_values(values: Vec<f32>, width: u32, height: u32) -> Self {
        let stride = width as usize + 1;
        let mut sums = spare_sums().pop().unwrap_or_default();
        sums.clear();
        sums.resize(stride * (height as usize + 1), [0.0f64; 2]);
        for y in 0..height as usize {
            let mut row = [0.0f64; 2];
            for x in 0..width as usize {
                let value = f64::from(values[y * width as usize + x]);
                row = [row[0] + value, row[1] + value * value];
                let above = sums[y * stride + x + 1];
                sums[(y + 1) * stride + x + 1] = [above[0] + row[0], above[1] + row[1]];
            }
        }
        Self {
            values,
            width: width as i32,
            height: height as i32,
            sums,
        }
    }

    /// The sum of the values, and of their squares, over columns `columns` of rows `rows`.
    #[inline(always)]
    fn box_sums(&self, rows: &Range<i32>, columns: &Range<i32>) -> [f64; 2] {
        let stride = self.width as usize + 1;
        let at = |y: i32, x: i32| self.sums[y as usize * stride + x as usize];
        let (a, b, c, d) = (
            at(rows.end, columns.end),
            at(rows.start, columns.end),
            at(rows.end, columns.start),
            at(rows.start, columns.start),
        );
        [0, 1].map(|i| a[i] - b[i] - c[i] + d[i])
    }

    #[inline(always)]
    fn row(&self, y: i32, columns: &Range<i32>) -> &[f32] {
        let start = (y * self.width) as usize;
        &self.values[start + columns.start as usize..start + columns.end as usize]
    }

    /// The best correlation of the two over shifts of `other` of up to `REACH` each way,
    /// each taken over the part where they overlap.
    fn best_correlation(&self, other: &Halved) -> f32 {
        self.best_correlation_on(Isa::chosen(), other)
    }

    /// The same, compiled for `isa`: its row products run in registers as wide as the
    /// CPU has, in the same order, so every path gives the same bits.
    fn best_correlation_on(&self, isa: Isa, other: &Halved) -> f32 {
        isa.compiled(Correlation {
            of: self,
            with: other,
        })
    }

    #[inline(always)]
    fn correlations(&self, other: &Halved) -> f32 {
        let (width, height) = (self.width, self.height);
        let mut best = -1.0f64;
        for dy in -REACH..=REACH {
            for dx in -REACH..=REACH {
                let rows = 0.max(-dy)..height.min(height - dy);
                let columns = 0.max(-dx)..width.min(width - dx);
                if rows.is_empty() || columns.is_empty() {
                    // A canvas narrower than the shift: nothing overlaps.
                    continue;
                }
                let (shifted_rows, shifted_columns) = (
                    rows.start + dy..rows.end + dy,
                    columns.start + dx..columns.end + dx,
                );
                let count = f64::from((rows.end - rows.start) * (columns.end - columns.start));
                let [sa, saa] = self.box_sums(&rows, &columns);
                let [sb, sbb] = other.box_sums(&shifted_rows, &shifted_columns);
                // A row's products in f32 (its rounding is about a millionth of its sum,
                // far below what the threshold can feel), the rows in f64, in order. A
                // plain loop, not an iterator's `sum`, which the compiler kept out of line
                // and so outside the wider instruction set. From -0.0, as `sum` starts.
                let mut sab = -0.0f64;
                let mut ys = rows.clone();
                while ys.len() >= 4 {
                    let y = ys.start;
                    ys.start += 4;
                    let products = four_dots(
                        std::array::from_fn(|k| self.row(y + k as i32, &columns)),
                        std::array::from_fn(|k| other.row(y + k as i32 + dy, &shifted_columns)),
                    );
                    for product in products {
                        sab += f64::from(product);
                    }
                }
                for y in ys {
                    let a = self.row(y, &columns);
                    sab += f64::from(dot(a, other.row(y + dy, &shifted_columns)));
                }
                let covariance = sab / count - sa / count * (sb / count);
                let spread = ((saa / count - (sa / count).powi(2))
                    * (sbb / count - (sb / count).powi(2)))
                .sqrt();
                if spread > 0.0 {
                    best = best.max(covariance / spread);
                }
            }
        }
        best as f32
    }
}

impl Drop for Halved {
    fn drop(&mut self) {
        let mut spare = spare_sums();
        if spare.len() < MOST_SPARE_SUMS {
            spare.push(std::mem::take(&mut self.sums));
        }
    }
}

/// Enough tables for the largest check: a table for each of the 12 references and of the
/// 77 poses (every turn with every slant and neither), at about 135 KB each on the
/// model's canvas.
const MOST_SPARE_SUMS: usize = 96;

/// The summed-area tables of canvases dropped, for the next to fill. A table on the
/// model's canvas is past the size from which the allocator maps fresh pages and hands
/// them back on release, so every check faulted its tables in anew: about 2,500 page
/// faults a check for the close-to-7 scan, a tenth of its time on one thread
/// (models/README, "Tables kept between checks").
fn spare_sums() -> std::sync::MutexGuard<'static, Vec<Vec<[f64; 2]>>> {
    static SPARE: std::sync::Mutex<Vec<Vec<[f64; 2]>>> = std::sync::Mutex::new(Vec::new());
    SPARE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

struct Correlation<'a> {
    of: &'a Halved,
    with: &'a Halved,
}

impl Compiled for Correlation<'_> {
    type Output = f32;
    #[inline(always)]
    fn run(self) -> f32 {
        self.of.correlations(self.with)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::Luma;

    /// A made-up signature: two loops and a tail, ink bright on black.
    fn ink(seed: f32) -> GrayImage {
        GrayImage::from_fn(320, 110, |x, y| {
            let (x, y) = (x as f32, y as f32);
            let loops = ((x / (18.0 + seed)).sin() * 30.0 + 55.0 - y).abs() < 3.0;
            let tail = (y - 90.0 + x * 0.05 * seed).abs() < 2.5 && x > 150.0;
            image::Luma([if loops || tail { 220 } else { 0 }])
        })
    }

    #[test]
    fn a_canvas_is_cropped_to_its_ink() {
        let mut canvas = GrayImage::new(40, 12);
        canvas.put_pixel(9, 2, Luma([1]));
        canvas.put_pixel(31, 7, Luma([200]));
        canvas.put_pixel(4, 5, Luma([90]));
        let cropped = cropped_to_ink(&canvas);
        assert_eq!(cropped.dimensions(), (28, 6));
        assert_eq!(
            cropped,
            image::imageops::crop_imm(&canvas, 4, 2, 28, 6).to_image()
        );
        let blank = GrayImage::new(40, 12);
        assert_eq!(cropped_to_ink(&blank), blank, "no ink, the canvas itself");
        let empty = GrayImage::new(0, 5);
        assert_eq!(cropped_to_ink(&empty), empty);
    }

    #[test]
    fn every_instruction_set_correlates_to_the_same_bits() {
        let (one, other) = (Halved::of(&ink(1.0)), Halved::of(&ink(2.5)));
        let portable = one.best_correlation_on(Isa::Portable, &other);
        assert!(portable > 0.0 && portable < 1.0, "{portable}");
        for isa in Isa::available() {
            let correlation = one.best_correlation_on(isa, &other);
            assert_eq!(correlation.to_bits(), portable.to_bits(), "{isa:?}");
        }
    }

    #[test]
    fn a_scan_lies_on_itself_turned_or_not_and_not_on_another_hand() {
        let on_canvas = |ink: &GrayImage| centre_to_show(ink, (150, 220));
        let reference = on_canvas(&ink(0.0));
        let [same, other] = [ink(0.0), ink(6.0)].map(|questioned| {
            overlaps(&on_canvas(&questioned), std::slice::from_ref(&reference))[0]
        });
        assert!(same > 0.99, "{same}");
        assert!(other < COPY_OVERLAP, "{other}");
        let crooked = on_canvas(&cropped_to_ink(&turned(&ink(0.0), 3.0, 0)));
        let turned_back = overlaps(&crooked, std::slice::from_ref(&reference))[0];
        assert!(turned_back >= COPY_OVERLAP, "{turned_back}");
    }

    #[test]
    fn a_slanted_copy_is_found_and_a_slant_makes_no_copy_of_another_hand() {
        let on_canvas = |ink: &GrayImage| centre_to_show(ink, (150, 220));
        let reference = on_canvas(&ink(0.0));
        let [copy, other] = [ink(0.0), ink(6.0)].map(|questioned| {
            let slanted = on_canvas(&cropped_to_ink(&slanted(&questioned, 0.15, 0)));
            overlaps(&slanted, std::slice::from_ref(&reference))[0]
        });
        assert!(copy >= COPY_OVERLAP, "{copy}");
        assert!(other < COPY_OVERLAP, "{other}");
    }

    #[test]
    fn a_copy_turned_and_slanted_is_found_and_another_hand_so_laid_is_not() {
        let on_canvas = |ink: &GrayImage| centre_to_show(ink, (150, 220));
        let reference = on_canvas(&ink(0.0));
        let [copy, other] = [ink(0.0), ink(6.0)].map(|questioned| {
            let crooked = cropped_to_ink(&slanted(&turned(&questioned, 3.0, 0), 0.1, 0));
            overlaps(&on_canvas(&crooked), std::slice::from_ref(&reference))[0]
        });
        assert!(copy >= COPY_OVERLAP, "{copy}");
        assert!(other < COPY_OVERLAP, "{other}");
    }

    #[test]
    fn a_halved_canvas_sums_its_blocks_and_a_sliver_correlates_to_nothing() {
        let canvas = GrayImage::from_fn(221, 151, |x, y| Luma([((x * 37 + y * 11) % 256) as u8]));
        let halved = Halved::of(&canvas);
        assert_eq!((halved.width, halved.height), (110, 75));
        let (top, below) = (&canvas.as_raw()[108..110], &canvas.as_raw()[329..331]);
        let block: u16 = top.iter().chain(below).map(|&v| u16::from(v)).sum();
        assert_eq!(halved.values[54], f32::from(block), "the block at (108, 0)");
        // Narrower than the shifts: no overlap to correlate, and no panic.
        let sliver = Halved::of(&GrayImage::new(1, 40));
        assert_eq!(sliver.best_correlation(&sliver), -1.0);
    }

    /// A table kept from a dropped canvas starts the next one from zero, whatever their
    /// sizes: the running sums of a small canvas made after large ones are its own.
    #[test]
    fn a_table_kept_from_a_dropped_canvas_serves_the_next_from_zero() {
        let small = GrayImage::from_fn(30, 20, |x, y| Luma([((x * 7 + y * 13) % 256) as u8]));
        let fresh = Halved::of(&small).sums.clone();
        for _ in 0..3 {
            drop([Halved::of(&ink(1.0)), Halved::of(&ink(2.0))]);
            let again = Halved::of(&small);
            assert_eq!(again.sums, fresh);
            let (rows, columns) = (0..again.height, 0..again.width);
            let total: f32 = again.values.iter().sum();
            assert_eq!(again.box_sums(&rows, &columns)[0], f64::from(total));
        }
    }

    #[test]
    fn nothing_to_lie_on_is_nothing_found() {
        let questioned = centre_to_show(&ink(0.0), (150, 220));
        assert!(overlaps(&questioned, &[]).is_empty());
        let blank = GrayImage::new(220, 150);
        assert!(overlaps(&questioned, &[blank])[0] <= 0.0);
    }
}
