//! Files and disks: a small tmpfs that fills up, a file's hash, and the debris a killed
//! command leaves.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::skip;

/// A small tmpfs mounted on a temporary directory (a disk that fills up), unmounted on drop.
pub struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (e.g. `"4m"`); `None` (reported as skipped) without permission.
    pub fn mount(size: &str) -> Option<Self> {
        let dir = tempfile::tempdir().expect("temp dir");
        let output = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0755"),
                "tmpfs",
            ])
            .arg(dir.path())
            .stdin(Stdio::null())
            .output();
        match output {
            Ok(o) if o.status.success() => Some(Self { dir }),
            Ok(o) => {
                skip(&format!(
                    "cannot mount a tmpfs (needs root): {}",
                    String::from_utf8_lossy(&o.stderr).trim()
                ));
                None
            }
            Err(e) => {
                skip(&format!("cannot run mount: {e}"));
                None
            }
        }
    }

    /// The mount point.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("--lazy")
            .arg(self.dir.path())
            .status();
    }
}

/// Fills the file system of `dir` until fewer than `leave` bytes are free.
pub fn fill_disk(dir: &Path, leave: u64) {
    let filler = dir.join("filler");
    let mut file = std::fs::File::create(&filler).expect("create filler");
    let chunk = vec![0xA5u8; 64 * 1024];
    loop {
        let free = free_bytes(dir);
        if free <= leave {
            break;
        }
        let n = usize::try_from((free - leave).min(chunk.len() as u64)).expect("small");
        if file.write_all(&chunk[..n]).is_err() {
            break;
        }
    }
    let _ = file.sync_all();
}

/// Free bytes on the file system of `dir` (`df`).
pub fn free_bytes(dir: &Path) -> u64 {
    let output = Command::new("df")
        .args(["--output=avail", "-B1"])
        .arg(dir)
        .output()
        .expect("run df");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .nth(1)
        .and_then(|l| l.trim().parse().ok())
        .expect("df output")
}

/// Hex sha256 of a file's contents.
pub fn sha256(path: &Path) -> String {
    use sha2::Digest;
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    sha2::Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Hidden files in `dir` other than the directory lock and the backup counter: debris of
/// killed commands.
pub fn debris(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().to_string())
                .filter(|n| {
                    n.starts_with('.')
                        && n != ".lock"
                        && n != ".sequence"
                        && !n.ends_with(".in-use")
                })
                .collect()
        })
        .unwrap_or_default()
}
