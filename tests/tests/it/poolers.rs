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
            run.error_line().contains("pooler = \"transaction\""),
            "{}",
            run.stderr
        );
    }
}

/// `pooler = "transaction"`: the server's requests go through PgBouncer in transaction
/// mode, each held connection one transaction with the timeouts set in it; two servers
/// share two server sessions (their statements' names would collide there); the
/// lifecycle commands and the server's migrations take `migrate_url`.
#[test]
fn the_server_and_the_notes_example_work_through_pgbouncer_in_transaction_mode() {
    let Some(pg) = PgDatabase::create() else {
        return;
    };
    let Some(bouncer) = PgBouncer::start_with_pool("transaction", Some(2)) else {
        return;
    };
    let project = Project::with_url(&bouncer.url(&pg.url));
    project.write_events_migration();
    let pooled = [
        ("DATABASE_POOLER", "transaction"),
        ("DATABASE_MIGRATE_URL", pg.url.as_str()),
    ];
    // Without a direct connection: one clear line, nothing done.
    let refused = project.xtask_with(&["db-status"], &pooled[..1]);
    refused.code(1);
    assert!(
        refused.error_line().contains("migrate_url"),
        "{}",
        refused.stderr
    );
    for command in [
        &["db-init"][..],
        &["db-backup"],
        &["db-check"],
        &["db-status"],
    ] {
        let run = project.xtask_with(command, &pooled);
        assert_eq!(run.code, 0, "{command:?}: {}{}", run.stdout, run.stderr);
    }
    {
        let server = Server::start(&project, &pooled);
        for _ in 0..20 {
            let health = server.get("/health/db");
            assert_eq!(health.status, 200, "{}", health.body);
        }
    }
    let notes = PgDatabase::create().unwrap();
    let env = [
        ("DATABASE_URL", bouncer.url(&notes.url)),
        ("DATABASE_POOLER", "transaction".to_string()),
        ("DATABASE_MIGRATE_URL", notes.url.clone()),
        ("DATABASE_LOCK_TIMEOUT_MS", "1500".to_string()),
    ];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let servers = [
        Server::start_with(project.command("notes"), &env),
        Server::start_with(project.command("notes"), &env),
    ];
    for round in 0..30 {
        let server = &servers[round % 2];
        let created = server.post_json(
            "/notes",
            &format!(r#"{{"title": "n{round}", "body": "b"}}"#),
        );
        assert_eq!(created.status, 201, "{}\n{}", created.body, bouncer.log());
        let id = created.json()["id"].as_i64().unwrap();
        let read = servers[(round + 1) % 2].get(&format!("/notes/{id}"));
        assert_eq!(read.status, 200, "{}", read.body);
    }
    assert_eq!(notes.execute("SELECT count(*) FROM notes"), "30");
    // The lock timeout holds in each transaction: a write behind a lock answers 503 at
    // about lock_timeout_ms, not when the lock is let go.
    let mut holder = tests::hold_pg_lock_in(&notes.url, "notes", "ExclusiveLock", 30);
    let started = Instant::now();
    let blocked = servers[0].post_json("/notes", r#"{"title": "late", "body": "b"}"#);
    let waited = started.elapsed();
    let _ = holder.kill();
    let _ = holder.wait();
    assert_eq!(blocked.status, 503, "{}", blocked.body);
    assert!(waited < Duration::from_secs(5), "waited {waited:?}");

    // Readiness checks that give up while the pooler's two server sessions are taken
    // (the history is locked) leave no session idle in a transaction once it is free.
    let mut holder = tests::hold_pg_lock_in(
        &notes.url,
        "refinery_schema_history",
        "AccessExclusiveLock",
        6,
    );
    std::thread::scope(|scope| {
        let checks: Vec<_> = (0..6)
            .map(|i| {
                let server = &servers[i % 2];
                std::thread::sleep(Duration::from_millis(300));
                scope.spawn(move || server.get("/health/db").status)
            })
            .collect();
        for check in checks {
            assert_eq!(check.join().unwrap(), 503);
        }
    });
    let _ = holder.wait();
    let idle = "SELECT count(*) FROM pg_stat_activity \
                WHERE datname = current_database() AND state LIKE 'idle in transaction%'";
    let freed = tests::poll_until(Duration::from_secs(5), || {
        tests::psql(&notes.url, idle).as_deref() == Ok("0")
    });
    assert!(freed, "{:?}", tests::psql(&notes.url, idle));
    assert_eq!(servers[1].get("/health/db").status, 200);
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
    // An idle client of the pooler keeps a server session: a restore names it and how
    // to close a pooler's sessions.
    let mut client = tests::pg_command("psql")
        .args(["--no-psqlrc", "-q", "-d", &url])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let stdin = client.stdin.as_mut().unwrap();
        stdin.write_all(b"SELECT 1;\n").unwrap();
        stdin.flush().unwrap();
    }
    let idle = "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
                AND state = 'idle' AND pid <> pg_backend_pid()";
    assert!(tests::poll_until(Duration::from_secs(10), || {
        tests::psql(&pg.url, idle).is_ok_and(|n| n != "0")
    }));
    let backup = tests::newest_backup(&project.path().join("backups"), ".dump");
    let restore = project.xtask(&["db-restore", &backup.to_string_lossy(), "-y"]);
    let _ = client.kill();
    let _ = client.wait();
    restore.code(1);
    assert!(
        restore.error_line().contains("idle") && restore.error_line().contains("KILL"),
        "{}",
        restore.stderr
    );
    // A database that does not exist yet: PgBouncer relays the refusal as its own error
    // (08P01), and db-init still creates it.
    let created = format!("{}_created", pg.name());
    let missing = bouncer.url(&pg.url.replace(pg.name(), &created));
    let init = project.xtask_with(&["db-init"], &[("DATABASE_URL", &missing)]);
    tests::psql(
        &tests::postgres_admin_url(),
        &format!("DROP DATABASE IF EXISTS {created} WITH (FORCE)"),
    )
    .ok();
    assert_eq!(init.code, 0, "{}{}", init.stdout, init.stderr);
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
