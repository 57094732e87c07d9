//! The append-only audit log. Row n stores `hash_n = sha256(hash_{n-1} | id | at | actor |
//! action | detail | changes)`; triggers refuse UPDATE and DELETE. Each row's `changes` is
//! the ledger of what its transaction wrote (`ledger`). The log's head (its row count and
//! last hash) is kept in the `anchor` row, sealed with the key kept outside the database,
//! so rows cut from the end of the log, or a log rebuilt from scratch, are found too.

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::canonical::feed;
use super::keys::Keys;
use super::ledger::{self, Changes, Expected};
use super::sql::{Db, OptionalExtension, params};
use crate::error::StoreResult;

pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";
/// Problems listed in one report, at most: the first ones say where to look.
const MOST_PROBLEMS: usize = 50;
/// Audit rows read at once while walking the chain.
const CHAIN_PAGE: i64 = 4096;

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
    /// True only when the chain, the anchor, the ledger and the seals all check out.
    pub intact: bool,
    /// The first audit row whose content or link does not match, or after which rows are
    /// missing.
    pub first_bad_id: Option<i64>,
    /// The first problem found.
    pub problem: Option<String>,
    /// Every problem found (the first 50).
    pub problems: Vec<String>,
    /// Whether the anchor could be checked (it needs the key file).
    pub anchor_checked: bool,
}

fn row_hash(prev_hash: &str, entry: &AuditEntry, changes: &str) -> String {
    let mut hasher = Sha256::new();
    let id = entry.id.to_string();
    let mut parts: Vec<&[u8]> = vec![
        prev_hash.as_bytes(),
        id.as_bytes(),
        entry.at.as_bytes(),
        entry.actor.as_bytes(),
        entry.action.as_bytes(),
        entry.detail.as_bytes(),
    ];
    // Rows written before the ledger existed hash as they always did.
    if !changes.is_empty() {
        parts.push(changes.as_bytes());
    }
    feed(&mut |bytes| hasher.update(bytes), &parts);
    hex::encode(hasher.finalize())
}

fn anchor_seal_parts(rows: i64, head_hash: &str) -> [Vec<u8>; 3] {
    [
        b"audit anchor".to_vec(),
        rows.to_string().into_bytes(),
        head_hash.as_bytes().to_vec(),
    ]
}

/// Seals the log's head: `rows` rows ending with `head_hash`.
pub(super) fn write_anchor(conn: &Db, keys: &Keys, rows: i64, head_hash: &str) -> StoreResult<()> {
    let parts = anchor_seal_parts(rows, head_hash);
    let seal = keys.seal(&parts.each_ref().map(Vec::as_slice));
    conn.execute(
        "INSERT INTO anchor (id, rows, head_hash, seal) VALUES (1, ?1, ?2, ?3)
         ON CONFLICT (id) DO UPDATE SET rows = excluded.rows, head_hash = excluded.head_hash,
                                        seal = excluded.seal",
        params![rows, head_hash, seal],
    )?;
    Ok(())
}

/// The log's last (id, hash), or (0, genesis).
fn head(conn: &Db) -> StoreResult<(i64, String)> {
    Ok(conn
        .query_row(
            "SELECT id, hash FROM audit ORDER BY id DESC LIMIT 1",
            params![],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .optional()?
        .unwrap_or_else(|| (0, GENESIS.to_string())))
}

/// Appends a row (and moves the sealed anchor to it), inside the caller's transaction.
pub(super) fn append(
    conn: &Db,
    keys: &Keys,
    actor: &str,
    action: &str,
    detail: &str,
    changes: &Changes,
) -> StoreResult<i64> {
    let (last_id, prev_hash) = head(conn)?;
    let entry = AuditEntry {
        id: last_id + 1,
        at: super::now(),
        actor: actor.to_string(),
        action: action.to_string(),
        detail: detail.to_string(),
    };
    let changes = changes.to_text();
    let hash = row_hash(&prev_hash, &entry, &changes);
    conn.execute(
        "INSERT INTO audit (id, at, actor, action, detail, prev_hash, hash, changes)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![
            entry.id,
            entry.at,
            entry.actor,
            entry.action,
            entry.detail,
            prev_hash,
            hash,
            changes
        ],
    )?;
    write_anchor(conn, keys, entry.id, &hash)?;
    Ok(entry.id)
}

struct Findings {
    problems: Vec<String>,
    first_bad_id: Option<i64>,
}

impl Findings {
    fn add(&mut self, problem: String) {
        if self.problems.len() < MOST_PROBLEMS {
            self.problems.push(problem);
        }
    }
}

