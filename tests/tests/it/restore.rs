//! SQLite restores keep what a user would expect of the live file: its owner and mode,
//! every committed transaction until the swap, and a staging area beside the database.
//! Retention picks what to restore from: the newest backups by the order they were
//! written, whatever a clock or an edited manifest says.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::PathBuf;

use tests::{PgDatabase, Project, sqlite};

fn notes_project() -> Project {
    let project = Project::sqlite();
    project.write_migration(
        "V2__notes",
        "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT NOT NULL);",
        Some("DROP TABLE notes;"),
    );
    project.xtask(&["db-init"]).ok();
    sqlite(
        &project.db_path(),
        "INSERT INTO notes (body) VALUES ('backed up')",
    );
    project
}

fn newest_backup(project: &Project, suffix: &str) -> PathBuf {
    tests::newest_backup(&project.path().join("backups"), suffix)
}

#[test]
fn a_restore_keeps_the_owner_and_mode_of_the_live_file_and_backups_stay_private() {
    let project = notes_project();
    let db = project.db_path();
    // A backup directory made by hand with the usual 0755 is made private.
    let dir = project.path().join("backups");
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    project.xtask(&["db-backup"]).ok();
    assert_eq!(std::fs::metadata(&dir).unwrap().mode() & 0o777, 0o700);
    let backup = newest_backup(&project, ".db");

    // The service user's file: owned by nobody, group-readable.
    std::os::unix::fs::chown(&db, Some(65534), Some(65534)).unwrap();
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o640)).unwrap();
    project
        .xtask(&["db-restore", backup.to_str().unwrap(), "-y"])
        .ok();
    let meta = std::fs::metadata(&db).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (65534, 65534), "owner kept");
    assert_eq!(meta.mode() & 0o777, 0o640, "mode kept");
    assert_eq!(sqlite(&db, "SELECT body FROM notes"), ["backed up"]);
    // Nothing the restore created locks the service user out: the in-use marker it
    // created, and the safety backup with its manifest, belong to the database's owner.
    let marker = std::fs::metadata(format!("{}.in-use", db.display())).unwrap();
    assert_eq!(marker.uid(), 65534, "in-use marker owner");
    let safety = newest_backup(&project, ".db");
    assert_eq!(std::fs::metadata(&safety).unwrap().uid(), 65534);
    assert_eq!(
        std::fs::metadata(format!("{}.json", safety.display()))
            .unwrap()
            .uid(),
        65534
    );
}

#[test]
fn a_shared_backup_directory_keeps_its_mode() {
    let project = notes_project();
    let shared = project.path().join("shared");
    std::fs::create_dir(&shared).unwrap();
    std::fs::write(shared.join("notes.txt"), "not a backup").unwrap();
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o1777)).unwrap();
    let run = project.xtask(&["db-backup", "--out", "shared"]);
    run.ok();
    assert!(run.stderr.contains("note: "), "{}", run.stderr);
    assert_eq!(std::fs::metadata(&shared).unwrap().mode() & 0o7777, 0o1777);
    let backup = std::fs::read_dir(&shared)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|e| e == "db"))
        .unwrap();
    assert_eq!(std::fs::metadata(backup).unwrap().mode() & 0o777, 0o600);
}

#[test]
fn a_gzip_backup_is_restored_without_the_system_temp_dir() {
    let project = notes_project();
    project.xtask(&["db-backup", "--compress"]).ok();
    let backup = newest_backup(&project, ".db.gz");
    sqlite(&project.db_path(), "DELETE FROM notes");
    let run = project.xtask_with(
        &["db-restore", backup.to_str().unwrap(), "-y", "--no-backup"],
        &[("TMPDIR", "/nonexistent/tmp")],
    );
    run.ok();
    assert_eq!(
        sqlite(&project.db_path(), "SELECT body FROM notes"),
        ["backed up"]
    );
    assert_eq!(tests::debris(project.path()), Vec::<String>::new());
}

