//! The fault suite on SQLite: real processes killed with SIGKILL at random moments, a disk
//! that fills up, the live file removed, truncated or copied in slowly under a running
//! server, and racing starters. Each experiment asserts what a user cares about: the rows,
//! the file's integrity, the exit code, the message, and that no debris is left.

use std::path::Path;
use std::time::{Duration, Instant};

use tests::{Project, Server, Tmpfs, debris, fill_disk, holds_for, random_below, sha256, sqlite};

use crate::support::scratch_kills;

/// A project with an `events` table holding `rows` rows of ~200 bytes.
fn events_project(rows: u32) -> Project {
    let project = Project::sqlite();
    project.write_events_migration();
    project.xtask(&["db-init"]).ok();
    sqlite(
        &project.db_path(),
        &format!(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {rows}) \
             INSERT INTO events SELECT i, hex(randomblob(100)) FROM n;"
        ),
    );
    project
}

fn count(db: &Path, table: &str) -> i64 {
    sqlite(db, &format!("SELECT count(*) FROM {table}"))[0]
        .parse()
        .unwrap()
}

fn integrity(db: &Path) {
    assert_eq!(
        sqlite(db, "PRAGMA integrity_check"),
        ["ok"],
        "{}",
        db.display()
    );
}

/// Kills `args` after a random delay below `max_ms`; returns whether it was still running.
fn kill_at_random(project: &Project, args: &[&str], max_ms: u64) -> bool {
    let mut child = project.spawn_xtask(args);
    std::thread::sleep(Duration::from_millis(random_below(max_ms)));
    let running = child.try_wait().unwrap().is_none();
    child.kill().ok();
    child.wait().unwrap();
    running
}

/// Every backup in `dir` has its manifest and checks out; every manifest has its backup.
fn assert_backups_consistent(project: &Project, dir: &Path) {
    let listing = project.xtask(&["db-backups"]);
    let out = listing.ok();
    assert!(
        !out.contains("no manifest") && !out.contains("CORRUPT"),
        "{out}"
    );
    let names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| !n.starts_with('.'))
        .collect();
    for name in &names {
        if let Some(backup) = name.strip_suffix(".json") {
            assert!(names.iter().any(|n| n == backup), "orphan manifest {name}");
        } else {
            assert!(
                names.contains(&format!("{name}.json")),
                "{name} has no manifest"
            );
        }
    }
}

#[test]
fn sigkill_during_backup_leaves_nothing_behind_and_the_next_backup_succeeds() {
    let project = events_project(100_000);
    let db = project.db_path();
    let dir = project.path().join("backups");
    let mut killed = 0;
    // Until three backups were killed while running (a random moment may come too late).
    for _ in 0..20 {
        if killed == 3 {
            break;
        }
        killed += usize::from(kill_at_random(&project, &["db-backup"], 600));
    }
    assert!(killed > 0, "no backup was killed while running");
    project.xtask(&["db-backup"]).ok();
    assert_eq!(
        debris(&dir),
        Vec::<String>::new(),
        "debris after the next backup"
    );
    assert_backups_consistent(&project, &dir);
    integrity(&db);
    assert_eq!(count(&db, "events"), 100_000);
}

#[test]
fn sigkill_during_restore_leaves_the_database_wholly_before_or_after() {
    let project = events_project(50_000);
    let db = project.db_path();
    project.xtask(&["db-backup"]).ok();
    let backup = tests::newest_backup(&project.path().join("backups"), ".db");
    let reset_to_before = || sqlite(&db, "DELETE FROM events WHERE seq > 5");
    reset_to_before();
    let mut outcomes = (0, 0);
    for round in 0..6 {
        let args: &[&str] = if round % 2 == 0 {
            &["db-restore", backup.to_str().unwrap(), "-y"]
        } else {
            &["db-restore", backup.to_str().unwrap(), "-y", "--no-backup"]
        };
        kill_at_random(&project, args, 700);
        integrity(&db);
        match count(&db, "events") {
            5 => outcomes.0 += 1,
            50_000 => {
                outcomes.1 += 1;
                reset_to_before();
            }
            n => panic!("round {round}: {n} rows: neither before (5) nor after (50000)"),
        }
    }
    let run = project.xtask(&["db-restore", backup.to_str().unwrap(), "-y"]);
    run.ok();
    assert_eq!(count(&db, "events"), 50_000);
    integrity(&db);
    assert_eq!(debris(project.path()), Vec::<String>::new(), "{outcomes:?}");
    project.xtask(&["db-backup"]).ok();
    assert_eq!(
        debris(&project.path().join("backups")),
        Vec::<String>::new()
    );
    assert_backups_consistent(&project, &project.path().join("backups"));
}

