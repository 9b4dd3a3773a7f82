//! Histories shaped like the ones real services ship (`tests::postgres_history`): an
//! extension, enum values added and used later, identity columns, views, functions,
//! triggers, GIN indexes, data migrations — through every command on the real server.

use tests::{PgDatabase, Project, postgres_history, write_history};

/// A project on `pg` whose migrations are the first `count` of the generated history.
fn project_with_history(pg: &PgDatabase, count: usize) -> Project {
    let project = Project::with_url(&pg.url);
    let dir = project.path().join("migrations");
    std::fs::remove_dir_all(&dir).unwrap();
    write_history(&dir, &postgres_history(count));
    project
}

/// The number of tables in the database's public schema.
fn tables(pg: &PgDatabase) -> String {
    pg.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")
}

#[test]
fn a_300_migration_postgres_history_passes_every_command() {
    let Some(pg) = PgDatabase::create() else {
        return;
    };
    let project = project_with_history(&pg, 300);
    project.xtask(&["db-upgrade"]).ok();
    assert!(
        project.xtask(&["db-status"]).ok().contains("version 300"),
        "db-status after the upgrade"
    );
    // 43 tables of items (and accounts, and the history), seeded with 20 rows each.
    assert_eq!(tables(&pg), "45");
    assert_eq!(pg.execute("SELECT count(*) FROM items_0"), "20");
    let state = "SELECT state FROM items_3 LIMIT 1";
    let valid = "SELECT bool_and(indisvalid)::text FROM pg_index WHERE indexrelid::regclass::text LIKE '%_updated'";
    assert_eq!(
        pg.execute(valid),
        "true",
        "the concurrent indexes are valid"
    );
    assert_eq!(pg.execute(state), "s3");

    project.xtask(&["db-backup"]).ok();
    let backup = tests::newest_backup(&project.path().join("backups"), ".dump");

    project.xtask(&["db-downgrade", "--to", "0", "-y"]).ok();
    assert_eq!(tables(&pg), "0", "every table reverted");
    project.xtask(&["db-upgrade"]).ok();
    assert_eq!(pg.execute("SELECT count(*) FROM items_41"), "20");

    project.xtask(&["db-reset", "-y"]).ok();
    assert_eq!(tables(&pg), "45");
    assert_eq!(pg.execute(state), "s3");

    pg.execute("DELETE FROM items_0");
    project
        .xtask(&["db-restore", &backup.to_string_lossy(), "-y"])
        .ok();
    assert_eq!(pg.execute("SELECT count(*) FROM items_0"), "20");

    // Into a database the copy creates: migrated one transaction per migration, as
    // db-upgrade does (an enum value is used by a later migration), then copied.
    let target = format!("{}_copy", pg.name());
    let url = pg.url.replace(pg.name(), &target);
    let copied = project.xtask(&["db-copy", "--to", &url]);
    let check = |sql: &str| tests::psql(&url, sql).unwrap_or_else(|e| e);
    let (items, copied_state) = (check("SELECT count(*) FROM items_41"), check(state));
    tests::psql(
        &tests::postgres_admin_url(),
        &format!("DROP DATABASE IF EXISTS {target} WITH (FORCE)"),
    )
    .ok();
    assert!(copied.ok().contains("every table verified"));
    assert_eq!((items.as_str(), copied_state.as_str()), ("20", "s3"));
}

#[test]
fn db_check_passes_a_prefix_of_the_postgres_history() {
    let Some(pg) = PgDatabase::create() else {
        return;
    };
    // Every shape of migration, twice: db-check's round trip is up, down, up each.
    let project = project_with_history(&pg, 15);
    let run = project.xtask(&["db-check"]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
}
