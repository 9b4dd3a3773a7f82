//! Restoring: verify everything first, then swap all or nothing.
//!
//! SQLite: the backup is copied (or decompressed) into a staged file beside the database
//! and checked there; the live database is checkpointed, then the staged file is renamed
//! over it in one step, keeping the live file's owner and mode. PostgreSQL: `pg_restore`
//! turns the archive into a script first (reading every byte of it), then `psql` empties
//! the schema and runs the script in one transaction: any failure rolls back to the live
//! data as it was.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions, Connection};
use tempfile::NamedTempFile;

use super::integrity::{sqlite_check, sqlite_read_only};
use super::manifest::{
    Compression, Manifest, check_checksum, check_names, open_regular, read_manifest,
};
use super::{BackupError, io_error};
use crate::config::DbSettings;
use crate::db::{DbConn, DbPool};
use crate::durable;
use crate::migrations::{self, MigrationSet, SchemaState};
use crate::url::DatabaseUrl;

/// A backup that passed every check, staged and ready to swap in.
#[derive(Debug)]
pub struct VerifiedBackup {
    /// Its manifest.
    pub manifest: Manifest,
    /// SQLite: the database file to rename into place. PostgreSQL: the restore script.
    staged: NamedTempFile,
}

/// Checks that `backup` can be restored into the configured database by code that knows
/// `set` (manifest, checksum, the whole file readable, a schema this code knows) and
/// stages it: next to the SQLite database it will replace (so the swap is a rename on one
/// file system), or, as a restore script, next to a PostgreSQL archive. Touches no database.
pub async fn verify(
    backup: &Path,
    set: &MigrationSet,
    settings: &DbSettings,
) -> Result<VerifiedBackup, BackupError> {
    let kind = settings.url.kind();
    let staging_dir = durable::parent(settings.url.sqlite_path().unwrap_or(backup));
    let invalid = |reason: String| BackupError::Invalid {
        path: backup.to_path_buf(),
        reason,
    };
    let meta = match open_regular(backup).and_then(|file| file.metadata()) {
        Err(e) if e.kind() == io::ErrorKind::InvalidInput => return Err(invalid(e.to_string())),
        other => other.map_err(io_error("cannot read", backup))?,
    };
    if meta.len() == 0 {
        return Err(invalid("the file is empty".into()));
    }
    let manifest = read_manifest(backup).map_err(|e| invalid(e.to_string()))?;
    check_names(backup, &manifest).map_err(|e| invalid(e.to_string()))?;
    if !manifest.verified {
        return Err(invalid(
            "its manifest says it was not verified when it was taken (\"verified\": false)".into(),
        ));
    }
    if manifest.kind != kind {
        return Err(invalid(format!(
            "it is a {} backup and the configured database is {kind}",
            manifest.kind
        )));
    }
    check_checksum(backup, &manifest).map_err(|e| invalid(e.to_string()))?;
    if manifest.schema_version > set.latest() {
        return Err(invalid(format!(
            "its schema version {} is newer than this code knows (V{}); restore it with newer code",
            manifest.schema_version,
            set.latest()
        )));
    }
    fs::create_dir_all(staging_dir).map_err(io_error("cannot create", staging_dir))?;
    durable::sweep(staging_dir, ".", &[durable::RESTORING]);
    let name = backup.file_name().unwrap_or_default().to_string_lossy();
    let staged = durable::temp_in(staging_dir, &name, durable::RESTORING)
        .map_err(io_error("cannot stage the backup in", staging_dir))?;
    match &settings.url {
        DatabaseUrl::Postgres { url } => {
            crate::pg::require_tool("pg_restore")?;
            crate::pg::require_tool("psql")?;
            crate::pg::run_tool(
                "pg_restore",
                url,
                // --single-transaction: no BEGIN/COMMIT of its own inside the script
                // (large objects get one otherwise), just one pair around all of it.
                &[
                    "--no-owner".as_ref(),
                    "--single-transaction".as_ref(),
                    "--file=-".as_ref(),
                    backup.as_os_str(),
                ],
                crate::pg::ToolOutput::Into(
                    staged
                        .as_file()
                        .try_clone()
                        .map_err(io_error("cannot stage the backup in", staging_dir))?,
                ),
            )
            .await
            .map_err(|e| invalid(e.to_string()))?;
        }
        _ => {
            stage_sqlite(backup, manifest.compression, staged.as_file()).map_err(|e| match e {
                Staging::Read(e) => invalid(match manifest.compression {
                    Some(Compression::Gzip) => format!("not a valid gzip file ({e})"),
                    None => format!("cannot read it ({e})"),
                }),
                Staging::Write(e) => io_error("cannot stage the backup in", staging_dir)(e),
            })?;
            sqlite_check(staged.path())
                .await
                .map_err(|e| invalid(e.to_string()))?;
            let mut conn = sqlite_read_only(staged.path())
                .await
                .map_err(|e| invalid(e.to_string()))?;
            let history = migrations::status_of_sqlite(&mut conn, set)
                .await
                .map_err(|e| invalid(e.to_string()));
            conn.close().await.ok();
            let history = history?;
            if history.current_version != manifest.schema_version {
                return Err(invalid(format!(
                    "its manifest says schema version {}, but the file is at version {}",
                    manifest.schema_version, history.current_version
                )));
            }
            match history.state {
                SchemaState::Ahead => {
                    return Err(invalid(
                        "its migration history is ahead of this code".into(),
                    ));
                }
                SchemaState::Diverged => {
                    return Err(invalid(
                        "its migration history diverges from this code (an applied migration differs)"
                            .into(),
                    ));
                }
                SchemaState::Failed => {
                    return Err(invalid(
                        "its history records a migration that failed part-way outside a transaction"
                            .into(),
                    ));
                }
                SchemaState::UpToDate | SchemaState::Pending => {}
            }
        }
    }
    Ok(VerifiedBackup { manifest, staged })
}

