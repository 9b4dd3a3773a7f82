//! The write path: [`DbPool::begin_write`](super::DbPool::begin_write).
//!
//! SQLite lets one transaction write at a time. Instead of every pooled connection
//! racing for the file's lock (each loser sleeping in `busy_timeout` and retrying), the
//! pool keeps one writer connection that write transactions queue for, in process and
//! in arrival order, as Rails 8 does; readers keep the rest of the pool. The writer
//! still starts with `BEGIN IMMEDIATE`, so another process holding the lock makes it wait
//! up to `busy_timeout_ms` rather than fail half-way. PostgreSQL writes concurrently:
//! there a write transaction is a pooled connection's transaction.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use sqlx::Transaction;
use sqlx::postgres::Postgres;
use tokio::sync::{Mutex, OwnedMutexGuard};

use super::direct::{DirectOptions, to_sqlx};
use super::query::{Run, Runner, RunsQueries, Target};

/// The one connection SQLite write transactions take turns on; opened on first use.
pub(super) struct Writer {
    slot: Arc<Mutex<Slot>>,
    /// Transactions committed so far.
    commits: Arc<AtomicU64>,
    /// How long a write transaction waits for its turn (`acquire_timeout_ms`).
    wait: Duration,
}

struct Slot {
    /// `None` until the first transaction (or a connection failed to open), and after a
    /// transaction could not be ended (a failed rollback: closing a connection rolls its
    /// transaction back).
    conn: Option<rusqlite::Connection>,
    /// How the connection opens, and what its statements log and wait for.
    config: DirectOptions,
    /// The writer's count of committed transactions.
    commits: Arc<AtomicU64>,
}

impl Slot {
    fn conn(&self) -> &rusqlite::Connection {
        self.conn
            .as_ref()
            .expect("a write transaction holds a connection")
    }

    /// Ends the transaction with `statement` (`COMMIT` or `ROLLBACK`). A statement that
    /// fails leaves the transaction open (a `COMMIT` on a full disk, say): it is rolled
    /// back, and when even that fails, the connection is closed, which rolls it back.
    fn finish(&mut self, statement: &str) -> Result<(), sqlx::Error> {
        let result = run(self.conn(), statement).map_err(to_sqlx);
        if result.is_ok() && statement == "COMMIT" {
            let commits = self.commits.fetch_add(1, Ordering::Relaxed) + 1;
            if let Some(log) = &self.config.log {
                log.committed(commits);
            }
        }
        if !self.conn().is_autocommit() && run(self.conn(), "ROLLBACK").is_err() {
            self.conn = None;
        }
        result
    }
}

/// Runs a statement without parameters or rows (transaction control), prepared once.
fn run(conn: &rusqlite::Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)
        .and_then(|mut s| s.raw_execute())
        .map(drop)
}

impl Writer {
    pub(super) fn new(config: DirectOptions, wait: Duration) -> Self {
        let commits = Arc::new(AtomicU64::new(0));
        Self {
            slot: Arc::new(Mutex::new(Slot {
                conn: None,
                config,
                commits: Arc::clone(&commits),
            })),
            commits,
            wait,
        }
    }

    /// How many transactions it committed so far.
    pub(super) fn commits(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }

