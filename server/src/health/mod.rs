//! The database health check, shared by `/health/db` and `cargo xtask db-init`.

mod coalesce;

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;
use utoipa::ToSchema;

use crate::backup::{BackupHealth, Schedule};
use crate::config::DbSettings;
use crate::db::{DbError, DbPool, FileProblem, PoolStats};
use crate::migrations::{self, MigrationError, MigrationSet, SchemaState};
use crate::url::DbKind;
pub use coalesce::{Coalesced, JOIN_WITHIN};

/// Outcome vocabulary of the IETF health-check draft.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Healthy.
    Pass,
    /// Answers, but something degrades it (e.g. little free disk space).
    Warn,
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
    /// `pass`, `warn` or `fail`.
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
    /// SQLite: free space on the database's file system.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disk: Option<DiskHealth>,
    /// Scheduled backups, when `backup_interval_secs` is set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backup: Option<BackupHealth>,
    /// Why the check failed; never a path or a credential.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
    /// The kind of problem `output` describes (`none` without one), for `/metrics`.
    #[serde(skip)]
    pub reason: &'static str,
}

/// Free space on the file system of a SQLite database.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DiskHealth {
    /// Bytes available to the server.
    pub free_bytes: u64,
    /// Below this (`disk_free_min_mb`) the check warns; a full disk fails.
    pub min_free_bytes: u64,
}

/// Below this much free space a SQLite database cannot commit: the check fails.
const DISK_FULL_BYTES: u64 = 1 << 20;

/// Readiness for a request: the result of a [`check`] that started at most
/// [`JOIN_WITHIN`] before the request arrived, shared with every request waiting for the
/// same one (see [`Coalesced`]), and given within `settings.health_timeout` in any case.
pub async fn ready(
    shared: &Arc<Coalesced>,
    pool: &DbPool,
    set: &MigrationSet,
    settings: &DbSettings,
    backups: Option<&Arc<Schedule>>,
) -> DbHealth {
    let shared_check = shared.run(|| {
        let (pool, settings, backups) = (pool.clone(), settings.clone(), backups.cloned());
        let set = set.clone();
        async move { check(&pool, &set, &settings, backups.as_deref()).await }
    });
    match tokio::time::timeout(settings.health_timeout, shared_check).await {
        Ok(health) => DbHealth::clone(&health),
        Err(_) => DbHealth {
            status: Status::Fail,
            kind: pool.kind(),
            latency_ms: settings.health_timeout.as_secs_f64() * 1_000.0,
            schema: None,
            pool: pool.stats(),
            disk: None,
            backup: None,
            output: Some(timed_out(settings)),
            reason: "timeout",
        },
    }
}

fn timed_out(settings: &DbSettings) -> String {
    format!(
        "database did not answer within {} ms",
        settings.health_timeout.as_millis()
    )
}

