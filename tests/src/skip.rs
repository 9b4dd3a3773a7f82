//! Whether a test can run here: CI forbids skipping; some tests need root.

use std::io::Write;

/// Whether this run must not skip anything (`CI=true`).
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// Reports a test as skipped: loudly outside CI; under `CI=true` a skip is a failure.
///
/// Written to the process's stderr directly, past the test harness's output capture, so
/// the line shows in the run's output next to the test's `ok` instead of vanishing.
pub fn skip(reason: &str) {
    assert!(!in_ci(), "cannot skip under CI=true: {reason}");
    let test = std::thread::current()
        .name()
        .unwrap_or("a test")
        .to_string();
    let _ = writeln!(std::io::stderr().lock(), "SKIPPED: {test}: {reason}");
}

/// The uid (and gid) of `nobody`, for processes run as another user.
pub const NOBODY: u32 = 65534;

/// Whether this test runs as root and so may run processes as [`NOBODY`]; when not, says
/// the test is skipped (`what` needs root), which fails it under CI.
pub fn as_root_or_skip(what: &str) -> bool {
    use std::os::unix::fs::MetadataExt as _;
    // `/proc/self` belongs to the effective user.
    let root = std::fs::metadata("/proc/self").is_ok_and(|meta| meta.uid() == 0);
    if !root {
        skip(&format!("needs root to {what}"));
    }
    root
}
