//! The pool and the migrations against real SQLite files and the real PostgreSQL server.

use std::path::Path;
use std::time::{Duration, Instant};

use server::config::{AppConfig, DbSettings, Environment};
use server::db::{DbConn, DbError, DbPool, OpenMode};
use server::migrations::{self, MigrationError, MigrationSet, SchemaState};
use sqlx::Connection as _;
use tests::PgDatabase;

/// A database to test against, cleaned up on drop.
pub(crate) struct Target {
    pub(crate) settings: DbSettings,
    _dir: tempfile::TempDir,
    _pg: Option<PgDatabase>,
}

fn settings(dir: &Path, url: &str, extra: &[(&str, &str)]) -> DbSettings {
    let mut vars = vec![("DATABASE_URL".to_string(), url.to_string())];
    vars.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    AppConfig::from_env(&Environment::new(dir, vars))
        .unwrap()
        .database
}

pub(crate) fn sqlite(extra: &[(&str, &str)]) -> Target {
    let dir = tempfile::tempdir().unwrap();
    Target {
        settings: settings(dir.path(), "sqlite://data/app.db", extra),
        _dir: dir,
        _pg: None,
    }
}

fn postgres(extra: &[(&str, &str)]) -> Option<Target> {
    let pg = PgDatabase::create()?;
    let dir = tempfile::tempdir().unwrap();
    Some(Target {
        settings: settings(dir.path(), &pg.url, extra),
        _dir: dir,
        _pg: Some(pg),
    })
}

/// SQLite always; PostgreSQL when reachable (required in CI).
pub(crate) fn targets(extra: &[(&str, &str)]) -> Vec<Target> {
    let mut all = vec![sqlite(extra)];
    all.extend(postgres(extra));
    all
}

fn set(files: &[(&str, &str)]) -> MigrationSet {
    MigrationSet::from_files(files.iter().map(|(n, s)| (n.to_string(), s.to_string())))
}

fn with_users() -> MigrationSet {
    set(&[
        ("V1__initial.sql", "SELECT 1;"),
        ("V1__initial.down.sql", "SELECT 1;"),
        (
            "V2__users.sql",
            "CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT NOT NULL);",
        ),
        ("V2__users.down.sql", "DROP TABLE users;"),
    ])
}

async fn scalar_i64(conn: &mut DbConn, sql: &'static str) -> i64 {
    match conn {
        DbConn::Sqlite(c) => sqlx::query_scalar(sql).fetch_one(&mut **c).await.unwrap(),
        DbConn::Postgres(c) => sqlx::query_scalar(sql).fetch_one(&mut **c).await.unwrap(),
    }
}

async fn table_exists(conn: &mut DbConn, table: &str) -> bool {
    match conn {
        DbConn::Sqlite(c) => {
            sqlx::query_scalar::<_, i64>("SELECT count(*) FROM sqlite_master WHERE name = ?")
                .bind(table)
                .fetch_one(&mut **c)
                .await
                .unwrap()
                > 0
        }
        DbConn::Postgres(c) => sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
            .bind(table)
            .fetch_one(&mut **c)
            .await
            .unwrap(),
    }
}

/// Opens (creating if needed) the target's pool and takes one connection.
async fn connect(target: &Target) -> (DbPool, DbConn) {
    let pool = DbPool::open(&target.settings, OpenMode::Create)
        .await
        .unwrap();
    let conn = pool.acquire().await.unwrap();
    (pool, conn)
}

#[tokio::test]
async fn pool_opens_and_hands_out_working_connections() {
    for target in targets(&[]) {
        let (pool, mut conn) = connect(&target).await;
        conn.ping().await.unwrap();
        assert_eq!(
            scalar_i64(&mut conn, "SELECT CAST(41 + 1 AS BIGINT)").await,
            42,
            "{:?}",
            pool.kind()
        );
        if let Some(path) = target.settings.url.sqlite_path() {
            assert!(path.is_file(), "the file and its directory were created");
        }
        drop(conn);
        pool.close().await;
    }
}

