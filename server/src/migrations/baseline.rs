//! Recording migrations as applied without running them: adopting a database whose
//! schema they already describe (`db-baseline`).

use super::status::newest;
use super::{MigrationError, MigrationSet};
use crate::db::DbConn;

/// Records migrations 1..=`version` of `set` as applied (history rows with their
/// checksums), running none of them, in one locked transaction. Refused when the
/// database already has a history: a baseline is where a history starts. Returns the
/// ids recorded.
pub async fn baseline(
    conn: &mut DbConn,
    set: &MigrationSet,
    version: i32,
) -> Result<Vec<String>, MigrationError> {
    let set = &set.for_engine(conn.kind());
    set.check_target(version)?;
    let mut tx = super::run::lock(conn).await?;
    let (newest, _) = newest(&mut tx, version).await?;
    if newest > 0 {
        tx.rollback().await?;
        return Err(MigrationError::Target(format!(
            "the database already has a migration history (version {newest}); a baseline only starts one"
        )));
    }
    tx.execute_script(&super::run::create_history_sql()).await?;
    let now = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    let mut recorded = Vec::new();
    for migration in set.migrations().iter().filter(|m| m.version <= version) {
        super::run::record_row(&mut tx, migration, &now).await?;
        recorded.push(migration.id());
    }
    tx.commit().await?;
    Ok(recorded)
}
