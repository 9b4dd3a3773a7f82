//! The declared schema (`migrations/schema.sql`) against what the migrations produce and
//! what the database holds, each read from a scratch database of the configured engine
//! (the configured database is never written).

use crate::config::DbSettings;
use crate::db::{DbConn, DbError, DbPool, Executor, OpenMode};
use crate::migrations::{self, MigrationError, MigrationSet};
use crate::schema::{self, Schema};
use crate::scratch::{Scratch, ScratchError};
use crate::url::DbKind;

/// Why a schema could not be read or compared.
#[derive(Debug, thiserror::Error)]
pub enum DeclaredError {
    /// The database failed.
    #[error(transparent)]
    Db(#[from] DbError),
    /// The scratch database could not be made or removed.
    #[error(transparent)]
    Scratch(#[from] ScratchError),
    /// The migrations fail on a scratch database.
    #[error(
        "the migrations do not apply on a scratch {engine} database (the configured database is untouched): {source}"
    )]
    MigrationsFail {
        /// The engine of the scratch database.
        engine: DbKind,
        /// The failure.
        source: MigrationError,
    },
    /// The declared schema file does not load or declares what it cannot.
    #[error(transparent)]
    File(#[from] schema::SchemaFileError),
}

impl From<sqlx::Error> for DeclaredError {
    fn from(e: sqlx::Error) -> Self {
        Self::Db(e.into())
    }
}

/// The schema the migrations produce (all of them), read from a scratch database of the
/// configured engine.
pub async fn schema_of_migrations(
    settings: &DbSettings,
    set: &MigrationSet,
) -> Result<Schema, DeclaredError> {
    schema_of_migrations_to(settings, set, None).await
}

/// The schema migrations 1..=`version` produce (all when `None`), read from a scratch
/// database of the configured engine.
pub async fn schema_of_migrations_to(
    settings: &DbSettings,
    set: &MigrationSet,
    version: Option<i32>,
) -> Result<Schema, DeclaredError> {
    let set = &set.for_engine(settings.url.kind());
    on_scratch(settings, async |conn: &mut DbConn| {
        migrations::upgrade(conn, set, version).await.map_err(|e| {
            DeclaredError::MigrationsFail {
                engine: settings.url.kind(),
                source: e,
            }
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
) -> Result<Vec<Schema>, DeclaredError> {
    let set = &set.for_engine(settings.url.kind());
    on_scratch(settings, async |conn: &mut DbConn| {
        // Read after each migration: what did not change is not read again.
        let mut cache = schema::ReadCache::default();
        let mut schemas = vec![schema::read_cached(conn.target(), &mut cache).await?];
        for migration in set.migrations() {
            migrations::step_to(conn, set, migration.version)
                .await
                .map_err(|e| DeclaredError::MigrationsFail {
                    engine: settings.url.kind(),
                    source: e,
                })?;
            schemas.push(schema::read_cached(conn.target(), &mut cache).await?);
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
) -> Result<Schema, DeclaredError> {
    let for_engine = schema::engine_of(sql);
    if let Some((engine, line)) = for_engine.filter(|(e, _)| *e != settings.url.kind()) {
        return Err(DeclaredError::File(schema::SchemaFileError::At {
            file: file.to_string(),
            line,
            message: format!(
                "the file is for {engine} only (its types are {engine}'s), and the configured database is {}: run this with a {engine} DATABASE_URL, or make the file portable",
                settings.url.kind()
            ),
        }));
    }
    on_scratch(settings, async |conn: &mut DbConn| {
        let statements = schema::apply(conn, sql, file)
            .await
            .map_err(DeclaredError::File)?;
        let declared = schema::read(conn.target()).await?;
        // SQLite takes any type name; a portable file is for both engines.
        let sqlite_only = for_engine.is_some_and(|(e, _)| e == DbKind::Sqlite);
        schema::check_declared(&declared, &statements, file, sqlite_only)
            .map_err(DeclaredError::File)?;
        Ok(declared)
    })
    .await
}

/// The schema of the configured database, read without changing it.
pub async fn schema_of_database(settings: &DbSettings) -> Result<Schema, DeclaredError> {
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
) -> Result<Option<Vec<String>>, DeclaredError> {
    let Some(sql) = schema::read_file(dir, label).map_err(DeclaredError::File)? else {
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
    work: impl AsyncFnOnce(&mut DbConn) -> Result<T, DeclaredError>,
) -> Result<T, DeclaredError> {
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
