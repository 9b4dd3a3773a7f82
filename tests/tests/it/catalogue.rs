//! The bad-input catalogue: what a careless user types, writes or sends, and what they get
//! back. Every case runs the real binaries with `RUST_BACKTRACE=1` and asserts the exit
//! code (or HTTP status), exactly one `error:` line naming what was wrong and where it
//! came from, no panic, no password, and a live database byte-identical afterwards.
//!
//! The test also renders `docs/reliability.md` from the cases and fails when the file
//! differs; `UPDATE_DOCS=1 cargo test -p tests --test it catalogue` rewrites it.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStringExt as _;
use std::path::Path;
use std::sync::OnceLock;

use tests::{PgDatabase, Project, Run, sha256, workspace_root};

/// Where an input comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Area {
    Env,
    DotEnv,
    RocketToml,
    CommandLine,
    Migrations,
    Backups,
    Postgres,
}

impl Area {
    fn title(self) -> &'static str {
        match self {
            Self::Env => "Settings from the environment",
            Self::DotEnv => "Settings from `.env`",
            Self::RocketToml => "Settings from `Rocket.toml`",
            Self::CommandLine => "Command lines",
            Self::Migrations => "Migration files",
            Self::Backups => "Backup and restore files",
            Self::Postgres => "PostgreSQL",
        }
    }
}

/// What runs.
#[derive(Debug, Clone, Copy)]
enum Cmd {
    /// `cargo xtask <args>`.
    Xtask(&'static [&'static str]),
    /// The server (exit 1), then `cargo xtask <args>` with the same input and `code`.
    Both(&'static [&'static str]),
    /// Only the server (exit 1).
    Server,
}

/// One careless input.
struct Case {
    area: Area,
    /// The input, as the docs show it.
    input: &'static str,
    /// Files written into the project first (`{project}` is replaced by its path).
    files: &'static [(&'static str, &'static str)],
    /// Environment variables (`{project}`, `{pg}` replaced).
    env: &'static [(&'static str, &'static str)],
    /// Prepares what files cannot say (binary backups).
    prepare: Option<fn(&Project)>,
    cmd: Cmd,
    /// Exit code of `cargo xtask` (the server always exits 1).
    code: i32,
    /// Words the error line must contain.
    names: &'static [&'static str],
}

const fn case(
    area: Area,
    input: &'static str,
    cmd: Cmd,
    code: i32,
    names: &'static [&'static str],
) -> Case {
    Case {
        area,
        input,
        files: &[],
        env: &[],
        prepare: None,
        cmd,
        code,
        names,
    }
}

const STATUS: Cmd = Cmd::Both(&["db-status"]);

/// An environment case: `KEY=value` for the server and `db-status`.
const fn env(
    env: &'static [(&'static str, &'static str)],
    input: &'static str,
    names: &'static [&'static str],
) -> Case {
    Case {
        env,
        ..case(Area::Env, input, STATUS, 1, names)
    }
}

/// A file case.
const fn file(
    area: Area,
    files: &'static [(&'static str, &'static str)],
    input: &'static str,
    cmd: Cmd,
    code: i32,
    names: &'static [&'static str],
) -> Case {
    Case {
        files,
        ..case(area, input, cmd, code, names)
    }
}

impl Case {
    const fn with_cmd(self, cmd: Cmd) -> Self {
        Self { cmd, ..self }
    }

    const fn with_env(self, env: &'static [(&'static str, &'static str)]) -> Self {
        Self { env, ..self }
    }
}

/// A command-line case.
const fn cli(
    args: &'static [&'static str],
    input: &'static str,
    code: i32,
    names: &'static [&'static str],
) -> Case {
    case(Area::CommandLine, input, Cmd::Xtask(args), code, names)
}

/// A backup case: `prepare` leaves a bad backup at `backups/bad.db`.
const fn backup(
    prepare: fn(&Project),
    input: &'static str,
    names: &'static [&'static str],
) -> Case {
    Case {
        prepare: Some(prepare),
        ..case(
            Area::Backups,
            input,
            Cmd::Xtask(&["db-restore", "backups/bad.db", "-y"]),
            1,
            names,
        )
    }
}

