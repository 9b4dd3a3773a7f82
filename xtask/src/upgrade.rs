//! `db-upgrade [--to N] [--dry-run]`.

use anyhow::bail;
use server::adopt;
use server::db::OpenMode;
use server::migrations;

use crate::flags::DbUpgrade;
use crate::project::Project;

impl DbUpgrade {
    /// Runs the command.
    pub async fn run(self, project: &Project) -> anyhow::Result<()> {
        let set = &project.migrations;
        if let Some(to) = self.to {
            set.check_target(to)?;
        }
        let pool = project.open(OpenMode::MustExist).await?;
        let mut conn = pool.acquire().await?;
        let status = migrations::status(&mut conn, set).await?;
        status.ensure_compatible()?;
        if let Some(to) = self.to
            && to < status.current_version
        {
            bail!(
                "--to {to} is below the database's version {}; db-upgrade only goes up (db-downgrade --to goes down)",
                status.current_version
            );
        }
        let planned = status.to_apply(set, self.to);
        if planned.is_empty() {
            say!(
                "nothing to apply: database is at version {}",
                status.current_version
            );
            return Ok(());
        }
        if self.dry_run {
            for m in &planned {
                say!("-- {} (would apply)\n{}", m.id(), m.up.trim_end());
            }
            note!("dry run: nothing was changed");
            return Ok(());
        }
        let outcome = match migrations::upgrade(&mut conn, set, self.to).await {
            Ok(outcome) => outcome,
            // Tables that no migration of this tool made: say how to adopt them.
            Err(e) if status.applied.is_empty() => match adopt::unrecorded(&mut conn, set).await {
                Ok(Some(unrecorded)) => bail!("{e}; {unrecorded}"),
                _ => return Err(e.into()),
            },
            Err(e) => return Err(e.into()),
        };
        for id in &outcome.changed {
            say!("applied {id}");
        }
        drop(conn);
        pool.close().await;
        Ok(())
    }
}
