//! `db-reset`: drop everything, recreate at the latest version.

use server::db::OpenMode;
use server::lifecycle;

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
        if exists {
            project
                .safety_backup(&pool, self.destructive.no_backup)
                .await?;
        }
        let applied = lifecycle::reset(&pool, &project.migrations).await?;
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
