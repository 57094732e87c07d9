//! What the kiosk decides over a stream of frames, before anything is written: the same
//! person recognised in several consecutive frames (one lucky frame is not enough), a
//! blink seen meanwhile (a printed photo does not blink), and passive liveness agreeing in
//! most of those frames (a phone playing a video blinks too; the liveness networks judge
//! the capture itself). Blinks are read from the eye aspect ratio of the 68 landmarks
//! (Soukupová and Čech, 2016).

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
    /// Ready to punch, with the frames' mean liveness.
    Confirmed {
        person_id: i64,
        score: f32,
        liveness: f32,
    },
    /// Most of the frames were judged a presentation attack (a photo, a screen): no punch.
    Refused { person_id: i64, liveness: f32 },
}

/// Follows one person across frames: consensus plus liveness.
#[derive(Debug, Default)]
pub struct Consensus {
    person: Option<i64>,
    frames: usize,
    best_score: f32,
    blink: BlinkDetector,
    /// Frames judged by passive liveness, how many of them live, and their live scores.
    judged: usize,
    live: usize,
    live_sum: f32,
}

/// One frame's view of the person in front of the kiosk.
#[derive(Debug, Clone, Copy, Default)]
pub struct Observation {
    /// The best match, when it is in the accept band: (person, score).
    pub accepted: Option<(i64, f32)>,
    /// The face's eye aspect ratio.
    pub eyes: Option<f32>,
    /// Passive liveness of the face: (live or not, the live probability).
    pub liveness: Option<(bool, f32)>,
}

impl Consensus {
    /// A punch needs `CONSENSUS_FRAMES` frames of the same person, a blink, and passive
    /// liveness live in most of the frames it judged; most judged an attack is a refusal.
    pub fn observe(&mut self, frame: Observation) -> KioskState {
        let Some((person_id, score)) = frame.accepted else {
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
        if let Some(ratio) = frame.eyes {
            self.blink.observe(ratio);
        }
        if let Some((live, probability)) = frame.liveness {
            self.judged += 1;
            self.live += usize::from(live);
            self.live_sum += probability;
        }
        if self.frames < CONSENSUS_FRAMES {
            return KioskState::Recognising {
                person_id,
                frames: self.frames,
            };
        }
        let liveness = self.live_sum / self.judged.max(1) as f32;
        if self.judged >= CONSENSUS_FRAMES && 2 * self.live < self.judged {
            return KioskState::Refused {
                person_id,
                liveness,
            };
        }
        if self.blink.blinked() && 2 * self.live > self.judged {
            KioskState::Confirmed {
                person_id,
                score: self.best_score,
                liveness,
            }
        } else {
            KioskState::AwaitingBlink { person_id }
        }
    }

    /// After a punch: the same person must step away (or blink anew) before the next.
    pub fn reset(&mut self) {
        *self = Self::default();
    }
}

/// A face narrower than this share of the frame is too far for a sure match.
pub const MIN_FACE_SHARE: f32 = 0.15;

/// What the kiosk asks of the people in front of it, from the frame's faces (how many,
/// and how wide the subject is) and where the decision stands.
pub fn prompt(
    faces: usize,
    subject_width: Option<f32>,
    frame_width: u32,
    state: &KioskState,
) -> Option<&'static str> {
    if faces > 1 {
        return Some("One person at a time, please.");
    }
    if subject_width.is_some_and(|w| w < MIN_FACE_SHARE * frame_width as f32) {
        return Some("Please come closer.");
    }
    match state {
        KioskState::Recognising { .. } => Some("Hold still…"),
        KioskState::AwaitingBlink { .. } => Some("Blink, please."),
        _ => None,
    }
}

/// Refused presentation attacks within this long raise an alert at the third.
pub const ATTACK_WINDOW: std::time::Duration = std::time::Duration::from_secs(10 * 60);
pub const ATTACKS_FOR_ALERT: usize = 3;

/// Counts refused presentation attacks: repeated ones within `ATTACK_WINDOW` are someone
/// trying, and the supervisor should know.
#[derive(Debug, Default)]
pub struct AttackMonitor {
    recent: std::collections::VecDeque<std::time::Instant>,
}

