//! The kiosk loop: a camera frame in; the faces to draw, what to tell the person, and the
//! punch or refusal out. The window's worker runs it on every frame it can take, and
//! `vouch bench kiosk` and the tests run it on a recorded sequence, so all three decide
//! alike.
//!
//! A frame pays for what it needs. The subject's face is followed (`kiosk::Tracker`: a
//! small search around the last box, a full detection every `FULL_DETECTION_EVERY`
//! frames or when the face is lost). Landmarks and the aligned chip are made every frame
//! (the blink is read from the chip); the embedding only until `CONSENSUS_FRAMES` frames
//! agree on who it is, then every `REEMBED_EVERY` frames in case the track slipped onto
//! someone else; passive liveness on at most `LIVENESS_FRAMES` frames of a recognised face.

use std::time::Instant;

use image::RgbImage;
use serde::Serialize;

use super::faces::{CheckinReport, checkin, known, record_attack};
pub use crate::camera::RecordedSequence;
use crate::error::Result;
use crate::face::liveness::{Liveness, LivenessScore};
use crate::face::{BoundingBox, Detection, FaceModels, Point, align_chip};
use crate::gallery::Gallery;
use crate::kiosk::{
    AttackMonitor, CONSENSUS_FRAMES, Consensus, EyeSignal, KioskState, Observation, Tracker,
};
use crate::store::{Store, StoreError};
use crate::types::Decision;

/// A recognised face is embedded again this often while it is followed.
pub const REEMBED_EVERY: usize = 5;
/// Passive liveness judges at most this many frames of one decision.
pub const LIVENESS_FRAMES: usize = 5;
/// Embedded frames in the review band after "look again" before the kiosk gives up.
pub const SECOND_LOOK_FRAMES: usize = 8;

/// The nearest enrolled person to a face, with the decision under their bands.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Match {
    pub person_id: i64,
    pub name: String,
    pub score: f32,
    pub decision: Decision,
}

/// The enrolled person nearest to `embedding` (`None` when nobody is enrolled), decided
/// under that person's own bands.
pub fn nearest(store: &Store, gallery: &Gallery, embedding: &[f32]) -> Result<Option<Match>> {
    let Some(candidate) = gallery.search(embedding, 1)?.pop() else {
        return Ok(None);
    };
    let (person, bands) = known(store, gallery, candidate.person_id)?;
    Ok(Some(Match {
        person_id: candidate.person_id,
        name: person.name,
        score: candidate.score,
        decision: bands.decide(candidate.score),
    }))
}

/// One face of a frame, as the kiosk draws it.
#[derive(Debug, Clone)]
pub struct SeenFace {
    pub bbox: BoundingBox,
    /// Empty for faces other than the subject's.
    pub landmarks: Vec<Point>,
    /// Who the face is, as far as the kiosk knows (the subject's only).
    pub nearest: Option<Match>,
    pub liveness: Option<LivenessScore>,
}

/// What the kiosk tells the person in front of it after this frame.
#[derive(Debug, Clone)]
pub enum KioskEvent {
    /// Checked in or out (or a repeat within the window, which records nothing).
    Punched(CheckinReport),
    /// Passive liveness judged most frames an attack; `alert` when that raised the
    /// supervisor's alert.
    Refused { alert: bool },
    /// Nobody enrolled looks like this face.
    Unknown,
    /// Someone enrolled may be this face, but not surely: a second, straighter look.
    LookAgain,
    /// Still not sure after the second look: the desk decides.
    NotSure,
    /// Still not sure after the second look, but the likely person has a kiosk PIN, the
    /// face looked live and blinked: their PIN settles it (`KioskLoop::enter_pin`).
    AskPin,
    /// A wrong PIN; after `PIN_TRIES` the desk decides.
    PinRefused { tries_left: usize },
}

/// Wrong PINs allowed for one face before the kiosk gives up on it.
pub const PIN_TRIES: usize = 3;

