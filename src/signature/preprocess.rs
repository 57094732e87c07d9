//! From a scan of any size and format to the encoder's input: grey, background removed
//! (Otsu), cropped to the ink, centred on a fixed canvas and inverted so ink is bright.
//! The same steps serve signatures (150x220 canvas, as in SigNet) and handwritten
//! characters (105x105).

use std::borrow::Cow;

use image::{DynamicImage, GenericImageView, GrayImage, Luma, imageops};

use crate::error::{Error, Result};

/// Canvas height x width of a normalised signature.
pub const SIGNATURE_CANVAS: (u32, u32) = (150, 220);
/// Canvas of a handwritten character (Omniglot's native size).
pub const CHARACTER_CANVAS: (u32, u32) = (105, 105);

/// Scans are reduced to this many pixels before thresholding: more resolution only adds
/// work, the canvas is far smaller.
pub(super) const WORKING_PIXELS: u64 = 2_000_000;
/// Ink darker than the (blurred) paper by less than this many grey levels is no ink: a
/// blank page. The faintest pencil signature in CEDAR stands 27 levels clear.
const MIN_INK_CONTRAST: f64 = 15.0;
/// Paper-relative scans are read at this many grey levels (0, 17, ..., 255): the depth of
/// the CEDAR scans the scorer is fitted on. A full 8-bit scan of the same page then gives the same
/// canvas, where before its finer ink levels moved the stroke descriptor (the issue-17
/// held-out writers scored a 12.2% skilled EER at 256 levels, 10.6% at 16).
const SCAN_LEVELS: u16 = 16;
/// Fewer ink pixels than this fraction of the page: nothing was signed.
const MIN_INK_FRACTION: f64 = 0.0005;
/// Ink outside these quantiles of the ink's x and y positions is dust, not signature.
const BOX_QUANTILE: f64 = 0.002;
/// A page whose paper spreads more than this (over the ink's contrast), or that is more
/// ink than this, or both fairly textured and fairly dark, is a photograph, not a signed
/// page. On samples of every scan set in ../shared (CEDAR 300, cross-media 200, NISDCC
/// 200, SVC2004 200, Omniglot 200) the spread stayed at or under 0.161 and the ink under
/// 0.34; photographs (LFW 300, ORL 100) spread from 0.13 and are 0.15-0.87 ink. These
/// limits refuse 293 of the 300 LFW and all 100 ORL photographs, and no scan.
const MAX_PAPER_SPREAD: f64 = 0.22;
const MAX_INK_FRACTION: f64 = 0.40;
/// (spread, ink) beyond both of which a page is a photograph.
const TEXTURED_AND_DARK: (f64, f64) = (0.18, 0.30);

/// Where the ink's dark core lands on the canvas under `Normalisation::InkStretched`, and
/// which share of the ink is at least that dark.
const INK_CORE_LEVEL: f64 = 224.0;
const INK_CORE_QUANTILE: f64 = 0.9;
/// Grey levels the stretched ink is rounded to: a scanner's depth (256 or 16) no longer
/// shows.
const INK_LEVELS: f64 = 16.0;

/// How ink levels reach the canvas. A model records the one it was trained with in its
/// metadata (`normalisation`), so it always sees scans prepared the way it learnt them.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    serde::Serialize,
    serde::Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "kebab-case")]
pub enum Normalisation {
    /// The ink's grey relative to the paper's: the shipped model's, and that of a model
    /// file without the key. A lighter pen moves its embedding (models/README).
    #[default]
    PaperRelative,
    /// Relative to the paper, then stretched so the ink's dark core sits at one level and
    /// rounded to 16 levels: a lighter or darker pen, or a scanner's grey depth, no
    /// longer changes the canvas.
    InkStretched,
}

impl Normalisation {
    pub const METADATA_KEY: &str = "normalisation";

