//! Backups: consistent online snapshots, verified, with a manifest; listing, retention, restore.
//!
//! SQLite: `VACUUM INTO` a temporary file (one read transaction, so writers keep going
//! in WAL mode), `PRAGMA integrity_check`, sha256, then rename. The backup is a plain
//! SQLite file. PostgreSQL: `pg_dump -Fc`, verified with `pg_restore --list`; the
//! password travels in `PGPASSWORD`, never in argv.
//!
//! Every backup `<stem>-<UTC timestamp>-v<schema>.<ext>` has a manifest beside it,
//! `<backup file>.json`, holding its checksum, size, schema version, kind and time.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions, Connection};

use crate::config::DbSettings;
use crate::db::{DbConn, DbPool};
use crate::migrations::{self, MigrationSet, SchemaState};
use crate::url::{DatabaseUrl, DbKind};

/// Manifest format version.
const MANIFEST_FORMAT: u32 = 1;

/// File name endings of backups: SQLite, gzipped SQLite, PostgreSQL custom format.
const BACKUP_EXTENSIONS: &[&str] = &[".db", ".db.gz", ".dump"];

/// A backup or restore failure.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// A file operation failed.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// The file is not a usable backup; nothing was changed.
    #[error("{path} is not a usable backup: {reason}; nothing was changed")]
    Invalid {
        /// The backup file.
        path: PathBuf,
        /// Why not.
        reason: String,
    },
    /// A PostgreSQL client tool is missing or failed.
    #[error("{0}")]
    Tool(String),
    /// The database is in use.
    #[error(transparent)]
    InUse(#[from] crate::in_use::InUseError),
    /// The database failed.
    #[error(transparent)]
    Db(#[from] crate::db::DbError),
    /// Reading migration state failed.
    #[error(transparent)]
    Migration(#[from] migrations::MigrationError),
    /// Emptying the database before a restore failed.
    #[error(transparent)]
    Maintenance(#[from] crate::maintenance::MaintenanceError),
}

impl From<sqlx::Error> for BackupError {
    fn from(e: sqlx::Error) -> Self {
        Self::Db(e.into())
    }
}

fn io_error<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> BackupError + 'a {
    move |source| BackupError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// What is known about a backup, stored as `<backup>.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Manifest {
    /// Manifest format version.
    pub format: u32,
    /// File name of the backup (in the same directory).
    pub file: String,
    /// Engine the backup came from.
    pub kind: DbKind,
    /// Hex sha256 of the backup file.
    pub sha256: String,
    /// Size in bytes.
    pub size: u64,
    /// Highest migration version applied in the backup.
    pub schema_version: i32,
    /// When the backup was taken (RFC 3339, UTC).
    pub created_at: String,
    /// Whether the backup passed verification when it was taken.
    pub verified: bool,
    /// How the file is compressed; absent for a plain SQLite file or a pg_dump archive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compression: Option<Compression>,
}

/// Compression of a backup file (opt-in: `db-backup --compress`).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// gzip (`.db.gz`).
    Gzip,
}

/// A backup on disk and its current state.
#[derive(Debug, Clone)]
pub struct BackupEntry {
    /// The backup file.
    pub path: PathBuf,
    /// Its manifest, if readable.
    pub manifest: Option<Manifest>,
    /// Whether it checks out now.
    pub state: BackupState,
}

/// Verification state of a listed backup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackupState {
    /// Verified when taken, and the file still matches its checksum.
    Verified,
    /// The file no longer matches its manifest.
    Corrupt(String),
    /// No readable manifest.
    NoManifest,
}

/// Receives progress of long operations.
pub trait Progress: Send + Sync {
    /// A step starts.
    fn step(&self, message: &str);
    /// Bytes written so far, out of an estimated total.
    fn bytes(&self, done: u64, total: u64);
}

