//! Progress of long operations (backups, restores, copies), reported to whoever runs them.

/// Receives progress of long operations.
pub trait Progress: Send + Sync {
    /// A step starts.
    fn step(&self, message: &str);
    /// Work done so far (bytes, rows), out of an estimated total.
    fn advance(&self, done: u64, total: u64);
}
