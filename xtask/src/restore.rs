//! `db-restore <FILE>`: verified restore with a safety backup first.

use anyhow::bail;
use server::backup;
use server::db::OpenMode;
use server::in_use::{self, InUseError};
use server::migrations::{self, SchemaState};
use server::url::DatabaseUrl;

use crate::flags::DbRestore;
use crate::project::Project;

impl DbRestore {
    /// Runs the command.
    pub async fn run(self, project: &Project) -> anyhow::Result<()> {
        project.guard_production("db-restore", self.destructive.force)?;
        project.guard_memory()?;
        let file = project.user_path(&self.file);
        let database = &project.config.database;
        let verified = backup::verify(&file, &project.migrations, &project.settings()).await?;
        note!(
            "backup {} verified: schema version {}, taken {}",
            project.display(&file),
            verified.manifest.schema_version,
            verified.manifest.created_at
        );

        // Hold the database for the whole restore, so no server starts on it midway.
        let _claim = match database.url.sqlite_path() {
            Some(path) => match in_use::claim_exclusive(path) {
                Ok(claim) => Some(claim),
                Err(InUseError::Busy(message)) if self.while_in_use => {
                    note!("warning: {message} (continuing: --while-in-use)");
                    None
                }
                Err(e) => return Err(e.into()),
            },
            None => None,
        };
        // A SQLite file that is not a database (empty, half copied) cannot be opened or
        // backed up: the restore replaces it and keeps it aside.
        let exists = match database.url.sqlite_path() {
            Some(path) => match server::db::check_live_sqlite_file(path) {
                Ok(()) => true,
                Err(server::db::DbError::FileMissing(_)) => false,
                Err(e) => {
                    note!("warning: {e}; it cannot be backed up, and is kept aside");
                    false
                }
            },
            None => true,
        };
        let pool = if exists {
            Some(project.open(OpenMode::MustExist).await?)
        } else {
            None
        };
        if let Some(pool) = &pool
            && matches!(database.url, DatabaseUrl::Postgres { .. })
        {
            let (others, idle) = backup::other_pg_sessions(pool).await?;
            if others > 0 && !self.while_in_use {
                let pooler = match idle {
                    0 => String::new(),
                    n => format!(
                        " ({n} idle: a connection pooler keeps its server sessions open after the servers stop; PgBouncer's console closes them with `KILL <database>`, or pause it with `PAUSE <database>` for the restore)"
                    ),
                };
                bail!(
                    "{others} other session(s) are connected to {}{pooler}; stop the server first, or pass --while-in-use",
                    project.location()
                );
            }
        }

        note!(
            "this replaces all data in {} with the backup",
            project.location()
        );
        let here = backup::database_identity(&database.url);
        if let Some(source) = &verified.manifest.database
            && *source != here
        {
            note!(
                "note: the backup was taken from another database ({}), not from this one",
                server::url::mask_url(source)
            );
        }
        project.confirm("restore?", self.destructive.yes)?;
        if let Some(pool) = &pool {
            project
                .safety_backup(pool, self.destructive.no_backup)
                .await?;
        }
        if let Some(pool) = pool {
            pool.close().await;
        }
        match database.url.sqlite_path() {
            Some(path) => {
                let busy_timeout = database.busy_timeout;
                let force = self.while_in_use;
                if let Some(kept) =
                    backup::swap_in_sqlite(verified, path, busy_timeout, force).await?
                {
                    say!("kept the broken file as {}", project.display(&kept));
                }
            }
            None => backup::restore_postgres(&project.settings(), verified).await?,
        }
        say!(
            "restored {} from {}",
            project.location(),
            project.display(&file)
        );

        let pool = project.open(OpenMode::MustExist).await?;
        let status = migrations::status(&mut pool.acquire().await?, &project.migrations).await?;
        pool.close().await;
        match status.state {
            SchemaState::UpToDate => {
                say!("schema is up to date (version {})", status.current_version)
            }
            SchemaState::Pending => say!(
                "schema is at version {} of {}: run `cargo xtask db-upgrade`",
                status.current_version,
                status.latest_version
            ),
            state => say!("schema is {state}; check `cargo xtask db-status`"),
        }
        Ok(())
    }
}
