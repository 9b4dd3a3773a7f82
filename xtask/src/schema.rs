//! `db-schema`: the declared schema, `migrations/schema.sql`, written or checked.

use anyhow::{Context, bail};
use server::{maintenance, schema};

use crate::flags::DbSchema;
use crate::project::Project;

/// The file's first lines.
const HEADER: &str = "The declared schema: every table and index, as the migrations leave them.
Written by `cargo xtask db-schema`; `cargo xtask db-check` fails when it and the
migrations disagree. Not a migration: nothing runs it against the database.";

impl DbSchema {
    /// Runs the command.
    pub async fn run(self, project: &Project) -> anyhow::Result<()> {
        let settings = project.settings();
        let file = project.display(&project.migrations_dir.join(schema::FILE_NAME));
        if self.check {
            let Some(diff) = maintenance::schema_drift(
                &settings,
                &project.migrations,
                &project.migrations_dir,
                &file,
            )
            .await?
            else {
                bail!("{file} does not exist; write it with `cargo xtask db-schema`");
            };
            if diff.is_empty() {
                say!("{file} agrees with the migrations");
                return Ok(());
            }
            say!("--- {file}\n+++ the schema the migrations produce");
            for line in &diff {
                say!("{line}");
            }
            bail!(
                "{file} differs from the schema the migrations produce ({} line(s) above); rewrite it with `cargo xtask db-schema` if the migrations are right",
                diff.len()
            );
        }
        let (schema, from) = if self.from_db {
            project.guard_memory()?;
            let schema = maintenance::schema_of_database(&settings)
                .await
                .with_context(|| format!("cannot read the schema of {}", project.location()))?;
            (schema, format!("the database {}", project.location()))
        } else {
            let schema = maintenance::schema_of_migrations(&settings, &project.migrations).await?;
            (
                schema,
                format!(
                    "the migrations (version {}, on a scratch {} database)",
                    project.migrations.latest(),
                    settings.url.kind()
                ),
            )
        };
        let text = schema::render(&schema, HEADER);
        std::fs::create_dir_all(&project.migrations_dir).with_context(|| {
            format!("cannot create {}", project.display(&project.migrations_dir))
        })?;
        schema::write(&project.migrations_dir, &text)
            .with_context(|| format!("cannot write {file}"))?;
        say!("wrote {file}: {} table(s) from {from}", schema.tables.len());
        // A database made by hand may use types only SQLite takes: say which.
        for column in schema.unshared_columns() {
            note!("note: {} (in {file})", column.describe());
        }
        Ok(())
    }
}
