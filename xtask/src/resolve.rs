//! `db-resolve VERSION --retry | --applied`: the way out of a `-- db: no-transaction`
//! migration that failed part-way.

use server::db::OpenMode;
use server::migrations::{self, Resolution};

use crate::flags::DbResolve;
use crate::project::Project;

impl DbResolve {
    /// Runs the command.
    pub async fn run(self, project: &Project) -> anyhow::Result<()> {
        let resolution = match self.applied {
            true => Resolution::Applied,
            false => Resolution::Retry,
        };
        let pool = project.open(OpenMode::MustExist).await?;
        let resolved = async {
            let mut conn = pool.acquire().await?;
            Ok::<_, anyhow::Error>(
                migrations::resolve(&mut conn, self.migration, resolution).await?,
            )
        }
        .await;
        pool.close().await;
        let id = resolved?;
        match resolution {
            Resolution::Applied => say!("recorded {id} as applied"),
            Resolution::Retry => {
                say!("forgot the failure of {id}; `cargo xtask db-upgrade` runs it again")
            }
        }
        Ok(())
    }
}