/// Takes a verified backup of the database into `dir` (created with mode 0700 if missing).
///
/// With `compress`, a SQLite backup is gzipped after it was verified (`.db.gz`);
/// PostgreSQL custom-format dumps are compressed already.
pub async fn create(
    settings: &DbSettings,
    pool: &DbPool,
    set: &MigrationSet,
    dir: &Path,
    compress: bool,
    progress: &dyn Progress,
) -> Result<BackupEntry, BackupError> {
    create_dir_private(dir)?;
    let mut conn = pool.acquire().await?;
    let schema_version = migrations::status(&mut conn, set).await?.current_version;
    let stamp = time::OffsetDateTime::now_utc();
    let (stem, ext) = naming(&settings.url);
    let compression =
        (compress && settings.url.kind() == DbKind::Sqlite).then_some(Compression::Gzip);
    let ext = match compression {
        Some(Compression::Gzip) => format!("{ext}.gz"),
        None => ext.to_string(),
    };
    let file = format!(
        "{stem}-{}-v{schema_version}.{ext}",
        stamp
            .format(time::macros::format_description!(
                "[year][month][day]T[hour][minute][second].[subsecond digits:3]Z"
            ))
            .expect("formatting a UTC timestamp")
    );
    let final_path = dir.join(&file);
    let partial = dir.join(format!(".{file}.partial"));
    let result = async {
        match &mut conn {
            DbConn::Sqlite(c) => {
                progress.step(&format!("snapshotting into {}", final_path.display()));
                sqlite_snapshot(c, &partial, progress).await?;
                progress.step("verifying (integrity_check)");
                sqlite_verify(&partial).await?;
                if compression.is_some() {
                    progress.step("compressing (gzip)");
                    gzip_in_place(&partial)?;
                }
            }
            DbConn::Postgres(_) => {
                let DatabaseUrl::Postgres { url } = &settings.url else {
                    unreachable!("a PostgreSQL connection comes from a PostgreSQL URL")
                };
                progress.step(&format!("running pg_dump into {}", final_path.display()));
                pg_tool(
                    "pg_dump",
                    url,
                    &["--format=custom", "--no-owner", "--file"],
                    Some(&partial),
                )?;
                progress.step("verifying (pg_restore --list)");
                pg_tool("pg_restore", url, &["--list"], Some(&partial))?;
            }
        }
        Ok::<_, BackupError>(())
    }
    .await;
    if let Err(e) = result {
        let _ = fs::remove_file(&partial);
        return Err(e);
    }
    fs::set_permissions(&partial, fs::Permissions::from_mode(0o600))
        .map_err(io_error("cannot set permissions of", &partial))?;
    let (sha256, size) = sha256_file(&partial)?;
    fs::rename(&partial, &final_path).map_err(io_error("cannot rename backup to", &final_path))?;
    let manifest = Manifest {
        format: MANIFEST_FORMAT,
        file,
        kind: settings.url.kind(),
        sha256,
        size,
        schema_version,
        created_at: stamp
            .format(&time::format_description::well_known::Rfc3339)
            .expect("formatting a UTC timestamp"),
        verified: true,
        compression,
    };
    write_private(
        &manifest_path(&final_path),
        serde_json::to_string_pretty(&manifest)
            .expect("a manifest serializes")
            .as_bytes(),
    )?;
    sync_dir(dir);
    Ok(BackupEntry {
        path: final_path,
        manifest: Some(manifest),
        state: BackupState::Verified,
    })
}

/// `<backup>.json`.
pub fn manifest_path(backup: &Path) -> PathBuf {
    let mut name = backup.as_os_str().to_owned();
    name.push(".json");
    PathBuf::from(name)
}

/// Lists the backups in `dir`, oldest first, checking each file against its manifest.
pub fn list(dir: &Path) -> Result<Vec<BackupEntry>, BackupError> {
    if !dir.is_dir() {
        return Ok(Vec::new());
    }
    let mut paths: Vec<PathBuf> = fs::read_dir(dir)
        .map_err(io_error("cannot read backup directory", dir))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let name = p.file_name().unwrap_or_default().to_string_lossy();
            !name.starts_with('.') && BACKUP_EXTENSIONS.iter().any(|ext| name.ends_with(ext))
        })
        .collect();
    paths.sort();
    Ok(paths
        .into_iter()
        .map(|path| {
            let manifest = read_manifest(&path).ok();
            let state = match &manifest {
                None => BackupState::NoManifest,
                Some(m) => match check_checksum(&path, m) {
                    Ok(()) => BackupState::Verified,
                    Err(reason) => BackupState::Corrupt(reason),
                },
            };
            BackupEntry {
                path,
                manifest,
                state,
            }
        })
        .collect())
}

/// The file-name stem and extension of a database's backups: `<stem>-<time>-v<n>.<ext>`.
fn naming(url: &DatabaseUrl) -> (String, &'static str) {
    match url {
        DatabaseUrl::Sqlite { path } => (
            path.file_stem()
                .unwrap_or_default()
                .to_string_lossy()
                .to_string(),
            "db",
        ),
        DatabaseUrl::SqliteMemory => ("memory".to_string(), "db"),
        DatabaseUrl::Postgres { url } => (url.path().trim_start_matches('/').to_string(), "dump"),
    }
}

