//! What the kiosk and the desk record: punches, verification decisions, settings (the
//! bands among them), and attendance imported from elsewhere. Values are checked on the
//! way in and again on the way back: a score is a number in [0, 1], a time is a time.

use std::collections::HashMap;
use std::collections::hash_map::Entry;

use super::sql::{Db, Dialect, OptionalExtension, params};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::ledger::{ATTENDANCE, DECISIONS, SETTINGS};
use super::seals;
use super::{PastDecision, Punch, Store, now};
use crate::error::{StoreError, StoreResult};
use crate::types::{Bands, Decision, Modality, PunchKind};

/// How far in the future an imported event may lie: clocks of kiosks drift.
const CLOCK_SKEW: chrono::Duration = chrono::Duration::minutes(5);

/// One attendance event as exported and imported (CSV or JSON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttendanceRecord {
    pub at: String,
    pub kind: PunchKind,
    /// The face's match score; 0 for a correction (no face was matched).
    pub score: f32,
    /// Absent when the person was deleted after the punch.
    pub external_id: Option<String>,
    pub name: Option<String>,
    /// Who added this punch afterwards and why, as its audit row says; not exported (the
    /// receiving site's own audit records the import).
    #[serde(skip)]
    pub correction: Option<Correction>,
}

/// A punch a supervisor added afterwards.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Correction {
    pub by: String,
    pub reason: String,
}

/// The audit action of a correction; its detail names the attendance row it wrote.
const CORRECTION_ACTION: &str = "attendance_correction";

/// One verification to record.
#[derive(Debug, Clone, Copy)]
pub struct Verification<'a> {
    pub person_id: i64,
    pub modality: Modality,
    pub score: f32,
    pub bands: Bands,
    pub decision: Decision,
    /// The sha256 (hex) of the file that was judged, kept in the decision's audit row so the
    /// record names its evidence (which cheque scan was accepted); none for a picture that
    /// never was a file (a camera frame).
    pub evidence_sha256: Option<&'a str>,
}

/// An earlier verification of the very same file, as that decision's audit row records it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EarlierCheck {
    /// When, RFC 3339 in UTC.
    pub at: String,
    /// Who checked it.
    pub by: String,
    pub decision: Decision,
    pub score: f32,
    /// The account it was checked against, as "Name (id)"; None when it was deleted since.
    pub account: Option<String>,
}

impl EarlierCheck {
    /// The account as a person reads it, a deleted one included.
    pub fn against(&self) -> &str {
        self.account
            .as_deref()
            .unwrap_or("an account deleted since")
    }
}

fn check_sha256(digest: &str) -> Result<(), String> {
    if digest.len() == 64
        && digest
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    {
        Ok(())
    } else {
        Err(format!("{digest:?} is not a sha256 in lowercase hex"))
    }
}

/// A verification's audit detail, as `record_decision` writes it.
#[derive(Deserialize)]
struct VerifyDetail {
    person_id: i64,
    score: f32,
    decision: String,
    evidence_sha256: Option<String>,
}

impl VerifyDetail {
    /// The detail with its score, digest and decision checked.
    fn parse(detail: &str) -> Result<(Self, Decision), String> {
        let parsed: Self = serde_json::from_str(detail)
            .map_err(|e| format!("its detail is not a verification's: {e}"))?;
        check_score(parsed.score)?;
        if let Some(digest) = &parsed.evidence_sha256 {
            check_sha256(digest)?;
        }
        let decision = Decision::parse(&parsed.decision)
            .ok_or_else(|| format!("{:?} is not a decision", parsed.decision))?;
        Ok((parsed, decision))
    }
}

fn check_score(score: f32) -> Result<(), String> {
    if score.is_finite() && (0.0..=1.0).contains(&score) {
        Ok(())
    } else {
        Err(format!("the score {score} is not a number in [0, 1]"))
    }
}

pub(super) fn parse_time(text: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| format!("the time {text:?} is not RFC 3339: {e}"))
}

pub(super) fn bands_key(modality: Modality) -> String {
    format!("bands.{modality}")
}

