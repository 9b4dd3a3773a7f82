//! Backups the server takes itself: every `backup_interval_secs` (the first right after
//! start), the same verified backup as `cargo xtask db-backup`, pruned to `backup_keep`
//! like `--keep`, and copied to `backup_copy_to` when set. A failure is logged and tried
//! again at the next interval; it never stops the server. `/health/db` reports the state.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;
use utoipa::ToSchema;

use super::BackupError;
use crate::config::DbSettings;
use crate::db::DbPool;
use crate::migrations::MigrationSet;
use crate::progress::Progress;

/// The state of scheduled backups, as `/health/db` shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct BackupHealth {
    /// `backup_interval_secs`.
    pub interval_secs: u64,
    /// When the last good backup finished (RFC 3339), if one did since the server started.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_success_at: Option<String>,
    /// How many seconds ago that was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_success_age_secs: Option<u64>,
    /// Its file name in `backup_dir`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_file: Option<String>,
    /// When the last attempt failed (RFC 3339), if the last attempt failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_failure_at: Option<String>,
    /// Why it failed; directories are named by their setting, never by path.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_failure: Option<String>,
}

/// The backup schedule of one server.
pub struct Schedule {
    interval: Duration,
    started: Instant,
    state: Mutex<State>,
}

#[derive(Debug, Default, Clone)]
struct State {
    /// When, and which file.
    last_success: Option<(Instant, String, String)>,
    /// When, and why; cleared by the next success.
    last_failure: Option<(String, String)>,
}

/// Logs nothing: a scheduled backup reports one line when it is done.
struct Quiet;

impl Progress for Quiet {
    fn step(&self, _message: &str) {}
    fn advance(&self, _done: u64, _total: u64) {}
}

impl Schedule {
    /// A schedule taking a backup every `interval`.
    pub fn new(interval: Duration) -> Self {
        Self {
            interval,
            started: Instant::now(),
            state: Mutex::default(),
        }
    }

