//! Decoding photos and scans with bounds, so that a hostile or absurd file is an error
//! and never an out-of-memory abort; and resizing frames on the way to the networks.

use std::io::Cursor;
use std::path::Path;

use fast_image_resize::{IntoImageView, IntoImageViewMut};
use image::metadata::Orientation;
use image::{DynamicImage, ImageBuffer, ImageDecoder, ImageReader, Limits, RgbImage};

use crate::error::{Error, Result};

/// Longest side we decode. A 12000 px side covers every camera and A3 scan at 600 dpi;
/// beyond it the decode alone would need gigabytes.
pub const MAX_SIDE_PX: u32 = 12_000;
const MAX_DECODE_BYTES: u64 = 1 << 30;

pub fn load_rgb(path: &Path) -> Result<RgbImage> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(e, path))?;
    decode_rgb(&bytes, path)
}

/// `path` only names the source in errors.
pub fn decode_rgb(bytes: &[u8], path: &Path) -> Result<RgbImage> {
    Ok(decode(bytes, path)?.into_rgb8())
}

pub fn load(path: &Path) -> Result<DynamicImage> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(e, path))?;
    decode(&bytes, path)
}

/// Any supported format, bounded in size; `path` only names the source in errors.
pub fn decode(bytes: &[u8], path: &Path) -> Result<DynamicImage> {
    let bad = |reason: String| Error::BadImage {
        reason,
        path: path.to_path_buf(),
    };
    let reader = || {
        ImageReader::new(Cursor::new(bytes))
            .with_guessed_format()
            .map_err(|e| bad(e.to_string()))
    };
    let probe = reader()?;
    match probe.format() {
        None => return Err(bad("unknown format".into())),
        Some(image::ImageFormat::Jpeg) if !jpeg_is_complete(bytes) => {
            return Err(bad("truncated JPEG: the last scan has no end marker".into()));
        }
        Some(_) => {}
    }
    let (width, height) = probe.into_dimensions().map_err(|e| bad(e.to_string()))?;
    if width > MAX_SIDE_PX || height > MAX_SIDE_PX {
        return Err(Error::ImageTooLarge {
            width,
            height,
            limit: MAX_SIDE_PX,
            path: path.to_path_buf(),
        });
    }
    if width == 0 || height == 0 {
        return Err(bad("empty image".into()));
    }
    let mut reader = reader()?;
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_SIDE_PX);
    limits.max_image_height = Some(MAX_SIDE_PX);
    limits.max_alloc = Some(MAX_DECODE_BYTES);
    reader.limits(limits);
    let mut decoder = reader.into_decoder().map_err(|e| bad(e.to_string()))?;
    // A phone photo is stored sideways with a note saying so; a face or a signature is
    // read upright. A damaged note is ignored rather than refusing the photo.
    let orientation = decoder.orientation().unwrap_or(Orientation::NoTransforms);
    let mut image = DynamicImage::from_decoder(decoder).map_err(|e| bad(e.to_string()))?;
    image.apply_orientation(orientation);
    Ok(image)
}

/// The JPEG decoder fills a truncated scan with grey and reports success; a half photo must
/// never be enrolled or verified. Inside entropy-coded data 0xFF is always stuffed, so the
/// end-of-image marker after the last start-of-scan proves the scan is whole. Data appended
/// after it (motion photos) is fine.
fn jpeg_is_complete(bytes: &[u8]) -> bool {
    let last_scan = bytes.windows(2).rposition(|w| w == [0xFF, 0xDA]);
    last_scan.is_some_and(|start| bytes[start..].windows(2).any(|w| w == [0xFF, 0xD9]))
}

