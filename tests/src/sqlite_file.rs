//! SQLite files opened directly: run SQL on one, or hold a snapshot or a lock on it.

use std::path::Path;
use std::time::Duration;

/// Runs `sql` on the SQLite file at `path` (one statement or a script) and returns each
/// row as its columns joined by `|`.
pub fn sqlite(path: &Path, sql: &str) -> Vec<String> {
    use sqlx::{ConnectOptions, Connection, Row, ValueRef};
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let mut conn = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(path)
            .busy_timeout(Duration::from_secs(10))
            .connect()
            .await
            .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
        let rows = sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_string()))
            .fetch_all(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        let values: Vec<String> = rows
            .iter()
            .map(|row| {
                (0..row.columns().len())
                    .map(|i| {
                        let raw = row.try_get_raw(i).expect("column");
                        if raw.is_null() {
                            "NULL".to_string()
                        } else if let Ok(v) = row.try_get::<i64, _>(i) {
                            v.to_string()
                        } else {
                            row.try_get::<String, _>(i).unwrap_or_default()
                        }
                    })
                    .collect::<Vec<_>>()
                    .join("|")
            })
            .collect();
        drop(rows);
        // Closed (and, as the last connection, checkpointed) before returning, so the
        // file on disk holds what was just written.
        conn.close()
            .await
            .unwrap_or_else(|e| panic!("close {}: {e}", path.display()));
        values
    })
}

/// A reader that holds a read transaction (an old snapshot) on a SQLite database, so that
/// commits after it stay in the `-wal`; `close` ends it.
pub struct SnapshotHolder {
    runtime: tokio::runtime::Runtime,
    conn: sqlx::SqliteConnection,
}

impl SnapshotHolder {
    /// Opens `db` and reads `table` inside a transaction that stays open.
    pub fn open(db: &Path, table: &str) -> Self {
        Self::holding(db, &format!("BEGIN; SELECT count(*) FROM {table};"))
    }

    /// Opens `db` and takes an exclusive lock on it, as `sqlite3` with
    /// `PRAGMA locking_mode = EXCLUSIVE` does: no other connection can even read.
    pub fn exclusive(db: &Path) -> Self {
        Self::holding(
            db,
            "PRAGMA locking_mode = EXCLUSIVE; BEGIN EXCLUSIVE; SELECT count(*) FROM sqlite_master;",
        )
    }

    fn holding(db: &Path, sql: &str) -> Self {
        use sqlx::ConnectOptions;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let mut conn = runtime
            .block_on(
                sqlx::sqlite::SqliteConnectOptions::new()
                    .filename(db)
                    .connect(),
            )
            .unwrap_or_else(|e| panic!("open {}: {e}", db.display()));
        runtime
            .block_on(sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_string())).execute(&mut conn))
            .expect("hold a snapshot");
        Self { runtime, conn }
    }

    /// Ends the transaction and closes the connection.
    pub fn close(self) {
        use sqlx::Connection;
        let Self { runtime, conn } = self;
        runtime
            .block_on(conn.close())
            .expect("close the snapshot holder");
    }
}
