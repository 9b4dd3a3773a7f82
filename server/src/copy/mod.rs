//! `db-copy`: every row of one database into another, across engines, verified.
//!
//! The source is read inside one read-only snapshot (`BEGIN` on SQLite, `REPEATABLE
//! READ READ ONLY` on PostgreSQL) and never written. The target is written in **one
//! transaction**: bring it to the source's schema version with the migrations, copy each
//! table (parents before children; `COPY` on PostgreSQL, multi-row `INSERT`s on SQLite),
//! move PostgreSQL sequences past the copied ids, then read every table back and compare
//! row counts and checksums with the source. Only when all match does it commit: a value
//! that does not fit, a mismatch, an error or a kill leaves the target as it was.
//!
//! | module | job |
//! |---|---|
//! | `value` | values, column kinds, fitting a value to the target, the checksum encoding |
//! | `time_text` | dates and times in one canonical spelling |
//! | `schema` | the tables, keys, foreign keys and sequences of either engine |
//! | `rows` | reading a table in key order, writing rows in bulk |

mod rows;
mod schema;
mod time_text;
mod value;

use std::fmt;
use std::time::{Duration, Instant};

use crate::backup::Progress;
use crate::config::DbSettings;
use crate::db::{DbConn, DbError, DbPool, DbTx, Executor, describe_driver_error};
use crate::migrations::{self, HISTORY_TABLE, MigrationSet, SchemaStatus};
use crate::url::DbKind;
use rows::{Sink, scan};
use schema::{Table, ident};
use value::{Digest, Kind, Value, fit};

/// Problems listed before a copy with values that do not fit stops looking.
const MAX_PROBLEMS: usize = 10;

/// Which database an error came from.
#[derive(Debug, Clone, Copy)]
pub enum Side {
    /// The configured database, read.
    Source,
    /// The database named by `--to`, written.
    Target,
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Source => "source",
            Self::Target => "target",
        })
    }
}

/// A copy that did not happen. In every case the target is as it was before.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    /// A database failed.
    #[error("the {side} database failed: {message}")]
    Db {
        /// Which one.
        side: Side,
        /// The driver's description, password masked.
        message: String,
    },
    /// The target holds data or another schema.
    #[error(
        "the target {0}; pass --force to replace its contents (asks first, and takes a safety backup of the target)"
    )]
    Occupied(String),
    /// The two schemas cannot hold the same rows.
    #[error("{0}")]
    Incompatible(String),
    /// A migration failed on the target.
    #[error("migration {name} failed on the target: {reason}; nothing was copied")]
    Migration {
        /// `V<n>__<name>`.
        name: String,
        /// The target's message.
        reason: String,
    },
    /// Values that the target cannot hold.
    #[error(
        "{} does not fit the target{}; the copy was rolled back, the target is unchanged",
        .0[0],
        match .0.len() { 1 => String::new(), n => format!(" ({} more listed above)", n - 1) }
    )]
    BadData(Vec<String>),
    /// The target read back differs from the source.
    #[error(
        "verification failed: {} table(s) differ between source and target; the copy was rolled back, the target is unchanged",
        .0.tables.iter().filter(|t| !t.matches()).count()
    )]
    Mismatch(CopyReport),
}

impl CopyError {
    pub(crate) fn db(side: Side) -> impl Fn(sqlx::Error) -> Self {
        move |e| Self::Db {
            side,
            message: describe_driver_error(&e, None),
        }
    }
}

/// One table's verification.
#[derive(Debug, Clone)]
pub struct TableCheck {
    /// Table name.
    pub name: String,
    /// Rows read from the source.
    pub source_rows: u64,
    /// Rows read back from the target.
    pub target_rows: u64,
    /// Checksum of the source rows.
    pub source_sum: String,
    /// Checksum of the target rows.
    pub target_sum: String,
}

impl TableCheck {
    /// Same rows, same content.
    pub fn matches(&self) -> bool {
        self.source_rows == self.target_rows && self.source_sum == self.target_sum
    }
}

/// What a copy did.
#[derive(Debug, Clone)]
pub struct CopyReport {
    /// Every table copied, the migration history included, in copy order.
    pub tables: Vec<TableCheck>,
    /// The schema version both databases are at.
    pub version: i32,
    /// Copying and verifying.
    pub elapsed: Duration,
}

impl CopyReport {
    /// Rows copied.
    pub fn rows(&self) -> u64 {
        self.tables.iter().map(|t| t.source_rows).sum()
    }
}

