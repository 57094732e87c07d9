//! What the store keeps of an enrolled signature, so that a later model can read it as it
//! would read the scan. Since 2026-12-05 that is the ink as normalisation cut it from the
//! scan, before it was fitted onto any canvas: a model with another canvas then gets
//! exactly the canvas the scan would have given it. References enrolled before keep
//! the canvas of their day, which only a model with that canvas can read faithfully (an
//! enlarged canvas moved writers' own scans from accept to reject: models/README) and
//! its preparation of the scan (paper-relative).

use std::borrow::Cow;
use std::path::Path;

use image::GrayImage;

use super::preprocess::{Normalisation, TemplateInput, WORKING_PIXELS, centre, centre_to_show};
use crate::error::{Error, Result};

/// Marks a kept ink crop; the normalisation's name and a newline follow, then the PNG. A
/// canvas of the earlier kind is a bare PNG, whose signature can never begin so.
const INK_HEADER: &[u8] = b"VOUCH-INK1 ";

/// A stored signature reference, read back.
#[derive(Debug, Clone)]
pub enum StoredReference {
    /// Ink bright on black, cropped to the ink at the scan's working resolution.
    Ink {
        ink: GrayImage,
        normalisation: Normalisation,
    },
    /// A normalised canvas kept before ink crops were.
    Canvas(GrayImage),
}

/// The bytes the store keeps for a reference: the ink crop and the normalisation that
/// cut it, losslessly.
pub fn ink_bytes(ink: &GrayImage, normalisation: Normalisation) -> Result<Vec<u8>> {
    let mut bytes = [INK_HEADER, normalisation.name().as_bytes(), b"\n"].concat();
    bytes.extend(png_bytes(ink)?);
    Ok(bytes)
}

/// Without PNG's row filters, deflated at the default level: every desk check decodes
/// all of an account's references, and a filter that predicts a pixel from its
/// neighbours (`image`'s adaptive choice takes Paeth, one pixel after another) made that
/// decoding twice as slow, for ink that is mostly black runs the deflate alone packs
/// best (CEDAR inks: about half the bytes and half the decoding time; models/README).
pub fn png_bytes(image: &GrayImage) -> Result<Vec<u8>> {
    use image::ImageEncoder;
    use image::codecs::png::{CompressionType, FilterType, PngEncoder};
    let mut png = Vec::new();
    PngEncoder::new_with_quality(&mut png, CompressionType::Default, FilterType::NoFilter)
        .write_image(
            image.as_raw(),
            image.width(),
            image.height(),
            image::ExtendedColorType::L8,
        )
        .map_err(|e| Error::Invalid(format!("cannot encode a signature image: {e}")))?;
    Ok(png)
}

/// Reads stored bytes; `source` names them in errors. The database may have been edited:
/// an unknown normalisation, a damaged image or ink larger than any scan Vouch keeps is
/// an error, never a canvas.
pub fn read(bytes: &[u8], source: &str) -> Result<StoredReference> {
    let Some(rest) = bytes.strip_prefix(INK_HEADER) else {
        return Ok(StoredReference::Canvas(
            crate::imageio::decode(bytes, Path::new(source))?.into_luma8(),
        ));
    };
    let bad = |reason: String| Error::BadImage {
        reason,
        path: source.into(),
    };
    let newline = rest
        .iter()
        .position(|&b| b == b'\n')
        .ok_or_else(|| bad("a kept ink crop without its normalisation".into()))?;
    let name = std::str::from_utf8(&rest[..newline])
        .map_err(|_| bad("a kept ink crop's normalisation is not text".into()))?;
    let normalisation = Normalisation::from_metadata(Some(name)).map_err(|e| bad(e.to_string()))?;
    let ink = crate::imageio::decode(&rest[newline + 1..], Path::new(source))?.into_luma8();
    if u64::from(ink.width()) * u64::from(ink.height()) > WORKING_PIXELS {
        return Err(bad(format!(
            "a kept ink crop of {}x{} pixels, more than any scan is read at",
            ink.width(),
            ink.height()
        )));
    }
    Ok(StoredReference::Ink { ink, normalisation })
}

