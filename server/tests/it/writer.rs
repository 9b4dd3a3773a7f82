//! The SQLite writer runs its statements on the caller's thread (rusqlite, not sqlx): a
//! query gives the same rows and the same errors there as on a pooled connection, and
//! waiting for another process's lock never stalls the runtime.

use std::time::{Duration, Instant};

use server::db::{DbError, DbPool, OpenMode, Record, RunsQueries, query};
use sqlx::Connection as _;
use sqlx::error::ErrorKind;

use crate::database::{sqlite, targets};

#[derive(Debug, PartialEq, Record)]
struct Picked {
    a: i64,
    b: i64,
    c: i64,
    d: Option<i64>,
}

#[derive(Debug, Record)]
struct Count {
    n: i64,
}

const SCHEMA: &str = "CREATE TABLE items (
    name TEXT NOT NULL UNIQUE,
    qty BIGINT CHECK (qty >= 0)
)";

/// A pool on `settings` with the `items` table.
async fn with_items(settings: &server::config::DbSettings) -> DbPool {
    let pool = DbPool::open(settings, OpenMode::Create).await.unwrap();
    pool.acquire()
        .await
        .unwrap()
        .execute_script(SCHEMA)
        .await
        .unwrap();
    pool
}

/// Runs `sql` in a write transaction of its own, committed.
async fn committed(pool: &DbPool, sql: &'static str) {
    let mut tx = pool.begin_write().await.unwrap();
    query(sql).execute(&mut tx).await.unwrap();
    tx.commit().await.unwrap();
}

/// The rows of `items`, read on `on`.
async fn items(on: &mut impl RunsQueries) -> i64 {
    query("SELECT count(*) AS n FROM items")
        .fetch_one::<Count>(on)
        .await
        .unwrap()
        .n
}

/// `$N` names its value by number, in any order and as often as wanted, and one
/// without a value is NULL: on the writer as on a pooled connection (sqlx's rules).
#[tokio::test]
async fn placeholders_bind_by_number_on_the_writer_as_on_a_pooled_connection() {
    let target = sqlite(&[]);
    let pool = DbPool::open(&target.settings, OpenMode::Create)
        .await
        .unwrap();
    const SQL: &str = "SELECT $2 AS a, $1 AS b, $1 + $2 AS c, $3 AS d";
    let expected = Picked {
        a: 20,
        b: 10,
        c: 30,
        d: None,
    };
    let mut conn = pool.acquire().await.unwrap();
    let pooled: Picked = query(SQL)
        .bind(10_i64)
        .bind(20_i64)
        .fetch_one(&mut conn)
        .await
        .unwrap();
    drop(conn);
    let mut tx = pool.begin_write().await.unwrap();
    let written: Picked = query(SQL)
        .bind(10_i64)
        .bind(20_i64)
        .fetch_one(&mut tx)
        .await
        .unwrap();
    tx.rollback().await.unwrap();
    assert_eq!((&pooled, &written), (&expected, &expected));
}

