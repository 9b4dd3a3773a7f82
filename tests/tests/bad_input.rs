//! Careless input gets one `error:` line naming what was wrong and where it came from, a
//! documented non-zero exit, no panic, and nothing changed. Each case runs the real
//! binaries with `RUST_BACKTRACE=1`, so a panic would show.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tests::{PgDatabase, Project, Run, sha256};

/// Runs the server with `env` and waits (bounded) for it to exit: every case here must
/// stop it before it listens.
fn server_refuses(project: &Project, env: &[(&str, &str)]) -> Run {
    let log = tempfile::NamedTempFile::new().unwrap();
    let mut child = project
        .command("server")
        .env("RUST_BACKTRACE", "1")
        .env("ROCKET_PORT", tests::free_port().to_string())
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(log.reopen().unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            child.kill().ok();
            child.wait().ok();
            panic!("the server started with {env:?}; it should have refused");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    Run {
        code: status.code().unwrap_or(-1),
        stdout: String::new(),
        stderr: std::fs::read_to_string(log.path()).unwrap(),
    }
}

fn xtask(project: &Project, args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut command: Command = project.command("xtask");
    command
        .env("RUST_BACKTRACE", "1")
        .args(args)
        .envs(env.iter().copied());
    Run::from(command.output().unwrap())
}

/// One error line that contains every word of `expected`, and exit `code`.
fn assert_refused(run: &Run, code: i32, expected: &[&str]) {
    assert_eq!(run.code, code, "stderr:\n{}", run.stderr);
    let line = run.error_line();
    for word in expected {
        assert!(line.contains(word), "`{word}` missing from: {line}");
    }
    assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
}

#[test]
fn server_settings_that_used_to_panic_are_one_line_errors() {
    let project = Project::sqlite();
    project.xtask(&["db-init"]).ok();
    let db = project.db_path();
    let before = sha256(&db);
    for (env, expected) in [
        (
            ("ROCKET_WORKERS", "0"),
            &["workers", "ROCKET_WORKERS", "at least 1"][..],
        ),
        (("ROCKET_WORKERS", "abc"), &["workers", "ROCKET_WORKERS"]),
        (
            ("DATABASE_BUSY_TIMEOUT_MS", "2147483648"),
            &["busy_timeout_ms", "DATABASE_BUSY_TIMEOUT_MS", "more than"],
        ),
        (
            ("DATABASE_IDLE_TIMEOUT_SECS", "18446744073709551615"),
            &["idle_timeout_secs", "DATABASE_IDLE_TIMEOUT_SECS"],
        ),
        (
            ("DATABASE_MAX_CONNECTIONS", "4294967295"),
            &["max_connections", "more than 10000"],
        ),
        (("DATABASE_BACKUP_DIR", " "), &["backup_dir", "empty"]),
    ] {
        assert_refused(&server_refuses(&project, &[env]), 1, expected);
        assert_refused(&xtask(&project, &["db-status"], &[env]), 1, expected);
    }
    assert_eq!(sha256(&db), before, "nothing changed");
}

#[test]
fn a_rocket_toml_that_does_not_parse_is_named_with_its_line_on_one_line() {
    let project = Project::sqlite();
    let toml = project.path().join("Rocket.toml");
    std::fs::write(
        &toml,
        "[default.databases.main]\nurl = \"postgres://app:hunter 2@db/app\n",
    )
    .unwrap();
    for run in [
        server_refuses(&project, &[]),
        xtask(&project, &["db-status"], &[]),
    ] {
        assert_refused(&run, 1, &["Rocket.toml", "line 2"]);
        assert!(!run.stderr.contains("hunter"), "{}", run.stderr);
    }
}

#[test]
fn command_line_mistakes_exit_64_on_one_line_and_change_nothing() {
    let project = Project::sqlite();
    project.xtask(&["db-init"]).ok();
    let db = project.db_path();
    let before = sha256(&db);
    for (args, expected) in [
        (&["db-status", "--bogus"][..], &["--bogus"][..]),
        (&["db-backup", "--keep", "0"], &["--keep", "0"]),
        (&["db-backup", "--keep", "abc"], &["--keep"]),
        (&["db-restore"], &["<FILE>"]),
        (&["db-frobnicate"], &["db-frobnicate"]),
    ] {
        assert_refused(&xtask(&project, args, &[]), 64, expected);
    }
    assert_eq!(sha256(&db), before, "nothing changed");
}

#[test]
fn downgrading_to_a_version_above_the_current_one_is_a_mistake() {
    let project = Project::sqlite();
    project.xtask(&["db-init"]).ok();
    let run = xtask(&project, &["db-downgrade", "--to", "7", "-y"], &[]);
    assert_refused(&run, 1, &["--to 7", "above", "version 1"]);
}

#[test]
fn an_overlong_migration_name_creates_nothing() {
    let project = Project::sqlite();
    let name = "a".repeat(245);
    let run = xtask(&project, &["db-migrate", &name], &[]);
    assert_refused(&run, 1, &["245 characters", "at most 100"]);
    let files: Vec<_> = std::fs::read_dir(project.path().join("migrations"))
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| n.contains("aaaa"))
        .collect();
    assert!(files.is_empty(), "{files:?}");
}