#[test]
fn sigkill_during_upgrade_leaves_each_migration_wholly_applied_or_not() {
    let project = Project::sqlite();
    project.xtask(&["db-init"]).ok();
    project.write_migration(
        "V2__big",
        "CREATE TABLE big AS WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1500000) \
         SELECT i, hex(randomblob(16)) AS v FROM n;",
        Some("DROP TABLE big;"),
    );
    let db = project.db_path();
    let versions = || {
        sqlite(
            &db,
            "SELECT version FROM refinery_schema_history ORDER BY version",
        )
    };
    let has_big = || sqlite(&db, "SELECT count(*) FROM sqlite_master WHERE name = 'big'") == ["1"];
    let mut killed = 0;
    // Until two upgrades were killed while running (a random moment may come too late).
    for round in 0..16 {
        if killed == 2 {
            break;
        }
        killed += usize::from(kill_at_random(&project, &["db-upgrade"], 2_000));
        integrity(&db);
        match versions().as_slice() {
            [v1] if v1 == "1" => assert!(!has_big(), "round {round}: V2 half applied"),
            [v1, v2] if v1 == "1" && v2 == "2" => {
                assert_eq!(count(&db, "big"), 1_500_000, "round {round}");
                project.xtask(&["db-downgrade", "-y", "--no-backup"]).ok();
            }
            other => panic!("round {round}: history {other:?}"),
        }
    }
    assert!(killed > 0, "no upgrade was killed while running");
    project.xtask(&["db-upgrade"]).ok();
    assert_eq!(versions(), ["1", "2"]);
    assert_eq!(count(&db, "big"), 1_500_000);
}

/// A 6 MiB tmpfs holding `app.db`, initialized, with 8,000 rows of `events` (about
/// 1 MiB), all of it checkpointed into the file itself, so its bytes only change if
/// something writes to it; the project, and the database's URL. `None` without root.
fn events_on_a_small_disk() -> Option<(Tmpfs, Project, String)> {
    let disk = Tmpfs::mount("6m")?;
    let project = Project::sqlite();
    let url = format!("sqlite://{}/app.db", disk.path().display());
    let db = disk.path().join("app.db");
    project.write_events_migration();
    project
        .xtask_with(&["db-init"], &[("DATABASE_URL", url.as_str())])
        .ok();
    sqlite(
        &db,
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 8000) \
         INSERT INTO events SELECT i, hex(randomblob(100)) FROM n;",
    );
    sqlite(&db, "PRAGMA wal_checkpoint(TRUNCATE)");
    Some((disk, project, url))
}

#[test]
fn a_backup_that_runs_out_of_room_late_leaves_nothing_behind() {
    let Some((disk, project, url)) = events_on_a_small_disk() else {
        return;
    };
    let env = [("DATABASE_URL", url.as_str())];
    let db = disk.path().join("app.db");
    let size = std::fs::metadata(&db).unwrap().len();
    let backups = disk.path().join("backups");
    // Room for the copy's pages and a little more, so a later step (marking the copy,
    // the integrity check, the manifest) is the one that runs out.
    for extra in [0, 4096, 16 * 1024, 64 * 1024] {
        fill_disk(disk.path(), size + extra);
        let backup = project.xtask_with(&["db-backup"], &env);
        if backup.code != 0 {
            let line = backup.error_line();
            assert_eq!(
                line.matches("cannot write the backup").count(),
                1,
                "one cause, said once: {line}"
            );
        }
        assert_eq!(
            debris(&backups),
            Vec::<String>::new(),
            "room {size} + {extra}"
        );
        for entry in std::fs::read_dir(&backups).unwrap() {
            let path = entry.unwrap().path();
            if path.is_file() && !path.ends_with(".lock") {
                std::fs::remove_file(path).unwrap();
            }
        }
        std::fs::remove_file(disk.path().join("filler")).unwrap();
    }
    integrity(&db);
}

