//! What the kiosk decides over a stream of frames, before anything is written: the same
//! person recognised in several consecutive frames (one lucky frame is not enough), a
//! blink seen meanwhile (a printed photo does not blink), and passive liveness agreeing in
//! most of those frames (a phone playing a video blinks too; the liveness networks judge
//! the capture itself). Between frames the face is followed (`Tracker`), so a frame pays
//! for a small search around the last box instead of a full detection.
//!
//! Blinks are read from the pixels of the eyes on the aligned chip (`face::eyes`), not
//! from the eye aspect ratio of the 68 landmarks, which barely moves when eyes close.

use crate::face::BoundingBox;
pub use crate::face::eyes::EyeSignal;

/// Consecutive frames that must agree on who it is.
pub const CONSENSUS_FRAMES: usize = 3;

/// Open, closed, open again: one blink, judged against the face's own open-eyed look.
#[derive(Debug, Default, Clone)]
pub struct BlinkDetector {
    baseline: Option<EyeSignal>,
    closed: bool,
    blinked: bool,
}

impl BlinkDetector {
    pub fn observe(&mut self, signal: &EyeSignal) {
        let Some(baseline) = &mut self.baseline else {
            self.baseline = Some(signal.clone());
            return;
        };
        if signal.looks_closed_against(baseline) {
            self.closed = true;
        } else if signal.looks_open_against(baseline) {
            if self.closed {
                self.blinked = true;
                self.closed = false;
            }
            baseline.follow(signal);
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
#[derive(Debug, Default, Clone)]
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
#[derive(Debug, Clone, Default)]
pub struct Observation {
    /// The best match, when it is in the accept band: (person, score).
    pub accepted: Option<(i64, f32)>,
    /// The eyes on the face's aligned chip.
    pub eyes: Option<EyeSignal>,
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
        if let Some(eyes) = &frame.eyes {
            self.blink.observe(eyes);
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

    /// Frames of the same person so far.
    pub fn frames(&self) -> usize {
        self.frames
    }

    /// Frames passive liveness judged so far.
    pub fn judged(&self) -> usize {
        self.judged
    }
}

/// A full detection at least this often while a face is followed: someone stepping in
/// beside the subject is seen within this many frames.
pub const FULL_DETECTION_EVERY: usize = 10;
/// A box overlapping the last one this much (IoU) is the same face moving.
pub const SAME_TRACK_IOU: f32 = 0.3;
/// The search region around the last box, as a multiple of its side.
pub const SEARCH_GROWTH: f32 = 2.0;

/// Follows the subject's face from frame to frame.
#[derive(Debug, Default, Clone)]
pub struct Tracker {
    last: Option<BoundingBox>,
    since_full: usize,
}

impl Tracker {
    /// Where to look in the next frame: around the last box, or `None` for a full
    /// detection (no face followed, or one is due).
    pub fn search_region(&self) -> Option<BoundingBox> {
        if self.since_full + 1 >= FULL_DETECTION_EVERY {
            return None;
        }
        self.last.map(|b| {
            let (width, height) = (b.width * SEARCH_GROWTH, b.height * SEARCH_GROWTH);
            BoundingBox {
                x: b.x + b.width / 2.0 - width / 2.0,
                y: b.y + b.height / 2.0 - height / 2.0,
                width,
                height,
            }
        })
    }

    /// The subject's box in this frame (`None`: nobody), `full` when a full detection
    /// found it. True when it is the face followed so far, moved.
    pub fn follow(&mut self, found: Option<BoundingBox>, full: bool) -> bool {
        self.since_full = if full { 0 } else { self.since_full + 1 };
        let continues = matches!((self.last, found), (Some(last), Some(now)) if last.iou(&now) >= SAME_TRACK_IOU);
        self.last = found;
        continues
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
    use image::RgbImage;

    use super::*;

    /// Eye and still patches of a face: `lids` moves only the eyes (closing them), `sway`
    /// the whole face (a photo moved in front of the camera).
    fn signal(lids: f32, sway: f32) -> EyeSignal {
        EyeSignal::from_values(vec![0.8 + lids + sway; 64], vec![1.1 + sway; 64])
    }

    fn open() -> EyeSignal {
        signal(0.0, 0.0)
    }

    fn closed() -> EyeSignal {
        signal(0.2, 0.0)
    }

    #[test]
    fn a_blink_is_the_eyes_changing_while_the_face_holds_still() {
        let mut blink = BlinkDetector::default();
        for eyes in [open(), open(), closed(), open()] {
            blink.observe(&eyes);
        }
        assert!(blink.blinked());
        // A photo swayed or tilted changes the still patch as much as the eyes.
        let mut photo = BlinkDetector::default();
        for eyes in [open(), signal(0.0, 0.2), open(), signal(0.0, -0.2), open()] {
            photo.observe(&eyes);
        }
        assert!(!photo.blinked());
        // Eyes that close and never open again are no blink yet.
        let mut shut = BlinkDetector::default();
        for eyes in [open(), closed(), closed()] {
            shut.observe(&eyes);
        }
        assert!(!shut.blinked());
        // Not a chip: no signal.
        assert!(EyeSignal::from_chip(&RgbImage::new(80, 80)).is_none());
    }

    fn frame(person: i64, score: f32, eyes_open: bool, live: Option<f32>) -> Observation {
        Observation {
            accepted: Some((person, score)),
            eyes: Some(if eyes_open { open() } else { closed() }),
            liveness: live.map(|p| (p >= 0.5, p)),
        }
    }

    #[test]
    fn a_punch_needs_consensus_a_blink_and_a_live_face() {
        let mut consensus = Consensus::default();
        for eyes_open in [true, true, true, false] {
            assert!(!matches!(
                consensus.observe(frame(7, 0.8, eyes_open, Some(0.9))),
                KioskState::Confirmed { .. }
            ));
        }
        assert_eq!(
            consensus.observe(frame(7, 0.9, true, Some(0.8))),
            KioskState::Confirmed {
                person_id: 7,
                score: 0.9,
                liveness: (0.9 * 4.0 + 0.8) / 5.0
            }
        );
        // A photo held still never blinks.
        let mut photo = Consensus::default();
        let states: Vec<KioskState> = (0..10)
            .map(|_| photo.observe(frame(7, 0.8, true, Some(0.9))))
            .collect();
        assert_eq!(states[9], KioskState::AwaitingBlink { person_id: 7 });
        assert!(
            !states
                .iter()
                .any(|s| matches!(s, KioskState::Confirmed { .. }))
        );
        // Another face resets the count.
        assert_eq!(
            photo.observe(frame(8, 0.8, true, Some(0.9))),
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
        let states: Vec<KioskState> = [true, false, true]
            .map(|eyes_open| video.observe(frame(7, 0.85, eyes_open, Some(0.1))))
            .to_vec();
        assert!(matches!(
            states[2],
            KioskState::Refused { person_id: 7, .. }
        ));
        // Without a judgement of liveness there is no punch either.
        let mut unjudged = Consensus::default();
        for eyes_open in [true, false, true, true] {
            assert!(!matches!(
                unjudged.observe(frame(7, 0.85, eyes_open, None)),
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
    fn the_tracker_searches_near_the_face_and_looks_at_the_whole_frame_regularly() {
        let mut tracker = Tracker::default();
        assert_eq!(tracker.search_region(), None);
        let face = BoundingBox {
            x: 100.0,
            y: 100.0,
            width: 50.0,
            height: 60.0,
        };
        assert!(!tracker.follow(Some(face), true));
        assert_eq!(
            tracker.search_region(),
            Some(BoundingBox {
                x: 75.0,
                y: 70.0,
                width: 100.0,
                height: 120.0
            })
        );
        let moved = BoundingBox { x: 104.0, ..face };
        assert!(tracker.follow(Some(moved), false));
        for _ in 2..FULL_DETECTION_EVERY {
            assert!(tracker.search_region().is_some());
            tracker.follow(Some(moved), false);
        }
        assert_eq!(tracker.search_region(), None);
        // Someone else, elsewhere, is a new face to follow; nobody ends the track.
        assert!(!tracker.follow(Some(BoundingBox { x: 400.0, ..face }), true));
        assert!(!tracker.follow(None, true));
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