#[test]
fn a_restore_never_throws_away_committed_transactions_still_in_the_wal() {
    let project = notes_project();
    let db = project.db_path();
    project.xtask(&["db-backup"]).ok();
    let backup = newest_backup(&project, ".db");

    // A reader keeps an old snapshot open, so new commits stay in the -wal.
    let reader = tests::SnapshotHolder::open(&db, "notes");
    sqlite(&db, "INSERT INTO notes (body) VALUES ('only in the wal')");

    let run = project.xtask_with(
        &["db-restore", backup.to_str().unwrap(), "-y", "--no-backup"],
        &[("DATABASE_BUSY_TIMEOUT_MS", "300")],
    );
    let line = run.error_line();
    assert!(line.contains("in use by another process"), "{line}");
    assert!(line.contains("nothing was changed"), "{line}");
    reader.close();
    assert_eq!(
        sqlite(&db, "SELECT body FROM notes ORDER BY id"),
        ["backed up", "only in the wal"]
    );
    assert_eq!(sqlite(&db, "PRAGMA integrity_check"), ["ok"]);
}

#[test]
fn a_restore_replaces_an_empty_live_file_and_keeps_it_aside() {
    let project = notes_project();
    let db = project.db_path();
    project.xtask(&["db-backup"]).ok();
    let backup = newest_backup(&project, ".db");
    // The outage the server reports: the live file was emptied.
    std::fs::File::create(&db).unwrap();
    let run = project.xtask(&["db-restore", backup.to_str().unwrap(), "-y"]);
    let out = run.ok();
    assert!(run.stderr.contains("is empty"), "{}", run.stderr);
    assert!(
        out.contains("kept the broken file as app.db.broken-"),
        "{out}"
    );
    assert_eq!(sqlite(&db, "SELECT body FROM notes"), ["backed up"]);
    let kept: Vec<_> = std::fs::read_dir(project.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("app.db.broken-")
        })
        .collect();
    assert_eq!(kept.len(), 1);
    assert_eq!(
        kept[0].metadata().unwrap().len(),
        0,
        "the evidence is kept as it was"
    );
}

#[test]
fn a_restore_through_a_symlinked_database_path_replaces_the_real_file() {
    let project = Project::sqlite();
    project.write_migration(
        "V2__notes",
        "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT NOT NULL);",
        Some("DROP TABLE notes;"),
    );
    std::fs::create_dir(project.path().join("real")).unwrap();
    let real = project.path().join("real/data.db");
    let env = [("DATABASE_URL", "sqlite://real/data.db")];
    project.xtask_with(&["db-init"], &env).ok();
    std::os::unix::fs::symlink(&real, project.db_path()).unwrap();
    sqlite(&real, "INSERT INTO notes (body) VALUES ('backed up')");
    project.xtask(&["db-backup"]).ok();
    sqlite(
        &real,
        "INSERT INTO notes (body) VALUES ('after the backup')",
    );

    // Backups go beside the database: the file the link points to.
    let backup = tests::newest_backup(&project.path().join("real/backups"), ".db");
    project
        .xtask(&["db-restore", backup.to_str().unwrap(), "-y", "--no-backup"])
        .ok();
    let link = std::fs::symlink_metadata(project.db_path()).unwrap();
    assert!(link.file_type().is_symlink(), "the link is kept");
    assert_eq!(
        sqlite(&real, "SELECT body FROM notes ORDER BY id"),
        ["backed up"],
        "the file the link points to was restored"
    );
}

/// `db-backup` with `args`; the backup it reports.
fn take_backup(project: &Project, args: &[&str]) -> PathBuf {
    let mut all = vec!["db-backup"];
    all.extend_from_slice(args);
    let run = project.xtask(&all);
    let out = run.ok();
    let name = out
        .lines()
        .find_map(|l| l.strip_prefix("backup ")?.split_whitespace().next())
        .unwrap_or_else(|| panic!("no backup reported: {out}"));
    project.path().join(name)
}

/// Rewrites `key` of a backup's manifest (`None` removes it), as a hand edit would.
fn edit_manifest(backup: &std::path::Path, key: &str, value: Option<&str>) {
    let path = format!("{}.json", backup.display());
    let mut manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let object = manifest.as_object_mut().unwrap();
    match value {
        Some(value) => object.insert(key.into(), value.into()),
        None => object.remove(key),
    };
    std::fs::write(&path, serde_json::to_string_pretty(&manifest).unwrap()).unwrap();
}

