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
    #[error("database file {path} {reason}; nothing was written to it")]
    FileInvalid {
        /// The database file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
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

// Not `#[from]`: that would also make the driver error the `source`, and error chains
// printed cause by cause would repeat it in sqlx's words ("… at line 948", a line of the
// PostgreSQL server's C source) after the description above.
impl From<sqlx::Error> for DbError {
    fn from(error: sqlx::Error) -> Self {
        Self::Driver(error)
    }
}

/// A driver error as a user reads it, passwords masked: for PostgreSQL the server's
/// message, the line of `script` it points at (when the server reports a position), its
/// hint, and the setting to raise for a timeout, instead of sqlx's "at line <n>" (a line
/// of the server's own C source).
pub fn describe_driver_error(error: &sqlx::Error, script: Option<&str>) -> String {
    let sqlx::Error::Database(db) = error else {
        return mask_url(&error.to_string());
    };
    let Some(pg) = db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>() else {
        // SQLite: its own words ("table a already exists"), without sqlx's "(code: 1)".
        return mask_url(db.message());
    };
    let mut text = pg.message().to_string();
    if let (Some(script), Some(sqlx::postgres::PgErrorPosition::Original(position))) =
        (script, pg.position())
    {
        let line = script
            .chars()
            .take(position.saturating_sub(1))
            .filter(|c| *c == '\n')
            .count()
            + 1;
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
        _ => {}
    }
    mask_url(&text)
}
