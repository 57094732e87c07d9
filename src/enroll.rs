//! Whether a photo is good enough to become a reference, and the sample it yields.

use std::io::Cursor;

use image::RgbImage;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::face::eyes::EyeSignal;
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

/// A face narrower than this share of the camera frame is too far for a good reference.
pub const COACH_MIN_FACE_SHARE: f32 = 0.2;
/// A good reference is sharper than the enrollment minimum by this factor.
pub const COACH_SHARPNESS_FACTOR: f32 = 1.5;
/// Head turned (the nose off the eyes' midpoint, in eye distances along the eye line) or
/// tilted (the eye line's angle) past these is not frontal.
pub const COACH_MAX_YAW: f32 = 0.2;
pub const COACH_MAX_ROLL_DEGREES: f32 = 10.0;
/// The face's mean grey on the aligned chip outside this range is too dark or washed out;
/// one half of the face darker than this share of the other is lit from the side.
pub const COACH_GREY_RANGE: (f32, f32) = (60.0, 200.0);
pub const COACH_MIN_LIGHT_BALANCE: f32 = 0.7;

/// What the camera coach says about one frame: what to change (nothing when the frame
/// would make a good reference), and how good a reference it would make (0 to 1).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Coaching {
    pub advice: Option<&'static str>,
    pub score: f32,
    /// The eyes on the face's aligned chip, when it was made: a capture keeps blinking
    /// frames out (`CaptureSession`).
    #[serde(skip)]
    pub eyes: Option<EyeSignal>,
}

impl Coaching {
    fn advise(advice: &'static str) -> Self {
        Self {
            advice: Some(advice),
            score: 0.0,
            eyes: None,
        }
    }
}

/// Coaches someone being enrolled at the camera: one face, near enough and wholly in the
/// frame, sharp, frontal and level, evenly lit. Whether the eyes are open cannot be told
/// from one frame (the landmark network barely moves the eyelid points, `face::eyes`):
/// `CaptureSession` compares the frames' eyes with each other's.
pub fn coach_frame(models: &FaceModels, frame: &RgbImage) -> Result<Coaching> {
    let faces = models.analyze(frame)?;
    let face = match faces.as_slice() {
        [] => return Ok(Coaching::advise("Look at the camera.")),
        [face] => face,
        _ => return Ok(Coaching::advise("One person at a time, please.")),
    };
    let (width, height) = (frame.width() as f32, frame.height() as f32);
    let b = face.bbox;
    if b.width < MIN_FACE_WIDTH_PX.max(COACH_MIN_FACE_SHARE * width) {
        return Ok(Coaching::advise("Please come closer."));
    }
    if b.x < 0.0 || b.y < 0.0 || b.x + b.width > width || b.y + b.height > height {
        return Ok(Coaching::advise("Please step back a little."));
    }
    let chip = align_chip(frame, &face.landmarks)?;
    let sharpness = laplacian_variance(&chip);
    if sharpness < COACH_SHARPNESS_FACTOR * MIN_SHARPNESS {
        return Ok(Coaching::advise("Hold still."));
    }
    let (yaw, roll) = head_pose(&face.landmarks);
    if yaw.abs() > COACH_MAX_YAW {
        return Ok(Coaching::advise("Look straight into the camera."));
    }
    if roll.abs() > COACH_MAX_ROLL_DEGREES {
        return Ok(Coaching::advise("Keep your head level."));
    }
    let (left, right) = face_halves_grey(&chip);
    let mean = (left + right) / 2.0;
    if mean < COACH_GREY_RANGE.0 {
        return Ok(Coaching::advise("More light on your face, please."));
    }
    if mean > COACH_GREY_RANGE.1 {
        return Ok(Coaching::advise("Too bright: step out of the glare."));
    }
    if left.min(right) < COACH_MIN_LIGHT_BALANCE * left.max(right) {
        return Ok(Coaching::advise(
            "The light is on one side: face the light.",
        ));
    }
    Ok(Coaching {
        advice: None,
        score: face.detection_score * (sharpness / (sharpness + 100.0)) * (1.0 - yaw.abs()),
        eyes: EyeSignal::from_chip(&chip),
    })
}

