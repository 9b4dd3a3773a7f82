//! `db-schema`: the declared schema written from the migrations, the same on SQLite and
//! PostgreSQL, checked by `--check` and `db-check`, and bad declared schemas named by
//! file and line.

use tests::{PgDatabase, Project, sqlite};

const RICH: &str = "
CREATE TABLE users (
    id BIGINT PRIMARY KEY,
    email VARCHAR(200) NOT NULL UNIQUE,
    name TEXT NOT NULL DEFAULT 'anon',
    score INTEGER DEFAULT -1,
    active BOOLEAN NOT NULL DEFAULT FALSE,
    created_at TIMESTAMPTZ DEFAULT CURRENT_TIMESTAMP,
    ratio NUMERIC(5, 2) DEFAULT 0.5
);
CREATE INDEX users_name ON users (name);
CREATE UNIQUE INDEX users_name_email ON users (name, email);
CREATE TABLE memberships (
    user_id BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    team TEXT NOT NULL,
    PRIMARY KEY (user_id, team)
);
";

fn rich_project() -> Project {
    let project = Project::sqlite();
    project.write_migration(
        "V2__rich",
        RICH,
        Some("DROP TABLE memberships; DROP TABLE users;"),
    );
    project
}

fn schema_file(project: &Project) -> String {
    std::fs::read_to_string(project.path().join("migrations/schema.sql")).unwrap()
}

#[test]
fn the_declared_schema_is_the_same_file_on_both_engines() {
    let project = rich_project();
    project.xtask(&["db-schema"]).ok();
    let from_sqlite = schema_file(&project);
    for expected in [
        "CREATE TABLE users (",
        "    email VARCHAR(200) NOT NULL,",
        "    score INTEGER DEFAULT -1,",
        "    ratio NUMERIC(5,2) DEFAULT 0.5,",
        "    UNIQUE (email)",
        "CREATE UNIQUE INDEX users_name_email ON users (name, email);",
        "    FOREIGN KEY (user_id) REFERENCES users (id) ON DELETE CASCADE",
    ] {
        assert!(from_sqlite.contains(expected), "{expected}\n{from_sqlite}");
    }
    let check = project.xtask(&["db-schema", "--check"]);
    assert!(check.ok().contains("agrees with the migrations"));

    let Some(pg) = PgDatabase::create() else {
        return;
    };
    let on_pg = [("DATABASE_URL", pg.url.as_str())];
    project.xtask_with(&["db-schema", "--check"], &on_pg).ok();
    project.xtask_with(&["db-schema"], &on_pg).ok();
    assert_eq!(schema_file(&project), from_sqlite, "byte for byte");
}

#[test]
fn drift_fails_the_check_and_db_check() {
    let project = rich_project();
    project.xtask(&["db-schema"]).ok();
    let path = project.path().join("migrations/schema.sql");
    let edited = schema_file(&project).replace(
        "    team TEXT,",
        "    team TEXT,\n    role TEXT NOT NULL DEFAULT 'member',",
    );
    std::fs::write(&path, edited).unwrap();
    let run = project.xtask(&["db-schema", "--check"]);
    assert!(
        run.code(1)
            .error_line()
            .contains("differs from the schema the migrations produce")
    );
    assert!(
        run.stdout
            .contains("-     role TEXT NOT NULL DEFAULT 'member',"),
        "{}",
        run.stdout
    );
    let check = project.xtask(&["db-check"]);
    check.code(1);
    assert!(
        check.stdout.contains("migrations/schema.sql: differs"),
        "{}",
        check.stdout
    );
    // Written again from the migrations, it agrees.
    project.xtask(&["db-schema"]).ok();
    project.xtask(&["db-check"]).ok();
}

#[test]
fn bad_declared_schemas_name_the_file_and_line() {
    let project = rich_project();
    project.xtask(&["db-schema"]).ok();
    let path = project.path().join("migrations/schema.sql");
    let good = schema_file(&project);
    let line_of =
        |needle: &str, text: &str| text.lines().position(|l| l.contains(needle)).unwrap() + 1;
    let cases = [
        (
            good.replace("    team TEXT,", "    team TEXT NOT NUL,"),
            "NOT NUL,",
            "syntax error",
        ),
        (
            format!("{good}\nDELETE FROM users;\n"),
            "DELETE FROM",
            "only CREATE TABLE",
        ),
        (
            good.replace("    team TEXT,", "    team DATETIME,"),
            "DATETIME",
            "PostgreSQL does not have; use TIMESTAMP",
        ),
    ];
    let pg = PgDatabase::create();
    for (text, needle, reason) in &cases {
        std::fs::write(&path, text).unwrap();
        let line = line_of(needle, text);
        let error = project
            .xtask(&["db-schema", "--check"])
            .error_line()
            .to_string();
        assert!(error.contains("migrations/schema.sql, line"), "{error}");
        assert!(error.contains(reason), "{error}");
        if *needle != "NOT NUL," {
            // SQLite names the statement's first line; the others name the line itself.
            assert!(error.contains(&format!("line {line}:")), "{error}");
        }
        if let Some(pg) = &pg {
            let error = project
                .xtask_with(&["db-schema", "--check"], &[("DATABASE_URL", &pg.url)])
                .error_line()
                .to_string();
            assert!(
                error.contains(&format!("migrations/schema.sql, line {line}:")),
                "PostgreSQL: {error}"
            );
        }
    }
}

#[test]
fn from_db_describes_a_database_made_by_hand() {
    let project = Project::sqlite();
    project.xtask(&["db-init"]).ok();
    sqlite(
        &project.db_path(),
        "CREATE TABLE legacy (id INTEGER PRIMARY KEY, label TEXT NOT NULL DEFAULT 'x'); \
         CREATE INDEX legacy_label ON legacy (label);",
    );
    let run = project.xtask(&["db-schema", "--from-db"]);
    assert!(
        run.ok().contains("1 table(s) from the database app.db"),
        "{}",
        run.stdout
    );
    let text = schema_file(&project);
    assert!(text.contains("CREATE TABLE legacy (\n    id INTEGER,\n    label TEXT NOT NULL DEFAULT 'x',\n    PRIMARY KEY (id)\n);"), "{text}");
    assert!(
        text.contains("CREATE INDEX legacy_label ON legacy (label);"),
        "{text}"
    );
}
