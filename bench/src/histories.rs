//! A long migration history: `db-check`'s round trip against applying and rolling back
//! the same history, through the library the commands use.

use std::path::Path;
use std::time::Instant;

use anyhow::Result;
use server::db::{DbPool, OpenMode};
use server::migrations::{self, MigrationSet};

/// Migrations in the measured history (each creates one table).
pub const MIGRATIONS: usize = 350;

/// One engine's timings, in seconds.
#[derive(Debug, serde::Serialize)]
pub struct HistoryResult {
    /// Migrations in the history.
    pub migrations: usize,
    /// `db-upgrade` from empty.
    pub upgrade_secs: f64,
    /// `db-downgrade --to 0` afterwards.
    pub downgrade_secs: f64,
    /// `db-check`: every migration up, down and up on a scratch database.
    pub check_secs: f64,
}

impl HistoryResult {
    /// `db-check` ÷ (upgrade + downgrade): the goal is at most 4.
    pub fn ratio(&self) -> f64 {
        self.check_secs / (self.upgrade_secs + self.downgrade_secs)
    }
}

/// `count` migrations of one table each, with their down scripts.
fn history(count: usize) -> MigrationSet {
    MigrationSet::from_files((1..=count).flat_map(|v| {
        [
            (
                format!("V{v}__t{v}.sql"),
                format!(
                    "CREATE TABLE t{v} (id BIGINT PRIMARY KEY, name TEXT NOT NULL, v INTEGER);"
                ),
            ),
            (format!("V{v}__t{v}.down.sql"), format!("DROP TABLE t{v};")),
        ]
    }))
}

/// Measures the history on the (empty) database at `url`.
pub async fn measure(url: &str, dir: &Path) -> Result<HistoryResult> {
    let set = history(MIGRATIONS);
    let figment = figment::Figment::new().merge(("url", url));
    let settings = server::config::DbSettings::from_focused(&figment, dir)?;
    let pool = DbPool::open(&settings, OpenMode::Create).await?;
    let mut conn = pool.acquire().await?;
    let started = Instant::now();
    migrations::upgrade(&mut conn, &set, None).await?;
    let upgraded = Instant::now();
    migrations::downgrade(&mut conn, &set, 0).await?;
    let downgraded = Instant::now();
    drop(conn);
    pool.close().await;
    let problems = server::doctor::check(&settings, &set).await?;
    let checked = Instant::now();
    anyhow::ensure!(problems.is_empty(), "db-check found problems: {problems:?}");
    Ok(HistoryResult {
        migrations: MIGRATIONS,
        upgrade_secs: (upgraded - started).as_secs_f64(),
        downgrade_secs: (downgraded - upgraded).as_secs_f64(),
        check_secs: (checked - downgraded).as_secs_f64(),
    })
}