#[tokio::test]
async fn sqlite_pragmas_are_in_effect_on_every_pooled_connection() {
    let target = sqlite(&[
        ("DATABASE_MAX_CONNECTIONS", "4"),
        ("DATABASE_BUSY_TIMEOUT_MS", "1234"),
    ]);
    let pool = DbPool::open(&target.settings, OpenMode::Create)
        .await
        .unwrap();
    let mut held = Vec::new();
    for _ in 0..4 {
        let mut conn = pool.acquire().await.unwrap();
        let DbConn::Sqlite(c) = &mut conn else {
            panic!("sqlite")
        };
        let pragmas: (String, i64, i64, i64) = sqlx::query_as(
            "SELECT (SELECT journal_mode FROM pragma_journal_mode), \
                    (SELECT synchronous FROM pragma_synchronous), \
                    (SELECT foreign_keys FROM pragma_foreign_keys), \
                    (SELECT timeout FROM pragma_busy_timeout)",
        )
        .fetch_one(&mut **c)
        .await
        .unwrap();
        let (mode, sync, fk, busy) = pragmas;
        assert_eq!((mode.as_str(), sync, fk, busy), ("wal", 1, 1, 1234));
        let tuning: (i64, i64, i64) = sqlx::query_as(
            "SELECT (SELECT journal_size_limit FROM pragma_journal_size_limit), \
                    (SELECT cache_size FROM pragma_cache_size), \
                    (SELECT temp_store FROM pragma_temp_store)",
        )
        .fetch_one(&mut **c)
        .await
        .unwrap();
        let limit = i64::try_from(server::db::JOURNAL_SIZE_LIMIT).unwrap();
        assert_eq!(
            tuning,
            (limit, -8192, 2),
            "journal_size_limit, cache_size, temp_store=MEMORY"
        );
        held.push(conn);
    }
    // The writer connection has the same pragmas.
    let mut tx = pool.begin_write().await.unwrap();
    #[derive(server::db::Record)]
    struct Limit {
        n: i64,
    }
    let on_writer: Limit =
        server::db::query("SELECT journal_size_limit AS n FROM pragma_journal_size_limit")
            .fetch_one(&mut tx)
            .await
            .unwrap();
    assert_eq!(
        on_writer.n,
        i64::try_from(server::db::JOURNAL_SIZE_LIMIT).unwrap()
    );
    tx.rollback().await.unwrap();
    // Four distinct pooled connections were checked; the writer is counted with them.
    assert_eq!(
        pool.stats().size,
        5,
        "four pooled connections and the writer"
    );
    drop(held);
    pool.close().await;
}

/// The writer commits without checkpointing (its `wal_autocheckpoint` is 0): the pool's
/// task copies the log into the database file while writes go on, keeps the log within
/// `journal_size_limit` under a steady stream of writes, and closes its connection
/// once the log is copied whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pool_checkpoints_the_log_off_the_write_path_and_keeps_it_bounded() {
    let target = sqlite(&[]);
    let pool = DbPool::open(&target.settings, OpenMode::Create)
        .await
        .unwrap();
    let path = target.settings.url.sqlite_path().unwrap().to_path_buf();
    let mut wal = path.clone().into_os_string();
    wal.push("-wal");
    let mut conn = pool.acquire().await.unwrap();
    server::db::query("CREATE TABLE blobs (id INTEGER PRIMARY KEY, b BLOB NOT NULL)")
        .execute(&mut conn)
        .await
        .unwrap();
    drop(conn);

    let mut tx = pool.begin_write().await.unwrap();
    #[derive(server::db::Record)]
    struct Pages {
        wal_autocheckpoint: i64,
    }
    let on_writer: Pages = server::db::query("PRAGMA wal_autocheckpoint")
        .fetch_one(&mut tx)
        .await
        .unwrap();
    assert_eq!(
        on_writer.wal_autocheckpoint, 0,
        "the writer checkpoints as it commits"
    );
    tx.rollback().await.unwrap();

    // About 160 MiB through the log: 2.5 times its limit.
    let limit = server::db::JOURNAL_SIZE_LIMIT;
    let largest_log = write_blobs(&pool, 40_000, Path::new(&wal)).await;
    assert!(
        largest_log < 2 * limit,
        "the log grew to {largest_log} bytes under a steady writer (limit {limit})"
    );
    // A reader (of another process, say) keeps the log from being copied while a burst
    // grows it past its limit. Once the reader and the writes are gone, the log is
    // copied and emptied: it does not stay as large as the burst made it.
    let mut reader = sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    sqlx::raw_sql("BEGIN; SELECT count(*) FROM blobs")
        .execute(&mut reader)
        .await
        .unwrap();
    let burst = write_blobs(&pool, 20_000, Path::new(&wal)).await;
    assert!(burst > limit, "the burst's log: {burst} bytes");
    reader.close().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let file = std::fs::metadata(&path).unwrap().len();
        let log = std::fs::metadata(&wal).map_or(0, |m| m.len());
        if file >= 60_000 * 4000 && log <= limit {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not checkpointed: database file {file} bytes, log {log} bytes"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    pool.close().await;
}