/// A constraint a write breaks comes back as sqlx's database error of that kind, which
/// the app answers with 409 or 422: on both engines. The transaction goes on after
/// the failed statement on SQLite (PostgreSQL aborts it, as it always did).
#[tokio::test]
async fn a_broken_constraint_is_a_database_error_of_its_kind_on_both_engines() {
    for target in targets(&[]) {
        let engine = target.settings.url.kind();
        let pool = with_items(&target.settings).await;
        let mut tx = pool.begin_write().await.unwrap();
        query("INSERT INTO items (name, qty) VALUES ($1, $2)")
            .bind("pen")
            .bind(1_i64)
            .execute(&mut tx)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        for (sql, name, qty, kind) in [
            (
                "INSERT INTO items (name, qty) VALUES ($1, $2)",
                Some("pen"),
                1,
                ErrorKind::UniqueViolation,
            ),
            (
                "INSERT INTO items (name, qty) VALUES ($1, $2)",
                Some("ink"),
                -1,
                ErrorKind::CheckViolation,
            ),
            (
                "INSERT INTO items (name, qty) VALUES ($1, $2)",
                None,
                1_i64,
                ErrorKind::NotNullViolation,
            ),
        ] {
            let mut tx = pool.begin_write().await.unwrap();
            let error = query(sql)
                .bind(name)
                .bind(qty)
                .execute(&mut tx)
                .await
                .expect_err("the constraint refuses the row");
            let sqlx::Error::Database(db) = &error else {
                panic!("{engine:?}: not a database error: {error:?}");
            };
            assert_eq!(db.kind(), kind, "{engine:?}: {error}");
            if engine == server::url::DbKind::Sqlite {
                assert!(
                    db.code()
                        .is_some_and(|c| c.parse::<i32>().unwrap() & 0xff == 19)
                );
                // The statement failed, not the transaction.
                query("INSERT INTO items (name, qty) VALUES ('cup', 2)")
                    .execute(&mut tx)
                    .await
                    .unwrap();
                tx.commit().await.unwrap();
                committed(&pool, "DELETE FROM items WHERE name = 'cup'").await;
            }
        }
        let mut conn = pool.acquire().await.unwrap();
        let count = items(&mut conn).await;
        assert_eq!(count, 1, "{engine:?}: only the first row stays");
    }
}

/// On the writer, a value that does not fit its field's type is a decode error, and a
/// column the query does not return is named: never a panic, never a made-up value.
#[tokio::test]
async fn rows_that_do_not_fit_their_type_are_errors_on_the_writer() {
    let target = sqlite(&[]);
    let pool = DbPool::open(&target.settings, OpenMode::Create)
        .await
        .unwrap();
    let mut tx = pool.begin_write().await.unwrap();
    // sqlx's SQLite driver reads both as 0 on a pooled connection; the writer, like
    // PostgreSQL, refuses them.
    let null = query("SELECT NULL AS n")
        .fetch_one::<Count>(&mut tx)
        .await
        .unwrap_err();
    let text = query("SELECT 'seven' AS n")
        .fetch_one::<Count>(&mut tx)
        .await
        .unwrap_err();
    for (error, what) in [(null, "NULL"), (text, "text")] {
        {
            assert!(
                matches!(error, sqlx::Error::ColumnDecode { .. }),
                "{what}: {error:?}"
            );
        }
    }
    let written = query("SELECT 1 AS m")
        .fetch_one::<Count>(&mut tx)
        .await
        .unwrap_err();
    assert!(
        matches!(&written, sqlx::Error::ColumnNotFound(name) if name == "n"),
        "{written:?}"
    );
    let none = query("SELECT 1 AS n WHERE 0")
        .fetch_one::<Count>(&mut tx)
        .await
        .unwrap_err();
    assert!(matches!(none, sqlx::Error::RowNotFound), "{none:?}");
    tx.rollback().await.unwrap();
}

