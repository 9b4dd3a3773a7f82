//! `bench`: every scenario of `cargo xtask bench`, side by side in one run, on release
//! builds. `cargo xtask bench` builds this, the server and the anchor, then runs it.
//!
//! - [`app`]: the notes example's reads and inserts against the anchor's and `/health`;
//! - [`readiness`]: `/health/db` against `/health` and against the naive anchor
//!   (`src/bin/anchor.rs`), under [`load`] from 16 to 1,024 connections;
//! - [`writes`]: write transactions through the pool, through sqlx's defaults and through
//!   raw SQLite, 1 to 64 writers;
//! - [`backup`]: a backup under an unthrottled writer, against `cp`;
//! - [`histories`]: `db-check` of a 350-migration history against applying and rolling
//!   it back;
//! - [`report`]: the Markdown section of `docs/benchmarks.md`, JSON and the SVG plot.

mod app;
mod backup;
mod histories;
mod load;
mod process;
mod readiness;
mod report;
mod run;
mod stats;
mod writes;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

/// Runs every benchmark scenario and writes the results.
#[derive(Parser)]
#[command(name = "bench", version)]
struct Args {
    /// A smoke run of about a minute: fewer points, shorter loads, a 64 MiB backup.
    #[arg(long)]
    quick: bool,
    /// Directory for `benchmarks.md`, `bench.json` and `bench.svg` (default: `docs`
    /// for a full run, `target/bench` for `--quick`).
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// PostgreSQL server for the PostgreSQL scenarios (a database is created and dropped
    /// on it); skipped when it does not answer.
    #[arg(
        long,
        env = "BENCH_POSTGRES_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/postgres",
        value_name = "URL"
    )]
    postgres: String,
    /// Size of the database the backup scenario copies, in MiB (default 1024; 64 with
    /// `--quick`).
    #[arg(long, value_name = "MIB")]
    backup_mib: Option<u64>,
}

/// Progress on stderr; never panics on a closed stream.
pub fn progress(line: &str) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr(), "{line}");
}

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    match runtime.block_on(run::all(run::Options {
        quick: args.quick,
        out: args
            .out
            .unwrap_or_else(|| PathBuf::from(if args.quick { "target/bench" } else { "docs" })),
        postgres: args.postgres,
        backup_mib: args
            .backup_mib
            .unwrap_or(if args.quick { 64 } else { 1024 }),
    })) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            progress(&format!("error: {e:#}"));
            ExitCode::FAILURE
        }
    }
}