/// What the target holds before a copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetState {
    /// No tables, no migration history.
    Empty,
    /// Migrated to a prefix of the source's history (this version), every table empty.
    Ready(i32),
    /// Rows, unknown tables or another history: copying needs `--force`. Says why.
    Occupied(String),
}

/// What the target holds, compared with the source's history (read outside the copy's
/// transaction, to decide whether to ask; the copy checks again inside it).
pub async fn inspect(
    source: &DbPool,
    target: &DbPool,
    set: &MigrationSet,
) -> Result<TargetState, CopyError> {
    let mut conn = source.acquire().await.map_err(db_error(Side::Source))?;
    let source_status = migrations::status(&mut conn, set)
        .await
        .map_err(|e| source_history_error(&e))?;
    drop(conn);
    let mut conn = target.acquire().await.map_err(db_error(Side::Target))?;
    target_state(&mut conn, &source_status, set).await
}

fn db_error(side: Side) -> impl Fn(DbError) -> CopyError {
    move |e| CopyError::Db {
        side,
        message: e.to_string(),
    }
}

fn source_history_error(e: &dyn fmt::Display) -> CopyError {
    CopyError::Db {
        side: Side::Source,
        message: format!("its migration history cannot be used: {e}"),
    }
}

async fn target_state(
    on: &mut impl Executor,
    source: &SchemaStatus,
    set: &MigrationSet,
) -> Result<TargetState, CopyError> {
    let err = CopyError::db(Side::Target);
    let history = migrations::status(on, set)
        .await
        .map_err(|e| CopyError::Db {
            side: Side::Target,
            message: e.to_string(),
        })?;
    let tables = schema::tables(on.target()).await.map_err(&err)?;
    for table in tables.iter().filter(|t| t.name != HISTORY_TABLE) {
        let sql = format!("SELECT EXISTS (SELECT 1 FROM {})", ident(&table.name));
        let has_rows: bool = match on.target() {
            crate::db::Target::Sqlite(c) => sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                .fetch_one(c)
                .await
                .map_err(&err)?,
            crate::db::Target::Postgres(c) => sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                .fetch_one(c)
                .await
                .map_err(&err)?,
        };
        if has_rows {
            return Ok(TargetState::Occupied(format!(
                "is not empty: table {} has rows",
                table.name
            )));
        }
    }
    let others: Vec<&str> = tables
        .iter()
        .filter(|t| t.name != HISTORY_TABLE)
        .map(|t| t.name.as_str())
        .collect();
    if history.applied.is_empty() {
        return Ok(if others.is_empty() {
            TargetState::Empty
        } else {
            TargetState::Occupied(format!(
                "has tables no migration made: {}",
                others.join(", ")
            ))
        });
    }
    let prefix = history.applied.len() <= source.applied.len()
        && history
            .applied
            .iter()
            .zip(&source.applied)
            .all(|(t, s)| t.version == s.version && t.checksum == s.checksum);
    if !prefix {
        return Ok(TargetState::Occupied(format!(
            "is at another schema (version {}, a history the source does not share)",
            history.current_version
        )));
    }
    Ok(TargetState::Ready(history.current_version))
}

/// Copies every table of `source` into `target` and verifies it; see the module docs.
/// `replace`: the user agreed to replace whatever the target holds.
pub async fn copy(
    source: &DbPool,
    target: &DbPool,
    set: &MigrationSet,
    replace: bool,
    progress: &dyn Progress,
) -> Result<CopyReport, CopyError> {
    let started = Instant::now();
    let mut source_conn = source.acquire().await.map_err(db_error(Side::Source))?;
    let mut target_conn = target.acquire().await.map_err(db_error(Side::Target))?;
    prepare(&mut source_conn, true)
        .await
        .map_err(CopyError::db(Side::Source))?;
    prepare(&mut target_conn, false)
        .await
        .map_err(CopyError::db(Side::Target))?;
    let result = async {
        let mut snapshot = begin_snapshot(&mut source_conn)
            .await
            .map_err(CopyError::db(Side::Source))?;
        let mut tx = migrations::lock(&mut target_conn)
            .await
            .map_err(CopyError::db(Side::Target))?;
        let report = copy_in(&mut snapshot, &mut tx, set, replace, progress).await;
        snapshot.rollback().await.ok();
        match report {
            Ok(mut report) => {
                progress.step("committing");
                tx.commit().await.map_err(CopyError::db(Side::Target))?;
                report.elapsed = started.elapsed();
                Ok(report)
            }
            Err(e) => {
                tx.rollback().await.ok();
                Err(e)
            }
        }
    }
    .await;
    restore(&mut source_conn, true).await;
    restore(&mut target_conn, false).await;
    result
}

