//! `cargo xtask` end to end: the real binary, in temporary projects, on SQLite and PostgreSQL.

use std::path::{Path, PathBuf};

use tests::{PgDatabase, Project, Server, psql, sqlite};

fn history(project: &Project) -> Vec<String> {
    sqlite(
        &project.db_path(),
        "SELECT version, name FROM refinery_schema_history ORDER BY version",
    )
}

fn notes_migrations(project: &Project) {
    project.write_migration(
        "V2__notes",
        "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT NOT NULL);",
        Some("DROP TABLE notes;"),
    );
    project.write_migration(
        "V3__tags",
        "CREATE TABLE tags (id INTEGER PRIMARY KEY, label TEXT NOT NULL);",
        Some("DROP TABLE tags;"),
    );
}

/// Files in a directory whose names end with `suffix`.
fn files_ending(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.to_string_lossy().ends_with(suffix))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

fn backups(project: &Project) -> Vec<PathBuf> {
    files_ending(&project.path().join("backups"), ".db")
}

#[test]
fn db_init_creates_migrates_and_is_idempotent() {
    let project = Project::sqlite();
    let first = project.xtask(&["db-init"]);
    let out = first.ok();
    assert!(out.contains("created database app.db"), "{out}");
    assert!(out.contains("applied V1__initial"), "{out}");
    assert!(project.db_path().is_file());
    assert_eq!(history(&project), ["1|initial"]);

    let second = project.xtask(&["db-init"]);
    assert!(
        second
            .ok()
            .contains("already up to date at version 1; nothing to do"),
        "{}",
        second.stdout
    );
    assert_eq!(history(&project), ["1|initial"]);
}

#[test]
fn db_init_creates_a_missing_postgres_database() {
    let Some(pg) = PgDatabase::create() else {
        return;
    };
    let name = pg.url.rsplit('/').next().unwrap().to_string();
    psql(
        &tests::postgres_admin_url(),
        &format!("DROP DATABASE {name}"),
    )
    .unwrap();
    let project = Project::with_url(&pg.url);
    let out = project.xtask(&["db-init"]);
    let stdout = out.ok();
    assert!(stdout.contains("created database"), "{stdout}");
    assert_eq!(
        pg.execute("SELECT name FROM refinery_schema_history"),
        "initial"
    );
}

#[test]
fn db_init_from_a_subdirectory_uses_the_database_next_to_rocket_toml() {
    let project = Project::sqlite();
    let sub = project.path().join("deep/er");
    std::fs::create_dir_all(&sub).unwrap();
    let run = project
        .command("xtask")
        .current_dir(&sub)
        .arg("db-init")
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(project.db_path().is_file());
    assert!(!sub.join("app.db").exists());
}

#[test]
fn db_init_reports_a_failed_migration_and_keeps_the_good_ones() {
    let project = Project::sqlite();
    project.write_migration(
        "V2__notes",
        "CREATE TABLE notes (id INTEGER);",
        Some("DROP TABLE notes;"),
    );
    project.write_migration(
        "V3__broken",
        "CREATE TABLE x (id INTEGER); NOT SQL AT ALL;",
        Some("DROP TABLE x;"),
    );
    let run = project.xtask(&["db-init"]);
    let line = run.error_line();
    assert!(
        line.starts_with("error: migration V3__broken failed:"),
        "{line}"
    );
    assert_eq!(history(&project), ["1|initial", "2|notes"]);
}

