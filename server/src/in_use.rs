//! A marker that a server has a SQLite database open, so that a restore can refuse to run under it.
//!
//! The server holds a shared lock on `<database>.in-use` for as long as it runs; a
//! restore takes the exclusive lock for as long as it swaps files. The operating system
//! drops the locks when a process dies, so a crash never leaves a stale marker.

use std::fs::{File, TryLockError};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// Why the marker could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum InUseError {
    /// Another process holds the database (a server, or a restore in progress).
    #[error("{0}")]
    Busy(String),
    /// The marker file cannot be used.
    #[error("cannot use {path}: {source}")]
    Io {
        /// The marker file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// Held while the lock is held; dropping it releases the lock.
#[derive(Debug)]
pub struct InUse {
    _file: File,
}

fn marker_path(database: &Path) -> PathBuf {
    let mut name = database.as_os_str().to_owned();
    name.push(".in-use");
    PathBuf::from(name)
}

/// Opens (creating) the marker, owned like the database file.
fn open(database: &Path) -> Result<(File, PathBuf), InUseError> {
    let path = marker_path(database);
    let io = |source| InUseError::Io {
        path: path.clone(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let owner = crate::durable::owner_of(database);
    let file = crate::durable::open_lock_file(&path, owner).map_err(io)?;
    Ok((file, path))
}

/// A server claims the database: a shared lock, with its pid recorded for messages.
pub fn claim_for_server(database: &Path) -> Result<InUse, InUseError> {
    let (mut file, path) = open(database)?;
    match file.try_lock_shared() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            return Err(InUseError::Busy(format!(
                "database {} is being restored; start the server when the restore has finished",
                database.display()
            )));
        }
        Err(TryLockError::Error(source)) => return Err(InUseError::Io { path, source }),
    }
    // The pid only improves messages; a read-only marker goes without it.
    if file.set_len(0).is_ok() {
        let _ = write!(file, "{}", std::process::id());
    }
    Ok(InUse { _file: file })
}

/// A maintenance command claims the database exclusively; fails while a server runs on it.
pub fn claim_exclusive(database: &Path) -> Result<InUse, InUseError> {
    let (mut file, path) = open(database)?;
    match file.try_lock() {
        Ok(()) => Ok(InUse { _file: file }),
        Err(TryLockError::WouldBlock) => {
            let mut pid = String::new();
            // A failed read only loses the pid from the message.
            let _ = file.read_to_string(&mut pid);
            let who = match pid.trim() {
                "" => "a running server".to_string(),
                pid => format!("a running server (pid {pid})"),
            };
            Err(InUseError::Busy(format!(
                "database {} is open by {who}; stop it first (Ctrl-C, or `kill -TERM <pid>`), or pass --while-in-use",
                database.display()
            )))
        }
        Err(TryLockError::Error(source)) => Err(InUseError::Io { path, source }),
    }
}
