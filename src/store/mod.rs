//! The one SQLite file: people, reference templates, attendance, verification decisions,
//! settings and a hash-chained audit log.
//!
//! Every write that belongs together is one transaction (an enrollment is a person and all
//! their templates, or nothing). The file is opened in WAL mode with a busy timeout so the
//! window and a CLI can share it; a file that is not a Vouch database is refused and never
//! written to.

mod audit;

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use rusqlite_migration::{M, Migrations};
use serde::Serialize;

pub use crate::error::{StoreError, StoreResult};
pub use audit::{AuditEntry, AuditReport};

use crate::types::{Bands, Decision, Modality, PunchKind};

/// Marks a Vouch database (`PRAGMA application_id`), "VOUC".
const APPLICATION_ID: i32 = 0x564F_5543;
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Serialize)]
pub struct Person {
    pub id: i64,
    pub name: String,
    pub external_id: String,
    pub modality: Modality,
    pub created_at: String,
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
}

/// A verification recorded earlier: what a change of bands would be replayed on.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct PastDecision {
    pub score: f32,
    pub decision: Decision,
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
    /// PNG bytes of the aligned crop.
    pub crop: Option<Vec<u8>>,
}

/// One attendance event as exported and imported (CSV or JSON).
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct AttendanceRecord {
    pub at: String,
    pub kind: PunchKind,
    pub score: f32,
    /// Absent when the person was deleted after the punch.
    pub external_id: Option<String>,
    pub name: Option<String>,
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
    conn: Connection,
    path: PathBuf,
}

fn migrations() -> Migrations<'static> {
    Migrations::new(vec![M::up(include_str!("schema.sql"))])
}

/// RFC 3339 in UTC to the millisecond, so that lexical order is time order.
pub fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

