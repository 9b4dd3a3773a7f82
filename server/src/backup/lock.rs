//! The lock of a backup directory (its `.lock`), taken by every backup, prune and copy
//! writing there: waited for within a bound, saying what it waits for, never forever.

use std::fs::{File, TryLockError};
use std::path::Path;
use std::time::{Duration, Instant};

use super::{BackupError, io_error};
use crate::durable;
use crate::progress::Progress;

/// How long a backup, prune or copy waits by default for another one to release the
/// directory's lock: a large backup takes minutes, a wedged process forever.
pub const LOCK_WAIT: Duration = Duration::from_secs(120);

/// How often a waiting process tries the lock again.
const RETRY_EVERY: Duration = Duration::from_millis(100);

/// The lock of `dir`, or `None` while another process holds it.
fn try_lock(dir: &Path, owner: Option<durable::Owner>) -> Result<Option<File>, BackupError> {
    let file = durable::open_lock_file(&dir.join(".lock"), owner)
        .map_err(io_error("cannot lock backup directory", dir))?;
    match file.try_lock() {
        Ok(()) => Ok(Some(file)),
        Err(TryLockError::WouldBlock) => Ok(None),
        Err(TryLockError::Error(e)) => Err(io_error("cannot lock backup directory", dir)(e)),
    }
}

fn waiting(dir: &Path, wait: Duration, progress: &dyn Progress) {
    progress.step(&format!(
        "waiting (at most {} s) for the lock on {}: another backup, prune or copy is writing there",
        wait.as_secs(),
        dir.display()
    ));
}

fn gave_up(dir: &Path, wait: Duration) -> BackupError {
    BackupError::Locked {
        dir: dir.to_path_buf(),
        waited_secs: wait.as_secs(),
    }
}

/// Takes the lock of `dir`, waiting at most `wait` (blocking this thread).
pub(super) fn lock_dir(
    dir: &Path,
    owner: Option<durable::Owner>,
    wait: Duration,
    progress: &dyn Progress,
) -> Result<File, BackupError> {
    let deadline = Instant::now().checked_add(wait);
    let mut said = false;
    loop {
        if let Some(file) = attempt(dir, owner, wait, deadline, &mut said, progress)? {
            return Ok(file);
        }
        std::thread::sleep(RETRY_EVERY);
    }
}

/// Takes the lock of `dir`, waiting at most `wait` without holding up the runtime; the
/// wait ends when the future is dropped (the server shuts down).
pub(super) async fn lock_dir_async(
    dir: &Path,
    owner: Option<durable::Owner>,
    wait: Duration,
    progress: &dyn Progress,
) -> Result<File, BackupError> {
    let deadline = Instant::now().checked_add(wait);
    let mut said = false;
    loop {
        if let Some(file) = attempt(dir, owner, wait, deadline, &mut said, progress)? {
            return Ok(file);
        }
        tokio::time::sleep(RETRY_EVERY).await;
    }
}

/// One try at the lock of `dir`: the file once taken, `None` to try again, an error once
/// `deadline` has passed; says once (`said`) that it waits.
fn attempt(
    dir: &Path,
    owner: Option<durable::Owner>,
    wait: Duration,
    deadline: Option<Instant>,
    said: &mut bool,
    progress: &dyn Progress,
) -> Result<Option<File>, BackupError> {
    if let Some(file) = try_lock(dir, owner)? {
        return Ok(Some(file));
    }
    if deadline.is_some_and(|deadline| Instant::now() >= deadline) {
        return Err(gave_up(dir, wait));
    }
    if !std::mem::replace(said, true) {
        waiting(dir, wait, progress);
    }
    Ok(None)
}
