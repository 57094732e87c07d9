//! Changes that decide (the bands, the kiosk's repeat window, the active signature model,
//! how many approvers a change needs) are proposals first: written with the evidence they
//! were proposed on, applied only when a second supervisor approves them (four eyes), in
//! the approving transaction, with audit rows for both. A site with one supervisor sets
//! one approver explicitly, itself a governed change. On a single-user desk (no operator
//! accounts) a proposal is approved as it is made, and still recorded.

use super::sql::{Db, Row, params};
use serde::{Deserialize, Serialize};

use super::ledger::PROPOSALS;
use super::operators::Session;
use super::records::{MAX_PERSON_OFFSET, bands_key, offset_key, upsert_setting, valid_offset};
use super::seals;
use super::{Store, now};
use crate::error::{StoreError, StoreResult};
use crate::types::{Bands, Modality, Permission};

/// The setting naming the active signature model's file.
pub const ACTIVE_SIGNATURE_MODEL: &str = "model.signature";
const REPEAT_WINDOW: &str = "kiosk.repeat_minutes";
const APPROVERS: &str = "governance.approvers";
pub const DEFAULT_REPEAT_MINUTES: i64 = 10;
/// A day: a longer window would swallow the next morning's check-in.
const MAX_REPEAT_MINUTES: i64 = 24 * 60;

/// A change that decides.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Change {
    Bands {
        modality: Modality,
        bands: Bands,
    },
    /// Minutes within which a second punch is not a punch.
    RepeatWindow {
        minutes: i64,
    },
    /// The signature model every front end scores with (its file, and its id).
    SignatureModel {
        path: String,
        model_id: String,
    },
    /// Approvals a change needs: 2 (four eyes) or 1.
    Approvers {
        required: u8,
    },
    /// One person's thresholds moved from everyone's (positive is stricter): for someone
    /// others are often mistaken for, or who is often wrongly rejected.
    PersonOffset {
        modality: Modality,
        person_id: i64,
        /// Who it is, as "Name (id)", for lists and the audit log.
        person: String,
        offset: f32,
    },
}

impl Change {
    fn check(&self) -> StoreResult<()> {
        let bad = |why: String| Err(StoreError::InvalidSetting(why));
        match self {
            Change::Bands { bands, .. } if !bands.is_valid() => bad(format!(
                "bands must satisfy 0 <= low <= high <= 1 (got low {}, high {})",
                bands.low, bands.high
            )),
            Change::RepeatWindow { minutes } if !(0..=MAX_REPEAT_MINUTES).contains(minutes) => {
                bad(format!(
                    "the repeat window must be 0 to {MAX_REPEAT_MINUTES} minutes (got {minutes})"
                ))
            }
            Change::Approvers { required } if !(1..=2).contains(required) => {
                bad(format!("a change needs 1 or 2 approvers (got {required})"))
            }
            Change::SignatureModel { path, model_id } if path.is_empty() || model_id.is_empty() => {
                bad("a model change names the model's file and id".into())
            }
            Change::PersonOffset { offset, .. } if !valid_offset(*offset) => bad(format!(
                "a person's offset must be within ±{MAX_PERSON_OFFSET} (got {offset})"
            )),
            _ => Ok(()),
        }
    }

    /// One line for lists and the audit log.
    pub fn describe(&self) -> String {
        match self {
            Change::Bands { modality, bands } => format!(
                "{modality} bands: accept at {:.3}, reject below {:.3}",
                bands.high, bands.low
            ),
            Change::RepeatWindow { minutes } => format!("kiosk repeat window: {minutes} min"),
            Change::SignatureModel { model_id, .. } => {
                format!("active signature model: {model_id}")
            }
            Change::Approvers { required } => format!("approvals a change needs: {required}"),
            Change::PersonOffset {
                modality,
                person,
                offset,
                ..
            } => format!("{modality} threshold offset for {person}: {offset:+.3}"),
        }
    }

