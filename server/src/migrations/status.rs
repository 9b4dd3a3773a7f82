//! The migration history in the database, compared with a set of migration files.

use std::fmt;

use sqlx::Row;

use super::{HISTORY_TABLE, MigrationError, MigrationFile, MigrationSet};
use crate::db::{Executor, Target};
use crate::url::DbKind;

/// One row of the history table, compared with the code.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AppliedMigration {
    /// Version.
    pub version: i32,
    /// Name recorded when applied.
    pub name: String,
    /// When it was applied (RFC 3339).
    pub applied_on: String,
    /// Checksum recorded when applied.
    pub checksum: String,
    /// How it compares with the code.
    pub state: AppliedState,
}

/// How an applied migration compares with the migration files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AppliedState {
    /// Same name and checksum.
    Ok,
    /// Same version, different name or checksum: the file was edited.
    Divergent,
    /// Not in the code at all: the database is ahead.
    Unknown,
    /// A `-- db: no-transaction` migration that failed part-way: a row recorded so
    /// that nothing runs after it until it is resolved (`db-resolve`).
    Failed,
}

/// The start of `applied_on` in a history row that records a failure, not an application.
pub const FAILED_PREFIX: &str = "failed part-way: ";

/// Where the database stands relative to the code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SchemaState {
    /// Every migration applied, nothing unknown.
    UpToDate,
    /// Some migrations not applied yet.
    Pending,
    /// The database has migrations this code does not know.
    Ahead,
    /// An applied migration differs from its file.
    Diverged,
    /// A migration run outside a transaction failed part-way and is not resolved.
    Failed,
}

impl fmt::Display for SchemaState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::UpToDate => "up to date",
            Self::Pending => "pending",
            Self::Ahead => "ahead of this code",
            Self::Diverged => "diverged",
            Self::Failed => "failed part-way",
        })
    }
}

/// The database's migration state.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SchemaStatus {
    /// History rows, by version.
    pub applied: Vec<AppliedMigration>,
    /// Versions in the code and not applied.
    pub pending: Vec<i32>,
    /// Summary.
    pub state: SchemaState,
    /// Highest applied version (0 when none).
    pub current_version: i32,
    /// Highest version in the code.
    pub latest_version: i32,
}

impl SchemaStatus {
    pub(super) fn compare(history: Vec<HistoryRow>, set: &MigrationSet) -> Self {
        // By version, once: a history of hundreds is compared on every step of db-check.
        let files: std::collections::HashMap<i32, &MigrationFile> = set
            .migrations()
            .iter()
            .rev()
            .map(|m| (m.version, m))
            .collect();
        let applied: Vec<AppliedMigration> = history
            .into_iter()
            .map(|row| {
                let state = match files.get(&row.version) {
                    _ if row.applied_on.starts_with(FAILED_PREFIX) => AppliedState::Failed,
                    None => AppliedState::Unknown,
                    Some(m) if m.name == row.name && m.checksum.to_string() == row.checksum => {
                        AppliedState::Ok
                    }
                    Some(_) => AppliedState::Divergent,
                };
                AppliedMigration {
                    version: row.version,
                    name: row.name,
                    applied_on: row.applied_on,
                    checksum: row.checksum,
                    state,
                }
            })
            .collect();
        let versions: std::collections::HashSet<i32> = applied.iter().map(|a| a.version).collect();
        let pending: Vec<i32> = set
            .migrations()
            .iter()
            .map(|m| m.version)
            .filter(|v| !versions.contains(v))
            .collect();
        let state = if applied.iter().any(|a| a.state == AppliedState::Failed) {
            SchemaState::Failed
        } else if applied.iter().any(|a| a.state == AppliedState::Divergent) {
            SchemaState::Diverged
        } else if applied.iter().any(|a| a.state == AppliedState::Unknown) {
            SchemaState::Ahead
        } else if pending.is_empty() {
            SchemaState::UpToDate
        } else {
            SchemaState::Pending
        };
        Self {
            current_version: applied
                .iter()
                .rfind(|a| a.state != AppliedState::Failed)
                .map_or(0, |a| a.version),
            latest_version: set.latest(),
            applied,
            pending,
            state,
        }
    }

