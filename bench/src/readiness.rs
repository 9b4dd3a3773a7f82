//! Readiness under load: `/health` and `/health/db` of this project's server and of the
//! naive anchor, at each concurrency, interleaved so that all four share the machine's
//! moods alike.

use std::time::Duration;

use crate::load::{self, LoadResult};
use crate::process::ServerProcess;

/// The four measurements at one concurrency.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ReadinessPoint {
    /// Open HTTP connections.
    pub connections: usize,
    /// This project's `/health` (no database).
    pub health: LoadResult,
    /// This project's `/health/db`.
    pub health_db: LoadResult,
    /// The anchor's `/health`.
    pub anchor_health: LoadResult,
    /// The anchor's `/health/db` (`SELECT 1` on a default sqlx pool).
    pub anchor_health_db: LoadResult,
}

impl ReadinessPoint {
    /// `/health/db` ÷ `/health` on this project's server.
    pub fn ratio_to_health(&self) -> f64 {
        self.health_db.per_sec / self.health.per_sec
    }

    /// This project's `/health/db` ÷ the anchor's.
    pub fn ratio_to_anchor(&self) -> f64 {
        self.health_db.per_sec / self.anchor_health_db.per_sec
    }
}

/// Measures every concurrency in `connections`: `rounds` rounds of the four loads, in
/// alternating order, `duration` each; rates and percentiles are averaged over rounds.
pub async fn measure(
    ours: &ServerProcess,
    anchor: &ServerProcess,
    connections: &[usize],
    duration: Duration,
    rounds: usize,
) -> Vec<ReadinessPoint> {
    let targets = [
        (ours.port, "/health"),
        (ours.port, "/health/db"),
        (anchor.port, "/health"),
        (anchor.port, "/health/db"),
    ];
    let mut points = Vec::new();
    for &conns in connections {
        // Warm-up: connections, caches, the pools' connections.
        for (port, path) in targets {
            load::run(port, path, conns, Duration::from_millis(300)).await;
        }
        let mut results: [Vec<LoadResult>; 4] = Default::default();
        for round in 0..rounds {
            let order: Vec<usize> = if round % 2 == 0 {
                (0..4).collect()
            } else {
                (0..4).rev().collect()
            };
            for i in order {
                let (port, path) = targets[i];
                results[i].push(load::run(port, path, conns, duration).await);
            }
        }
        let [health, health_db, anchor_health, anchor_health_db] = results.map(|r| average(&r));
        crate::progress(&format!(
            "  {conns:>5} connections: /health {:>8.0}/s  /health/db {:>8.0}/s (p99 {:.1} ms, {} errors)  anchor /health/db {:>8.0}/s",
            health.per_sec,
            health_db.per_sec,
            health_db.latency.p99_ms,
            health_db.errors,
            anchor_health_db.per_sec
        ));
        points.push(ReadinessPoint {
            connections: conns,
            health,
            health_db,
            anchor_health,
            anchor_health_db,
        });
    }
    points
}

/// The mean of `runs` (the worst maximum latency, every error).
pub fn average(runs: &[LoadResult]) -> LoadResult {
    let n = runs.len() as f64;
    let mean = |f: fn(&LoadResult) -> f64| runs.iter().map(f).sum::<f64>() / n;
    LoadResult {
        per_sec: mean(|r| r.per_sec),
        errors: runs.iter().map(|r| r.errors).sum(),
        latency: crate::stats::Latencies {
            p50_ms: mean(|r| r.latency.p50_ms),
            p99_ms: mean(|r| r.latency.p99_ms),
            max_ms: runs.iter().map(|r| r.latency.max_ms).fold(0.0, f64::max),
        },
    }
}
