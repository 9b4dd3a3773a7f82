//! The `[<profile>.databases.main]` keys: their defaults, validation and the result.

use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use serde::{Deserialize, Serialize};

use super::DATABASE_KEY;
use super::error::{ConfigError, figment_error, origin};
use crate::url::{DatabaseUrl, redact_url};

/// Environment variables that set one database key each: `DATABASE_<KEY>`.
pub(super) const DATABASE_ENV_KEYS: &[&str] = &[
    "min_connections",
    "max_connections",
    "acquire_timeout_ms",
    "idle_timeout_secs",
    "connect_timeout_ms",
    "busy_timeout_ms",
    "statement_timeout_ms",
    "lock_timeout_ms",
    "health_timeout_ms",
    "echo",
    "migrate_on_start",
    "serve_newer_schema",
    "backup_dir",
    "disk_free_min_mb",
    "backup_interval_secs",
    "backup_keep",
    "backup_copy_to",
    "migrate_url",
    "pooler",
];

/// Validated database settings.
#[derive(Debug, Clone)]
pub struct DbSettings {
    /// Which database, and where.
    pub url: DatabaseUrl,
    /// Where the URL came from, for error messages.
    pub url_origin: String,
    /// Connections kept open when idle.
    pub min_connections: u32,
    /// Upper bound of the pool.
    pub max_connections: u32,
    /// How long a request waits for a free connection before it gets a 503.
    pub acquire_timeout: Duration,
    /// Idle connections above the minimum are closed after this long.
    pub idle_timeout: Option<Duration>,
    /// Bound on opening a connection (and on startup).
    pub connect_timeout: Duration,
    /// SQLite: how long a statement waits for a lock.
    pub busy_timeout: Duration,
    /// PostgreSQL: `statement_timeout` of every connection.
    pub statement_timeout: Duration,
    /// PostgreSQL: `lock_timeout` of every connection.
    pub lock_timeout: Duration,
    /// Bound on the whole `/health/db` check.
    pub health_timeout: Duration,
    /// Log every SQL statement.
    pub echo: bool,
    /// Apply pending migrations when the server starts.
    pub migrate_on_start: bool,
    /// Serve a database a newer release migrated ahead (every migration of this binary
    /// applied unchanged, newer ones besides): the rolling-deploy default. `false` makes
    /// such a database fail startup and readiness like any other ahead one.
    pub serve_newer_schema: bool,
    /// Where backups go.
    pub backup_dir: PathBuf,
    /// SQLite: `/health/db` warns when its file system has less free space than this.
    pub disk_free_min_bytes: u64,
    /// The server takes a backup this often (`None`: never).
    pub backup_interval: Option<Duration>,
    /// Scheduled backups of this database kept in `backup_dir` (and `backup_copy_to`).
    pub backup_keep: u32,
    /// Where each scheduled backup is also copied (e.g. a mounted remote file system).
    pub backup_copy_to: Option<PathBuf>,
    /// What is between the server and PostgreSQL.
    pub pooler: Pooler,
    /// PostgreSQL: a direct connection for migrations, backups and the `db-*` commands,
    /// when `url` goes through a pooler.
    pub migrate_url: Option<DatabaseUrl>,
    /// Where `migrate_url` came from.
    migrate_url_origin: String,
}

/// What `url` connects through (`pooler`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Pooler {
    /// PostgreSQL itself, or a pooler in session mode: a connection is one session.
    #[default]
    None,
    /// A pooler in session mode (PgBouncer's `pool_mode = session`): the same as `none`.
    Session,
    /// A pooler in transaction mode (PgBouncer's `pool_mode = transaction`): a server
    /// session only for the length of a transaction. Each pooled connection works in one
    /// transaction while it is held, with the timeouts set in it (`SET LOCAL`) and no
    /// prepared statement kept past it; `migrate_url` is required.
    Transaction,
}

/// The largest pool this configuration accepts.
const MAX_CONNECTIONS: u32 = 10_000;

/// The longest interval between scheduled backups: a year.
const MAX_BACKUP_INTERVAL_SECS: u64 = 366 * 24 * 3600;

/// The largest free-space threshold, in MiB: 1 PiB, so the byte count stays exact.
const MAX_DISK_FREE_MIN_MB: u64 = 1 << 30;

/// The largest duration in milliseconds the drivers accept (`i32::MAX`).
const MAX_MILLIS: u64 = i32::MAX as u64;