/// A check-out when the last punch was a check-in on the same day in `zone` (the kiosk's
/// local day: in UTC+10 a day's 08:00 check-in and 17:00 check-out fall on two UTC dates),
/// else a check-in.
fn next_punch_kind<Z: chrono::TimeZone>(
    last: Option<(PunchKind, DateTime<Utc>)>,
    now: DateTime<Utc>,
    zone: &Z,
) -> PunchKind {
    let local_day = |time: DateTime<Utc>| time.with_timezone(zone).date_naive();
    match last {
        Some((PunchKind::In, time)) if local_day(time) == local_day(now) => PunchKind::Out,
        _ => PunchKind::In,
    }
}

const OFFSET_PREFIX: &str = "offset.person.";

pub(super) fn offset_key(person_id: i64) -> String {
    format!("{OFFSET_PREFIX}{person_id}")
}

/// The most a person's thresholds may move from everyone's: a larger offset would be a
/// different policy for one person, not a correction.
pub const MAX_PERSON_OFFSET: f32 = 0.15;

pub(super) fn valid_offset(offset: f32) -> bool {
    offset.is_finite() && offset.abs() <= MAX_PERSON_OFFSET
}

impl Store {
    /// Records a check-in or check-out for `person_id`, unless their last punch is under
    /// `repeat_window` old (a second look at the camera is not a second punch). The first
    /// punch of a UTC day is "in", then they alternate.
    /// `liveness`, when the camera's frames were judged, goes into the audit row.
    pub fn punch(
        &mut self,
        person_id: i64,
        score: f32,
        liveness: Option<f32>,
        repeat_window: chrono::Duration,
        actor: &str,
    ) -> StoreResult<Punch> {
        if self.outbox.is_none() {
            return self.record_punch(person_id, score, liveness, None, repeat_window, actor);
        }
        // Punches arrive in the order they were made: while earlier ones still wait, a
        // new one waits behind them.
        if self.outbox_waiting()? > 0 && self.deliver_outbox(repeat_window)?.waiting > 0 {
            return self.queue_punch(person_id, score, liveness, actor);
        }
        match self.record_punch(person_id, score, liveness, None, repeat_window, actor) {
            Err(StoreError::Unreachable { .. }) => {
                self.queue_punch(person_id, score, liveness, actor)
            }
            punched => punched,
        }
    }

    fn queue_punch(
        &mut self,
        person_id: i64,
        score: f32,
        liveness: Option<f32>,
        actor: &str,
    ) -> StoreResult<Punch> {
        check_punch_scores(score, liveness)?;
        let outbox = self.outbox.as_ref().expect("a kiosk with an outbox");
        let queued = outbox.queue(person_id, score, liveness, actor)?;
        tracing::warn!(person_id, at = %queued.at, "the server cannot be reached: the punch waits in the outbox");
        Ok(Punch::Queued { at: queued.at })
    }

    /// A punch a kiosk queued while the server was away (`Outbox`), recorded at the time
    /// it was made, with the audit row saying it arrived late. Sent again after a crash
    /// between the server's commit and the outbox's, it is found (the same person at the
    /// same instant) and not recorded twice. Its kind and repeat window are judged
    /// against the punches before it.
    pub fn punch_delayed(
        &mut self,
        person_id: i64,
        score: f32,
        liveness: Option<f32>,
        at: &str,
        repeat_window: chrono::Duration,
        actor: &str,
    ) -> StoreResult<Punch> {
        let time = parse_time(at).map_err(StoreError::InvalidSetting)?;
        // Made and sent on the same kiosk's clock: one from the future was edited (the
        // slack is for the clock being set back a little meanwhile).
        if time > Utc::now() + chrono::Duration::minutes(5) {
            return Err(StoreError::InvalidSetting(format!(
                "a queued punch made at {at}, after now"
            )));
        }
        self.record_punch(person_id, score, liveness, Some(time), repeat_window, actor)
    }

