//! Crash-safe file writing: temporary files that clean themselves up (and are swept when
//! a killed process could not), fsync before every rename, directory fsync after it.
//!
//! Every temporary file this crate writes is a hidden `.<name>.<random><suffix>` in the
//! directory of its final name, created 0600 and held under an exclusive `flock` for as
//! long as it is in use. A process killed with SIGKILL leaves it behind unlocked; the next
//! [`sweep`] of that directory removes it. Files still locked belong to a live process and
//! are never touched.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// A file owner: uid and gid.
pub type Owner = (u32, u32);

/// The owner of the file at `path`, if it exists.
pub fn owner_of(path: &Path) -> Option<Owner> {
    fs::metadata(path).ok().map(|m| (m.uid(), m.gid()))
}

/// Gives `file` to `owner`, best effort: only root can give a file away, and for anyone
/// else the owner is already right.
pub fn give(file: &File, owner: Option<Owner>) {
    if let Some((uid, gid)) = owner {
        let _ = std::os::unix::fs::fchown(file, Some(uid), Some(gid));
    }
}

/// Suffix of a backup or manifest being written.
pub const PARTIAL: &str = ".partial";
/// Suffix of a database file being staged for a restore.
pub const RESTORING: &str = ".restoring";

/// A private (0600) temporary file beside `final_name` in `dir`, locked while this value lives.
pub fn temp_in(dir: &Path, final_name: &str, suffix: &str) -> io::Result<tempfile::NamedTempFile> {
    temp_with_mode(dir, final_name, suffix, 0o600)
}

/// Like [`temp_in`], created with `mode` (less the umask).
pub fn temp_with_mode(
    dir: &Path,
    final_name: &str,
    suffix: &str,
    mode: u32,
) -> io::Result<tempfile::NamedTempFile> {
    // A concurrent `sweep` may hold the new file's lock for a moment, or have deleted it
    // between its creation and our lock: then start over with another name.
    for _ in 0..8 {
        let temp = tempfile::Builder::new()
            .prefix(&format!(".{final_name}."))
            .suffix(suffix)
            .permissions(std::os::unix::fs::PermissionsExt::from_mode(mode))
            .tempfile_in(dir)?;
        match temp.as_file().try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => continue,
            Err(std::fs::TryLockError::Error(e)) => return Err(e),
        }
        if is_at_path(temp.as_file(), temp.path()) {
            return Ok(temp);
        }
    }
    Err(io::Error::other(format!(
        "temporary files in {} keep disappearing",
        dir.display()
    )))
}

/// Whether the open `file` is the one at `path` (not deleted or replaced since).
fn is_at_path(file: &File, path: &Path) -> bool {
    match (file.metadata(), fs::metadata(path)) {
        (Ok(open), Ok(at_path)) => (open.dev(), open.ino()) == (at_path.dev(), at_path.ino()),
        _ => false,
    }
}

/// Removes temporary files of dead processes in `dir`: hidden files starting with
/// `prefix` and ending in one of `suffixes` (or SQLite's `-journal`, `-wal` or `-shm` of one) that no live
/// process holds locked. A file that cannot be opened (another user's) counts as in use.
/// Returns what was removed.
pub fn sweep(dir: &Path, prefix: &str, suffixes: &[&str]) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut removed = Vec::new();
    for path in entries.filter_map(|e| e.ok().map(|e| e.path())) {
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        // SQLite's own files of a temporary database go with that file.
        let owner = ["-journal", "-wal", "-shm"]
            .iter()
            .find_map(|s| name.strip_suffix(s))
            .unwrap_or(&name);
        if !owner.starts_with('.')
            || !owner.starts_with(prefix)
            || !suffixes.iter().any(|s| owner.ends_with(s))
        {
            continue;
        }
        let owner_path = path.with_file_name(owner);
        let Ok(file) = File::open(&owner_path) else {
            // A journal whose file is gone is an orphan; anything else we cannot open is
            // not ours to judge.
            if owner_path != path && !owner_path.exists() && fs::remove_file(&path).is_ok() {
                removed.push(path);
            }
            continue;
        };
        // Unlink while holding the lock, and only the file that is still at the path.
        if file.try_lock().is_ok()
            && is_at_path(&file, &owner_path)
            && fs::remove_file(&path).is_ok()
        {
            removed.push(path);
        }
    }
    if !removed.is_empty() {
        sync_dir(dir);
    }
    removed
}

/// Writes `contents` to `path` atomically: a 0600 temporary file (given to `owner` when
/// permitted), fsynced, renamed over `path`.
pub fn write_private(path: &Path, contents: &[u8], owner: Option<Owner>) -> io::Result<()> {
    let dir = parent(path);
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let mut temp = temp_in(dir, &name, PARTIAL)?;
    give(temp.as_file(), owner);
    temp.write_all(contents)?;
    temp.as_file().sync_all()?;
    temp.persist(path).map_err(|e| e.error)?;
    sync_dir(dir);
    Ok(())
}

/// Writes `contents` to `path` atomically, with the mode a new file gets (0666 less the
/// umask): a temporary file beside it, fsynced, renamed over `path`. The temporary files
/// of earlier writes that were killed are swept first.
pub fn write_file(path: &Path, contents: &[u8]) -> io::Result<()> {
    let dir = parent(path);
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    sweep(dir, &format!(".{name}."), &[PARTIAL]);
    let mut temp = temp_with_mode(dir, &name, PARTIAL, 0o666)?;
    temp.write_all(contents)?;
    temp.as_file().sync_all()?;
    temp.persist(path).map_err(|e| e.error)?;
    sync_dir(dir);
    Ok(())
}

/// Makes a rename durable; failing to sync a directory only weakens durability.
pub fn sync_dir(dir: &Path) {
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

/// The directory of `path` (`.` for a bare name).
pub fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Hex sha256 and size of a file.
pub fn sha256_file(path: &Path) -> io::Result<(String, u64)> {
    let mut file = File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        size += n as u64;
        hasher.update(&buf[..n]);
    }
    let hex = hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Ok((hex, size))
}

/// Holds `<dir>/.lock` exclusively (waiting for it) until dropped: one writer per directory.
pub fn lock_dir(dir: &Path, owner: Option<Owner>) -> io::Result<File> {
    let file = open_lock_file(&dir.join(".lock"), owner)?;
    file.lock()?;
    Ok(file)
}

/// Opens (creating, 0644) a file used only for its lock. A new one is given to `owner`
/// (when permitted), so that a command run as root does not lock the service user out;
/// one that cannot be opened for writing is opened read-only (a lock works on either).
pub fn open_lock_file(path: &Path, owner: Option<Owner>) -> io::Result<File> {
    let created = !path.exists();
    let file = match OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o644)
        .open(path)
    {
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => File::open(path)?,
        other => other?,
    };
    if created {
        give(&file, owner);
    }
    Ok(file)
}