/// Keeps the newest `keep` backups of the database at `url` in `dir` and deletes its
/// older ones; backups of other databases in the same directory are left alone.
/// Returns what was deleted.
pub fn prune(dir: &Path, url: &DatabaseUrl, keep: usize) -> Result<Vec<PathBuf>, BackupError> {
    let (stem, ext) = naming(url);
    let prefix = format!("{stem}-");
    let (plain, gzipped) = (format!(".{ext}"), format!(".{ext}.gz"));
    let entries: Vec<BackupEntry> = list(dir)?
        .into_iter()
        .filter(|entry| {
            let name = entry.path.file_name().unwrap_or_default().to_string_lossy();
            name.starts_with(&prefix) && (name.ends_with(&plain) || name.ends_with(&gzipped))
        })
        .collect();
    let excess = entries.len().saturating_sub(keep);
    let mut removed = Vec::new();
    for entry in entries.into_iter().take(excess) {
        fs::remove_file(&entry.path).map_err(io_error("cannot delete", &entry.path))?;
        let _ = fs::remove_file(manifest_path(&entry.path));
        removed.push(entry.path);
    }
    Ok(removed)
}

fn read_manifest(backup: &Path) -> Result<Manifest, String> {
    let path = manifest_path(backup);
    let text = fs::read_to_string(&path)
        .map_err(|_| format!("no manifest {} (was it made by db-backup?)", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("unreadable manifest {}: {e}", path.display()))
}

fn check_checksum(backup: &Path, manifest: &Manifest) -> Result<(), String> {
    let (sha256, size) = sha256_file(backup).map_err(|e| e.to_string())?;
    if size != manifest.size {
        return Err(format!(
            "size is {size} bytes, the manifest says {}",
            manifest.size
        ));
    }
    if sha256 != manifest.sha256 {
        return Err("checksum does not match the manifest".into());
    }
    Ok(())
}

/// A backup that passed every check, ready to restore.
#[derive(Debug)]
pub struct VerifiedBackup {
    /// Its manifest.
    pub manifest: Manifest,
    path: PathBuf,
    /// The decompressed copy of a gzipped SQLite backup, deleted on drop.
    decompressed: Option<tempfile::TempPath>,
}

impl VerifiedBackup {
    /// The file to restore from: the backup itself, or its decompressed copy.
    pub fn file(&self) -> &Path {
        self.decompressed.as_deref().unwrap_or(&self.path)
    }
}

/// Checks that `backup` can be restored into a database of `kind` by code that knows `set`:
/// manifest, checksum, file integrity, and a schema this code knows.
pub async fn verify(
    backup: &Path,
    kind: DbKind,
    set: &MigrationSet,
) -> Result<VerifiedBackup, BackupError> {
    let invalid = |reason: String| BackupError::Invalid {
        path: backup.to_path_buf(),
        reason,
    };
    let meta = fs::metadata(backup).map_err(io_error("cannot read", backup))?;
    if meta.len() == 0 {
        return Err(invalid("the file is empty".into()));
    }
    let manifest = read_manifest(backup).map_err(invalid)?;
    if manifest.kind != kind {
        return Err(invalid(format!(
            "it is a {} backup and the configured database is {kind}",
            manifest.kind
        )));
    }
    check_checksum(backup, &manifest).map_err(invalid)?;
    if manifest.schema_version > set.latest() {
        return Err(invalid(format!(
            "its schema version {} is newer than this code knows (V{}); restore it with newer code",
            manifest.schema_version,
            set.latest()
        )));
    }
    let decompressed = match manifest.compression {
        Some(Compression::Gzip) => Some(gunzip_to_temp(backup).map_err(invalid)?),
        None => None,
    };
    let verified = VerifiedBackup {
        manifest,
        path: backup.to_path_buf(),
        decompressed,
    };
    if kind == DbKind::Sqlite {
        let file = verified.file();
        sqlite_verify(file)
            .await
            .map_err(|e| invalid(e.to_string()))?;
        let mut conn = sqlite_read_only(file)
            .await
            .map_err(|e| invalid(e.to_string()))?;
        let history = migrations::status_of_sqlite(&mut conn, set)
            .await
            .map_err(|e| invalid(e.to_string()))?;
        conn.close().await.ok();
        if matches!(history.state, SchemaState::Ahead | SchemaState::Diverged) {
            return Err(invalid(format!(
                "its migration history is {} relative to this code",
                history.state
            )));
        }
    }
    Ok(verified)
}

/// Replaces `path` with its gzip, keeping the name and the 0600 mode.
fn gzip_in_place(path: &Path) -> Result<(), BackupError> {
    let compressed = path.with_extension("gz-partial");
    let result = (|| {
        let mut input = File::open(path)?;
        let output = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&compressed)?;
        let mut encoder = flate2::write::GzEncoder::new(output, flate2::Compression::default());
        io::copy(&mut input, &mut encoder)?;
        encoder.finish()?.sync_all()?;
        fs::rename(&compressed, path)
    })();
    result.map_err(|e| {
        let _ = fs::remove_file(&compressed);
        io_error("cannot compress", path)(e)
    })
}