#[rustfmt::skip]
fn cases() -> Vec<Case> {
    use Area::*;
    vec![
        env(&[("ROCKET_WORKERS", "0")], "`ROCKET_WORKERS=0`", &["workers", "ROCKET_WORKERS", "at least 1"]),
        env(&[("ROCKET_WORKERS", "abc")], "`ROCKET_WORKERS=abc`", &["workers", "ROCKET_WORKERS"]),
        env(&[("ROCKET_WORKERS", "-1")], "`ROCKET_WORKERS=-1`", &["workers", "ROCKET_WORKERS"]),
        env(&[("ROCKET_MAX_BLOCKING", "0")], "`ROCKET_MAX_BLOCKING=0`", &["max_blocking", "ROCKET_MAX_BLOCKING"]),
        env(&[("ROCKET_PORT", "70000")], "`ROCKET_PORT=70000`", &["port", "ROCKET_PORT"]),
        env(&[("ROCKET_PORT", "http")], "`ROCKET_PORT=http`", &["port", "ROCKET_PORT"]),
        env(&[("ROCKET_ADDRESS", "localhost:80:1")], "`ROCKET_ADDRESS=localhost:80:1`", &["address", "ROCKET_ADDRESS"]),
        env(&[("ROCKET_LOG_LEVEL", "loud")], "`ROCKET_LOG_LEVEL=loud`", &["log_level", "ROCKET_LOG_LEVEL"]),
        env(&[("ROCKET_PROFILE", "prod")], "`ROCKET_PROFILE=prod` (a typo)", &["prod", "ROCKET_PROFILE", "known profiles"]),
        env(&[("ROCKET_CONFIG", "{project}/missing.toml")], "`ROCKET_CONFIG` naming a missing file", &["ROCKET_CONFIG", "missing.toml"]),
        env(&[("ROCKET_DATABASES", "{main={url=\"mysql://u:hunter2@x/db\"}}")], "`ROCKET_DATABASES` with a MySQL URL", &["databases.main.url", "ROCKET_DATABASES", "mysql"]),
        env(&[("ROCKET_DATABASES", "{main={max_connections=\"many\"}}")], "`ROCKET_DATABASES` with a string count", &["max_connections", "ROCKET_DATABASES"]),
        env(&[("DATABASE_URL", "mysql://u:hunter2@localhost/app")], "`DATABASE_URL=mysql://…`", &["DATABASE_URL", "mysql"]),
        env(&[("DATABASE_URL", "")], "`DATABASE_URL=` (empty)", &["DATABASE_URL", "empty"]),
        env(&[("DATABASE_URL", "app.db")], "`DATABASE_URL=app.db` (no scheme)", &["DATABASE_URL"]),
        env(&[("DATABASE_URL", "sqlite:///proc/version")], "`DATABASE_URL=sqlite:///proc/version`", &["/proc/version"]),
        env(&[("DATABASE_URL", "sqlite://{project}/Rocket.toml/app.db")], "`DATABASE_URL` below a regular file", &["Rocket.toml"]).with_cmd(Cmd::Both(&["db-init"])),
        env(&[("DATABASE_URL", "sqlite://{project}/notes.txt")], "`DATABASE_URL` naming a text file", &["notes.txt", "not a SQLite database"]),
        env(&[("DATABASE_URL", "postgres://u:hunter2@127.0.0.1:1/app")], "`DATABASE_URL` at a closed port", &["127.0.0.1:1", "refused"]),
        Case { env: &[("DATABASE_COPY_TO", "postgres://u:hunter2@127.0.0.1:1/app")], ..case(Env, "`DATABASE_COPY_TO` at a closed port", Cmd::Xtask(&["db-copy"]), 1, &["target", "127.0.0.1:1", "refused"]) },
        env(&[("DATABASE_URL", "postgres://u:hunter2@127.0.0.1:99999/app")], "`DATABASE_URL` with port 99999", &["DATABASE_URL", "port"]),
        env(&[("DATABASE_URL", "postgres://u:hunter2@localhost/app?sslmode=sometimes")], "`DATABASE_URL` with `sslmode=sometimes`", &["DATABASE_URL", "sslmode"]),
        env(&[("DATABASE_BUSY_TIMEOUT_MS", "2147483648")], "`DATABASE_BUSY_TIMEOUT_MS=2147483648`", &["busy_timeout_ms", "DATABASE_BUSY_TIMEOUT_MS", "more than"]),
        env(&[("DATABASE_BUSY_TIMEOUT_MS", "-5")], "`DATABASE_BUSY_TIMEOUT_MS=-5`", &["busy_timeout_ms", "DATABASE_BUSY_TIMEOUT_MS"]),
        env(&[("DATABASE_ACQUIRE_TIMEOUT_MS", "1s")], "`DATABASE_ACQUIRE_TIMEOUT_MS=1s`", &["acquire_timeout_ms", "DATABASE_ACQUIRE_TIMEOUT_MS"]),
        env(&[("DATABASE_CONNECT_TIMEOUT_MS", "0")], "`DATABASE_CONNECT_TIMEOUT_MS=0`", &["connect_timeout_ms", "DATABASE_CONNECT_TIMEOUT_MS"]),
        env(&[("DATABASE_STATEMENT_TIMEOUT_MS", "99999999999")], "`DATABASE_STATEMENT_TIMEOUT_MS=99999999999`", &["statement_timeout_ms", "DATABASE_STATEMENT_TIMEOUT_MS"]),
        env(&[("DATABASE_HEALTH_TIMEOUT_MS", "0")], "`DATABASE_HEALTH_TIMEOUT_MS=0`", &["health_timeout_ms", "DATABASE_HEALTH_TIMEOUT_MS"]),
        env(&[("DATABASE_IDLE_TIMEOUT_SECS", "18446744073709551615")], "`DATABASE_IDLE_TIMEOUT_SECS=18446744073709551615`", &["idle_timeout_secs", "DATABASE_IDLE_TIMEOUT_SECS"]),
        env(&[("DATABASE_MAX_CONNECTIONS", "0")], "`DATABASE_MAX_CONNECTIONS=0`", &["max_connections", "DATABASE_MAX_CONNECTIONS"]),
        env(&[("DATABASE_MAX_CONNECTIONS", "4294967295")], "`DATABASE_MAX_CONNECTIONS=4294967295`", &["max_connections", "more than 10000"]),
        env(&[("DATABASE_MIN_CONNECTIONS", "50"), ("DATABASE_MAX_CONNECTIONS", "5")], "`DATABASE_MIN_CONNECTIONS=50` above the maximum", &["min_connections", "max_connections"]),
        env(&[("DATABASE_ECHO", "maybe")], "`DATABASE_ECHO=maybe`", &["echo", "DATABASE_ECHO"]),
        env(&[("DATABASE_DISK_FREE_MIN_MB", "-1")], "`DATABASE_DISK_FREE_MIN_MB=-1`", &["disk_free_min_mb", "DATABASE_DISK_FREE_MIN_MB"]),
        env(&[("DATABASE_BACKUP_DIR", " ")], "`DATABASE_BACKUP_DIR=\" \"`", &["backup_dir", "empty"]),
        env(&[("DATABASE_BACKUP_INTERVAL_SECS", "hourly")], "`DATABASE_BACKUP_INTERVAL_SECS=hourly`", &["backup_interval_secs", "DATABASE_BACKUP_INTERVAL_SECS"]),
        env(&[("DATABASE_BACKUP_INTERVAL_SECS", "99999999999")], "`DATABASE_BACKUP_INTERVAL_SECS=99999999999`", &["backup_interval_secs", "a year"]),
        env(&[("DATABASE_BACKUP_KEEP", "0")], "`DATABASE_BACKUP_KEEP=0`", &["backup_keep", "at least 1"]),
        env(&[("DATABASE_BACKUP_COPY_TO", "backups")], "`DATABASE_BACKUP_COPY_TO` the backup directory itself", &["backup_copy_to", "backup_dir itself"]),
        env(&[("DATABASE_URL", "sqlite://{project}/migrations")], "`DATABASE_URL` naming a directory", &["migrations", "is a directory"]),
        Case { prepare: Some(|p| mkfifo(&p.path().join("pipe.db"))), ..env(&[("DATABASE_URL", "sqlite://{project}/pipe.db")], "`DATABASE_URL` naming a FIFO", &["pipe.db", "FIFO"]) },
        Case { cmd: Cmd::Server, ..env(&[("ROCKET_PORT", "5432")], "`ROCKET_PORT` already taken (PostgreSQL's 5432)", &["5432", "in use", "nothing was changed"]) },
        file(DotEnv, &[(".env", "DATABASE_URL=sqlite://app.db\nthis line is not a setting\n")], "a `.env` line without `=`", STATUS, 1, &[".env", "line 2"]),
        file(DotEnv, &[(".env", "DATABASE_URL=\"postgres://u:hunter2@db/app\n")], "a `.env` value with an unclosed quote", STATUS, 1, &[".env", "line 1"]),
        file(DotEnv, &[(".env", "DATABASE_MAX_CONNECTIONS=lots\n")], "`.env`: `DATABASE_MAX_CONNECTIONS=lots`", STATUS, 1, &["max_connections", "DATABASE_MAX_CONNECTIONS"]),
        file(DotEnv, &[(".env", "ROCKET_PROFILE=staging\n")], "`.env`: an unknown `ROCKET_PROFILE`", STATUS, 1, &["staging", "known profiles"]),
        Case { prepare: Some(|p| std::fs::create_dir(p.path().join(".env")).unwrap()), ..file(DotEnv, &[], "`.env` is a directory", STATUS, 1, &[".env", "not a regular file"]) },
        file(RocketToml, &[("Rocket.toml", "[default.databases.main]\nurl = \"postgres://app:hunter2@db/app\n")], "`Rocket.toml` with an unclosed string", STATUS, 1, &["Rocket.toml", "line 2"]),
        file(RocketToml, &[("Rocket.toml", "[default]\nworkers = \"many\"\n")], "`workers = \"many\"`", STATUS, 1, &["workers", "Rocket.toml"]),
        file(RocketToml, &[("Rocket.toml", "[default.databases.main]\nurl = 5\n")], "`url = 5`", STATUS, 1, &["databases.main.url", "Rocket.toml"]),
        file(RocketToml, &[("Rocket.toml", "[default.databases.main]\nmax_conections = 5\n")], "a misspelt key (`max_conections`)", STATUS, 1, &["max_conections", "Rocket.toml"]),
        file(RocketToml, &[("Rocket.toml", "[default.databases.main]\nbusy_timeout_ms = 2147483648\n")], "`busy_timeout_ms = 2147483648`", STATUS, 1, &["busy_timeout_ms", "Rocket.toml"]),
        file(RocketToml, &[("Rocket.toml", "[default.databases.main]\nurl = \"sqlite://\"\n")], "`url = \"sqlite://\"` (no path)", STATUS, 1, &["databases.main.url", "Rocket.toml"]),
        file(RocketToml, &[("Rocket.toml", "[default]\nport = 0\n[default.databases]\nmain = \"sqlite://app.db\"\n")], "`databases.main` as a string", STATUS, 1, &["databases.main", "Rocket.toml"]),
        cli(&["db-status", "--bogus"], "`db-status --bogus`", 64, &["--bogus"]),
        cli(&["db-frobnicate"], "`db-frobnicate`", 64, &["db-frobnicate"]),
        cli(&["db-upgrade", "--to", "abc"], "`db-upgrade --to abc`", 64, &["--to", "abc"]),
        cli(&["db-upgrade", "--to", "99"], "`db-upgrade --to 99` (no such version)", 1, &["99"]),
        Case { prepare: Some(|p| { p.write_migration("V2__two", "CREATE TABLE two (x INTEGER);", Some("DROP TABLE two;")); p.xtask(&["db-upgrade"]).ok(); }), ..cli(&["db-upgrade", "--to", "1"], "`db-upgrade --to 1` at version 2", 1, &["--to 1", "below", "version 2"]) },
        cli(&["db-downgrade", "--to", "7", "-y"], "`db-downgrade --to 7` at version 1", 1, &["--to 7", "above", "version 1"]),
        cli(&["db-downgrade", "--steps", "abc"], "`db-downgrade --steps abc`", 64, &["--steps"]),
        cli(&["db-downgrade", "--steps", "0", "-y"], "`db-downgrade --steps 0`", 64, &["--steps", "0"]),
        cli(&["db-downgrade", "--steps", "5", "-y"], "`db-downgrade --steps 5` with 1 applied", 1, &["5", "1"]),
        cli(&["db-downgrade", "--steps", "1", "--to", "0"], "`db-downgrade --steps 1 --to 0`", 64, &["--steps", "--to"]),
        cli(&["db-downgrade"], "`db-downgrade` without a terminal or `-y`", 1, &["-y"]),
        cli(&["db-reset"], "`db-reset` without a terminal or `-y`", 1, &["-y"]),
        cli(&["db-migrate", "Add Users"], "`db-migrate \"Add Users\"`", 1, &["Add Users", "snake_case"]),
        cli(&["db-migrate", "../escape"], "`db-migrate ../escape`", 1, &["../escape"]),
        cli(&["db-migrate", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"], "`db-migrate` with a 120-character name", 1, &["120 characters", "at most 100"]),
        cli(&["db-migrate", "initial"], "`db-migrate initial` (name taken)", 1, &["initial"]),
        cli(&["db-backup", "--keep", "0"], "`db-backup --keep 0`", 64, &["--keep", "0"]),
        cli(&["db-backup", "--keep", "abc"], "`db-backup --keep abc`", 64, &["--keep"]),
        cli(&["db-backup", "--out", "{project}/Rocket.toml"], "`db-backup --out` a regular file", 1, &["Rocket.toml"]),
        cli(&["db-backups", "--dir", "{project}/nowhere"], "`db-backups --dir` a missing directory", 1, &["nowhere"]),
        cli(&["db-backups", "--dir", "{project}/Rocket.toml"], "`db-backups --dir` a regular file", 1, &["Rocket.toml", "not a directory"]),
        cli(&["db-restore"], "`db-restore` without a file", 64, &["<FILE>"]),
        cli(&["db-restore", "{project}/nowhere.db", "-y"], "`db-restore` a missing file", 1, &["nowhere.db"]),
        cli(&["db-restore", "{project}/migrations", "-y"], "`db-restore` a directory", 1, &["migrations"]),
        cli(&["db-status", "--migrations-dir", "{project}/nowhere"], "`--migrations-dir` a missing directory", 1, &["nowhere"]),
        cli(&["db-copy"], "`db-copy` without `--to`", 64, &["--to"]),
        cli(&["db-schema", "--check"], "`db-schema --check` without `migrations/schema.sql`", 1, &["schema.sql", "db-schema"]),
        cli(&["db-schema", "--check", "--from-db"], "`db-schema --check --from-db`", 64, &["--from-db"]),
        cli(&["db-migrate", "x", "--allow-destructive"], "`db-migrate x --allow-destructive` without `--autogenerate`", 64, &["--autogenerate"]),
        cli(&["db-migrate", "add_x", "--autogenerate"], "`db-migrate --autogenerate` without `migrations/schema.sql`", 1, &["schema.sql", "db-schema"]),
        cli(&["db-copy", "--to", "mysql://u:hunter2@localhost/app"], "`db-copy --to mysql://…`", 1, &["--to", "mysql:"]),
        cli(&["db-copy", "--to", "sqlite://app.db"], "`db-copy --to` the configured database itself", 1, &["--to", "itself"]),
        cli(&["db-copy", "--to", "sqlite://{project}/notes.txt"], "`db-copy --to` a file that is not a database", 1, &["notes.txt"]),
        cli(&["db-copy", "--to", "sqlite::memory:"], "`db-copy --to sqlite::memory:`", 1, &["--to", "in-memory"]),
        file(Migrations, &[("migrations/V2__a.sql", "SELECT 1;"), ("migrations/V2__b.sql", "SELECT 2;")], "two files with one version", Cmd::Xtask(&["db-upgrade"]), 1, &["V2__a.sql, V2__b.sql"]),
        file(Migrations, &[("migrations/V3__gap.sql", "SELECT 1;")], "a gap (`V1`, `V3`)", Cmd::Xtask(&["db-upgrade"]), 1, &["V2 is missing"]),
        file(Migrations, &[("migrations/V2__x.SQL", "SELECT 1;")], "`V2__x.SQL`", Cmd::Xtask(&["db-status"]), 1, &["V2__x.SQL"]),
        file(Migrations, &[("migrations/v2__x.sql", "SELECT 1;")], "`v2__x.sql`", Cmd::Xtask(&["db-status"]), 1, &["v2__x.sql"]),
        file(Migrations, &[("migrations/V2_x.sql", "SELECT 1;")], "`V2_x.sql`", Cmd::Xtask(&["db-status"]), 1, &["V2_x.sql"]),
        file(Migrations, &[("migrations/V2__CamelCase.sql", "SELECT 1;")], "`V2__CamelCase.sql`", Cmd::Xtask(&["db-status"]), 1, &["V2__CamelCase.sql"]),
        file(Migrations, &[("migrations/V2__empty.sql", "\n")], "an empty migration file", Cmd::Xtask(&["db-upgrade"]), 1, &["V2__empty.sql", "empty"]),
        file(Migrations, &[("migrations/V2__orphan.down.sql", "SELECT 1;")], "a down script without its migration", Cmd::Xtask(&["db-upgrade"]), 1, &["V2__orphan.down.sql"]),
        file(Migrations, &[("migrations/V2__sneaky.sql", "CREATE TABLE a (x INTEGER);\nCOMMIT;\n")], "a migration with `COMMIT;`", Cmd::Xtask(&["db-upgrade"]), 1, &["V2__sneaky.sql: line 2", "COMMIT"]),
        file(Migrations, &[("migrations/V2__typo.sql", "CREATE TABLE a (x INTEGER);\nCREATE TABLE a (y INTEGER);\n")], "a migration that fails", Cmd::Xtask(&["db-upgrade"]), 1, &["V2__typo", "already exists"]),
        file(Migrations, &[("migrations/V1__initial.sql", "CREATE TABLE edited (x INTEGER);\n")], "an applied migration edited afterwards", Cmd::Xtask(&["db-upgrade"]), 1, &["V1__initial", "edited"]),
        file(Migrations, &[("migrations/V2__bin.sql", "\u{0}\u{1}\u{2}")], "a binary file named like a migration", Cmd::Xtask(&["db-upgrade"]), 1, &["V2__bin"]),
        file(Migrations, &[("migrations/V-2__neg.sql", "SELECT 1;")], "`V-2__neg.sql`", Cmd::Xtask(&["db-status"]), 1, &["V-2__neg.sql"]),
        file(Migrations, &[("migrations/V__x.sql", "SELECT 1;")], "`V__x.sql` (no version)", Cmd::Xtask(&["db-status"]), 1, &["V__x.sql"]),
        file(Migrations, &[("migrations/ V2__x.sql", "SELECT 1;")], "`\" V2__x.sql\"` (a leading space)", Cmd::Xtask(&["db-status"]), 1, &["V2__x.sql", "space"]),
        file(Migrations, &[("migrations/V01__lead.sql", "SELECT 1;")], "`V01__lead.sql`", Cmd::Xtask(&["db-status"]), 1, &["V01__lead.sql", "leading zero"]),
        file(Migrations, &[("migrations/V2147483648__big.sql", "SELECT 1;")], "`V2147483648__big.sql`", Cmd::Xtask(&["db-status"]), 1, &["V2147483648__big.sql", "2147483647"]),
        Case { prepare: Some(|p| std::fs::create_dir(p.path().join("migrations/V2__dir.sql")).unwrap()), ..file(Migrations, &[], "a directory named `V2__dir.sql`", Cmd::Xtask(&["db-status"]), 1, &["V2__dir.sql", "is a directory"]) },
        Case { prepare: Some(|p| std::os::unix::fs::symlink(p.path().join("gone.sql"), p.path().join("migrations/V2__gone.sql")).unwrap()), ..file(Migrations, &[], "a dangling link `V2__gone.sql`", Cmd::Xtask(&["db-status"]), 1, &["V2__gone.sql", "dangling"]) },
        Case { prepare: Some(|p| mkfifo(&p.path().join("migrations/V2__fifo.sql"))), ..file(Migrations, &[], "a FIFO named `V2__fifo.sql`", Cmd::Xtask(&["db-upgrade"]), 1, &["V2__fifo.sql", "FIFO"]) },
        Case { prepare: Some(|p| { tests::sqlite(&p.db_path(), "DROP TABLE refinery_schema_history; CREATE TABLE refinery_schema_history (version INTEGER)"); }), ..file(Migrations, &[], "a history table changed by hand", Cmd::Xtask(&["db-status"]), 1, &["refinery_schema_history", "by hand"]) },
        backup(|p| std::fs::write(p.path().join("backups/bad.db"), "hello").unwrap(), "a text file", &["bad.db"]),
        backup(|p| truncate_backup(p, false), "a backup cut short, manifest intact", &["bad.db"]),
        backup(|p| truncate_backup(p, true), "a backup with one byte flipped", &["bad.db", "checksum"]),
        backup(|p| { truncate_backup(p, true); std::fs::remove_file(p.path().join("backups/bad.db.json")).unwrap() }, "a corrupt backup without its manifest", &["bad.db"]),
        backup(|p| { truncate_backup(p, true); std::fs::write(p.path().join("backups/bad.db.json"), "{not json").unwrap() }, "a manifest that is not JSON", &["bad.db.json"]),
        Case { env: &[("DATABASE_URL", "{pg}")], ..case(Postgres, "a PostgreSQL migration with an unknown column", Cmd::Xtask(&["db-upgrade"]), 1, &["V3__typo", "column \"nope\" does not exist", "(at line 3)"]) },
        Case { env: &[("DATABASE_URL", "postgres://postgres:hunter2@127.0.0.1:5432/catalogue_no_such_db")], ..case(Postgres, "a PostgreSQL database that does not exist", STATUS, 1, &["catalogue_no_such_db", "does not exist"]) },
        file(Migrations, &[("migrations/V2__history.sql", "CREATE TABLE a (x INTEGER);\nDELETE FROM refinery_schema_history WHERE version = 1;\n")], "a migration that deletes rows of the history table", Cmd::Xtask(&["db-upgrade"]), 1, &["V2__history.sql: line 2", "refinery_schema_history"]),
        Case { env: &[("DATABASE_URL", "{pg}")], files: &[("migrations/V3__typo.sql", "CREATE EXTENSION IF NOT EXISTS no_such_extension;\n")], ..case(Postgres, "a migration that needs an extension the server lacks", Cmd::Xtask(&["db-upgrade"]), 1, &["V3__typo", "no_such_extension", "not available"]) },
        Case { env: &[("DATABASE_URL", "{pg}"), ("DATABASE_LOCK_TIMEOUT_MS", "-1")], ..case(Postgres, "`DATABASE_LOCK_TIMEOUT_MS=-1`", STATUS, 1, &["lock_timeout_ms", "DATABASE_LOCK_TIMEOUT_MS"]) },
        // The environment, `.env` and `Rocket.toml` (issue 17, round three).
        env(&[("DATABASE_URL", "postgres://u:hunter2{latin1}@127.0.0.1:1/app")], "`DATABASE_URL` with a password that is not UTF-8", &["DATABASE_URL", "not valid UTF-8"]),
        env(&[("ROCKET_PORT", "80{latin1}")], "`ROCKET_PORT` that is not UTF-8", &["ROCKET_PORT", "not valid UTF-8"]),
        Case { env: &[("DATABASE_COPY_TO", "sqlite://copy{latin1}.db")], ..case(Env, "`DATABASE_COPY_TO` that is not UTF-8", Cmd::Xtask(&["db-copy"]), 1, &["DATABASE_COPY_TO", "not valid UTF-8"]) },
        env(&[("ROCKET_DATABASES", "{other={url=\"postgres://u:hunter2@db/app\"}}")], "`ROCKET_DATABASES` naming a database other than `main`", &["databases.other", "ROCKET_DATABASES", "unknown database"]).with_cmd(Cmd::Both(&["db-init"])),
        env(&[("DATABASE_DISK_FREE_MIN_MB", "99999999999999")], "`DATABASE_DISK_FREE_MIN_MB=99999999999999`", &["disk_free_min_mb", "DATABASE_DISK_FREE_MIN_MB", "more than"]),
        Case { prepare: Some(|p| std::fs::create_dir(p.path().join("conf")).unwrap()), ..env(&[("ROCKET_CONFIG", "{project}/conf")], "`ROCKET_CONFIG` naming a directory", &["ROCKET_CONFIG", "conf", "is a directory"]) },
        Case { prepare: Some(|p| std::fs::write(p.path().join(".env"), b"DATABASE_URL=sqlite://app.db\nDATABASE_ECHO=caf\xe9\n").unwrap()), ..file(DotEnv, &[], "a `.env` line that is not UTF-8", STATUS, 1, &[".env", "line 2", "not valid UTF-8"]) },
        Case { files: &[(".env", "DATABASE_COPY_TO=sqlite://{project}/notes.txt\n")], ..case(DotEnv, "`.env`: `DATABASE_COPY_TO` naming a file that is not a database", Cmd::Xtask(&["db-copy"]), 1, &["DATABASE_COPY_TO", "notes.txt"]) },
        file(RocketToml, &[("Rocket.toml", "[default.databases.main]\nurl = \"sqlite://app.db\"\n[production.databases.mian]\nurl = \"postgres://app:hunter2@db/app\"\n")], "a misspelt database name (`[production.databases.mian]`)", Cmd::Xtask(&["db-init"]), 1, &["databases.mian", "Rocket.toml", "unknown database"]).with_env(&[("ROCKET_PROFILE", "production")]),
        Case { prepare: Some(|p| { std::fs::remove_file(p.path().join("Rocket.toml")).unwrap(); std::fs::create_dir(p.path().join("Rocket.toml")).unwrap() }), ..file(RocketToml, &[], "`Rocket.toml` is a directory", STATUS, 1, &["Rocket.toml", "is a directory"]) },
        Case { prepare: Some(|p| { std::fs::remove_file(p.path().join("Rocket.toml")).unwrap(); mkfifo(&p.path().join("Rocket.toml")) }), ..file(RocketToml, &[], "`Rocket.toml` is a FIFO", STATUS, 1, &["Rocket.toml", "FIFO"]) },
        env(&[("TMPDIR", "/tmp/caf{latin1}")], "`TMPDIR` that is not UTF-8", &["TMPDIR", "not valid UTF-8"]),
        env(&[("DATABASE_URL", "sqlite://{project}/caf{latin1}/app.db")], "`DATABASE_URL`: a SQLite path that is not UTF-8", &["DATABASE_URL", "not valid UTF-8"]).with_cmd(Cmd::Both(&["db-init"])),
        env(&[("DATABASE_URL", "postgres://u:hunter2@127.0.0.1:1/app?bogus=1")], "`DATABASE_URL` with an unknown parameter (`?bogus=1`)", &["DATABASE_URL", "unknown parameter `bogus`"]),
        env(&[("DATABASE_URL", "postgres://u:hunter2@127.0.0.1:1/app?sslmode=require&sslmode=disable")], "`DATABASE_URL` with `sslmode` twice", &["DATABASE_URL", "`sslmode` is given more than once"]),
        Case { prepare: Some(|p| std::fs::write(p.path().join(".env"), "DATABASE_URL=postgres://u:${PGPW}@127.0.0.1:1/app\n").unwrap()), env: &[("PGPW", "hunt{latin1}r2")], ..case(DotEnv, "`.env`: `${PGPW}` of a variable that is not UTF-8", STATUS, 1, &[".env", "line 1", "PGPW", "not valid UTF-8"]) },
        file(RocketToml, &[("Rocket.toml", "[databases.main]\nurl = \"postgres://app:hunter2@db/app\"\n")], "`[databases.main]` without a profile", STATUS, 1, &["Rocket.toml", "profile named `databases`", "[default.databases]"]),
        // Declared schema (issue 17): errors name the line of the clause, not the first statement.
        file(Migrations, &[("migrations/schema.sql", "CREATE TABLE a (\n    id BIGINT NOT NULL\n);\nCREATE TABLE t (\n    id BIGINT NOT NULL,\n    age INTEGER\n        CHECK (age >= 0)\n);\n")], "`schema.sql`: a `CHECK` on line 7", Cmd::Xtask(&["db-schema", "--check"]), 1, &["schema.sql, line 7", "CHECK"]),
        file(Migrations, &[("migrations/schema.sql", "CREATE TABLE a (\n    id BIGINT NOT NULL\n);\nCREATE TABLE t (\n    id BIGINT NOT NULL,\n    PRIMARY KEY (id)\n)\nWITHOUT ROWID;\n")], "`schema.sql`: `WITHOUT ROWID` on line 8", Cmd::Xtask(&["db-schema", "--check"]), 1, &["schema.sql, line 8", "WITHOUT ROWID"]),
        file(Migrations, &[("migrations/schema.sql", "CREATE TABLE a (\n    id BIGINT NOT NULL\n);\nCREATE TABLE t (\n    name TEXT\n        COLLATE NOCASE\n);\n")], "`schema.sql`: `COLLATE` on line 6", Cmd::Xtask(&["db-schema", "--check"]), 1, &["schema.sql, line 6", "COLLATE"]),
        file(Migrations, &[("migrations/schema.sql", "CREATE TABLE a (\n    id BIGINT NOT NULL\n);\nCREATE TABLE t (\n    id BIGINT,\n    twice BIGINT\n        GENERATED ALWAYS AS (id * 2) STORED\n);\n")], "`schema.sql`: a generated column on line 7", Cmd::Xtask(&["db-schema", "--check"]), 1, &["schema.sql, line 7", "generated column"]),
        file(Migrations, &[("migrations/schema.sql", "CREATE TABLE a (\n    id BIGINT NOT NULL\n);\nCREATE TABLE t (\n    id BIGINT\n);\nCREATE INDEX t_id ON t (id)\n    WHERE id > 0;\n")], "`schema.sql`: a partial index, `WHERE` on line 8", Cmd::Xtask(&["db-schema", "--check"]), 1, &["schema.sql, line 8", "index t_id"]),
        file(Migrations, &[("migrations/schema.sql", "CREATE TABLE t (\n    id BIGINT NOT NULL\n);\n\nCREATE TABLE IF NOT EXISTS t (\n    other TEXT\n);\n")], "`schema.sql`: a second `CREATE TABLE IF NOT EXISTS` of a table", Cmd::Xtask(&["db-schema", "--check"]), 1, &["schema.sql, line 5", "table t", "first at line 1"]),
        file(Migrations, &[("migrations/schema.sql", "CREATE TABLE by_hand (\n    id BIGINT NOT NULL\n);\n")], "`db-schema` over a `schema.sql` edited by hand", Cmd::Xtask(&["db-schema"]), 1, &["schema.sql", "declares what no migration produces", "--autogenerate", "--force"]),
        // Backups (issue 17): `backup_copy_to` is never backup_dir, inside it or around it, however spelt.
        Case { prepare: Some(|p| std::os::unix::fs::symlink(p.path().join("backups"), p.path().join("offsite")).unwrap()), ..env(&[("DATABASE_BACKUP_COPY_TO", "offsite")], "`DATABASE_BACKUP_COPY_TO` a symlink to the backup directory", &["backup_copy_to", "DATABASE_BACKUP_COPY_TO", "backup_dir itself"]) },
        env(&[("DATABASE_BACKUP_COPY_TO", "nowhere/../backups")], "`DATABASE_BACKUP_COPY_TO=nowhere/../backups`", &["backup_copy_to", "backup_dir itself"]),
        env(&[("DATABASE_BACKUP_COPY_TO", "backups/offsite")], "`DATABASE_BACKUP_COPY_TO` inside the backup directory", &["backup_copy_to", "inside backup_dir"]),
        file(RocketToml, &[("Rocket.toml", "[default.databases.main]\nbackup_copy_to = \".\"\n")], "`backup_copy_to = \".\"` (the directory holding the backup directory)", STATUS, 1, &["backup_copy_to", "Rocket.toml", "holds backup_dir"]),
        // Scratch databases and db-copy targets (issue 17).
        env(&[("TMPDIR", "{project}/notes.txt")], "`TMPDIR` naming a file (where `db-check` puts its scratch database)", &["scratch database", "notes.txt", "not a directory"]).with_cmd(Cmd::Xtask(&["db-check"])),
        Case { prepare: Some(|p| { std::fs::write(p.path().join("other.db"), b"").unwrap(); tests::sqlite(&p.path().join("other.db"), "PRAGMA journal_mode = DELETE; CREATE TABLE x (a INTEGER); INSERT INTO x VALUES (1);"); }), ..cli(&["db-copy", "--to", "sqlite://other.db"], "`db-copy --to` a SQLite file holding rows (inspected read-only, left byte for byte)", 1, &["other", "not empty", "table x has rows", "--force"]) },
        // Backups that are not what their manifest says, and db-backup's settings (issue 17, backup probe).
        backup(|p| { truncate_backup(p, false); std::fs::remove_file(p.path().join("backups/bad.db")).unwrap(); mkfifo(&p.path().join("backups/bad.db")) }, "a FIFO named like a backup, with a manifest", &["bad.db", "not a regular file"]),
        backup(|p| copied_backup(p, |m| m.replace("\"verified\": true", "\"verified\": false")), "a manifest saying `\"verified\": false`", &["bad.db", "not verified"]),
        backup(|p| copied_backup(p, |m| m.replace("\"file\": \"bad.db\"", "\"file\": \"other.db\"")), "a manifest naming another file", &["bad.db", "describes another file", "other.db"]),
        cli(&["db-backup", "--wait", "soon"], "`db-backup --wait soon`", 64, &["--wait"]),
        cli(&["db-backup", "--wait", "99999999999"], "`db-backup --wait 99999999999`", 64, &["--wait"]),
        Case { env: &[("DATABASE_BACKUP_COPY_TO", "{project}/unmounted")], ..case(Env, "`DATABASE_BACKUP_COPY_TO` missing (an unmounted share) for `db-backup`", Cmd::Xtask(&["db-backup"]), 1, &["backup_copy_to", "unmounted", "does not exist"]) },
        // Migrations (issue 19): statements the runner cannot run are refused by the set's rules.
        file(Migrations, &[("migrations/V2__load.sql", "CREATE TABLE a (x INTEGER);\nCOPY a (x) FROM STDIN;\n")], "a migration with `COPY … FROM STDIN`", Cmd::Xtask(&["db-upgrade"]), 1, &["V2__load.sql: line 2", "COPY … FROM STDIN"]),
        file(Migrations, &[("migrations/V2__dump.sql", "SELECT 1;\n"), ("migrations/V2__dump.down.sql", "\nCOPY (SELECT 1) TO STDOUT;\n")], "a down script with `COPY … TO STDOUT`", Cmd::Xtask(&["db-upgrade"]), 1, &["V2__dump.down.sql: line 2", "COPY … TO STDOUT"]),
        file(Migrations, &[("migrations/V2__idx.sql", "CREATE TABLE a (x INTEGER);\nCREATE INDEX CONCURRENTLY a_x ON a (x);\n")], "`CREATE INDEX CONCURRENTLY` without `-- db: no-transaction`", Cmd::Xtask(&["db-upgrade"]), 1, &["V2__idx.sql: line 2", "CONCURRENTLY", "-- db: no-transaction"]),
        // db-schema (issue 19): enum types and extensions in schema.sql.
        file(Migrations, &[("migrations/schema.sql", "CREATE TABLE t (\n    id BIGINT NOT NULL\n);\n\nCREATE TYPE mood AS ENUM ('ok', 'sad');\n")], "`schema.sql`: `CREATE TYPE … AS ENUM` on SQLite", Cmd::Xtask(&["db-schema", "--check"]), 1, &["schema.sql, line 5", "type mood", "only PostgreSQL"]),
        file(Migrations, &[("migrations/schema.sql", "CREATE TABLE t (\n    id BIGINT NOT NULL\n);\nCREATE TYPE pair AS (a INTEGER, b INTEGER);\n")], "`schema.sql`: a composite `CREATE TYPE`", Cmd::Xtask(&["db-schema", "--check"]), 1, &["schema.sql, line 4", "CREATE TYPE … AS ENUM", "CREATE TYPE pair"]),
        file(Migrations, &[("migrations/schema.sql", "CREATE TYPE mood AS ENUM ('ok');\nCREATE TABLE t (\n    id BIGINT NOT NULL\n);\nCREATE TYPE mood AS ENUM ('ok', 'sad');\n")], "`schema.sql`: an enum type declared twice", Cmd::Xtask(&["db-schema", "--check"]), 1, &["schema.sql, line 5", "type mood", "first at line 1"]),
        file(Migrations, &[("migrations/schema.sql", "CREATE TABLE t (\n    id BIGINT NOT NULL\n);\nCREATE EXTENSION IF NOT EXISTS pg_trgm;\n")], "`schema.sql`: `CREATE EXTENSION` on SQLite", Cmd::Xtask(&["db-schema", "--check"]), 1, &["schema.sql, line 4", "extension pg_trgm", "SQLite"]),
    ]
}

/// A copy of a real backup at `backups/bad.db`, its manifest naming it and then changed
/// by `edit`.
fn copied_backup(project: &Project, edit: fn(&str) -> String) {
    project.xtask(&["db-backup"]).ok();
    let backups = project.path().join("backups");
    let real = tests::newest_backup(&backups, ".db");
    std::fs::copy(&real, backups.join("bad.db")).unwrap();
    let manifest = std::fs::read_to_string(format!("{}.json", real.display())).unwrap();
    let name = real.file_name().unwrap().to_string_lossy().to_string();
    std::fs::write(
        backups.join("bad.db.json"),
        edit(&manifest.replace(&name, "bad.db")),
    )
    .unwrap();
}

/// An environment value with `{latin1}` replaced by the byte 0xE9, which is not UTF-8
/// (`é` in Latin-1, as a shell with another locale would send it).
fn not_utf8(value: &str) -> OsString {
    let mut bytes = Vec::new();
    for (n, part) in value.split("{latin1}").enumerate() {
        if n > 0 {
            bytes.push(0xE9);
        }
        bytes.extend_from_slice(part.as_bytes());
    }
    OsString::from_vec(bytes)
}

/// A line with the times in backup names (`20261205T235206.771Z`) as `<time>`, so that
/// the document does not change from run to run.
fn mask_times(line: &str) -> String {
    // `d` stands for a digit.
    const PATTERN: &str = "ddddddddTdddddd.dddZ";
    let chars: Vec<char> = line.chars().collect();
    let at = |i: usize| {
        chars.len() - i >= PATTERN.len()
            && PATTERN
                .chars()
                .zip(&chars[i..])
                .all(|(want, got)| match want {
                    'd' => got.is_ascii_digit(),
                    want => want == *got,
                })
    };
    let mut out = String::new();
    let mut i = 0;
    while i < chars.len() {
        if at(i) {
            out.push_str("<time>");
            i += PATTERN.len();
        } else {
            out.push(chars[i]);
            i += 1;
        }
    }
    out
}

/// Makes a named pipe at `path`.
fn mkfifo(path: &Path) {
    let status = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .unwrap();
    assert!(status.success(), "mkfifo {}", path.display());
}

/// Leaves a damaged copy of a real backup (and its manifest) at `backups/bad.db`:
/// cut in half, or with one byte flipped when `flip`.
fn truncate_backup(project: &Project, flip: bool) {
    project.xtask(&["db-backup"]).ok();
    let backups = project.path().join("backups");
    let real = tests::newest_backup(&backups, ".db");
    let mut bytes = std::fs::read(&real).unwrap();
    if flip {
        let at = bytes.len() / 2;
        bytes[at] ^= 0xff;
    } else {
        bytes.truncate(bytes.len() / 2);
    }
    std::fs::write(backups.join("bad.db"), bytes).unwrap();
    let manifest = std::fs::read_to_string(format!("{}.json", real.display())).unwrap();
    let name = real.file_name().unwrap().to_string_lossy().to_string();
    std::fs::write(
        backups.join("bad.db.json"),
        manifest.replace(&name, "bad.db"),
    )
    .unwrap();
}

/// An initialized SQLite database, copied into each case's project.
fn template_db() -> &'static Path {
    static TEMPLATE: OnceLock<Project> = OnceLock::new();
    TEMPLATE
        .get_or_init(|| {
            let project = Project::sqlite();
            project.xtask(&["db-init"]).ok();
            project
        })
        .db_path()
        .leak()
}

/// What one case printed, for the document.
struct Outcome {
    code: i32,
    line: String,
}

fn run_case(case: &Case) -> Result<Outcome, String> {
    let project = Project::sqlite();
    std::fs::copy(template_db(), project.db_path()).unwrap();
    std::fs::create_dir_all(project.path().join("backups")).unwrap();
    std::fs::write(project.path().join("notes.txt"), "not a database\n").unwrap();
    let root = project.path().to_string_lossy().to_string();
    let pg = if case.env.iter().any(|(_, v)| v.contains("{pg}")) {
        match PgDatabase::create() {
            Some(pg) => Some(pg),
            None => return Err("skipped: PostgreSQL not reachable".into()),
        }
    } else {
        None
    };
    let fill = |s: &str| {
        let s = s.replace("{project}", &root);
        match &pg {
            Some(pg) => s.replace("{pg}", &pg.url),
            None => s,
        }
    };
    if let Some(pg) = &pg {
        // A real database at version 2, about to get a migration that fails at line 3.
        project.write_migration(
            "V2__notes",
            "CREATE TABLE notes (id INTEGER PRIMARY KEY);",
            Some("DROP TABLE notes;"),
        );
        project
            .xtask_with(&["db-init"], &[("DATABASE_URL", &pg.url)])
            .ok();
        project.write_migration(
            "V3__typo",
            "ALTER TABLE notes ADD COLUMN x INTEGER;\n\nSELECT nope FROM notes;\n",
            None,
        );
    }
    if let Some(prepare) = case.prepare {
        prepare(&project);
    }
    for (name, content) in case.files {
        std::fs::write(project.path().join(name), fill(content)).unwrap();
    }
    let env: Vec<(String, OsString)> = case
        .env
        .iter()
        .map(|(k, v)| (k.to_string(), not_utf8(&fill(v))))
        .collect();
    let env: Vec<(&str, &OsStr)> = env
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_os_str()))
        .collect();
    let before = sha256(&project.db_path());
    let pg_tables = |pg: &Option<PgDatabase>| {
        pg.as_ref().map(|pg| pg.execute("SELECT string_agg(table_name, ',' ORDER BY table_name) FROM information_schema.tables WHERE table_schema = 'public'")).unwrap_or_default()
    };
    let pg_before = pg_tables(&pg);

    let mut runs: Vec<(&str, Run, i32)> = Vec::new();
    let args = match case.cmd {
        Cmd::Xtask(args) => Some(args),
        Cmd::Both(args) => {
            let run = project
                .server_until_exit(&env)
                .ok_or("the server started")?;
            runs.push(("server", run, 1));
            Some(args)
        }
        Cmd::Server => {
            let run = project
                .server_until_exit(&env)
                .ok_or("the server started")?;
            runs.push(("server", run, 1));
            None
        }
    };
    if let Some(args) = args {
        let args: Vec<String> = args.iter().map(|a| fill(a)).collect();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut command = project.command("xtask");
        command
            .env("RUST_BACKTRACE", "1")
            .args(&args)
            .envs(env.iter().copied());
        runs.push((
            "xtask",
            tests::run_with_deadline(command, std::time::Duration::from_secs(60))
                .ok_or("still running after 60 s")?,
            case.code,
        ));
    }

    let mut line = String::new();
    for (what, run, code) in &runs {
        let all = format!("{}{}", run.stdout, run.stderr);
        if run.code != *code {
            return Err(format!(
                "{what}: exit {} instead of {code}:\n{all}",
                run.code
            ));
        }
        if all.contains("panicked") || all.contains("hunter2") {
            return Err(format!("{what}: a panic or a password:\n{all}"));
        }
        let errors: Vec<&str> = run
            .stderr
            .lines()
            .filter(|l| l.starts_with("error:"))
            .collect();
        let [error] = errors[..] else {
            return Err(format!("{what}: {} error lines:\n{all}", errors.len()));
        };
        if let Some(word) = case.names.iter().find(|w| !error.contains(*w)) {
            return Err(format!("{what}: `{word}` missing from: {error}"));
        }
        line = mask_times(&error.replace(&root, "<project>"));
        if let Some(pg) = &pg {
            line = line.replace(&pg.url, "<url>");
        }
    }
    if sha256(&project.db_path()) != before {
        return Err("the SQLite database changed".into());
    }
    if pg_tables(&pg) != pg_before {
        return Err("the PostgreSQL database changed".into());
    }
    Ok(Outcome {
        code: case.code,
        line,
    })
}

