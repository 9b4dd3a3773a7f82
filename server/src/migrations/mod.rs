//! Schema migrations: refinery runs them; this module adds down scripts, locking and status.
//!
//! Convention: `migrations/V<n>__<name>.sql` is applied by refinery and
//! `migrations/V<n>__<name>.down.sql` reverts it. The server embeds the directory at
//! build time ([`MigrationSet::embedded`]); xtask can read it from disk
//! ([`MigrationSet::from_dir`]) — both parse the same way.
//!
//! Each migration runs in its own transaction together with its history row, after
//! taking the migration lock (`BEGIN IMMEDIATE` on SQLite, `pg_advisory_xact_lock` on
//! PostgreSQL), so processes starting at once apply each migration exactly once and a
//! failing migration leaves the ones before it applied. A file whose leading comments
//! hold `-- db: no-transaction` runs its statements one at a time in autocommit instead,
//! under a session-level lock on PostgreSQL, and its history row afterwards.
//!
//! | module | job |
//! |---|---|
//! | `naming` | the rules for a set of files (std only: `server/build.rs` uses it too) |
//! | `files` | the migration files: reading, embedding, each engine's view |
//! | `scaffold` | writing new migration files (`db-migrate`) |
//! | `status` | the history table compared with a set |
//! | `run` | upgrade and downgrade, one locked transaction per migration, through refinery |

mod baseline;
mod failure;
mod files;
mod locks;
mod naming;
mod run;
mod scaffold;
mod status;

pub use baseline::baseline;
pub use failure::{Resolution, resolve};
pub use files::{MigrationFile, MigrationSet, dir_in};

impl MigrationError {
    /// Why `migration`, which has no usable down script, cannot be rolled back.
    pub fn no_down(migration: &MigrationFile) -> Self {
        match &migration.blank_down {
            Some((file, _)) => Self::EmptyDownScript(migration.id(), file.clone()),
            None => Self::NoDownScript(migration.id()),
        }
    }
}
pub use locks::lock_risks;
pub use naming::{FOREIGN_KEYS_OFF, is_snake_case, no_transaction};
pub use run::{Outcome, downgrade, few_of, reset, upgrade};
pub(crate) use run::{create_history_sql, lock, record_row, step_to};
pub use scaffold::{check_new_name, scaffold, scaffold_variants};
pub use status::{
    AppliedMigration, AppliedState, SchemaState, SchemaStatus, status, status_of_pg,
    status_of_sqlite,
};

/// Refinery's history table.
pub const HISTORY_TABLE: &str = "refinery_schema_history";

/// A migration failure.
#[derive(Debug, thiserror::Error)]
pub enum MigrationError {
    /// The migration files themselves are unusable.
    #[error("{0}")]
    Files(String),
    /// The database holds history this code does not know.
    #[error(
        "the database is ahead of this code: applied migration {0} is not in migrations/; deploy the newer code or roll the database back with it"
    )]
    Ahead(String),
    /// A migration is not applied though a later one is (a history row removed by hand).
    #[error(
        "migration {missing} is not applied but the later {later} is: the history has a hole (a row removed by hand?); restore the database from a backup"
    )]
    Hole {
        /// `V<n>` of the missing one.
        missing: String,
        /// The newest applied version.
        later: i32,
    },
    /// An applied migration was edited afterwards.
    #[error(
        "migration {0} was edited after it was applied (checksum differs); restore the original file and add a new migration instead"
    )]
    Diverged(String),
    /// A migration's SQL failed; migrations before it stay applied.
    #[error("migration {name} failed: {reason}")]
    Failed {
        /// `V<n>__<name>`.
        name: String,
        /// The database's message.
        reason: String,
    },
    /// A `-- db: no-transaction` migration failed part-way: what ran before the failing
    /// statement stays, and it is recorded as failed until resolved.
    #[error(
        "migration {name} failed: {cause}; it ran outside a transaction (-- db: no-transaction): the statements before the failing one stay applied, and it is recorded as failed; make them idempotent (IF NOT EXISTS, IF EXISTS) and run `cargo xtask db-resolve {version} --retry`, or finish it by hand and run `cargo xtask db-resolve {version} --applied`{kept}"
    )]
    FailedOutside {
        /// `V<n>__<name>`.
        name: String,
        /// Its version.
        version: i32,
        /// The database's message.
        cause: String,
        /// `; applied before it and kept: …` when this run applied others first.
        kept: String,
    },
    /// A rollback cannot run.
    #[error("cannot roll back {0}: it has no down script (migrations/{0}.down.sql)")]
    NoDownScript(String),
    /// A rollback would do nothing: the down script has no statement.
    #[error(
        "cannot roll back {0}: its down script {1} has no SQL statement (comments only), so what {0} did would stay; write it, or pass --accept-empty-down to delete only its history row"
    )]
    EmptyDownScript(String, String),
    /// Another process changed the history while this command ran (e.g. rolled it back):
    /// the migration `step` was not applied, the ones before it stay as they are.
    #[error(
        "another process changed the migration history while this command ran (it now ends at version {now}); {step} was not applied; run the command again"
    )]
    Raced {
        /// `V<n>__<name>` of the migration this command was about to apply.
        step: String,
        /// The newest version in the history when this command looked.
        now: i32,
    },
    /// A `-- db: no-transaction` migration failed part-way earlier: nothing runs after it
    /// until it is resolved.
    #[error(
        "migration {name} failed part-way outside a transaction ({reason}); its statements before the failing one stay applied. Make them idempotent (IF NOT EXISTS) and run `cargo xtask db-resolve {version} --retry`, or finish it by hand and run `cargo xtask db-resolve {version} --applied`"
    )]
    FailedPartWay {
        /// `V<n>__<name>`.
        name: String,
        /// Its version.
        version: i32,
        /// The error it failed with.
        reason: String,
    },
    /// A requested target version does not exist.
    #[error("{0}")]
    Target(String),
    /// The database failed.
    #[error("{}", crate::db::describe_driver_error(.0, None))]
    Db(sqlx::Error),
}

// Not `#[from]`, for the reason given at `DbError`'s `From<sqlx::Error>`.
impl From<sqlx::Error> for MigrationError {
    fn from(error: sqlx::Error) -> Self {
        Self::Db(error)
    }
}
