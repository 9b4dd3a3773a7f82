//! Waiting in tests: for a condition, bounded, instead of a fixed sleep; and watching,
//! for a set time, that something does not happen.

use std::time::{Duration, Instant};

/// Polls `condition` every 20 ms until it holds (`true`) or `limit` has passed (`false`).
pub fn poll_until(limit: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Checks `holds` every 50 ms for `window`, and once more at its end: `false` as soon as
/// it fails. For what must not happen during a time (a file recreated or written to by a
/// timer of the server), where no event says that the time is over.
pub fn holds_for(window: Duration, mut holds: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + window;
    loop {
        if !holds() {
            return false;
        }
        let now = Instant::now();
        if now >= end {
            return true;
        }
        std::thread::sleep((end - now).min(Duration::from_millis(50)));
    }
}
