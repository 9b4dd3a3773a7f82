//! Where directories are, once symlinks, `.` and `..` are resolved: whether two of them
//! overlap (the same, one inside the other), as far as they exist.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};

/// How a directory `b` overlaps a directory `a`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overlap {
    /// The same directory (by path once symlinks are resolved, or by inode).
    Same,
    /// `b` is inside `a`.
    Inside,
    /// `b` holds `a`.
    Contains,
}

impl Overlap {
    /// How `b` stands to `a`, for a message: "is backup_dir itself", "is inside
    /// backup_dir", "holds backup_dir" (with `a_name` = `backup_dir`).
    pub fn describe(self, a_name: &str) -> String {
        match self {
            Self::Same => format!("is {a_name} itself"),
            Self::Inside => format!("is inside {a_name}"),
            Self::Contains => format!("holds {a_name}"),
        }
    }
}

/// How `b` overlaps `a` once symlinks, `.` and `..` are resolved (as far as the
/// directories exist), or `None` when they are apart.
pub fn overlap(a: &Path, b: &Path) -> Option<Overlap> {
    let same_inode = match (fs::metadata(a), fs::metadata(b)) {
        (Ok(a), Ok(b)) => (a.dev(), a.ino()) == (b.dev(), b.ino()),
        _ => false,
    };
    let (a, b) = (resolve(a), resolve(b));
    if same_inode || a == b {
        Some(Overlap::Same)
    } else if b.starts_with(&a) {
        Some(Overlap::Inside)
    } else if a.starts_with(&b) {
        Some(Overlap::Contains)
    } else {
        None
    }
}

/// `path` made absolute with every symlink of its existing part resolved; what does not
/// exist (yet) is kept as written, `.` and `..` applied.
fn resolve(path: &Path) -> PathBuf {
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let mut resolved = PathBuf::new();
    for component in absolute.components() {
        match component {
            Component::CurDir => {}
            // What comes before is resolved already, so `..` is its real parent.
            Component::ParentDir => {
                resolved.pop();
            }
            other => {
                resolved.push(other);
                if let Ok(real) = fs::canonicalize(&resolved) {
                    resolved = real;
                }
            }
        }
    }
    resolved
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_under_another_name_overlaps_itself() {
        let root = tempfile::tempdir().unwrap();
        let backups = root.path().join("backups");
        fs::create_dir(&backups).unwrap();
        std::os::unix::fs::symlink(&backups, root.path().join("link")).unwrap();
        let alias = |copy: &str| overlap(&backups, &root.path().join(copy));
        assert_eq!(alias("link"), Some(Overlap::Same));
        assert_eq!(alias("backups/./"), Some(Overlap::Same));
        assert_eq!(alias("x/../link"), Some(Overlap::Same));
        assert_eq!(alias("link/off"), Some(Overlap::Inside));
        assert_eq!(alias("."), Some(Overlap::Contains));
        assert_eq!(alias("offsite"), None);
        assert_eq!(alias("backups-off"), None);
    }
}
