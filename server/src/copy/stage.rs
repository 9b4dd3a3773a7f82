//! The target of a copy, opened so that nothing changes before the copy may begin, and a
//! new database built aside:
//!
//! - an existing SQLite file is opened read-only to decide whether to copy (a refusal
//!   leaves it byte for byte as it was, journal mode included), then for writing;
//! - a SQLite file that does not exist is built in a hidden file beside its path and
//!   linked into place only once the copy is verified and committed; it keeps its
//!   rollback journal in memory, so no `-wal`/`-shm` appears beside it (a killed
//!   copy's hidden file is swept by the next one);
//! - a PostgreSQL database that does not exist is built under a scratch name (see
//!   [`crate::scratch::Scratch`]) and renamed into place once verified; a failed
//!   copy drops it, a killed one's is dropped by the next run. A database the copy did
//!   not create is never dropped.

use std::path::PathBuf;

use super::{CopyError, Side};
use crate::config::DbSettings;
use crate::db::{DbError, DbPool, OpenMode};
use crate::scratch::Scratch;
use crate::url::DatabaseUrl;

/// The opened target of a copy; see the module docs.
pub struct CopyTarget {
    /// The pool the copy reads and writes the target through.
    pub pool: DbPool,
    stage: Stage,
}

enum Stage {
    /// An existing database, opened read-only until [`CopyTarget::for_writing`].
    Existing {
        read_only: bool,
    },
    Sqlite(StagedSqlite),
    Postgres {
        scratch: Box<Scratch>,
        name: String,
    },
}

impl CopyTarget {
    /// Whether the target was built for this copy (a new database or file, staged and
    /// discarded whole when the copy fails).
    pub fn is_new(&self) -> bool {
        !matches!(self.stage, Stage::Existing { .. })
    }

    /// Opens the target `settings` name: see the module docs.
    pub async fn open(settings: &DbSettings) -> Result<Self, CopyError> {
        let fail = CopyError::from_db(Side::Target);
        if let Some(path) = settings.url.sqlite_path() {
            if std::fs::symlink_metadata(path).is_ok() {
                let pool = DbPool::open(settings, OpenMode::ReadOnly)
                    .await
                    .map_err(fail)?;
                return Ok(Self {
                    pool,
                    stage: Stage::Existing { read_only: true },
                });
            }
            let (stage, staged) = StagedSqlite::new(settings, path.to_path_buf()).await?;
            let pool = DbPool::open(&staged, OpenMode::MustExist)
                .await
                .map_err(&fail)?;
            let target = Self {
                pool,
                stage: Stage::Sqlite(stage),
            };
            // One connection (the settings above), which the copy holds throughout.
            let mut conn = target.pool.acquire().await.map_err(&fail)?;
            let mode: String = match &mut conn {
                crate::db::DbConn::Sqlite(c) => sqlx::query_scalar("PRAGMA journal_mode = MEMORY")
                    .fetch_one(&mut **c)
                    .await
                    .map_err(CopyError::db(Side::Target))?,
                crate::db::DbConn::Postgres(_) => unreachable!("a SQLite pool"),
            };
            drop(conn);
            if mode != "memory" {
                target.discard().await;
                return Err(fail(DbError::Driver(sqlx::Error::Protocol(format!(
                    "the new file kept journal mode {mode}"
                )))));
            }
            return Ok(target);
        }
        match DbPool::open(settings, OpenMode::MustExist).await {
            Err(DbError::Driver(e)) if crate::db::is_missing_database(&e) => {}
            other => {
                return Ok(Self {
                    pool: other.map_err(fail)?,
                    stage: Stage::Existing { read_only: false },
                });
            }
        }
        let DatabaseUrl::Postgres { url } = &settings.url else {
            unreachable!("not a SQLite URL");
        };
        let name = crate::pg::database_name(url).map_err(CopyError::db(Side::Target))?;
        let scratch = Scratch::staging(settings)
            .await
            .map_err(|e| CopyError::Db {
                side: Side::Target,
                message: format!("database `{name}` does not exist and cannot be created: {e}"),
            })?;
        match DbPool::open(&scratch.settings, OpenMode::MustExist).await {
            Ok(pool) => Ok(Self {
                pool,
                stage: Stage::Postgres {
                    scratch: Box::new(scratch),
                    name,
                },
            }),
            Err(e) => {
                scratch.remove().await.ok();
                Err(fail(e))
            }
        }
    }

    /// Reopens an existing SQLite target for writing once the copy may go ahead.
    pub async fn for_writing(&mut self, settings: &DbSettings) -> Result<(), CopyError> {
        if let Stage::Existing { read_only: true } = self.stage {
            self.pool.close().await;
            self.pool = DbPool::open(settings, OpenMode::MustExist)
                .await
                .map_err(CopyError::from_db(Side::Target))?;
            self.stage = Stage::Existing { read_only: false };
        }
        Ok(())
    }

    /// Puts a database built aside into place (the pool closed first); fails, keeping
    /// nothing, when one appeared there meanwhile.
    pub async fn publish(self) -> Result<(), CopyError> {
        match self.stage {
            Stage::Existing { .. } => Ok(()),
            Stage::Sqlite(stage) => stage.publish(),
            Stage::Postgres { scratch, name } => {
                scratch
                    .rename_into_place(&name)
                    .await
                    .map_err(|e| CopyError::Db {
                        side: Side::Target,
                        message: e.to_string(),
                    })
            }
        }
    }

    /// Removes a database built aside (the pool closed first); an existing one is kept.
    pub async fn discard(self) {
        match self.stage {
            Stage::Existing { .. } => {}
            Stage::Sqlite(stage) => drop(stage),
            Stage::Postgres { scratch, .. } => {
                scratch.remove().await.ok();
            }
        }
    }
}

/// The staged file and where it goes.
struct StagedSqlite {
    temp: tempfile::NamedTempFile,
    path: PathBuf,
}

impl StagedSqlite {
    /// The staged file for the SQLite target `path`, and settings that open it (one
    /// connection) instead of the final path.
    async fn new(settings: &DbSettings, path: PathBuf) -> Result<(Self, DbSettings), CopyError> {
        let temp = crate::db::new_database_file(&path, settings)
            .await
            .map_err(CopyError::from_db(Side::Target))?;
        let mut staged = settings.clone();
        staged.url = DatabaseUrl::Sqlite {
            path: temp.path().to_path_buf(),
        };
        staged.min_connections = 1;
        staged.max_connections = 1;
        staged.idle_timeout = None;
        Ok((Self { temp, path }, staged))
    }

    /// Links the finished file into place (its pool closed); fails, keeping nothing,
    /// when a file appeared at the path meanwhile.
    fn publish(self) -> Result<(), CopyError> {
        let fail = |what: String| CopyError::Db {
            side: Side::Target,
            message: format!("{what}; the copy was discarded"),
        };
        for sidecar in ["-wal", "-journal"] {
            let mut log = self.temp.path().as_os_str().to_owned();
            log.push(sidecar);
            if std::fs::metadata(&log).is_ok_and(|m| m.len() > 0) {
                return Err(fail("the new database's log was not written back".into()));
            }
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
