//! The ways one signature's scan differs from branch to branch: the scanner's grey depth
//! and resolution, the pen's width and darkness, the paper's level and grain, a page laid
//! crooked, a slanted hand, JPEG re-compression. Training draws from them (augmentation),
//! and tests apply them to show that a scan still matches its own degraded copies.

use image::codecs::jpeg::{JpegDecoder, JpegEncoder};
use image::{DynamicImage, GrayImage, Luma};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::preprocess::at_grey_levels;
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
    let source = Bilinear::new(scan, paper);
    // Each column's share of the source point, computed once: the sums below are the same
    // operations in the same order as one expression per pixel, so the same bytes.
    let columns: Vec<(f32, f32)> = (0..out_width as u32)
        .map(|x| {
            let dx = x as f32 - out_width / 2.0;
            (inverse[0][0] * dx, inverse[1][0] * dx)
        })
        .collect();
    let mut out = Vec::with_capacity(columns.len() * out_height as usize);
    for y in 0..out_height as u32 {
        let dy = y as f32 - out_height / 2.0;
        let (across, down) = (inverse[0][1] * dy, inverse[1][1] * dy);
        out.extend(columns.iter().map(|&(x_of_column, y_of_column)| {
            source.at(
                x_of_column + across + width / 2.0,
                y_of_column + down + height / 2.0,
            )
        }));
    }
    GrayImage::from_raw(out_width as u32, out_height as u32, out).expect("one byte a pixel")
}

/// A grey image read between its pixels, `outside` beyond its edges. Integer floors and
/// roundings, not `f32::floor` and `f32::round`: the x86-64 baseline has no instruction for
/// those, and with their library calls this sampler was the copy check's largest cost. The
/// bytes are the same (models/README, "Faster, the same bytes").
struct Bilinear<'a> {
    pixels: &'a [u8],
    width: i32,
    height: i32,
    outside: u8,
}

impl<'a> Bilinear<'a> {
    fn new(scan: &'a GrayImage, outside: u8) -> Self {
        Self {
            pixels: scan.as_raw(),
            width: scan.width() as i32,
            height: scan.height() as i32,
            outside,
        }
    }

    #[inline]
    fn pixel(&self, x: i32, y: i32) -> u8 {
        if x < 0 || y < 0 || x >= self.width || y >= self.height {
            self.outside
        } else {
            self.pixels[(y * self.width + x) as usize]
        }
    }

    /// The value at (x, y), pixel centres at half-integers, rounded half away from zero.
    #[inline]
    fn at(&self, x: f32, y: f32) -> u8 {
        let (x, y) = (x - 0.5, y - 0.5);
        let (x0, y0) = (floor(x), floor(y));
        let inside = x0 >= 0 && y0 >= 0 && x0 + 1 < self.width && y0 + 1 < self.height;
        let corners = if inside {
            let top = (y0 * self.width + x0) as usize;
            let bottom = top + self.width as usize;
            [
                self.pixels[top],
                self.pixels[top + 1],
                self.pixels[bottom],
                self.pixels[bottom + 1],
            ]
        } else if x0 < -1 || y0 < -1 || x0 >= self.width || y0 >= self.height {
            return self.outside;
        } else {
            [
                self.pixel(x0, y0),
                self.pixel(x0 + 1, y0),
                self.pixel(x0, y0 + 1),
                self.pixel(x0 + 1, y0 + 1),
            ]
        };
        // Most of a canvas is one level (its black or its paper), which blends to itself.
        if corners.iter().all(|&c| c == corners[0]) {
            return corners[0];
        }
        let [a, b, c, d] = corners.map(f32::from);
        let (fx, fy) = (x - x0 as f32, y - y0 as f32);
        let top = a * (1.0 - fx) + b * fx;
        let bottom = c * (1.0 - fx) + d * fx;
        let value = top * (1.0 - fy) + bottom * fy;
        // A blend of levels lies in 0..=255, so truncation is the floor.
        let whole = value as i32;
        (whole + i32::from(value - whole as f32 >= 0.5)).clamp(0, 255) as u8
    }
}

/// `v.floor()` for the coordinates of a page (far inside `i32`).
fn floor(v: f32) -> i32 {
    let truncated = v as i32;
    truncated - i32::from((truncated as f32) > v)
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
        let sampler = Bilinear::new(&scan, 200);
        assert_eq!(sampler.at(0.5, 0.5), 0);
        assert_eq!(sampler.at(1.5, 1.5), 11);
        assert_eq!(sampler.at(1.0, 0.5), 128, "127.5 rounds up");
        assert_eq!(sampler.at(0.5, 0.75), 3, "2.5 rounds up");
        assert_eq!(
            sampler.at(0.25, 0.5),
            50,
            "a quarter of paper 200, three of black"
        );
        assert_eq!(sampler.at(-0.75, 1.5), 200, "wholly left of the page");
        assert_eq!(sampler.at(1.0, -0.6), 200, "wholly above it");
        for v in [-2.5f32, -1.0, -0.3, 0.0, 0.7, 3.0, 471.99] {
            assert_eq!(floor(v), v.floor() as i32, "{v}");
        }
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
        let mut fingerprint = 0xcbf2_9ce4_8422_2325u64;
        let mut eat = |byte: u8| {
            fingerprint = (fingerprint ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
        };
        let warped = [-5.0, -3.0, 1.0, 2.5, 5.0]
            .map(|degrees| turned(&canvas, degrees, 0))
            .into_iter()
            .chain([-0.15, 0.05, 0.1].map(|shear| slanted(&canvas, shear, 9)));
        for image in warped {
            image.width().to_le_bytes().into_iter().for_each(&mut eat);
            image.height().to_le_bytes().into_iter().for_each(&mut eat);
            image.as_raw().iter().copied().for_each(&mut eat);
        }
        assert_eq!(fingerprint, 0x5b06_dbc6_ee29_5b22, "{fingerprint:#x}");
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
