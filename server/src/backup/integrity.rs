//! Whether a SQLite file is a whole, consistent database, checked read-only: a snapshot
//! before it becomes a backup, a backup before it is restored.

use std::path::Path;

use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions, Connection};

/// Opens a SQLite file read-only and immutable: nothing is written, no `-wal` is created.
pub(super) async fn sqlite_read_only(path: &Path) -> Result<sqlx::SqliteConnection, sqlx::Error> {
    SqliteConnectOptions::new()
        .filename(path)
        .read_only(true)
        .immutable(true)
        .disable_statement_logging()
        .connect()
        .await
}

/// Why a SQLite file is not a whole, consistent database.
#[derive(Debug, thiserror::Error)]
pub(super) enum IntegrityError {
    /// The file itself (empty, cut short, not SQLite, ...).
    #[error("the file {0}")]
    File(crate::db::FileProblem),
    /// It is gone, or its location is unusable.
    #[error("{0}")]
    Location(crate::db::DbError),
    /// SQLite cannot open it.
    #[error("cannot open it as SQLite: {0}")]
    Open(sqlx::Error),
    /// `PRAGMA integrity_check` did not say `ok`.
    #[error("integrity check failed: {0}")]
    Failed(String),
}

/// `PRAGMA integrity_check` on a SQLite file, read-only.
pub(super) async fn sqlite_check(path: &Path) -> Result<(), IntegrityError> {
    crate::db::check_sqlite_file(path).map_err(|e| match e {
        crate::db::DbError::FileInvalid { problem, .. } => IntegrityError::File(problem),
        other => IntegrityError::Location(other),
    })?;
    let mut conn = sqlite_read_only(path).await.map_err(IntegrityError::Open)?;
    let rows: Result<Vec<String>, _> = sqlx::query_scalar("PRAGMA integrity_check")
        .fetch_all(&mut conn)
        .await;
    conn.close().await.ok();
    let rows = rows.map_err(|e| IntegrityError::Failed(e.to_string()))?;
    if rows != ["ok"] {
        return Err(IntegrityError::Failed(rows.join("; ")));
    }
    Ok(())
}
