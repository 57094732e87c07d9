//! One connection over either engine: the embedded SQLite file or a PostgreSQL server.
//! The store's modules write their SQL once (SQLite's `?N` placeholders, rewritten to
//! `$N` for PostgreSQL) and read every value as one of the five kinds SQLite stores, so
//! the hashes and seals over stored values are the same bytes on both engines and a
//! site moved from one to the other keeps its audit chain.

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use postgres::types::{FromSql, IsNull, ToSql, Type};
use rusqlite::types::ValueRef;

use crate::error::{StoreError, StoreResult};

/// A stored value, as SQLite keeps it (PostgreSQL's BIGINT, DOUBLE PRECISION, TEXT and
/// BYTEA read as the same).
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Integer(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
}

impl Value {
    /// The value as a row key is written in the ledger: integers and text as they are.
    pub fn key_text(&self) -> String {
        match self {
            Value::Integer(i) => i.to_string(),
            Value::Text(t) => t.clone(),
            other => format!("{other:?}"),
        }
    }
}

/// What can be bound to a placeholder.
pub trait ToValue {
    fn to_value(&self) -> Value;
}

/// What a column can be read as; anything else is an error naming the column.
pub trait FromValue: Sized {
    fn from_value(value: &Value) -> Result<Self, String>;
}

impl<T: ToValue + ?Sized> ToValue for &T {
    fn to_value(&self) -> Value {
        (**self).to_value()
    }
}

impl<T: ToValue> ToValue for Option<T> {
    fn to_value(&self) -> Value {
        self.as_ref().map_or(Value::Null, ToValue::to_value)
    }
}

impl ToValue for Value {
    fn to_value(&self) -> Value {
        self.clone()
    }
}

macro_rules! integer_value {
    ($($t:ty),*) => {$(
        impl ToValue for $t {
            fn to_value(&self) -> Value {
                Value::Integer(i64::try_from(*self).expect("a count fits in 64 bits"))
            }
        }

        impl FromValue for $t {
            fn from_value(value: &Value) -> Result<Self, String> {
                match value {
                    Value::Integer(i) => <$t>::try_from(*i)
                        .map_err(|_| format!("{i} is out of range")),
                    other => Err(format!("expected an integer, found {other:?}")),
                }
            }
        }
    )*};
}
integer_value!(i64, i32, u32, usize);

impl ToValue for bool {
    fn to_value(&self) -> Value {
        Value::Integer(i64::from(*self))
    }
}

impl FromValue for bool {
    fn from_value(value: &Value) -> Result<Self, String> {
        i64::from_value(value).map(|i| i != 0)
    }
}

impl ToValue for f64 {
    fn to_value(&self) -> Value {
        Value::Real(*self)
    }
}

impl ToValue for f32 {
    fn to_value(&self) -> Value {
        Value::Real(f64::from(*self))
    }
}

impl FromValue for f64 {
    fn from_value(value: &Value) -> Result<Self, String> {
        match value {
            Value::Real(f) => Ok(*f),
            Value::Integer(i) => Ok(*i as f64),
            other => Err(format!("expected a number, found {other:?}")),
        }
    }
}

impl FromValue for f32 {
    fn from_value(value: &Value) -> Result<Self, String> {
        f64::from_value(value).map(|f| f as f32)
    }
}

impl ToValue for str {
    fn to_value(&self) -> Value {
        Value::Text(self.to_string())
    }
}

impl ToValue for String {
    fn to_value(&self) -> Value {
        Value::Text(self.clone())
    }
}

impl FromValue for String {
    fn from_value(value: &Value) -> Result<Self, String> {
        match value {
            Value::Text(t) => Ok(t.clone()),
            other => Err(format!("expected text, found {other:?}")),
        }
    }
}

impl ToValue for [u8] {
    fn to_value(&self) -> Value {
        Value::Blob(self.to_vec())
    }
}