/// Walks the chain; returns the rows read, the last hash, and the ledger's expected rows
/// when the chain held.
fn walk_chain(
    conn: &Db,
    findings: &mut Findings,
) -> StoreResult<(usize, String, Option<Expected>)> {
    let (mut expected_prev, mut expected_id, mut count) = (GENESIS.to_string(), 1, 0);
    let mut ledger = Expected::new();
    let mut after = i64::MIN;
    loop {
        // A page at a time: a site's log of years of punches is not held in memory.
        let rows = conn.query(
            "SELECT id, at, actor, action, detail, prev_hash, hash, changes FROM audit
             WHERE id > ?1 ORDER BY id LIMIT ?2",
            params![after, CHAIN_PAGE],
        )?;
        let Some(last) = rows.last() else { break };
        after = last.get(0)?;
        for row in &rows {
            count += 1;
            let entry = AuditEntry {
                id: row.get(0)?,
                at: row.get(1)?,
                actor: row.get(2)?,
                action: row.get(3)?,
                detail: row.get(4)?,
            };
            let (prev_hash, hash, changes): (String, String, String) =
                (row.get(5)?, row.get(6)?, row.get(7)?);
            let problem = if entry.id != expected_id {
                Some(format!(
                    "audit rows {expected_id}..{} are missing",
                    entry.id - 1
                ))
            } else if prev_hash != expected_prev {
                Some(format!(
                    "audit row {}: its link to the previous row does not match",
                    entry.id
                ))
            } else if row_hash(&prev_hash, &entry, &changes) != hash {
                Some(format!(
                    "audit row {}: its content was changed after it was written",
                    entry.id
                ))
            } else if changes.is_empty() {
                None
            } else {
                match serde_json::from_str::<Changes>(&changes) {
                    Ok(changes) => {
                        ledger::replay(&mut ledger, &changes);
                        None
                    }
                    Err(error) => Some(format!(
                        "audit row {}: its ledger is unreadable ({error})",
                        entry.id
                    )),
                }
            };
            if let Some(problem) = problem {
                findings.first_bad_id = Some(entry.id);
                findings.add(problem);
                return Ok((count, hash, None));
            }
            expected_prev = hash;
            expected_id += 1;
        }
    }
    Ok((count, expected_prev, Some(ledger)))
}

fn check_anchor(
    conn: &Db,
    keys: &Keys,
    rows: usize,
    head_hash: &str,
    findings: &mut Findings,
) -> StoreResult<()> {
    let anchor: Option<(i64, String, String)> = conn
        .query_row(
            "SELECT rows, head_hash, seal FROM anchor WHERE id = 1",
            params![],
            |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
        )
        .optional()?;
    let Some((anchored_rows, anchored_head, seal)) = anchor else {
        findings.add("the audit log's anchor is missing: the log cannot be shown whole".into());
        return Ok(());
    };
    let parts = anchor_seal_parts(anchored_rows, &anchored_head);
    if !keys.check_seal(&parts.each_ref().map(Vec::as_slice), &seal) {
        findings.add("the audit log's anchor is not sealed by this database's key".into());
    } else if anchored_rows as usize != rows {
        findings.add(format!(
            "the audit log has {rows} rows where its anchor says {anchored_rows}: rows were cut from its end"
        ));
    } else if anchored_head != head_hash {
        findings.add("the audit log's last row is not the one its anchor sealed".into());
    }
    Ok(())
}

/// The chain, the anchor (with `keys`), the ledger against every table, and the seals of
/// the rows that carry one.
pub(super) fn verify(conn: &Db, keys: Option<&Keys>) -> StoreResult<AuditReport> {
    let mut findings = Findings {
        problems: Vec::new(),
        first_bad_id: None,
    };
    let (rows, head_hash, ledger) = walk_chain(conn, &mut findings)?;
    match keys {
        Some(keys) => check_anchor(conn, keys, rows, &head_hash, &mut findings)?,
        None => findings.add(
            "the anchor and the seals were not checked: this database's key file is absent".into(),
        ),
    }
    if let Some(expected) = ledger {
        for table in ledger::TABLES {
            let actual = ledger::digests(conn, table)?;
            for problem in ledger::differences(table, expected.get(table.name), &actual) {
                findings.add(problem);
            }
        }
    }
    if let Some(keys) = keys {
        for problem in super::seals::broken(conn, keys)? {
            findings.add(problem);
        }
    }
    Ok(AuditReport {
        rows,
        intact: findings.problems.is_empty(),
        first_bad_id: findings.first_bad_id,
        problem: findings.problems.first().cloned(),
        problems: findings.problems,
        anchor_checked: keys.is_some(),
    })
}
