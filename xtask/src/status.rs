//! `db-status`: applied and pending migrations; the exit code says where the database stands.

use std::process::ExitCode;

use server::adopt;
use server::db::OpenMode;
use server::migrations::{self, AppliedState, SchemaState};

use crate::flags::DbStatus;
use crate::project::Project;

/// Exit code when migrations are pending (or there is no database yet).
const EXIT_PENDING: u8 = 2;
/// Exit code when the database is ahead of this code.
const EXIT_AHEAD: u8 = 3;
/// Exit code when an applied migration was edited.
const EXIT_DIVERGED: u8 = 4;
/// Exit code when a migration run outside a transaction failed part-way.
const EXIT_FAILED: u8 = 5;

impl DbStatus {
    /// Runs the command.
    pub async fn run(self, project: &Project) -> anyhow::Result<ExitCode> {
        let database = &project.config.database;
        let config_file = project.config.config_file.as_deref().map_or_else(
            || "no Rocket.toml, defaults".to_string(),
            |f| project.display(f),
        );
        say!(
            "config:     {config_file} (profile {})",
            project.config.profile
        );
        say!(
            "database:   {} ({})",
            database.url.kind(),
            project.location()
        );
        let variants = match project.migrations.has_variants() {
            true => format!(", {} variants", project.migrations.engine()),
            false => String::new(),
        };
        say!(
            "migrations: {} ({} migrations, latest V{}{variants})",
            project.display(&project.migrations_dir),
            project.migrations.migrations().len(),
            project.migrations.latest()
        );
        if let Some(path) = database.url.sqlite_path()
            && !path.exists()
        {
            say!(
                "status:     no database yet; {} pending (run `cargo xtask db-init`)",
                project.migrations.migrations().len()
            );
            return Ok(ExitCode::from(EXIT_PENDING));
        }
        let pool = project.open(OpenMode::MustExist).await?;
        let mut conn = pool.acquire().await?;
        let status = migrations::status(&mut conn, &project.migrations).await?;
        let unrecorded = adopt::unrecorded(&mut conn, &project.migrations).await?;
        drop(conn);
        pool.close().await;

        for applied in &status.applied {
            let state = match applied.state {
                AppliedState::Ok => "checksum ok",
                AppliedState::Divergent => "DIVERGENT: file edited after it was applied",
                AppliedState::Unknown => "NOT IN migrations/ (database ahead)",
                AppliedState::Failed => "FAILED PART-WAY outside a transaction (db-resolve)",
            };
            say!(
                "  applied  V{}__{}  {}  {}",
                applied.version,
                applied.name,
                applied.applied_on,
                state
            );
        }
        for version in &status.pending {
            if let Some(m) = project.migrations.get(*version) {
                say!("  pending  {}", m.id());
            }
        }
        let (summary, code) = match status.state {
            SchemaState::UpToDate => (
                format!("up to date (version {})", status.current_version),
                0,
            ),
            SchemaState::Pending => (
                format!(
                    "{} pending (version {} of {}); run `cargo xtask db-upgrade`",
                    status.pending.len(),
                    status.current_version,
                    status.latest_version
                ),
                EXIT_PENDING,
            ),
            SchemaState::Ahead => ("ahead of this code".to_string(), EXIT_AHEAD),
            SchemaState::Diverged => ("diverged".to_string(), EXIT_DIVERGED),
            SchemaState::Failed => (
                "a migration failed part-way outside a transaction; fix it, then `cargo xtask db-resolve VERSION --retry` (or `--applied`)".to_string(),
                EXIT_FAILED,
            ),
        };
        say!("status:     {summary}");
        if let Some(unrecorded) = unrecorded {
            say!("note:       {unrecorded}");
        }
        Ok(ExitCode::from(code))
    }
}
