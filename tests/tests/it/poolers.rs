//! Through a real PgBouncer on a loopback port, with its default configuration: the
//! lifecycle commands, the server and the notes example, with the configured timeouts
//! in force.

use std::time::{Duration, Instant};

use tests::{PgBouncer, PgDatabase, Project, Server, hold_pg_lock};

#[test]
fn the_lifecycle_the_server_and_the_notes_example_work_through_pgbouncer_in_session_mode() {
    through_pgbouncer("session");
}

#[test]
fn a_pooler_in_transaction_mode_is_named_as_the_cause_of_its_errors() {
    let Some(pg) = PgDatabase::create() else {
        return;
    };
    let Some(bouncer) = PgBouncer::start("transaction") else {
        return;
    };
    let project = Project::with_url(&bouncer.url(&pg.url));
    // Two commands in turn: the second one's statements meet the first one's names in
    // the server sessions the pooler hands out.
    let first = project.xtask(&["db-init"]);
    let second = project.xtask(&["db-status"]);
    let failed: Vec<_> = [&first, &second]
        .into_iter()
        .filter(|r| r.code != 0)
        .collect();
    assert!(!failed.is_empty(), "{}{}", second.stdout, second.stderr);
    for run in failed {
        assert!(
            run.error_line().contains("pool_mode = session"),
            "{}",
            run.stderr
        );
    }
}

fn through_pgbouncer(mode: &str) {
    let Some(pg) = PgDatabase::create() else {
        return;
    };
    let Some(bouncer) = PgBouncer::start(mode) else {
        return;
    };
    let url = bouncer.url(&pg.url);
    let project = Project::with_url(&url);
    project.write_events_migration();
    for command in [
        &["db-init"][..],
        &["db-status"],
        &["db-backup"],
        &["db-check"],
        &["db-downgrade", "-y"],
        &["db-upgrade"],
    ] {
        let run = project.xtask(command);
        assert_eq!(
            run.code,
            0,
            "{command:?}: {}{}\n{}",
            run.stdout,
            run.stderr,
            bouncer.log()
        );
    }
    {
        let server = Server::start(&project, &[]);
        let health = server.get("/health/db");
        assert_eq!(health.status, 200, "{}", health.body);
    }
    let notes = PgDatabase::create().unwrap();
    let server = Server::start_with(
        project.command("notes"),
        &[("DATABASE_URL", &bouncer.url(&notes.url))],
    );
    let created = server.post_json("/notes", r#"{"title": "through", "body": "a pooler"}"#);
    assert_eq!(created.status, 201, "{}", created.body);
    let id = created.json()["id"].as_i64().unwrap();
    assert_eq!(server.get(&format!("/notes/{id}")).status, 200);
}

#[test]
fn a_migration_waiting_for_a_lock_through_pgbouncer_stops_at_the_lock_timeout() {
    let Some(pg) = PgDatabase::create() else {
        return;
    };
    let Some(bouncer) = PgBouncer::start("session") else {
        return;
    };
    let project = Project::with_url(&bouncer.url(&pg.url));
    project.write_events_migration();
    project.xtask(&["db-init"]).ok();
    project.write_migration(
        "V3__column",
        "ALTER TABLE events ADD COLUMN extra TEXT;",
        Some("ALTER TABLE events DROP COLUMN extra;"),
    );
    let mut holder = hold_pg_lock(&pg.url, "events", 30);
    let started = Instant::now();
    let run = project.xtask_with(&["db-upgrade"], &[("DATABASE_LOCK_TIMEOUT_MS", "1000")]);
    let waited = started.elapsed();
    let _ = holder.kill();
    let _ = holder.wait();
    run.code(1);
    assert!(run.error_line().contains("lock_timeout"), "{}", run.stderr);
    assert!(waited < Duration::from_secs(10), "waited {waited:?}");
}