#[test]
fn four_concurrent_db_inits_apply_the_baseline_once() {
    let mut projects = vec![(Project::sqlite(), None)];
    if let Some(pg) = PgDatabase::create() {
        projects.push((Project::with_url(&pg.url), Some(pg)));
    }
    for (project, pg) in &projects {
        let children: Vec<_> = (0..4)
            .map(|_| {
                project
                    .command("xtask")
                    .arg("db-init")
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        let mut applied = 0;
        for child in children {
            let output = child.wait_with_output().unwrap();
            let stdout = String::from_utf8_lossy(&output.stdout);
            assert!(
                output.status.success(),
                "{stdout}\n{}",
                String::from_utf8_lossy(&output.stderr)
            );
            applied += stdout.matches("applied V1__initial").count();
        }
        assert_eq!(applied, 1, "exactly one process applied the baseline");
        let rows = match pg {
            Some(pg) => pg.execute("SELECT count(*) FROM refinery_schema_history"),
            None => sqlite(
                &project.db_path(),
                "SELECT count(*) FROM refinery_schema_history",
            )
            .join(""),
        };
        assert_eq!(rows, "1");
    }
}

#[test]
fn db_status_exit_codes_follow_the_schema_state() {
    let project = Project::sqlite();
    let before = project.xtask(&["db-status"]);
    before.code(2);
    assert!(
        before.stdout.contains("no database yet"),
        "{}",
        before.stdout
    );
    assert!(
        !project.db_path().exists(),
        "status never creates the database"
    );

    project.xtask(&["db-init"]).ok();
    let up = project.xtask(&["db-status"]);
    assert!(up.ok().contains("applied  V1__initial"), "{}", up.stdout);
    assert!(up.stdout.contains("checksum ok"));
    assert!(
        up.stdout
            .contains("config:     Rocket.toml (profile debug)"),
        "{}",
        up.stdout
    );
    assert!(
        up.stdout.contains("database:   sqlite (app.db)"),
        "{}",
        up.stdout
    );
    assert!(up.stdout.contains("status:     up to date (version 1)"));

    notes_migrations(&project);
    let pending = project.xtask(&["db-status"]);
    pending.code(2);
    assert!(pending.stdout.contains("pending  V2__notes") && pending.stdout.contains("2 pending"));

    project.xtask(&["db-upgrade"]).ok();
    std::fs::write(
        project.path().join("migrations/V3__tags.sql"),
        "CREATE TABLE tags (id INTEGER);",
    )
    .unwrap();
    let diverged = project.xtask(&["db-status"]);
    diverged.code(4);
    assert!(diverged.stdout.contains("DIVERGENT"), "{}", diverged.stdout);

    for f in ["V3__tags.sql", "V3__tags.down.sql"] {
        std::fs::remove_file(project.path().join("migrations").join(f)).unwrap();
    }
    let ahead = project.xtask(&["db-status"]);
    ahead.code(3);
    assert!(
        ahead.stdout.contains("ahead of this code"),
        "{}",
        ahead.stdout
    );
}

#[test]
fn db_migrate_creates_a_pair_and_rejects_bad_names() {
    let project = Project::sqlite();
    let run = project.xtask(&["db-migrate", "add_users"]);
    let out = run.ok();
    assert!(
        out.contains("created migrations/V2__add_users.sql"),
        "{out}"
    );
    assert!(
        out.contains("created migrations/V2__add_users.down.sql"),
        "{out}"
    );
    assert!(
        project
            .path()
            .join("migrations/V2__add_users.down.sql")
            .is_file()
    );

    for bad in ["AddUsers", "add-users", "1users", "add__users"] {
        let line = project.xtask(&["db-migrate", bad]).error_line().to_string();
        assert!(line.contains("not snake_case"), "{bad}: {line}");
    }
    let line = project
        .xtask(&["db-migrate", "add_users"])
        .error_line()
        .to_string();
    assert!(line.contains("already exists"), "{line}");
    assert_eq!(
        files_ending(&project.path().join("migrations"), ".sql").len(),
        4
    );

    let other = project.xtask(&["--migrations-dir", "other", "db-migrate", "first"]);
    assert!(
        other.ok().contains("created other/V1__first.sql"),
        "{}",
        other.stdout
    );
}

/// `db-migrate` → write the scripts → `db-upgrade` → `db-downgrade`, keeping untouched data.
fn migrate_upgrade_downgrade(project: &Project, sql: &dyn Fn(&str) -> String) {
    project.xtask(&["db-init"]).ok();
    for (name, up, down) in [
        (
            "notes",
            "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT NOT NULL);",
            "DROP TABLE notes;",
        ),
        (
            "tags",
            "CREATE TABLE tags (id INTEGER PRIMARY KEY, label TEXT NOT NULL);",
            "DROP TABLE tags;",
        ),
    ] {
        project.xtask(&["db-migrate", name]).ok();
        let files = files_ending(&project.path().join("migrations"), &format!("__{name}.sql"));
        std::fs::write(&files[0], up).unwrap();
        std::fs::write(files[0].with_extension("down.sql"), down).unwrap();
    }
    let dry = project.xtask(&["db-upgrade", "--dry-run"]);
    assert!(dry.ok().contains("CREATE TABLE notes"), "{}", dry.stdout);
    assert!(
        sql("SELECT count(*) FROM refinery_schema_history").ends_with('1'),
        "dry run changed nothing"
    );

    let line = project
        .xtask(&["db-upgrade", "--to", "9"])
        .error_line()
        .to_string();
    assert!(
        line.contains("there is no migration V9; the latest is V3"),
        "{line}"
    );
    assert!(
        project
            .xtask(&["db-upgrade", "--to", "2"])
            .ok()
            .contains("applied V2__notes")
    );
    assert!(
        project
            .xtask(&["db-upgrade"])
            .ok()
            .contains("applied V3__tags")
    );
    sql(
        "INSERT INTO notes (id, body) VALUES (1, 'keep me'); INSERT INTO tags (id, label) VALUES (1, 'x')",
    );

    let refused = project.xtask(&["db-downgrade"]);
    assert!(
        refused.error_line().contains("stdin is not a terminal"),
        "{}",
        refused.stderr
    );
    assert!(
        sql("SELECT count(*) FROM tags").ends_with('1'),
        "refusal changed nothing"
    );

    let dry = project.xtask(&["db-downgrade", "--dry-run"]);
    assert!(dry.ok().contains("DROP TABLE tags"));
    let everything = project.xtask(&["db-downgrade", "--to", "0", "--dry-run"]);
    let plan = everything.ok();
    let (tags, notes) = (plan.find("DROP TABLE tags"), plan.find("DROP TABLE notes"));
    assert!(tags.is_some() && tags < notes, "newest first: {plan}");
    assert!(
        sql("SELECT count(*) FROM refinery_schema_history").ends_with('3'),
        "a dry run changes nothing"
    );

    let run = project.xtask(&["db-downgrade", "-y"]);
    assert!(run.ok().contains("reverted V3__tags"), "{}", run.stdout);
    assert!(run.stderr.contains("safety backup: "), "{}", run.stderr);
    assert_eq!(sql("SELECT body FROM notes"), "keep me");
    assert!(sql("SELECT count(*) FROM refinery_schema_history").ends_with('2'));

    project.xtask(&["db-upgrade"]).ok();
    let line = project
        .xtask(&["db-downgrade", "--steps", "9", "-y"])
        .error_line()
        .to_string();
    assert!(
        line.contains("cannot roll back 9 migration(s): only 3 applied"),
        "{line}"
    );
    let run = project.xtask(&["db-downgrade", "--steps", "2", "-y", "--no-backup"]);
    let out = run.ok();
    assert!(
        out.contains("reverted V3__tags") && out.contains("reverted V2__notes"),
        "{out}"
    );
    assert!(out.contains("database is at version 1"), "{out}");

    let run = project.xtask(&["db-downgrade", "--to", "0", "-y", "--no-backup"]);
    assert!(run.ok().contains("reverted V1__initial"), "{}", run.stdout);
}

#[test]
fn migrate_upgrade_downgrade_keeps_data_on_sqlite() {
    let project = Project::sqlite();
    let db = project.db_path();
    migrate_upgrade_downgrade(&project, &|q| sqlite(&db, q).join("\n"));
    assert!(
        sqlite(&db, "SELECT name FROM sqlite_master WHERE type = 'table'").is_empty(),
        "everything reverted"
    );
}

#[test]
fn migrate_upgrade_downgrade_keeps_data_on_postgres() {
    let Some(pg) = PgDatabase::create() else {
        return;
    };
    let project = Project::with_url(&pg.url);
    migrate_upgrade_downgrade(&project, &|q| pg.execute(q));
    assert_eq!(
        pg.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"),
        "0"
    );
}

#[test]
fn destructive_commands_refuse_under_production_without_force() {
    let project = Project::sqlite();
    project.xtask(&["db-init"]).ok();
    let prod = [("ROCKET_PROFILE", "production")];
    for args in [
        &["db-reset", "-y"][..],
        &["db-downgrade", "-y"],
        &["db-restore", "x.db", "-y"],
    ] {
        let run = project.xtask_with(args, &prod);
        assert!(
            run.error_line().contains("production profile"),
            "{args:?}: {}",
            run.stderr
        );
    }
    assert_eq!(history(&project), ["1|initial"]);
    // A dry run changes nothing, so it needs no --force.
    let dry = project.xtask_with(&["db-downgrade", "--dry-run"], &prod);
    assert!(dry.ok().contains("V1__initial.down"), "{}", dry.stdout);
    assert_eq!(history(&project), ["1|initial"]);
    project
        .xtask_with(&["db-reset", "-y", "--force"], &prod)
        .ok();
}

#[test]
fn db_reset_clears_data_and_leaves_the_latest_version() {
    let project = Project::sqlite();
    notes_migrations(&project);
    project.xtask(&["db-init"]).ok();
    sqlite(
        &project.db_path(),
        "INSERT INTO notes (body) VALUES ('a'), ('b'); CREATE TABLE stray (x INTEGER);",
    );

    let refused = project.xtask(&["db-reset"]);
    assert!(
        refused.error_line().contains("pass --yes"),
        "{}",
        refused.stderr
    );
    assert_eq!(
        sqlite(&project.db_path(), "SELECT count(*) FROM notes"),
        ["2"]
    );

    let run = project.xtask(&["db-reset", "--yes"]);
    assert!(
        run.ok().contains("was reset to version 3"),
        "{}",
        run.stdout
    );
    assert_eq!(
        sqlite(&project.db_path(), "SELECT count(*) FROM notes"),
        ["0"]
    );
    assert!(
        sqlite(
            &project.db_path(),
            "SELECT name FROM sqlite_master WHERE name = 'stray'"
        )
        .is_empty()
    );
    assert_eq!(history(&project).len(), 3);
    assert_eq!(
        backups(&project).len(),
        1,
        "a safety backup was taken first"
    );
}

#[test]
fn db_reset_on_postgres() {
    let Some(pg) = PgDatabase::create() else {
        return;
    };
    let project = Project::with_url(&pg.url);
    notes_migrations(&project);
    project.xtask(&["db-init"]).ok();
    pg.execute("INSERT INTO notes (id, body) VALUES (1, 'a'); CREATE TABLE stray (x INTEGER)");
    project.xtask(&["db-reset", "-y"]).ok();
    assert_eq!(pg.execute("SELECT count(*) FROM notes"), "0");
    assert_eq!(pg.execute("SELECT to_regclass('stray') IS NULL"), "t");
    assert_eq!(
        pg.execute("SELECT count(*) FROM refinery_schema_history"),
        "3"
    );
    assert_eq!(
        files_ending(&project.path().join("backups"), ".dump").len(),
        1
    );
}

#[test]
fn a_backup_taken_while_a_writer_commits_is_a_consistent_prefix() {
    let project = Project::sqlite();
    project.write_events_migration();
    project.xtask(&["db-init"]).ok();
    let db = project.db_path();
    // Enough data that the snapshot takes a while.
    sqlite(
        &db,
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 20000) INSERT INTO events SELECT i, hex(randomblob(200)) FROM n;",
    );

    use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let committed = std::sync::Arc::new(AtomicI64::new(20_000));
    let writer = {
        let (stop, committed) = (stop.clone(), committed.clone());
        let db = db.clone();
        std::thread::spawn(move || {
            let mut seq = 20_000;
            while !stop.load(Ordering::Relaxed) {
                seq += 1;
                sqlite(&db, &format!("INSERT INTO events VALUES ({seq}, 'w{seq}')"));
                committed.store(seq, Ordering::SeqCst);
            }
        })
    };
    std::thread::sleep(std::time::Duration::from_millis(100));
    let before = committed.load(Ordering::SeqCst);
    let run = project.xtask(&["db-backup"]);
    let after = committed.load(Ordering::SeqCst);
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    let out = run.ok();
    assert!(out.contains("verified"), "{out}");

    let backup = backups(&project).pop().expect("one backup");
    let rows = sqlite(&backup, "SELECT count(*), min(seq), max(seq) FROM events");
    let parts: Vec<i64> = rows[0].split('|').map(|v| v.parse().unwrap()).collect();
    assert_eq!(
        parts[0], parts[2],
        "no gaps: the backup holds exactly 1..=max"
    );
    assert_eq!(parts[1], 1);
    assert!(
        parts[2] >= before && parts[2] <= after,
        "everything committed before the backup started, and nothing after it ended: {parts:?}, {before}..={after}"
    );
    assert!(
        after > before,
        "the writer kept committing while the backup ran ({before} → {after})"
    );
    assert_eq!(sqlite(&backup, "PRAGMA integrity_check"), ["ok"]);

    let mode = std::fs::metadata(&backup).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777,
        0o600
    );
    let manifest: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(format!("{}.json", backup.display())).unwrap(),
    )
    .unwrap();
    assert_eq!(manifest["schema_version"], 2);
    assert_eq!(manifest["kind"], "sqlite");
    assert_eq!(manifest["size"], std::fs::metadata(&backup).unwrap().len());

    // Restoring it gives exactly that prefix.
    let restored = project.xtask(&["db-restore", backup.to_str().unwrap(), "-y", "--no-backup"]);
    assert!(
        restored.ok().contains("schema is up to date"),
        "{}",
        restored.stdout
    );
    assert_eq!(
        sqlite(&db, "SELECT count(*), max(seq) FROM events"),
        [format!("{}|{}", parts[0], parts[2])]
    );
}

