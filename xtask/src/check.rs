//! `db-check`: the migration doctor for CI.

use anyhow::bail;
use server::maintenance;

use crate::flags::DbCheck;
use crate::project::Project;

impl DbCheck {
    /// Runs the command.
    pub async fn run(self, project: &Project) -> anyhow::Result<()> {
        let problems = maintenance::check(&project.settings(), &project.migrations).await?;
        for problem in &problems {
            say!("{problem}");
        }
        if !problems.is_empty() {
            bail!("db-check found {} problem(s)", problems.len());
        }
        say!(
            "ok: {} migration(s); every one has a down script and up, down, up gives back the same schema",
            project.migrations.migrations().len()
        );
        Ok(())
    }
}
