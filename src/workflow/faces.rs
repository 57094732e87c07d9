//! Faces at the desk and the kiosk: enrollment (one person or a batch), 1:1
//! verification, 1:N identification and the check-in punch.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use image::RgbImage;
use serde::Serialize;

use super::{EnrollReport, EnrollRequest, Progress, RejectedImage};
use crate::enroll::assess_face;
use crate::error::{Error, Result};
use crate::eval::standards::SiteLoad;
use crate::face::{FaceModels, TEMPLATE_SHAPE};
use crate::gallery::{Candidate, Gallery, Known};
use crate::imageio;
use crate::matching::{euclidean_distance, face_score};
use crate::store::{Enrollment, NewTemplate, Punch, Store, StoreError, Verification};
use crate::types::{Bands, Decision, Modality};

/// Why an enrollment's transaction stopped.
enum Refusal {
    /// A face enrolled meanwhile as someone else matches in the accept band.
    Matches {
        person_id: i64,
        score: f32,
        path: PathBuf,
    },
    Failed(Error),
}

impl From<crate::store::StoreError> for Refusal {
    fn from(error: crate::store::StoreError) -> Self {
        Refusal::Failed(error.into())
    }
}

impl From<Error> for Refusal {
    fn from(error: Error) -> Self {
        Refusal::Failed(error)
    }
}

/// Enrolls one person from their reference photos, all good photos in one transaction.
/// A photo that fails a quality check (or cannot be read) is listed with its reason; a
/// face that already matches ANOTHER person in the accept band stops the enrollment
/// unless `force`. The new person is added to `gallery` so a batch sees earlier people.
pub fn enroll_face(
    models: &FaceModels,
    store: &mut Store,
    gallery: &mut Gallery,
    request: &EnrollRequest,
    force: bool,
    actor: &str,
) -> Result<EnrollReport> {
    enroll_face_references(models, store, gallery, request, force, false, actor)
}

/// Re-enrols an enrolled person from new reference photos: the good ones replace all
/// their references in one transaction (nothing changes when none is good), with the
/// same quality and duplicate checks as a first enrollment.
pub fn reenroll_face(
    models: &FaceModels,
    store: &mut Store,
    gallery: &mut Gallery,
    request: &EnrollRequest,
    actor: &str,
) -> Result<EnrollReport> {
    enroll_face_references(models, store, gallery, request, false, true, actor)
}

