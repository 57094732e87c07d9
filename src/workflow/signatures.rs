//! Signatures at the bank desk: enrolling an account holder's references and judging a
//! questioned scan against them.

use std::collections::HashMap;
use std::path::Path;

use image::GrayImage;
use rayon::prelude::*;
use serde::Serialize;

use super::{EnrollReport, EnrollRequest, RejectedImage};
use crate::error::StoreError;
use crate::error::{Error, Result};
use crate::signature::preprocess::Normalisation;
use crate::signature::{SignatureModel, TEMPLATE_SHAPE, reference, superimpose};
use crate::store::{
    EarlierCheck, Enrollment, NewTemplate, Person, Store, StoredTemplate, Verification,
};
use crate::types::{Bands, Decision, Modality};

/// Enrolls an account holder's reference signatures: every scan that shows ink, in one
/// transaction; each stored template keeps its normalised canvas for re-embedding.
pub fn enroll_signature(
    model: &SignatureModel,
    store: &mut Store,
    request: &EnrollRequest,
    actor: &str,
) -> Result<EnrollReport> {
    enroll_signature_references(model, store, request, false, actor)
}

/// Re-enrols an account holder: the scans that show ink replace all their references,
/// in one transaction (nothing changes when none does).
pub fn reenroll_signature(
    model: &SignatureModel,
    store: &mut Store,
    request: &EnrollRequest,
    actor: &str,
) -> Result<EnrollReport> {
    enroll_signature_references(model, store, request, true, actor)
}

fn enroll_signature_references(
    model: &SignatureModel,
    store: &mut Store,
    request: &EnrollRequest,
    replace: bool,
    actor: &str,
) -> Result<EnrollReport> {
    request.check_text()?;
    let mut templates = Vec::new();
    let mut paths = Vec::new();
    let mut rejected = Vec::new();
    for path in &request.images {
        let embedded = super::read_hashed(path)
            .and_then(|(bytes, digest)| {
                let (normalised, embedding) = model.embed_scan_bytes(&bytes, path)?;
                Ok((digest, normalised, embedding))
            })
            .and_then(|(digest, normalised, embedding)| {
                Ok(NewTemplate {
                    embedding,
                    quality: normalised.ink_fraction,
                    source_sha256: digest,
                    crop: Some(reference::ink_bytes(&normalised.ink, model.normalisation)?),
                })
            });
        match embedded {
            Ok(template) => match super::repeated_file(&templates, &paths, &template) {
                Some(reason) => rejected.push(RejectedImage {
                    path: path.clone(),
                    reason,
                }),
                None => {
                    templates.push(template);
                    paths.push(path.clone());
                }
            },
            Err(error) => rejected.push(RejectedImage {
                path: path.clone(),
                reason: error.to_string(),
            }),
        }
    }
    if templates.is_empty() {
        return Err(super::nothing_usable(&request.external_id, &rejected));
    }
    let person_id = store.enroll_guarded(
        &Enrollment {
            name: &request.name,
            external_id: &request.external_id,
            modality: Modality::Signature,
            model_id: &model.model_id(),
            templates: &templates,
            shape: &TEMPLATE_SHAPE,
            checked_up_to: i64::MAX,
            replace,
        },
        actor,
        |_| Ok::<(), StoreError>(()),
    )?;
    Ok(EnrollReport {
        advice: (templates.len() < FEW_REFERENCES).then_some(FEW_REFERENCES_ADVICE),
        ..EnrollReport::new(person_id, request, templates.len(), rejected)
    })
}

#[derive(Debug, Clone, Serialize)]
pub struct SignatureVerdict {
    /// The scorer's score with each reference alone, in enrollment order: what each
    /// reference says, not parts of `score` (they do not average to it).
    pub reference_scores: Vec<f32>,
    /// The fitted scorer's probability that the account holder signed, from all the
    /// references together: what decides.
    pub score: f32,
    pub decision: Decision,
    pub bands: Bands,
    /// What to check before acting on the decision, where the model is known to mislead:
    /// the pen before a rejection, the signature itself before an acceptance from too few
    /// references, the paper when the scan is a copy of a reference.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub caution: Option<&'static str>,
    /// The reference the questioned scan lies on stroke for stroke, when it does.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub copy_of: Option<CopyOf>,
    /// Earlier checks of this very file, oldest first, as the audit log records them.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub checked_before: Vec<EarlierCheck>,
}

/// A questioned scan that lies on a reference as only a copy of it can (`superimpose`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct CopyOf {
    /// Which reference, counted from 1 in enrollment order.
    pub reference: usize,
    /// How closely it lies on it (at least [`superimpose::COPY_OVERLAP`]).
    pub overlap: f32,
}

