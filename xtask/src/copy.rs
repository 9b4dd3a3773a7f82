//! `db-copy --to <URL>`: every row into another database, verified.

use anyhow::{Context, anyhow, bail};
use server::backup::{self, database_identity};
use server::config::{COPY_TO_VAR, DbSettings};
use server::copy::{self, CopyError, CopyReport, CopyTarget, Histories, TargetState};
use server::db::{DbPool, OpenMode};
use server::migrations::MigrationSet;
use server::scratch;
use server::url::DatabaseUrl;

use crate::flags::{DbCopy, UsageError};
use crate::interrupt::interrupted;
use crate::progress::Reporter;
use crate::project::Project;

impl DbCopy {
    /// Runs the command.
    pub async fn run(self, project: &Project) -> anyhow::Result<()> {
        project.guard_memory()?;
        let (to, origin) = match (&self.to, &project.config.copy_to) {
            (Some(to), _) => (to, "--to"),
            (None, Some(to)) => (to, COPY_TO_VAR),
            (None, None) => {
                return Err(UsageError(format!(
                    "db-copy needs a target: --to <URL>, or {COPY_TO_VAR} in the environment or .env"
                ))
                .into());
            }
        };
        let url = DatabaseUrl::parse(to, &project.cwd).map_err(|e| anyhow!("{origin}: {e}"))?;
        if url == DatabaseUrl::SqliteMemory {
            bail!("{origin}: an in-memory database would vanish when the command exits");
        }
        if database_identity(&url) == database_identity(&project.config.database.url) {
            bail!(
                "{origin} names the configured database itself ({}); copy into another database",
                project.location()
            );
        }
        let settings = copy::target_settings(&project.settings(), url);
        let target_name = match settings.url.sqlite_path() {
            Some(path) => project.display(path),
            None => settings.url.to_string(),
        };
        let cannot_open = || format!("cannot open the target {target_name} (from {origin})");
        let source = project.open(OpenMode::ReadOnly).await?;
        // One listener for SIGINT/SIGTERM from here on: opening the target may already
        // create a database, which an interruption must drop.
        let interrupt = interrupted();
        tokio::pin!(interrupt);
        // Read-only until the copy may begin; a new database is built aside and put in
        // place once verified.
        let mut target = tokio::select! {
            opened = CopyTarget::open(&settings) => match opened {
                Ok(target) => target,
                Err(e) => {
                    source.close().await;
                    return Err(e).with_context(cannot_open);
                }
            },
            signal = &mut interrupt => {
                // The open was dropped: a staging database it made is left to drop.
                source.close().await;
                let _ = tokio::time::timeout(CLOSE_LIMIT, scratch::drop_abandoned_scratch()).await;
                bail!("interrupted by {signal}; the target is unchanged");
            }
        };
        // Interrupted, the copy is dropped: its transaction rolls back as the pools close.
        let mut emptied = None;
        let copied = tokio::select! {
            copied = self.copy(project, &source, &mut target, &settings, &target_name, &mut emptied) => copied,
            signal = &mut interrupt => Err(anyhow!(
                "interrupted by {signal}; the copy was rolled back, the target is unchanged"
            )),
        };
        close_within(&source).await;
        close_within(&target.pool).await;
        // A target emptied to be migrated one migration at a time goes back as it was.
        let copied = match (copied, emptied) {
            (Err(e), Some(emptied)) => Err(put_back(e, emptied, &settings, project).await),
            (copied, _) => copied,
        };
        let copied = match copied {
            Ok(report) => match tokio::time::timeout(CLOSE_LIMIT, target.publish()).await {
                Ok(published) => published.map(|()| report).map_err(Into::into),
                Err(_) => Err(anyhow!(
                    "the target's server did not answer while the copy was put in place"
                )),
            },
            Err(e) => {
                if tokio::time::timeout(CLOSE_LIMIT, target.discard())
                    .await
                    .is_err()
                {
                    note!(
                        "warning: the database built for this copy could not be dropped (its server did not answer); the next run drops it"
                    );
                }
                Err(e)
            }
        };
        let report = copied?;
        let rows = report.rows();
        let seconds = report.elapsed.as_secs_f64();
        say!(
            "copied {rows} rows in {} tables into {target_name} at schema version {} in {seconds:.1} s ({:.0} rows/s); every table verified",
            report.tables.len(),
            report.version,
            rows as f64 / seconds.max(1e-9)
        );
        Ok(())
    }