fn enroll_face_references(
    models: &FaceModels,
    store: &mut Store,
    gallery: &mut Gallery,
    request: &EnrollRequest,
    force: bool,
    replace: bool,
    actor: &str,
) -> Result<EnrollReport> {
    request.check_text()?;
    let bands = store.bands(Modality::Face)?;
    let mut samples: Vec<NewTemplate> = Vec::new();
    let mut paths = Vec::new();
    let mut rejected = Vec::new();
    for path in &request.images {
        let assessed = std::fs::read(path)
            .map_err(|e| Error::io(e, path))
            .and_then(|bytes| {
                let picture = imageio::decode_rgb(&bytes, path)?;
                assess_face(models, &picture, &bytes)
            })
            .map_err(|error| error.to_string())
            .and_then(|assessed| assessed.map_err(|rejection| rejection.to_string()))
            .and_then(|sample| {
                super::repeated_file(&samples, &paths, &sample.template).map_or(Ok(sample), Err)
            });
        let sample = match assessed {
            Ok(sample) => sample,
            Err(reason) => {
                rejected.push(RejectedImage {
                    path: path.clone(),
                    reason,
                });
                continue;
            }
        };
        if let Some(best) = gallery.search(&sample.template.embedding, 1)?.first()
            && best.score >= bands.high
            && !force
        {
            let other = store.person(best.person_id)?;
            if other.external_id != request.external_id {
                return Err(Error::MatchesAnother {
                    path: path.clone(),
                    name: other.name,
                    external_id: other.external_id,
                    score: best.score,
                });
            }
        }
        samples.push(sample.template);
        paths.push(path.clone());
    }
    if samples.is_empty() {
        return Err(super::nothing_usable(&request.external_id, &rejected));
    }
    let model_id = models.model_id();
    let enrollment = Enrollment {
        name: &request.name,
        external_id: &request.external_id,
        modality: Modality::Face,
        model_id: &model_id,
        templates: &samples,
        shape: &TEMPLATE_SHAPE,
        checked_up_to: if force {
            i64::MAX
        } else {
            gallery.checked_up_to
        },
        replace,
    };
    // Inside the enrollment's transaction: faces another kiosk or desk enrolled since
    // this gallery was loaded.
    let enrolled = store.enroll_guarded(&enrollment, actor, |newer| {
        for template in newer {
            for (sample, path) in samples.iter().zip(&paths) {
                let score = face_score(euclidean_distance(&sample.embedding, &template.embedding)?);
                if score >= bands.high {
                    return Err(Refusal::Matches {
                        person_id: template.person_id,
                        score,
                        path: path.clone(),
                    });
                }
            }
        }
        Ok(())
    });
    let person_id = match enrolled {
        Ok(person_id) => person_id,
        Err(Refusal::Matches {
            person_id,
            score,
            path,
        }) => {
            let other = store.person(person_id)?;
            return Err(Error::MatchesAnother {
                path,
                name: other.name,
                external_id: other.external_id,
                score,
            });
        }
        Err(Refusal::Failed(error)) => return Err(error),
    };
    if replace {
        *gallery = Gallery::of_faces(store, &model_id)?;
    } else {
        gallery.add_person(person_id, samples.iter().map(|s| s.embedding.as_slice()))?;
    }
    Ok(EnrollReport::new(
        person_id,
        request,
        samples.len(),
        rejected,
    ))
}

