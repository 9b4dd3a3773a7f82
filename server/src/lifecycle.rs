//! A database's life cycle: creating it (the SQLite file, or the PostgreSQL database on
//! its server) and bringing it to the latest migration (`db-init`), and resetting it
//! (`db-reset`).

use crate::config::DbSettings;
use crate::db::{DbError, DbPool, OpenMode};
use crate::migrations::{self, MigrationError, MigrationSet, SchemaState, SchemaStatus};
use crate::url::DatabaseUrl;

/// Why a database could not be created, migrated or reset.
#[derive(Debug, thiserror::Error)]
pub enum LifecycleError {
    /// The database failed.
    #[error(transparent)]
    Db(#[from] DbError),
    /// A migration failed.
    #[error(transparent)]
    Migration(#[from] MigrationError),
    /// After migrating, the schema is still not the latest.
    #[error("after migrating, the schema is {state} (version {current} of {latest})")]
    NotUpToDate {
        /// The state found.
        state: SchemaState,
        /// The version the database is at.
        current: i32,
        /// The latest version of the set.
        latest: i32,
    },
    /// A PostgreSQL reset emptied the database and then a migration failed: the database
    /// is at `version`, not as it was.
    #[error("{source}; the database was emptied and is now at version {version}")]
    ResetIncomplete {
        /// The version the database is at now.
        version: i32,
        /// The migration's failure.
        source: MigrationError,
    },
    /// The PostgreSQL database is missing and creating it failed at `step`.
    #[error("database `{name}` does not exist and cannot be created ({step}: {reason})")]
    CannotCreate {
        /// The database's name.
        name: String,
        /// What was being done.
        step: &'static str,
        /// The error, passwords masked.
        reason: String,
    },
}

impl From<sqlx::Error> for LifecycleError {
    fn from(e: sqlx::Error) -> Self {
        Self::Db(e.into())
    }
}

/// What `db-init` did.
#[derive(Debug)]
pub struct InitReport {
    /// The SQLite file did not exist before.
    pub created: bool,
    /// Migrations applied by this run.
    pub applied: Vec<String>,
    /// The state afterwards (always up to date on success).
    pub status: SchemaStatus,
}

/// Creates the database if missing, applies pending migrations, and verifies the result.
pub async fn init(settings: &DbSettings, set: &MigrationSet) -> Result<InitReport, LifecycleError> {
    let (pool, created) = open_or_create(settings).await?;
    let result = async {
        let mut conn = pool.acquire().await?;
        let outcome = migrations::upgrade(&mut conn, set, None).await?;
        conn.ping().await?;
        let status = migrations::status(&mut conn, set).await?;
        if status.state != SchemaState::UpToDate {
            return Err(LifecycleError::NotUpToDate {
                state: status.state,
                current: status.current_version,
                latest: status.latest_version,
            });
        }
        Ok(InitReport {
            created,
            applied: outcome.changed,
            status,
        })
    }
    .await;
    pool.close().await;
    result
}

/// Opens the database, creating it first when missing (the SQLite file, or the
/// PostgreSQL database on its server); also says whether it was created.
pub async fn open_or_create(settings: &DbSettings) -> Result<(DbPool, bool), LifecycleError> {
    let created = settings.url.sqlite_path().is_some_and(|p| !p.exists());
    match DbPool::open(settings, OpenMode::Create).await {
        Err(DbError::Driver(e)) if crate::db::is_missing_database(&e) => {
            let created = create_pg_database(settings).await?;
            // A pooler (PgBouncer: 08P01) that failed to log in to the missing database
            // tries again only after `server_login_retry` (15 s by default): wait for it.
            let pooled =
                matches!(&e, sqlx::Error::Database(db) if db.code().as_deref() == Some("08P01"));
            let deadline = std::time::Instant::now() + POOLER_LOGIN_RETRY;
            loop {
                match DbPool::open(settings, OpenMode::Create).await {
                    Err(DbError::ConnectTimeout(_)) | Err(DbError::Driver(_))
                        if pooled && std::time::Instant::now() < deadline =>
                    {
                        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                    }
                    other => return Ok((other?, created)),
                }
            }
        }
        other => Ok((other?, created)),
    }
}

/// How long a database just created is waited for through a pooler: PgBouncer's default
/// `server_login_retry` and a margin.
const POOLER_LOGIN_RETRY: std::time::Duration = std::time::Duration::from_secs(20);

/// Key of the advisory lock (in the `postgres` database) that serializes creating databases.
const PG_CREATE_LOCK_KEY: i64 = 0x6462_696e_6974; // "dbinit"

/// Creates the PostgreSQL database named in the URL (decoded), connecting to the
/// server's `postgres` database. Race-safe: starters serialize on an advisory lock and
/// create the database only when it still does not exist. Returns whether this call
/// created it.
async fn create_pg_database(settings: &DbSettings) -> Result<bool, LifecycleError> {
    use sqlx::{ConnectOptions, Connection};
    let DatabaseUrl::Postgres { url } = &settings.url else {
        return Ok(false);
    };
    let options = crate::pg::connect_options(url).map_err(DbError::from)?;
    let name = crate::pg::database_name(url).map_err(DbError::from)?;
    let cannot = |what: &'static str, e: &dyn std::fmt::Display| LifecycleError::CannotCreate {
        name: name.clone(),
        step: what,
        reason: crate::url::mask_url(&e.to_string()),
    };
    let options = options.database("postgres").disable_statement_logging();
    let mut admin = tokio::time::timeout(settings.connect_timeout, options.connect())
        .await
        .map_err(|_| cannot("connecting to the `postgres` database", &"timed out"))?
        .map_err(|e| {
            cannot(
                "connecting to the `postgres` database failed",
                &crate::db::describe_driver_error(&e, None),
            )
        })?;
    let result = async {
        sqlx::query("SELECT pg_advisory_lock($1)")
            .bind(PG_CREATE_LOCK_KEY)
            .execute(&mut admin)
            .await?;
        let exists: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
                .bind(&name)
                .fetch_one(&mut admin)
                .await?;
        if exists {
            return Ok(false);
        }
        let sql = format!("CREATE DATABASE {}", crate::db::quoted(&name));
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(&mut admin)
            .await?;
        Ok::<_, sqlx::Error>(true)
    }
    .await;
    // Closing the session releases the advisory lock.
    admin.close().await.ok();
    result.map_err(|e| {
        cannot(
            "CREATE DATABASE failed",
            &crate::db::describe_driver_error(&e, None),
        )
    })
}

/// Drops everything and migrates to the latest version.
///
/// SQLite: all in one transaction; killed or failing midway, the database is exactly as
/// it was. PostgreSQL (and SQLite when a migration is `-- db: no-transaction`): the drop
/// in one transaction, then each migration in its own, as
/// `db-upgrade` applies them (an enum value added by one migration can only be used by a
/// later one once committed); a failing migration gives [`LifecycleError::ResetIncomplete`]:
/// the database is emptied and at the version before it, and the caller puts back its
/// safety backup.
pub async fn reset(pool: &DbPool, set: &MigrationSet) -> Result<Vec<String>, LifecycleError> {
    let set = &set.for_engine(pool.kind());
    let mut conn = pool.acquire().await?;
    let drop_all = crate::db::drop_all_script(&mut conn).await?;
    let sqlite = !matches!(pool.kind(), crate::url::DbKind::Postgres);
    // SQLite keeps its one-transaction reset unless a migration must run outside one.
    let outside = set
        .migrations()
        .iter()
        .any(|m| migrations::no_transaction(&m.up));
    if sqlite && !outside {
        return Ok(migrations::reset(&mut conn, set, &drop_all).await?.changed);
    }
    let dropped = async {
        // SQLite: the drop order must not matter (the pragma works outside transactions).
        if sqlite {
            conn.execute_script("PRAGMA foreign_keys = OFF").await?;
        }
        let dropped = async {
            let mut tx = conn.begin_write().await?;
            tx.execute_script(&drop_all).await?;
            tx.commit().await
        }
        .await;
        if sqlite {
            conn.execute_script("PRAGMA foreign_keys = ON").await?;
        }
        dropped
    }
    .await;
    dropped.map_err(|e| MigrationError::Failed {
        name: "(reset)".into(),
        reason: format!(
            "{}; nothing was changed",
            crate::db::describe_driver_error(&e, None)
        ),
    })?;
    match migrations::upgrade(&mut conn, set, None).await {
        Ok(outcome) => Ok(outcome.changed),
        Err(source) => Err(LifecycleError::ResetIncomplete {
            version: migrations::status(&mut conn, set)
                .await
                .map_or(0, |s| s.current_version),
            source,
        }),
    }
}
