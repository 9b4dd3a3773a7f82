//! Running processes: the workspace binaries, a command's outcome, and a deadline.

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A program of this workspace built for this test run: `server`, `xtask` or `notes`
/// (the example). They are the `tests` package's binaries `it-server`, `it-xtask` and
/// `it-notes`, which cargo builds from the current sources before the tests and benches
/// that run them, and whose paths it passes to them in `CARGO_BIN_EXE_it-<name>`.
pub fn binary(name: &str) -> PathBuf {
    let var = format!("CARGO_BIN_EXE_it-{name}");
    std::env::var_os(&var)
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            panic!("{var} is not set: run tests with `cargo test -p tests`, which builds {name}")
        })
}

/// The outcome of running a command.
#[derive(Debug)]
pub struct Run {
    /// Exit code (-1 when killed by a signal).
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(output: Output) -> Self {
        Self {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }
}

impl Run {
    /// Asserts a zero exit and returns stdout.
    pub fn ok(&self) -> &str {
        assert_eq!(
            self.code, 0,
            "expected success\nstdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        &self.stdout
    }

    /// Asserts a given exit code.
    pub fn code(&self, code: i32) -> &Self {
        assert_eq!(
            self.code, code,
            "unexpected exit code\nstdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }

    /// The one `error:` line on stderr.
    pub fn error_line(&self) -> &str {
        assert_ne!(self.code, 0, "expected failure\nstdout:\n{}", self.stdout);
        let lines: Vec<&str> = self
            .stderr
            .lines()
            .filter(|l| l.starts_with("error:"))
            .collect();
        assert_eq!(
            lines.len(),
            1,
            "expected one error line, got:\n{}",
            self.stderr
        );
        assert!(!self.stderr.contains("panicked"), "panic:\n{}", self.stderr);
        lines[0]
    }
}

/// Runs `command` to its end, capturing its output, for at most `limit`; `None` (after
/// killing it) when it is still running then: a hang fails a test instead of stalling it.
pub fn run_with_deadline(mut command: Command, limit: Duration) -> Option<Run> {
    let out = tempfile::NamedTempFile::new().expect("stdout file");
    let err = tempfile::NamedTempFile::new().expect("stderr file");
    let mut child = command
        .stdin(Stdio::null())
        .stdout(out.reopen().expect("stdout file"))
        .stderr(err.reopen().expect("stderr file"))
        .spawn()
        .expect("spawn");
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().expect("poll child") {
            break status;
        }
        if Instant::now() > deadline {
            child.kill().ok();
            child.wait().ok();
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Some(Run {
        code: status.code().unwrap_or(-1),
        stdout: std::fs::read_to_string(out.path()).unwrap_or_default(),
        stderr: std::fs::read_to_string(err.path()).unwrap_or_default(),
    })
}