    fn record_punch(
        &mut self,
        person_id: i64,
        score: f32,
        liveness: Option<f32>,
        made_at: Option<DateTime<Utc>>,
        repeat_window: chrono::Duration,
        actor: &str,
    ) -> StoreResult<Punch> {
        check_punch_scores(score, liveness)?;
        let path = self.path.clone();
        let punched = self.write(actor, "attendance", |tx, _, changes| {
            let made_text = made_at.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
            if let Some(at) = &made_text {
                let delivered: Option<PunchKind> = tx
                    .query_row(
                        "SELECT kind FROM attendance WHERE person_id = ?1 AND at = ?2",
                        params![person_id, at],
                        |row| row.get(0),
                    )
                    .optional()?;
                if let Some(kind) = delivered {
                    let repeat = Punch::Repeat {
                        last_kind: kind,
                        last_at: at.clone(),
                    };
                    return Ok((Some(repeat), serde_json::Value::Null));
                }
            }
            // A live punch follows the person's last punch; a late one, the last before it.
            let last: Option<(i64, PunchKind, String)> = tx
                .query_row(
                    "SELECT id, kind, at FROM attendance
                     WHERE person_id = ?1 AND (CAST(?2 AS TEXT) IS NULL OR at <= ?2)
                     ORDER BY at DESC, id DESC LIMIT 1",
                    params![person_id, made_text],
                    |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
                )
                .optional()?;
            let now = made_at.unwrap_or_else(Utc::now);
            let last = last
                .map(|(id, kind, at)| {
                    let time =
                        parse_time(&at).map_err(StoreError::bad_row("attendance", id, &path))?;
                    Ok::<_, StoreError>((kind, at, time))
                })
                .transpose()?;
            if let Some((kind, at, time)) = &last
                && now - *time < repeat_window
            {
                let repeat = Punch::Repeat {
                    last_kind: *kind,
                    last_at: at.clone(),
                };
                // Nothing written, nothing said: no audit row.
                return Ok((Some(repeat), serde_json::Value::Null));
            }
            let kind = next_punch_kind(
                last.as_ref().map(|(kind, _, time)| (*kind, *time)),
                now,
                &chrono::Local,
            );
            let at = now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
            tx.execute(
                "INSERT INTO attendance (person_id, kind, at, score) VALUES (?1, ?2, ?3, ?4)",
                params![person_id, kind, at, score],
            )?;
            changes.put(tx, &ATTENDANCE, tx.last_insert_rowid()?)?;
            let mut detail = serde_json::json!({
                "person_id": person_id, "kind": kind, "score": score, "liveness": liveness,
            });
            if made_at.is_some() {
                detail["delayed"] = super::delayed(&at);
            }
            Ok((Some(Punch::Recorded { kind, at }), detail))
        });
        punched.map(|punch| punch.expect("a punch or a repeat"))
    }

    /// A verification outcome and its audit row, together.
    pub fn record_decision(
        &mut self,
        verification: &Verification,
        operator: &str,
    ) -> StoreResult<()> {
        let Verification {
            person_id,
            modality,
            score,
            bands,
            decision,
            evidence_sha256,
        } = *verification;
        check_score(score).map_err(StoreError::InvalidSetting)?;
        if let Some(digest) = evidence_sha256 {
            check_sha256(digest).map_err(StoreError::InvalidSetting)?;
        }
        self.write(operator, "verify", |tx, _, changes| {
            tx.execute(
                "INSERT INTO decisions (person_id, modality, score, threshold_high, threshold_low, decision, operator, at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![person_id, modality, score, bands.high, bands.low, decision, operator, now()],
            )?;
            changes.put(tx, &DECISIONS, tx.last_insert_rowid()?)?;
            let mut detail = serde_json::json!({ "person_id": person_id, "score": score, "decision": decision });
            if let Some(digest) = evidence_sha256 {
                detail["evidence_sha256"] = digest.into();
            }
            Ok::<_, StoreError>(((), detail))
        })
    }

