//! Whether a photo is good enough to become a reference, and the sample it yields.

use std::io::Cursor;

use image::RgbImage;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::face::quality::laplacian_variance;
use crate::face::{FaceModels, align_chip};
use crate::store::NewTemplate;

/// Narrower faces carry too little detail to enrol: the chip would be mostly upsampled.
pub const MIN_FACE_WIDTH_PX: f32 = 60.0;
/// Variance of the Laplacian of the grey chip below which it is too blurred to trust.
pub const MIN_SHARPNESS: f32 = 40.0;

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum Rejection {
    NoFace,
    SeveralFaces { count: usize },
    TooSmall { width_px: f32, min_px: f32 },
    Blurry { sharpness: f32, min: f32 },
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Rejection::NoFace => write!(f, "no face found"),
            Rejection::SeveralFaces { count } => {
                write!(f, "{count} faces: a reference photo must show one person")
            }
            Rejection::TooSmall { width_px, min_px } => {
                write!(
                    f,
                    "the face is {width_px:.0} px wide, under the {min_px:.0} px minimum"
                )
            }
            Rejection::Blurry { sharpness, min } => write!(
                f,
                "too blurred (sharpness {sharpness:.0}, minimum {min:.0})"
            ),
        }
    }
}

/// A photo that passed the checks: its template and the face's quality.
pub struct Sample {
    pub template: NewTemplate,
    pub sharpness: f32,
}

/// Checks one reference photo: exactly one confident face, wide and sharp enough.
pub fn assess_face(
    models: &FaceModels,
    image: &RgbImage,
    source_bytes: &[u8],
) -> Result<Result<Sample, Rejection>> {
    let faces = models.analyze(image)?;
    let face = match faces.as_slice() {
        [] => return Ok(Err(Rejection::NoFace)),
        [face] => face,
        several => {
            return Ok(Err(Rejection::SeveralFaces {
                count: several.len(),
            }));
        }
    };
    if face.bbox.width < MIN_FACE_WIDTH_PX {
        return Ok(Err(Rejection::TooSmall {
            width_px: face.bbox.width,
            min_px: MIN_FACE_WIDTH_PX,
        }));
    }
    let chip = align_chip(image, &face.landmarks)?;
    let sharpness = laplacian_variance(&chip);
    if sharpness < MIN_SHARPNESS {
        return Ok(Err(Rejection::Blurry {
            sharpness,
            min: MIN_SHARPNESS,
        }));
    }
    let mut png = Vec::new();
    chip.write_to(&mut Cursor::new(&mut png), image::ImageFormat::Png)
        .map_err(|e| Error::Invalid(format!("cannot encode the face crop: {e}")))?;
    Ok(Ok(Sample {
        template: NewTemplate {
            embedding: face.embedding.clone(),
            quality: face.detection_score,
            source_sha256: hex::encode(Sha256::digest(source_bytes)),
            crop: Some(png),
        },
        sharpness,
    }))
}
