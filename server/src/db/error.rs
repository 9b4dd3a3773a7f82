//! Database errors, and driver errors as a user reads them.

use std::path::PathBuf;
use std::time::Duration;

use crate::url::mask_url;

/// A database failure, with passwords masked.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The SQLite file was removed while the server runs.
    #[error("database file {0} is missing; restore it or run `cargo xtask db-init`")]
    FileMissing(PathBuf),
    /// The file at the database path is not (yet) a complete SQLite database.
    #[error("database file {} {problem}; nothing was written to it", path.display())]
    FileInvalid {
        /// The database file.
        path: PathBuf,
        /// What is wrong with it.
        problem: FileProblem,
    },
    /// The directory of the SQLite file cannot be created or written.
    #[error("cannot use database location {path}: {reason}")]
    Location {
        /// The directory or file.
        path: PathBuf,
        /// Why not.
        reason: String,
    },
    /// The database server cannot be reached.
    #[error("cannot connect to the database server at {server}: {reason}")]
    Unreachable {
        /// `host:port` or the socket, never credentials.
        server: String,
        /// The operating system's reason (connection refused, no route, ...).
        reason: String,
    },
    /// No connection within the time bound.
    #[error("timed out after {0:?} connecting to the database")]
    ConnectTimeout(Duration),
    /// The configuration handed to the pool is invalid.
    #[error("{0}")]
    Config(String),
    /// An error from the driver.
    #[error("{}", describe_driver_error(.0, None))]
    Driver(sqlx::Error),
}

/// What is wrong with the file at a SQLite database's path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FileProblem {
    /// A directory, a FIFO, a socket or a device.
    #[error("is a {0}, not a database file")]
    NotAFile(&'static str),
    /// It cannot be opened or read.
    #[error("cannot be read ({0})")]
    Unreadable(String),
    /// 0 bytes.
    #[error("is empty (0 bytes)")]
    Empty,
    /// Shorter than a SQLite header.
    #[error("is not a SQLite database ({0} bytes, too short)")]
    TooShort(u64),
    /// Not SQLite's magic string.
    #[error("is not a SQLite database (bad header)")]
    BadHeader,
    /// A page size SQLite never writes.
    #[error("is not a SQLite database (bad page size {0})")]
    BadPageSize(u64),
    /// Page 1 overwritten in place.
    #[error("is corrupt (page 1 is not a b-tree page: type byte 0x{0:02X})")]
    Corrupt(u8),
    /// Shorter than its header says, with nothing in the log: still being copied in.
    #[error("is incomplete ({have} of {want} bytes; still being copied?)")]
    Incomplete {
        /// Bytes on disk.
        have: u64,
        /// Bytes the header describes.
        want: u64,
    },
    /// Another process holds its lock past the pool's wait.
    #[error("is locked by another process (no connection within acquire_timeout_ms, {0} ms)")]
    Locked(u128),
    /// Replaced while requests still used the old file.
    #[error("was replaced while requests still use the old file; retrying once they finish")]
    ReplacedInUse,
    /// Replaced while it was being opened.
    #[error("was replaced while it was being opened; retrying")]
    ReplacedWhileOpening,
    /// Replaced, with the old file's write-ahead log still beside it.
    #[error(
        "was replaced, and the old file's write-ahead log is still beside it (SQLite would replay it into the new file); remove its -wal and -shm files, or restore with `cargo xtask db-restore`"
    )]
    StaleLog,
}

// Not `#[from]`: that would also make the driver error the `source`, and error chains
// printed cause by cause would repeat it in sqlx's words ("… at line 948", a line of the
// PostgreSQL server's C source) after the description above.
impl From<sqlx::Error> for DbError {
    fn from(error: sqlx::Error) -> Self {
        Self::Driver(error)
    }
}

/// The line of `script` (1 for its first) that a PostgreSQL error points at, when the
/// server reports a position.
pub fn error_line(error: &sqlx::Error, script: &str) -> Option<usize> {
    let sqlx::Error::Database(db) = error else {
        return None;
    };
    let pg = db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>()?;
    let sqlx::postgres::PgErrorPosition::Original(position) = pg.position()? else {
        return None;
    };
    Some(
        script
            .chars()
            .take(position.saturating_sub(1))
            .filter(|c| *c == '\n')
            .count()
            + 1,
    )
}

/// A driver error as a user reads it, passwords masked: for PostgreSQL the server's
/// message, the line of `script` it points at (when the server reports a position), its
/// hint, and the setting to raise for a timeout, instead of sqlx's "at line <n>" (a line
/// of the server's own C source).
pub fn describe_driver_error(error: &sqlx::Error, script: Option<&str>) -> String {
    let sqlx::Error::Database(db) = error else {
        return one_line(&mask_url(&error.to_string()));
    };
    let Some(pg) = db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>() else {
        // SQLite: its own words ("table a already exists"), without sqlx's "(code: 1)".
        return one_line(&mask_url(db.message()));
    };
    let mut text = pg.message().to_string();
    if let Some(line) = script.and_then(|script| error_line(error, script)) {
        text.push_str(&format!(" (at line {line})"));
    }
    if let Some(hint) = pg.hint() {
        text.push_str(&format!("; hint: {hint}"));
    }
    match pg.code() {
        // lock_not_available: lock_timeout expired.
        "55P03" => text.push_str(
            "; another session holds a lock this needs: stop it, or raise databases.main.lock_timeout_ms (DATABASE_LOCK_TIMEOUT_MS)",
        ),
        // query_canceled, here by statement_timeout.
        "57014" => text.push_str(
            "; raise databases.main.statement_timeout_ms (DATABASE_STATEMENT_TIMEOUT_MS) for long statements",
        ),
        // duplicate_prepared_statement, invalid_sql_statement_name: this program's
        // prepared statements live in one server session; a pooler in transaction mode
        // hands each transaction to another.
        "42P05" | "26000" if pg.message().contains("sqlx_s_") => text.push_str(
            "; is a connection pooler in transaction mode (PgBouncer pool_mode = transaction) in between? set pooler = \"transaction\" (DATABASE_POOLER) with migrate_url (DATABASE_MIGRATE_URL) a direct connection that does not go through the pooler, or use session mode (pool_mode = session)",
        ),
        _ => {}
    }
    one_line(&mask_url(&text))
}

/// `text` on one line: an engine's message or hint may hold line breaks (a `RAISE` with
/// `E'…\n…'`), and every message here is one line.
fn one_line(text: &str) -> String {
    match text.contains(['\n', '\r']) {
        true => text
            .split(['\n', '\r'])
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join(" / "),
        false => text.to_string(),
    }
}

/// Whether connecting failed because the PostgreSQL database does not exist: SQLSTATE
/// 3D000 (`invalid_catalog_name`) from the server, or the same refusal relayed by
/// PgBouncer, which sends its own errors as 08P01 (`database "x" does not exist`).
pub fn is_missing_database(error: &sqlx::Error) -> bool {
    let sqlx::Error::Database(db) = error else {
        return false;
    };
    match db.code().as_deref() {
        Some("3D000") => true,
        Some("08P01") => {
            db.message().starts_with("database ") && db.message().ends_with("does not exist")
        }
        _ => false,
    }
}