    pub fn name(self) -> &'static str {
        match self {
            Self::PaperRelative => "paper-relative",
            Self::InkStretched => "ink-stretched",
        }
    }

    /// The normalisation a model's metadata names; none named is the original one.
    pub fn from_metadata(value: Option<&str>) -> Result<Self> {
        match value {
            None | Some("paper-relative") => Ok(Self::PaperRelative),
            Some("ink-stretched") => Ok(Self::InkStretched),
            Some(other) => Err(Error::Invalid(format!(
                "unknown scan normalisation `{other}` (this Vouch knows paper-relative and ink-stretched)"
            ))),
        }
    }

    /// The scan's greys as this normalisation reads them. Paper-relative reads every scan at
    /// `SCAN_LEVELS`; ink-stretched keeps them all, because it rounds after stretching
    /// (rounding first would leave a lighter pen's few levels coarse once stretched).
    fn read(self, grey: GrayImage) -> GrayImage {
        match self {
            Self::PaperRelative => at_grey_levels(grey, SCAN_LEVELS),
            Self::InkStretched => grey,
        }
    }

    /// Moves the ink's levels (paper is 0, ink brighter) as this normalisation says.
    fn finish(self, inverted: &mut GrayImage) {
        if self == Self::PaperRelative {
            return;
        }
        let mut ink: Vec<u8> = inverted
            .pixels()
            .map(|p| p.0[0])
            .filter(|&v| v > 0)
            .collect();
        if ink.is_empty() {
            return;
        }
        let at = ((INK_CORE_QUANTILE * ink.len() as f64) as usize).min(ink.len() - 1);
        let core = f64::from(*ink.select_nth_unstable(at).1).max(1.0);
        let step = 255.0 / (INK_LEVELS - 1.0);
        for pixel in inverted.pixels_mut().filter(|p| p.0[0] > 0) {
            let stretched = (f64::from(pixel.0[0]) * INK_CORE_LEVEL / core).min(255.0);
            // Faint ink stays ink: rounding must not turn a stroke into paper.
            pixel.0[0] = ((stretched / step).round() * step).max(step) as u8;
        }
    }
}

/// A normalised scan: `canvas` is what the encoder sees; `ink`, the same ink before it
/// was fitted onto a canvas, is what the store keeps (`reference`).
#[derive(Debug, Clone)]
pub struct Normalised {
    pub canvas: GrayImage,
    pub ink: GrayImage,
    pub threshold: u8,
    pub ink_fraction: f32,
}

impl Normalised {
    /// What a template is made of this scan, borrowed: nothing is copied.
    pub fn template_input(&self) -> TemplateInput<'_> {
        TemplateInput {
            canvas: Cow::Borrowed(&self.canvas),
            ink: Some(Cow::Borrowed(&self.ink)),
        }
    }
}

/// What one template is made from: the encoder's canvas, and the ink that canvas was
/// fitted from, which the stroke descriptor reads on its own canvas when a model's is not
/// the encoder's (the ink fitted afresh, never the encoder's canvas enlarged).
#[derive(Debug, Clone)]
pub struct TemplateInput<'a> {
    pub canvas: Cow<'a, GrayImage>,
    /// `None` for a canvas kept without its ink: only a model that reads the descriptor
    /// on the encoder's canvas can make its template.
    pub ink: Option<Cow<'a, GrayImage>>,
}

impl<'a> TemplateInput<'a> {
    /// A canvas alone, as references were kept before 2026-12-05.
    pub fn canvas_only(canvas: &'a GrayImage) -> Self {
        Self {
            canvas: Cow::Borrowed(canvas),
            ink: None,
        }
    }
}

/// Normalises a decoded scan onto a `canvas` of (height, width); `source` names the file
/// in errors.
pub fn normalise(
    image: &DynamicImage,
    canvas: (u32, u32),
    normalisation: Normalisation,
    source: &str,
) -> Result<Normalised> {
    let grey = normalisation.read(working_grey(image));
    // Paper grain and pencil speckle average out under a blur; strokes stay dark. The
    // threshold and the ink's box come from the blurred page (as in SigNet's
    // preprocessing), the grey levels kept from the original.
    let blurred = super::blur::blur_sigma_2(&grey);
    let histogram = histogram(&blurred);
    let threshold = otsu_threshold(&histogram);
    let (ink_mean, paper_mean) = class_means(&histogram, threshold);
    let ink_pixels: u64 = histogram[..=threshold as usize].iter().sum();
    let ink_fraction = ink_pixels as f64 / (grey.width() as f64 * grey.height() as f64);
    if paper_mean - ink_mean < MIN_INK_CONTRAST || ink_fraction < MIN_INK_FRACTION {
        return Err(Error::EmptyScan(source.to_string()));
    }
    let (x0, y0, x1, y1) = ink_box(&blurred, threshold);
    refuse_photographs(&ink_shape(&blurred, threshold, (x0, y0, x1, y1)), source)?;
    let ink = imageops::crop_imm(&grey, x0, y0, x1 - x0 + 1, y1 - y0 + 1).to_image();
    // Paper becomes 0; ink keeps its grey level, inverted, so pressure and stroke width
    // survive. The level is read against the paper's, not absolute: a brighter scanner or
    // a tinted cheque must not look like a different pen.
    let to_white = 255.0 / paper_mean.max(1.0);
    let mut inverted = GrayImage::from_fn(ink.width(), ink.height(), |x, y| {
        let value = ink.get_pixel(x, y).0[0];
        let relative = (f64::from(value) * to_white).min(255.0);
        Luma([if value > threshold {
            0
        } else {
            (255.0 - relative).round() as u8
        }])
    });
    normalisation.finish(&mut inverted);
    Ok(Normalised {
        canvas: centre(&inverted, canvas),
        ink: inverted,
        threshold,
        ink_fraction: ink_fraction as f32,
    })
}

