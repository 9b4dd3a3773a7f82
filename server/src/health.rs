//! The database health check, shared by `/health/db` and `cargo xtask db-init`.

use std::time::{Duration, Instant};

use serde::Serialize;
use utoipa::ToSchema;

use crate::db::{DbError, DbPool, PoolStats};
use crate::migrations::{self, MigrationError, MigrationSet, SchemaState};
use crate::url::DbKind;

/// Outcome vocabulary of the IETF health-check draft.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Healthy.
    Pass,
    /// Unhealthy.
    Fail,
}

/// Where the schema stands relative to this binary.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SchemaHealth {
    /// `up_to_date`, `pending`, `ahead` or `diverged`.
    #[schema(value_type = String, example = "up_to_date")]
    pub state: SchemaState,
    /// Highest migration version applied to the database.
    pub applied_version: i32,
    /// Highest migration version embedded in this binary.
    pub embedded_version: i32,
    /// Embedded migrations not applied yet.
    pub pending: usize,
}

/// Body of `/health/db`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DbHealth {
    /// `pass` or `fail`.
    pub status: Status,
    /// `sqlite` or `postgres`.
    #[schema(value_type = String, example = "sqlite")]
    pub kind: DbKind,
    /// Round-trip time of the check, in milliseconds.
    pub latency_ms: f64,
    /// Schema version, when the database answered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schema: Option<SchemaHealth>,
    /// Pool size and idle connections.
    pub pool: PoolStats,
    /// Why the check failed; never a path or a credential.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
}

/// Runs a real round trip (`SELECT 1`, then the schema version) within `timeout`.
///
/// A schema behind, ahead of, or diverged from `set` fails too: the app's queries would break.
pub async fn check(pool: &DbPool, set: &MigrationSet, timeout: Duration) -> DbHealth {
    let started = Instant::now();
    let result = tokio::time::timeout(timeout, async {
        let mut conn = pool.acquire().await.map_err(|e| describe(&e))?;
        conn.ping().await.map_err(|e| describe_driver(&e))?;
        migrations::status(&mut conn, set)
            .await
            .map_err(|e| match e {
                MigrationError::Db(e) => describe_driver(&e),
                _ => "cannot read the migration history".into(),
            })
    })
    .await;
    let latency_ms = started.elapsed().as_secs_f64() * 1_000.0;
    let (schema, output) = match result {
        Err(_) => (
            None,
            Some(format!(
                "database did not answer within {} ms",
                timeout.as_millis()
            )),
        ),
        Ok(Err(output)) => (None, Some(output)),
        Ok(Ok(status)) => {
            let output = match status.state {
                SchemaState::UpToDate => None,
                SchemaState::Pending => Some(format!(
                    "{} migration(s) not applied; run `cargo xtask db-upgrade`",
                    status.pending.len()
                )),
                SchemaState::Ahead => Some("database schema is ahead of this binary".into()),
                SchemaState::Diverged => {
                    Some("an applied migration differs from this binary's copy".into())
                }
            };
            let schema = SchemaHealth {
                state: status.state,
                applied_version: status.current_version,
                embedded_version: status.latest_version,
                pending: status.pending.len(),
            };
            (Some(schema), output)
        }
    };
    DbHealth {
        status: if output.is_none() {
            Status::Pass
        } else {
            Status::Fail
        },
        kind: pool.kind(),
        latency_ms: (latency_ms * 1_000.0).round() / 1_000.0,
        schema,
        pool: pool.stats(),
        output,
    }
}

/// Reduces a failure to a message safe for a public endpoint: no paths, no credentials.
fn describe(error: &DbError) -> String {
    match error {
        DbError::FileMissing(_) => "database file is missing".into(),
        DbError::FileInvalid { .. } => {
            "database file is not a complete SQLite database (empty, still being copied, or replaced while the old one is in use)".into()
        }
        DbError::Location { .. } | DbError::Config(_) => "database location is not usable".into(),
        DbError::ConnectTimeout(_) => "cannot connect to the database in time".into(),
        DbError::Unreachable { .. } => "cannot connect to the database".into(),
        DbError::Driver(e) => describe_driver(e),
    }
}

fn describe_driver(error: &sqlx::Error) -> String {
    match error {
        sqlx::Error::PoolTimedOut => "no database connection available in time".into(),
        sqlx::Error::PoolClosed => "the connection pool is closed".into(),
        sqlx::Error::Io(_) | sqlx::Error::Tls(_) => "cannot connect to the database".into(),
        sqlx::Error::Database(db) => match db.code().as_deref() {
            // SQLITE_BUSY, SQLITE_LOCKED and their extended codes.
            Some("5" | "6" | "261" | "262" | "517") => "database is locked".into(),
            Some(code) => format!("database error {code}"),
            None => "database query failed".into(),
        },
        _ => "database query failed".into(),
    }
}