impl AttackMonitor {
    /// Counts an attack at `at`; true when it makes `ATTACKS_FOR_ALERT` within the
    /// window (the count then starts again).
    pub fn record(&mut self, at: std::time::Instant) -> bool {
        self.recent
            .retain(|earlier| at.saturating_duration_since(*earlier) < ATTACK_WINDOW);
        self.recent.push_back(at);
        let alert = self.recent.len() >= ATTACKS_FOR_ALERT;
        if alert {
            self.recent.clear();
        }
        alert
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

    fn frame(person: i64, score: f32, eyes: f32, live: Option<f32>) -> Observation {
        Observation {
            accepted: Some((person, score)),
            eyes: Some(eyes),
            liveness: live.map(|p| (p >= 0.5, p)),
        }
    }

    #[test]
    fn a_punch_needs_consensus_a_blink_and_a_live_face() {
        let mut consensus = Consensus::default();
        for ratio in [0.3, 0.3, 0.3, 0.1] {
            assert!(!matches!(
                consensus.observe(frame(7, 0.8, ratio, Some(0.9))),
                KioskState::Confirmed { .. }
            ));
        }
        assert_eq!(
            consensus.observe(frame(7, 0.9, 0.3, Some(0.8))),
            KioskState::Confirmed {
                person_id: 7,
                score: 0.9,
                liveness: (0.9 * 4.0 + 0.8) / 5.0
            }
        );
        // A photo held still never blinks.
        let mut photo = Consensus::default();
        let states: Vec<KioskState> = (0..10)
            .map(|_| photo.observe(frame(7, 0.8, 0.3, Some(0.9))))
            .collect();
        assert_eq!(states[9], KioskState::AwaitingBlink { person_id: 7 });
        assert!(
            !states
                .iter()
                .any(|s| matches!(s, KioskState::Confirmed { .. }))
        );
        // Another face resets the count.
        assert_eq!(
            photo.observe(frame(8, 0.8, 0.3, Some(0.9))),
            KioskState::Recognising {
                person_id: 8,
                frames: 1
            }
        );
        assert_eq!(photo.observe(Observation::default()), KioskState::Searching);
    }

    #[test]
    fn a_video_that_blinks_is_still_refused_when_the_frames_look_like_a_screen() {
        let mut video = Consensus::default();
        let states: Vec<KioskState> = [0.3, 0.1, 0.3]
            .map(|ratio| video.observe(frame(7, 0.85, ratio, Some(0.1))))
            .to_vec();
        assert!(matches!(
            states[2],
            KioskState::Refused { person_id: 7, .. }
        ));
        // Without a judgement of liveness there is no punch either.
        let mut unjudged = Consensus::default();
        for ratio in [0.3, 0.1, 0.3, 0.3] {
            assert!(!matches!(
                unjudged.observe(frame(7, 0.85, ratio, None)),
                KioskState::Confirmed { .. } | KioskState::Refused { .. }
            ));
        }
    }

    #[test]
    fn the_third_attack_within_ten_minutes_raises_an_alert() {
        let start = std::time::Instant::now();
        let mut monitor = AttackMonitor::default();
        assert!(!monitor.record(start));
        // Eleven minutes later the first has expired.
        let later = start + std::time::Duration::from_secs(11 * 60);
        assert!(!monitor.record(later));
        assert!(!monitor.record(later + std::time::Duration::from_secs(60)));
        assert!(monitor.record(later + std::time::Duration::from_secs(120)));
        assert!(!monitor.record(later + std::time::Duration::from_secs(180)));
    }

    #[test]
    fn the_prompt_says_what_to_change() {
        let searching = KioskState::Searching;
        assert_eq!(
            prompt(2, Some(200.0), 640, &searching),
            Some("One person at a time, please.")
        );
        assert_eq!(
            prompt(1, Some(60.0), 640, &searching),
            Some("Please come closer.")
        );
        let waiting = KioskState::AwaitingBlink { person_id: 7 };
        assert_eq!(
            prompt(1, Some(200.0), 640, &waiting),
            Some("Blink, please.")
        );
        assert_eq!(prompt(0, None, 640, &searching), None);
    }
}