/// Commits `rows` rows of 4,000 bytes into `blobs`, one transaction each, through the
/// pool's writer; returns the largest size the log at `wal` had after a commit.
async fn write_blobs(pool: &DbPool, rows: usize, wal: &Path) -> u64 {
    let mut largest = 0;
    for _ in 0..rows {
        let mut tx = pool.begin_write().await.unwrap();
        server::db::query("INSERT INTO blobs (b) VALUES (zeroblob(4000))")
            .execute(&mut tx)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        largest = largest.max(std::fs::metadata(wal).map_or(0, |m| m.len()));
    }
    largest
}

#[tokio::test]
async fn postgres_connections_carry_statement_and_lock_timeouts() {
    let Some(target) = postgres(&[
        ("DATABASE_STATEMENT_TIMEOUT_MS", "1500"),
        ("DATABASE_LOCK_TIMEOUT_MS", "700"),
    ]) else {
        return;
    };
    let pool = DbPool::open(&target.settings, OpenMode::Create)
        .await
        .unwrap();
    let DbConn::Postgres(mut c) = pool.acquire().await.unwrap() else {
        panic!("postgres")
    };
    let statement: String = sqlx::query_scalar("SHOW statement_timeout")
        .fetch_one(&mut *c)
        .await
        .unwrap();
    let lock: String = sqlx::query_scalar("SHOW lock_timeout")
        .fetch_one(&mut *c)
        .await
        .unwrap();
    assert_eq!((statement.as_str(), lock.as_str()), ("1500ms", "700ms"));
    let started = Instant::now();
    let err = sqlx::query("SELECT pg_sleep(5)")
        .execute(&mut *c)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("statement timeout"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(4));
    drop(c);
    pool.close().await;
}

#[tokio::test]
async fn unusable_locations_and_unreachable_servers_fail_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let bad = settings(dir.path(), "sqlite:///proc/no-such-dir/app.db", &[]);
    let err = DbPool::open(&bad, OpenMode::Create)
        .await
        .err()
        .expect("must fail");
    assert!(matches!(err, DbError::Location { .. }), "{err}");
    assert!(err.to_string().contains("/proc/no-such-dir"), "{err}");

    let port = tests::free_port();
    let unreachable = settings(
        dir.path(),
        &format!("postgres://app:hunter2@127.0.0.1:{port}/app"),
        &[("DATABASE_CONNECT_TIMEOUT_MS", "1000")],
    );
    let started = Instant::now();
    let err = DbPool::open(&unreachable, OpenMode::Create)
        .await
        .err()
        .expect("must fail");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "bounded by the connect timeout"
    );
    assert!(!err.to_string().contains("hunter2"), "{err}");

    let missing = settings(dir.path(), "sqlite://missing.db", &[]);
    let err = DbPool::open(&missing, OpenMode::MustExist)
        .await
        .err()
        .expect("must fail");
    assert!(matches!(err, DbError::FileMissing(_)), "{err}");
    assert!(
        !dir.path().join("missing.db").exists(),
        "MustExist never creates the file"
    );
}

#[tokio::test]
async fn closing_the_pool_closes_every_connection() {
    for target in targets(&[("DATABASE_MIN_CONNECTIONS", "3")]) {
        let pool = DbPool::open(&target.settings, OpenMode::Create)
            .await
            .unwrap();
        assert!(pool.stats().size >= 1);
        pool.close().await;
        assert_eq!(pool.stats().size, 0, "{}", pool.kind());
        assert!(
            pool.acquire().await.is_err(),
            "a closed pool hands out nothing"
        );
    }
}