#[test]
fn a_full_disk_fails_backup_and_upgrade_cleanly_and_keeps_the_database() {
    let Some((disk, project, url)) = events_on_a_small_disk() else {
        return;
    };
    let env = [("DATABASE_URL", url.as_str())];
    let db = disk.path().join("app.db");
    let before = sha256(&db);
    fill_disk(disk.path(), 256 * 1024);

    let backup = project.xtask_with(&["db-backup"], &env);
    let line = backup.error_line().to_lowercase();
    assert!(line.contains("full"), "{line}");
    let backups = disk.path().join("backups");
    assert_eq!(debris(&backups), Vec::<String>::new());
    assert!(
        std::fs::read_dir(&backups).unwrap().all(|e| !e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .ends_with(".db")),
        "no backup was left"
    );
    assert_eq!(sha256(&db), before, "the live database is untouched");

    // One run: V3 fits and stays applied; V4 fills the disk and is rolled back alone.
    project.write_migration(
        "V3__small",
        "CREATE TABLE small (id INTEGER PRIMARY KEY);",
        Some("DROP TABLE small;"),
    );
    project.write_migration(
        "V4__bulk",
        "CREATE TABLE bulk AS WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 100000) \
         SELECT i, hex(randomblob(64)) AS v FROM n;",
        Some("DROP TABLE bulk;"),
    );
    let upgrade = project.xtask_with(&["db-upgrade"], &env);
    let line = upgrade.error_line().to_lowercase();
    assert!(line.contains("full") && line.contains("v4__bulk"), "{line}");
    assert!(
        line.contains("applied before it and kept: v3__small"),
        "{line}"
    );
    assert!(!line.contains("savepoint"), "{line}");
    integrity(&db);
    assert_eq!(
        sqlite(&db, "SELECT max(version) FROM refinery_schema_history"),
        ["3"],
        "the migration before the failed one stays applied"
    );
    assert_eq!(
        sqlite(
            &db,
            "SELECT count(*) FROM sqlite_master WHERE name = 'small'"
        ),
        ["1"]
    );
    assert_eq!(count(&db, "events"), 8000);
    assert_eq!(
        sqlite(
            &db,
            "SELECT count(*) FROM sqlite_master WHERE name = 'bulk'"
        ),
        ["0"],
        "nothing half-written"
    );

    std::fs::remove_file(disk.path().join("filler")).unwrap();
    project.xtask_with(&["db-backup"], &env).ok();
    assert_eq!(debris(&backups), Vec::<String>::new());
}