/// Milliseconds each stage took on this frame (0 when the stage did not run).
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct StageTimes {
    pub detect_ms: f64,
    pub landmarks_ms: f64,
    pub embed_ms: f64,
    pub liveness_ms: f64,
    pub total_ms: f64,
    /// The face was found by the search around the followed box, not a full detection.
    pub tracked: bool,
}

/// The loop's answer to one frame.
#[derive(Debug, Clone)]
pub struct KioskStep {
    pub faces: Vec<SeenFace>,
    /// Index into `faces` of the one the kiosk decides about.
    pub subject: Option<usize>,
    pub state: KioskState,
    /// What the person should change ("come closer", "blink, please").
    pub prompt: Option<&'static str>,
    pub event: Option<KioskEvent>,
    /// Why no face was found, when none was (`face::quality::no_face_cause`).
    pub no_face: Option<&'static str>,
    /// The kiosk waits for a PIN from the face in front of it.
    pub pin_requested: bool,
    pub times: StageTimes,
}

/// The networks the loop runs; without liveness nobody is punched from the camera.
#[derive(Clone, Copy)]
pub struct KioskModels<'a> {
    pub faces: &'a FaceModels,
    pub liveness: Option<&'a Liveness>,
}

/// Doubt about the followed face, said once each.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
enum Doubt {
    #[default]
    None,
    LookAgain,
    Told,
}

/// The kiosk's memory between frames: the followed face and what is known about it.
#[derive(Debug, Default)]
pub struct KioskLoop {
    tracker: Tracker,
    consensus: Consensus,
    attacks: AttackMonitor,
    identity: Option<Match>,
    /// The accepted embedding with the best score so far, which the punch is made with:
    /// (person, score, embedding).
    best: Option<(i64, f32, Vec<f32>)>,
    since_embed: usize,
    /// Embedded frames of this face that were not accepted.
    doubtful: usize,
    doubt: Doubt,
    /// Punched (Confirmed) or refused: nothing more is decided until the face leaves.
    outcome: Option<KioskState>,
    /// The likeliest person while the face is in the review band: (person, best score).
    review: Option<(i64, f32)>,
    /// Passive liveness of the face's review-band frames: (judged, live, sum of scores).
    review_liveness: (usize, usize, f32),
    /// Blinks seen while the face was in the review band, and whether the PIN waits on one.
    review_blink: crate::kiosk::BlinkDetector,
    awaiting_blink: bool,
    /// Waiting for the PIN of `review`, and the wrong ones so far.
    asking_pin: bool,
    pin_tries: usize,
}

fn elapsed_ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1e3
}

impl KioskLoop {
    /// One frame through the kiosk: find and follow the subject, recognise, check the
    /// blink and liveness, and punch (or refuse) once they agree. Store failures are
    /// errors; a face that cannot be recognised is an event, not an error.
    pub fn step(
        &mut self,
        models: KioskModels,
        store: &mut Store,
        gallery: &Gallery,
        frame: &RgbImage,
        repeat_window: chrono::Duration,
        actor: &str,
    ) -> Result<KioskStep> {
        let started = Instant::now();
        let mut times = StageTimes::default();
        let clock = Instant::now();
        let (detections, subject, tracked) = self.find(models.faces, frame)?;
        times.detect_ms = elapsed_ms(clock);
        times.tracked = tracked;
        let continues = self
            .tracker
            .follow(subject.map(|index| detections[index].bbox), !times.tracked);
        if !continues {
            self.forget_face();
        }
        let mut faces: Vec<SeenFace> = detections
            .iter()
            .map(|d| SeenFace {
                bbox: d.bbox,
                landmarks: Vec::new(),
                nearest: None,
                liveness: None,
            })
            .collect();
        let no_face = faces
            .is_empty()
            .then(|| crate::face::quality::no_face_cause(frame));
        let mut step = KioskStep {
            faces: Vec::new(),
            subject,
            state: KioskState::Searching,
            prompt: None,
            event: None,
            no_face,
            pin_requested: false,
            times,
        };
        let Some(index) = subject else {
            step.faces = faces;
            step.times.total_ms = elapsed_ms(started);
            return Ok(step);
        };
        faces[index].nearest = self.identity.clone();
        if let Some(outcome) = &self.outcome {
            step.state = outcome.clone();
        } else {
            step.state = self.decide(
                models,
                store,
                gallery,
                frame,
                &mut faces[index],
                &mut step.times,
            )?;
            step.event = self.act(store, gallery, &step.state, repeat_window, actor)?;
            step.pin_requested = self.asking_pin;
            step.prompt = crate::kiosk::prompt(
                faces.len(),
                Some(faces[index].bbox.width),
                frame.width(),
                &step.state,
            )
            .or(self.awaiting_blink.then_some("Blink, please."));
        }
        step.faces = faces;
        step.times.total_ms = elapsed_ms(started);
        Ok(step)
    }

