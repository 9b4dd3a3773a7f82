//! Write transactions per second: `writers` concurrent writers, each committing one
//! small row per transaction, through this project's pool, through sqlx on its
//! defaults, and through raw SQLite (rusqlite) with the same pragmas.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use server::db::{DbPool, OpenMode, query};

use crate::stats::Latencies;

/// The table every write scenario inserts into, on SQLite and on PostgreSQL.
const TABLE: &str = "CREATE TABLE IF NOT EXISTS bench_writes (id INTEGER PRIMARY KEY, writer INTEGER NOT NULL, body TEXT NOT NULL)";
const TABLE_PG: &str = "CREATE TABLE IF NOT EXISTS bench_writes (id BIGSERIAL PRIMARY KEY, writer BIGINT NOT NULL, body TEXT NOT NULL)";
const INSERT: &str = "INSERT INTO bench_writes (writer, body) VALUES ($1, $2)";
const BODY: &str =
    "a row of about one hundred bytes, the size of a typical small record in a web application.";

/// What one write run measured.
#[derive(Debug, Clone, serde::Serialize)]
pub struct WriteResult {
    /// Committed transactions per second.
    pub per_sec: f64,
    /// Transactions that failed.
    pub errors: u64,
    /// How many of those failed with "database is locked" (SQLITE_BUSY).
    pub locked: u64,
    /// Latency of one whole transaction, from asking for a connection to the commit.
    pub latency: Latencies,
}

/// Writers on tokio tasks, each running `transaction` until `duration` is up.
async fn drive<F, Fut>(writers: usize, duration: Duration, transaction: F) -> WriteResult
where
    F: Fn(i64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), sqlx::Error>> + Send,
{
    let transaction = Arc::new(transaction);
    let stop = Arc::new(AtomicBool::new(false));
    let began = Instant::now();
    let tasks: Vec<_> = (0..writers)
        .map(|writer| {
            let (transaction, stop) = (transaction.clone(), stop.clone());
            tokio::spawn(async move {
                let (mut times, mut errors, mut locked) = (Vec::new(), 0, 0);
                while !stop.load(Ordering::Relaxed) {
                    let started = Instant::now();
                    match transaction(writer as i64).await {
                        Ok(()) => times.push(started.elapsed()),
                        Err(e) => {
                            errors += 1;
                            locked += u64::from(e.to_string().contains("locked"));
                        }
                    }
                }
                (times, errors, locked)
            })
        })
        .collect();
    tokio::time::sleep(duration).await;
    stop.store(true, Ordering::Relaxed);
    let (mut samples, mut errors, mut locked) = (Vec::new(), 0, 0);
    for task in tasks {
        let (times, e, l) = task.await.expect("writer task");
        samples.extend(times);
        errors += e;
        locked += l;
    }
    WriteResult {
        per_sec: samples.len() as f64 / began.elapsed().as_secs_f64(),
        errors,
        locked,
        latency: Latencies::of(&mut samples),
    }
}

/// Through this project's pool: `DbPool::begin_write`, one insert, commit.
pub async fn through_pool(pool: &DbPool, writers: usize, duration: Duration) -> WriteResult {
    let pool = pool.clone();
    drive(writers, duration, move |writer| {
        let pool = pool.clone();
        async move {
            let mut tx = pool.begin_write().await.map_err(into_sqlx)?;
            query(INSERT)
                .bind(writer)
                .bind(BODY)
                .execute(&mut tx)
                .await?;
            tx.commit().await
        }
    })
    .await
}

/// Through a sqlx pool on its defaults (on SQLite: a deferred `BEGIN`), its default size.
pub async fn through_sqlx<DB>(
    pool: &sqlx::Pool<DB>,
    writers: usize,
    duration: Duration,
) -> WriteResult
where
    DB: sqlx::Database,
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    DB::Arguments: sqlx::IntoArguments<DB>,
    for<'q> i64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> &'q str: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
{
    let pool = pool.clone();
    drive(writers, duration, move |writer| {
        let pool = pool.clone();
        async move {
            let mut tx = pool.begin().await?;
            sqlx::query(INSERT)
                .bind(writer)
                .bind(BODY)
                .execute(&mut *tx)
                .await?;
            tx.commit().await
        }
    })
    .await
}

