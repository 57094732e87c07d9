//! What the kiosk decides over a stream of frames, before anything is written: the same
//! person recognised in several consecutive frames (one lucky frame is not enough) and a
//! blink seen meanwhile (a printed photo does not blink). Blinks are read from the eye
//! aspect ratio of the 68 landmarks (Soukupová and Čech, 2016).

use crate::face::Point;

/// Eye aspect ratio below which the eye counts as closed, and above which as open.
pub const EYE_CLOSED: f32 = 0.20;
pub const EYE_OPEN: f32 = 0.25;
/// Consecutive frames that must agree on who it is.
pub const CONSENSUS_FRAMES: usize = 3;

/// (|p2-p6| + |p3-p5|) / (2 |p1-p4|) for the six points of one eye.
pub fn eye_aspect_ratio(eye: &[Point]) -> f32 {
    let distance = |a: &Point, b: &Point| ((a.x - b.x).powi(2) + (a.y - b.y).powi(2)).sqrt();
    let width = distance(&eye[0], &eye[3]);
    if width <= f32::EPSILON {
        return 0.0;
    }
    (distance(&eye[1], &eye[5]) + distance(&eye[2], &eye[4])) / (2.0 * width)
}

/// Mean eye aspect ratio of both eyes (landmarks 36-41 and 42-47).
pub fn face_eye_aspect_ratio(landmarks: &[Point]) -> Option<f32> {
    (landmarks.len() == 68).then(|| {
        (eye_aspect_ratio(&landmarks[36..42]) + eye_aspect_ratio(&landmarks[42..48])) / 2.0
    })
}

/// Open, closed, open again: one blink.
#[derive(Debug, Default, Clone)]
pub struct BlinkDetector {
    seen_open: bool,
    seen_closed: bool,
    blinked: bool,
}

impl BlinkDetector {
    pub fn observe(&mut self, eye_aspect_ratio: f32) {
        if eye_aspect_ratio >= EYE_OPEN {
            if self.seen_closed {
                self.blinked = true;
            }
            self.seen_open = true;
        } else if eye_aspect_ratio < EYE_CLOSED && self.seen_open {
            self.seen_closed = true;
        }
    }

    pub fn blinked(&self) -> bool {
        self.blinked
    }
}

/// What the kiosk should do after a frame.
#[derive(Debug, Clone, PartialEq)]
pub enum KioskState {
    /// Nobody recognised in the accept band.
    Searching,
    /// Recognised in `frames` consecutive frames so far.
    Recognising { person_id: i64, frames: usize },
    /// Recognised long enough; waiting for a blink.
    AwaitingBlink { person_id: i64 },
    /// Ready to punch.
    Confirmed { person_id: i64, score: f32 },
}

/// Follows one person across frames: consensus plus liveness.
#[derive(Debug, Default)]
pub struct Consensus {
    person: Option<i64>,
    frames: usize,
    best_score: f32,
    blink: BlinkDetector,
}

impl Consensus {
    /// `accepted` is the frame's best match when it is in the accept band; `eyes` the
    /// face's eye aspect ratio.
    pub fn observe(&mut self, accepted: Option<(i64, f32)>, eyes: Option<f32>) -> KioskState {
        let Some((person_id, score)) = accepted else {
            *self = Self::default();
            return KioskState::Searching;
        };
        if self.person != Some(person_id) {
            *self = Self {
                person: Some(person_id),
                ..Self::default()
            };
        }
        self.frames += 1;
        self.best_score = self.best_score.max(score);
        if let Some(ratio) = eyes {
            self.blink.observe(ratio);
        }
        match (self.frames >= CONSENSUS_FRAMES, self.blink.blinked()) {
            (false, _) => KioskState::Recognising {
                person_id,
                frames: self.frames,
            },
            (true, false) => KioskState::AwaitingBlink { person_id },
            (true, true) => KioskState::Confirmed {
                person_id,
                score: self.best_score,
            },
        }
    }

    /// After a punch: the same person must step away (or blink anew) before the next.
    pub fn reset(&mut self) {
        *self = Self::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eye(openness: f32) -> Vec<Point> {
        [
            (0.0, 0.0),
            (1.0, -openness),
            (2.0, -openness),
            (3.0, 0.0),
            (2.0, openness),
            (1.0, openness),
        ]
        .iter()
        .map(|&(x, y)| Point { x, y })
        .collect()
    }

    #[test]
    fn eye_aspect_ratio_follows_the_lids() {
        assert!((eye_aspect_ratio(&eye(0.6)) - 0.4).abs() < 1e-6);
        assert!(eye_aspect_ratio(&eye(0.1)) < EYE_CLOSED);
    }

    #[test]
    fn a_punch_needs_consensus_and_a_blink() {
        let mut consensus = Consensus::default();
        let frames = [(0.3, "open"), (0.3, "open"), (0.3, "open"), (0.1, "closed")];
        for (ratio, _) in frames {
            assert!(!matches!(
                consensus.observe(Some((7, 0.8)), Some(ratio)),
                KioskState::Confirmed { .. }
            ));
        }
        assert_eq!(
            consensus.observe(Some((7, 0.9)), Some(0.3)),
            KioskState::Confirmed {
                person_id: 7,
                score: 0.9
            }
        );
        // A photo held still never blinks.
        let mut photo = Consensus::default();
        let states: Vec<KioskState> = (0..10)
            .map(|_| photo.observe(Some((7, 0.8)), Some(0.3)))
            .collect();
        assert_eq!(states[9], KioskState::AwaitingBlink { person_id: 7 });
        assert!(
            !states
                .iter()
                .any(|s| matches!(s, KioskState::Confirmed { .. }))
        );
        // Another face resets the count.
        assert_eq!(
            photo.observe(Some((8, 0.8)), Some(0.3)),
            KioskState::Recognising {
                person_id: 8,
                frames: 1
            }
        );
        assert_eq!(photo.observe(None, None), KioskState::Searching);
    }
}
