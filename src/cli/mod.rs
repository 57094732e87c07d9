//! The headless front end: `vouch <subcommand>`; with no subcommand the window opens.
//! The global options are resolved once into a `Context`; each command group has its own
//! module with small handlers, and `run` only dispatches.

mod eval;
mod face;
mod governance;
mod people;
mod records;
mod signature;
mod train;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};

use clap::{Args, Parser, Subcommand};
use serde::Serialize;

use crate::context::Context;
use crate::device::DeviceChoice;
use crate::store::{Session, Store};
use crate::types::Permission;

#[derive(Parser, Debug)]
#[command(
    name = "vouch",
    version,
    about = "Biometric enrollment and verification"
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Args, Debug, Clone)]
pub struct GlobalArgs {
    /// Where the networks run.
    #[arg(long, global = true, value_enum, default_value_t = DeviceChoice::Auto)]
    pub device: DeviceChoice,
    /// Folder with the model weights [default: $VOUCH_MODELS, or the models/ that ships with vouch].
    #[arg(long, global = true)]
    pub models: Option<PathBuf>,
    /// Lowest detector score accepted as a face (0..1).
    #[arg(long, global = true, default_value_t = crate::face::DEFAULT_MIN_DETECTION_SCORE)]
    pub min_face_score: f32,
    /// The signature model [default: the one activated in the database, else
    /// signature_encoder.safetensors in the models folder].
    #[arg(long, global = true)]
    pub signature_model: Option<PathBuf>,
    /// The certificate authority (PEM) that signed the PostgreSQL server's certificate,
    /// when it is the site's own [default: $VOUCH_DB_CA; the system's roots are trusted too].
    #[arg(long, global = true)]
    pub db_ca: Option<PathBuf>,
    /// The database: a SQLite file, or a PostgreSQL server's URL
    /// (postgres://user@host/dbname) that a site's kiosks and desks share [default: `db`
    /// in vouch.toml in the user's config folder ($VOUCH_CONFIG), else vouch.db in the
    /// user's data folder].
    #[arg(long, global = true)]
    pub db: Option<PathBuf>,
    /// The database's key file [default: beside the database, DB.key]. Keep a copy of it
    /// apart from the backups: without it the biometrics cannot be read.
    #[arg(long, global = true)]
    pub key: Option<PathBuf>,
    /// Who is acting. On a database with operator accounts, the account to log in as for
    /// any change (its password or PIN from $VOUCH_PASSWORD, else a prompt); without
    /// accounts, the name the audit log records [default: $USER].
    #[arg(long, global = true)]
    pub operator: Option<String>,
    /// More logging (-v info, -vv debug); RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

impl GlobalArgs {
    /// The options every command works under, resolved once.
    pub fn context(&self) -> anyhow::Result<Context> {
        self.context_with(crate::context::SiteConfig::path())
    }

