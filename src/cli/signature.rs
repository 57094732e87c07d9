//! `vouch signature ...`: the bank desk. Every command scores with the signature model in
//! force for the database (`Context::signature_model_path`), as the window does.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Subcommand;

use super::people::{print_enrollment, reembed_with};
use super::{open_as, print_report};
use crate::context::Context;
use crate::signature::SignatureModel;
use crate::store::EarlierCheck;
use crate::types::{Bands, Modality, Permission, counted};
use crate::workflow::{self, CopyOf, EnrollRequest};

#[derive(Subcommand, Debug)]
pub enum SignatureCommand {
    /// Score a questioned signature against one or more references.
    Compare {
        #[arg(long = "ref", required = true)]
        references: Vec<PathBuf>,
        questioned: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Enroll an account holder's reference signatures (all good scans in one transaction).
    Enroll {
        #[arg(long)]
        name: String,
        /// Account number.
        #[arg(long)]
        id: String,
        #[arg(required = true)]
        scans: Vec<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Verify the signature on a scan against the account's enrolled references.
    Verify {
        #[arg(long)]
        id: String,
        scan: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Embed the enrolled signatures' stored references with the current signature model.
    Reembed {
        #[arg(long)]
        json: bool,
    },
}

pub fn run(command: SignatureCommand, context: &Context) -> anyhow::Result<ExitCode> {
    match command {
        SignatureCommand::Compare {
            references,
            questioned,
            json,
        } => {
            // A comparison outside any account needs no database, but follows its bands
            // and active model when there is one.
            let store = context.existing_store()?;
            let bands = match &store {
                Some(store) => store.bands(Modality::Signature)?,
                None => crate::matching::default_bands(Modality::Signature),
            };
            let model = context.load_signature_model(store.as_ref())?;
            signature_compare(&model, &bands, &references, &questioned, json)
        }
        SignatureCommand::Enroll {
            name,
            id,
            scans,
            json,
        } => {
            let (mut store, session) = open_as(context, Permission::Enroll)?;
            let model = context.load_signature_model(Some(&store))?;
            let request = EnrollRequest {
                name,
                external_id: id,
                images: scans,
            };
            let report = workflow::enroll_signature(&model, &mut store, &request, session.name())?;
            print_enrollment(&report, json, "reference signature", "")
        }
        SignatureCommand::Verify { id, scan, json } => {
            let (mut store, session) = open_as(context, Permission::Verify)?;
            let model = context.load_signature_model(Some(&store))?;
            signature_verify(&model, &mut store, session.name(), &id, &scan, json)
        }
        SignatureCommand::Reembed { json } => {
            let (mut store, session) = open_as(context, Permission::Administer)?;
            let model = context.load_signature_model(Some(&store))?;
            let report = reembed_with(&model, &mut store, session.name(), json)?;
            Ok(if report.complete() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
    }
}

fn signature_compare(
    model: &SignatureModel,
    bands: &Bands,
    references: &[PathBuf],
    questioned: &Path,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let (canvases, embeddings): (Vec<_>, Vec<_>) = references
        .iter()
        .map(|path| model.embed_scan(path).map(|(n, e)| (n.canvas, e)))
        .collect::<Result<Vec<_>, _>>()?
        .into_iter()
        .unzip();
    let (questioned, questioned_embedding) = model.embed_scan(questioned)?;
    let reference_slices: Vec<&[f32]> = embeddings.iter().map(Vec::as_slice).collect();
    let verdict =
        workflow::judge_signature(model, &reference_slices, &questioned_embedding, *bands)?
            .checked_for_copies(&questioned.canvas, &canvases);
    print_report(&verdict, json, |v| {
        let mut lines = vec![format!(
            "{}: score {:.3} (against {}; accept >= {:.3}, reject < {:.3})",
            v.decision.as_str(),
            v.score,
            counted(v.reference_scores.len(), "reference"),
            v.bands.high,
            v.bands.low
        )];
        for (path, score) in references.iter().zip(&v.reference_scores) {
            lines.push(format!("  {score:.3}  {}", path.display()));
        }
        lines.extend(v.copy_of.map(|copy| {
            let path = references[copy.reference - 1].display().to_string();
            copy_line(copy, &path)
        }));
        lines.extend(v.caution.map(str::to_string));
        lines.join("\n")
    })
}

fn signature_verify(
    model: &SignatureModel,
    store: &mut crate::store::Store,
    actor: &str,
    external_id: &str,
    scan: &Path,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let report = workflow::verify_signature(model, store, external_id, scan, actor)?;
    print_report(&report, json, |r| {
        let verdict = format!(
            "{}: {} ({}), score {:.3} (against {}; each alone: {})",
            r.verdict.decision.as_str(),
            r.name,
            r.external_id,
            r.verdict.score,
            counted(r.verdict.reference_scores.len(), "reference"),
            r.verdict
                .reference_scores
                .iter()
                .map(|s| format!("{s:.3}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let mut lines = vec![verdict];
        lines.extend(r.verdict.copy_of.map(|copy| copy_line(copy, "as enrolled")));
        lines.extend(r.verdict.caution.map(str::to_string));
        lines.extend(
            r.verdict
                .checked_before
                .iter()
                .map(|earlier| format!("  checked before: {}", earlier_check_line(earlier))),
        );
        lines.push(format!(
            "recorded against the scan's sha256 {}",
            r.scan_sha256
        ));
        lines.join("\n")
    })
}

/// An earlier check of the same file, its time in UTC as recorded (a log is read on any
/// machine).
fn earlier_check_line(earlier: &EarlierCheck) -> String {
    format!(
        "{} by {} against {}: {} ({:.3})",
        earlier.at,
        earlier.by,
        earlier.against(),
        earlier.decision,
        earlier.score
    )
}

fn copy_line(copy: CopyOf, which: &str) -> String {
    format!(
        "a copy of reference {} ({which}): it lies on it stroke for stroke (overlap {:.3})",
        copy.reference, copy.overlap
    )
}