impl StoredReference {
    /// The canvas a model with `canvas` and `normalisation` would have made of the scan,
    /// or why it cannot be had faithfully from what was kept.
    pub fn canvas_for(
        &self,
        canvas: (u32, u32),
        normalisation: Normalisation,
    ) -> std::result::Result<Cow<'_, GrayImage>, String> {
        let (height, width) = canvas;
        match self {
            Self::Ink {
                ink,
                normalisation: kept,
            } if *kept == normalisation => Ok(Cow::Owned(centre(ink, canvas))),
            Self::Ink {
                normalisation: kept,
                ..
            } => Err(format!(
                "ink kept under the {} normalisation where this model reads scans {}",
                kept.name(),
                normalisation.name()
            )),
            // A canvas does not say how its scan was prepared. Every shipped model, and every
            // one fine-tuned in the window, read paper-relative; another preparation would
            // embed it as a different picture and score it silently wrong. (An ink-stretched
            // model could be trained by the CLI from 2026-12-01 until ink was kept on
            // 2026-12-05; canvases it kept, if any, cannot be told apart here.)
            Self::Canvas(_) if normalisation != Normalisation::PaperRelative => Err(format!(
                "a canvas kept before references were kept as ink, prepared {} where this \
                 model reads scans {}",
                Normalisation::PaperRelative.name(),
                normalisation.name()
            )),
            Self::Canvas(kept) if kept.dimensions() == (width, height) => Ok(Cow::Borrowed(kept)),
            Self::Canvas(kept) => Err(format!(
                "a canvas of {}x{} (HxW) where this model reads {height}x{width}",
                kept.height(),
                kept.width()
            )),
        }
    }

    /// What a model with `canvas`, `descriptor_canvas` and `normalisation` makes its
    /// template from, as it would from the scan; or why it cannot be had faithfully. A
    /// canvas kept without its ink serves only a model that reads the stroke descriptor on
    /// the encoder's canvas: enlarging a canvas is not reading the ink afresh.
    pub fn template_input(
        self,
        canvas: (u32, u32),
        descriptor_canvas: (u32, u32),
        normalisation: Normalisation,
    ) -> std::result::Result<TemplateInput<'static>, String> {
        let fitted = self.canvas_for(canvas, normalisation)?.into_owned();
        match self {
            Self::Ink { ink, .. } => Ok(TemplateInput {
                canvas: Cow::Owned(fitted),
                ink: Some(Cow::Owned(ink)),
            }),
            Self::Canvas(_) if descriptor_canvas != canvas => {
                let (height, width) = descriptor_canvas;
                Err(format!(
                    "a canvas kept before references were kept as ink, where this model reads \
                     the stroke descriptor on the ink itself, fitted onto {height}x{width}"
                ))
            }
            Self::Canvas(_) => Ok(TemplateInput {
                canvas: Cow::Owned(fitted),
                ink: None,
            }),
        }
    }

    /// What the clerk is shown beside the questioned scan: the reference on the model's
    /// canvas, fitted quickly (`canvas_for` is what a model embeds).
    pub fn shown_on(&self, canvas: (u32, u32)) -> Cow<'_, GrayImage> {
        let (height, width) = canvas;
        match self {
            Self::Ink { ink, .. } => Cow::Owned(shown_from_ink(ink, canvas)),
            Self::Canvas(kept) if kept.dimensions() == (width, height) => Cow::Borrowed(kept),
            Self::Canvas(kept) => Cow::Owned(centre_to_show(kept, canvas)),
        }
    }

    /// The kept image itself, ink bright on black.
    pub fn image(&self) -> &GrayImage {
        match self {
            Self::Ink { ink, .. } => ink,
            Self::Canvas(canvas) => canvas,
        }
    }

    /// The kept image as a cheque shows it, for a thumbnail or a training scan.
    pub fn on_paper(&self) -> GrayImage {
        ink_on_paper(self.image())
    }
}