/// The raw, unvalidated shape of `[<profile>.databases.main]`.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDbSettings {
    #[serde(default = "defaults::url")]
    url: String,
    /// `rocket_db_pools` joins this key (in seconds) into every pool's config;
    /// our bound is `connect_timeout_ms`, so it is accepted and ignored.
    #[serde(default, rename = "connect_timeout", skip_serializing)]
    _connect_timeout: Option<serde::de::IgnoredAny>,
    #[serde(default = "defaults::min_connections")]
    min_connections: u32,
    #[serde(default = "defaults::max_connections")]
    max_connections: u32,
    #[serde(default = "defaults::acquire_timeout_ms")]
    acquire_timeout_ms: u64,
    #[serde(default = "defaults::idle_timeout_secs")]
    idle_timeout_secs: u64,
    #[serde(default = "defaults::connect_timeout_ms")]
    connect_timeout_ms: u64,
    #[serde(default = "defaults::busy_timeout_ms")]
    busy_timeout_ms: u64,
    #[serde(default = "defaults::statement_timeout_ms")]
    statement_timeout_ms: u64,
    #[serde(default = "defaults::lock_timeout_ms")]
    lock_timeout_ms: u64,
    #[serde(default = "defaults::health_timeout_ms")]
    health_timeout_ms: u64,
    #[serde(default)]
    echo: bool,
    #[serde(default = "defaults::migrate_on_start")]
    migrate_on_start: bool,
    #[serde(default = "defaults::serve_newer_schema")]
    serve_newer_schema: bool,
    #[serde(default)]
    backup_dir: Option<String>,
    #[serde(default = "defaults::disk_free_min_mb")]
    disk_free_min_mb: u64,
    #[serde(default)]
    backup_interval_secs: u64,
    #[serde(default = "defaults::backup_keep")]
    backup_keep: u32,
    #[serde(default)]
    backup_copy_to: Option<String>,
    #[serde(default)]
    migrate_url: Option<String>,
    #[serde(default)]
    pooler: Pooler,
}

/// Defaults of the database keys, also listed in `.env.example` and the README.
mod defaults {
    pub fn url() -> String {
        "sqlite://app.db".into()
    }
    pub fn min_connections() -> u32 {
        1
    }
    pub fn max_connections() -> u32 {
        16
    }
    pub fn acquire_timeout_ms() -> u64 {
        1_000
    }
    pub fn idle_timeout_secs() -> u64 {
        600
    }
    pub fn connect_timeout_ms() -> u64 {
        5_000
    }
    pub fn busy_timeout_ms() -> u64 {
        5_000
    }
    pub fn statement_timeout_ms() -> u64 {
        30_000
    }
    pub fn lock_timeout_ms() -> u64 {
        10_000
    }
    pub fn health_timeout_ms() -> u64 {
        800
    }
    pub fn migrate_on_start() -> bool {
        true
    }
    pub fn serve_newer_schema() -> bool {
        true
    }
    pub fn disk_free_min_mb() -> u64 {
        64
    }
    pub fn backup_keep() -> u32 {
        7
    }
}

impl DbSettings {
    /// [`DbSettings::direct`] with a pool of at most two connections, none kept open when
    /// idle: for a command, the server's startup migrations and its backups.
    pub fn maintenance(&self) -> Self {
        Self {
            min_connections: 0,
            max_connections: 2,
            ..self.direct()
        }
    }

    /// The settings for migrations, backups and maintenance: `migrate_url` when set (a
    /// direct connection past the pooler), else these.
    pub fn direct(&self) -> Self {
        match &self.migrate_url {
            Some(url) => Self {
                url: url.clone(),
                url_origin: format!("migrate_url, {}", self.migrate_url_origin),
                pooler: Pooler::None,
                migrate_url: None,
                ..self.clone()
            },
            None => self.clone(),
        }
    }

    /// Extracts and validates settings from a figment focused on `databases.main`
    /// (what `rocket_db_pools` hands to a pool); relative SQLite paths resolve against `root`.
    pub fn from_focused(figment: &Figment, root: &Path) -> Result<Self, ConfigError> {
        Self::validate(figment, root).map(|(settings, _)| settings)
    }

