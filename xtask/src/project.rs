//! What every command needs: the configuration, the migrations, and a few shared steps
//! (opening the database, the production guard, confirmation, the safety backup).

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use server::backup;
use server::config::{AppConfig, DbSettings};
use server::db::{DbPool, OpenMode};
use server::migrations::{self, MigrationSet};
use server::url::DatabaseUrl;
use xshell::Shell;

use crate::progress::Reporter;

/// The project a command runs against.
pub struct Project {
    /// Shell rooted at the project root (the directory of `Rocket.toml`).
    pub sh: Shell,
    /// Where the user ran the command; relative paths on the command line resolve against it.
    pub cwd: PathBuf,
    /// The loaded configuration.
    pub config: AppConfig,
    /// Where migrations are read from.
    pub migrations_dir: PathBuf,
    /// The migrations, as the configured engine runs them.
    pub migrations: MigrationSet,
}

impl Project {
    /// Loads configuration and migrations the way the server does. A missing migrations
    /// directory is an error unless `may_create` (db-migrate creates it).
    pub fn load(migrations_dir: Option<PathBuf>, may_create: bool) -> anyhow::Result<Self> {
        let sh = Shell::new().context("cannot start a shell")?;
        let cwd = sh.current_dir();
        let mut config = AppConfig::load()?;
        // Behind a pooler the commands use the direct connection (`migrate_url`).
        config.database = config.database.direct();
        for warning in &config.warnings {
            note!("warning: {warning}");
        }
        sh.change_dir(&config.root);
        let migrations_dir = migrations_dir
            .map(|d| cwd.join(d))
            .unwrap_or_else(|| migrations::dir_in(&config.root));
        let migrations = if may_create && !migrations_dir.exists() {
            MigrationSet::default()
        } else {
            MigrationSet::from_dir(&migrations_dir)?
        }
        .for_engine(config.database.url.kind());
        Ok(Self {
            sh,
            cwd,
            config,
            migrations_dir,
            migrations,
        })
    }

    /// Database settings for a short-lived command: a small pool.
    pub fn settings(&self) -> DbSettings {
        self.config.database.maintenance()
    }

    /// Where the database is, for messages: the masked URL, paths relative to the project root.
    pub fn location(&self) -> String {
        match self.config.database.url.sqlite_path() {
            Some(path) => self.display(path),
            None => self.config.database.url.to_string(),
        }
    }

    /// A path relative to the project root when it is inside it.
    pub fn display(&self, path: &Path) -> String {
        path.strip_prefix(self.sh.current_dir())
            .unwrap_or(path)
            .display()
            .to_string()
    }

    /// A command-line path, resolved against the directory the command ran in.
    pub fn user_path(&self, path: &Path) -> PathBuf {
        self.cwd.join(path)
    }

    /// Opens the configured database; with `MustExist`, a missing SQLite file is an error.
    pub async fn open(&self, mode: OpenMode) -> anyhow::Result<DbPool> {
        self.guard_memory()?;
        if mode != OpenMode::Create
            && let Some(path) = self.config.database.url.sqlite_path()
            && !path.exists()
        {
            bail!(
                "database {} does not exist; create it with `cargo xtask db-init`",
                self.display(path)
            );
        }
        DbPool::open(&self.settings(), mode)
            .await
            .with_context(|| format!("cannot open database {}", self.location()))
    }

    /// Refuses an in-memory database: it would vanish when the command exits.
    pub fn guard_memory(&self) -> anyhow::Result<()> {
        if self.config.database.url == DatabaseUrl::SqliteMemory {
            bail!(
                "databases.main.url ({}) is an in-memory database, which lives only inside one process; point it at a file or PostgreSQL",
                self.config.database.url_origin
            );
        }
        Ok(())
    }

    /// Refuses under the `production` profile unless `--force` was given.
    pub fn guard_production(&self, command: &str, force: bool) -> anyhow::Result<()> {
        if self.config.is_production() && !force {
            bail!(
                "refusing to run {command} under the production profile (ROCKET_PROFILE=production); pass --force if you really mean it"
            );
        }
        Ok(())
    }

    /// Asks `question [y/N]` on the terminal; `--yes` skips it. Never proceeds without a yes.
    pub fn confirm(&self, question: &str, yes: bool) -> anyhow::Result<()> {
        if yes {
            return Ok(());
        }
        let stdin = std::io::stdin();
        if !stdin.is_terminal() {
            bail!(
                "refusing to continue without confirmation: stdin is not a terminal; pass --yes to confirm. Nothing was changed"
            );
        }
        note_part!("{question} [y/N] ");
        std::io::stderr().flush().ok();
        let mut answer = String::new();
        stdin
            .lock()
            .read_line(&mut answer)
            .context("cannot read the answer")?;
        if !matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes") {
            bail!("aborted; nothing was changed");
        }
        Ok(())
    }

    /// Takes the automatic backup before a destructive change, unless `--no-backup`.
    pub async fn safety_backup(
        &self,
        pool: &DbPool,
        skip: bool,
    ) -> anyhow::Result<Option<std::path::PathBuf>> {
        if skip {
            note!("skipping the safety backup (--no-backup)");
            return Ok(None);
        }
        let settings = self.settings();
        let entry = backup::create(
            &settings,
            pool,
            &self.migrations,
            &settings.backup_dir,
            false,
            &Reporter::new(),
        )
        .await
        .context("safety backup failed; nothing was changed (pass --no-backup to skip it)")?;
        note!("safety backup: {}", self.display(&entry.path));
        Ok(Some(entry.path))
    }
}
