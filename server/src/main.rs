//! The `server` binary: loads the configuration and launches Rocket.

use std::process::ExitCode;

#[rocket::main]
async fn main() -> ExitCode {
    let config = match server::config::AppConfig::load() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
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
}