/// A string value of a backup's manifest.
fn manifest_value(backup: &std::path::Path, key: &str) -> String {
    let text = std::fs::read_to_string(format!("{}.json", backup.display())).unwrap();
    let manifest: serde_json::Value = serde_json::from_str(&text).unwrap();
    manifest[key].as_str().unwrap().to_string()
}

/// Names of the `.db` backups still in the project's backup directory.
fn names_left(project: &Project) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(project.path().join("backups"))
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".db"))
        .collect();
    names.sort();
    names
}

fn name(path: &std::path::Path) -> String {
    path.file_name().unwrap().to_string_lossy().into_owned()
}

#[test]
fn retention_keeps_the_newest_backups_whatever_the_clock_or_a_manifest_says() {
    let project = notes_project();
    let mut taken = Vec::new();
    for _ in 0..3 {
        taken.push(take_backup(&project, &[]));
    }
    // The first taken while the clock was two years ahead, the second's manifest edited.
    let created = manifest_value(&taken[0], "created_at");
    let year: u32 = created[..4].parse().unwrap();
    let two_years_ahead = format!("{}{}", year + 2, &created[4..]);
    edit_manifest(&taken[0], "created_at", Some(&two_years_ahead));
    edit_manifest(&taken[1], "created_at", Some("9999-12-31T00:00:00Z"));

    // Listed in the order they were written, the future dates flagged.
    let listing = project.xtask(&["db-backups"]).ok().to_string();
    let rows: Vec<&str> = listing.lines().filter(|l| l.contains(".db ")).collect();
    assert_eq!(rows.len(), 3, "{listing}");
    for (row, backup) in rows.iter().zip(&taken) {
        assert!(row.starts_with(&name(backup)), "{listing}");
    }
    assert!(
        rows[0].contains("DATED IN THE FUTURE")
            && rows[1].contains("DATED IN THE FUTURE")
            && !rows[2].contains("FUTURE"),
        "{listing}"
    );

    // --keep 3: the two written last and the one just taken stay.
    taken.push(take_backup(&project, &["--keep", "3"]));
    assert_eq!(
        names_left(&project),
        taken[1..].iter().map(|p| name(p)).collect::<Vec<_>>()
    );
    taken.push(take_backup(&project, &["--keep", "2"]));
    assert_eq!(
        names_left(&project),
        taken[3..].iter().map(|p| name(p)).collect::<Vec<_>>()
    );
}

#[test]
fn retention_of_backups_without_a_sequence_never_takes_a_future_date_for_the_newest() {
    let project = notes_project();
    let mut taken = Vec::new();
    for _ in 0..3 {
        taken.push(take_backup(&project, &[]));
    }
    // Backups of an older version, without a sequence; the oldest edited to 9999.
    for backup in &taken {
        edit_manifest(backup, "sequence", None);
    }
    edit_manifest(&taken[0], "created_at", Some("9999-12-31T00:00:00Z"));
    let new = take_backup(&project, &["--keep", "2"]);
    assert_eq!(names_left(&project), [name(&taken[2]), name(&new)]);
}

/// `xtask args` in `project`, killed and failed when it runs longer than 20 s.
fn xtask_bounded(project: &Project, args: &[&str]) -> tests::Run {
    let mut command = project.command("xtask");
    command.args(args);
    tests::run_with_deadline(command, std::time::Duration::from_secs(20))
        .unwrap_or_else(|| panic!("xtask {args:?} still ran after 20 s"))
}

