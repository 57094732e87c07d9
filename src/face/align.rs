//! Alignment of a face to a canonical chip, as dlib's `get_face_chip_details` does with 68
//! landmarks: a least-squares similarity transform (rotation, uniform scale, shift) from
//! dlib's mean face shape to the detected eye, nose and upper-mouth points, then bilinear
//! sampling. The recognition network was trained on exactly such chips.

use image::{Rgb, RgbImage, imageops};
use serde::Serialize;

/// Chip padding around the mean face, as a fraction of its size (dlib's default for the
/// recognition network).
pub const CHIP_PADDING: f64 = 0.25;

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Point {
    pub x: f32,
    pub y: f32,
}

/// dlib's mean face shape for landmarks 17..=67 (Boost Software Licence, dlib
/// `image_transforms/interpolation.h`), in a unit square.
const MEAN_FACE_X: [f64; 51] = [
    0.000213256,
    0.0752622,
    0.18113,
    0.29077,
    0.393397,
    0.586856,
    0.689483,
    0.799124,
    0.904991,
    0.98004,
    0.490127,
    0.490127,
    0.490127,
    0.490127,
    0.36688,
    0.426036,
    0.490127,
    0.554217,
    0.613373,
    0.121737,
    0.187122,
    0.265825,
    0.334606,
    0.260918,
    0.182743,
    0.645647,
    0.714428,
    0.793132,
    0.858516,
    0.79751,
    0.719335,
    0.254149,
    0.340985,
    0.428858,
    0.490127,
    0.551395,
    0.639268,
    0.726104,
    0.642159,
    0.556721,
    0.490127,
    0.423532,
    0.338094,
    0.290379,
    0.428096,
    0.490127,
    0.552157,
    0.689874,
    0.553364,
    0.490127,
    0.42689,
];
const MEAN_FACE_Y: [f64; 51] = [
    0.106454, 0.038915, 0.0187482, 0.0344891, 0.0773906, 0.0773906, 0.0344891, 0.0187482, 0.038915,
    0.106454, 0.203352, 0.307009, 0.409805, 0.515625, 0.587326, 0.609345, 0.628106, 0.609345,
    0.587326, 0.216423, 0.178758, 0.179852, 0.231733, 0.245099, 0.244077, 0.231733, 0.179852,
    0.178758, 0.216423, 0.244077, 0.245099, 0.780233, 0.745405, 0.727388, 0.742578, 0.727388,
    0.745405, 0.780233, 0.864805, 0.902192, 0.909281, 0.902192, 0.864805, 0.784792, 0.778746,
    0.785343, 0.778746, 0.784792, 0.824182, 0.831803, 0.824182,
];

/// Landmarks used for alignment: like dlib, not the jaw (0..=16), the eyebrows (17..=26)
/// or the lower lip (55..=59, 65..=67), which move with expression.
fn used_for_alignment(index: usize) -> bool {
    (27..=67).contains(&index) && !(55..=59).contains(&index) && !(65..=67).contains(&index)
}

/// Maps chip pixel coordinates to image coordinates: `image = scale * R(angle) * chip + shift`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Similarity {
    /// scale * cos(angle), scale * sin(angle)
    pub a: f64,
    pub b: f64,
    pub tx: f64,
    pub ty: f64,
}

impl Similarity {
    pub fn apply(&self, x: f64, y: f64) -> (f64, f64) {
        (
            self.a * x - self.b * y + self.tx,
            self.b * x + self.a * y + self.ty,
        )
    }

    /// Image pixels per chip pixel.
    pub fn scale(&self) -> f64 {
        self.a.hypot(self.b)
    }

