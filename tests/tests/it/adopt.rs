//! Adopting a database this tool did not build (`db-baseline`): made by diesel, by sqlx,
//! or by hand, on both engines.

use tests::{PgDatabase, Project, sqlite};

/// Migrations V1 (users), V2 (posts), V3 (a column added to users), in `project`.
fn three_migrations(project: &Project) {
    let dir = project.path().join("migrations");
    std::fs::remove_dir_all(&dir).unwrap();
    std::fs::create_dir(&dir).unwrap();
    project.write_migration(
        "V1__users",
        "CREATE TABLE users (id BIGINT NOT NULL, name TEXT NOT NULL, PRIMARY KEY (id));",
        Some("DROP TABLE users;"),
    );
    project.write_migration(
        "V2__posts",
        "CREATE TABLE posts (id BIGINT NOT NULL, user_id BIGINT NOT NULL REFERENCES users (id), \
         body TEXT, PRIMARY KEY (id));\nCREATE INDEX posts_user ON posts (user_id);",
        Some("DROP TABLE posts;"),
    );
    project.write_migration(
        "V3__email",
        "ALTER TABLE users ADD COLUMN email TEXT;",
        Some("ALTER TABLE users DROP COLUMN email;"),
    );
}

/// What another tool built: the schema of V1 and V2, and a row.
const BUILT_ELSEWHERE: &str = "CREATE TABLE users (id BIGINT NOT NULL, name TEXT NOT NULL, PRIMARY KEY (id)); \
     CREATE TABLE posts (id BIGINT NOT NULL, user_id BIGINT NOT NULL REFERENCES users (id), body TEXT, PRIMARY KEY (id)); \
     CREATE INDEX posts_user ON posts (user_id); \
     INSERT INTO users VALUES (1, 'ada');";

#[test]
fn a_diesel_built_sqlite_database_is_adopted_and_then_upgrades() {
    let project = Project::sqlite();
    three_migrations(&project);
    let db = project.db_path();
    // An empty file is an empty SQLite database.
    std::fs::File::create(&db).unwrap();
    sqlite(
        &db,
        &format!(
            "CREATE TABLE __diesel_schema_migrations (version VARCHAR(50) PRIMARY KEY NOT NULL, \
             run_on TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP); \
             INSERT INTO __diesel_schema_migrations (version) VALUES ('20230101000000'), ('20230202000000'); \
             {BUILT_ELSEWHERE}"
        ),
    );
    let schema =
        "SELECT type || ' ' || name || ' ' || coalesce(sql, '') FROM sqlite_schema ORDER BY name";
    let before = sqlite(&db, schema);
    // db-status and db-upgrade say what the database is and how to adopt it.
    let status = project.xtask(&["db-status"]);
    assert_eq!(status.code, 2);
    assert!(
        status.stdout.contains(
            "diesel's history is there (__diesel_schema_migrations, at version 20230202000000)"
        ) && status.stdout.contains("db-baseline VERSION"),
        "{}",
        status.stdout
    );
    let line = project
        .xtask(&["db-upgrade"])
        .code(1)
        .error_line()
        .to_string();
    assert!(
        line.contains("table users already exists") && line.contains("db-baseline"),
        "{line}"
    );

    // At the wrong version: the differences, and nothing changed.
    let run = project.xtask(&["db-baseline", "3", "-y"]);
    assert!(run.code(1).error_line().contains("nothing was changed"));
    assert!(run.stderr.contains("-     email TEXT,"), "{}", run.stderr);
    // Without a terminal it asks and stops.
    project.xtask(&["db-baseline", "2"]).code(1);
    assert_eq!(
        sqlite(&db, schema),
        before,
        "the failed upgrade and the refusals changed nothing"
    );

    let run = project.xtask(&["db-baseline", "2", "-y"]);
    assert!(
        run.ok().contains("recorded 2 migration(s) as applied"),
        "{}",
        run.stdout
    );
    assert!(
        project
            .xtask(&["db-upgrade"])
            .ok()
            .contains("applied V3__email")
    );
    assert_eq!(
        sqlite(&db, "SELECT name || ' ' || coalesce(email, '-') FROM users").join(""),
        "ada -"
    );
    assert_eq!(
        sqlite(&db, "SELECT count(*) FROM __diesel_schema_migrations").join(""),
        "2",
        "diesel's history is left as it is"
    );
    // Adopted once: a second baseline is refused.
    let line = project
        .xtask(&["db-baseline", "2", "-y"])
        .code(1)
        .error_line()
        .to_string();
    assert!(
        line.contains("already has a migration history (version 3)"),
        "{line}"
    );
}

#[test]
fn hand_made_and_sqlx_built_postgres_databases_are_adopted_or_refused() {
    let Some(pg) = PgDatabase::create() else {
        return;
    };
    let project = Project::with_url(&pg.url);
    three_migrations(&project);
    pg.execute(&format!(
        "CREATE TABLE _sqlx_migrations (version BIGINT PRIMARY KEY, description TEXT NOT NULL, \
         installed_on TIMESTAMPTZ NOT NULL DEFAULT now(), success BOOLEAN NOT NULL, \
         checksum BYTEA NOT NULL, execution_time BIGINT NOT NULL); \
         INSERT INTO _sqlx_migrations VALUES (20240101, 'init', now(), true, '\\x00', 1); \
         {BUILT_ELSEWHERE}"
    ));
    let status = project.xtask(&["db-status"]);
    assert!(
        status
            .stdout
            .contains("sqlx's history is there (_sqlx_migrations, at version 20240101)"),
        "{}",
        status.stdout
    );
    project.xtask(&["db-baseline", "2", "-y"]).ok();
    project.xtask(&["db-upgrade"]).ok();
    assert_eq!(
        pg.execute("SELECT name || ' ' || coalesce(email, '-') FROM users"),
        "ada -"
    );
    assert_eq!(
        pg.execute(
            "SELECT string_agg(version::text, ',' ORDER BY version) FROM refinery_schema_history"
        ),
        "1,2,3"
    );

    // A hand-made database whose posts table lacks its index: refused, unchanged.
    let Some(other) = PgDatabase::create() else {
        return;
    };
    other.execute(&BUILT_ELSEWHERE.replace("CREATE INDEX posts_user ON posts (user_id); ", ""));
    let run = project.xtask_with(&["db-baseline", "2", "-y"], &[("DATABASE_URL", &other.url)]);
    assert!(run.code(1).error_line().contains("nothing was changed"));
    assert!(run.stderr.contains("posts_user"), "{}", run.stderr);
    assert_eq!(
        other.execute("SELECT count(*) FROM pg_tables WHERE tablename = 'refinery_schema_history'"),
        "0"
    );
}
