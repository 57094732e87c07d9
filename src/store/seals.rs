//! The rows that decide carry a seal: a person (whose name and id a verification is made
//! against) and a setting (the bands, the active model) hold an HMAC of their content
//! under the database's key, checked every time they are read. An edited name, a swapped
//! id or bands set to 0/0 in a SQLite shell is an error naming the row, never a verdict.

use super::canonical::encode_columns;
use super::keys::Keys;
use super::ledger::Table;
use super::sql::{Db, OptionalExtension, Row, ToValue, params};
use crate::error::StoreResult;

/// People, sealed over these columns (the key first).
pub const PEOPLE: Table = Table {
    name: "people",
    key: "id",
    columns: &["id", "name", "external_id", "modality", "created_at"],
};
/// Settings, sealed over their key and value.
pub const SETTINGS: Table = Table {
    name: "settings",
    key: "key",
    columns: &["key", "value"],
};
/// Operators, sealed over everything but the seal: a raised role, a replaced secret or
/// a cleared lock-out is refused at the next login.
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
    ],
};
/// Proposals, sealed over everything but the seal: an approval typed into a SQLite shell
/// does not apply anything, and is found.
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
    ],
};
const ALL: [&Table; 4] = [&PEOPLE, &SETTINGS, &OPERATORS, &PROPOSALS];

/// The parts a seal covers, from a row whose first columns are `which.columns`.
fn parts(which: &Table, row: &Row) -> Vec<Vec<u8>> {
    let mut parts = vec![which.name.as_bytes().to_vec()];
    parts.extend(encode_columns(row, which.columns.len()));
    parts
}

fn as_slices(parts: &[Vec<u8>]) -> Vec<&[u8]> {
    parts.iter().map(Vec::as_slice).collect()
}

/// Seals the row of `which` under `key` as it now stands.
pub fn seal(conn: &Db, keys: &Keys, which: &Table, key: &dyn ToValue) -> StoreResult<()> {
    let select = format!(
        "SELECT {} FROM {} WHERE {} = ?1",
        which.columns.join(", "),
        which.name,
        which.key
    );
    let sealed: Option<String> = conn
        .query_row(&select, [key], |row| {
            Ok(keys.seal(&as_slices(&parts(which, row))))
        })
        .optional()?;
    if let Some(sealed) = sealed {
        conn.execute(
            &format!(
                "UPDATE {} SET seal = ?1 WHERE {} = ?2",
                which.name, which.key
            ),
            params![sealed, key],
        )?;
    }
    Ok(())
}

/// Whether a row read as `which.columns` then its seal carries a true seal.
pub fn holds(keys: &Keys, which: &Table, row: &Row) -> StoreResult<bool> {
    let seal: Option<String> = row.get(which.columns.len())?;
    let parts = parts(which, row);
    Ok(seal.is_some_and(|seal| keys.check_seal(&as_slices(&parts), &seal)))
}

/// The SELECT that `holds` reads: the sealed columns, then the seal.
pub fn select_sealed(which: &Table) -> String {
    format!("{}, seal", which.columns.join(", "))
}

/// Every sealed row whose seal does not hold, one line each.
pub fn broken(conn: &Db, keys: &Keys) -> StoreResult<Vec<String>> {
    let mut found = Vec::new();
    for which in ALL {
        let rows = conn.query(
            &format!(
                "SELECT {} FROM {} ORDER BY {}",
                select_sealed(which),
                which.name,
                which.key
            ),
            params![],
        )?;
        for row in &rows {
            if !holds(keys, which, row)? {
                found.push(format!(
                    "{} row {}: its seal does not match its content",
                    which.name,
                    row.value(0).key_text()
                ));
            }
        }
    }
    Ok(found)
}

/// Re-seals every sealed row with the current key (a key rotation).
pub fn reseal_all(conn: &Db, keys: &Keys) -> StoreResult<Vec<(&'static Table, String)>> {
    let mut resealed = Vec::new();
    for which in ALL {
        let keys_of_rows = conn.query_map(
            &format!("SELECT {} FROM {}", which.key, which.name),
            params![],
            |row| Ok(row.value(0).clone()),
        )?;
        for key in keys_of_rows {
            seal(conn, keys, which, &key)?;
            resealed.push((which, key.key_text()));
        }
    }
    Ok(resealed)
}

#[cfg(test)]
mod tests {
    use super::super::ledger;

    /// Each sealed table is listed twice (what the seal covers, what the ledger digests):
    /// a column added to one list and not the other would leave it unprotected.
    #[test]
    fn the_ledger_covers_every_sealed_column_and_the_seal() {
        for (sealed, digested) in [
            (super::PEOPLE, ledger::PEOPLE),
            (super::SETTINGS, ledger::SETTINGS),
            (super::OPERATORS, ledger::OPERATORS),
            (super::PROPOSALS, ledger::PROPOSALS),
        ] {
            assert_eq!((sealed.name, sealed.key), (digested.name, digested.key));
            let mut expected = sealed.columns.to_vec();
            expected.push("seal");
            assert_eq!(digested.columns, expected.as_slice(), "{}", sealed.name);
        }
    }
}
