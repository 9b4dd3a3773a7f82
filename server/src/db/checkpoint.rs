//! SQLite checkpoints off the write path.
//!
//! By default SQLite runs a checkpoint inside the commit that grows the write-ahead log
//! past 1,000 pages: that commit then waits for the checkpoint's two `fsync`s, longer
//! still while something else floods the disk (a backup's copy). The writer connection
//! has automatic checkpoints off (`wal_autocheckpoint = 0`); instead, after it committed,
//! a task of the pool runs passive checkpoints (every [`EVERY`]) on a connection of its
//! own, closed again once the log is copied whole, so an idle server keeps no extra
//! connection. A passive checkpoint never waits for a lock and never holds up a writer:
//! writers only append to the log, and the next one after a complete checkpoint starts
//! the log over (truncated back to `journal_size_limit`). A log grown past that limit is
//! copied whole with the writers held back a moment, and then emptied by the task
//! itself: when the writes stop, it does not stay as large as their burst made it.

use std::sync::Weak;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::{ConnectOptions, Connection};

use super::Engine;
use super::write::Writer;

/// How often the log is checkpointed.
pub(super) const EVERY: Duration = Duration::from_millis(250);

/// The shortest time between two rounds, when the writer asks for them.
const SOONEST: Duration = Duration::from_millis(20);

/// At most this many passive checkpoints in a row, each catching up with the writes made
/// during the one before.
const CATCH_UP: usize = 4;

/// Frames left uncopied that end the catching up.
const TAIL: i64 = 256;

/// A log of more frames than this (about `journal_size_limit` of 4 KiB pages) is copied
/// whole with the writers held back a moment, or it would never start over under a
/// steady stream of writes.
const LIMIT_FRAMES: i64 = (super::JOURNAL_SIZE_LIMIT / 4096) as i64;

/// SQLite's checkpoint modes this task runs.
#[derive(Clone, Copy)]
enum Mode {
    Passive,
    Truncate,
}

/// What one checkpoint found.
struct Frames {
    /// Another connection was checkpointing: nothing is known of the log.
    busy: bool,
    /// Frames in the log.
    log: i64,
    /// Frames of it copied into the database.
    copied: i64,
}

/// One checkpoint: `PASSIVE` (copies what it can, never waits) or `TRUNCATE` (starts
/// the log over and empties its file, or gives up at once on the connection's zero
/// busy timeout when a reader still uses the log).
async fn checkpoint(conn: &mut SqliteConnection, mode: Mode) -> Result<Frames, sqlx::Error> {
    let sql = match mode {
        Mode::Passive => "PRAGMA wal_checkpoint(PASSIVE)",
        Mode::Truncate => "PRAGMA wal_checkpoint(TRUNCATE)",
    };
    let (busy, log, copied): (i64, i64, i64) = sqlx::query_as(sql).fetch_one(&mut *conn).await?;
    Ok(Frames {
        busy: busy != 0,
        log,
        copied,
    })
}

/// The connection one file's checkpoints run on, opened on first use and closed with
/// the pool (before the pool's last connection, which deletes the log by its path).
pub(super) struct Checkpointer {
    options: SqliteConnectOptions,
    conn: tokio::sync::Mutex<Option<SqliteConnection>>,
    closed: AtomicBool,
    /// The writer's commits that the last complete checkpoint copied.
    copied: AtomicU64,
}

impl Checkpointer {
    pub(super) fn new(options: SqliteConnectOptions) -> Self {
        Self {
            // A checkpoint never waits for a lock (a `TRUNCATE` one would wait holding
            // the log's write lock, writers of other processes behind it).
            options: options.busy_timeout(Duration::ZERO),
            conn: tokio::sync::Mutex::new(None),
            closed: AtomicBool::new(false),
            copied: AtomicU64::new(0),
        }
    }

