//! The append-only audit log. Row n stores `hash_n = sha256(hash_{n-1} | id | at | actor |
//! action | detail)`; triggers refuse UPDATE and DELETE, and `verify` recomputes the chain,
//! so an edit made around the triggers (another SQLite client, a hex editor) is found.

use rusqlite::{Connection, Transaction, params};
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::StoreResult;

const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

#[derive(Debug, Clone, Serialize)]
pub struct AuditEntry {
    pub id: i64,
    pub at: String,
    pub actor: String,
    pub action: String,
    pub detail: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct AuditReport {
    pub rows: usize,
    pub intact: bool,
    /// The first row whose content or link does not match, or after which rows are missing.
    pub first_bad_id: Option<i64>,
    pub problem: Option<String>,
}

fn row_hash(prev_hash: &str, entry: &AuditEntry) -> String {
    let mut hasher = Sha256::new();
    for part in [
        prev_hash,
        &entry.id.to_string(),
        &entry.at,
        &entry.actor,
        &entry.action,
        &entry.detail,
    ] {
        hasher.update((part.len() as u64).to_le_bytes());
        hasher.update(part.as_bytes());
    }
    hex::encode(hasher.finalize())
}

pub(super) fn append(
    tx: &Transaction,
    actor: &str,
    action: &str,
    detail: &str,
) -> StoreResult<i64> {
    let (last_id, prev_hash): (i64, String) = tx
        .query_row(
            "SELECT id, hash FROM audit ORDER BY id DESC LIMIT 1",
            [],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .or_else(|e| match e {
            rusqlite::Error::QueryReturnedNoRows => Ok((0, GENESIS.to_string())),
            other => Err(other),
        })?;
    let entry = AuditEntry {
        id: last_id + 1,
        at: super::now(),
        actor: actor.to_string(),
        action: action.to_string(),
        detail: detail.to_string(),
    };
    let hash = row_hash(&prev_hash, &entry);
    tx.execute(
        "INSERT INTO audit (id, at, actor, action, detail, prev_hash, hash) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![entry.id, entry.at, entry.actor, entry.action, entry.detail, prev_hash, hash],
    )?;
    Ok(entry.id)
}

pub(super) fn verify(conn: &Connection) -> StoreResult<AuditReport> {
    let mut statement = conn
        .prepare("SELECT id, at, actor, action, detail, prev_hash, hash FROM audit ORDER BY id")?;
    let mut rows = statement.query([])?;
    let mut expected_prev = GENESIS.to_string();
    let mut expected_id = 1;
    let mut count = 0;
    while let Some(row) = rows.next()? {
        count += 1;
        let entry = AuditEntry {
            id: row.get(0)?,
            at: row.get(1)?,
            actor: row.get(2)?,
            action: row.get(3)?,
            detail: row.get(4)?,
        };
        let (prev_hash, hash): (String, String) = (row.get(5)?, row.get(6)?);
        let problem = if entry.id != expected_id {
            Some(format!("rows {expected_id}..{} are missing", entry.id - 1))
        } else if prev_hash != expected_prev {
            Some("its link to the previous row does not match".to_string())
        } else if row_hash(&prev_hash, &entry) != hash {
            Some("its content was changed after it was written".to_string())
        } else {
            None
        };
        if let Some(problem) = problem {
            return Ok(AuditReport {
                rows: count,
                intact: false,
                first_bad_id: Some(entry.id),
                problem: Some(problem),
            });
        }
        expected_prev = hash;
        expected_id += 1;
    }
    Ok(AuditReport {
        rows: count,
        intact: true,
        first_bad_id: None,
        problem: None,
    })
}
