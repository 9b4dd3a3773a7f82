//! Adopting a database this tool did not build (`db-baseline`): one made by hand or by
//! another migration tool, whose schema is that of migrations 1..N. Its schema is
//! compared with the one those migrations produce on a scratch database; only when they
//! agree (or the differences are accepted) are their history rows recorded, and nothing
//! else is changed. Other tools' history tables are found and named, never touched.

use crate::config::DbSettings;
use crate::db::{DbConn, DbError, DbPool, Executor, Target};
use crate::declared::{self, DeclaredError};
use crate::migrations::{self, MigrationError, MigrationSet};
use crate::schema;

/// Why a database cannot be adopted.
#[derive(Debug, thiserror::Error)]
pub enum AdoptError {
    /// The database failed.
    #[error(transparent)]
    Db(#[from] DbError),
    /// The migrations could not be read, applied on a scratch database, or recorded.
    #[error(transparent)]
    Migration(#[from] MigrationError),
    /// The schema of the migrations could not be read.
    #[error(transparent)]
    Declared(#[from] DeclaredError),
    /// The database already has a history of this tool.
    #[error(
        "the database already has a migration history (version {0}); db-baseline only adopts a database without one: use db-upgrade"
    )]
    HasHistory(i32),
}

impl From<sqlx::Error> for AdoptError {
    fn from(e: sqlx::Error) -> Self {
        Self::Db(e.into())
    }
}

/// Another migration tool's history table in a database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForeignHistory {
    /// The tool (`diesel`, `sqlx`, `Alembic`, `Flyway`).
    pub tool: &'static str,
    /// Its table.
    pub table: &'static str,
    /// The newest version it records, when it could be read.
    pub version: Option<String>,
}

/// The history tables of other tools, and how to read the version each is at.
const FOREIGN: [(&str, &str, &str); 4] = [
    (
        "diesel",
        "__diesel_schema_migrations",
        "SELECT max(version) FROM __diesel_schema_migrations",
    ),
    (
        "sqlx",
        "_sqlx_migrations",
        "SELECT CAST(max(version) AS TEXT) FROM _sqlx_migrations WHERE success",
    ),
    (
        "Alembic",
        "alembic_version",
        "SELECT max(version_num) FROM alembic_version",
    ),
    (
        "Flyway",
        "flyway_schema_history",
        "SELECT version FROM flyway_schema_history WHERE success AND version IS NOT NULL \
         ORDER BY installed_rank DESC LIMIT 1",
    ),
];

/// The other tools' history tables `conn`'s database holds (its current schema on
/// PostgreSQL).
pub async fn foreign_histories(conn: &mut DbConn) -> Result<Vec<ForeignHistory>, sqlx::Error> {
    let tables: Vec<String> = schema::read(conn.target())
        .await?
        .tables
        .into_iter()
        .map(|t| t.name)
        .collect();
    let mut found = Vec::new();
    for (tool, table, version_sql) in FOREIGN {
        if !tables.iter().any(|t| t.eq_ignore_ascii_case(table)) {
            continue;
        }
        // A table of that name with other columns is still named; its version is not.
        let version = match conn.target() {
            Target::Sqlite(c) => sqlx::query_scalar(version_sql).fetch_one(c).await,
            Target::Postgres(c) => sqlx::query_scalar(version_sql).fetch_one(c).await,
        };
        found.push(ForeignHistory {
            tool,
            table,
            version: version.ok().flatten(),
        });
    }
    Ok(found)
}

/// A database with tables but no history of this tool: made by hand or by another tool.
#[derive(Debug, Clone)]
pub struct Unrecorded {
    /// How many tables it has (other tools' history tables included).
    pub tables: usize,
    /// Other tools' history tables among them.
    pub foreign: Vec<ForeignHistory>,
}

impl std::fmt::Display for Unrecorded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the database has {} table(s) but no history of this tool",
            self.tables
        )?;
        for foreign in &self.foreign {
            write!(
                f,
                "; {}'s history is there ({}",
                foreign.tool, foreign.table
            )?;
            if let Some(v) = &foreign.version {
                write!(f, ", at version {v}")?;
            }
            f.write_str(")")?;
        }
        f.write_str(
            "; if its schema is that of migrations V1..VERSION, adopt it with `cargo xtask db-baseline VERSION`",
        )
    }
}

/// [`Unrecorded`] when `conn`'s database has tables and no history of this tool.
pub async fn unrecorded(
    conn: &mut DbConn,
    set: &MigrationSet,
) -> Result<Option<Unrecorded>, AdoptError> {
    if !migrations::status(conn, set).await?.applied.is_empty() {
        return Ok(None);
    }
    let tables = schema::read(conn.target()).await?.tables.len();
    if tables == 0 {
        return Ok(None);
    }
    Ok(Some(Unrecorded {
        tables,
        foreign: foreign_histories(conn).await?,
    }))
}

/// What adopting a database at a version would record, and what stands in the way.
#[derive(Debug, Clone)]
pub struct Plan {
    /// How the database's schema differs from the one migrations 1..=version produce, as
    /// diff lines (`-` only in the migrations' schema, `+` only in the database); empty
    /// when they agree.
    pub differences: Vec<String>,
    /// Other tools' history tables, left as they are (and out of the comparison).
    pub foreign: Vec<ForeignHistory>,
}

/// Compares the database behind `pool` with the schema migrations 1..=`version` produce
/// on a scratch database. Changes nothing.
pub async fn plan(
    settings: &DbSettings,
    pool: &DbPool,
    set: &MigrationSet,
    version: i32,
) -> Result<Plan, AdoptError> {
    set.ensure_valid()?;
    set.check_target(version)?;
    let mut conn = pool.acquire().await?;
    let status = migrations::status(&mut conn, set).await?;
    if let Some(newest) = status.applied.last() {
        return Err(AdoptError::HasHistory(newest.version));
    }
    let foreign = foreign_histories(&mut conn).await?;
    let mut live = schema::read(conn.target()).await?;
    drop(conn);
    live.tables
        .retain(|t| !foreign.iter().any(|f| t.name.eq_ignore_ascii_case(f.table)));
    let produced = declared::schema_of_migrations_to(settings, set, Some(version)).await?;
    let differences =
        schema::line_diff(&schema::render_bare(&produced), &schema::render_bare(&live));
    Ok(Plan {
        differences,
        foreign,
    })
}

/// Records migrations 1..=`version` as applied, running none of them: call after
/// [`plan`] found nothing in the way (or the differences were accepted).
pub async fn record(
    pool: &DbPool,
    set: &MigrationSet,
    version: i32,
) -> Result<Vec<String>, AdoptError> {
    let mut conn = pool.acquire().await?;
    Ok(migrations::baseline(&mut conn, set, version).await?)
}
