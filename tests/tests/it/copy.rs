//! `db-copy`: SQLite to PostgreSQL and back on the real server, verified by checksums;
//! data that does not fit, a target with rows, a checksum mismatch and a kill all leave
//! the target as it was.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use tests::{PgDatabase, Project, Run, sha256, sqlite};

/// Every common type, NULLs, a foreign key, a self-reference and a table without a key.
const SCHEMA: &str = "
CREATE TABLE authors (
    id BIGINT PRIMARY KEY,
    name VARCHAR(80) NOT NULL,
    active BOOLEAN NOT NULL,
    joined TIMESTAMP,
    seen TIMESTAMPTZ,
    born DATE,
    wakes TIME,
    score DOUBLE PRECISION,
    balance NUMERIC(12, 2),
    avatar BYTEA,
    meta JSON,
    small SMALLINT,
    mid INTEGER
);
CREATE TABLE posts (
    id BIGINT PRIMARY KEY,
    author_id BIGINT NOT NULL REFERENCES authors (id),
    reply_to BIGINT REFERENCES posts (id),
    title TEXT NOT NULL,
    body TEXT
);
CREATE TABLE tags (name TEXT NOT NULL, post_id BIGINT REFERENCES posts (id));
CREATE TABLE events (id BIGINT PRIMARY KEY, kind INTEGER NOT NULL, note TEXT);
CREATE TABLE sqliteusers (id BIGINT PRIMARY KEY, name TEXT);
";

const DROP: &str = "DROP TABLE sqliteusers; DROP TABLE tags; DROP TABLE posts; DROP TABLE authors; DROP TABLE events;";

/// Rows in the narrow `events` table.
const EVENTS: u64 = 300_000;