/// Which side of staging failed: reading the backup, or writing beside the database.
enum Staging {
    Read(io::Error),
    Write(io::Error),
}

/// Copies (or decompresses) a SQLite backup into the staged file and syncs it.
fn stage_sqlite(
    backup: &Path,
    compression: Option<Compression>,
    staged: &File,
) -> Result<(), Staging> {
    let input = open_regular(backup).map_err(Staging::Read)?;
    let mut reader: Box<dyn Read> = match compression {
        Some(Compression::Gzip) => Box::new(flate2::read::GzDecoder::new(input)),
        None => Box::new(input),
    };
    let mut writer = staged;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = reader.read(&mut buf).map_err(Staging::Read)?;
        if n == 0 {
            break;
        }
        writer.write_all(&buf[..n]).map_err(Staging::Write)?;
    }
    staged.sync_all().map_err(Staging::Write)
}

/// Replaces the SQLite database at `database` with a verified backup, all or nothing.
///
/// The caller holds the exclusive in-use claim and took the safety backup. The live
/// database is checkpointed first (waiting up to `busy_timeout` for its readers), so its
/// `-wal` holds nothing; only then is the staged file renamed over it, and only after that
/// are the old `-wal`/`-shm` removed. A live database still in use (the checkpoint cannot
/// finish) is refused unless `allow_busy`. A live file that is not a complete database
/// (empty, half copied) is kept aside under another name, which is returned.
pub async fn swap_in_sqlite(
    verified: VerifiedBackup,
    database: &Path,
    busy_timeout: std::time::Duration,
    allow_busy: bool,
) -> Result<Option<PathBuf>, BackupError> {
    let staged = verified.staged;
    let dir = durable::parent(database);
    let (owner, mode) = match fs::metadata(database) {
        Ok(live) => ((live.uid(), live.gid()), live.permissions()),
        // Nothing to replace: owned like its directory, with SQLite's usual mode.
        Err(_) => {
            let parent = fs::metadata(dir).map_err(io_error("cannot read", dir))?;
            (
                (parent.uid(), parent.gid()),
                std::os::unix::fs::PermissionsExt::from_mode(0o644),
            )
        }
    };
    std::os::unix::fs::fchown(staged.as_file(), Some(owner.0), Some(owner.1)).map_err(io_error(
        "cannot give the restored file the owner of",
        database,
    ))?;
    fs::set_permissions(staged.path(), mode).map_err(io_error(
        "cannot give the restored file the mode of",
        database,
    ))?;
    let mut kept_aside = None;
    if database.exists() {
        match crate::db::check_live_sqlite_file(database) {
            Ok(()) => checkpoint(database, busy_timeout, allow_busy).await?,
            // Not a database (empty, half copied): nothing to checkpoint; keep it as evidence.
            Err(_) => kept_aside = Some(keep_aside(database)?),
        }
    }
    staged
        .persist(database)
        .map_err(|e| io_error("cannot move the restored file to", database)(e.error))?;
    durable::sync_dir(dir);
    for suffix in ["-wal", "-shm", "-journal"] {
        let mut side = database.as_os_str().to_owned();
        side.push(suffix);
        let side = PathBuf::from(side);
        if let Err(e) = fs::remove_file(&side)
            && e.kind() != io::ErrorKind::NotFound
        {
            log::warn!("cannot remove stale {}: {e}", side.display());
        }
    }
    Ok(kept_aside)
}