/// `image` resized to `width` x `height` with the triangle (bilinear) filter, widened
/// by the scale when shrinking, as `imageops::resize` with `FilterType::Triangle` does.
/// `fast_image_resize` does it with the CPU's SIMD: on a 640x480 camera frame shrunk
/// for the detector `imageops` took ~9 ms of a ~24 ms detection on an AVX2 PC.
pub fn resize_bilinear<P>(
    image: &ImageBuffer<P, Vec<P::Subpixel>>,
    width: u32,
    height: u32,
) -> ImageBuffer<P, Vec<P::Subpixel>>
where
    P: image::Pixel,
    ImageBuffer<P, Vec<P::Subpixel>>: IntoImageView + IntoImageViewMut,
{
    use fast_image_resize::{FilterType, ResizeAlg, ResizeOptions, Resizer};
    let mut resized = ImageBuffer::new(width, height);
    let options = ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FilterType::Bilinear));
    Resizer::new()
        .resize(image, &mut resized, &options)
        .expect("an image into one of its own kind, uncropped: nothing the resizer refuses");
    resized
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal EXIF block (big-endian TIFF) holding one tag: Orientation = `value`.
    fn exif_orientation(value: u16) -> Vec<u8> {
        let mut exif = b"MM\0\x2a\0\0\0\x08\0\x01".to_vec();
        exif.extend([0x01, 0x12, 0x00, 0x03, 0, 0, 0, 1]);
        exif.extend(value.to_be_bytes());
        exif.extend([0, 0, 0, 0, 0, 0]);
        exif
    }

    #[test]
    fn a_photo_stored_sideways_is_read_upright() {
        use image::ImageEncoder;
        let upright =
            RgbImage::from_fn(40, 20, |x, _| image::Rgb([if x < 20 { 255 } else { 0 }; 3]));
        // Stored turned 90 degrees anticlockwise, with orientation 6: "turn clockwise".
        let stored = image::imageops::rotate270(&upright);
        let mut jpeg = Vec::new();
        let mut encoder = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 95);
        encoder.set_exif_metadata(exif_orientation(6)).unwrap();
        encoder
            .write_image(stored.as_raw(), 20, 40, image::ExtendedColorType::Rgb8)
            .unwrap();
        let read = decode_rgb(&jpeg, Path::new("sideways.jpg")).unwrap();
        assert_eq!(read.dimensions(), (40, 20));
        assert!(read.get_pixel(5, 10).0[0] > 200 && read.get_pixel(35, 10).0[0] < 50);
    }

    #[test]
    fn a_jpeg_cut_short_is_incomplete() {
        let whole = [
            0xFF, 0xD8, 0xFF, 0xDA, 0x00, 0x12, 0xFF, 0x00, 0x34, 0xFF, 0xD9,
        ];
        assert!(jpeg_is_complete(&whole));
        assert!(!jpeg_is_complete(&whole[..8]));
        let with_trailer = [&whole[..], b"ftypmp42"].concat();
        assert!(jpeg_is_complete(&with_trailer));
    }

    /// The SIMD resize is `imageops`' triangle filter, rounded within one level, both
    /// shrinking (as frames for the detector) and enlarging (small photos).
    #[test]
    fn the_fast_resize_is_the_triangle_filter() {
        let image = RgbImage::from_fn(97, 61, |x, y| {
            let value = |k: u32| ((x * 37 + y * 91 + k * 53) % 251) as u8;
            image::Rgb([
                value(0),
                value(1),
                if (x / 7 + y / 5) % 2 == 0 { 0 } else { 255 },
            ])
        });
        for (width, height) in [(41, 26), (160, 100), (97, 30)] {
            let fast = resize_bilinear(&image, width, height);
            let reference = image::imageops::resize(
                &image,
                width,
                height,
                image::imageops::FilterType::Triangle,
            );
            let worst = fast
                .as_raw()
                .iter()
                .zip(reference.as_raw())
                .map(|(a, b)| a.abs_diff(*b))
                .max();
            assert_eq!(fast.dimensions(), (width, height));
            assert!(worst <= Some(1), "{width}x{height}: {worst:?}");
        }
    }
}