    /// `backup_interval_secs`.
    pub fn interval_secs(&self) -> u64 {
        self.interval.as_secs()
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Seconds since the schedule started (with the server).
    pub fn running_secs(&self) -> u64 {
        self.started.elapsed().as_secs()
    }

    /// The state for `/health/db`, and why it should warn: the last attempt failed, or the
    /// last good backup (or the start, before the first) is older than twice the interval.
    pub fn health(&self) -> (BackupHealth, Option<String>) {
        let state = self.state().clone();
        let overdue = 2 * self.interval;
        let problem = match (&state.last_failure, &state.last_success) {
            (Some((_, reason)), _) => Some(format!("the last scheduled backup failed: {reason}")),
            (None, Some((at, _, _))) if at.elapsed() > overdue => Some(format!(
                "the last good backup is {} s old, more than twice backup_interval_secs",
                at.elapsed().as_secs()
            )),
            (None, None) if self.started.elapsed() > overdue => Some(format!(
                "no scheduled backup has succeeded in the {} s since the server started",
                self.started.elapsed().as_secs()
            )),
            _ => None,
        };
        let health = BackupHealth {
            interval_secs: self.interval.as_secs(),
            last_success_at: state.last_success.as_ref().map(|(_, at, _)| at.clone()),
            last_success_age_secs: state
                .last_success
                .as_ref()
                .map(|(at, _, _)| at.elapsed().as_secs()),
            last_file: state.last_success.as_ref().map(|(_, _, file)| file.clone()),
            last_failure_at: state.last_failure.as_ref().map(|(at, _)| at.clone()),
            last_failure: state.last_failure.map(|(_, reason)| reason),
        };
        (health, problem)
    }

    /// Takes a backup now and every interval after, until `stop` resolves (the server
    /// shuts down): a backup under way is then dropped, its temporary file removed and its
    /// `pg_dump` or `pg_restore` killed, and its connection goes back to the pool, which
    /// closes without waiting for it.
    pub async fn run(
        &self,
        pool: DbPool,
        settings: DbSettings,
        set: MigrationSet,
        stop: impl Future<Output = ()>,
    ) {
        tokio::select! {
            () = stop => log::info!("scheduled backups stopped"),
            () = self.every_interval(pool, settings, set) => {}
        }
    }

    async fn every_interval(&self, pool: DbPool, settings: DbSettings, set: MigrationSet) {
        let mut ticker = tokio::time::interval(self.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            let result = take(&pool, &settings, &set).await;
            let now = now_rfc3339();
            match result {
                Ok((file, removed)) => {
                    let name = file
                        .file_name()
                        .unwrap_or_default()
                        .to_string_lossy()
                        .into_owned();
                    log::info!(
                        "scheduled backup {} verified; {removed} old backup(s) pruned",
                        file.display()
                    );
                    let mut state = self.state();
                    state.last_success = Some((Instant::now(), now, name));
                    state.last_failure = None;
                }
                Err(e) => {
                    let reason = public_reason(&e, &settings);
                    log::error!(
                        "scheduled backup failed: {}; retrying in {} s",
                        crate::url::mask_url(&e.to_string()),
                        self.interval.as_secs()
                    );
                    self.state().last_failure = Some((now, reason));
                }
            }
        }
    }
}

/// How long the server's prune and copy, which block a thread the shutdown waits for,
/// wait for another process's lock on their directory; they are tried again at the next
/// interval.
const BLOCKING_LOCK_WAIT: Duration = Duration::from_secs(5);

/// One scheduled backup: create, prune, copy (and prune the copies).
async fn take(
    pool: &DbPool,
    settings: &DbSettings,
    set: &MigrationSet,
) -> Result<(PathBuf, usize), BackupError> {
    let entry = super::create(settings, pool, set, &settings.backup_dir, false, &Quiet).await?;
    let (file, dir, url, keep) = (
        entry.path.clone(),
        settings.backup_dir.clone(),
        settings.url.clone(),
        settings.backup_keep as usize,
    );
    let copy_to = settings.backup_copy_to.clone();
    tokio::task::spawn_blocking(move || {
        let removed = super::prune(&dir, &url, keep, &file, BLOCKING_LOCK_WAIT, &Quiet)?.len();
        if let Some(copy_dir) = copy_to {
            let copy = super::copy_to(&file, &copy_dir, &url, BLOCKING_LOCK_WAIT, &Quiet)?;
            super::prune(&copy_dir, &url, keep, &copy, BLOCKING_LOCK_WAIT, &Quiet)?;
            warn_if_same_disk(&dir, &copy_dir);
        }
        Ok((file, removed))
    })
    .await
    .map_err(|e| BackupError::Refused(format!("the backup task stopped: {e}")))?
}

/// Logs once when `backup_copy_to` is on the file system of `backup_dir`: often the empty
/// mount point of a share that is not mounted, where copies die with the disk.
fn warn_if_same_disk(backup_dir: &Path, copy_dir: &Path) {
    static WARNED: AtomicBool = AtomicBool::new(false);
    let device = |dir: &Path| std::fs::metadata(dir).map(|m| m.dev()).ok();
    if device(backup_dir).is_some_and(|d| Some(d) == device(copy_dir))
        && !WARNED.swap(true, Ordering::Relaxed)
    {
        log::warn!(
            "backup_copy_to {} is on the same file system as backup_dir {}: the copies die with that disk (is the share mounted?)",
            copy_dir.display(),
            backup_dir.display()
        );
    }
}

/// The error without paths (public on `/health/db`): directories by their setting.
fn public_reason(error: &BackupError, settings: &DbSettings) -> String {
    let mut text = error.to_string();
    // The temp-file library appends the path, quoted and escaped: drop it whole.
    if let Some(at) = text.find(" at path \"") {
        let end = text[at + 10..]
            .find("\"; ")
            .map_or(text.len(), |i| at + 10 + i + 1);
        text.replace_range(at..end, "");
    }
    if let Some(dir) = &settings.backup_copy_to {
        text = text.replace(&dir.display().to_string(), "backup_copy_to");
    }
    text = text.replace(&settings.backup_dir.display().to_string(), "backup_dir");
    if let Some(path) = settings.url.sqlite_path() {
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        text = text.replace(&path.display().to_string(), &name);
    }
    crate::url::mask_url(&text)
}

fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}