/// Runs a real round trip (the schema version; on PostgreSQL first whether the session accepts writes) within
/// `settings.health_timeout`, and for SQLite checks that the file is still readable and
/// writable by this process and how much room its file system has left.
///
/// A schema behind, ahead of, or diverged from `set` fails too: the app's queries would
/// break. Little free space (below `disk_free_min_mb`) warns; a full disk fails. So does
/// a serious error that any connection of the pool hit in the last
/// [`crate::db::INCIDENT_WINDOW`] (see [`DbPool::note_error`]), even when the probe's
/// own round trip still answers from a connection's cache. With `backups`, the last
/// scheduled backup failing, or being older than twice the interval, warns.
pub async fn check(
    pool: &DbPool,
    set: &MigrationSet,
    settings: &DbSettings,
    backups: Option<&Schedule>,
) -> DbHealth {
    let timeout = settings.health_timeout;
    let started = Instant::now();
    let result = tokio::time::timeout(timeout, async {
        let mut conn = pool
            .acquire()
            .await
            .map_err(|e| ("unavailable", describe(&e)))?;
        let failed = |e: &sqlx::Error| {
            pool.note_error(e);
            ("database_error", describe_driver(e))
        };
        if conn.accepts_writes().await.map_err(|e| failed(&e))? == Some(false) {
            // With a host list, another host may be the primary now.
            pool.reconsider_host();
            return Err((
                "read_only",
                "the database accepts no writes (read-only)".to_string(),
            ));
        }
        migrations::status(&mut conn, set)
            .await
            .map_err(|e| match e {
                MigrationError::Db(e) => failed(&e),
                _ => ("history", "cannot read the migration history".into()),
            })
    })
    .await;
    let latency_ms = started.elapsed().as_secs_f64() * 1_000.0;
    let mut schema_note = None;
    let (schema, output) = match result {
        Err(_) => (None, Some(("timeout", timed_out(settings)))),
        Ok(Err(output)) => (None, Some(output)),
        Ok(Ok(status)) => {
            let output = match status.state {
                // A newer release of a rolling deploy migrated ahead: this one still serves.
                SchemaState::Ahead
                    if settings.serve_newer_schema && status.ahead_by_newer_only(set) =>
                {
                    schema_note = Some((
                        Status::Warn,
                        "schema_ahead_compatible",
                        "database schema is ahead of this binary (a newer release migrated it)"
                            .to_string(),
                    ));
                    None
                }
                SchemaState::UpToDate => None,
                SchemaState::Pending => Some((
                    "schema_pending",
                    format!(
                        "{} migration(s) not applied; run `cargo xtask db-upgrade`",
                        status.pending.len()
                    ),
                )),
                SchemaState::Ahead => Some((
                    "schema_ahead",
                    "database schema is ahead of this binary".into(),
                )),
                SchemaState::Diverged => Some((
                    "schema_diverged",
                    "an applied migration differs from this binary's copy".into(),
                )),
                SchemaState::Failed => Some((
                    "migration_failed",
                    "a migration failed part-way outside a transaction; see `cargo xtask db-status`"
                        .into(),
                )),
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
    let (disk, file_problem) = match settings.url.sqlite_path() {
        Some(path) => file_checks(path, settings.disk_free_min_bytes),
        None => (None, None),
    };
    let incident = pool.recent_incident().map(|(age, reason)| {
        (
            Status::Fail,
            "incident",
            format!("requests hit an error {} s ago: {reason}", age.as_secs()),
        )
    });
    let (backup, backup_problem) = match backups.map(Schedule::health) {
        Some((health, problem)) => (Some(health), problem.map(|p| (Status::Warn, "backup", p))),
        None => (None, None),
    };
    // The worst problem wins; the probe's own failure first among equals.
    let (status, reason, output) = [
        output.map(|(reason, o)| (Status::Fail, reason, o)),
        file_problem.map(|(status, problem)| (status, "file", problem)),
        incident,
        backup_problem,
        schema_note,
    ]
    .into_iter()
    .flatten()
    .min_by_key(|(status, ..)| *status != Status::Fail)
    .map_or((Status::Pass, "none", None), |(status, reason, problem)| {
        (status, reason, Some(problem))
    });
    DbHealth {
        status,
        kind: pool.kind(),
        latency_ms: (latency_ms * 1_000.0).round() / 1_000.0,
        schema,
        pool: pool.stats(),
        disk,
        backup,
        output,
        reason,
    }
}

/// The SQLite file's access and its file system's free space: what requests will hit
/// even when `SELECT 1` still answers from the page cache.
fn file_checks(path: &Path, min_free: u64) -> (Option<DiskHealth>, Option<(Status, String)>) {
    // Opening a FIFO would block the probe: never open what is not a regular file.
    if std::fs::metadata(path).is_ok_and(|m| !m.is_file()) {
        let problem = "database path is not a regular file".to_string();
        return (None, Some((Status::Fail, problem)));
    }
    // Asked of the kernel, not by opening the file: closing a descriptor of it would drop
    // SQLite's POSIX locks, and another process would then delete its write-ahead log.
    let access = rustix::fs::Access::READ_OK | rustix::fs::Access::WRITE_OK;
    if path.exists()
        && rustix::fs::accessat(rustix::fs::CWD, path, access, rustix::fs::AtFlags::EACCESS)
            .is_err()
    {
        let problem = "database file is not readable and writable by the server".to_string();
        return (None, Some((Status::Fail, problem)));
    }
    // Overwritten in place: new connections would fail (a file that grows during a
    // checkpoint may look incomplete for a moment, which is not a fault).
    if let Err(DbError::FileInvalid { problem, .. }) = crate::db::check_sqlite_file_once(path)
        && !matches!(problem, FileProblem::Incomplete { .. })
    {
        let problem = match problem {
            FileProblem::Corrupt(_) => "the database file is corrupt",
            _ => "database file is not a valid SQLite database",
        };
        return (None, Some((Status::Fail, problem.to_string())));
    }
    let Ok(stats) = rustix::fs::statvfs(crate::durable::parent(path)) else {
        return (None, None);
    };
    let free = stats.f_bavail.saturating_mul(stats.f_frsize);
    let disk = DiskHealth {
        free_bytes: free,
        min_free_bytes: min_free,
    };
    let problem = if free < DISK_FULL_BYTES {
        Some((
            Status::Fail,
            "the database's disk is full; writes fail until space is freed".to_string(),
        ))
    } else if free < min_free {
        Some((
            Status::Warn,
            format!(
                "{} MB free on the database's disk, below disk_free_min_mb ({} MB)",
                free >> 20,
                min_free >> 20
            ),
        ))
    } else {
        None
    };
    (Some(disk), problem)
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
            // A corrupt file, a full disk, an I/O error: the same words as for requests.
            _ if let Some(reason) = crate::db::classify_incident(error) => reason.into(),
            Some(code) => format!("database error {code}"),
            None => "database query failed".into(),
        },
        _ => "database query failed".into(),
    }
}