    /// Pending migrations up to version `to` (all when `None`), in the order they apply.
    pub fn to_apply<'s>(&self, set: &'s MigrationSet, to: Option<i32>) -> Vec<&'s MigrationFile> {
        let pending: std::collections::HashSet<i32> = self.pending.iter().copied().collect();
        set.migrations()
            .iter()
            .filter(|m| pending.contains(&m.version))
            .filter(|m| to.is_none_or(|to| m.version <= to))
            .collect()
    }

    /// Applied migrations above version `to`, newest first: the order they are reverted in.
    /// Only known migrations are listed; check [`SchemaStatus::ensure_compatible`] first.
    pub fn to_revert<'s>(&self, set: &'s MigrationSet, to: i32) -> Vec<&'s MigrationFile> {
        self.applied
            .iter()
            .rev()
            .filter(|a| a.version > to)
            .filter_map(|a| set.get(a.version))
            .collect()
    }

    /// The version the database is at after rolling back the newest `steps` migrations.
    pub fn version_before(&self, steps: usize) -> Result<i32, MigrationError> {
        let applied = self.applied.len();
        if steps > applied {
            return Err(MigrationError::Target(format!(
                "cannot roll back {steps} migration(s): only {applied} applied"
            )));
        }
        Ok(applied
            .checked_sub(steps + 1)
            .map_or(0, |i| self.applied[i].version))
    }

    /// Whether the database is ahead only by migrations newer than every one of this
    /// code, all of this code's applied unchanged: a newer release of a rolling deploy
    /// migrated it, and this one can still serve (the expand/contract discipline keeps
    /// the old code working on the expanded schema).
    pub fn ahead_by_newer_only(&self, set: &MigrationSet) -> bool {
        self.state == SchemaState::Ahead
            && self.pending.is_empty()
            && self.applied.iter().all(|a| match a.state {
                AppliedState::Ok => true,
                AppliedState::Unknown => a.version > set.latest(),
                _ => false,
            })
    }

    /// Fails with a clear error when the database is ahead or diverged.
    pub fn ensure_compatible(&self) -> Result<(), MigrationError> {
        let id = |a: &AppliedMigration| format!("V{}__{}", a.version, a.name);
        if let Some(a) = self
            .applied
            .iter()
            .find(|a| a.state == AppliedState::Failed)
        {
            return Err(MigrationError::FailedPartWay {
                name: id(a),
                version: a.version,
                reason: a.applied_on[FAILED_PREFIX.len()..].to_string(),
            });
        }
        if let Some(a) = self
            .applied
            .iter()
            .find(|a| a.state == AppliedState::Divergent)
        {
            return Err(MigrationError::Diverged(id(a)));
        }
        if let Some(a) = self
            .applied
            .iter()
            .find(|a| a.state == AppliedState::Unknown)
        {
            return Err(MigrationError::Ahead(id(a)));
        }
        if let Some(&missing) = self.pending.iter().find(|&&v| v < self.current_version) {
            return Err(MigrationError::Hole {
                missing: format!("V{missing}"),
                later: self.current_version,
            });
        }
        Ok(())
    }
}

#[derive(Debug, Clone)]
pub(super) struct HistoryRow {
    pub(super) version: i32,
    pub(super) name: String,
    pub(super) applied_on: String,
    pub(super) checksum: String,
}

/// Reads the migration state without changing anything.
pub async fn status(
    on: &mut impl Executor,
    set: &MigrationSet,
) -> Result<SchemaStatus, MigrationError> {
    let set = set.for_engine(match on.target() {
        Target::Sqlite(_) => DbKind::Sqlite,
        Target::Postgres(_) => DbKind::Postgres,
    });
    Ok(SchemaStatus::compare(history(on).await?, &set))
}

/// The history rows, on a connection or inside a transaction of either engine.
pub(super) async fn history(on: &mut impl Executor) -> Result<Vec<HistoryRow>, sqlx::Error> {
    match on.target() {
        Target::Sqlite(c) => read_history_sqlite(c).await,
        Target::Postgres(c) => read_history_pg(c).await,
    }
}

/// Reads the migration state of a standalone SQLite connection (e.g. a backup file).
pub async fn status_of_sqlite(
    conn: &mut sqlx::SqliteConnection,
    set: &MigrationSet,
) -> Result<SchemaStatus, MigrationError> {
    let set = set.for_engine(DbKind::Sqlite);
    Ok(SchemaStatus::compare(
        read_history_sqlite(conn).await?,
        &set,
    ))
}

/// Reads the migration state of a standalone PostgreSQL connection (e.g. inside a snapshot).
pub async fn status_of_pg(
    conn: &mut sqlx::PgConnection,
    set: &MigrationSet,
) -> Result<SchemaStatus, MigrationError> {
    let set = set.for_engine(DbKind::Postgres);
    Ok(SchemaStatus::compare(read_history_pg(conn).await?, &set))
}

pub(super) async fn read_history_sqlite(
    c: &mut sqlx::SqliteConnection,
) -> Result<Vec<HistoryRow>, sqlx::Error> {
    read_history::<sqlx::Sqlite>(c, SQLITE_HAS_HISTORY).await
}

pub(super) async fn read_history_pg(
    c: &mut sqlx::PgConnection,
) -> Result<Vec<HistoryRow>, sqlx::Error> {
    read_history::<sqlx::Postgres>(c, PG_HAS_HISTORY).await
}

