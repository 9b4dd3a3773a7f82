//! Backups: consistent online snapshots, verified, with a manifest; listing, retention, restore.
//!
//! SQLite: a page copy into a temporary file with the online backup API (`snapshot`: one
//! read transaction, so writers keep going in WAL mode), `PRAGMA integrity_check`,
//! sha256, then rename. The backup is a plain
//! SQLite file. PostgreSQL: `pg_dump -Fc` of an exported snapshot (the schema version in
//! the manifest is read in that same snapshot), verified by reading the whole archive
//! with `pg_restore`.
//!
//! Every backup `<stem>-<UTC timestamp>-v<schema>.<ext>` has a manifest beside it,
//! `<backup file>.json`, holding the database's identity, checksum, size, schema version,
//! kind and time. The manifest is written before the backup gets its final name, so a
//! file under a final name always has its manifest; temporary files are swept (see
//! [`crate::durable`]).
//!
//! | module | job |
//! |---|---|
//! | `manifest` | the manifest, the database identity, checksums |
//! | `create` | taking a backup |
//! | `catalog` | listing and pruning (`--keep`) |
//! | `restore` | verifying a backup and swapping it in, all or nothing |
//! | `copy` | copying a backup and its manifest to a second directory |
//! | `lock` | the directory's lock, waited for within a bound |
//! | `schedule` | the backups the server takes itself, and their state for `/health/db` |

mod catalog;
mod copy;
mod create;
mod integrity;
mod lock;
mod manifest;
mod restore;
mod schedule;
mod snapshot;

use std::io;
use std::path::{Path, PathBuf};

use crate::url::DatabaseUrl;

pub use catalog::{BackupEntry, BackupState, list, prune};
pub use copy::{CopyDirProblem, copy_to};
pub use create::{create, create_within};
pub use lock::LOCK_WAIT;
pub use manifest::{Compression, Manifest, database_identity, manifest_path};
pub use restore::{
    VerifiedBackup, other_pg_sessions, put_back, restore_postgres, swap_in_sqlite, verify,
};
pub use schedule::{BackupHealth, Schedule};

/// A backup or restore failure.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// A file operation failed.
    #[error("{what} {path}: {source}{}", disk_full_hint(.source))]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// Writing the backup failed (e.g. the disk is full); nothing was left behind.
    #[error("cannot write the backup into {}: {reason}", .dir.display())]
    Write {
        /// The backup directory.
        dir: PathBuf,
        /// Why.
        reason: String,
    },
    /// The file is not a usable backup; nothing was changed.
    #[error("{path} is not a usable backup: {reason}; nothing was changed")]
    Invalid {
        /// The backup file.
        path: PathBuf,
        /// Why not.
        reason: String,
    },
    /// The copy directory (`backup_copy_to`) cannot take a copy; nothing was copied.
    #[error("the copy directory {} {problem}", .dir.display())]
    CopyDir {
        /// The directory, as configured.
        dir: PathBuf,
        /// What is wrong with it.
        problem: CopyDirProblem,
    },
    /// Another process held the backup directory's lock for longer than the wait.
    #[error(
        "the backup directory {} is locked by another backup, prune or copy (its .lock), still after {waited_secs} s; nothing was changed",
        .dir.display()
    )]
    Locked {
        /// The directory.
        dir: PathBuf,
        /// How long this process waited.
        waited_secs: u64,
    },
    /// A PostgreSQL client tool is missing or failed.
    #[error(transparent)]
    Tool(#[from] crate::pg::ToolError),
    /// The database cannot be swapped safely right now; nothing was changed.
    #[error("{0}; nothing was changed")]
    Refused(String),
    /// The database is in use.
    #[error(transparent)]
    InUse(#[from] crate::in_use::InUseError),
    /// The database failed.
    #[error(transparent)]
    Db(#[from] crate::db::DbError),
    /// Reading migration state failed.
    #[error(transparent)]
    Migration(#[from] crate::migrations::MigrationError),
}

impl From<sqlx::Error> for BackupError {
    fn from(e: sqlx::Error) -> Self {
        Self::Db(e.into())
    }
}

fn disk_full_hint(e: &io::Error) -> &'static str {
    if matches!(
        e.kind(),
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
    ) {
        " (the disk is full; free space and retry)"
    } else {
        ""
    }
}

fn io_error<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> BackupError + 'a {
    move |source| BackupError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// The owner of the SQLite database file: backups taken as root stay usable by the
/// service user that owns the database.
pub(super) fn database_owner(url: &DatabaseUrl) -> Option<crate::durable::Owner> {
    crate::durable::owner_of(url.sqlite_path()?)
}

/// Runs blocking file work (hashing, compressing, syncing) on tokio's blocking pool, so
/// that a backup taken inside the server never holds up a runtime worker.
async fn off_the_runtime<T: Send + 'static>(
    work: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> std::io::Result<T> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(std::io::Error::other)
        .and_then(|result| result)
}
