//! The connection pool: one type for SQLite and PostgreSQL, chosen at run time by the URL.
//!
//! SQLite connections run in WAL mode with `synchronous=NORMAL` and foreign keys on;
//! write transactions queue for one writer connection and start with `BEGIN IMMEDIATE`
//! (see [`DbPool::begin_write`]); the log is checkpointed by a task of the pool, not by
//! the commits (see [`checkpoint`]).
//! A SQLite pool watches the identity of its file: when the file at the path is
//! removed, acquiring fails (an outage, never a fresh empty database); when it is
//! replaced, the pool reopens on the new file once that file is a complete SQLite
//! database. Nothing is ever written to a file that is not one already (an empty file, a
//! file half copied in): a new database is only created whole, at startup or by
//! `db-init`, by linking a finished file into place.

mod checkpoint;
mod direct;
mod drop_all;
mod error;
mod failover;
mod incidents;
mod metrics;
mod query;
mod read;
mod sqlite;
mod write;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use sqlx::pool::{PoolConnection, PoolOptions};
use sqlx::postgres::{PgPool, Postgres};
use sqlx::sqlite::Sqlite;
use sqlx::{ConnectOptions, Connection, Transaction};

pub use direct::DirectError;
pub use drop_all::{PG_DROP_ALL, drop_all_script};
pub use error::{DbError, FileProblem, describe_driver_error, error_line, is_missing_database};
pub use incidents::{INCIDENT_WINDOW, classify as classify_incident};
pub use query::{Executor, Param, Query, Record, Runner, RunsQueries, Target, query};
pub use read::SqliteConn;
pub use server_macros::Record;
pub use sqlite::{check_live_sqlite_file, check_sqlite_file};
pub(crate) use sqlite::{check_sqlite_file_once, new_database_file};
pub use write::WriteTx;

use crate::config::{DbSettings, Pooler};
use crate::url::{DatabaseUrl, DbKind};
use incidents::Incidents;
pub use metrics::PoolMetrics;
use sqlite::SqliteEngine;

/// What the code `#[derive(Record)]` writes refers to; not an API.
#[doc(hidden)]
pub mod __private {
    pub use super::direct::column;
    pub use rusqlite;
    pub use sqlx;
}

/// SQLite: the size the write-ahead log is truncated back to after a checkpoint
/// (`PRAGMA journal_size_limit`), so that a burst of writes (or a long backup) does not
/// leave a log of hundreds of megabytes behind.
pub const JOURNAL_SIZE_LIMIT: u64 = 64 << 20;

/// Whether opening may create the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenMode {
    /// Startup and `db-init`: create the file and its directories if missing.
    Create,
    /// Everything else: a missing database is an error.
    MustExist,
    /// Only reads (`db-copy`'s source): SQLite opens the file read-only and leaves its
    /// journal mode as it is; a missing database is an error.
    ReadOnly,
}

/// Pool statistics for health output.
#[derive(Debug, Clone, Copy, serde::Serialize, utoipa::ToSchema)]
pub struct PoolStats {
    /// Open connections.
    pub size: u32,
    /// Open connections not in use.
    pub idle: u32,
    /// Upper bound (on SQLite, the writer connection and the request readers, a few per
    /// core, come on top of it).
    pub max: u32,
    /// SQLite: how often the pool reopened because the file at its path was replaced.
    pub reopened: u32,
}

/// The pool, for either engine. Clones share the pool (e.g. for the backup schedule).
#[derive(Clone)]
pub struct DbPool {
    engine: Arc<Engine>,
    max_connections: u32,
    incidents: Arc<Incidents>,
    metrics: Arc<PoolMetrics>,
    /// PostgreSQL with a host list: which host the pool uses.
    failover: Option<Arc<failover::Failover>>,
    /// Behind a pooler in transaction mode: the statement each acquired connection
    /// begins its transaction with (see [`Pooler::Transaction`]).
    pinned: Option<Arc<str>>,
}

enum Engine {
    Sqlite(Box<SqliteEngine>),
    Postgres(PgPool),
}