const FILL: &str = r#"
INSERT INTO authors VALUES
  (1, 'Zoë “quotes” ✓ 漢字', 1, '2024-05-01T12:00:00Z', '2024-05-01 14:00:00+02:00', '1990-02-03', '07:30:00', 1.5, '12.30', X'00FF10', '{"b": 1, "a": [1, 2]}', -32768, 2147483647),
  (2, 'Bob', 0, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
  (3, 'tab	and
newline \ backslash', 1, '2024-05-01 12:00:00.25', '2024-05-01T10:00:00Z', '2000-02-29', '23:59:59.5', -0.1, 7, X'', 'null', 32767, -2147483648);
INSERT INTO posts VALUES (10, 1, NULL, 'hello', 'world'), (11, 3, 10, 'reply', NULL), (9, 2, 11, 'earlier id, later reply', '');
INSERT INTO tags VALUES ('a', 10), ('b', NULL), ('a', 10);
INSERT INTO sqliteusers VALUES (1, 'not an internal table');
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 300000)
INSERT INTO events SELECT i, i % 7, 'event ' || i FROM n;
"#;

/// A project with the schema and its rows; `events` rows in the narrow table.
fn project_with(events: u64) -> Project {
    let project = Project::sqlite();
    project.write_migration("V2__everything", SCHEMA, Some(DROP));
    project.xtask(&["db-init"]).ok();
    sqlite(
        &project.db_path(),
        &FILL.replace("300000", &events.to_string()),
    );
    project
}

/// Enough rows to be several seconds of work, to copy both ways and to kill midway.
fn project_with_data() -> Project {
    project_with(EVENTS)
}

/// A few rows: for what does not depend on size.
fn small_project() -> Project {
    project_with(1_000)
}

/// A small project and a PostgreSQL database migrated by it, still empty: a target a
/// copy takes without `--force`.
fn migrated_target() -> Option<(PgDatabase, Project)> {
    let pg = PgDatabase::create()?;
    let project = small_project();
    project
        .xtask_with(&["db-init"], &[("DATABASE_URL", &pg.url)])
        .ok();
    Some((pg, project))
}

/// The verification table a successful copy prints: table → (rows, checksum).
fn checks(run: &Run) -> BTreeMap<String, (u64, String)> {
    run.stdout
        .lines()
        .skip(1)
        .filter_map(|line| {
            let cols: Vec<&str> = line.split_whitespace().collect();
            match cols.as_slice() {
                [name, source, target, sum, "ok"] => {
                    assert_eq!(source, target, "{line}");
                    Some((name.to_string(), (source.parse().ok()?, sum.to_string())))
                }
                _ => None,
            }
        })
        .collect()
}

#[test]
fn every_common_type_copies_to_postgresql_and_back_with_equal_checksums() {
    let Some(pg) = PgDatabase::create() else {
        return;
    };
    let project = project_with_data();
    let db = project.db_path();
    let before = sha256(&db);

    let started = Instant::now();
    let there = project.xtask(&["db-copy", "--to", &pg.url]);
    there.ok();
    let elapsed = started.elapsed();
    assert!(
        there.stdout.contains("every table verified"),
        "{}",
        there.stdout
    );
    let sums = checks(&there);
    assert_eq!(sums["events"].0, EVENTS);
    assert_eq!(sums["authors"].0, 3);
    assert_eq!(sums["refinery_schema_history"].0, 2);
    assert_eq!(
        sums["sqliteusers"].0, 1,
        "a name that starts with `sqlite` is a table like any other"
    );
    assert_eq!(sha256(&db), before, "the source is never written");
    eprintln!("copied {EVENTS} events to PostgreSQL in {elapsed:?} (debug build)");

    // What a user would check on PostgreSQL: typed values, not just counts.
    assert_eq!(
        pg.execute("SELECT count(*) FROM events"),
        EVENTS.to_string()
    );
    assert_eq!(
        pg.execute(
            "SELECT name, active, joined, seen AT TIME ZONE 'UTC', born, wakes, score, balance, encode(avatar, 'hex'), meta::text, small, mid \
             FROM authors WHERE id = 1"
        ),
        "Zoë “quotes” ✓ 漢字|t|2024-05-01 12:00:00|2024-05-01 12:00:00|1990-02-03|07:30:00|1.5|12.30|00ff10|{\"b\": 1, \"a\": [1, 2]}|-32768|2147483647"
    );
    assert_eq!(
        pg.execute("SELECT name = E'tab\\tand\\nnewline \\\\ backslash', active, balance FROM authors WHERE id = 3"),
        "t|t|7.00"
    );
    assert_eq!(
        pg.execute(
            "SELECT count(*) FROM authors WHERE id = 2 AND joined IS NULL AND avatar IS NULL"
        ),
        "1"
    );
    assert_eq!(
        pg.execute("SELECT count(*) FROM tags WHERE post_id IS NULL"),
        "1"
    );
    // The same history, so the server sees an up-to-date database.
    let status = project.xtask_with(&["db-status"], &[("DATABASE_URL", &pg.url)]);
    status.ok();

    // And back into a new SQLite file: the same checksums, table by table.
    let back = project.path().join("back.db");
    let home = project.xtask_with(
        &["db-copy", "--to", "sqlite://back.db"],
        &[("DATABASE_URL", &pg.url)],
    );
    home.ok();
    assert_eq!(checks(&home), sums, "checksums agree in both directions");
    assert_eq!(
        sqlite(
            &back,
            "SELECT name, active, joined, seen, born, CAST(score AS TEXT), hex(avatar), small FROM authors WHERE id = 1"
        ),
        [
            "Zoë “quotes” ✓ 漢字|1|2024-05-01 12:00:00|2024-05-01 12:00:00+00:00|1990-02-03|1.5|00FF10|-32768"
        ]
    );
    assert_eq!(
        sqlite(&back, "SELECT count(*), sum(kind) FROM events"),
        sqlite(&db, "SELECT count(*), sum(kind) FROM events")
    );
    assert_eq!(
        sqlite(&back, "PRAGMA foreign_key_check"),
        Vec::<String>::new()
    );
}

#[test]
fn sequences_continue_after_the_copied_ids_and_target_triggers_do_not_fire() {
    // The team's PostgreSQL schema numbers posts itself: the target is migrated first,
    // then given a sequence, and is still empty, so the copy needs no --force.
    let Some((pg, project)) = migrated_target() else {
        return;
    };
    pg.execute(
        "CREATE SEQUENCE posts_id_seq OWNED BY posts.id; \
         ALTER TABLE posts ALTER COLUMN id SET DEFAULT nextval('posts_id_seq')",
    );
    // An audit trigger: the source already holds what it would write.
    pg.execute(
        "CREATE FUNCTION audit() RETURNS trigger AS $$ BEGIN INSERT INTO tags VALUES ('audit', NEW.id); RETURN NEW; END $$ LANGUAGE plpgsql; \
         CREATE TRIGGER audit AFTER INSERT ON posts FOR EACH ROW EXECUTE FUNCTION audit()",
    );
    project.xtask(&["db-copy", "--to", &pg.url]).ok();
    assert_eq!(
        pg.execute("SELECT count(*) FROM tags"),
        "3",
        "the trigger did not fire"
    );
    assert_eq!(
        pg.execute("SELECT tgenabled FROM pg_trigger WHERE tgname = 'audit'"),
        "O",
        "and is enabled again"
    );
    assert_eq!(
        pg.execute(
            "WITH new AS (INSERT INTO posts (author_id, title) VALUES (1, 'new') RETURNING id) SELECT id FROM new"
        ),
        "12"
    );
    assert_eq!(
        pg.execute("SELECT count(*) FROM tags WHERE name = 'audit'"),
        "1"
    );
}

#[test]
fn values_that_do_not_fit_are_named_and_nothing_is_copied() {
    let Some(pg) = PgDatabase::create() else {
        return;
    };
    let project = small_project();
    // SQLite takes all of these; PostgreSQL takes none.
    sqlite(
        &project.db_path(),
        "INSERT INTO events VALUES (300001, 'seven', 'text in an integer column'); \
         INSERT INTO events VALUES (300002, 1, CAST(X'FF00' AS TEXT)); \
         INSERT INTO authors (id, name, active) VALUES (4, 'Eve', 'yes');",
    );
    let run = project.xtask(&["db-copy", "--to", &pg.url]);
    let error = run.code(1).error_line();
    assert!(
        error.contains("table authors, row id=4, column active: text \"yes\" in a boolean column"),
        "{error}"
    );
    assert!(
        error.contains("rolled back, the target is unchanged"),
        "{error}"
    );
    assert!(
        run.stderr
            .contains("table events, row id=300001, column kind: text \"seven\""),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr
            .contains("table events, row id=300002, column note: text that is not valid UTF-8"),
        "{}",
        run.stderr
    );
    assert_eq!(
        pg.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"),
        "0",
        "not even the schema was left behind"
    );

    // The way back: a PostgreSQL NaN has no place in SQLite, and the new file is removed.
    let source = PgDatabase::create().expect("a second database");
    project
        .xtask_with(&["db-init"], &[("DATABASE_URL", &source.url)])
        .ok();
    source.execute("INSERT INTO events VALUES (1, 1, 'fine'), (2, 2, 'fine')");
    source.execute("INSERT INTO authors (id, name, active, score) VALUES (1, 'nan', true, 'NaN')");
    let run = project.xtask_with(
        &["db-copy", "--to", "sqlite://fresh.db"],
        &[("DATABASE_URL", &source.url)],
    );
    let error = run.code(1).error_line();
    assert!(
        error.contains("table authors, row id=1, column score: NaN"),
        "{error}"
    );
    assert!(
        !project.path().join("fresh.db").exists(),
        "the file created for the copy is removed"
    );
}

#[test]
fn a_target_with_rows_is_refused_and_force_replaces_it_after_a_safety_backup() {
    let Some(pg) = PgDatabase::create() else {
        return;
    };
    let project = small_project();
    project.xtask(&["db-copy", "--to", &pg.url]).ok();
    sqlite(
        &project.db_path(),
        "DELETE FROM tags; INSERT INTO tags VALUES ('only', NULL)",
    );

    let error = project
        .xtask(&["db-copy", "--to", &pg.url])
        .code(1)
        .error_line()
        .to_string();
    assert!(error.contains("table authors has rows"), "{error}");
    assert!(error.contains("--force"), "{error}");
    let refused = project.xtask(&["db-copy", "--to", &pg.url, "--force"]);
    assert!(
        refused
            .code(1)
            .error_line()
            .contains("stdin is not a terminal")
    );
    assert_eq!(pg.execute("SELECT count(*) FROM tags"), "3", "unchanged");

    let run = project.xtask(&["db-copy", "--to", &pg.url, "--force", "--yes"]);
    run.ok();
    assert!(
        run.stderr.contains("safety backup of the target"),
        "{}",
        run.stderr
    );
    assert_eq!(pg.execute("SELECT name FROM tags"), "only");
    let backups: Vec<_> = std::fs::read_dir(project.path().join("backups"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".dump"))
        .collect();
    assert_eq!(backups.len(), 1, "{backups:?}");
}

#[test]
fn a_checksum_mismatch_rolls_the_copy_back() {
    let Some((pg, project)) = migrated_target() else {
        return;
    };
    // A column changed by hand on the target keeps whole seconds: 12:00:00.25 becomes
    // 12:00:00, which no check before the copy can know.
    pg.execute("ALTER TABLE authors ALTER COLUMN joined TYPE timestamp(0)");
    let run = project.xtask(&["db-copy", "--to", &pg.url]);
    let error = run.code(1).error_line();
    assert!(
        error.contains("verification failed: 1 table(s) differ"),
        "{error}"
    );
    let authors = run
        .stdout
        .lines()
        .find(|l| l.starts_with("authors "))
        .unwrap_or_default();
    assert!(authors.ends_with("MISMATCH"), "{}", run.stdout);
    assert_eq!(
        pg.execute("SELECT count(*) FROM authors"),
        "0",
        "rolled back"
    );
    assert_eq!(
        pg.execute("SELECT count(*) FROM events"),
        "0",
        "rolled back"
    );
}

#[test]
fn a_copy_killed_midway_leaves_the_target_as_it_was() {
    let Some(pg) = PgDatabase::create() else {
        return;
    };
    let project = project_with_data();
    let mut child = project.spawn_xtask(&["db-copy", "--to", &pg.url]);
    // Kill it once the target's transaction has begun writing (the schema is in it).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let copying = pg.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND query LIKE 'COPY%'",
        );
        if copying != "0" || Instant::now() > deadline {
            break;
        }
        if child.try_wait().unwrap().is_some() {
            panic!("the copy finished before it could be killed; make the table bigger");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        Instant::now() <= deadline,
        "no COPY seen on the target within 30 s"
    );
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(
        pg.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"),
        "0",
        "nothing committed"
    );
    // The next copy starts from the clean target.
    project.xtask(&["db-copy", "--to", &pg.url]).ok();
}

