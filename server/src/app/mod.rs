//! The Rocket application: wiring only; each stage attaches its fairings and routes.
//!
//! | module | job |
//! |---|---|
//! | `database` | the `Db` pool fairing; migrations on ignite |
//! | `routes` | `/health`, `/health/db` |
//! | `metrics` | `/metrics`: Prometheus series from what the pool and readiness already measured |
//! | `docs` | `/openapi.json` and `/docs` |
//! | `api` | [`ApiError`]: database errors as statuses and JSON, for routes that use the database |

mod api;
mod database;
mod docs;
mod metrics;
mod routes;

use std::process::ExitCode;

use rocket::{Build, Rocket};

use crate::config::{AppConfig, ConfigError, Environment};
use crate::migrations::MigrationSet;

pub use api::{ApiError, ApiResult, ErrorBody, JsonBody, json_catchers};
pub use database::{Backups, Db, LaunchFailure, Migrations};
pub use docs::{base_openapi, mount_docs};

/// Builds the server from a loaded configuration, with the migrations embedded from
/// `migrations/`,
/// `/openapi.json` and `/docs` included.
pub fn rocket(config: &AppConfig) -> Rocket<Build> {
    mount_docs(
        rocket_with(config, MigrationSet::embedded()),
        base_openapi(),
    )
}

/// Builds the server with another migration set (an app's own, like the `notes` example):
/// the pool, the migrations on ignite, the health routes and JSON error bodies for
/// requests no route handles ([`json_catchers`]). Mount the docs with [`mount_docs`].
pub fn rocket_with(config: &AppConfig, migrations: &'static MigrationSet) -> Rocket<Build> {
    rocket::custom(config.figment.clone())
        .manage(LaunchFailure::default())
        .attach(database::stage(config.database.clone(), migrations))
        .attach(routes::stage())
        .register("/", json_catchers())
}

/// What a server's `main` does: loads the configuration from `env`, builds the async
/// runtime from the validated settings (not `#[rocket::main]`, which re-reads them and
/// panics on a bad value), and serves the app `build` makes. Exits 1 with one `error:`
/// line when the configuration or the startup fails.
pub fn run(
    env: Result<Environment, ConfigError>,
    build: impl FnOnce(&AppConfig) -> Rocket<Build>,
) -> ExitCode {
    let config = match env.and_then(|env| AppConfig::from_env(&env)) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    for warning in &config.warnings {
        eprintln!("warning: {warning}");
    }
    // Rocket binds only after ignite, which migrates: a port already taken must stop the
    // start before the database is created or changed. (Port 0 picks a free one.)
    let (address, port) = (config.server.address, config.server.port);
    if port != 0
        && let Err(e) = std::net::TcpListener::bind((address, port))
    {
        eprintln!(
            "error: cannot listen on {address}:{port} (port, ROCKET_PORT): {e}; nothing was changed"
        );
        return ExitCode::FAILURE;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(config.server.workers)
        .max_blocking_threads(config.server.max_blocking)
        .thread_name("rocket-worker-thread")
        .enable_all()
        .build();
    let runtime = match runtime {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let rocket = build(&config);
    let startup = rocket.state::<LaunchFailure>().cloned().unwrap_or_default();
    runtime.block_on(async {
        match rocket.launch().await {
            Ok(_) => ExitCode::SUCCESS,
            Err(e) => {
                // Inspecting the kind marks the error handled; unhandled, Rocket panics on drop.
                let kind = e.kind().to_string();
                let reason = startup.reason().unwrap_or(kind);
                eprintln!("error: the server did not start: {reason}");
                ExitCode::FAILURE
            }
        }
    })
}
