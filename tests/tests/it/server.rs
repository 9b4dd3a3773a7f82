//! The `server` binary end to end: startup, health over real HTTP, configuration errors,
//! and PostgreSQL going away and coming back (through a TCP proxy the test controls).

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tests::{PgDatabase, Project, Server, sqlite};

#[test]
fn serves_health_on_the_sqlite_default_from_any_subdirectory() {
    let project = Project::sqlite();
    let sub = project.path().join("nested");
    std::fs::create_dir(&sub).unwrap();
    let server = Server::start(&project, &[]);
    let live = server.get("/health");
    assert_eq!(
        (live.status, live.body.as_str()),
        (200, r#"{"status":"pass"}"#)
    );
    let ready = server.get("/health/db");
    assert_eq!(ready.status, 200, "{}", ready.body);
    assert_eq!(ready.header("cache-control"), Some("no-store"));
    let body = ready.json();
    assert_eq!(body["status"], "pass");
    assert_eq!(body["kind"], "sqlite");
    assert_eq!(body["schema"]["state"], "up_to_date");
    assert!(project.db_path().is_file(), "created next to Rocket.toml");
    assert_eq!(
        sqlite(
            &project.db_path(),
            "SELECT name FROM refinery_schema_history"
        ),
        ["initial"]
    );
    assert!(server.get("/openapi.json").json()["paths"]["/health/db"].is_object());
    assert_eq!(server.get("/docs/").status, 200);
}

#[test]
fn the_same_binary_serves_postgres_when_database_url_says_so() {
    let Some(pg) = PgDatabase::create() else {
        return;
    };
    let project = Project::sqlite();
    let server = Server::start(&project, &[("DATABASE_URL", &pg.url)]);
    let body = server.get("/health/db").json();
    assert_eq!(body["kind"], "postgres", "{body}");
    assert_eq!(body["status"], "pass");
    assert_eq!(
        pg.execute("SELECT name FROM refinery_schema_history"),
        "initial"
    );
    assert!(
        !project.db_path().exists(),
        "no SQLite file when running on PostgreSQL"
    );
}

#[test]
fn a_restart_on_an_up_to_date_database_logs_no_empty_history() {
    let project = Project::sqlite();
    drop(Server::start(&project, &[]));
    let server = Server::start(&project, &[]);
    assert_eq!(server.get("/health/db").status, 200);
    let log = server.output();
    assert!(!log.contains("schema history table is empty"), "{log}");
}

#[test]
fn passwords_never_appear_in_logs_or_health_output() {
    let Some(pg) = PgDatabase::create() else {
        return;
    };
    // The test server trusts local connections, so any password is accepted.
    let with_password = pg.url.replacen(
        "postgres://postgres@",
        "postgres://postgres:supersecret@",
        1,
    );
    assert_ne!(with_password, pg.url);
    let project = Project::sqlite();
    let server = Server::start(
        &project,
        &[("DATABASE_URL", &with_password), ("DATABASE_ECHO", "true")],
    );
    let health = server.get("/health/db");
    assert_eq!(health.status, 200);
    assert!(!health.body.contains("supersecret"));
    let log = server.output();
    assert!(
        log.contains("postgres://postgres:****@"),
        "the masked URL is logged: {log}"
    );
    assert!(!log.contains("supersecret"), "{log}");

    let unreachable = format!(
        "postgres://postgres:supersecret@127.0.0.1:{}/x",
        tests::free_port()
    );
    let run = project.xtask_with(&["db-status"], &[("DATABASE_URL", &unreachable)]);
    run.error_line();
    assert!(
        !format!("{}{}", run.stdout, run.stderr).contains("supersecret"),
        "{}",
        run.stderr
    );
    let output = project
        .command("server")
        .env("DATABASE_URL", &unreachable)
        .env("DATABASE_CONNECT_TIMEOUT_MS", "500")
        .output()
        .unwrap();
    let run = tests::Run::from(output);
    run.error_line();
    assert!(
        !format!("{}{}", run.stdout, run.stderr).contains("supersecret"),
        "{}",
        run.stderr
    );
}

#[test]
fn bad_configuration_exits_with_one_clear_line_and_no_panic() {
    let project = Project::sqlite();
    for (env, expected) in [
        (
            ("DATABASE_URL", "mysql://root:hunter2@localhost/app"),
            "unknown scheme `mysql:`",
        ),
        (("ROCKET_PROFILE", "nope"), "unknown profile `nope`"),
        (
            ("DATABASE_MAX_CONNECTIONS", "0"),
            "DATABASE_MAX_CONNECTIONS",
        ),
    ] {
        let output = project
            .command("server")
            .env(env.0, env.1)
            .output()
            .unwrap();
        let run = tests::Run::from(output);
        let line = run.error_line();
        assert!(line.contains(expected), "{line}");
        assert!(!run.stderr.contains("hunter2"), "{}", run.stderr);
    }
    assert!(!project.db_path().exists(), "nothing was created");
}

#[test]
fn starts_without_migrating_when_a_newer_release_migrated_the_database_ahead() {
    let project = Project::sqlite();
    project.write_migration(
        "V2__future",
        "CREATE TABLE future (id INTEGER);",
        Some("DROP TABLE future;"),
    );
    project.xtask(&["db-init"]).ok();
    let server = Server::start(&project, &[]);
    let body = server.get("/health/db").json();
    assert_eq!(body["status"], "warn", "{body}");
    assert!(server.output().contains("a newer release migrated it"));
    assert!(!server.output().contains("panicked"));
    drop(server);
    // Teams that want such a database refused say so.
    let refused = project
        .server_until_exit(&[("DATABASE_SERVE_NEWER_SCHEMA", "false")])
        .expect("the server exits");
    assert_eq!(refused.code, 1, "{}", refused.stderr);
    assert!(
        refused
            .error_line()
            .contains("the database is ahead of this code"),
        "{}",
        refused.stderr
    );
}

#[test]
fn refuses_to_start_when_an_applied_migration_differs_from_its_copy() {
    for migrate in ["true", "false"] {
        let project = Project::sqlite();
        project.xtask(&["db-init"]).ok();
        tests::sqlite(
            &project.db_path(),
            "UPDATE refinery_schema_history SET checksum = '1' WHERE version = 1",
        );
        let run = project
            .server_until_exit(&[("DATABASE_MIGRATE_ON_START", migrate)])
            .expect("the server should have refused to start");
        assert_ne!(run.code, 0);
        assert!(
            run.stderr.contains("edited after it was applied"),
            "{}",
            run.stderr
        );
        assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    }
}

/// A TCP proxy to PostgreSQL that the test can cut and restore.
struct Proxy {
    port: u16,
    up: Arc<AtomicBool>,
    streams: Arc<Mutex<Vec<TcpStream>>>,
    accept: Option<std::thread::JoinHandle<()>>,
}

impl Proxy {
    fn start(port: u16, upstream: u16) -> Self {
        let listener = TcpListener::bind(("127.0.0.1", port)).expect("bind proxy port");
        listener.set_nonblocking(true).unwrap();
        let up = Arc::new(AtomicBool::new(true));
        let streams: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let accept = {
            let (up, streams) = (up.clone(), streams.clone());
            std::thread::spawn(move || {
                while up.load(Ordering::SeqCst) {
                    match listener.accept() {
                        Ok((client, _)) => {
                            client.set_nonblocking(false).unwrap();
                            let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
                                continue;
                            };
                            let mut registry = streams.lock().unwrap();
                            registry.push(client.try_clone().unwrap());
                            registry.push(server.try_clone().unwrap());
                            pipe(client.try_clone().unwrap(), server.try_clone().unwrap());
                            pipe(server, client);
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(5)),
                    }
                }
            })
        };
        Self {
            port,
            up,
            streams,
            accept: Some(accept),
        }
    }

    /// Closes the listener and every proxied connection: the database is unreachable.
    fn cut(mut self) -> u16 {
        self.up.store(false, Ordering::SeqCst);
        if let Some(t) = self.accept.take() {
            t.join().unwrap();
        }
        for s in self.streams.lock().unwrap().drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
        self.port
    }
}

