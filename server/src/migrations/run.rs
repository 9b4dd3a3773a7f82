//! Applying and reverting migrations, under the migration lock.

use refinery::{AsyncMigrate, Migration, Runner, Target};
use refinery_core::traits::r#async::{AsyncQuery, AsyncTransaction};

use super::status::{HistoryRow, read_history_pg, read_history_sqlite};
use super::{HISTORY_TABLE, MigrationError, MigrationFile, MigrationSet, SchemaStatus};
use crate::db::{DbConn, DbTx};

/// Key of the PostgreSQL advisory lock that serializes migrations ("migr" in ASCII).
const PG_LOCK_KEY: i64 = 0x6d69_6772;

/// What an upgrade or downgrade did.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// `V<n>__<name>` of each migration applied or reverted, in order.
    pub changed: Vec<String>,
}

/// Applies pending migrations up to `target` (all when `None`), under the migration lock.
///
/// Migrations that succeed stay applied when a later one fails.
pub async fn upgrade(
    conn: &mut DbConn,
    set: &MigrationSet,
    target: Option<i32>,
) -> Result<Outcome, MigrationError> {
    if let Some(target) = target {
        set.check_target(target)?;
    }
    let mut tx = lock(conn).await?;
    let status = status_in(&mut tx, set).await?;
    status.ensure_compatible()?;
    let runner = Runner::new(
        &set.migrations()
            .iter()
            .map(MigrationFile::to_refinery)
            .collect::<Vec<_>>(),
    )
    .set_target(target.map_or(Target::Latest, Target::Version));
    let result = runner.run_async(&mut RefineryDriver { tx: &mut tx }).await;
    // Each migration ran in its own savepoint: keep the ones that succeeded. When a
    // migration failed, its own error is the one to report, even if committing fails too.
    let committed = tx.commit().await;
    let commit_failed = committed.is_err();
    if result.is_ok() {
        committed?;
    }
    // The engine aborted the whole transaction (SQLite on a full disk or an I/O error):
    // the migrations before the failed one in this run are gone too.
    let rolled_back = if commit_failed {
        "; the migrations applied before it in this run were rolled back too"
    } else {
        ""
    };
    match result {
        Ok(report) => Ok(Outcome {
            changed: report
                .applied_migrations()
                .iter()
                .map(|m| m.to_string())
                .collect(),
        }),
        Err(error) => {
            let failed = error.report().map_or(0, |r| r.applied_migrations().len());
            let migration = status.to_apply(set, target).get(failed).copied();
            let name = migration.map_or_else(|| "?".into(), MigrationFile::id);
            let reason = match std::error::Error::source(&error) {
                Some(source) => match source.downcast_ref::<sqlx::Error>() {
                    Some(e) => {
                        crate::db::describe_driver_error(e, migration.map(|m| m.up.as_str()))
                    }
                    None => crate::url::mask_url(&source.to_string()),
                },
                None => crate::url::mask_url(&error.to_string()),
            };
            Err(MigrationError::Failed {
                name,
                reason: format!("{reason}{rolled_back}"),
            })
        }
    }
}

/// Rolls back applied migrations above version `to` (newest first), under the migration lock.
///
/// Each rollback runs the down script and deletes the history row in one savepoint.
/// Rolling back to 0 also drops the history table.
pub async fn downgrade(
    conn: &mut DbConn,
    set: &MigrationSet,
    to: i32,
) -> Result<Outcome, MigrationError> {
    let mut tx = lock(conn).await?;
    let status = status_in(&mut tx, set).await?;
    status.ensure_compatible()?;
    let to_revert = status.to_revert(set, to);
    if let Some(m) = to_revert.iter().find(|m| m.down.is_none()) {
        return Err(MigrationError::NoDownScript(m.id()));
    }
    let mut outcome = Outcome::default();
    for migration in to_revert {
        let mut sp = tx.savepoint().await?;
        let down = migration.down.as_deref().unwrap_or_default();
        let result = async {
            sp.execute_script(down).await?;
            sp.execute_script(&format!(
                "DELETE FROM {HISTORY_TABLE} WHERE version = {}",
                migration.version
            ))
            .await
        }
        .await;
        if let Err(e) = result {
            let _ = sp.rollback().await;
            let _ = tx.commit().await;
            return Err(MigrationError::Failed {
                name: format!("{}.down", migration.id()),
                reason: crate::db::describe_driver_error(&e, Some(down)),
            });
        }
        sp.commit().await?;
        outcome.changed.push(migration.id());
    }
    if to == 0 && !status.applied.is_empty() {
        tx.execute_script(&format!("DROP TABLE IF EXISTS {HISTORY_TABLE}"))
            .await?;
    }
    tx.commit().await?;
    Ok(outcome)
}

/// Starts the outer transaction and takes the migration lock.
async fn lock(conn: &mut DbConn) -> Result<DbTx<'_>, sqlx::Error> {
    let mut tx = conn.begin_write().await?;
    if let DbTx::Postgres(pg) = &mut tx {
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(PG_LOCK_KEY)
            .execute(&mut **pg)
            .await?;
    }
    Ok(tx)
}

async fn status_in(tx: &mut DbTx<'_>, set: &MigrationSet) -> Result<SchemaStatus, MigrationError> {
    Ok(SchemaStatus::compare(history_in(tx).await?, set))
}

async fn history_in(tx: &mut DbTx<'_>) -> Result<Vec<HistoryRow>, sqlx::Error> {
    match tx {
        DbTx::Sqlite(c) => read_history_sqlite(c).await,
        DbTx::Postgres(c) => read_history_pg(c).await,
    }
}

/// Lets refinery run inside our locked transaction: each `execute` is a savepoint.
struct RefineryDriver<'t, 'c> {
    tx: &'t mut DbTx<'c>,
}

impl AsyncTransaction for RefineryDriver<'_, '_> {
    type Error = sqlx::Error;

    async fn execute<'a, T: Iterator<Item = &'a str> + Send + 'a>(
        &'a mut self,
        queries: T,
    ) -> Result<usize, Self::Error> {
        let queries: Vec<&str> = queries.collect();
        let mut sp = self.tx.savepoint().await?;
        for query in &queries {
            if let Err(e) = sp.execute_script(query).await {
                // The engine may have rolled back already (e.g. SQLite on a full disk):
                // report the statement's error, not the failed rollback.
                let _ = sp.rollback().await;
                return Err(e);
            }
        }
        sp.commit().await?;
        Ok(queries.len())
    }
}

impl AsyncQuery<Vec<Migration>> for RefineryDriver<'_, '_> {
    /// refinery only asks for the applied migrations; they are read the same way as for status.
    async fn query<'a>(&'a mut self, _query: &'a str) -> Result<Vec<Migration>, Self::Error> {
        history_in(self.tx)
            .await?
            .into_iter()
            .map(|row| {
                let applied_on = time::OffsetDateTime::parse(
                    &row.applied_on,
                    &time::format_description::well_known::Rfc3339,
                )
                .map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
                let checksum = row
                    .checksum
                    .parse()
                    .map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
                Ok(Migration::applied(
                    row.version,
                    row.name,
                    applied_on,
                    checksum,
                ))
            })
            .collect()
    }
}

impl AsyncMigrate for RefineryDriver<'_, '_> {}
