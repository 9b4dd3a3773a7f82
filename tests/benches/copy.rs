//! How fast is `db-copy`? One narrow table (`id BIGINT PRIMARY KEY, kind INTEGER, note
//! TEXT`) of `BENCH_ROWS` rows (default 1,000,000), measured side by side in one run:
//!
//! - `xtask db-copy` SQLite → PostgreSQL and PostgreSQL → SQLite, verification included;
//! - the naive way, a script with sqlx: read every row, `INSERT` it with a prepared
//!   statement, one transaction, no verification;
//! - the raw engine: PostgreSQL's own `COPY … FROM STDIN` of the rows already spelled
//!   out in memory (the most a loader can get from the server).
//!
//! Run on release builds: `cargo bench -p tests --bench copy` (it builds xtask in release).

use std::time::{Duration, Instant};

use futures_util::TryStreamExt as _;
use sqlx::{ConnectOptions, Connection, Row};
use tests::{PgDatabase, Project, sqlite};

const SCHEMA: &str =
    "CREATE TABLE events (id BIGINT PRIMARY KEY, kind INTEGER NOT NULL, note TEXT);";

fn rate(rows: u64, elapsed: Duration) -> f64 {
    rows as f64 / elapsed.as_secs_f64()
}

fn main() {
    let rows: u64 = std::env::var("BENCH_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let Some(pg_copy) = PgDatabase::create() else {
        return;
    };
    let pg_naive = PgDatabase::create().expect("second database");
    let pg_raw = PgDatabase::create().expect("third database");
    let project = Project::sqlite();
    project.write_migration("V2__events", SCHEMA, Some("DROP TABLE events;"));
    project.xtask(&["db-init"]).ok();
    sqlite(
        &project.db_path(),
        &format!(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {rows}) \
             INSERT INTO events SELECT i, i % 7, 'event number ' || i FROM n"
        ),
    );
    for db in [&pg_naive, &pg_raw] {
        project
            .xtask_with(&["db-init"], &[("DATABASE_URL", &db.url)])
            .ok();
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();

    // db-copy, both ways.
    let started = Instant::now();
    project.xtask(&["db-copy", "--to", &pg_copy.url]).ok();
    let to_pg = started.elapsed();
    let started = Instant::now();
    project
        .xtask_with(
            &["db-copy", "--to", "sqlite://back.db"],
            &[("DATABASE_URL", &pg_copy.url)],
        )
        .ok();
    let to_sqlite = started.elapsed();

    let (naive_to_pg, naive_to_sqlite, raw_pg) = runtime.block_on(async {
        let mut lite = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(project.db_path())
            .connect()
            .await
            .unwrap();
        let mut pg = sqlx::PgConnection::connect(&pg_naive.url).await.unwrap();

        // Naive SQLite → PostgreSQL.
        let started = Instant::now();
        let mut tx = pg.begin().await.unwrap();
        {
            let mut source =
                sqlx::query("SELECT id, kind, note FROM events ORDER BY id").fetch(&mut lite);
            while let Some(row) = source.try_next().await.unwrap() {
                sqlx::query("INSERT INTO events VALUES ($1, $2, $3)")
                    .bind(row.get::<i64, _>(0))
                    .bind(row.get::<i64, _>(1) as i32)
                    .bind(row.get::<Option<String>, _>(2))
                    .execute(&mut *tx)
                    .await
                    .unwrap();
            }
        }
        tx.commit().await.unwrap();
        let naive_to_pg = started.elapsed();

        // Naive PostgreSQL → SQLite (a fresh file at the same version).
        let back = project.path().join("naive.db");
        std::fs::copy(project.db_path(), &back).unwrap();
        let mut target = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(&back)
            .connect()
            .await
            .unwrap();
        sqlx::query("DELETE FROM events")
            .execute(&mut target)
            .await
            .unwrap();
        let started = Instant::now();
        let mut tx = target.begin().await.unwrap();
        {
            let mut source =
                sqlx::query("SELECT id, kind, note FROM events ORDER BY id").fetch(&mut pg);
            while let Some(row) = source.try_next().await.unwrap() {
                sqlx::query("INSERT INTO events VALUES ($1, $2, $3)")
                    .bind(row.get::<i64, _>(0))
                    .bind(row.get::<i32, _>(1))
                    .bind(row.get::<Option<String>, _>(2))
                    .execute(&mut *tx)
                    .await
                    .unwrap();
            }
        }
        tx.commit().await.unwrap();
        let naive_to_sqlite = started.elapsed();

        // Raw engine: COPY of text prepared beforehand.
        let mut text = Vec::new();
        for i in 1..=rows {
            text.extend_from_slice(format!("{i}\t{}\tevent number {i}\n", i % 7).as_bytes());
        }
        let mut raw = sqlx::PgConnection::connect(&pg_raw.url).await.unwrap();
        let started = Instant::now();
        let mut tx = raw.begin().await.unwrap();
        let mut copy = tx.copy_in_raw("COPY events FROM STDIN").await.unwrap();
        for chunk in text.chunks(1 << 20) {
            copy.send(chunk).await.unwrap();
        }
        copy.finish().await.unwrap();
        tx.commit().await.unwrap();
        (naive_to_pg, naive_to_sqlite, started.elapsed())
    });

    println!(
        "db-copy benchmark: {rows} rows of (id BIGINT, kind INTEGER, note TEXT), release build"
    );
    println!(
        "| direction | db-copy (verified) | naive sqlx script | db-copy ÷ naive | PostgreSQL COPY alone | db-copy ÷ COPY |"
    );
    println!("|---|---|---|---|---|---|");
    println!(
        "| SQLite → PostgreSQL | {:.0} rows/s ({:.1} s) | {:.0} rows/s | {:.1} | {:.0} rows/s | {:.2} |",
        rate(rows, to_pg),
        to_pg.as_secs_f64(),
        rate(rows, naive_to_pg),
        naive_to_pg.as_secs_f64() / to_pg.as_secs_f64(),
        rate(rows, raw_pg),
        raw_pg.as_secs_f64() / to_pg.as_secs_f64(),
    );
    println!(
        "| PostgreSQL → SQLite | {:.0} rows/s ({:.1} s) | {:.0} rows/s | {:.1} | – | – |",
        rate(rows, to_sqlite),
        to_sqlite.as_secs_f64(),
        rate(rows, naive_to_sqlite),
        naive_to_sqlite.as_secs_f64() / to_sqlite.as_secs_f64(),
    );
}
