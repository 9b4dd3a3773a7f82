//! Careless input that needs more than one row of the catalogue (`catalogue.rs`): every
//! command on a malformed set, an overlong name, blame across sources, PostgreSQL
//! failures and a forged backup. Each case runs the real binaries with
//! `RUST_BACKTRACE=1`, so a panic would show.

use std::process::Command;

use tests::{PgDatabase, Project, Run, sha256};

/// Runs the server with `env`: every case here must stop it before it listens.
fn server_refuses(project: &Project, env: &[(&str, &str)]) -> Run {
    project
        .server_until_exit(env)
        .unwrap_or_else(|| panic!("the server started with {env:?}; it should have refused"))
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
        (&[("V2__empty.sql", "\n")], "V2__empty.sql: is empty"),
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
fn pooler_settings_that_cannot_work_are_named_without_their_secrets() {
    let project = Project::sqlite();
    type Case<'a> = (&'a [(&'a str, &'a str)], &'a [&'a str]);
    let cases: [Case; 4] = [
        (
            &[("DATABASE_POOLER", "transaction")],
            &["databases.main.pooler", "DATABASE_POOLER", "SQLite"],
        ),
        (
            &[("DATABASE_POOLER", "statement")],
            &["databases.main.pooler", "DATABASE_POOLER", "statement"],
        ),
        (
            &[
                ("DATABASE_URL", "postgres://app:hunter2@127.0.0.1:6432/app"),
                ("DATABASE_POOLER", "transaction"),
            ],
            &[
                "databases.main.pooler",
                "migrate_url",
                "DATABASE_MIGRATE_URL",
            ],
        ),
        (
            &[
                ("DATABASE_URL", "postgres://app:hunter2@127.0.0.1:6432/app"),
                ("DATABASE_MIGRATE_URL", "mysql://app:hunter2@127.0.0.1/app"),
            ],
            &[
                "databases.main.migrate_url",
                "DATABASE_MIGRATE_URL",
                "mysql:",
            ],
        ),
    ];
    for (env, expected) in cases {
        let run = xtask(&project, &["db-status"], env);
        assert_refused(&run, 1, expected);
        assert!(!run.stderr.contains("hunter2"), "{}", run.stderr);
    }
}