impl ToValue for Vec<u8> {
    fn to_value(&self) -> Value {
        Value::Blob(self.clone())
    }
}

impl FromValue for Vec<u8> {
    fn from_value(value: &Value) -> Result<Self, String> {
        match value {
            Value::Blob(b) => Ok(b.clone()),
            other => Err(format!("expected bytes, found {other:?}")),
        }
    }
}

impl<T: FromValue> FromValue for Option<T> {
    fn from_value(value: &Value) -> Result<Self, String> {
        match value {
            Value::Null => Ok(None),
            other => T::from_value(other).map(Some),
        }
    }
}

impl FromValue for Value {
    fn from_value(value: &Value) -> Result<Self, String> {
        Ok(value.clone())
    }
}

/// A row read back, every column already copied out of the engine.
#[derive(Debug, Clone)]
pub struct Row {
    values: Vec<Value>,
}

impl Row {
    pub fn get<T: FromValue>(&self, column: usize) -> StoreResult<T> {
        let value = self.values.get(column).ok_or_else(|| StoreError::Value {
            column,
            reason: "no such column".into(),
        })?;
        T::from_value(value).map_err(|reason| StoreError::Value { column, reason })
    }

    pub fn value(&self, column: usize) -> &Value {
        self.values.get(column).unwrap_or(&Value::Null)
    }
}

/// Placeholder values, as `params!` or an array of them.
pub trait Params {
    fn values(self) -> Vec<Value>;
}

impl Params for &[&dyn ToValue] {
    fn values(self) -> Vec<Value> {
        self.iter().map(|v| v.to_value()).collect()
    }
}

impl<const N: usize> Params for [&dyn ToValue; N] {
    fn values(self) -> Vec<Value> {
        self.iter().map(|v| v.to_value()).collect()
    }
}

impl Params for Vec<Value> {
    fn values(self) -> Vec<Value> {
        self
    }
}

/// The values of one statement's placeholders, in order.
macro_rules! params {
    () => { [] as [&dyn $crate::store::sql::ToValue; 0] };
    ($($value:expr),+ $(,)?) => {
        [$(&$value as &dyn $crate::store::sql::ToValue),+]
    };
}
pub(crate) use params;

/// `Option` for a query that found no row.
pub trait OptionalExtension<T> {
    fn optional(self) -> StoreResult<Option<T>>;
}

impl<T> OptionalExtension<T> for StoreResult<T> {
    fn optional(self) -> StoreResult<Option<T>> {
        match self {
            Ok(value) => Ok(Some(value)),
            Err(StoreError::NoRow) => Ok(None),
            Err(other) => Err(other),
        }
    }
}

/// Which SQL a statement is written in, where the two differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

enum Engine {
    Sqlite(rusqlite::Connection),
    Postgres(Box<Server>),
}

struct Server {
    client: RefCell<postgres::Client>,
    /// To connect again after the server went away (a restart, a network cut).
    config: postgres::Config,
    /// Statements every new session runs first (a read-only session says so).
    session_setup: RefCell<Vec<String>>,
    /// A lost connection is not replaced under an open transaction: it failed.
    in_transaction: std::cell::Cell<bool>,
    /// Statements prepared on this connection, by their SQLite text.
    statements: RefCell<HashMap<String, postgres::Statement>>,
    /// After a failed reconnection, statements fail at once until then: a kiosk whose
    /// server is away does not wait for a connection on every camera frame.
    retry_after: std::cell::Cell<Option<std::time::Instant>>,
}

/// How long a failed reconnection is trusted before the next one is tried.
const RECONNECT_PAUSE: std::time::Duration = std::time::Duration::from_secs(2);

/// The connection a store reads and writes through.
pub struct Db {
    engine: Engine,
    /// The file, or the server's address without its password: what errors name.
    location: PathBuf,
}

