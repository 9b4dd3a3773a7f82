//! SQLite statements run on the caller's thread with rusqlite: the writer's (see
//! [`super::write`]) and the request handlers' reads (see [`super::read`]).
//!
//! sqlx runs each SQLite statement on a worker thread of its connection: a round trip
//! (a channel send, a thread woken, the answer sent back, the task woken) of about
//! 30 µs on a small machine, where a whole single-row transaction takes SQLite about
//! 7 µs. These connections run their statements right where the request's code runs
//! instead, like a blocking call of a few microseconds. What this module keeps equal to
//! sqlx: `$N` and `?N` placeholders bound by number (missing ones are NULL), and the
//! errors: a failure of SQLite comes back as `sqlx::Error::Database` with SQLite's
//! extended result code and its constraint kind, so callers classify it exactly as they
//! classify sqlx's. Rows decode more strictly than sqlx's SQLite driver does: a NULL
//! or a text for an `i64` field is a decode error here, where sqlx reads 0 (PostgreSQL
//! refuses them too).

use std::borrow::Cow;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rusqlite::types::FromSql;
use rusqlite::{OpenFlags, ToSql};
use sqlx::error::{DatabaseError, ErrorKind};

/// Statements a connection keeps prepared (sqlx's default for a connection).
const STATEMENT_CACHE: usize = 100;

/// How the writer and the readers open: the pool's file, with the pool's pragmas.
#[derive(Clone)]
pub(super) struct DirectOptions {
    /// The file (or the shared in-memory database's name) the pool's connections open.
    pub(super) filename: PathBuf,
    /// A shared in-memory database.
    pub(super) memory: bool,
    /// Opened read-only (`db-copy`'s source): every write fails.
    pub(super) read_only: bool,
    /// Pragmas set when the connection opens, in order.
    pub(super) pragmas: Vec<(&'static str, String)>,
    /// How long `BEGIN IMMEDIATE` waits for another process's lock (`busy_timeout_ms`).
    pub(super) busy_timeout: Duration,
    /// Log each statement (`echo`).
    pub(super) echo: bool,
    /// A file in WAL mode: its log, watched as the writer commits.
    pub(super) log: Option<LogWatch>,
    /// A reader: closing it never checkpoints or deletes the log (the pool's own
    /// connections and its checkpoint task do).
    pub(super) reader: bool,
}

/// The write-ahead log, as the writer sees it grow: when it has grown past
/// `journal_size_limit`, the pool's checkpoint task is woken at once rather than at its
/// next round (a fast writer fills the limit in a fraction of a round).
#[derive(Clone)]
pub(super) struct LogWatch {
    /// `<db>-wal`.
    pub(super) path: PathBuf,
    /// What the checkpoint task waits on besides its timer.
    pub(super) grew: Arc<tokio::sync::Notify>,
}

/// Commits between two looks at the log's size.
const LOOK_EVERY: u64 = 64;

impl LogWatch {
    /// After the writer's `commits`-th commit: wakes the checkpoint task if the log is
    /// past its limit.
    pub(super) fn committed(&self, commits: u64) {
        if commits.is_multiple_of(LOOK_EVERY)
            && std::fs::metadata(&self.path).is_ok_and(|m| m.len() > super::JOURNAL_SIZE_LIMIT)
        {
            self.grew.notify_one();
        }
    }
}

impl DirectOptions {
    /// A reader of the same file: its cache and temporary storage as the writer's, and
    /// refusing to write (`query_only`), should a write ever reach it.
    pub(super) fn for_reading(&self) -> Self {
        let mut pragmas: Vec<_> = self
            .pragmas
            .iter()
            .filter(|(name, _)| matches!(*name, "cache_size" | "temp_store"))
            .cloned()
            .collect();
        pragmas.push(("query_only", "ON".to_string()));
        Self {
            pragmas,
            log: None,
            reader: true,
            ..self.clone()
        }
    }

    /// Opens the connection: never creates the file, and its statements never wait for
    /// a lock (the write lock is taken up front, by `BEGIN IMMEDIATE`).
    pub(super) fn open(&self) -> Result<rusqlite::Connection, sqlx::Error> {
        let mut flags = OpenFlags::SQLITE_OPEN_URI | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        flags |= match self.read_only {
            true => OpenFlags::SQLITE_OPEN_READ_ONLY,
            false => OpenFlags::SQLITE_OPEN_READ_WRITE,
        };
        if self.memory {
            flags |= OpenFlags::SQLITE_OPEN_MEMORY | OpenFlags::SQLITE_OPEN_SHARED_CACHE;
        }
        let conn = rusqlite::Connection::open_with_flags(&self.filename, flags).map_err(to_sqlx)?;
        // Before the pragmas, which read the schema: never a wait on the caller's thread.
        conn.busy_timeout(Duration::ZERO).map_err(to_sqlx)?;
        if self.reader {
            conn.set_db_config(
                rusqlite::config::DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE,
                true,
            )
            .map_err(to_sqlx)?;
        }
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        for (name, value) in &self.pragmas {
            conn.pragma_update(None, name, value).map_err(to_sqlx)?;
        }
        Ok(conn)
    }
}

/// A failure SQLite reported to a rusqlite connection: its extended result code and
/// message.
#[derive(Debug)]
pub struct DirectError {
    code: i32,
    message: String,
}

impl fmt::Display for DirectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // As sqlx words SQLite's errors: some messages ("database is locked") are
        // ambiguous without the code.
        write!(f, "(code: {}) {}", self.code, self.message)
    }
}

impl std::error::Error for DirectError {}

