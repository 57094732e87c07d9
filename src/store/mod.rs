//! The one SQLite file: people, reference templates, attendance, verification decisions,
//! settings and a hash-chained audit log, guarded against its own users:
//! - every write that belongs together is one IMMEDIATE transaction with its audit row,
//!   and the audit row carries the ledger of what was written (`ledger`), so `audit
//!   verify` finds an edit, a swap, an insert or a deletion made around Vouch; the log's
//!   head is sealed with a key kept outside the database (`keys`, `audit`);
//! - biometrics (embeddings and crops) are encrypted at rest, bound to their row; people
//!   and settings carry seals checked on every read (`seals`);
//! - every value read back is validated (a template has its model's shape, a score is a
//!   score), and a bad one is an error naming the row;
//! - the file and its key are private (0600), deleted rows are overwritten
//!   (`secure_delete`), and read commands open the file read-only;
//! - a file that is not a Vouch database is refused and never written to.

mod audit;
mod backup;
mod canonical;
pub mod exchange;
pub mod files;
mod governance;
pub mod keys;
mod ledger;
mod migrate;
mod operators;
pub mod outbox;
mod people;
mod records;
mod seals;
mod server;
pub mod sql;
mod text;

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};
use rusqlite_migration::{M, Migrations};
use serde::{Deserialize, Serialize};

pub use crate::error::{StoreError, StoreResult};
pub use audit::{AuditEntry, AuditReport};
pub use governance::{
    ACTIVE_SIGNATURE_MODEL, Change, DEFAULT_REPEAT_MINUTES, Proposal, ProposalStatus,
};
pub use keys::Keys;
pub use migrate::Migration;
pub use operators::{LOCKOUT, MAX_FAILED_LOGINS, OperatorInfo, Session};
pub use people::{Enrollment, blob_to_embedding, embedding_to_blob};
pub use records::{AttendanceRecord, Correction, EarlierCheck, MAX_PERSON_OFFSET, Verification};
pub use server::{GalleryChange, GalleryFeed, is_server, trust_site_ca};
pub use text::check_text;

use crate::types::{Decision, Modality, PunchKind};
use ledger::Changes;
use sql::{Db, OptionalExtension, params};

/// Marks a Vouch database (`PRAGMA application_id`), "VOUC".
const APPLICATION_ID: i32 = 0x564F_5543;
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// The schema this Vouch writes (`PRAGMA user_version`, kept by rusqlite_migration).
const SCHEMA_VERSION: i64 = 4;
/// The first schema whose databases are sealed (encrypted biometrics, the ledger, the
/// anchor): older ones are sealed once, on their first read-write open.
const SEALED_SINCE: i64 = 2;
/// Templates moved to a new key per transaction.
const REENCRYPT_CHUNK: usize = 64;

/// What a key rotation did.
#[derive(Debug, Clone, Serialize)]
pub struct Rotation {
    /// The key now in use.
    pub key: u32,
    /// Whether it carried on an earlier, unfinished rotation.
    pub resumed: bool,
    pub resealed: usize,
    pub templates: usize,
    /// False when cancelled: run it again to finish.
    pub finished: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Person {
    pub id: i64,
    pub name: String,
    pub external_id: String,
    pub modality: Modality,
    pub created_at: String,
    /// How many pictures (photos, scans) the person was enrolled from, however many
    /// models have read them.
    pub templates: usize,
}

/// What a check-in attempt did.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Punch {
    Recorded {
        kind: PunchKind,
        at: String,
    },
    Repeat {
        last_kind: PunchKind,
        last_at: String,
    },
    /// The site's server could not be reached: kept in this kiosk's outbox, sent when it
    /// answers (its kind is decided then, against the punches before it).
    Queued {
        at: String,
    },
}

/// A decision recorded earlier (a verification at a desk, or a kiosk punch): what a
/// change of bands would be replayed on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PastDecision {
    pub score: f32,
    pub decision: Decision,
    pub at: String,
    /// "verification by NAME", or "kiosk punch".
    pub what: String,
    /// The person it was about, as "Name (id)"; None when they have since been deleted.
    pub person: Option<String>,
    /// Their row id, for their own threshold offset; None when deleted.
    #[serde(default)]
    pub person_id: Option<i64>,
}

/// A stored reference crop with whose it is, for training on the enrolled references.
#[derive(Debug, Clone)]
pub struct ReferenceCrop {
    pub external_id: String,
    pub source_sha256: String,
    /// PNG bytes.
    pub crop: Vec<u8>,
}

