//! `db-schema`: the declared schema, `migrations/schema.sql`, written or checked.

use anyhow::{Context, bail};
use server::{declared, schema};

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
            let Some(diff) = declared::schema_drift(
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
            let schema = declared::schema_of_database(&settings)
                .await
                .with_context(|| format!("cannot read the schema of {}", project.location()))?;
            (schema, format!("the database {}", project.location()))
        } else {
            let schema = declared::schema_of_migrations(&settings, &project.migrations).await?;
            (
                schema,
                format!(
                    "the migrations (version {}, on a scratch {} database)",
                    project.migrations.latest(),
                    settings.url.kind()
                ),
            )
        };
        if !self.force {
            self.refuse_hand_edits(project, &schema).await?;
        }
        // Engine variants make each engine's schema its own.
        let variants = !self.from_db && project.migrations.has_variants();
        let only_for = schema.only_for().or(variants.then(|| settings.url.kind()));
        let header = match only_for {
            None => HEADER.to_string(),
            Some(engine) => format!(
                "{HEADER}\n\n{}{engine} only\nIts types are {engine}'s: `db-schema --check` and `db-migrate --autogenerate`\nuse it with a {engine} DATABASE_URL only.",
                schema::FOR_ENGINE.trim_start_matches("-- ")
            ),
        };
        let text = schema::render(&schema, &header);
        std::fs::create_dir_all(&project.migrations_dir).with_context(|| {
            format!("cannot create {}", project.display(&project.migrations_dir))
        })?;
        schema::write(&project.migrations_dir, &text)
            .with_context(|| format!("cannot write {file}"))?;
        say!("wrote {file}: {} table(s) from {from}", schema.tables.len());
        // What the file only names in a comment: write it in a migration by hand.
        let undescribed: Vec<String> = schema
            .undescribed
            .iter()
            .cloned()
            .chain(schema.tables.iter().flat_map(|t| {
                t.undescribed
                    .iter()
                    .map(move |what| format!("{what} (table {})", t.name))
            }))
            .collect();
        if !undescribed.is_empty() {
            note!(
                "note: not described, only named in a comment of {file}: {}",
                undescribed.join(", ")
            );
        }
        // Types only SQLite takes: the file is for SQLite; say which, and what to use.
        let unshared = schema.unshared_columns();
        if let Some(first) = unshared.first() {
            note!(
                "note: {file} is for SQLite only: {} column(s) have a type PostgreSQL does not have ({}{}); to run on both engines, change them with a migration",
                unshared.len(),
                first.describe(),
                match unshared.len() {
                    1 => String::new(),
                    n => format!(", and {} more", n - 1),
                }
            );
        } else if let Some(engine) = only_for {
            let why = match variants {
                true => "the migrations have engine variants",
                false => "enum types or extensions",
            };
            note!("note: {file} is for {engine} only ({why})");
        }
        Ok(())
    }

    /// Refuses to overwrite a file that holds declarations no migration produces (nor
    /// what is about to be written): edits by hand that `--autogenerate` turns into a
    /// migration, and that rewriting would silently lose.
    async fn refuse_hand_edits(
        &self,
        project: &Project,
        new: &server::schema::Schema,
    ) -> anyhow::Result<()> {
        let file = project.display(&project.migrations_dir.join(schema::FILE_NAME));
        let Some(sql) = schema::read_file(&project.migrations_dir, &file)? else {
            return Ok(());
        };
        let settings = project.settings();
        let declared = match declared::schema_of_file(&settings, &sql, &file).await {
            Ok(declared) => schema::render_bare(&declared),
            Err(e) => bail!(
                "{e}; {file} does not load, and overwriting it would lose whatever was written by hand: fix it, or pass --force to overwrite it"
            ),
        };
        let new = schema::render_bare(new);
        if declared == new {
            return Ok(());
        }
        let versions = declared::schemas_of_versions(&settings, &project.migrations).await?;
        if versions.iter().any(|v| schema::render_bare(v) == declared) {
            return Ok(());
        }
        say!("--- {file}\n+++ what would be written");
        let diff = schema::line_diff(&declared, &new);
        for line in &diff {
            say!("{line}");
        }
        bail!(
            "{file} declares what no migration produces ({} line(s) above, edits by hand?); nothing was written: turn them into a migration with `cargo xtask db-migrate NAME --autogenerate`, or pass --force to overwrite them",
            diff.len()
        )
    }
}
