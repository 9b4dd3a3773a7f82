//! `db-reset`: drop everything, recreate at the latest version.

use anyhow::bail;
use server::backup;
use server::db::OpenMode;
use server::lifecycle::{self, LifecycleError};

use crate::flags::DbReset;
use crate::project::Project;

impl DbReset {
    /// Runs the command.
    pub async fn run(self, project: &Project) -> anyhow::Result<()> {
        project.guard_production("db-reset", self.destructive.force)?;
        project.guard_memory()?;
        let exists = project
            .config
            .database
            .url
            .sqlite_path()
            .is_none_or(|p| p.exists());
        note!(
            "this drops every table and all data in {} and recreates it at version {}",
            project.location(),
            project.migrations.latest()
        );
        project.confirm("reset the database?", self.destructive.yes)?;
        let pool = project.open(OpenMode::Create).await?;
        let safety = if exists {
            project
                .safety_backup(&pool, self.destructive.no_backup)
                .await?
        } else {
            None
        };
        let applied = match lifecycle::reset(&pool, &project.migrations).await {
            Err(LifecycleError::ResetIncomplete { version, source }) => {
                pool.close().await;
                let Some(safety) = safety else {
                    bail!(
                        "{source}; the database was emptied and is now at version {version} \
                         (no safety backup: --no-backup): fix the migration and run db-upgrade, \
                         or db-restore a backup"
                    );
                };
                let settings = project.settings();
                let put_back = async {
                    let verified = backup::verify(&safety, &project.migrations, &settings).await?;
                    backup::put_back(verified, &settings).await
                }
                .await;
                match put_back {
                    Ok(()) => bail!(
                        "{source}; the database was put back as it was, from the safety backup {}",
                        project.display(&safety)
                    ),
                    Err(e) => bail!(
                        "{source}; the database was emptied and is now at version {version}, \
                         and putting back the safety backup {} failed ({e}): run db-restore with it",
                        project.display(&safety)
                    ),
                }
            }
            other => other?,
        };
        for id in &applied {
            say!("applied {id}");
        }
        say!(
            "database {} was reset to version {}",
            project.location(),
            project.migrations.latest()
        );
        pool.close().await;
        Ok(())
    }
}
