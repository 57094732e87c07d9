//! The ways one signature's scan differs from branch to branch: the scanner's grey depth
//! and resolution, the pen's width and darkness, the paper's level and grain, a page laid
//! crooked, a slanted hand, JPEG re-compression. Training draws from them (augmentation),
//! and tests apply them to show that a scan still matches its own degraded copies.

use image::codecs::jpeg::{JpegDecoder, JpegEncoder};
use image::{DynamicImage, GrayImage, Luma};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::preprocess::at_grey_levels;
use crate::cpu::{Compiled, Isa};
use crate::error::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Variation {
    /// The scanner keeps this many grey levels (2-256).
    GreyLevels(u16),
    /// Strokes grow (positive) or shrink (negative) by this many pixels on each side.
    StrokeWidth(i32),
    /// The ink's contrast with the paper is multiplied by this (a lighter or darker pen).
    InkDarkness(f32),
    /// The page lies turned by this many degrees.
    Rotation(f32),
    /// The hand leans: x moves by this fraction of the height above the centre.
    Slant(f32),
    /// Resolution: 0.5 is a 600 dpi scan read at 300 dpi.
    Scale(f32),
    /// The paper's grey level and its grain (the spread of its noise).
    Paper { level: u8, grain: u8 },
    /// Saved as JPEG at this quality (1-100) and read back.
    Jpeg(u8),
}

impl std::fmt::Display for Variation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Variation::GreyLevels(levels) => write!(f, "{levels} grey levels"),
            Variation::StrokeWidth(by) => write!(f, "strokes {by:+} px"),
            Variation::InkDarkness(factor) => write!(f, "ink contrast x{factor}"),
            Variation::Rotation(degrees) => write!(f, "turned {degrees:+}°"),
            Variation::Slant(shear) => write!(f, "slant {shear:+}"),
            Variation::Scale(factor) => write!(f, "resolution x{factor}"),
            Variation::Paper { level, grain } => write!(f, "paper {level} grain {grain}"),
            Variation::Jpeg(quality) => write!(f, "JPEG quality {quality}"),
        }
    }
}

/// The variations a branch's scans are expected to cover, each near its far end.
pub const BRANCH_VARIATIONS: [Variation; 13] = [
    Variation::GreyLevels(16),
    Variation::GreyLevels(4),
    Variation::StrokeWidth(1),
    Variation::StrokeWidth(-1),
    Variation::InkDarkness(0.6),
    Variation::InkDarkness(1.4),
    Variation::Rotation(5.0),
    Variation::Rotation(-5.0),
    Variation::Slant(0.15),
    Variation::Scale(0.5),
    Variation::Scale(2.0),
    Variation::Paper {
        level: 215,
        grain: 6,
    },
    Variation::Jpeg(40),
];

/// `scan` as another branch would have scanned it; `seed` draws the paper's grain.
pub fn apply(scan: &GrayImage, variation: Variation, seed: u64) -> Result<GrayImage> {
    let paper = paper_level(scan);
    Ok(match variation {
        Variation::GreyLevels(levels) => at_grey_levels(scan.clone(), levels),
        Variation::StrokeWidth(by) => rank_filter(scan, by.unsigned_abs(), by > 0),
        Variation::InkDarkness(factor) => map_levels(scan, |v| {
            let ink = f32::from(paper) - f32::from(v);
            if ink > 0.0 {
                f32::from(paper) - ink * factor
            } else {
                f32::from(v)
            }
        }),
        Variation::Rotation(degrees) => turned(scan, degrees, paper),
        Variation::Slant(shear) => slanted(scan, shear, paper),
        Variation::Scale(factor) => image::imageops::resize(
            scan,
            ((scan.width() as f32 * factor).round() as u32).max(1),
            ((scan.height() as f32 * factor).round() as u32).max(1),
            image::imageops::FilterType::Lanczos3,
        ),
        Variation::Paper { level, grain } => {
            let mut rng = StdRng::seed_from_u64(seed);
            let shift = f32::from(level) - f32::from(paper);
            let mut out = scan.clone();
            for pixel in out.pixels_mut() {
                let noise = if grain > 0 {
                    rng.random_range(-f32::from(grain)..=f32::from(grain))
                } else {
                    0.0
                };
                // Ink keeps its darkness against the new paper: only the paper moves fully.
                let paperness = f32::from(pixel.0[0]) / f32::from(paper.max(1));
                let value = f32::from(pixel.0[0]) + paperness.min(1.0) * shift + noise;
                pixel.0[0] = value.round().clamp(0.0, 255.0) as u8;
            }
            out
        }
        Variation::Jpeg(quality) => {
            let mut bytes = Vec::new();
            JpegEncoder::new_with_quality(&mut bytes, quality.clamp(1, 100))
                .encode_image(scan)
                .map_err(|e| Error::Invalid(format!("JPEG re-compression failed: {e}")))?;
            DynamicImage::from_decoder(
                JpegDecoder::new(std::io::Cursor::new(bytes))
                    .map_err(|e| Error::Invalid(format!("JPEG re-compression failed: {e}")))?,
            )
            .map_err(|e| Error::Invalid(format!("JPEG re-compression failed: {e}")))?
            .to_luma8()
        }
    })
}