/// A reference embedding to store.
#[derive(Debug, Clone)]
pub struct NewTemplate {
    pub embedding: Vec<f32>,
    pub quality: f32,
    pub source_sha256: String,
    /// What a new model embeds again: the aligned face chip (PNG), or a signature's kept
    /// ink (`signature::reference`).
    pub crop: Option<Vec<u8>>,
}

/// A stored template with the crop it was made from, for re-embedding.
#[derive(Debug, Clone)]
pub struct CropTemplate {
    pub template_id: i64,
    pub person_id: i64,
    pub quality: f32,
    pub source_sha256: String,
    pub crop: Vec<u8>,
}

/// A stored template, as matching needs it.
#[derive(Debug, Clone)]
pub struct StoredTemplate {
    pub template_id: i64,
    pub person_id: i64,
    pub embedding: Vec<f32>,
}

pub struct Store {
    conn: Db,
    path: PathBuf,
    /// Absent only for a read-only store whose key file is not beside it.
    keys: Option<Keys>,
    read_only: bool,
    /// A kiosk's own queue for when the site's server cannot be reached (`keep_outbox`).
    outbox: Option<outbox::Outbox>,
}

fn migrations() -> Migrations<'static> {
    Migrations::new(vec![
        M::up(include_str!("schema.sql")),
        M::up(include_str!("schema_v2.sql")),
        M::up(include_str!("schema_v3.sql")),
        M::up(include_str!("schema_v4.sql")),
    ])
}

/// RFC 3339 in UTC to the millisecond, so that lexical order is time order.
pub fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// What an audit row made late says about it.
fn delayed(made_at: &str) -> serde_json::Value {
    serde_json::json!({ "made_at": made_at, "arrived_at": now() })
}

impl Store {
    /// Opens (or creates) the database at `path` to read and write, migrating it to the
    /// current schema. Its key file is `path` + `.key`.
    pub fn open(path: &Path) -> StoreResult<Self> {
        Self::open_with_key(path, &Keys::path_for(path))
    }

