//! The migration files: `V<n>__<name>.sql` and `.down.sql`, read from a directory or
//! embedded at build time, checked as a set; and scaffolding new ones.

use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock};

use refinery::Migration;

use super::MigrationError;
use super::naming;
use crate::url::DbKind;

/// One versioned migration and its down script, as one engine runs them.
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
    /// The up script's file name (`V1__a.sql`, or `V1__a.postgres.sql` for a variant).
    pub up_file: String,
    /// The down script's file name, when there is one.
    pub down_file: Option<String>,
    /// A down script of comments only (file name, text): no down script, unless the set
    /// is [`MigrationSet::accepting_empty_downs`].
    pub blank_down: Option<(String, String)>,
    pub(super) checksum: u64,
    /// refinery's view of it, made once (its name is parsed with a regex).
    refinery: Migration,
}

impl MigrationFile {
    /// `V<n>__<name>`.
    pub fn id(&self) -> String {
        format!("V{}__{}", self.version, self.name)
    }

    /// refinery's checksum of the up script (name, version and SQL): for a migration
    /// with engine variants, each engine's differs.
    pub fn checksum(&self) -> u64 {
        self.checksum
    }

    pub(super) fn to_refinery(&self) -> Migration {
        self.refinery.clone()
    }
}

/// The migrations of one source (embedded or a directory), sorted by version, as one
/// engine runs them ([`MigrationSet::for_engine`]; SQLite unless said otherwise). A
/// migration with engine variants (`V1__a.sqlite.sql`, `V1__a.postgres.sql`) has the
/// same version and name on both engines and its own scripts and checksum on each.
/// Cloning is cheap: the files are shared.
#[derive(Debug, Clone)]
pub struct MigrationSet {
    engine: DbKind,
    files: Arc<Files>,
}

/// What a set holds for both engines.
#[derive(Debug, Default)]
struct Files {
    /// Each engine's migrations: SQLite's, PostgreSQL's.
    by_engine: [Vec<MigrationFile>; 2],
    /// Whether some migration has engine variants.
    variants: bool,
    errors: Vec<String>,
    warnings: Vec<String>,
    notes: Vec<String>,
}

impl Default for MigrationSet {
    fn default() -> Self {
        Self {
            engine: DbKind::Sqlite,
            files: Arc::default(),
        }
    }
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

    /// The same migrations as `engine` runs them.
    pub fn for_engine(&self, engine: DbKind) -> MigrationSet {
        Self {
            engine,
            files: Arc::clone(&self.files),
        }
    }

    /// The same migrations, with each down script of comments only taken as a down
    /// script that does nothing (`db-downgrade --accept-empty-down`): rolling such a
    /// migration back deletes its history row only.
    pub fn accepting_empty_downs(&self) -> MigrationSet {
        let accept = |files: &[MigrationFile]| -> Vec<MigrationFile> {
            files
                .iter()
                .cloned()
                .map(|mut m| {
                    if m.down.is_none()
                        && let Some((file, text)) = m.blank_down.take()
                    {
                        m.down = Some(text);
                        m.down_file = Some(file);
                    }
                    m
                })
                .collect()
        };
        let files = &self.files;
        Self {
            engine: self.engine,
            files: Arc::new(Files {
                by_engine: [accept(&files.by_engine[0]), accept(&files.by_engine[1])],
                variants: files.variants,
                errors: files.errors.clone(),
                warnings: files.warnings.clone(),
                notes: files.notes.clone(),
            }),
        }
    }

    /// The engine whose scripts [`MigrationSet::migrations`] gives.
    pub fn engine(&self) -> DbKind {
        self.engine
    }

    /// Whether some migration has engine variants rather than one portable script.
    pub fn has_variants(&self) -> bool {
        self.files.variants
    }