/// Session settings for a long copy: no statement timeout (one `COPY` is one statement);
/// on SQLite, the source cannot be written through this connection and foreign keys are
/// checked once at the end instead of per row.
async fn prepare(conn: &mut DbConn, source: bool) -> Result<(), sqlx::Error> {
    match (conn.kind(), source) {
        (DbKind::Postgres, _) => {
            conn.execute_script(
                "SET statement_timeout = 0; SET idle_in_transaction_session_timeout = 0",
            )
            .await
        }
        (DbKind::Sqlite, true) => conn.execute_script("PRAGMA query_only = ON").await,
        (DbKind::Sqlite, false) => conn.execute_script("PRAGMA foreign_keys = OFF").await,
    }
}

async fn restore(conn: &mut DbConn, source: bool) {
    let _ = match (conn.kind(), source) {
        (DbKind::Postgres, _) => conn.execute_script("RESET ALL").await,
        (DbKind::Sqlite, true) => conn.execute_script("PRAGMA query_only = OFF").await,
        (DbKind::Sqlite, false) => conn.execute_script("PRAGMA foreign_keys = ON").await,
    };
}

/// A consistent read-only view of the whole database for the length of the transaction.
async fn begin_snapshot(conn: &mut DbConn) -> Result<DbTx<'_>, sqlx::Error> {
    use sqlx::Connection as _;
    Ok(match conn {
        DbConn::Sqlite(c) => {
            let mut tx = c.begin().await?;
            // A deferred transaction takes its snapshot at the first read.
            sqlx::query("SELECT count(*) FROM sqlite_schema")
                .execute(&mut *tx)
                .await?;
            DbTx::Sqlite(tx)
        }
        DbConn::Postgres(c) => DbTx::Postgres(
            c.begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
                .await?,
        ),
    })
}