/// Waits (bounded) until `/health/db` answers `status`.
fn wait_for_health(server: &Server, status: u16) -> tests::Response {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let response = server.get("/health/db");
        if response.status == status || Instant::now() > deadline {
            return response;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn remove_with_sidecars(db: &Path) {
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
    }
}

#[test]
fn the_server_never_recreates_or_writes_a_file_that_is_not_a_complete_database() {
    // The server embeds the workspace's migrations: data goes into a table of its own.
    let project = Project::sqlite();
    project.xtask(&["db-init"]).ok();
    let db = project.db_path();
    sqlite(
        &db,
        "CREATE TABLE events (seq INTEGER PRIMARY KEY, payload TEXT NOT NULL); \
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 2000) \
         INSERT INTO events SELECT i, hex(randomblob(100)) FROM n;",
    );
    project.xtask(&["db-backup"]).ok();
    let backup = tests::newest_backup(&project.path().join("backups"), ".db");
    let server = Server::start(&project, &[("DATABASE_IDLE_TIMEOUT_SECS", "1")]);
    assert_eq!(server.get("/health/db").status, 200);

    // Removed: an outage, and the pool's reaper never recreates the file.
    remove_with_sidecars(&db);
    assert_eq!(wait_for_health(&server, 503).status, 503);
    // Nothing announces the pool reaper's rounds (idle timeout 1 s), so the checks below
    // watch for a set time; they stop early when what they check fails.
    holds_for(Duration::from_millis(2_500), || !db.exists());
    assert!(!db.exists(), "the server recreated the deleted database");

    // A 0-byte file appears (touch): not a database, never written to.
    std::fs::File::create(&db).unwrap();
    let response = wait_for_health(&server, 503);
    assert!(
        response.body.contains("not a complete SQLite database"),
        "{}",
        response.body
    );
    let size = || std::fs::metadata(&db).unwrap().len();
    holds_for(Duration::from_millis(1_500), || size() == 0);
    assert_eq!(size(), 0, "the server wrote to an empty file");

    // Copied in slowly: never picked up half-way, picked up once complete.
    std::fs::remove_file(&db).unwrap();
    let bytes = std::fs::read(&backup).unwrap();
    {
        use std::io::Write;
        let mut file = std::fs::File::create(&db).unwrap();
        for chunk in bytes.chunks(bytes.len() / 6 + 1) {
            file.write_all(chunk).unwrap();
            file.flush().unwrap();
            let during = server.get("/health/db");
            if std::fs::metadata(&db).unwrap().len() < bytes.len() as u64 {
                assert_eq!(
                    during.status, 503,
                    "a half-copied file was used: {}",
                    during.body
                );
            }
            std::thread::sleep(Duration::from_millis(150));
        }
    }
    let response = wait_for_health(&server, 200);
    assert_eq!(response.status, 200, "{}", response.body);
    integrity(&db);
    assert_eq!(count(&db, "events"), 2_000);

    // Truncated in place (same inode): an outage; the server does not write into it, also
    // not when the pool reaps its idle connections and opens new ones (min_connections).
    std::fs::File::create(&db).unwrap();
    assert_eq!(wait_for_health(&server, 503).status, 503);
    holds_for(Duration::from_millis(3_000), || size() == 0);
    assert_eq!(size(), 0, "the server wrote to a truncated file");
    drop(server);
}

#[test]
fn eight_servers_and_eight_inits_race_on_a_fresh_sqlite_file() {
    let project = Project::sqlite();
    let inits: Vec<_> = (0..8)
        .map(|_| {
            let command = project.command("xtask");
            std::thread::spawn(move || {
                let mut command = command;
                tests::Run::from(command.arg("db-init").output().unwrap())
            })
        })
        .collect();
    for init in inits {
        init.join().unwrap().ok();
    }
    assert_eq!(
        sqlite(
            &project.db_path(),
            "SELECT count(*) FROM refinery_schema_history"
        ),
        ["1"]
    );

    let fresh = Project::sqlite();
    let servers: Vec<Server> = std::thread::scope(|scope| {
        let starting: Vec<_> = (0..8)
            .map(|_| scope.spawn(|| Server::start(&fresh, &[])))
            .collect();
        starting.into_iter().map(|s| s.join().unwrap()).collect()
    });
    for server in &servers {
        let response = server.get("/health/db");
        assert_eq!(response.status, 200, "{}", response.body);
    }
    assert_eq!(
        sqlite(
            &fresh.db_path(),
            "SELECT count(*) FROM refinery_schema_history"
        ),
        ["1"]
    );
    integrity(&fresh.db_path());
    assert_eq!(debris(fresh.path()), Vec::<String>::new());
}

#[test]
fn a_file_replaced_under_a_running_server_is_not_opened_with_the_old_files_wal() {
    let project = Project::sqlite();
    project.xtask(&["db-init"]).ok();
    let db = project.db_path();
    sqlite(
        &db,
        "CREATE TABLE stuff (x INTEGER); INSERT INTO stuff VALUES (1);",
    );
    // The replacement: a complete copy with one more table.
    let replacement = project.path().join("replacement.db");
    std::fs::copy(&db, &replacement).unwrap();
    sqlite(
        &replacement,
        "CREATE TABLE extra (y INTEGER); INSERT INTO extra VALUES (2);",
    );
    let server = Server::start(&project, &[]);
    assert_eq!(server.get("/health/db").status, 200);

    // Another process keeps the old file open, so committed frames stay in its -wal.
    let holder = tests::SnapshotHolder::open(&db, "stuff");
    sqlite(&db, "INSERT INTO stuff VALUES (3)");
    assert!(
        std::fs::metadata(project.path().join("app.db-wal"))
            .unwrap()
            .len()
            > 0
    );

    // Replaced by hand with a rename while the server runs: not opened with the old log.
    std::fs::rename(&replacement, &db).unwrap();
    let response = wait_for_health(&server, 503);
    assert_eq!(response.status, 503, "{}", response.body);

    // SQLite leaves the old file's log behind even when its last user is gone: the
    // server keeps refusing until the operator removes it, as the runbook says.
    holder.close();
    let status = || server.get("/health/db").status;
    holds_for(Duration::from_millis(500), || status() == 503);
    assert_eq!(status(), 503);
    for suffix in ["-wal", "-shm"] {
        std::fs::remove_file(format!("{}{suffix}", db.display())).unwrap();
    }
    let response = wait_for_health(&server, 200);
    assert_eq!(response.status, 200, "{}", response.body);
    integrity(&db);
    assert_eq!(sqlite(&db, "SELECT y FROM extra"), ["2"]);
    assert_eq!(
        sqlite(&db, "SELECT group_concat(x) FROM stuff"),
        ["1"],
        "no row of the old file's log was replayed into the new file"
    );
}

#[test]
fn readiness_warns_when_the_disk_runs_low_and_fails_when_it_is_full() {
    let Some(disk) = Tmpfs::mount("8m") else {
        return;
    };
    let project = Project::sqlite();
    let url = format!("sqlite://{}/app.db", disk.path().display());
    let env = [
        ("DATABASE_URL", url.as_str()),
        ("DATABASE_DISK_FREE_MIN_MB", "4"),
    ];
    project.xtask_with(&["db-init"], &env).ok();
    let server = Server::start(&project, &env);
    let pass = server.get("/health/db");
    assert_eq!(
        (pass.status, pass.json()["status"].as_str()),
        (200, Some("pass")),
        "{}",
        pass.body
    );
    assert!(pass.json()["disk"]["free_bytes"].as_u64().unwrap() > 4 << 20);

    fill_disk(disk.path(), 2 << 20);
    let warn = server.get("/health/db");
    let body = warn.json();
    assert_eq!(
        (warn.status, body["status"].as_str()),
        (200, Some("warn")),
        "{}",
        warn.body
    );
    assert!(
        body["output"]
            .as_str()
            .unwrap()
            .contains("disk_free_min_mb"),
        "{}",
        warn.body
    );

    std::fs::remove_file(disk.path().join("filler")).unwrap();
    fill_disk(disk.path(), 64 * 1024);
    let fail = server.get("/health/db");
    assert_eq!(
        (fail.status, fail.json()["status"].as_str()),
        (503, Some("fail")),
        "{}",
        fail.body
    );
    assert!(fail.body.contains("disk is full"), "{}", fail.body);

    std::fs::remove_file(disk.path().join("filler")).unwrap();
    assert_eq!(server.get("/health/db").status, 200);
    drop(server);
}

#[test]
fn readiness_fails_when_requests_hit_pages_corrupted_in_place() {
    let project = Project::sqlite();
    project.xtask(&["db-init"]).ok();
    let db = project.db_path();
    sqlite(
        &db,
        "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT); \
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 2000) \
         INSERT INTO notes SELECT i, hex(randomblob(100)) FROM n; PRAGMA wal_checkpoint(TRUNCATE);",
    );
    let env = [("DATABASE_MAX_CONNECTIONS", "8")];
    let server = Server::start(&project, &env);
    assert_eq!(server.get("/health/db").status, 200);

    // Garbage over page 1's schema b-tree, behind an intact 100-byte header: the pooled
    // connection answers from its cache; every new connection fails to read the schema.
    let mut file = std::fs::OpenOptions::new().write(true).open(&db).unwrap();
    std::io::Seek::seek(&mut file, std::io::SeekFrom::Start(100)).unwrap();
    std::io::Write::write_all(&mut file, &[0xA5; 3000]).unwrap();
    file.sync_all().unwrap();
    drop(file);

    let statuses: Vec<u16> = std::thread::scope(|scope| {
        let probes: Vec<_> = (0..8)
            .map(|_| scope.spawn(|| server.get("/health/db").status))
            .collect();
        probes.into_iter().map(|p| p.join().unwrap()).collect()
    });
    assert!(statuses.contains(&503), "{statuses:?}");
    // Now even a probe that lands on a cached connection tells the truth.
    for _ in 0..5 {
        let response = server.get("/health/db");
        assert_eq!(response.status, 503, "{}", response.body);
        assert!(response.body.contains("corrupt"), "{}", response.body);
        assert!(!response.body.contains(&*db.to_string_lossy()), "no path");
    }
}

#[test]
fn readiness_fails_when_the_server_loses_access_to_its_file() {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    if !tests::as_root_or_skip("run the server as another user") {
        return;
    }
    let project = Project::sqlite();
    project.xtask(&["db-init"]).ok();
    let db = project.db_path();
    // The server runs as `nobody`, owner of the project directory and the database.
    for path in [project.path().to_path_buf(), db.clone()] {
        std::os::unix::fs::chown(&path, Some(tests::NOBODY), Some(tests::NOBODY)).unwrap();
    }
    std::fs::set_permissions(project.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut command = project.command("server");
    command.uid(tests::NOBODY).gid(tests::NOBODY);
    let server = Server::start_with(command, &[]);
    let response = server.get("/health/db");
    // On failure: who owns what (a root-owned `-wal`/`-shm` would explain a 503).
    let listing = std::process::Command::new("ls")
        .arg("-la")
        .arg(project.path())
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).into_owned())
        .unwrap_or_default();
    assert_eq!(
        response.status,
        200,
        "{}\n{listing}\n{}",
        response.body,
        server.output()
    );

    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o000)).unwrap();
    let response = server.get("/health/db");
    assert_eq!(response.status, 503, "{}", response.body);
    assert!(
        response.body.contains("not readable and writable"),
        "{}",
        response.body
    );

    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).unwrap();
    let response = wait_for_health(&server, 200);
    assert_eq!(response.status, 200, "{}", response.body);
}