fn into_sqlx(error: server::db::DbError) -> sqlx::Error {
    match error {
        server::db::DbError::Driver(e) => e,
        other => sqlx::Error::Protocol(other.to_string()),
    }
}

/// Raw SQLite: `threads` threads, each on its own rusqlite connection with the pool's
/// pragmas (WAL, `synchronous=NORMAL`, foreign keys, a busy timeout), committing
/// `BEGIN IMMEDIATE` transactions with a cached statement. One thread is the engine's
/// own limit on this machine.
pub fn raw_sqlite(path: &Path, threads: usize, duration: Duration) -> Result<WriteResult> {
    let stop = Arc::new(AtomicBool::new(false));
    let began = Instant::now();
    let handles = (0..threads)
        .map(|writer| {
            let conn = raw_connection(path)?;
            let stop = stop.clone();
            Ok(std::thread::spawn(move || {
                let (mut times, mut errors, mut locked) = (Vec::new(), 0u64, 0u64);
                while !stop.load(Ordering::Relaxed) {
                    let started = Instant::now();
                    match raw_transaction(&conn, writer as i64) {
                        Ok(()) => times.push(started.elapsed()),
                        Err(e) => {
                            errors += 1;
                            locked += u64::from(e.to_string().contains("locked"));
                        }
                    }
                }
                (times, errors, locked)
            }))
        })
        .collect::<Result<Vec<_>>>()?;
    std::thread::sleep(duration);
    stop.store(true, Ordering::Relaxed);
    let (mut samples, mut errors, mut locked) = (Vec::new(), 0, 0);
    for handle in handles {
        let (times, e, l) = handle.join().expect("writer thread");
        samples.extend(times);
        errors += e;
        locked += l;
    }
    Ok(WriteResult {
        per_sec: samples.len() as f64 / began.elapsed().as_secs_f64(),
        errors,
        locked,
        latency: Latencies::of(&mut samples),
    })
}

/// A rusqlite connection with the pragmas this project's pool sets.
pub fn raw_connection(path: &Path) -> Result<rusqlite::Connection> {
    let conn = rusqlite::Connection::open(path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    conn.busy_timeout(Duration::from_secs(5))?;
    conn.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;",
    )?;
    conn.execute_batch(TABLE)?;
    Ok(conn)
}

fn raw_transaction(conn: &rusqlite::Connection, writer: i64) -> rusqlite::Result<()> {
    conn.execute_batch("BEGIN IMMEDIATE")?;
    let inserted = conn
        .prepare_cached(INSERT)
        .and_then(|mut s| s.execute(rusqlite::params![writer, BODY]));
    match inserted {
        Ok(_) => conn.execute_batch("COMMIT"),
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            Err(e)
        }
    }
}

/// Opens this project's pool on `url` (SQLite or PostgreSQL) and creates the table.
pub async fn open_pool(url: &str, dir: &Path) -> Result<DbPool> {
    let figment = figment::Figment::new().merge(("url", url));
    let settings = server::config::DbSettings::from_focused(&figment, dir)?;
    let pool = DbPool::open(&settings, OpenMode::Create).await?;
    let table = match pool.kind() {
        server::url::DbKind::Sqlite => TABLE,
        server::url::DbKind::Postgres => TABLE_PG,
    };
    pool.acquire().await?.execute_script(table).await?;
    Ok(pool)
}

/// Opens a sqlx SQLite pool on its defaults and creates the table.
pub async fn open_sqlx_sqlite(path: &Path) -> Result<sqlx::SqlitePool> {
    let options = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true);
    let pool = sqlx::SqlitePool::connect_with(options).await?;
    sqlx::raw_sql(TABLE).execute(&pool).await?;
    Ok(pool)
}

/// Opens a sqlx PostgreSQL pool on its defaults and creates the table.
pub async fn open_sqlx_pg(url: &str) -> Result<sqlx::PgPool> {
    let pool = sqlx::PgPool::connect(url).await?;
    sqlx::raw_sql(TABLE_PG).execute(&pool).await?;
    Ok(pool)
}
