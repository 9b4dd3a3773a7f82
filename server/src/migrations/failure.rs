//! A `-- db: no-transaction` migration that failed part-way: recorded in the history
//! table (`refinery_schema_history`, named in the statements below) as a row whose `applied_on` starts with [`FAILED_PREFIX`], so that `db-status`
//! and `/health/db` report it and nothing runs after it until it is resolved.

use super::MigrationError;
use super::status::{FAILED_PREFIX, history};
use crate::db::{DbConn, query};

/// How a failed migration is resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolution {
    /// It was finished by hand: record it as applied.
    Applied,
    /// Its statements were made idempotent: forget the failure, so the next upgrade runs
    /// it again.
    Retry,
}

/// Resolves the failed migration `version` (see [`Resolution`]); an error when no
/// migration of that version failed.
pub async fn resolve(
    conn: &mut DbConn,
    version: i32,
    resolution: Resolution,
) -> Result<String, MigrationError> {
    let mut tx = super::run::lock(conn).await?;
    let failed = history(&mut tx)
        .await?
        .into_iter()
        .find(|row| row.version == version && row.applied_on.starts_with(FAILED_PREFIX));
    let Some(row) = failed else {
        tx.rollback().await?;
        return Err(MigrationError::Target(format!(
            "no migration of version {version} failed part-way; `cargo xtask db-status` lists the history"
        )));
    };
    match resolution {
        Resolution::Applied => {
            let now = time::OffsetDateTime::now_utc()
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default();
            query("UPDATE refinery_schema_history SET applied_on = $1 WHERE version = $2")
                .bind(now)
                .bind(version)
                .execute(&mut tx)
                .await?;
        }
        Resolution::Retry => {
            query("DELETE FROM refinery_schema_history WHERE version = $1")
                .bind(version)
                .execute(&mut tx)
                .await?;
        }
    }
    tx.commit().await?;
    Ok(format!("V{}__{}", row.version, row.name))
}
