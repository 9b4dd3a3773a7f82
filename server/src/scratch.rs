//! Scratch databases: throwaway databases of the configured engine (`db-check`,
//! `db-schema`, `db-migrate --autogenerate`) and the staging database a `db-copy` into a
//! missing PostgreSQL database builds before renaming it into place.
//!
//! Every one is removed when its command ends, also when it fails or is interrupted
//! (the command drops its work, then calls [`drop_abandoned_scratch`]). A run killed with SIGKILL
//! cannot clean up; the next scratch (of any of these commands) sweeps what it left,
//! never another live run's:
//!
//! - SQLite: a hidden `.xtask-scratch.db.<random>.partial` file in the temporary
//!   directory, held under an exclusive `flock` for as long as it is in use (see
//!   [`crate::durable`]). A file nobody holds locked, and SQLite's `-wal`/`-shm` of it,
//!   belong to a dead run.
//! - PostgreSQL: a database `xtask_scratch_<pid>_<random>` created by a session whose
//!   `application_name` is that same name, open for the scratch's whole life (the
//!   marker). The marker session exists before the database does, so a database of that
//!   prefix whose marker is not in `pg_stat_activity` (which shows every session of the
//!   server, whatever database it is in) belongs to a run that is gone, and is dropped.

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{ConnectOptions, Connection};

use crate::config::DbSettings;
use crate::db::DbError;
use crate::db::quoted;
use crate::url::DatabaseUrl;

/// The name every PostgreSQL scratch database starts with.
const PG_PREFIX: &str = "xtask_scratch_";

/// The final name the hidden SQLite scratch files are made for (in the temporary directory).
const SQLITE_NAME: &str = "xtask-scratch.db";

/// How long dropping an abandoned scratch database may take: a server that stopped
/// answering must not keep an interrupted command alive.
const DROP_LIMIT: Duration = Duration::from_secs(10);

/// Why a scratch database could not be made, removed or renamed.
#[derive(Debug, thiserror::Error)]
pub enum ScratchError {
    /// The database failed.
    #[error(transparent)]
    Db(#[from] DbError),
    /// The database the marker session connects to does not exist.
    #[error("cannot create a scratch database: the database to connect to does not exist")]
    NoSuchDatabase,
    /// Staging is for PostgreSQL databases only.
    #[error("only a PostgreSQL database is staged on its server")]
    NotPostgres,
    /// Creating it failed at `step`.
    #[error("cannot create a scratch database ({step}: {reason})")]
    Create {
        /// What was being done.
        step: &'static str,
        /// The error, passwords masked.
        reason: String,
    },
    /// Dropping it failed; the next run sweeps it.
    #[error("cannot drop the scratch database {name}: {reason}")]
    Drop {
        /// The scratch database.
        name: String,
        /// The server's message.
        reason: String,
    },
    /// Renaming a staged database into place failed; it was dropped.
    #[error("cannot rename the finished copy to `{name}` ({reason}); it was dropped")]
    Rename {
        /// The target name.
        name: String,
        /// The server's message.
        reason: String,
    },
}

/// A throwaway database of the same engine as the settings it was made from; see the
/// module docs. Call [`Scratch::remove`] when done: a scratch dropped without it (an
/// interrupted command) removes its SQLite file at once and leaves its PostgreSQL
/// database to [`drop_abandoned_scratch`].
pub struct Scratch {
    /// Settings that open the scratch database.
    pub settings: DbSettings,
    file: Option<tempfile::NamedTempFile>,
    pg: Option<PgScratch>,
}

/// The PostgreSQL side: the marker session and how to reach it again.
struct PgScratch {
    marker: PgConnection,
    admin: PgConnectOptions,
    name: String,
}

/// PostgreSQL scratch databases dropped without [`Scratch::remove`], to drop by name.
static ABANDONED: Mutex<Vec<(PgConnectOptions, String)>> = Mutex::new(Vec::new());

impl Scratch {
    /// A fresh scratch database for `settings` (an empty SQLite file, or a new
    /// PostgreSQL database on the same server), after sweeping what killed runs left.
    pub async fn create(settings: &DbSettings) -> Result<Self, ScratchError> {
        let mut scratch = settings.clone();
        scratch.min_connections = 1;
        scratch.max_connections = 2;
        let url = match &settings.url {
            DatabaseUrl::Sqlite { .. } | DatabaseUrl::SqliteMemory => {
                let file = sqlite_file(settings).await?;
                scratch.url = DatabaseUrl::Sqlite {
                    path: file.path().to_path_buf(),
                };
                return Ok(Self {
                    settings: scratch,
                    file: Some(file),
                    pg: None,
                });
            }
            DatabaseUrl::Postgres { url } => url,
        };
        sweep_sqlite();
        let admin = crate::pg::connect_options(url).map_err(DbError::from)?;
        // The configured database need not exist yet (db-check in CI): then the marker
        // session lives in the server's `postgres` database.
        let created = match PgScratch::create(admin.clone(), url, settings.connect_timeout).await {
            Err(ScratchError::NoSuchDatabase) => {
                let admin = admin.database("postgres");
                PgScratch::create(admin, url, settings.connect_timeout).await
            }
            other => other,
        };
        let (pg, url) = created?;
        scratch.url = DatabaseUrl::Postgres { url };
        Ok(Self {
            settings: scratch,
            file: None,
            pg: Some(pg),
        })
    }

