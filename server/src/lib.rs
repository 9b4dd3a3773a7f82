//! The database foundation: configuration, pool, migrations, health checks and backups,
//! shared by the `server` binary and `cargo xtask`; plus the Rocket application.

// `#[derive(Record)]` names this crate `::server`, inside it too.
extern crate self as server;

pub mod adopt;
pub mod app;
pub mod backup;
pub mod config;
pub mod copy;
pub mod db;
pub mod declared;
pub mod doctor;
pub mod durable;
pub mod health;
pub mod in_use;
pub mod lifecycle;
pub mod migrations;
pub mod paths;
pub mod pg;
pub mod prelude;
pub mod progress;
pub mod schema;
pub mod scratch;
pub mod url;

// The versions an application must match (as Rocket re-exports serde and tokio).
pub use rocket;
pub use rocket_db_pools;
pub use sqlx;
pub use utoipa;

#[cfg(test)]
mod tidy;