/// The manifest of a backup, as JSON.
fn manifest_of(backup: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(format!("{}.json", backup.display())).unwrap())
        .unwrap()
}

#[test]
fn keep_prunes_only_this_databases_backups_newest_by_manifest_time() {
    let project = Project::sqlite();
    project.xtask(&["db-init"]).ok();
    // `app-old.db` backs up into the same directory; its file names start with `app-`.
    let old = [("DATABASE_URL", "sqlite://app-old.db")];
    project.xtask_with(&["db-init"], &old).ok();
    for _ in 0..3 {
        project
            .xtask_with(&["db-backup", "--out", "backups"], &old)
            .ok();
    }
    for _ in 0..4 {
        project.xtask(&["db-backup"]).ok();
    }
    let dir = project.path().join("backups");
    let of = |stem: &str| -> Vec<PathBuf> {
        files_ending(&dir, ".db")
            .into_iter()
            .filter(|p| {
                let name = p.file_name().unwrap().to_string_lossy().to_string();
                name.strip_prefix(stem)
                    .is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_digit()))
            })
            .collect()
    };
    assert_eq!((of("app-").len(), of("app-old-").len()), (4, 3));
    let newest_before = of("app-").pop().unwrap();

    let run = project.xtask(&["db-backup", "--out", "backups", "--keep", "2"]);
    assert_eq!(
        run.ok().matches("removed old backup").count(),
        3,
        "{}",
        run.stdout
    );
    assert_eq!(
        of("app-old-").len(),
        3,
        "another database's backups were kept"
    );
    let kept = of("app-");
    assert_eq!(kept.len(), 2);
    assert_eq!(kept[0], newest_before, "the newest older backup stays");
    assert!(kept[1] > newest_before, "the backup just taken stays");
    for backup in &kept {
        assert_eq!(
            manifest_of(backup)["database"],
            format!(
                "sqlite://{}{}",
                std::fs::read_to_string("/proc/sys/kernel/hostname")
                    .unwrap()
                    .trim(),
                project.db_path().display()
            )
        );
    }
    // No orphan manifest, no debris.
    assert_eq!(files_ending(&dir, ".json").len(), 5);
    let hidden: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| n.starts_with('.') && n != ".lock" && n != ".sequence")
        .collect();
    assert!(hidden.is_empty(), "{hidden:?}");
    // --keep 1 never removes the backup just taken.
    project.xtask(&["db-backup", "--keep", "1"]).ok();
    assert_eq!(of("app-").len(), 1);
    assert_eq!(of("app-old-").len(), 3);
}

#[test]
fn concurrent_backups_with_keep_never_delete_one_of_the_newest() {
    let project = Project::sqlite();
    project.xtask(&["db-init"]).ok();
    let runs: Vec<_> = (0..3)
        .map(|_| {
            let mut command = project.command("xtask");
            command.args(["db-backup", "--keep", "2"]);
            std::thread::spawn(move || tests::Run::from(command.output().unwrap()))
        })
        .collect();
    let mut reported: Vec<String> = runs
        .into_iter()
        .map(|r| {
            let run = r.join().unwrap();
            let out = run.ok();
            out.lines()
                .find_map(|l| l.strip_prefix("backup ")?.split_whitespace().next())
                .unwrap_or_else(|| panic!("no backup reported: {out}"))
                .to_string()
        })
        .collect();
    reported.sort();
    for newest in &reported[1..] {
        assert!(
            project.path().join(newest).exists(),
            "{newest} was reported taken and is one of the newest two, but is gone"
        );
    }
}

