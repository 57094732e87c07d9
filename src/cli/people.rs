//! Faces at the desk and the kiosk: enroll (one or a batch), verify, identify, check in,
//! re-embed, and the people list.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};

use super::{JsonArgs, cancel_flag, open_as, open_to_read_as, print_report, progress_bar};
use crate::context::Context;
use crate::gallery::Gallery;
use crate::imageio;
use crate::models::CropEmbedder;
use crate::store::{Punch, Store};
use crate::types::{Modality, Permission, counted};
use crate::workflow::{
    self, EnrollRequest, FEW_REFERENCES_ADVICE, NEEDS_MORE_REFERENCES, needs_more_references,
};

#[derive(Args, Debug)]
pub struct EnrollArgs {
    #[arg(long)]
    name: String,
    /// Employee number, account number, ...
    #[arg(long)]
    id: String,
    /// Enroll even if a face already matches ANOTHER enrolled person.
    #[arg(long)]
    force: bool,
    #[arg(required = true)]
    images: Vec<PathBuf>,
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
pub struct EnrollBatchArgs {
    manifest: PathBuf,
    #[arg(long)]
    force: bool,
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
pub struct VerifyArgs {
    #[arg(long)]
    id: String,
    image: PathBuf,
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
pub struct IdentifyArgs {
    image: PathBuf,
    #[arg(long, default_value_t = 5)]
    top: usize,
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
pub struct CheckinArgs {
    image: PathBuf,
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand, Debug)]
pub enum PeopleCommand {
    List {
        #[arg(long)]
        json: bool,
    },
    Show {
        id: String,
        #[arg(long, value_enum, default_value_t = Modality::Face)]
        modality: Modality,
        #[arg(long)]
        json: bool,
    },
    /// Re-enrol someone who is often rejected or often impersonated: the usable new
    /// references replace all of theirs, in one transaction (the audit keeps a row).
    Reenroll {
        id: String,
        #[arg(long, value_enum, default_value_t = Modality::Face)]
        modality: Modality,
        #[arg(required = true)]
        images: Vec<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Set a person's kiosk PIN (4 to 8 digits; from $VOUCH_PIN, else a prompt): the
    /// kiosk asks for it when the camera is not sure it is them.
    SetPin { id: String },
    /// Delete a person with their templates and crops (the audit keeps a row).
    Delete {
        id: String,
        #[arg(long, value_enum, default_value_t = Modality::Face)]
        modality: Modality,
        /// Confirm: without it nothing is deleted.
        #[arg(long)]
        yes: bool,
    },
}

pub fn enroll(args: EnrollArgs, context: &Context) -> anyhow::Result<ExitCode> {
    let models = context.load_faces()?;
    let (mut store, session) = open_as(context, Permission::Enroll)?;
    let mut gallery = Gallery::of_faces(&store, &models.model_id())?;
    let request = EnrollRequest {
        name: args.name,
        external_id: args.id,
        images: args.images,
    };
    let report = workflow::enroll_face(
        &models,
        &mut store,
        &mut gallery,
        &request,
        args.force,
        session.name(),
    )?;
    print_enrollment(&report, args.json, "reference", "")
}

/// The images that were refused on stderr, then the enrollment.
pub(super) fn print_enrollment(
    report: &workflow::EnrollReport,
    json: bool,
    noun: &str,
    tail: &str,
) -> anyhow::Result<ExitCode> {
    for rejected in &report.rejected {
        eprintln!("rejected {}: {}", rejected.path.display(), rejected.reason);
    }
    print_report(report, json, |r| {
        let enrolled = format!(
            "enrolled {} ({}) with {}{tail}",
            r.name,
            r.external_id,
            counted(r.enrolled, noun)
        );
        match r.advice {
            Some(advice) => format!("{enrolled}\n{advice}"),
            None => enrolled,
        }
    })
}

pub fn enroll_batch(args: EnrollBatchArgs, context: &Context) -> anyhow::Result<ExitCode> {
    let requests = workflow::read_manifest(&args.manifest)?;
    let (mut store, session) = open_as(context, Permission::Enroll)?;
    let bar = progress_bar("enrolling", "people")?;
    let report = workflow::enroll_batch(
        &context.load_faces()?,
        &mut store,
        &requests,
        args.force,
        session.name(),
        cancel_flag(),
        &mut |p| {
            bar.set_length(p.total as u64);
            bar.set_position(p.done as u64);
            bar.set_message(format!("enrolling {}", p.current));
        },
    )?;
    bar.finish_and_clear();
    print_report(&report, args.json, describe_batch)?;
    Ok(if report.failed.is_empty() && report.not_started == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn describe_batch(report: &workflow::BatchReport) -> String {
    let mut lines = vec![format!(
        "enrolled {} people, {} failed{}",
        report.enrolled.len(),
        report.failed.len(),
        if report.not_started > 0 {
            format!(", cancelled before {} more", report.not_started)
        } else {
            String::new()
        }
    )];
    for failure in &report.failed {
        lines.push(format!("  {}: {}", failure.external_id, failure.reason));
    }
    for enrolled in &report.enrolled {
        for rejected in &enrolled.rejected {
            lines.push(format!(
                "  {}: rejected {}: {}",
                enrolled.external_id,
                rejected.path.display(),
                rejected.reason
            ));
        }
    }
    lines.join("\n")
}

pub fn reembed(args: JsonArgs, context: &Context) -> anyhow::Result<ExitCode> {
    let (mut store, session) = open_as(context, Permission::Administer)?;
    let faces = reembed_with(
        &context.load_faces()?,
        &mut store,
        session.name(),
        args.json,
    )?;
    if faces.cancelled {
        return Ok(ExitCode::FAILURE);
    }
    let signatures = reembed_with(
        &context.load_signature_model(Some(&store))?,
        &mut store,
        session.name(),
        args.json,
    )?;
    // A reference left behind is work undone, as much as a cancelled run.
    Ok(if faces.complete() && signatures.complete() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

pub fn verify(args: VerifyArgs, context: &Context) -> anyhow::Result<ExitCode> {
    let (mut store, session) = open_as(context, Permission::Verify)?;
    let report = workflow::verify_face(
        &context.load_faces()?,
        &mut store,
        &args.id,
        &args.image,
        session.name(),
    )?;
    print_report(&report, args.json, |o| {
        format!(
            "{}: {} ({}), best score {:.3}, mean {:.3} over {}\nrecorded against the photo's sha256 {}",
            o.decision.as_str(),
            o.name,
            o.external_id,
            o.best_score,
            o.mean_score,
            counted(o.references, "reference"),
            o.photo_sha256
        )
    })
}

pub fn identify(args: IdentifyArgs, context: &Context) -> anyhow::Result<ExitCode> {
    let models = context.load_faces()?;
    let store = open_to_read_as(context, Permission::Verify)?;
    let gallery = Gallery::of_faces(&store, &models.model_id())?;
    let picture = imageio::load_rgb(&args.image)?;
    let candidates = workflow::identify_face(
        &models,
        &store,
        &gallery,
        &picture,
        &args.image.display().to_string(),
        args.top,
    )?;
    print_report(&candidates, args.json, |candidates| {
        if candidates.is_empty() {
            return "nobody is enrolled".to_string();
        }
        candidates
            .iter()
            .map(|c| {
                format!(
                    "{:.3}\t{}\t{} ({})",
                    c.score,
                    c.decision.as_str(),
                    c.name,
                    c.external_id
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    })
}

pub fn checkin(args: CheckinArgs, context: &Context) -> anyhow::Result<ExitCode> {
    let models = context.load_faces()?;
    // A photo of someone is not someone: punching from a file is a supervisor's testing
    // aid, as in the window.
    let (mut store, session) = open_as(context, Permission::Administer)?;
    let gallery = Gallery::of_faces(&store, &models.model_id())?;
    let picture = imageio::load_rgb(&args.image)?;
    let window = store.repeat_window()?;
    let report = workflow::checkin_photo(
        &models,
        &mut store,
        &gallery,
        &picture,
        &args.image.display().to_string(),
        window,
        session.name(),
    )?;
    print_report(&report, args.json, |o| match &o.punch {
        Punch::Recorded { kind, at } => {
            format!(
                "check-{kind}: {} ({}) at {at}, score {:.3}",
                o.name, o.external_id, o.score
            )
        }
        Punch::Repeat { last_kind, last_at } => format!(
            "ignored: {} ({}) already checked {last_kind} at {last_at}",
            o.name, o.external_id
        ),
        Punch::Queued { at } => format!(
            "queued: {} ({}) at {at}, score {:.3}; the server could not be reached",
            o.name, o.external_id, o.score
        ),
    })
}

pub fn run(command: PeopleCommand, context: &Context) -> anyhow::Result<ExitCode> {
    match command {
        PeopleCommand::List { json } => {
            let people = context.read_store()?.people(None)?;
            print_report(&people, json, |people| {
                people
                    .iter()
                    .map(|p| {
                        let mark = if needs_more_references(p) {
                            format!("\t{NEEDS_MORE_REFERENCES}")
                        } else {
                            String::new()
                        };
                        format!(
                            "{}\t{}\t{}\t{}\t{}{mark}",
                            p.external_id,
                            p.name,
                            p.modality,
                            counted(p.templates, "reference"),
                            p.created_at
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            })
        }
        PeopleCommand::Show { id, modality, json } => {
            let person = context.read_store()?.person_by_external_id(&id, modality)?;
            print_report(&person, json, |p| {
                let advice = if needs_more_references(p) {
                    format!("\n{FEW_REFERENCES_ADVICE}")
                } else {
                    String::new()
                };
                format!(
                    "{} ({})\nmodality {}\nreferences {}\nenrolled {}{advice}",
                    p.name, p.external_id, p.modality, p.templates, p.created_at
                )
            })
        }
        PeopleCommand::SetPin { id } => {
            let (mut store, session) = open_as(context, Permission::Enroll)?;
            let person = store.person_by_external_id(&id, Modality::Face)?;
            let pin =
                super::governance::secret_from("VOUCH_PIN", &format!("Kiosk PIN for {id}: "))?;
            store.set_pin(person.id, &pin, session.name())?;
            println!("kiosk PIN set for {} ({id})", person.name);
            Ok(ExitCode::SUCCESS)
        }
        PeopleCommand::Reenroll {
            id,
            modality,
            images,
            json,
        } => {
            let (mut store, session) = open_as(context, Permission::Enroll)?;
            let person = store.person_by_external_id(&id, modality)?;
            let request = EnrollRequest {
                name: person.name,
                external_id: person.external_id,
                images,
            };
            let report = match modality {
                Modality::Face => {
                    let models = context.load_faces()?;
                    let mut gallery = Gallery::of_faces(&store, &models.model_id())?;
                    workflow::reenroll_face(
                        &models,
                        &mut store,
                        &mut gallery,
                        &request,
                        session.name(),
                    )?
                }
                Modality::Signature => workflow::reenroll_signature(
                    &context.load_signature_model(Some(&store))?,
                    &mut store,
                    &request,
                    session.name(),
                )?,
            };
            print_enrollment(&report, json, "new reference", ", replacing the old")
        }
        PeopleCommand::Delete { id, modality, yes } => {
            let (mut store, session) = open_as(context, Permission::Administer)?;
            let person = store.person_by_external_id(&id, modality)?;
            if !yes {
                anyhow::bail!(
                    "this deletes {} ({}) and all their templates: add --yes to confirm",
                    person.name,
                    person.external_id
                );
            }
            store.delete_person(person.id, session.name())?;
            println!("deleted {} ({})", person.name, person.external_id);
            Ok(ExitCode::SUCCESS)
        }
    }
}

pub(super) fn reembed_with(
    models: &dyn CropEmbedder,
    store: &mut Store,
    actor: &str,
    json: bool,
) -> anyhow::Result<workflow::ReembedReport> {
    let bar = progress_bar("re-embedding", "templates")?;
    let report = workflow::reembed(store, models, actor, cancel_flag(), &mut |p| {
        bar.set_length(p.total as u64);
        bar.set_position(p.done as u64);
    })?;
    bar.finish_and_clear();
    print_report(&report, json, |r| {
        format!(
            "{} embedded by {}{}{}{}",
            counted(r.templates, "template"),
            r.model,
            if r.unreadable_crops > 0 {
                format!(
                    ", {} skipped",
                    counted(r.unreadable_crops, "unreadable crop")
                )
            } else {
                String::new()
            },
            r.refused_summary()
                .map_or_else(String::new, |refused| format!("; {refused}")),
            if r.cancelled {
                " (cancelled: run again to finish)"
            } else {
                ""
            }
        )
    })?;
    Ok(report)
}
