//! The manifest beside every backup, and the identity of the database it came from.

use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::durable;
use crate::url::{DatabaseUrl, DbKind};

/// Manifest format version: 2 added `database`, 3 `sequence`.
pub const MANIFEST_FORMAT: u32 = 3;

/// How far ahead of this machine's clock a backup's time may be before it is called
/// dated in the future (another machine's clock may be a little off).
const CLOCK_SKEW: time::Duration = time::Duration::minutes(10);

/// What is known about a backup, stored as `<backup>.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Manifest {
    /// Manifest format version.
    pub format: u32,
    /// File name of the backup (in the same directory).
    pub file: String,
    /// Engine the backup came from.
    pub kind: DbKind,
    /// The database the backup came from ([`database_identity`]); absent in format 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
    /// Hex sha256 of the backup file.
    pub sha256: String,
    /// Size in bytes.
    pub size: u64,
    /// Highest migration version applied in the backup.
    pub schema_version: i32,
    /// When the backup was taken (RFC 3339, UTC), by the clock of the machine that took it.
    pub created_at: String,
    /// Its place among the backups of its directory: one more than the highest there when
    /// it was written (a copy gets the next one of the directory it is copied to). Unlike
    /// `created_at`, no clock can make it lie; absent before format 3.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sequence: Option<u64>,
    /// Whether the backup passed verification when it was taken.
    pub verified: bool,
    /// How the file is compressed; absent for a plain SQLite file or a pg_dump archive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compression: Option<Compression>,
}

impl Manifest {
    /// When the backup was taken, parsed; `None` when the manifest holds no valid time.
    pub fn taken_at(&self) -> Option<time::OffsetDateTime> {
        time::OffsetDateTime::parse(
            &self.created_at,
            &time::format_description::well_known::Rfc3339,
        )
        .ok()
    }

    /// Whether `created_at` is ahead of this machine's clock (by more than a few minutes):
    /// taken while a clock was wrong, or edited.
    pub fn dated_in_future(&self) -> bool {
        self.taken_at()
            .is_some_and(|at| at > time::OffsetDateTime::now_utc() + CLOCK_SKEW)
    }
}

/// Compression of a backup file (opt-in: `db-backup --compress`).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// gzip (`.db.gz`).
    Gzip,
}

/// The identity of a database, recorded in its backups' manifests and used to select
/// them for retention: `sqlite://<machine><absolute path>` (the machine's host name, so
/// that machines sharing a backup directory never take each other's backups for their
/// own), or `postgres://host:port/db` (no credentials).
pub fn database_identity(url: &DatabaseUrl) -> String {
    match url {
        DatabaseUrl::Sqlite { path } => format!(
            "sqlite://{}{}",
            rustix::system::uname().nodename().to_string_lossy(),
            path.display()
        ),
        DatabaseUrl::SqliteMemory => "sqlite::memory:".into(),
        DatabaseUrl::Postgres { url } => {
            crate::pg::identity(url).unwrap_or_else(|_| url.host_str().unwrap_or("").into())
        }
    }
}

/// `<backup>.json`.
pub fn manifest_path(backup: &Path) -> PathBuf {
    let mut name = backup.as_os_str().to_owned();
    name.push(".json");
    PathBuf::from(name)
}

/// Opens `path` for reading when it is a regular file (a symlink is followed), without
/// ever blocking: a FIFO or a device named like a backup is refused as "not a regular
/// file" instead of hanging its reader (and whoever waits for it: a lock, a shutdown).
pub(super) fn open_regular(path: &Path) -> io::Result<File> {
    let nonblocking = rustix::fs::OFlags::NONBLOCK.bits() as i32;
    let file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(nonblocking)
        .open(path)?;
    if !file.metadata()?.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    Ok(file)
}

