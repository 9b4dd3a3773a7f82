//! A private primary and its streaming replica (`pg_basebackup -R`) on loopback ports:
//! a server on the standby answers writes with 503, and a server given both hosts
//! (`target_session_attrs=read-write`) follows a promotion.

use std::time::{Duration, Instant};

use tests::{PgCluster, Project, Server, poll_until};

/// Posts a note; the status.
fn post(server: &Server, title: &str) -> u16 {
    server
        .post_json("/notes", &format!(r#"{{"title": "{title}", "body": "b"}}"#))
        .status
}

#[test]
fn writes_on_a_standby_are_503_and_a_host_list_follows_a_promotion() {
    let Some(primary) = PgCluster::create() else {
        return;
    };
    primary.admin("ALTER ROLE postgres PASSWORD 'standby-pw'");
    primary.admin("CREATE DATABASE app");
    let Some(standby) = primary.replica() else {
        return;
    };
    let one = |port: u16| format!("postgres://postgres:standby-pw@127.0.0.1:{port}/app");
    let both = format!(
        "postgres://postgres:standby-pw@127.0.0.1:{},127.0.0.1:{}/app?target_session_attrs=read-write",
        primary.port, standby.port
    );
    let project = Project::sqlite();
    let server = Server::start_with(project.command("notes"), &[("DATABASE_URL", &both)]);
    assert_eq!(post(&server, "before"), 201);
    assert!(
        poll_until(Duration::from_secs(20), || {
            standby.admin("SELECT count(*) FROM pg_database WHERE datname = 'app'") == "1"
                && tests::psql(&one(standby.port), "SELECT count(*) FROM notes")
                    .is_ok_and(|n| n == "1")
        }),
        "the standby did not replay the schema"
    );

    // A server on the standby alone starts (its schema is up to date) and refuses writes.
    {
        let on_standby = Server::start_with(
            project.command("notes"),
            &[("DATABASE_URL", &one(standby.port))],
        );
        let health = on_standby.get("/health/db");
        assert_eq!(health.status, 503, "{}", health.body);
        assert!(health.body.contains("read-only"), "{}", health.body);
        let write = on_standby.post_json("/notes", r#"{"title": "no", "body": "b"}"#);
        assert_eq!(write.status, 503, "{}", write.body);
        assert!(write.header("retry-after").is_some(), "{:?}", write.body);
        assert_eq!(on_standby.get("/notes?limit=5").status, 200);
    }

    // The primary goes away; the standby is promoted; writes through the host list resume.
    primary.ctl(&["stop", "-m", "immediate"]);
    standby.ctl(&["promote"]);
    let promoted = Instant::now();
    let mut n = 0;
    let resumed = poll_until(Duration::from_secs(30), || {
        n += 1;
        post(&server, &format!("after {n}")) == 201
    });
    let elapsed = promoted.elapsed();
    assert!(
        resumed,
        "writes did not resume within 30 s of the promotion"
    );
    eprintln!("first successful write {elapsed:?} after the promotion");
    assert!(
        server.output().contains("now using 127.0.0.1:"),
        "{}",
        server.output()
    );
    assert!(!server.output().contains("standby-pw"));
}
