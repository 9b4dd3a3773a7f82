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

/// `PRAGMA integrity_check` on a SQLite file, read-only; the reason when it fails.
pub(super) async fn sqlite_check(path: &Path) -> Result<(), String> {
    crate::db::check_sqlite_file(path).map_err(|e| match e {
        crate::db::DbError::FileInvalid { reason, .. } => format!("the file {reason}"),
        other => other.to_string(),
    })?;
    let mut conn = sqlite_read_only(path)
        .await
        .map_err(|e| format!("cannot open it as SQLite: {e}"))?;
    let rows: Result<Vec<String>, _> = sqlx::query_scalar("PRAGMA integrity_check")
        .fetch_all(&mut conn)
        .await;
    conn.close().await.ok();
    let rows = rows.map_err(|e| format!("integrity check failed: {e}"))?;
    if rows != ["ok"] {
        return Err(format!("integrity check failed: {}", rows.join("; ")));
    }
    Ok(())
}
