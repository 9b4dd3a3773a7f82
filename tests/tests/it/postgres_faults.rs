//! The fault suite on the real PostgreSQL server: restores that fail in every way leave the
//! live database exactly as it was; a password that needs percent-encoding works end to
//! end against a server that checks it, and is shown nowhere; racing `db-init`s.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tests::{
    PgCluster, PgDatabase, Project, Server, logging_pg_tools, path_with_only, postgres_admin_url,
    psql, sha256,
};

use crate::support::scratch_kills;

fn notes_project(url: &str) -> Project {
    let project = Project::with_url(url);
    project.write_migration(
        "V2__notes",
        "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT NOT NULL);",
        Some("DROP TABLE notes;"),
    );
    project
}

fn dumps(project: &Project) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(project.path().join("backups"))
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "dump"))
        .collect();
    files.sort();
    files
}

/// Everything a user would compare: the tables, the notes, the history.
fn state(pg: &PgDatabase) -> String {
    pg.execute(
        "SELECT (SELECT string_agg(tablename, ',' ORDER BY tablename) FROM pg_tables WHERE schemaname = 'public') \
         || ' | ' || (SELECT coalesce(string_agg(body, ',' ORDER BY id), '') FROM notes) \
         || ' | ' || (SELECT string_agg(version::text, ',' ORDER BY version) FROM refinery_schema_history)",
    )
}

/// Rewrites the manifest of `backup` so that it matches the file as it is now.
fn rewrite_manifest(backup: &Path) {
    let path = format!("{}.json", backup.display());
    let mut manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    manifest["sha256"] = sha256(backup).into();
    manifest["size"] = std::fs::metadata(backup).unwrap().len().into();
    std::fs::write(&path, serde_json::to_string_pretty(&manifest).unwrap()).unwrap();
}

#[test]
fn failed_postgres_restores_leave_the_live_database_unchanged() {
    let Some(pg) = PgDatabase::create() else {
        return;
    };
    let project = notes_project(&pg.url);
    project.xtask(&["db-init"]).ok();
    pg.execute("INSERT INTO notes VALUES (1, 'in the backup')");
    project.xtask(&["db-backup"]).ok();
    let backup = dumps(&project).pop().unwrap();
    pg.execute("INSERT INTO notes VALUES (2, 'after the backup'); CREATE TABLE extra (x int)");
    let live = state(&pg);
    assert!(
        live.contains("after the backup") && live.contains("extra"),
        "{live}"
    );

    // pg_restore missing from PATH: refused before anything is touched.
    let only = path_with_only(&["pg_dump", "psql"]);
    let run = project.xtask_with(
        &["db-restore", backup.to_str().unwrap(), "-y", "--no-backup"],
        &[("PATH", only.path().to_str().unwrap())],
    );
    assert!(
        run.error_line().contains("pg_restore not found"),
        "{}",
        run.stderr
    );
    assert_eq!(state(&pg), live);

    // A damaged archive whose manifest matches it (truncated, manifest rewritten).
    let damaged = project.path().join("backups/damaged.dump");
    let bytes = std::fs::read(&backup).unwrap();
    std::fs::write(&damaged, &bytes[..bytes.len() * 3 / 4]).unwrap();
    std::fs::copy(
        format!("{}.json", backup.display()),
        format!("{}.json", damaged.display()),
    )
    .unwrap();
    rewrite_manifest(&damaged);
    let run = project.xtask(&["db-restore", damaged.to_str().unwrap(), "-y", "--no-backup"]);
    assert!(
        run.error_line().contains("not a usable backup"),
        "{}",
        run.stderr
    );
    assert_eq!(state(&pg), live);

    // Failing half-way: a session holds a lock the restore needs; the whole restore rolls back.
    let mut holder = tests::hold_pg_lock(&pg.url, "notes", 4);
    let run = project.xtask_with(
        &[
            "db-restore",
            backup.to_str().unwrap(),
            "-y",
            "--no-backup",
            "--while-in-use",
        ],
        &[("DATABASE_LOCK_TIMEOUT_MS", "300")],
    );
    assert!(run.error_line().contains("lock timeout"), "{}", run.stderr);
    holder.wait().unwrap();
    assert_eq!(state(&pg), live);

    // And a restore that can succeed does, with a safety backup first.
    let run = project.xtask(&["db-restore", backup.to_str().unwrap(), "-y"]);
    run.ok();
    assert!(run.stderr.contains("safety backup: "), "{}", run.stderr);
    let restored = state(&pg);
    assert!(restored.contains("in the backup"), "{restored}");
    assert!(
        !restored.contains("after the backup") && !restored.contains("extra"),
        "{restored}"
    );
    // The backup directory holds only finished backups and their manifests.
    assert_eq!(
        tests::debris(&project.path().join("backups")),
        Vec::<String>::new()
    );
}