    /// The same, with this machine's config file at `config`.
    pub fn context_with(&self, config: PathBuf) -> anyhow::Result<Context> {
        let site = crate::context::SiteConfig::load(&config)?;
        if let Some(ca) = self.db_ca.clone().or(site.db_ca.clone()) {
            crate::store::trust_site_ca(Some(ca));
        }
        // The config's key belongs to the config's database, never to one named by --db.
        let (db, config_key) = match &self.db {
            Some(db) => (db.clone(), None),
            None => (
                site.database(&config)?.unwrap_or_else(Context::default_db),
                site.key,
            ),
        };
        Ok(Context {
            models_dir: self
                .models
                .clone()
                .unwrap_or_else(crate::models::default_dir),
            signature_model: self.signature_model.clone(),
            db,
            key: self.key.clone().or(config_key),
            device: self.device.open()?,
            operator: self
                .operator
                .clone()
                .or_else(|| std::env::var("USER").ok())
                .unwrap_or_else(|| "unknown".to_string()),
            login: self.operator.clone(),
            min_face_score: self.min_face_score,
            config,
            theme: site.theme.unwrap_or_default(),
        })
    }
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Face detection, embedding and 1:1 comparison.
    #[command(subcommand)]
    Face(face::FaceCommand),
    /// Accuracy on labelled data.
    #[command(subcommand)]
    Eval(eval::EvalCommand),
    /// Speed of the pipeline stages on this machine.
    #[command(subcommand)]
    Bench(face::BenchCommand),
    /// Model weights.
    #[command(subcommand)]
    Models(train::ModelsCommand),
    /// Enroll a person from reference photos (one transaction: all good photos or nothing).
    Enroll(people::EnrollArgs),
    /// Enroll many people from a CSV manifest (columns id,name,image; one row per
    /// image), each person in their own transaction. Ctrl-C stops between people.
    EnrollBatch(people::EnrollBatchArgs),
    /// Embed every stored face crop and signature reference with the current face model and
    /// the active signature model (after a model change or an update); one report each.
    Reembed(JsonArgs),
    /// Decision thresholds per modality.
    #[command(subcommand)]
    Settings(records::SettingsCommand),
    /// Attendance as CSV or JSON, or a backup of the whole database.
    #[command(subcommand)]
    Export(records::ExportCommand),
    /// Attendance from CSV or JSON, or restore a backup.
    #[command(subcommand)]
    Import(records::ImportCommand),
    /// 1:1: does the photo show the person enrolled under `--id`?
    Verify(people::VerifyArgs),
    /// 1:N: who among the enrolled is this?
    Identify(people::IdentifyArgs),
    /// Kiosk punch: identify the photo's subject and record a check-in or check-out.
    Checkin(people::CheckinArgs),
    /// A punch a supervisor adds afterwards (a forgotten check-out, a kiosk that was
    /// down): a new punch with its reason in the audit log, never an edit of another.
    Correct(records::CorrectArgs),
    /// Train a Siamese encoder on labelled scans (a new model version; the shipped one is
    /// never overwritten). Ctrl-C stops cleanly, keeping the last finished epoch.
    Train(train::TrainArgs),
    /// Labelled scan lists (manifests) for training and evaluation.
    #[command(subcommand)]
    Dataset(train::DatasetCommand),
    /// Signature verification against references.
    #[command(subcommand)]
    Signature(signature::SignatureCommand),
    /// Enrolled people.
    #[command(subcommand)]
    People(people::PeopleCommand),
    /// The hash-chained audit log.
    #[command(subcommand)]
    Audit(records::AuditCommand),
    /// The key that encrypts the biometrics and seals the audit log.
    #[command(subcommand)]
    Keys(records::KeysCommand),
    /// Operator accounts and their roles.
    #[command(subcommand)]
    Operators(governance::OperatorsCommand),
    /// Governed changes: list, approve or reject proposals.
    #[command(subcommand)]
    Proposals(governance::ProposalsCommand),
    /// Move a site's whole store to another engine (a SQLite file onto a PostgreSQL
    /// server, or back), checked by comparing every table's rows and the audit chain.
    Migrate(records::MigrateArgs),
}

/// Commands whose only option is the output format.
#[derive(Args, Debug)]
pub struct JsonArgs {
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: impl IntoIterator<Item = OsString>) -> anyhow::Result<ExitCode> {
    let cli = Cli::parse_from(args);
    init_logging(cli.global.verbose);
    let context = match (cli.global.context(), &cli.command) {
        (Err(error), None) => {
            // Started for the window (a kiosk's launcher has no terminal): it says why.
            if let Err(shown) = crate::gui::cannot_start::run(format!("{error:#}")) {
                tracing::warn!("{shown:#}");
            }
            return Err(error);
        }
        (context, _) => context?,
    };
    let Some(command) = cli.command else {
        crate::gui::run(context)?;
        return Ok(ExitCode::SUCCESS);
    };
    match command {
        Command::Face(command) => face::run(command, &context),
        Command::Bench(command) => face::bench(command, &context),
        Command::Eval(command) => eval::run(command, &context),
        Command::Models(command) => train::models(command, &context),
        Command::Train(args) => train::train(args, &context),
        Command::Dataset(command) => train::dataset(command, &context),
        Command::Enroll(args) => people::enroll(args, &context),
        Command::EnrollBatch(args) => people::enroll_batch(args, &context),
        Command::Reembed(args) => people::reembed(args, &context),
        Command::Verify(args) => people::verify(args, &context),
        Command::Identify(args) => people::identify(args, &context),
        Command::Checkin(args) => people::checkin(args, &context),
        Command::Correct(args) => records::correct(args, &context),
        Command::People(command) => people::run(command, &context),
        Command::Signature(command) => signature::run(command, &context),
        Command::Settings(command) => records::settings(command, &context),
        Command::Export(command) => records::export(command, &context),
        Command::Import(command) => records::import(command, &context),
        Command::Audit(command) => records::audit(command, &context),
        Command::Keys(command) => records::keys(command, &context),
        Command::Operators(command) => governance::operators(command, &context),
        Command::Proposals(command) => governance::proposals(command, &context),
        Command::Migrate(args) => records::migrate(args, &context),
    }
}

fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    // A second call (tests run several CLIs in one process) keeps the first subscriber.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

fn print_report<T: Serialize>(
    value: &T,
    json: bool,
    text: impl Fn(&T) -> String,
) -> anyhow::Result<ExitCode> {
    if json {
        println!("{}", serde_json::to_string_pretty(value)?);
    } else {
        println!("{}", text(value));
    }
    Ok(ExitCode::SUCCESS)
}

fn progress_bar(message: &str, unit: &str) -> anyhow::Result<indicatif::ProgressBar> {
    let bar = indicatif::ProgressBar::new(0).with_style(
        indicatif::ProgressStyle::with_template(&format!(
            "{{msg}} [{{bar:40}}] {{pos}}/{{len}} {unit}, {{eta}} left"
        ))?
        .progress_chars("=> "),
    );
    bar.set_message(message.to_string());
    Ok(bar)
}

/// A `(done, total)` progress callback that moves `bar`.
fn follow(bar: &indicatif::ProgressBar) -> impl FnMut(usize, usize) + '_ {
    |done, total| {
        bar.set_length(total as u64);
        bar.set_position(done as u64);
    }
}