/// Every writer takes this lock first (`pg_advisory_xact_lock`), so writes to one
/// database are serial as SQLite's IMMEDIATE transactions are: the audit chain has one
/// head, and two kiosks punching one person cannot both find "no punch yet".
const WRITER_LOCK: i64 = 0x564F_5543;

impl Db {
    pub fn sqlite(conn: rusqlite::Connection, path: &Path) -> Self {
        Self {
            engine: Engine::Sqlite(conn),
            location: path.to_path_buf(),
        }
    }

    pub fn postgres(client: postgres::Client, config: postgres::Config, location: &str) -> Self {
        Self {
            engine: Engine::Postgres(Box::new(Server {
                client: RefCell::new(client),
                config,
                session_setup: RefCell::new(Vec::new()),
                in_transaction: std::cell::Cell::new(false),
                statements: RefCell::new(HashMap::new()),
                retry_after: std::cell::Cell::new(None),
            })),
            location: PathBuf::from(location),
        }
    }

    pub fn dialect(&self) -> Dialect {
        match self.engine {
            Engine::Sqlite(_) => Dialect::Sqlite,
            Engine::Postgres(_) => Dialect::Postgres,
        }
    }

    pub fn location(&self) -> &Path {
        &self.location
    }

    /// The SQLite connection, for what only SQLite has (its header, backups); None on a
    /// server.
    pub fn as_sqlite(&self) -> Option<&rusqlite::Connection> {
        match &self.engine {
            Engine::Sqlite(conn) => Some(conn),
            Engine::Postgres(_) => None,
        }
    }

    pub fn into_sqlite(self) -> Option<rusqlite::Connection> {
        match self.engine {
            Engine::Sqlite(conn) => Some(conn),
            Engine::Postgres(_) => None,
        }
    }

    /// The server connection itself, for what only it does (listening for notes).
    pub fn into_client(self) -> Option<postgres::Client> {
        match self.engine {
            Engine::Sqlite(_) => None,
            Engine::Postgres(server) => Some(server.client.into_inner()),
        }
    }

    pub fn as_sqlite_mut(&mut self) -> Option<&mut rusqlite::Connection> {
        match &mut self.engine {
            Engine::Sqlite(conn) => Some(conn),
            Engine::Postgres(_) => None,
        }
    }

    /// Runs one statement; returns the rows it changed.
    pub fn execute(&self, sql: &str, params: impl Params) -> StoreResult<usize> {
        let values = params.values();
        match &self.engine {
            Engine::Sqlite(conn) => {
                let mut statement = conn.prepare_cached(sql).map_err(|e| self.sqlite_error(e))?;
                statement
                    .execute(rusqlite::params_from_iter(values.iter().map(to_sqlite)))
                    .map_err(|e| self.sqlite_error(e))
            }
            Engine::Postgres(server) => {
                self.reconnect_if_lost(server)?;
                let statement = self.pg_statement(sql)?;
                let bound = bound(&values);
                let changed = server
                    .client
                    .borrow_mut()
                    .execute(&statement, &bound)
                    .map_err(|e| self.pg_error(e))?;
                Ok(changed as usize)
            }
        }
    }

    /// Runs statements without placeholders, one after another (schemas, pragmas).
    pub fn execute_batch(&self, sql: &str) -> StoreResult<()> {
        match &self.engine {
            Engine::Sqlite(conn) => conn.execute_batch(sql).map_err(|e| self.sqlite_error(e)),
            Engine::Postgres(server) => {
                self.reconnect_if_lost(server)?;
                server
                    .client
                    .borrow_mut()
                    .batch_execute(sql)
                    .map_err(|e| self.pg_error(e))
            }
        }
    }