fn pipe(mut from: TcpStream, mut to: TcpStream) {
    std::thread::spawn(move || {
        let mut buf = [0u8; 8192];
        while let Ok(n) = from.read(&mut buf) {
            if n == 0 || to.write_all(&buf[..n]).is_err() {
                break;
            }
        }
        let _ = to.shutdown(Shutdown::Both);
    });
}

#[test]
fn postgres_going_away_fails_within_a_second_and_recovers_without_restart() {
    let Some(pg) = PgDatabase::create() else {
        return;
    };
    let upstream: u16 = url_port(&pg.url);
    let proxy = Proxy::start(tests::free_port(), upstream);
    let via_proxy = pg
        .url
        .replacen(&format!(":{upstream}/"), &format!(":{}/", proxy.port), 1);
    assert_ne!(via_proxy, pg.url);
    let project = Project::sqlite();
    let server = Server::start(&project, &[("DATABASE_URL", &via_proxy)]);
    assert_eq!(server.get("/health/db").status, 200);

    let port = proxy.cut();
    for _ in 0..3 {
        let started = Instant::now();
        let response = server.get("/health/db");
        let elapsed = started.elapsed();
        assert_eq!(response.status, 503, "{}", response.body);
        assert_eq!(response.json()["status"], "fail");
        assert!(elapsed < Duration::from_secs(1), "{elapsed:?}");
        assert!(!response.body.contains("postgres://"), "{}", response.body);
    }
    // Refused, not busy: once the pool's connections are gone (a check cut short may
    // still hold one for a moment, a connection attempt in flight at the cut up to
    // `connect_timeout_ms`, 5 s), it says so at once.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let started = Instant::now();
        let response = server.get("/health/db");
        assert_eq!(response.status, 503, "{}", response.body);
        assert!(started.elapsed() < Duration::from_secs(1));
        if response.body.contains("cannot connect to the database") {
            break;
        }
        assert!(Instant::now() < deadline, "{}", response.body);
        std::thread::sleep(Duration::from_millis(100));
    }

    let _proxy = Proxy::start(port, upstream);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if server.get("/health/db").status == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "did not recover within 10 s");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn url_port(url: &str) -> u16 {
    let authority = url.split('/').nth(2).unwrap();
    authority
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or(5432)
}