    /// Every earlier verification of the file whose sha256 is `evidence_sha256`, oldest
    /// first, against any account. Read from the audit log, which every recorded decision
    /// writes to and nobody can edit without `audit verify` finding it; each row is checked
    /// on the way back like any other.
    pub fn earlier_checks(&self, evidence_sha256: &str) -> StoreResult<Vec<EarlierCheck>> {
        check_sha256(evidence_sha256).map_err(StoreError::InvalidSetting)?;
        // The expression of the index `audit_by_evidence` (schema version 4), so that the
        // log is searched, not read; the match is confirmed on the parsed detail below.
        let evidence = match self.conn.dialect() {
            Dialect::Sqlite => "json_extract(detail, '$.evidence_sha256')",
            Dialect::Postgres => "(detail::jsonb ->> 'evidence_sha256')",
        };
        let rows = self.conn.query(
            &format!(
                "SELECT id, at, actor, detail FROM audit
                 WHERE action = 'verify' AND {evidence} = ?1 ORDER BY id"
            ),
            params![evidence_sha256],
        )?;
        let mut found = Vec::new();
        // A file checked many times was mostly checked against one account: (as shown,
        // enrolled at).
        let mut accounts: HashMap<i64, Option<(String, DateTime<Utc>)>> = HashMap::new();
        for row in &rows {
            let id: i64 = row.get(0)?;
            let bad = StoreError::bad_row("audit", id, &self.path);
            let at: String = row.get(1)?;
            let checked_at = parse_time(&at).map_err(bad)?;
            let detail: String = row.get(3)?;
            let (check, decision) = VerifyDetail::parse(&detail).map_err(bad)?;
            if check.evidence_sha256.as_deref() != Some(evidence_sha256) {
                continue;
            }
            let person = match accounts.entry(check.person_id) {
                Entry::Occupied(known) => known.into_mut(),
                Entry::Vacant(unknown) => unknown.insert(match self.person(check.person_id) {
                    Ok(person) => Some((
                        format!("{} ({})", person.name, person.external_id),
                        parse_time(&person.created_at)
                            .map_err(StoreError::bad_row("people", person.id, &self.path))?,
                    )),
                    Err(StoreError::UnknownPerson(_)) => None,
                    Err(error) => return Err(error),
                }),
            };
            // A person's row id may be given again after its person was deleted: someone
            // enrolled after the check is not whom it was checked against.
            let account = person
                .as_ref()
                .filter(|(_, enrolled_at)| *enrolled_at <= checked_at)
                .map(|(shown, _)| shown.clone());
            found.push(EarlierCheck {
                at,
                by: row.get(2)?,
                decision,
                score: check.score,
                account,
            });
        }
        Ok(found)
    }

    /// Every recorded decision of a modality, oldest first: verifications, and for faces
    /// the kiosk punches too (each was an accept; attempts the kiosk did not recognise are
    /// not recorded, so they cannot be replayed).
    pub fn decisions(&self, modality: Modality) -> StoreResult<Vec<PastDecision>> {
        let rows = self.conn.query(
            "SELECT 'decisions', d.id, d.score, d.decision, d.at, 'verification by ' || d.operator, p.name, p.external_id, p.id
             FROM decisions d LEFT JOIN people p ON p.id = d.person_id WHERE d.modality = ?1
             UNION ALL
             SELECT 'attendance', a.id, a.score, 'accept', a.at, 'kiosk punch', p.name, p.external_id, p.id
             FROM attendance a LEFT JOIN people p ON p.id = a.person_id WHERE ?1 = 'face'
             ORDER BY 5, 2",
            params![modality],
        )?;
        let mut found = Vec::new();
        for row in &rows {
            let table: String = row.get(0)?;
            let id: i64 = row.get(1)?;
            let bad = StoreError::bad_row(
                if table == "attendance" {
                    "attendance"
                } else {
                    "decisions"
                },
                id,
                &self.path,
            );
            let score: f32 = row.get(2)?;
            check_score(score).map_err(bad)?;
            let at: String = row.get(4)?;
            parse_time(&at).map_err(bad)?;
            let name: Option<String> = row.get(6)?;
            let external_id: Option<String> = row.get(7)?;
            found.push(PastDecision {
                score,
                decision: row.get(3).map_err(|e| bad(e.to_string()))?,
                at,
                what: row.get(5)?,
                person: name.zip(external_id).map(|(n, e)| format!("{n} ({e})")),
                person_id: row.get(8)?,
            });
        }
        Ok(found)
    }

