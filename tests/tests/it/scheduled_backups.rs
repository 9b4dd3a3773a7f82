//! Backups the running server takes itself: at the interval, verified, pruned, copied
//! off to `backup_copy_to`, surviving failures, and reported by `/health/db`.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use tests::{PgDatabase, Project, Server, workspace_root};

/// Backup files (not manifests) in `dir`.
fn backups_in(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| !n.starts_with('.') && !n.ends_with(".json"))
                .collect()
        })
        .unwrap_or_default()
}

/// Polls `check` every 100 ms for at most `seconds`.
fn wait_until(seconds: u64, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    while Instant::now() < deadline {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

fn backup_state(server: &Server) -> serde_json::Value {
    server.get("/health/db").json()
}

/// Waits (at most 10 s) for `/health/db` to warn, and returns its body.
fn wait_for_warning(server: &Server) -> serde_json::Value {
    let mut warned = serde_json::Value::Null;
    assert!(
        wait_until(10, || {
            warned = backup_state(server);
            warned["status"] == "warn"
        }),
        "{warned}"
    );
    warned
}

#[test]
fn the_server_backs_itself_up_at_the_interval_prunes_and_copies_off() {
    let project = Project::sqlite();
    project.xtask(&["db-init"]).ok();
    let offsite = project.path().join("offsite");
    let offsite_env = offsite.to_string_lossy().into_owned();
    // Debris of a copy killed earlier, and another machine's copy with a name this
    // server could also produce: the first is swept, the second never touched.
    std::fs::create_dir(&offsite).unwrap();
    let debris = offsite.join(".app-20260101T000000.000Z-v1.db.x1y2z3.partial");
    std::fs::write(&debris, "half a copy").unwrap();
    let server = Server::start(
        &project,
        &[
            ("DATABASE_BACKUP_INTERVAL_SECS", "1"),
            ("DATABASE_BACKUP_KEEP", "2"),
            ("DATABASE_BACKUP_COPY_TO", &offsite_env),
        ],
    );
    let dir = project.path().join("backups");
    let mut seen = BTreeSet::new();
    let pruned = wait_until(20, || {
        seen.extend(backups_in(&dir));
        seen.len() >= 4 && backups_in(&dir).len() == 2
    });
    assert!(pruned, "seen {seen:?}, now {:?}", backups_in(&dir));
    // Every backup kept has its manifest and checks out, here and off-site.
    let listing = project.xtask(&["db-backups"]).ok().to_string();
    assert!(
        !listing.contains("CORRUPT") && !listing.contains("no manifest"),
        "{listing}"
    );
    assert!(
        wait_until(5, || backups_in(&offsite).len() == 2),
        "{:?}",
        backups_in(&offsite)
    );
    for name in backups_in(&offsite) {
        assert!(
            offsite.join(format!("{name}.json")).is_file(),
            "{name} has its manifest"
        );
    }
    assert!(!debris.exists(), "a killed copy's temporary file is swept");

    let health = backup_state(&server);
    assert_eq!(health["status"], "pass", "{health}");
    let backup = &health["backup"];
    assert_eq!(backup["interval_secs"], 1);
    assert!(backup["last_success_at"].is_string(), "{health}");
    assert!(
        backup["last_success_age_secs"].as_u64().unwrap() <= 2,
        "{health}"
    );
    let body = health.to_string();
    assert!(
        !body.contains(&*project.path().to_string_lossy()),
        "no path: {body}"
    );
}

#[test]
fn a_failing_scheduled_backup_warns_keeps_the_server_up_and_recovers() {
    let project = Project::sqlite();
    project.xtask(&["db-init"]).ok();
    let server = Server::start(
        &project,
        &[
            ("DATABASE_BACKUP_INTERVAL_SECS", "1"),
            ("DATABASE_BACKUP_DIR", "bk"),
        ],
    );
    let dir = project.path().join("bk");
    assert!(
        wait_until(10, || !backups_in(&dir).is_empty()),
        "a first backup"
    );

    // The backup directory becomes unusable: a regular file where it was.
    std::fs::rename(&dir, project.path().join("bk.old")).unwrap();
    std::fs::write(&dir, "not a directory").unwrap();
    let warned = wait_for_warning(&server);
    let output = warned["output"].as_str().unwrap();
    assert!(
        output.contains("the last scheduled backup failed"),
        "{output}"
    );
    assert!(output.contains("backup_dir"), "{output}");
    assert!(
        !output.contains(&*project.path().to_string_lossy()),
        "no path: {output}"
    );
    assert!(warned["backup"]["last_failure_at"].is_string(), "{warned}");
    assert_eq!(
        server.get("/health").status,
        200,
        "the server keeps serving"
    );
    assert!(
        server.output().contains("scheduled backup failed"),
        "logged"
    );

    // Fixed: the next interval succeeds and the warning clears.
    std::fs::remove_file(&dir).unwrap();
    let mut recovered = serde_json::Value::Null;
    assert!(
        wait_until(10, || {
            recovered = backup_state(&server);
            recovered["status"] == "pass"
        }),
        "{recovered}"
    );
    assert!(recovered["backup"]["last_failure"].is_null(), "{recovered}");
    assert!(!backups_in(&dir).is_empty());
}

#[test]
fn postgres_is_backed_up_on_the_same_schedule() {
    let Some(pg) = PgDatabase::create() else {
        return;
    };
    let project = Project::with_url(&pg.url);
    project.xtask(&["db-init"]).ok();
    let server = Server::start(&project, &[("DATABASE_BACKUP_INTERVAL_SECS", "1")]);
    let dir = project.path().join("backups");
    assert!(
        wait_until(20, || backups_in(&dir).iter().any(|n| n.ends_with(".dump"))),
        "{:?}",
        backups_in(&dir)
    );
    let mut health = serde_json::Value::Null;
    assert!(wait_until(10, || {
        health = backup_state(&server);
        health["backup"]["last_success_at"].is_string()
    }));
    assert_eq!(health["status"], "pass", "{health}");
}

#[test]
fn the_production_profile_backs_up_hourly_from_the_start() {
    let project = Project::sqlite();
    std::fs::copy(
        workspace_root().join("Rocket.toml"),
        project.path().join("Rocket.toml"),
    )
    .unwrap();
    let env = [
        ("ROCKET_PROFILE", "production"),
        ("ROCKET_ADDRESS", "127.0.0.1"),
        ("DATABASE_URL", "sqlite://app.db"),
        ("DATABASE_DISK_FREE_MIN_MB", "0"),
    ];
    project.xtask_with(&["db-init"], &env).ok();
    let server = Server::start(&project, &env);
    let mut health = serde_json::Value::Null;
    assert!(
        wait_until(10, || {
            health = backup_state(&server);
            health["backup"]["last_success_at"].is_string()
        }),
        "{health}"
    );
    assert_eq!(health["backup"]["interval_secs"], 3600);
    assert_eq!(backups_in(&project.path().join("backups")).len(), 1);
}

#[test]
fn an_in_memory_database_is_backed_up_on_schedule() {
    let project = Project::sqlite();
    let server = Server::start(
        &project,
        &[
            ("DATABASE_URL", "sqlite::memory:"),
            ("DATABASE_BACKUP_INTERVAL_SECS", "1"),
        ],
    );
    let mut health = serde_json::Value::Null;
    assert!(
        wait_until(10, || {
            health = backup_state(&server);
            health["backup"]["last_success_at"].is_string()
                || health["backup"]["last_failure"].is_string()
        }),
        "{health}"
    );
    assert_eq!(health["status"], "pass", "{health}\n{}", server.output());
    let dir = project.path().join("backups");
    let file = dir.join(health["backup"]["last_file"].as_str().unwrap());
    // A real, verified SQLite file holding the schema the server migrated in memory.
    let tables = tests::sqlite(&file, "SELECT name FROM sqlite_master WHERE type = 'table'");
    assert!(
        tables.iter().any(|t| t == "refinery_schema_history"),
        "{tables:?}"
    );
    let listing = project
        .xtask(&["db-backups", "--dir", dir.to_str().unwrap()])
        .ok()
        .to_string();
    assert!(listing.contains("verified"), "{listing}");
}

#[test]
fn a_missing_copy_directory_is_never_created_and_warns_until_it_is_back() {
    let project = Project::sqlite();
    project.xtask(&["db-init"]).ok();
    // The mount point of a share that is not mounted.
    let share = project.path().join("mnt/share");
    let share_env = share.to_string_lossy().into_owned();
    let server = Server::start(
        &project,
        &[
            ("DATABASE_BACKUP_INTERVAL_SECS", "1"),
            ("DATABASE_BACKUP_COPY_TO", &share_env),
        ],
    );
    let warned = wait_for_warning(&server);
    let output = warned["output"].as_str().unwrap();
    assert!(
        output.contains("backup_copy_to") && output.contains("does not exist"),
        "{output}"
    );
    assert!(
        !output.contains(&*project.path().to_string_lossy()),
        "no path: {output}"
    );
    assert!(
        !project.path().join("mnt").exists(),
        "the copy directory is never created"
    );
    assert!(
        server.output().contains(&share_env),
        "the log names the path: {}",
        server.output()
    );
    assert!(!backups_in(&project.path().join("backups")).is_empty());

    // Mounted: the next interval copies, and the warning clears.
    std::fs::create_dir_all(&share).unwrap();
    let mut recovered = serde_json::Value::Null;
    assert!(
        wait_until(10, || {
            recovered = backup_state(&server);
            recovered["status"] == "pass" && !backups_in(&share).is_empty()
        }),
        "{recovered}"
    );
}

#[test]
fn a_world_writable_copy_directory_of_another_user_gets_private_copies() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    use std::os::unix::process::CommandExt;
    if !tests::as_root_or_skip("run the server as another user") {
        return;
    }
    let project = Project::sqlite();
    project.xtask(&["db-init"]).ok();
    // The server runs as `nobody`, owner of the project directory and the database; the
    // share belongs to root and lets everyone write.
    for path in [project.path().to_path_buf(), project.db_path()] {
        std::os::unix::fs::chown(&path, Some(tests::NOBODY), Some(tests::NOBODY)).unwrap();
    }
    std::fs::set_permissions(project.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let share = project.path().join("share");
    std::fs::create_dir(&share).unwrap();
    std::fs::set_permissions(&share, std::fs::Permissions::from_mode(0o777)).unwrap();
    let share_env = share.to_string_lossy().into_owned();
    let mut command = project.command("server");
    command.uid(tests::NOBODY).gid(tests::NOBODY);
    let server = Server::start_with(
        command,
        &[
            ("DATABASE_BACKUP_INTERVAL_SECS", "1"),
            ("DATABASE_BACKUP_COPY_TO", &share_env),
        ],
    );
    let mut health = serde_json::Value::Null;
    assert!(
        wait_until(10, || {
            health = backup_state(&server);
            health["backup"]["last_success_at"].is_string() && !backups_in(&share).is_empty()
        }),
        "{health}\n{}",
        server.output()
    );
    assert_eq!(health["status"], "pass", "{health}");
    let meta = std::fs::metadata(&share).unwrap();
    assert_eq!(
        (meta.uid(), meta.mode() & 0o777),
        (0, 0o777),
        "another user's directory keeps its owner and mode"
    );
    for name in backups_in(&share) {
        for file in [share.join(&name), share.join(format!("{name}.json"))] {
            let mode = std::fs::metadata(&file).unwrap().mode() & 0o777;
            assert_eq!(mode, 0o600, "{} is private", file.display());
        }
    }
}

/// The first child of `parent` whose command name is `name`, from `/proc`.
fn child_named(parent: u32, name: &str) -> Option<u32> {
    std::fs::read_dir("/proc")
        .ok()?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .find(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
                return false;
            };
            let ppid = stat[close + 1..].split_whitespace().nth(1);
            &stat[open + 1..close] == name && ppid == Some(&parent.to_string())
        })
}

