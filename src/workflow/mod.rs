//! The desk workflows on top of the models and the store: enrollment (one person or a
//! batch), 1:1 verification, 1:N identification, the kiosk check-in, signatures at the
//! bank desk, and model versions (the active model, re-embedding after a change). The CLI
//! and the window both call these, so they cannot disagree.

mod faces;
pub mod governance;
pub mod kiosk;
mod models;
mod signatures;

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::error::{Error, Result};

pub use faces::{
    BatchFailure, BatchReport, CheckinReport, Identified, VerifyReport, checkin, checkin_photo,
    describe_candidates, enroll_batch, enroll_face, identify_face, kiosk_repeat_window, known,
    record_attack, reenroll_face, site_load, todays_punches, verify_face,
};
pub use models::{
    ReembedReport, active_signature_model, export_enrolled_signatures, reembed, stored_crop_image,
};
pub use signatures::{
    CHECKED_BEFORE_CAUTION, COPY_CAUTION, CopyOf, FEW_REFERENCES, FEW_REFERENCES_ADVICE,
    FEW_REFERENCES_CAUTION, NEEDS_MORE_REFERENCES, PEN_CAUTION, SignatureVerdict,
    SignatureVerifyReport, enroll_signature, judge_signature, needs_more_references,
    reenroll_signature, verify_signature,
};

/// One person to enroll from reference images.
#[derive(Debug, Clone, PartialEq)]
pub struct EnrollRequest {
    pub name: String,
    pub external_id: String,
    pub images: Vec<PathBuf>,
}

impl EnrollRequest {
    /// The name and id are checked before any photo is looked at.
    fn check_text(&self) -> Result<()> {
        crate::store::check_text("name", &self.name)?;
        crate::store::check_text("id", &self.external_id)?;
        Ok(())
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct RejectedImage {
    pub path: PathBuf,
    pub reason: String,
}

/// A file read once, with its sha256 in hex: what is judged or enrolled is then exactly
/// what a record names, never a second read of a file that changed in between.
fn read_hashed(path: &Path) -> Result<(Vec<u8>, String)> {
    use sha2::Digest;
    let bytes = std::fs::read(path).map_err(|e| Error::io(e, path))?;
    let digest = hex::encode(sha2::Sha256::digest(&bytes));
    Ok((bytes, digest))
}

/// Why a file whose bytes repeat one already taken in this enrollment is refused, or none.
/// The same picture given twice is one reference: counted as two it would hide that an
/// account stands on one (the Enrollment list's mark, the desk's caution) and tell the
/// signature scorer that its references agree perfectly.
fn repeated_file(
    taken: &[crate::store::NewTemplate],
    taken_paths: &[PathBuf],
    template: &crate::store::NewTemplate,
) -> Option<String> {
    let (_, earlier) = taken
        .iter()
        .zip(taken_paths)
        .find(|(t, _)| t.source_sha256 == template.source_sha256)?;
    Some(format!(
        "the same picture as {} (a reference counts once)",
        earlier.display()
    ))
}

/// Nothing could be enrolled: the error lists each refused file and why.
fn nothing_usable(external_id: &str, rejected: &[RejectedImage]) -> Error {
    Error::nothing_usable(
        external_id,
        rejected
            .iter()
            .map(|r| (r.path.as_path(), r.reason.as_str())),
    )
}

#[derive(Debug, Clone, Serialize)]
pub struct EnrollReport {
    pub person_id: i64,
    pub external_id: String,
    pub name: String,
    pub enrolled: usize,
    pub rejected: Vec<RejectedImage>,
    /// What the enrolment still needs to be trusted, when it is short of it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub advice: Option<&'static str>,
}

impl EnrollReport {
    fn new(
        person_id: i64,
        request: &EnrollRequest,
        enrolled: usize,
        rejected: Vec<RejectedImage>,
    ) -> Self {
        Self {
            person_id,
            external_id: request.external_id.clone(),
            name: request.name.clone(),
            enrolled,
            rejected,
            advice: None,
        }
    }
}

/// How far a long job has come, for a progress bar.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Progress {
    pub done: usize,
    pub total: usize,
    pub current: String,
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