/// The copy inside the source snapshot and the target transaction.
async fn copy_in(
    snapshot: &mut DbTx<'_>,
    tx: &mut DbTx<'_>,
    set: &MigrationSet,
    replace: bool,
    progress: &dyn Progress,
) -> Result<CopyReport, CopyError> {
    let source_err = CopyError::db(Side::Source);
    let target_err = CopyError::db(Side::Target);
    let source_status = migrations::status(snapshot, set)
        .await
        .map_err(|e| source_history_error(&e))?;
    source_status
        .ensure_compatible()
        .map_err(|e| source_history_error(&e))?;
    let source_tables = schema::tables(snapshot.target())
        .await
        .map_err(&source_err)?;

    // The target at the source's schema version, its history about to be copied.
    let current = match target_state(tx, &source_status, set).await? {
        TargetState::Empty => 0,
        TargetState::Ready(version) => version,
        TargetState::Occupied(why) if !replace => return Err(CopyError::Occupied(why)),
        TargetState::Occupied(_) => {
            progress.step("emptying the target");
            let drop_all = crate::maintenance::drop_all_script(tx)
                .await
                .map_err(&target_err)?;
            tx.execute_script(&drop_all).await.map_err(&target_err)?;
            0
        }
    };
    tx.execute_script(&migrations::create_history_sql())
        .await
        .map_err(&target_err)?;
    for applied in source_status.applied.iter().filter(|a| a.version > current) {
        let Some(migration) = set.get(applied.version) else {
            continue;
        };
        progress.step(&format!("applying {} to the target", migration.id()));
        tx.execute_script(&migration.up)
            .await
            .map_err(|e| CopyError::Migration {
                name: migration.id(),
                reason: describe_driver_error(&e, Some(&migration.up)),
            })?;
    }
    tx.execute_script(&format!("DELETE FROM {HISTORY_TABLE}"))
        .await
        .map_err(&target_err)?;
    let target_tables = schema::tables(tx.target()).await.map_err(&target_err)?;
    let plans = plan(&source_tables, target_tables)?;

    let mut total = 0;
    for plan in &plans {
        total += count(snapshot, &plan.source.name)
            .await
            .map_err(&source_err)?;
    }
    let target_kind = match tx {
        DbTx::Sqlite(_) => DbKind::Sqlite,
        DbTx::Postgres(_) => DbKind::Postgres,
    };
    let mut done = 0u64;
    let mut problems = Vec::new();
    let mut source_sums = Vec::new();
    for plan in &plans {
        progress.step(&format!("copying {}", plan.target.name));
        let mut sink = match problems.is_empty() {
            true => Some(
                Sink::open(tx.target(), &plan.target.name, &plan.columns)
                    .await
                    .map_err(&target_err)?,
            ),
            false => None,
        };
        let mut digest = Digest::new(!plan.key.is_empty());
        let mut ordinal = 0u64;
        let scanned = scan(
            snapshot.target(),
            Side::Source,
            plan.source,
            &plan.columns,
            &plan.key,
            async |row: Vec<Value>| -> Result<(), CopyError> {
                ordinal += 1;
                let mut fitted = Vec::with_capacity(row.len());
                let mut bad = Vec::new();
                for ((value, kind), column) in row.iter().zip(&plan.kinds).zip(&plan.columns) {
                    match fit(kind, value.clone(), target_kind) {
                        Ok(v) => fitted.push(v),
                        Err(why) => bad.push((column, why)),
                    }
                }
                for (column, why) in bad {
                    let key = row_key(plan, &row, ordinal);
                    problems.push(format!(
                        "table {}, row {key}, column {column}: {why}",
                        plan.target.name
                    ));
                }
                if !problems.is_empty() {
                    // Nothing more is written; the rest is only checked.
                    if let Some(sink) = sink.take() {
                        sink.abort().await;
                    }
                    if problems.len() >= MAX_PROBLEMS {
                        return Err(CopyError::BadData(Vec::new()));
                    }
                    return Ok(());
                }
                digest.add(&plan.kinds, &fitted);
                if let Some(sink) = &mut sink {
                    sink.push(fitted).await.map_err(|e| write_error(plan, e))?;
                }
                done += 1;
                if done.is_multiple_of(4096) {
                    progress.advance(done, total);
                }
                Ok(())
            },
        )
        .await;
        match scanned {
            Err(CopyError::BadData(_)) => break,
            Err(e) => return Err(e),
            Ok(()) => {}
        }
        if let Some(sink) = sink {
            sink.finish().await.map_err(|e| write_error(plan, e))?;
        }
        source_sums.push(digest.finish());
    }
    progress.advance(done, total);
    if problems.is_empty() {
        problems = after_copy(tx).await?;
    }
    if !problems.is_empty() {
        return Err(CopyError::BadData(problems));
    }

    progress.step("verifying");
    let mut checks = Vec::new();
    for (plan, (source_rows, source_sum)) in plans.iter().zip(source_sums) {
        let mut digest = Digest::new(!plan.key.is_empty());
        scan(
            tx.target(),
            Side::Target,
            &plan.target,
            &plan.columns,
            &plan.key,
            async |row: Vec<Value>| -> Result<(), CopyError> {
                // Values the target returns: fitted again to spell them canonically.
                let fitted: Vec<Value> = row
                    .into_iter()
                    .zip(&plan.kinds)
                    .map(|(v, kind)| fit(kind, v.clone(), target_kind).unwrap_or(v))
                    .collect();
                digest.add(&plan.kinds, &fitted);
                Ok(())
            },
        )
        .await?;
        let (target_rows, target_sum) = digest.finish();
        checks.push(TableCheck {
            name: plan.target.name.clone(),
            source_rows,
            target_rows,
            source_sum,
            target_sum,
        });
    }
    let report = CopyReport {
        tables: checks,
        version: source_status.current_version,
        elapsed: Duration::ZERO,
    };
    if report.tables.iter().any(|t| !t.matches()) {
        return Err(CopyError::Mismatch(report));
    }
    Ok(report)
}

fn write_error(plan: &Plan<'_>, e: sqlx::Error) -> CopyError {
    CopyError::Db {
        side: Side::Target,
        message: format!(
            "writing table {}: {}",
            plan.target.name,
            describe_driver_error(&e, None)
        ),
    }
}

