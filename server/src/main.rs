//! The `server` binary: loads the configuration and launches Rocket.
//!
//! The async runtime is built here from the validated configuration rather than by
//! `#[rocket::main]`, which reads Rocket's settings itself and panics on a bad value.

use std::process::ExitCode;

fn main() -> ExitCode {
    let config = match server::config::AppConfig::load() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
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
    runtime.block_on(async {
        match server::app::rocket(&config).launch().await {
            Ok(_) => ExitCode::SUCCESS,
            Err(e) => {
                // Inspecting the kind marks the error handled; unhandled, Rocket panics on drop.
                let kind = e.kind().to_string();
                let reason = server::app::startup_error().unwrap_or(kind);
                eprintln!("error: the server did not start: {reason}");
                ExitCode::FAILURE
            }
        }
    })
}
