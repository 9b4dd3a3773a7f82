//! Copying a verified backup and its manifest to a second directory (`backup_copy_to`,
//! e.g. a mounted remote file system): a backup on the database's own disk dies with it.
//!
//! The copy directory is never created: a missing one is a share that is not mounted,
//! and a directory made in its place would sit on the disk the copy is meant to survive.
//! Nor may it be `backup_dir`, inside it or around it, however a symlink or `..` spells
//! it: checked when the settings are read, and again at every copy (a link can change).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::create::create_dir_private;
use super::lock::lock_dir;
use super::manifest::{open_regular, read_manifest, write_manifest};
use super::{BackupError, database_owner, io_error};
use crate::durable;
use crate::paths::Overlap;
use crate::progress::Progress;
use crate::url::DatabaseUrl;

/// Copies `backup` (with its manifest) into `dir`, all or nothing: the copy is written to
/// a hidden temporary file, synced, checked against the manifest's sha256, then the
/// manifest and only then the final name appear. Waits at most `wait` for another
/// process's lock on `dir`. Blocking: run it off the async runtime.
pub fn copy_to(
    backup: &Path,
    dir: &Path,
    url: &DatabaseUrl,
    wait: Duration,
    progress: &dyn Progress,
) -> Result<PathBuf, BackupError> {
    let owner = database_owner(url);
    let mut manifest = read_manifest(backup).map_err(|e| BackupError::Invalid {
        path: backup.to_path_buf(),
        reason: e.to_string(),
    })?;
    let unusable = |problem| BackupError::CopyDir {
        dir: dir.to_path_buf(),
        problem,
    };
    match fs::metadata(dir) {
        Ok(meta) if meta.is_dir() => {}
        Ok(_) => return Err(unusable(CopyDirProblem::NotADirectory)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(unusable(CopyDirProblem::Missing));
        }
        Err(e) => return Err(io_error("cannot read the copy directory", dir)(e)),
    }
    if let Some(alias) = crate::paths::overlap(durable::parent(backup), dir) {
        return Err(unusable(CopyDirProblem::Aliased(alias)));
    }
    create_dir_private(dir, owner, progress)?;
    let _lock = lock_dir(dir, owner, wait, progress)?;
    // Debris of a copy that was killed.
    super::catalog::sweep(dir);
    // Its place in this directory, under its lock.
    manifest.sequence = Some(super::catalog::next_sequence(dir, owner)?);
    let final_path = dir.join(&manifest.file);
    let write_error = |e: io::Error| BackupError::Write {
        dir: dir.to_path_buf(),
        reason: e.to_string(),
    };
    let mut copy = durable::temp_in(dir, &manifest.file, durable::PARTIAL).map_err(write_error)?;
    durable::give(copy.as_file(), owner);
    io::copy(
        &mut open_regular(backup).map_err(io_error("cannot read", backup))?,
        copy.as_file_mut(),
    )
    .map_err(write_error)?;
    copy.as_file().sync_all().map_err(write_error)?;
    let (sha256, size) = durable::sha256_file(copy.path()).map_err(write_error)?;
    if sha256 != manifest.sha256 || size != manifest.size {
        return Err(BackupError::Write {
            dir: dir.to_path_buf(),
            reason: "the copy does not match the backup's checksum".into(),
        });
    }
    // Never over another file: a backup of the same name (another machine's) stays,
    // and so does its manifest.
    if final_path.exists() || super::manifest_path(&final_path).exists() {
        return Err(BackupError::Write {
            dir: dir.to_path_buf(),
            reason: format!("{} is there already (another machine's?)", manifest.file),
        });
    }
    write_manifest(&final_path, &manifest, owner)
        .map_err(io_error("cannot write manifest for", &final_path))?;
    if let Err(e) = copy.persist_noclobber(&final_path) {
        let _ = std::fs::remove_file(super::manifest_path(&final_path));
        return Err(io_error("cannot move the copy to", &final_path)(e.error));
    }
    durable::sync_dir(dir);
    Ok(final_path)
}

/// Why the copy directory cannot take a copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CopyDirProblem {
    /// It does not exist (an unmounted share); it is never created.
    #[error(
        "does not exist (is the share mounted?); it is not created, so that no copy lands on the local disk"
    )]
    Missing,
    /// Something else than a directory is there.
    #[error("is not a directory")]
    NotADirectory,
    /// It resolves to the backup directory, inside it or around it.
    #[error("{}; name another file system", .0.describe("backup_dir"))]
    Aliased(Overlap),
}