    /// Least-squares fit of `to ≈ T(from)` (Umeyama's method restricted to 2-D
    /// similarities, which never reflects).
    pub fn fit(from: &[(f64, f64)], to: &[(f64, f64)]) -> Option<Self> {
        let n = from.len() as f64;
        if from.len() != to.len() || from.len() < 2 {
            return None;
        }
        let mean = |points: &[(f64, f64)]| {
            let (sx, sy) = points
                .iter()
                .fold((0.0, 0.0), |(ax, ay), &(x, y)| (ax + x, ay + y));
            (sx / n, sy / n)
        };
        let (fx, fy) = mean(from);
        let (gx, gy) = mean(to);
        let (mut dot, mut cross, mut norm) = (0.0, 0.0, 0.0);
        for (&(px, py), &(qx, qy)) in from.iter().zip(to) {
            let (px, py, qx, qy) = (px - fx, py - fy, qx - gx, qy - gy);
            dot += px * qx + py * qy;
            cross += px * qy - py * qx;
            norm += px * px + py * py;
        }
        if norm <= f64::EPSILON {
            return None;
        }
        let (a, b) = (dot / norm, cross / norm);
        Some(Self {
            a,
            b,
            tx: gx - (a * fx - b * fy),
            ty: gy - (b * fx + a * fy),
        })
    }
}

/// The transform from a `size` x `size` chip to the image for these 68 landmarks.
pub fn chip_transform(landmarks: &[Point], size: u32) -> Option<Similarity> {
    let size = f64::from(size);
    let (from, to): (Vec<_>, Vec<_>) = landmarks
        .iter()
        .enumerate()
        .filter(|&(index, _)| used_for_alignment(index))
        .map(|(index, point)| {
            let template = |mean: f64| (CHIP_PADDING + mean) / (2.0 * CHIP_PADDING + 1.0) * size;
            (
                (
                    template(MEAN_FACE_X[index - 17]),
                    template(MEAN_FACE_Y[index - 17]),
                ),
                (f64::from(point.x), f64::from(point.y)),
            )
        })
        .unzip();
    Similarity::fit(&from, &to)
}

/// Samples the chip. Where the face is much larger than the chip, the region is first
/// shrunk with a proper filter: bilinear sampling alone would alias (dlib uses a pyramid
/// for the same reason).
pub fn extract_chip(image: &RgbImage, transform: &Similarity, size: u32) -> RgbImage {
    let shrink = transform.scale().floor().max(1.0);
    if shrink < 2.0 {
        return sample_bilinear(image, transform, size);
    }
    // Bounding box of the chip in the image, with a pixel of margin for the filter.
    let corners = [
        (0.0, 0.0),
        (f64::from(size), 0.0),
        (0.0, f64::from(size)),
        (f64::from(size), f64::from(size)),
    ]
    .map(|(x, y)| transform.apply(x, y));
    let clamp_x = |v: f64| v.clamp(0.0, f64::from(image.width()));
    let clamp_y = |v: f64| v.clamp(0.0, f64::from(image.height()));
    let left = clamp_x(corners.iter().map(|c| c.0).fold(f64::INFINITY, f64::min) - 2.0).floor();
    let top = clamp_y(corners.iter().map(|c| c.1).fold(f64::INFINITY, f64::min) - 2.0).floor();
    let right = clamp_x(
        corners
            .iter()
            .map(|c| c.0)
            .fold(f64::NEG_INFINITY, f64::max)
            + 2.0,
    )
    .ceil();
    let bottom = clamp_y(
        corners
            .iter()
            .map(|c| c.1)
            .fold(f64::NEG_INFINITY, f64::max)
            + 2.0,
    )
    .ceil();
    let (width, height) = ((right - left) as u32, (bottom - top) as u32);
    let small_width = ((f64::from(width) / shrink).round() as u32).max(1);
    let small_height = ((f64::from(height) / shrink).round() as u32).max(1);
    if width == 0 || height == 0 {
        return sample_bilinear(image, transform, size);
    }
    let region = imageops::crop_imm(image, left as u32, top as u32, width, height).to_image();
    let small = crate::imageio::resize_bilinear(&region, small_width, small_height);
    let (sx, sy) = (
        f64::from(width) / f64::from(small_width),
        f64::from(height) / f64::from(small_height),
    );
    // Pixel centres: small pixel i covers region pixels [i*s, (i+1)*s), centred at (i+0.5)*s - 0.5.
    let into_small = |(x, y): (f64, f64)| ((x - left + 0.5) / sx - 0.5, (y - top + 0.5) / sy - 0.5);
    let origin = into_small(transform.apply(0.0, 0.0));
    let unit_x = into_small(transform.apply(1.0, 0.0));
    let local = Similarity {
        a: unit_x.0 - origin.0,
        b: unit_x.1 - origin.1,
        tx: origin.0,
        ty: origin.1,
    };
    sample_bilinear(&small, &local, size)
}