#[test]
fn sigkill_during_reset_leaves_the_database_wholly_before_or_after() {
    let project = Project::sqlite();
    project.write_migration(
        "V2__big",
        "CREATE TABLE big AS WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1500000) \
         SELECT i, hex(randomblob(16)) AS v FROM n;",
        Some("DROP TABLE big;"),
    );
    project.xtask(&["db-init"]).ok();
    let db = project.db_path();
    let keep = || {
        sqlite(
            &db,
            "CREATE TABLE keep (x INTEGER); INSERT INTO keep VALUES (7);",
        )
    };
    keep();
    let has_keep = || {
        sqlite(
            &db,
            "SELECT count(*) FROM sqlite_master WHERE name = 'keep'",
        ) == ["1"]
    };
    let mut outcomes = (0, 0);
    for round in 0..16 {
        if outcomes.0 >= 2 && outcomes.1 >= 1 {
            break;
        }
        let killed = kill_at_random(&project, &["db-reset", "-y", "--no-backup"], 2_500);
        integrity(&db);
        assert_eq!(
            sqlite(
                &db,
                "SELECT group_concat(version) FROM refinery_schema_history"
            ),
            ["1,2"],
            "round {round}"
        );
        assert_eq!(
            count(&db, "big"),
            1_500_000,
            "round {round}: the migration is whole"
        );
        if has_keep() {
            assert_eq!(sqlite(&db, "SELECT x FROM keep"), ["7"], "round {round}");
            outcomes.0 += usize::from(killed);
        } else {
            outcomes.1 += 1;
            keep();
        }
    }
    assert!(
        outcomes.0 >= 1,
        "no reset was killed while running: {outcomes:?}"
    );

    // A migration that fails during a reset: nothing was dropped.
    project.write_migration(
        "V3__broken",
        "SELECT * FROM no_such_table;",
        Some("SELECT 1;"),
    );
    let run = project.xtask(&["db-reset", "-y", "--no-backup"]);
    let line = run.error_line();
    assert!(line.contains("nothing was changed"), "{line}");
    assert!(has_keep(), "the database is as it was");
    assert_eq!(count(&db, "big"), 1_500_000);
}