/// Grey on white: transparency is paper, and large scans are reduced first.
fn working_grey(image: &DynamicImage) -> GrayImage {
    let (width, height) = image.dimensions();
    let pixels = u64::from(width) * u64::from(height);
    let reduced;
    let image = if pixels > WORKING_PIXELS {
        let scale = (WORKING_PIXELS as f64 / pixels as f64).sqrt();
        reduced = image.resize(
            ((width as f64 * scale) as u32).max(1),
            ((height as f64 * scale) as u32).max(1),
            imageops::FilterType::Triangle,
        );
        &reduced
    } else {
        image
    };
    if !image.color().has_alpha() {
        return image.to_luma8();
    }
    let rgba = image.to_rgba8();
    GrayImage::from_fn(rgba.width(), rgba.height(), |x, y| {
        let [r, g, b, a] = rgba.get_pixel(x, y).0;
        let luma = 0.299 * f32::from(r) + 0.587 * f32::from(g) + 0.114 * f32::from(b);
        let alpha = f32::from(a) / 255.0;
        Luma([(luma * alpha + 255.0 * (1.0 - alpha)).round() as u8])
    })
}

/// `grey` as a scanner keeping `levels` evenly spaced grey levels (2-256) would give it:
/// each grey rounded to the nearest.
pub fn at_grey_levels(mut grey: GrayImage, levels: u16) -> GrayImage {
    let step = 255.0 / f32::from(levels.clamp(2, 256) - 1);
    let table: Vec<u8> = (0..=255u8)
        .map(|v| ((f32::from(v) / step).round() * step).round().min(255.0) as u8)
        .collect();
    for pixel in grey.pixels_mut() {
        pixel.0[0] = table[usize::from(pixel.0[0])];
    }
    grey
}

fn histogram(grey: &GrayImage) -> [u64; 256] {
    let mut counts = [0u64; 256];
    for pixel in grey.pixels() {
        counts[pixel.0[0] as usize] += 1;
    }
    counts
}

/// Otsu's threshold: the grey level that maximises the between-class variance. Pixels at
/// or below it are ink.
pub fn otsu_threshold(histogram: &[u64; 256]) -> u8 {
    let total: u64 = histogram.iter().sum();
    let weighted_total: f64 = histogram
        .iter()
        .enumerate()
        .map(|(level, &count)| level as f64 * count as f64)
        .sum();
    let (mut below, mut weighted_below) = (0u64, 0f64);
    let (mut best, mut best_variance) = (0u8, -1f64);
    for (level, &count) in histogram.iter().enumerate() {
        below += count;
        weighted_below += level as f64 * count as f64;
        let above = total - below;
        if below == 0 || above == 0 {
            continue;
        }
        let mean_below = weighted_below / below as f64;
        let mean_above = (weighted_total - weighted_below) / above as f64;
        let variance = below as f64 * above as f64 * (mean_below - mean_above).powi(2);
        if variance > best_variance {
            best_variance = variance;
            best = level as u8;
        }
    }
    best
}

fn class_means(histogram: &[u64; 256], threshold: u8) -> (f64, f64) {
    let mean = |range: std::ops::Range<usize>| {
        let count: u64 = histogram[range.clone()].iter().sum();
        let sum: f64 = range.map(|l| l as f64 * histogram[l] as f64).sum();
        if count == 0 { 0.0 } else { sum / count as f64 }
    };
    let split = threshold as usize + 1;
    (mean(0..split), mean(split..256))
}

