//! `/health/db` against `/health` on the same running server, interleaved, so that the
//! ratio holds however busy the machine is. SQLite always; PostgreSQL when reachable.

use std::time::{Duration, Instant};

use tests::{PgDatabase, Project, Server};

const ROUNDS: usize = 2_000;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn measure(label: &str, server: &Server) {
    for _ in 0..200 {
        server.get("/health");
        server.get("/health/db");
    }
    let (mut live, mut ready) = (Vec::with_capacity(ROUNDS), Vec::with_capacity(ROUNDS));
    for _ in 0..ROUNDS {
        let t = Instant::now();
        assert_eq!(server.get("/health").status, 200);
        live.push(t.elapsed());
        let t = Instant::now();
        assert_eq!(server.get("/health/db").status, 200);
        ready.push(t.elapsed());
    }
    live.sort();
    ready.sort();
    for p in [0.5, 0.99] {
        let (l, r) = (percentile(&live, p), percentile(&ready, p));
        println!(
            "{label:<9} p{:<2} /health {:>9.1?}  /health/db {:>9.1?}  ratio {:.2}",
            (p * 100.0) as u32,
            l,
            r,
            r.as_secs_f64() / l.as_secs_f64()
        );
    }
}

fn main() {
    let project = Project::sqlite();
    let server = Server::start(&project, &[("ROCKET_LOG_LEVEL", "off")]);
    measure("sqlite", &server);
    drop(server);
    if let Some(pg) = PgDatabase::create() {
        let server = Server::start(
            &project,
            &[("ROCKET_LOG_LEVEL", "off"), ("DATABASE_URL", &pg.url)],
        );
        measure("postgres", &server);
    }
}
