//! Moving a site from one engine to the other (a kiosk's SQLite file onto the site's
//! PostgreSQL server, or back): every row copied as it is, ids and all, in one
//! transaction of the target, so the audit chain, its anchor, the ledger's digests, the
//! seals and the encrypted biometrics (bound to their row ids) all hold on arrival. The
//! copy is then checked: the same rows in every table, the same head of the chain, and an
//! intact audit on the target.

use serde::Serialize;

use super::ledger::{self, Table};
use super::sql::{Dialect, Value, params};
use super::{Store, StoreError, StoreResult};
use crate::types::counted;

/// Rows read and written at once.
const PAGE: i64 = 2048;

const AUDIT: Table = Table {
    name: "audit",
    key: "id",
    columns: &[
        "id",
        "at",
        "actor",
        "action",
        "detail",
        "prev_hash",
        "hash",
        "changes",
    ],
};
const ANCHOR: Table = Table {
    name: "anchor",
    key: "id",
    columns: &["id", "rows", "head_hash", "seal"],
};

/// What a move copied, and what the check found.
#[derive(Debug, Clone, Serialize)]
pub struct Migration {
    /// (table, rows) in copy order.
    pub tables: Vec<(String, usize)>,
    /// The audit chain's last hash, the same on both sides.
    pub head_hash: String,
    /// The target's audit after the move (and before its own audit row).
    pub intact: bool,
}

impl Store {
    /// Copies every row of this store into `target`, which must be empty (just created)
    /// and opened with this store's key file. `progress` hears (table, rows so far).
    pub fn migrate_into(
        &self,
        target: &mut Store,
        actor: &str,
        progress: &mut dyn FnMut(&str, usize),
    ) -> StoreResult<Migration> {
        if target.read_only {
            return Err(StoreError::ReadOnly {
                path: target.path.clone(),
            });
        }
        let source_keys = self.keys()?;
        if !target.keys()?.same_keys(source_keys) {
            return Err(StoreError::NotAllowed(
                "the target was opened with another key file than the source's: the moved biometrics and seals would not open".into(),
            ));
        }
        let tables: Vec<&Table> = ledger::TABLES
            .iter()
            .copied()
            .chain([&AUDIT, &ANCHOR])
            .collect();
        let tx = target.conn.begin_write()?;
        for table in &tables {
            let already: i64 = tx.query_row(
                &format!("SELECT count(*) FROM {}", table.name),
                params![],
                |row| row.get(0),
            )?;
            // A new store's only row is its empty anchor, replaced by the source's.
            if already > 0 && table.name != ANCHOR.name {
                return Err(StoreError::NotAllowed(format!(
                    "the target already holds {}: a store is moved only into an empty one",
                    counted(already, &format!("{} row", table.name))
                )));
            }
        }
        tx.execute("DELETE FROM anchor", params![])?;
        let mut copied = Vec::new();
        for table in &tables {
            let rows = copy_table(self, &tx, table, progress)?;
            copied.push((table.name.to_string(), rows));
        }
        if tx.dialect() == Dialect::Postgres {
            // Ids were copied as they were: the server's own counters continue after them.
            for table in ledger::TABLES.iter().filter(|t| t.key == "id") {
                tx.execute(
                    &format!(
                        "SELECT setval(pg_get_serial_sequence('{0}', 'id'), (SELECT max(id) FROM {0}))
                         WHERE pg_get_serial_sequence('{0}', 'id') IS NOT NULL
                           AND EXISTS (SELECT 1 FROM {0})",
                        table.name
                    ),
                    params![],
                )?;
            }
        }
        tx.commit()?;
        let head_hash = chain_head(self)?;
        for (table, rows) in &copied {
            let there: i64 = target.conn.query_row(
                &format!("SELECT count(*) FROM {table}"),
                params![],
                |row| row.get(0),
            )?;
            if there as usize != *rows {
                return Err(StoreError::Tampered {
                    what: format!(
                        "the move copied {} but the target holds {there}",
                        counted(*rows, &format!("{table} row"))
                    ),
                    path: target.path.clone(),
                });
            }
        }
        if chain_head(target)? != head_hash {
            return Err(StoreError::Tampered {
                what: "the target's audit chain does not end where the source's does".into(),
                path: target.path.clone(),
            });
        }
        let report = target.audit_verify()?;
        let migration = Migration {
            tables: copied,
            head_hash,
            intact: report.intact,
        };
        if !report.intact {
            return Err(StoreError::Tampered {
                what: format!(
                    "the moved store's audit does not hold: {}",
                    report.problems.join("; ")
                ),
                path: target.path.clone(),
            });
        }
        target.audit_append(
            actor,
            "migrate",
            &serde_json::json!({
                "from": self.path.display().to_string(),
                "tables": migration.tables,
                "head_hash": migration.head_hash,
            })
            .to_string(),
        )?;
        Ok(migration)
    }
}

fn chain_head(store: &Store) -> StoreResult<String> {
    store.conn.query_row(
        "SELECT coalesce((SELECT hash FROM audit ORDER BY id DESC LIMIT 1), '')",
        params![],
        |row| row.get(0),
    )
}

/// Copies `table` from `source` into the open transaction `target`, a page at a time in
/// key order; returns the rows copied.
fn copy_table(
    source: &Store,
    target: &super::sql::Db,
    table: &Table,
    progress: &mut dyn FnMut(&str, usize),
) -> StoreResult<usize> {
    let columns = table.columns.join(", ");
    let placeholders = (1..=table.columns.len())
        .map(|i| format!("?{i}"))
        .collect::<Vec<_>>()
        .join(", ");
    let insert = format!(
        "INSERT INTO {} ({columns}) VALUES ({placeholders})",
        table.name
    );
    let mut copied = 0;
    if table.key != "id" {
        // Settings: few rows, keyed by text.
        for row in source
            .conn
            .query(&format!("SELECT {columns} FROM {}", table.name), params![])?
        {
            target.execute(&insert, row_values(&row, table))?;
            copied += 1;
        }
        progress(table.name, copied);
        return Ok(copied);
    }
    let mut after = i64::MIN;
    loop {
        let rows = source.conn.query(
            &format!(
                "SELECT {columns} FROM {} WHERE id > ?1 ORDER BY id LIMIT ?2",
                table.name
            ),
            params![after, PAGE],
        )?;
        let Some(last) = rows.last() else { break };
        after = last.get(0)?;
        for row in &rows {
            target.execute(&insert, row_values(row, table))?;
        }
        copied += rows.len();
        progress(table.name, copied);
    }
    Ok(copied)
}

fn row_values(row: &super::sql::Row, table: &Table) -> Vec<Value> {
    (0..table.columns.len())
        .map(|i| row.value(i).clone())
        .collect()
}