    /// A setting's value; its seal must hold (when the key is at hand).
    pub fn setting(&self, key: &str) -> StoreResult<Option<String>> {
        let rows = self.conn.query(
            &format!(
                "SELECT {} FROM settings WHERE key = ?1",
                seals::select_sealed(&seals::SETTINGS)
            ),
            params![key],
        )?;
        let Some(row) = rows.first() else {
            return Ok(None);
        };
        if let Some(keys) = &self.keys
            && !seals::holds(keys, &seals::SETTINGS, row)?
        {
            return Err(StoreError::bad_row("settings", key, &self.path)(
                "its seal does not match its value".into(),
            ));
        }
        Ok(Some(row.get(1)?))
    }

    /// Saves a setting with an audit row naming the old and new values.
    pub fn set_setting(&mut self, key: &str, value: &str, actor: &str) -> StoreResult<()> {
        let old = self.setting(key)?;
        self.write(actor, "setting", |tx, keys, changes| {
            upsert_setting(tx, keys, changes, key, value)?;
            let detail = serde_json::json!({ "key": key, "old": old, "value": value });
            Ok::<_, StoreError>(((), detail))
        })
    }

    /// The decision bands for a modality: the operator's saved setting, else the default.
    /// Saved bands that do not read as valid bands are an error, never a fallback.
    pub fn bands(&self, modality: Modality) -> StoreResult<Bands> {
        let key = bands_key(modality);
        let Some(text) = self.setting(&key)? else {
            return Ok(crate::matching::default_bands(modality));
        };
        serde_json::from_str::<Bands>(&text)
            .ok()
            .filter(Bands::is_valid)
            .ok_or_else(|| {
                StoreError::bad_row("settings", &key, &self.path)(format!(
                    "{text:?} are not valid bands"
                ))
            })
    }

    /// The bands that decide for one person: the modality's, moved by the person's
    /// governed offset (none: the modality's as they are).
    pub fn bands_for(&self, modality: Modality, person_id: i64) -> StoreResult<Bands> {
        Ok(self
            .bands(modality)?
            .shifted(self.person_offset(person_id)?))
    }

    /// A person's governed threshold offset, 0 when none was set; a stored value that is
    /// not a number within `MAX_PERSON_OFFSET` is an error naming it.
    pub fn person_offset(&self, person_id: i64) -> StoreResult<f32> {
        let key = offset_key(person_id);
        let Some(text) = self.setting(&key)? else {
            return Ok(0.0);
        };
        text.parse::<f32>()
            .ok()
            .filter(|offset| valid_offset(*offset))
            .ok_or_else(|| {
                StoreError::bad_row("settings", &key, &self.path)(format!(
                    "{text:?} is not an offset within ±{MAX_PERSON_OFFSET}"
                ))
            })
    }

    /// Every person's offset that is set, by person id.
    pub fn person_offsets(&self) -> StoreResult<std::collections::BTreeMap<i64, f32>> {
        let keys: Vec<String> = self.conn.query_map(
            "SELECT key FROM settings WHERE key LIKE 'offset.person.%'",
            params![],
            |row| row.get(0),
        )?;
        let mut offsets = std::collections::BTreeMap::new();
        for key in keys {
            let person_id = key[OFFSET_PREFIX.len()..].parse::<i64>().map_err(|e| {
                StoreError::bad_row("settings", &key, &self.path)(format!(
                    "not a person's offset: {e}"
                ))
            })?;
            offsets.insert(person_id, self.person_offset(person_id)?);
        }
        Ok(offsets)
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
        self.write(actor, "set_bands", |tx, keys, changes| {
            let value = serde_json::to_string(&bands).expect("bands serialise");
            upsert_setting(tx, keys, changes, &bands_key(modality), &value)?;
            let detail = serde_json::json!({ "modality": modality, "old": old, "new": bands });
            Ok::<_, StoreError>(((), detail))
        })
    }

