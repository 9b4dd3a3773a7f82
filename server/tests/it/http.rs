//! The Rocket application in process: the `Connection<Db>` guard, health routes, OpenAPI.

use std::path::Path;
use std::time::{Duration, Instant};

use rocket::http::Status;
use rocket::local::asynchronous::Client;
use rocket::{Build, Rocket, get, routes};
use rocket_db_pools::{Connection, Database};
use server::app::Db;
use server::config::{AppConfig, Environment};
use server::db::DbConn;
use tests::PgDatabase;

fn config(dir: &Path, url: &str, extra: &[(&str, &str)]) -> AppConfig {
    let mut vars = vec![
        ("DATABASE_URL".to_string(), url.to_string()),
        ("ROCKET_LOG_LEVEL".to_string(), "off".to_string()),
        // Health outcomes here must not depend on this machine's free disk space.
        ("DATABASE_DISK_FREE_MIN_MB".to_string(), "0".to_string()),
    ];
    vars.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    AppConfig::from_env(&Environment::new(dir, vars)).unwrap()
}

/// Answers with an identifier of the connection it got.
#[get("/probe")]
async fn probe(mut db: Connection<Db>) -> String {
    match &mut *db {
        DbConn::Sqlite(c) => sqlx::query_scalar::<_, i64>("SELECT 1")
            .fetch_one(&mut **c)
            .await
            .unwrap()
            .to_string(),
        DbConn::Postgres(c) => sqlx::query_scalar::<_, i32>("SELECT pg_backend_pid()")
            .fetch_one(&mut **c)
            .await
            .unwrap()
            .to_string(),
    }
}

/// Holds its connection for a while.
#[get("/hold/<ms>")]
async fn hold(db: Connection<Db>, ms: u64) -> &'static str {
    tokio::time::sleep(Duration::from_millis(ms)).await;
    drop(db);
    "held"
}

/// Fails after taking a connection.
#[get("/fail")]
async fn fail(_db: Connection<Db>) -> Result<&'static str, Status> {
    Err(Status::InternalServerError)
}

/// Panics while holding a connection.
#[get("/panic")]
async fn panics(_db: Connection<Db>) -> &'static str {
    panic!("handler panic on purpose")
}

/// Writes a row in a transaction, then panics before committing.
#[get("/write-then-panic")]
async fn write_then_panic(mut db: Connection<Db>) -> &'static str {
    let mut tx = db.begin_write().await.unwrap();
    server::db::query("INSERT INTO scratch (x) VALUES ($1)")
        .bind(1_i64)
        .execute(&mut tx)
        .await
        .unwrap();
    panic!("after writing, before committing")
}

/// Counts the rows of `scratch`, through the same query API.
#[get("/scratch")]
async fn scratch_rows(mut db: Connection<Db>) -> server::app::ApiResult<String> {
    #[derive(server::db::Record)]
    struct Count {
        n: i64,
    }
    let count: Count = server::db::query("SELECT count(*) AS n FROM scratch")
        .fetch_one(&mut db)
        .await?;
    Ok(count.n.to_string())
}

fn app(config: &AppConfig) -> Rocket<Build> {
    server::app::rocket(config).mount(
        "/test",
        routes![probe, hold, fail, panics, write_then_panic, scratch_rows],
    )
}

async fn client(config: &AppConfig) -> Client {
    Client::untracked(app(config)).await.expect("valid rocket")
}

/// Pool statistics once returned connections have settled (sqlx returns them in the background).
async fn settled_stats(client: &Client) -> server::db::PoolStats {
    let pool = Db::fetch(client.rocket()).expect("pool attached");
    let deadline = Instant::now() + Duration::from_secs(2);
    while pool.stats().idle != pool.stats().size && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    pool.stats()
}

async fn health(client: &Client) -> (Status, serde_json::Value, Duration) {
    let started = Instant::now();
    let response = client.get("/health/db").dispatch().await;
    let status = response.status();
    assert_eq!(
        response.headers().get_one("Cache-Control"),
        Some("no-store")
    );
    let body: serde_json::Value =
        serde_json::from_str(&response.into_string().await.unwrap()).unwrap();
    (status, body, started.elapsed())
}