    pub fn open_with_key(path: &Path, key_path: &Path) -> StoreResult<Self> {
        if let Some(parent) = path.parent() {
            files::create_private_dir(parent)?;
        }
        // Two processes opening a new database at once (the window and the CLI) would
        // each make a key and migrate: one prepares, the other then finds it ready.
        let _preparing = files::lock_beside(path)?;
        files::create_private_file(path)?;
        let existed = std::fs::metadata(path)
            .map(|m| m.len() > 0)
            .unwrap_or(false);
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| classify(e, path))?;
        let mut store = Self {
            conn: Db::sqlite(conn, path),
            path: path.to_path_buf(),
            keys: None,
            read_only: false,
            outbox: None,
        };
        store.prepare(existed, key_path)?;
        Ok(store)
    }

    /// Opens an existing database without writing to it (not even its header): it may
    /// be a read-only evidence copy in a read-only folder. Its key file, when beside it,
    /// opens the biometrics and checks the seals.
    pub fn open_read_only(path: &Path) -> StoreResult<Self> {
        Self::open_read_only_with_key(path, &Keys::path_for(path))
    }

    pub fn open_read_only_with_key(path: &Path, key_path: &Path) -> StoreResult<Self> {
        if !path.is_file() {
            return Err(StoreError::Io {
                source: std::io::Error::from(std::io::ErrorKind::NotFound),
                path: path.to_path_buf(),
            });
        }
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| classify(e, path))?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        check_header(&conn, path, true)?;
        let version = user_version(&conn, path)?;
        if version < SCHEMA_VERSION {
            return Err(StoreError::Older {
                path: path.to_path_buf(),
            });
        }
        Ok(Self {
            conn: Db::sqlite(conn, path),
            path: path.to_path_buf(),
            keys: Keys::load(key_path)?,
            read_only: true,
            outbox: None,
        })
    }

    /// A database in memory with a key that dies with it (tests, throwaway work).
    pub fn open_in_memory() -> StoreResult<Self> {
        let mut conn = Connection::open_in_memory()?;
        conn.pragma_update(None, "foreign_keys", true)?;
        migrations().to_latest(&mut conn)?;
        let mut store = Self {
            conn: Db::sqlite(conn, Path::new(":memory:")),
            path: PathBuf::from(":memory:"),
            keys: Some(Keys::ephemeral()),
            read_only: false,
            outbox: None,
        };
        store.seal_storage()?;
        Ok(store)
    }

    fn prepare(&mut self, existed: bool, key_path: &Path) -> StoreResult<()> {
        let path = self.path.clone();
        let conn = self
            .conn
            .as_sqlite_mut()
            .expect("prepare opens a SQLite file");
        conn.busy_timeout(BUSY_TIMEOUT)?;
        // The header is read first: a foreign or corrupt file fails here, before any write.
        check_header(conn, &path, existed)?;
        let version = user_version(conn, &path)?;
        if version > SCHEMA_VERSION {
            return Err(StoreError::Newer {
                found: version,
                known: SCHEMA_VERSION,
                path,
            });
        }
        let keys = keys_for(version, key_path)?;
        for (pragma, value) in [
            ("foreign_keys", "ON"),
            // Deleted rows are overwritten, so a deleted person's data is not left behind.
            ("secure_delete", "ON"),
            ("synchronous", "NORMAL"),
        ] {
            conn.pragma_update(None, pragma, value)
                .map_err(|e| classify(e, &path))?;
        }
        conn.query_row("PRAGMA journal_mode = WAL", [], |_| Ok(()))
            .map_err(|e| classify(e, &path))?;
        if !existed {
            conn.pragma_update(None, "application_id", APPLICATION_ID)
                .map_err(|e| classify(e, &path))?;
        }
        migrations().to_latest(conn).map_err(|e| match e {
            rusqlite_migration::Error::RusqliteError { err, .. } => classify(err, &path),
            other => StoreError::Migration(other),
        })?;
        self.seal_unsealed(version, keys)
    }

    /// With the schema current: seals a database that is not sealed yet (a new one, or one
    /// of an earlier schema) under `keys`, and refuses one that lost the anchor its key
    /// file sealed.
    fn seal_unsealed(&mut self, version: i64, keys: Keys) -> StoreResult<()> {
        let path = self.path.clone();
        self.keys = Some(keys);
        if version < SEALED_SINCE || !self.has_anchor()? {
            // A database its key file has sealed before never loses its anchor in Vouch's
            // hands: sealing it anew would launder whatever was done to it.
            if version >= SEALED_SINCE && self.keys()?.sealed() {
                return Err(StoreError::Tampered {
                    what: "the audit log's anchor is gone from a database that was sealed: it was emptied or replaced outside Vouch".into(),
                    path,
                });
            }
            self.seal_storage()?;
            self.checkpoint();
        }
        self.keys
            .as_mut()
            .expect("keys were just loaded")
            .mark_sealed()
    }

    fn has_anchor(&self) -> StoreResult<bool> {
        Ok(self
            .conn
            .query_row("SELECT 1 FROM anchor WHERE id = 1", params![], |_| Ok(()))
            .optional()?
            .is_some())
    }

    /// Brings a database of an earlier schema (or a new one) under the seals: every
    /// embedding and crop encrypted, people and settings sealed, one audit row listing
    /// every row as the ledger's baseline, and the anchor over the log.
    fn seal_storage(&mut self) -> StoreResult<()> {
        let empty: bool = self.conn.query_row(
            "SELECT NOT EXISTS (SELECT 1 FROM people) AND NOT EXISTS (SELECT 1 FROM settings)
                AND NOT EXISTS (SELECT 1 FROM attendance) AND NOT EXISTS (SELECT 1 FROM decisions)
                AND NOT EXISTS (SELECT 1 FROM audit)",
            params![],
            |row| row.get(0),
        )?;
        if empty {
            let keys = self.keys()?;
            audit::write_anchor(&self.conn, keys, 0, audit::GENESIS)?;
            return Ok(());
        }
        let path = self.path.clone();
        let templates = self.write("vouch", "seal_storage", |tx, keys, changes| {
            let templates = people::encrypt_plain_templates(tx, keys, &path)?;
            seals::reseal_all(tx, keys)?;
            for table in ledger::TABLES {
                for key in ledger::digests(tx, table)?.into_keys() {
                    changes.put_key(tx, table, &key)?;
                }
            }
            Ok::<_, StoreError>((
                templates,
                serde_json::json!({ "encrypted_templates": templates }),
            ))
        })?;
        tracing::info!(templates, "sealed the database's storage");
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn keys(&self) -> StoreResult<&Keys> {
        self.keys.as_ref().ok_or_else(|| StoreError::MissingKey {
            path: Keys::path_for(&self.path),
        })
    }

    /// One audited write: `body` runs in an IMMEDIATE transaction (nobody else writes
    /// between its reads and its writes), records what it wrote in `changes`, and returns
    /// its result with the audit row's detail; the audit row, its ledger and the anchor
    /// are written in the same transaction. A body that wrote nothing and returns a null
    /// detail (a repeat punch) leaves no audit row.
    fn write<T, E: From<StoreError>>(
        &mut self,
        actor: &str,
        action: &str,
        body: impl FnOnce(&Db, &Keys, &mut Changes) -> Result<(T, serde_json::Value), E>,
    ) -> Result<T, E> {
        if self.read_only {
            return Err(StoreError::ReadOnly {
                path: self.path.clone(),
            }
            .into());
        }
        let path = self.path.clone();
        let keys = self.keys.as_ref().ok_or_else(|| StoreError::MissingKey {
            path: Keys::path_for(&path),
        })?;
        let tx = self.conn.begin_write()?;
        let mut changes = Changes::default();
        let (value, detail) = body(&tx, keys, &mut changes)?;
        if tx.dialect() == sql::Dialect::Postgres
            && let Some(payload) = server::gallery_payload(&tx, &changes)?
        {
            tx.execute(
                "SELECT pg_notify(?1, ?2)",
                params![server::GALLERY_CHANNEL, payload],
            )?;
        }
        // A transaction that wrote nothing and has nothing to say leaves no audit row.
        if !(changes.is_empty() && detail.is_null()) {
            audit::append(&tx, keys, actor, action, &detail.to_string(), &changes)?;
        }
        tx.commit()?;
        Ok(value)
    }

    /// Writes the log's pages into the database file and empties the log, so rows just
    /// deleted survive in neither. Best effort: a reader holding an old snapshot keeps the
    /// log until it lets go.
    fn checkpoint(&self) {
        if self.path != Path::new(":memory:")
            && let Some(conn) = self.conn.as_sqlite()
            && let Err(error) = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        {
            tracing::warn!(%error, "the write-ahead log could not be emptied now");
        }
    }

    /// Appends an audit row of its own; on a kiosk whose server cannot be reached, the
    /// row waits in its outbox (`keep_outbox`) and says so when it arrives.
    pub fn audit_append(&mut self, actor: &str, action: &str, detail: &str) -> StoreResult<()> {
        match self.append_now(actor, action, detail, None) {
            Err(StoreError::Unreachable { .. }) if self.outbox.is_some() => {
                let outbox = self.outbox.as_ref().expect("checked");
                outbox.queue_note(actor, action, detail)
            }
            appended => appended,
        }
    }

    /// An audit row; `made_at`, for one an outbox kept, goes into its detail with the
    /// time it arrived.
    fn append_now(
        &mut self,
        actor: &str,
        action: &str,
        detail: &str,
        made_at: Option<&str>,
    ) -> StoreResult<()> {
        let mut detail: serde_json::Value = serde_json::from_str(detail)
            .unwrap_or_else(|_| serde_json::Value::String(detail.into()));
        if let Some(made_at) = made_at {
            if !detail.is_object() {
                detail = serde_json::json!({ "detail": detail });
            }
            detail["delayed"] = delayed(made_at);
        }
        self.write(actor, action, |_, _, _| Ok::<_, StoreError>(((), detail)))
    }

    /// From now on, what this kiosk punches or audits while the site's server cannot be
    /// reached is kept in the outbox at `path` and sent, in order, when it answers.
    pub fn keep_outbox(&mut self, path: &Path) -> StoreResult<()> {
        self.outbox = Some(outbox::Outbox::open(path)?);
        Ok(())
    }

    /// What waits in the outbox (0 without one).
    pub fn outbox_waiting(&self) -> StoreResult<usize> {
        self.outbox.as_ref().map_or(Ok(0), outbox::Outbox::waiting)
    }

    /// Sends what waits in the outbox, if anything does.
    pub fn deliver_outbox(
        &mut self,
        repeat_window: chrono::Duration,
    ) -> StoreResult<outbox::Delivery> {
        let Some(outbox) = self.outbox.take() else {
            return Ok(outbox::Delivery::default());
        };
        let delivered = outbox.deliver(self, repeat_window);
        self.outbox = Some(outbox);
        delivered
    }

    /// The chain, its sealed anchor, the ledger against every table, and the seals.
    pub fn audit_verify(&self) -> StoreResult<AuditReport> {
        audit::verify(&self.conn, self.keys.as_ref())
    }

    /// Moves every embedding, crop and seal to a new key, then retires the old keys, in
    /// transactions of `REENCRYPT_CHUNK` templates: a cancelled or killed rotation keeps
    /// what it finished, and running it again carries on (the old keys stay in the key
    /// file until nothing uses them).
    pub fn rotate_keys(
        &mut self,
        actor: &str,
        cancel: &std::sync::atomic::AtomicBool,
        progress: &mut dyn FnMut(usize),
    ) -> StoreResult<Rotation> {
        let keys = self.keys.as_mut().ok_or_else(|| StoreError::MissingKey {
            path: Keys::path_for(&self.path),
        })?;
        let resumed = !keys.old_ids().is_empty();
        if !resumed {
            keys.rotate()?;
        }
        let resealed = self.reseal(actor)?;
        let mut moved = 0;
        loop {
            if cancel.load(std::sync::atomic::Ordering::Relaxed) {
                return Ok(Rotation {
                    key: self.keys()?.current_id(),
                    resumed,
                    resealed,
                    templates: moved,
                    finished: false,
                });
            }
            let chunk = self.reencrypt_templates(REENCRYPT_CHUNK, actor)?;
            if chunk == 0 {
                break;
            }
            moved += chunk;
            progress(moved);
        }
        let keys = self.keys.as_mut().expect("checked above");
        keys.retire_old()?;
        let key = keys.current_id();
        self.checkpoint();
        Ok(Rotation {
            key,
            resumed,
            resealed,
            templates: moved,
            finished: true,
        })
    }

    /// Opens an existing database to read and write (it is never created).
    pub fn open_existing(path: &Path) -> StoreResult<Self> {
        if !path.is_file() {
            return Err(StoreError::Io {
                source: std::io::Error::from(std::io::ErrorKind::NotFound),
                path: path.to_path_buf(),
            });
        }
        Self::open(path)
    }
}