    /// Every row the query returns.
    pub fn query(&self, sql: &str, params: impl Params) -> StoreResult<Vec<Row>> {
        let values = params.values();
        match &self.engine {
            Engine::Sqlite(conn) => {
                let mut statement = conn.prepare_cached(sql).map_err(|e| self.sqlite_error(e))?;
                let columns = statement.column_count();
                let mut rows = statement
                    .query(rusqlite::params_from_iter(values.iter().map(to_sqlite)))
                    .map_err(|e| self.sqlite_error(e))?;
                let mut found = Vec::new();
                while let Some(row) = rows.next().map_err(|e| self.sqlite_error(e))? {
                    let values = (0..columns)
                        .map(|i| row.get_ref(i).map(from_sqlite))
                        .collect::<rusqlite::Result<_>>()
                        .map_err(|e| self.sqlite_error(e))?;
                    found.push(Row { values });
                }
                Ok(found)
            }
            Engine::Postgres(server) => {
                self.reconnect_if_lost(server)?;
                let statement = self.pg_statement(sql)?;
                let bound = bound(&values);
                let rows = server
                    .client
                    .borrow_mut()
                    .query(&statement, &bound)
                    .map_err(|e| self.pg_error(e))?;
                rows.iter()
                    .map(|row| {
                        let values = (0..row.len())
                            .map(|i| {
                                row.try_get::<_, Value>(i).map_err(|e| StoreError::Value {
                                    column: i,
                                    reason: e.to_string(),
                                })
                            })
                            .collect::<StoreResult<_>>()?;
                        Ok(Row { values })
                    })
                    .collect()
            }
        }
    }

    /// Each row the query returns, through `read`.
    pub fn query_map<T>(
        &self,
        sql: &str,
        params: impl Params,
        read: impl FnMut(&Row) -> StoreResult<T>,
    ) -> StoreResult<Vec<T>> {
        self.query(sql, params)?.iter().map(read).collect()
    }

    /// The first row, through `read`; `StoreError::NoRow` when there is none (see
    /// `OptionalExtension`).
    pub fn query_row<T>(
        &self,
        sql: &str,
        params: impl Params,
        read: impl FnOnce(&Row) -> StoreResult<T>,
    ) -> StoreResult<T> {
        match self.query(sql, params)?.first() {
            Some(row) => read(row),
            None => Err(StoreError::NoRow),
        }
    }

    /// The id the last INSERT into a table with a generated id gave its row.
    pub fn last_insert_rowid(&self) -> StoreResult<i64> {
        match &self.engine {
            Engine::Sqlite(conn) => Ok(conn.last_insert_rowid()),
            Engine::Postgres(_) => self.query_row("SELECT lastval()", params![], |row| row.get(0)),
        }
    }

