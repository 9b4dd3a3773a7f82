//! The pool's own measurements, for `/metrics`: how long connections take to come,
//! how often waiting for one gave up, driver errors by class, write transactions
//! queued for SQLite's one writer, and what readiness answered and why.

use std::sync::atomic::{AtomicI64, Ordering};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// One label: a class of error, or a readiness result's status and reason.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ClassLabel {
    /// The class (`timeout`, `read_only`, …).
    pub class: &'static str,
}

/// A readiness answer: its status and the kind of problem behind it.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReadinessLabel {
    /// `pass`, `warn` or `fail`.
    pub status: &'static str,
    /// The kind of problem (`none` when there was none).
    pub reason: &'static str,
}

/// Counters and histograms one pool keeps; cheap to update, read at scrape time.
#[derive(Debug)]
pub struct PoolMetrics {
    acquire_seconds: Histogram,
    acquire_timeouts: Counter,
    errors: Family<ClassLabel, Counter>,
    write_queue: Gauge,
    readiness: Family<ReadinessLabel, Counter>,
    schema_applied: AtomicI64,
}

impl Default for PoolMetrics {
    fn default() -> Self {
        Self {
            // 0.1 ms to about 6.5 s.
            acquire_seconds: Histogram::new(exponential_buckets(0.0001, 4.0, 9)),
            acquire_timeouts: Counter::default(),
            errors: Family::default(),
            write_queue: Gauge::default(),
            readiness: Family::default(),
            schema_applied: AtomicI64::new(-1),
        }
    }
}

impl PoolMetrics {
    /// A connection (or the writer) came after `seconds`; `timed_out` when waiting gave up.
    pub fn acquired(&self, seconds: f64, timed_out: bool) {
        self.acquire_seconds.observe(seconds);
        if timed_out {
            self.acquire_timeouts.inc();
        }
    }

    /// A request's driver error of `class`.
    pub fn error(&self, class: &'static str) {
        self.errors.get_or_create(&ClassLabel { class }).inc();
    }

    /// A write transaction starts waiting for SQLite's writer; the guard ends the wait.
    pub fn queued(&self) -> QueuedWrite<'_> {
        self.write_queue.inc();
        QueuedWrite(&self.write_queue)
    }

    /// A readiness answer, and the schema version it read (when it read one).
    pub fn readiness(&self, status: &'static str, reason: &'static str, applied: Option<i32>) {
        self.readiness
            .get_or_create(&ReadinessLabel { status, reason })
            .inc();
        if let Some(applied) = applied {
            self.schema_applied
                .store(i64::from(applied), Ordering::Relaxed);
        }
    }

    /// The schema version the last readiness check read, if one did.
    pub fn schema_applied(&self) -> Option<i64> {
        Some(self.schema_applied.load(Ordering::Relaxed)).filter(|v| *v >= 0)
    }

    /// Registers every series of this pool in `registry` (prefix `db_`).
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "db_pool_acquire_seconds",
            "Time waited for a database connection (or SQLite's writer)",
            self.acquire_seconds.clone(),
        );
        registry.register(
            "db_pool_acquire_timeouts",
            "Waits for a connection that gave up after acquire_timeout_ms",
            self.acquire_timeouts.clone(),
        );
        registry.register(
            "db_errors",
            "Requests' database errors, by class",
            self.errors.clone(),
        );
        registry.register(
            "db_write_queue",
            "SQLite: write transactions waiting for the writer connection",
            self.write_queue.clone(),
        );
        registry.register(
            "db_readiness_checks",
            "Readiness answers (/health/db), by status and reason",
            self.readiness.clone(),
        );
    }
}

/// A write transaction waiting for the writer: counted until dropped.
pub struct QueuedWrite<'m>(&'m Gauge);

impl Drop for QueuedWrite<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}