/// A pooled connection to either engine.
pub enum DbConn {
    /// A SQLite connection.
    Sqlite(SqliteConn),
    /// A PostgreSQL connection.
    Postgres(PoolConnection<Postgres>),
}

/// A transaction on either engine.
pub enum DbTx<'c> {
    /// A SQLite transaction.
    Sqlite(Transaction<'c, Sqlite>),
    /// A PostgreSQL transaction.
    Postgres(Transaction<'c, Postgres>),
}

impl DbPool {
    /// Opens the pool described by `settings` and checks one connection.
    pub async fn open(settings: &DbSettings, mode: OpenMode) -> Result<Self, DbError> {
        let mut failover = None;
        let mut pinned = None;
        let engine = match &settings.url {
            DatabaseUrl::Sqlite { path } => Engine::Sqlite(Box::new(
                SqliteEngine::open(settings, Some(path), mode).await?,
            )),
            DatabaseUrl::SqliteMemory => {
                Engine::Sqlite(Box::new(SqliteEngine::open(settings, None, mode).await?))
            }
            DatabaseUrl::Postgres { url } => {
                let (pool, hosts) = open_postgres(settings, url).await?;
                failover = hosts;
                pinned = (settings.pooler == Pooler::Transaction)
                    .then(|| Arc::from(pinned_begin(settings)));
                Engine::Postgres(pool)
            }
        };
        let engine = Arc::new(engine);
        if let Engine::Sqlite(sqlite) = &*engine
            && sqlite.checkpoints()
        {
            tokio::spawn(checkpoint::every_so_often(Arc::downgrade(&engine)));
        }
        Ok(Self {
            engine,
            max_connections: settings.max_connections,
            incidents: Arc::default(),
            metrics: Arc::default(),
            failover,
            pinned,
        })
    }

    /// The engine behind this pool.
    pub fn kind(&self) -> DbKind {
        match *self.engine {
            Engine::Sqlite(_) => DbKind::Sqlite,
            Engine::Postgres(_) => DbKind::Postgres,
        }
    }

    /// Takes a connection, waiting at most the configured acquire timeout. A PostgreSQL
    /// server that refuses connections while the pool has none fails at once, as
    /// unreachable, instead of as a timeout (busy) after the wait.
    pub async fn acquire(&self) -> Result<DbConn, DbError> {
        self.acquire_with(false).await
    }

    /// [`DbPool::acquire`] for a request handler (the `Connection<Db>` guard): on SQLite,
    /// its reads run on the pool's readers, on the handler's thread (see `db::read`).
    pub async fn acquire_for_request(&self) -> Result<DbConn, DbError> {
        self.acquire_with(true).await
    }

    async fn acquire_with(&self, readers: bool) -> Result<DbConn, DbError> {
        self.refused().await?;
        let started = Instant::now();
        let conn = match &*self.engine {
            Engine::Sqlite(engine) => {
                let generation = engine.current().await?;
                let readers = readers.then(|| Arc::clone(&generation.readers));
                generation
                    .pool
                    .acquire()
                    .await
                    .map(|c| DbConn::Sqlite(SqliteConn::new(c, readers)))
            }
            Engine::Postgres(pool) => match pool.acquire().await {
                Ok(mut conn) if let Some(begin) = &self.pinned => {
                    use sqlx::SqlSafeStr as _;
                    use sqlx_core::transaction::TransactionManager as _;
                    let begin = sqlx::AssertSqlSafe(begin.to_string()).into_sql_str();
                    to_the_end(async move {
                        sqlx::postgres::PgTransactionManager::begin(&mut conn, Some(begin))
                            .await
                            .map(|()| DbConn::Postgres(conn))
                    })
                    .await
                }
                other => other.map(DbConn::Postgres),
            },
        };
        let timed_out = matches!(conn, Err(sqlx::Error::PoolTimedOut));
        self.metrics
            .acquired(started.elapsed().as_secs_f64(), timed_out);
        conn.map_err(|e| {
            self.note_error(&e);
            DbError::Driver(e)
        })
    }

    /// Starts a write transaction: the way application code writes.
    ///
    /// On SQLite, write transactions queue in process, in arrival order, for the pool's
    /// one writer connection, then take the file's lock with `BEGIN IMMEDIATE` (waiting
    /// up to `busy_timeout_ms` if another process holds it); readers keep the rest of
    /// the pool. On PostgreSQL it is a pooled connection's transaction. Run queries on
    /// `&mut tx`, then `tx.commit()`; dropped without a commit, it rolls back.
    pub async fn begin_write(&self) -> Result<WriteTx, DbError> {
        self.refused().await?;
        let started = Instant::now();
        let tx = match &*self.engine {
            Engine::Sqlite(engine) => {
                let _queued = self.metrics.queued();
                engine.current().await?.writer.begin().await
            }
            Engine::Postgres(pool) => match &self.pinned {
                Some(begin) => {
                    let (pool, begin) = (pool.clone(), begin.to_string());
                    to_the_end(async move { pool.begin_with(sqlx::AssertSqlSafe(begin)).await })
                        .await
                }
                None => pool.begin().await,
            }
            .map(WriteTx::postgres),
        };
        let timed_out = matches!(tx, Err(sqlx::Error::PoolTimedOut));
        self.metrics
            .acquired(started.elapsed().as_secs_f64(), timed_out);
        tx.map_err(|e| {
            self.note_error(&e);
            DbError::Driver(e)
        })
    }

    /// PostgreSQL, with no connection open: whether the server refuses connections (see
    /// [`crate::pg::refuses`]), noted like any connection error.
    async fn refused(&self) -> Result<(), DbError> {
        let Engine::Postgres(pool) = &*self.engine else {
            return Ok(());
        };
        if pool.size() > 0 {
            return Ok(());
        }
        let options = pool.connect_options();
        let Some(error) = crate::pg::refuses(&options).await else {
            return Ok(());
        };
        let reason = error.to_string();
        self.note_error(&sqlx::Error::Io(error));
        Err(DbError::Unreachable {
            server: crate::pg::server_address(&options),
            reason,
        })
    }

    /// Reports an error a connection of this pool hit. Errors that mean the database
    /// itself fails (cannot open, corrupt, disk full, I/O, connection lost) fail
    /// `/health/db` for [`INCIDENT_WINDOW`]; errors of the request's own making do not.
    pub fn note_error(&self, error: &sqlx::Error) {
        self.incidents.note(error);
        // With a host list, a lost server or a read-only one (a promotion moved the
        // primary) sends the pool looking for the host to use.
        let moved = match error {
            sqlx::Error::Io(_) | sqlx::Error::Protocol(_) | sqlx::Error::PoolTimedOut => true,
            sqlx::Error::Database(db) => {
                matches!(
                    db.code().as_deref(),
                    Some("25006" | "57P01" | "57P02" | "57P03")
                )
            }
            _ => false,
        };
        if moved {
            self.reconsider_host();
        }
    }

    /// With a PostgreSQL host list: looks for the host to use again, in the background.
    pub fn reconsider_host(&self) {
        if let (Some(failover), Engine::Postgres(pool)) = (&self.failover, &*self.engine) {
            failover.reconsider(pool);
        }
    }

    /// The latest error noted by [`DbPool::note_error`] within [`INCIDENT_WINDOW`]:
    /// how long ago, and a reason safe to show publicly.
    pub fn recent_incident(&self) -> Option<(Duration, &'static str)> {
        self.incidents.recent()
    }

    /// Current pool statistics.
    pub fn stats(&self) -> PoolStats {
        let (size, idle, reopened) = match &*self.engine {
            Engine::Sqlite(engine) => {
                let generation = engine.snapshot();
                let reopened = engine.reopened.load(Ordering::Relaxed);
                // The writer connection counts as one of the pool's.
                let (open, in_use) = generation.writer.state();
                (
                    generation.pool.size() + u32::from(open),
                    generation.pool.num_idle() + usize::from(open && !in_use),
                    reopened,
                )
            }
            Engine::Postgres(pool) => (pool.size(), pool.num_idle(), 0),
        };
        PoolStats {
            size,
            idle: u32::try_from(idle).unwrap_or(u32::MAX),
            max: self.max_connections,
            reopened,
        }
    }

    /// The pool's measurements, for `/metrics`.
    pub fn metrics(&self) -> &PoolMetrics {
        &self.metrics
    }

    /// Says that a backup of this pool's database runs until the guard is dropped. On
    /// SQLite, the checkpoints meanwhile copy the log without holding writers back to
    /// start it over: the file system is busy with the backup's own writes, and the
    /// `fsync` and truncation of the log that starting over takes would stall every
    /// writer behind them (up to 87 ms in the 1 GiB backup of `cargo xtask bench`).
    /// The log is started over after the backup.
    pub fn backing_up(&self) -> BackingUp {
        if let Engine::Sqlite(engine) = &*self.engine {
            engine.backups.fetch_add(1, Ordering::Relaxed);
        }
        BackingUp(self.engine.clone())
    }

    /// Waits for connections in use to come back, then closes all of them.
    pub async fn close(&self) {
        match &*self.engine {
            Engine::Sqlite(engine) => {
                engine.closed.store(true, Ordering::Relaxed);
                engine.snapshot().close().await
            }
            Engine::Postgres(pool) => pool.close().await,
        }
    }
}

/// A backup running ([`DbPool::backing_up`]), until dropped.
pub struct BackingUp(Arc<Engine>);

impl Drop for BackingUp {
    fn drop(&mut self) {
        if let Engine::Sqlite(engine) = &*self.0 {
            engine.backups.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

impl DbConn {
    /// The engine of this connection.
    pub fn kind(&self) -> DbKind {
        match self {
            Self::Sqlite(_) => DbKind::Sqlite,
            Self::Postgres(_) => DbKind::Postgres,
        }
    }

    /// One real round trip: `SELECT 1`.
    pub async fn ping(&mut self) -> Result<(), sqlx::Error> {
        match self {
            Self::Sqlite(c) => sqlx::query("SELECT 1").execute(&mut **c).await.map(drop),
            Self::Postgres(c) => sqlx::query("SELECT 1").execute(&mut **c).await.map(drop),
        }
    }

    /// Whether the database takes writes: PostgreSQL answers for its session
    /// (`default_transaction_read_only`, a standby), in one round trip; SQLite answers
    /// `None` without asking (its file's permissions are checked apart).
    pub async fn accepts_writes(&mut self) -> Result<Option<bool>, sqlx::Error> {
        match self {
            Self::Sqlite(_) => Ok(None),
            Self::Postgres(c) => sqlx::query_scalar::<_, bool>(
                "SELECT current_setting('transaction_read_only') = 'off'",
            )
            .fetch_one(&mut **c)
            .await
            .map(Some),
        }
    }

    /// Starts a transaction that will write, on this connection: for maintenance that
    /// holds one connection throughout (migrations, copies). Application code writes
    /// with [`DbPool::begin_write`], which queues SQLite writers in process instead.
    ///
    /// On SQLite it is `BEGIN IMMEDIATE`: the write lock is taken up front, so a busy
    /// database makes the transaction wait for the busy timeout instead of failing with
    /// `SQLITE_BUSY` at its first write, as a deferred transaction that upgrades would.
    pub async fn begin_write(&mut self) -> Result<DbTx<'_>, sqlx::Error> {
        Ok(match self {
            Self::Sqlite(c) => DbTx::Sqlite(c.begin_with("BEGIN IMMEDIATE").await?),
            Self::Postgres(c) => DbTx::Postgres(c.begin().await?),
        })
    }

    /// Runs a script of one or more statements outside any transaction.
    pub async fn execute_script(&mut self, sql: &str) -> Result<(), sqlx::Error> {
        let sql = sqlx::AssertSqlSafe(sql);
        match self {
            Self::Sqlite(c) => sqlx::raw_sql(sql).execute(&mut **c).await.map(drop),
            Self::Postgres(c) => sqlx::raw_sql(sql).execute(&mut **c).await.map(drop),
        }
    }
}

impl DbTx<'_> {
    /// Runs a script of one or more statements inside this transaction.
    pub async fn execute_script(&mut self, sql: &str) -> Result<(), sqlx::Error> {
        let sql = sqlx::AssertSqlSafe(sql);
        match self {
            Self::Sqlite(tx) => sqlx::raw_sql(sql).execute(&mut **tx).await.map(drop),
            Self::Postgres(tx) => sqlx::raw_sql(sql).execute(&mut **tx).await.map(drop),
        }
    }

    /// Commits.
    pub async fn commit(self) -> Result<(), sqlx::Error> {
        match self {
            Self::Sqlite(tx) => tx.commit().await,
            Self::Postgres(tx) => tx.commit().await,
        }
    }

    /// Rolls back.
    pub async fn rollback(self) -> Result<(), sqlx::Error> {
        match self {
            Self::Sqlite(tx) => tx.rollback().await,
            Self::Postgres(tx) => tx.rollback().await,
        }
    }
}

/// The statement that sets the current values of the session's timeouts again, on a
/// connection or in a transaction: run after `RESET ALL` (which would drop them: the pool
/// sets them after connecting, not as startup options, so that poolers such as PgBouncer
/// take the connection). Empty on SQLite, which has none.
pub async fn session_timeouts(on: &mut impl Executor) -> Result<String, sqlx::Error> {
    match on.target() {
        Target::Postgres(c) => {
            sqlx::query_scalar(
                // `current_setting`, not the `pg_settings` view: that one builds a row for
                // every setting (about a millisecond, once per migration).
                "SELECT format('SET statement_timeout = %L; SET lock_timeout = %L; \
                                SET idle_in_transaction_session_timeout = %L', \
                               current_setting('statement_timeout'), \
                               current_setting('lock_timeout'), \
                               current_setting('idle_in_transaction_session_timeout'))",
            )
            .fetch_one(c)
            .await
        }
        Target::Sqlite(_) => Ok(String::new()),
    }
}

/// Opens a PostgreSQL pool whose connections carry the statement and lock timeouts, set
/// with `SET` once connected: startup parameters beyond the usual ones (`options`,
/// `extra_float_digits`) are refused by PgBouncer's default configuration, or dropped
/// by it when told to ignore them.
async fn open_postgres(
    settings: &DbSettings,
    url: &url::Url,
) -> Result<(PgPool, Option<Arc<failover::Failover>>), DbError> {
    let millis = |d: Duration| d.as_millis();
    let session: Arc<str> = format!(
        "SET statement_timeout = {}; SET lock_timeout = {}; \
         SET idle_in_transaction_session_timeout = {}",
        millis(settings.statement_timeout),
        millis(settings.lock_timeout),
        // A session idle inside a transaction holds locks: bound it like a statement.
        millis(settings.statement_timeout),
    )
    .into();
    let pinned = settings.pooler == Pooler::Transaction;
    let mut options = crate::pg::connect_options(url)?.log_statements(echo_level(settings.echo));
    if pinned {
        // Nothing prepared outlives a transaction (see `pinned_begin`): nothing to cache.
        options = options.statement_cache_capacity(0);
    }
    // A host list: the first host that answers (and accepts writes, when asked).
    let list = crate::pg::hosts(url);
    let hosts = list
        .iter()
        .map(|host| {
            crate::pg::connect_options_at(url, host)
                .map(|o| o.log_statements(echo_level(settings.echo)))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let failover = failover::Failover::new(
        hosts,
        crate::pg::wants_read_write(url),
        settings.connect_timeout,
    )
    .map(Arc::new);
    if let Some(failover) = &failover {
        let (index, chosen) = failover
            .find()
            .await
            .map_err(|reason| DbError::Unreachable {
                server: list
                    .iter()
                    .map(|(h, p)| format!("{h}:{p}"))
                    .collect::<Vec<_>>()
                    .join(","),
                reason: format!("no host fits ({reason})"),
            })?;
        failover.start_at(index);
        options = chosen;
    }
    // One direct connection first: its error is the real one ("connection refused",
    // "password authentication failed"), where the pool only reports that it timed out.
    let first = tokio::time::timeout(settings.connect_timeout, options.connect())
        .await
        .map_err(|_| DbError::ConnectTimeout(settings.connect_timeout))?
        .map_err(|e| match e {
            sqlx::Error::Io(io) => DbError::Unreachable {
                server: crate::pg::server_address(&options),
                reason: io.to_string(),
            },
            other => DbError::Driver(other),
        })?;
    let _ = first.close().await;
    let mut pool = match pinned {
        // A session setting would stay on the pooler's server connection, for whichever
        // client gets it next: the timeouts are set in each transaction instead.
        true => pool_options(settings).after_release(|conn, _| {
            Box::pin(async move {
                use sqlx_core::transaction::TransactionManager;
                type Manager = sqlx::postgres::PgTransactionManager;
                match Manager::get_transaction_depth(conn) {
                    0 => Ok(true),
                    // The transaction `DbPool::acquire` began: what ran on the connection
                    // is committed when it is given back (rolled back if it failed).
                    1 => Manager::commit(conn).await.map(|()| true),
                    // A transaction of its user still open: not reused.
                    _ => Ok(false),
                }
            })
        }),
        false => pool_options(settings).after_connect(move |conn, _| {
            let session = Arc::clone(&session);
            Box::pin(async move {
                sqlx::raw_sql(sqlx::AssertSqlSafe(session.to_string()))
                    .execute(conn)
                    .await
                    .map(drop)
            })
        }),
    };
    if let Some(failover) = &failover {
        // Connections to the host the pool moved away from are not handed out again.
        let failover = Arc::clone(failover);
        pool = pool.before_acquire(move |_, meta| {
            let stale = failover.is_stale(meta.age);
            Box::pin(async move { Ok(!stale) })
        });
    }
    let pool = tokio::time::timeout(settings.connect_timeout, pool.connect_with(options))
        .await
        .map_err(|_| DbError::ConnectTimeout(settings.connect_timeout))?
        .map_err(DbError::from)?;
    Ok((pool, failover))
}

/// Runs `begin` (a transaction's `BEGIN` behind a pooler in transaction mode) to its end
/// even when the request waiting for it goes away (a timeout): a `BEGIN` the pooler
/// holds back until a server session is free still reaches the server later, and cut
/// short here, it would open a transaction no one ends, holding that session until the
/// idle-in-transaction timeout. Finished, the connection goes back to the pool, which
/// ends the transaction (see `after_release` in `open_postgres`).
async fn to_the_end<T: Send + 'static>(
    begin: impl Future<Output = Result<T, sqlx::Error>> + Send + 'static,
) -> Result<T, sqlx::Error> {
    tokio::spawn(begin)
        .await
        .unwrap_or_else(|e| Err(sqlx::Error::Io(std::io::Error::other(e))))
}

/// Behind a pooler in transaction mode, the statement every transaction begins with: the
/// pooler lends a server session for one transaction, so each pooled connection works in
/// one while it is held (see [`DbPool::acquire`]). In it, the timeouts are set for the
/// transaction alone (`SET LOCAL`), and the prepared statements another client left on
/// the server session are dropped: sqlx names its statements `sqlx_s_<n>` counting from
/// 1 on every connection, so two clients' names collide on a shared server session.
fn pinned_begin(settings: &DbSettings) -> String {
    let millis = |d: Duration| d.as_millis();
    format!(
        "BEGIN; DEALLOCATE ALL; SET LOCAL statement_timeout = {}; SET LOCAL lock_timeout = {}; \
         SET LOCAL idle_in_transaction_session_timeout = {}",
        millis(settings.statement_timeout),
        millis(settings.lock_timeout),
        millis(settings.statement_timeout),
    )
}

fn echo_level(echo: bool) -> log::LevelFilter {
    if echo {
        log::LevelFilter::Info
    } else {
        log::LevelFilter::Off
    }
}

fn pool_options<DB: sqlx::Database>(settings: &DbSettings) -> PoolOptions<DB> {
    PoolOptions::new()
        .min_connections(settings.min_connections)
        .max_connections(settings.max_connections)
        .acquire_timeout(settings.acquire_timeout)
        .idle_timeout(settings.idle_timeout)
}

/// `"name"` with inner quotes doubled: an identifier on both engines, always quoted.
pub fn quoted(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}
