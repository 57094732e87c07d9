//! Model versions and the gallery: which signature model is active (one rule for every
//! front end), activating a new one, and re-embedding stored crops under a new model.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use serde::Serialize;

use super::Progress;
use crate::dataset::{Kind, LabelledScan};
use crate::error::{Error, Result};
use crate::models::{CropEmbedder, CropProblem};
use crate::signature::reference;
use crate::store::{ACTIVE_SIGNATURE_MODEL, NewTemplate, Store};
use crate::types::{Modality, counted};

/// Crops embedded per transaction: a cancelled or killed re-embedding keeps what it
/// finished and the next run picks up the rest.
const REEMBED_CHUNK: usize = 32;

#[derive(Debug, Clone, Serialize)]
pub struct ReembedReport {
    pub model: String,
    pub templates: usize,
    pub unreadable_crops: usize,
    /// Stored crops this model cannot embed faithfully (made for another input size, or
    /// kept without the ink it reads); their people keep only the earlier model's
    /// templates until enrolled again.
    pub refused_crops: usize,
    /// Why the first of them was refused.
    pub refusal: Option<String>,
    /// Who they belong to, "Name (external id)", each once.
    pub refused_people: Vec<String>,
    pub cancelled: bool,
}

impl ReembedReport {
    /// Every stored crop has its template under the model: nothing cancelled, nothing
    /// refused.
    pub fn complete(&self) -> bool {
        !self.cancelled && self.refused_crops == 0
    }

    /// What the operator must do about the refused crops, if any were.
    pub fn refused_summary(&self) -> Option<String> {
        const NAMED: usize = 5;
        let reason = self.refusal.as_ref()?;
        let mut people = self.refused_people[..self.refused_people.len().min(NAMED)].join(", ");
        if self.refused_people.len() > NAMED {
            people.push_str(&format!(" and {} more", self.refused_people.len() - NAMED));
        }
        Some(format!(
            "{} cannot be carried over to {} ({reason}); enrol again: {people}",
            counted(self.refused_crops, "stored reference"),
            self.model
        ))
    }
}

/// Embeds, with `embedder`, every stored crop that its model has not embedded yet. Old
/// templates stay (an operator can go back to the old model); matching only ever uses
/// the templates of the active model. A crop the model refuses is counted and left.
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
        refused_crops: 0,
        refusal: None,
        refused_people: Vec::new(),
        cancelled: false,
    };
    for chunk in pending.chunks(REEMBED_CHUNK) {
        if cancel.load(Ordering::Relaxed) {
            report.cancelled = true;
            break;
        }
        progress(Progress {
            done: report.templates + report.unreadable_crops + report.refused_crops,
            total: pending.len(),
            current: model.clone(),
        });
        let crops: Vec<&[u8]> = chunk
            .iter()
            .map(|template| template.crop.as_slice())
            .collect();
        let mut new: Vec<(i64, NewTemplate)> = Vec::new();
        for (template, embedded) in chunk.iter().zip(embedder.embed_stored(&crops)?) {
            match embedded {
                Ok(embedding) => new.push((
                    template.person_id,
                    NewTemplate {
                        embedding,
                        quality: template.quality,
                        source_sha256: template.source_sha256.clone(),
                        crop: Some(template.crop.clone()),
                    },
                )),
                Err(CropProblem::Refused(reason)) => {
                    tracing::warn!(
                        template = template.template_id,
                        person = template.person_id,
                        %reason,
                        "stored crop refused"
                    );
                    report.refused_crops += 1;
                    report.refusal.get_or_insert(reason);
                    let person = store.person(template.person_id)?;
                    let who = format!("{} ({})", person.name, person.external_id);
                    if !report.refused_people.contains(&who) {
                        report.refused_people.push(who);
                    }
                }
                Err(CropProblem::Unreadable(error)) => {
                    tracing::warn!(template = template.template_id, %error, "stored crop is unreadable");
                    report.unreadable_crops += 1;
                }
            }
        }
        store.add_templates(&model, &new, actor)?;
        report.templates += new.len();
    }
    progress(Progress {
        done: report.templates + report.unreadable_crops + report.refused_crops,
        total: pending.len(),
        current: String::new(),
    });
    Ok(report)
}

/// The signature model this database works with: the one an approved change made
/// active in it, else `shipped`. Every front end (the CLI, the desk, the training tab)
/// asks this.
pub fn active_signature_model(store: &Store, shipped: &Path) -> Result<PathBuf> {
    Ok(store
        .setting(ACTIVE_SIGNATURE_MODEL)?
        .map_or_else(|| shipped.to_path_buf(), PathBuf::from))
}

/// A person's stored crop as an image to show: a face chip, or a signature's kept ink
/// (or canvas) as dark ink on light paper, the way the desk shows it.
pub fn stored_crop_image(modality: Modality, stored: &[u8]) -> Result<image::DynamicImage> {
    match modality {
        Modality::Face => crate::imageio::decode(stored, Path::new("a stored face chip")),
        Modality::Signature => Ok(image::DynamicImage::ImageLuma8(
            reference::read(stored, "a stored signature reference")?.on_paper(),
        )),
    }
}

/// Writes each enrolled signature's kept ink (or canvas, for references enrolled before ink
/// was kept) into `dir` as an ink-on-paper scan, one folder per account, so a training run can learn from the site's own references.
pub fn export_enrolled_signatures(store: &Store, dir: &Path) -> Result<Vec<LabelledScan>> {
    let mut scans = Vec::new();
    for reference in store.reference_crops(Modality::Signature)? {
        let kept = match reference::read(&reference.crop, "a stored signature reference") {
            Ok(kept) => kept,
            Err(error) => {
                tracing::warn!(%error, account = %reference.external_id, "a stored reference is unreadable");
                continue;
            }
        };
        // An id is the operator's text: only its safe characters name a folder.
        let folder = dir.join(
            reference
                .external_id
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || c == '-' {
                        c
                    } else {
                        '_'
                    }
                })
                .collect::<String>(),
        );
        std::fs::create_dir_all(&folder).map_err(|e| Error::io(e, &folder))?;
        let paper = kept.on_paper();
        let sha = &reference.source_sha256;
        let path = folder.join(format!("{}.png", &sha[..12.min(sha.len())]));
        paper
            .save(&path)
            .map_err(|e| Error::Invalid(format!("cannot write {}: {e}", path.display())))?;
        scans.push(LabelledScan {
            path,
            identity: format!("enrolled-{}", reference.external_id),
            kind: Kind::Genuine,
        });
    }
    Ok(scans)
}