    /// The frame's faces, the subject among them, and whether it was found around the
    /// followed face (else, or when it is not there, the whole frame is searched).
    fn find(
        &self,
        models: &FaceModels,
        frame: &RgbImage,
    ) -> Result<(Vec<Detection>, Option<usize>, bool)> {
        if let Some(region) = self.tracker.search_region() {
            let near = models.detect_near(frame, &region)?;
            let closest = (0..near.len())
                .max_by(|&a, &b| near[a].prominence().total_cmp(&near[b].prominence()));
            if closest.is_some() {
                return Ok((near, closest, true));
            }
        }
        let all = models.detect(frame)?;
        let subject = crate::face::subject_of_detections(&all, frame.dimensions());
        Ok((all, subject, false))
    }

    /// A different face (or none): everything known about the last one goes.
    fn forget_face(&mut self) {
        *self = Self {
            tracker: std::mem::take(&mut self.tracker),
            attacks: std::mem::take(&mut self.attacks),
            ..Self::default()
        };
    }

    /// Landmarks, chip, identity (when due) and liveness (when useful) of the subject, and
    /// where the decision stands.
    fn decide(
        &mut self,
        models: KioskModels,
        store: &Store,
        gallery: &Gallery,
        frame: &RgbImage,
        face: &mut SeenFace,
        times: &mut StageTimes,
    ) -> Result<KioskState> {
        let clock = Instant::now();
        let detection = Detection {
            bbox: face.bbox,
            score: 1.0,
        };
        face.landmarks = models.faces.landmarks(frame, &[detection])?.remove(0);
        let chip = align_chip(frame, &face.landmarks)?;
        times.landmarks_ms = elapsed_ms(clock);

        let recognised = self
            .identity
            .as_ref()
            .is_some_and(|m| m.decision == Decision::Accept);
        let due = self.since_embed + 1 >= REEMBED_EVERY;
        let embed_now = if recognised {
            self.consensus.frames() < CONSENSUS_FRAMES || due
        } else {
            self.doubt != Doubt::Told || due
        };
        if embed_now {
            let clock = Instant::now();
            let embedding = models
                .faces
                .embed_chips(std::slice::from_ref(&chip))?
                .remove(0);
            times.embed_ms = elapsed_ms(clock);
            self.since_embed = 0;
            self.identity = nearest(store, gallery, &embedding)?;
            match &self.identity {
                Some(found) if found.decision == Decision::Accept => {
                    let better = self.best.as_ref().is_none_or(|(person, score, _)| {
                        *person != found.person_id || found.score > *score
                    });
                    if better {
                        self.best = Some((found.person_id, found.score, embedding));
                    }
                }
                _ => self.doubtful += 1,
            }
        } else {
            self.since_embed += 1;
        }
        face.nearest = self.identity.clone();
        let accepted = self
            .identity
            .as_ref()
            .filter(|m| m.decision == Decision::Accept)
            .map(|m| (m.person_id, m.score));

        let review = self
            .identity
            .as_ref()
            .filter(|m| m.decision == Decision::Review)
            .map(|m| (m.person_id, m.score));
        if let Some((person_id, score)) = review
            && self.review.is_none_or(|(_, best)| score > best)
        {
            self.review = Some((person_id, score));
        }
        let judged = if accepted.is_some() {
            self.consensus.judged()
        } else {
            self.review_liveness.0
        };
        if let Some(liveness) = models.liveness
            && (accepted.is_some() || review.is_some())
            && judged < LIVENESS_FRAMES
        {
            let clock = Instant::now();
            let score = liveness.score(frame, &face.bbox)?;
            times.liveness_ms = elapsed_ms(clock);
            if accepted.is_none() {
                let (judged, live, sum) = &mut self.review_liveness;
                *judged += 1;
                *live += usize::from(score.is_live);
                *sum += score.live;
            }
            face.liveness = Some(score);
        }
        let eyes = EyeSignal::from_chip(&chip);
        if let (Some(_), Some(eyes)) = (review, &eyes) {
            self.review_blink.observe(eyes);
        }
        Ok(self.consensus.observe(Observation {
            accepted,
            eyes,
            liveness: face.liveness.map(|l| (l.is_live, l.live)),
        }))
    }

