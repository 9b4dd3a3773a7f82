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
//! | `value` | values, column kinds, fitting a value to the target |
//! | `digest` | the checksum: each value encoded with its type, rows in key order |
//! | `time_text` | dates and times in one canonical spelling |
//! | `schema` | the tables, keys, foreign keys and sequences of either engine |
//! | `rows` | reading a table in key order, writing rows in bulk |
//! | `target` | what the target holds: empty, ready, or occupied |
//! | `plan` | pairing source and target tables and columns, in the order the target needs |
//! | `transfer` | inside the two transactions: migrate, copy, verify |
//! | `stage` | opening the target: read-only until the copy may begin; a new one built aside and put in place when verified |

mod digest;
mod kind;
mod plan;
mod rows;
mod schema;
mod stage;
mod target;
mod time_text;
mod transfer;
mod value;

use std::fmt;
use std::time::{Duration, Instant};

use crate::config::DbSettings;
use crate::db::{DbConn, DbError, DbPool, DbTx, describe_driver_error};
use crate::migrations::{self, MigrationSet};
use crate::progress::Progress;
use crate::url::DbKind;

pub use stage::CopyTarget;
pub use target::{TargetState, ensure_distinct, inspect};
pub use transfer::needs_steps;

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
    /// The two databases are one.
    #[error("{0}")]
    SameDatabase(String),
    /// Tables or columns that are on one side only or cannot hold the other's values,
    /// every one (the first in the message, all of them for a caller to list).
    #[error(
        "the source's and the target's tables do not line up: {}{}; nothing was copied",
        .0[0],
        match .0.len() { 1 => String::new(), n => format!(" ({} more listed above)", n - 1) }
    )]
    Misaligned(Vec<String>),
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

    pub(crate) fn from_db(side: Side) -> impl Fn(DbError) -> CopyError {
        move |e| CopyError::Db {
            side,
            message: e.to_string(),
        }
    }

    pub(crate) fn source_history(e: &dyn fmt::Display) -> CopyError {
        CopyError::Db {
            side: Side::Source,
            message: format!("its migration history cannot be used: {e}"),
        }
    }
}

/// The migrations each side of a copy runs, each as its own engine runs them.
#[derive(Debug, Clone)]
pub struct Histories {
    /// The source's migrations.
    pub source: MigrationSet,
    /// The target's migrations.
    pub target: MigrationSet,
    /// Whether the target has a set of its own (`--target-migrations`): it is brought to
    /// the head of that set and keeps its own history; otherwise it is brought to the
    /// source's version and the source's history is copied (matched by version and name;
    /// a migration with engine variants keeps the target engine's checksum).
    pub separate: bool,
}

impl Histories {
    /// One set for both sides: each engine runs its own variants.
    pub fn shared(set: &MigrationSet, source: DbKind, target: DbKind) -> Self {
        Self {
            source: set.for_engine(source),
            target: set.for_engine(target),
            separate: false,
        }
    }