/// Links a broken live file to `<database>.broken-<unix time>` before it is replaced.
fn keep_aside(database: &Path) -> Result<PathBuf, BackupError> {
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut name = database.as_os_str().to_owned();
    name.push(format!(".broken-{stamp}"));
    let kept = PathBuf::from(name);
    fs::hard_link(database, &kept).map_err(io_error("cannot keep the broken file as", &kept))?;
    Ok(kept)
}

/// Moves everything in the live database's `-wal` into the file, leaving the log empty.
async fn checkpoint(
    database: &Path,
    busy_timeout: std::time::Duration,
    allow_busy: bool,
) -> Result<(), BackupError> {
    let mut conn = SqliteConnectOptions::new()
        .filename(database)
        .busy_timeout(busy_timeout)
        .disable_statement_logging()
        .connect()
        .await?;
    let (busy, log, done): (i64, i64, i64) = sqlx::query_as("PRAGMA wal_checkpoint(TRUNCATE)")
        .fetch_one(&mut conn)
        .await?;
    conn.close().await.ok();
    if (busy != 0 || log != done) && !allow_busy {
        return Err(BackupError::Refused(format!(
            "database {} is in use by another process (its write-ahead log cannot be checkpointed); stop it first, or pass --force",
            database.display()
        )));
    }
    Ok(())
}

/// Restores a verified PostgreSQL backup into the configured database in one transaction:
/// empty the current schema, run the restore script; any failure leaves the live data as it was.
pub async fn restore_postgres(
    settings: &DbSettings,
    verified: VerifiedBackup,
) -> Result<(), BackupError> {
    let DatabaseUrl::Postgres { url } = &settings.url else {
        return Err(BackupError::Refused("not a PostgreSQL database".into()));
    };
    // One transaction, opened and committed by this process: psql runs the script from
    // stdin, and only a complete script is followed by COMMIT. A failure (ON_ERROR_STOP),
    // or this process dying mid-way, ends the session without it: PostgreSQL rolls back.
    let prologue = format!(
        "SET client_min_messages = warning;\nSET lock_timeout = {};\nBEGIN;\n{}\n",
        settings.lock_timeout.as_millis(),
        crate::db::PG_DROP_ALL
    );
    let script = File::open(verified.staged.path()).map_err(io_error(
        "cannot read the restore script",
        verified.staged.path(),
    ))?;
    let input = io::Cursor::new(prologue)
        .chain(script)
        .chain(io::Cursor::new("\nCOMMIT;\n"));
    crate::pg::run_tool_with_input(
        "psql",
        url,
        &[
            "--no-psqlrc".as_ref(),
            "--quiet".as_ref(),
            "--set=ON_ERROR_STOP=1".as_ref(),
        ],
        crate::pg::ToolOutput::Discard,
        Some(Box::new(input)),
    )
    .await?;
    Ok(())
}

/// Other sessions connected to the same PostgreSQL database: how many, and how many of
/// them are idle (a stopped server's sessions kept open by a connection pooler look so).
pub async fn other_pg_sessions(pool: &DbPool) -> Result<(i64, i64), BackupError> {
    match pool.acquire().await? {
        DbConn::Postgres(mut c) => Ok(sqlx::query_as(
            "SELECT count(*), count(*) FILTER (WHERE state = 'idle') FROM pg_stat_activity \
              WHERE datname = current_database() AND pid <> pg_backend_pid() \
                AND backend_type = 'client backend'",
        )
        .fetch_one(&mut *c)
        .await?),
        DbConn::Sqlite(_) => Ok((0, 0)),
    }
}

/// Puts a verified backup back in place of the database `settings` names, whatever it
/// holds now: the way back after a destructive command that failed part-way (a reset,
/// a forced copy) emptied it.
pub async fn put_back(verified: VerifiedBackup, settings: &DbSettings) -> Result<(), BackupError> {
    match settings.url.sqlite_path() {
        Some(path) => swap_in_sqlite(verified, path, settings.busy_timeout, false)
            .await
            .map(drop),
        None => restore_postgres(settings, verified).await,
    }
}