    /// Attendance events between two RFC 3339 instants (inclusive, either open), oldest
    /// first; a row that does not read as an event is an error naming it.
    pub fn attendance(
        &self,
        from: Option<&str>,
        to: Option<&str>,
    ) -> StoreResult<Vec<AttendanceRecord>> {
        let rows = self.conn.query(
            "SELECT a.id, a.at, a.kind, a.score, p.external_id, p.name
             FROM attendance a LEFT JOIN people p ON p.id = a.person_id
             WHERE (CAST(?1 AS TEXT) IS NULL OR a.at >= ?1) AND (CAST(?2 AS TEXT) IS NULL OR a.at <= ?2)
             ORDER BY a.at, a.id",
            params![from, to],
        )?;
        let mut corrections = self.corrections()?;
        let mut found = Vec::new();
        for row in &rows {
            let id: i64 = row.get(0)?;
            let bad = StoreError::bad_row("attendance", id, &self.path);
            let record = AttendanceRecord {
                at: row.get(1)?,
                kind: row.get(2).map_err(|e| bad(e.to_string()))?,
                score: row.get(3)?,
                external_id: row.get(4)?,
                name: row.get(5)?,
                correction: corrections.remove(&id),
            };
            check_score(record.score).map_err(bad)?;
            parse_time(&record.at).map_err(bad)?;
            found.push(record);
        }
        Ok(found)
    }

    /// The corrections the audit log records, by the attendance row each wrote.
    fn corrections(&self) -> StoreResult<std::collections::HashMap<i64, Correction>> {
        let rows = self.conn.query(
            "SELECT id, actor, detail FROM audit WHERE action = ?1",
            params![CORRECTION_ACTION],
        )?;
        let mut found = std::collections::HashMap::new();
        for row in &rows {
            let id: i64 = row.get(0)?;
            let detail: String = row.get(2)?;
            let parsed = serde_json::from_str::<serde_json::Value>(&detail).ok();
            let field = |name: &str| parsed.as_ref().and_then(|d| d.get(name).cloned());
            let (Some(attendance_id), Some(reason)) = (
                field("attendance_id").and_then(|v| v.as_i64()),
                field("reason").and_then(|v| v.as_str().map(str::to_string)),
            ) else {
                return Err(StoreError::bad_row("audit", id, &self.path)(
                    "a correction that names no attendance row or reason".into(),
                ));
            };
            found.insert(
                attendance_id,
                Correction {
                    by: row.get(1)?,
                    reason,
                },
            );
        }
        Ok(found)
    }

    /// A punch a supervisor adds afterwards (a forgotten check-out, a kiosk that was
    /// down): a new attendance row at `at` with score 0 (no face was matched), never an
    /// edit of another, and an audit row naming who and why. Refused: nobody enrolled
    /// with that id, no reason, a time in the future, the same punch already there.
    pub fn correct_attendance(
        &mut self,
        external_id: &str,
        kind: PunchKind,
        at: DateTime<Utc>,
        reason: &str,
        actor: &str,
    ) -> StoreResult<AttendanceRecord> {
        super::text::check_text("reason", reason)?;
        if at > Utc::now() + CLOCK_SKEW {
            return Err(StoreError::InvalidSetting(format!(
                "a correction at {at} is in the future"
            )));
        }
        let at = at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        self.write(actor, CORRECTION_ACTION, |tx, _, changes| {
            let (person_id, name): (i64, String) = tx
                .query_row(
                    "SELECT id, name FROM people WHERE external_id = ?1 AND modality = 'face'",
                    params![external_id],
                    |row| Ok((row.get(0)?, row.get(1)?)),
                )
                .optional()?
                .ok_or_else(|| {
                    StoreError::InvalidSetting(format!("nobody is enrolled with id {external_id}"))
                })?;
            let exists: bool = tx.query_row(
                "SELECT EXISTS (SELECT 1 FROM attendance WHERE person_id = ?1 AND kind = ?2 AND at = ?3)",
                params![person_id, kind, at],
                |row| row.get(0),
            )?;
            if exists {
                return Err(StoreError::InvalidSetting(format!(
                    "{external_id} already has a check-{kind} at {at}"
                )));
            }
            tx.execute(
                "INSERT INTO attendance (person_id, kind, at, score) VALUES (?1, ?2, ?3, 0)",
                params![person_id, kind, at],
            )?;
            let attendance_id = tx.last_insert_rowid()?;
            changes.put(tx, &ATTENDANCE, attendance_id)?;
            let detail = serde_json::json!({
                "attendance_id": attendance_id, "person_id": person_id, "kind": kind,
                "at": at, "reason": reason,
            });
            let record = AttendanceRecord {
                at: at.clone(),
                kind,
                score: 0.0,
                external_id: Some(external_id.to_string()),
                name: Some(name),
                correction: Some(Correction {
                    by: actor.to_string(),
                    reason: reason.to_string(),
                }),
            };
            Ok((record, detail))
        })
    }

