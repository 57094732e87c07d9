//! Operator accounts: who may do what. A secret (password or PIN) is kept only as an
//! argon2id hash; repeated failures lock the account for a while; every login, failure and
//! lock-out is an audit row. A `Session` is what a successful login gives, and what every
//! change is authorised against (`Store::authorize`), re-reading the account each time so
//! that a disabled operator or an edited role stops at once.

use super::sql::{Db, OptionalExtension, params};
use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use chrono::{DateTime, Utc};
use serde::Serialize;

use super::ledger::OPERATORS;
use super::seals;
use super::text::check_text;
use super::{Store, now};
use crate::error::{StoreError, StoreResult};
use crate::types::{Permission, Role};

/// Failed logins in a row that lock an account.
pub const MAX_FAILED_LOGINS: i64 = 5;
/// How long a locked account stays locked.
pub const LOCKOUT: chrono::Duration = chrono::Duration::minutes(15);
/// A kiosk account's PIN is typed on a touch screen; every other account guards changes.
const MIN_PIN_CHARS: usize = 4;
const MIN_PASSWORD_CHARS: usize = 8;

/// An operator account as listed (never its secret).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OperatorInfo {
    pub name: String,
    pub role: Role,
    pub active: bool,
    pub failed_logins: i64,
    pub locked_until: Option<String>,
    pub created_at: String,
}

/// Who acts. Made by a login (`Store::login`), or, on a database without operators, a
/// single-user desk (`Session::single_user`) that the first operator account ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    name: String,
    /// `None` for the single-user desk.
    role: Option<Role>,
}

impl Session {
    /// The single-user desk: allowed everything while the database has no operators.
    pub fn single_user(name: &str) -> Self {
        Self {
            name: name.to_string(),
            role: None,
        }
    }

    /// The name the audit log records.
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn role(&self) -> Option<Role> {
        self.role
    }

    /// Whether this session passed a login (not the single-user desk).
    pub fn is_operator(&self) -> bool {
        self.role.is_some()
    }
}

fn hash_secret(secret: &str) -> StoreResult<String> {
    let salt_bytes: [u8; 16] = rand::random();
    let salt = SaltString::encode_b64(&salt_bytes)
        .map_err(|e| StoreError::InvalidSetting(format!("cannot make a salt: {e}")))?;
    Argon2::default()
        .hash_password(secret.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|e| StoreError::InvalidSetting(format!("cannot hash the secret: {e}")))
}

fn secret_matches(secret: &str, stored: &str) -> bool {
    PasswordHash::new(stored).is_ok_and(|hash| {
        Argon2::default()
            .verify_password(secret.as_bytes(), &hash)
            .is_ok()
    })
}

/// Why `secret` cannot guard an account of `role`, if it cannot.
fn check_secret(name: &str, role: Role, secret: &str) -> StoreResult<()> {
    let least = if role == Role::Kiosk {
        MIN_PIN_CHARS
    } else {
        MIN_PASSWORD_CHARS
    };
    let weak = |reason: String| Err(StoreError::InvalidSetting(reason));
    if secret.chars().count() < least {
        return weak(format!(
            "a {role} account's secret needs at least {least} characters"
        ));
    }
    if secret.eq_ignore_ascii_case(name) {
        return weak("the secret must not be the account's name".into());
    }
    Ok(())
}

/// The account row as sealed, checked: (id, info, secret hash).
fn read_operator(
    conn: &Db,
    store: &Store,
    name: &str,
) -> StoreResult<Option<(i64, OperatorInfo, String)>> {
    let rows = conn.query(
        &format!(
            "SELECT {} FROM operators WHERE name = ?1",
            seals::select_sealed(&seals::OPERATORS)
        ),
        params![name],
    )?;
    let Some(row) = rows.first() else {
        return Ok(None);
    };
    let id: i64 = row.get(0)?;
    let bad = StoreError::bad_row("operators", id, &store.path);
    let keys = store.keys()?;
    if !seals::holds(keys, &seals::OPERATORS, row)? {
        return Err(bad("its seal does not match its content".into()));
    }
    let role_text: String = row.get(2)?;
    let role = Role::parse(&role_text).ok_or_else(|| bad(format!("not a role: {role_text:?}")))?;
    let info = OperatorInfo {
        name: row.get(1)?,
        role,
        active: row.get::<i64>(4)? == 1,
        failed_logins: row.get(5)?,
        locked_until: row.get(6)?,
        created_at: row.get(7)?,
    };
    Ok(Some((id, info, row.get(3)?)))
}

