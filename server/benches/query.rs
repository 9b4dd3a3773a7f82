//! The cost of `server::db::query` (one query for both engines) against the same query
//! written for one engine with sqlx directly, on the same connection, interleaved so the
//! ratio holds however busy the machine is. SQLite always; PostgreSQL when reachable.
//!
//! `cargo bench -p server --bench query` (a release build).

use std::time::{Duration, Instant};

use server::config::{AppConfig, Environment};
use server::db::{DbConn, DbPool, OpenMode, query};

const ROUNDS: usize = 20_000;
const ROWS: i64 = 1_000;

#[derive(server::db::Record)]
struct Note {
    id: i64,
    title: String,
}

const READ: &str = "SELECT id, title FROM notes WHERE id = $1";
const WRITE: &str = "UPDATE notes SET title = $1 WHERE id = $2";

/// Reads one row through the engine-neutral API.
async fn read_neutral(conn: &mut DbConn, id: i64) -> Note {
    query(READ).bind(id).fetch_one(conn).await.unwrap()
}

/// The same read, written for the connection's engine.
async fn read_direct(conn: &mut DbConn, id: i64) -> Note {
    match conn {
        DbConn::Sqlite(c) => sqlx::query_as(READ).bind(id).fetch_one(&mut **c).await,
        DbConn::Postgres(c) => sqlx::query_as(READ).bind(id).fetch_one(&mut **c).await,
    }
    .unwrap()
}

async fn write_neutral(conn: &mut DbConn, id: i64) {
    let mut tx = conn.begin_write().await.unwrap();
    query(WRITE)
        .bind("x")
        .bind(id)
        .execute(&mut tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
}

async fn write_direct(conn: &mut DbConn, id: i64) {
    match conn {
        DbConn::Sqlite(c) => {
            let mut tx = sqlx::Connection::begin_with(&mut **c, "BEGIN IMMEDIATE")
                .await
                .unwrap();
            sqlx::query(WRITE)
                .bind("x")
                .bind(id)
                .execute(&mut *tx)
                .await
                .unwrap();
            tx.commit().await.unwrap();
        }
        DbConn::Postgres(c) => {
            let mut tx = sqlx::Connection::begin(&mut **c).await.unwrap();
            sqlx::query(WRITE)
                .bind("x")
                .bind(id)
                .execute(&mut *tx)
                .await
                .unwrap();
            tx.commit().await.unwrap();
        }
    }
}

/// Median times of `neutral` and `direct`, run alternately `rounds` times on `conn`.
async fn compare<N, D, RN, RD>(
    conn: &mut DbConn,
    rounds: usize,
    mut neutral: N,
    mut direct: D,
) -> (Duration, Duration)
where
    N: AsyncFnMut(&mut DbConn, i64) -> RN,
    D: AsyncFnMut(&mut DbConn, i64) -> RD,
{
    let (mut n, mut d) = (Vec::with_capacity(rounds), Vec::with_capacity(rounds));
    for round in 0..rounds as i64 {
        let id = round % ROWS + 1;
        let t = Instant::now();
        neutral(conn, id).await;
        n.push(t.elapsed());
        let t = Instant::now();
        direct(conn, id).await;
        d.push(t.elapsed());
    }
    (median(n), median(d))
}

fn report(label: &str, what: &str, neutral: Duration, direct: Duration) {
    println!(
        "{label:<8} {what} p50 db::query {neutral:>8.1?}  sqlx direct {direct:>8.1?}  ratio {:.3}",
        neutral.as_secs_f64() / direct.as_secs_f64()
    );
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

async fn measure(label: &str, url: &str) {
    let dir = tempfile::tempdir().unwrap();
    let vars = [("DATABASE_URL".to_string(), url.to_string())];
    let settings = AppConfig::from_env(&Environment::new(dir.path(), vars))
        .unwrap()
        .database;
    let pool = DbPool::open(&settings, OpenMode::Create).await.unwrap();
    let mut conn = pool.acquire().await.unwrap();
    conn.execute_script(&format!(
        "DROP TABLE IF EXISTS notes; CREATE TABLE notes (id BIGINT PRIMARY KEY, title TEXT NOT NULL); \
         INSERT INTO notes SELECT i, 'note ' || i FROM (WITH RECURSIVE n(i) AS \
         (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {ROWS}) SELECT i FROM n) AS s;"
    ))
    .await
    .unwrap();
    for round in 0..1_000 {
        let id = round % ROWS + 1;
        assert_eq!(read_neutral(&mut conn, id).await.id, id);
        assert!(!read_direct(&mut conn, id).await.title.is_empty());
    }
    let (n, d) = compare(&mut conn, ROUNDS, read_neutral, read_direct).await;
    report(label, "read ", n, d);
    let (n, d) = compare(&mut conn, ROUNDS / 4, write_neutral, write_direct).await;
    report(label, "write", n, d);
    drop(conn);
    pool.close().await;
}

fn main() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        measure("sqlite", "sqlite://bench.db").await;
        match tests::PgDatabase::create() {
            Some(pg) => measure("postgres", &pg.url).await,
            None => println!("postgres skipped: not reachable"),
        }
    });
}