/// Raw HTTP requests a careless or hostile client sends, with the status they get.
fn http_cases() -> Vec<(&'static str, Vec<u8>, u16)> {
    let get = |target: &str, extra: &str| {
        format!("GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n{extra}Connection: close\r\n\r\n")
            .into_bytes()
    };
    vec![
        ("`GET /nope`", get("/nope", ""), 404),
        ("`POST /health/db`", b"POST /health/db HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}".to_vec(), 404),
        ("`DELETE /health`", b"DELETE /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".to_vec(), 404),
        ("`GET /docs/../../etc/passwd`", get("/docs/../../etc/passwd", ""), 404),
        ("`GET /docs/%2e%2e/%2e%2e/Cargo.toml`", get("/docs/%2e%2e/%2e%2e/Cargo.toml", ""), 404),
        ("`GET /docs/..%2f..%2fRocket.toml`", get("/docs/..%2f..%2fRocket.toml", ""), 404),
        ("an 8 KiB URL", get(&format!("/health?{}", "a".repeat(8 * 1024)), ""), 200),
        ("a 64 KiB URL", get(&format!("/health?{}", "a".repeat(64 * 1024)), ""), 414),
        ("a 1 MiB URL", get(&format!("/health?{}", "a".repeat(1 << 20)), ""), 431),
        ("a 1 MiB header", get("/health", &format!("X-Big: {}\r\n", "b".repeat(1 << 20))), 431),
        ("10,000 headers", get("/health", &"X-A: 1\r\n".repeat(10_000)), 431),
        ("a request line that is not HTTP", b"HELLO\r\n\r\n".to_vec(), 400),
        ("a body without a length on `GET /health/db`", b"GET /health/db HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\nzz\r\n".to_vec(), 200),
    ]
}

