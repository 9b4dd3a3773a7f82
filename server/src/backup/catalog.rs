//! Listing the backups in a directory, and retention (`db-backup --keep N`).

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::lock::lock_dir;
use super::manifest::{
    Manifest, check_checksum, check_names, database_identity, manifest_path, open_regular,
    read_manifest,
};
use super::{BackupError, io_error};
use crate::durable;
use crate::progress::Progress;
use crate::url::DatabaseUrl;

/// File name endings of backups: SQLite, gzipped SQLite, PostgreSQL custom format.
pub(super) const BACKUP_EXTENSIONS: &[&str] = &[".db", ".db.gz", ".dump"];

/// A backup on disk and its current state.
#[derive(Debug, Clone)]
pub struct BackupEntry {
    /// The backup file.
    pub path: PathBuf,
    /// Its manifest, if readable.
    pub manifest: Option<Manifest>,
    /// Whether it checks out now.
    pub state: BackupState,
    /// Its manifest claims a `sequence` higher than the directory ever handed out (an
    /// edited manifest): it is listed, and pruned, as if it had none.
    pub untrusted_sequence: bool,
}

/// Verification state of a listed backup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackupState {
    /// Verified when taken (its manifest says), and the file still matches its checksum.
    Verified,
    /// The file matches its checksum, but its manifest says it was not verified when taken:
    /// never restored, never pruned.
    Unverified,
    /// The file no longer matches its manifest, or the manifest is another file's.
    Corrupt(String),
    /// No readable manifest.
    NoManifest,
}

/// Lists the backups in `dir`, oldest first, checking each file against its manifest.
/// Hidden files are never listed.
///
/// The order is the manifests' `sequence`, which no clock can fake, checked against the
/// directory's counter. Backups without one (taken before it existed) or with one the
/// directory never handed out come first, by time then name, those dated in the future
/// first of all: a wrong clock or an edited manifest never makes old data the newest.
pub fn list(dir: &Path) -> Result<Vec<BackupEntry>, BackupError> {
    if !dir.is_dir() {
        return Ok(Vec::new());
    }
    let issued = issued(dir);
    let mut entries: Vec<BackupEntry> = fs::read_dir(dir)
        .map_err(io_error("cannot read backup directory", dir))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| is_backup_name(p))
        .map(|path| {
            let manifest = read_manifest(&path).ok();
            let state = match &manifest {
                None => BackupState::NoManifest,
                Some(m) => match check_checksum(&path, m).and_then(|()| check_names(&path, m)) {
                    Ok(()) if !m.verified => BackupState::Unverified,
                    Ok(()) => BackupState::Verified,
                    Err(reason) => BackupState::Corrupt(reason.to_string()),
                },
            };
            let untrusted_sequence = manifest
                .as_ref()
                .and_then(|m| m.sequence)
                .zip(issued)
                .is_some_and(|(claimed, issued)| claimed > issued);
            BackupEntry {
                path,
                manifest,
                state,
                untrusted_sequence,
            }
        })
        .collect();
    entries.sort_by_cached_key(|e| {
        let manifest = e.manifest.as_ref();
        (
            manifest
                .and_then(|m| m.sequence)
                .filter(|_| !e.untrusted_sequence),
            !manifest.is_some_and(Manifest::dated_in_future),
            manifest.and_then(Manifest::taken_at),
            e.path.clone(),
        )
    });
    Ok(entries)
}

/// The file in a backup directory holding the highest `sequence` handed out there,
/// written under the directory's lock: a manifest claiming more was edited (or written
/// by another program), and its claim is not trusted.
const SEQUENCE_FILE: &str = ".sequence";

/// The highest `sequence` handed out in `dir`, when its counter file says so (a
/// directory written only by older versions has none).
fn issued(dir: &Path) -> Option<u64> {
    let mut text = String::new();
    open_regular(&dir.join(SEQUENCE_FILE))
        .ok()?
        .read_to_string(&mut text)
        .ok()?;
    text.trim().parse().ok()
}