    /// The target's own set (`--target-migrations`).
    pub fn separate(
        source: &MigrationSet,
        source_kind: DbKind,
        target: &MigrationSet,
        target_kind: DbKind,
    ) -> Self {
        Self {
            source: source.for_engine(source_kind),
            target: target.for_engine(target_kind),
            separate: true,
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

/// Copies every table of `source` into `target` and verifies it; see the module docs.
/// `replace`: the user agreed to replace whatever the target holds. `new`: the target was
/// built for this copy and is discarded if it fails, so a PostgreSQL target is migrated
/// first, one transaction per migration (see [`transfer::premigrate`]).
pub async fn copy(
    source: &DbPool,
    target: &DbPool,
    histories: &Histories,
    replace: bool,
    new: bool,
    progress: &dyn Progress,
) -> Result<CopyReport, CopyError> {
    let started = Instant::now();
    let mut source_conn = source
        .acquire()
        .await
        .map_err(CopyError::from_db(Side::Source))?;
    let mut target_conn = target
        .acquire()
        .await
        .map_err(CopyError::from_db(Side::Target))?;
    let source_before = crate::db::session_timeouts(&mut source_conn)
        .await
        .map_err(CopyError::db(Side::Source))?;
    let target_before = crate::db::session_timeouts(&mut target_conn)
        .await
        .map_err(CopyError::db(Side::Target))?;
    prepare(&mut source_conn, true)
        .await
        .map_err(CopyError::db(Side::Source))?;
    prepare(&mut target_conn, false)
        .await
        .map_err(CopyError::db(Side::Target))?;
    // A new target, or an existing one that holds nothing at all whose history cannot run
    // in one transaction, is migrated step by step first; a failure empties the latter
    // again (it held nothing). Anything else is migrated inside the copy's transaction.
    let step_by_step = new
        || (transfer::needs_steps(&histories.target)
            && transfer::holds_nothing(&mut target_conn)
                .await
                .map_err(CopyError::db(Side::Target))?);
    let stepped = if step_by_step {
        transfer::premigrate(&mut source_conn, &mut target_conn, histories).await
    } else {
        Ok(false)
    };
    let result = async {
        let stepped = stepped?;
        if stepped {
            // The migrations put the session back as it was opened, the configured
            // statement timeout included: the copy has none.
            prepare(&mut target_conn, false)
                .await
                .map_err(CopyError::db(Side::Target))?;
        }
        let mut snapshot = begin_snapshot(&mut source_conn)
            .await
            .map_err(CopyError::db(Side::Source))?;
        let mut tx = migrations::lock(&mut target_conn)
            .await
            .map_err(CopyError::db(Side::Target))?;
        let report = transfer::copy_in(&mut snapshot, &mut tx, histories, replace, progress).await;
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
                if stepped && !new {
                    transfer::empty_again(&mut target_conn).await.ok();
                }
                Err(e)
            }
        }
    }
    .await;
    restore(&mut source_conn, true, &source_before).await;
    restore(&mut target_conn, false, &target_before).await;
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

/// Puts back what [`prepare`] changed: on PostgreSQL the timeouts `before` holds.
async fn restore(conn: &mut DbConn, source: bool, before: &str) {
    let _ = match (conn.kind(), source) {
        (DbKind::Postgres, _) => conn.execute_script(before).await,
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

/// Settings for the target: the configured ones (timeouts, pool size) with its URL. A
/// copy may wait for its first connection as long as connecting may take: the acquire
/// timeout is tuned for requests, not for a command that runs once.
pub fn target_settings(settings: &DbSettings, url: crate::url::DatabaseUrl) -> DbSettings {
    let mut target = settings.clone();
    target.url = url;
    target.acquire_timeout = target.acquire_timeout.max(target.connect_timeout);
    target
}

/// A text value quoted for a message, cut at 40 characters.
fn quote(s: &str) -> String {
    let short: String = s.chars().take(40).collect();
    let ellipsis = if short.len() < s.len() { "…" } else { "" };
    format!("{:?}", format!("{short}{ellipsis}"))
}

/// Drops everything in the target, in one transaction: what `--force` does first when
/// the history must be applied one migration at a time ([`needs_steps`]), which the
/// copy's own transaction cannot do. The caller holds a verified safety backup to put
/// back if the copy then fails.
pub async fn empty_target(target: &DbPool) -> Result<(), CopyError> {
    let mut conn = target
        .acquire()
        .await
        .map_err(CopyError::from_db(Side::Target))?;
    // SQLite would check foreign keys row by row as each parent is dropped.
    let sqlite = conn.kind() == DbKind::Sqlite;
    if sqlite {
        prepare(&mut conn, false)
            .await
            .map_err(CopyError::db(Side::Target))?;
    }
    let emptied = transfer::empty_again(&mut conn).await;
    if sqlite {
        restore(&mut conn, false, "").await;
    }
    emptied.map_err(CopyError::db(Side::Target))
}
