//! `db-baseline VERSION`: adopt a database this tool did not build.

use anyhow::bail;
use server::adopt;
use server::db::OpenMode;

use crate::flags::DbBaseline;
use crate::project::Project;

impl DbBaseline {
    /// Runs the command.
    pub async fn run(self, project: &Project) -> anyhow::Result<()> {
        project.guard_memory()?;
        let pool = project.open(OpenMode::MustExist).await?;
        let result = self.adopt(project, &pool).await;
        pool.close().await;
        result
    }

    async fn adopt(&self, project: &Project, pool: &server::db::DbPool) -> anyhow::Result<()> {
        let settings = project.settings();
        let plan = adopt::plan(&settings, pool, &project.migrations, self.at).await?;
        for foreign in &plan.foreign {
            note!(
                "found {}'s history ({}{}); it is left as it is, and out of the comparison",
                foreign.tool,
                foreign.table,
                foreign
                    .version
                    .as_ref()
                    .map_or(String::new(), |v| format!(", at version {v}"))
            );
        }
        let range = match self.at {
            1 => "V1".to_string(),
            v => format!("V1–V{v}"),
        };
        if !plan.differences.is_empty() {
            note!(
                "the schema of {} differs from the one migrations {range} produce (- only in the migrations', + only in the database):",
                project.location()
            );
            for line in &plan.differences {
                note!("  {line}");
            }
            if !self.accept_differences {
                bail!(
                    "the database's schema is not the one migrations {range} produce (differences listed above); nothing was changed: fix the database or the migrations, choose another VERSION, or pass --accept-differences"
                );
            }
        }
        note!(
            "this records migrations {range} as applied to {} without running them",
            project.location()
        );
        project.confirm("record them?", self.yes)?;
        let recorded = adopt::record(pool, &project.migrations, self.at).await?;
        say!(
            "recorded {} migration(s) as applied ({range}); the database is at version {}; `cargo xtask db-upgrade` applies the rest",
            recorded.len(),
            self.at
        );
        Ok(())
    }
}