/// Another process holding the file's write lock: `begin_write` waits for it (up to
/// `busy_timeout_ms`) on a blocking thread, so the runtime's one thread keeps running
/// other tasks meanwhile; past the timeout it fails as busy, and the next write works.
#[tokio::test(flavor = "current_thread")]
async fn waiting_for_another_process_lock_never_stalls_the_runtime() {
    let target = sqlite(&[("DATABASE_BUSY_TIMEOUT_MS", "2000")]);
    let path = target.settings.url.sqlite_path().unwrap().to_path_buf();
    let pool = std::sync::Arc::new(with_items(&target.settings).await);
    let mut other = sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    sqlx::raw_sql("BEGIN IMMEDIATE")
        .execute(&mut other)
        .await
        .unwrap();

    let started = Instant::now();
    let writer = {
        let pool = pool.clone();
        tokio::spawn(async move {
            let mut tx = pool.begin_write().await?;
            query("INSERT INTO items (name, qty) VALUES ('pen', 1)")
                .execute(&mut tx)
                .await?;
            tx.commit().await?;
            Ok::<_, DbError>(started.elapsed())
        })
    };
    let mut ticks = 0;
    while started.elapsed() < Duration::from_millis(400) {
        tokio::time::sleep(Duration::from_millis(10)).await;
        ticks += 1;
    }
    assert!(
        ticks >= 20,
        "the runtime ran {ticks} ticks in 400 ms while the writer waited"
    );
    assert!(!writer.is_finished(), "the writer waits for the lock");
    sqlx::raw_sql("COMMIT").execute(&mut other).await.unwrap();
    let waited = writer.await.unwrap().unwrap();
    assert!(
        waited >= Duration::from_millis(400),
        "committed after {waited:?}"
    );

    // Held past the busy timeout: busy (503 in a handler), and nothing is left locked.
    sqlx::raw_sql("BEGIN IMMEDIATE")
        .execute(&mut other)
        .await
        .unwrap();
    let started = Instant::now();
    let error = match pool.begin_write().await {
        Err(DbError::Driver(e)) => e,
        other => panic!("expected the lock to time out: {:?}", other.err()),
    };
    assert!(started.elapsed() >= Duration::from_millis(1900));
    let sqlx::Error::Database(db) = &error else {
        panic!("{error:?}")
    };
    assert_eq!(db.code().as_deref(), Some("5"), "SQLITE_BUSY: {error}");
    sqlx::raw_sql("ROLLBACK").execute(&mut other).await.unwrap();
    committed(&pool, "INSERT INTO items (name, qty) VALUES ('ink', 1)").await;
    let mut conn = pool.acquire().await.unwrap();
    let count = items(&mut conn).await;
    assert_eq!(count, 2);
}

/// A request's connection reads on the pool's readers: every read sees what the writer
/// committed before it (a snapshot of its own, never one left open), and what is not a
/// `SELECT` (a write, `RETURNING` rows) runs on the connection as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_reads_what_was_committed_before_it_and_still_writes() {
    let target = sqlite(&[]);
    let pool = with_items(&target.settings).await;
    let mut request = pool.acquire_for_request().await.unwrap();
    for i in 1..=50_i64 {
        let mut tx = pool.begin_write().await.unwrap();
        query("INSERT INTO items (name, qty) VALUES ($1, $2)")
            .bind(format!("item {i}"))
            .bind(i)
            .execute(&mut tx)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        let count = items(&mut request).await;
        let first: Option<Count> = query("SELECT qty AS n FROM items ORDER BY qty")
            .fetch_optional(&mut request)
            .await
            .unwrap();
        assert_eq!((count, first.map(|c| c.n)), (i, Some(1)));
    }
    // A write on the request's connection, and rows it returns.
    let added: Count =
        query("INSERT INTO items (name, qty) VALUES ('last', 99) RETURNING qty AS n")
            .fetch_one(&mut request)
            .await
            .unwrap();
    let changed = query("UPDATE items SET qty = qty + 1 WHERE name = 'last'")
        .execute(&mut request)
        .await
        .unwrap();
    let all: Vec<Count> =
        query("WITH q AS (SELECT qty AS n FROM items) SELECT n FROM q ORDER BY n")
            .fetch_all(&mut request)
            .await
            .unwrap();
    assert_eq!(
        (added.n, changed, all.len(), all.last().map(|c| c.n)),
        (99, 1, 51, Some(100))
    );
    // After a write on it, its reads are its own: they see the connection's state.
    let last: Count = query("SELECT last_insert_rowid() AS n")
        .fetch_one(&mut request)
        .await
        .unwrap();
    assert_eq!(last.n, 51, "the rowid of the request's own insert");
}