    /// Reads the migration files of `dir` (every name is checked; the contents of files
    /// ending in `.sql`, in any case, are read).
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
            let name = path
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .to_string();
            // Follows symbolic links; a FIFO must never be opened (it blocks).
            match std::fs::metadata(&path) {
                Ok(meta) if meta.is_file() => {}
                result => {
                    if naming::is_migration_like(&name) {
                        let why = match result {
                            Ok(meta) if meta.is_dir() => "is a directory".to_string(),
                            Ok(_) => "is not a regular file (a FIFO, socket or device)".into(),
                            Err(e) => format!("cannot be read ({e}; a dangling link?)"),
                        };
                        return Err(MigrationError::Files(format!(
                            "the migrations are not valid ({}: {why}); fix the files",
                            path.display()
                        )));
                    }
                    continue;
                }
            }
            let sql = if name.to_ascii_lowercase().ends_with(".sql") {
                std::fs::read_to_string(&path).map_err(|e| {
                    MigrationError::Files(format!("cannot read {}: {e}", path.display()))
                })?
            } else {
                String::new()
            };
            files.push((name, sql));
        }
        files.sort();
        Ok(Self::from_files(files))
    }

    /// Checks `(file name, contents)` pairs (see [`naming::check_set`]). Mistakes
    /// (malformed names, duplicate versions, gaps, empty scripts, orphan down scripts,
    /// a missing engine variant) make the set invalid ([`MigrationSet::ensure_valid`]); a
    /// missing down script is a warning for `db-check`. Unusable files are skipped.
    pub fn from_files(files: impl IntoIterator<Item = (String, String)>) -> Self {
        let files: Vec<(String, String)> = files.into_iter().collect();
        let (checked, findings) = naming::check_set(&files);
        let variants = checked
            .iter()
            .any(|m| m.scripts[0].up_file != m.scripts[1].up_file);
        let mut by_engine: [Vec<MigrationFile>; 2] = Default::default();
        for m in checked {
            let id = format!("V{}__{}", m.version, m.name);
            for (engine, scripts) in m.scripts.into_iter().enumerate() {
                let refinery =
                    Migration::unapplied(&id, &scripts.up).expect("a validated migration name");
                let (down_file, down) = scripts.down.unzip();
                by_engine[engine].push(MigrationFile {
                    version: m.version,
                    name: m.name.clone(),
                    up: scripts.up,
                    down,
                    up_file: scripts.up_file,
                    down_file,
                    blank_down: scripts.blank_down,
                    checksum: refinery.checksum(),
                    refinery,
                });
            }
        }
        Self {
            engine: DbKind::Sqlite,
            files: Arc::new(Files {
                by_engine,
                variants,
                errors: findings.errors,
                warnings: findings.warnings,
                notes: findings.notes,
            }),
        }
    }

    /// Fails, naming every offending file, unless the set is usable: no malformed name,
    /// duplicate version, gap, empty script or down script without its migration.
    pub fn ensure_valid(&self) -> Result<(), MigrationError> {
        if self.files.errors.is_empty() {
            return Ok(());
        }
        Err(MigrationError::Files(format!(
            "the migrations are not valid ({}); fix the files, `cargo xtask db-check` lists every problem",
            self.files.errors.join("; ")
        )))
    }

    /// All usable migrations, by version.
    pub fn migrations(&self) -> &[MigrationFile] {
        let index = match self.engine {
            DbKind::Sqlite => 0,
            DbKind::Postgres => 1,
        };
        &self.files.by_engine[index]
    }

    /// What is worth knowing but not wrong (a migration of comments only), one line each.
    pub fn notes(&self) -> &[String] {
        &self.files.notes
    }

    /// Mistakes and shortcomings, one line each: what `db-check` fails on.
    pub fn problems(&self) -> Vec<String> {
        self.files
            .errors
            .iter()
            .chain(&self.files.warnings)
            .cloned()
            .collect()
    }

    /// The highest version, 0 when there are none.
    pub fn latest(&self) -> i32 {
        self.migrations().last().map_or(0, |m| m.version)
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
        self.migrations().iter().find(|m| m.version == version)
    }
}