    /// Begins a transaction that writes: no other writer runs until it ends (SQLite's
    /// IMMEDIATE; the writers' advisory lock on a server). Rolled back unless committed.
    pub fn begin_write(&self) -> StoreResult<Transaction<'_>> {
        match self.dialect() {
            Dialect::Sqlite => self.execute_batch("BEGIN IMMEDIATE")?,
            Dialect::Postgres => {
                self.execute_batch("BEGIN")?;
                let locked = self.execute("SELECT pg_advisory_xact_lock(?1)", params![WRITER_LOCK]);
                if let Err(error) = locked {
                    let _ = self.execute_batch("ROLLBACK");
                    return Err(error);
                }
            }
        }
        if let Engine::Postgres(server) = &self.engine {
            server.in_transaction.set(true);
        }
        Ok(Transaction {
            db: self,
            open: true,
        })
    }

    /// Runs `sql` now and again first thing in every session after a reconnection.
    pub fn set_session(&self, sql: &str) -> StoreResult<()> {
        self.execute_batch(sql)?;
        if let Engine::Postgres(server) = &self.engine {
            server.session_setup.borrow_mut().push(sql.to_string());
        }
        Ok(())
    }

    /// A connection the server dropped is made again before the next statement, outside
    /// a transaction: the statement that found it gone failed, the next one need not.
    fn reconnect_if_lost(&self, server: &Server) -> StoreResult<()> {
        if !server.client.borrow().is_closed() || server.in_transaction.get() {
            return Ok(());
        }
        if let Some(after) = server.retry_after.get()
            && std::time::Instant::now() < after
        {
            return Err(StoreError::Unreachable {
                reason: "the server did not answer a moment ago".into(),
                location: self.location.clone(),
            });
        }
        let client = super::server::open_client(&server.config).map_err(|e| {
            server
                .retry_after
                .set(Some(std::time::Instant::now() + RECONNECT_PAUSE));
            self.pg_error(e)
        })?;
        server.retry_after.set(None);
        *server.client.borrow_mut() = client;
        server.statements.borrow_mut().clear();
        tracing::info!(server = %self.location.display(), "connected to the server again");
        for sql in server.session_setup.borrow().iter() {
            server
                .client
                .borrow_mut()
                .batch_execute(sql)
                .map_err(|e| self.pg_error(e))?;
        }
        Ok(())
    }

    fn transaction_ended(&self) {
        if let Engine::Postgres(server) = &self.engine {
            server.in_transaction.set(false);
        }
    }

    fn sqlite_error(&self, error: rusqlite::Error) -> StoreError {
        super::classify(error, &self.location)
    }

    fn pg_error(&self, error: postgres::Error) -> StoreError {
        server_error(error, &self.location)
    }

    fn pg_statement(&self, sql: &str) -> StoreResult<postgres::Statement> {
        let Engine::Postgres(server) = &self.engine else {
            unreachable!("called for PostgreSQL only")
        };
        let Server {
            client, statements, ..
        } = server.as_ref();
        if let Some(statement) = statements.borrow().get(sql) {
            return Ok(statement.clone());
        }
        let statement = client
            .borrow_mut()
            .prepare(&numbered_placeholders(sql))
            .map_err(|e| self.pg_error(e))?;
        statements
            .borrow_mut()
            .insert(sql.to_string(), statement.clone());
        Ok(statement)
    }
}

/// What the server said, or that it could not be reached (`Unreachable`: the kiosk's
/// outbox keeps its punches then).
pub fn server_error(error: postgres::Error, location: &Path) -> StoreError {
    // A server shutting down, restarting or not yet accepting connections says so before it
    // goes (SQLSTATE class 57P, and class 08 for the connection itself): it is away, not
    // refusing.
    let going_away = |db: &postgres::error::DbError| {
        let code = db.code().code();
        code.starts_with("57P") || code.starts_with("08")
    };
    match error.as_db_error() {
        Some(db) if !going_away(db) => StoreError::Server {
            reason: db.message().to_string(),
            location: location.to_path_buf(),
        },
        _ => StoreError::Unreachable {
            reason: error.to_string(),
            location: location.to_path_buf(),
        },
    }
}

/// A transaction that writes: `Deref`s to its `Db`, rolls back when dropped uncommitted.
pub struct Transaction<'a> {
    db: &'a Db,
    open: bool,
}

impl Transaction<'_> {
    pub fn commit(mut self) -> StoreResult<()> {
        self.open = false;
        let committed = self.db.execute_batch("COMMIT");
        self.db.transaction_ended();
        committed
    }
}

impl std::ops::Deref for Transaction<'_> {
    type Target = Db;
    fn deref(&self) -> &Db {
        self.db
    }
}

impl Drop for Transaction<'_> {
    fn drop(&mut self) {
        if self.open
            && let Err(error) = self.db.execute_batch("ROLLBACK")
        {
            tracing::warn!(%error, "a transaction could not be rolled back");
        }
        self.db.transaction_ended();
    }
}

/// SQLite's `?N` placeholders as PostgreSQL's `$N`, outside quoted text.
fn numbered_placeholders(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut quoted = false;
    for c in sql.chars() {
        match c {
            '\'' => {
                quoted = !quoted;
                out.push(c);
            }
            '?' if !quoted => out.push('$'),
            _ => out.push(c),
        }
    }
    out
}