impl Store {
    /// Opens (or creates) the database at `path`, migrating it to the current schema.
    pub fn open(path: &Path) -> StoreResult<Self> {
        let existed = path.exists()
            && std::fs::metadata(path)
                .map(|m| m.len() > 0)
                .unwrap_or(false);
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| classify(e, path))?;
        let mut store = Self {
            conn,
            path: path.to_path_buf(),
        };
        store.prepare(existed)?;
        Ok(store)
    }

    pub fn open_in_memory() -> StoreResult<Self> {
        let mut store = Self {
            conn: Connection::open_in_memory()?,
            path: PathBuf::from(":memory:"),
        };
        store.prepare(false)?;
        Ok(store)
    }

    fn prepare(&mut self, existed: bool) -> StoreResult<()> {
        let path = self.path.clone();
        self.conn.busy_timeout(BUSY_TIMEOUT)?;
        // Reading the header first: a foreign or corrupt file fails here, before any write.
        let application_id: i32 = self
            .conn
            .query_row("PRAGMA application_id", [], |row| row.get(0))
            .map_err(|e| classify(e, &path))?;
        if existed {
            let tables: i64 = self
                .conn
                .query_row("SELECT count(*) FROM sqlite_schema", [], |row| row.get(0))
                .map_err(|e| classify(e, &path))?;
            if application_id != APPLICATION_ID && tables > 0 {
                return Err(StoreError::Foreign { path });
            }
            let check: String = self
                .conn
                .query_row("PRAGMA quick_check", [], |row| row.get(0))
                .map_err(|e| classify(e, &path))?;
            if check != "ok" {
                return Err(StoreError::Corrupt {
                    reason: check,
                    path,
                });
            }
        }
        self.conn.pragma_update(None, "foreign_keys", true)?;
        if self.path != Path::new(":memory:") {
            self.conn
                .query_row("PRAGMA journal_mode = WAL", [], |_| Ok(()))
                .map_err(|e| classify(e, &path))?;
            self.conn.pragma_update(None, "synchronous", "NORMAL")?;
        }
        self.conn
            .pragma_update(None, "application_id", APPLICATION_ID)?;
        migrations().to_latest(&mut self.conn)?;
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Enrolls a person with all their templates in one transaction, with an audit row.
    pub fn enroll(
        &mut self,
        name: &str,
        external_id: &str,
        modality: Modality,
        model_id: &str,
        templates: &[NewTemplate],
        actor: &str,
    ) -> StoreResult<i64> {
        let tx = self.conn.transaction()?;
        let exists: Option<i64> = tx
            .query_row(
                "SELECT id FROM people WHERE external_id = ?1 AND modality = ?2",
                params![external_id, modality],
                |row| row.get(0),
            )
            .optional()?;
        if exists.is_some() {
            return Err(StoreError::Duplicate {
                external_id: external_id.to_string(),
                modality,
            });
        }
        let at = now();
        tx.execute(
            "INSERT INTO people (name, external_id, modality, created_at) VALUES (?1, ?2, ?3, ?4)",
            params![name, external_id, modality, at],
        )?;
        let person_id = tx.last_insert_rowid();
        for template in templates {
            insert_template(&tx, person_id, model_id, template, &at)?;
        }
        audit::append(
            &tx,
            actor,
            "enroll",
            &serde_json::json!({
                "person_id": person_id, "external_id": external_id, "name": name,
                "modality": modality, "templates": templates.len(), "model": model_id,
            })
            .to_string(),
        )?;
        tx.commit()?;
        Ok(person_id)
    }

    pub fn people(&self, modality: Option<Modality>) -> StoreResult<Vec<Person>> {
        self.people_where("?1 IS NULL OR p.modality = ?1", &[&modality])
    }

    pub fn person_by_external_id(
        &self,
        external_id: &str,
        modality: Modality,
    ) -> StoreResult<Person> {
        self.people_where(
            "p.external_id = ?1 AND p.modality = ?2",
            &[&external_id, &modality],
        )?
        .pop()
        .ok_or_else(|| StoreError::UnknownPerson(external_id.to_string()))
    }

    pub fn person(&self, person_id: i64) -> StoreResult<Person> {
        self.people_where("p.id = ?1", &[&person_id])?
            .pop()
            .ok_or_else(|| StoreError::UnknownPerson(person_id.to_string()))
    }

    /// People matching an SQL condition on `p` (people), with their template counts.
    fn people_where(
        &self,
        condition: &str,
        values: &[&dyn rusqlite::ToSql],
    ) -> StoreResult<Vec<Person>> {
        let mut statement = self.conn.prepare(&format!(
            "SELECT p.id, p.name, p.external_id, p.modality, p.created_at, count(t.id)
             FROM people p LEFT JOIN templates t ON t.person_id = p.id
             WHERE {condition}
             GROUP BY p.id ORDER BY p.name, p.id"
        ))?;
        let rows = statement.query_map(values, |row| {
            Ok(Person {
                id: row.get(0)?,
                name: row.get(1)?,
                external_id: row.get(2)?,
                modality: row.get(3)?,
                created_at: row.get(4)?,
                templates: row.get::<_, i64>(5)? as usize,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Deletes a person, their templates and crops; the audit keeps a row saying so.
    pub fn delete_person(&mut self, person_id: i64, actor: &str) -> StoreResult<()> {
        let tx = self.conn.transaction()?;
        let deleted = tx.execute("DELETE FROM people WHERE id = ?1", params![person_id])?;
        if deleted == 0 {
            return Err(StoreError::UnknownPerson(person_id.to_string()));
        }
        audit::append(
            &tx,
            actor,
            "delete_person",
            &serde_json::json!({ "person_id": person_id }).to_string(),
        )?;
        tx.commit()?;
        Ok(())
    }

    /// All templates made by `model_id` for one modality: embeddings of other models are
    /// never returned, so they are never compared.
    pub fn templates(
        &self,
        modality: Modality,
        model_id: &str,
    ) -> StoreResult<Vec<StoredTemplate>> {
        let mut statement = self.conn.prepare(
            "SELECT t.id, t.person_id, t.embedding FROM templates t JOIN people p ON p.id = t.person_id
             WHERE p.modality = ?1 AND t.model_id = ?2 ORDER BY t.id",
        )?;
        let rows = statement.query_map(params![modality, model_id], read_template)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// One person's templates of `model_id`.
    pub fn person_templates(
        &self,
        person_id: i64,
        model_id: &str,
    ) -> StoreResult<Vec<StoredTemplate>> {
        let mut statement = self.conn.prepare(
            "SELECT id, person_id, embedding FROM templates WHERE person_id = ?1 AND model_id = ?2 ORDER BY id",
        )?;
        let rows = statement.query_map(params![person_id, model_id], read_template)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Records a check-in or check-out for `person_id`, unless their last punch is under
    /// `repeat_window` old (a second look at the camera is not a second punch). The first
    /// punch of a UTC day is "in", then they alternate.
    pub fn punch(
        &mut self,
        person_id: i64,
        score: f32,
        repeat_window: chrono::Duration,
        actor: &str,
    ) -> StoreResult<Punch> {
        let tx = self.conn.transaction()?;
        let last: Option<(PunchKind, String)> = tx
            .query_row(
                "SELECT kind, at FROM attendance WHERE person_id = ?1 ORDER BY at DESC, id DESC LIMIT 1",
                params![person_id],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .optional()?;
        let now = chrono::Utc::now();
        let last_time = last.as_ref().and_then(|(_, at)| {
            chrono::DateTime::parse_from_rfc3339(at)
                .ok()
                .map(|t| t.with_timezone(&chrono::Utc))
        });
        if let (Some((kind, at)), Some(time)) = (&last, last_time)
            && now - time < repeat_window
        {
            return Ok(Punch::Repeat {
                last_kind: *kind,
                last_at: at.clone(),
            });
        }
        let kind = match (&last, last_time) {
            (Some((PunchKind::In, _)), Some(time)) if time.date_naive() == now.date_naive() => {
                PunchKind::Out
            }
            _ => PunchKind::In,
        };
        let at = now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        tx.execute(
            "INSERT INTO attendance (person_id, kind, at, score) VALUES (?1, ?2, ?3, ?4)",
            params![person_id, kind, at, score],
        )?;
        audit::append(
            &tx,
            actor,
            "attendance",
            &serde_json::json!({ "person_id": person_id, "kind": kind, "score": score })
                .to_string(),
        )?;
        tx.commit()?;
        Ok(Punch::Recorded { kind, at })
    }

    /// A verification outcome and its audit row, together.
    pub fn record_decision(
        &mut self,
        person_id: i64,
        modality: Modality,
        score: f32,
        bands: Bands,
        decision: Decision,
        operator: &str,
    ) -> StoreResult<()> {
        let tx = self.conn.transaction()?;
        tx.execute(
            "INSERT INTO decisions (person_id, modality, score, threshold_high, threshold_low, decision, operator, at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![person_id, modality, score, bands.high, bands.low, decision.as_str(), operator, now()],
        )?;
        audit::append(
            &tx,
            operator,
            "verify",
            &serde_json::json!({ "person_id": person_id, "score": score, "decision": decision.as_str() }).to_string(),
        )?;
        tx.commit()?;
        Ok(())
    }

    pub fn audit_append(&mut self, actor: &str, action: &str, detail: &str) -> StoreResult<()> {
        let tx = self.conn.transaction()?;
        audit::append(&tx, actor, action, detail)?;
        tx.commit()?;
        Ok(())
    }

    pub fn audit_verify(&self) -> StoreResult<AuditReport> {
        audit::verify(&self.conn)
    }

    /// The decision bands for a modality: the operator's saved setting, else the default.
    pub fn bands(&self, modality: Modality) -> StoreResult<Bands> {
        let saved: Option<String> = self
            .conn
            .query_row(
                "SELECT value FROM settings WHERE key = ?1",
                params![bands_key(modality)],
                |row| row.get(0),
            )
            .optional()?;
        Ok(saved
            .and_then(|text| serde_json::from_str(&text).ok())
            .unwrap_or_else(|| crate::matching::default_bands(modality)))
    }

    /// Saves the bands of a modality, with an audit row naming the old and new values.
    pub fn set_bands(&mut self, modality: Modality, bands: Bands, actor: &str) -> StoreResult<()> {
        if !bands.is_valid() {
            return Err(StoreError::InvalidSetting(format!(
                "bands must satisfy 0 <= low <= high <= 1 (got low {}, high {})",
                bands.low, bands.high
            )));
        }
        let old = self.bands(modality)?;
        let tx = self.conn.transaction()?;
        tx.execute(
            "INSERT INTO settings (key, value) VALUES (?1, ?2)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            params![
                bands_key(modality),
                serde_json::to_string(&bands).expect("bands serialise")
            ],
        )?;
        audit::append(
            &tx,
            actor,
            "set_bands",
            &serde_json::json!({ "modality": modality, "old": old, "new": bands }).to_string(),
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Attendance events between two RFC 3339 instants (inclusive, either open), oldest first.
    pub fn attendance(
        &self,
        from: Option<&str>,
        to: Option<&str>,
    ) -> StoreResult<Vec<AttendanceRecord>> {
        let mut statement = self.conn.prepare(
            "SELECT a.at, a.kind, a.score, p.external_id, p.name
             FROM attendance a LEFT JOIN people p ON p.id = a.person_id
             WHERE (?1 IS NULL OR a.at >= ?1) AND (?2 IS NULL OR a.at <= ?2)
             ORDER BY a.at, a.id",
        )?;
        let rows = statement.query_map(params![from, to], |row| {
            Ok(AttendanceRecord {
                at: row.get(0)?,
                kind: row.get(1)?,
                score: row.get(2)?,
                external_id: row.get(3)?,
                name: row.get(4)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Adds attendance events from another kiosk or a manual sheet, all or none. An
    /// event already present (same person, kind and time) is skipped, so importing the
    /// same file twice changes nothing. Returns (added, skipped).
    pub fn import_attendance(
        &mut self,
        records: &[AttendanceRecord],
        actor: &str,
    ) -> StoreResult<(usize, usize)> {
        let tx = self.conn.transaction()?;
        let (mut added, mut skipped) = (0, 0);
        for (line, record) in records.iter().enumerate() {
            let invalid =
                |why: String| StoreError::InvalidSetting(format!("record {}: {why}", line + 1));
            let at = chrono::DateTime::parse_from_rfc3339(&record.at)
                .map_err(|e| invalid(format!("time {:?} is not RFC 3339: {e}", record.at)))?
                .with_timezone(&chrono::Utc)
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
            let external_id = record
                .external_id
                .as_deref()
                .ok_or_else(|| invalid("no person id".to_string()))?;
            let person_id: i64 = tx
                .query_row(
                    "SELECT id FROM people WHERE external_id = ?1 AND modality = 'face'",
                    params![external_id],
                    |row| row.get(0),
                )
                .optional()?
                .ok_or_else(|| invalid(format!("nobody is enrolled with id {external_id}")))?;
            let exists: bool = tx.query_row(
                "SELECT EXISTS (SELECT 1 FROM attendance WHERE person_id = ?1 AND kind = ?2 AND at = ?3)",
                params![person_id, record.kind, at],
                |row| row.get(0),
            )?;
            if exists {
                skipped += 1;
                continue;
            }
            tx.execute(
                "INSERT INTO attendance (person_id, kind, at, score) VALUES (?1, ?2, ?3, ?4)",
                params![person_id, record.kind, at, record.score],
            )?;
            added += 1;
        }
        audit::append(
            &tx,
            actor,
            "import_attendance",
            &serde_json::json!({ "added": added, "skipped": skipped }).to_string(),
        )?;
        tx.commit()?;
        Ok((added, skipped))
    }

    /// A consistent copy of the whole database, taken with SQLite's online backup while
    /// others may keep writing. The copy is written beside `target` and renamed into
    /// place, so an interrupted backup never leaves a half file under that name.
    pub fn backup_to(&self, target: &Path) -> StoreResult<()> {
        let partial = target.with_extension("partial");
        let _ = std::fs::remove_file(&partial);
        {
            let mut copy = Connection::open(&partial)?;
            let backup = rusqlite::backup::Backup::new(&self.conn, &mut copy)?;
            backup.run_to_completion(256, Duration::from_millis(5), None)?;
        }
        std::fs::rename(&partial, target).map_err(|e| StoreError::Io {
            source: e,
            path: target.to_path_buf(),
        })?;
        Ok(())
    }

    /// Replaces this database's content with a backup, after checking that the backup is
    /// an intact Vouch database (so a wrong file cannot wipe the store).
    pub fn restore_from(&mut self, source: &Path, actor: &str) -> StoreResult<()> {
        let checked = Store::open_existing(source)?;
        let report = checked.audit_verify()?;
        if !report.intact {
            return Err(StoreError::Corrupt {
                reason: format!("its audit log is broken at row {:?}", report.first_bad_id),
                path: source.to_path_buf(),
            });
        }
        drop(checked);
        self.conn
            .restore(
                rusqlite::MAIN_DB,
                source,
                None::<fn(rusqlite::backup::Progress)>,
            )
            .map_err(|e| classify(e, &self.path))?;
        self.audit_append(
            actor,
            "restore",
            &serde_json::json!({ "from": source.display().to_string() }).to_string(),
        )
    }

    /// Opens a database that must already exist (it is never created).
    pub fn open_existing(path: &Path) -> StoreResult<Self> {
        if !path.is_file() {
            return Err(StoreError::Io {
                source: std::io::Error::from(std::io::ErrorKind::NotFound),
                path: path.to_path_buf(),
            });
        }
        Self::open(path)
    }

    /// Templates whose crop has not yet been embedded by `model_id` (the work of a
    /// re-embedding after a model change), with their crops.
    pub fn templates_missing_model(
        &self,
        modality: Modality,
        model_id: &str,
    ) -> StoreResult<Vec<CropTemplate>> {
        let mut statement = self.conn.prepare(
            "SELECT t.id, t.person_id, t.quality, t.source_sha256, t.crop
             FROM templates t JOIN people p ON p.id = t.person_id
             WHERE p.modality = ?1 AND t.model_id <> ?2 AND t.crop IS NOT NULL
               AND NOT EXISTS (SELECT 1 FROM templates n
                               WHERE n.person_id = t.person_id AND n.model_id = ?2
                                 AND n.source_sha256 = t.source_sha256)
             GROUP BY t.person_id, t.source_sha256
             ORDER BY t.person_id, t.id",
        )?;
        let rows = statement.query_map(params![modality, model_id], |row| {
            Ok(CropTemplate {
                template_id: row.get(0)?,
                person_id: row.get(1)?,
                quality: row.get(2)?,
                source_sha256: row.get(3)?,
                crop: row.get(4)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Adds templates of `model_id` to existing people (re-embedding), in one transaction.
    pub fn add_templates(
        &mut self,
        model_id: &str,
        templates: &[(i64, NewTemplate)],
        actor: &str,
    ) -> StoreResult<()> {
        let tx = self.conn.transaction()?;
        let at = now();
        for (person_id, template) in templates {
            insert_template(&tx, *person_id, model_id, template, &at)?;
        }
        audit::append(
            &tx,
            actor,
            "reembed",
            &serde_json::json!({ "model": model_id, "templates": templates.len() }).to_string(),
        )?;
        tx.commit()?;
        Ok(())
    }
}

impl Store {
    pub fn setting(&self, key: &str) -> StoreResult<Option<String>> {
        Ok(self
            .conn
            .query_row(
                "SELECT value FROM settings WHERE key = ?1",
                params![key],
                |row| row.get(0),
            )
            .optional()?)
    }

    /// Saves a setting with an audit row.
    pub fn set_setting(&mut self, key: &str, value: &str, actor: &str) -> StoreResult<()> {
        let tx = self.conn.transaction()?;
        tx.execute(
            "INSERT INTO settings (key, value) VALUES (?1, ?2)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            params![key, value],
        )?;
        audit::append(
            &tx,
            actor,
            "setting",
            &serde_json::json!({ "key": key, "value": value }).to_string(),
        )?;
        tx.commit()?;
        Ok(())
    }

    /// The first stored crop of a person (a thumbnail for lists).
    pub fn first_crop(&self, person_id: i64) -> StoreResult<Option<Vec<u8>>> {
        Ok(self
            .conn
            .query_row(
                "SELECT crop FROM templates WHERE person_id = ?1 AND crop IS NOT NULL ORDER BY id LIMIT 1",
                params![person_id],
                |row| row.get(0),
            )
            .optional()?)
    }

    /// A person's stored crops for one model, in enrollment order.
    pub fn crops(&self, person_id: i64, model_id: &str) -> StoreResult<Vec<Vec<u8>>> {
        let mut statement = self.conn.prepare(
            "SELECT crop FROM templates WHERE person_id = ?1 AND model_id = ?2 AND crop IS NOT NULL ORDER BY id",
        )?;
        let rows = statement.query_map(params![person_id, model_id], |row| row.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Every recorded verification of a modality, oldest first.
    pub fn decisions(&self, modality: Modality) -> StoreResult<Vec<PastDecision>> {
        let mut statement = self
            .conn
            .prepare("SELECT score, decision FROM decisions WHERE modality = ?1 ORDER BY id")?;
        let rows = statement.query_map(params![modality], |row| {
            Ok(PastDecision {
                score: row.get(0)?,
                decision: row.get(1)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Each enrolled reference crop of a modality once (a re-embedded template shares its
    /// crop with the template it came from), with the person's id.
    pub fn reference_crops(&self, modality: Modality) -> StoreResult<Vec<ReferenceCrop>> {
        let mut statement = self.conn.prepare(
            "SELECT p.external_id, t.source_sha256, t.crop
             FROM templates t JOIN people p ON p.id = t.person_id
             WHERE p.modality = ?1 AND t.crop IS NOT NULL
             GROUP BY t.person_id, t.source_sha256
             ORDER BY p.external_id, min(t.id)",
        )?;
        let rows = statement.query_map(params![modality], |row| {
            Ok(ReferenceCrop {
                external_id: row.get(0)?,
                source_sha256: row.get(1)?,
                crop: row.get(2)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

fn bands_key(modality: Modality) -> String {
    format!("bands.{}", modality)
}

fn insert_template(
    tx: &rusqlite::Transaction,
    person_id: i64,
    model_id: &str,
    template: &NewTemplate,
    at: &str,
) -> StoreResult<()> {
    tx.execute(
        "INSERT INTO templates (person_id, model_id, embedding, quality, source_sha256, crop, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![
            person_id,
            model_id,
            embedding_to_blob(&template.embedding),
            template.quality,
            template.source_sha256,
            template.crop,
            at
        ],
    )?;
    Ok(())
}

fn classify(error: rusqlite::Error, path: &Path) -> StoreError {
    use rusqlite::ErrorCode;
    match error.sqlite_error_code() {
        Some(ErrorCode::NotADatabase) => StoreError::Foreign {
            path: path.to_path_buf(),
        },
        Some(ErrorCode::DatabaseCorrupt) => StoreError::Corrupt {
            reason: error.to_string(),
            path: path.to_path_buf(),
        },
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => StoreError::Locked {
            path: path.to_path_buf(),
        },
        _ => StoreError::Sql(error),
    }
}

/// A row of `SELECT id, person_id, embedding FROM templates ...`.
fn read_template(row: &rusqlite::Row) -> rusqlite::Result<StoredTemplate> {
    Ok(StoredTemplate {
        template_id: row.get(0)?,
        person_id: row.get(1)?,
        embedding: blob_to_embedding(&row.get::<_, Vec<u8>>(2)?),
    })
}

pub fn embedding_to_blob(embedding: &[f32]) -> Vec<u8> {
    embedding.iter().flat_map(|v| v.to_le_bytes()).collect()
}

pub fn blob_to_embedding(blob: &[u8]) -> Vec<f32> {
    blob.chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

/// The words the store writes as TEXT; anything else read back (an edited file) is an
/// error, never a default.
macro_rules! text_column {
    ($type:ty, $what:literal) => {
        impl rusqlite::types::ToSql for $type {
            fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
                Ok(self.as_str().into())
            }
        }

        impl rusqlite::types::FromSql for $type {
            fn column_result(
                value: rusqlite::types::ValueRef<'_>,
            ) -> rusqlite::types::FromSqlResult<Self> {
                let text = value.as_str()?;
                <$type>::parse(text).ok_or_else(|| {
                    rusqlite::types::FromSqlError::Other(
                        format!(concat!("not a ", $what, ": {:?}"), text).into(),
                    )
                })
            }
        }
    };
}

text_column!(Modality, "modality");
text_column!(Decision, "decision");
text_column!(PunchKind, "punch kind");