#[test]
fn a_malformed_migration_set_stops_every_command_naming_the_file() {
    let cases: &[(&[(&str, &str)], &str)] = &[
        (
            &[("V2__a.sql", "SELECT 1;"), ("V2__b.sql", "SELECT 2;")],
            "V2__a.sql, V2__b.sql",
        ),
        (&[("V3__gap.sql", "SELECT 1;")], "V2 is missing"),
        (&[("V2__x.SQL", "SELECT 1;")], "V2__x.SQL"),
        (&[("v2__x.sql", "SELECT 1;")], "v2__x.sql"),
        (&[("V2_x.sql", "SELECT 1;")], "V2_x.sql"),
        (&[("V2__CamelCase.sql", "SELECT 1;")], "V2__CamelCase.sql"),
        (
            &[("V2__empty.sql", "-- nothing yet\n")],
            "V2__empty.sql: is empty",
        ),
        (
            &[("V2__orphan.down.sql", "SELECT 1;")],
            "V2__orphan.down.sql",
        ),
    ];
    for (files, expected) in cases {
        let project = Project::sqlite();
        project.xtask(&["db-init"]).ok();
        let db = project.db_path();
        let before = sha256(&db);
        for (name, sql) in *files {
            std::fs::write(project.path().join("migrations").join(name), sql).unwrap();
        }
        for args in [
            &["db-status"][..],
            &["db-upgrade"],
            &["db-downgrade", "-y"],
            &["db-backup"],
        ] {
            let run = xtask(&project, args, &[]);
            assert_refused(&run, 1, &[expected, "not valid"]);
        }
        let check = xtask(&project, &["db-check"], &[]);
        assert_eq!(check.code, 1, "{}", check.stderr);
        assert!(check.stdout.contains(expected), "{}", check.stdout);
        assert_eq!(sha256(&db), before, "{files:?}: nothing changed");
    }
}

#[test]
fn a_migration_that_commits_is_refused_before_anything_runs() {
    let project = Project::sqlite();
    project.xtask(&["db-init"]).ok();
    let before = sha256(&project.db_path());
    project.write_migration(
        "V2__sneaky",
        "CREATE TABLE a (x INTEGER);\nCOMMIT;\nCREATE TABLE b (y INTEGER);\n",
        Some("DROP TABLE b;\nDROP TABLE a;\n"),
    );
    let run = xtask(&project, &["db-upgrade"], &[]);
    assert_refused(&run, 1, &["V2__sneaky.sql: line 2", "`COMMIT`"]);
    assert_eq!(sha256(&project.db_path()), before, "nothing ran");
}