    /// Writes the change's setting.
    fn apply(&self, tx: &Db, keys: &super::Keys, changes: &mut super::Changes) -> StoreResult<()> {
        let (key, value) = match self {
            Change::Bands { modality, bands } => (
                bands_key(*modality),
                serde_json::to_string(bands).expect("bands serialise"),
            ),
            Change::RepeatWindow { minutes } => (REPEAT_WINDOW.to_string(), minutes.to_string()),
            Change::SignatureModel { path, .. } => {
                (ACTIVE_SIGNATURE_MODEL.to_string(), path.clone())
            }
            Change::Approvers { required } => (APPROVERS.to_string(), required.to_string()),
            Change::PersonOffset {
                modality,
                person_id,
                person,
                offset,
            } => {
                let enrolled: bool = tx.query_row(
                    "SELECT EXISTS (SELECT 1 FROM people WHERE id = ?1 AND modality = ?2)",
                    params![person_id, modality],
                    |row| row.get(0),
                )?;
                if !enrolled {
                    return Err(StoreError::Governance(format!(
                        "{person} is no longer enrolled for {modality}s"
                    )));
                }
                (offset_key(*person_id), offset.to_string())
            }
        };
        upsert_setting(tx, keys, changes, &key, &value)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProposalStatus {
    Pending,
    Approved,
    Rejected,
    Withdrawn,
}

impl ProposalStatus {
    fn as_str(self) -> &'static str {
        match self {
            ProposalStatus::Pending => "pending",
            ProposalStatus::Approved => "approved",
            ProposalStatus::Rejected => "rejected",
            ProposalStatus::Withdrawn => "withdrawn",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        [
            ProposalStatus::Pending,
            ProposalStatus::Approved,
            ProposalStatus::Rejected,
            ProposalStatus::Withdrawn,
        ]
        .into_iter()
        .find(|s| s.as_str() == text)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Proposal {
    pub id: i64,
    pub change: Change,
    /// What the change was predicted to do when proposed (the workflow's figures).
    pub evidence: serde_json::Value,
    pub proposed_by: String,
    pub proposed_at: String,
    pub status: ProposalStatus,
    pub decided_by: Option<String>,
    pub decided_at: Option<String>,
}

const COLUMNS: &str =
    "id, change, evidence, proposed_by, proposed_at, status, decided_by, decided_at, seal";

fn read_proposal(store: &Store, row: &Row) -> StoreResult<Proposal> {
    let id: i64 = row.get(0)?;
    let bad = StoreError::bad_row("proposals", id, &store.path);
    if !seals::holds(store.keys()?, &seals::PROPOSALS, row)? {
        return Err(bad("its seal does not match its content".into()));
    }
    let change: String = row.get(1)?;
    let evidence: String = row.get(2)?;
    let status: String = row.get(5)?;
    Ok(Proposal {
        id,
        change: serde_json::from_str(&change).map_err(|e| bad(format!("its change: {e}")))?,
        evidence: serde_json::from_str(&evidence).map_err(|e| bad(format!("its evidence: {e}")))?,
        proposed_by: row.get(3)?,
        proposed_at: row.get(4)?,
        status: ProposalStatus::parse(&status)
            .ok_or_else(|| bad(format!("not a status: {status:?}")))?,
        decided_by: row.get(6)?,
        decided_at: row.get(7)?,
    })
}

impl Store {
    /// Every proposal, newest first.
    pub fn proposals(&self) -> StoreResult<Vec<Proposal>> {
        let rows = self.conn.query(
            &format!("SELECT {COLUMNS} FROM proposals ORDER BY id DESC"),
            [],
        )?;
        let mut found = Vec::new();
        for row in &rows {
            found.push(read_proposal(self, row)?);
        }
        Ok(found)
    }

    pub fn proposal(&self, id: i64) -> StoreResult<Proposal> {
        let rows = self.conn.query(
            &format!("SELECT {COLUMNS} FROM proposals WHERE id = ?1"),
            params![id],
        )?;
        match rows.first() {
            Some(row) => read_proposal(self, row),
            None => Err(StoreError::Governance(format!("there is no proposal {id}"))),
        }
    }

    /// Records `change` as a pending proposal with its evidence; on a single-user desk it
    /// is approved and applied at once.
    pub fn propose(
        &mut self,
        change: Change,
        evidence: serde_json::Value,
        by: &Session,
    ) -> StoreResult<Proposal> {
        self.authorize(by, Permission::Govern)?;
        change.check()?;
        let immediate = !by.is_operator();
        let at = now();
        let id = self.write(by.name(), "propose", |tx, keys, changes| {
            let text = serde_json::to_string(&change).expect("changes serialise");
            tx.execute(
                "INSERT INTO proposals (change, evidence, proposed_by, proposed_at, status)
                 VALUES (?1, ?2, ?3, ?4, 'pending')",
                params![text, evidence.to_string(), by.name(), at],
            )?;
            let id = tx.last_insert_rowid()?;
            if immediate {
                decide(tx, id, ProposalStatus::Approved, by.name())?;
                change.apply(tx, keys, changes)?;
            }
            seals::seal(tx, keys, &seals::PROPOSALS, &id)?;
            changes.put(tx, &PROPOSALS, id)?;
            let detail = serde_json::json!({
                "proposal": id, "change": change, "evidence": evidence,
                "applied": immediate,
            });
            Ok::<_, StoreError>((id, detail))
        })?;
        self.proposal(id)
    }

    /// Approves a pending proposal and applies its change, in one transaction. The
    /// approver is a supervisor other than the proposer, unless the site requires one
    /// approval, or the change sets one approval on a site with a single supervisor.
    pub fn approve(&mut self, id: i64, by: &Session) -> StoreResult<Proposal> {
        self.authorize(by, Permission::Govern)?;
        let proposal = self.pending(id)?;
        let own = proposal.proposed_by == by.name();
        let may_approve_own = self.approvers_required()? == 1
            || (proposal.change == Change::Approvers { required: 1 }
                && self.active_supervisors()? <= 1);
        if own && !may_approve_own {
            return Err(StoreError::Governance(format!(
                "proposal {id} needs a second supervisor: its proposer {} cannot approve it",
                proposal.proposed_by
            )));
        }
        self.write(by.name(), "approve", |tx, keys, changes| {
            decide(tx, id, ProposalStatus::Approved, by.name())?;
            proposal.change.apply(tx, keys, changes)?;
            seals::seal(tx, keys, &seals::PROPOSALS, &id)?;
            changes.put(tx, &PROPOSALS, id)?;
            let detail = serde_json::json!({
                "proposal": id, "change": proposal.change,
                "proposed_by": proposal.proposed_by,
            });
            Ok::<_, StoreError>(((), detail))
        })?;
        self.proposal(id)
    }

    /// Rejects a pending proposal (a supervisor), or withdraws it (its proposer).
    pub fn reject(&mut self, id: i64, by: &Session) -> StoreResult<Proposal> {
        let proposal = self.pending(id)?;
        let status = if proposal.proposed_by == by.name() {
            ProposalStatus::Withdrawn
        } else {
            self.authorize(by, Permission::Govern)?;
            ProposalStatus::Rejected
        };
        self.write(by.name(), status.as_str(), |tx, keys, changes| {
            decide(tx, id, status, by.name())?;
            seals::seal(tx, keys, &seals::PROPOSALS, &id)?;
            changes.put(tx, &PROPOSALS, id)?;
            Ok::<_, StoreError>(((), serde_json::json!({ "proposal": id })))
        })?;
        self.proposal(id)
    }

    fn pending(&self, id: i64) -> StoreResult<Proposal> {
        let proposal = self.proposal(id)?;
        if proposal.status != ProposalStatus::Pending {
            return Err(StoreError::Governance(format!(
                "proposal {id} is already {}",
                proposal.status.as_str()
            )));
        }
        Ok(proposal)
    }

    /// Approvals a change needs: 2 unless set to 1.
    pub fn approvers_required(&self) -> StoreResult<u8> {
        self.numeric_setting(APPROVERS, 2, 1..=2)
    }

    /// The kiosk's repeat window: a second punch within it is ignored.
    pub fn repeat_window(&self) -> StoreResult<chrono::Duration> {
        self.numeric_setting(
            REPEAT_WINDOW,
            DEFAULT_REPEAT_MINUTES,
            0..=MAX_REPEAT_MINUTES,
        )
        .map(chrono::Duration::minutes)
    }

    /// A whole-number setting in `range`; anything else stored is an error naming it.
    fn numeric_setting<T>(
        &self,
        key: &str,
        default: T,
        range: std::ops::RangeInclusive<T>,
    ) -> StoreResult<T>
    where
        T: std::str::FromStr + PartialOrd + Copy,
    {
        let Some(text) = self.setting(key)? else {
            return Ok(default);
        };
        text.parse::<T>()
            .ok()
            .filter(|value| range.contains(value))
            .ok_or_else(|| {
                StoreError::bad_row("settings", key, &self.path)(format!(
                    "{text:?} is out of range"
                ))
            })
    }

    /// The model files once active for signatures, newest first: where a rollback goes.
    pub fn signature_model_history(&self) -> StoreResult<Vec<(String, String)>> {
        Ok(self
            .proposals()?
            .into_iter()
            .filter(|p| p.status == ProposalStatus::Approved)
            .filter_map(|p| match p.change {
                Change::SignatureModel { path, model_id } => Some((path, model_id)),
                _ => None,
            })
            .collect())
    }
}

fn decide(tx: &Db, id: i64, status: ProposalStatus, by: &str) -> StoreResult<()> {
    let updated = tx.execute(
        "UPDATE proposals SET status = ?1, decided_by = ?2, decided_at = ?3
         WHERE id = ?4 AND status = 'pending'",
        params![status.as_str(), by, now(), id],
    )?;
    if updated == 0 {
        return Err(StoreError::Governance(format!(
            "proposal {id} was decided meanwhile"
        )));
    }
    Ok(())
}
