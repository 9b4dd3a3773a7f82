//! The consistent copy of a live SQLite database that a backup starts from.
//!
//! A database file is copied page by page with SQLite's online backup API, in one step:
//! one read transaction on the source, so the copy is a single consistent snapshot, and
//! in WAL mode writers go on committing meanwhile (a copy in several steps would start
//! over after every write). It runs at close to the speed of copying the file, where
//! `VACUUM INTO` rebuilds every table and index (about 3.5× slower; see
//! docs/benchmarks.md). An in-memory database, which has no path another connection
//! could open, is copied with `VACUUM INTO` on the pool's connection, into a `file:` URI
//! (see [`file_uri`]).

use std::fs;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rusqlite::backup::{Backup, StepResult};

use super::BackupError;
use super::off_the_runtime;

/// How often the copy's pages are written out while it runs.
const FLUSH_EVERY: Duration = Duration::from_millis(20);

/// How long the copy waits for the source while another connection holds a lock that
/// the backup cannot share (a checkpoint truncating the log, say).
const BUSY_LIMIT: Duration = Duration::from_secs(10);

/// Copies the database of `conn` (at `source`, when it is a file) into `target`, an empty
/// file, reporting its growth as progress.
pub(super) async fn sqlite(
    conn: &mut sqlx::SqliteConnection,
    source: Option<&Path>,
    target: &Path,
    progress: &dyn crate::progress::Progress,
) -> Result<(), BackupError> {
    let page_size: i64 = sqlx::query_scalar("PRAGMA page_size")
        .fetch_one(&mut *conn)
        .await?;
    let page_count: i64 = sqlx::query_scalar("PRAGMA page_count")
        .fetch_one(&mut *conn)
        .await?;
    let total = u64::try_from(page_size * page_count).unwrap_or(0);
    let done = Arc::new(AtomicBool::new(false));
    let watcher = {
        let done = done.clone();
        let target = target.to_path_buf();
        async move {
            while !done.load(Ordering::Relaxed) {
                let size = fs::metadata(&target).map_or(0, |m| m.len());
                progress.advance(size.min(total), total);
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    let copy = async {
        let result = match source {
            Some(source) => {
                let (from, to) = (source.to_path_buf(), target.to_path_buf());
                off_the_runtime(move || online_backup(&from, &to))
                    .await
                    .map_err(|e| BackupError::Write {
                        dir: crate::durable::parent(target).to_path_buf(),
                        reason: e.to_string(),
                    })
            }
            None => sqlx::query("VACUUM INTO ?")
                .bind(file_uri(target))
                .execute(&mut *conn)
                .await
                .map(drop)
                .map_err(BackupError::from),
        };
        done.store(true, Ordering::Relaxed);
        result
    };
    let (result, ()) = tokio::join!(copy, watcher);
    result?;
    progress.advance(total, total);
    Ok(())
}

/// `target` as a SQLite URI that opens a file on disk. `VACUUM INTO` attaches its target
/// with the source connection's open flags: an in-memory database's include
/// `SQLITE_OPEN_MEMORY`, so a plain path would be "written" into memory and leave the
/// file empty. `mode=rwc` clears that flag (and `cache=private` the shared cache).
/// Every byte outside a safe set is percent-encoded: `?`, `#` and `%` in a path, and
/// paths that are not UTF-8.
fn file_uri(target: &Path) -> String {
    use std::os::unix::ffi::OsStrExt as _;
    let absolute = std::path::absolute(target).unwrap_or_else(|_| target.to_path_buf());
    let mut uri = String::from("file:");
    for &byte in absolute.as_os_str().as_bytes() {
        if byte.is_ascii_alphanumeric() || b"/-_.~".contains(&byte) {
            uri.push(char::from(byte));
        } else {
            uri.push_str(&format!("%{byte:02X}"));
        }
    }
    uri.push_str("?mode=rwc&cache=private");
    uri
}

/// Copies `source` into `target` with the online backup API in one step, then makes the
/// copy a self-contained rollback-journal database (a copy of a WAL database is marked
/// WAL, and would create `-wal`/`-shm` files beside it when opened).
fn online_backup(source: &Path, target: &Path) -> std::io::Result<()> {
    let sqlite = |e: rusqlite::Error| std::io::Error::other(e.to_string());
    let from = rusqlite::Connection::open_with_flags(
        source,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(sqlite)?;
    let mut to = rusqlite::Connection::open(target).map_err(sqlite)?;
    // A temporary file until it is verified, synced and renamed by the caller: no journal
    // and no sync of its own (a killed copy is thrown away, never resumed).
    to.execute_batch("PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF;")
        .map_err(sqlite)?;
    let copied = AtomicBool::new(false);
    std::thread::scope(|scope| {
        scope.spawn(|| flush_while_copying(target, &copied));
        let result = copy_all(&from, &mut to);
        copied.store(true, Ordering::Relaxed);
        result
    })
    .map_err(sqlite)?;
    to.close().map_err(|(_, e)| sqlite(e))?;
    mark_rollback_journal(target)
}

/// Marks the copy as a rollback-journal database: bytes 18 and 19 of the header (the file
/// format's write and read versions) say 1 instead of the source's 2 (WAL). This is what
/// `PRAGMA journal_mode = DELETE` writes, without a detour through a `-wal` and `-shm`
/// of the copy, which nothing was ever written to.
fn mark_rollback_journal(target: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::FileExt as _;
    let file = fs::OpenOptions::new().write(true).open(target)?;
    file.write_all_at(&[1, 1], 18)
}

/// The backup proper: every page, in one step (see the module's documentation).
fn copy_all(from: &rusqlite::Connection, to: &mut rusqlite::Connection) -> rusqlite::Result<()> {
    {
        let backup = Backup::new(from, to)?;
        let deadline = Instant::now() + BUSY_LIMIT;
        loop {
            match backup.step(-1)? {
                StepResult::Done => break,
                StepResult::More => {}
                StepResult::Busy | StepResult::Locked if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10));
                }
                _ => {
                    return Err(rusqlite::Error::SqliteFailure(
                        rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY),
                        Some("the database stayed locked".into()),
                    ));
                }
            }
        }
    }
    Ok(())
}

/// Writes the copy's pages out to disk as they come, every [`FLUSH_EVERY`], until
/// `copied`: a gigabyte of dirty pages flushed at the end would hold up every other
/// `fsync` on the file system for a second, the live database's checkpoints included.
fn flush_while_copying(target: &Path, copied: &AtomicBool) {
    let Ok(file) = fs::File::open(target) else {
        return;
    };
    while !copied.load(Ordering::Relaxed) {
        std::thread::sleep(FLUSH_EVERY);
        let _ = file.sync_data();
    }
}