    /// Adds attendance events from another kiosk or a manual sheet, all or none. Every
    /// event is checked (a known kind, a score in [0, 1], a time not in the future); an
    /// event of a person since deleted is kept without a person. An event already present
    /// (same person, kind and time) is skipped, so importing the same file twice changes
    /// nothing. Returns (added, skipped).
    pub fn import_attendance(
        &mut self,
        records: &[AttendanceRecord],
        actor: &str,
    ) -> StoreResult<(usize, usize)> {
        self.write(actor, "import_attendance", |tx, _, changes| {
            let (mut added, mut skipped) = (0, 0);
            let latest = Utc::now() + CLOCK_SKEW;
            for (line, record) in records.iter().enumerate() {
                let invalid = |why: String| StoreError::InvalidSetting(format!("record {}: {why}", line + 1));
                check_score(record.score).map_err(invalid)?;
                let time = parse_time(&record.at).map_err(invalid)?;
                if time > latest {
                    return Err(invalid(format!("the time {} is in the future", record.at)));
                }
                let at = time.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
                let person_id: Option<i64> = match &record.external_id {
                    Some(external_id) => Some(
                        tx.query_row(
                            "SELECT id FROM people WHERE external_id = ?1 AND modality = 'face'",
                            params![external_id],
                            |row| row.get(0),
                        )
                        .optional()?
                        .ok_or_else(|| invalid(format!("nobody is enrolled with id {external_id}")))?,
                    ),
                    None => None,
                };
                let exists: bool = tx.query_row(
                    "SELECT EXISTS (SELECT 1 FROM attendance WHERE person_id IS NOT DISTINCT FROM ?1 AND kind = ?2 AND at = ?3)",
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
                changes.put(tx, &ATTENDANCE, tx.last_insert_rowid()?)?;
                added += 1;
            }
            let detail = serde_json::json!({ "added": added, "skipped": skipped });
            Ok(((added, skipped), detail))
        })
    }
}

fn check_punch_scores(score: f32, liveness: Option<f32>) -> StoreResult<()> {
    check_score(score).map_err(StoreError::InvalidSetting)?;
    if let Some(live) = liveness {
        check_score(live).map_err(StoreError::InvalidSetting)?;
    }
    Ok(())
}

pub(super) fn upsert_setting(
    tx: &Db,
    keys: &super::Keys,
    changes: &mut super::Changes,
    key: &str,
    value: &str,
) -> StoreResult<()> {
    tx.execute(
        "INSERT INTO settings (key, value) VALUES (?1, ?2)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        params![key, value],
    )?;
    seals::seal(tx, keys, &seals::SETTINGS, &key)?;
    changes.put(tx, &SETTINGS, key.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_in_and_out_alternate_within_the_local_day() {
        let sydney = chrono::FixedOffset::east_opt(10 * 3600).unwrap();
        let utc = |text: &str| text.parse::<DateTime<Utc>>().unwrap();
        // 08:00 and 17:00 in Sydney are on two UTC dates: still one working day.
        let morning = utc("2026-11-30T22:00:00Z");
        let evening = utc("2026-12-01T07:00:00Z");
        assert_eq!(
            next_punch_kind(Some((PunchKind::In, morning)), evening, &sydney),
            PunchKind::Out
        );
        assert_eq!(
            next_punch_kind(Some((PunchKind::In, morning)), evening, &Utc),
            PunchKind::In
        );
        // The next local morning starts again with a check-in, and so does a first punch.
        let next_morning = utc("2026-12-01T22:00:00Z");
        assert_eq!(
            next_punch_kind(Some((PunchKind::In, evening)), next_morning, &sydney),
            PunchKind::In
        );
        assert_eq!(
            next_punch_kind(Some((PunchKind::Out, morning)), evening, &sydney),
            PunchKind::In
        );
        assert_eq!(next_punch_kind(None, evening, &sydney), PunchKind::In);
    }
}