/// The key file of a database of schema `version` (0: a new one): made when absent only for
/// a database that was never sealed.
fn keys_for(version: i64, key_path: &Path) -> StoreResult<Keys> {
    match Keys::load(key_path)? {
        Some(keys) => Ok(keys),
        None if version >= SEALED_SINCE => Err(StoreError::MissingKey {
            path: key_path.to_path_buf(),
        }),
        None => Keys::create(key_path),
    }
}

/// The file's header and integrity, read before anything is written: a file that is not a
/// Vouch database (another application's, even without tables) is refused.
fn check_header(conn: &Connection, path: &Path, existed: bool) -> StoreResult<()> {
    let application_id: i32 = conn
        .query_row("PRAGMA application_id", [], |row| row.get(0))
        .map_err(|e| classify(e, path))?;
    if existed && application_id != APPLICATION_ID {
        return Err(StoreError::Foreign {
            path: path.to_path_buf(),
        });
    }
    if existed {
        let check: String = conn
            .query_row("PRAGMA quick_check", [], |row| row.get(0))
            .map_err(|e| classify(e, path))?;
        if check != "ok" {
            return Err(StoreError::Corrupt {
                reason: check,
                path: path.to_path_buf(),
            });
        }
    }
    Ok(())
}

fn user_version(conn: &Connection, path: &Path) -> StoreResult<i64> {
    conn.query_row("PRAGMA user_version", [], |row| row.get(0))
        .map_err(|e| classify(e, path))
}

