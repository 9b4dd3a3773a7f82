//! Taking a backup: snapshot, verify, checksum, manifest, then the final name.

use std::fs::{self, File};
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use sqlx::Connection;

use super::catalog::{self, BackupEntry, BackupState};
use super::integrity::{sqlite_check, sqlite_read_only};
use super::lock::{LOCK_WAIT, lock_dir_async};
use super::manifest::{
    Compression, MANIFEST_FORMAT, Manifest, database_identity, manifest_path, write_manifest,
};
use super::off_the_runtime;
use super::snapshot;
use super::{BackupError, database_owner, io_error};
use crate::config::DbSettings;
use crate::db::{DbConn, DbPool};
use crate::durable;
use crate::migrations::{self, MigrationSet};
use crate::progress::Progress;
use crate::url::{DatabaseUrl, DbKind};

/// Takes a verified backup of the database into `dir` (created, or tightened, to mode 0700).
///
/// With `compress`, a SQLite backup is gzipped after it was verified (`.db.gz`);
/// PostgreSQL custom-format dumps are compressed already. One backup at a time writes
/// into a directory; debris of killed backups there is swept first.
pub async fn create(
    settings: &DbSettings,
    pool: &DbPool,
    set: &MigrationSet,
    dir: &Path,
    compress: bool,
    progress: &dyn Progress,
) -> Result<BackupEntry, BackupError> {
    create_within(settings, pool, set, dir, compress, LOCK_WAIT, progress).await
}