/// A statement after SQLite itself ended the write transaction (here a `COMMIT` sent
/// as a query) is refused: it would otherwise commit on its own, outside the
/// transaction its caller thinks it is in. Two statements in one query are the
/// caller's mistake, not an outage.
#[tokio::test]
async fn the_writer_refuses_statements_outside_its_transaction() {
    let target = sqlite(&[]);
    let pool = with_items(&target.settings).await;
    let mut tx = pool.begin_write().await.unwrap();
    let two = query("SELECT 1; SELECT 2")
        .execute(&mut tx)
        .await
        .unwrap_err();
    assert!(matches!(two, sqlx::Error::InvalidArgument(_)), "{two:?}");
    // A placeholder by name: the caller's mistake, named, not an outage.
    let named = query("SELECT :qty AS n")
        .bind(1_i64)
        .fetch_one::<Count>(&mut tx)
        .await
        .unwrap_err();
    assert!(
        matches!(&named, sqlx::Error::InvalidArgument(m) if m.contains(":qty")),
        "{named:?}"
    );
    query("COMMIT").execute(&mut tx).await.unwrap();
    let refused = query("INSERT INTO items (name, qty) VALUES ('pen', 1)")
        .execute(&mut tx)
        .await
        .unwrap_err();
    assert!(refused.to_string().contains("already ended"), "{refused}");
    assert!(tx.commit().await.is_err(), "nothing left to commit");
    let mut conn = pool.acquire().await.unwrap();
    let count = items(&mut conn).await;
    assert_eq!(count, 0, "the refused insert did not commit on its own");
}

/// An in-memory database (one shared cache): writers and readers running at once all
/// succeed; the writer waits out the readers' table locks instead of failing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_in_memory_database_takes_concurrent_reads_and_writes() {
    let dir = tempfile::tempdir().unwrap();
    let settings = server::config::AppConfig::from_env(&server::config::Environment::new(
        dir.path(),
        vec![("DATABASE_URL".to_string(), "sqlite::memory:".to_string())],
    ))
    .unwrap()
    .database;
    let pool = std::sync::Arc::new(with_items(&settings).await);
    let tasks: Vec<_> = (0..8)
        .map(|t| {
            let pool = pool.clone();
            tokio::spawn(async move {
                for i in 0..50_i64 {
                    if t % 2 == 0 {
                        let mut tx = pool.begin_write().await.unwrap();
                        query("INSERT INTO items (name, qty) VALUES ($1, $2)")
                            .bind(format!("{t}-{i}"))
                            .bind(i)
                            .execute(&mut tx)
                            .await
                            .unwrap();
                        tx.commit().await.unwrap();
                    } else {
                        let mut conn = pool.acquire_for_request().await.unwrap();
                        query("SELECT count(*) AS n FROM items")
                            .fetch_one::<Count>(&mut conn)
                            .await
                            .unwrap();
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("no read or write fails");
    }
    let mut conn = pool.acquire().await.unwrap();
    let count = items(&mut conn).await;
    assert_eq!(count, 200);
}

/// A request's reads stay on the file its connection was taken from: a file renamed
/// into place meanwhile is never opened by a reader of the old one (which would share
/// its log and shared memory with the old file's connections); the next request reads
/// the new file.
#[tokio::test]
async fn a_request_never_reads_a_file_that_replaced_its_own() {
    let target = sqlite(&[]);
    let path = target.settings.url.sqlite_path().unwrap().to_path_buf();
    let pool = with_items(&target.settings).await;
    committed(&pool, "INSERT INTO items VALUES ('old', 1)").await;
    let mut request = pool.acquire_for_request().await.unwrap();
    // The replacement: a complete database with two rows, renamed over the path.
    let staged = path.with_file_name("staged.db");
    let mut other =
        sqlx::SqliteConnection::connect(&format!("sqlite://{}?mode=rwc", staged.display()))
            .await
            .unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "{SCHEMA}; INSERT INTO items VALUES ('new', 1), ('newer', 2)"
    )))
    .execute(&mut other)
    .await
    .unwrap();
    other.close().await.unwrap();
    std::fs::rename(&staged, &path).unwrap();

    let count = items(&mut request).await;
    assert_eq!(count, 1, "the request read the file it was taken from");
    drop(request);
    // The old file's log, which the pool waits to see gone (`StaleLog`) before it opens
    // the new file (a restore removes it the same way).
    for side in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{side}", path.display()));
    }
    let mut next = pool.acquire_for_request().await.unwrap();
    let count = items(&mut next).await;
    assert_eq!(count, 2, "the next request reads the new file");
}
