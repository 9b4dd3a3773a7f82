//! A new SQLite target is built in a hidden file beside its path and linked into place
//! only once the copy is verified and committed: a copy that fails or is killed leaves
//! nothing at the path (a killed one's hidden file is swept by the next start).

use std::path::PathBuf;

use super::{CopyError, Side};
use crate::config::DbSettings;
use crate::url::DatabaseUrl;

/// The staged file and where it goes.
pub struct StagedSqlite {
    temp: tempfile::NamedTempFile,
    path: PathBuf,
}

impl StagedSqlite {
    /// For a SQLite target that does not exist yet: the staged file, and settings that
    /// open it instead of the final path. `None` for any other target.
    pub async fn new(settings: &DbSettings) -> Result<Option<(Self, DbSettings)>, CopyError> {
        let Some(path) = settings.url.sqlite_path() else {
            return Ok(None);
        };
        if std::fs::symlink_metadata(path).is_ok() {
            return Ok(None);
        }
        let temp = crate::db::new_database_file(path, settings)
            .await
            .map_err(CopyError::from_db(Side::Target))?;
        let mut staged = settings.clone();
        staged.url = DatabaseUrl::Sqlite {
            path: temp.path().to_path_buf(),
        };
        let stage = Self {
            temp,
            path: path.to_path_buf(),
        };
        Ok(Some((stage, staged)))
    }

    /// Links the finished file into place (its pool closed, so its log is checkpointed
    /// into it); fails, keeping nothing, when a file appeared at the path meanwhile.
    pub fn publish(self) -> Result<(), CopyError> {
        let fail = |what: String| CopyError::Db {
            side: Side::Target,
            message: format!("{what}; the copy was discarded"),
        };
        let mut wal = self.temp.path().as_os_str().to_owned();
        wal.push("-wal");
        if std::fs::metadata(&wal).is_ok_and(|m| m.len() > 0) {
            return Err(fail("the new database's log was not checkpointed".into()));
        }
        self.temp
            .as_file()
            .sync_all()
            .map_err(|e| fail(format!("cannot sync {}: {e}", self.temp.path().display())))?;
        std::fs::hard_link(self.temp.path(), &self.path).map_err(|e| {
            fail(match e.kind() {
                std::io::ErrorKind::AlreadyExists => {
                    format!("{} appeared while copying", self.path.display())
                }
                _ => format!("cannot create {}: {e}", self.path.display()),
            })
        })?;
        crate::durable::sync_dir(crate::durable::parent(&self.path));
        Ok(())
    }
}
