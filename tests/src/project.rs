//! A temporary project (`Rocket.toml` and a copy of the migrations) and the workspace
//! binaries run in it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::pg::path_with_pg_tools;
use crate::{Run, binary, free_port, run_with_deadline};

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ sits in the workspace")
        .to_path_buf()
}

/// A temporary project: `Rocket.toml`, a copy of `migrations/`, and nothing else.
pub struct Project {
    dir: tempfile::TempDir,
}

impl Project {
    /// A project whose database is `sqlite://app.db` (next to its `Rocket.toml`).
    pub fn sqlite() -> Self {
        Self::with_url("sqlite://app.db")
    }

    /// A project whose `Rocket.toml` points at `url`.
    pub fn with_url(url: &str) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(
            dir.path().join("Rocket.toml"),
            format!(
                "[default]\naddress = \"127.0.0.1\"\nport = 0\nlog_level = \"normal\"\n\n\
                 [default.databases.main]\nurl = \"{url}\"\nacquire_timeout_ms = 500\nbusy_timeout_ms = 2000\n\
                 disk_free_min_mb = 0\n\n\
                 [production.databases.main]\nurl = \"{url}\"\n"
            ),
        )
        .expect("write Rocket.toml");
        let migrations = dir.path().join("migrations");
        std::fs::create_dir(&migrations).expect("migrations dir");
        for entry in std::fs::read_dir(workspace_root().join("migrations")).expect("migrations/") {
            let entry = entry.expect("entry");
            // The declared schema describes the workspace's migrations, not a test's.
            if entry.file_name() == "schema.sql" {
                continue;
            }
            std::fs::copy(entry.path(), migrations.join(entry.file_name()))
                .expect("copy migration");
        }
        Self { dir }
    }

    /// The project directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The default SQLite database file.
    pub fn db_path(&self) -> PathBuf {
        self.path().join("app.db")
    }

    /// Writes `V2__events` (an `events (seq, payload)` table) and its down script.
    pub fn write_events_migration(&self) {
        self.write_migration(
            "V2__events",
            "CREATE TABLE events (seq INTEGER PRIMARY KEY, payload TEXT NOT NULL);",
            Some("DROP TABLE events;"),
        );
    }

    /// Writes `V2__mood`, `V3__happy` and `V4__person` (PostgreSQL): an enum value added by
    /// one migration and used by a later one, as real histories do.
    pub fn write_mood_migrations(&self) {
        self.write_migration(
            "V2__mood",
            "CREATE TYPE mood AS ENUM ('ok');",
            Some("DROP TYPE mood;"),
        );
        self.write_migration(
            "V3__happy",
            "ALTER TYPE mood ADD VALUE 'happy';",
            Some("SELECT 1;"),
        );
        self.write_migration(
            "V4__person",
            "CREATE TABLE person (id BIGINT NOT NULL, m mood NOT NULL DEFAULT 'happy', PRIMARY KEY (id));",
            Some("DROP TABLE person;"),
        );
    }

    /// Writes a migration pair into `migrations/`.
    pub fn write_migration(&self, id: &str, up: &str, down: Option<&str>) {
        let dir = self.path().join("migrations");
        std::fs::write(dir.join(format!("{id}.sql")), up).expect("write up script");
        if let Some(down) = down {
            std::fs::write(dir.join(format!("{id}.down.sql")), down).expect("write down script");
        }
    }

    /// Writes migration `id` as one variant per engine (`<id>.sqlite.sql`,
    /// `<id>.postgres.sql`) and one portable down script.
    pub fn write_variants(&self, id: &str, sqlite: &str, postgres: &str, down: &str) {
        let dir = self.path().join("migrations");
        for (suffix, sql) in [
            ("sqlite.sql", sqlite),
            ("postgres.sql", postgres),
            ("down.sql", down),
        ] {
            std::fs::write(dir.join(format!("{id}.{suffix}")), sql).expect("write a variant");
        }
    }

    /// A command for a workspace binary, run in this project with a clean environment.
    pub fn command(&self, binary_name: &str) -> Command {
        let mut command = Command::new(binary(binary_name));
        command
            .current_dir(self.path())
            .stdin(Stdio::null())
            .env("PATH", path_with_pg_tools());
        for (key, _) in std::env::vars_os() {
            let name = key.to_string_lossy();
            if name.starts_with("ROCKET_") || name.starts_with("DATABASE_") {
                command.env_remove(key);
            }
        }
        command
    }

    /// Starts `xtask <args>` in this project without waiting (output discarded), e.g. to kill it.
    pub fn spawn_xtask(&self, args: &[&str]) -> Child {
        self.command("xtask")
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn xtask")
    }

    /// Runs `xtask <args>` in this project.
    pub fn xtask(&self, args: &[&str]) -> Run {
        self.xtask_with(args, &[])
    }

    /// Runs `xtask <args>` in this project with extra environment variables.
    pub fn xtask_with(&self, args: &[&str], env: &[(&str, &str)]) -> Run {
        let output = self
            .command("xtask")
            .args(args)
            .envs(env.iter().copied())
            .output()
            .expect("run xtask");
        Run::from(output)
    }

    /// Runs the server with `env` (`RUST_BACKTRACE=1`) and waits at most 20 s for it to
    /// exit; `None` (after killing it) when it kept running.
    pub fn server_until_exit<V: AsRef<std::ffi::OsStr>>(&self, env: &[(&str, V)]) -> Option<Run> {
        let mut command = self.command("server");
        command
            .env("RUST_BACKTRACE", "1")
            .env("ROCKET_PORT", free_port().to_string())
            .envs(env.iter().map(|(k, v)| (k, v)));
        run_with_deadline(command, Duration::from_secs(20))
    }
}

/// The newest backup in `dir` whose name ends with `suffix` (`.db`, `.db.gz`): backup
/// names start with the database's name and the time, so the last by name is the newest.
pub fn newest_backup(dir: &Path, suffix: &str) -> PathBuf {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.to_string_lossy().ends_with(suffix))
        .collect();
    files.sort();
    files.pop().expect("a backup")
}