/// Checks after the rows are in: foreign keys (SQLite, whose checks were off while
/// copying) and PostgreSQL sequences moved past the copied ids.
async fn after_copy(tx: &mut DbTx<'_>) -> Result<Vec<String>, CopyError> {
    let err = CopyError::db(Side::Target);
    match tx {
        DbTx::Sqlite(c) => {
            let violations: Vec<(String, Option<i64>, String)> = sqlx::query_as(
                "SELECT \"table\", rowid, parent FROM pragma_foreign_key_check LIMIT 10",
            )
            .fetch_all(&mut **c)
            .await
            .map_err(&err)?;
            Ok(violations
                .into_iter()
                .map(|(table, rowid, parent)| {
                    format!(
                        "table {table}, rowid {}: a foreign key points at a row missing from {parent}",
                        rowid.map_or("?".into(), |r| r.to_string())
                    )
                })
                .collect())
        }
        DbTx::Postgres(c) => {
            schema::advance_sequences(c).await.map_err(&err)?;
            Ok(Vec::new())
        }
    }
}

/// How one table is copied: the columns (target order), each one's kind for fitting
/// and hashing, and the key the rows are read in.
struct Plan<'s> {
    source: &'s Table,
    target: Table,
    columns: Vec<String>,
    kinds: Vec<Kind>,
    key: Vec<String>,
}

/// Pairs source and target tables, in the order the target needs them; any table or
/// column on one side only, or of kinds that cannot hold the same values, is an error.
fn plan(source: &[Table], target: Vec<Table>) -> Result<Vec<Plan<'_>>, CopyError> {
    let incompatible = |what: String| {
        CopyError::Incompatible(format!(
            "the schemas differ at the same migration version: {what}; nothing was copied"
        ))
    };
    if let Some(t) = source
        .iter()
        .find(|s| !target.iter().any(|t| t.name == s.name))
    {
        return Err(incompatible(format!(
            "table {} is in the source but no migration creates it",
            t.name
        )));
    }
    if let Some(t) = target
        .iter()
        .find(|t| !source.iter().any(|s| s.name == t.name))
    {
        return Err(incompatible(format!(
            "table {} is made by the migrations but missing from the source",
            t.name
        )));
    }
    let mut plans = Vec::new();
    for table in schema::in_dependency_order(target) {
        let Some(source) = source.iter().find(|s| s.name == table.name) else {
            continue;
        };
        let mut kinds = Vec::new();
        for column in &table.columns {
            let Some(from) = source.column(&column.name) else {
                return Err(incompatible(format!(
                    "column {}.{} is missing from the source",
                    table.name, column.name
                )));
            };
            if !column.kind.accepts(&from.kind) {
                return Err(incompatible(format!(
                    "column {}.{} holds {} values in the source and {} values in the target",
                    table.name,
                    column.name,
                    from.kind.family(),
                    column.kind.family()
                )));
            }
            kinds.push(match column.kind {
                Kind::Any => from.kind.clone(),
                _ => column.kind.clone(),
            });
        }
        if let Some(c) = source
            .columns
            .iter()
            .find(|c| table.column(&c.name).is_none())
        {
            return Err(incompatible(format!(
                "column {}.{} is in the source but not in the target",
                table.name, c.name
            )));
        }
        let key = if table.key.iter().all(|k| source.column(k).is_some()) {
            table.key.clone()
        } else {
            Vec::new()
        };
        plans.push(Plan {
            source,
            columns: table.columns.iter().map(|c| c.name.clone()).collect(),
            kinds,
            key,
            target: table,
        });
    }
    Ok(plans)
}

/// The row's primary key for a message (`id=7`), or its position when there is none.
fn row_key(plan: &Plan<'_>, row: &[Value], ordinal: u64) -> String {
    if plan.key.is_empty() {
        return format!("#{ordinal}");
    }
    plan.key
        .iter()
        .filter_map(|k| {
            let i = plan.columns.iter().position(|c| c == k)?;
            Some(format!(
                "{k}={}",
                match &row[i] {
                    Value::Int(n) => n.to_string(),
                    Value::Text(s) => value::quote(s),
                    other => format!("{other:?}"),
                }
            ))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

async fn count(on: &mut DbTx<'_>, table: &str) -> Result<u64, sqlx::Error> {
    let sql = sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {}", ident(table)));
    let n: i64 = match on.target() {
        crate::db::Target::Sqlite(c) => sqlx::query_scalar(sql).fetch_one(c).await?,
        crate::db::Target::Postgres(c) => sqlx::query_scalar(sql).fetch_one(c).await?,
    };
    Ok(n.max(0) as u64)
}

/// Settings for the target: the configured ones (timeouts, pool size) with its URL.
pub fn target_settings(settings: &DbSettings, url: crate::url::DatabaseUrl) -> DbSettings {
    let mut target = settings.clone();
    target.url = url;
    target
}