/// `image` turned by `degrees` about its centre, grown to hold all of it, the corners
/// filled with `fill`.
pub(super) fn turned(image: &GrayImage, degrees: f32, fill: u8) -> GrayImage {
    let (sin, cos) = degrees.to_radians().sin_cos();
    warp(image, [[cos, -sin], [sin, cos]], fill)
}

/// `image` slanted by `shear` (each row moved right by `shear` times its height above the
/// centre: a positive shear leans the writing forward), grown to hold all of it, the
/// corners filled with `fill`.
pub(super) fn slanted(image: &GrayImage, shear: f32, fill: u8) -> GrayImage {
    warp(image, [[1.0, -shear], [0.0, 1.0]], fill)
}

/// `image` turned by `degrees`, then slanted by `shear`, in one warp (one resampling, as
/// `turned` and `slanted` each make).
pub(super) fn turned_and_slanted(
    image: &GrayImage,
    degrees: f32,
    shear: f32,
    fill: u8,
) -> GrayImage {
    let (sin, cos) = degrees.to_radians().sin_cos();
    warp(
        image,
        [[cos - shear * sin, -sin - shear * cos], [sin, cos]],
        fill,
    )
}

/// The paper's grey: the commonest level of the brighter half of the page.
fn paper_level(scan: &GrayImage) -> u8 {
    let mut counts = [0u32; 256];
    for pixel in scan.pixels() {
        counts[pixel.0[0] as usize] += 1;
    }
    (128..256).max_by_key(|&v| counts[v]).unwrap_or(255) as u8
}

fn map_levels(scan: &GrayImage, f: impl Fn(u8) -> f32) -> GrayImage {
    let table: Vec<u8> = (0..=255u8)
        .map(|v| f(v).round().clamp(0.0, 255.0) as u8)
        .collect();
    let mut out = scan.clone();
    for pixel in out.pixels_mut() {
        pixel.0[0] = table[pixel.0[0] as usize];
    }
    out
}

/// The darkest (`thicken`) or brightest pixel within `radius` of each: dark strokes grow
/// or shrink by `radius` on every side.
fn rank_filter(scan: &GrayImage, radius: u32, thicken: bool) -> GrayImage {
    if radius == 0 {
        return scan.clone();
    }
    let pick = |a: u8, b: u8| if thicken { a.min(b) } else { a.max(b) };
    let pass = |source: &GrayImage, horizontal: bool| {
        GrayImage::from_fn(source.width(), source.height(), |x, y| {
            let (along, limit) = if horizontal {
                (x, source.width())
            } else {
                (y, source.height())
            };
            let span = along.saturating_sub(radius)..=(along + radius).min(limit - 1);
            let value = span
                .map(|i| {
                    let (sx, sy) = if horizontal { (i, y) } else { (x, i) };
                    source.get_pixel(sx, sy).0[0]
                })
                .reduce(pick)
                .unwrap_or(0);
            Luma([value])
        })
    };
    pass(&pass(scan, true), false)
}

/// The page under the linear map `matrix` about its centre, on a canvas that holds all of
/// it, the uncovered corners filled with `paper`; bilinear sampling.
fn warp(scan: &GrayImage, matrix: [[f32; 2]; 2], paper: u8) -> GrayImage {
    warp_on(Isa::chosen(), scan, matrix, paper)
}

