//! A kiosk's outbox: punches (and audit rows, such as a refused presentation attack)
//! made while the site's server could not be reached, kept in a small SQLite file of the
//! kiosk's own (private, beside its key), and sent once each, in the order they were made
//! and with the time they were made, when the server answers again
//! (`Store::punch_delayed`, and audit rows whose detail says they arrived late). A punch
//! leaves the outbox only after the server committed it; one sent twice (the kiosk died
//! between the two commits) is recognised by the server and recorded once.

use std::path::{Path, PathBuf};

use rusqlite::{Connection, OptionalExtension};
use serde::Serialize;

use super::records::parse_time;
use super::{Punch, Store, check_text, files, now};
use crate::error::{StoreError, StoreResult};

/// A punch waiting for the server.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QueuedPunch {
    pub seq: i64,
    pub person_id: i64,
    pub score: f32,
    pub liveness: Option<f32>,
    /// When it was made (RFC 3339, UTC, milliseconds).
    pub at: String,
    pub actor: String,
}

/// An audit row waiting for the server.
struct QueuedNote {
    seq: i64,
    actor: String,
    action: String,
    detail: String,
    at: String,
}

/// What one delivery did.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Delivery {
    /// Recorded on the server now.
    pub recorded: usize,
    /// Already there, or within the repeat window of a punch before it: nothing written.
    pub repeats: usize,
    /// Audit rows recorded on the server now.
    pub notes: usize,
    /// Refused by the server (the person was deleted meanwhile): dropped, each logged.
    pub refused: usize,
    /// Still waiting: the server went away again.
    pub waiting: usize,
}

pub struct Outbox {
    conn: Connection,
    path: PathBuf,
}

impl Outbox {
    /// Opens (or creates) the outbox file at `path`.
    pub fn open(path: &Path) -> StoreResult<Self> {
        if let Some(parent) = path.parent() {
            files::create_private_dir(parent)?;
        }
        files::create_private_file(path)?;
        let conn = Connection::open(path).map_err(|e| super::classify(e, path))?;
        conn.execute_batch(
            "PRAGMA journal_mode = WAL;
             PRAGMA synchronous = FULL;
             CREATE TABLE IF NOT EXISTS punches (
                 seq INTEGER PRIMARY KEY AUTOINCREMENT,
                 person_id INTEGER NOT NULL,
                 score REAL NOT NULL,
                 liveness REAL,
                 at TEXT NOT NULL,
                 actor TEXT NOT NULL
             );
             CREATE TABLE IF NOT EXISTS notes (
                 seq INTEGER PRIMARY KEY AUTOINCREMENT,
                 actor TEXT NOT NULL,
                 action TEXT NOT NULL,
                 detail TEXT NOT NULL,
                 at TEXT NOT NULL
             );",
        )
        .map_err(|e| super::classify(e, path))?;
        Ok(Self {
            conn,
            path: path.to_path_buf(),
        })
    }

    /// Keeps a punch made now, for when the server answers.
    pub fn queue(
        &self,
        person_id: i64,
        score: f32,
        liveness: Option<f32>,
        actor: &str,
    ) -> StoreResult<QueuedPunch> {
        let at = now();
        self.conn
            .execute(
                "INSERT INTO punches (person_id, score, liveness, at, actor) VALUES (?1, ?2, ?3, ?4, ?5)",
                rusqlite::params![person_id, score, liveness, at, actor],
            )
            .map_err(|e| super::classify(e, &self.path))?;
        Ok(QueuedPunch {
            seq: self.conn.last_insert_rowid(),
            person_id,
            score,
            liveness,
            at,
            actor: actor.to_string(),
        })
    }

    /// Keeps an audit row made now, for when the server answers.
    pub fn queue_note(&self, actor: &str, action: &str, detail: &str) -> StoreResult<()> {
        self.conn
            .execute(
                "INSERT INTO notes (actor, action, detail, at) VALUES (?1, ?2, ?3, ?4)",
                rusqlite::params![actor, action, detail, now()],
            )
            .map(|_| ())
            .map_err(|e| super::classify(e, &self.path))
    }

    /// Punches and audit rows still waiting.
    pub fn waiting(&self) -> StoreResult<usize> {
        self.conn
            .query_row(
                "SELECT (SELECT count(*) FROM punches) + (SELECT count(*) FROM notes)",
                [],
                |row| row.get::<_, i64>(0),
            )
            .map(|count| count as usize)
            .map_err(|e| super::classify(e, &self.path))
    }

    fn oldest(&self) -> StoreResult<Option<QueuedPunch>> {
        self.conn
            .query_row(
                "SELECT seq, person_id, score, liveness, at, actor FROM punches ORDER BY seq LIMIT 1",
                [],
                |row| {
                    Ok(QueuedPunch {
                        seq: row.get(0)?,
                        person_id: row.get(1)?,
                        score: row.get(2)?,
                        liveness: row.get(3)?,
                        at: row.get(4)?,
                        actor: row.get(5)?,
                    })
                },
            )
            .optional()
            .map_err(|e| super::classify(e, &self.path))
    }

