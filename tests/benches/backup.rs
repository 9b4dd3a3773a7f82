//! Does a backup hold up writers and readiness? A writer commits small transactions
//! continuously; its commit latency while `xtask db-backup` runs is compared with its
//! latency just before, in the same run. Then the server takes the same backup itself
//! (its schedule's first backup, right after start): the writer's latency and
//! `/health/db`'s are compared with an equally long stretch without a backup.
//! `BENCH_DB_MB` sets the database size (default 256; the acceptance figure uses 1024).

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
    project.xtask(&["db-init"]).ok();
    let db = project.db_path();
    // Tables of its own, outside the migrations: the server (which embeds the
    // workspace's migrations) must accept this database too.
    sqlite(
        &db,
        "CREATE TABLE blobs (id INTEGER PRIMARY KEY, data BLOB NOT NULL); CREATE TABLE ticks (id INTEGER PRIMARY KEY, at INTEGER NOT NULL);",
    );
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

    scheduled(&project, &db);
}

/// Calls `/health/db` until `stop`, returning each answer's latency.
fn prober(port: u16, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<Vec<Duration>> {
    std::thread::spawn(move || {
        let mut latencies = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            let t = Instant::now();
            let response = tests::get(port, "/health/db").unwrap();
            latencies.push(t.elapsed());
            assert!(response.status == 200, "{}", response.body);
            std::thread::sleep(Duration::from_millis(5));
        }
        latencies
    })
}

/// The server's own first scheduled backup, against the same stretch without one.
fn scheduled(project: &Project, db: &std::path::Path) {
    let stop = Arc::new(AtomicBool::new(false));
    let writes = writer(db.to_path_buf(), stop.clone());
    let server = tests::Server::start(
        project,
        &[
            ("DATABASE_BACKUP_INTERVAL_SECS", "3600"),
            ("DATABASE_BACKUP_DIR", "scheduled"),
            ("ROCKET_LOG_LEVEL", "off"),
        ],
    );
    let probes = prober(server.port, stop.clone());
    let started = Instant::now();
    while server.get("/health/db").json()["backup"]["last_success_at"].is_null() {
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "no scheduled backup"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let took = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let (mut w_during, mut h_during) = (writes.join().unwrap(), probes.join().unwrap());

    let stop = Arc::new(AtomicBool::new(false));
    let (writes, probes) = (
        writer(db.to_path_buf(), stop.clone()),
        prober(server.port, stop.clone()),
    );
    std::thread::sleep(took);
    stop.store(true, Ordering::Relaxed);
    let (mut w_idle, mut h_idle) = (writes.join().unwrap(), probes.join().unwrap());
    for v in [&mut w_during, &mut h_during, &mut w_idle, &mut h_idle] {
        v.sort();
    }
    println!("scheduled backup by the server: about {took:.2?} from start to the first backup");
    for (what, idle, during) in [
        ("commit", &w_idle, &w_during),
        ("/health/db", &h_idle, &h_during),
    ] {
        for p in [0.5, 0.99, 1.0] {
            let (i, d) = (percentile(idle, p), percentile(during, p));
            println!(
                "{what:<10} p{:<3} no backup {:>9.1?}  scheduled backup {:>9.1?}  ratio {:.2}",
                (p * 100.0) as u32,
                i,
                d,
                d.as_secs_f64() / i.as_secs_f64()
            );
        }
    }
}