    /// The punch, the refusal, or what to say about a face the kiosk is unsure of.
    fn act(
        &mut self,
        store: &mut Store,
        gallery: &Gallery,
        state: &KioskState,
        repeat_window: chrono::Duration,
        actor: &str,
    ) -> Result<Option<KioskEvent>> {
        match *state {
            KioskState::Confirmed { liveness, .. } => {
                self.outcome = Some(state.clone());
                let Some((_, _, embedding)) = &self.best else {
                    return Ok(None);
                };
                let report = checkin(
                    store,
                    gallery,
                    embedding,
                    Some(liveness),
                    repeat_window,
                    actor,
                )?;
                Ok(Some(KioskEvent::Punched(report)))
            }
            KioskState::Refused {
                person_id,
                liveness,
            } => {
                self.outcome = Some(state.clone());
                let alert = record_attack(store, &mut self.attacks, person_id, liveness, actor)?;
                Ok(Some(KioskEvent::Refused { alert }))
            }
            KioskState::Searching => self.doubt_event(store),
            _ => Ok(None),
        }
    }

    /// After `CONSENSUS_FRAMES` doubtful embeddings: "unknown" for a face nobody matches,
    /// "look again" for one in the review band, and, when the second look did not settle
    /// it, the likely person's PIN (they have one and the face looked live) or "not sure".
    fn doubt_event(&mut self, store: &Store) -> Result<Option<KioskEvent>> {
        let review = self
            .identity
            .as_ref()
            .is_some_and(|m| m.decision == Decision::Review);
        Ok(match self.doubt {
            Doubt::None if self.doubtful >= CONSENSUS_FRAMES => {
                if review {
                    self.doubt = Doubt::LookAgain;
                    Some(KioskEvent::LookAgain)
                } else {
                    self.doubt = Doubt::Told;
                    Some(KioskEvent::Unknown)
                }
            }
            Doubt::LookAgain if self.doubtful >= CONSENSUS_FRAMES + SECOND_LOOK_FRAMES => {
                let (judged, live, _) = self.review_liveness;
                let looked_live = judged >= CONSENSUS_FRAMES && 2 * live > judged;
                // A PIN is checked on the server (each try is audited there): a kiosk
                // that cannot reach it asks the desk instead.
                let pin_holder = match self.review {
                    Some((person_id, _)) if looked_live => match store.has_pin(person_id) {
                        Err(StoreError::Unreachable { .. }) => false,
                        has_pin => has_pin?,
                    },
                    _ => false,
                };
                // The PIN stands in for the match, not for the blink: a face that never
                // blinked is waited for, a while, as an accepted one is.
                let waited = self.doubtful >= CONSENSUS_FRAMES + 2 * SECOND_LOOK_FRAMES;
                self.awaiting_blink = pin_holder && !self.review_blink.blinked() && !waited;
                if self.awaiting_blink {
                    return Ok(None);
                }
                self.doubt = Doubt::Told;
                if pin_holder && self.review_blink.blinked() {
                    self.asking_pin = true;
                    Some(KioskEvent::AskPin)
                } else {
                    Some(KioskEvent::NotSure)
                }
            }
            _ => None,
        })
    }