/// (yaw, roll in degrees) from the 68 landmarks: the nose tip's offset from the eyes'
/// midpoint along the eye line, in eye distances, and the eye line's angle.
fn head_pose(landmarks: &[crate::face::Point]) -> (f32, f32) {
    if landmarks.len() != 68 {
        return (0.0, 0.0);
    }
    let centre = |points: &[crate::face::Point]| {
        let n = points.len() as f32;
        (
            points.iter().map(|p| p.x).sum::<f32>() / n,
            points.iter().map(|p| p.y).sum::<f32>() / n,
        )
    };
    let (left, right) = (centre(&landmarks[36..42]), centre(&landmarks[42..48]));
    let (dx, dy) = (right.0 - left.0, right.1 - left.1);
    let distance = (dx * dx + dy * dy).sqrt().max(f32::EPSILON);
    let middle = ((left.0 + right.0) / 2.0, (left.1 + right.1) / 2.0);
    let nose = landmarks[30];
    let along = ((nose.x - middle.0) * dx + (nose.y - middle.1) * dy) / distance;
    (along / distance, dy.atan2(dx).to_degrees())
}

/// Mean grey of the left and right halves of the face on an aligned chip.
fn face_halves_grey(chip: &RgbImage) -> (f32, f32) {
    let side = chip.width();
    let (top, bottom) = (side / 5, side * 4 / 5);
    let half = |from: u32, to: u32| {
        let mut sum = 0.0f32;
        let mut count = 0.0f32;
        for y in top..bottom {
            for x in from..to {
                let [r, g, b] = chip.get_pixel(x, y).0;
                sum += (f32::from(r) + f32::from(g) + f32::from(b)) / 3.0;
                count += 1.0;
            }
        }
        sum / count.max(1.0)
    };
    (half(side / 5, side / 2), half(side / 2, side * 4 / 5))
}

/// Frames a coached capture looks at (about three seconds of a webcam) and how many of
/// the good ones it keeps as references.
pub const CAPTURE_FRAMES: usize = 45;
pub const CAPTURE_KEEP: usize = 5;
/// Kept frames are at least this many frames apart: different moments, not one twice.
const CAPTURE_GAP: usize = 3;

/// A coached capture at the camera: the frames that would make good references, the best
/// few of them kept. A frame whose eyes look closed against most of the good frames is a
/// blink: said ("Keep your eyes open.") and never kept.
#[derive(Default)]
pub struct CaptureSession {
    seen: usize,
    good: Vec<GoodFrame>,
}

struct GoodFrame {
    score: f32,
    index: usize,
    eyes: Option<EyeSignal>,
    frame: RgbImage,
}

/// Whether `eyes` look closed against most of `others` (at least two to compare with).
fn blinking<'a>(eyes: &EyeSignal, others: impl Iterator<Item = &'a EyeSignal>) -> bool {
    let (mut compared, mut closed) = (0, 0);
    for other in others {
        compared += 1;
        closed += usize::from(eyes.looks_closed_against(other));
    }
    compared >= 2 && 2 * closed > compared
}

