use std::path::PathBuf;

/// Everything the library can fail with. Front ends add context with `anyhow`;
/// the library says what went wrong and with which file, path last.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read {path}")]
    Io {
        #[source]
        source: std::io::Error,
        path: PathBuf,
    },
    #[error("not a readable image ({reason}): {path}")]
    BadImage { reason: String, path: PathBuf },
    #[error("image is {width}x{height} pixels, over the limit of {limit} pixels per side: {path}")]
    ImageTooLarge {
        width: u32,
        height: u32,
        limit: u32,
        path: PathBuf,
    },
    #[error("no ink found: the scan looks empty: {0}")]
    EmptyScan(String),
    #[error("not a scan of a signature: {reason}: {file}")]
    NotAScan { reason: String, file: String },
    #[error("no face found in {0}")]
    NoFace(String),
    #[error(
        "model file not found: {path} (run `vouch models import-faceapi DIR`, see models/README.md)"
    )]
    MissingModel { path: PathBuf },
    #[error("model file is not valid ({reason}): {path}")]
    BadModel { reason: String, path: PathBuf },
    #[error("device not available: {0}")]
    Device(String),
    #[error("invalid input: {0}")]
    Invalid(String),
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(
        "{path} already matches {name} ({external_id}) with score {score:.3}: not enrolled (use --force if they are different people)"
    )]
    MatchesAnother {
        path: PathBuf,
        name: String,
        external_id: String,
        score: f32,
    },
    #[error("no usable reference for {external_id}, nothing enrolled: {reasons}")]
    NothingUsable {
        external_id: String,
        /// Each file refused, and why.
        reasons: String,
    },
    #[error("not recognised (best score {score:.3}, accept at {accept:.2}): nothing recorded")]
    NotRecognised { score: f32, accept: f32 },
    #[error(
        "nobody is enrolled under the current face model (after a model update, `vouch reembed` brings the enrolled faces over)"
    )]
    EmptyGallery,
    #[error(
        "{name} has no references made by model {model}: re-embed the stored references (the window does when it starts; `vouch reembed`), or enrol {name} again if re-embedding says they cannot be carried over"
    )]
    NoReferences { name: String, model: String },
    #[error(
        "too few references: enroll people with two or more references, or load a labelled manifest"
    )]
    TooFewReferences,
    #[error("cancelled")]
    Cancelled,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What the database can fail with; kept here, below the store, so every layer can name it.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{path} is not a Vouch database (it is left untouched)")]
    Foreign { path: PathBuf },
    #[error("the database is corrupt or unreadable ({reason}): {path}")]
    Corrupt { reason: String, path: PathBuf },
    #[error(
        "the database is busy: another Vouch (a kiosk, the window) is writing to it; try again in a moment: {path}"
    )]
    Locked { path: PathBuf },
    #[error(
        "the database cannot be written here (a read-only file or folder); read commands still work, or copy it somewhere writable: {path}"
    )]
    ReadOnly { path: PathBuf },
    #[error(
        "this database was made by a newer Vouch (schema {found}, this one knows {known}): {path}"
    )]
    Newer {
        found: i64,
        known: i64,
        path: PathBuf,
    },
    #[error(
        "this database was made by an older Vouch: open it once with a command that writes, to upgrade it: {path}"
    )]
    Older { path: PathBuf },
    #[error(
        "the key file is missing: without it this database's biometrics cannot be read nor its seals checked (restore it from where you keep your keys): {path}"
    )]
    MissingKey { path: PathBuf },
    #[error("the key file is not usable ({reason}): {path}")]
    BadKeyFile { reason: String, path: PathBuf },
    #[error(
        "{table} row {row} is not valid ({reason}): the database was changed outside Vouch; run `vouch audit verify`: {path}"
    )]
    BadRow {
        table: &'static str,
        row: String,
        reason: String,
        path: PathBuf,
    },
    #[error("{what}: {path}")]
    Tampered { what: String, path: PathBuf },
    #[error("{field} {value:?} is not acceptable: {reason}")]
    BadText {
        field: &'static str,
        value: String,
        reason: String,
    },
    #[error("no person with id {0}")]
    UnknownPerson(String),
    #[error("a {modality} enrollment for id {external_id} already exists")]
    Duplicate {
        external_id: String,
        modality: crate::types::Modality,
    },
    #[error("invalid value: {0}")]
    InvalidSetting(String),
    #[error("wrong operator name or secret ({name})")]
    BadLogin { name: String },
    #[error("{name} is locked out after repeated failed logins until {until} (UTC)")]
    LockedOut { name: String, until: String },
    #[error("the operator account {name} is disabled")]
    OperatorDisabled { name: String },
    #[error("not allowed: {0}")]
    NotAllowed(String),
    #[error("{0}")]
    Governance(String),
    #[error("cannot use {path}")]
    Io {
        #[source]
        source: std::io::Error,
        path: PathBuf,
    },
    #[error(transparent)]
    Sql(#[from] rusqlite::Error),
    #[error("the database server refused ({reason}): {location}")]
    Server { reason: String, location: PathBuf },
    #[error("the database server cannot be reached ({reason}): {location}")]
    Unreachable { reason: String, location: PathBuf },
    #[error("a stored value in column {column} is not what Vouch writes ({reason})")]
    Value { column: usize, reason: String },
    #[error("no such row")]
    NoRow,
    #[error("schema migration failed: {0}")]
    Migration(#[from] rusqlite_migration::Error),
}

pub type StoreResult<T> = std::result::Result<T, StoreError>;

impl StoreError {
    /// What every reason found wrong with one stored row becomes: the row named by table
    /// and key, and the file, so an operator knows what to look at. Built as a closure
    /// because a row's fields are checked one after another, each with its own reason.
    pub fn bad_row<'a>(
        table: &'static str,
        row: impl std::fmt::Display + Copy + 'a,
        path: &'a std::path::Path,
    ) -> impl Fn(String) -> StoreError + Copy + 'a {
        move |reason| StoreError::BadRow {
            table,
            row: row.to_string(),
            reason,
            path: path.to_path_buf(),
        }
    }
}

impl Error {
    /// Nothing could be enrolled: each refused file with its reason.
    pub fn nothing_usable<'a>(
        external_id: &str,
        rejected: impl IntoIterator<Item = (&'a std::path::Path, &'a str)>,
    ) -> Self {
        Error::NothingUsable {
            external_id: external_id.to_string(),
            reasons: rejected
                .into_iter()
                .map(|(path, reason)| format!("{} ({reason})", path.display()))
                .collect::<Vec<_>>()
                .join("; "),
        }
    }

    /// The cause a failure to acquire is counted under (ISO/IEC 19795-1 reports FTA by
    /// cause, so a site knows whether to fix its scanner, its lighting or its files).
    pub fn acquisition_cause(&self) -> &'static str {
        match self {
            Error::EmptyScan(_) => "no ink",
            Error::NotAScan { .. } => "not a signature scan",
            Error::NoFace(_) => "no face",
            Error::Io { .. } | Error::BadImage { .. } => "unreadable file",
            Error::ImageTooLarge { .. } => "image too large",
            _ => "other",
        }
    }

    pub fn io(source: std::io::Error, path: impl Into<PathBuf>) -> Self {
        Error::Io {
            source,
            path: path.into(),
        }
    }
}
