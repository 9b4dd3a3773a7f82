//! Schema migrations: refinery runs them; this module adds down scripts, locking and status.
//!
//! Convention: `migrations/V<n>__<name>.sql` is applied by refinery and
//! `migrations/V<n>__<name>.down.sql` reverts it. The server embeds the directory at
//! build time ([`MigrationSet::embedded`]); xtask can read it from disk
//! ([`MigrationSet::from_dir`]) — both parse the same way.
//!
//! Every change runs inside one outer transaction that first takes the migration
//! lock (`BEGIN IMMEDIATE` on SQLite, `pg_advisory_xact_lock` on PostgreSQL), so
//! processes starting at once apply each migration exactly once. Each migration
//! then runs in its own savepoint together with its history row.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use refinery::{AsyncMigrate, Migration, Runner, Target};
use refinery_core::traits::r#async::{AsyncQuery, AsyncTransaction};
use sqlx::Row;

use crate::db::{DbConn, DbTx};

/// Refinery's history table.
pub const HISTORY_TABLE: &str = "refinery_schema_history";

/// Key of the PostgreSQL advisory lock that serializes migrations ("migr" in ASCII).
const PG_LOCK_KEY: i64 = 0x6d69_6772;

/// A migration failure.
#[derive(Debug, thiserror::Error)]
pub enum MigrationError {
    /// The migration files themselves are unusable.
    #[error("{0}")]
    Files(String),
    /// The database holds history this code does not know.
    #[error(
        "the database is ahead of this code: applied migration {0} is not in migrations/; deploy the newer code or roll the database back with it"
    )]
    Ahead(String),
    /// An applied migration was edited afterwards.
    #[error(
        "migration {0} was edited after it was applied (checksum differs); restore the original file and add a new migration instead"
    )]
    Diverged(String),
    /// A migration's SQL failed; migrations before it stay applied.
    #[error("migration {name} failed: {reason}")]
    Failed {
        /// `V<n>__<name>`.
        name: String,
        /// The database's message.
        reason: String,
    },
    /// A rollback cannot run.
    #[error("cannot roll back {0}: it has no down script (migrations/{0}.down.sql)")]
    NoDownScript(String),
    /// A requested target version does not exist.
    #[error("{0}")]
    Target(String),
    /// The database failed.
    #[error("{}", crate::url::mask_url(&.0.to_string()))]
    Db(#[from] sqlx::Error),
}

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
    checksum: u64,
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

    fn to_refinery(&self) -> Migration {
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

/// `lower_snake_case`: starts with a letter, then letters, digits and single underscores.
pub fn is_snake_case(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && !name.contains("__")
        && !name.ends_with('_')
}

/// One row of the history table, compared with the code.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AppliedMigration {
    /// Version.
    pub version: i32,
    /// Name recorded when applied.
    pub name: String,
    /// When it was applied (RFC 3339).
    pub applied_on: String,
    /// Checksum recorded when applied.
    pub checksum: String,
    /// How it compares with the code.
    pub state: AppliedState,
}

/// How an applied migration compares with the migration files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AppliedState {
    /// Same name and checksum.
    Ok,
    /// Same version, different name or checksum: the file was edited.
    Divergent,
    /// Not in the code at all: the database is ahead.
    Unknown,
}

/// Where the database stands relative to the code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SchemaState {
    /// Every migration applied, nothing unknown.
    UpToDate,
    /// Some migrations not applied yet.
    Pending,
    /// The database has migrations this code does not know.
    Ahead,
    /// An applied migration differs from its file.
    Diverged,
}

impl fmt::Display for SchemaState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::UpToDate => "up to date",
            Self::Pending => "pending",
            Self::Ahead => "ahead of this code",
            Self::Diverged => "diverged",
        })
    }
}

/// The database's migration state.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SchemaStatus {
    /// History rows, by version.
    pub applied: Vec<AppliedMigration>,
    /// Versions in the code and not applied.
    pub pending: Vec<i32>,
    /// Summary.
    pub state: SchemaState,
    /// Highest applied version (0 when none).
    pub current_version: i32,
    /// Highest version in the code.
    pub latest_version: i32,
}