#[test]
fn every_careless_input_gets_one_clear_line_and_changes_nothing() {
    let cases = cases();
    let mut failures = Vec::new();
    let mut outcomes = Vec::new();
    for (n, case) in cases.iter().enumerate() {
        match run_case(case) {
            Ok(outcome) => outcomes.push((case, outcome)),
            Err(reason) if reason.starts_with("skipped") => {
                tests::skip(&format!("case {}: {reason}", n + 1))
            }
            Err(reason) => failures.push(format!("case {} ({}): {reason}", n + 1, case.input)),
        }
    }

    // HTTP: one server; every request gets an answer, the server stays up and healthy.
    let project = Project::sqlite();
    std::fs::copy(template_db(), project.db_path()).unwrap();
    let before = sha256(&project.db_path());
    let server = tests::Server::start(&project, &[]);
    let mut http = Vec::new();
    for (input, raw, status) in http_cases() {
        match tests::request(server.port, &raw) {
            Ok(response) if response.status == status => {
                if response.body.contains("root:")
                    || response.body.contains("[package]")
                    || response.body.contains("[default")
                {
                    failures.push(format!("{input}: a file outside the docs was served"));
                }
                http.push((input, status));
            }
            Ok(response) => failures.push(format!(
                "{input}: status {} instead of {status}",
                response.status
            )),
            Err(e) => failures.push(format!("{input}: no answer ({e})")),
        }
    }
    let health = server.get("/health/db");
    if health.status != 200 {
        failures.push(format!("/health/db after the HTTP cases: {}", health.body));
    }
    drop(server);
    if sha256(&project.db_path()) != before {
        failures.push("the HTTP cases changed the database".into());
    }

    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len() + http.len(),
        failures.join("\n\n")
    );
    assert!(
        outcomes.len() + http.len() >= 60 || tests::in_ci(),
        "fewer than 60 cases ran"
    );
    if outcomes.len() == cases.len() {
        check_document(&render(&outcomes, &http));
    }
}