    /// The PIN typed at the kiosk when it asked for one: the likely person's punch when
    /// it is theirs (with the review score and the face's liveness), else another try
    /// until `PIN_TRIES`, then "not sure".
    pub fn enter_pin(
        &mut self,
        store: &mut Store,
        pin: &str,
        repeat_window: chrono::Duration,
        actor: &str,
    ) -> Result<KioskEvent> {
        let Some((person_id, score)) = self.review.filter(|_| self.asking_pin) else {
            return Ok(KioskEvent::NotSure);
        };
        if store.check_pin(person_id, pin, actor)? {
            self.asking_pin = false;
            let (judged, _, sum) = self.review_liveness;
            let liveness = sum / judged.max(1) as f32;
            let punch = store.punch(person_id, score, Some(liveness), repeat_window, actor)?;
            let person = store.person(person_id)?;
            self.outcome = Some(KioskState::Confirmed {
                person_id,
                score,
                liveness,
            });
            return Ok(KioskEvent::Punched(CheckinReport {
                external_id: person.external_id,
                name: person.name,
                score,
                punch,
            }));
        }
        self.pin_tries += 1;
        if self.pin_tries >= PIN_TRIES {
            self.asking_pin = false;
            return Ok(KioskEvent::NotSure);
        }
        Ok(KioskEvent::PinRefused {
            tries_left: PIN_TRIES - self.pin_tries,
        })
    }
}

/// What a replay of a recorded sequence measured.
#[derive(Debug, Clone, Serialize)]
pub struct ReplayReport {
    pub kernel: String,
    /// Where the networks ran: the CPU kernels above time only the parts left on the CPU
    /// when this is a GPU.
    pub device: String,
    pub threads: usize,
    /// Frames at the camera's rate: the loop takes the newest frame when it is free, as
    /// the window does; otherwise every frame in turn.
    pub real_time: bool,
    pub frames_in_sequence: usize,
    pub frames_processed: usize,
    /// Frames the loop processed per second of its own time.
    pub frames_per_second: f64,
    /// Seconds from the face wholly in view to "recognised" (the consensus reached), and
    /// to the greeting (the punch recorded), on the sequence's clock.
    pub seconds_to_recognised: Option<f64>,
    pub seconds_to_greeting: Option<f64>,
    /// Who was greeted.
    pub greeted: Option<String>,
    /// Medians over the frames that ran each stage.
    pub median: StageTimes,
    pub tracked_frames: usize,
    pub full_detections: usize,
    pub embedded_frames: usize,
    pub liveness_frames: usize,
}

/// The person a recorded sequence shows, as `replay_scratch` enrols them.
pub const SEQUENCE_PERSON: (&str, &str) = ("Sequence Person", "SEQ-1");

/// `replay` against a scratch database in memory in which only the sequence's person is
/// enrolled, from its `reference.jpg`.
pub fn replay_scratch(
    models: KioskModels,
    sequence: &RecordedSequence,
    real_time: bool,
) -> Result<(ReplayReport, Vec<KioskStep>)> {
    let mut store = Store::open_in_memory()?;
    let mut gallery = Gallery::of_faces(&store, &models.faces.model_id())?;
    let (name, external_id) = SEQUENCE_PERSON;
    let request = super::EnrollRequest {
        name: name.to_string(),
        external_id: external_id.to_string(),
        images: vec![sequence.reference.clone()],
    };
    super::enroll_face(
        models.faces,
        &mut store,
        &mut gallery,
        &request,
        false,
        "replay",
    )?;
    replay(models, &mut store, &gallery, sequence, real_time, "kiosk")
}

