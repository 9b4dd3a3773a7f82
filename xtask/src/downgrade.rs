//! `db-downgrade [--steps N | --to N] [--dry-run] [-y]`.

use anyhow::bail;
use server::db::OpenMode;
use server::migrations;

use crate::flags::DbDowngrade;
use crate::project::Project;

impl DbDowngrade {
    /// Runs the command.
    pub async fn run(self, project: &Project) -> anyhow::Result<()> {
        project.guard_production("db-downgrade", self.destructive.force)?;
        let set = &project.migrations;
        let pool = project.open(OpenMode::MustExist).await?;
        let status = migrations::status(&mut pool.acquire().await?, set).await?;
        status.ensure_compatible()?;
        let applied: Vec<i32> = status.applied.iter().map(|a| a.version).collect();
        let to = match (self.to, self.steps) {
            (Some(to), _) if to < 0 => bail!("--to must be 0 or a migration version"),
            (Some(to), _) => to,
            (None, steps) => {
                let steps = steps.unwrap_or(1);
                if steps > applied.len() {
                    bail!(
                        "cannot roll back {steps} migration(s): only {} applied",
                        applied.len()
                    );
                }
                applied
                    .len()
                    .checked_sub(steps + 1)
                    .map_or(0, |i| applied[i])
            }
        };
        let planned: Vec<_> = applied
            .iter()
            .rev()
            .filter(|v| **v > to)
            .filter_map(|v| set.get(*v))
            .collect();
        if planned.is_empty() {
            println!(
                "nothing to roll back: database is at version {}",
                status.current_version
            );
            return Ok(());
        }
        if self.dry_run {
            for m in &planned {
                println!(
                    "-- {}.down (would run)\n{}",
                    m.id(),
                    m.down.as_deref().unwrap_or("-- no down script").trim_end()
                );
            }
            eprintln!("dry run: nothing was changed");
            return Ok(());
        }
        let ids: Vec<String> = planned.iter().map(|m| m.id()).collect();
        eprintln!(
            "this rolls back {} in {} to version {to}; data in what those migrations created is lost",
            ids.join(", "),
            project.location()
        );
        project.confirm("roll back?", self.destructive.yes)?;
        project
            .safety_backup(&pool, self.destructive.no_backup)
            .await?;
        let outcome = migrations::downgrade(&mut pool.acquire().await?, set, to).await?;
        for id in &outcome.changed {
            println!("reverted {id}");
        }
        println!("database is at version {to}");
        pool.close().await;
        Ok(())
    }
}