#[test]
fn db_backups_lists_and_flags_corrupt_backups() {
    let project = Project::sqlite();
    project.xtask(&["db-init"]).ok();
    for _ in 0..2 {
        project.xtask(&["db-backup"]).ok();
    }
    let kept = backups(&project);
    let list = project.xtask(&["db-backups"]);
    let out = list.ok();
    assert_eq!(out.matches("verified").count(), 2, "{out}");
    assert!(out.contains("v1"));

    std::fs::write(&kept[0], b"tampered").unwrap();
    assert!(project.xtask(&["db-backups"]).ok().contains("CORRUPT"));

    let out_dir = project.path().join("elsewhere");
    project.xtask(&["db-backup", "--out", "elsewhere"]).ok();
    assert_eq!(files_ending(&out_dir, ".db").len(), 1);
    assert!(
        project
            .xtask(&["db-backups", "--dir", "elsewhere"])
            .ok()
            .contains("verified")
    );
    let missing = project.xtask(&["db-backups", "--dir", "missing"]);
    assert!(
        missing.error_line().contains("no such directory"),
        "{}",
        missing.stderr
    );
}

/// A SQLite project at version 2 with one note, and a backup of it.
fn backed_up_project(note: &str) -> (Project, PathBuf) {
    let project = Project::sqlite();
    write_notes(&project);
    project.xtask(&["db-init"]).ok();
    sqlite(
        &project.db_path(),
        &format!("INSERT INTO notes (body) VALUES ('{note}')"),
    );
    project.xtask(&["db-backup"]).ok();
    let backup = backups(&project).pop().expect("a backup");
    (project, backup)
}

/// `V2__notes`: one table with an id and a body.
fn write_notes(project: &Project) {
    project.write_migration(
        "V2__notes",
        "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT);",
        Some("DROP TABLE notes;"),
    );
}

#[test]
fn compressed_backups_are_opt_in_verified_and_restorable() {
    let (project, plain) = backed_up_project("zipped");
    let db = project.db_path();
    sqlite(
        &db,
        "CREATE TABLE filler (t TEXT); WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 5000) INSERT INTO filler SELECT 'compressible text ' || (i % 10) FROM n;",
    );
    let plain_manifest = std::fs::read_to_string(format!("{}.json", plain.display())).unwrap();
    assert!(
        !plain_manifest.contains("compression"),
        "plain by default: {plain_manifest}"
    );

    project.xtask(&["db-backup", "--compress"]).ok();
    let zipped = files_ending(&project.path().join("backups"), ".db.gz");
    assert_eq!(zipped.len(), 1);
    let manifest: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(format!("{}.json", zipped[0].display())).unwrap(),
    )
    .unwrap();
    assert_eq!(manifest["compression"], "gzip");
    assert!(
        std::fs::metadata(&zipped[0]).unwrap().len() < std::fs::metadata(&db).unwrap().len() / 2
    );
    assert_eq!(
        project
            .xtask(&["db-backups"])
            .ok()
            .matches("verified")
            .count(),
        2
    );

    sqlite(&db, "DELETE FROM notes; DELETE FROM filler");
    let run = project.xtask(&[
        "db-restore",
        zipped[0].to_str().unwrap(),
        "-y",
        "--no-backup",
    ]);
    assert!(run.ok().contains("schema is up to date"), "{}", run.stdout);
    assert_eq!(sqlite(&db, "SELECT body FROM notes"), ["zipped"]);
    assert_eq!(sqlite(&db, "SELECT count(*) FROM filler"), ["5000"]);
    assert_eq!(sqlite(&db, "PRAGMA integrity_check"), ["ok"]);
}

#[test]
fn restore_refuses_bad_backups_and_changes_nothing() {
    let (project, good) = backed_up_project("current");
    let manifest = format!("{}.json", good.display());

    // A backup from a newer schema, taken in another project that knows V3.
    let newer = Project::sqlite();
    write_notes(&newer);
    newer.write_migration(
        "V3__more",
        "CREATE TABLE more (id INTEGER);",
        Some("DROP TABLE more;"),
    );
    newer.xtask(&["db-init"]).ok();
    newer.xtask(&["db-backup"]).ok();
    let newer_backup = backups(&newer).pop().unwrap();

    let dir = project.path().join("bad");
    std::fs::create_dir(&dir).unwrap();
    // Each bad file gets the good backup's manifest, naming the bad file.
    let good_name = good.file_name().unwrap().to_string_lossy().to_string();
    let with_manifest = |name: &str, bytes: &[u8]| {
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        let text = std::fs::read_to_string(&manifest).unwrap();
        std::fs::write(
            format!("{}.json", path.display()),
            text.replace(&good_name, name),
        )
        .unwrap();
        path
    };
    let original = std::fs::read(&good).unwrap();
    let random: Vec<u8> = (0..original.len())
        .map(|i| (i * 7919 % 251) as u8)
        .collect();
    let mut flipped = original.clone();
    let middle = flipped.len() / 2;
    flipped[middle] ^= 0xff;
    let cases: Vec<(PathBuf, &str)> = vec![
        (with_manifest("empty.db", b""), "the file is empty"),
        (
            with_manifest("random.db", &random),
            "checksum does not match",
        ),
        (
            with_manifest("truncated.db", &original[..original.len() / 2]),
            "size is",
        ),
        (
            with_manifest("flipped.db", &flipped),
            "checksum does not match",
        ),
        (newer_backup, "newer than this code knows"),
        (dir.join("missing-manifest.db"), "no manifest"),
    ];
    std::fs::write(dir.join("missing-manifest.db"), &original).unwrap();

    let before = std::fs::read(project.db_path()).unwrap();
    let backups_before = backups(&project).len();
    for (path, reason) in cases {
        let run = project.xtask(&["db-restore", path.to_str().unwrap(), "-y"]);
        let line = run.error_line();
        assert!(
            line.contains(reason) && line.contains("nothing was changed"),
            "{}: {line}",
            path.display()
        );
        assert_eq!(
            std::fs::read(project.db_path()).unwrap(),
            before,
            "database unchanged"
        );
    }
    assert_eq!(
        backups(&project).len(),
        backups_before,
        "no safety backup for a refused restore"
    );
    assert_eq!(
        sqlite(&project.db_path(), "SELECT body FROM notes"),
        ["current"]
    );
}

#[test]
fn restore_brings_back_the_backup_after_a_safety_backup() {
    let (project, backup) = backed_up_project("before");
    sqlite(
        &project.db_path(),
        "DELETE FROM notes; INSERT INTO notes (body) VALUES ('after')",
    );

    let refused = project.xtask(&["db-restore", backup.to_str().unwrap()]);
    assert!(refused.error_line().contains("pass --yes"));

    let run = project.xtask(&["db-restore", backup.to_str().unwrap(), "--yes"]);
    let out = run.ok();
    assert!(out.contains("restored app.db"), "{out}");
    assert!(out.contains("schema is up to date (version 2)"), "{out}");
    assert!(
        run.stderr.contains("safety backup: backups/"),
        "{}",
        run.stderr
    );
    assert_eq!(
        sqlite(&project.db_path(), "SELECT body FROM notes"),
        ["before"]
    );
    assert_eq!(backups(&project).len(), 2);
    assert!(
        !project.path().join(".app.db.restoring").exists(),
        "no staging file left behind"
    );

    // Disaster recovery: restoring where neither the database nor its directory exists.
    let elsewhere = [("DATABASE_URL", "sqlite://restored/here/app.db")];
    project
        .xtask_with(&["db-restore", backup.to_str().unwrap(), "-y"], &elsewhere)
        .ok();
    let restored = project.path().join("restored/here/app.db");
    assert_eq!(sqlite(&restored, "SELECT body FROM notes"), ["before"]);

    // An older backup restores too, and the user is told to upgrade.
    project.write_migration(
        "V3__tags",
        "CREATE TABLE tags (id INTEGER);",
        Some("DROP TABLE tags;"),
    );
    project.xtask(&["db-upgrade"]).ok();
    let run = project.xtask(&["db-restore", backup.to_str().unwrap(), "-y", "--no-backup"]);
    assert!(
        run.ok().contains("run `cargo xtask db-upgrade`"),
        "{}",
        run.stdout
    );
}

