//! The `server` binary: the app of `server::app::rocket`, configured from the process.

use std::process::ExitCode;

fn main() -> ExitCode {
    server::app::run(
        server::config::Environment::from_process(),
        server::app::rocket,
    )
}