    /// A new, empty PostgreSQL database on the server of `target` (a URL naming a
    /// database that does not exist), to be renamed into place by [`Scratch::rename_into_place`].
    /// Made and swept from the server's `postgres` database.
    pub async fn staging(target: &DbSettings) -> Result<Self, ScratchError> {
        let DatabaseUrl::Postgres { url } = &target.url else {
            return Err(ScratchError::NotPostgres);
        };
        let admin = crate::pg::connect_options(url)
            .map_err(DbError::from)?
            .database("postgres");
        let (pg, url) = PgScratch::create(admin, url, target.connect_timeout).await?;
        let mut settings = target.clone();
        settings.url = DatabaseUrl::Postgres { url };
        Ok(Self {
            settings,
            file: None,
            pg: Some(pg),
        })
    }

    /// Removes the scratch database (its pools closed first).
    pub async fn remove(mut self) -> Result<(), ScratchError> {
        let Some(mut pg) = self.pg.take() else {
            return Ok(());
        };
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", quoted(&pg.name));
        let dropped = sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(&mut pg.marker)
            .await;
        if dropped.is_err() {
            // Left to the next sweep: its marker goes with this session.
            ABANDONED
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push((pg.admin.clone(), pg.name.clone()));
        }
        pg.marker.close().await.ok();
        dropped.map(drop).map_err(|e| ScratchError::Drop {
            name: pg.name.clone(),
            reason: crate::db::describe_driver_error(&e, None),
        })
    }