    /// Asks when the target holds something, copies, prints the verification table.
    async fn copy(
        &self,
        project: &Project,
        source: &DbPool,
        target: &mut CopyTarget,
        settings: &DbSettings,
        target_name: &str,
        emptied: &mut Option<Emptied>,
    ) -> anyhow::Result<CopyReport> {
        let target_kind = settings.url.kind();
        let histories = match &self.target_migrations {
            None => Histories::shared(
                &project.migrations,
                project.migrations.engine(),
                target_kind,
            ),
            Some(dir) => {
                let dir = project.user_path(dir);
                let set = MigrationSet::from_dir(&dir)
                    .and_then(|set| set.ensure_valid().map(|()| set))
                    .with_context(|| format!("--target-migrations {}", project.display(&dir)))?;
                Histories::separate(
                    &project.migrations,
                    project.migrations.engine(),
                    &set,
                    target_kind,
                )
            }
        };
        let set = &histories.target;
        copy::ensure_distinct(
            &project.config.database.url,
            source,
            &settings.url,
            &target.pool,
        )
        .await?;
        // Nothing is written to the target before the copy may go ahead.
        let replace = match copy::inspect(source, &target.pool, &histories).await? {
            TargetState::Occupied(why) if !self.force => {
                return Err(anyhow::Error::from(CopyError::Occupied(why))
                    .context(format!("cannot copy into {target_name}")));
            }
            TargetState::Occupied(why) => {
                note!("the target {target_name} {why}; --force replaces everything in it");
                // Emptied before it is migrated one migration at a time, the target can
                // only be put back from its safety backup if the copy fails.
                if self.no_backup && copy::needs_steps(set) {
                    bail!(
                        "the migrations must be applied to the target one at a time after emptying it, and without its safety backup a failed copy would leave it empty; run without --no-backup; nothing was changed"
                    );
                }
                project.confirm("replace the target's contents?", self.yes)?;
                target.for_writing(settings).await?;
                let mut safety = None;
                if self.no_backup {
                    note!("skipping the safety backup of the target (--no-backup)");
                } else {
                    let entry = backup::create(
                        settings,
                        &target.pool,
                        set,
                        &project.settings().backup_dir,
                        false,
                        &Reporter::new(),
                    )
                    .await
                    .context("safety backup of the target failed; nothing was changed (pass --no-backup to skip it)")?;
                    note!(
                        "safety backup of the target: {}",
                        project.display(&entry.path)
                    );
                    safety = Some(entry.path);
                }
                if !copy::needs_steps(set) {
                    true
                } else {
                    // The history cannot run in the copy's one transaction: the target is
                    // emptied first, and put back from its safety backup if the copy fails.
                    let path = safety.context("a safety backup is taken above")?;
                    let staged = backup::verify(&path, set, settings).await.context(
                        "the migrations must be applied to the target one at a time, after emptying it, and its safety backup could not be checked for putting it back; nothing was changed",
                    )?;
                    note!(
                        "emptying the target to apply the migrations one at a time; until the copy commits, its contents are in {}",
                        project.display(&path)
                    );
                    // Set first: interrupted from here on, the target is put back (over an
                    // unchanged one, that does no harm).
                    *emptied = Some(Emptied { staged, path });
                    copy::empty_target(&target.pool).await?;
                    false
                }
            }
            TargetState::Empty | TargetState::Ready(_) => {
                target.for_writing(settings).await?;
                false
            }
        };
        let new = target.is_new();
        let target = &target.pool;
        note!("copying {} into {target_name}", project.location());
        // The bar is gone before the table or the problems are printed.
        let copied = copy::copy(source, target, &histories, replace, new, &Reporter::rows()).await;
        match copied {
            Ok(report) => {
                print_checks(&report);
                Ok(report)
            }
            Err(CopyError::Mismatch(report)) => {
                print_checks(&report);
                Err(CopyError::Mismatch(report).into())
            }
            Err(CopyError::BadData(problems)) => {
                for problem in problems.iter().skip(1) {
                    note!("  {problem}");
                }
                Err(CopyError::BadData(problems).into())
            }
            Err(CopyError::Misaligned(problems)) => {
                for problem in problems.iter().skip(1) {
                    note!("  {problem}");
                }
                Err(CopyError::Misaligned(problems).into())
            }
            Err(e) => Err(e.into()),
        }
    }
}

/// A target that `--force` empties before migrating it one migration at a time, and its
/// safety backup, verified and staged.
struct Emptied {
    staged: backup::VerifiedBackup,
    path: std::path::PathBuf,
}

/// Puts an emptied target back from its safety backup after the copy failed with `error`.
async fn put_back(
    error: anyhow::Error,
    emptied: Emptied,
    settings: &DbSettings,
    project: &Project,
) -> anyhow::Error {
    let path = project.display(&emptied.path);
    match backup::put_back(emptied.staged, settings).await {
        Ok(()) => {
            anyhow!("{error:#}; the target was put back as it was, from its safety backup {path}")
        }
        Err(e) => anyhow!(
            "{error:#}; the target was emptied to apply the migrations one at a time, and putting back its safety backup {path} failed ({e}): restore that file into it by hand"
        ),
    }
}

/// How long closing a pool (or dropping a created database) may take: a server that
/// stopped answering must not keep the command alive after an error or a signal. Its
/// unfinished transaction rolls back on the server when the connection goes.
const CLOSE_LIMIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Closes `pool`, giving up after [`CLOSE_LIMIT`]. A new SQLite target whose pool did
/// not close in time is not published (its log is not checkpointed).
async fn close_within(pool: &DbPool) {
    let _ = tokio::time::timeout(CLOSE_LIMIT, pool.close()).await;
}

/// The verification table on stdout.
fn print_checks(report: &CopyReport) {
    let width = report
        .tables
        .iter()
        .map(|t| t.name.len())
        .max()
        .unwrap_or(5)
        .max(5);
    say!(
        "{:<width$}  {:>12}  {:>12}  {:<32}  result",
        "table",
        "source rows",
        "target rows",
        "checksum"
    );
    for t in &report.tables {
        let sum = match t.source_sum == t.target_sum {
            true => t.source_sum.clone(),
            false => format!("{} != {}", &t.source_sum[..8], &t.target_sum[..8]),
        };
        say!(
            "{:<width$}  {:>12}  {:>12}  {:<32}  {}",
            t.name,
            t.source_rows,
            t.target_rows,
            sum,
            if t.matches() { "ok" } else { "MISMATCH" }
        );
    }
}