/// Values as the server client binds them.
fn bound(values: &[Value]) -> Vec<&(dyn ToSql + Sync)> {
    values.iter().map(|v| v as &(dyn ToSql + Sync)).collect()
}

fn to_sqlite(value: &Value) -> rusqlite::types::Value {
    match value {
        Value::Null => rusqlite::types::Value::Null,
        Value::Integer(i) => rusqlite::types::Value::Integer(*i),
        Value::Real(f) => rusqlite::types::Value::Real(*f),
        Value::Text(t) => rusqlite::types::Value::Text(t.clone()),
        Value::Blob(b) => rusqlite::types::Value::Blob(b.clone()),
    }
}

fn from_sqlite(value: ValueRef<'_>) -> Value {
    match value {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(i) => Value::Integer(i),
        ValueRef::Real(f) => Value::Real(f),
        ValueRef::Text(t) => Value::Text(String::from_utf8_lossy(t).into_owned()),
        ValueRef::Blob(b) => Value::Blob(b.to_vec()),
    }
}

type BoxError = Box<dyn std::error::Error + Sync + Send>;

impl ToSql for Value {
    fn to_sql(&self, ty: &Type, out: &mut bytes::BytesMut) -> Result<IsNull, BoxError> {
        match self {
            Value::Null => Ok(IsNull::Yes),
            Value::Integer(i) => match *ty {
                Type::INT8 => i.to_sql(ty, out),
                Type::INT4 => i32::try_from(*i)?.to_sql(ty, out),
                Type::INT2 => i16::try_from(*i)?.to_sql(ty, out),
                Type::BOOL => (*i != 0).to_sql(ty, out),
                Type::FLOAT8 => (*i as f64).to_sql(ty, out),
                _ => i.to_string().as_str().to_sql(ty, out),
            },
            Value::Real(f) => match *ty {
                Type::FLOAT4 => (*f as f32).to_sql(ty, out),
                _ => f.to_sql(ty, out),
            },
            Value::Text(t) => t.as_str().to_sql(ty, out),
            Value::Blob(b) => b.as_slice().to_sql(ty, out),
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    postgres::types::to_sql_checked!();
}

impl<'a> FromSql<'a> for Value {
    fn from_sql(ty: &Type, raw: &'a [u8]) -> Result<Self, BoxError> {
        Ok(match *ty {
            Type::INT8 => Value::Integer(i64::from_sql(ty, raw)?),
            Type::INT4 => Value::Integer(i32::from_sql(ty, raw)?.into()),
            Type::INT2 => Value::Integer(i16::from_sql(ty, raw)?.into()),
            Type::BOOL => Value::Integer(bool::from_sql(ty, raw)?.into()),
            Type::FLOAT8 => Value::Real(f64::from_sql(ty, raw)?),
            Type::FLOAT4 => Value::Real(f32::from_sql(ty, raw)?.into()),
            Type::BYTEA => Value::Blob(Vec::<u8>::from_sql(ty, raw)?),
            _ => Value::Text(String::from_sql(ty, raw)?),
        })
    }

    fn from_sql_null(_: &Type) -> Result<Self, BoxError> {
        Ok(Value::Null)
    }

    fn accepts(ty: &Type) -> bool {
        [
            Type::INT8,
            Type::INT4,
            Type::INT2,
            Type::BOOL,
            Type::FLOAT8,
            Type::FLOAT4,
            Type::BYTEA,
        ]
        .contains(ty)
            || <String as FromSql>::accepts(ty)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn placeholders_are_numbered_outside_quoted_text() {
        assert_eq!(
            super::numbered_placeholders("SELECT '?1', x FROM t WHERE a = ?1 AND b = ?12"),
            "SELECT '?1', x FROM t WHERE a = $1 AND b = $12"
        );
    }
}