#[tokio::test]
async fn liveness_and_readiness_report_in_the_documented_format() {
    let dir = tempfile::tempdir().unwrap();
    let client = client(&config(dir.path(), "sqlite://app.db", &[])).await;
    let response = client.get("/health").dispatch().await;
    assert_eq!(response.status(), Status::Ok);
    assert_eq!(
        response.headers().get_one("Cache-Control"),
        Some("no-store")
    );
    assert_eq!(
        response.into_string().await.unwrap(),
        r#"{"status":"pass"}"#
    );

    let (status, body, _) = health(&client).await;
    assert_eq!(status, Status::Ok, "{body}");
    assert_eq!(body["status"], "pass");
    assert_eq!(body["kind"], "sqlite");
    let latency = body["latency_ms"].as_f64().unwrap();
    assert!(latency > 0.0 && latency < 800.0, "{latency}");
    let embedded = server::migrations::MigrationSet::embedded().latest();
    assert_eq!(body["schema"]["state"], "up_to_date");
    assert_eq!(body["schema"]["applied_version"], embedded);
    assert_eq!(body["schema"]["embedded_version"], embedded);
    assert_eq!(body["schema"]["pending"], 0);
    assert!(body["pool"]["size"].as_u64().unwrap() >= 1);
    assert_eq!(body["pool"]["max"], 16);
    assert!(
        !body.to_string().contains(&dir.path().display().to_string()),
        "no paths: {body}"
    );
}

#[tokio::test]
async fn readiness_works_on_postgres_without_leaking_credentials() {
    let Some(pg) = PgDatabase::create() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let client = client(&config(dir.path(), &pg.url, &[])).await;
    let (status, body, _) = health(&client).await;
    assert_eq!(status, Status::Ok, "{body}");
    assert_eq!(body["kind"], "postgres");
    assert!(!body.to_string().contains("postgres://"), "{body}");
}

#[tokio::test]
async fn a_guarded_route_gets_a_working_connection_on_both_engines() {
    let dir = tempfile::tempdir().unwrap();
    let mut urls = vec!["sqlite://app.db".to_string()];
    let pg = PgDatabase::create();
    urls.extend(pg.as_ref().map(|pg| pg.url.clone()));
    for url in urls {
        let client = client(&config(dir.path(), &url, &[])).await;
        let response = client.get("/test/probe").dispatch().await;
        assert_eq!(response.status(), Status::Ok);
        assert!(
            response
                .into_string()
                .await
                .unwrap()
                .parse::<i64>()
                .unwrap()
                > 0
        );
    }
}

#[tokio::test]
async fn connections_return_to_the_pool_after_errors_and_panics() {
    let dir = tempfile::tempdir().unwrap();
    let client = client(&config(
        dir.path(),
        "sqlite://app.db",
        &[("DATABASE_MAX_CONNECTIONS", "2")],
    ))
    .await;
    for _ in 0..10 {
        assert_eq!(
            client.get("/test/fail").dispatch().await.status(),
            Status::InternalServerError
        );
        assert_eq!(
            client.get("/test/panic").dispatch().await.status(),
            Status::InternalServerError
        );
    }
    // With only two connections, any leak would make this time out with a 503.
    for _ in 0..5 {
        assert_eq!(
            client.get("/test/probe").dispatch().await.status(),
            Status::Ok
        );
    }
    let stats = settled_stats(&client).await;
    assert_eq!(
        stats.idle, stats.size,
        "every connection is back: {stats:?}"
    );
}

