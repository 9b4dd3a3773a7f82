//! `db-downgrade [--steps N | --to N] [--dry-run] [-y]`.

use anyhow::bail;
use server::db::OpenMode;
use server::migrations;

use crate::flags::DbDowngrade;
use crate::project::Project;

impl DbDowngrade {
    /// Runs the command.
    pub async fn run(self, project: &Project) -> anyhow::Result<()> {
        // A dry run changes nothing: it needs no --force under the production profile.
        if !self.dry_run {
            project.guard_production("db-downgrade", self.destructive.force)?;
        }
        let set = &match self.accept_empty_down {
            true => project.migrations.accepting_empty_downs(),
            false => project.migrations.clone(),
        };
        let pool = project.open(OpenMode::MustExist).await?;
        let status = migrations::status(&mut pool.acquire().await?, set).await?;
        status.ensure_compatible()?;
        let to = match self.to {
            Some(to) if to < 0 => bail!("--to must be 0 or a migration version"),
            Some(to) if to > status.current_version => bail!(
                "--to {to} is above the database's version {}; db-downgrade only goes down (db-upgrade --to goes up)",
                status.current_version
            ),
            Some(to) => to,
            None => status.version_before(self.steps.map_or(1, |n| n as usize))?,
        };
        let planned = status.to_revert(set, to);
        if planned.is_empty() {
            say!(
                "nothing to roll back: database is at version {}",
                status.current_version
            );
            return Ok(());
        }
        // Refused before anything is asked or backed up: one without a down script.
        if let Some(m) = planned.iter().find(|m| m.down.is_none()) {
            pool.close().await;
            return Err(migrations::MigrationError::no_down(m).into());
        }
        if self.dry_run {
            for m in &planned {
                say!(
                    "-- {}.down (would run)\n{}",
                    m.id(),
                    m.down.as_deref().unwrap_or_default().trim_end()
                );
            }
            note!("dry run: nothing was changed");
            return Ok(());
        }
        let ids: Vec<String> = planned.iter().map(|m| m.id()).collect();
        note!(
            "this rolls back {} in {} to version {to}; data in what those migrations created is lost",
            migrations::few_of(&ids, "migrations"),
            project.location()
        );
        project.confirm("roll back?", self.destructive.yes)?;
        project
            .safety_backup(&pool, self.destructive.no_backup)
            .await?;
        let outcome = migrations::downgrade(&mut pool.acquire().await?, set, to).await?;
        for id in &outcome.changed {
            say!("reverted {id}");
        }
        say!("database is at version {to}");
        pool.close().await;
        Ok(())
    }
}
