//! A backup of a large SQLite database while a writer commits as fast as it can:
//! wall time and its phases against `cp` of the idle file, the writer's longest stall,
//! and the write-ahead log's size afterwards.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use server::db::DbPool;
use server::migrations::MigrationSet;
use server::progress::Progress;

/// What the backup run measured.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BackupResult {
    /// Size of the database file, in MiB.
    pub database_mib: f64,
    /// `cp` of the idle file, seconds.
    pub cp_secs: f64,
    /// `cp` of the idle file and an `fsync` of the copy, seconds.
    pub cp_sync_secs: f64,
    /// The whole backup, verification included, seconds.
    pub backup_secs: f64,
    /// Its phases, in order, with their seconds.
    pub phases: Vec<(String, f64)>,
    /// The writer's longest transaction while the backup ran, milliseconds.
    pub writer_max_stall_ms: f64,
    /// Transactions the writer committed during the backup.
    pub writer_commits: u64,
    /// The write-ahead log's size right after the backup, and one second later, MiB.
    pub wal_after_mib: (f64, f64),
}

/// Records when each phase started.
#[derive(Default)]
struct Phases(Mutex<Vec<(String, Instant)>>);

impl Progress for Phases {
    fn step(&self, message: &str) {
        // "snapshotting into <dir>" names a path: keep the phase only.
        let phase = message
            .split(" into ")
            .next()
            .unwrap_or(message)
            .to_string();
        self.0.lock().expect("phases").push((phase, Instant::now()));
    }
    fn advance(&self, _done: u64, _total: u64) {}
}

/// Fills `path` with about `mib` MiB of 4 KB blobs (one transaction), as SQLite would
/// hold them in WAL mode, checkpointed.
pub fn fill(path: &Path, mib: u64) -> Result<()> {
    let conn = crate::writes::raw_connection(path)?;
    let rows = mib * 1024 * 1024 / 4096;
    conn.execute_batch(&format!(
        "CREATE TABLE blobs (id INTEGER PRIMARY KEY, payload BLOB NOT NULL);
         WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < {rows})
         INSERT INTO blobs (payload) SELECT randomblob(4000) FROM n;
         PRAGMA wal_checkpoint(TRUNCATE);"
    ))?;
    Ok(())
}

/// Backs up the database at `path` (already filled) into `dir` while a writer commits
/// through the same pool.
pub async fn measure(path: &Path, dir: &Path) -> Result<BackupResult> {
    let database_mib = std::fs::metadata(path)?.len() as f64 / 1_048_576.0;
    let copy = dir.join("cp-copy.db");
    // Whatever earlier scenarios left to write back would slow `cp` down: flush it first.
    std::process::Command::new("sync")
        .status()
        .context("cannot run sync")?;
    let started = Instant::now();
    let status = std::process::Command::new("cp")
        .arg(path)
        .arg(&copy)
        .status()
        .context("cannot run cp")?;
    anyhow::ensure!(status.success(), "cp failed");
    let cp_secs = started.elapsed().as_secs_f64();
    // What a backup has to do on top: make the copy durable.
    std::fs::File::open(&copy)?.sync_all()?;
    let cp_sync_secs = started.elapsed().as_secs_f64();
    std::fs::remove_file(&copy)?;

    let url = format!("sqlite://{}", path.display());
    let figment = figment::Figment::new().merge(("url", url.as_str()));
    let settings = server::config::DbSettings::from_focused(&figment, dir)?;
    let pool = crate::writes::open_pool(&url, dir).await?;
    let stop = Arc::new(AtomicBool::new(false));
    let writer = tokio::spawn(write_until_stopped(pool.clone(), stop.clone()));
    // Let the writer settle first.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let phases = Phases::default();
    let started = Instant::now();
    server::backup::create(
        &settings,
        &pool,
        MigrationSet::embedded(),
        &dir.join("backups"),
        false,
        &phases,
    )
    .await?;
    let finished = Instant::now();
    let wal = || {
        let mut wal = path.as_os_str().to_owned();
        wal.push("-wal");
        std::fs::metadata(wal).map_or(0.0, |m| m.len() as f64 / 1_048_576.0)
    };
    let wal_right_after = wal();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let wal_later = wal();
    stop.store(true, Ordering::Relaxed);
    let commits = writer.await.expect("writer task");
    let during = commits
        .iter()
        .filter(|(at, _)| (started..=finished).contains(at));
    let (max_stall, commits) =
        during.fold((Duration::ZERO, 0), |(m, c), (_, d)| (m.max(*d), c + 1));
    pool.close().await;

    let steps = phases.0.into_inner().expect("phases");
    let phases = steps
        .iter()
        .enumerate()
        .map(|(i, (name, at))| {
            let end = steps.get(i + 1).map_or(finished, |(_, next)| *next);
            (name.clone(), (end - *at).as_secs_f64())
        })
        .collect();
    Ok(BackupResult {
        database_mib,
        cp_secs,
        cp_sync_secs,
        backup_secs: (finished - started).as_secs_f64(),
        phases,
        writer_max_stall_ms: max_stall.as_secs_f64() * 1_000.0,
        writer_commits: commits,
        wal_after_mib: (wal_right_after, wal_later),
    })
}

/// Commits one small row after another until `stop`; returns when each commit ended
/// and how long its transaction took.
async fn write_until_stopped(pool: DbPool, stop: Arc<AtomicBool>) -> Vec<(Instant, Duration)> {
    let mut commits = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let started = Instant::now();
        let result = async {
            let mut tx = pool.begin_write().await.map_err(|e| e.to_string())?;
            server::db::query("INSERT INTO bench_writes (writer, body) VALUES (0, 'x')")
                .execute(&mut tx)
                .await
                .map_err(|e| e.to_string())?;
            tx.commit().await.map_err(|e| e.to_string())
        }
        .await;
        if result.is_ok() {
            commits.push((Instant::now(), started.elapsed()));
        }
        tokio::task::yield_now().await;
    }
    commits
}