#[test]
fn requests_no_route_handles_get_json_errors() {
    let project = Project::sqlite();
    let server = Server::start(&project, &[]);
    let response = server.get("/no/such/route");
    assert_eq!(response.status, 404);
    assert_eq!(response.header("content-type"), Some("application/json"));
    assert_eq!(response.json()["error"], "not found");
}

#[test]
fn an_older_server_keeps_serving_and_restarts_after_a_newer_release_migrated_ahead() {
    let Some(pg) = PgDatabase::create() else {
        return;
    };
    let project = Project::with_url(&pg.url);
    let old = Server::start(&project, &[]);
    assert_eq!(old.get("/health/db").json()["status"], "pass");
    // The newer release of a rolling deploy adds a column (expand) and migrates.
    let latest = std::fs::read_dir(project.path().join("migrations"))
        .unwrap()
        .filter(|e| {
            let name = e.as_ref().unwrap().file_name().into_string().unwrap();
            name.starts_with('V') && !name.ends_with(".down.sql")
        })
        .count();
    project.write_migration(
        &format!("V{}__newer", latest + 1),
        "CREATE TABLE newer (id BIGINT PRIMARY KEY);",
        Some("DROP TABLE newer;"),
    );
    project.xtask(&["db-upgrade"]).ok();
    // The old one stays in rotation, saying why it warns.
    let health = old.get("/health/db");
    assert_eq!(health.status, 200, "{}", health.body);
    let body = health.json();
    assert_eq!(body["status"], "warn", "{body}");
    assert!(
        body["output"]
            .as_str()
            .unwrap()
            .contains("ahead of this binary"),
        "{body}"
    );
    drop(old);
    // Restarted (rolled back, or a pod rescheduled), with or without migrating on start.
    for migrate in ["true", "false"] {
        let again = Server::start(&project, &[("DATABASE_MIGRATE_ON_START", migrate)]);
        assert_eq!(again.get("/health/db").status, 200);
        assert!(again.output().contains("a newer release migrated it"));
    }
}
