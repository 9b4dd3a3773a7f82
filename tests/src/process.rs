//! Running processes: the workspace binaries, a command's outcome, and a deadline.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::workspace_root;

/// A binary of this workspace, built by `cargo test --workspace` (the `server` and
/// `xtask` packages have integration tests, so cargo builds their binaries first).
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>/deps");
    let path = dir.join(name);
    let built = std::fs::metadata(&path)
        .and_then(|m| m.modified())
        .unwrap_or_else(|_| {
            panic!(
                "{} is missing: run `cargo test --workspace`, which builds it",
                path.display()
            )
        });
    // What each binary is built from: its own sources, the shared library and the
    // embedded migrations (the server's `main.rs` is not part of xtask).
    let root = workspace_root();
    let sources: &[&str] = match name {
        "xtask" => &["xtask/src", "server/src", "server/build.rs", "migrations"],
        name if name.starts_with("examples/") => &[
            "server/src",
            "server/build.rs",
            "migrations",
            "server/examples",
        ],
        _ => &["server/src", "server/build.rs", "migrations"],
    };
    let newest_source = sources
        .iter()
        .filter_map(|source| {
            newest_mtime(&root.join(source), &root.join("server/src/main.rs"), name)
        })
        .max();
    assert!(
        newest_source.is_none_or(|source| source <= built),
        "{} is older than its sources: run `cargo test --workspace`, which rebuilds it",
        path.display()
    );
    path
}

/// The newest modification time of `path` (a file, or any file below a directory),
/// skipping the server's `main.rs` unless `binary` is the server.
fn newest_mtime(path: &Path, server_main: &Path, binary: &str) -> Option<std::time::SystemTime> {
    if path == server_main && binary != "server" {
        return None;
    }
    let meta = std::fs::metadata(path).ok()?;
    if !meta.is_dir() {
        return meta.modified().ok();
    }
    std::fs::read_dir(path)
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| newest_mtime(&e.path(), server_main, binary))
        .max()
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