/// A SQLite project whose second migration takes about half a second, `schema.sql`
/// written, and an empty temporary directory for its runs.
fn slow_scratch_project() -> (Project, tempfile::TempDir) {
    let project = Project::sqlite();
    project.write_migration(
        "V2__slow",
        "CREATE TABLE slow (x INTEGER PRIMARY KEY, y TEXT);\n\
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1500000) \
         INSERT INTO slow SELECT i, hex(randomblob(16)) FROM n;",
        Some("DROP TABLE slow;"),
    );
    let tmp = tempfile::tempdir().unwrap();
    project
        .xtask_with(&["db-schema"], &[("TMPDIR", tmp.path().to_str().unwrap())])
        .ok();
    (project, tmp)
}

#[test]
fn interrupted_or_killed_scratch_commands_leave_no_scratch_file_on_sqlite() {
    let (project, tmp) = slow_scratch_project();
    let files = |_pid: u32| debris(tmp.path());
    scratch_kills::Experiment {
        project: &project,
        tmp: tmp.path(),
        scratch_of: &files,
    }
    .run();
}

#[test]
fn a_scratch_file_held_by_a_live_run_is_never_swept() {
    let (project, tmp) = slow_scratch_project();
    // What a live run holds: its file, locked, and SQLite's log beside it.
    let live = tmp.path().join(".xtask-scratch.db.live.partial");
    let held = std::fs::File::create(&live).unwrap();
    held.lock().unwrap();
    std::fs::write(tmp.path().join(".xtask-scratch.db.live.partial-wal"), b"").unwrap();
    let tmpdir = tmp.path().to_str().unwrap();
    project
        .xtask_with(&["db-schema"], &[("TMPDIR", tmpdir)])
        .ok();
    let mut left = debris(tmp.path());
    left.sort();
    assert_eq!(
        left,
        [
            ".xtask-scratch.db.live.partial",
            ".xtask-scratch.db.live.partial-wal"
        ]
    );
    // Once its owner is gone, the next run sweeps both.
    drop(held);
    project
        .xtask_with(&["db-schema"], &[("TMPDIR", tmpdir)])
        .ok();
    assert_eq!(debris(tmp.path()), Vec::<String>::new());
}

