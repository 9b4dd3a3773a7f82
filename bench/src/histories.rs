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
    /// `db-upgrade` from empty (median of [`ROUNDS`]).
    pub upgrade_secs: f64,
    /// `db-downgrade --to 0` afterwards (median).
    pub downgrade_secs: f64,
    /// `db-check`: every migration up, down and up on a scratch database (median).
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

/// Rounds of the baseline and the check, alternating: each figure is the median of its
/// rounds (the baseline is a third of a second on SQLite, where one slow or fast
/// `fsync` moves a single sample's ratio by a whole point).
const ROUNDS: usize = 3;

/// Measures the history on the (empty) database at `url`: [`ROUNDS`] times
/// `db-upgrade` from empty, `db-downgrade --to 0` (which leaves it empty again) and
/// `db-check`, one after the other; the median of each.
pub async fn measure(url: &str, dir: &Path) -> Result<HistoryResult> {
    let set = history(MIGRATIONS);
    let figment = figment::Figment::new().merge(("url", url));
    let settings = server::config::DbSettings::from_focused(&figment, dir)?;
    let (mut upgrades, mut downgrades, mut checks) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
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
        upgrades.push((upgraded - started).as_secs_f64());
        downgrades.push((downgraded - upgraded).as_secs_f64());
        checks.push((checked - downgraded).as_secs_f64());
    }
    Ok(HistoryResult {
        migrations: MIGRATIONS,
        upgrade_secs: median(upgrades),
        downgrade_secs: median(downgrades),
        check_secs: median(checks),
    })
}

/// The middle value of `samples` (not empty).
fn median(mut samples: Vec<f64>) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}
