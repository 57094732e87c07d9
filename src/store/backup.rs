//! Backups out and restores in. A restore trusts nothing: the source is opened read-only
//! (never modified) and copied into memory; that copy must pass SQLite's integrity check,
//! have exactly the schema objects Vouch's migrations make (no extra trigger, view or index), an intact chain
//! and anchor under this database's key, a ledger that matches every table, and
//! templates that all open. Only then does it replace the database.

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use super::sql::Db;
use super::{APPLICATION_ID, SCHEMA_VERSION, Store, audit, classify, files, migrations, people};
use crate::error::{StoreError, StoreResult};
use crate::types::counted;

/// (type, name, table, sql) of every schema object, sorted.
type SchemaObjects = Vec<(String, String, String, Option<String>)>;

fn schema_objects(conn: &Connection) -> StoreResult<SchemaObjects> {
    let mut statement =
        conn.prepare("SELECT type, name, tbl_name, sql FROM sqlite_schema ORDER BY type, name")?;
    let objects = statement
        .query_map([], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
        })?
        .collect::<Result<_, _>>()?;
    Ok(objects)
}

/// What Vouch's migrations make, and nothing else.
fn expected_schema() -> StoreResult<SchemaObjects> {
    let mut fresh = Connection::open_in_memory()?;
    migrations().to_latest(&mut fresh)?;
    schema_objects(&fresh)
}

fn copy(from: &Connection, to: &mut Connection) -> rusqlite::Result<()> {
    rusqlite::backup::Backup::new(from, to)?.run_to_completion(256, Duration::from_millis(5), None)
}

impl Store {
    /// The SQLite file under this store: backups and restores are SQLite's; a server's
    /// are its operator's (pg_dump, replication).
    fn sqlite_file(&self) -> StoreResult<&Connection> {
        self.conn.as_sqlite().ok_or_else(server_backups)
    }

    /// A consistent copy of the whole database, taken with SQLite's online backup while
    /// others may keep writing. The copy (mode 0600) is written beside `target` and
    /// renamed into place, so an interrupted backup never leaves a half file under that
    /// name. The key file is not in it: keep it apart.
    pub fn backup_to(&self, target: &Path) -> StoreResult<()> {
        let mut name = target.file_name().unwrap_or_default().to_os_string();
        name.push(".partial");
        let partial = target.with_file_name(name);
        let _ = std::fs::remove_file(&partial);
        files::create_private_file(&partial)?;
        {
            let mut copied = Connection::open(&partial).map_err(|e| classify(e, &partial))?;
            copy(self.sqlite_file()?, &mut copied).map_err(|e| classify(e, &partial))?;
            // One self-contained file: opened read-only elsewhere (an evidence copy) it
            // needs no log or shared-memory file beside it.
            copied
                .query_row("PRAGMA journal_mode = DELETE", [], |_| Ok(()))
                .map_err(|e| classify(e, &partial))?;
        }
        std::fs::rename(&partial, target).map_err(|e| StoreError::Io {
            source: e,
            path: target.to_path_buf(),
        })
    }

    /// Replaces this database's content with a backup, after checking the backup through
    /// and through (see the module); the source file is never written to.
    pub fn restore_from(&mut self, source: &Path, actor: &str) -> StoreResult<()> {
        let staged = self.stage(source)?;
        let path = self.path.clone();
        let conn = self.conn.as_sqlite_mut().ok_or_else(server_backups)?;
        copy(&staged, conn).map_err(|e| classify(e, &path))?;
        self.audit_append(
            actor,
            "restore",
            &serde_json::json!({ "from": source.display().to_string() }).to_string(),
        )?;
        self.checkpoint();
        Ok(())
    }

    /// The backup at `source`, copied into memory and checked.
    fn stage(&self, source: &Path) -> StoreResult<Connection> {
        if !source.is_file() {
            return Err(StoreError::Io {
                source: std::io::Error::from(std::io::ErrorKind::NotFound),
                path: source.to_path_buf(),
            });
        }
        let refused = |what: String| StoreError::Tampered {
            what: format!("not restored: {what}"),
            path: source.to_path_buf(),
        };
        let original = Connection::open_with_flags(
            source,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| classify(e, source))?;
        let mut staged = Connection::open_in_memory()?;
        copy(&original, &mut staged).map_err(|e| classify(e, source))?;
        drop(original);
        let (application_id, version): (i32, i64) = staged
            .query_row(
                "SELECT (SELECT application_id FROM pragma_application_id), (SELECT user_version FROM pragma_user_version)",
                [],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .map_err(|e| classify(e, source))?;
        if application_id != APPLICATION_ID {
            return Err(StoreError::Foreign {
                path: source.to_path_buf(),
            });
        }
        if version != SCHEMA_VERSION {
            return Err(refused(format!(
                "it is schema {version}, and only a schema {SCHEMA_VERSION} backup carries the seals a restore checks"
            )));
        }
        // Damage no query reads (a page's free-space list) would be copied into the
        // database and break it later: SQLite's own full check comes first.
        let integrity: String = staged
            .query_row("PRAGMA integrity_check(1)", [], |row| row.get(0))
            .map_err(|e| classify(e, source))?;
        if integrity != "ok" {
            return Err(refused(format!("its pages are damaged ({integrity})")));
        }
        if schema_objects(&staged)? != expected_schema()? {
            return Err(refused(
                "its tables, indexes, triggers or views are not exactly what Vouch makes".into(),
            ));
        }
        let keys = self.keys()?;
        let staged = Db::sqlite(staged, source);
        let report = audit::verify(&staged, Some(keys))?;
        if !report.intact {
            return Err(refused(format!(
                "its audit does not hold: {}",
                report.problems.join("; ")
            )));
        }
        let unreadable = people::unreadable_templates(&staged, keys, source)?;
        if let Some(first) = unreadable.first() {
            return Err(refused(format!(
                "{} cannot be opened, the first: {first}",
                counted(unreadable.len(), "template")
            )));
        }
        Ok(staged.into_sqlite().expect("staged in SQLite"))
    }
}

fn server_backups() -> StoreError {
    StoreError::NotAllowed(
        "a PostgreSQL store is backed up and restored by the server's own tools (pg_dump, pg_restore, replication), or moved with `vouch migrate`".into(),
    )
}
