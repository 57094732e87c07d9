//! The records an operator or an auditor keeps: decision bands, attendance exports and
//! imports, backups, and the audit log.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Subcommand};

use super::governance::print_proposal;
use super::{cancel_flag, open_as, open_to_read_as, print_report, progress_bar, write_whole_file};
use crate::context::Context;
use crate::eval::verification::ScoreSet;
use crate::store::{Change, Store, exchange};
use crate::types::{Bands, Modality, Permission, PunchKind, counted};
use crate::workflow::governance;

#[derive(Subcommand, Debug)]
pub enum SettingsCommand {
    /// The accept / review / reject bands of each modality.
    Show {
        #[arg(long)]
        json: bool,
    },
    /// Propose bands: accept at a score of HIGH or more, reject under LOW, send to review
    /// between. With operator accounts it waits for a second supervisor's approval
    /// (`vouch proposals approve`); the proposal carries the error rates on the enrolled
    /// references' scores (when there are any) and the replay of past decisions.
    SetBands {
        #[arg(long, value_enum)]
        modality: Modality,
        #[arg(long)]
        low: f32,
        #[arg(long)]
        high: f32,
        #[arg(long)]
        json: bool,
    },
    /// Propose one person's own offset from the bands (positive is stricter): for someone
    /// often impersonated (raise it) or often wrongly rejected (lower it), at most ±0.15.
    /// The proposal carries their scores among the enrolled references and the replay of
    /// their past decisions.
    SetOffset {
        #[arg(long, value_enum)]
        modality: Modality,
        /// Their employee or account id.
        #[arg(long)]
        id: String,
        #[arg(long, allow_hyphen_values = true)]
        offset: f32,
        #[arg(long)]
        json: bool,
    },
    /// Propose the kiosk's repeat window: a second punch within it is ignored.
    SetRepeatWindow {
        #[arg(long)]
        minutes: i64,
        #[arg(long)]
        json: bool,
    },
    /// Propose how many supervisors a change needs: 2 (four eyes) or 1 (a site with one).
    SetApprovers {
        #[arg(long)]
        count: u8,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum ExportFormat {
    Csv,
    Json,
}

#[derive(Subcommand, Debug)]
pub enum ExportCommand {
    /// Check-ins and check-outs, oldest first.
    Attendance {
        #[arg(long, value_enum, default_value_t = ExportFormat::Csv)]
        format: ExportFormat,
        /// Only events at or after this RFC 3339 time (e.g. 2026-11-01T00:00:00Z).
        #[arg(long)]
        from: Option<String>,
        /// Only events at or before this time.
        #[arg(long)]
        to: Option<String>,
        /// Output file [default: standard output].
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Hours per person and local day (first in, last out, hours, a missing check-out),
    /// or per person over the period with `--per-person`: CSV, or JSON with `--json`.
    Hours {
        /// First local date, e.g. 2026-12-01.
        #[arg(long)]
        from: chrono::NaiveDate,
        /// Last local date (inclusive).
        #[arg(long)]
        to: chrono::NaiveDate,
        #[arg(long)]
        per_person: bool,
        #[arg(long)]
        json: bool,
        /// Output file [default: standard output].
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// A consistent copy of the whole database (SQLite online backup; others may keep
    /// working meanwhile).
    Backup { out: PathBuf },
}

#[derive(Args, Debug)]
pub struct CorrectArgs {
    /// The person's employee id.
    #[arg(long)]
    pub id: String,
    /// `in` or `out`.
    #[arg(long, value_parser = parse_punch_kind)]
    pub kind: PunchKind,
    /// Local time of the punch, e.g. "2026-12-01 17:30".
    #[arg(long)]
    pub at: String,
    /// Why (it goes into the audit log).
    #[arg(long)]
    pub reason: String,
}

fn parse_punch_kind(text: &str) -> Result<PunchKind, String> {
    PunchKind::parse(text).ok_or_else(|| format!("{text:?} is neither in nor out"))
}

/// A supervisor's correction: needs the Administer permission once accounts exist.
pub fn correct(args: CorrectArgs, context: &Context) -> anyhow::Result<ExitCode> {
    let at = crate::attendance::parse_local_time(&args.at)?;
    let (mut store, session) = open_as(context, Permission::Administer)?;
    let record = store.correct_attendance(&args.id, args.kind, at, &args.reason, session.name())?;
    println!(
        "added check-{} for {} ({}) at {}: {}",
        record.kind,
        record.name.as_deref().unwrap_or_default(),
        args.id,
        args.at.trim(),
        args.reason
    );
    Ok(ExitCode::SUCCESS)
}

#[derive(Subcommand, Debug)]
pub enum ImportCommand {
    /// Attendance events from `export attendance` (CSV or JSON); repeats are skipped.
    Attendance {
        file: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Replace the database with a backup (checked first: it must be an intact Vouch
    /// database with an unbroken audit log).
    Backup {
        file: PathBuf,
        /// Confirm: without it nothing is replaced.
        #[arg(long)]
        yes: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum KeysCommand {
    /// Move every embedding, crop and seal to a new key, then retire the old one. Runs in
    /// chunks: Ctrl-C stops between them and running it again carries on.
    Rotate {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum AuditCommand {
    /// Recompute the chain; exits non-zero if any row was edited or deleted.
    Verify {
        #[arg(long)]
        json: bool,
    },
}

/// The enrolled references' own scores as a change's evidence; none when nobody has two
/// references to compare (the proposal then carries the replay alone).
fn enrolled_scores(
    context: &Context,
    store: &Store,
    modality: Modality,
) -> anyhow::Result<Option<ScoreSet>> {
    let bands = store.bands(modality)?;
    let scores = match modality {
        Modality::Face => governance::enrolled_scores(
            store,
            &governance::Scorer::Face(context.load_faces()?.model_id()),
            bands,
        ),
        Modality::Signature => governance::enrolled_scores(
            store,
            &governance::Scorer::Signature(&context.load_signature_model(Some(store))?),
            bands,
        ),
    };
    match scores {
        Ok(scores) => Ok(Some(scores)),
        Err(crate::Error::TooFewReferences) => Ok(None),
        Err(error) => Err(error.into()),
    }
}

pub fn settings(command: SettingsCommand, context: &Context) -> anyhow::Result<ExitCode> {
    if let SettingsCommand::Show { json } = command {
        return show_settings(&context.read_store()?, json);
    }
    let (mut store, session) = open_as(context, Permission::Govern)?;
    let (proposal, json) = match command {
        SettingsCommand::SetBands {
            modality,
            low,
            high,
            json,
        } => {
            let scores = enrolled_scores(context, &store, modality)?;
            let bands = Bands { low, high };
            (
                governance::propose_bands(&mut store, &session, modality, bands, scores.as_ref())?,
                json,
            )
        }
        SettingsCommand::SetOffset {
            modality,
            id,
            offset,
            json,
        } => {
            let person = store.person_by_external_id(&id, modality)?;
            let scores = enrolled_scores(context, &store, modality)?;
            (
                governance::propose_person_offset(
                    &mut store,
                    &session,
                    modality,
                    person.id,
                    offset,
                    scores.as_ref(),
                )?,
                json,
            )
        }
        SettingsCommand::SetRepeatWindow { minutes, json } => (
            governance::propose_repeat_window(&mut store, &session, minutes)?,
            json,
        ),
        SettingsCommand::SetApprovers { count, json } => {
            let old = store.approvers_required()?;
            let evidence = serde_json::json!({ "old": old });
            let change = Change::Approvers { required: count };
            (store.propose(change, evidence, &session)?, json)
        }
        SettingsCommand::Show { .. } => unreachable!("answered above"),
    };
    print_proposal(&proposal, json)
}

fn show_settings(store: &Store, json: bool) -> anyhow::Result<ExitCode> {
    let bands: Vec<(Modality, Bands)> = Modality::ALL
        .into_iter()
        .map(|m| Ok((m, store.bands(m)?)))
        .collect::<anyhow::Result<_>>()?;
    let offsets: Vec<serde_json::Value> = store
        .person_offsets()?
        .into_iter()
        .map(|(person_id, offset)| {
            let person = store.person(person_id)?;
            Ok(serde_json::json!({
                "external_id": person.external_id, "name": person.name,
                "modality": person.modality, "offset": offset,
            }))
        })
        .collect::<anyhow::Result<_>>()?;
    let settings = serde_json::json!({
        "bands": bands,
        "person_offsets": offsets,
        "repeat_window_minutes": store.repeat_window()?.num_minutes(),
        "approvers_required": store.approvers_required()?,
    });
    print_report(&settings, json, |_| {
        let mut lines: Vec<String> = bands
            .iter()
            .map(|(m, b)| {
                format!(
                    "{m}: accept >= {:.3}, review, reject < {:.3}",
                    b.high, b.low
                )
            })
            .collect();
        for offset in &offsets {
            lines.push(format!(
                "{} threshold offset for {} ({}): {:+.3}",
                offset["modality"].as_str().unwrap_or_default(),
                offset["name"].as_str().unwrap_or_default(),
                offset["external_id"].as_str().unwrap_or_default(),
                offset["offset"].as_f64().unwrap_or_default()
            ));
        }
        lines.push(format!(
            "kiosk repeat window: {} min",
            settings["repeat_window_minutes"]
        ));
        lines.push(format!(
            "approvals a change needs: {}",
            settings["approvers_required"]
        ));
        lines.join("\n")
    })
}

pub fn export(command: ExportCommand, context: &Context) -> anyhow::Result<ExitCode> {
    let store = open_to_read_as(context, Permission::Report)?;
    match command {
        ExportCommand::Attendance {
            format,
            from,
            to,
            out,
        } => export_attendance(
            &store,
            format,
            from.as_deref(),
            to.as_deref(),
            out.as_deref(),
        ),
        ExportCommand::Hours {
            from,
            to,
            per_person,
            json,
            out,
        } => export_hours(&store, (from, to), per_person, json, out.as_deref()),
        ExportCommand::Backup { out } => {
            store.backup_to(&out)?;
            println!("backup written to {}", out.display());
            Ok(ExitCode::SUCCESS)
        }
    }
}

pub fn import(command: ImportCommand, context: &Context) -> anyhow::Result<ExitCode> {
    match command {
        ImportCommand::Attendance { file, json } => {
            let (mut store, session) = open_as(context, Permission::Administer)?;
            import_attendance(&mut store, session.name(), &file, json)
        }
        ImportCommand::Backup { file, yes } => {
            if !yes {
                anyhow::bail!(
                    "this replaces everything in the database with {}: add --yes to confirm",
                    file.display()
                );
            }
            let (mut store, session) = open_as(context, Permission::Administer)?;
            store.restore_from(&file, session.name())?;
            println!("restored from {}", file.display());
            Ok(ExitCode::SUCCESS)
        }
    }
}

pub fn audit(command: AuditCommand, context: &Context) -> anyhow::Result<ExitCode> {
    let AuditCommand::Verify { json } = command;
    let report = context.read_store()?.audit_verify()?;
    print_report(&report, json, |r| {
        if r.intact {
            return format!(
                "audit log intact: {} rows; anchor, ledger and seals hold",
                r.rows
            );
        }
        let mut lines = vec![format!(
            "audit log BROKEN ({} read): {}",
            counted(r.rows, "row"),
            counted(r.problems.len(), "problem")
        )];
        lines.extend(r.problems.iter().map(|p| format!("  {p}")));
        lines.join("\n")
    })?;
    Ok(if report.intact {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn export_attendance(
    store: &Store,
    format: ExportFormat,
    from: Option<&str>,
    to: Option<&str>,
    out: Option<&Path>,
) -> anyhow::Result<ExitCode> {
    let records = store.attendance(from, to)?;
    let format = match format {
        ExportFormat::Csv => exchange::Format::Csv,
        ExportFormat::Json => exchange::Format::Json,
    };
    let bytes = exchange::write(&records, format)?;
    match out {
        Some(path) => {
            write_whole_file(path, &bytes)?;
            eprintln!(
                "{} written to {}",
                counted(records.len(), "event"),
                path.display()
            );
        }
        None => std::io::Write::write_all(&mut std::io::stdout(), &bytes)?,
    }
    Ok(ExitCode::SUCCESS)
}

/// Local midnight of `date` as an RFC 3339 instant.
fn export_hours(
    store: &Store,
    (from, to): (chrono::NaiveDate, chrono::NaiveDate),
    per_person: bool,
    json: bool,
    out: Option<&Path>,
) -> anyhow::Result<ExitCode> {
    let days = crate::attendance::days_between(store, from, to)?.days;
    let bytes = if per_person {
        table(&crate::attendance::period(&days), json)?
    } else {
        table(&days, json)?
    };
    match out {
        Some(path) => write_whole_file(path, &bytes)?,
        None => std::io::Write::write_all(&mut std::io::stdout(), &bytes)?,
    }
    Ok(ExitCode::SUCCESS)
}

/// Rows as CSV with a header, or as a JSON array.
fn table<T: serde::Serialize>(rows: &[T], json: bool) -> anyhow::Result<Vec<u8>> {
    if json {
        return Ok(serde_json::to_vec_pretty(rows)?);
    }
    let mut writer = csv::Writer::from_writer(Vec::new());
    for row in rows {
        writer.serialize(row)?;
    }
    Ok(writer.into_inner()?)
}

fn import_attendance(
    store: &mut Store,
    actor: &str,
    file: &Path,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let records = exchange::read(&text, file)?;
    let (added, skipped) = store.import_attendance(&records, actor)?;
    print_report(
        &serde_json::json!({ "added": added, "skipped": skipped }),
        json,
        |_| {
            format!(
                "{} added, {skipped} already present",
                counted(added, "event")
            )
        },
    )
}

pub fn keys(command: KeysCommand, context: &Context) -> anyhow::Result<ExitCode> {
    let KeysCommand::Rotate { json } = command;
    let (mut store, session) = open_as(context, Permission::Administer)?;
    let bar = progress_bar("re-encrypting", "templates")?;
    let rotation = store.rotate_keys(session.name(), cancel_flag(), &mut |moved| {
        bar.set_position(moved as u64)
    })?;
    bar.finish_and_clear();
    print_report(&rotation, json, |r| {
        format!(
            "key {}{}: {} re-encrypted, {} re-sealed{}",
            r.key,
            if r.resumed { " (carried on)" } else { "" },
            counted(r.templates, "template"),
            counted(r.resealed, "row"),
            if r.finished {
                "; the old key is retired"
            } else {
                "; cancelled: run it again to finish"
            }
        )
    })?;
    Ok(if rotation.finished {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

#[derive(Args, Debug)]
pub struct MigrateArgs {
    /// The store to move [default: --db].
    #[arg(long)]
    from: Option<PathBuf>,
    /// Its key file [default: --key, else the default for --from].
    #[arg(long)]
    from_key: Option<PathBuf>,
    /// Where to: a new SQLite file, or an empty PostgreSQL database (postgres://...).
    #[arg(long)]
    to: PathBuf,
    /// The target's key file [default: the default for --to]; when absent, the source's
    /// key file is copied there (the moved rows open only with it).
    #[arg(long)]
    to_key: Option<PathBuf>,
    #[arg(long)]
    json: bool,
}

/// `vouch migrate`: the source is opened by an operator allowed to administer it; the
/// target is made with the source's key.
pub fn migrate(args: MigrateArgs, context: &Context) -> anyhow::Result<ExitCode> {
    let source_context = match args.from {
        Some(from) => context.on_db(from, args.from_key.or(context.key.clone())),
        None => context.on_db(context.db.clone(), args.from_key.or(context.key.clone())),
    };
    let target_context = context.on_db(args.to, args.to_key);
    let (source, session) = open_as(&source_context, Permission::Administer)?;
    let (source_key, target_key) = (source_context.key_path(), target_context.key_path());
    if !target_key.exists() {
        let key = std::fs::read(&source_key)
            .with_context(|| format!("reading the source's key file {}", source_key.display()))?;
        if let Some(parent) = target_key.parent() {
            crate::store::files::create_private_dir(parent)?;
        }
        crate::store::files::write_private(&target_key, &key)?;
    }
    let mut target = target_context.open_store()?;
    let bar = progress_bar("copying", "rows")?;
    let migration = source.migrate_into(&mut target, session.name(), &mut |table, rows| {
        bar.set_message(format!("copying {table}"));
        bar.set_position(rows as u64);
    })?;
    bar.finish_and_clear();
    print_report(&migration, args.json, |m| {
        let tables = m
            .tables
            .iter()
            .map(|(table, rows)| format!("{table} {rows}"))
            .collect::<Vec<_>>()
            .join(", ");
        format!(
            "moved and checked: {tables}; the audit chain ends at {} on both sides and holds",
            &m.head_hash[..m.head_hash.len().min(12)]
        )
    })?;
    Ok(ExitCode::SUCCESS)
}