/// The box holding the ink, ignoring stray specks at its edges.
fn ink_box(grey: &GrayImage, threshold: u8) -> (u32, u32, u32, u32) {
    let (mut columns, mut rows) = (
        vec![0u64; grey.width() as usize],
        vec![0u64; grey.height() as usize],
    );
    for (x, y, pixel) in grey.enumerate_pixels() {
        if pixel.0[0] <= threshold {
            columns[x as usize] += 1;
            rows[y as usize] += 1;
        }
    }
    let (x0, x1) = quantile_span(&columns);
    let (y0, y1) = quantile_span(&rows);
    (x0, y0, x1, y1)
}

fn quantile_span(counts: &[u64]) -> (u32, u32) {
    let total: u64 = counts.iter().sum();
    let cut = (total as f64 * BOX_QUANTILE) as u64;
    let mut seen = 0;
    let first = counts
        .iter()
        .position(|&c| {
            seen += c;
            seen > cut
        })
        .unwrap_or(0);
    seen = 0;
    let last = counts.len()
        - 1
        - counts
            .iter()
            .rev()
            .position(|&c| {
                seen += c;
                seen > cut
            })
            .unwrap_or(0);
    (first as u32, last.max(first) as u32)
}

/// How the ink lies on a page: what tells a signed page from a photograph.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct InkShape {
    /// Share of the page that is ink.
    pub ink_fraction: f64,
    /// The strokes' mean width (twice the ink's area over its outline) over the ink box's
    /// shorter side: thin lines are small, the blobs of a photograph large.
    pub stroke_width: f64,
    /// The paper's grey spread over the ink's contrast: blank paper is even, the
    /// background of a photograph is not.
    pub paper_spread: f64,
}

/// A page that reads as a photograph (a face, a room) is not a scan of handwriting.
fn refuse_photographs(shape: &InkShape, source: &str) -> Result<()> {
    let reason = if shape.paper_spread > MAX_PAPER_SPREAD {
        format!(
            "its background is textured like a photograph's (spread {:.2}; paper stays under {MAX_PAPER_SPREAD})",
            shape.paper_spread
        )
    } else if shape.ink_fraction > MAX_INK_FRACTION
        || (shape.paper_spread > TEXTURED_AND_DARK.0 && shape.ink_fraction > TEXTURED_AND_DARK.1)
    {
        format!(
            "{:.0}% of it is dark on a textured background, where a signed page is mostly plain paper",
            100.0 * shape.ink_fraction
        )
    } else {
        return Ok(());
    };
    Err(Error::NotAScan {
        reason,
        file: source.to_string(),
    })
}

/// The shape of the ink of a thresholded (blurred) page inside its ink box.
pub fn ink_shape(
    blurred: &GrayImage,
    threshold: u8,
    (x0, y0, x1, y1): (u32, u32, u32, u32),
) -> InkShape {
    let is_ink = |x: u32, y: u32| blurred.get_pixel(x, y).0[0] <= threshold;
    let (mut area, mut outline) = (0u64, 0u64);
    for y in y0..=y1 {
        for x in x0..=x1 {
            if !is_ink(x, y) {
                continue;
            }
            area += 1;
            let edge = x == x0
                || y == y0
                || x == x1
                || y == y1
                || !is_ink(x - 1, y)
                || !is_ink(x + 1, y)
                || !is_ink(x, y - 1)
                || !is_ink(x, y + 1);
            outline += u64::from(edge);
        }
    }
    let histogram = histogram(blurred);
    let (ink_mean, paper_mean) = class_means(&histogram, threshold);
    let paper: Vec<f64> = blurred
        .pixels()
        .map(|p| f64::from(p.0[0]))
        .filter(|&v| v > f64::from(threshold))
        .collect();
    let paper_variance =
        paper.iter().map(|v| (v - paper_mean).powi(2)).sum::<f64>() / paper.len().max(1) as f64;
    let shorter_side = f64::from((x1 - x0 + 1).min(y1 - y0 + 1));
    InkShape {
        ink_fraction: histogram[..=threshold as usize].iter().sum::<u64>() as f64
            / (f64::from(blurred.width()) * f64::from(blurred.height())),
        stroke_width: 2.0 * area as f64 / outline.max(1) as f64 / shorter_side,
        paper_spread: paper_variance.sqrt() / (paper_mean - ink_mean).max(1.0),
    }
}