#[test]
fn postgres_migration_errors_name_the_migration_the_line_and_the_remedy() {
    let Some(pg) = PgDatabase::create() else {
        return;
    };
    let project = Project::with_url(&pg.url);
    project.write_migration(
        "V2__notes",
        "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT NOT NULL);",
        Some("DROP TABLE notes;"),
    );
    project.xtask(&["db-init"]).ok();

    project.write_migration(
        "V3__typo",
        "ALTER TABLE notes ADD COLUMN x INTEGER;\n\nSELECT nope FROM notes;\n",
        Some("ALTER TABLE notes DROP COLUMN x;"),
    );
    let run = xtask(&project, &["db-upgrade"], &[]);
    assert_refused(
        &run,
        1,
        &["V3__typo", "column \"nope\" does not exist", "(at line 3)"],
    );
    assert!(!run.stderr.contains("at line 1"), "{}", run.stderr);
    std::fs::remove_file(project.path().join("migrations/V3__typo.sql")).unwrap();
    std::fs::remove_file(project.path().join("migrations/V3__typo.down.sql")).unwrap();

    // A lock held by another session: named once, with the setting to raise.
    project.write_migration(
        "V3__add_column",
        "ALTER TABLE notes ADD COLUMN y INTEGER;",
        Some("ALTER TABLE notes DROP COLUMN y;"),
    );
    let mut holder = tests::hold_pg_lock(&pg.url, "notes", 3);
    let run = xtask(
        &project,
        &["db-upgrade"],
        &[("DATABASE_LOCK_TIMEOUT_MS", "300")],
    );
    holder.wait().unwrap();
    assert_refused(&run, 1, &["V3__add_column", "lock_timeout_ms"]);
    assert_eq!(
        run.stderr.matches("lock timeout").count(),
        1,
        "{}",
        run.stderr
    );
    assert_eq!(
        pg.execute("SELECT max(version) FROM refinery_schema_history"),
        "2"
    );
}

#[test]
fn each_setting_is_blamed_on_the_variable_that_set_it() {
    let project = Project::sqlite();
    let run = xtask(
        &project,
        &["db-status"],
        &[(
            "ROCKET_DATABASES",
            "{main={url=\"mysql://u:hunter2@x/db\"}}",
        )],
    );
    assert_refused(
        &run,
        1,
        &["databases.main.url", "ROCKET_DATABASES", "mysql:"],
    );
    assert!(!run.stderr.contains("DATABASE_URL") && !run.stderr.contains("hunter2"));
    let run = xtask(
        &project,
        &["db-status"],
        &[
            ("ROCKET_DATABASES", "{main={url=\"sqlite://ok.db\"}}"),
            ("DATABASE_URL", "mysql://x/db"),
        ],
    );
    assert_refused(&run, 1, &["DATABASE_URL environment variable"]);
}

#[test]
fn an_unreachable_postgres_server_is_named_with_the_reason() {
    let project = Project::sqlite();
    let url = "postgres://app:hunter2@127.0.0.1:1/app";
    let run = xtask(&project, &["db-status"], &[("DATABASE_URL", url)]);
    assert_refused(&run, 1, &["127.0.0.1:1", "refused"]);
    assert!(!run.stderr.contains("hunter2"), "{}", run.stderr);
    let run = server_refuses(
        &project,
        &[
            ("DATABASE_URL", url),
            ("DATABASE_CONNECT_TIMEOUT_MS", "2000"),
        ],
    );
    assert_refused(&run, 1, &["127.0.0.1:1", "refused", "DATABASE_URL"]);
}

#[test]
fn a_foreign_file_with_a_hand_made_manifest_is_not_restored() {
    let project = Project::sqlite();
    project.xtask(&["db-init"]).ok();
    project.xtask(&["db-backup"]).ok();
    let db = project.db_path();
    let before = sha256(&db);
    // A database from elsewhere (no history at all), with a manifest copied and fixed up.
    let backups = project.path().join("backups");
    let real = std::fs::read_dir(&backups)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|e| e == "db"))
        .unwrap();
    let foreign = backups.join("foreign.db");
    std::fs::copy(&real, &foreign).unwrap();
    tests::sqlite(
        &foreign,
        "DROP TABLE refinery_schema_history; CREATE TABLE other (x INTEGER);",
    );
    let mut manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(format!("{}.json", real.display())).unwrap())
            .unwrap();
    manifest["file"] = "foreign.db".into();
    manifest["sha256"] = sha256(&foreign).into();
    manifest["size"] = std::fs::metadata(&foreign).unwrap().len().into();
    std::fs::write(
        backups.join("foreign.db.json"),
        serde_json::to_string(&manifest).unwrap(),
    )
    .unwrap();
    let run = xtask(
        &project,
        &["db-restore", foreign.to_str().unwrap(), "-y"],
        &[],
    );
    assert_refused(
        &run,
        1,
        &["schema version 1", "version 0", "not a usable backup"],
    );
    assert_eq!(sha256(&db), before);
}