#[derive(Debug, Clone, Serialize)]
pub struct BatchFailure {
    pub external_id: String,
    pub reason: String,
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct BatchReport {
    pub enrolled: Vec<EnrollReport>,
    pub failed: Vec<BatchFailure>,
    /// Requests not started because the job was cancelled.
    pub not_started: usize,
}

/// Enrolls many people, each in their own transaction: if the process dies or the job is
/// cancelled, every person is either fully enrolled or absent. A person who cannot be
/// enrolled (no usable photo, already enrolled, matches someone else) is reported and
/// the batch goes on; a database failure stops it.
pub fn enroll_batch(
    models: &FaceModels,
    store: &mut Store,
    requests: &[EnrollRequest],
    force: bool,
    actor: &str,
    cancel: &AtomicBool,
    progress: &mut dyn FnMut(Progress),
) -> Result<BatchReport> {
    let mut gallery = Gallery::of_faces(store, &models.model_id())?;
    let mut report = BatchReport::default();
    for (done, request) in requests.iter().enumerate() {
        if cancel.load(Ordering::Relaxed) {
            report.not_started = requests.len() - done;
            break;
        }
        progress(Progress {
            done,
            total: requests.len(),
            current: request.external_id.clone(),
        });
        match enroll_face(models, store, &mut gallery, request, force, actor) {
            Ok(enrolled) => report.enrolled.push(enrolled),
            Err(
                error @ (Error::NothingUsable { .. }
                | Error::MatchesAnother { .. }
                | Error::Store(StoreError::Duplicate { .. })),
            ) => report.failed.push(BatchFailure {
                external_id: request.external_id.clone(),
                reason: error.to_string(),
            }),
            Err(error) => return Err(error),
        }
    }
    progress(Progress {
        done: requests.len() - report.not_started,
        total: requests.len(),
        current: String::new(),
    });
    Ok(report)
}

#[derive(Debug, Clone, Serialize)]
pub struct VerifyReport {
    pub external_id: String,
    pub name: String,
    pub references: usize,
    pub best_score: f32,
    pub mean_score: f32,
    pub decision: Decision,
    pub bands: Bands,
    /// The photo's sha256, as the decision's audit row records it.
    pub photo_sha256: String,
}

/// 1:1: the main face of the photo against every reference of the person; the decision
/// (on the best score) is recorded with its audit row, which names the photo by its sha256.
pub fn verify_face(
    models: &FaceModels,
    store: &mut Store,
    external_id: &str,
    photo: &Path,
    actor: &str,
) -> Result<VerifyReport> {
    let (bytes, photo_sha256) = super::read_hashed(photo)?;
    let picture = imageio::decode_rgb(&bytes, photo)?;
    let source = photo.display().to_string();
    let person = store.person_by_external_id(external_id, Modality::Face)?;
    let references = store.person_templates(person.id, &models.model_id(), &TEMPLATE_SHAPE)?;
    if references.is_empty() {
        return Err(Error::NoReferences {
            name: person.name,
            model: models.model_id(),
        });
    }
    let (face, _) = models.main_face(&picture, &source)?;
    let scores: Vec<f32> = references
        .iter()
        .map(|r| {
            Ok(face_score(euclidean_distance(
                &face.embedding,
                &r.embedding,
            )?))
        })
        .collect::<Result<_>>()?;
    let best_score = scores.iter().copied().fold(0.0, f32::max);
    let mean_score = scores.iter().sum::<f32>() / scores.len() as f32;
    let bands = store.bands_for(Modality::Face, person.id)?;
    let decision = bands.decide(best_score);
    store.record_decision(
        &Verification {
            person_id: person.id,
            modality: Modality::Face,
            score: best_score,
            bands,
            decision,
            evidence_sha256: Some(&photo_sha256),
        },
        actor,
    )?;
    Ok(VerifyReport {
        external_id: person.external_id,
        name: person.name,
        references: scores.len(),
        best_score,
        mean_score,
        decision,
        bands,
        photo_sha256,
    })
}

#[derive(Debug, Clone, Serialize)]
pub struct Identified {
    pub external_id: String,
    pub name: String,
    pub score: f32,
    pub distance: f32,
    pub decision: Decision,
}

/// 1:N: the `top` enrolled people nearest to the main face of `picture`, nearest first.
pub fn identify_face(
    models: &FaceModels,
    store: &Store,
    gallery: &Gallery,
    picture: &RgbImage,
    source: &str,
    top: usize,
) -> Result<Vec<Identified>> {
    let (face, _) = models.main_face(picture, source)?;
    describe_candidates(store, &gallery.search(&face.embedding, top)?)
}

/// Names and decisions for gallery candidates.
pub fn describe_candidates(store: &Store, candidates: &[Candidate]) -> Result<Vec<Identified>> {
    candidates
        .iter()
        .map(|c| {
            let person = store.person(c.person_id)?;
            let bands = store.bands_for(Modality::Face, c.person_id)?;
            Ok(Identified {
                external_id: person.external_id,
                name: person.name,
                score: c.score,
                distance: c.distance,
                decision: bands.decide(c.score),
            })
        })
        .collect()
}

#[derive(Debug, Clone, Serialize)]
pub struct CheckinReport {
    pub external_id: String,
    pub name: String,
    pub score: f32,
    #[serde(flatten)]
    pub punch: Punch,
}

/// The kiosk punch for an identified face embedding: only a match in the accept band
/// records a check-in or check-out (a repeat within `repeat_window` is ignored).
pub fn checkin(
    store: &mut Store,
    gallery: &Gallery,
    embedding: &[f32],
    liveness: Option<f32>,
    repeat_window: chrono::Duration,
    actor: &str,
) -> Result<CheckinReport> {
    let Some(best) = gallery.search(embedding, 1)?.pop() else {
        return Err(Error::EmptyGallery);
    };
    let (person, bands) = known(store, gallery, best.person_id)?;
    if bands.decide(best.score) != Decision::Accept {
        return Err(Error::NotRecognised {
            score: best.score,
            accept: bands.high,
        });
    }
    let punch = store.punch(best.person_id, best.score, liveness, repeat_window, actor)?;
    Ok(CheckinReport {
        external_id: person.external_id,
        name: person.name,
        score: best.score,
        punch,
    })
}

/// A gallery's person by name, with the face bands that decide for them: read from the
/// store, or, when the site's server cannot be reached, from the roster the gallery keeps
/// (`Gallery::keep_roster`).
pub fn known(store: &Store, gallery: &Gallery, person_id: i64) -> Result<(Known, Bands)> {
    let read = || -> Result<(Known, Bands)> {
        let person = store.person(person_id)?;
        let known = Known {
            name: person.name,
            external_id: person.external_id,
        };
        Ok((known, store.bands_for(Modality::Face, person_id)?))
    };
    match (read(), gallery.roster()) {
        (Err(Error::Store(StoreError::Unreachable { .. })), Some(roster))
            if roster.person(person_id).is_some() =>
        {
            let known = roster.person(person_id).expect("checked").clone();
            Ok((known, roster.bands_for(person_id)))
        }
        (read, _) => read,
    }
}

/// The site's repeat window, or the roster's when the server cannot be reached.
pub fn kiosk_repeat_window(store: &Store, gallery: &Gallery) -> Result<chrono::Duration> {
    match (store.repeat_window(), gallery.roster()) {
        (Err(StoreError::Unreachable { .. }), Some(roster)) => Ok(roster.repeat_window()),
        (read, _) => Ok(read?),
    }
}

/// Today's punches (since local midnight), oldest first: the kiosk's list survives a
/// restart.
pub fn todays_punches(store: &Store) -> Result<Vec<crate::store::AttendanceRecord>> {
    let midnight = crate::attendance::local_midnight(chrono::Local::now().date_naive())?;
    Ok(store.attendance(Some(&midnight), None)?)
}

/// A presentation attack the kiosk refused, in the audit log with the person it was made
/// to look like and its liveness; repeated ones add an alert row. True when they did.
pub fn record_attack(
    store: &mut Store,
    monitor: &mut crate::kiosk::AttackMonitor,
    matched_person_id: i64,
    liveness: f32,
    actor: &str,
) -> Result<bool> {
    let detail =
        serde_json::json!({ "matched_person_id": matched_person_id, "liveness": liveness });
    store.audit_append(actor, "presentation_attack", &detail.to_string())?;
    let alert = monitor.record(std::time::Instant::now());
    if alert {
        let detail = serde_json::json!({
            "presentation_attacks": crate::kiosk::ATTACKS_FOR_ALERT,
            "within_minutes": crate::kiosk::ATTACK_WINDOW.as_secs() / 60,
        });
        store.audit_append(actor, "alert", &detail.to_string())?;
    }
    Ok(alert)
}

/// The kiosk punch for a photo, as `vouch checkin` and the window's image check-in both
/// make it: the photo's subject (`FaceModels::main_face`) identified and punched.
pub fn checkin_photo(
    models: &FaceModels,
    store: &mut Store,
    gallery: &Gallery,
    picture: &RgbImage,
    source: &str,
    repeat_window: chrono::Duration,
    actor: &str,
) -> Result<CheckinReport> {
    let (face, _) = models.main_face(picture, source)?;
    // A file is not the camera: nothing judged its liveness.
    checkin(store, gallery, &face.embedding, None, repeat_window, actor)
}

/// The weeks a site's traffic is averaged over.
const TRAFFIC_DAYS: i64 = 28;

/// The enrolled gallery's size, and the kiosk punches a day over the last four weeks (or
/// since the first punch, when that is more recent).
pub fn site_load(store: &Store, gallery: &Gallery) -> Result<SiteLoad> {
    let now = chrono::Utc::now();
    let since = now - chrono::Duration::days(TRAFFIC_DAYS);
    let punches = store.attendance(
        Some(&since.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
        None,
    )?;
    let days = punches
        .first()
        .and_then(|first| chrono::DateTime::parse_from_rfc3339(&first.at).ok())
        .map_or(1.0, |first| {
            ((now - first.with_timezone(&chrono::Utc)).num_minutes() as f64 / 1440.0)
                .clamp(1.0, TRAFFIC_DAYS as f64)
        });
    Ok(SiteLoad {
        enrolled: gallery.people(),
        searches_per_day: punches.len() as f64 / days,
    })
}