/// [`create`], waiting at most `wait` for another process's lock on `dir` (saying so
/// through `progress`); [`BackupError::Locked`] after that, nothing written.
pub async fn create_within(
    settings: &DbSettings,
    pool: &DbPool,
    set: &MigrationSet,
    dir: &Path,
    compress: bool,
    wait: std::time::Duration,
    progress: &dyn Progress,
) -> Result<BackupEntry, BackupError> {
    let owner = database_owner(&settings.url);
    create_dir_private(dir, owner, progress)?;
    let _lock = lock_dir_async(dir, owner, wait, progress).await?;
    catalog::sweep(dir);

    let stamp = time::OffsetDateTime::now_utc();
    let (stem, ext) = naming(&settings.url);
    let compression =
        (compress && settings.url.kind() == DbKind::Sqlite).then_some(Compression::Gzip);
    let ext = match compression {
        Some(Compression::Gzip) => format!("{ext}.gz"),
        None => ext.to_string(),
    };
    let base = format!(
        "{stem}-{}",
        stamp
            .format(time::macros::format_description!(
                "[year][month][day]T[hour][minute][second].[subsecond digits:3]Z"
            ))
            .expect("formatting a UTC timestamp")
    );
    let temp = |what| durable::temp_in(dir, &base, durable::PARTIAL).map_err(io_error(what, dir));

    let _backing_up = pool.backing_up();
    let conn = pool.acquire().await?;
    // The file's sha256 and size when already taken (beside the integrity check).
    let mut digest = None;
    let (file, schema_version) = match conn {
        DbConn::Sqlite(mut c) => {
            progress.step(&format!("snapshotting into {}", dir.display()));
            let snapshot = temp("cannot create a backup file in")?;
            let source = settings.url.sqlite_path();
            let written = snapshot::sqlite(&mut c, source, snapshot.path(), progress).await;
            // Back to the pool: everything after reads the snapshot file, not the
            // database (a server with one connection keeps answering meanwhile).
            drop(c);
            // A snapshot that failed (a full disk) may leave a journal behind.
            for side in ["-journal", "-wal", "-shm"] {
                let mut path = snapshot.path().as_os_str().to_owned();
                path.push(side);
                let _ = fs::remove_file(&path);
            }
            written.map_err(|e| match e {
                BackupError::Write { .. } => e,
                other => BackupError::Write {
                    dir: dir.to_path_buf(),
                    reason: other.to_string(),
                },
            })?;
            // An uncompressed snapshot is the backup file: it is synced and hashed on one
            // core while the other checks it (both only read it).
            let hashing = compression.is_none().then(|| {
                let (handle, path) = (
                    snapshot.as_file().try_clone(),
                    snapshot.path().to_path_buf(),
                );
                off_the_runtime(move || {
                    handle?.sync_all()?;
                    durable::sha256_file(&path)
                })
            });
            progress.step(match hashing {
                Some(_) => "verifying (integrity_check) while syncing and checksumming (sha256)",
                None => "verifying (integrity_check)",
            });
            let (checked, hashed) = tokio::join!(sqlite_check(snapshot.path()), async {
                match hashing {
                    Some(hashing) => Some(hashing.await),
                    None => None,
                }
            });
            checked.map_err(|e| BackupError::Invalid {
                path: snapshot.path().to_path_buf(),
                reason: e.to_string(),
            })?;
            digest = hashed;
            let version = sqlite_schema_version(snapshot.path(), set).await?;
            let file = match compression {
                Some(Compression::Gzip) => {
                    progress.step("compressing (gzip)");
                    let gz = temp("cannot create a backup file in")?;
                    let (source, output) =
                        (snapshot.path().to_path_buf(), gz.as_file().try_clone());
                    off_the_runtime(move || gzip(&source, &output?))
                        .await
                        .map_err(io_error("cannot compress", dir))?;
                    gz
                }
                None => snapshot,
            };
            (file, version)
        }
        DbConn::Postgres(mut c) => {
            let DatabaseUrl::Postgres { url } = &settings.url else {
                unreachable!("a PostgreSQL connection comes from a PostgreSQL URL")
            };
            progress.step(&format!("running pg_dump into {}", dir.display()));
            let dump = temp("cannot create a backup file in")?;
            let target = dump
                .as_file()
                .try_clone()
                .map_err(io_error("cannot create a backup file in", dir))?;
            let version = pg_dump_snapshot(&mut c, url, target, set).await?;
            drop(c);
            progress.step("verifying (pg_restore reads the whole archive)");
            pg_verify(url, dump.path()).await?;
            (dump, version)
        }
    };
    durable::give(file.as_file(), owner);
    let (sha256, size) = match digest {
        Some(digest) => digest.map_err(io_error("cannot sync and read", file.path()))?,
        None => {
            progress.step("syncing and checksumming (sha256)");
            let (handle, path) = (file.as_file().try_clone(), file.path().to_path_buf());
            off_the_runtime(move || handle?.sync_all())
                .await
                .map_err(io_error("cannot sync", file.path()))?;
            off_the_runtime(move || durable::sha256_file(&path))
                .await
                .map_err(io_error("cannot read", file.path()))?
        }
    };

    let name = format!("{base}-v{schema_version}.{ext}");
    let final_path = dir.join(&name);
    let manifest = Manifest {
        format: MANIFEST_FORMAT,
        file: name,
        kind: settings.url.kind(),
        database: Some(database_identity(&settings.url)),
        sha256,
        size,
        schema_version,
        created_at: stamp
            .format(&time::format_description::well_known::Rfc3339)
            .expect("formatting a UTC timestamp"),
        // Under the directory's lock, held since the start: no other backup writes here.
        sequence: Some(catalog::next_sequence(dir, owner)?),
        verified: true,
        compression,
    };
    // Manifest first: a file under a final name always has its manifest.
    write_manifest(&final_path, &manifest, owner)
        .map_err(io_error("cannot write manifest for", &final_path))?;
    if let Err(e) = file.persist_noclobber(&final_path) {
        let _ = fs::remove_file(manifest_path(&final_path));
        return Err(io_error("cannot rename backup to", &final_path)(e.error));
    }
    durable::sync_dir(dir);
    Ok(BackupEntry {
        path: final_path,
        manifest: Some(manifest),
        state: BackupState::Verified,
        untrusted_sequence: false,
    })
}

/// The file-name stem and extension of a database's backups: `<stem>-<time>-v<n>.<ext>`.
fn naming(url: &DatabaseUrl) -> (String, &'static str) {
    let (stem, ext) = match url {
        DatabaseUrl::Sqlite { path } => (
            path.file_stem()
                .unwrap_or_default()
                .to_string_lossy()
                .to_string(),
            "db",
        ),
        DatabaseUrl::SqliteMemory => ("memory".to_string(), "db"),
        DatabaseUrl::Postgres { url } => (
            crate::pg::database_name(url).unwrap_or_else(|_| "postgres".into()),
            "dump",
        ),
    };
    let safe = stem
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect::<String>()
        .trim_start_matches('.')
        .to_string();
    (safe, ext)
}

