//! Helpers shared by every test in the workspace, one module per job: the PostgreSQL
//! server (`pg`), a temporary project (`project`), processes and their outcome
//! (`process`), a running server and an HTTP client (`http`), files and disks (`disk`),
//! SQLite files (`sqlite_file`), when a test may skip (`skip`), random choices
//! (`random`), bounded waits (`wait`) and a generated real-shaped migration history
//! (`history`). Everything is re-exported here: tests write
//! `tests::Project`.
//!
//! Nothing here mocks a database: tests talk to real SQLite files and the real PostgreSQL
//! server (`TEST_POSTGRES_URL`, default `postgres://postgres@127.0.0.1:5432/postgres`).

mod disk;
mod history;
mod http;
mod pg;
mod pgbouncer;
mod process;
mod project;
mod random;
mod skip;
mod sqlite_file;
mod wait;

pub use disk::{Tmpfs, debris, fill_disk, free_bytes, sha256};
pub use history::{Generated, postgres_history, sqlite_history, write_history};
pub use http::{Response, Server, free_port, get, request};
pub use pg::{
    PgCluster, PgDatabase, hold_pg_lock, hold_pg_lock_in, logging_pg_tools, path_with_only,
    pg_bin_dir, pg_command, postgres_admin_url, psql, which,
};
pub use pgbouncer::PgBouncer;
pub use process::{Run, binary, run_with_deadline};
pub use project::{Project, newest_backup, workspace_root};
pub use random::random_below;
pub use skip::{NOBODY, as_root_or_skip, in_ci, skip};
pub use sqlite_file::{SnapshotHolder, sqlite};
pub use wait::{holds_for, poll_until};