#[tokio::test]
async fn write_transactions_take_the_sqlite_write_lock_up_front() {
    let target = sqlite(&[("DATABASE_BUSY_TIMEOUT_MS", "5000")]);
    let pool = DbPool::open(&target.settings, OpenMode::Create)
        .await
        .unwrap();
    pool.acquire()
        .await
        .unwrap()
        .execute_script("CREATE TABLE t (n INTEGER)")
        .await
        .unwrap();

    let mut first = pool.acquire().await.unwrap();
    let tx = first.begin_write().await.unwrap();
    // Before `tx` writes anything, another writer is already locked out...
    let mut probe = pool.acquire().await.unwrap();
    probe
        .execute_script("PRAGMA busy_timeout = 0")
        .await
        .unwrap();
    let err = probe.execute_script("BEGIN IMMEDIATE").await.unwrap_err();
    assert!(
        err.to_string().contains("locked") || err.to_string().contains("busy"),
        "{err}"
    );
    probe
        .execute_script("PRAGMA busy_timeout = 5000")
        .await
        .unwrap();
    drop(probe);

    // ...and a second write transaction waits for it instead of failing.
    let pool = std::sync::Arc::new(pool);
    let second = {
        let pool = pool.clone();
        tokio::spawn(async move {
            let mut conn = pool.acquire().await.unwrap();
            let mut tx = conn.begin_write().await.unwrap();
            tx.execute_script("INSERT INTO t VALUES (2)").await.unwrap();
            tx.commit().await.unwrap();
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut tx = tx;
    tx.execute_script("INSERT INTO t VALUES (1)").await.unwrap();
    tx.commit().await.unwrap();
    second.await.unwrap();
    drop(first);
    let mut conn = pool.acquire().await.unwrap();
    assert_eq!(scalar_i64(&mut conn, "SELECT count(*) FROM t").await, 2);
}

#[tokio::test]
async fn a_removed_sqlite_file_is_an_outage_and_a_replaced_one_is_picked_up() {
    let target = sqlite(&[]);
    let path = target.settings.url.sqlite_path().unwrap().to_path_buf();
    let pool = DbPool::open(&target.settings, OpenMode::Create)
        .await
        .unwrap();
    pool.acquire()
        .await
        .unwrap()
        .execute_script("CREATE TABLE marker (v TEXT); INSERT INTO marker VALUES ('original')")
        .await
        .unwrap();

    // Prepare a different database file to swap in.
    let other_dir = tempfile::tempdir().unwrap();
    let other = settings(other_dir.path(), "sqlite://other.db", &[]);
    let other_pool = DbPool::open(&other, OpenMode::Create).await.unwrap();
    other_pool
        .acquire()
        .await
        .unwrap()
        .execute_script("CREATE TABLE marker (v TEXT); INSERT INTO marker VALUES ('replacement')")
        .await
        .unwrap();
    other_pool.close().await;

    for side in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{side}", path.display()));
    }
    let err = pool
        .acquire()
        .await
        .err()
        .expect("a missing file is an outage");
    assert!(matches!(err, DbError::FileMissing(_)), "{err}");
    assert!(
        !path.exists(),
        "the running pool must not create a new empty database"
    );

    std::fs::copy(other_dir.path().join("other.db"), &path).unwrap();
    let DbConn::Sqlite(mut c) = pool.acquire().await.unwrap() else {
        panic!()
    };
    let v: String = sqlx::query_scalar("SELECT v FROM marker")
        .fetch_one(&mut *c)
        .await
        .unwrap();
    assert_eq!(v, "replacement");
}

#[tokio::test]
async fn in_memory_sqlite_is_one_database_shared_by_all_connections() {
    let dir = tempfile::tempdir().unwrap();
    let memory = settings(
        dir.path(),
        "sqlite::memory:",
        &[("DATABASE_MAX_CONNECTIONS", "3")],
    );
    let pool = DbPool::open(&memory, OpenMode::Create).await.unwrap();
    let mut a = pool.acquire().await.unwrap();
    let mut b = pool.acquire().await.unwrap();
    a.execute_script("CREATE TABLE shared (n INTEGER); INSERT INTO shared VALUES (7)")
        .await
        .unwrap();
    assert_eq!(scalar_i64(&mut b, "SELECT n FROM shared").await, 7);
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "no file on disk"
    );
}

#[tokio::test]
async fn upgrade_applies_the_baseline_and_records_history() {
    for target in targets(&[]) {
        let (_pool, mut conn) = connect(&target).await;
        let embedded = MigrationSet::embedded();
        let outcome = migrations::upgrade(&mut conn, embedded, None)
            .await
            .unwrap();
        assert_eq!(outcome.changed[0], "V1__initial");
        assert!(table_exists(&mut conn, "refinery_schema_history").await);
        let status = migrations::status(&mut conn, embedded).await.unwrap();
        assert_eq!(status.state, SchemaState::UpToDate);
        assert_eq!(status.applied[0].name, "initial");
        assert_eq!(status.current_version, embedded.latest());
        let again = migrations::upgrade(&mut conn, embedded, None)
            .await
            .unwrap();
        assert!(again.changed.is_empty(), "second run applies nothing");
    }
}

#[tokio::test]
async fn rollback_to_zero_removes_app_tables_and_the_history_table() {
    for target in targets(&[]) {
        let (_pool, mut conn) = connect(&target).await;
        let set = with_users();
        migrations::upgrade(&mut conn, &set, None).await.unwrap();
        assert!(table_exists(&mut conn, "users").await);
        let outcome = migrations::downgrade(&mut conn, &set, 0).await.unwrap();
        assert_eq!(outcome.changed, ["V2__users", "V1__initial"]);
        assert!(!table_exists(&mut conn, "users").await);
        assert!(!table_exists(&mut conn, "refinery_schema_history").await);
    }
}

#[tokio::test]
async fn an_edited_applied_migration_is_divergent_and_refused() {
    for target in targets(&[]) {
        let (_pool, mut conn) = connect(&target).await;
        migrations::upgrade(&mut conn, &with_users(), None)
            .await
            .unwrap();
        let edited = set(&[
            ("V1__initial.sql", "SELECT 1;"),
            (
                "V2__users.sql",
                "CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT);",
            ),
        ]);
        let status = migrations::status(&mut conn, &edited).await.unwrap();
        assert_eq!(status.state, SchemaState::Diverged);
        let err = migrations::upgrade(&mut conn, &edited, None)
            .await
            .unwrap_err();
        assert!(
            matches!(err, MigrationError::Diverged(ref id) if id == "V2__users"),
            "{err}"
        );

        let older = set(&[("V1__initial.sql", "SELECT 1;")]);
        let status = migrations::status(&mut conn, &older).await.unwrap();
        assert_eq!(status.state, SchemaState::Ahead);
        assert!(matches!(
            migrations::upgrade(&mut conn, &older, None).await,
            Err(MigrationError::Ahead(_))
        ));
    }
}

#[tokio::test]
async fn a_failing_migration_is_named_and_earlier_ones_stay_applied() {
    for target in targets(&[]) {
        let (pool, mut conn) = connect(&target).await;
        let broken = set(&[
            ("V1__initial.sql", "SELECT 1;"),
            ("V2__users.sql", "CREATE TABLE users (id INTEGER);"),
            (
                "V3__broken.sql",
                "CREATE TABLE half (id INTEGER); THIS IS NOT SQL;",
            ),
        ]);
        let err = migrations::upgrade(&mut conn, &broken, None)
            .await
            .unwrap_err();
        assert!(
            err.to_string().starts_with("migration V3__broken failed:"),
            "{err}"
        );
        let status = migrations::status(&mut conn, &broken).await.unwrap();
        assert_eq!(status.current_version, 2, "{:?}", pool.kind());
        assert_eq!(status.pending, [3]);
        assert!(table_exists(&mut conn, "users").await);
        assert!(
            !table_exists(&mut conn, "half").await,
            "the failed migration left nothing behind"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_upgrades_apply_each_migration_exactly_once() {
    for target in targets(&[("DATABASE_BUSY_TIMEOUT_MS", "10000")]) {
        // The file must exist before several processes race; db-init and startup create it.
        DbPool::open(&target.settings, OpenMode::Create)
            .await
            .unwrap()
            .close()
            .await;
        let set = std::sync::Arc::new(with_users());
        let tasks: Vec<_> = (0..4)
            .map(|_| {
                let settings = target.settings.clone();
                let set = set.clone();
                tokio::spawn(async move {
                    let pool = DbPool::open(&settings, OpenMode::MustExist).await.unwrap();
                    let mut conn = pool.acquire().await.unwrap();
                    let outcome = migrations::upgrade(&mut conn, &set, None).await.unwrap();
                    drop(conn);
                    pool.close().await;
                    outcome.changed.len()
                })
            })
            .collect();
        let mut applied = 0;
        for task in tasks {
            applied += task.await.unwrap();
        }
        assert_eq!(applied, 2, "two migrations applied once in total");
        let pool = DbPool::open(&target.settings, OpenMode::MustExist)
            .await
            .unwrap();
        let mut conn = pool.acquire().await.unwrap();
        assert_eq!(
            scalar_i64(&mut conn, "SELECT count(*) FROM refinery_schema_history").await,
            2
        );
    }
}

#[tokio::test]
async fn every_migration_file_is_valid_on_both_engines_and_reverts_cleanly() {
    for target in targets(&[]) {
        let problems = server::doctor::check(&target.settings, MigrationSet::embedded())
            .await
            .unwrap();
        assert!(
            problems.is_empty(),
            "{:?}: {problems:?}",
            target.settings.url.kind()
        );
    }
}

/// `DbPool::begin_write` on `pool` (table `w (n INTEGER)` created): many concurrent
/// writers all commit, a dropped or panicked transaction rolls back without holding up
/// the next writer, and a COMMIT that fails leaves nothing behind.
async fn check_write_path(settings: &DbSettings) {
    let pool = DbPool::open(settings, OpenMode::Create).await.unwrap();
    let mut conn = pool.acquire().await.unwrap();
    conn.execute_script(WRITE_PATH_SCHEMA).await.unwrap();
    drop(conn);
    let pool = std::sync::Arc::new(pool);
    let writers: Vec<_> = (0..32)
        .map(|w| {
            let pool = pool.clone();
            tokio::spawn(async move {
                for i in 0..20_i64 {
                    let mut tx = pool.begin_write().await.unwrap();
                    server::db::query("INSERT INTO w (n) VALUES ($1)")
                        .bind(w * 100 + i)
                        .execute(&mut tx)
                        .await
                        .unwrap();
                    tx.commit().await.unwrap();
                }
            })
        })
        .collect();
    for writer in writers {
        writer.await.expect("no writer fails, none is locked out");
    }
    let count = |pool: std::sync::Arc<DbPool>| async move {
        let mut conn = pool.acquire().await.unwrap();
        scalar_i64(&mut conn, "SELECT count(*) FROM w").await
    };
    assert_eq!(count(pool.clone()).await, 640);

    // Dropped after a write: rolled back, and the writer is free again at once.
    let tx = began_with(&pool, "INSERT INTO w (n) VALUES (-1)").await;
    drop(tx);
    // A panic while writing: the same.
    let panicked = {
        let pool = pool.clone();
        tokio::spawn(async move {
            let _tx = began_with(&pool, "INSERT INTO w (n) VALUES (-2)").await;
            panic!("while writing, on purpose");
        })
    };
    assert!(panicked.await.is_err());
    let next = tokio::time::timeout(Duration::from_secs(5), pool.begin_write())
        .await
        .expect("the next writer is not held up")
        .unwrap();
    next.rollback().await.unwrap();
    assert_eq!(count(pool.clone()).await, 640);

    // A COMMIT refused by a deferred constraint: nothing stays, the next write works.
    let tx = began_with(&pool, "INSERT INTO child (parent) VALUES (999)").await;
    assert!(
        tx.commit().await.is_err(),
        "the deferred foreign key fails the commit"
    );
    let tx = began_with(&pool, "INSERT INTO w (n) VALUES (7)").await;
    tx.commit().await.unwrap();
    assert_eq!(count(pool.clone()).await, 641);
    let mut conn = pool.acquire().await.unwrap();
    assert_eq!(scalar_i64(&mut conn, "SELECT count(*) FROM child").await, 0);
}

const WRITE_PATH_SCHEMA: &str = "CREATE TABLE w (n INTEGER);
     CREATE TABLE parent (id INTEGER PRIMARY KEY);
     CREATE TABLE child (parent INTEGER REFERENCES parent (id) DEFERRABLE INITIALLY DEFERRED)";

#[tokio::test]
async fn sqlite_writers_queue_for_one_connection_and_never_see_locked() {
    // No busy timeout at all: writers that raced for the file's lock would fail with
    // "database is locked"; queued for the one writer connection, none does.
    let target = sqlite(&[("DATABASE_BUSY_TIMEOUT_MS", "0")]);
    check_write_path(&target.settings).await;
}

#[tokio::test]
async fn postgres_write_transactions_commit_and_roll_back() {
    let Some(target) = postgres(&[]) else {
        eprintln!("SKIPPED: PostgreSQL is not reachable");
        return;
    };
    check_write_path(&target.settings).await;
}

/// A write transaction on `pool` that has run `sql`.
async fn began_with(pool: &DbPool, sql: &'static str) -> server::db::WriteTx {
    let mut tx = pool.begin_write().await.unwrap();
    server::db::query(sql).execute(&mut tx).await.unwrap();
    tx
}
