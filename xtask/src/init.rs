//! `db-init`: create if missing, migrate, verify.

use server::lifecycle;

use crate::flags::DbInit;
use crate::project::Project;

impl DbInit {
    /// Runs the command.
    pub async fn run(self, project: &Project) -> anyhow::Result<()> {
        project.guard_memory()?;
        let report = lifecycle::init(&project.settings(), &project.migrations).await?;
        let location = project.location();
        if report.created {
            say!("created database {location}");
        }
        for id in &report.applied {
            say!("applied {id}");
        }
        if !report.created && report.applied.is_empty() {
            say!(
                "database {location} is already up to date at version {}; nothing to do",
                report.status.current_version
            );
        } else {
            say!(
                "database {location} is ready at version {}",
                report.status.current_version
            );
        }
        Ok(())
    }
}