#[test]
fn restore_refuses_while_a_server_has_the_database_open() {
    // The server embeds only the repository's migrations, so stay at V1 here.
    let project = Project::sqlite();
    project.xtask(&["db-init"]).ok();
    sqlite(
        &project.db_path(),
        "CREATE TABLE marker (body TEXT); INSERT INTO marker VALUES ('from backup')",
    );
    project.xtask(&["db-backup"]).ok();
    let backup = backups(&project).pop().unwrap();
    let server = Server::start(&project, &[]);
    let before = std::fs::read(project.db_path()).unwrap();
    let run = project.xtask(&["db-restore", backup.to_str().unwrap(), "-y"]);
    let line = run.error_line();
    assert!(line.contains("open by a running server (pid"), "{line}");
    assert!(line.contains("--while-in-use"), "{line}");
    assert_eq!(std::fs::read(project.db_path()).unwrap(), before);

    // With --while-in-use the file is swapped under the running server, which reopens it.
    sqlite(&project.db_path(), "UPDATE marker SET body = 'changed'");
    let run = project.xtask(&[
        "db-restore",
        backup.to_str().unwrap(),
        "-y",
        "--while-in-use",
    ]);
    assert!(
        run.stderr.contains("continuing: --while-in-use"),
        "{}",
        run.stderr
    );
    run.ok();
    let health = server.get("/health/db");
    assert_eq!(health.status, 200);
    assert_eq!(health.json()["pool"]["reopened"], 1, "{}", health.body);
    assert_eq!(
        sqlite(&project.db_path(), "SELECT body FROM marker"),
        ["from backup"]
    );
    assert!(
        server.output().contains("was replaced; reopened it"),
        "{}",
        server.output()
    );
}

#[test]
fn postgres_backup_and_restore_round_trip() {
    let Some(pg) = PgDatabase::create() else {
        return;
    };
    let project = Project::with_url(&pg.url);
    project.write_migration(
        "V2__notes",
        "CREATE TABLE notes (id SERIAL PRIMARY KEY, body TEXT);",
        Some("DROP TABLE notes;"),
    );
    project.xtask(&["db-init"]).ok();
    pg.execute("INSERT INTO notes (body) VALUES ('kept')");
    let run = project.xtask(&["db-backup"]);
    assert!(run.ok().contains("verified"), "{}", run.stdout);
    let dumps = files_ending(&project.path().join("backups"), ".dump");
    assert_eq!(dumps.len(), 1);
    assert!(project.xtask(&["db-backups"]).ok().contains("verified"));

    pg.execute("DELETE FROM notes; CREATE TABLE stray (x INTEGER)");
    let run = project.xtask(&["db-restore", dumps[0].to_str().unwrap(), "-y"]);
    assert!(
        run.ok().contains("schema is up to date (version 2)"),
        "{}",
        run.stdout
    );
    assert_eq!(pg.execute("SELECT body FROM notes"), "kept");
    assert_eq!(pg.execute("SELECT to_regclass('stray') IS NULL"), "t");
    assert_eq!(
        files_ending(&project.path().join("backups"), ".dump").len(),
        2,
        "safety backup taken"
    );

    let no_tools = project.xtask_with(&["db-backup"], &[("PATH", "/nonexistent")]);
    let line = no_tools.error_line();
    assert!(
        line.contains("pg_dump not found on PATH; install the PostgreSQL client tools"),
        "{line}"
    );

    let sqlite_backup = Project::sqlite();
    sqlite_backup.xtask(&["db-init"]).ok();
    sqlite_backup.xtask(&["db-backup"]).ok();
    let wrong = backups(&sqlite_backup).pop().unwrap();
    let line = project
        .xtask(&["db-restore", wrong.to_str().unwrap(), "-y"])
        .error_line()
        .to_string();
    assert!(
        line.contains("sqlite backup") && line.contains("postgres"),
        "{line}"
    );
}

#[test]
fn db_check_passes_on_good_migrations_and_names_each_problem() {
    let project = Project::sqlite();
    notes_migrations(&project);
    let run = project.xtask(&["db-check"]);
    assert!(run.ok().contains("ok: 3 migration(s)"), "{}", run.stdout);

    let broken = |setup: &dyn Fn(&Project), expected: &str| {
        let p = Project::sqlite();
        notes_migrations(&p);
        setup(&p);
        let run = p.xtask(&["db-check"]);
        assert_eq!(run.code, 1, "{}", run.stdout);
        assert!(
            run.stdout.contains(expected),
            "expected `{expected}` in:\n{}",
            run.stdout
        );
    };
    broken(
        &|p| std::fs::remove_file(p.path().join("migrations/V3__tags.down.sql")).unwrap(),
        "V3__tags: no down script",
    );
    broken(
        &|p| {
            for f in ["V2__notes.sql", "V2__notes.down.sql"] {
                std::fs::remove_file(p.path().join("migrations").join(f)).unwrap();
            }
        },
        "versions must be contiguous from 1; V2 is missing",
    );
    broken(
        &|p| {
            p.xtask(&["db-init"]).ok();
            std::fs::write(
                p.path().join("migrations/V2__notes.sql"),
                "CREATE TABLE notes (id INTEGER, extra TEXT);",
            )
            .unwrap();
        },
        "V2__notes: edited after it was applied",
    );
    broken(
        &|p| std::fs::write(p.path().join("migrations/V3__tags.down.sql"), "SELECT 1;").unwrap(),
        "V3__tags.down.sql does not fully revert V3__tags: leaves behind table tags",
    );
}

#[test]
fn db_check_round_trips_on_postgres() {
    let Some(pg) = PgDatabase::create() else {
        return;
    };
    let project = Project::with_url(&pg.url);
    project.write_migration(
        "V2__notes",
        "CREATE TABLE notes (id SERIAL PRIMARY KEY, body TEXT NOT NULL); CREATE INDEX notes_body ON notes (body);",
        Some("DROP INDEX notes_body;"),
    );
    let run = project.xtask(&["db-check"]);
    assert_eq!(run.code, 1);
    assert!(
        run.stdout
            .contains("V2__notes.down.sql does not fully revert V2__notes"),
        "{}",
        run.stdout
    );
    // That its scratch databases are dropped: `histories::db_check_names_every_round_trip_problem_on_postgres`.
}