    /// Waits for the writer connection, at most `acquire_timeout_ms` like any connection
    /// (then `PoolTimedOut`: the request answers 503 at once instead of queueing behind
    /// writers that each wait out `busy_timeout_ms`), then `BEGIN IMMEDIATE`. When
    /// another process holds the file's lock, the wait for it (up to `busy_timeout_ms`)
    /// runs on a blocking thread, not on the caller's.
    pub(super) async fn begin(&self) -> Result<WriteTx, sqlx::Error> {
        let mut slot = tokio::time::timeout(self.wait, Arc::clone(&self.slot).lock_owned())
            .await
            .map_err(|_| sqlx::Error::PoolTimedOut)?;
        if slot.conn.is_none() {
            slot.conn = Some(slot.config.open()?);
        }
        if !slot.conn().is_autocommit() {
            // Left open by a wait for the lock that ended after its caller went away.
            let _ = run(slot.conn(), "ROLLBACK");
        }
        match run(slot.conn(), "BEGIN IMMEDIATE") {
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::DatabaseBusy
                    && !slot.config.busy_timeout.is_zero() =>
            {
                // The wait holds the writer (the slot goes with it): a caller that goes
                // away meanwhile leaves the writer held until the wait ends, and a
                // transaction it began is rolled back by the next one.
                let wait = slot.config.busy_timeout;
                let (slot, begun) = tokio::task::spawn_blocking(move || {
                    let conn = slot.conn();
                    let begun = conn
                        .busy_timeout(wait)
                        .and_then(|()| run(conn, "BEGIN IMMEDIATE"));
                    let reset = conn.busy_timeout(Duration::ZERO);
                    let begun = begun.and(reset);
                    (slot, begun)
                })
                .await
                .map_err(|e| sqlx::Error::Io(std::io::Error::other(e)))?;
                begun.map_err(to_sqlx)?;
                Ok(WriteTx(Some(Inner::Sqlite(slot))))
            }
            Err(e) => Err(to_sqlx(e)),
            Ok(()) => Ok(WriteTx(Some(Inner::Sqlite(slot)))),
        }
    }

    /// Whether the writer connection is open, and whether a write transaction holds it
    /// (or is about to): for the pool's statistics.
    pub(super) fn state(&self) -> (bool, bool) {
        match self.slot.try_lock() {
            Ok(slot) => (slot.conn.is_some(), false),
            Err(_) => (true, true),
        }
    }

    /// Holds write transactions back (after the one in progress) until the guard is
    /// dropped; `None` when the writer stayed busy past `acquire_timeout_ms`.
    pub(super) async fn pause(&self) -> Option<impl Send> {
        tokio::time::timeout(self.wait, Arc::clone(&self.slot).lock_owned())
            .await
            .ok()
    }

    /// Closes the writer connection (after the transaction in progress, if any).
    pub(super) async fn close(&self) {
        drop(self.slot.lock().await.conn.take());
    }
}

/// A write transaction: run queries on it with `&mut tx`, then [`WriteTx::commit`].
/// Dropped without a commit (an error, an early return, a panic) it rolls back.
pub struct WriteTx(Option<Inner>);

enum Inner {
    Sqlite(OwnedMutexGuard<Slot>),
    Postgres(Transaction<'static, Postgres>),
}

impl WriteTx {
    pub(super) fn postgres(tx: Transaction<'static, Postgres>) -> Self {
        Self(Some(Inner::Postgres(tx)))
    }

    /// Makes every change of the transaction durable and visible.
    pub async fn commit(mut self) -> Result<(), sqlx::Error> {
        match self.0.take() {
            Some(Inner::Sqlite(mut slot)) => slot.finish("COMMIT"),
            Some(Inner::Postgres(tx)) => tx.commit().await,
            None => Ok(()),
        }
    }

    /// Undoes every change of the transaction.
    pub async fn rollback(mut self) -> Result<(), sqlx::Error> {
        match self.0.take() {
            Some(Inner::Sqlite(mut slot)) => slot.finish("ROLLBACK"),
            Some(Inner::Postgres(tx)) => tx.rollback().await,
            None => Ok(()),
        }
    }
}

impl RunsQueries for WriteTx {
    fn runner(&mut self) -> Runner<'_> {
        Runner(match self.0.as_mut() {
            Some(Inner::Sqlite(slot)) => {
                Run::Writer(slot.conn(), slot.config.echo, slot.config.busy_timeout)
            }
            Some(Inner::Postgres(tx)) => Run::Sqlx(Target::Postgres(tx)),
            None => unreachable!("commit and rollback consume the transaction"),
        })
    }
}

impl Drop for WriteTx {
    fn drop(&mut self) {
        // sqlx rolls a PostgreSQL transaction back itself; SQLite's rolls back here, on
        // the spot, before the next writer gets the connection.
        if let Some(Inner::Sqlite(mut slot)) = self.0.take() {
            let _ = slot.finish("ROLLBACK");
        }
    }
}