    /// Renames a [`Scratch::staging`] database (its pools closed) to the name its
    /// target settings gave; fails, dropping it, when a database of that name appeared
    /// meanwhile. Never touches a database it did not create.
    pub async fn rename_into_place(mut self, name: &str) -> Result<(), ScratchError> {
        let Some(pg) = self.pg.as_mut() else {
            return Ok(());
        };
        let sql = format!(
            "ALTER DATABASE {} RENAME TO {}",
            quoted(&pg.name),
            quoted(name)
        );
        match sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(&mut pg.marker)
            .await
        {
            Ok(_) => {
                let pg = self.pg.take().expect("checked above");
                pg.marker.close().await.ok();
                Ok(())
            }
            Err(e) => {
                let reason = crate::db::describe_driver_error(&e, None);
                self.remove().await.ok();
                Err(ScratchError::Rename {
                    name: name.to_string(),
                    reason,
                })
            }
        }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Some(file) = self.file.take() {
            let path = file.path().to_path_buf();
            drop(file);
            remove_sidecars(path);
        }
        if let Some(pg) = self.pg.take() {
            ABANDONED
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push((pg.admin, pg.name));
        }
    }
}

/// Drops the PostgreSQL scratch databases of this process that were abandoned (their
/// command interrupted), giving up on each after 10 s. Returns the names it could not drop.
pub async fn drop_abandoned_scratch() -> Vec<String> {
    let abandoned = std::mem::take(&mut *ABANDONED.lock().unwrap_or_else(|e| e.into_inner()));
    let mut left = Vec::new();
    for (admin, name) in abandoned {
        let dropped = tokio::time::timeout(DROP_LIMIT, async {
            let mut conn = admin.connect().await?;
            let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", quoted(&name));
            let result = sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                .execute(&mut conn)
                .await;
            conn.close().await.ok();
            result.map(drop)
        })
        .await;
        if !matches!(dropped, Ok(Ok(()))) {
            left.push(name);
        }
    }
    left
}

impl PgScratch {
    /// Opens the marker session (through `admin`), sweeps, creates the database; returns
    /// it with `url` pointed at it.
    async fn create(
        admin: PgConnectOptions,
        url: &url::Url,
        timeout: Duration,
    ) -> Result<(Self, url::Url), ScratchError> {
        let name = format!("{PG_PREFIX}{}_{:016x}", std::process::id(), random());
        let admin = admin.disable_statement_logging();
        let cannot = |what: &'static str, e: &dyn std::fmt::Display| ScratchError::Create {
            step: what,
            reason: crate::url::mask_url(&e.to_string()),
        };
        let mut marker =
            tokio::time::timeout(timeout, admin.clone().application_name(&name).connect())
                .await
                .map_err(|_| cannot("connecting", &"timed out"))?
                .map_err(|e| match &e {
                    e if crate::db::is_missing_database(e) => ScratchError::NoSuchDatabase,
                    _ => cannot("connecting", &crate::db::describe_driver_error(&e, None)),
                })?;
        sweep_pg(&mut marker).await;
        let sql = format!("CREATE DATABASE {}", quoted(&name));
        if let Err(e) = sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(&mut marker)
            .await
        {
            marker.close().await.ok();
            return Err(cannot(
                "CREATE DATABASE failed",
                &crate::db::describe_driver_error(&e, None),
            ));
        }
        let mut url = url.clone();
        url.set_path(&name);
        // `?dbname=` would win over the path.
        let pairs: Vec<(String, String)> = url
            .query_pairs()
            .filter(|(k, _)| k != "dbname")
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        url.set_query(None);
        if !pairs.is_empty() {
            url.query_pairs_mut().extend_pairs(pairs);
        }
        Ok((
            Self {
                marker,
                admin,
                name,
            },
            url,
        ))
    }
}

/// Drops every scratch database (this user may drop) whose marker session is gone.
/// Best effort: a database that cannot be dropped now is tried again next time.
async fn sweep_pg(conn: &mut PgConnection) {
    let Ok(names) = sqlx::query_scalar::<_, String>(
        "SELECT datname::text FROM pg_database \
         WHERE starts_with(datname, $1) AND pg_has_role(datdba, 'MEMBER')",
    )
    .bind(PG_PREFIX)
    .fetch_all(&mut *conn)
    .await
    else {
        return;
    };
    for name in names {
        // A statement of its own: a new transaction reads sessions as they are now,
        // after the database was seen (its marker started before it was created).
        let live = sqlx::query_scalar::<_, bool>(
            "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE application_name = $1)",
        )
        .bind(&name)
        .fetch_one(&mut *conn)
        .await;
        if let Ok(false) = live {
            let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", quoted(&name));
            let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                .execute(&mut *conn)
                .await;
        }
    }
}

/// A new, empty, locked SQLite scratch file in the temporary directory (sweeping dead ones).
async fn sqlite_file(settings: &DbSettings) -> Result<tempfile::NamedTempFile, ScratchError> {
    let path = std::env::temp_dir().join(SQLITE_NAME);
    crate::db::new_database_file(&path, settings)
        .await
        .map_err(|e| ScratchError::Create {
            step: "a file in the temporary directory",
            reason: e.to_string(),
        })
}

/// Removes the SQLite scratch files of dead runs from the temporary directory.
fn sweep_sqlite() {
    crate::durable::sweep(
        &std::env::temp_dir(),
        &format!(".{SQLITE_NAME}."),
        &[crate::durable::PARTIAL],
    );
}

/// Removes SQLite's `-wal`, `-shm` and `-journal` of a database file that is gone.
fn remove_sidecars(path: PathBuf) {
    for suffix in ["-wal", "-shm", "-journal"] {
        let mut sidecar = path.clone().into_os_string();
        sidecar.push(suffix);
        let _ = std::fs::remove_file(sidecar);
    }
}

/// 64 random bits (std's per-process random hash keys, mixed with the clock).
fn random() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    hasher.finish()
}
