//! The eyes on an aligned face chip, for telling open from closed without the landmarks:
//! the landmark network barely moves its eyelid points when the eyes close (on ORL's
//! eight closed-eye shots the eye aspect ratio stays at 0.21-0.29, 3-22% below the same
//! person's open shots and never under the usual 0.20). The lids change the eye patches
//! while the nose and cheeks stay as they were; a photo moved or tilted changes both. The
//! kiosk reads blinks with it (`kiosk::BlinkDetector`); enrolment keeps blinking frames out
//! of the references (`enroll::CaptureSession`).

use image::RgbImage;

/// On an aligned 150x150 chip (dlib's mean face, `face::align`): the two eyes with their
/// lids, a patch of nose and cheeks that moves with the face but not with the lids, and the
/// face whose mean grey normalises the exposure. (x, y, width, height).
const EYE_PATCHES: [(u32, u32, u32, u32); 2] = [(32, 36, 32, 20), (85, 36, 32, 20)];
const STILL_PATCH: (u32, u32, u32, u32) = (55, 60, 40, 40);
const FACE_PATCH: (u32, u32, u32, u32) = (30, 30, 90, 90);
const CHIP_SIDE: u32 = 150;

/// Mean change of the eye patches from the open-eyed baseline, in units of the face's mean
/// grey, above which the eyes may be closing: an open eye standing still changes by
/// 0.02-0.05 between webcam frames (sensor noise, sway), a closing one by 0.15-0.19.
pub const LID_CHANGE: f32 = 0.08;
/// The eyes' change over the still patch's (plus a floor) at which they count as closed,
/// and below which as open again. Open frames of a still face stay at 1.0-1.5; closed eyes
/// reach 2.4-4 (the project's recorded sequence, and ORL's closed-eye shots against the
/// same person's open ones where the pose held).
pub const CLOSED_RATIO: f32 = 2.4;
pub const OPEN_RATIO: f32 = 1.8;
const RATIO_FLOOR: f32 = 0.01;
/// How fast the open-eyed baseline follows slow changes (light, a turn of the head).
const BASELINE_FOLLOW: f32 = 0.2;

/// The grey levels of the eye patches and the still patch of one aligned chip.
#[derive(Debug, Clone, PartialEq)]
pub struct EyeSignal {
    eyes: Vec<f32>,
    still: Vec<f32>,
}

impl EyeSignal {
    /// Patches given directly, for tests of what reads them.
    #[cfg(test)]
    pub(crate) fn from_values(eyes: Vec<f32>, still: Vec<f32>) -> Self {
        Self { eyes, still }
    }

    /// Closed against an open-eyed `baseline`: the eyes changed `CLOSED_RATIO` times more
    /// than the still patch, and by at least `LID_CHANGE`.
    pub fn looks_closed_against(&self, baseline: &EyeSignal) -> bool {
        let (eyes, ratio) = self.lid_change(baseline);
        ratio >= CLOSED_RATIO && eyes >= LID_CHANGE
    }

    /// Open again, or never closed: the eyes changed under `OPEN_RATIO` times the still patch.
    pub fn looks_open_against(&self, baseline: &EyeSignal) -> bool {
        self.lid_change(baseline).1 < OPEN_RATIO
    }

    /// (change of the eyes, that change over the still patch's) from `baseline`.
    fn lid_change(&self, baseline: &EyeSignal) -> (f32, f32) {
        let (eyes, still) = self.change_from(baseline);
        (eyes, eyes / (still + RATIO_FLOOR))
    }

    /// `None` when `chip` is not an aligned face chip.
    pub fn from_chip(chip: &RgbImage) -> Option<Self> {
        if chip.dimensions() != (CHIP_SIDE, CHIP_SIDE) {
            return None;
        }
        let grey = |x: u32, y: u32| {
            let [r, g, b] = chip.get_pixel(x, y).0;
            (f32::from(r) + f32::from(g) + f32::from(b)) / 3.0
        };
        let patch = |(x0, y0, w, h): (u32, u32, u32, u32)| -> Vec<f32> {
            (y0..y0 + h)
                .flat_map(|y| (x0..x0 + w).map(move |x| (x, y)))
                .map(|(x, y)| grey(x, y))
                .collect()
        };
        let face = patch(FACE_PATCH);
        let mean = face.iter().sum::<f32>() / face.len() as f32;
        if mean < 1.0 {
            return None;
        }
        let normalised = |values: Vec<f32>| values.into_iter().map(|v| v / mean).collect();
        Some(Self {
            eyes: normalised(EYE_PATCHES.iter().flat_map(|&p| patch(p)).collect()),
            still: normalised(patch(STILL_PATCH)),
        })
    }

    /// (change of the eyes, change of the still patch) from `baseline`.
    fn change_from(&self, baseline: &EyeSignal) -> (f32, f32) {
        let mean_abs = |a: &[f32], b: &[f32]| {
            a.iter().zip(b).map(|(x, y)| (x - y).abs()).sum::<f32>() / a.len().max(1) as f32
        };
        (
            mean_abs(&self.eyes, &baseline.eyes),
            mean_abs(&self.still, &baseline.still),
        )
    }

    /// Moves this baseline a step towards `newer` (slow changes: light, a turn of the head).
    pub fn follow(&mut self, newer: &EyeSignal) {
        for (old, new) in self
            .eyes
            .iter_mut()
            .chain(self.still.iter_mut())
            .zip(newer.eyes.iter().chain(&newer.still))
        {
            *old += BASELINE_FOLLOW * (new - *old);
        }
    }
}
