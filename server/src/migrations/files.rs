//! The migration files: `V<n>__<name>.sql` and `.down.sql`, read from a directory or
//! embedded at build time, checked as a set; and scaffolding new ones.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use refinery::Migration;

use super::MigrationError;

/// One versioned migration and its down script.
#[derive(Debug, Clone)]
pub struct MigrationFile {
    /// Version number.
    pub version: i32,
    /// Name after the `__`.
    pub name: String,
    /// The up script.
    pub up: String,
    /// The down script, if there is one.
    pub down: Option<String>,
    pub(super) checksum: u64,
}

impl MigrationFile {
    /// `V<n>__<name>`.
    pub fn id(&self) -> String {
        format!("V{}__{}", self.version, self.name)
    }

    /// refinery's checksum of the up script (name, version and SQL).
    pub fn checksum(&self) -> u64 {
        self.checksum
    }

    pub(super) fn to_refinery(&self) -> Migration {
        Migration::unapplied(&self.id(), &self.up).expect("the name was validated when loading")
    }
}

/// The migrations of one source (embedded or a directory), sorted by version.
#[derive(Debug, Clone, Default)]
pub struct MigrationSet {
    migrations: Vec<MigrationFile>,
    problems: Vec<String>,
}

static EMBEDDED: LazyLock<MigrationSet> = LazyLock::new(|| {
    let files: &[(&str, &str)] = include!(concat!(env!("OUT_DIR"), "/migrations.rs"));
    MigrationSet::from_files(files.iter().map(|(n, s)| (n.to_string(), s.to_string())))
});

impl MigrationSet {
    /// The migrations compiled into this binary from `migrations/`.
    pub fn embedded() -> &'static MigrationSet {
        &EMBEDDED
    }

    /// Reads the `.sql` files of `dir`.
    pub fn from_dir(dir: &Path) -> Result<Self, MigrationError> {
        let read_error = |e: std::io::Error| {
            MigrationError::Files(format!(
                "cannot read migrations directory {}: {e}",
                dir.display()
            ))
        };
        let mut files = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(read_error)? {
            let path = entry.map_err(read_error)?.path();
            if path.extension().is_some_and(|e| e == "sql") {
                let name = path
                    .file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .to_string();
                let sql = std::fs::read_to_string(&path).map_err(|e| {
                    MigrationError::Files(format!("cannot read {}: {e}", path.display()))
                })?;
                files.push((name, sql));
            }
        }
        Ok(Self::from_files(files))
    }

    /// Parses `(file name, contents)` pairs. Problems (bad names, gaps, missing down
    /// scripts) are collected in [`MigrationSet::problems`]; unusable files are skipped.
    pub fn from_files(files: impl IntoIterator<Item = (String, String)>) -> Self {
        let mut ups: BTreeMap<i32, Vec<(String, String)>> = BTreeMap::new();
        let mut downs: BTreeMap<(i32, String), String> = BTreeMap::new();
        let mut problems = Vec::new();
        for (file, sql) in files {
            match parse_file_name(&file) {
                Some((version, name, false)) => ups.entry(version).or_default().push((name, sql)),
                Some((version, name, true)) => {
                    downs.insert((version, name), sql);
                }
                None => problems.push(format!(
                    "{file}: not a migration name; expected V<number>__<snake_case_name>.sql or .down.sql"
                )),
            }
        }
        let mut migrations = Vec::new();
        for (version, mut candidates) in ups {
            if candidates.len() > 1 {
                let names: Vec<_> = candidates
                    .iter()
                    .map(|(n, _)| format!("V{version}__{n}"))
                    .collect();
                problems.push(format!(
                    "version {version} is used more than once: {}",
                    names.join(", ")
                ));
                continue;
            }
            let (name, up) = candidates.remove(0);
            let down = downs.remove(&(version, name.clone()));
            let id = format!("V{version}__{name}");
            if down.is_none() {
                problems.push(format!(
                    "{id}: no down script (expected migrations/{id}.down.sql)"
                ));
            }
            let checksum = Migration::unapplied(&id, &up)
                .expect("a validated migration name")
                .checksum();
            migrations.push(MigrationFile {
                version,
                name,
                up,
                down,
                checksum,
            });
        }
        for (version, name) in downs.keys() {
            problems.push(format!(
                "V{version}__{name}.down.sql: down script without an up script"
            ));
        }
        for (expected, migration) in (1..).zip(&migrations) {
            if migration.version != expected {
                problems.push(format!(
                    "{}: versions must be contiguous from 1; expected V{expected}",
                    migration.id()
                ));
                break;
            }
        }
        Self {
            migrations,
            problems,
        }
    }

    /// All usable migrations, by version.
    pub fn migrations(&self) -> &[MigrationFile] {
        &self.migrations
    }

    /// Problems found while loading: one line each.
    pub fn problems(&self) -> &[String] {
        &self.problems
    }

    /// The highest version, 0 when there are none.
    pub fn latest(&self) -> i32 {
        self.migrations.last().map_or(0, |m| m.version)
    }

    /// Fails unless `version` names a migration of this set.
    pub fn check_target(&self, version: i32) -> Result<(), MigrationError> {
        match self.get(version) {
            Some(_) => Ok(()),
            None => Err(MigrationError::Target(format!(
                "there is no migration V{version}; the latest is V{}",
                self.latest()
            ))),
        }
    }

    /// The migration with this version.
    pub fn get(&self, version: i32) -> Option<&MigrationFile> {
        self.migrations.iter().find(|m| m.version == version)
    }
}