/// The same, its sampling compiled for `isa` (the same bytes on every path).
fn warp_on(isa: Isa, scan: &GrayImage, matrix: [[f32; 2]; 2], paper: u8) -> GrayImage {
    let (width, height) = (scan.width() as f32, scan.height() as f32);
    let corners = [(0.0, 0.0), (width, 0.0), (0.0, height), (width, height)];
    let mapped = corners.map(|(x, y)| {
        let (dx, dy) = (x - width / 2.0, y - height / 2.0);
        (
            matrix[0][0] * dx + matrix[0][1] * dy,
            matrix[1][0] * dx + matrix[1][1] * dy,
        )
    });
    let extent = |pick: fn(&(f32, f32)) -> f32| {
        let values = mapped.iter().map(pick);
        values.clone().fold(f32::NEG_INFINITY, f32::max) - values.fold(f32::INFINITY, f32::min)
    };
    let (out_width, out_height) = (extent(|p| p.0).ceil(), extent(|p| p.1).ceil());
    let determinant = matrix[0][0] * matrix[1][1] - matrix[0][1] * matrix[1][0];
    let inverse = [
        [matrix[1][1] / determinant, -matrix[0][1] / determinant],
        [-matrix[1][0] / determinant, matrix[0][0] / determinant],
    ];
    let source = Padded::new(scan, paper);
    // Each column's share of the source point, computed once: the sums below are the same
    // operations in the same order as one expression per pixel, so the same bytes.
    let (x_of_columns, y_of_columns): (Vec<f32>, Vec<f32>) = (0..out_width as u32)
        .map(|x| {
            let dx = x as f32 - out_width / 2.0;
            (inverse[0][0] * dx, inverse[1][0] * dx)
        })
        .unzip();
    let mut out = vec![0; x_of_columns.len() * out_height as usize];
    isa.compiled(Rows {
        source: &source,
        xs: &x_of_columns,
        ys: &y_of_columns,
        per_row: [inverse[0][1], inverse[1][1]],
        centres: [out_height / 2.0, width / 2.0, height / 2.0],
        out: &mut out,
    });
    GrayImage::from_raw(out_width as u32, out_height as u32, out).expect("one byte a pixel")
}

/// Every row of a warp: pixel (x, y)'s source point is `(xs[x], ys[x])`, plus `per_row`
/// times the row's distance `dy` below the canvas's centre, plus the page's centre.
struct Rows<'a> {
    source: &'a Padded,
    xs: &'a [f32],
    ys: &'a [f32],
    per_row: [f32; 2],
    /// The canvas's half height, then the page's half width and half height.
    centres: [f32; 3],
    out: &'a mut [u8],
}

impl Compiled for Rows<'_> {
    type Output = ();
    #[inline(always)]
    fn run(self) {
        let [half_canvas, half_width, half_height] = self.centres;
        for (y, row) in self.out.chunks_exact_mut(self.xs.len().max(1)).enumerate() {
            let dy = y as f32 - half_canvas;
            let shift = [
                self.per_row[0] * dy,
                self.per_row[1] * dy,
                half_width,
                half_height,
            ];
            self.source.sample_row(self.xs, self.ys, shift, row);
        }
    }
}

/// Pixels sampled at once: eight lanes, so that each step of the sampler is a few vector
/// instructions even on the x86-64 baseline.
const LANES: usize = 8;

/// Paper laid around a page on every side, wide enough that every corner of a sample
/// between the page and one pixel beyond it is read from memory without a bounds test.
const MARGIN: usize = 2;

/// A grey page inside a margin of `outside`, read between its pixels with bilinear
/// sampling. The sampler has no branches: every sample's four corners are read and
/// blended (corners of one level blend to that level), the coordinates clamped into the
/// margin first (far outside, every corner is margin). Floors and roundings are made with
/// integer conversions, not `f32::floor` and `f32::round`, which the x86-64 baseline has
/// no instruction for. Its bytes are the sampler's before it (models/README, "Faster, the
/// same bytes"; `turns_and_slants_keep_their_bytes`).
struct Padded {
    pixels: Vec<u8>,
    stride: usize,
    width: f32,
    height: f32,
}

impl Padded {
    fn new(scan: &GrayImage, outside: u8) -> Self {
        let stride = scan.width() as usize + 2 * MARGIN;
        let mut pixels = vec![outside; stride * (scan.height() as usize + 2 * MARGIN)];
        if scan.width() > 0 {
            for (row, line) in scan
                .as_raw()
                .chunks_exact(scan.width() as usize)
                .zip(pixels.chunks_exact_mut(stride).skip(MARGIN))
            {
                line[MARGIN..MARGIN + row.len()].copy_from_slice(row);
            }
        }
        Self {
            pixels,
            stride,
            width: scan.width() as f32,
            height: scan.height() as f32,
        }
    }