/// Decompresses a gzipped backup into a temporary file.
fn gunzip_to_temp(path: &Path) -> Result<tempfile::TempPath, String> {
    let mut output = tempfile::NamedTempFile::new()
        .map_err(|e| format!("cannot create a temporary file: {e}"))?;
    let input = File::open(path).map_err(|e| e.to_string())?;
    io::copy(
        &mut flate2::read::GzDecoder::new(input),
        output.as_file_mut(),
    )
    .map_err(|e| format!("not a valid gzip file ({e})"))?;
    Ok(output.into_temp_path())
}

/// Replaces the SQLite database at `database` with `backup` (already verified).
///
/// The caller holds the exclusive in-use claim. Stale `-wal`/`-shm` files are removed
/// before the atomic rename, so SQLite never replays an old log into the restored file.
pub fn swap_in_sqlite(backup: &Path, database: &Path) -> Result<(), BackupError> {
    let dir = database.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(io_error("cannot create", dir))?;
    let staged = dir.join(format!(
        ".{}.restoring",
        database.file_name().unwrap_or_default().to_string_lossy()
    ));
    fs::copy(backup, &staged).map_err(io_error("cannot copy backup to", &staged))?;
    File::open(&staged)
        .and_then(|f| f.sync_all())
        .map_err(io_error("cannot sync", &staged))?;
    for suffix in ["-wal", "-shm", "-journal"] {
        let mut side = database.as_os_str().to_owned();
        side.push(suffix);
        match fs::remove_file(PathBuf::from(side)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_error("cannot remove stale", database)(e)),
        }
    }
    fs::rename(&staged, database).map_err(io_error("cannot move restored file to", database))?;
    sync_dir(dir);
    Ok(())
}

/// Restores a PostgreSQL dump into the configured database: empties the current schema, then `pg_restore`.
pub async fn restore_postgres(
    settings: &DbSettings,
    pool: &DbPool,
    backup: &Path,
) -> Result<(), BackupError> {
    let DatabaseUrl::Postgres { url } = &settings.url else {
        return Err(BackupError::Tool("not a PostgreSQL database".into()));
    };
    crate::maintenance::drop_all(pool).await?;
    let dbname = url.path().trim_start_matches('/');
    pg_tool(
        "pg_restore",
        url,
        &[
            "--no-owner",
            "--single-transaction",
            "--exit-on-error",
            "--dbname",
            dbname,
        ],
        Some(backup),
    )?;
    Ok(())
}

/// Counts other sessions connected to the same PostgreSQL database.
pub async fn other_pg_sessions(pool: &DbPool) -> Result<i64, BackupError> {
    match pool.acquire().await? {
        DbConn::Postgres(mut c) => Ok(sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend'",
        )
        .fetch_one(&mut *c)
        .await?),
        DbConn::Sqlite(_) => Ok(0),
    }
}

