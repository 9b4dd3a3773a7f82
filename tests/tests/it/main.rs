//! The end-to-end tests, linked as one binary with a module per feature: they run the
//! real `server`, `xtask` and `notes` binaries in temporary projects, on real SQLite
//! files and the real PostgreSQL server.
//!
//! `cargo test -p tests --test it` runs them all; a filter picks a module or a test, e.g.
//! `cargo test -p tests --test it catalogue::`.

mod adopt;
mod bad_input;
mod build_script;
mod catalogue;
mod copy;
mod docs;
mod engines;
mod faults;
mod histories;
mod metrics;
mod notes;
mod poolers;
mod postgres_faults;
mod restore;
mod scheduled_backups;
mod schema;
mod server;
mod standby;
mod support {
    //! Code shared by several feature modules.

    pub mod scratch_kills;
}
mod xtask;