impl DatabaseError for DirectError {
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
        E::SqliteFailure(failure, message) => sqlx::Error::Database(Box::new(DirectError {
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
        E::Utf8Error(index, source) => sqlx::Error::ColumnDecode {
            index: index.to_string(),
            source: Box::new(source),
        },
        E::ToSqlConversionFailure(source) => sqlx::Error::Encode(source),
        // Whatever else SQLite itself reported (an error pointing into the SQL, with
        // rusqlite's `modern_sqlite`), with its code.
        other => match other.sqlite_error() {
            Some(failure) => sqlx::Error::Database(Box::new(DirectError {
                code: failure.extended_code,
                message: other.to_string(),
            })),
            // The caller's mistake (two statements in one query, a NUL in the SQL).
            None => sqlx::Error::InvalidArgument(other.to_string()),
        },
    }
}

/// The value of column `name` (the field decoders `#[derive(Record)]` writes).
pub fn column<T: FromSql>(row: &rusqlite::Row<'_>, name: &str) -> Result<T, sqlx::Error> {
    row.get(name).map_err(to_sqlx)
}

/// Refuses a statement on the writer once SQLite ended its transaction (rolled back
/// after a full disk or an I/O error, `INSERT OR ROLLBACK`, a `COMMIT` sent as a
/// query): it would commit on its own, outside the transaction the caller thinks it is in.
pub(super) fn in_transaction(conn: &rusqlite::Connection) -> Result<(), sqlx::Error> {
    if conn.is_autocommit() {
        return Err(sqlx::Error::Database(Box::new(DirectError {
            code: rusqlite::ffi::SQLITE_ERROR,
            message: "the write transaction was already ended by SQLite (rolled back after \
                      an error, or ended by a statement); start a new one"
                .to_string(),
        })));
    }
    Ok(())
}

/// `sql`, prepared (or taken from the cache) with `params` bound by number.
fn prepare<'c>(
    conn: &'c rusqlite::Connection,
    sql: &str,
    params: &[&dyn ToSql],
    echo: bool,
) -> Result<rusqlite::CachedStatement<'c>, sqlx::Error> {
    if echo {
        log::info!(target: "server::db::direct", "{sql}");
    }
    let mut statement = conn.prepare_cached(sql).map_err(to_sqlx)?;
    let mut unnamed = 0;
    for index in 1..=statement.parameter_count() {
        // `$N` and `?N` name their parameter by number; a bare `?` takes the next one.
        let number = match statement.parameter_name(index) {
            Some(name) => name
                .strip_prefix(['$', '?'])
                .and_then(|n| n.parse::<usize>().ok())
                // The caller's SQL (`:name`, `@name`), not an outage: sqlx's SQLite
                // driver calls it a protocol error, which the app would answer 503.
                .ok_or_else(|| {
                    sqlx::Error::InvalidArgument(format!(
                        "unsupported SQL parameter {name}: use $1, $2, …"
                    ))
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
    collect(&mut statement, limit, decode).map_err(|(e, _)| e)
}

/// [`fetch`] for a reader: `None` (nothing run) when the statement would change
/// anything, or when SQLite found the database busy or locked before the first row.
pub(super) fn read<T>(
    conn: &rusqlite::Connection,
    sql: &str,
    params: &[&dyn ToSql],
    echo: bool,
    limit: usize,
    decode: fn(&rusqlite::Row<'_>) -> Result<T, sqlx::Error>,
) -> Option<Result<Vec<T>, sqlx::Error>> {
    let mut statement = match prepare(conn, sql, params, echo) {
        Ok(statement) => statement,
        Err(e) if is_busy(&e) => return None,
        Err(e) => return Some(Err(e)),
    };
    if !statement.readonly() {
        return None;
    }
    match collect(&mut statement, limit, decode) {
        Err((_, true)) => None,
        other => Some(other.map_err(|(e, _)| e)),
    }
}

/// The rows of a prepared statement; with an error, whether it is SQLite finding the
/// database busy or locked before the first row.
fn collect<T>(
    statement: &mut rusqlite::Statement<'_>,
    limit: usize,
    decode: fn(&rusqlite::Row<'_>) -> Result<T, sqlx::Error>,
) -> Result<Vec<T>, (sqlx::Error, bool)> {
    let mut rows = statement.raw_query();
    let mut out = Vec::new();
    while out.len() < limit {
        match rows.next() {
            Ok(Some(row)) => out.push(decode(row).map_err(|e| (e, false))?),
            Ok(None) => break,
            Err(e) => {
                let e = to_sqlx(e);
                let busy = out.is_empty() && is_busy(&e);
                return Err((e, busy));
            }
        }
    }
    Ok(out)
}

/// SQLite's `LOCKED_SHAREDCACHE`: a shared-cache (in-memory) database's table lock.
pub(super) fn is_shared_cache_locked(error: &sqlx::Error) -> bool {
    code_of(error) == Some(rusqlite::ffi::SQLITE_LOCKED_SHAREDCACHE)
}

fn code_of(error: &sqlx::Error) -> Option<i32> {
    match error {
        sqlx::Error::Database(db) => db.try_downcast_ref::<DirectError>().map(|e| e.code),
        _ => None,
    }
}

/// SQLite's `BUSY` or `LOCKED`, with any extended code.
fn is_busy(error: &sqlx::Error) -> bool {
    code_of(error).is_some_and(|c| {
        matches!(
            c & 0xff,
            rusqlite::ffi::SQLITE_BUSY | rusqlite::ffi::SQLITE_LOCKED
        )
    })
}
