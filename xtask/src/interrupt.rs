//! SIGINT (Ctrl-C) and SIGTERM for commands that must clean up before they exit.

use anyhow::bail;
use server::scratch;

/// Waits for SIGINT or SIGTERM and names it.
pub async fn interrupted() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = int.recv() => "SIGINT",
        _ = term.recv() => "SIGTERM",
    }
}

/// Runs a command that works on scratch databases (`db-check`, `db-schema`,
/// `db-migrate`); interrupted, it stops the work and drops its scratch databases before
/// it exits.
pub async fn removing_scratch(
    work: impl Future<Output = anyhow::Result<()>>,
) -> anyhow::Result<()> {
    let signal = tokio::select! {
        done = work => return done,
        signal = interrupted() => signal,
    };
    // The work is dropped by now: a SQLite scratch file went with it.
    let left = scratch::drop_abandoned_scratch().await;
    if !left.is_empty() {
        note!(
            "warning: scratch database(s) {} could not be dropped; the next run of db-check, db-schema or db-migrate drops them",
            left.join(", ")
        );
    }
    bail!("interrupted by {signal}; nothing was changed")
}