/// Scales `ink` to fit the canvas, keeping its aspect ratio, and centres it: what every
/// model was trained and fitted on.
pub(super) fn centre(ink: &GrayImage, canvas: (u32, u32)) -> GrayImage {
    centre_with(ink, canvas, |ink, width, height| {
        imageops::resize(ink, width, height, imageops::FilterType::Triangle)
    })
}

/// `centre` for the eye only: the same filter with the CPU's SIMD, within a grey level of
/// it and a fraction of the time (a kept ink is several times the canvas). Never embedded.
pub(super) fn centre_to_show(ink: &GrayImage, canvas: (u32, u32)) -> GrayImage {
    centre_with(ink, canvas, crate::imageio::resize_bilinear)
}

fn centre_with(
    ink: &GrayImage,
    (height, width): (u32, u32),
    resize: impl Fn(&GrayImage, u32, u32) -> GrayImage,
) -> GrayImage {
    let scale = (width as f64 / ink.width() as f64).min(height as f64 / ink.height() as f64);
    let fitted_width = ((ink.width() as f64 * scale).round() as u32).clamp(1, width);
    let fitted_height = ((ink.height() as f64 * scale).round() as u32).clamp(1, height);
    let fitted = resize(ink, fitted_width, fitted_height);
    let mut canvas = GrayImage::new(width, height);
    imageops::overlay(
        &mut canvas,
        &fitted,
        i64::from((width - fitted_width) / 2),
        i64::from((height - fitted_height) / 2),
    );
    canvas
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page_with_stroke() -> GrayImage {
        GrayImage::from_fn(400, 300, |x, y| {
            let on_stroke = (100..300).contains(&x) && (y as i32 - 150).abs() < 6;
            Luma([if on_stroke { 30 } else { 235 }])
        })
    }

    #[test]
    fn otsu_splits_ink_from_paper() {
        let mut histogram = [0u64; 256];
        histogram[30] = 100;
        histogram[235] = 10_000;
        let threshold = otsu_threshold(&histogram);
        assert!((30..235).contains(&threshold), "{threshold}");
    }

    #[test]
    fn a_stroke_is_cropped_centred_and_bright() {
        let normalised = normalise(
            &DynamicImage::ImageLuma8(page_with_stroke()),
            SIGNATURE_CANVAS,
            Normalisation::default(),
            "test",
        )
        .unwrap();
        let canvas = normalised.canvas;
        assert_eq!(canvas.dimensions(), (220, 150));
        // The 200 px stroke fills the width; the corners are empty paper.
        assert!(canvas.get_pixel(110, 75).0[0] > 200);
        assert!(canvas.get_pixel(2, 75).0[0] > 100);
        assert_eq!(canvas.get_pixel(0, 0).0[0], 0);
    }

    #[test]
    fn a_blank_page_is_an_error() {
        let blank = GrayImage::from_fn(300, 200, |x, y| Luma([230 + ((x * 7 + y * 13) % 9) as u8]));
        let error = normalise(
            &DynamicImage::ImageLuma8(blank),
            SIGNATURE_CANVAS,
            Normalisation::default(),
            "blank.png",
        )
        .unwrap_err();
        assert!(error.to_string().contains("blank.png"), "{error}");
    }

    #[test]
    fn a_photograph_is_not_a_scan() {
        for photo in ["astronaut.png", "coffee.png", "two_faces.png"] {
            let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/data")
                .join(photo);
            let image = crate::imageio::load(&path).unwrap();
            let error =
                normalise(&image, SIGNATURE_CANVAS, Normalisation::default(), photo).unwrap_err();
            assert!(matches!(error, Error::NotAScan { .. }), "{photo}: {error}");
        }
    }

    #[test]
    fn a_transparent_background_is_paper() {
        let rgba = image::RgbaImage::from_fn(400, 300, |x, y| {
            if (100..300).contains(&x) && (y as i32 - 150).abs() < 6 {
                image::Rgba([0, 0, 90, 255])
            } else {
                image::Rgba([0, 0, 0, 0])
            }
        });
        let normalised = normalise(
            &DynamicImage::ImageRgba8(rgba),
            SIGNATURE_CANVAS,
            Normalisation::default(),
            "rgba",
        )
        .unwrap();
        assert!(normalised.canvas.get_pixel(110, 75).0[0] > 200);
        assert_eq!(normalised.canvas.get_pixel(110, 5).0[0], 0);
    }
}