/// Said when the questioned scan is a copy of a reference: the scorer calls a copy the
/// most genuine scan there is, so an acceptance becomes a review.
pub const COPY_CAUTION: &str = "This signature lies on one of the account's references \
     stroke for stroke, as only a copy of it can: nobody signs twice the same. It is that \
     reference printed, pasted or scanned again, not a new signature. A second clerk must \
     look at the paper cheque before anything is paid.";

impl SignatureVerdict {
    /// The verdict once the questioned canvas was laid on each reference's (all the
    /// model's, ink bright on black, in enrollment order): a copy of one is never accepted.
    pub fn checked_for_copies(mut self, questioned: &GrayImage, references: &[GrayImage]) -> Self {
        // A copy is a danger only where it would be paid: a rejection needs no search.
        if self.decision == Decision::Reject {
            return self;
        }
        self.copy_of = superimpose::overlaps(questioned, references)
            .into_iter()
            .enumerate()
            .filter(|&(_, overlap)| overlap >= superimpose::COPY_OVERLAP)
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .map(|(index, overlap)| CopyOf {
                reference: index + 1,
                overlap,
            });
        if self.copy_of.is_some() {
            if self.decision == Decision::Accept {
                self.decision = Decision::Review;
            }
            self.caution = Some(COPY_CAUTION);
        }
        self
    }
}

/// Said when the very file was checked before. The desk cannot tell a clerk checking the
/// same cheque again from the same image presented for a second payment, so, as banks treat
/// a suspected duplicate, an acceptance becomes a review.
pub const CHECKED_BEFORE_CAUTION: &str = "This very file was checked before (listed below). \
     If this is not the same cheque being checked again, the same image is being presented \
     twice: a second clerk must look at the paper cheque before anything is paid.";

impl SignatureVerdict {
    /// The verdict once the earlier checks of the same file are known: an image already
    /// checked is never accepted again without a second clerk. A copy of a reference keeps
    /// its own caution, the graver of the two, and a rejection the pens' (the earlier
    /// checks are listed with it all the same).
    pub fn checked_against_earlier(mut self, earlier: Vec<EarlierCheck>) -> Self {
        if earlier.is_empty() {
            return self;
        }
        if self.decision != Decision::Reject {
            self.decision = Decision::Review;
            if self.copy_of.is_none() {
                self.caution = Some(CHECKED_BEFORE_CAUTION);
            }
        }
        self.checked_before = earlier;
        self
    }
}

/// Said beside a rejection by a model that reads the ink's darkness (paper-relative scans):
/// a lighter or darker pen can score as a forgery, and no check found it reliably
/// (models/README, "Known weakness: the pen's darkness" and "Another-pen check").
pub const PEN_CAUTION: &str = "Before returning the cheque, compare the pens: a genuine \
     signature in a clearly lighter or darker pen than the references can score as a forgery.";

/// Fewer references than this and an acceptance is worth a second look: with the shipped
/// model and its bands, skilled forgeries on writers it never saw passed 1.4 to 2.9 times as
/// often against one reference as against two to twelve, and from two on no size stood out
/// (models/README, "How many references an acceptance needs").
pub const FEW_REFERENCES: usize = 2;

/// Whether `person` is a signature account on fewer than [`FEW_REFERENCES`] references:
/// until it is re-enrolled, each of its acceptances asks for a second look.
pub fn needs_more_references(person: &Person) -> bool {
    person.modality == Modality::Signature && person.templates < FEW_REFERENCES
}

/// How a list marks such an account.
pub const NEEDS_MORE_REFERENCES: &str = "needs a second reference";

/// Said beside an acceptance against fewer than [`FEW_REFERENCES`] references.
pub const FEW_REFERENCES_CAUTION: &str = "Accepted against a single reference: look at the \
     signature beside it yourself before paying. On writers the model never saw, about 1 in 6 \
     skilled forgeries passed against one reference and at most 1 in 10 against two to twelve \
     (on another country's scans, 1 in 3 and 1 in 5). Enrol more references for this account.";

/// Said after enrolling fewer than [`FEW_REFERENCES`] references.
pub const FEW_REFERENCES_ADVICE: &str = "One reference only: a skilled forgery passes one \
     reference about twice as often as two or more, so every acceptance will ask for a second \
     look. Re-enrol the account with two or more scans of the holder's signature.";