/// Every migration file in `dir` is whole (not empty) and the set loads.
fn assert_migrations_whole(project: &Project, dir: &Path, context: &str) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('V') {
            assert!(
                entry.metadata().unwrap().len() > 0,
                "{context}: {name} is empty"
            );
        }
    }
    let dir = dir.to_str().unwrap();
    project.xtask(&["--migrations-dir", dir, "db-status"]).ok();
}

#[test]
fn db_migrate_name_never_leaves_a_partial_script_killed_or_on_a_full_disk() {
    let project = Project::sqlite();
    project.xtask(&["db-init"]).ok();
    let Some(disk) = Tmpfs::mount("1m") else {
        return;
    };
    let dir = disk.path().join("migrations");
    std::fs::create_dir(&dir).unwrap();
    for file in ["V1__initial.sql", "V1__initial.down.sql"] {
        std::fs::copy(project.path().join("migrations").join(file), dir.join(file)).unwrap();
    }
    let dir_arg = dir.to_str().unwrap().to_string();
    // Killed at random moments of its short life.
    for round in 0..24 {
        let delay = random_below(12);
        println!("round {round}: SIGKILL after {delay} ms");
        let mut child = project.spawn_xtask(&[
            "--migrations-dir",
            &dir_arg,
            "db-migrate",
            &format!("step_{round}"),
        ]);
        std::thread::sleep(Duration::from_millis(delay));
        child.kill().ok();
        child.wait().unwrap();
        // A template is not a migration yet: remove what a finished run created.
        for entry in std::fs::read_dir(&dir).unwrap() {
            let name = entry.unwrap().file_name().to_string_lossy().into_owned();
            if name.starts_with("V2__") {
                std::fs::remove_file(dir.join(&name)).unwrap();
            }
        }
        assert_migrations_whole(&project, &dir, &format!("round {round}"));
    }
    // One run to its end sweeps what the killed ones left (partial scripts it would
    // otherwise sweep below, freeing the space the full disk is about).
    project
        .xtask(&["--migrations-dir", &dir_arg, "db-migrate", "swept"])
        .ok();
    for name in ["V2__swept.sql", "V2__swept.down.sql"] {
        std::fs::remove_file(dir.join(name)).unwrap();
    }
    // The disk fills up: nothing is created, nothing is left.
    fill_disk(disk.path(), 0);
    let run = project.xtask(&["--migrations-dir", &dir_arg, "db-migrate", "full"]);
    run.code(1);
    assert!(run.error_line().contains("cannot create"), "{}", run.stderr);
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["V1__initial.down.sql", "V1__initial.sql"],
        "nothing left"
    );
    assert_migrations_whole(&project, &dir, "full disk");
}