#[test]
fn an_unusable_migrate_url_stops_the_server_naming_the_setting() {
    let Some(pg) = PgDatabase::create() else {
        return;
    };
    let project = Project::with_url(&pg.url);
    let closed = format!(
        "postgres://postgres:hunter2@127.0.0.1:{}/{}",
        tests::free_port(),
        pg.name()
    );
    let run = server_refuses(
        &project,
        &[
            ("DATABASE_POOLER", "transaction"),
            ("DATABASE_MIGRATE_URL", &closed),
        ],
    );
    assert_refused(
        &run,
        1,
        &["databases.main.migrate_url", "DATABASE_MIGRATE_URL"],
    );
    assert!(
        !run.stderr.contains("hunter2") && !run.stdout.contains("hunter2"),
        "{}",
        run.stderr
    );
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
    let real = tests::newest_backup(&backups, ".db");
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

#[test]
fn a_database_another_process_holds_exclusively_is_named_as_locked() {
    let project = Project::sqlite();
    project.xtask(&["db-init"]).ok();
    let holder = tests::SnapshotHolder::exclusive(&project.db_path());
    let run = xtask(
        &project,
        &["db-status"],
        &[("DATABASE_ACQUIRE_TIMEOUT_MS", "300")],
    );
    holder.close();
    assert_refused(&run, 1, &["app.db", "locked by another process"]);
    assert!(!run.stderr.contains("pool timed out"), "{}", run.stderr);
}

/// `caf\xe9`: `café` in Latin-1, which is not UTF-8.
fn latin1() -> std::ffi::OsString {
    use std::os::unix::ffi::OsStringExt as _;
    std::ffi::OsString::from_vec(b"caf\xe9".to_vec())
}

#[test]
fn variables_and_directories_that_are_not_utf8_panic_nothing() {
    use std::os::unix::ffi::OsStrExt as _;
    let project = Project::sqlite();
    project.xtask(&["db-init"]).ok();
    // An unrelated variable and a `PWD` that are not UTF-8: ignored.
    let mut command = project.command("xtask");
    command
        .env("RUST_BACKTRACE", "1")
        .env("UNRELATED_VAR", latin1())
        .env("PWD", latin1())
        .arg("db-status");
    let run = Run::from(command.output().unwrap());
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    // A working directory whose name is not UTF-8, below the project, without `PWD`.
    let odd = project.path().join(std::ffi::OsStr::from_bytes(b"d\xe9"));
    std::fs::create_dir(&odd).unwrap();
    let mut command = project.command("xtask");
    command
        .current_dir(&odd)
        .env_remove("PWD")
        .env("RUST_BACKTRACE", "1")
        .arg("db-status");
    let run = Run::from(command.output().unwrap());
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    // The server and the notes example start and serve.
    for binary in ["server", "notes"] {
        let mut command = project.command(binary);
        command.env("UNRELATED_VAR", latin1()).env("PWD", latin1());
        let server = tests::Server::start_with(command, &[]);
        assert_eq!(server.get("/health").status, 200);
        let output = server.output();
        assert!(!output.contains("panicked"), "{output}");
        if binary == "notes" {
            // Its built-in default is not an environment variable.
            assert!(
                output.contains("(the default of this program)")
                    && !output.contains("DATABASE_URL environment variable"),
                "{output}"
            );
        }
    }
}

#[test]
fn a_database_this_user_cannot_write_is_named_with_its_owner() {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    if !tests::as_root_or_skip("run commands as another user") {
        return;
    }
    let project = Project::sqlite();
    project.xtask(&["db-init"]).ok();
    let db = project.db_path();
    std::fs::set_permissions(project.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).unwrap();
    let before = sha256(&db);
    // The file is root's: `nobody` may read it, not write it (nor its directory).
    let as_nobody = |args: &[&str]| {
        let mut command = project.command("xtask");
        command
            .uid(tests::NOBODY)
            .gid(tests::NOBODY)
            .env("RUST_BACKTRACE", "1")
            .args(args);
        Run::from(command.output().unwrap())
    };
    for args in [&["db-status"][..], &["db-upgrade"]] {
        let run = as_nobody(args);
        assert_refused(&run, 1, &["app.db", "not writable", "root (uid 0)", "-wal"]);
    }
    // A file that is writable in a directory that is not.
    std::os::unix::fs::chown(&db, Some(tests::NOBODY), Some(tests::NOBODY)).unwrap();
    let run = as_nobody(&["db-status"]);
    assert_refused(&run, 1, &["directory is not writable", "root (uid 0)"]);
    assert_eq!(sha256(&db), before);
}

#[test]
fn a_database_variable_that_sets_nothing_is_named_with_the_closest_one() {
    let project = Project::sqlite();
    project.xtask(&["db-init"]).ok();
    std::fs::write(project.path().join(".env"), "DATABASE_BACKUP_KEPP=3\n").unwrap();
    let run = xtask(
        &project,
        &["db-status"],
        &[("DATABASE_MAX_CONECTIONS", "5")],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    for (var, origin, closest) in [
        (
            "DATABASE_MAX_CONECTIONS",
            "(environment variable)",
            "DATABASE_MAX_CONNECTIONS",
        ),
        ("DATABASE_BACKUP_KEPP", ".env)", "DATABASE_BACKUP_KEEP"),
    ] {
        let line = run
            .stderr
            .lines()
            .find(|l| l.starts_with(&format!("warning: {var}")))
            .unwrap_or_else(|| panic!("no warning for {var}: {}", run.stderr));
        assert!(
            line.contains(origin) && line.contains(&format!("did you mean {closest}?")),
            "{line}"
        );
    }
    let mut command = project.command("server");
    command.env("DATABASE_MAX_CONECTIONS", "5");
    let server = tests::Server::start_with(command, &[]);
    assert!(
        server
            .output()
            .contains("warning: DATABASE_MAX_CONECTIONS (environment variable)"),
        "{}",
        server.output()
    );
}

#[test]
fn misspelt_keys_and_profiles_are_named_with_the_closest_setting() {
    let project = Project::sqlite();
    project.xtask(&["db-init"]).ok();
    let toml = project.path().join("Rocket.toml");
    let mut text = std::fs::read_to_string(&toml).unwrap();
    text.push_str("\n[relase.databases.main]\nurl = \"sqlite://other.db\"\n\n[default.databses.main]\nurl = \"sqlite://other.db\"\n");
    std::fs::write(&toml, text).unwrap();
    let run = xtask(&project, &["db-status"], &[("ROCKET_PROT", "9000")]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    for expected in [
        "profile [relase]",
        "did you mean [release]?",
        "`databses` (from",
        "did you mean `databases`?",
        "`prot` (from ROCKET_PROT environment variable)",
        "did you mean `port`?",
    ] {
        assert!(
            run.stderr
                .lines()
                .any(|l| l.starts_with("warning:") && l.contains(expected)),
            "`{expected}` missing from:\n{}",
            run.stderr
        );
    }
    assert!(!run.stderr.contains("other.db"), "{}", run.stderr);
}