/// The `migrations/` directory of a project root.
pub fn dir_in(root: &Path) -> PathBuf {
    root.join("migrations")
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
        assert!(all.contains("V1__initial.sql: is empty"), "{all}");
        assert!(all.contains("V2 is missing"), "{all}");
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
    fn names_that_look_like_migrations_must_be_migrations() {
        let s = set(&[
            ("V1__a.sql", "SELECT 1;"),
            ("V1__a.down.sql", "SELECT 1;"),
            ("V2__b.sql", "SELECT 1;"),
            ("V2__c.sql", "SELECT 1;"),
            ("V5__x.SQL", "SELECT 1;"),
            ("v6__x.sql", "SELECT 1;"),
            ("V7_x.sql", "SELECT 1;"),
            ("001_init.sql", "SELECT 1;"),
            ("README.md", ""),
            ("schema.sql", "CREATE TABLE t (x INTEGER);"),
        ]);
        let errors = s.ensure_valid().unwrap_err().to_string();
        for file in [
            "V2__b.sql, V2__c.sql",
            "V5__x.SQL",
            "v6__x.sql",
            "V7_x.sql",
            "001_init.sql",
        ] {
            assert!(errors.contains(file), "{file}: {errors}");
        }
        assert!(
            !errors.contains("README") && !errors.contains("schema.sql"),
            "{errors}"
        );
        assert!(
            set(&[("V1__a.sql", " \n\n")])
                .ensure_valid()
                .unwrap_err()
                .to_string()
                .contains("V1__a.sql: is empty")
        );
        // A byte-order mark is not part of the SQL.
        let bom = set(&[("V1__a.sql", "\u{feff}CREATE TABLE t (x INTEGER);")]);
        assert!(bom.migrations()[0].up.starts_with("CREATE TABLE"));
        // Comments only: usable, and noted.
        let noted = set(&[("V1__a.sql", "-- nothing\n/* at all */ ;")]);
        assert!(noted.ensure_valid().is_ok());
        assert!(noted.notes()[0].contains("V1__a.sql: has no SQL statement"));
    }

    #[test]
    fn transaction_control_in_a_migration_is_refused_with_its_line() {
        let refused = |sql: &str| {
            set(&[("V1__a.sql", sql), ("V1__a.down.sql", "SELECT 1;")])
                .ensure_valid()
                .err()
                .map(|e| e.to_string())
        };
        let error = refused("CREATE TABLE a (x INTEGER);\n\nCOMMIT;\n").unwrap();
        assert!(error.contains("V1__a.sql: line 3: `COMMIT`"), "{error}");
        assert!(refused("begin;\nSELECT 1;").is_some());
        for fine in [
            "CREATE TABLE t (x INTEGER); CREATE TRIGGER tr AFTER INSERT ON t BEGIN UPDATE t SET x = 1; END;",
            "SELECT 'COMMIT; BEGIN';",
            "-- COMMIT;\nSELECT 1; /* ROLLBACK; */",
            "CREATE FUNCTION f() RETURNS int AS $$ BEGIN RETURN 1; END $$ LANGUAGE plpgsql;",
            "CREATE TABLE \"commit\" (x INTEGER);",
            "CREATE TABLE café (x TEXT DEFAULT 'naïve ✓'); -- ünïcode\nSELECT 'é';",
            "INSERT INTO quotes VALUES (1, E'It\\'s done; begin; again');\nSELECT 1;",
        ] {
            assert_eq!(refused(fine), None, "{fine}");
        }
    }

    #[test]
    fn copy_from_or_to_the_client_is_refused_with_its_line() {
        let refused = |up: &str, down: &str| {
            set(&[("V1__a.sql", up), ("V1__a.down.sql", down)])
                .ensure_valid()
                .err()
                .map(|e| e.to_string())
        };
        let error = refused(
            "CREATE TABLE a (x INT);\ncopy a (x)\n  from stdin;\n",
            "SELECT 1;",
        );
        let error = error.unwrap();
        assert!(
            error.contains("V1__a.sql: line 2: `COPY … FROM STDIN`"),
            "{error}"
        );
        let error = refused("SELECT 1;", "\nCOPY (SELECT 1) TO STDOUT;").unwrap();
        assert!(
            error.contains("V1__a.down.sql: line 2: `COPY … TO STDOUT`"),
            "{error}"
        );
        // A trigger before a COMMIT does not hide it.
        let error = refused(
            "CREATE TRIGGER tr AFTER INSERT ON t FOR EACH ROW EXECUTE FUNCTION f();\nCOMMIT;",
            "SELECT 1;",
        )
        .unwrap();
        assert!(error.contains("line 2: `COMMIT`"), "{error}");
        for fine in [
            "COPY a FROM '/srv/a.csv';",
            "SELECT 'COPY a FROM STDIN';",
            "CREATE FUNCTION f() RETURNS void AS $$ COPY a TO STDOUT $$ LANGUAGE sql;",
        ] {
            assert_eq!(refused(fine, "SELECT 1;"), None, "{fine}");
        }
    }

    #[test]
    fn concurrently_needs_the_no_transaction_directive_among_the_leading_comments() {
        let refused = |up: &str| {
            set(&[("V1__a.sql", up), ("V1__a.down.sql", "SELECT 1;")])
                .ensure_valid()
                .err()
                .map(|e| e.to_string())
        };
        let index = "CREATE TABLE t (x INT);\nCREATE INDEX CONCURRENTLY t_x ON t (x);\n";
        let error = refused(index).unwrap();
        assert!(
            error.contains("V1__a.sql: line 2: `CONCURRENTLY`"),
            "{error}"
        );
        assert_eq!(
            refused(&format!("-- Why.\n-- db: no-transaction\n{index}")),
            None
        );
        // Only among the leading comments.
        assert!(refused(&format!("SELECT 1;\n-- db: no-transaction\n{index}")).is_some());
        assert_eq!(refused("REFRESH MATERIALIZED VIEW CONCURRENTLY v;"), None);
        let sql = "SELECT 1;\nCREATE TRIGGER tr AFTER INSERT ON t BEGIN SELECT 2; END;\n-- end\n";
        let parts: Vec<&str> = super::super::naming::split_statements(sql)
            .into_iter()
            .map(|(start, text)| {
                assert!(sql[start..].starts_with(text));
                text.trim()
            })
            .collect();
        assert_eq!(
            parts,
            [
                "SELECT 1",
                "CREATE TRIGGER tr AFTER INSERT ON t BEGIN SELECT 2; END"
            ]
        );
    }

    #[test]
    fn engine_variants_share_version_and_name_with_their_own_scripts_and_checksums() {
        let s = set(&[
            ("V1__a.sql", "CREATE TABLE a (x INTEGER);"),
            ("V1__a.down.sql", "DROP TABLE a;"),
            (
                "V2__ids.sqlite.sql",
                "CREATE TABLE t (id INTEGER PRIMARY KEY);",
            ),
            (
                "V2__ids.postgres.sql",
                "CREATE TABLE t (id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY);",
            ),
            ("V2__ids.down.sql", "DROP TABLE t;"),
            ("V3__b.sql", "SELECT 1;"),
            ("V3__b.postgres.down.sql", "SELECT 2;"),
        ]);
        assert!(s.ensure_valid().is_ok(), "{:?}", s.problems());
        assert!(s.has_variants());
        let (lite, pg) = (s.for_engine(DbKind::Sqlite), s.for_engine(DbKind::Postgres));
        assert_eq!(lite.latest(), 3);
        assert_eq!(pg.latest(), 3);
        let (l2, p2) = (lite.get(2).unwrap(), pg.get(2).unwrap());
        assert_eq!((l2.id(), p2.id()), ("V2__ids".into(), "V2__ids".into()));
        assert!(l2.up.contains("INTEGER PRIMARY KEY") && p2.up.contains("IDENTITY"));
        assert_eq!(l2.up_file, "V2__ids.sqlite.sql");
        assert_ne!(l2.checksum(), p2.checksum());
        assert_eq!(l2.down.as_deref(), Some("DROP TABLE t;"));
        assert_eq!(
            lite.get(1).unwrap().checksum(),
            pg.get(1).unwrap().checksum()
        );
        // One engine's down script only: the other has none (a warning naming it).
        assert_eq!(lite.get(3).unwrap().down, None);
        assert_eq!(pg.get(3).unwrap().down.as_deref(), Some("SELECT 2;"));
        let problems = s.problems().join("\n");
        assert!(
            problems.contains(
                "V3__b: no down script for SQLite (expected migrations/V3__b.sqlite.down.sql)"
            ),
            "{problems}"
        );
    }

    #[test]
    fn engine_variants_must_come_in_pairs_and_never_beside_a_portable_file() {
        let errors = |files: &[(&str, &str)]| set(files).ensure_valid().unwrap_err().to_string();
        let error = errors(&[("V1__a.sqlite.sql", "SELECT 1;")]);
        assert!(
            error.contains("V1__a.sqlite.sql: has no PostgreSQL variant (expected V1__a.postgres.sql beside it)"),
            "{error}"
        );
        let error = errors(&[
            ("V1__a.sql", "SELECT 1;"),
            ("V1__a.postgres.sql", "SELECT 1;"),
        ]);
        assert!(
            error.contains("V1__a.sql, V1__a.postgres.sql: a migration is either portable"),
            "{error}"
        );
        let error = errors(&[
            ("V1__a.sqlite.sql", "SELECT 1;"),
            ("V1__b.postgres.sql", "SELECT 1;"),
        ]);
        assert!(
            error.contains("version 1 is used more than once"),
            "{error}"
        );
        let error = errors(&[
            ("V1__a.sql", "SELECT 1;"),
            ("V1__a.down.sql", "SELECT 1;"),
            ("V1__a.sqlite.down.sql", "SELECT 1;"),
        ]);
        assert!(
            error.contains("V1__a.down.sql, V1__a.sqlite.down.sql: both revert V1__a on SQLite"),
            "{error}"
        );
        // One finding per mistake: no second line that contradicts it.
        let s = set(&[
            ("V1__a.sql", "SELECT 1;"),
            ("V1__a.down.sql", "SELECT 1;"),
            ("V1__a.sqlite.down.sql", "SELECT 1;"),
        ]);
        assert_eq!(s.problems().len(), 1, "{:?}", s.problems());
        let s = set(&[
            ("V1__a.sqlite.sql", "SELECT 1;"),
            ("V1__a.down.sql", "SELECT 1;"),
        ]);
        assert_eq!(s.problems().len(), 1, "{:?}", s.problems());
        let error = errors(&[("V1__a.mysql.sql", "SELECT 1;")]);
        assert!(
            error.contains("V1__a.mysql.sql: not a migration name"),
            "{error}"
        );
        // Each variant's own content is checked, with its file name.
        let error = errors(&[
            ("V1__a.sqlite.sql", "SELECT 1;"),
            ("V1__a.postgres.sql", "SELECT 1;\nCOMMIT;"),
        ]);
        assert!(
            error.contains("V1__a.postgres.sql: line 2: `COMMIT`"),
            "{error}"
        );
        let error = errors(&[
            ("V1__a.sqlite.sql", "SELECT 1;"),
            ("V1__a.postgres.sql", ""),
        ]);
        assert!(error.contains("V1__a.postgres.sql: is empty"), "{error}");
    }

    #[test]
    fn embedded_set_is_clean_and_starts_at_the_baseline() {
        let s = MigrationSet::embedded();
        assert!(s.problems().is_empty(), "{:?}", s.problems());
        assert_eq!(s.migrations()[0].id(), "V1__initial");
    }
}