impl SchemaStatus {
    fn compare(history: Vec<HistoryRow>, set: &MigrationSet) -> Self {
        let applied: Vec<AppliedMigration> = history
            .into_iter()
            .map(|row| {
                let state = match set.get(row.version) {
                    None => AppliedState::Unknown,
                    Some(m) if m.name == row.name && m.checksum.to_string() == row.checksum => {
                        AppliedState::Ok
                    }
                    Some(_) => AppliedState::Divergent,
                };
                AppliedMigration {
                    version: row.version,
                    name: row.name,
                    applied_on: row.applied_on,
                    checksum: row.checksum,
                    state,
                }
            })
            .collect();
        let pending: Vec<i32> = set
            .migrations()
            .iter()
            .map(|m| m.version)
            .filter(|v| !applied.iter().any(|a| a.version == *v))
            .collect();
        let state = if applied.iter().any(|a| a.state == AppliedState::Divergent) {
            SchemaState::Diverged
        } else if applied.iter().any(|a| a.state == AppliedState::Unknown) {
            SchemaState::Ahead
        } else if pending.is_empty() {
            SchemaState::UpToDate
        } else {
            SchemaState::Pending
        };
        Self {
            current_version: applied.last().map_or(0, |a| a.version),
            latest_version: set.latest(),
            applied,
            pending,
            state,
        }
    }

    /// Pending migrations up to version `to` (all when `None`), in the order they apply.
    pub fn to_apply<'s>(&self, set: &'s MigrationSet, to: Option<i32>) -> Vec<&'s MigrationFile> {
        set.migrations()
            .iter()
            .filter(|m| self.pending.contains(&m.version))
            .filter(|m| to.is_none_or(|to| m.version <= to))
            .collect()
    }

    /// Applied migrations above version `to`, newest first: the order they are reverted in.
    /// Only known migrations are listed; check [`SchemaStatus::ensure_compatible`] first.
    pub fn to_revert<'s>(&self, set: &'s MigrationSet, to: i32) -> Vec<&'s MigrationFile> {
        self.applied
            .iter()
            .rev()
            .filter(|a| a.version > to)
            .filter_map(|a| set.get(a.version))
            .collect()
    }

    /// The version the database is at after rolling back the newest `steps` migrations.
    pub fn version_before(&self, steps: usize) -> Result<i32, MigrationError> {
        let applied = self.applied.len();
        if steps > applied {
            return Err(MigrationError::Target(format!(
                "cannot roll back {steps} migration(s): only {applied} applied"
            )));
        }
        Ok(applied
            .checked_sub(steps + 1)
            .map_or(0, |i| self.applied[i].version))
    }

    /// Fails with a clear error when the database is ahead or diverged.
    pub fn ensure_compatible(&self) -> Result<(), MigrationError> {
        let id = |a: &AppliedMigration| format!("V{}__{}", a.version, a.name);
        if let Some(a) = self
            .applied
            .iter()
            .find(|a| a.state == AppliedState::Divergent)
        {
            return Err(MigrationError::Diverged(id(a)));
        }
        if let Some(a) = self
            .applied
            .iter()
            .find(|a| a.state == AppliedState::Unknown)
        {
            return Err(MigrationError::Ahead(id(a)));
        }
        Ok(())
    }
}

#[derive(Debug)]
struct HistoryRow {
    version: i32,
    name: String,
    applied_on: String,
    checksum: String,
}

/// Reads the migration state without changing anything.
pub async fn status(conn: &mut DbConn, set: &MigrationSet) -> Result<SchemaStatus, MigrationError> {
    let history = match conn {
        DbConn::Sqlite(c) => read_history_sqlite(c).await?,
        DbConn::Postgres(c) => read_history_pg(c).await?,
    };
    Ok(SchemaStatus::compare(history, set))
}

/// Reads the migration state of a standalone SQLite connection (e.g. a backup file).
pub async fn status_of_sqlite(
    conn: &mut sqlx::SqliteConnection,
    set: &MigrationSet,
) -> Result<SchemaStatus, MigrationError> {
    Ok(SchemaStatus::compare(read_history_sqlite(conn).await?, set))
}