/// A password with every character that needs percent-encoding in a URL.
const PASSWORD: &str = "S3c@r/t#?% x:&=";

fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[test]
fn a_password_that_needs_encoding_works_end_to_end_and_is_never_shown() {
    let Some(cluster) = PgCluster::create() else {
        return;
    };
    cluster.admin(&format!(
        "CREATE ROLE app LOGIN CREATEDB PASSWORD '{}'",
        PASSWORD.replace('\'', "''")
    ));
    // A database name that needs encoding too; db-init creates it under its decoded name.
    let url = format!(
        "postgres://app:{}@127.0.0.1:{}/x%20y",
        encode(PASSWORD),
        cluster.port
    );
    // Only the workspace's migrations: the server binary embeds those.
    let project = Project::with_url(&url);
    let tools = logging_pg_tools();
    let path = tools.path().display().to_string();
    let env = [("PATH", path.as_str())];
    let mut shown = String::new();
    let mut run = |args: &[&str]| {
        let run = project.xtask_with(args, &env);
        shown.push_str(&run.stdout);
        shown.push_str(&run.stderr);
        run
    };

    run(&["db-init"]).ok();
    assert_eq!(
        cluster.admin("SELECT count(*) FROM pg_database WHERE datname = 'x y'"),
        "1"
    );
    run(&["db-status"]).ok();
    run(&["db-backup"]).ok();
    let backup = dumps(&project).pop().unwrap();
    run(&["db-restore", backup.to_str().unwrap(), "-y"]).ok();
    run(&["db-backups"]).ok();

    let server = Server::start(&project, &[("DATABASE_URL", url.as_str())]);
    let health = server.get("/health/db");
    assert_eq!(health.status, 200, "{}", health.body);
    shown.push_str(&health.body);
    shown.push_str(&server.output());
    drop(server);

    // The wrong password: a clear failure, still masked.
    let wrong = url.replace(&encode(PASSWORD), "wrong%2Fpass");
    let failed = project.xtask_with(&["db-status"], &[("DATABASE_URL", wrong.as_str())]);
    let line = failed.error_line();
    assert!(line.contains("password authentication failed"), "{line}");
    assert!(!line.contains("wrong"), "{line}");

    let calls = std::fs::read_to_string(tools.path().join("calls.log")).unwrap();
    assert!(
        calls.contains("pg_dump") && calls.contains("pg_restore"),
        "{calls}"
    );
    for entry in std::fs::read_dir(project.path().join("backups")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "json") {
            shown.push_str(&std::fs::read_to_string(path).unwrap());
        }
    }
    for secret in [PASSWORD, encode(PASSWORD).as_str(), "S3c"] {
        assert!(!shown.contains(secret), "{secret} was shown:\n{shown}");
        assert!(
            !calls.contains(secret),
            "{secret} in a tool's arguments:\n{calls}"
        );
    }
}

#[test]
fn eight_racing_db_inits_create_a_missing_postgres_database_once() {
    let Some(pg) = PgDatabase::create() else {
        return;
    };
    // A database that does not exist yet, on the same server; dropped at the end.
    let name = format!("{}_race", pg.url.rsplit('/').next().unwrap());
    let url = format!("{}/{name}", pg.url.rsplit_once('/').unwrap().0);
    let project = Project::with_url(&url);
    let runs: Vec<_> = (0..8)
        .map(|_| {
            let mut command = project.command("xtask");
            std::thread::spawn(move || tests::Run::from(command.arg("db-init").output().unwrap()))
        })
        .collect();
    let runs: Vec<tests::Run> = runs.into_iter().map(|r| r.join().unwrap()).collect();
    let history = psql(&url, "SELECT count(*) FROM refinery_schema_history");
    let _ = psql(
        &postgres_admin_url(),
        &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
    );
    for run in &runs {
        run.ok();
    }
    assert_eq!(history.unwrap(), "1");
}

#[test]
fn a_password_query_parameter_is_masked_in_status_and_the_server_log() {
    let Some(pg) = PgDatabase::create() else {
        return;
    };
    // The test server trusts local connections: the parameter is accepted, and must not show.
    let url = format!("{}?password=hunter2", pg.url);
    let project = Project::with_url(&url);
    let init = project.xtask(&["db-init"]);
    let status = project.xtask(&["db-status"]);
    let server = Server::start(&project, &[]);
    let log = server.output();
    drop(server);
    let shown = format!(
        "{}{}{}{}{log}",
        init.ok(),
        init.stderr,
        status.ok(),
        status.stderr
    );
    assert!(shown.contains("password=****"), "{shown}");
    assert!(!shown.contains("hunter2"), "{shown}");
}