    /// Sends the waiting punches to `store`, oldest first, until none is left or the
    /// server goes away again (the rest wait for the next call).
    pub fn deliver(
        &self,
        store: &mut Store,
        repeat_window: chrono::Duration,
    ) -> StoreResult<Delivery> {
        let mut delivery = Delivery::default();
        while let Some(punch) = self.oldest()? {
            // The file is the kiosk's own, but a file all the same: what it says is checked
            // as any other input before the server records it.
            let sent = check_text("actor", &punch.actor).and_then(|()| {
                store.punch_delayed(
                    punch.person_id,
                    punch.score,
                    punch.liveness,
                    &punch.at,
                    repeat_window,
                    &punch.actor,
                )
            });
            match sent {
                Ok(Punch::Recorded { .. }) => delivery.recorded += 1,
                Ok(Punch::Repeat { .. }) => delivery.repeats += 1,
                Ok(Punch::Queued { .. }) => unreachable!("a delayed punch is never queued again"),
                Err(StoreError::Unreachable { .. }) => {
                    delivery.waiting = self.waiting()?;
                    return Ok(delivery);
                }
                Err(error) => {
                    tracing::error!(%error, ?punch, "a queued punch was refused by the server and dropped");
                    delivery.refused += 1;
                }
            }
            self.forget("punches", punch.seq)?;
        }
        while let Some(note) = self.oldest_note()? {
            let QueuedNote {
                seq,
                actor,
                action,
                detail,
                at,
            } = note;
            let checked = check_text("actor", &actor)
                .and_then(|()| check_text("action", &action))
                .and_then(|()| {
                    parse_time(&at)
                        .map(|_| ())
                        .map_err(StoreError::InvalidSetting)
                });
            match checked.and_then(|()| store.append_now(&actor, &action, &detail, Some(&at))) {
                Ok(()) => delivery.notes += 1,
                Err(StoreError::Unreachable { .. }) => {
                    delivery.waiting = self.waiting()?;
                    return Ok(delivery);
                }
                Err(error) => {
                    tracing::error!(%error, action, at, "a queued audit row was refused by the server and dropped");
                    delivery.refused += 1;
                }
            }
            self.forget("notes", seq)?;
        }
        Ok(delivery)
    }

    fn oldest_note(&self) -> StoreResult<Option<QueuedNote>> {
        self.conn
            .query_row(
                "SELECT seq, actor, action, detail, at FROM notes ORDER BY seq LIMIT 1",
                [],
                |row| {
                    Ok(QueuedNote {
                        seq: row.get(0)?,
                        actor: row.get(1)?,
                        action: row.get(2)?,
                        detail: row.get(3)?,
                        at: row.get(4)?,
                    })
                },
            )
            .optional()
            .map_err(|e| super::classify(e, &self.path))
    }

    fn forget(&self, table: &str, seq: i64) -> StoreResult<()> {
        self.conn
            .execute(&format!("DELETE FROM {table} WHERE seq = ?1"), [seq])
            .map(|_| ())
            .map_err(|e| super::classify(e, &self.path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::Modality;

    #[test]
    fn a_row_edited_in_the_outbox_file_is_refused_not_recorded() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open_in_memory().unwrap();
        let template = super::super::NewTemplate {
            embedding: vec![0.1; 128],
            quality: 0.9,
            source_sha256: "s".into(),
            crop: None,
        };
        let person = store
            .enroll("Ada", "E1", Modality::Face, "m", &[template], "t")
            .unwrap();
        let outbox = Outbox::open(&dir.path().join("outbox.db")).unwrap();
        for _ in 0..3 {
            outbox.queue(person, 0.9, None, "kiosk").unwrap();
        }
        outbox
            .queue_note("kiosk", "presentation_attack", "{}")
            .unwrap();
        outbox
            .conn
            .execute_batch(
                "UPDATE punches SET actor = char(27) || '[2J' WHERE seq = 1;
                 UPDATE punches SET at = '2999-01-01T08:00:00.000Z' WHERE seq = 3;
                 UPDATE notes SET at = 'yesterday';",
            )
            .unwrap();
        let delivery = outbox
            .deliver(&mut store, chrono::Duration::zero())
            .unwrap();
        assert_eq!(
            (delivery.recorded, delivery.refused, delivery.notes),
            (1, 3, 0),
            "{delivery:?}"
        );
        assert_eq!(outbox.waiting().unwrap(), 0);
        assert_eq!(store.attendance(None, None).unwrap().len(), 1);
    }
}
