//! The Rocket application: wiring only; each stage attaches its fairings and routes.

mod database;
mod docs;
mod routes;

use rocket::{Build, Rocket};

use crate::config::AppConfig;

pub use database::{Db, startup_error};

/// Builds the server from a loaded configuration.
pub fn rocket(config: &AppConfig) -> Rocket<Build> {
    rocket::custom(config.figment.clone())
        .attach(database::stage(config.database.clone()))
        .attach(routes::stage())
        .attach(docs::stage())
}
