//! The ledger: which rows exist and what they hold, kept in the audit log. Every audit row
//! that changes data carries the digest of each row it wrote and the key of each row it
//! removed. Replaying the log gives every table's expected rows; `audit verify` compares
//! them with the tables themselves, so an edit, a swap, an insert or a deletion made
//! around Vouch shows, in any table that decides.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::canonical::{encode_columns, feed};
use super::sql::{Db, Row, ToValue};
use crate::error::StoreResult;

/// A table under the ledger: its key column and every column it stores.
pub struct Table {
    pub name: &'static str,
    pub key: &'static str,
    pub columns: &'static [&'static str],
}

pub const PEOPLE: Table = Table {
    name: "people",
    key: "id",
    columns: &[
        "id",
        "name",
        "external_id",
        "modality",
        "created_at",
        "seal",
    ],
};
pub const TEMPLATES: Table = Table {
    name: "templates",
    key: "id",
    columns: &[
        "id",
        "person_id",
        "model_id",
        "embedding",
        "quality",
        "source_sha256",
        "crop",
        "created_at",
        "key_id",
    ],
};
pub const ATTENDANCE: Table = Table {
    name: "attendance",
    key: "id",
    columns: &["id", "person_id", "kind", "at", "score"],
};
pub const DECISIONS: Table = Table {
    name: "decisions",
    key: "id",
    columns: &[
        "id",
        "person_id",
        "modality",
        "score",
        "threshold_high",
        "threshold_low",
        "decision",
        "operator",
        "at",
    ],
};
pub const SETTINGS: Table = Table {
    name: "settings",
    key: "key",
    columns: &["key", "value", "seal"],
};
pub const OPERATORS: Table = Table {
    name: "operators",
    key: "id",
    columns: &[
        "id",
        "name",
        "role",
        "secret_hash",
        "active",
        "failed_logins",
        "locked_until",
        "created_at",
        "seal",
    ],
};
pub const PROPOSALS: Table = Table {
    name: "proposals",
    key: "id",
    columns: &[
        "id",
        "change",
        "evidence",
        "proposed_by",
        "proposed_at",
        "status",
        "decided_by",
        "decided_at",
        "seal",
    ],
};
pub const TABLES: [&Table; 7] = [
    &PEOPLE,
    &TEMPLATES,
    &ATTENDANCE,
    &DECISIONS,
    &SETTINGS,
    &OPERATORS,
    &PROPOSALS,
];

/// What one transaction wrote and removed, as its audit row records it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Changes {
    /// table -> row key -> digest of the row as written.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub put: BTreeMap<String, BTreeMap<String, String>>,
    /// table -> keys of the rows removed.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub gone: BTreeMap<String, BTreeSet<String>>,
}

impl Changes {
    /// Records the row of `table` under `key` as it now stands in `conn`.
    pub fn put(
        &mut self,
        conn: &Db,
        table: &Table,
        key: impl ToValue + std::fmt::Display,
    ) -> StoreResult<()> {
        let digest = digest_row(conn, table, &key)?;
        let key = key.to_string();
        match digest {
            Some(digest) => {
                self.put
                    .entry(table.name.to_string())
                    .or_default()
                    .insert(key, digest);
            }
            None => self.gone(table, key),
        }
        Ok(())
    }

    /// `put` for a key read back as text (`digests`' keys): integer keys as integers.
    pub fn put_key(&mut self, conn: &Db, table: &Table, key: &str) -> StoreResult<()> {
        match key.parse::<i64>() {
            Ok(id) if table.key == "id" => self.put(conn, table, id),
            _ => self.put(conn, table, key.to_string()),
        }
    }

    pub fn gone(&mut self, table: &Table, key: impl std::fmt::Display) {
        self.gone
            .entry(table.name.to_string())
            .or_default()
            .insert(key.to_string());
    }

    pub fn is_empty(&self) -> bool {
        self.put.is_empty() && self.gone.is_empty()
    }

    /// The audit column's text: empty when nothing changed.
    pub fn to_text(&self) -> String {
        if self.is_empty() {
            String::new()
        } else {
            serde_json::to_string(self).expect("changes serialise")
        }
    }
}

/// Every table's rows as the ledger says they should be.
pub type Expected = BTreeMap<String, BTreeMap<String, String>>;

pub fn replay(expected: &mut Expected, changes: &Changes) {
    for (table, keys) in &changes.gone {
        if let Some(rows) = expected.get_mut(table) {
            for key in keys {
                rows.remove(key);
            }
        }
    }
    for (table, rows) in &changes.put {
        expected
            .entry(table.clone())
            .or_default()
            .extend(rows.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
}

fn select(table: &Table) -> String {
    format!(
        "SELECT {} FROM {} WHERE {} = ?1",
        table.columns.join(", "),
        table.name,
        table.key
    )
}

fn digest_of(table: &Table, row: &Row) -> String {
    let values = encode_columns(row, table.columns.len());
    let mut parts: Vec<&[u8]> = vec![table.name.as_bytes()];
    parts.extend(values.iter().map(Vec::as_slice));
    let mut hasher = Sha256::new();
    feed(&mut |bytes| hasher.update(bytes), &parts);
    hex::encode(hasher.finalize())
}

fn digest_row(conn: &Db, table: &Table, key: &dyn ToValue) -> StoreResult<Option<String>> {
    Ok(conn
        .query(&select(table), [key])?
        .first()
        .map(|row| digest_of(table, row)))
}

/// key -> digest of every row of `table` as it stands.
pub fn digests(conn: &Db, table: &Table) -> StoreResult<BTreeMap<String, String>> {
    let rows = conn.query(
        &format!(
            "SELECT {}, {} FROM {}",
            table.columns.join(", "),
            table.key,
            table.name
        ),
        super::sql::params![],
    )?;
    Ok(rows
        .iter()
        .map(|row| {
            (
                row.value(table.columns.len()).key_text(),
                digest_of(table, row),
            )
        })
        .collect())
}

/// What differs between the ledger's rows and the table's, one line each.
pub fn differences(
    table: &Table,
    expected: Option<&BTreeMap<String, String>>,
    actual: &BTreeMap<String, String>,
) -> Vec<String> {
    let empty = BTreeMap::new();
    let expected = expected.unwrap_or(&empty);
    let mut found = Vec::new();
    for (key, digest) in expected {
        match actual.get(key) {
            None => found.push(format!(
                "{} row {key} was deleted outside Vouch",
                table.name
            )),
            Some(actual) if actual != digest => found.push(format!(
                "{} row {key} was changed outside Vouch",
                table.name
            )),
            Some(_) => {}
        }
    }
    for key in actual.keys().filter(|k| !expected.contains_key(*k)) {
        found.push(format!("{} row {key} was added outside Vouch", table.name));
    }
    found
}