/// `docs/reliability.md` from the outcomes.
fn render(outcomes: &[(&Case, Outcome)], http: &[(&str, u16)]) -> String {
    let mut doc = String::from(
        "# Reliability: careless input and crashes\n\n\
         <!-- Generated by tests/tests/it/catalogue.rs; do not edit. \
         `UPDATE_DOCS=1 cargo test -p tests --test it catalogue` rewrites it. -->\n\n\
         Every row below is a case of the bad-input catalogue test, run against the real \
         binaries with `RUST_BACKTRACE=1`. Each one asserts the exit code, exactly one \
         `error:` line naming what was wrong and where it came from, no panic, no \
         password in any output, and a live database byte-identical afterwards. Where the \
         server is listed, it refuses to start (exit 1) with the same line as \
         `cargo xtask`. Migration files are embedded into the server when it is built, and \
         the build refuses the same mistakes. Exit codes: 1 error, 64 a command line that \
         does not parse (see [database.md](database.md#commands)).\n",
    );
    let mut area = None;
    for (n, (case, outcome)) in outcomes.iter().enumerate() {
        if area != Some(case.area) {
            area = Some(case.area);
            doc.push_str(&format!("\n## {}\n\n| # | input | run | exit | what the user sees |\n|---|---|---|---|---|\n", case.area.title()));
        }
        let run = match case.cmd {
            Cmd::Xtask(args) => format!("`xtask {}`", args.join(" ")),
            Cmd::Both(args) => format!("server, `xtask {}`", args.join(" ")),
            Cmd::Server => "server".to_string(),
        }
        .replace("{project}/", "")
        .replace("{project}", ".");
        let line = outcome.line.replace('|', "\\|");
        doc.push_str(&format!(
            "| {} | {} | {} | {} | `{}` |\n",
            n + 1,
            case.input,
            run.replace('|', "\\|"),
            outcome.code,
            line.replace('`', "'")
        ));
    }
    doc.push_str("\n## HTTP requests\n\nOne running server; after all of them it still answers `/health/db` with 200 and the database is unchanged. No response serves a file from outside the embedded docs.\n\n| # | request | status |\n|---|---|---|\n");
    for (n, (input, status)) in http.iter().enumerate() {
        doc.push_str(&format!(
            "| {} | {input} | {status} |\n",
            outcomes.len() + n + 1
        ));
    }
    doc.push_str(FAULT_SUITE);
    doc
}