/// The canvas of a reference kept as `ink`: what the desk shows beside a questioned scan and
/// lays it on to look for a copy.
pub fn shown_from_ink(ink: &GrayImage, canvas: (u32, u32)) -> GrayImage {
    centre_to_show(ink, canvas)
}

/// Bright ink on black (what the models read) turned into dark ink on light paper (what a
/// person reads, and what a scan is).
pub fn ink_on_paper(ink: &GrayImage) -> GrayImage {
    let mut paper = ink.clone();
    image::imageops::invert(&mut paper);
    paper
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stroke() -> GrayImage {
        GrayImage::from_fn(300, 90, |x, y| {
            image::Luma([if (40..260).contains(&x) && (40..50).contains(&y) {
                200
            } else {
                0
            }])
        })
    }

    #[test]
    fn kept_ink_is_read_back_exactly_and_fitted_onto_any_canvas() {
        let ink = stroke();
        let bytes = ink_bytes(&ink, Normalisation::InkStretched).unwrap();
        let kept = read(&bytes, "test").unwrap();
        assert_eq!(kept.image(), &ink);
        for canvas in [(150, 220), (180, 264)] {
            assert_eq!(
                *kept
                    .canvas_for(canvas, Normalisation::InkStretched)
                    .unwrap(),
                centre(&ink, canvas)
            );
        }
        let exact = kept
            .canvas_for((150, 220), Normalisation::InkStretched)
            .unwrap();
        let shown = kept.shown_on((150, 220));
        assert_eq!(shown.dimensions(), exact.dimensions());
        assert!(
            shown
                .pixels()
                .zip(exact.pixels())
                .all(|(a, b)| a.0[0].abs_diff(b.0[0]) <= 1)
        );
        let refused = kept
            .canvas_for((150, 220), Normalisation::PaperRelative)
            .unwrap_err();
        assert!(refused.contains("ink-stretched"), "{refused}");
    }

    #[test]
    fn a_reference_is_shown_as_dark_ink_on_light_paper() {
        let kept = read(
            &ink_bytes(&stroke(), Normalisation::InkStretched).unwrap(),
            "test",
        )
        .unwrap();
        let paper = kept.on_paper();
        assert_eq!(paper.dimensions(), (300, 90));
        assert_eq!(paper.get_pixel(100, 45).0[0], 55, "the stroke");
        assert_eq!(paper.get_pixel(10, 10).0[0], 255, "the paper");
    }

    #[test]
    fn a_canvas_kept_before_is_read_only_at_its_own_size_and_preparation() {
        let canvas = centre(&stroke(), (150, 220));
        let kept = read(&png_bytes(&canvas).unwrap(), "test").unwrap();
        let normalisation = Normalisation::PaperRelative;
        assert_eq!(*kept.canvas_for((150, 220), normalisation).unwrap(), canvas);
        let refused = kept.canvas_for((180, 264), normalisation).unwrap_err();
        assert!(refused.contains("a canvas of 150x220"), "{refused}");
        let refused = kept
            .canvas_for((150, 220), Normalisation::InkStretched)
            .unwrap_err();
        assert!(
            refused.contains("prepared paper-relative where this model reads scans ink-stretched"),
            "{refused}"
        );
    }

    #[test]
    fn an_edited_reference_is_an_error_that_names_it() {
        let png = png_bytes(&stroke()).unwrap();
        let huge = png_bytes(&GrayImage::new(2_000, 1_001)).unwrap();
        for (bytes, expected) in [
            (
                b"VOUCH-INK1 paper-relative".to_vec(),
                "without its normalisation",
            ),
            ([b"VOUCH-INK1 sepia\n".as_slice(), &png].concat(), "sepia"),
            (b"VOUCH-INK1 paper-relative\nnot a png".to_vec(), "ACC-9"),
            (
                [b"VOUCH-INK1 paper-relative\n".as_slice(), &huge].concat(),
                "2000x1001",
            ),
            (png[..png.len() / 2].to_vec(), "ACC-9"),
        ] {
            let error = read(&bytes, "ACC-9's reference").unwrap_err().to_string();
            assert!(
                error.contains(expected) && error.contains("ACC-9"),
                "{error}"
            );
        }
    }
}