#[tokio::test]
async fn concurrent_requests_get_separate_connections() {
    let Some(pg) = PgDatabase::create() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let client = client(&config(
        dir.path(),
        &pg.url,
        &[("DATABASE_MAX_CONNECTIONS", "8")],
    ))
    .await;
    let started = Instant::now();
    let holds = (0..8).map(|_| client.get("/test/hold/400").dispatch());
    let responses = futures_join_all(holds).await;
    assert!(responses.iter().all(|s| *s == Status::Ok));
    assert!(
        started.elapsed() < Duration::from_millis(8 * 400),
        "the requests ran side by side"
    );
    assert_eq!(
        settled_stats(&client).await.size,
        8,
        "eight connections were opened for eight requests"
    );
    let pids = futures_join_all_bodies((0..4).map(|_| client.get("/test/probe").dispatch())).await;
    // Each request ran on one of this pool's own server sessions.
    let backends = pg.execute(&format!(
        "SELECT string_agg(pid::text, ',') FROM pg_stat_activity WHERE datname = '{}'",
        pg.url.rsplit('/').next().unwrap()
    ));
    let backends: Vec<&str> = backends.split(',').collect();
    assert_eq!(pids.len(), 4);
    for pid in &pids {
        assert!(
            backends.contains(&pid.as_str()),
            "{pid} not in {backends:?}"
        );
    }
}

async fn futures_join_all<'c>(
    requests: impl Iterator<
        Item = impl std::future::Future<Output = rocket::local::asynchronous::LocalResponse<'c>>,
    >,
) -> Vec<Status> {
    let handles: Vec<_> = requests.collect();
    let mut statuses = Vec::new();
    let results = join_all(handles).await;
    for r in results {
        statuses.push(r.status());
    }
    statuses
}

async fn futures_join_all_bodies<'c>(
    requests: impl Iterator<
        Item = impl std::future::Future<Output = rocket::local::asynchronous::LocalResponse<'c>>,
    >,
) -> Vec<String> {
    let mut bodies = Vec::new();
    for r in join_all(requests.collect()).await {
        bodies.push(r.into_string().await.unwrap_or_default());
    }
    bodies
}

/// Polls every future until all are done, concurrently, in this task.
async fn join_all<F: std::future::Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut futures: Vec<_> = futures.into_iter().map(Box::pin).collect();
    let mut results: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (i, f) in futures.iter_mut().enumerate() {
            if results[i].is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => results[i] = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    results.into_iter().map(|r| r.expect("completed")).collect()
}

#[tokio::test]
async fn an_exhausted_pool_gives_a_fast_503_never_a_hang() {
    let dir = tempfile::tempdir().unwrap();
    let client = client(&config(
        dir.path(),
        "sqlite://app.db",
        &[
            ("DATABASE_MAX_CONNECTIONS", "2"),
            ("DATABASE_ACQUIRE_TIMEOUT_MS", "300"),
        ],
    ))
    .await;
    let holds = join_all(vec![
        client.get("/test/hold/2500").dispatch(),
        client.get("/test/hold/2500").dispatch(),
    ]);
    let probes = async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let started = Instant::now();
        let guarded = client.get("/test/probe").dispatch().await.status();
        let guarded_time = started.elapsed();
        let (status, body, elapsed) = health(&client).await;
        (guarded, guarded_time, status, body, elapsed)
    };
    let (held, (guarded, guarded_time, status, body, elapsed)) = tokio::join!(holds, probes);
    assert!(held.iter().all(|r| r.status() == Status::Ok));
    assert_eq!(guarded, Status::ServiceUnavailable);
    assert!(guarded_time < Duration::from_secs(1), "{guarded_time:?}");
    assert_eq!(status, Status::ServiceUnavailable, "{body}");
    assert_eq!(body["status"], "fail");
    assert!(elapsed < Duration::from_secs(1), "{elapsed:?}");
}

#[tokio::test]
async fn a_removed_sqlite_file_fails_fast_and_recovers_when_put_back() {
    let dir = tempfile::tempdir().unwrap();
    let client = client(&config(dir.path(), "sqlite://data/app.db", &[])).await;
    assert_eq!(health(&client).await.0, Status::Ok);

    let path = dir.path().join("data/app.db");
    let saved = dir.path().join("saved.db");
    let mut conn = Db::fetch(client.rocket()).unwrap().acquire().await.unwrap();
    let DbConn::Sqlite(c) = &mut conn else {
        panic!()
    };
    sqlx::query("VACUUM INTO ?")
        .bind(saved.display().to_string())
        .execute(&mut **c)
        .await
        .unwrap();
    drop(conn);
    for side in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{side}", path.display()));
    }

    let (status, body, elapsed) = health(&client).await;
    assert_eq!(status, Status::ServiceUnavailable, "{body}");
    assert_eq!(body["output"], "database file is missing");
    assert!(elapsed < Duration::from_secs(1), "{elapsed:?}");
    assert_eq!(
        client.get("/test/probe").dispatch().await.status(),
        Status::ServiceUnavailable
    );
    assert!(
        !path.exists(),
        "the server must not create an empty database at run time"
    );

    assert_eq!(body["pool"]["reopened"], 0);
    std::fs::copy(&saved, &path).unwrap();
    let (status, body, _) = health(&client).await;
    assert_eq!(status, Status::Ok, "picked up without a restart: {body}");
    assert_eq!(
        body["pool"]["reopened"], 1,
        "the reopen is reported: {body}"
    );
}