/// Scores a questioned template against reference templates with `model`'s scorer.
pub fn judge_signature(
    model: &SignatureModel,
    references: &[&[f32]],
    questioned: &[f32],
    bands: Bands,
) -> Result<SignatureVerdict> {
    let score = model.score(references, questioned)?;
    let decision = bands.decide(score);
    let reads_the_pen = model.normalisation == Normalisation::PaperRelative;
    Ok(SignatureVerdict {
        reference_scores: references
            .iter()
            .map(|r| model.score(std::slice::from_ref(r), questioned))
            .collect::<Result<_>>()?,
        score,
        decision,
        bands,
        caution: match decision {
            Decision::Reject if reads_the_pen => Some(PEN_CAUTION),
            Decision::Accept if references.len() < FEW_REFERENCES => Some(FEW_REFERENCES_CAUTION),
            _ => None,
        },
        copy_of: None,
        checked_before: Vec::new(),
    })
}

#[derive(Debug, Clone, Serialize)]
pub struct SignatureVerifyReport {
    pub external_id: String,
    pub name: String,
    /// The model that scored: the one in force for the database.
    pub model: String,
    /// The questioned file's sha256, as the decision's audit row records it.
    pub scan_sha256: String,
    #[serde(flatten)]
    pub verdict: SignatureVerdict,
    /// The questioned scan's normalised canvas (ink bright on black), for the desk.
    #[serde(skip)]
    pub questioned_canvas: GrayImage,
    /// The references' stored canvases, one per score in `verdict.reference_scores`.
    #[serde(skip)]
    pub reference_canvases: Vec<GrayImage>,
}

/// The canvas of each scored reference, in their order. Each must have its picture: the
/// clerk compares it with the questioned scan, and the copy check lays the scan on it, so a
/// reference without one (a crop removed or spoilt in the file) is a refused check naming
/// its row, never a verdict with that reference unlooked at or the pictures out of step.
fn reference_canvases(
    model: &SignatureModel,
    store: &Store,
    person: &Person,
    references: &[StoredTemplate],
) -> Result<Vec<GrayImage>> {
    let mut kept: HashMap<i64, Vec<u8>> = store
        .crops(person.id, &model.model_id())?
        .into_iter()
        .collect();
    let stored: Vec<(usize, i64, Option<Vec<u8>>)> = (1..)
        .zip(references)
        .map(|(number, template)| {
            let id = template.template_id;
            (number, id, kept.remove(&id))
        })
        .collect();
    let database = store.path();
    // A kept ink is a few times the canvas: the cores share its decoding.
    stored
        .par_iter()
        .map(|(number, id, crop)| {
            let this_row = StoreError::bad_row("templates", id, database);
            let refused = |reason: String| {
                this_row(format!(
                    "reference {number} of {}: {reason}",
                    person.external_id
                ))
            };
            let crop = crop.as_deref().ok_or_else(|| {
                refused(
                    "its picture is missing, so it can be neither shown nor checked for a copy"
                        .into(),
                )
            })?;
            let kept = reference::read(crop, "a stored signature reference")
                .map_err(|error| refused(error.to_string()))?;
            Ok(kept.shown_on(model.canvas).into_owned())
        })
        .collect()
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
    let references = store.person_templates(person.id, &model.model_id(), &TEMPLATE_SHAPE)?;
    if references.is_empty() {
        return Err(Error::NoReferences {
            name: person.name,
            model: model.model_id(),
        });
    }
    let (bytes, scan_sha256) = super::read_hashed(scan)?;
    let earlier = store.earlier_checks(&scan_sha256)?;
    let (normalised, questioned) = model.embed_scan_bytes(&bytes, scan)?;
    let reference_embeddings: Vec<&[f32]> =
        references.iter().map(|r| r.embedding.as_slice()).collect();
    let reference_canvases = reference_canvases(model, store, &person, &references)?;
    let verdict = judge_signature(
        model,
        &reference_embeddings,
        &questioned,
        store.bands_for(Modality::Signature, person.id)?,
    )?
    .checked_for_copies(&normalised.canvas, &reference_canvases)
    .checked_against_earlier(earlier);
    store.record_decision(
        &Verification {
            person_id: person.id,
            modality: Modality::Signature,
            score: verdict.score,
            bands: verdict.bands,
            decision: verdict.decision,
            evidence_sha256: Some(&scan_sha256),
        },
        actor,
    )?;
    Ok(SignatureVerifyReport {
        external_id: person.external_id,
        name: person.name,
        model: model.model_id(),
        scan_sha256,
        verdict,
        questioned_canvas: normalised.canvas,
        reference_canvases,
    })
}