/// `VACUUM INTO` `target`, reporting its growth as progress.
async fn sqlite_snapshot(
    conn: &mut sqlx::SqliteConnection,
    target: &Path,
    progress: &dyn Progress,
) -> Result<(), BackupError> {
    // Created empty and private first: VACUUM INTO accepts an empty file and keeps its mode.
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(target)
        .map_err(io_error("cannot create", target))?;
    let page_size: i64 = sqlx::query_scalar("PRAGMA page_size")
        .fetch_one(&mut *conn)
        .await?;
    let page_count: i64 = sqlx::query_scalar("PRAGMA page_count")
        .fetch_one(&mut *conn)
        .await?;
    let total = u64::try_from(page_size * page_count).unwrap_or(0);
    let done = Arc::new(AtomicBool::new(false));
    let watcher = {
        let done = done.clone();
        let target = target.to_path_buf();
        async move {
            while !done.load(Ordering::Relaxed) {
                let size = fs::metadata(&target).map_or(0, |m| m.len());
                progress.bytes(size.min(total), total);
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    let vacuum = async {
        let result = sqlx::query("VACUUM INTO ?")
            .bind(target.to_string_lossy().to_string())
            .execute(&mut *conn)
            .await;
        done.store(true, Ordering::Relaxed);
        result
    };
    let (result, ()) = tokio::join!(vacuum, watcher);
    result?;
    progress.bytes(total, total);
    Ok(())
}

async fn sqlite_read_only(path: &Path) -> Result<sqlx::SqliteConnection, sqlx::Error> {
    SqliteConnectOptions::new()
        .filename(path)
        .read_only(true)
        .immutable(true)
        .disable_statement_logging()
        .connect()
        .await
}

/// `PRAGMA integrity_check` on a SQLite file, read-only.
async fn sqlite_verify(path: &Path) -> Result<(), BackupError> {
    let invalid = |reason: String| BackupError::Invalid {
        path: path.to_path_buf(),
        reason,
    };
    let mut header = [0u8; 16];
    File::open(path)
        .and_then(|mut f| f.read_exact(&mut header))
        .map_err(|_| invalid("not a SQLite database (too short)".into()))?;
    if &header != b"SQLite format 3\0" {
        return Err(invalid("not a SQLite database (bad header)".into()));
    }
    let mut conn = sqlite_read_only(path)
        .await
        .map_err(|e| invalid(format!("cannot open it as SQLite: {e}")))?;
    let rows: Vec<String> = sqlx::query_scalar("PRAGMA integrity_check")
        .fetch_all(&mut conn)
        .await
        .map_err(|e| invalid(format!("integrity check failed: {e}")))?;
    conn.close().await.ok();
    if rows != ["ok"] {
        return Err(invalid(format!(
            "integrity check failed: {}",
            rows.join("; ")
        )));
    }
    Ok(())
}

/// Runs a PostgreSQL client tool with `args`, then `file`; connection details,
/// the password included, travel in the environment, never in argv.
fn pg_tool(
    tool: &str,
    url: &url::Url,
    args: &[&str],
    file: Option<&Path>,
) -> Result<(), BackupError> {
    let mut command = Command::new(tool);
    command.arg("--no-password").args(args);
    if let Some(file) = file {
        command.arg(file);
    }
    command
        .env("PGHOST", url.host_str().unwrap_or("localhost"))
        .env("PGPORT", url.port().unwrap_or(5432).to_string())
        .env("PGDATABASE", url.path().trim_start_matches('/'))
        .env("PGUSER", url.username())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if let Some(password) = url.password() {
        command.env("PGPASSWORD", password);
    }
    let output = command.output().map_err(|e| {
        if e.kind() == io::ErrorKind::NotFound {
            BackupError::Tool(format!(
                "{tool} not found on PATH; install the PostgreSQL client tools (e.g. `apt install postgresql-client`)"
            ))
        } else {
            BackupError::Tool(format!("cannot run {tool}: {e}"))
        }
    })?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let first = stderr
            .lines()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("no output");
        return Err(BackupError::Tool(format!(
            "{tool} failed ({}): {}",
            output.status,
            crate::url::mask_url(first)
        )));
    }
    Ok(())
}

fn sha256_file(path: &Path) -> Result<(String, u64), BackupError> {
    let mut file = File::open(path).map_err(io_error("cannot read", path))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = file.read(&mut buf).map_err(io_error("cannot read", path))?;
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

fn create_dir_private(dir: &Path) -> Result<(), BackupError> {
    if !dir.is_dir() {
        fs::create_dir_all(dir).map_err(io_error("cannot create backup directory", dir))?;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
            .map_err(io_error("cannot set permissions of", dir))?;
    }
    Ok(())
}

fn write_private(path: &Path, contents: &[u8]) -> Result<(), BackupError> {
    let tmp = path.with_extension("json.partial");
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io_error("cannot write", &tmp))?;
    file.write_all(contents)
        .and_then(|()| file.sync_all())
        .map_err(io_error("cannot write", &tmp))?;
    fs::rename(&tmp, path).map_err(io_error("cannot write", path))
}

/// Makes a rename durable; failing to sync a directory only weakens durability.
fn sync_dir(dir: &Path) {
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}