/// Whether SQLite's history table exists.
const SQLITE_HAS_HISTORY: &str = "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'refinery_schema_history')";

/// Whether PostgreSQL's history table exists: a scan of the catalog with this
/// statement's snapshot, not `to_regclass`, whose cache may not yet know of a drop
/// committed while this transaction waited for the migration lock.
const PG_HAS_HISTORY: &str = "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_class c \
     JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
     WHERE c.relname = 'refinery_schema_history' AND c.relkind IN ('r', 'p') \
     AND n.nspname = ANY (pg_catalog.current_schemas(false)))";

/// What a step checks under the migration lock before it runs, in one small query
/// rather than the whole history (a long history is stepped through one migration at a
/// time by `db-check`): the newest version in the history (0 when it is empty or
/// missing), and whether `version` is in it.
pub(super) async fn newest(
    on: &mut impl Executor,
    version: i32,
) -> Result<(i32, bool), sqlx::Error> {
    match on.target() {
        Target::Sqlite(c) => newest_in::<sqlx::Sqlite>(c, SQLITE_HAS_HISTORY, version).await,
        Target::Postgres(c) => newest_in::<sqlx::Postgres>(c, PG_HAS_HISTORY, version).await,
    }
}

async fn newest_in<DB>(
    c: &mut DB::Connection,
    exists_sql: &'static str,
    version: i32,
) -> Result<(i32, bool), sqlx::Error>
where
    DB: sqlx::Database,
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    for<'r> bool: sqlx::Decode<'r, DB> + sqlx::Type<DB>,
    for<'r> i32: sqlx::Decode<'r, DB> + sqlx::Type<DB> + sqlx::Encode<'r, DB>,
    for<'r> i64: sqlx::Decode<'r, DB> + sqlx::Type<DB>,
    usize: sqlx::ColumnIndex<DB::Row>,
    for<'q> DB::Arguments: sqlx::IntoArguments<DB>,
{
    let exists: bool = sqlx::query_scalar(exists_sql).fetch_one(&mut *c).await?;
    if !exists {
        return Ok((0, false));
    }
    let row = sqlx::query(
        "SELECT coalesce(max(version), 0), \
                coalesce(sum(CASE WHEN version = $1 THEN 1 ELSE 0 END), 0) \
           FROM refinery_schema_history",
    )
    .bind(version)
    .fetch_one(&mut *c)
    .await
    .map_err(unexpected_shape)?;
    let newest: i32 = row.try_get(0).map_err(unexpected_shape)?;
    let has: i64 = row.try_get(1).map_err(unexpected_shape)?;
    Ok((newest, has > 0))
}

/// Reads the history table, if `exists_sql` says there is one.
async fn read_history<DB>(
    c: &mut DB::Connection,
    exists_sql: &'static str,
) -> Result<Vec<HistoryRow>, sqlx::Error>
where
    DB: sqlx::Database,
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    for<'r> bool: sqlx::Decode<'r, DB> + sqlx::Type<DB>,
    for<'r> i32: sqlx::Decode<'r, DB> + sqlx::Type<DB>,
    for<'r> String: sqlx::Decode<'r, DB> + sqlx::Type<DB>,
    usize: sqlx::ColumnIndex<DB::Row>,
    DB::Arguments: sqlx::IntoArguments<DB>,
{
    let exists: bool = sqlx::query_scalar(exists_sql).fetch_one(&mut *c).await?;
    if !exists {
        return Ok(Vec::new());
    }
    let rows = sqlx::query(
        "SELECT version, name, applied_on, checksum FROM refinery_schema_history ORDER BY version",
    )
    .fetch_all(&mut *c)
    .await
    .map_err(unexpected_shape)?;
    rows.iter()
        .map(|row| {
            Ok(HistoryRow {
                version: row.try_get(0)?,
                name: row.try_get(1)?,
                applied_on: row.try_get(2)?,
                checksum: row.try_get(3)?,
            })
        })
        .collect::<Result<_, sqlx::Error>>()
        .map_err(unexpected_shape)
}

/// A history table whose columns or types are not refinery's (changed by hand) is named
/// as such; other errors (a lock, a lost connection) pass through.
fn unexpected_shape(error: sqlx::Error) -> sqlx::Error {
    let shape = match &error {
        sqlx::Error::ColumnDecode { .. } | sqlx::Error::Decode(_) => true,
        // SQLite "no such column" (SQLITE_ERROR); PostgreSQL undefined_column.
        sqlx::Error::Database(db) => matches!(db.code().as_deref(), Some("1" | "42703")),
        _ => false,
    };
    if !shape {
        return error;
    }
    let reason = crate::db::describe_driver_error(&error, None);
    sqlx::Error::Decode(
        format!(
            "the history table {HISTORY_TABLE} does not have refinery's columns ({reason}); was it changed by hand? restore it from a backup"
        )
        .into(),
    )
}
