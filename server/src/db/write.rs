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

use sqlx::postgres::Postgres;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::{ConnectOptions, Connection, Transaction};
use tokio::sync::{Mutex, OwnedMutexGuard};

use super::query::{Executor, Target};

/// The one connection SQLite write transactions take turns on; opened on first use.
pub(super) struct Writer {
    options: SqliteConnectOptions,
    slot: Arc<Mutex<Slot>>,
    /// Transactions committed so far.
    commits: Arc<AtomicU64>,
    /// How long a write transaction waits for its turn (`acquire_timeout_ms`).
    wait: Duration,
}

#[derive(Default)]
struct Slot {
    conn: Option<SqliteConnection>,
    /// A transaction may still be open: a writer went away before its rollback ran, or
    /// a rollback failed. The next transaction rolls back first.
    open: bool,
    /// The writer's count of committed transactions.
    commits: Arc<AtomicU64>,
}

impl Slot {
    fn conn(&mut self) -> &mut SqliteConnection {
        self.conn
            .as_mut()
            .expect("a write transaction holds a connection")
    }
}

impl Writer {
    pub(super) fn new(options: SqliteConnectOptions, wait: Duration) -> Self {
        let commits = Arc::new(AtomicU64::new(0));
        Self {
            options,
            slot: Arc::new(Mutex::new(Slot {
                commits: Arc::clone(&commits),
                ..Slot::default()
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
    /// writers that each wait out `busy_timeout_ms`), then `BEGIN IMMEDIATE`.
    pub(super) async fn begin(&self) -> Result<WriteTx, sqlx::Error> {
        let mut slot = tokio::time::timeout(self.wait, Arc::clone(&self.slot).lock_owned())
            .await
            .map_err(|_| sqlx::Error::PoolTimedOut)?;
        if slot.conn.is_none() {
            slot.conn = Some(self.options.connect().await?);
        }
        if std::mem::take(&mut slot.open) {
            // Fails harmlessly when nothing was open.
            let _ = sqlx::raw_sql("ROLLBACK").execute(slot.conn()).await;
        }
        sqlx::raw_sql("BEGIN IMMEDIATE")
            .execute(slot.conn())
            .await?;
        Ok(WriteTx(Some(Inner::Sqlite(slot))))
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
        let conn = self.slot.lock().await.conn.take();
        if let Some(conn) = conn {
            let _ = conn.close().await;
        }
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
            Some(Inner::Sqlite(slot)) => finish(slot, "COMMIT").await,
            Some(Inner::Postgres(tx)) => tx.commit().await,
            None => Ok(()),
        }
    }

    /// Undoes every change of the transaction.
    pub async fn rollback(mut self) -> Result<(), sqlx::Error> {
        match self.0.take() {
            Some(Inner::Sqlite(slot)) => finish(slot, "ROLLBACK").await,
            Some(Inner::Postgres(tx)) => tx.rollback().await,
            None => Ok(()),
        }
    }
}

/// Ends a SQLite write transaction with `statement`, then lets the next writer in. A
/// `COMMIT` that fails (a full disk, say) leaves the transaction open: it is rolled back.
async fn finish(
    mut slot: OwnedMutexGuard<Slot>,
    statement: &'static str,
) -> Result<(), sqlx::Error> {
    let result = sqlx::raw_sql(statement)
        .execute(slot.conn())
        .await
        .map(drop);
    if result.is_ok() && statement == "COMMIT" {
        slot.commits.fetch_add(1, Ordering::Relaxed);
    }
    if result.is_err()
        && sqlx::raw_sql("ROLLBACK")
            .execute(slot.conn())
            .await
            .is_err()
    {
        slot.open = true;
    }
    result
}

impl Drop for WriteTx {
    fn drop(&mut self) {
        // sqlx rolls a PostgreSQL transaction back itself.
        let Some(Inner::Sqlite(mut slot)) = self.0.take() else {
            return;
        };
        // Roll back on a task that keeps the writer until it is done; without a runtime,
        // the next transaction rolls back first.
        slot.open = true;
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if sqlx::raw_sql("ROLLBACK").execute(slot.conn()).await.is_ok() {
                    slot.open = false;
                }
            });
        }
    }
}

impl Executor for WriteTx {
    fn target(&mut self) -> Target<'_> {
        match self.0.as_mut() {
            Some(Inner::Sqlite(slot)) => Target::Sqlite(slot.conn()),
            Some(Inner::Postgres(tx)) => Target::Postgres(tx),
            None => unreachable!("commit and rollback consume the transaction"),
        }
    }
}