#[test]
fn readiness_never_makes_another_process_delete_the_servers_write_ahead_log() {
    let project = Project::sqlite();
    let env = [("DATABASE_URL", "sqlite://notes.db")];
    let db = project.path().join("notes.db");
    let wal = project.path().join("notes.db-wal");
    {
        let server = Server::start_with(project.command("notes"), &env);
        let one = server.post_json("/notes", r#"{"title": "one", "body": "b"}"#);
        assert_eq!(one.status, 201, "{}", one.body);
        for _ in 0..3 {
            assert_eq!(server.get("/health/db").status, 200);
        }
        // Another process (the sqlite3 shell) reads the database while the server runs,
        // and closes it: as the last connection it would know of, it would checkpoint
        // and delete the log if the server's locks were gone.
        let outside = |sql: &str| {
            let output = std::process::Command::new("sqlite3")
                .arg(&db)
                .arg(sql)
                .output()
                .expect("run sqlite3 (apt-get install sqlite3)");
            String::from_utf8_lossy(&output.stdout).trim().to_string()
        };
        assert_eq!(outside("SELECT count(*) FROM notes"), "1");
        assert!(
            wal.exists(),
            "the server's write-ahead log was deleted under it"
        );
        let two = server.post_json("/notes", r#"{"title": "two", "body": "b"}"#);
        assert_eq!(two.status, 201, "{}", two.body);
        assert_eq!(outside("SELECT count(*) FROM notes"), "2");
        // Killed without a chance to checkpoint: the log is what holds "two".
        drop(server);
    }
    let server = Server::start_with(project.command("notes"), &env);
    let page = server.get("/notes?limit=10").json();
    assert_eq!(page["items"].as_array().unwrap().len(), 2, "{page}");
}

#[test]
fn writers_queued_behind_a_locked_file_give_up_after_the_acquire_timeout() {
    let project = Project::sqlite();
    let db = project.path().join("notes.db");
    let server = Server::start_with(
        project.command("notes"),
        &[
            ("DATABASE_URL", "sqlite://notes.db"),
            ("DATABASE_ACQUIRE_TIMEOUT_MS", "300"),
            ("DATABASE_BUSY_TIMEOUT_MS", "2000"),
        ],
    );
    // Another process holds the write lock for 5 s.
    let mut holder = std::process::Command::new("sqlite3")
        .arg(&db)
        .args(["BEGIN IMMEDIATE;", ".shell sleep 5", "COMMIT;"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("run sqlite3 (apt-get install sqlite3)");
    std::thread::sleep(Duration::from_millis(300));
    let started = Instant::now();
    let answers: Vec<(u16, Duration)> = std::thread::scope(|scope| {
        let posts: Vec<_> = (0..6)
            .map(|n| {
                let server = &server;
                scope.spawn(move || {
                    let posted =
                        server.post_json("/notes", &format!(r#"{{"title": "t{n}", "body": "b"}}"#));
                    (posted.status, started.elapsed())
                })
            })
            .collect();
        posts.into_iter().map(|p| p.join().unwrap()).collect()
    });
    let _ = holder.wait();
    for (status, _) in &answers {
        assert_eq!(*status, 503, "{answers:?}");
    }
    // One waits out busy_timeout_ms for the file; the others give up on the queue.
    let slowest = answers.iter().map(|(_, took)| *took).max().unwrap();
    assert!(slowest < Duration::from_millis(3500), "{answers:?}");
    let metrics = server.get("/metrics").body;
    let timeouts = metrics
        .lines()
        .find_map(|l| l.strip_prefix("db_pool_acquire_timeouts_total "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .unwrap_or_else(|| panic!("{metrics}"));
    assert!(timeouts >= 5.0, "{metrics}");
}