    /// Checkpoints the log when `writer` committed since the last complete checkpoint
    /// (nothing once closed). Passive checkpoints first, each copying what the writers
    /// appended during the one before, until the rest is small or the log is past its
    /// limit; then, only when the log has grown past its limit and `hold` allows it (no
    /// backup running), one more with
    /// `writer`'s transactions held back, so that the log is copied whole and starts
    /// over; with `urgent` (the writer found the log past its limit), only that one. Before each, `ours` must say the file is still the one this connection was
    /// opened for (a checkpoint copies pages into it: never into a file replaced or
    /// emptied under the pool). A failure is left for the next round (on a new
    /// connection): the requests that use the file report its problems.
    async fn run(
        &self,
        writer: &Writer,
        ours: &(dyn Fn() -> bool + Sync),
        hold: bool,
        urgent: bool,
    ) {
        let mut slot = self.conn.lock().await;
        let commits = writer.commits();
        if self.closed.load(Ordering::Relaxed)
            || commits == self.copied.load(Ordering::Relaxed)
            || !ours()
        {
            return;
        }
        if slot.is_none() {
            match self.options.connect().await {
                Ok(conn) => *slot = Some(conn),
                Err(e) => {
                    log::debug!("checkpoint: cannot connect: {e}");
                    return;
                }
            }
        }
        let Some(conn) = slot.as_mut() else {
            return;
        };
        let result = catch_up(conn, writer, ours, hold, urgent).await;
        let whole = result.as_ref().is_ok_and(|whole| *whole);
        if let Err(e) = &result {
            log::debug!("checkpoint failed: {e}");
        }
        if whole {
            self.copied.store(commits, Ordering::Relaxed);
        }
        // Kept only while the log is being caught up with: an idle pool holds no extra
        // connection, and one opened on a file since replaced is not used again.
        let keep = result.is_ok() && !whole && ours();
        if !keep && let Some(conn) = slot.take() {
            let _ = conn.close().await;
        }
    }

    /// Closes the connection (after a checkpoint in progress); no checkpoint runs after.
    pub(super) async fn close(&self) {
        let mut slot = self.conn.lock().await;
        self.closed.store(true, Ordering::Relaxed);
        if let Some(conn) = slot.take() {
            let _ = conn.close().await;
        }
    }
}

/// The passes of [`Checkpointer::run`]: whether the log ended copied whole (`false` also
/// when `ours` stopped them). When `hold` and `urgent` (the writer found the log past its
/// limit), the writers are held back from the start: the rounds before copied most of
/// the log, and passes beside a writer faster than the copy would only let it grow.
async fn catch_up(
    conn: &mut SqliteConnection,
    writer: &Writer,
    ours: &(dyn Fn() -> bool + Sync),
    hold: bool,
    urgent: bool,
) -> Result<bool, sqlx::Error> {
    let mut frames = None;
    for _ in 0..if hold && urgent { 0 } else { CATCH_UP } {
        if !ours() {
            return Ok(false);
        }
        let now = checkpoint(conn, Mode::Passive).await?;
        // Past its limit, the log is not chased any further: a writer faster than the
        // copy grows it with every pass; the writers are held back for the rest now.
        let done = now.log - now.copied <= TAIL || (hold && now.log > LIMIT_FRAMES);
        frames = Some(now);
        if done {
            break;
        }
    }
    let past = frames.as_ref().map_or(urgent, |f| f.log > LIMIT_FRAMES);
    if hold
        && past
        && let Some(_paused) = writer.pause().await
    {
        if !ours() {
            return Ok(false);
        }
        let now = checkpoint(conn, Mode::Passive).await?;
        // Copied whole: the log starts over now, not at the next write, and its file
        // goes back to the file system (otherwise it would stay as large as the burst
        // made it for as long as no one writes). A reader still in the log makes it
        // give up; the next writer starts the log over then.
        if !now.busy && now.log == now.copied {
            checkpoint(conn, Mode::Truncate).await?;
        }
        frames = Some(now);
    }
    Ok(frames.is_some_and(|f| !f.busy && f.log == f.copied))
}

/// Checkpoints the current file of `engine` every [`EVERY`], through the same file
/// checks as a request (never into a file that is not a complete database), until the
/// pool is dropped or closed.
pub(super) async fn every_so_often(engine: Weak<Engine>) {
    let grew = match engine.upgrade().as_deref() {
        Some(Engine::Sqlite(sqlite)) => std::sync::Arc::clone(&sqlite.log_grew),
        _ => return,
    };
    loop {
        // Every [`EVERY`], or sooner when the writer finds the log past its limit
        // (`urgent`), but never more often than every [`SOONEST`]: a log that cannot be
        // copied (a reader holds it) keeps the writer notifying.
        let urgent = tokio::select! {
            () = tokio::time::sleep(EVERY) => false,
            () = async {
                tokio::time::sleep(SOONEST).await;
                grew.notified().await;
            } => true,
        };
        let Some(engine) = engine.upgrade() else {
            return;
        };
        let Engine::Sqlite(sqlite) = &*engine else {
            return;
        };
        if sqlite.closed.load(Ordering::Relaxed) {
            return;
        }
        let Ok(generation) = sqlite.current().await else {
            continue;
        };
        let ours = || sqlite.still_holds(&generation);
        let hold = sqlite.backups.load(Ordering::Relaxed) == 0;
        generation
            .checkpoints
            .run(&generation.writer, &ours, hold, urgent)
            .await;
    }
}
