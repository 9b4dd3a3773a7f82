//! The SQLite writer's statements, run on the caller's thread with rusqlite.
//!
//! sqlx runs each SQLite statement on a worker thread of its connection: a round trip
//! (a channel send, a thread woken, the answer sent back, the task woken) of about
//! 30 µs on a small machine, where a whole single-row transaction takes SQLite about
//! 7 µs. The writer connection (see [`super::write`]) runs its statements right where
//! the transaction's code runs instead, like a blocking call of a few microseconds.
//! What this module keeps equal to sqlx: `$N` and `?N` placeholders bound by number
//! (missing ones are NULL), the values rows decode to, and the errors: a failure of
//! SQLite comes back as `sqlx::Error::Database` with SQLite's extended result code and
//! its constraint kind, so callers classify it exactly as they classify sqlx's.

use std::borrow::Cow;
use std::fmt;

use rusqlite::ToSql;
use rusqlite::types::FromSql;
use sqlx::error::{DatabaseError, ErrorKind};

/// Statements the writer keeps prepared (sqlx's default for a connection).
pub(super) const STATEMENT_CACHE: usize = 100;

/// A failure SQLite reported to the writer: its extended result code and message.
#[derive(Debug)]
pub struct WriterError {
    code: i32,
    message: String,
}

impl fmt::Display for WriterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // As sqlx words SQLite's errors: some messages ("database is locked") are
        // ambiguous without the code.
        write!(f, "(code: {}) {}", self.code, self.message)
    }
}

impl std::error::Error for WriterError {}

impl DatabaseError for WriterError {
    fn message(&self) -> &str {
        &self.message
    }

    fn code(&self) -> Option<Cow<'_, str>> {
        Some(self.code.to_string().into())
    }

    fn as_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        self
    }

    fn as_error_mut(&mut self) -> &mut (dyn std::error::Error + Send + Sync + 'static) {
        self
    }

    fn into_error(self: Box<Self>) -> Box<dyn std::error::Error + Send + Sync + 'static> {
        self
    }

    fn kind(&self) -> ErrorKind {
        use rusqlite::ffi;
        match self.code {
            ffi::SQLITE_CONSTRAINT_UNIQUE | ffi::SQLITE_CONSTRAINT_PRIMARYKEY => {
                ErrorKind::UniqueViolation
            }
            ffi::SQLITE_CONSTRAINT_FOREIGNKEY => ErrorKind::ForeignKeyViolation,
            ffi::SQLITE_CONSTRAINT_NOTNULL => ErrorKind::NotNullViolation,
            ffi::SQLITE_CONSTRAINT_CHECK => ErrorKind::CheckViolation,
            _ => ErrorKind::Other,
        }
    }
}

/// rusqlite's error as the error sqlx gives for the same failure.
pub(super) fn to_sqlx(error: rusqlite::Error) -> sqlx::Error {
    use rusqlite::Error as E;
    match error {
        E::SqliteFailure(failure, message) => sqlx::Error::Database(Box::new(WriterError {
            code: failure.extended_code,
            message: message.unwrap_or_else(|| failure.to_string()),
        })),
        E::QueryReturnedNoRows => sqlx::Error::RowNotFound,
        E::InvalidColumnName(name) => sqlx::Error::ColumnNotFound(name),
        E::FromSqlConversionFailure(index, _, source) => sqlx::Error::ColumnDecode {
            index: index.to_string(),
            source,
        },
        E::InvalidColumnType(index, name, found) => sqlx::Error::ColumnDecode {
            index: format!("{name:?} ({index})"),
            source: format!("a {found} value does not decode to this field's type").into(),
        },
        E::IntegralValueOutOfRange(index, value) => sqlx::Error::ColumnDecode {
            index: index.to_string(),
            source: format!("{value} is out of range for this field's type").into(),
        },
        E::ToSqlConversionFailure(source) => sqlx::Error::Encode(source),
        other => sqlx::Error::Protocol(other.to_string()),
    }
}

/// The value of column `name` (the field decoders `#[derive(Record)]` writes).
pub fn column<T: FromSql>(row: &rusqlite::Row<'_>, name: &str) -> Result<T, sqlx::Error> {
    row.get(name).map_err(to_sqlx)
}

/// `sql`, prepared (or taken from the cache) with `params` bound by number.
fn prepare<'c>(
    conn: &'c rusqlite::Connection,
    sql: &str,
    params: &[&dyn ToSql],
    echo: bool,
) -> Result<rusqlite::CachedStatement<'c>, sqlx::Error> {
    if echo {
        log::info!(target: "server::db::writer", "{sql}");
    }
    let mut statement = conn.prepare_cached(sql).map_err(to_sqlx)?;
    let mut unnamed = 0;
    for index in 1..=statement.parameter_count() {
        // `$N` and `?N` name their parameter by number; a bare `?` takes the next one.
        let number = match statement.parameter_name(index) {
            Some(name) => name
                .strip_prefix(['$', '?'])
                .and_then(|n| n.parse::<usize>().ok())
                .ok_or_else(|| {
                    sqlx::Error::Protocol(format!("unsupported SQL parameter format: {name}"))
                })?,
            None => {
                unnamed += 1;
                unnamed
            }
        };
        // Like sqlx: a placeholder without a value is NULL.
        if let Some(param) = number.checked_sub(1).and_then(|i| params.get(i)) {
            statement
                .raw_bind_parameter(index, param)
                .map_err(to_sqlx)?;
        }
    }
    Ok(statement)
}

/// Runs the statement to its end; the number of rows it changed.
pub(super) fn execute(
    conn: &rusqlite::Connection,
    sql: &str,
    params: &[&dyn ToSql],
    echo: bool,
) -> Result<u64, sqlx::Error> {
    let mut statement = prepare(conn, sql, params, echo)?;
    let read_only = statement.readonly();
    let mut rows = statement.raw_query();
    while rows.next().map_err(to_sqlx)?.is_some() {}
    drop(rows);
    Ok(if read_only { 0 } else { conn.changes() })
}

/// Every row (at most `limit`), decoded by `decode`.
pub(super) fn fetch<T>(
    conn: &rusqlite::Connection,
    sql: &str,
    params: &[&dyn ToSql],
    echo: bool,
    limit: usize,
    decode: fn(&rusqlite::Row<'_>) -> Result<T, sqlx::Error>,
) -> Result<Vec<T>, sqlx::Error> {
    let mut statement = prepare(conn, sql, params, echo)?;
    let mut rows = statement.raw_query();
    let mut out = Vec::new();
    while out.len() < limit {
        match rows.next().map_err(to_sqlx)? {
            Some(row) => out.push(decode(row)?),
            None => break,
        }
    }
    Ok(out)
}
