//! `db-migrate <name>`: scaffold the next migration pair.

use server::migrations;

use crate::flags::DbMigrate;
use crate::project::Project;

impl DbMigrate {
    /// Runs the command.
    pub fn run(self, project: &Project) -> anyhow::Result<()> {
        let (up, down) = migrations::scaffold(&project.migrations_dir, &self.name)?;
        say!("created {}", project.display(&up));
        say!("created {}", project.display(&down));
        note!("write both scripts, then run `cargo xtask db-check` and `cargo xtask db-upgrade`");
        Ok(())
    }
}