fn median(mut values: Vec<f64>) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Replays `sequence` through a fresh kiosk loop (the person must be enrolled in `store`
/// and `gallery`). In `real_time`, frame i arrives at i / fps on a clock that the loop's
/// own processing time advances, so a slow machine skips frames as the window would;
/// otherwise every frame is processed in order. The clock starts at the first frame.
pub fn replay(
    models: KioskModels,
    store: &mut Store,
    gallery: &Gallery,
    sequence: &RecordedSequence,
    real_time: bool,
    actor: &str,
) -> Result<(ReplayReport, Vec<KioskStep>)> {
    let window = store.repeat_window()?;
    let frame_interval = 1.0 / f64::from(sequence.info.fps);
    let in_view_at = sequence.info.face_in_view_from as f64 * frame_interval;
    let mut kiosk = KioskLoop::default();
    let mut steps = Vec::new();
    let mut clock = 0.0f64;
    let mut busy = 0.0f64;
    let mut next = 0usize;
    let (mut recognised_at, mut greeted_at, mut greeted) = (None, None, None);
    while next < sequence.frames.len() {
        let index = if real_time {
            clock = clock.max(next as f64 * frame_interval);
            // The newest frame the camera has delivered by now.
            ((clock / frame_interval + 1e-9).floor() as usize)
                .clamp(next, sequence.frames.len() - 1)
        } else {
            next
        };
        let step = kiosk.step(
            models,
            store,
            gallery,
            &sequence.frames[index],
            window,
            actor,
        )?;
        let seconds = step.times.total_ms / 1e3;
        busy += seconds;
        clock = if real_time {
            clock + seconds
        } else {
            (index + 1) as f64 * frame_interval
        };
        if recognised_at.is_none() && kiosk.consensus.frames() >= CONSENSUS_FRAMES {
            recognised_at = Some(clock - in_view_at);
        }
        if let Some(KioskEvent::Punched(report)) = &step.event
            && greeted_at.is_none()
        {
            greeted_at = Some(clock - in_view_at);
            greeted = Some(report.name.clone());
        }
        steps.push(step);
        next = index + 1;
    }
    let stage = |pick: fn(&StageTimes) -> f64| {
        median(
            steps
                .iter()
                .map(|s| pick(&s.times))
                .filter(|&ms| ms > 0.0)
                .collect(),
        )
    };
    let count = |pick: fn(&StageTimes) -> bool| steps.iter().filter(|s| pick(&s.times)).count();
    let report = ReplayReport {
        kernel: models.faces.isa.name().to_string(),
        device: crate::device::describe(models.faces.device()).to_string(),
        threads: rayon::current_num_threads(),
        real_time,
        frames_in_sequence: sequence.frames.len(),
        frames_processed: steps.len(),
        frames_per_second: steps.len() as f64 / busy.max(1e-9),
        seconds_to_recognised: recognised_at,
        seconds_to_greeting: greeted_at,
        greeted,
        median: StageTimes {
            detect_ms: stage(|t| t.detect_ms),
            landmarks_ms: stage(|t| t.landmarks_ms),
            embed_ms: stage(|t| t.embed_ms),
            liveness_ms: stage(|t| t.liveness_ms),
            total_ms: stage(|t| t.total_ms),
            tracked: false,
        },
        tracked_frames: count(|t| t.tracked),
        full_detections: steps.len() - count(|t| t.tracked),
        embedded_frames: count(|t| t.embed_ms > 0.0),
        liveness_frames: count(|t| t.liveness_ms > 0.0),
    };
    Ok((report, steps))
}