/// Whether process `pid` still runs (a zombie is dead: it only waits to be reaped).
fn running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rfind(')')
            .and_then(|close| stat[close + 1..].split_whitespace().next())
            .is_some_and(|state| state != "Z")
    })
}

#[test]
fn stopping_or_killing_the_server_mid_backup_stops_its_postgres_tools() {
    let Some(pg) = PgDatabase::create() else {
        return;
    };
    let project = Project::with_url(&pg.url);
    project.xtask(&["db-init"]).ok();
    // Enough rows for pg_dump to run several seconds, and pg_restore after it.
    pg.execute(
        "CREATE TABLE big AS SELECT i, md5(i::text) AS v, md5((i * 7)::text) AS w \
         FROM generate_series(1, 3000000) AS i",
    );
    for (signal, tool) in [
        ("TERM", "pg_dump"),
        ("KILL", "pg_dump"),
        ("KILL", "pg_restore"),
    ] {
        let server = Server::start(&project, &[("DATABASE_BACKUP_INTERVAL_SECS", "3600")]);
        let mut child = None;
        assert!(
            wait_until(60, || {
                child = child_named(server.pid(), tool);
                child.is_some()
            }),
            "{tool} never ran:\n{}",
            server.output()
        );
        let child = child.unwrap();
        let status = std::process::Command::new("kill")
            .args([format!("-{signal}"), server.pid().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        assert!(
            wait_until(3, || !running(child)),
            "SIG{signal} to the server left its {tool} running"
        );
        drop(server);
    }
    // What the killed backups left is swept by the next one, which succeeds.
    let server = Server::start(&project, &[("DATABASE_BACKUP_INTERVAL_SECS", "3600")]);
    let mut health = serde_json::Value::Null;
    assert!(
        wait_until(60, || {
            health = backup_state(&server);
            health["backup"]["last_success_at"].is_string()
        }),
        "{health}"
    );
    let dir = project.path().join("backups");
    assert_eq!(tests::debris(&dir), Vec::<String>::new());
}

#[test]
fn a_fifo_named_like_a_backup_never_stops_scheduled_backups_or_shutdown() {
    let project = Project::sqlite();
    project.xtask(&["db-init"]).ok();
    project.xtask(&["db-backup"]).ok();
    let dir = project.path().join("backups");
    let real = tests::newest_backup(&dir, ".db");
    let status = std::process::Command::new("mkfifo")
        .arg(dir.join("zz.db"))
        .status()
        .unwrap();
    assert!(status.success());
    std::fs::copy(format!("{}.json", real.display()), dir.join("zz.db.json")).unwrap();

    let server = Server::start(&project, &[("DATABASE_BACKUP_INTERVAL_SECS", "1")]);
    // Backups go on (each prunes, so each lists the FIFO)...
    assert!(
        wait_until(20, || backups_in(&dir).len() >= 4),
        "{:?}\n{}",
        backups_in(&dir),
        server.output()
    );
    // ...and SIGTERM ends the server.
    let status = std::process::Command::new("kill")
        .args(["-TERM", &server.pid().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    assert!(
        wait_until(15, || !running(server.pid())),
        "SIGTERM did not end the server:\n{}",
        server.output()
    );
}