/// Reads the migration state of a standalone PostgreSQL connection (e.g. inside a snapshot).
pub async fn status_of_pg(
    conn: &mut sqlx::PgConnection,
    set: &MigrationSet,
) -> Result<SchemaStatus, MigrationError> {
    Ok(SchemaStatus::compare(read_history_pg(conn).await?, set))
}

async fn read_history_sqlite(
    c: &mut sqlx::SqliteConnection,
) -> Result<Vec<HistoryRow>, sqlx::Error> {
    read_history::<sqlx::Sqlite>(
        c,
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'refinery_schema_history')",
    )
    .await
}

async fn read_history_pg(c: &mut sqlx::PgConnection) -> Result<Vec<HistoryRow>, sqlx::Error> {
    read_history::<sqlx::Postgres>(
        c,
        "SELECT to_regclass('refinery_schema_history') IS NOT NULL",
    )
    .await
}

/// Reads the history table, if `exists_sql` says there is one.
async fn read_history<DB>(
    c: &mut DB::Connection,
    exists_sql: &'static str,
) -> Result<Vec<HistoryRow>, sqlx::Error>
where
    DB: sqlx::Database,
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    for<'r> bool: sqlx::Decode<'r, DB> + sqlx::Type<DB>,
    for<'r> i32: sqlx::Decode<'r, DB> + sqlx::Type<DB>,
    for<'r> String: sqlx::Decode<'r, DB> + sqlx::Type<DB>,
    usize: sqlx::ColumnIndex<DB::Row>,
    DB::Arguments: sqlx::IntoArguments<DB>,
{
    let exists: bool = sqlx::query_scalar(exists_sql).fetch_one(&mut *c).await?;
    if !exists {
        return Ok(Vec::new());
    }
    let rows = sqlx::query(
        "SELECT version, name, applied_on, checksum FROM refinery_schema_history ORDER BY version",
    )
    .fetch_all(&mut *c)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(HistoryRow {
                version: row.try_get(0)?,
                name: row.try_get(1)?,
                applied_on: row.try_get(2)?,
                checksum: row.try_get(3)?,
            })
        })
        .collect()
}

/// What an upgrade or downgrade did.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// `V<n>__<name>` of each migration applied or reverted, in order.
    pub changed: Vec<String>,
}

/// Applies pending migrations up to `target` (all when `None`), under the migration lock.
///
/// Migrations that succeed stay applied when a later one fails.
pub async fn upgrade(
    conn: &mut DbConn,
    set: &MigrationSet,
    target: Option<i32>,
) -> Result<Outcome, MigrationError> {
    if let Some(target) = target {
        set.check_target(target)?;
    }
    let mut tx = lock(conn).await?;
    let status = status_in(&mut tx, set).await?;
    status.ensure_compatible()?;
    let runner = Runner::new(
        &set.migrations()
            .iter()
            .map(MigrationFile::to_refinery)
            .collect::<Vec<_>>(),
    )
    .set_target(target.map_or(Target::Latest, Target::Version));
    let result = runner.run_async(&mut RefineryDriver { tx: &mut tx }).await;
    // Each migration ran in its own savepoint: keep the ones that succeeded. When a
    // migration failed, its own error is the one to report, even if committing fails too.
    let committed = tx.commit().await;
    if result.is_ok() {
        committed?;
    }
    match result {
        Ok(report) => Ok(Outcome {
            changed: report
                .applied_migrations()
                .iter()
                .map(|m| m.to_string())
                .collect(),
        }),
        Err(error) => {
            let failed = error.report().map_or(0, |r| r.applied_migrations().len());
            let name = status
                .to_apply(set, target)
                .get(failed)
                .map_or_else(|| "?".into(), |m| m.id());
            let reason = match std::error::Error::source(&error) {
                Some(source) => source.to_string(),
                None => error.to_string(),
            };
            Err(MigrationError::Failed {
                name,
                reason: crate::url::mask_url(&reason),
            })
        }
    }
}

