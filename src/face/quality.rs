//! Why a picture gave no face: what the person at the kiosk, or the operator with a photo,
//! can change. Failure to acquire is reported by these causes (ISO/IEC 19795-1).

use image::{RgbImage, imageops};

/// Below this many pixels on the short side no face is big enough to align.
const MIN_SIDE_PX: u32 = 48;
/// Mean grey level under which a frame is too dark for the detector (0-255).
const DARK_MEAN: f32 = 45.0;
/// Focus measure (`laplacian_variance`) of the whole picture at `FOCUS_SIDE_PX`, under
/// which it is too blurred to hold a face's detail; the enrollment check on the chip uses
/// the same measure.
const BLURRED: f32 = 15.0;
const FOCUS_SIDE_PX: u32 = 150;

/// Variance of the 4-neighbour Laplacian of the grey image, a standard focus measure.
pub fn laplacian_variance(image: &RgbImage) -> f32 {
    let grey = imageops::grayscale(image);
    let (w, h) = grey.dimensions();
    if w < 3 || h < 3 {
        return 0.0;
    }
    let at = |x: u32, y: u32| f32::from(grey.get_pixel(x, y).0[0]);
    let values: Vec<f32> = (1..h - 1)
        .flat_map(|y| (1..w - 1).map(move |x| (x, y)))
        .map(|(x, y)| at(x - 1, y) + at(x + 1, y) + at(x, y - 1) + at(x, y + 1) - 4.0 * at(x, y))
        .collect();
    let mean = values.iter().sum::<f32>() / values.len() as f32;
    values.iter().map(|v| (v - mean).powi(2)).sum::<f32>() / values.len() as f32
}

/// The likeliest reason a picture in which no face was found shows none: "too small",
/// "too dark", "too blurred", else "no face" (nobody there, or turned away).
pub fn no_face_cause(image: &RgbImage) -> &'static str {
    let (width, height) = image.dimensions();
    if width.min(height) < MIN_SIDE_PX {
        return "too small";
    }
    let grey = imageops::grayscale(image);
    let mean = grey.pixels().map(|p| f32::from(p[0])).sum::<f32>() / (width * height) as f32;
    if mean < DARK_MEAN {
        return "too dark";
    }
    let scale = FOCUS_SIDE_PX as f32 / width.max(height) as f32;
    let small = imageops::resize(
        image,
        ((width as f32 * scale) as u32).max(3),
        ((height as f32 * scale) as u32).max(3),
        imageops::FilterType::Triangle,
    );
    if laplacian_variance(&small) < BLURRED {
        return "too blurred";
    }
    "no face"
}

/// What the person in front of the camera can do about `cause`.
pub fn advice(cause: &str) -> &'static str {
    match cause {
        "too small" => "Come closer to the camera.",
        "too dark" => "More light, please: the picture is too dark.",
        "too blurred" => "Hold still: the picture is blurred.",
        _ => "Look at the camera.",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::Rgb;

    #[test]
    fn a_flat_image_has_no_sharpness_and_edges_do() {
        let flat = RgbImage::from_pixel(20, 20, Rgb([128, 128, 128]));
        assert_eq!(laplacian_variance(&flat), 0.0);
        let checks = RgbImage::from_fn(20, 20, |x, y| {
            if (x + y) % 2 == 0 {
                Rgb([0, 0, 0])
            } else {
                Rgb([255, 255, 255])
            }
        });
        assert!(laplacian_variance(&checks) > 40.0);
    }

    #[test]
    fn each_cause_is_told_apart() {
        assert_eq!(no_face_cause(&RgbImage::new(30, 30)), "too small");
        assert_eq!(no_face_cause(&RgbImage::new(200, 200)), "too dark");
        let grey = RgbImage::from_pixel(200, 200, Rgb([128, 128, 128]));
        assert_eq!(no_face_cause(&grey), "too blurred");
        let busy = RgbImage::from_fn(200, 200, |x, y| {
            Rgb([((x * 37 + y * 91) % 256) as u8, ((x * y) % 256) as u8, 90])
        });
        assert_eq!(no_face_cause(&busy), "no face");
    }
}
