//! `cargo xtask`: database tasks for this workspace, in place of a Makefile.
//!
//! Each command parses its flags and calls the shared library in the `server` crate,
//! where the logic lives (the server uses the same code). Progress goes to stderr,
//! results to stdout; errors end in one `error:` line and a non-zero exit.
//!
//! The command is this library's [`main`], so that the end-to-end tests (the `tests`
//! package) can build the same program as a binary of their own; it is no API.

/// `println!` that never panics: a closed pipe (`| head`) or a full disk (`>/dev/full`)
/// loses the text, not the command's outcome or its exit code.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

/// `print!` that never panics (see `say!`).
macro_rules! say_part {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = write!(std::io::stdout(), $($arg)*);
    }};
}

/// `eprintln!` that never panics (see `say!`).
macro_rules! note {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

/// `eprint!` that never panics (see `say!`).
macro_rules! note_part {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = write!(std::io::stderr(), $($arg)*);
    }};
}

mod backup;
mod baseline;
mod bench;
mod check;
mod copy;
mod downgrade;
mod flags;
mod init;
mod interrupt;
mod migrate;
mod progress;
mod project;
mod reset;
mod resolve;
mod restore;
mod schema;
mod status;
mod upgrade;

use std::process::ExitCode;

use clap::Parser as _;

use flags::Command;

/// Exit code for a command line that does not parse (BSD's `EX_USAGE`), distinct from
/// every code a command returns on purpose.
const EXIT_USAGE: u8 = 64;

/// Runs `cargo xtask` with the process's arguments; the exit code says how it went.
pub fn main() -> ExitCode {
    let flags = match flags::Xtask::try_parse() {
        Ok(flags) => flags,
        Err(e) if !e.use_stderr() => {
            // --help and --version: the full text, success.
            say_part!("{e}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            // clap's message up to its usage block, on one line.
            let text = e.to_string();
            let message: Vec<&str> = text
                .lines()
                .map(str::trim)
                .take_while(|l| !l.starts_with("Usage:"))
                .filter(|l| {
                    !l.is_empty()
                        && !l.starts_with("tip:")
                        && !l.starts_with("For more information")
                })
                .collect();
            let message = message.join(" ");
            let message = message.strip_prefix("error: ").unwrap_or(&message);
            note!(
                "error: {}; see `cargo xtask --help`",
                server::url::mask_url(message)
            );
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    // The bench builds and runs its own release binaries; it reads no configuration.
    let flags = match flags {
        flags::Xtask {
            command: Command::Bench(cmd),
            ..
        } => return finish(cmd.run()),
        flags => flags,
    };
    let result = runtime.block_on(async {
        let creates_migrations = matches!(flags.command, Command::DbMigrate(_));
        let project = project::Project::load(flags.migrations_dir, creates_migrations)?;
        // db-check lists every problem itself; db-migrate may add to a set being fixed.
        if !matches!(flags.command, Command::DbCheck(_) | Command::DbMigrate(_)) {
            project.migrations.ensure_valid()?;
        }
        match flags.command {
            Command::DbInit(cmd) => cmd.run(&project).await,
            Command::DbStatus(cmd) => return cmd.run(&project).await,
            Command::DbMigrate(cmd) => interrupt::removing_scratch(cmd.run(&project)).await,
            Command::DbUpgrade(cmd) => cmd.run(&project).await,
            Command::DbDowngrade(cmd) => cmd.run(&project).await,
            Command::DbReset(cmd) => cmd.run(&project).await,
            Command::DbBackup(cmd) => cmd.run(&project).await,
            Command::DbBackups(cmd) => cmd.run(&project),
            Command::DbRestore(cmd) => cmd.run(&project).await,
            Command::DbBaseline(cmd) => interrupt::removing_scratch(cmd.run(&project)).await,
            Command::DbCheck(cmd) => interrupt::removing_scratch(cmd.run(&project)).await,
            Command::DbResolve(cmd) => cmd.run(&project).await,
            Command::Bench(cmd) => return cmd.run(),
            Command::DbCopy(cmd) => cmd.run(&project).await,
            Command::DbSchema(cmd) => interrupt::removing_scratch(cmd.run(&project)).await,
        }
        .map(|()| ExitCode::SUCCESS)
    });
    finish(result)
}

/// The exit code of a command's result; an error is reported in one line.
fn finish(result: anyhow::Result<ExitCode>) -> ExitCode {
    result.unwrap_or_else(|e| {
        if e.downcast_ref::<flags::UsageError>().is_some() {
            note!("error: {}; see `cargo xtask --help`", one_line(&e));
            return ExitCode::from(EXIT_USAGE);
        }
        note!("error: {}", one_line(&e));
        ExitCode::FAILURE
    })
}

/// The error and its causes on one line, each cause once (a driver error is often wrapped
/// by errors that already quote it), passwords masked.
fn one_line(error: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    server::url::mask_url(&line)
}
