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
            eprintln!("error: the server did not start: {e}");
            ExitCode::FAILURE
        }
    }
}