#[tokio::test]
async fn a_locked_sqlite_database_fails_within_a_second_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let client = client(&config(
        dir.path(),
        "sqlite://app.db",
        &[
            ("DATABASE_BUSY_TIMEOUT_MS", "5000"),
            ("DATABASE_MIN_CONNECTIONS", "0"),
            ("DATABASE_IDLE_TIMEOUT_SECS", "1"),
        ],
    ))
    .await;
    assert_eq!(health(&client).await.0, Status::Ok);

    // In WAL mode only an exclusive-locking-mode connection keeps readers out, and it can
    // take that lock only while no other connection has the database open: wait until
    // the pool has closed its idle connections.
    let pool = Db::fetch(client.rocket()).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while pool.stats().size > 0 {
        assert!(
            Instant::now() < deadline,
            "idle connections were not closed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    use sqlx::{ConnectOptions, Connection};
    let mut locker = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(dir.path().join("app.db"))
        .connect()
        .await
        .unwrap();
    sqlx::raw_sql(
        "PRAGMA locking_mode = EXCLUSIVE; BEGIN EXCLUSIVE; CREATE TABLE lock_holder (x INTEGER);",
    )
    .execute(&mut locker)
    .await
    .unwrap();

    let (status, body, elapsed) = health(&client).await;
    assert_eq!(status, Status::ServiceUnavailable, "{body}");
    assert!(elapsed < Duration::from_secs(1), "{elapsed:?}");

    sqlx::raw_sql("ROLLBACK")
        .execute(&mut locker)
        .await
        .unwrap();
    locker.close().await.unwrap();
    let (status, body, _) = health(&client).await;
    assert_eq!(status, Status::Ok, "{body}");
}

#[tokio::test]
async fn a_schema_behind_the_binary_is_a_failure() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "sqlite://app.db", &[]);
    let client = client(&cfg).await;
    let mut conn = Db::fetch(client.rocket()).unwrap().acquire().await.unwrap();
    server::migrations::downgrade(&mut conn, server::migrations::MigrationSet::embedded(), 0)
        .await
        .unwrap();
    drop(conn);
    let (status, body, _) = health(&client).await;
    assert_eq!(status, Status::ServiceUnavailable);
    assert_eq!(body["schema"]["state"], "pending");
    assert!(body["output"].as_str().unwrap().contains("db-upgrade"));
}

#[tokio::test]
async fn a_thousand_health_checks_leak_no_connections() {
    let dir = tempfile::tempdir().unwrap();
    let mut urls = vec!["sqlite://app.db".to_string()];
    let pg = PgDatabase::create();
    urls.extend(pg.as_ref().map(|pg| pg.url.clone()));
    for url in urls {
        let client = client(&config(
            dir.path(),
            &url,
            &[("DATABASE_MAX_CONNECTIONS", "4")],
        ))
        .await;
        for _ in 0..1000 {
            assert_eq!(health(&client).await.0, Status::Ok);
        }
        let stats = settled_stats(&client).await;
        assert!(stats.size <= 4 && stats.idle == stats.size, "{stats:?}");
        if let Some(pg) = &pg
            && url == pg.url
        {
            let name = url.rsplit('/').next().unwrap();
            let sessions: i64 = pg
                .execute(&format!("SELECT count(*) FROM pg_stat_activity WHERE datname = '{name}' AND pid <> pg_backend_pid()"))
                .parse()
                .unwrap();
            assert!(sessions <= 4, "{sessions} sessions");
        }
    }
}