/// Makes a FIFO at `path`.
fn mkfifo(path: &std::path::Path) {
    let status = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn a_fifo_named_like_a_backup_never_hangs_listing_pruning_or_restoring() {
    let project = notes_project();
    let real = take_backup(&project, &[]);
    let dir = project.path().join("backups");
    let fifo = dir.join("zz.db");
    mkfifo(&fifo);
    std::fs::copy(format!("{}.json", real.display()), dir.join("zz.db.json")).unwrap();
    edit_manifest_json(&fifo, "file", "zz.db".into());
    // And a backup whose manifest is a FIFO.
    let other = dir.join("yy.db");
    std::fs::copy(&real, &other).unwrap();
    mkfifo(&dir.join("yy.db.json"));

    let listing = xtask_bounded(&project, &["db-backups"]);
    let out = listing.ok();
    let row = out.lines().find(|l| l.starts_with("zz.db ")).unwrap();
    assert!(row.contains("not a regular file"), "{out}");

    let pruned = xtask_bounded(&project, &["db-backup", "--keep", "5"]);
    pruned.ok();
    assert!(fifo.exists() && real.exists());

    let restore = xtask_bounded(&project, &["db-restore", "backups/zz.db", "--yes"]);
    assert!(
        restore.code(1).error_line().contains("not a regular file"),
        "{}",
        restore.stderr
    );
    assert_eq!(
        sqlite(&project.db_path(), "SELECT body FROM notes"),
        ["backed up"]
    );
}

#[test]
fn a_backup_waits_for_a_held_directory_lock_says_so_and_gives_up() {
    let project = notes_project();
    take_backup(&project, &[]);
    let before = names_left(&project);
    let lock = project.path().join("backups/.lock");
    let mut holder = std::process::Command::new("flock")
        .arg(&lock)
        .args(["sleep", "30"])
        .spawn()
        .unwrap();
    // Wait (bounded) until the holder has the lock.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::process::Command::new("flock")
        .args(["--nonblock"])
        .arg(&lock)
        .arg("true")
        .status()
        .unwrap()
        .success()
    {
        assert!(
            std::time::Instant::now() < deadline,
            "flock never took the lock"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let run = xtask_bounded(&project, &["db-backup", "--wait", "1"]);
    holder.kill().ok();
    holder.wait().ok();
    assert!(
        run.stderr.contains("waiting (at most 1 s) for the lock"),
        "{}",
        run.stderr
    );
    let error = run.code(1).error_line();
    assert!(
        error.contains("is locked by another backup") && error.contains("nothing was changed"),
        "{error}"
    );
    assert_eq!(names_left(&project), before);
    assert_eq!(
        tests::debris(&project.path().join("backups")),
        Vec::<String>::new()
    );
}

/// Sets `key` of a backup's manifest to a JSON `value`, as a hand edit would.
fn edit_manifest_json(backup: &std::path::Path, key: &str, value: serde_json::Value) {
    let path = format!("{}.json", backup.display());
    let mut manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    manifest[key] = value;
    std::fs::write(&path, serde_json::to_string_pretty(&manifest).unwrap()).unwrap();
}

#[test]
fn retention_never_trusts_a_sequence_the_directory_never_handed_out() {
    let project = notes_project();
    let mut taken = Vec::new();
    for _ in 0..3 {
        taken.push(take_backup(&project, &[]));
    }
    // The oldest backup's manifest edited to claim the highest place.
    edit_manifest_json(&taken[0], "sequence", 99999.into());

    let listing = project.xtask(&["db-backups"]).ok().to_string();
    let rows: Vec<&str> = listing.lines().filter(|l| l.contains(".db ")).collect();
    assert_eq!(rows.len(), 3, "{listing}");
    assert!(rows[0].starts_with(&name(&taken[0])), "{listing}");
    assert!(
        rows[0].contains("SEQUENCE NEVER HANDED OUT HERE"),
        "{listing}"
    );
    assert!(!rows[2].contains("SEQUENCE"), "{listing}");

    let new = take_backup(&project, &["--keep", "2"]);
    assert_eq!(names_left(&project), [name(&taken[2]), name(&new)]);
    let sequence = serde_json::from_str::<serde_json::Value>(
        &std::fs::read_to_string(format!("{}.json", new.display())).unwrap(),
    )
    .unwrap()["sequence"]
        .clone();
    assert_eq!(
        sequence, 4,
        "numbered after the real backups, not the edited claim"
    );
}

#[test]
fn db_backups_says_what_it_checked_and_restore_refuses_what_a_manifest_only_claims() {
    let project = notes_project();
    let real = take_backup(&project, &[]);
    let dir = project.path().join("backups");
    let manifest = std::fs::read_to_string(format!("{}.json", real.display())).unwrap();
    // A copy beside it whose manifest still names the original, and claims v7.
    let copy = dir.join("copy.db");
    std::fs::copy(&real, &copy).unwrap();
    std::fs::write(dir.join("copy.db.json"), &manifest).unwrap();
    edit_manifest_json(&copy, "schema_version", 7.into());
    // Another copy, named by its manifest, but not verified when taken.
    let unverified = dir.join("unverified.db");
    std::fs::copy(&real, &unverified).unwrap();
    std::fs::write(dir.join("unverified.db.json"), &manifest).unwrap();
    edit_manifest_json(&unverified, "file", "unverified.db".into());
    edit_manifest_json(&unverified, "verified", false.into());

    let listing = project.xtask(&["db-backups"]).ok().to_string();
    let row = |file: &str| {
        listing
            .lines()
            .find(|l| l.starts_with(&format!("{file} ")))
            .unwrap_or_else(|| panic!("{listing}"))
            .to_string()
    };
    assert!(
        row("copy.db").contains("CORRUPT: its manifest describes another file"),
        "{listing}"
    );
    assert!(row("unverified.db").contains("NOT VERIFIED"), "{listing}");
    assert!(row(&name(&real)).ends_with("verified"), "{listing}");
    assert!(
        listing.contains("created and schema are the manifest's word"),
        "{listing}"
    );

    for (file, why) in [
        ("backups/copy.db", "describes another file"),
        ("backups/unverified.db", "not verified when it was taken"),
    ] {
        let run = project.xtask(&["db-restore", file, "--yes"]);
        let error = run.code(1).error_line();
        assert!(error.contains(why), "{file}: {error}");
    }
    // Kept (evidence), whatever --keep says.
    take_backup(&project, &["--keep", "1"]);
    assert!(copy.exists() && unverified.exists());
    assert_eq!(
        sqlite(&project.db_path(), "SELECT body FROM notes"),
        ["backed up"]
    );
}

/// A history that creates an extension, as real PostgreSQL histories do.
fn trigram_project(pg: &PgDatabase) -> Project {
    let project = Project::with_url(&pg.url);
    project.write_migration(
        "V2__ext",
        "CREATE EXTENSION IF NOT EXISTS pg_trgm;\n\
         CREATE TABLE t (id BIGINT NOT NULL, s TEXT, PRIMARY KEY (id));\n\
         CREATE INDEX t_s ON t USING gin (s gin_trgm_ops);",
        Some("DROP TABLE t;\nDROP EXTENSION pg_trgm;"),
    );
    project
}

#[test]
fn extensions_survive_reset_backup_restore_check_and_copy_on_postgres() {
    let Some(pg) = PgDatabase::create() else {
        return;
    };
    let project = trigram_project(&pg);
    project.xtask(&["db-init"]).ok();
    pg.execute("INSERT INTO t VALUES (1, 'gone')");
    project.xtask(&["db-reset", "-y"]).ok();
    assert_eq!(pg.execute("SELECT count(*) FROM t"), "0");
    assert_eq!(
        pg.execute("SELECT count(*) FROM pg_extension WHERE extname = 'pg_trgm'"),
        "1",
        "the migrations created the extension again"
    );

    pg.execute("INSERT INTO t VALUES (1, 'kept')");
    project.xtask(&["db-backup"]).ok();
    let backup = newest_backup(&project, ".dump");
    pg.execute("DELETE FROM t; CREATE TABLE stray (x INTEGER)");
    project
        .xtask(&["db-restore", backup.to_str().unwrap(), "-y"])
        .ok();
    assert_eq!(pg.execute("SELECT s FROM t WHERE s % 'kept'"), "kept");
    assert_eq!(pg.execute("SELECT to_regclass('stray') IS NULL"), "t");

    let run = project.xtask(&["db-check"]);
    assert!(run.ok().contains("ok:"), "{}", run.stdout);

    let Some(target) = PgDatabase::create() else {
        return;
    };
    project.xtask(&["db-copy", "--to", &target.url]).ok();
    assert_eq!(target.execute("SELECT s FROM t"), "kept");
    target.execute("UPDATE t SET s = 'changed'");
    project
        .xtask(&["db-copy", "--to", &target.url, "--force", "--yes"])
        .ok();
    assert_eq!(target.execute("SELECT s FROM t WHERE s % 'kept'"), "kept");
}