/// The crash and fault experiments, from `tests/tests/it/{copy,faults,postgres_faults,restore,scheduled_backups}.rs`.
const FAULT_SUITE: &str = include_str!("catalogue/fault_suite.md");

fn check_document(rendered: &str) {
    let path = workspace_root().join("docs/reliability.md");
    let current = std::fs::read_to_string(&path).unwrap_or_default();
    if current == rendered {
        return;
    }
    if std::env::var_os("UPDATE_DOCS").is_some() {
        std::fs::write(&path, rendered).unwrap();
        return;
    }
    panic!(
        "docs/reliability.md is stale: run `UPDATE_DOCS=1 cargo test -p tests --test it catalogue` and commit it"
    );
}

#[test]
fn the_fault_suite_section_names_tests_that_exist() {
    let sources: String = [
        "copy.rs",
        "faults.rs",
        "postgres_faults.rs",
        "restore.rs",
        "scheduled_backups.rs",
    ]
    .iter()
    .map(|f| std::fs::read_to_string(workspace_root().join("tests/tests/it").join(f)).unwrap())
    .collect();
    let named: Vec<&str> = FAULT_SUITE
        .split('`')
        .skip(1)
        .step_by(2)
        .filter(|s| {
            s.matches('_').count() >= 4
                && s.chars()
                    .all(|c| c.is_ascii_lowercase() || c == '_' || c.is_ascii_digit())
        })
        .collect();
    assert!(named.len() >= 10, "{named:?}");
    for name in named {
        assert!(
            sources.contains(&format!("fn {name}()")),
            "no test named {name}"
        );
    }
}