#[test]
fn a_copy_into_a_new_sqlite_file_killed_midway_leaves_no_file() {
    let Some(pg) = PgDatabase::create() else {
        return;
    };
    let project = project_with_data();
    project.xtask(&["db-copy", "--to", &pg.url]).ok();
    let copy_back = |project: &Project| {
        let mut command = project.command("xtask");
        command
            .args(["db-copy", "--to", "sqlite://back/back.db"])
            .env("DATABASE_URL", &pg.url)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        command
    };
    let mut child = copy_back(&project).spawn().unwrap();
    // Kill it once the staged file beside back.db has grown (rows are going in).
    let dir = project.path().join("back");
    let deadline = Instant::now() + Duration::from_secs(30);
    let staged_size = || {
        std::fs::read_dir(&dir)
            .map(|entries| {
                entries
                    .filter_map(|e| e.ok())
                    .filter(|e| e.file_name().to_string_lossy().starts_with(".back.db."))
                    .map(|e| e.metadata().map_or(0, |m| m.len()))
                    .sum::<u64>()
            })
            .unwrap_or(0)
    };
    while staged_size() < 1 << 20 && Instant::now() < deadline {
        assert!(
            child.try_wait().unwrap().is_none(),
            "finished before it could be killed"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(Instant::now() < deadline, "no staged file within 30 s");
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(!dir.join("back.db").exists(), "nothing at the path");
    let killed_left: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();

    // The next copy sweeps the killed one's file and links a verified database in.
    let run = tests::Run::from(
        copy_back(&project)
            .stdout(std::process::Stdio::piped())
            .output()
            .unwrap(),
    );
    run.ok();
    assert!(
        !killed_left
            .iter()
            .any(|n| n.ends_with("-wal") || n.ends_with("-shm")),
        "the staged file had a log beside it: {killed_left:?}"
    );
    let left: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(left, ["back.db"], "no debris");
    assert_eq!(
        sqlite(&dir.join("back.db"), "SELECT count(*) FROM events"),
        [EVENTS.to_string()]
    );
}

#[test]
fn the_source_under_another_name_is_refused() {
    let project = small_project();
    let db = project.db_path();
    let before = sha256(&db);
    std::os::unix::fs::symlink(project.path(), project.path().join("linked")).unwrap();
    std::fs::hard_link(&db, project.path().join("hard.db")).unwrap();
    for to in [
        "sqlite://linked/app.db",
        "sqlite://hard.db",
        "sqlite://./app.db",
    ] {
        let run = project.xtask(&["db-copy", "--to", to, "--force", "--yes"]);
        let error = run.code(1).error_line();
        assert!(
            error.contains("the configured database itself"),
            "{to}: {error}"
        );
    }
    assert_eq!(sha256(&db), before);
}

/// Names PostgreSQL folds to lower case, tables that reference each other, JSON that is
/// a bare number, a PostgreSQL-only type: all valid on both engines.
const AWKWARD: &str = "
CREATE TABLE Users (Id BIGINT PRIMARY KEY, userName TEXT);
CREATE TABLE b (id BIGINT PRIMARY KEY);
CREATE TABLE a (id BIGINT PRIMARY KEY, b_id BIGINT REFERENCES b (id));
ALTER TABLE b ADD COLUMN a_id BIGINT REFERENCES a (id);
CREATE TABLE docs (id BIGINT PRIMARY KEY, doc JSON, span INTERVAL);
";

#[test]
fn awkward_schemas_copy_both_ways_and_the_source_file_is_not_touched() {
    let Some(pg) = PgDatabase::create() else {
        return;
    };
    let project = Project::sqlite();
    project.write_migration(
        "V2__awkward",
        AWKWARD,
        Some("DROP TABLE docs; DROP TABLE b; DROP TABLE a; DROP TABLE Users;"),
    );
    project.xtask(&["db-init"]).ok();
    let db = project.db_path();
    sqlite(
        &db,
        "PRAGMA journal_mode = DELETE; PRAGMA foreign_keys = ON; \
         INSERT INTO Users VALUES (1, 'Ann'); \
         INSERT INTO b VALUES (1, NULL); INSERT INTO a VALUES (1, 1); UPDATE b SET a_id = 1; \
         INSERT INTO docs VALUES (1, '5', '1 day'), (2, '{\"a\": [1, 2.5]}', NULL);",
    );
    let before = sha256(&db);
    // Even with nowhere to print, the outcome and the exit code stand.
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap();
    let run = tests::Run::from(
        project
            .command("xtask")
            .args(["db-copy", "--to", &pg.url])
            .stdout(full)
            .output()
            .unwrap(),
    );
    run.code(0);
    assert_eq!(
        sha256(&db),
        before,
        "the source file is byte for byte the same"
    );
    assert_eq!(
        sqlite(&db, "PRAGMA journal_mode"),
        ["delete"],
        "its journal mode too"
    );
    assert_eq!(pg.execute("SELECT username FROM users"), "Ann");
    assert_eq!(pg.execute("SELECT a_id FROM b"), "1");
    assert_eq!(
        pg.execute("SELECT doc::text, span::text FROM docs WHERE id = 1"),
        "5|1 day"
    );

    let home = project.xtask_with(
        &["db-copy", "--to", "sqlite://back.db"],
        &[("DATABASE_URL", &pg.url)],
    );
    home.ok();
    let back = project.path().join("back.db");
    assert_eq!(sqlite(&back, "SELECT userName FROM Users"), ["Ann"]);
    assert_eq!(sqlite(&back, "SELECT a_id FROM b"), ["1"]);
    assert_eq!(
        sqlite(&back, "SELECT span FROM docs WHERE id = 1"),
        ["1 day"]
    );
}

#[test]
fn a_migrated_target_with_an_extra_table_is_not_empty() {
    let Some((pg, project)) = migrated_target() else {
        return;
    };
    pg.execute("CREATE TABLE scratch (x INTEGER)");
    let error = project
        .xtask(&["db-copy", "--to", &pg.url])
        .code(1)
        .error_line()
        .to_string();
    assert!(
        error.contains("has a table the source does not: scratch"),
        "{error}"
    );
    project
        .xtask(&[
            "db-copy",
            "--to",
            &pg.url,
            "--force",
            "--yes",
            "--no-backup",
        ])
        .ok();
    assert_eq!(pg.execute("SELECT to_regclass('scratch') IS NULL"), "t");
    assert_eq!(pg.execute("SELECT count(*) FROM events"), "1000");
}

/// Names of the databases on the test server that match the `LIKE` pattern.
fn databases_like(pattern: &str) -> Vec<String> {
    let names = tests::psql(
        &tests::postgres_admin_url(),
        &format!("SELECT datname FROM pg_database WHERE datname LIKE '{pattern}' ORDER BY 1"),
    )
    .unwrap();
    names.lines().map(str::to_string).collect()
}

#[test]
fn a_copy_into_a_missing_postgres_database_interrupted_or_killed_leaves_no_database() {
    let Some(pg) = PgDatabase::create() else {
        return;
    };
    let project = project_with_data();
    // A database name on the same server that does not exist yet.
    let name = format!("{}_new", pg.name());
    let url = pg.url.replace(pg.name(), &name);
    let mut killed = Vec::new();
    for (round, signal) in ["KILL", "INT", "KILL", "TERM", "KILL"].iter().enumerate() {
        let mut child = project.spawn_xtask(&["db-copy", "--to", &url]);
        let pid = child.id();
        let staging = format!("xtask\\_scratch\\_{pid}\\_%");
        let deadline = Instant::now() + Duration::from_secs(30);
        while databases_like(&staging).is_empty() {
            assert!(
                child.try_wait().unwrap().is_none(),
                "round {round}: finished early"
            );
            assert!(
                Instant::now() < deadline,
                "round {round}: no staging database"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        let delay = tests::random_below(1_500);
        println!("round {round}: SIG{signal} {delay} ms after the staging database appeared");
        std::thread::sleep(Duration::from_millis(delay));
        assert!(
            child.try_wait().unwrap().is_none(),
            "round {round}: finished before SIG{signal}"
        );
        std::process::Command::new("kill")
            .args(["-s", signal, &pid.to_string()])
            .status()
            .unwrap();
        child.wait().unwrap();
        assert_eq!(
            databases_like(&name),
            Vec::<String>::new(),
            "round {round}: no target"
        );
        match *signal {
            "KILL" => killed.push(staging),
            _ => assert_eq!(
                databases_like(&staging),
                Vec::<String>::new(),
                "round {round}"
            ),
        }
    }
    // The next copy drops what the killed ones left and creates the target whole.
    project.xtask(&["db-copy", "--to", &url]).ok();
    let left: Vec<Vec<String>> = killed.iter().map(|p| databases_like(p)).collect();
    let rows = tests::psql(&url, "SELECT count(*) FROM events");
    tests::psql(
        &tests::postgres_admin_url(),
        &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
    )
    .unwrap();
    assert!(left.iter().all(Vec::is_empty), "left behind: {left:?}");
    assert_eq!(rows, Ok(EVENTS.to_string()));
}

#[test]
fn a_refused_copy_leaves_an_existing_sqlite_target_byte_for_byte() {
    let project = small_project();
    let target = project.path().join("other.db");
    std::fs::write(&target, b"").unwrap();
    sqlite(
        &target,
        "PRAGMA journal_mode = DELETE; CREATE TABLE x (a INTEGER); INSERT INTO x VALUES (1);",
    );
    let before = sha256(&target);
    let run = project.xtask(&["db-copy", "--to", "sqlite://other.db"]);
    run.code(1);
    assert!(run.error_line().contains("is not empty"), "{}", run.stderr);
    assert_eq!(sha256(&target), before, "the refused target was changed");
    assert_eq!(sqlite(&target, "PRAGMA journal_mode"), ["delete"]);
    let files: Vec<String> = std::fs::read_dir(project.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.contains("other.db"))
        .collect();
    assert_eq!(files, ["other.db"], "nothing beside the refused target");
}

#[test]
fn an_ipv4_shorthand_host_reaches_the_server_without_tls() {
    let Some(pg) = PgDatabase::create() else {
        return;
    };
    if !pg.url.contains("@127.0.0.1") {
        tests::skip("the test server is not on 127.0.0.1");
        return;
    }
    let url = pg.url.replace("@127.0.0.1", "@127.1");
    let project = small_project();
    project.xtask(&["db-copy", "--to", &url]).ok();
    // The configured database's URL is read the same way.
    let status = project.xtask_with(&["db-status"], &[("DATABASE_URL", &url)]);
    assert!(status.ok().contains("up to date"), "{}", status.stdout);
}

#[test]
fn a_postgres_history_whose_enum_value_is_used_later_copies_into_a_new_database() {
    let Some(source) = PgDatabase::create() else {
        return;
    };
    let project = Project::with_url(&source.url);
    project.write_mood_migrations();
    project.xtask(&["db-init"]).ok();
    source.execute("INSERT INTO person (id) VALUES (1)");
    let admin = tests::postgres_admin_url();
    let name = format!("{}_new", source.name());
    let url = source.url.replace(source.name(), &name);
    let copied = project.xtask(&["db-copy", "--to", &url]);
    let rows = tests::psql(&url, "SELECT id || ' ' || m FROM person");
    tests::psql(&admin, &format!("DROP DATABASE IF EXISTS {name}")).unwrap();
    copied.ok();
    assert_eq!(rows.unwrap(), "1 happy");

    // Into an existing database that holds nothing: migrated step by step too. One that
    // holds something of its own (a type) is migrated in the copy's one transaction, which
    // this history cannot run: refused, and the type is still there.
    let Some(existing) = PgDatabase::create() else {
        return;
    };
    project.xtask(&["db-copy", "--to", &existing.url]).ok();
    assert_eq!(
        existing.execute("SELECT id || ' ' || m FROM person"),
        "1 happy"
    );
    let Some(fails) = PgDatabase::create() else {
        return;
    };
    fails.execute("CREATE TYPE mood AS ENUM ('other')");
    let run = project.xtask(&["db-copy", "--to", &fails.url]);
    run.code(1);
    assert_eq!(
        fails.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"),
        "0"
    );
    assert_eq!(
        fails.execute("SELECT enum_range(NULL::mood)::text"),
        "{other}"
    );
    // With --force it is emptied first (after its safety backup) and migrated one
    // migration at a time.
    // Emptied first, it could not be put back without its safety backup: refused.
    let refused = project.xtask(&[
        "db-copy",
        "--to",
        &fails.url,
        "--force",
        "--yes",
        "--no-backup",
    ]);
    assert!(
        refused
            .code(1)
            .error_line()
            .contains("run without --no-backup"),
        "{}",
        refused.stderr
    );
    assert_eq!(
        fails.execute("SELECT enum_range(NULL::mood)::text"),
        "{other}"
    );
    let run = project.xtask(&["db-copy", "--to", &fails.url, "--force", "--yes"]);
    run.ok();
    assert!(
        run.stderr
            .contains("until the copy commits, its contents are in backups/"),
        "{}",
        run.stderr
    );
    assert_eq!(
        fails.execute("SELECT id || ' ' || m FROM person"),
        "1 happy"
    );

    // A migration that fails on the targets only: the new database is not left behind,
    // and a target emptied by --force is put back from its safety backup.
    let name = format!("{}_fails", source.name());
    project.write_migration(
        "V5__not_there",
        &format!(
            "DO $$ BEGIN IF current_database() LIKE 'xtask%' OR current_database() = '{}' \
             THEN RAISE EXCEPTION 'not on {name}'; END IF; END $$;",
            fails.name()
        ),
        Some("SELECT 1;"),
    );
    project.xtask(&["db-upgrade"]).ok();
    fails.execute("INSERT INTO person (id) VALUES (2)");
    let run = project.xtask(&["db-copy", "--to", &fails.url, "--force", "--yes"]);
    let line = run.code(1).error_line().to_string();
    assert!(
        line.contains("V5__not_there") && line.contains("put back as it was"),
        "{line}"
    );
    assert_eq!(
        fails.execute("SELECT string_agg(id || ' ' || m, ',' ORDER BY id) FROM person"),
        "1 happy,2 happy"
    );
    assert_eq!(
        fails.execute("SELECT max(version) FROM refinery_schema_history"),
        "4"
    );
    let url = source.url.replace(source.name(), &name);
    let run = project.xtask(&["db-copy", "--to", &url]);
    let left = databases_like(&format!("{name}%"));
    tests::psql(&admin, &format!("DROP DATABASE IF EXISTS {name}")).unwrap();
    let line = run.code(1).error_line().to_string();
    assert!(
        line.contains("V5__not_there") && line.contains("not on"),
        "{line}"
    );
    assert!(left.is_empty(), "{left:?}");
}
