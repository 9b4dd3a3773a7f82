//! `db-check`: the migration doctor for CI.

use anyhow::{Context, anyhow, bail};
use server::config::CHECK_ALSO_VAR;
use server::url::DatabaseUrl;
use server::{declared, doctor, migrations};

use crate::flags::DbCheck;
use crate::project::Project;

impl DbCheck {
    /// Runs the command.
    pub async fn run(self, project: &Project) -> anyhow::Result<()> {
        let settings = project.settings();
        let mut problems = doctor::check(&settings, &project.migrations).await?;
        let also = match (&self.also, &project.config.check_also) {
            (Some(url), _) => Some((url, "--also")),
            (None, Some(url)) => Some((url, CHECK_ALSO_VAR)),
            (None, None) => None,
        };
        let mut engines = vec![settings.url.kind()];
        if let Some((url, origin)) = also {
            let url =
                DatabaseUrl::parse(url, &project.cwd).map_err(|e| anyhow!("{origin}: {e}"))?;
            let mut other = settings.clone();
            other.url = url;
            let kind = other.url.kind();
            let found = doctor::round_trip(&other, &project.migrations)
                .await
                .with_context(|| {
                    format!(
                        "cannot check the migrations on {} (from {origin})",
                        other.url
                    )
                })?;
            problems.extend(found.into_iter().map(|p| format!("on {kind}: {p}")));
            engines.push(kind);
        }
        let file = project.display(&project.migrations_dir.join(server::schema::FILE_NAME));
        // The declared schema is one finding among the others, whatever is wrong with it.
        let for_engine = server::schema::read_file(&project.migrations_dir, &file)
            .ok()
            .flatten()
            .and_then(|sql| server::schema::engine_of(&sql));
        let drift = match for_engine {
            Some((engine, _)) if engine != settings.url.kind() => {
                note!(
                    "note: {file} is for {engine} only: not compared on {}",
                    settings.url.kind()
                );
                Ok(None)
            }
            _ => {
                declared::schema_drift(
                    &settings,
                    &project.migrations,
                    &project.migrations_dir,
                    &file,
                )
                .await
            }
        };
        match drift {
            Ok(Some(diff)) if !diff.is_empty() => {
                problems.push(format!(
                    "{file}: differs from the schema the migrations produce (`cargo xtask db-schema --check` shows how):"
                ));
                problems.extend(diff.into_iter().map(|line| format!("  {line}")));
            }
            Ok(_) => {}
            Err(e) => problems.push(e.to_string()),
        }
        for n in project.migrations.notes() {
            note!("note: {n}");
        }
        // What would lock a table with rows, or break the previous release, on PostgreSQL.
        if settings.url.kind() == server::url::DbKind::Postgres {
            for m in project.migrations.migrations() {
                for (line, risk) in migrations::lock_risks(&m.up) {
                    note!("note: {}: line {line}: {risk}", m.up_file);
                }
            }
        }
        for problem in &problems {
            say!("{problem}");
        }
        if !problems.is_empty() {
            bail!("db-check found problems (listed above)");
        }
        let engines: Vec<String> = engines.iter().map(ToString::to_string).collect();
        say!(
            "ok: {} migration(s); every one has a down script and up, down, up gives back the same schema (on {})",
            project.migrations.migrations().len(),
            engines.join(" and ")
        );
        Ok(())
    }
}
