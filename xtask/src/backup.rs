//! `db-backup` and `db-backups`.

use std::time::Duration;

use anyhow::Context;
use server::backup::{self, BackupState};
use server::db::OpenMode;

use crate::flags::{DbBackup, DbBackups};
use crate::progress::Reporter;
use crate::project::Project;

impl DbBackup {
    /// Runs the command.
    pub async fn run(self, project: &Project) -> anyhow::Result<()> {
        let settings = project.settings();
        let dir = self
            .out
            .map_or_else(|| settings.backup_dir.clone(), |d| project.user_path(&d));
        if self.compress && settings.url.sqlite_path().is_none() {
            note!("note: --compress applies to SQLite; PostgreSQL dumps are compressed already");
        }
        let pool = project.open(OpenMode::MustExist).await?;
        let wait = Duration::from_secs(self.wait);
        let entry = backup::create_within(
            &settings,
            &pool,
            &project.migrations,
            &dir,
            self.compress,
            wait,
            &Reporter::new(),
        )
        .await;
        pool.close().await;
        let entry = entry?;
        let manifest = entry
            .manifest
            .as_ref()
            .expect("a new backup has a manifest");
        say!(
            "backup {} ({} bytes, schema version {}, sha256 {}) verified",
            project.display(&entry.path),
            manifest.size,
            manifest.schema_version,
            manifest.sha256
        );
        // Retention and the off-disk copy as the server's schedule applies them:
        // `--keep` wins over `backup_keep`.
        let keep = self.keep.unwrap_or(settings.backup_keep) as usize;
        let progress = Reporter::new();
        for removed in backup::prune(&dir, &settings.url, keep, &entry.path, wait, &progress)? {
            say!("removed old backup {}", project.display(&removed));
        }
        if let Some(copy_dir) = &settings.backup_copy_to {
            let copy = backup::copy_to(&entry.path, copy_dir, &settings.url, wait, &progress)
                .with_context(|| {
                    format!(
                        "backup_copy_to: the backup {} is kept, but it has no off-disk copy",
                        project.display(&entry.path)
                    )
                })?;
            say!("copied to {}", project.display(&copy));
            for removed in backup::prune(copy_dir, &settings.url, keep, &copy, wait, &progress)? {
                say!("removed old copy {}", project.display(&removed));
            }
        }
        Ok(())
    }
}

impl DbBackups {
    /// Runs the command.
    pub fn run(self, project: &Project) -> anyhow::Result<()> {
        let dir = match self.dir {
            Some(dir) => {
                let dir = project.user_path(&dir);
                if dir.exists() && !dir.is_dir() {
                    anyhow::bail!("--dir {}: is not a directory", project.display(&dir));
                }
                if !dir.is_dir() {
                    anyhow::bail!("--dir {}: no such directory", project.display(&dir));
                }
                dir
            }
            None => project.config.database.backup_dir.clone(),
        };
        let entries = backup::list(&dir)?;
        if entries.is_empty() {
            say!("no backups in {}", project.display(&dir));
            return Ok(());
        }
        say!(
            "{:<48} {:<25} {:>12} {:>6}  state",
            "file",
            "created",
            "bytes",
            "schema"
        );
        for entry in entries {
            let name = entry
                .path
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .to_string();
            let (created, size, schema) = match &entry.manifest {
                Some(m) => (
                    m.created_at.clone(),
                    m.size.to_string(),
                    format!("v{}", m.schema_version),
                ),
                None => ("?".into(), "?".into(), "?".into()),
            };
            let mut state = match entry.state {
                BackupState::Verified => "verified".to_string(),
                BackupState::Unverified => {
                    "NOT VERIFIED (its manifest says so; db-restore refuses it)".to_string()
                }
                BackupState::Corrupt(reason) => format!("CORRUPT: {reason}"),
                BackupState::NoManifest => "no manifest".to_string(),
            };
            if entry.untrusted_sequence {
                state.push_str(
                    "; SEQUENCE NEVER HANDED OUT HERE (an edited manifest; listed and pruned as oldest)",
                );
            }
            if entry.manifest.as_ref().is_some_and(|m| m.dated_in_future()) {
                state.push_str(
                    "; DATED IN THE FUTURE (a wrong clock or an edited manifest; listed by when it was written)",
                );
            }
            say!("{name:<48} {created:<25} {size:>12} {schema:>6}  {state}");
        }
        say!(
            "checked now: each file's size and sha256 against its manifest; created and schema are the manifest's word (db-restore checks the schema version in the file)"
        );
        Ok(())
    }
}