fn locked_until(info: &OperatorInfo, at: DateTime<Utc>) -> Option<String> {
    info.locked_until
        .as_deref()
        .and_then(|until| DateTime::parse_from_rfc3339(until).ok())
        .filter(|until| *until > at)
        .map(|until| until.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
}

impl Store {
    /// Whether any operator account exists: then every change needs a login.
    pub fn has_operators(&self) -> StoreResult<bool> {
        Ok(self
            .conn
            .query_row("SELECT 1 FROM operators LIMIT 1", [], |_| Ok(()))
            .optional()?
            .is_some())
    }

    /// Every account, by name.
    pub fn operators(&self) -> StoreResult<Vec<OperatorInfo>> {
        let names: Vec<String> = self.conn.query_map(
            "SELECT name FROM operators ORDER BY name",
            params![],
            |row| row.get(0),
        )?;
        names
            .iter()
            .map(|name| {
                read_operator(&self.conn, self, name).map(|found| found.expect("listed just now").1)
            })
            .collect()
    }

    /// Adds an account. The first one must be a supervisor, so that someone can manage
    /// the rest; after it, only a supervisor's session adds accounts.
    pub fn add_operator(
        &mut self,
        name: &str,
        role: Role,
        secret: &str,
        by: &Session,
    ) -> StoreResult<OperatorInfo> {
        check_text("operator name", name)?;
        check_secret(name, role, secret)?;
        if self.has_operators()? {
            self.authorize(by, Permission::ManageOperators)?;
        } else if role != Role::Supervisor {
            return Err(StoreError::InvalidSetting(
                "the first operator must be a supervisor, who can then add the others".into(),
            ));
        }
        let hash = hash_secret(secret)?;
        let created_at = now();
        self.write(by.name(), "add_operator", |tx, keys, changes| {
            let taken: bool = tx.query_row(
                "SELECT EXISTS (SELECT 1 FROM operators WHERE name = ?1)",
                params![name],
                |row| row.get(0),
            )?;
            if taken {
                return Err(StoreError::InvalidSetting(format!(
                    "an operator named {name:?} already exists"
                )));
            }
            tx.execute(
                "INSERT INTO operators (name, role, secret_hash, active, failed_logins, created_at)
                 VALUES (?1, ?2, ?3, 1, 0, ?4)",
                params![name, role.as_str(), hash, created_at],
            )?;
            let id = tx.last_insert_rowid()?;
            seals::seal(tx, keys, &seals::OPERATORS, &id)?;
            changes.put(tx, &OPERATORS, id)?;
            Ok(((), serde_json::json!({ "operator": name, "role": role })))
        })?;
        Ok(OperatorInfo {
            name: name.to_string(),
            role,
            active: true,
            failed_logins: 0,
            locked_until: None,
            created_at,
        })
    }

    /// Checks `secret` for `name`. A success resets the failure count; a failure counts,
    /// and the `MAX_FAILED_LOGINS`th in a row locks the account for `LOCKOUT`. Each is an
    /// audit row. An unknown name is the same error as a wrong secret.
    pub fn login(&mut self, name: &str, secret: &str) -> StoreResult<Session> {
        let found = read_operator(&self.conn, self, name)?;
        let Some((id, info, hash)) = found else {
            // The same work as a real check, so that timing does not tell names apart.
            let _ = secret_matches(secret, &hash_secret("not an account")?);
            let attempted = name.chars().take(64).collect::<String>();
            self.write("unknown", "login_failed", |_, _, _| {
                Ok::<_, StoreError>(((), serde_json::json!({ "operator": attempted })))
            })?;
            return Err(StoreError::BadLogin {
                name: name.to_string(),
            });
        };
        if !info.active {
            return Err(StoreError::OperatorDisabled {
                name: name.to_string(),
            });
        }
        let at = Utc::now();
        if let Some(until) = locked_until(&info, at) {
            return Err(StoreError::LockedOut {
                name: name.to_string(),
                until,
            });
        }
        let good = secret_matches(secret, &hash);
        let failures = if good { 0 } else { info.failed_logins + 1 };
        let lock = (failures >= MAX_FAILED_LOGINS)
            .then(|| (at + LOCKOUT).to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
        let action = match (good, &lock) {
            (true, _) => "login",
            (false, Some(_)) => "locked_out",
            (false, None) => "login_failed",
        };
        self.write(name, action, |tx, keys, changes| {
            tx.execute(
                "UPDATE operators SET failed_logins = ?1, locked_until = ?2 WHERE id = ?3",
                params![if lock.is_some() { 0 } else { failures }, lock, id],
            )?;
            seals::seal(tx, keys, &seals::OPERATORS, &id)?;
            changes.put(tx, &OPERATORS, id)?;
            Ok::<_, StoreError>((
                (),
                serde_json::json!({ "operator": name, "failures": failures, "locked_until": lock }),
            ))
        })?;
        match (good, lock) {
            (true, _) => Ok(Session {
                name: name.to_string(),
                role: Some(info.role),
            }),
            (false, Some(until)) => Err(StoreError::LockedOut {
                name: name.to_string(),
                until,
            }),
            (false, None) => Err(StoreError::BadLogin {
                name: name.to_string(),
            }),
        }
    }

    /// Whether `session` may do `permission` now: an operator's account is read again
    /// (still there, still active, the same role, its seal whole); the single-user desk
    /// only while no account exists.
    pub fn authorize(&self, session: &Session, permission: Permission) -> StoreResult<()> {
        let refuse = |why: String| Err(StoreError::NotAllowed(why));
        let Some(role) = session.role else {
            if self.has_operators()? {
                return refuse(format!(
                    "to {}, log in as an operator (this database has operator accounts)",
                    permission.describe()
                ));
            }
            return Ok(());
        };
        match read_operator(&self.conn, self, &session.name)? {
            Some((_, info, _)) if info.active && info.role == role => {
                if role.allows(permission) {
                    Ok(())
                } else {
                    refuse(format!(
                        "{} ({role}) may not {}",
                        session.name,
                        permission.describe()
                    ))
                }
            }
            _ => refuse(format!(
                "the account {} is no longer active with that role: log in again",
                session.name
            )),
        }
    }

    /// Enables or disables an account. The last active supervisor stays.
    pub fn set_operator_active(
        &mut self,
        name: &str,
        active: bool,
        by: &Session,
    ) -> StoreResult<()> {
        self.authorize(by, Permission::ManageOperators)?;
        let (id, info, _) = read_operator(&self.conn, self, name)?
            .ok_or_else(|| StoreError::InvalidSetting(format!("no operator named {name:?}")))?;
        if !active && info.role == Role::Supervisor && self.active_supervisors()? <= 1 {
            return Err(StoreError::InvalidSetting(
                "the last active supervisor cannot be disabled".into(),
            ));
        }
        self.write(by.name(), "set_operator_active", |tx, keys, changes| {
            tx.execute(
                "UPDATE operators SET active = ?1, failed_logins = 0, locked_until = NULL WHERE id = ?2",
                params![active as i64, id],
            )?;
            seals::seal(tx, keys, &seals::OPERATORS, &id)?;
            changes.put(tx, &OPERATORS, id)?;
            Ok::<_, StoreError>((
                (),
                serde_json::json!({ "operator": name, "active": active }),
            ))
        })
    }

    /// Sets a new secret (and lifts a lock-out): a supervisor for anyone, anyone for
    /// themselves.
    pub fn set_operator_secret(
        &mut self,
        name: &str,
        secret: &str,
        by: &Session,
    ) -> StoreResult<()> {
        if by.name() != name || !by.is_operator() {
            self.authorize(by, Permission::ManageOperators)?;
        }
        let (id, info, _) = read_operator(&self.conn, self, name)?
            .ok_or_else(|| StoreError::InvalidSetting(format!("no operator named {name:?}")))?;
        check_secret(name, info.role, secret)?;
        let hash = hash_secret(secret)?;
        self.write(by.name(), "set_operator_secret", |tx, keys, changes| {
            tx.execute(
                "UPDATE operators SET secret_hash = ?1, failed_logins = 0, locked_until = NULL WHERE id = ?2",
                params![hash, id],
            )?;
            seals::seal(tx, keys, &seals::OPERATORS, &id)?;
            changes.put(tx, &OPERATORS, id)?;
            Ok::<_, StoreError>(((), serde_json::json!({ "operator": name })))
        })
    }

    /// Active supervisor accounts: with one, four eyes are impossible.
    pub fn active_supervisors(&self) -> StoreResult<usize> {
        Ok(self
            .operators()?
            .iter()
            .filter(|o| o.active && o.role == Role::Supervisor)
            .count())
    }
}

/// How many digits a person's kiosk PIN has.
pub const PIN_DIGITS: std::ops::RangeInclusive<usize> = 4..=8;

/// The sealed setting that holds a person's kiosk PIN hash.
pub(super) fn pin_key(person_id: i64) -> String {
    format!("pin.person.{person_id}")
}

impl Store {
    /// Sets (or replaces) a person's kiosk PIN, asked for when the camera is not sure it
    /// is them: its argon2id hash in a sealed setting, and an audit row naming who set it
    /// (never the PIN). Deleting the person deletes it.
    pub fn set_pin(&mut self, person_id: i64, pin: &str, actor: &str) -> StoreResult<()> {
        if !(pin.chars().all(|c| c.is_ascii_digit()) && PIN_DIGITS.contains(&pin.len())) {
            return Err(StoreError::InvalidSetting(format!(
                "a PIN is {} to {} digits",
                PIN_DIGITS.start(),
                PIN_DIGITS.end()
            )));
        }
        self.person(person_id)?;
        let hash = hash_secret(pin)?;
        self.write(actor, "set_pin", |tx, keys, changes| {
            super::records::upsert_setting(tx, keys, changes, &pin_key(person_id), &hash)?;
            Ok::<_, StoreError>(((), serde_json::json!({ "person_id": person_id })))
        })
    }

    /// Whether the person has a kiosk PIN.
    pub fn has_pin(&self, person_id: i64) -> StoreResult<bool> {
        Ok(self.setting(&pin_key(person_id))?.is_some())
    }

    /// Whether `pin` is the person's kiosk PIN. Every try is an audit row: a PIN lets
    /// someone in whom the camera was not sure of.
    pub fn check_pin(&mut self, person_id: i64, pin: &str, actor: &str) -> StoreResult<bool> {
        let Some(hash) = self.setting(&pin_key(person_id))? else {
            return Ok(false);
        };
        let matched = secret_matches(pin, &hash);
        let detail = serde_json::json!({ "person_id": person_id, "matched": matched });
        self.audit_append(actor, "pin_check", &detail.to_string())?;
        Ok(matched)
    }
}