/// Why a backup's manifest cannot be used, or does not match its backup.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// No `<backup>.json` beside it.
    #[error("no manifest {} (was it made by db-backup?)", .0.display())]
    Missing(PathBuf),
    /// The manifest cannot be read or parsed.
    #[error("unreadable manifest {}: {reason}", path.display())]
    Unreadable {
        /// The manifest.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The manifest names another file.
    #[error("its manifest describes another file ({0})")]
    OtherFile(String),
    /// The backup itself cannot be read.
    #[error("{0}")]
    BackupUnreadable(io::Error),
    /// The backup's size is not the manifest's.
    #[error("size is {size} bytes, the manifest says {expected}")]
    Size {
        /// On disk.
        size: u64,
        /// In the manifest.
        expected: u64,
    },
    /// The backup's sha256 is not the manifest's.
    #[error("checksum does not match the manifest")]
    Checksum,
}

/// Reads the manifest of `backup`.
pub fn read_manifest(backup: &Path) -> Result<Manifest, ManifestError> {
    let path = manifest_path(backup);
    let unreadable = |reason: String| ManifestError::Unreadable {
        path: path.clone(),
        reason,
    };
    let mut text = String::new();
    match open_regular(&path) {
        Ok(mut file) => file
            .read_to_string(&mut text)
            .map_err(|e| unreadable(e.to_string()))?,
        Err(e) if e.kind() == io::ErrorKind::InvalidInput => {
            return Err(unreadable(e.to_string()));
        }
        Err(_) => return Err(ManifestError::Missing(path.clone())),
    };
    serde_json::from_str(&text).map_err(|e| unreadable(e.to_string()))
}

/// Writes `manifest` as the manifest of `backup`, atomically and durably, owned by
/// `owner` when given (and permitted).
pub fn write_manifest(
    backup: &Path,
    manifest: &Manifest,
    owner: Option<durable::Owner>,
) -> std::io::Result<()> {
    let json = serde_json::to_string_pretty(manifest).expect("a manifest serializes");
    durable::write_private(&manifest_path(backup), json.as_bytes(), owner)
}

/// Whether `manifest` is the manifest of `backup`: it names that file. A manifest copied
/// or edited to sit beside another file describes something else.
pub(super) fn check_names(backup: &Path, manifest: &Manifest) -> Result<(), ManifestError> {
    let name = backup.file_name().unwrap_or_default().to_string_lossy();
    if manifest.file == name {
        Ok(())
    } else {
        Err(ManifestError::OtherFile(manifest.file.clone()))
    }
}

/// Files this process has checked already, by path, with the size, modification time
/// and checksum they had: unchanged, they are not read again (a server pruning hourly
/// would otherwise re-read every kept backup each time).
static CHECKED: std::sync::Mutex<Vec<(PathBuf, u64, std::time::SystemTime, String)>> =
    std::sync::Mutex::new(Vec::new());

/// Checks size and sha256 of `backup` against its manifest.
pub fn check_checksum(backup: &Path, manifest: &Manifest) -> Result<(), ManifestError> {
    let stamp = open_regular(backup)
        .and_then(|f| f.metadata())
        .and_then(|m| Ok((m.len(), m.modified()?)))
        .map_err(ManifestError::BackupUnreadable)?;
    let checked = CHECKED.lock().unwrap_or_else(|e| e.into_inner());
    if checked.iter().any(|(path, size, modified, sha256)| {
        path == backup && (*size, *modified) == stamp && *sha256 == manifest.sha256
    }) && stamp.0 == manifest.size
    {
        return Ok(());
    }
    drop(checked);
    let (sha256, size) = durable::sha256_file(backup).map_err(ManifestError::BackupUnreadable)?;
    if size != manifest.size {
        return Err(ManifestError::Size {
            size,
            expected: manifest.size,
        });
    }
    if sha256 != manifest.sha256 {
        return Err(ManifestError::Checksum);
    }
    let mut checked = CHECKED.lock().unwrap_or_else(|e| e.into_inner());
    // Forget files that are gone (pruned, restored elsewhere): the list stays as long as
    // the backups there are.
    checked.retain(|(path, ..)| path != backup && path.exists());
    checked.push((backup.to_path_buf(), stamp.0, stamp.1, sha256));
    Ok(())
}
