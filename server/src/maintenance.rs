//! Whole-database operations behind the xtask commands: init, reset, and the migration doctor.

use std::collections::BTreeSet;

use crate::config::DbSettings;
use crate::db::{DbConn, DbError, DbPool, Executor, OpenMode, Target};
use crate::migrations::{self, MigrationError, MigrationSet, SchemaState, SchemaStatus};
use crate::schema::{self, Schema};
use crate::url::DatabaseUrl;

mod scratch;

pub use scratch::{Scratch, drop_abandoned_scratch};

/// A maintenance failure.
#[derive(Debug, thiserror::Error)]
pub enum MaintenanceError {
    /// The database failed.
    #[error(transparent)]
    Db(#[from] DbError),
    /// A migration failed.
    #[error(transparent)]
    Migration(#[from] MigrationError),
    /// A post-condition does not hold.
    #[error("{0}")]
    Check(String),
}

impl From<sqlx::Error> for MaintenanceError {
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
pub async fn init(
    settings: &DbSettings,
    set: &MigrationSet,
) -> Result<InitReport, MaintenanceError> {
    let (pool, created) = open_or_create(settings).await?;
    let result = async {
        let mut conn = pool.acquire().await?;
        let outcome = migrations::upgrade(&mut conn, set, None).await?;
        conn.ping().await?;
        let status = migrations::status(&mut conn, set).await?;
        if status.state != SchemaState::UpToDate {
            return Err(MaintenanceError::Check(format!(
                "after migrating, the schema is {} (version {} of {})",
                status.state, status.current_version, status.latest_version
            )));
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
pub async fn open_or_create(settings: &DbSettings) -> Result<(DbPool, bool), MaintenanceError> {
    let created = settings.url.sqlite_path().is_some_and(|p| !p.exists());
    match DbPool::open(settings, OpenMode::Create).await {
        Err(DbError::Driver(sqlx::Error::Database(e)))
            if e.code().as_deref() == Some(PG_NO_SUCH_DATABASE) =>
        {
            let created = create_pg_database(settings).await?;
            Ok((DbPool::open(settings, OpenMode::Create).await?, created))
        }
        other => Ok((other?, created)),
    }
}

/// SQLSTATE `invalid_catalog_name`: the database does not exist.
const PG_NO_SUCH_DATABASE: &str = "3D000";

/// Key of the advisory lock (in the `postgres` database) that serializes creating databases.
const PG_CREATE_LOCK_KEY: i64 = 0x6462_696e_6974; // "dbinit"

/// Creates the PostgreSQL database named in the URL (decoded), connecting to the
/// server's `postgres` database. Race-safe: starters serialize on an advisory lock and
/// create the database only when it still does not exist. Returns whether this call
/// created it.
async fn create_pg_database(settings: &DbSettings) -> Result<bool, MaintenanceError> {
    use sqlx::{ConnectOptions, Connection};
    let DatabaseUrl::Postgres { url } = &settings.url else {
        return Ok(false);
    };
    let options = crate::pg::connect_options(url).map_err(DbError::from)?;
    let name = crate::pg::database_name(url).map_err(DbError::from)?;
    let cannot = |what: &str, e: &dyn std::fmt::Display| {
        MaintenanceError::Check(crate::url::mask_url(&format!(
            "database `{name}` does not exist and cannot be created ({what}: {e})"
        )))
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
        let sql = format!("CREATE DATABASE {}", schema::quoted(&name));
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

/// The script that drops every table, view, trigger and sequence the application owns,
/// history included, for the engine of `conn` (SQLite: its objects as they are now).
pub(crate) async fn drop_all_script(on: &mut impl Executor) -> Result<String, sqlx::Error> {
    Ok(match on.target() {
        Target::Sqlite(c) => {
            let objects: Vec<(String, String)> = sqlx::query_as(
                "SELECT type, name FROM sqlite_master \
                 WHERE type IN ('table', 'view', 'trigger') AND lower(substr(name, 1, 7)) <> 'sqlite_' \
                 ORDER BY CASE type WHEN 'trigger' THEN 0 WHEN 'view' THEN 1 ELSE 2 END",
            )
            .fetch_all(c)
            .await?;
            objects
                .iter()
                .map(|(kind, name)| {
                    format!(
                        "DROP {} IF EXISTS {};\n",
                        kind.to_uppercase(),
                        schema::quoted(name)
                    )
                })
                .collect()
        }
        Target::Postgres(_) => PG_DROP_ALL.to_string(),
    })
}

/// Drops the objects of the current schema, keeping the schema itself (and its grants).
pub(crate) const PG_DROP_ALL: &str = r#"
DO $$
DECLARE r record;
BEGIN
  FOR r IN SELECT matviewname AS n FROM pg_matviews WHERE schemaname = current_schema() LOOP
    EXECUTE format('DROP MATERIALIZED VIEW IF EXISTS %I CASCADE', r.n);
  END LOOP;
  FOR r IN SELECT viewname AS n FROM pg_views WHERE schemaname = current_schema() LOOP
    EXECUTE format('DROP VIEW IF EXISTS %I CASCADE', r.n);
  END LOOP;
  FOR r IN SELECT tablename AS n FROM pg_tables WHERE schemaname = current_schema() LOOP
    EXECUTE format('DROP TABLE IF EXISTS %I CASCADE', r.n);
  END LOOP;
  FOR r IN SELECT sequencename AS n FROM pg_sequences WHERE schemaname = current_schema() LOOP
    EXECUTE format('DROP SEQUENCE IF EXISTS %I CASCADE', r.n);
  END LOOP;
  FOR r IN SELECT p.oid::regprocedure AS n FROM pg_proc p
           WHERE p.pronamespace = current_schema()::regnamespace LOOP
    EXECUTE format('DROP ROUTINE IF EXISTS %s CASCADE', r.n);
  END LOOP;
  FOR r IN SELECT t.typname AS n FROM pg_type t
           WHERE t.typnamespace = current_schema()::regnamespace
             AND t.typtype IN ('e', 'd', 'c', 'r')
             AND NOT EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = t.typrelid AND c.relkind <> 'c') LOOP
    EXECUTE format('DROP TYPE IF EXISTS %I CASCADE', r.n);
  END LOOP;
END $$;
"#;

/// Drops everything and migrates to the latest version, in one transaction: killed or
/// failing midway, the database is exactly as it was.
pub async fn reset(pool: &DbPool, set: &MigrationSet) -> Result<Vec<String>, MaintenanceError> {
    let mut conn = pool.acquire().await?;
    let drop_all = drop_all_script(&mut conn).await?;
    Ok(migrations::reset(&mut conn, set, &drop_all).await?.changed)
}

/// Everything `db-check` finds wrong, one line each; empty when all is well.
///
/// Checks the files (names, contiguous versions, down scripts), the applied checksums
/// of the configured database when it exists, and a round trip on a scratch database:
/// for each migration, up, down and up again must give back the same schema.
pub async fn check(
    settings: &DbSettings,
    set: &MigrationSet,
) -> Result<Vec<String>, MaintenanceError> {
    let mut problems: Vec<String> = set.problems().to_vec();

    let exists = settings.url.sqlite_path().is_none_or(|p| p.exists());
    if exists && settings.url != DatabaseUrl::SqliteMemory {
        let pool = DbPool::open(settings, OpenMode::MustExist).await?;
        let mut conn = pool.acquire().await?;
        let status = migrations::status(&mut conn, set).await?;
        drop(conn);
        pool.close().await;
        for applied in &status.applied {
            let id = format!("V{}__{}", applied.version, applied.name);
            match applied.state {
                migrations::AppliedState::Ok => {}
                migrations::AppliedState::Divergent => problems.push(format!(
                    "{id}: edited after it was applied (checksum in the database differs from the file)"
                )),
                migrations::AppliedState::Unknown => problems.push(format!(
                    "{id}: applied to the database but missing from migrations/"
                )),
            }
        }
    }

    let scratch = Scratch::create(settings).await?;
    let result = round_trip(&scratch.settings, set).await;
    scratch.remove().await?;
    problems.extend(result?);
    Ok(problems)
}

/// Up, down, up for each migration in turn, comparing schemas.
async fn round_trip(
    settings: &DbSettings,
    set: &MigrationSet,
) -> Result<Vec<String>, MaintenanceError> {
    let pool = DbPool::open(settings, OpenMode::Create).await?;
    let mut conn = pool.acquire().await?;
    let mut problems = Vec::new();
    let mut before = schema_snapshot(&mut conn).await?;
    for migration in set.migrations() {
        let id = migration.id();
        if let Err(e) = migrations::upgrade(&mut conn, set, Some(migration.version)).await {
            problems.push(format!("{id}: does not apply on an empty database: {e}"));
            break;
        }
        let after = schema_snapshot(&mut conn).await?;
        if migration.down.is_none() {
            before = after;
            continue;
        }
        if let Err(e) = migrations::downgrade(&mut conn, set, migration.version - 1).await {
            problems.push(format!("{id}.down.sql: fails: {e}"));
            break;
        }
        let reverted = schema_snapshot(&mut conn).await?;
        if reverted != before {
            let left: Vec<_> = reverted.difference(&before).cloned().collect();
            let lost: Vec<_> = before.difference(&reverted).cloned().collect();
            let mut detail = Vec::new();
            if !left.is_empty() {
                detail.push(format!("leaves behind {}", left.join(", ")));
            }
            if !lost.is_empty() {
                detail.push(format!("removes {}", lost.join(", ")));
            }
            problems.push(format!(
                "{id}.down.sql does not fully revert {id}: {}",
                detail.join("; ")
            ));
            break;
        }
        if let Err(e) = migrations::upgrade(&mut conn, set, Some(migration.version)).await {
            problems.push(format!(
                "{id}: does not apply again after its down script: {e}"
            ));
            break;
        }
        if schema_snapshot(&mut conn).await? != after {
            problems.push(format!(
                "{id}: applying it again after its down script gives a different schema"
            ));
            break;
        }
        before = after;
    }
    drop(conn);
    pool.close().await;
    Ok(problems)
}

/// The application's schema as comparable lines (the history table excluded).
pub async fn schema_snapshot(conn: &mut DbConn) -> Result<BTreeSet<String>, sqlx::Error> {
    let rows: Vec<String> = match conn {
        DbConn::Sqlite(c) => {
            // Tables and indexes as the schema module spells them: a table rebuilt by a
            // migration is the same table, whatever text created it.
            let described = schema::read(crate::db::Target::Sqlite(c)).await?;
            let mut rows: Vec<String> = sqlx::query_scalar(
                "SELECT type || ' ' || name || ': ' || coalesce(sql, '') FROM sqlite_master \
                 WHERE type IN ('view', 'trigger') AND lower(substr(name, 1, 7)) <> 'sqlite_'",
            )
            .fetch_all(&mut **c)
            .await?;
            for table in &described.tables {
                rows.push(format!(
                    "table {}: {}",
                    table.name,
                    schema::create_table(&schema::columns_by_name(table))
                ));
                for index in &table.indexes {
                    rows.push(format!(
                        "index {}: {}",
                        index.name,
                        schema::create_index(&table.name, index)
                    ));
                }
            }
            rows
        }
        DbConn::Postgres(c) => {
            sqlx::query_scalar(
                "SELECT 'column ' || table_name || '.' || column_name || ' ' || data_type || ' ' \
                        || is_nullable || ' ' || coalesce(column_default, '') \
                   FROM information_schema.columns \
                  WHERE table_schema = current_schema() AND table_name <> 'refinery_schema_history' \
                 UNION ALL \
                 SELECT 'index ' || indexname || ': ' || indexdef FROM pg_indexes \
                  WHERE schemaname = current_schema() AND tablename <> 'refinery_schema_history' \
                 UNION ALL \
                 SELECT 'constraint ' || conname || ': ' || pg_get_constraintdef(oid) FROM pg_constraint \
                  WHERE connamespace = current_schema()::regnamespace \
                    AND conrelid <> coalesce(to_regclass('refinery_schema_history'), 0)::oid \
                 UNION ALL \
                 SELECT 'sequence ' || sequencename FROM pg_sequences WHERE schemaname = current_schema() \
                 UNION ALL \
                 SELECT 'type ' || typname FROM pg_type \
                  WHERE typnamespace = current_schema()::regnamespace AND typtype IN ('e', 'd') \
                 UNION ALL \
                 SELECT 'view ' || viewname || ': ' || definition FROM pg_views WHERE schemaname = current_schema()",
            )
            .fetch_all(&mut **c)
            .await?
        }
    };
    Ok(rows.into_iter().collect())
}

/// The schema the migrations produce (all of them), read from a scratch database of the
/// configured engine.
pub async fn schema_of_migrations(
    settings: &DbSettings,
    set: &MigrationSet,
) -> Result<Schema, MaintenanceError> {
    on_scratch(settings, async |conn: &mut DbConn| {
        migrations::upgrade(conn, set, None).await.map_err(|e| {
            MaintenanceError::Check(format!(
                "the migrations do not apply on a scratch {} database (the configured database is untouched): {e}",
                settings.url.kind()
            ))
        })?;
        Ok(schema::read(conn.target()).await?)
    })
    .await
}

/// The schema after each migration in turn (the last: all of them), read from one scratch
/// database of the configured engine: what a declared schema written from the migrations
/// has ever been.
pub async fn schemas_of_versions(
    settings: &DbSettings,
    set: &MigrationSet,
) -> Result<Vec<Schema>, MaintenanceError> {
    on_scratch(settings, async |conn: &mut DbConn| {
        let mut schemas = vec![schema::read(conn.target()).await?];
        for migration in set.migrations() {
            migrations::upgrade(conn, set, Some(migration.version))
                .await
                .map_err(|e| {
                    MaintenanceError::Check(format!(
                        "the migrations do not apply on a scratch {} database (the configured database is untouched): {e}",
                        settings.url.kind()
                    ))
                })?;
            schemas.push(schema::read(conn.target()).await?);
        }
        Ok(schemas)
    })
    .await
}

/// The schema the declared schema file (`sql`, named `file` in errors) produces on a
/// scratch database of the configured engine.
pub async fn schema_of_file(
    settings: &DbSettings,
    sql: &str,
    file: &str,
) -> Result<Schema, MaintenanceError> {
    on_scratch(settings, async |conn: &mut DbConn| {
        let statements = schema::apply(conn, sql, file)
            .await
            .map_err(MaintenanceError::Check)?;
        let declared = schema::read(conn.target()).await?;
        // SQLite takes any type name; the declared schema is for both engines.
        schema::check_declared(&declared, &statements, file).map_err(MaintenanceError::Check)?;
        Ok(declared)
    })
    .await
}

/// The schema of the configured database, read without changing it.
pub async fn schema_of_database(settings: &DbSettings) -> Result<Schema, MaintenanceError> {
    let pool = DbPool::open(settings, OpenMode::ReadOnly).await?;
    let result = async {
        let mut conn = pool.acquire().await?;
        Ok(schema::read(conn.target()).await?)
    }
    .await;
    pool.close().await;
    result
}

/// How `dir/schema.sql` (named `label` in messages) differs from what the migrations
/// produce, as diff lines of the two rendered schemas (empty: they agree); `None` when
/// there is no such file.
pub async fn schema_drift(
    settings: &DbSettings,
    set: &MigrationSet,
    dir: &std::path::Path,
    label: &str,
) -> Result<Option<Vec<String>>, MaintenanceError> {
    let Some(sql) = schema::read_file(dir, label).map_err(MaintenanceError::Check)? else {
        return Ok(None);
    };
    let declared = schema_of_file(settings, &sql, label).await?;
    let produced = schema_of_migrations(settings, set).await?;
    Ok(Some(schema::line_diff(
        &schema::render_bare(&declared),
        &schema::render_bare(&produced),
    )))
}

/// Runs `work` on a connection to a fresh scratch database, dropped afterwards.
async fn on_scratch<T>(
    settings: &DbSettings,
    work: impl AsyncFnOnce(&mut DbConn) -> Result<T, MaintenanceError>,
) -> Result<T, MaintenanceError> {
    let scratch = Scratch::create(settings).await?;
    let result = async {
        let pool = DbPool::open(&scratch.settings, OpenMode::Create).await?;
        let result = async { work(&mut pool.acquire().await?).await }.await;
        pool.close().await;
        result
    }
    .await;
    scratch.remove().await?;
    result
}
