//! The store on a PostgreSQL server, for sites whose kiosks and desks share one gallery.
//! The same tables, seals, ledger and audit chain as the SQLite file (`schema_postgres.sql`
//! is the same schema in PostgreSQL's words), opened with the same care: a database that
//! holds anything but Vouch's tables is refused and never written to, a newer schema is
//! refused, and a sealed store without its key file is refused.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use super::sql::{Db, OptionalExtension, params};
use super::{SCHEMA_VERSION, Store, keys_for};
use crate::error::{StoreError, StoreResult};

/// Opening a store takes this session lock, so that two kiosks starting at once against
/// an empty database do not both create the schema (one does; the other finds it).
const PREPARE_LOCK: i64 = 0x564F_5544;
/// How long a kiosk waits for an unreachable server before it says so.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Whether `--db` names a server (`postgres://` or `postgresql://`) rather than a file.
pub fn is_server(db: &Path) -> bool {
    db.to_str()
        .is_some_and(|text| text.starts_with("postgres://") || text.starts_with("postgresql://"))
}

/// Connects to the server `url` names; returns the client and the address to name in
/// messages (never the password).
fn connect(url: &str) -> StoreResult<Db> {
    let refused = |reason: String| StoreError::Server {
        reason,
        location: PathBuf::from("the server named by --db"),
    };
    let mut config = postgres::Config::from_str(url).map_err(|e| refused(e.to_string()))?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    if config.get_application_name().is_none() {
        config.application_name("vouch");
    }
    let location = describe(&config);
    let client = config
        .connect(postgres::NoTls)
        .map_err(|e| StoreError::Server {
            reason: e.to_string(),
            location: PathBuf::from(&location),
        })?;
    Ok(Db::postgres(client, &location))
}

/// `postgres://user@host:port/dbname`, without the password.
fn describe(config: &postgres::Config) -> String {
    let host = match config.get_hosts().first() {
        Some(postgres::config::Host::Tcp(host)) => host.clone(),
        Some(postgres::config::Host::Unix(path)) => path.display().to_string(),
        None => "localhost".into(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    format!(
        "postgres://{}@{host}:{port}/{}",
        config.get_user().unwrap_or_default(),
        config.get_dbname().unwrap_or_default()
    )
}

/// The schema version of the Vouch store in this database; 0 when it holds no table at
/// all; `Foreign` when it holds tables that are not a Vouch store.
fn schema_version(db: &Db) -> StoreResult<i64> {
    let has_meta: bool = db.query_row(
        "SELECT to_regclass('vouch_meta') IS NOT NULL",
        params![],
        |row| row.get(0),
    )?;
    let foreign = || StoreError::Foreign {
        path: db.location().to_path_buf(),
    };
    if !has_meta {
        let tables: i64 = db.query_row(
            "SELECT count(*) FROM pg_catalog.pg_tables WHERE schemaname = current_schema()",
            params![],
            |row| row.get(0),
        )?;
        return if tables == 0 { Ok(0) } else { Err(foreign()) };
    }
    db.query_row(
        "SELECT application, schema_version FROM vouch_meta WHERE id = 1",
        params![],
        |row| Ok((row.get::<String>(0)?, row.get::<i64>(1)?)),
    )
    .optional()?
    .filter(|(application, _)| application == "vouch")
    .map(|(_, version)| version)
    .ok_or_else(foreign)
}

impl Store {
    /// Opens the store on the server `url` names to read and write, creating its schema in
    /// an empty database. Its key file (`key_path`) must be the one every kiosk of the
    /// site shares: it is made only with a new store.
    pub fn open_server(url: &str, key_path: &Path) -> StoreResult<Self> {
        let db = connect(url)?;
        db.execute("SELECT pg_advisory_lock(?1)", params![PREPARE_LOCK])?;
        let location = db.location().to_path_buf();
        let mut store = Self {
            conn: db,
            path: location.clone(),
            keys: None,
            read_only: false,
        };
        // On failure the connection closes, and the lock with it.
        store.prepare_server(key_path)?;
        store
            .conn
            .execute("SELECT pg_advisory_unlock(?1)", params![PREPARE_LOCK])?;
        Ok(store)
    }

    fn prepare_server(&mut self, key_path: &Path) -> StoreResult<()> {
        let version = schema_version(&self.conn)?;
        if version > SCHEMA_VERSION {
            return Err(StoreError::Newer {
                found: version,
                known: SCHEMA_VERSION,
                path: self.path.clone(),
            });
        }
        let keys = keys_for(version, key_path)?;
        if version == 0 {
            self.conn.execute_batch(&format!(
                "BEGIN; {} COMMIT;",
                include_str!("schema_postgres.sql")
            ))?;
        }
        self.seal_unsealed(version, keys)
    }

    /// Opens the store on a server without writing to it: every transaction of this
    /// session is read-only, so a command that only reads cannot change the site.
    pub fn open_server_read_only(url: &str, key_path: &Path) -> StoreResult<Self> {
        let db = connect(url)?;
        db.execute_batch("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")?;
        let path = db.location().to_path_buf();
        match schema_version(&db)? {
            0 => {
                return Err(StoreError::Io {
                    source: std::io::Error::from(std::io::ErrorKind::NotFound),
                    path,
                });
            }
            version if version < SCHEMA_VERSION => return Err(StoreError::Older { path }),
            version if version > SCHEMA_VERSION => {
                return Err(StoreError::Newer {
                    found: version,
                    known: SCHEMA_VERSION,
                    path,
                });
            }
            _ => {}
        }
        Ok(Self {
            conn: db,
            path,
            keys: super::Keys::load(key_path)?,
            read_only: true,
        })
    }
}