/// Hands out the `sequence` of the next backup written into `dir`: one more than the
/// directory's counter, which is advanced (durably) first. A directory without a counter
/// starts from the highest sequence of its manifests. The caller holds the directory lock.
pub(super) fn next_sequence(dir: &Path, owner: Option<durable::Owner>) -> Result<u64, BackupError> {
    let highest = issued(dir).unwrap_or_else(|| {
        fs::read_dir(dir)
            .into_iter()
            .flatten()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| is_backup_name(p))
            .filter_map(|p| read_manifest(&p).ok()?.sequence)
            .max()
            .unwrap_or(0)
    });
    let next = highest.saturating_add(1);
    let counter = dir.join(SEQUENCE_FILE);
    durable::write_private(&counter, format!("{next}\n").as_bytes(), owner).map_err(|e| {
        BackupError::Write {
            dir: dir.to_path_buf(),
            reason: format!("its counter {SEQUENCE_FILE}: {e}"),
        }
    })?;
    Ok(next)
}

/// Whether `dir` holds nothing but backups, their manifests and this crate's hidden files.
pub(super) fn holds_only_backups(dir: &Path) -> bool {
    fs::read_dir(dir).is_ok_and(|entries| {
        entries.filter_map(|e| e.ok()).all(|e| {
            let path = e.path();
            let name = e.file_name().to_string_lossy().to_string();
            name.starts_with('.')
                || is_backup_name(&path)
                || name
                    .strip_suffix(".json")
                    .is_some_and(|b| is_backup_name(Path::new(b)))
        })
    })
}

fn is_backup_name(path: &Path) -> bool {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    !name.starts_with('.') && BACKUP_EXTENSIONS.iter().any(|ext| name.ends_with(ext))
}

/// Keeps the newest `keep` verified backups of the database at `url` in `dir` and deletes
/// its older ones. A backup belongs to the database whose identity its manifest records;
/// other databases' backups, backups without a manifest, corrupt ones (evidence) and
/// `just_taken` are never deleted. Waits at most `wait` for another process's lock on
/// `dir`. Returns what was deleted.
pub fn prune(
    dir: &Path,
    url: &DatabaseUrl,
    keep: usize,
    just_taken: &Path,
    wait: Duration,
    progress: &dyn Progress,
) -> Result<Vec<PathBuf>, BackupError> {
    let _lock = lock_dir(dir, super::database_owner(url), wait, progress)?;
    let identity = database_identity(url);
    let mut ours: Vec<BackupEntry> = list(dir)?
        .into_iter()
        .filter(|e| e.state == BackupState::Verified)
        .filter(|e| {
            e.manifest
                .as_ref()
                .is_some_and(|m| m.database.as_deref() == Some(identity.as_str()))
        })
        .collect();
    // Newest first: the newest `keep` stay, and so does the one just taken, wherever a
    // concurrent backup put it in the order.
    ours.reverse();
    let mut removed = Vec::new();
    for entry in ours.into_iter().skip(keep) {
        if entry.path == just_taken {
            continue;
        }
        remove_backup(&entry.path)?;
        removed.push(entry.path);
    }
    Ok(removed)
}

/// Deletes a backup and its manifest without ever leaving a final-named backup without its
/// manifest, or a manifest without its backup: the backup is first renamed to a hidden
/// temporary name (swept if the process dies), then the manifest goes, then the file.
fn remove_backup(path: &Path) -> Result<(), BackupError> {
    let dir = durable::parent(path);
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let doomed = dir.join(format!(".{name}.deleting{}", durable::PARTIAL));
    fs::rename(path, &doomed).map_err(io_error("cannot delete", path))?;
    let manifest = manifest_path(path);
    match fs::remove_file(&manifest) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            // Put the backup back rather than leave it without its manifest.
            let _ = fs::rename(&doomed, path);
            return Err(io_error("cannot delete", &manifest)(e));
        }
    }
    fs::remove_file(&doomed).map_err(io_error("cannot delete", &doomed))?;
    durable::sync_dir(dir);
    Ok(())
}

/// Removes debris of killed backups and restores in `dir`: unlocked temporary files, and manifests
/// whose backup is gone (a kill between writing the manifest and renaming the backup).
/// The caller holds the directory lock, so no backup is being written meanwhile.
pub(super) fn sweep(dir: &Path) {
    // Also a killed PostgreSQL restore's script, staged beside its archive.
    durable::sweep(dir, ".", &[durable::PARTIAL, durable::RESTORING]);
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for path in entries.filter_map(|e| e.ok().map(|e| e.path())) {
        let Some(backup) = path
            .to_str()
            .and_then(|p| p.strip_suffix(".json"))
            .map(PathBuf::from)
        else {
            continue;
        };
        if is_backup_name(&backup) && !backup.exists() && read_manifest(&backup).is_ok() {
            let _ = fs::remove_file(&path);
        }
    }
}