#[test]
fn a_killed_postgres_restore_changes_nothing() {
    let Some(pg) = PgDatabase::create() else {
        return;
    };
    let project = notes_project(&pg.url);
    project.xtask(&["db-init"]).ok();
    // Enough data that restoring it takes a while.
    pg.execute(
        "CREATE TABLE big AS SELECT i, md5(i::text) AS v FROM generate_series(1, 1000000) AS i",
    );
    project.xtask(&["db-backup"]).ok();
    let backup = dumps(&project).pop().unwrap();
    pg.execute("DROP TABLE big; INSERT INTO notes VALUES (1, 'after the backup')");
    let before = state(&pg);

    let mut restore =
        project.spawn_xtask(&["db-restore", backup.to_str().unwrap(), "-y", "--no-backup"]);
    let name = pg.url.rsplit('/').next().unwrap().to_string();
    let psql_running = || {
        psql(
            &postgres_admin_url(),
            &format!(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = '{name}' AND application_name = 'psql' AND state = 'active'"
            ),
        )
        .is_ok_and(|n| n != "0")
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !psql_running() {
        assert!(
            std::time::Instant::now() < deadline,
            "the restore never reached psql"
        );
        assert!(
            restore.try_wait().unwrap().is_none(),
            "the restore ended early"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    restore.kill().unwrap();
    restore.wait().unwrap();
    // Whatever the restore had started must not complete after it was killed: wait (at
    // most 3 s) until no psql session is left in the database, so none can still commit.
    let no_psql_session = || {
        psql(
            &postgres_admin_url(),
            &format!(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = '{name}' AND application_name = 'psql'"
            ),
        )
        .is_ok_and(|n| n == "0")
    };
    tests::poll_until(Duration::from_secs(3), no_psql_session);
    assert!(
        !psql_running(),
        "psql kept running after the restore was killed"
    );
    assert_eq!(state(&pg), before);
}

#[test]
fn a_backup_longer_than_the_statement_timeout_succeeds() {
    let Some(pg) = PgDatabase::create() else {
        return;
    };
    let project = notes_project(&pg.url);
    project.xtask(&["db-init"]).ok();
    pg.execute(
        "CREATE TABLE big AS SELECT i, md5(i::text) AS v FROM generate_series(1, 500000) AS i",
    );
    // The snapshot's session idles while pg_dump works, far longer than this.
    let run = project.xtask_with(&["db-backup"], &[("DATABASE_STATEMENT_TIMEOUT_MS", "100")]);
    assert!(run.ok().contains("verified"), "{}", run.stderr);
    let backup = dumps(&project).pop().unwrap();
    pg.execute("DROP TABLE big");
    project
        .xtask(&["db-restore", backup.to_str().unwrap(), "-y", "--no-backup"])
        .ok();
    assert_eq!(pg.execute("SELECT count(*) FROM big"), "500000");
}

#[test]
fn readiness_fails_on_a_postgres_database_that_accepts_no_writes() {
    let Some(pg) = PgDatabase::create() else {
        return;
    };
    let project = Project::with_url(&pg.url);
    project.xtask(&["db-init"]).ok();
    pg.execute(&format!(
        "ALTER DATABASE {} SET default_transaction_read_only = on",
        pg.name()
    ));
    let server = tests::Server::start(&project, &[("DATABASE_MIGRATE_ON_START", "false")]);
    let response = server.get("/health/db");
    assert_eq!(response.status, 503, "{}", response.body);
    assert!(response.body.contains("read-only"), "{}", response.body);
}

/// The scratch databases of the `xtask` run with process id `pid` on the test server.
fn scratch_databases(pid: u32) -> Vec<String> {
    let names = psql(
        &postgres_admin_url(),
        &format!(
            "SELECT datname FROM pg_database WHERE datname LIKE 'xtask\\_scratch\\_{pid}\\_%' ORDER BY 1"
        ),
    )
    .unwrap();
    names.lines().map(str::to_string).collect()
}

/// A project on its own database whose second migration sleeps a second, `schema.sql`
/// written, and an empty temporary directory for its runs.
fn slow_scratch_project(pg: &PgDatabase) -> (Project, tempfile::TempDir) {
    let project = notes_project(&pg.url);
    project.write_migration(
        "V3__slow",
        "CREATE TABLE slow (x INTEGER PRIMARY KEY); SELECT pg_sleep(1);",
        Some("DROP TABLE slow;"),
    );
    let tmp = tempfile::tempdir().unwrap();
    let tmpdir = tmp.path().to_str().unwrap();
    project.xtask_with(&["db-init"], &[("TMPDIR", tmpdir)]).ok();
    project
        .xtask_with(&["db-schema"], &[("TMPDIR", tmpdir)])
        .ok();
    (project, tmp)
}

#[test]
fn interrupted_or_killed_scratch_commands_leave_no_scratch_database_on_postgres() {
    let Some(pg) = PgDatabase::create() else {
        return;
    };
    let (project, tmp) = slow_scratch_project(&pg);
    scratch_kills::Experiment {
        project: &project,
        tmp: tmp.path(),
        scratch_of: &scratch_databases,
    }
    .run();
}

#[test]
fn a_scratch_database_whose_owner_is_alive_is_never_dropped() {
    let Some(pg) = PgDatabase::create() else {
        return;
    };
    let (project, tmp) = slow_scratch_project(&pg);
    let tmpdir = tmp.path().to_str().unwrap();
    // What a live run on another machine holds: the database and its marker session.
    let name = format!("xtask_scratch_{}_{}", u32::MAX, std::process::id());
    psql(&postgres_admin_url(), &format!("CREATE DATABASE {name}")).unwrap();
    // An idle session (psql waiting for input), as the owner's marker is.
    let mut marker = tests::pg_command("psql")
        .args(["--no-psqlrc", "-d", &postgres_admin_url()])
        .env("PGAPPNAME", &name)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let session =
        format!("SELECT count(*) FROM pg_stat_activity WHERE application_name = '{name}'");
    let exists = format!("SELECT count(*) FROM pg_database WHERE datname = '{name}'");
    let admin = postgres_admin_url();
    let started = std::time::Instant::now();
    while psql(&admin, &session).unwrap() != "1" {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the marker session never started"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    project
        .xtask_with(&["db-schema"], &[("TMPDIR", tmpdir)])
        .ok();
    assert_eq!(
        psql(&admin, &exists).unwrap(),
        "1",
        "a live run's scratch was dropped"
    );
    // Once its owner is gone, the next run drops it.
    marker.kill().unwrap();
    marker.wait().unwrap();
    while psql(&admin, &session).unwrap() != "0" {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the marker session never ended"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    project
        .xtask_with(&["db-schema"], &[("TMPDIR", tmpdir)])
        .ok();
    let left = psql(&admin, &exists).unwrap();
    psql(&admin, &format!("DROP DATABASE IF EXISTS {name}")).unwrap();
    assert_eq!(left, "0", "a dead run's scratch was not swept");
}

#[test]
fn a_killed_command_takes_its_pg_dump_with_it() {
    use std::os::unix::fs::PermissionsExt;
    let Some(pg) = PgDatabase::create() else {
        return;
    };
    let project = Project::with_url(&pg.url);
    project.xtask(&["db-init"]).ok();
    // A pg_dump that answers --version, then takes its time like one on a big database.
    let tools = tempfile::tempdir().unwrap();
    let pid_file = tools.path().join("pg_dump.pid");
    let fake = tools.path().join("pg_dump");
    std::fs::write(
        &fake,
        format!(
            "#!/bin/sh\ncase \"$1\" in --version) echo 'pg_dump (PostgreSQL) 15'; exit 0;; esac\n\
             echo $$ > '{}'\nexec sleep 60\n",
            pid_file.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = std::env::join_paths(std::iter::once(tools.path().to_path_buf()).chain(
        std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()),
    ))
    .unwrap();
    let mut command = project.command("xtask");
    command
        .args(["db-backup"])
        .env("PATH", path)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let mut xtask = command.spawn().unwrap();
    let started = tests::poll_until(Duration::from_secs(20), || pid_file.exists());
    assert!(started, "pg_dump never started");
    std::thread::sleep(Duration::from_millis(100));
    let pid: u32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    xtask.kill().unwrap();
    xtask.wait().unwrap();
    // Gone, or a zombie waiting for its new parent to reap it: not running on.
    let gone = tests::poll_until(Duration::from_secs(5), || {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map_or(true, |stat| stat.split_whitespace().nth(2) == Some("Z"))
    });
    if !gone {
        let _ = std::process::Command::new("kill")
            .args(["-9", &pid.to_string()])
            .status();
    }
    assert!(gone, "pg_dump ({pid}) ran on after its command was killed");
}