/// Set by Ctrl-C: long jobs stop at their next safe point (between transactions).
fn cancel_flag() -> &'static AtomicBool {
    static CANCEL: AtomicBool = AtomicBool::new(false);
    static HANDLER: std::sync::Once = std::sync::Once::new();
    HANDLER.call_once(|| {
        if let Err(error) = ctrlc::set_handler(|| CANCEL.store(true, Ordering::Relaxed)) {
            tracing::warn!(%error, "Ctrl-C will not stop long jobs cleanly");
        }
    });
    &CANCEL
}

/// Writes the whole file privately (0600): beside the target, then renamed, so a reader
/// never sees half a file.
fn write_whole_file(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    Ok(crate::store::files::write_private(path, bytes)?)
}

/// The session a command runs under: on a database with operator accounts, a login as
/// `--operator` (the secret from `$VOUCH_PASSWORD`, else a prompt); without, the
/// single-user desk under `--operator` or `$USER`.
fn session(context: &Context, store: &mut Store) -> anyhow::Result<Session> {
    if !store.has_operators()? {
        return Ok(Session::single_user(&context.operator));
    }
    let Some(name) = &context.login else {
        anyhow::bail!(
            "this database has operator accounts: name yours with --operator NAME (its password or PIN from $VOUCH_PASSWORD, or a prompt)"
        );
    };
    let secret = match std::env::var("VOUCH_PASSWORD") {
        Ok(secret) => secret,
        Err(_) => rpassword::prompt_password(format!("Password or PIN for {name}: "))
            .map_err(|e| anyhow::anyhow!("cannot read the password: {e}"))?,
    };
    Ok(store.login(name, &secret)?)
}

/// Opens the database to write, as an operator allowed to `permission`.
fn open_as(context: &Context, permission: Permission) -> anyhow::Result<(Store, Session)> {
    let mut store = context.open_store()?;
    let session = session(context, &mut store)?;
    store.authorize(&session, permission)?;
    Ok((store, session))
}

/// Opens the database for a read that operator accounts guard (exports of personal
/// data): read-only on a single-user desk; with accounts, as an operator allowed to
/// `permission` (whose login is itself recorded).
fn open_to_read_as(context: &Context, permission: Permission) -> anyhow::Result<Store> {
    if !context.read_store()?.has_operators()? {
        return Ok(context.read_store()?);
    }
    Ok(open_as(context, permission)?.0)
}