/// Rolls back applied migrations above version `to` (newest first), under the migration lock.
///
/// Each rollback runs the down script and deletes the history row in one savepoint.
/// Rolling back to 0 also drops the history table.
pub async fn downgrade(
    conn: &mut DbConn,
    set: &MigrationSet,
    to: i32,
) -> Result<Outcome, MigrationError> {
    let mut tx = lock(conn).await?;
    let status = status_in(&mut tx, set).await?;
    status.ensure_compatible()?;
    let to_revert = status.to_revert(set, to);
    if let Some(m) = to_revert.iter().find(|m| m.down.is_none()) {
        return Err(MigrationError::NoDownScript(m.id()));
    }
    let mut outcome = Outcome::default();
    for migration in to_revert {
        let mut sp = tx.savepoint().await?;
        let down = migration.down.as_deref().unwrap_or_default();
        let result = async {
            sp.execute_script(down).await?;
            sp.execute_script(&format!(
                "DELETE FROM {HISTORY_TABLE} WHERE version = {}",
                migration.version
            ))
            .await
        }
        .await;
        if let Err(e) = result {
            let _ = sp.rollback().await;
            let _ = tx.commit().await;
            return Err(MigrationError::Failed {
                name: format!("{}.down", migration.id()),
                reason: crate::url::mask_url(&e.to_string()),
            });
        }
        sp.commit().await?;
        outcome.changed.push(migration.id());
    }
    if to == 0 && !status.applied.is_empty() {
        tx.execute_script(&format!("DROP TABLE IF EXISTS {HISTORY_TABLE}"))
            .await?;
    }
    tx.commit().await?;
    Ok(outcome)
}

/// Starts the outer transaction and takes the migration lock.
async fn lock(conn: &mut DbConn) -> Result<DbTx<'_>, sqlx::Error> {
    let mut tx = conn.begin_write().await?;
    if let DbTx::Postgres(pg) = &mut tx {
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(PG_LOCK_KEY)
            .execute(&mut **pg)
            .await?;
    }
    Ok(tx)
}

async fn status_in(tx: &mut DbTx<'_>, set: &MigrationSet) -> Result<SchemaStatus, MigrationError> {
    Ok(SchemaStatus::compare(history_in(tx).await?, set))
}

async fn history_in(tx: &mut DbTx<'_>) -> Result<Vec<HistoryRow>, sqlx::Error> {
    match tx {
        DbTx::Sqlite(c) => read_history_sqlite(c).await,
        DbTx::Postgres(c) => read_history_pg(c).await,
    }
}

/// Lets refinery run inside our locked transaction: each `execute` is a savepoint.
struct RefineryDriver<'t, 'c> {
    tx: &'t mut DbTx<'c>,
}

impl AsyncTransaction for RefineryDriver<'_, '_> {
    type Error = sqlx::Error;

    async fn execute<'a, T: Iterator<Item = &'a str> + Send + 'a>(
        &'a mut self,
        queries: T,
    ) -> Result<usize, Self::Error> {
        let queries: Vec<&str> = queries.collect();
        let mut sp = self.tx.savepoint().await?;
        for query in &queries {
            if let Err(e) = sp.execute_script(query).await {
                // The engine may have rolled back already (e.g. SQLite on a full disk):
                // report the statement's error, not the failed rollback.
                let _ = sp.rollback().await;
                return Err(e);
            }
        }
        sp.commit().await?;
        Ok(queries.len())
    }
}

impl AsyncQuery<Vec<Migration>> for RefineryDriver<'_, '_> {
    /// refinery only asks for the applied migrations; they are read the same way as for status.
    async fn query<'a>(&'a mut self, _query: &'a str) -> Result<Vec<Migration>, Self::Error> {
        history_in(self.tx)
            .await?
            .into_iter()
            .map(|row| {
                let applied_on = time::OffsetDateTime::parse(
                    &row.applied_on,
                    &time::format_description::well_known::Rfc3339,
                )
                .map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
                let checksum = row
                    .checksum
                    .parse()
                    .map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
                Ok(Migration::applied(
                    row.version,
                    row.name,
                    applied_on,
                    checksum,
                ))
            })
            .collect()
    }
}

impl AsyncMigrate for RefineryDriver<'_, '_> {}

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
    write(
        &down,
        format!(
            "-- Reverts {id}: undo exactly what {id}.sql does, in reverse order.\n\
             -- `cargo xtask db-check` verifies that up, down, up gives back the same schema.\n"
        ),
    )?;
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