/// A SQLite error as what it means for the person at the keyboard, with the file's path.
fn classify(error: rusqlite::Error, path: &Path) -> StoreError {
    use rusqlite::ErrorCode;
    let path = path.to_path_buf();
    match error.sqlite_error_code() {
        Some(ErrorCode::NotADatabase) => StoreError::Foreign { path },
        Some(ErrorCode::DatabaseCorrupt) => StoreError::Corrupt {
            reason: error.to_string(),
            path,
        },
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => StoreError::Locked { path },
        Some(ErrorCode::ReadOnly | ErrorCode::CannotOpen | ErrorCode::PermissionDenied) => {
            StoreError::ReadOnly { path }
        }
        _ => StoreError::Sql(error),
    }
}

/// A row's text column that must be one of `parse`'s words; anything else is an error
/// naming the row.
macro_rules! text_column {
    ($type:ty, $what:literal) => {
        impl sql::ToValue for $type {
            fn to_value(&self) -> sql::Value {
                sql::Value::Text(self.as_str().into())
            }
        }

        impl sql::FromValue for $type {
            fn from_value(value: &sql::Value) -> Result<Self, String> {
                let text = String::from_value(value)?;
                <$type>::parse(&text)
                    .ok_or_else(|| format!(concat!("not a ", $what, ": {:?}"), text))
            }
        }
    };
}

text_column!(Modality, "modality");
text_column!(Decision, "decision");
text_column!(PunchKind, "punch kind");
