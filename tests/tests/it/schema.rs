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
        "    team TEXT NOT NULL,",
        "    team TEXT NOT NULL,\n    role TEXT NOT NULL DEFAULT 'member',",
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
    // Written again from the migrations, the edit would be lost: refused, the file as it
    // was, until --force.
    let run = project.xtask(&["db-schema"]);
    let error = run.code(1).error_line();
    assert!(
        error.contains("declares what no migration produces")
            && error.contains("db-migrate NAME --autogenerate")
            && error.contains("--force"),
        "{error}"
    );
    assert!(
        run.stdout
            .contains("-     role TEXT NOT NULL DEFAULT 'member',"),
        "{}",
        run.stdout
    );
    assert!(schema_file(&project).contains("role TEXT"), "unchanged");
    // A file that does not load is not overwritten either.
    let edited = schema_file(&project);
    std::fs::write(&path, format!("{edited}\nCREATE TABLE broken (;\n")).unwrap();
    let error = project
        .xtask(&["db-schema"])
        .code(1)
        .error_line()
        .to_string();
    assert!(
        error.contains("does not load") && error.contains("--force"),
        "{error}"
    );
    project.xtask(&["db-schema", "--force"]).ok();
    project.xtask(&["db-check"]).ok();
    // A file the migrations once produced (before a new migration) is rewritten freely.
    project.write_migration(
        "V3__extra",
        "CREATE TABLE extra (id BIGINT PRIMARY KEY);",
        Some("DROP TABLE extra;"),
    );
    project.xtask(&["db-schema"]).ok();
    assert!(schema_file(&project).contains("CREATE TABLE extra"));
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
            good.replace("    team TEXT NOT NULL,", "    team TEXT NOT NUL,"),
            "NOT NUL,",
            "syntax error",
        ),
        (
            format!("{good}\nDELETE FROM users;\n"),
            "DELETE FROM",
            "only CREATE TABLE",
        ),
        (
            good.replace("    team TEXT NOT NULL,", "    team DATETIME,"),
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

/// What `schema.sql` cannot declare, and a table declared twice: the error names the line
/// of the clause (or of the statement), not the file's first statement. The table is
/// called `t`, a letter of every `CREATE TABLE` line above it.
#[test]
fn what_schema_sql_cannot_declare_is_named_at_its_own_line() {
    let project = rich_project();
    project.xtask(&["db-schema"]).ok();
    let path = project.path().join("migrations/schema.sql");
    let good = schema_file(&project);
    let table = |body: &str, tail: &str| {
        format!(
            "{good}\nCREATE TABLE t (\n    id BIGINT NOT NULL,\n{body}    PRIMARY KEY (id)\n){tail};\n"
        )
    };
    // (file, the text on the line the error names, what it says, on SQLite, on PostgreSQL)
    let cases = [
        (
            table("    age INTEGER\n        CHECK (age >= 0),\n", ""),
            "CHECK (age",
            "a CHECK constraint",
            (true, true),
        ),
        (
            table("", " WITHOUT ROWID"),
            "WITHOUT ROWID",
            "STRICT or WITHOUT ROWID",
            (true, false),
        ),
        (
            table("    name TEXT\n        COLLATE NOCASE,\n", ""),
            "COLLATE NOCASE",
            "a COLLATE clause",
            (true, false),
        ),
        (
            table("    name TEXT\n        COLLATE \"C\",\n", ""),
            "COLLATE \"C\"",
            "a COLLATE clause",
            (false, true),
        ),
        (
            table(
                "    twice BIGINT\n        GENERATED ALWAYS AS (id * 2) STORED,\n",
                "",
            ),
            "GENERATED ALWAYS",
            "generated",
            (true, true),
        ),
        (
            format!("{good}\nCREATE INDEX users_active ON users (name)\n    WHERE active;\n"),
            "WHERE active",
            "index users_active",
            (true, true),
        ),
        (
            format!("{good}\nCREATE INDEX users_lower ON users (lower(name));\n"),
            "users_lower",
            "index users_lower",
            (true, true),
        ),
        (
            format!("{good}\nCREATE TABLE IF NOT EXISTS users (\n    id BIGINT\n);\n"),
            "IF NOT EXISTS users",
            "table users is declared again (first at line",
            (true, true),
        ),
        (
            format!("{good}\nCREATE INDEX IF NOT EXISTS users_name ON users (email);\n"),
            "IF NOT EXISTS users_name",
            "index users_name is declared again",
            (true, true),
        ),
        (
            table("    owner BIGINT\n        REFERENCES nowhere (id),\n", ""),
            "REFERENCES nowhere",
            "nowhere",
            (true, true),
        ),
        (
            table("    at DATETIME,\n", ""),
            "at DATETIME",
            "use TIMESTAMP",
            (true, true),
        ),
    ];
    let pg = PgDatabase::create();
    for (text, needle, reason, (on_sqlite, on_pg)) in &cases {
        std::fs::write(&path, text).unwrap();
        let line = text.lines().position(|l| l.contains(needle)).unwrap() + 1;
        let expected = format!("migrations/schema.sql, line {line}: ");
        if *on_sqlite {
            let error = project
                .xtask(&["db-schema", "--check"])
                .code(1)
                .error_line()
                .to_string();
            assert!(
                error.contains(&expected) && error.contains(reason),
                "SQLite, expected {expected}… {reason}: {error}"
            );
            let autogenerate = project.xtask(&["db-migrate", "x", "--autogenerate"]);
            assert_eq!(autogenerate.code(1).error_line(), error);
        }
        if let Some(pg) = pg.as_ref().filter(|_| *on_pg) {
            let error = project
                .xtask_with(&["db-schema", "--check"], &[("DATABASE_URL", &pg.url)])
                .code(1)
                .error_line()
                .to_string();
            // PostgreSQL itself refuses some of them at the same line.
            assert!(
                error.contains(&expected)
                    && (error.contains(reason) || error.contains("does not exist")),
                "PostgreSQL, expected {expected}… {reason}: {error}"
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
    assert!(text.contains("CREATE TABLE legacy (\n    id INTEGER NOT NULL,\n    label TEXT NOT NULL DEFAULT 'x',\n    PRIMARY KEY (id)\n);"), "{text}");
    assert!(
        text.contains("CREATE INDEX legacy_label ON legacy (label);"),
        "{text}"
    );
}

/// `--from-db` on a database with what the description cannot hold: each is named in a
/// note in the written file, and the file loads back (`--check` compares it, autogenerate
/// writes a migration from it).
fn from_db_notes_and_loads(env: &[(&str, &str)], objects: &str, notes: &[&str]) {
    let project = Project::sqlite();
    project.xtask_with(&["db-init"], env).ok();
    match env.first() {
        Some((_, url)) => {
            tests::psql(url, objects).unwrap();
        }
        None => {
            sqlite(&project.db_path(), objects);
        }
    }
    std::fs::remove_file(project.path().join("migrations/schema.sql")).ok();
    project.xtask_with(&["db-schema", "--from-db"], env).ok();
    let text = schema_file(&project);
    for note in notes {
        assert!(
            text.lines()
                .any(|l| l.starts_with("-- Not described here") && l.contains(note)),
            "no note of {note}:\n{text}"
        );
    }
    let check = project.xtask_with(&["db-schema", "--check"], env);
    let error = check.code(1).error_line();
    assert!(
        error.contains("differs from the schema the migrations produce"),
        "the file does not load: {error}\n{text}"
    );
    project
        .xtask_with(&["db-migrate", "from_db", "--autogenerate"], env)
        .ok();
}

#[test]
fn from_db_notes_what_it_cannot_describe_on_sqlite() {
    from_db_notes_and_loads(
        &[],
        "CREATE TABLE items (id INTEGER PRIMARY KEY, price INTEGER NOT NULL, \
             twice INTEGER GENERATED ALWAYS AS (price * 2) VIRTUAL);\
         CREATE INDEX items_twice ON items (twice);\
         CREATE UNIQUE INDEX items_twice_id ON items (twice, id);\
         CREATE INDEX items_nocase ON items (price COLLATE NOCASE);\
         CREATE VIEW cheap AS SELECT id FROM items WHERE price < 10;\
         CREATE VIRTUAL TABLE items_fts USING fts5(body);",
        &[
            "view cheap",
            "virtual table items_fts (USING fts5)",
            "index items_twice (on twice",
            "index items_twice_id (on twice",
            "index items_nocase (partial",
            "a generated column",
        ],
    );
}

#[test]
fn from_db_notes_what_it_cannot_describe_on_postgresql() {
    let Some(pg) = PgDatabase::create() else {
        return;
    };
    from_db_notes_and_loads(
        &[("DATABASE_URL", &pg.url)],
        "CREATE TABLE items (id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, price INTEGER NOT NULL, \
             twice INTEGER GENERATED ALWAYS AS (price * 2) STORED);\
         CREATE INDEX items_twice ON items (twice);\
         CREATE INDEX items_covering ON items (price) INCLUDE (id);\
         CREATE INDEX items_nulls ON items (price NULLS FIRST);\
         CREATE INDEX items_filled ON items (price) WITH (fillfactor = 50);\
         CREATE INDEX items_price ON items (price);\
         CREATE VIEW cheap AS SELECT id FROM items WHERE price < 10;\
         CREATE MATERIALIZED VIEW totals AS SELECT sum(price) AS total FROM items;\
         CREATE TABLE events (at DATE NOT NULL, what TEXT) PARTITION BY RANGE (at);\
         CREATE TABLE events_2025 PARTITION OF events FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');\
         CREATE FUNCTION twice(x INTEGER) RETURNS INTEGER LANGUAGE sql AS 'SELECT x * 2';\
         CREATE DOMAIN positive AS INTEGER CHECK (VALUE > 0);\
         CREATE TYPE pair AS (a INTEGER, b INTEGER);\
         CREATE SEQUENCE tickets;\
         ALTER TABLE items ENABLE ROW LEVEL SECURITY;\
         CREATE POLICY mine ON items USING (price > 0);",
        &[
            "index items_covering (partial",
            "index items_nulls (partial",
            "index items_filled (partial",
            "function twice(integer)",
            "domain positive",
            "composite type pair",
            "sequence tickets",
            "policy mine on items",
            "row-level security on items",
            "view cheap",
            "materialized view totals",
            "index items_twice (on twice",
            "generated or identity column twice",
            "PARTITION BY RANGE (at) (partitions: events_2025)",
        ],
    );
}

/// Edits `schema.sql` with `edit`, autogenerates `name`, applies it, and checks: the
/// database's schema equals the declared one, the rows survived, the down script brings
/// back the previous schema. Returns the generated up script.
fn autogenerate_round_trip(
    project: &Project,
    env: &[(&str, &str)],
    name: &str,
    edit: impl Fn(&str) -> String,
    extra: &[&str],
) -> String {
    let path = project.path().join("migrations/schema.sql");
    let before = schema_file(project);
    std::fs::write(&path, edit(&before)).unwrap();
    let mut args = vec!["db-migrate", name, "--autogenerate"];
    args.extend_from_slice(extra);
    let run = project.xtask_with(&args, env);
    run.ok();
    let up = std::fs::read_dir(project.path().join("migrations"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            let n = p.file_name().unwrap().to_string_lossy().to_string();
            n.ends_with(&format!("__{name}.sql"))
        })
        .expect("the generated migration");
    let up = std::fs::read_to_string(up).unwrap();
    project.xtask_with(&["db-upgrade"], env).ok();
    // Applied, the database is the declared schema.
    project.xtask_with(&["db-schema", "--check"], env).ok();
    project.xtask_with(&["db-check"], env).ok();
    // Down and up again through the generated scripts.
    project
        .xtask_with(&["db-downgrade", "-y", "--no-backup"], env)
        .ok();
    project.xtask_with(&["db-upgrade"], env).ok();
    up
}

/// Runs `sql` (a single value) on the project's database: SQLite, or PostgreSQL in `env`.
fn value(project: &Project, env: &[(&str, &str)], sql: &str) -> String {
    match env.first() {
        Some((_, url)) => tests::psql(url, sql).unwrap(),
        None => sqlite(&project.db_path(), sql).join("\n"),
    }
}

/// Every operation in turn, on the engine of `env`, with a row in the table throughout.
fn every_operation(env: &[(&str, &str)]) {
    let project = rich_project();
    project.xtask_with(&["db-schema"], env).ok();
    project.xtask_with(&["db-init"], env).ok();
    value(
        &project,
        env,
        "INSERT INTO users (id, email, name) VALUES (1, 'a@example.com', 'Ann')",
    );
    // Nothing to do: says so, writes nothing.
    let run = project.xtask_with(&["db-migrate", "nothing", "--autogenerate"], env);
    assert!(run.ok().contains("nothing to generate"), "{}", run.stdout);

    let up = autogenerate_round_trip(
        &project,
        env,
        "add_tags",
        |s| {
            format!(
                "{s}\nCREATE TABLE tags (\n    id BIGINT,\n    user_id BIGINT NOT NULL,\n    label VARCHAR(40) NOT NULL,\n    PRIMARY KEY (id),\n    FOREIGN KEY (user_id) REFERENCES users (id) ON DELETE CASCADE\n);\nCREATE UNIQUE INDEX tags_label ON tags (user_id, label);\n"
            )
        },
        &[],
    );
    assert!(up.contains("Portable"), "{up}");
    let up = autogenerate_round_trip(
        &project,
        env,
        "add_nickname",
        |s| {
            s.replace(
                "    ratio NUMERIC(5,2) DEFAULT 0.5,",
                "    ratio NUMERIC(5,2) DEFAULT 0.5,\n    nickname TEXT NOT NULL DEFAULT 'none',",
            )
        },
        &[],
    );
    assert!(
        up.contains("ADD COLUMN nickname TEXT NOT NULL DEFAULT 'none'"),
        "{up}"
    );
    autogenerate_round_trip(
        &project,
        env,
        "index_active",
        |s| {
            s.replace(
                "CREATE INDEX users_name ON users (name);",
                "CREATE INDEX users_name ON users (name);\nCREATE INDEX users_active ON users (active);",
            )
        },
        &[],
    );
    // A foreign key added to a table with rows, then an index dropped.
    autogenerate_round_trip(
        &project,
        env,
        "add_manager",
        |s| {
            s.replace(
                "    PRIMARY KEY (id),\n    UNIQUE (email)\n);",
                "    manager_id BIGINT,\n    PRIMARY KEY (id),\n    UNIQUE (email),\n    FOREIGN KEY (manager_id) REFERENCES users (id) ON DELETE SET NULL\n);",
            )
        },
        &[],
    );
    autogenerate_round_trip(
        &project,
        env,
        "unindex_active",
        |s| s.replace("CREATE INDEX users_active ON users (active);\n", ""),
        &[],
    );
    // Changing a column: a rebuild on SQLite, ALTER on PostgreSQL; the row stays, and
    // takes the default where it was NULL.
    let up = autogenerate_round_trip(
        &project,
        env,
        "widen_score",
        |s| {
            s.replace(
                "    score INTEGER DEFAULT -1,",
                "    score BIGINT NOT NULL DEFAULT 0,",
            )
        },
        &[],
    );
    let only = if env.is_empty() {
        "For SQLite only"
    } else {
        "For PostgreSQL only"
    };
    assert!(up.contains(only), "{up}");
    assert_eq!(
        value(&project, env, "SELECT score FROM users WHERE id = 1"),
        "-1",
        "the row kept its value"
    );
    // Destructive: commented out unless allowed.
    let path = project.path().join("migrations/schema.sql");
    let before = schema_file(&project);
    let without = before.replace("    nickname TEXT NOT NULL DEFAULT 'none',\n", "");
    std::fs::write(&path, &without).unwrap();
    let run = project.xtask_with(&["db-migrate", "drop_nickname", "--autogenerate"], env);
    let error = run.code(1).error_line().to_string();
    assert!(
        error.contains("every step of this change is destructive"),
        "{error}"
    );
    assert!(
        run.stderr
            .contains("destructive: drop column users.nickname"),
        "{}",
        run.stderr
    );
    let written = std::fs::read_dir(project.path().join("migrations"))
        .unwrap()
        .filter(|e| {
            let name = e.as_ref().unwrap().file_name();
            name.to_string_lossy().contains("__drop_nickname")
        })
        .count();
    assert_eq!(written, 0, "nothing was written");
    std::fs::write(&path, &before).unwrap();
    autogenerate_round_trip(
        &project,
        env,
        "drop_nickname",
        |_| without.clone(),
        &["--allow-destructive"],
    );
    autogenerate_round_trip(
        &project,
        env,
        "drop_tags",
        |s| {
            let start = s.find("\nCREATE TABLE tags").unwrap();
            let tail = "CREATE UNIQUE INDEX tags_label ON tags (user_id, label);\n";
            let end = s.find(tail).unwrap() + tail.len();
            format!("{}{}", &s[..start], &s[end..])
        },
        &["--allow-destructive"],
    );
    assert_eq!(
        value(&project, env, "SELECT name FROM users WHERE id = 1"),
        "Ann",
        "the row survived every step"
    );
}

#[test]
fn autogenerate_every_operation_on_sqlite() {
    every_operation(&[]);
}

#[test]
fn autogenerate_every_operation_on_postgresql() {
    let Some(pg) = PgDatabase::create() else {
        return;
    };
    every_operation(&[("DATABASE_URL", &pg.url)]);
}

/// Renames and rebuilds on tables that have rows (some NULL): a renamed `NOT NULL` column
/// without a default is refused with the rename to write, whether or not destructive steps
/// are allowed; with a default, the generated rebuild (SQLite) or ALTER (PostgreSQL) runs
/// on the rows and keeps them.
fn changes_on_tables_with_rows(env: &[(&str, &str)]) {
    let project = rich_project();
    project.xtask_with(&["db-schema"], env).ok();
    project.xtask_with(&["db-init"], env).ok();
    value(
        &project,
        env,
        "INSERT INTO users (id, email, name, score) VALUES (1, 'a@x', 'Ann', 5), (2, 'b@x', 'Bob', NULL), (3, 'c@x', 'Cy', NULL)",
    );
    value(
        &project,
        env,
        "INSERT INTO memberships (user_id, team) VALUES (1, 'red'), (2, 'red'), (3, 'blue')",
    );
    let path = project.path().join("migrations/schema.sql");
    let declared = schema_file(&project);
    let migrations = || {
        std::fs::read_dir(project.path().join("migrations"))
            .unwrap()
            .count()
    };
    let before = migrations();
    // A NOT NULL column renamed: refused, with the rename to write, with or without
    // --allow-destructive; nothing written.
    let renamed = declared
        .replace("    team TEXT NOT NULL,", "    squad TEXT NOT NULL,")
        .replace(
            "PRIMARY KEY (user_id, team)",
            "PRIMARY KEY (user_id, squad)",
        );
    assert_ne!(renamed, declared);
    std::fs::write(&path, &renamed).unwrap();
    for extra in [&[][..], &["--allow-destructive"][..]] {
        let mut args = vec!["db-migrate", "rename_team", "--autogenerate"];
        args.extend_from_slice(extra);
        let run = project.xtask_with(&args, env);
        let error = run.code(1).error_line();
        assert!(
            error.contains("memberships.squad is NOT NULL without a default")
                && error.contains("ALTER TABLE memberships RENAME COLUMN team TO squad;"),
            "{extra:?}: {error}"
        );
        assert_eq!(migrations(), before, "nothing was written");
    }
    // With a default, the hint comes without --allow-destructive too.
    let renamed = renamed.replace(
        "    squad TEXT NOT NULL,",
        "    squad TEXT NOT NULL DEFAULT 'none',",
    );
    std::fs::write(&path, &renamed).unwrap();
    let run = project.xtask_with(&["db-migrate", "rename_team", "--autogenerate"], env);
    run.code(1);
    assert!(
        run.stderr.contains("RENAME COLUMN") && run.stderr.contains("team"),
        "the rename hint: {}",
        run.stderr
    );
    std::fs::write(&path, &declared).unwrap();
    // The generated steps, on the rows.
    autogenerate_round_trip(
        &project,
        env,
        "squad_instead_of_team",
        |_| renamed.clone(),
        &["--allow-destructive"],
    );
    assert_eq!(
        value(
            &project,
            env,
            "SELECT count(*) FROM memberships WHERE squad = 'none'"
        ),
        "3",
        "every row kept, the new column at its default"
    );
    let up = autogenerate_round_trip(
        &project,
        env,
        "score_required",
        |s| {
            s.replace(
                "    score INTEGER DEFAULT -1,",
                "    score BIGINT NOT NULL DEFAULT 0,",
            )
            .replace(
                "    email VARCHAR(200) NOT NULL,",
                "    email TEXT NOT NULL,",
            )
        },
        &[],
    );
    assert!(!up.contains("DESTRUCTIVE"), "{up}");
    assert_eq!(
        value(&project, env, "SELECT count(*) FROM users WHERE score = 0"),
        "2",
        "NULLs took the default"
    );
    assert_eq!(
        value(&project, env, "SELECT score FROM users WHERE id = 1"),
        "5"
    );
    assert_eq!(
        value(&project, env, "SELECT count(*) FROM memberships"),
        "3"
    );
}

#[test]
fn changes_on_tables_with_rows_on_sqlite() {
    changes_on_tables_with_rows(&[]);
}

#[test]
fn changes_on_tables_with_rows_on_postgresql() {
    let Some(pg) = PgDatabase::create() else {
        return;
    };
    changes_on_tables_with_rows(&[("DATABASE_URL", &pg.url)]);
}

#[test]
fn what_the_declared_schema_cannot_describe_is_never_rebuilt_away() {
    let project = Project::sqlite();
    project.write_migration(
        "V2__guarded",
        "CREATE TABLE people (id BIGINT PRIMARY KEY, age INTEGER CHECK (age >= 0), note TEXT, gone TEXT);\n\
         CREATE TRIGGER people_touch AFTER INSERT ON people BEGIN UPDATE people SET note = 'new' WHERE id = NEW.id; END;",
        Some("DROP TABLE people;"),
    );
    project.xtask(&["db-init"]).ok();
    sqlite(
        &project.db_path(),
        "INSERT INTO people VALUES (1, 30, NULL, 'x')",
    );
    project.xtask(&["db-schema"]).ok();
    let path = project.path().join("migrations/schema.sql");
    let text = schema_file(&project);
    assert!(
        text.contains("-- Not described here (write it in a migration by hand): a CHECK constraint, trigger people_touch."),
        "{text}"
    );
    // Changing a default needs a rebuild on SQLite, which would drop the CHECK and the
    // trigger: destructive, so commented out; every step being so, nothing is written.
    let changed = text.replace("    note TEXT,", "    note TEXT DEFAULT 'none',");
    std::fs::write(&path, &changed).unwrap();
    let run = project.xtask(&["db-migrate", "note_default", "--autogenerate"]);
    let error = run.code(1).error_line().to_string();
    assert!(
        error.contains("every step of this change is destructive"),
        "{error}"
    );
    assert!(
        run.stderr.contains("would drop what the declared schema cannot describe: a CHECK constraint, trigger people_touch"),
        "{}",
        run.stderr
    );
    let files: Vec<String> = std::fs::read_dir(project.path().join("migrations"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(
        !files.iter().any(|f| f.contains("note_default")),
        "{files:?}"
    );
    // With a portable step beside it, the rebuild and its reverse are both commented
    // out: the down script never undoes what the up script did not do.
    let extra = "\nCREATE TABLE extra (\n    id BIGINT NOT NULL,\n    PRIMARY KEY (id)\n);\n";
    std::fs::write(&path, format!("{changed}{extra}")).unwrap();
    project
        .xtask(&["db-migrate", "note_default", "--autogenerate"])
        .ok();
    let down = std::fs::read_to_string(project.path().join("migrations/V3__note_default.down.sql"))
        .unwrap();
    for line in down.lines().filter(|l| l.contains("people")) {
        assert!(
            line.starts_with("-- "),
            "a live line about people in the down script: {line}\n{down}"
        );
    }
    project.xtask(&["db-upgrade"]).ok();
    project.xtask(&["db-downgrade", "-y", "--no-backup"]).ok();
    assert_eq!(
        sqlite(&project.db_path(), "SELECT gone FROM people"),
        ["x"],
        "nothing was lost"
    );
    assert_eq!(
        sqlite(
            &project.db_path(),
            "SELECT count(*) FROM sqlite_schema WHERE name = 'people_touch'"
        ),
        ["1"],
        "the trigger is still there"
    );
}

#[test]
fn a_portable_migration_generated_on_sqlite_round_trips_on_postgresql() {
    let Some(pg) = PgDatabase::create() else {
        return;
    };
    let project = rich_project();
    project.xtask(&["db-schema"]).ok();
    let path = project.path().join("migrations/schema.sql");
    let edited = schema_file(&project).replace(
        "    ratio NUMERIC(5,2) DEFAULT 0.5,",
        "    ratio NUMERIC(5,2) DEFAULT 0.5,\n    bio TEXT,",
    ) + "\nCREATE TABLE notes (\n    id BIGINT NOT NULL,\n    body TEXT NOT NULL,\n    PRIMARY KEY (id)\n);\nCREATE INDEX notes_body ON notes (body);\n";
    std::fs::write(&path, edited).unwrap();
    project
        .xtask(&["db-migrate", "notes_and_bio", "--autogenerate"])
        .ok();
    let up =
        std::fs::read_to_string(project.path().join("migrations/V3__notes_and_bio.sql")).unwrap();
    assert!(
        up.contains("Portable: runs on SQLite and PostgreSQL."),
        "{up}"
    );
    project.xtask(&["db-check"]).ok();
    // The same files, on PostgreSQL: up, down, up; and the declared schema agrees.
    let on_pg = [("DATABASE_URL", pg.url.as_str())];
    project.xtask_with(&["db-check"], &on_pg).ok();
    project.xtask_with(&["db-schema", "--check"], &on_pg).ok();
}

/// Quoted names, reserved words, an expression default, tables that reference tables
/// declared after them: db-schema, --check and autogenerate agree on each engine.
fn awkward_names(env: &[(&str, &str)]) {
    let project = Project::sqlite();
    project.write_migration(
        "V2__awkward",
        "CREATE TABLE \"order\" (id BIGINT PRIMARY KEY, \"select\" TEXT DEFAULT (lower('X')), \"Mixed Case\" INTEGER);\n\
         CREATE INDEX \"ix;1\" ON \"order\" (\"select\", \"Mixed Case\");",
        Some("DROP TABLE \"order\";"),
    );
    project.xtask_with(&["db-schema"], env).ok();
    project.xtask_with(&["db-schema", "--check"], env).ok();
    let path = project.path().join("migrations/schema.sql");
    let declared = schema_file(&project);
    assert!(declared.contains("DEFAULT (lower('X'))"), "{declared}");
    // Two new tables, the child first by name: created parent first, dropped child first.
    let more = "\nCREATE TABLE a_child (\n    id BIGINT NOT NULL,\n    parent_id BIGINT,\n    PRIMARY KEY (id),\n    FOREIGN KEY (parent_id) REFERENCES z_parent (id)\n);\n\nCREATE TABLE z_parent (\n    id BIGINT NOT NULL,\n    PRIMARY KEY (id)\n);\n";
    std::fs::write(&path, format!("{declared}{more}")).unwrap();
    project
        .xtask_with(&["db-migrate", "family", "--autogenerate"], env)
        .ok();
    project.xtask_with(&["db-check"], env).ok();
    project.xtask_with(&["db-init"], env).ok();
    project.xtask_with(&["db-schema", "--check"], env).ok();
    // A declared table that references a table the file does not declare: the line of
    // its REFERENCES.
    let orphan = format!(
        "{declared}\nCREATE TABLE lost (\n    id BIGINT NOT NULL,\n    other BIGINT,\n    PRIMARY KEY (id),\n    FOREIGN KEY (other) REFERENCES nowhere (id)\n);\n"
    );
    std::fs::write(&path, &orphan).unwrap();
    let line = orphan
        .lines()
        .position(|l| l.contains("REFERENCES nowhere"))
        .unwrap()
        + 1;
    let error = project
        .xtask_with(&["db-schema", "--check"], env)
        .error_line()
        .to_string();
    assert!(
        error.contains(&format!("migrations/schema.sql, line {line}")) && error.contains("nowhere"),
        "{error}"
    );
}

#[test]
fn awkward_names_on_sqlite() {
    awkward_names(&[]);
}

#[test]
fn awkward_names_on_postgresql() {
    let Some(pg) = PgDatabase::create() else {
        return;
    };
    awkward_names(&[("DATABASE_URL", &pg.url)]);
}

/// An index with another access method or a non-default operator class is written with
/// them (`USING hash (s)`, `(s text_pattern_ops)`), never as a plain index: the file
/// loads, a migration autogenerated from it makes the same indexes, and `--check` sees a
/// method or operator class changed.
#[test]
fn index_methods_and_operator_classes_are_described_on_postgresql() {
    let Some(pg) = PgDatabase::create() else {
        return;
    };
    let env = [("DATABASE_URL", pg.url.as_str())];
    let project = Project::sqlite();
    project.xtask_with(&["db-init"], &env).ok();
    tests::psql(
        &pg.url,
        "CREATE TABLE d (id BIGINT PRIMARY KEY, s TEXT, n INTEGER);\
         CREATE INDEX d_s ON d (s text_pattern_ops);\
         CREATE INDEX d_h ON d USING hash (s);\
         CREATE INDEX d_n ON d USING brin (n);\
         CREATE INDEX d_sn ON d (n, s text_pattern_ops);",
    )
    .unwrap();
    std::fs::remove_file(project.path().join("migrations/schema.sql")).ok();
    project.xtask_with(&["db-schema", "--from-db"], &env).ok();
    let text = schema_file(&project);
    for line in [
        "CREATE INDEX d_s ON d (s text_pattern_ops);",
        "CREATE INDEX d_h ON d USING hash (s);",
        "CREATE INDEX d_n ON d USING brin (n);",
        "CREATE INDEX d_sn ON d (n, s text_pattern_ops);",
    ] {
        assert!(text.contains(line), "no `{line}` in:\n{text}");
    }
    tests::psql(&pg.url, "DROP TABLE d;").unwrap();
    project
        .xtask_with(&["db-migrate", "indexes", "--autogenerate"], &env)
        .ok();
    project.xtask_with(&["db-upgrade"], &env).ok();
    project.xtask_with(&["db-schema", "--check"], &env).ok();
    let defs = tests::psql(
        &pg.url,
        "SELECT string_agg(indexdef, ';' ORDER BY indexname) FROM pg_indexes WHERE tablename = 'd' AND indexname <> 'd_pkey';",
    )
    .unwrap();
    for made in [
        "USING hash (s)",
        "USING brin (n)",
        "(s text_pattern_ops)",
        "(n, s text_pattern_ops)",
    ] {
        assert!(defs.contains(made), "no `{made}` in: {defs}");
    }
    let plain = text.replace("USING hash (s)", "(s)");
    std::fs::write(project.path().join("migrations/schema.sql"), plain).unwrap();
    let error = project
        .xtask_with(&["db-schema", "--check"], &env)
        .code(1)
        .error_line()
        .to_string();
    assert!(error.contains("differs"), "{error}");
}

/// The enum values of `name` on the PostgreSQL database at `url`, in order.
fn enum_values(url: &str, name: &str) -> String {
    tests::psql(
        url,
        &format!(
            "SELECT string_agg(enumlabel, ',' ORDER BY enumsortorder) FROM pg_enum \
             WHERE enumtypid = '{name}'::regtype"
        ),
    )
    .unwrap()
    .trim()
    .to_string()
}

/// Enum types are declared (`CREATE TYPE … AS ENUM` before the tables), the file loads
/// and passes `--check`, and autogenerate writes a new type as `CREATE TYPE`, a value
/// added as `ALTER TYPE … ADD VALUE` in place, and a value removed as a destructive step
/// that keeps the rows.
#[test]
fn enum_types_are_declared_compared_and_diffed_on_postgresql() {
    let Some(pg) = PgDatabase::create() else {
        return;
    };
    let env = [("DATABASE_URL", pg.url.as_str())];
    let project = Project::sqlite();
    project.write_migration(
        "V2__mood",
        "CREATE TYPE mood AS ENUM ('ok', 'sad');\
         CREATE TYPE \"Feel\" AS ENUM ('x');\
         CREATE TABLE person (id BIGINT NOT NULL, m mood NOT NULL DEFAULT 'ok', \
             past mood[], f \"Feel\", PRIMARY KEY (id));",
        Some("DROP TABLE person; DROP TYPE mood; DROP TYPE \"Feel\";"),
    );
    project.xtask_with(&["db-schema"], &env).ok();
    let text = schema_file(&project);
    let create_type = text.find("CREATE TYPE mood AS ENUM ('ok', 'sad');");
    assert!(create_type.is_some(), "{text}");
    assert!(create_type < text.find("CREATE TABLE person"), "{text}");
    assert!(text.contains("    m mood NOT NULL DEFAULT 'ok',"), "{text}");
    assert!(
        text.contains("    past mood[],\n    f \"Feel\",\n"),
        "{text}"
    );
    assert!(
        text.contains("CREATE TYPE \"Feel\" AS ENUM ('x');"),
        "{text}"
    );
    project.xtask_with(&["db-schema", "--check"], &env).ok();
    project.xtask_with(&["db-upgrade"], &env).ok();
    tests::psql(
        &pg.url,
        "INSERT INTO person (id, m) VALUES (1, 'sad'), (2, 'ok');",
    )
    .unwrap();
    // --from-db writes the same file, which loads.
    std::fs::remove_file(project.path().join("migrations/schema.sql")).unwrap();
    project.xtask_with(&["db-schema", "--from-db"], &env).ok();
    assert_eq!(schema_file(&project), text);
    project.xtask_with(&["db-schema", "--check"], &env).ok();
    // A value added between two: in place, the rows as they were.
    let up = autogenerate_round_trip(
        &project,
        &env,
        "happy",
        |t| t.replace("('ok', 'sad')", "('ok', 'happy', 'sad')"),
        &[],
    );
    assert!(
        up.contains("ALTER TYPE mood ADD VALUE IF NOT EXISTS 'happy' BEFORE 'sad';"),
        "{up}"
    );
    assert!(up.contains("-- db: no-transaction"), "{up}");
    assert_eq!(enum_values(&pg.url, "mood"), "ok,happy,sad");
    // A new type and a column of it: the type first.
    let up = autogenerate_round_trip(
        &project,
        &env,
        "color",
        |t| {
            t.replace(
                "CREATE TYPE mood",
                "CREATE TYPE color AS ENUM ('red', 'it''s');\nCREATE TYPE mood",
            )
            .replace("    PRIMARY KEY (id)", "    c color,\n    PRIMARY KEY (id)")
        },
        &[],
    );
    assert!(
        up.find("CREATE TYPE color AS ENUM ('red', 'it''s');") < up.find("ADD COLUMN c color"),
        "{up}"
    );
    // A value added and used in the same change: the values in a migration of their
    // own, outside a transaction, applied before the one that uses them.
    let up = autogenerate_round_trip(
        &project,
        &env,
        "calm",
        |t| {
            t.replace("('ok', 'happy', 'sad')", "('ok', 'happy', 'sad', 'calm')")
                .replace(
                    "    c color,\n",
                    "    c color,\n    c2 mood NOT NULL DEFAULT 'calm',\n",
                )
        },
        &[],
    );
    assert!(
        up.contains("ADD COLUMN c2 mood") && !up.contains("ADD VALUE"),
        "{up}"
    );
    let values = std::fs::read_dir(project.path().join("migrations"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().ends_with("__calm_enum_values.sql"))
        .map(|p| std::fs::read_to_string(p).unwrap())
        .expect("the enum values' own migration");
    assert!(
        values.contains("-- db: no-transaction")
            && values.contains("ALTER TYPE mood ADD VALUE IF NOT EXISTS 'calm';"),
        "{values}"
    );
    assert_eq!(
        tests::psql(&pg.url, "SELECT count(*) FROM person WHERE c2 = 'calm'").unwrap(),
        "2"
    );
    // A value removed: destructive, refused unless allowed; allowed, the rows stay.
    let path = project.path().join("migrations/schema.sql");
    let before = schema_file(&project);
    std::fs::write(&path, before.replace("'happy', 'sad'", "'sad'")).unwrap();
    let run = project.xtask_with(&["db-migrate", "no_happy", "--autogenerate"], &env);
    let error = run.code(1).error_line().to_string();
    assert!(error.contains("destructive"), "{error}");
    assert!(
        run.stderr.contains("values of enum type mood"),
        "{}",
        run.stderr
    );
    std::fs::write(&path, before).unwrap();
    autogenerate_round_trip(
        &project,
        &env,
        "no_happy",
        |t| t.replace("'happy', 'sad'", "'sad'"),
        &["--allow-destructive"],
    );
    assert_eq!(enum_values(&pg.url, "mood"), "ok,sad,calm");
    let rows = tests::psql(
        &pg.url,
        "SELECT string_agg(id || m::text, ',' ORDER BY id) FROM person",
    )
    .unwrap();
    assert_eq!(rows.trim(), "1sad,2ok");
}

/// Extensions are declared (`CREATE EXTENSION IF NOT EXISTS` first), their own objects
/// are not described as the schema's, an index with an extension's operator class loads,
/// and autogenerate creates and drops an extension.
#[test]
fn extensions_are_declared_and_diffed_on_postgresql() {
    let Some(pg) = PgDatabase::create() else {
        return;
    };
    let env = [("DATABASE_URL", pg.url.as_str())];
    let project = Project::sqlite();
    project.write_migration(
        "V2__trgm",
        "CREATE EXTENSION IF NOT EXISTS pg_trgm;\
         CREATE TABLE d (id BIGINT NOT NULL, s TEXT, PRIMARY KEY (id));\
         CREATE INDEX d_s ON d USING gin (s gin_trgm_ops);",
        Some("DROP TABLE d; DROP EXTENSION pg_trgm;"),
    );
    project.xtask_with(&["db-schema"], &env).ok();
    let text = schema_file(&project);
    let extension = text.find("CREATE EXTENSION IF NOT EXISTS pg_trgm;");
    assert!(extension.is_some(), "{text}");
    assert!(extension < text.find("CREATE TABLE d"), "{text}");
    assert!(
        text.contains("CREATE INDEX d_s ON d USING gin (s gin_trgm_ops);"),
        "{text}"
    );
    assert!(!text.contains("Not described"), "{text}");
    project.xtask_with(&["db-schema", "--check"], &env).ok();
    project.xtask_with(&["db-upgrade"], &env).ok();
    std::fs::remove_file(project.path().join("migrations/schema.sql")).unwrap();
    project.xtask_with(&["db-schema", "--from-db"], &env).ok();
    assert_eq!(schema_file(&project), text);
    let up = autogenerate_round_trip(
        &project,
        &env,
        "crypto",
        |t| {
            t.replace(
                "CREATE EXTENSION IF NOT EXISTS pg_trgm;",
                "CREATE EXTENSION IF NOT EXISTS pg_trgm;\nCREATE EXTENSION IF NOT EXISTS pgcrypto;",
            )
        },
        &[],
    );
    assert!(
        up.contains("CREATE EXTENSION IF NOT EXISTS pgcrypto;"),
        "{up}"
    );
    let installed = tests::psql(
        &pg.url,
        "SELECT string_agg(extname, ',' ORDER BY extname) FROM pg_extension",
    )
    .unwrap();
    assert_eq!(installed.trim(), "pg_trgm,pgcrypto,plpgsql");
}

/// Identity columns are declared (`GENERATED ALWAYS AS IDENTITY`), with their key: the
/// file `db-schema` writes passes `--check`, the file `--from-db` writes loads, and
/// autogenerate adds, changes and drops an identity on a table with rows.
#[test]
fn identity_columns_are_declared_and_diffed_on_postgresql() {
    let Some(pg) = PgDatabase::create() else {
        return;
    };
    let env = [("DATABASE_URL", pg.url.as_str())];
    let project = Project::sqlite();
    project.write_migration(
        "V2__ids",
        "CREATE TABLE item (id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, \
             n INTEGER NOT NULL, label TEXT);",
        Some("DROP TABLE item;"),
    );
    project.xtask_with(&["db-schema"], &env).ok();
    let text = schema_file(&project);
    assert!(
        text.contains("    id BIGINT NOT NULL GENERATED ALWAYS AS IDENTITY,"),
        "{text}"
    );
    assert!(text.contains("    PRIMARY KEY (id)"), "{text}");
    assert!(!text.contains("Not described"), "{text}");
    project.xtask_with(&["db-schema", "--check"], &env).ok();
    project.xtask_with(&["db-upgrade"], &env).ok();
    tests::psql(&pg.url, "INSERT INTO item (n) VALUES (7), (8);").unwrap();
    std::fs::remove_file(project.path().join("migrations/schema.sql")).unwrap();
    project.xtask_with(&["db-schema", "--from-db"], &env).ok();
    assert_eq!(schema_file(&project), text);
    project.xtask_with(&["db-schema", "--check"], &env).ok();
    let up = autogenerate_round_trip(
        &project,
        &env,
        "identities",
        |t| {
            t.replace(
                "GENERATED ALWAYS AS IDENTITY",
                "GENERATED BY DEFAULT AS IDENTITY",
            )
            .replace(
                "    n INTEGER NOT NULL,",
                "    n INTEGER NOT NULL GENERATED ALWAYS AS IDENTITY,",
            )
        },
        &[],
    );
    assert!(up.contains("SET GENERATED BY DEFAULT"), "{up}");
    assert!(up.contains("ADD GENERATED ALWAYS AS IDENTITY"), "{up}");
    // The new identity starts after the values the rows hold.
    tests::psql(&pg.url, "INSERT INTO item (id) VALUES (100);").unwrap();
    let n = tests::psql(&pg.url, "SELECT n FROM item WHERE id = 100").unwrap();
    assert_eq!(n.trim(), "9");
    let text = schema_file(&project);
    autogenerate_round_trip(
        &project,
        &env,
        "plain",
        |t| t.replace(" GENERATED ALWAYS AS IDENTITY", ""),
        &[],
    );
    assert!(
        !schema_file(&project).contains("    n INTEGER NOT NULL GENERATED"),
        "{text}"
    );
}