    /// One row of a warp: pixel i's source point is (`xs[i]` + shift[0] + shift[2],
    /// `ys[i]` + shift[1] + shift[3]).
    #[inline(always)]
    fn sample_row(&self, xs: &[f32], ys: &[f32], shift: [f32; 4], out: &mut [u8]) {
        let (whole, rest) = (out.len() / LANES * LANES, out.len() % LANES);
        for ((xs, ys), out) in xs
            .chunks_exact(LANES)
            .zip(ys.chunks_exact(LANES))
            .zip(out[..whole].chunks_exact_mut(LANES))
        {
            let lanes = |values: &[f32]| values.try_into().expect("chunks of LANES");
            out.copy_from_slice(&self.sample(lanes(xs), lanes(ys), shift));
        }
        if rest > 0 {
            let lanes =
                |values: &[f32]| std::array::from_fn(|i| values[(whole + i).min(values.len() - 1)]);
            let samples = self.sample(lanes(xs), lanes(ys), shift);
            out[whole..].copy_from_slice(&samples[..rest]);
        }
    }

    /// `LANES` samples: each at (x + shift[0] + shift[2], y + shift[1] + shift[3]), pixel
    /// centres at half-integers, rounded half away from zero.
    #[inline(always)]
    fn sample(&self, xs: [f32; LANES], ys: [f32; LANES], shift: [f32; 4]) -> [u8; LANES] {
        let [across, down, half_width, half_height] = shift;
        // `max` before `min`: a coordinate that is not a number lands on the margin too.
        let limit = |v: f32, size: f32| v.max(-(MARGIN as f32)).min(size);
        let mut whole = [[0i32; LANES]; 2];
        let mut fraction = [[0f32; LANES]; 2];
        for i in 0..LANES {
            let x = limit(xs[i] + across + half_width - 0.5, self.width);
            let y = limit(ys[i] + down + half_height - 0.5, self.height);
            for (axis, v) in [x, y].into_iter().enumerate() {
                whole[axis][i] = floor(v);
                fraction[axis][i] = v - whole[axis][i] as f32;
            }
        }
        let mut corners = [[0f32; LANES]; 4];
        for i in 0..LANES {
            let top = (whole[1][i] + MARGIN as i32) as usize * self.stride
                + (whole[0][i] + MARGIN as i32) as usize;
            let bottom = top + self.stride;
            for (corner, at) in [top, top + 1, bottom, bottom + 1].into_iter().enumerate() {
                debug_assert!(at < self.pixels.len());
                // SAFETY: the coordinates were held to -MARGIN..=the page's size, so each
                // sample's top-left corner is at most (height + MARGIN, width + MARGIN) in
                // the margined page, whose last row and column lie MARGIN - 1 = 1 beyond:
                // all four corners are inside it. (With bounds tests, the reads were most of
                // the sampler's time.)
                corners[corner][i] = f32::from(unsafe { *self.pixels.get_unchecked(at) });
            }
        }
        std::array::from_fn(|i| {
            let [fx, fy] = [fraction[0][i], fraction[1][i]];
            let [a, b, c, d] = corners.map(|corner| corner[i]);
            let top = a * (1.0 - fx) + b * fx;
            let bottom = c * (1.0 - fx) + d * fx;
            let value = top * (1.0 - fy) + bottom * fy;
            // A blend of levels lies in 0..=255, so truncation is the floor.
            let whole = truncate(value);
            (whole + i32::from(value - whole as f32 >= 0.5)).clamp(0, 255) as u8
        })
    }
}

/// `v.floor()` for the coordinates of a page (far inside `i32`).
#[inline(always)]
fn floor(v: f32) -> i32 {
    let truncated = truncate(v);
    truncated - i32::from((truncated as f32) > v)
}

/// `v` rounded toward zero, for values far inside `i32` (anything else is held to
/// ±2^30 first). `as` would saturate instead, which the compiler cannot do in vector
/// registers: with it, the sampler ran one pixel at a time.
#[inline(always)]
#[expect(
    clippy::manual_clamp,
    reason = "clamp keeps a NaN, which `to_int_unchecked` must never see"
)]
fn truncate(v: f32) -> i32 {
    const BOUND: f32 = (1 << 30) as f32;
    let held = v.max(-BOUND).min(BOUND);
    // SAFETY: `held` is a number (`max` returns its other operand for one that is not)
    // within ±2^30, so it truncates to an i32.
    unsafe { held.to_int_unchecked() }
}

