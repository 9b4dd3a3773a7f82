//! Does `db-backup` hold up writers? A writer commits small transactions continuously;
//! its commit latency while `xtask db-backup` runs is compared with its latency just
//! before, in the same run. `BENCH_DB_MB` sets the database size (default 256; the
//! acceptance figure uses 1024).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use sqlx::ConnectOptions;
use tests::{Project, sqlite};

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// Commits one row at a time until `stop`, returning each commit's latency.
fn writer(
    path: std::path::PathBuf,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<Vec<Duration>> {
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let mut conn = sqlx::sqlite::SqliteConnectOptions::new()
                .filename(&path)
                .busy_timeout(Duration::from_secs(30))
                .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
                .synchronous(sqlx::sqlite::SqliteSynchronous::Normal)
                .connect()
                .await
                .unwrap();
            let mut latencies = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                sqlx::query("INSERT INTO ticks (at) VALUES (?)")
                    .bind(latencies.len() as i64)
                    .execute(&mut conn)
                    .await
                    .unwrap();
                latencies.push(t.elapsed());
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            latencies
        })
    })
}

fn run_writer_for(path: &std::path::Path, during: impl FnOnce()) -> Vec<Duration> {
    let stop = Arc::new(AtomicBool::new(false));
    let handle = writer(path.to_path_buf(), stop.clone());
    during();
    stop.store(true, Ordering::Relaxed);
    let mut latencies = handle.join().unwrap();
    latencies.sort();
    latencies
}

fn main() {
    let megabytes: usize = std::env::var("BENCH_DB_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256);
    let project = Project::sqlite();
    project.write_migration(
        "V2__bench",
        "CREATE TABLE blobs (id INTEGER PRIMARY KEY, data BLOB NOT NULL); CREATE TABLE ticks (id INTEGER PRIMARY KEY, at INTEGER NOT NULL);",
        Some("DROP TABLE ticks; DROP TABLE blobs;"),
    );
    project.xtask(&["db-init"]).ok();
    let db = project.db_path();
    let rows = megabytes * 1024 / 64; // 64 KiB per row
    sqlite(
        &db,
        &format!(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {rows}) INSERT INTO blobs (data) SELECT randomblob(65536) FROM n;"
        ),
    );
    sqlite(&db, "PRAGMA wal_checkpoint(TRUNCATE)");
    let size = std::fs::metadata(&db).unwrap().len();

    let mut backup_time = Duration::ZERO;
    let during = run_writer_for(&db, || {
        let t = Instant::now();
        project.xtask(&["db-backup"]).ok();
        backup_time = t.elapsed();
    });
    let before = run_writer_for(&db, || std::thread::sleep(backup_time));

    println!(
        "database {:.0} MiB, backup took {:.2?} ({:.0} MiB/s)",
        size as f64 / 1048576.0,
        backup_time,
        size as f64 / 1048576.0 / backup_time.as_secs_f64()
    );
    println!(
        "writer commits: {} without a backup running, {} during the backup",
        before.len(),
        during.len()
    );
    for p in [0.5, 0.99, 1.0] {
        let (b, d) = (percentile(&before, p), percentile(&during, p));
        println!(
            "commit latency p{:<3} idle {:>9.1?}  during backup {:>9.1?}  ratio {:.2}",
            (p * 100.0) as u32,
            b,
            d,
            d.as_secs_f64() / b.as_secs_f64()
        );
    }
}