impl CaptureSession {
    /// One more frame and what the coach said of it; the advice to show (the coach's, or
    /// "Keep your eyes open." for a good frame taken mid-blink).
    pub fn offer(&mut self, frame: RgbImage, coaching: &Coaching) -> Option<&'static str> {
        self.seen += 1;
        if coaching.advice.is_some() {
            return coaching.advice;
        }
        if let Some(eyes) = &coaching.eyes
            && blinking(eyes, self.good.iter().filter_map(|g| g.eyes.as_ref()))
        {
            return Some("Keep your eyes open.");
        }
        self.good.push(GoodFrame {
            score: coaching.score,
            index: self.seen,
            eyes: coaching.eyes.clone(),
            frame,
        });
        None
    }

    /// (frames seen, good frames so far).
    pub fn progress(&self) -> (usize, usize) {
        (self.seen, self.good.len())
    }

    /// Enough frames seen, or plenty of good ones.
    pub fn done(&self) -> bool {
        self.seen >= CAPTURE_FRAMES || self.good.len() >= 3 * CAPTURE_KEEP
    }

    /// The best good frames, at most `CAPTURE_KEEP`, at least `CAPTURE_GAP` frames apart,
    /// none blinking against the others (the first frames had nothing to be judged by).
    pub fn best(self) -> Vec<RgbImage> {
        let blinks: Vec<bool> = self
            .good
            .iter()
            .enumerate()
            .map(|(i, g)| {
                g.eyes.as_ref().is_some_and(|eyes| {
                    let others = self.good.iter().enumerate().filter(|(j, _)| *j != i);
                    blinking(eyes, others.filter_map(|(_, o)| o.eyes.as_ref()))
                })
            })
            .collect();
        let mut good: Vec<GoodFrame> = self
            .good
            .into_iter()
            .zip(blinks)
            .filter_map(|(g, blink)| (!blink).then_some(g))
            .collect();
        good.sort_by(|a, b| b.score.total_cmp(&a.score));
        let mut kept: Vec<GoodFrame> = Vec::new();
        for candidate in good {
            if kept.len() < CAPTURE_KEEP
                && kept
                    .iter()
                    .all(|k| candidate.index.abs_diff(k.index) >= CAPTURE_GAP)
            {
                kept.push(candidate);
            }
        }
        kept.sort_by_key(|k| k.index);
        kept.into_iter().map(|k| k.frame).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn good(score: f32) -> Coaching {
        Coaching {
            advice: None,
            score,
            eyes: None,
        }
    }

    #[test]
    fn a_capture_keeps_the_best_frames_of_different_moments() {
        let mut session = CaptureSession::default();
        let frame = |shade: u8| RgbImage::from_pixel(4, 4, image::Rgb([shade; 3]));
        session.offer(frame(1), &Coaching::advise("Hold still."));
        for (shade, score) in [(2, 0.5), (3, 0.9), (4, 0.8), (5, 0.2), (6, 0.7), (7, 0.6)] {
            session.offer(frame(shade), &good(score));
        }
        assert_eq!(session.progress(), (7, 6));
        assert!(!session.done());
        // 0.9 (frame 3) first; 0.8 (frame 4) is its neighbour; 0.7 (frame 6) is 3 on.
        let kept: Vec<u8> = session
            .best()
            .iter()
            .map(|f| f.get_pixel(0, 0).0[0])
            .collect();
        assert_eq!(kept, vec![3, 6]);
    }

    #[test]
    fn a_capture_keeps_no_frame_taken_mid_blink() {
        let frame = |shade: u8| RgbImage::from_pixel(4, 4, image::Rgb([shade; 3]));
        let eyes = |lids: f32| EyeSignal::from_values(vec![0.8 + lids; 64], vec![1.1; 64]);
        let seen = |score: f32, lids: f32| Coaching {
            eyes: Some(eyes(lids)),
            ..good(score)
        };
        let mut session = CaptureSession::default();
        assert_eq!(session.offer(frame(1), &seen(0.5, 0.0)), None);
        assert_eq!(session.offer(frame(2), &seen(0.5, 0.0)), None);
        // Mid-blink, with the best score: said, and not kept.
        assert_eq!(
            session.offer(frame(3), &seen(0.99, 0.2)),
            Some("Keep your eyes open.")
        );
        for shade in 4..=8 {
            session.offer(frame(shade), &seen(0.5, 0.0));
        }
        let shades = |kept: Vec<RgbImage>| -> Vec<u8> {
            kept.iter().map(|f| f.get_pixel(0, 0).0[0]).collect()
        };
        assert!(!shades(session.best()).contains(&3));
        // A blink among the first frames, with nothing yet to judge it by, goes at the end.
        let mut early = CaptureSession::default();
        early.offer(frame(1), &seen(0.99, 0.2));
        for shade in 2..=6 {
            early.offer(frame(shade), &seen(0.5, 0.0));
        }
        let kept = shades(early.best());
        assert!(!kept.is_empty() && !kept.contains(&1), "{kept:?}");
    }

    #[test]
    fn the_head_pose_reads_a_turn_and_a_tilt() {
        let mut points = vec![crate::face::Point { x: 0.0, y: 0.0 }; 68];
        for (index, x) in (36..42)
            .map(|i| (i, 40.0))
            .chain((42..48).map(|i| (i, 60.0)))
        {
            points[index] = crate::face::Point { x, y: 50.0 };
        }
        points[30] = crate::face::Point { x: 50.0, y: 65.0 };
        let (yaw, roll) = head_pose(&points);
        assert!(yaw.abs() < 1e-6 && roll.abs() < 1e-6);
        points[30].x = 56.0;
        assert!((head_pose(&points).0 - 0.3).abs() < 1e-6);
        points[42..48].iter_mut().for_each(|p| p.y = 70.0);
        assert!(head_pose(&points).1 > 30.0);
    }
}
