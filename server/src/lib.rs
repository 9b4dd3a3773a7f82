//! The database foundation: configuration, pool, migrations, health checks and backups,
//! shared by the `server` binary and `cargo xtask`; plus the Rocket application.

pub mod app;
pub mod backup;
pub mod config;
pub mod copy;
pub mod db;
pub mod durable;
pub mod health;
pub mod in_use;
pub mod maintenance;
pub mod migrations;
pub mod pg;
pub mod schema;
pub mod url;