/// Parses `V<n>__<name>.sql` / `V<n>__<name>.down.sql` into (version, name, is_down).
fn parse_file_name(file: &str) -> Option<(i32, String, bool)> {
    let stem = file.strip_suffix(".sql")?;
    let (stem, down) = match stem.strip_suffix(".down") {
        Some(stem) => (stem, true),
        None => (stem, false),
    };
    let (version, name) = stem.strip_prefix('V')?.split_once("__")?;
    let version: i32 = version.parse().ok().filter(|v| *v > 0)?;
    is_snake_case(name).then(|| (version, name.to_string(), down))
}

/// The longest migration name `db-migrate` accepts.
const MAX_NAME_LEN: usize = 100;

/// `lower_snake_case`: starts with a letter, then letters, digits and single underscores.
pub fn is_snake_case(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && !name.contains("__")
        && !name.ends_with('_')
}

/// The `migrations/` directory of a project root.
pub fn dir_in(root: &Path) -> PathBuf {
    root.join("migrations")
}

/// Creates the next migration pair in `dir` from a template; returns (up, down) paths.
///
/// Rejects names that are not `snake_case` and names already used by a migration.
pub fn scaffold(dir: &Path, name: &str) -> Result<(PathBuf, PathBuf), MigrationError> {
    if !is_snake_case(name) {
        return Err(MigrationError::Files(format!(
            "migration name `{name}` is not snake_case (lowercase letters, digits and single underscores, starting with a letter), e.g. `add_users`"
        )));
    }
    // File names are at most 255 bytes: `V<n>__<name>.down.sql` must fit with room to spare.
    if name.len() > MAX_NAME_LEN {
        return Err(MigrationError::Files(format!(
            "migration name is {} characters long; at most {MAX_NAME_LEN}",
            name.len()
        )));
    }
    let set = if dir.is_dir() {
        MigrationSet::from_dir(dir)?
    } else {
        std::fs::create_dir_all(dir)
            .map_err(|e| MigrationError::Files(format!("cannot create {}: {e}", dir.display())))?;
        MigrationSet::default()
    };
    if let Some(existing) = set.migrations().iter().find(|m| m.name == name) {
        return Err(MigrationError::Files(format!(
            "a migration named `{name}` already exists: {}.sql; choose another name",
            existing.id()
        )));
    }
    let version = highest_version_on_disk(dir)? + 1;
    let id = format!("V{version}__{name}");
    let up = dir.join(format!("{id}.sql"));
    let down = dir.join(format!("{id}.down.sql"));
    let write = |path: &Path, text: String| {
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)
            .and_then(|mut f| std::io::Write::write_all(&mut f, text.as_bytes()))
            .map_err(|e| MigrationError::Files(format!("cannot create {}: {e}", path.display())))
    };
    write(
        &up,
        format!(
            "-- {id}: describe the change here.\n\
             -- Runs in one transaction with its history row; keep it valid on SQLite and PostgreSQL.\n"
        ),
    )?;
    // Both files or neither: a half-created pair would break the set.
    let undo_up = |e| {
        let _ = std::fs::remove_file(&up);
        e
    };
    write(
        &down,
        format!(
            "-- Reverts {id}: undo exactly what {id}.sql does, in reverse order.\n\
             -- `cargo xtask db-check` verifies that up, down, up gives back the same schema.\n"
        ),
    )
    .map_err(undo_up)?;
    Ok((up, down))
}

/// The highest version of any file in `dir` that looks like a migration, valid or not.
fn highest_version_on_disk(dir: &Path) -> Result<i32, MigrationError> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| MigrationError::Files(format!("cannot read {}: {e}", dir.display())))?;
    Ok(entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().to_string();
            let digits: String = name
                .strip_prefix('V')?
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            digits.parse::<i32>().ok()
        })
        .max()
        .unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(files: &[(&str, &str)]) -> MigrationSet {
        MigrationSet::from_files(files.iter().map(|(n, s)| (n.to_string(), s.to_string())))
    }

    #[test]
    fn pairs_up_and_down_scripts() {
        let s = set(&[
            ("V1__initial.sql", "SELECT 1;"),
            ("V1__initial.down.sql", "SELECT 1;"),
            ("V2__add_users.sql", "CREATE TABLE users (id INTEGER);"),
            ("V2__add_users.down.sql", "DROP TABLE users;"),
        ]);
        assert!(s.problems().is_empty(), "{:?}", s.problems());
        assert_eq!(s.latest(), 2);
        assert_eq!(s.get(2).unwrap().down.as_deref(), Some("DROP TABLE users;"));
    }

    #[test]
    fn reports_each_kind_of_problem() {
        let s = set(&[
            ("V1__initial.sql", ""),
            ("V3__gap.sql", ""),
            ("V3__gap.down.sql", ""),
            ("V4__BadName.sql", ""),
            ("V5__orphan.down.sql", ""),
        ]);
        let all = s.problems().join("\n");
        assert!(all.contains("V1__initial: no down script"), "{all}");
        assert!(all.contains("expected V2"), "{all}");
        assert!(
            all.contains("V4__BadName.sql: not a migration name"),
            "{all}"
        );
        assert!(
            all.contains("V5__orphan.down.sql: down script without an up script"),
            "{all}"
        );
    }

    #[test]
    fn embedded_set_is_clean_and_starts_at_the_baseline() {
        let s = MigrationSet::embedded();
        assert!(s.problems().is_empty(), "{:?}", s.problems());
        assert_eq!(s.migrations()[0].id(), "V1__initial");
    }
}