fn sample_bilinear(image: &RgbImage, transform: &Similarity, size: u32) -> RgbImage {
    let (width, height) = (image.width() as i64, image.height() as i64);
    let pixel = |x: i64, y: i64| -> [f64; 3] {
        if x < 0 || y < 0 || x >= width || y >= height {
            return [0.0; 3];
        }
        let Rgb(p) = *image.get_pixel(x as u32, y as u32);
        [f64::from(p[0]), f64::from(p[1]), f64::from(p[2])]
    };
    RgbImage::from_fn(size, size, |cx, cy| {
        let (x, y) = transform.apply(f64::from(cx), f64::from(cy));
        let (x0, y0) = (x.floor(), y.floor());
        let (fx, fy) = (x - x0, y - y0);
        let (x0, y0) = (x0 as i64, y0 as i64);
        let (p00, p10, p01, p11) = (
            pixel(x0, y0),
            pixel(x0 + 1, y0),
            pixel(x0, y0 + 1),
            pixel(x0 + 1, y0 + 1),
        );
        let mut out = [0u8; 3];
        for c in 0..3 {
            let top = p00[c] * (1.0 - fx) + p10[c] * fx;
            let bottom = p01[c] * (1.0 - fx) + p11[c] * fx;
            out[c] = (top * (1.0 - fy) + bottom * fy).round().clamp(0.0, 255.0) as u8;
        }
        Rgb(out)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fit_recovers_a_known_similarity() {
        let truth = Similarity {
            a: 1.5 * 0.3f64.cos(),
            b: 1.5 * 0.3f64.sin(),
            tx: 40.0,
            ty: -7.0,
        };
        let from: Vec<_> = (0..10)
            .map(|i| (f64::from(i * 7 % 11), f64::from(i * 3 % 5)))
            .collect();
        let to: Vec<_> = from.iter().map(|&(x, y)| truth.apply(x, y)).collect();
        let fitted = Similarity::fit(&from, &to).unwrap();
        for (value, expected) in [
            (fitted.a, truth.a),
            (fitted.b, truth.b),
            (fitted.tx, truth.tx),
            (fitted.ty, truth.ty),
        ] {
            assert!((value - expected).abs() < 1e-9, "{value} vs {expected}");
        }
    }

    #[test]
    fn fit_refuses_degenerate_points() {
        assert!(Similarity::fit(&[(1.0, 1.0), (1.0, 1.0)], &[(0.0, 0.0), (5.0, 5.0)]).is_none());
    }

    #[test]
    fn shrunk_and_direct_sampling_agree_on_a_smooth_image() {
        let image = RgbImage::from_fn(600, 600, |x, y| Rgb([(x / 3) as u8, (y / 3) as u8, 128]));
        let transform = Similarity {
            a: 3.0,
            b: 0.0,
            tx: 75.0,
            ty: 60.0,
        };
        let direct = sample_bilinear(&image, &transform, 150);
        let shrunk = extract_chip(&image, &transform, 150);
        let worst = direct
            .pixels()
            .zip(shrunk.pixels())
            .flat_map(|(a, b)| (0..3).map(move |c| (i16::from(a.0[c]) - i16::from(b.0[c])).abs()))
            .max()
            .unwrap();
        assert!(worst <= 2, "largest difference {worst}");
    }
}
