//! Faces as sites have them, made from photos with context: tight headshots (the face
//! fills the frame, as on ID cards, badges and HR photos), grey, with light from one side.
//! The held-out faces the project is measured on look like this; these crops let the
//! detector and the chip be tuned on training folds (LFW DevTrain) and checked on
//! DevTest, never on the held-out set.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use image::{GrayImage, RgbImage, imageops};

use super::Pair;
use crate::error::{Error, Result};
use crate::face::FaceModels;
use crate::imageio;

/// How the crops are made.
#[derive(Debug, Clone, Copy)]
pub struct CropStyle {
    /// Output width and height (the held-out faces are 168x192).
    pub size: (u32, u32),
    /// Grey, as IR and many kiosk cameras deliver.
    pub grey: bool,
    /// 0 for even light; up to 1 for a lamp on one side leaving the other side at
    /// `1 - side_light` of its brightness (the side alternates from image to image).
    /// Applied to grey crops.
    pub side_light: f32,
}

/// The face region of a photo as a tight crop: the landmarks' box from jaw to jaw and
/// from a little above the brows to the chin, widened to the output's aspect.
pub fn tight_crop(
    models: &FaceModels,
    picture: &RgbImage,
    source: &str,
    style: CropStyle,
) -> Result<RgbImage> {
    let (face, _) = models.main_face(picture, source)?;
    let (mut left, mut right, mut top, mut bottom) = (f32::MAX, f32::MIN, f32::MAX, f32::MIN);
    for point in &face.landmarks {
        left = left.min(point.x);
        right = right.max(point.x);
        top = top.min(point.y);
        bottom = bottom.max(point.y);
    }
    // The brows are the top landmarks; a cropped headshot keeps some forehead.
    top -= 0.15 * (bottom - top);
    let aspect = style.size.0 as f32 / style.size.1 as f32;
    let (centre_x, centre_y) = ((left + right) / 2.0, (top + bottom) / 2.0);
    let mut height = bottom - top;
    let mut width = right - left;
    if width / height < aspect {
        width = height * aspect;
    } else {
        height = width / aspect;
    }
    let (image_w, image_h) = picture.dimensions();
    let x = (centre_x - width / 2.0).clamp(0.0, image_w as f32 - 1.0) as u32;
    let y = (centre_y - height / 2.0).clamp(0.0, image_h as f32 - 1.0) as u32;
    let w = (width as u32).clamp(1, image_w - x);
    let h = (height as u32).clamp(1, image_h - y);
    let crop = imageops::crop_imm(picture, x, y, w, h).to_image();
    Ok(imageops::resize(
        &crop,
        style.size.0,
        style.size.1,
        imageops::FilterType::Triangle,
    ))
}

/// Light from one side: brightness falls linearly across the face to `1 - strength` on
/// the far side, with a gamma that deepens the shadow; `from_left` picks the lit side.
pub fn side_light(image: &GrayImage, strength: f32, from_left: bool) -> GrayImage {
    let width = image.width().max(2) as f32 - 1.0;
    GrayImage::from_fn(image.width(), image.height(), |x, y| {
        let across = x as f32 / width;
        let lit = if from_left { 1.0 - across } else { across };
        let factor = (1.0 - strength) + strength * lit;
        let value = f32::from(image.get_pixel(x, y)[0]) / 255.0;
        image::Luma([(255.0 * (value * factor).powf(1.0 + 0.5 * strength)).round() as u8])
    })
}

/// What `write_pair_crops` made.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct CropsWritten {
    pub images: usize,
    /// Photos where no face was found even with context: written as a centre crop, so
    /// that every pair can still be scored (and counts against the detector).
    pub centre_crops: usize,
}

/// Writes a crop of every image the pairs name under `out`, in the same
/// `Name/Name_NNNN.jpg` layout (JPEG), so `eval pairs --root OUT` scores them.
pub fn write_pair_crops(
    models: &FaceModels,
    pairs: &[Pair],
    root: &Path,
    out: &Path,
    style: CropStyle,
    cancel: &AtomicBool,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<CropsWritten> {
    let mut images: Vec<_> = pairs.iter().flat_map(|p| [&p.first, &p.second]).collect();
    images.sort_by(|a, b| (&a.name, a.number).cmp(&(&b.name, b.number)));
    images.dedup();
    let mut written = CropsWritten::default();
    for (done, image) in images.iter().enumerate() {
        if cancel.load(Ordering::Relaxed) {
            return Err(Error::Cancelled);
        }
        let source = image.path(root);
        let picture = imageio::load_rgb(&source)?;
        let crop = match tight_crop(models, &picture, &source.display().to_string(), style) {
            Ok(crop) => crop,
            Err(Error::NoFace(_)) => {
                written.centre_crops += 1;
                let (w, h) = picture.dimensions();
                let centre =
                    imageops::crop_imm(&picture, w / 4, h / 5, w / 2, h * 3 / 5).to_image();
                imageops::resize(
                    &centre,
                    style.size.0,
                    style.size.1,
                    imageops::FilterType::Triangle,
                )
            }
            Err(other) => return Err(other),
        };
        let target = image.path(out);
        let folder = target.parent().expect("a person's folder");
        std::fs::create_dir_all(folder).map_err(|e| Error::io(e, folder))?;
        let saved = if style.grey {
            let grey = imageops::grayscale(&crop);
            let grey = if style.side_light > 0.0 {
                side_light(&grey, style.side_light, image.number % 2 == 0)
            } else {
                grey
            };
            grey.save(&target)
        } else {
            crop.save(&target)
        };
        saved.map_err(|e| Error::Invalid(format!("writing {}: {e}", target.display())))?;
        written.images += 1;
        progress(done + 1, images.len());
    }
    Ok(written)
}