#[test]
fn in_memory_databases_are_refused_with_a_clear_message() {
    let project = Project::sqlite();
    let run = project.xtask_with(&["db-init"], &[("DATABASE_URL", "sqlite::memory:")]);
    assert!(
        run.error_line().contains("in-memory database"),
        "{}",
        run.stderr
    );
}

/// Polls `sql` in `pg` until it prints `want`, for at most 20 s.
fn wait_for_pg(pg: &PgDatabase, sql: &str, want: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while pg.execute(sql) != want {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for `{sql}` to give {want}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
fn an_upgrade_whose_history_another_process_rolled_back_says_so() {
    use std::io::Write as _;
    use std::process::Stdio;
    let Some(pg) = PgDatabase::create() else {
        return;
    };
    let project = Project::with_url(&pg.url);
    project.xtask(&["db-init"]).ok();
    project.write_migration(
        "V2__slow",
        "SELECT pg_sleep(1.5); CREATE TABLE notes (id BIGINT PRIMARY KEY);",
        Some("DROP TABLE notes;"),
    );
    project.write_migration(
        "V3__tags",
        "CREATE TABLE tags (id BIGINT PRIMARY KEY);",
        Some("DROP TABLE tags;"),
    );
    let upgrade = project
        .command("xtask")
        .arg("db-upgrade")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // While V2 runs (under the migration lock, "migr"), another process queues for the
    // lock and, once V2 commits, rolls the history back to 0 before V3 can start.
    let sleeping = "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query LIKE '%pg_sleep(1.5)%' AND pid <> pg_backend_pid()";
    wait_for_pg(&pg, sleeping, "1");
    let mut other = tests::pg_command("psql")
        .args(["--no-psqlrc", "-v", "ON_ERROR_STOP=1", "-d", &pg.url])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut sql = other.stdin.take().unwrap();
    writeln!(
        sql,
        "BEGIN; SELECT pg_advisory_xact_lock({}); DROP TABLE refinery_schema_history; COMMIT;",
        0x6d69_6772
    )
    .unwrap();
    drop(sql);
    assert!(other.wait().unwrap().success());
    let run = tests::Run::from(upgrade.wait_with_output().unwrap());
    let line = run.code(1).error_line();
    assert!(
        line.contains("another process changed the migration history")
            && line.contains("V3__tags was not applied"),
        "{line}"
    );
    assert_eq!(
        pg.execute("SELECT count(*) FROM pg_tables WHERE tablename = 'tags'"),
        "0"
    );
}

#[test]
fn db_backup_applies_backup_keep_and_backup_copy_to_like_the_schedule() {
    let project = Project::sqlite();
    project.xtask(&["db-init"]).ok();
    let dir = project.path().join("backups");
    // A missing copy directory is an error, and is not created; the backup stays.
    let missing = project.path().join("unmounted");
    let run = project.xtask_with(
        &["db-backup"],
        &[("DATABASE_BACKUP_COPY_TO", missing.to_str().unwrap())],
    );
    let error = run.code(1).error_line();
    assert!(
        error.contains("backup_copy_to") && error.contains("does not exist"),
        "{error}"
    );
    assert!(!missing.exists(), "the copy directory was created");
    assert_eq!(backups(&project).len(), 1);

    // backup_keep prunes both directories; the copy is the backup just taken.
    let offsite = project.path().join("offsite");
    std::fs::create_dir(&offsite).unwrap();
    let env = [
        ("DATABASE_BACKUP_COPY_TO", offsite.to_str().unwrap()),
        ("DATABASE_BACKUP_KEEP", "1"),
    ];
    for _ in 0..2 {
        let out = project.xtask_with(&["db-backup"], &env).ok().to_string();
        assert!(out.contains("copied to"), "{out}");
    }
    let kept = backups(&project);
    assert_eq!(kept.len(), 1);
    let copies = files_ending(&offsite, ".db");
    assert_eq!(
        copies
            .iter()
            .map(|p| p.file_name().unwrap().to_owned())
            .collect::<Vec<_>>(),
        [kept[0].file_name().unwrap().to_owned()]
    );
    // --keep wins over backup_keep.
    project.xtask_with(&["db-backup", "--keep", "3"], &env).ok();
    assert_eq!(backups(&project).len(), 2);
    assert_eq!(files_ending(&offsite, ".db").len(), 2);
    assert_eq!(tests::debris(&dir), Vec::<String>::new());
}

#[test]
fn db_reset_runs_an_enum_value_used_by_a_later_migration_and_puts_back_a_failed_one() {
    let Some(pg) = PgDatabase::create() else {
        return;
    };
    let project = Project::with_url(&pg.url);
    project.write_mood_migrations();
    project.xtask(&["db-init"]).ok();
    pg.execute("INSERT INTO person (id) VALUES (1)");
    project.xtask(&["db-reset", "-y"]).ok();
    assert_eq!(pg.execute("SELECT count(*) FROM person"), "0");
    assert_eq!(
        pg.execute("SELECT count(*) FROM refinery_schema_history"),
        "4"
    );

    pg.execute("INSERT INTO person (id) VALUES (2)");
    project.write_migration(
        "V5__broken",
        "CREATE TABLE later (x INTEGER); SELECT 1 / 0;",
        Some("DROP TABLE later;"),
    );
    let line = project
        .xtask(&["db-reset", "-y"])
        .code(1)
        .error_line()
        .to_string();
    assert!(line.contains("V5__broken"), "{line}");
    assert!(line.contains("put back as it was"), "{line}");
    assert_eq!(pg.execute("SELECT id || ' ' || m FROM person"), "2 happy");
    assert_eq!(
        pg.execute("SELECT max(version) FROM refinery_schema_history"),
        "4"
    );

    let line = project
        .xtask(&["db-reset", "-y", "--no-backup"])
        .code(1)
        .error_line()
        .to_string();
    assert!(line.contains("emptied and is now at version 4"), "{line}");
    assert_eq!(pg.execute("SELECT count(*) FROM person"), "0");
}

#[test]
fn a_migration_that_changes_its_session_does_not_break_what_follows() {
    let Some(pg) = PgDatabase::create() else {
        return;
    };
    let project = Project::with_url(&pg.url);
    project.xtask(&["db-init"]).ok();
    // Each one leaves its session changed, up and down: without a reset, its history row
    // (or the next migration) would land in another schema, time out or lack privileges.
    project.write_migration(
        "V2__schema",
        "CREATE SCHEMA other;\nSET search_path = other;\nCREATE TABLE inside (x INT);\n",
        Some("DROP SCHEMA other CASCADE;\nSET search_path = other;\n"),
    );
    project.write_migration(
        "V3__timeout",
        "CREATE TABLE plain (x INT);\nSET statement_timeout = 1;\n",
        Some("DROP TABLE plain;\nSET statement_timeout = 1;\n"),
    );
    project.write_migration(
        "V4__role",
        "CREATE TABLE owned (x INT);\nSET ROLE pg_read_all_data;\n",
        Some("DROP TABLE owned;\nSET ROLE pg_read_all_data;\n"),
    );
    project.write_migration(
        "V5__last",
        "SELECT pg_sleep(0.05);\nCREATE TABLE last (x INT);\n",
        Some("SELECT pg_sleep(0.05);\nDROP TABLE last;\n"),
    );
    project.xtask(&["db-upgrade"]).ok();
    assert_eq!(
        pg.execute("SELECT string_agg(version::text, ',' ORDER BY version) FROM public.refinery_schema_history"),
        "1,2,3,4,5"
    );
    assert_eq!(
        pg.execute("SELECT string_agg(schemaname || '.' || tablename || ':' || tableowner, ',' ORDER BY tablename) FROM pg_tables WHERE tablename IN ('inside', 'plain', 'owned', 'last', 'refinery_schema_history')"),
        "other.inside:postgres,public.last:postgres,public.owned:postgres,public.plain:postgres,public.refinery_schema_history:postgres"
    );
    project.xtask(&["db-status"]).ok();
    project.xtask(&["db-downgrade", "--to", "1", "--yes"]).ok();
    assert_eq!(
        pg.execute("SELECT string_agg(version::text, ',') FROM public.refinery_schema_history"),
        "1"
    );
    assert_eq!(
        pg.execute("SELECT count(*) FROM pg_namespace WHERE nspname = 'other'"),
        "0"
    );
}

#[test]
fn a_migration_cut_short_by_its_own_statement_timeout_says_so() {
    let Some(pg) = PgDatabase::create() else {
        return;
    };
    let project = Project::with_url(&pg.url);
    project.xtask(&["db-init"]).ok();
    project.write_migration(
        "V2__hasty",
        "CREATE TABLE t (x INT);\nSET statement_timeout = 1;\nSELECT pg_sleep(0.5);\n",
        Some("DROP TABLE t;\n"),
    );
    let run = project.xtask(&["db-upgrade"]);
    let line = run.code(1).error_line();
    assert!(
        line.contains("V2__hasty")
            && line.contains("own `SET statement_timeout` at line 2")
            && !line.contains("(at line 1)")
            && !line.contains("raise databases.main.statement_timeout_ms"),
        "{line}"
    );
    assert_eq!(
        pg.execute("SELECT count(*) FROM pg_tables WHERE tablename = 't'"),
        "0"
    );
}

#[test]
fn a_no_transaction_migration_creates_and_drops_indexes_concurrently() {
    let Some(pg) = PgDatabase::create() else {
        return;
    };
    let project = Project::with_url(&pg.url);
    project.xtask(&["db-init"]).ok();
    project.write_migration(
        "V2__big",
        "CREATE TABLE big (x INT, y INT);\nINSERT INTO big SELECT g, g FROM generate_series(1, 1000) g;\n",
        Some("DROP TABLE big;\n"),
    );
    // Two statements: sent as one script, PostgreSQL would run them in one transaction.
    project.write_migration(
        "V3__indexes",
        "-- Indexes without blocking writes.\n-- db: no-transaction\nCREATE INDEX CONCURRENTLY big_x ON big (x);\nCREATE INDEX CONCURRENTLY big_y ON big (y);\n",
        Some("-- db: no-transaction\nDROP INDEX CONCURRENTLY big_y;\nDROP INDEX CONCURRENTLY big_x;\n"),
    );
    project.xtask(&["db-upgrade"]).ok();
    let valid = "SELECT count(*) FILTER (WHERE indisvalid) || '/' || count(*) FROM pg_index WHERE indexrelid::regclass::text IN ('big_x', 'big_y')";
    assert_eq!(pg.execute(valid), "2/2");
    let versions =
        "SELECT string_agg(version::text, ',' ORDER BY version) FROM refinery_schema_history";
    assert_eq!(pg.execute(versions), "1,2,3");
    project.xtask(&["db-downgrade", "--to", "2", "--yes"]).ok();
    assert_eq!(pg.execute(valid), "0/0");
    assert_eq!(pg.execute(versions), "1,2");
    // db-check's round trip applies and reverts it the same way, on its scratch database.
    project.xtask(&["db-check"]).ok();
    // A failure part-way keeps what ran before it and is recorded as failed: db-status
    // says so (exit 5), and nothing runs until it is resolved.
    project.write_migration(
        "V3__indexes",
        "-- db: no-transaction\nCREATE INDEX CONCURRENTLY big_x ON big (x);\nINSERT INTO big (nope) VALUES (1);\n",
        Some("-- db: no-transaction\nDROP INDEX CONCURRENTLY IF EXISTS big_x;\n"),
    );
    let run = project.xtask(&["db-upgrade"]);
    let line = run.code(1).error_line();
    assert!(
        line.contains("V3__indexes")
            && line.contains("(at line 3)")
            && line.contains("outside a transaction"),
        "{line}"
    );
    assert_eq!(pg.execute(valid), "1/1");
    let applied = "SELECT string_agg(version::text, ',' ORDER BY version) FROM refinery_schema_history WHERE applied_on NOT LIKE 'failed%'";
    assert_eq!(pg.execute(applied), "1,2");
    let status = project.xtask(&["db-status"]);
    status.code(5);
    assert!(
        status.stdout.contains("FAILED PART-WAY"),
        "{}",
        status.stdout
    );
    project.write_migration(
        "V4__later",
        "CREATE TABLE later (x BIGINT);",
        Some("DROP TABLE later;"),
    );
    let blocked = project.xtask(&["db-upgrade"]);
    let line = blocked.code(1).error_line();
    assert!(
        line.contains("V3__indexes failed part-way") && line.contains("db-resolve 3 --retry"),
        "{line}"
    );
    assert_eq!(
        pg.execute("SELECT count(*) FROM pg_tables WHERE tablename = 'later'"),
        "0"
    );
    // Made idempotent and retried: applied, and V4 after it.
    project.write_migration(
        "V3__indexes",
        "-- db: no-transaction\nCREATE INDEX CONCURRENTLY IF NOT EXISTS big_x ON big (x);\nALTER TABLE big ADD COLUMN IF NOT EXISTS nope BIGINT;\n",
        Some("-- db: no-transaction\nDROP INDEX CONCURRENTLY IF EXISTS big_x;\n"),
    );
    let resolve = project.xtask(&["db-resolve", "3", "--retry"]);
    assert!(resolve.ok().contains("V3__indexes"));
    project.xtask(&["db-upgrade"]).ok();
    assert_eq!(pg.execute(applied), "1,2,3,4");
    project.xtask(&["db-status"]).ok();
    // Nothing failed: nothing to resolve.
    project.xtask(&["db-resolve", "3", "--applied"]).code(1);
}

#[test]
fn a_no_transaction_migration_runs_vacuum_on_sqlite() {
    let project = Project::sqlite();
    project.xtask(&["db-init"]).ok();
    project.write_migration(
        "V2__vacuum",
        "-- db: no-transaction\nCREATE TABLE a (x INTEGER);\nVACUUM;\n",
        Some("-- db: no-transaction\nDROP TABLE a;\nVACUUM;\n"),
    );
    project.xtask(&["db-upgrade"]).ok();
    assert_eq!(history(&project).len(), 2);
    project.xtask(&["db-downgrade", "--to", "1", "--yes"]).ok();
    assert_eq!(history(&project).len(), 1);
}

#[test]
fn a_migration_failed_part_way_fails_readiness_until_resolved() {
    let Some(pg) = PgDatabase::create() else {
        return;
    };
    let project = Project::with_url(&pg.url);
    let server = Server::start(&project, &[]);
    assert_eq!(server.get("/health/db").status, 200);
    project.write_migration(
        "V2__half",
        "-- db: no-transaction\nCREATE TABLE half (x BIGINT);\nSELECT nope FROM half;\n",
        Some("-- db: no-transaction\nDROP TABLE IF EXISTS half;\n"),
    );
    project.xtask(&["db-upgrade"]).code(1);
    let response = server.get("/health/db");
    assert_eq!(response.status, 503, "{}", response.body);
    assert!(
        response.body.contains("failed part-way"),
        "{}",
        response.body
    );
    assert_eq!(response.json()["schema"]["state"], "failed");
    project.xtask(&["db-resolve", "2", "--applied"]).ok();
    project.xtask(&["db-status"]).ok();
}

#[test]
fn db_reset_on_sqlite_runs_a_no_transaction_migration_and_puts_back_a_failed_one() {
    let project = Project::sqlite();
    project.write_migration(
        "V2__vacuumed",
        "-- db: no-transaction\nCREATE TABLE kept (x INTEGER);\nVACUUM;\n",
        Some("-- db: no-transaction\nDROP TABLE kept;\n"),
    );
    project.xtask(&["db-init"]).ok();
    sqlite(&project.db_path(), "INSERT INTO kept VALUES (7)");
    project.xtask(&["db-reset", "-y"]).ok();
    assert_eq!(
        sqlite(&project.db_path(), "SELECT count(*) FROM kept"),
        ["0"]
    );
    sqlite(&project.db_path(), "INSERT INTO kept VALUES (8)");
    // A later migration that fails: the safety backup is put back, the row with it.
    project.write_migration("V3__broken", "CREATE TABLE kept (x INTEGER);", None);
    let run = project.xtask(&["db-reset", "-y"]);
    let line = run.code(1).error_line();
    assert!(line.contains("put back as it was"), "{line}");
    assert_eq!(sqlite(&project.db_path(), "SELECT x FROM kept"), ["8"]);
}

#[test]
fn a_no_transaction_migration_failing_after_another_is_recorded_as_failed() {
    let project = Project::sqlite();
    project.xtask(&["db-init"]).ok();
    // Two in one run: the second fails in its own statements, after the first succeeded.
    project.write_migration(
        "V2__first",
        "-- db: no-transaction\nCREATE TABLE first (x INTEGER);\n",
        Some("-- db: no-transaction\nDROP TABLE first;\n"),
    );
    project.write_migration(
        "V3__second",
        "-- db: no-transaction\nCREATE TABLE second (x INTEGER);\nSELEC 1;\n",
        Some("-- db: no-transaction\nDROP TABLE IF EXISTS second;\n"),
    );
    let run = project.xtask(&["db-upgrade"]);
    let line = run.code(1).error_line();
    assert!(
        line.contains("V3__second") && line.contains("db-resolve 3 --retry"),
        "{line}"
    );
    assert!(!line.contains("recording it"), "{line}");
    project.xtask(&["db-status"]).code(5);
}

#[test]
fn db_downgrade_without_a_down_script_refuses_before_asking_or_backing_up() {
    let project = Project::sqlite();
    project.xtask(&["db-init"]).ok();
    project.write_migration("V2__one_way", "CREATE TABLE one_way (x INTEGER);", None);
    project.xtask(&["db-upgrade"]).ok();
    let before = backups(&project).len();
    for args in [&["db-downgrade", "-y"][..], &["db-downgrade", "--dry-run"]] {
        let run = project.xtask(args);
        let line = run.code(1).error_line();
        assert!(
            line.contains("V2__one_way") && line.contains("no down script"),
            "{line}"
        );
    }
    assert_eq!(
        backups(&project).len(),
        before,
        "no safety backup was taken"
    );
    assert_eq!(history(&project).len(), 2);
}

#[test]
fn db_check_on_postgres_needs_no_configured_database() {
    let Some(pg) = PgDatabase::create() else {
        return;
    };
    // A database of that server that does not exist (CI checks the migrations only).
    let missing = format!("{}_never", pg.name());
    let url = pg.url.replace(pg.name(), &missing);
    let project = Project::with_url(&url);
    let run = project.xtask(&["db-check"]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    let exists = tests::psql(
        &tests::postgres_admin_url(),
        &format!("SELECT count(*) FROM pg_database WHERE datname = '{missing}'"),
    )
    .unwrap();
    assert_eq!(exists, "0", "db-check created no database");
}

#[test]
fn a_down_script_of_comments_only_is_no_down_script() {
    let project = Project::sqlite();
    project.xtask(&["db-init"]).ok();
    project.write_migration(
        "V2__kept",
        "CREATE TABLE kept (x INTEGER);",
        Some("-- nothing to undo here\n"),
    );
    project.xtask(&["db-upgrade"]).ok();
    let run = project.xtask(&["db-downgrade", "-y"]);
    let line = run.code(1).error_line();
    assert!(
        line.contains("V2__kept")
            && line.contains("V2__kept.down.sql has no SQL statement")
            && line.contains("--accept-empty-down"),
        "{line}"
    );
    assert_eq!(history(&project).len(), 2, "nothing was reverted");
    let check = project.xtask(&["db-check"]);
    assert!(
        format!("{}{}", check.stdout, check.stderr).contains("comments only"),
        "{}{}",
        check.stdout,
        check.stderr
    );
    // Accepted knowingly: the history row goes, the table stays.
    let run = project.xtask(&["db-downgrade", "-y", "--no-backup", "--accept-empty-down"]);
    run.ok();
    assert!(run.stdout.contains("reverted V2__kept"), "{}", run.stdout);
    assert_eq!(history(&project).len(), 1);
    assert_eq!(
        tests::sqlite(&project.db_path(), "SELECT count(*) FROM kept"),
        ["0"]
    );
    if let Some(pg) = PgDatabase::create() {
        let on_pg = [("DATABASE_URL", pg.url.as_str())];
        project.xtask_with(&["db-init"], &on_pg).ok();
        project
            .xtask_with(
                &["db-downgrade", "-y", "--no-backup", "--accept-empty-down"],
                &on_pg,
            )
            .ok();
        assert_eq!(
            pg.execute("SELECT count(*) FROM refinery_schema_history"),
            "1"
        );
    }
}

#[test]
fn an_engine_message_with_line_breaks_stays_one_line() {
    let Some(pg) = PgDatabase::create() else {
        return;
    };
    let project = Project::with_url(&pg.url);
    project.write_migration(
        "V2__raise",
        "DO $$ BEGIN RAISE EXCEPTION E'line one\\nline two' USING HINT = E'hint1\\nhint2'; END $$;",
        Some("SELECT 1;"),
    );
    let run = project.xtask(&["db-init"]);
    let line = run.code(1).error_line().to_string();
    assert!(
        line.contains("line one / line two") && line.contains("hint1 / hint2"),
        "{line}"
    );
    assert!(
        !run.stderr.lines().any(|l| l == "line two" || l == "hint2"),
        "{}",
        run.stderr
    );
}