#[tokio::test]
async fn openapi_documents_both_routes_and_the_docs_page_is_served() {
    let dir = tempfile::tempdir().unwrap();
    let client = client(&config(dir.path(), "sqlite::memory:", &[])).await;
    let response = client.get("/openapi.json").dispatch().await;
    assert_eq!(response.status(), Status::Ok);
    let doc: serde_json::Value =
        serde_json::from_str(&response.into_string().await.unwrap()).unwrap();
    assert!(doc["paths"]["/health"]["get"].is_object());
    assert!(doc["paths"]["/health/db"]["get"]["responses"]["503"].is_object());
    let page = client.get("/docs/").dispatch().await;
    assert_eq!(page.status(), Status::Ok);
    assert!(page.into_string().await.unwrap().contains("swagger"));
}

async fn a_panic_mid_transaction_rolls_back_and_returns_the_connection(url: &str) {
    let dir = tempfile::tempdir().unwrap();
    let client = client(&config(
        dir.path(),
        url,
        &[("DATABASE_MAX_CONNECTIONS", "1")],
    ))
    .await;
    let db = client.rocket().state::<Db>().unwrap();
    db.acquire()
        .await
        .unwrap()
        .execute_script("CREATE TABLE scratch (x BIGINT NOT NULL)")
        .await
        .unwrap();
    for _ in 0..3 {
        let response = client.get("/test/write-then-panic").dispatch().await;
        assert_eq!(response.status(), Status::InternalServerError);
    }
    // One connection only: it came back, and nothing of the panicked writes is there.
    let response = client.get("/test/scratch").dispatch().await;
    assert_eq!(response.status(), Status::Ok);
    assert_eq!(response.into_string().await.unwrap(), "0");
}

#[tokio::test]
async fn a_panic_mid_transaction_rolls_back_on_sqlite() {
    a_panic_mid_transaction_rolls_back_and_returns_the_connection("sqlite://app.db").await;
}

#[tokio::test]
async fn a_panic_mid_transaction_rolls_back_on_postgres() {
    let Some(pg) = PgDatabase::create() else {
        return;
    };
    a_panic_mid_transaction_rolls_back_and_returns_the_connection(&pg.url).await;
}

#[tokio::test]
async fn concurrent_readiness_requests_share_checks_within_the_freshness_bound() {
    let dir = tempfile::tempdir().unwrap();
    let client = client(&config(dir.path(), "sqlite://data/app.db", &[])).await;
    assert_eq!(health(&client).await.0, Status::Ok);

    // 32 requests at once: they share checks (a shared check gives every one of its
    // requests the same latency_ms), and all pass.
    let bodies =
        futures_join_all_bodies((0..32).map(|_| client.get("/health/db").dispatch())).await;
    let bodies: Vec<serde_json::Value> = bodies
        .iter()
        .map(|b| serde_json::from_str(b).unwrap())
        .collect();
    assert!(bodies.iter().all(|b| b["status"] == "pass"), "{bodies:?}");
    let mut latencies: Vec<String> = bodies.iter().map(|b| b["latency_ms"].to_string()).collect();
    latencies.sort();
    latencies.dedup();
    assert!(
        latencies.len() < bodies.len(),
        "32 concurrent requests ran 32 checks: {latencies:?}"
    );

    // While other requests keep arriving, the database goes away: a request that arrives
    // later than the freshness bound is answered by a check that started after the
    // removal, so it fails.
    let path = dir.path().join("data/app.db");
    let busy = futures_join_all((0..16).map(|_| client.get("/health/db").dispatch()));
    let after_removal = async {
        tokio::time::sleep(Duration::from_millis(1)).await;
        for side in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{side}", path.display()));
        }
        // Past the freshness bound, every check that can answer started after the removal.
        tokio::time::sleep(server::health::JOIN_WITHIN + Duration::from_millis(5)).await;
        health(&client).await
    };
    let (_, (status, body, _)) = tokio::join!(busy, after_removal);
    assert_eq!(status, Status::ServiceUnavailable, "{body}");
    assert_eq!(body["output"], "database file is missing");
}
