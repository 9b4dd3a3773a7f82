//! The application's own requests: the notes example (`server/examples/notes`, the
//! pattern the README teaches for every endpoint) against the anchor's notes, written
//! the naive way with the same SQL and JSON, and against `/health` of the same server,
//! the framework's ceiling. Interleaved like readiness, so that all share the machine's
//! moods alike.

use std::time::Duration;

use crate::load::{self, LoadResult, Request};
use crate::process::ServerProcess;

/// The endpoints measured, by name: a read by id, a page, an insert with two tags.
pub const ENDPOINTS: [&str; 3] = ["GET /notes/<id>", "GET /notes?limit=20", "POST /notes"];

/// Notes each server holds before the reads are measured.
const SEEDED: usize = 200;

/// One endpoint at one concurrency.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AppPoint {
    /// Open HTTP connections.
    pub connections: usize,
    /// One of [`ENDPOINTS`].
    pub endpoint: &'static str,
    /// The notes example.
    pub ours: LoadResult,
    /// The anchor's same endpoint.
    pub anchor: LoadResult,
    /// The notes example's `/health` (no database), at the same concurrency.
    pub health: LoadResult,
}

impl AppPoint {
    /// Ours ÷ the anchor's.
    pub fn ratio_to_anchor(&self) -> f64 {
        self.ours.per_sec / self.anchor.per_sec
    }

    /// Ours ÷ `/health` of the same server.
    pub fn ratio_to_health(&self) -> f64 {
        self.ours.per_sec / self.health.per_sec
    }
}

fn request(endpoint: &str) -> Request {
    match endpoint {
        "GET /notes/<id>" => Request::Get(format!("/notes/{}", SEEDED / 2)),
        "GET /notes?limit=20" => Request::Get("/notes?limit=20".into()),
        _ => Request::PostNote("/notes".into()),
    }
}

/// Seeds both servers, then measures every endpoint at every concurrency: `rounds`
/// rounds, alternating order, `duration` each.
pub async fn measure(
    ours: &ServerProcess,
    anchor: &ServerProcess,
    connections: &[usize],
    duration: Duration,
    rounds: usize,
) -> anyhow::Result<Vec<AppPoint>> {
    for server in [ours, anchor] {
        for n in 0..SEEDED {
            let created =
                load::send(server.port, &Request::PostNote("/notes".into()), n as u64).await;
            anyhow::ensure!(created == Some(201), "seeding note {n}: status {created:?}");
        }
    }
    let mut points = Vec::new();
    for &conns in connections {
        for endpoint in ENDPOINTS {
            let targets = [
                (ours.port, request(endpoint)),
                (anchor.port, request(endpoint)),
                (ours.port, Request::Get("/health".into())),
            ];
            for (port, request) in &targets {
                load::run_request(*port, request, conns, Duration::from_millis(300)).await;
            }
            let mut results: [Vec<LoadResult>; 3] = Default::default();
            for round in 0..rounds {
                let order: Vec<usize> = match round % 2 {
                    0 => (0..3).collect(),
                    _ => (0..3).rev().collect(),
                };
                for i in order {
                    let (port, request) = &targets[i];
                    results[i].push(load::run_request(*port, request, conns, duration).await);
                }
            }
            let [ours, anchor, health] = results.map(|r| crate::readiness::average(&r));
            crate::progress(&format!(
                "  {conns:>4} connections, {endpoint:<20} {:>8.0}/s (p99 {:.1} ms, {} errors)  anchor {:>8.0}/s  /health {:>8.0}/s",
                ours.per_sec, ours.latency.p99_ms, ours.errors, anchor.per_sec, health.per_sec
            ));
            points.push(AppPoint {
                connections: conns,
                endpoint,
                ours,
                anchor,
                health,
            });
        }
    }
    Ok(points)
}