    pub(super) fn validate(
        figment: &Figment,
        root: &Path,
    ) -> Result<(Self, RawDbSettings), ConfigError> {
        let url_key = format!("{DATABASE_KEY}.url");
        let mut raw: RawDbSettings = figment
            .extract()
            .map_err(|e| figment_error(figment, e, Some(DATABASE_KEY)))?;
        let url_origin = origin(figment, "url");
        let url = DatabaseUrl::parse(&raw.url, root).map_err(|reason| ConfigError::Invalid {
            key: url_key.clone(),
            origin: url_origin.clone(),
            reason: format!("{reason} in `{}`", redact_url(&raw.url)),
        })?;

        // Options in the query (`sslmode`, `host`, …) are read by the driver: check them
        // now, with the key and its source, not when the pool first connects.
        if let DatabaseUrl::Postgres { url } = &url
            && let Err(e) = crate::pg::connect_options(url)
        {
            let reason = e.to_string();
            let reason = reason
                .trim_start_matches("error with configuration: ")
                .trim_start_matches("error with configuration: ");
            return Err(ConfigError::Invalid {
                key: url_key,
                origin: url_origin,
                reason: format!(
                    "{} in `{}`",
                    crate::url::mask_url(reason).replace("ssl_mode", "sslmode"),
                    redact_url(&raw.url)
                ),
            });
        }
        let invalid = |key: &str, reason: String| ConfigError::Invalid {
            key: format!("{DATABASE_KEY}.{key}"),
            origin: origin(figment, key),
            reason,
        };
        if raw.max_connections == 0 {
            return Err(invalid("max_connections", "must be at least 1".into()));
        }
        if raw.min_connections > raw.max_connections {
            return Err(invalid(
                "min_connections",
                format!(
                    "{} is greater than max_connections ({})",
                    raw.min_connections, raw.max_connections
                ),
            ));
        }
        if raw.max_connections > MAX_CONNECTIONS {
            return Err(invalid(
                "max_connections",
                format!("{} is more than {MAX_CONNECTIONS}", raw.max_connections),
            ));
        }
        for (key, value) in [
            ("acquire_timeout_ms", raw.acquire_timeout_ms),
            ("connect_timeout_ms", raw.connect_timeout_ms),
            ("health_timeout_ms", raw.health_timeout_ms),
        ] {
            if value == 0 {
                return Err(invalid(key, "must be greater than 0".into()));
            }
        }
        // The drivers take milliseconds as a 32-bit signed integer (SQLite's busy timeout,
        // PostgreSQL's statement and lock timeouts); larger values would crash them.
        for (key, value) in [
            ("acquire_timeout_ms", raw.acquire_timeout_ms),
            ("connect_timeout_ms", raw.connect_timeout_ms),
            ("busy_timeout_ms", raw.busy_timeout_ms),
            ("statement_timeout_ms", raw.statement_timeout_ms),
            ("lock_timeout_ms", raw.lock_timeout_ms),
            (
                "idle_timeout_secs",
                raw.idle_timeout_secs.saturating_mul(1_000),
            ),
        ] {
            if value > MAX_MILLIS {
                let (shown, limit) = match key.strip_suffix("_secs") {
                    Some(_) => (value / 1_000, MAX_MILLIS / 1_000),
                    None => (value, MAX_MILLIS),
                };
                return Err(invalid(
                    key,
                    format!("{shown} is more than {limit} (about 24 days)"),
                ));
            }
        }
        if raw.health_timeout_ms >= 1_000 {
            return Err(invalid(
                "health_timeout_ms",
                "must be below 1000 so /health/db answers within a second".into(),
            ));
        }
        if raw.disk_free_min_mb > MAX_DISK_FREE_MIN_MB {
            return Err(invalid(
                "disk_free_min_mb",
                format!(
                    "{} is more than {MAX_DISK_FREE_MIN_MB} (1 PiB)",
                    raw.disk_free_min_mb
                ),
            ));
        }
        let backup_dir = match &raw.backup_dir {
            Some(dir) if dir.trim().is_empty() => {
                return Err(invalid(
                    "backup_dir",
                    "is empty; name a directory (e.g. `backups`) or remove the setting".into(),
                ));
            }
            Some(dir) => root.join(dir),
            None => match &url {
                DatabaseUrl::Sqlite { path } => path
                    .parent()
                    .map_or_else(|| root.to_path_buf(), Path::to_path_buf)
                    .join("backups"),
                _ => root.join("backups"),
            },
        };

        if raw.backup_keep == 0 {
            return Err(invalid(
                "backup_keep",
                "must be at least 1 (the backup just taken is always kept)".into(),
            ));
        }
        // At most a year; tokio's timers and the health check's age arithmetic stay exact.
        if raw.backup_interval_secs > MAX_BACKUP_INTERVAL_SECS {
            return Err(invalid(
                "backup_interval_secs",
                format!(
                    "{} is more than {MAX_BACKUP_INTERVAL_SECS} (a year)",
                    raw.backup_interval_secs
                ),
            ));
        }
        let backup_copy_to = match &raw.backup_copy_to {
            Some(dir) if dir.trim().is_empty() => {
                return Err(invalid(
                    "backup_copy_to",
                    "is empty; name a directory or remove the setting".into(),
                ));
            }
            Some(dir) => Some(root.join(dir)),
            None => None,
        };
        // However it is spelt (a symlink, `..`): never backup_dir, inside it or around it.
        if let Some(overlap) = backup_copy_to
            .as_deref()
            .and_then(|copy_to| crate::paths::overlap(&backup_dir, copy_to))
        {
            return Err(invalid(
                "backup_copy_to",
                format!(
                    "{}; name another file system",
                    overlap.describe("backup_dir")
                ),
            ));
        }

        let migrate_url = match &raw.migrate_url {
            None => None,
            Some(text) => {
                let parsed = DatabaseUrl::parse(text, root);
                let reason = match &parsed {
                    Err(reason) => Some(reason.to_string()),
                    Ok(DatabaseUrl::Postgres { url: direct }) => crate::pg::connect_options(direct)
                        .err()
                        .map(|e| crate::url::mask_url(&e.to_string())),
                    Ok(_) => Some("is not a PostgreSQL URL".into()),
                };
                if let Some(reason) = reason {
                    return Err(invalid(
                        "migrate_url",
                        format!("{reason} in `{}`", redact_url(text)),
                    ));
                }
                parsed.ok()
            }
        };
        if url.kind() != crate::url::DbKind::Postgres {
            if migrate_url.is_some() {
                return Err(invalid(
                    "migrate_url",
                    "is for PostgreSQL behind a pooler; url is a SQLite database".into(),
                ));
            }
            if raw.pooler != Pooler::None {
                return Err(invalid(
                    "pooler",
                    "is for PostgreSQL; url is a SQLite database".into(),
                ));
            }
        }
        if raw.pooler == Pooler::Transaction && migrate_url.is_none() {
            return Err(invalid(
                "pooler",
                "\"transaction\" needs migrate_url (DATABASE_MIGRATE_URL), a direct connection to the same database: migrations, backups and the db-* commands cannot run through a pooler in transaction mode".into(),
            ));
        }

        let settings = Self {
            url: url.clone(),
            url_origin,
            min_connections: raw.min_connections,
            max_connections: raw.max_connections,
            acquire_timeout: Duration::from_millis(raw.acquire_timeout_ms),
            idle_timeout: (raw.idle_timeout_secs > 0)
                .then(|| Duration::from_secs(raw.idle_timeout_secs)),
            connect_timeout: Duration::from_millis(raw.connect_timeout_ms),
            busy_timeout: Duration::from_millis(raw.busy_timeout_ms),
            statement_timeout: Duration::from_millis(raw.statement_timeout_ms),
            lock_timeout: Duration::from_millis(raw.lock_timeout_ms),
            health_timeout: Duration::from_millis(raw.health_timeout_ms),
            echo: raw.echo,
            migrate_on_start: raw.migrate_on_start,
            serve_newer_schema: raw.serve_newer_schema,
            backup_dir: backup_dir.clone(),
            disk_free_min_bytes: raw.disk_free_min_mb << 20,
            backup_interval: (raw.backup_interval_secs > 0)
                .then(|| Duration::from_secs(raw.backup_interval_secs)),
            backup_keep: raw.backup_keep,
            backup_copy_to: backup_copy_to.clone(),
            pooler: raw.pooler,
            migrate_url: migrate_url.clone(),
            migrate_url_origin: origin(figment, "migrate_url"),
        };
        raw.url = url.to_url_string();
        raw.migrate_url = migrate_url.map(|u| u.to_url_string());
        raw.backup_dir = Some(backup_dir.display().to_string());
        raw.backup_copy_to = backup_copy_to.map(|dir| dir.display().to_string());
        Ok((settings, raw))
    }
}