/// A random mix of branch variations for training: each kind drawn with probability
/// one half, at a random strength within the branch range.
pub fn random_branch(scan: &GrayImage, rng: &mut StdRng) -> Result<GrayImage> {
    let mut out = scan.clone();
    let mut maybe = |rng: &mut StdRng, variation: Variation| -> Result<()> {
        if rng.random_bool(0.5) {
            out = apply(&out, variation, rng.random())?;
        }
        Ok(())
    };
    let stroke = rng.random_range(-1..=1);
    maybe(rng, Variation::StrokeWidth(stroke))?;
    let darkness = rng.random_range(0.6..1.4);
    maybe(rng, Variation::InkDarkness(darkness))?;
    let degrees = rng.random_range(-5.0..5.0);
    maybe(rng, Variation::Rotation(degrees))?;
    let shear = rng.random_range(-0.15..0.15);
    maybe(rng, Variation::Slant(shear))?;
    let (level, grain) = (rng.random_range(200..=255), rng.random_range(0..=8));
    maybe(rng, Variation::Paper { level, grain })?;
    let levels = [4, 16, 64, 256][rng.random_range(0..4)];
    maybe(rng, Variation::GreyLevels(levels))?;
    let quality = rng.random_range(30..=95);
    maybe(rng, Variation::Jpeg(quality))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page() -> GrayImage {
        GrayImage::from_fn(200, 100, |x, y| {
            let on_stroke = (50..150).contains(&x) && (48..52).contains(&y);
            Luma([if on_stroke { 40 } else { 240 }])
        })
    }

    fn ink(scan: &GrayImage) -> usize {
        scan.pixels().filter(|p| p.0[0] < 140).count()
    }

    #[test]
    fn strokes_grow_and_shrink_by_the_radius() {
        assert_eq!(ink(&page()), 400);
        assert_eq!(
            ink(&apply(&page(), Variation::StrokeWidth(1), 0).unwrap()),
            102 * 6
        );
        assert_eq!(
            ink(&apply(&page(), Variation::StrokeWidth(-1), 0).unwrap()),
            98 * 2
        );
    }

    /// The integer floors and roundings must be `f32::floor` and `f32::round`'s: at pixel
    /// centres, half-way blends (rounded away from zero), and points left of or above the
    /// page, where truncation is not the floor.
    #[test]
    fn the_sampler_floors_and_rounds_as_f32_does() {
        let scan = GrayImage::from_raw(2, 2, vec![0, 255, 10, 11]).unwrap();
        let sampler = Padded::new(&scan, 200);
        let at = |x: f32, y: f32| sampler.sample([x; LANES], [y; LANES], [0.0; 4])[0];
        assert_eq!(at(0.5, 0.5), 0);
        assert_eq!(at(1.5, 1.5), 11);
        assert_eq!(at(1.0, 0.5), 128, "127.5 rounds up");
        assert_eq!(at(0.5, 0.75), 3, "2.5 rounds up");
        assert_eq!(at(0.25, 0.5), 50, "a quarter of paper 200, three of black");
        assert_eq!(at(-0.75, 1.5), 200, "wholly left of the page");
        assert_eq!(at(1.0, -0.6), 200, "wholly above it");
        assert_eq!(at(2.75, 1.5), 200, "wholly right of it");
        assert_eq!(at(-1e6, 1e6), 200, "far beyond a corner");
        assert_eq!(
            at(2.25, 2.25),
            188,
            "a sixteenth of its last pixel, the rest paper"
        );
        for v in [-2.5f32, -1.0, -0.3, 0.0, 0.7, 3.0, 471.99] {
            assert_eq!(floor(v), v.floor() as i32, "{v}");
        }
    }

    /// FNV-1a over each image's width, height and bytes, in order.
    fn fingerprint(images: impl IntoIterator<Item = GrayImage>) -> u64 {
        let mut fingerprint = 0xcbf2_9ce4_8422_2325u64;
        for image in images {
            let bytes = image.width().to_le_bytes().into_iter();
            let bytes = bytes
                .chain(image.height().to_le_bytes())
                .chain(image.into_raw());
            for byte in bytes {
                fingerprint = (fingerprint ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
            }
        }
        fingerprint
    }

    /// The copy check's threshold was measured on these bytes: a faster warp must give the
    /// same ones. The fingerprint (FNV-1a over each result's size and pixels) was taken
    /// from the warp as it stood when that threshold was chosen.
    #[test]
    fn turns_and_slants_keep_their_bytes() {
        let canvas = GrayImage::from_fn(220, 150, |x, y| {
            let wave = ((x as f32 / 13.0).sin() * 40.0 + 75.0 - y as f32).abs();
            Luma([if wave < 4.0 {
                255 - (wave * 50.0) as u8
            } else {
                (x * y % 7) as u8
            }])
        });
        let warped = [-5.0, -3.0, 1.0, 2.5, 5.0]
            .map(|degrees| turned(&canvas, degrees, 0))
            .into_iter()
            .chain([-0.15, 0.05, 0.1].map(|shear| slanted(&canvas, shear, 9)));
        let fingerprint = fingerprint(warped);
        assert_eq!(fingerprint, 0x5b06_dbc6_ee29_5b22, "{fingerprint:#x}");
    }

    #[test]
    fn ink_on_plain_paper_keeps_its_bytes() {
        // Ink on a plain background, as a model's canvas (black) and a scan (white paper),
        // turned, slanted and both: the fingerprint of stop 74's sampler. (Skipping the
        // samples whose corners are all paper kept these bytes but made the copy check
        // slower on every path: stop 75, models/README.)
        let stroke = |x: u32, y: u32| ((x as f32 / 11.0).sin() * 35.0 + 70.0 - y as f32).abs();
        let canvas = GrayImage::from_fn(220, 150, |x, y| {
            let wave = stroke(x, y);
            Luma([if wave < 3.0 && x > 20 && x < 190 {
                250 - (wave * 60.0) as u8
            } else {
                0
            }])
        });
        let scan = GrayImage::from_fn(300, 120, |x, y| {
            Luma([if stroke(x, y + 10) < 2.0 { 30 } else { 238 }])
        });
        let warped = [-5.0, -2.0, 1.0, 4.0]
            .map(|degrees| turned(&canvas, degrees, 0))
            .into_iter()
            .chain([-0.15, 0.1].map(|shear| slanted(&canvas, shear, 0)))
            .chain([(-4.0, 0.05), (3.0, -0.1)].map(|(d, s)| turned_and_slanted(&canvas, d, s, 0)))
            .chain([-3.0, 5.0].map(|degrees| turned(&scan, degrees, 238)))
            .chain([0.15].map(|shear| slanted(&scan, shear, 238)));
        let fingerprint = fingerprint(warped);
        assert_eq!(fingerprint, 0x1fae_cb34_f15b_675b, "{fingerprint:#x}");
    }

    #[test]
    fn every_instruction_set_warps_to_the_same_bytes() {
        let (sin, cos) = 3f32.to_radians().sin_cos();
        for matrix in [[[cos, -sin], [sin, cos]], [[1.0, -0.12], [0.0, 1.0]]] {
            let portable = warp_on(Isa::Portable, &page(), matrix, 240);
            for isa in Isa::available() {
                let warped = warp_on(isa, &page(), matrix, 240);
                assert!(warped == portable, "{isa:?}, {matrix:?}");
            }
        }
    }

    #[test]
    fn a_turned_page_keeps_its_ink_and_fills_the_corners_with_paper() {
        let turned = apply(&page(), Variation::Rotation(5.0), 0).unwrap();
        assert!(turned.width() > 200 && turned.height() > 100);
        assert_eq!(turned.get_pixel(0, 0).0[0], 240);
        let ratio = ink(&turned) as f64 / 400.0;
        assert!((0.8..1.25).contains(&ratio), "{ratio}");
    }

    #[test]
    fn grey_depth_ink_and_paper_change_levels_only() {
        let four = apply(&page(), Variation::GreyLevels(4), 0).unwrap();
        assert!(four.pixels().all(|p| [0, 85, 170, 255].contains(&p.0[0])));
        let light = apply(&page(), Variation::InkDarkness(0.5), 0).unwrap();
        assert_eq!(light.get_pixel(100, 50).0[0], 140);
        assert_eq!(light.get_pixel(0, 0).0[0], 240);
        let paper = apply(
            &page(),
            Variation::Paper {
                level: 210,
                grain: 0,
            },
            0,
        )
        .unwrap();
        assert_eq!(paper.get_pixel(0, 0).0[0], 210);
        let jpeg = apply(&page(), Variation::Jpeg(40), 0).unwrap();
        assert_eq!(jpeg.dimensions(), (200, 100));
        assert!(jpeg.get_pixel(100, 50).0[0] < 100);
    }
}
