//! The desk workflows on top of the models and the store: enrollment (one person or a
//! batch), 1:1 verification, 1:N identification, the kiosk check-in, and re-embedding the
//! gallery after a model change. The CLI and the window both call these.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use image::RgbImage;
use serde::Serialize;

use crate::enroll::assess_face;
use crate::error::{Error, Result};
use crate::face::FaceModels;
use crate::gallery::{Candidate, Gallery};
use crate::imageio;
use crate::matching::{Bands, Decision, euclidean_distance, face_score};
use crate::signature::SignatureModel;
use crate::store::{Modality, NewTemplate, Punch, Store, StoreError};
use sha2::Digest;

/// One person to enroll from reference images.
#[derive(Debug, Clone, PartialEq)]
pub struct EnrollRequest {
    pub name: String,
    pub external_id: String,
    pub images: Vec<PathBuf>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RejectedImage {
    pub path: PathBuf,
    pub reason: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct EnrollReport {
    pub person_id: i64,
    pub external_id: String,
    pub name: String,
    pub enrolled: usize,
    pub rejected: Vec<RejectedImage>,
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
    let bands = store.bands(Modality::Face)?;
    let mut samples: Vec<NewTemplate> = Vec::new();
    let mut rejected = Vec::new();
    for path in &request.images {
        let assessed = std::fs::read(path)
            .map_err(|e| Error::io(e, path))
            .and_then(|bytes| {
                let picture = imageio::decode_rgb(&bytes, path)?;
                assess_face(models, &picture, &bytes)
            });
        let sample = match assessed {
            Ok(Ok(sample)) => sample,
            Ok(Err(rejection)) => {
                rejected.push(RejectedImage {
                    path: path.clone(),
                    reason: rejection.to_string(),
                });
                continue;
            }
            Err(error) => {
                rejected.push(RejectedImage {
                    path: path.clone(),
                    reason: error.to_string(),
                });
                continue;
            }
        };
        if let Some(best) = gallery.search(&sample.template.embedding, 1).first()
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
    }
    if samples.is_empty() {
        return Err(Error::NothingUsable(request.external_id.clone()));
    }
    let model_id = models.model_id();
    let person_id = store.enroll(
        &request.name,
        &request.external_id,
        Modality::Face,
        &model_id,
        &samples,
        actor,
    )?;
    gallery.add_person(person_id, samples.iter().map(|s| s.embedding.as_slice()));
    Ok(EnrollReport {
        person_id,
        external_id: request.external_id.clone(),
        name: request.name.clone(),
        enrolled: samples.len(),
        rejected,
    })
}

/// How far a long job has come, for a progress bar.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Progress {
    pub done: usize,
    pub total: usize,
    pub current: String,
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
                error @ (Error::NothingUsable(_)
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

#[derive(Debug, serde::Deserialize)]
struct ManifestRow {
    id: String,
    name: String,
    image: PathBuf,
}

/// Reads a batch-enrollment manifest: CSV with the header `id,name,image`, one row per
/// reference image (a person has as many rows as images, in any order). Relative image
/// paths are taken from the manifest's folder.
pub fn read_manifest(path: &Path) -> Result<Vec<EnrollRequest>> {
    let base = path.parent().unwrap_or(Path::new("."));
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_path(path)
        .map_err(|e| Error::Invalid(format!("cannot read manifest {}: {e}", path.display())))?;
    let mut requests: Vec<EnrollRequest> = Vec::new();
    for (index, row) in reader.deserialize::<ManifestRow>().enumerate() {
        let row = row.map_err(|e| {
            Error::Invalid(format!(
                "{} line {}: {e} (expected columns id,name,image)",
                path.display(),
                index + 2
            ))
        })?;
        let image = base.join(&row.image);
        match requests.iter_mut().find(|r| r.external_id == row.id) {
            Some(request) if request.name != row.name => {
                return Err(Error::Invalid(format!(
                    "{} line {}: id {} is named both {:?} and {:?}",
                    path.display(),
                    index + 2,
                    row.id,
                    request.name,
                    row.name
                )));
            }
            Some(request) => request.images.push(image),
            None => requests.push(EnrollRequest {
                name: row.name,
                external_id: row.id,
                images: vec![image],
            }),
        }
    }
    Ok(requests)
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
}

/// 1:1: the main face of `picture` against every reference of the person; the decision
/// (on the best score) is recorded with its audit row.
pub fn verify_face(
    models: &FaceModels,
    store: &mut Store,
    external_id: &str,
    picture: &RgbImage,
    source: &str,
    actor: &str,
) -> Result<VerifyReport> {
    let person = store.person_by_external_id(external_id, Modality::Face)?;
    let references = store.person_templates(person.id, &models.model_id())?;
    if references.is_empty() {
        return Err(Error::NoReferences {
            name: person.name,
            model: models.model_id(),
        });
    }
    let (face, _) = models.main_face(picture, source)?;
    let scores: Vec<f32> = references
        .iter()
        .map(|r| face_score(euclidean_distance(&face.embedding, &r.embedding)))
        .collect();
    let best_score = scores.iter().copied().fold(0.0, f32::max);
    let mean_score = scores.iter().sum::<f32>() / scores.len() as f32;
    let bands = store.bands(Modality::Face)?;
    let decision = bands.decide(best_score);
    store.record_decision(
        person.id,
        Modality::Face,
        best_score,
        bands,
        decision,
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
    describe_candidates(store, &gallery.search(&face.embedding, top))
}

/// Names and decisions for gallery candidates.
pub fn describe_candidates(store: &Store, candidates: &[Candidate]) -> Result<Vec<Identified>> {
    let bands = store.bands(Modality::Face)?;
    candidates
        .iter()
        .map(|c| {
            let person = store.person(c.person_id)?;
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
    repeat_window: chrono::Duration,
    actor: &str,
) -> Result<CheckinReport> {
    let Some(best) = gallery.search(embedding, 1).pop() else {
        return Err(Error::EmptyGallery);
    };
    let bands = store.bands(Modality::Face)?;
    if bands.decide(best.score) != Decision::Accept {
        return Err(Error::NotRecognised {
            score: best.score,
            accept: bands.high,
        });
    }
    let person = store.person(best.person_id)?;
    let punch = store.punch(person.id, best.score, repeat_window, actor)?;
    Ok(CheckinReport {
        external_id: person.external_id,
        name: person.name,
        score: best.score,
        punch,
    })
}

/// A model that embeds the crops stored with templates (aligned face chips, normalised
/// signature canvases), so a new model version can rebuild the gallery without the
/// original photos.
pub trait CropEmbedder {
    fn modality(&self) -> Modality;
    fn model_id(&self) -> String;
    fn embed_crops(&self, crops: &[image::DynamicImage]) -> Result<Vec<Vec<f32>>>;
}

impl CropEmbedder for FaceModels {
    fn modality(&self) -> Modality {
        Modality::Face
    }

    fn model_id(&self) -> String {
        FaceModels::model_id(self)
    }

    fn embed_crops(&self, crops: &[image::DynamicImage]) -> Result<Vec<Vec<f32>>> {
        let chips: Vec<RgbImage> = crops.iter().map(|c| c.to_rgb8()).collect();
        self.embed_chips(&chips)
    }
}

/// Crops embedded per transaction: a cancelled or killed re-embedding keeps what it
/// finished and the next run picks up the rest.
const REEMBED_CHUNK: usize = 32;

#[derive(Debug, Clone, Serialize)]
pub struct ReembedReport {
    pub model: String,
    pub templates: usize,
    pub unreadable_crops: usize,
    pub cancelled: bool,
}

/// Embeds, with `embedder`, every stored crop that its model has not embedded yet. Old
/// templates stay (an operator can go back to the old model); matching only ever uses
/// the templates of the active model.
pub fn reembed(
    store: &mut Store,
    embedder: &dyn CropEmbedder,
    actor: &str,
    cancel: &AtomicBool,
    progress: &mut dyn FnMut(Progress),
) -> Result<ReembedReport> {
    let model = embedder.model_id();
    let pending = store.templates_missing_model(embedder.modality(), &model)?;
    let mut report = ReembedReport {
        model: model.clone(),
        templates: 0,
        unreadable_crops: 0,
        cancelled: false,
    };
    for chunk in pending.chunks(REEMBED_CHUNK) {
        if cancel.load(Ordering::Relaxed) {
            report.cancelled = true;
            break;
        }
        progress(Progress {
            done: report.templates + report.unreadable_crops,
            total: pending.len(),
            current: model.clone(),
        });
        let mut readable = Vec::new();
        let mut crops = Vec::new();
        for template in chunk {
            match image::load_from_memory(&template.crop) {
                Ok(crop) => {
                    readable.push(template);
                    crops.push(crop);
                }
                Err(error) => {
                    tracing::warn!(template = template.template_id, %error, "stored crop is unreadable");
                    report.unreadable_crops += 1;
                }
            }
        }
        let embeddings = embedder.embed_crops(&crops)?;
        let new: Vec<(i64, NewTemplate)> = readable
            .iter()
            .zip(embeddings)
            .map(|(old, embedding)| {
                (
                    old.person_id,
                    NewTemplate {
                        embedding,
                        quality: old.quality,
                        source_sha256: old.source_sha256.clone(),
                        crop: Some(old.crop.clone()),
                    },
                )
            })
            .collect();
        store.add_templates(&model, &new, actor)?;
        report.templates += new.len();
    }
    progress(Progress {
        done: report.templates + report.unreadable_crops,
        total: pending.len(),
        current: String::new(),
    });
    Ok(report)
}

/// Enrolls an account holder's reference signatures: every scan that shows ink, in one
/// transaction; each stored template keeps its normalised canvas for re-embedding.
pub fn enroll_signature(
    model: &SignatureModel,
    store: &mut Store,
    request: &EnrollRequest,
    actor: &str,
) -> Result<EnrollReport> {
    let mut templates = Vec::new();
    let mut rejected = Vec::new();
    for path in &request.images {
        let embedded = std::fs::read(path)
            .map_err(|e| Error::io(e, path))
            .and_then(|bytes| {
                let (normalised, embedding) = model.embed_scan(path)?;
                Ok((bytes, normalised, embedding))
            })
            .and_then(|(bytes, normalised, embedding)| {
                Ok(NewTemplate {
                    embedding,
                    quality: normalised.ink_fraction,
                    source_sha256: crate::models::hex(&sha2::Sha256::digest(&bytes)),
                    crop: Some(png_bytes(&normalised.canvas)?),
                })
            });
        match embedded {
            Ok(template) => templates.push(template),
            Err(error) => rejected.push(RejectedImage {
                path: path.clone(),
                reason: error.to_string(),
            }),
        }
    }
    if templates.is_empty() {
        return Err(Error::NothingUsable(request.external_id.clone()));
    }
    let person_id = store.enroll(
        &request.name,
        &request.external_id,
        Modality::Signature,
        &model.model_id(),
        &templates,
        actor,
    )?;
    Ok(EnrollReport {
        person_id,
        external_id: request.external_id.clone(),
        name: request.name.clone(),
        enrolled: templates.len(),
        rejected,
    })
}

pub fn png_bytes(image: &image::GrayImage) -> Result<Vec<u8>> {
    let mut png = Vec::new();
    image
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .map_err(|e| Error::Invalid(format!("cannot encode the crop: {e}")))?;
    Ok(png)
}

#[derive(Debug, Clone, Serialize)]
pub struct SignatureVerdict {
    /// Score against each reference, in enrollment order.
    pub reference_scores: Vec<f32>,
    /// The decision score, over all the references together.
    pub score: f32,
    pub decision: Decision,
    pub bands: Bands,
}

/// Scores a questioned template against reference templates with `model`'s scorer.
pub fn judge_signature(
    model: &SignatureModel,
    references: &[&[f32]],
    questioned: &[f32],
    bands: Bands,
) -> SignatureVerdict {
    let score = model.score(references, questioned);
    SignatureVerdict {
        reference_scores: references
            .iter()
            .map(|r| model.score(std::slice::from_ref(r), questioned))
            .collect(),
        score,
        decision: bands.decide(score),
        bands,
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct SignatureVerifyReport {
    pub external_id: String,
    pub name: String,
    #[serde(flatten)]
    pub verdict: SignatureVerdict,
}

/// The clerk's check: a questioned scan against the account's enrolled references; the
/// decision is recorded with its audit row.
pub fn verify_signature(
    model: &SignatureModel,
    store: &mut Store,
    external_id: &str,
    scan: &Path,
    actor: &str,
) -> Result<SignatureVerifyReport> {
    let person = store.person_by_external_id(external_id, Modality::Signature)?;
    let references = store.person_templates(person.id, &model.model_id())?;
    if references.is_empty() {
        return Err(Error::NoReferences {
            name: person.name,
            model: model.model_id(),
        });
    }
    let (_, questioned) = model.embed_scan(scan)?;
    let reference_embeddings: Vec<&[f32]> =
        references.iter().map(|r| r.embedding.as_slice()).collect();
    let verdict = judge_signature(
        model,
        &reference_embeddings,
        &questioned,
        store.bands(Modality::Signature)?,
    );
    store.record_decision(
        person.id,
        Modality::Signature,
        verdict.score,
        verdict.bands,
        verdict.decision,
        actor,
    )?;
    Ok(SignatureVerifyReport {
        external_id: person.external_id,
        name: person.name,
        verdict,
    })
}
