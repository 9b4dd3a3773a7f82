//! The `notes` example (`server/examples/notes/`), run as a real process on SQLite and on
//! the real PostgreSQL server: the pattern the README documents for new endpoints.

use tests::{PgDatabase, Project, Response, Server};

/// Starts the example in a fresh project on `url` (its own database).
fn start(url: &str, extra: &[(&str, &str)]) -> (Project, Server) {
    let project = Project::sqlite();
    let mut env = vec![("DATABASE_URL", url)];
    env.extend_from_slice(extra);
    let server = Server::start_with(project.command("notes"), &env);
    (project, server)
}

fn json(response: &Response) -> serde_json::Value {
    response.json()
}

/// No error body shows SQL, a path or the engine's own words.
fn assert_clean_error(response: &Response) {
    let body = &response.body;
    assert!(json(response)["error"].is_string(), "{body}");
    for leak in [
        "SELECT",
        "INSERT",
        "UPDATE",
        "notes.",
        "/tmp",
        "constraint",
        "sqlx",
        "postgres",
    ] {
        assert!(!body.contains(leak), "{leak} leaked: {body}");
    }
}

fn post(server: &Server, body: &str) -> Response {
    server.post_json("/notes", body)
}

// ANCHOR: test
fn round_trips(url: &str) {
    let (_project, server) = start(url, &[]);

    let created = post(
        &server,
        r#"{"title": "groceries", "body": "milk", "tags": ["home", "food"]}"#,
    );
    assert_eq!(created.status, 201, "{}", created.body);
    let note = json(&created);
    let id = note["id"].as_i64().expect("an id");
    // ANCHOR_END: test
    assert_eq!(
        created.header("location"),
        Some(format!("/notes/{id}").as_str())
    );
    assert_eq!(note["title"], "groceries");
    assert_eq!(note["tags"], serde_json::json!(["food", "home"]));

    let fetched = server.get(&format!("/notes/{id}"));
    assert_eq!(fetched.status, 200);
    assert_eq!(json(&fetched), note);

    let missing = server.get("/notes/999999");
    assert_eq!(missing.status, 404);
    assert_clean_error(&missing);
    let not_an_id = server.get("/notes/abc");
    assert_eq!(not_an_id.status, 422, "{}", not_an_id.body);
    assert_clean_error(&not_an_id);

    // Bad bodies.
    let cases = [
        (r#"{"title": "x""#, 400),
        ("", 400),
        (r#"{"title": "x"}"#, 422),
        (r#"{"title": 5, "body": "b"}"#, 422),
        (r#"{"title": "x", "body": "b", "extra": 1}"#, 422),
        (r#"{"title": "   ", "body": "b"}"#, 422),
        (
            r#"{"title": "x", "body": "b", "tags": ["a","b","c","d","e","f","g","h","i","j","k"]}"#,
            422,
        ),
    ];
    for (body, status) in cases {
        let response = post(&server, body);
        assert_eq!(response.status, status, "{body}: {}", response.body);
        assert_clean_error(&response);
    }

    // A unique-constraint violation.
    let duplicate = post(&server, r#"{"title": "groceries", "body": "again"}"#);
    assert_eq!(duplicate.status, 409, "{}", duplicate.body);
    assert_clean_error(&duplicate);

    // A write that fails half-way: the note was inserted, then a tag is refused.
    let long_tag = "t".repeat(31);
    let half = post(
        &server,
        &format!(r#"{{"title": "half", "body": "b", "tags": ["ok", "{long_tag}"]}}"#),
    );
    assert_eq!(half.status, 422, "{}", half.body);
    assert_clean_error(&half);
    let page = json(&server.get("/notes"));
    let titles: Vec<&str> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["title"].as_str().unwrap())
        .collect();
    assert_eq!(titles, ["groceries"], "nothing of the failed write is left");
    let retried = post(&server, r#"{"title": "half", "body": "b", "tags": ["ok"]}"#);
    assert_eq!(retried.status, 201, "{}", retried.body);
    // The engine's ids only grow; PostgreSQL's identity may skip the failed write's.
    assert!(
        json(&retried)["id"].as_i64().unwrap() > id,
        "{}",
        retried.body
    );

    // Pagination.
    for n in 0..23 {
        assert_eq!(
            post(&server, &format!(r#"{{"title": "n{n}", "body": ""}}"#)).status,
            201
        );
    }
    let mut seen = 0;
    let mut after = None;
    for _ in 0..10 {
        let path = match after {
            Some(after) => format!("/notes?limit=10&after={after}"),
            None => "/notes?limit=10".to_string(),
        };
        let page = json(&server.get(&path));
        seen += page["items"].as_array().unwrap().len();
        after = page["next_after"].as_i64();
        if after.is_none() {
            break;
        }
    }
    assert_eq!(seen, 25);
    for bad in [
        "/notes?limit=0",
        "/notes?limit=101",
        "/notes?limit=abc",
        "/notes?after=x",
    ] {
        let response = server.get(bad);
        assert_eq!(response.status, 422, "{bad}: {}", response.body);
    }

    let doc = json(&server.get("/openapi.json"));
    for path in ["/notes", "/notes/{id}", "/health/db"] {
        assert!(
            doc["paths"][path].is_object(),
            "{path} not in /openapi.json"
        );
    }
}

#[test]
fn notes_round_trip_on_sqlite() {
    round_trips("sqlite://notes.db");
}

#[test]
fn notes_round_trip_on_postgres() {
    let Some(pg) = PgDatabase::create() else {
        return;
    };
    round_trips(&pg.url);
}

/// Open file descriptors of a process.
fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

fn a_thousand_requests_leak_nothing(url: &str) {
    let (_project, server) = start(url, &[("DATABASE_MAX_CONNECTIONS", "4")]);
    assert_eq!(
        post(&server, r#"{"title": "first", "body": ""}"#).status,
        201
    );
    let warm = server.get("/health/db");
    assert_eq!(warm.status, 200);
    let fds_before = open_fds(server.pid());
    for i in 0..1_000 {
        let response = match i % 5 {
            0 => server.get("/notes/1"),
            1 => server.get("/notes/424242"),
            2 => post(&server, r#"{"title": "first", "body": ""}"#),
            3 => post(
                &server,
                &format!(
                    r#"{{"title": "t{i}", "body": "", "tags": ["{}"]}}"#,
                    "x".repeat(40)
                ),
            ),
            _ => server.get("/notes?limit=5"),
        };
        let expected = [200, 404, 409, 422, 200][i % 5];
        assert_eq!(response.status, expected, "request {i}: {}", response.body);
    }
    // Every connection is back in the pool, but perhaps the probe's own: sqlx returns
    // them in the background, so the probe asks again (for at most 5 s) until they are.
    let out = |health: &serde_json::Value| {
        let pool = &health["pool"];
        pool["size"].as_u64().unwrap() - pool["idle"].as_u64().unwrap()
    };
    let mut health = serde_json::Value::Null;
    tests::poll_until(std::time::Duration::from_secs(5), || {
        health = json(&server.get("/health/db"));
        out(&health) <= 1
    });
    assert_eq!(health["status"], "pass", "{health}");
    let pool = &health["pool"];
    assert!(pool["size"].as_u64().unwrap() <= 4, "{pool}");
    assert!(out(&health) <= 1, "{pool}");
    let fds_after = open_fds(server.pid());
    assert!(
        fds_after <= fds_before + 8,
        "file descriptors {fds_before} -> {fds_after}"
    );
    let page = json(&server.get("/notes?limit=100"));
    assert_eq!(
        page["items"].as_array().unwrap().len(),
        1,
        "no failed write left a row"
    );
}

#[test]
fn a_thousand_requests_leak_nothing_on_sqlite() {
    a_thousand_requests_leak_nothing("sqlite://notes.db");
}

#[test]
fn a_thousand_requests_leak_nothing_on_postgres() {
    let Some(pg) = PgDatabase::create() else {
        return;
    };
    a_thousand_requests_leak_nothing(&pg.url);
}

#[test]
fn an_unavailable_database_is_a_503_with_retry_after() {
    let (project, server) = start("sqlite://notes.db", &[]);
    assert_eq!(post(&server, r#"{"title": "a", "body": ""}"#).status, 201);
    let db = project.path().join("notes.db");
    std::fs::rename(&db, project.path().join("elsewhere.db")).unwrap();
    let response = server.get("/notes/1");
    assert_eq!(response.status, 503, "{}", response.body);
    assert_eq!(response.header("retry-after"), Some("1"));
    assert_clean_error(&response);
    std::fs::rename(project.path().join("elsewhere.db"), &db).unwrap();
    assert_eq!(server.get("/notes/1").status, 200);
}

fn careless_clients(url: &str) {
    let (project, server) = start(url, &[("DATABASE_MAX_CONNECTIONS", "2")]);
    // NUL characters: PostgreSQL refuses them, SQLite would store them; both say 422.
    for body in [
        r#"{"title": "a\u0000b", "body": ""}"#,
        r#"{"title": "a", "body": "x\u0000"}"#,
        r#"{"title": "a", "body": "", "tags": ["t\u0000"]}"#,
    ] {
        let response = post(&server, body);
        assert_eq!(response.status, 422, "{body}: {}", response.body);
        assert_clean_error(&response);
    }
    // A body that is not declared JSON (`text/plain`, a form, no type): 415, nothing stored.
    for content_type in [
        "Content-Type: text/plain\r\n",
        "Content-Type: application/x-www-form-urlencoded\r\n",
        "",
    ] {
        let body = r#"{"title": "not json", "body": ""}"#;
        let raw = format!(
            "POST /notes HTTP/1.1\r\nHost: 127.0.0.1\r\n{content_type}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let response = tests::request(server.port, raw.as_bytes()).unwrap();
        assert_eq!(response.status, 415, "{content_type}: {}", response.body);
        assert_clean_error(&response);
    }
    assert_eq!(json(&server.get("/notes"))["items"], serde_json::json!([]));
    // A misspelt query parameter, a blank tag, a charset that is not UTF-8: refused.
    for path in ["/notes?limt=1", "/notes?LIMIT=1", "/notes?offset=3"] {
        let response = server.get(path);
        assert_eq!(response.status, 422, "{path}: {}", response.body);
    }
    let blank = post(&server, r#"{"title": "t", "body": "", "tags": ["  "]}"#);
    assert_eq!(blank.status, 422, "{}", blank.body);
    assert!(blank.body.contains("tag"), "{}", blank.body);
    let body = r#"{"title": "latin", "body": ""}"#;
    let raw = format!(
        "POST /notes HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json; charset=latin1\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    assert_eq!(
        tests::request(server.port, raw.as_bytes()).unwrap().status,
        415
    );
    // Repeated query parameters are a mistake, not half ignored.
    for path in ["/notes?limit=1&limit=500", "/notes?after=1&after=abc"] {
        assert_eq!(server.get(path).status, 422, "{path}");
    }
    // A body above the JSON limit: 413, and the body never reaches the log.
    let marker = "careless-marker-";
    let huge = format!(r#"{{"title": "{}", "body": "#, marker.repeat(80_000));
    let response = post(&server, &huge);
    assert_eq!(response.status, 413, "{}", response.body);
    let malformed = format!(r#"{{"title": "{marker}", "body": ]"#);
    assert_eq!(post(&server, &malformed).status, 400);
    assert!(
        !server.output().contains(marker),
        "a request body reached the log"
    );

    // Slow uploads do not hold the pool's two connections.
    let slow: Vec<std::net::TcpStream> = (0..4)
        .map(|_| {
            let mut stream = std::net::TcpStream::connect(("127.0.0.1", server.port)).unwrap();
            std::io::Write::write_all(
                &mut stream,
                b"POST /notes HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"title\": \"sl",
            )
            .unwrap();
            stream
        })
        .collect();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let created = post(&server, r#"{"title": "while others upload", "body": ""}"#);
    assert_eq!(created.status, 201, "{}", created.body);
    assert_eq!(server.get("/health/db").status, 200);
    drop(slow);
    drop(project);
}

#[test]
fn careless_clients_get_the_same_answers_on_sqlite() {
    careless_clients("sqlite://notes.db");
}

#[test]
fn careless_clients_get_the_same_answers_on_postgres() {
    let Some(pg) = PgDatabase::create() else {
        return;
    };
    careless_clients(&pg.url);
}

#[test]
fn a_database_without_the_schema_is_a_503_not_a_500() {
    let (project, server) = start("sqlite://notes.db", &[]);
    assert_eq!(post(&server, r#"{"title": "a", "body": ""}"#).status, 201);
    // Replaced by an empty database: the server reopens it; its tables are gone.
    let other = Project::sqlite();
    other.xtask(&["db-init"]).ok();
    let empty = other.db_path();
    let db = project.path().join("notes.db");
    for suffix in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
    }
    std::fs::rename(&empty, &db).unwrap();
    let response = server.get("/notes/1");
    assert_eq!(response.status, 503, "{}", response.body);
    assert_clean_error(&response);
    assert_eq!(server.get("/health/db").status, 503);
}

#[test]
fn a_read_only_postgres_database_starts_serves_reads_and_answers_writes_with_503() {
    let Some(pg) = PgDatabase::create() else {
        return;
    };
    // Migrated and holding a note, then read-only for every new session, as a standby is.
    {
        let (_project, server) = start(&pg.url, &[]);
        assert_eq!(
            post(&server, r#"{"title": "kept", "body": "x"}"#).status,
            201
        );
    }
    pg.execute(&format!(
        "ALTER DATABASE {} SET default_transaction_read_only = on",
        pg.name()
    ));
    // Up to date: migrating on start has nothing to write.
    let (_project, server) = start(&pg.url, &[]);
    assert_eq!(server.get("/notes?limit=5").status, 200);
    let refused = post(&server, r#"{"title": "new", "body": "y"}"#);
    assert_eq!(refused.status, 503, "{}", refused.body);
    assert!(refused.body.contains("read-only"), "{}", refused.body);
    assert_clean_error(&refused);
}
