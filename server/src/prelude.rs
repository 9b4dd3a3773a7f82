//! What an application built on this crate needs, in one import:
//! `use server::prelude::*;` — the app's building blocks (`rocket_with`, `run`, `Db`,
//! `query`, `ApiResult`, `JsonBody`, …) and the items of Rocket, rocket_db_pools, serde,
//! sqlx and utoipa a route module uses, at the versions this crate is built with.
//!
//! Rocket's and sqlx's derive and route macros name their crates (`::rocket`,
//! `::sqlx`): an application outside this workspace also depends on `rocket`, `serde`,
//! `sqlx` and `utoipa` itself, at the versions re-exported as `server::rocket`,
//! `server::sqlx`, … (see `Cargo.lock`).

pub use crate::app::{
    ApiError, ApiResult, Db, ErrorBody, JsonBody, base_openapi, mount_docs, rocket_with, run,
};
pub use crate::config::{AppConfig, Environment};
pub use crate::db::Record;
pub use crate::db::{DbConn, WriteTx, query};
pub use crate::migrations::MigrationSet;
pub use rocket::http::uri::Origin;
pub use rocket::response::status::Created;
pub use rocket::serde::json::Json;
pub use rocket::{Build, Rocket, State, delete, get, patch, post, put, routes};
pub use rocket_db_pools::Connection;
pub use serde::{Deserialize, Serialize};
pub use utoipa::{OpenApi, ToSchema};