/// Creates `dir` (and parents) private (0700) and owned like the database. An existing
/// directory is tightened to 0700 only when it holds nothing but backups and belongs to
/// this process's user; a shared one (the project root, `/tmp`, a share another user
/// owns) keeps its mode, and the backups in it are 0600 anyway.
pub(super) fn create_dir_private(
    dir: &Path,
    owner: Option<durable::Owner>,
    progress: &dyn Progress,
) -> Result<(), BackupError> {
    if !dir.exists() {
        fs::create_dir_all(dir).map_err(io_error("cannot create backup directory", dir))?;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
            .map_err(io_error("cannot make private (chmod 700)", dir))?;
        if let Ok(handle) = File::open(dir) {
            durable::give(&handle, owner);
        }
        return Ok(());
    }
    let meta = fs::metadata(dir).map_err(io_error("cannot read", dir))?;
    let mode = meta.permissions().mode();
    if mode & 0o077 == 0 {
        return Ok(());
    }
    // `/proc/self` belongs to this process's effective user: never chmod another's
    // directory (a world-writable share), which works as it is.
    let ours = fs::metadata("/proc/self").is_ok_and(|me| me.uid() == meta.uid());
    if ours && catalog::holds_only_backups(dir) {
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
            .map_err(io_error("cannot make private (chmod 700)", dir))?;
    } else {
        progress.step(&format!(
            "note: {} is shared (mode {:o}{}), so its mode is left alone; the backup itself is private (0600)",
            dir.display(),
            mode & 0o7777,
            if ours { "" } else { ", another user's" }
        ));
    }
    Ok(())
}

/// The schema version recorded inside a SQLite snapshot.
async fn sqlite_schema_version(path: &Path, set: &MigrationSet) -> Result<i32, BackupError> {
    let mut conn = sqlite_read_only(path).await?;
    let status = migrations::status_of_sqlite(&mut conn, set).await;
    conn.close().await.ok();
    Ok(status?.current_version)
}

/// Writes the gzip of `source` into `output` and syncs it.
fn gzip(source: &Path, output: &File) -> io::Result<()> {
    let mut input = File::open(source)?;
    let mut encoder = flate2::write::GzEncoder::new(output, flate2::Compression::default());
    io::copy(&mut input, &mut encoder)?;
    encoder.finish()?.sync_all()
}

/// `pg_dump` of one exported snapshot into `target` (an empty file); the schema version
/// is read in the same snapshot, so the manifest describes exactly what was dumped.
async fn pg_dump_snapshot(
    conn: &mut sqlx::PgConnection,
    url: &url::Url,
    target: File,
    set: &MigrationSet,
) -> Result<i32, BackupError> {
    // The session idles in its transaction while pg_dump works: the pool's idle-in-transaction
    // and statement timeouts must not end it (and with it the snapshot) mid-dump.
    sqlx::raw_sql(
        "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY; \
         SET LOCAL idle_in_transaction_session_timeout = 0; SET LOCAL statement_timeout = 0",
    )
    .execute(&mut *conn)
    .await?;
    let result = async {
        let snapshot: String = sqlx::query_scalar("SELECT pg_export_snapshot()")
            .fetch_one(&mut *conn)
            .await?;
        let version = migrations::status_of_pg(conn, set).await?.current_version;
        let snapshot = format!("--snapshot={snapshot}");
        // The archive comes through this process (see `ToolOutput`).
        crate::pg::run_tool(
            "pg_dump",
            url,
            &[
                "--format=custom".as_ref(),
                "--no-owner".as_ref(),
                snapshot.as_ref(),
            ],
            crate::pg::ToolOutput::Into(target),
        )
        .await?;
        Ok::<_, BackupError>(version)
    }
    .await;
    let ended = sqlx::raw_sql("ROLLBACK").execute(&mut *conn).await;
    if let (Ok(_), Err(e)) = (&result, ended) {
        // The dump is complete; only the read-only snapshot's session ended badly.
        log::warn!("ending the backup's snapshot transaction: {e}");
    }
    result
}

/// Reads the whole archive with `pg_restore` (every data block decompressed), writing nothing.
async fn pg_verify(url: &url::Url, archive: &Path) -> Result<(), BackupError> {
    crate::pg::run_tool(
        "pg_restore",
        url,
        &["--file=-".as_ref(), archive.as_os_str()],
        crate::pg::ToolOutput::Discard,
    )
    .await?;
    Ok(())
}
