//! `GET /metrics`: the pool, readiness, schema and backup series in the Prometheus text
//! format (OpenMetrics), from what is already measured: scraping runs no query.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use rocket::http::{ContentType, Status};
use rocket::{State, get};

use super::{Backups, Db, Migrations};

/// The media type of the OpenMetrics text format, which Prometheus scrapes.
const OPENMETRICS: (&str, &str) = ("application", "openmetrics-text");

/// A label naming one of several values of a gauge.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Which {
    which: &'static str,
}

/// The metrics, in the Prometheus text format.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "health",
    responses((status = 200, description = "Prometheus (OpenMetrics) text: db_pool_connections, db_pool_acquire_seconds, db_pool_acquire_timeouts_total, db_errors_total, db_write_queue, db_readiness_checks_total, db_schema_version, db_backup_last_success_age_seconds", content_type = "application/openmetrics-text", body = String))
)]
#[get("/metrics")]
pub fn metrics(
    db: &State<Db>,
    migrations: &State<Migrations>,
    backups: &State<Backups>,
) -> (Status, (ContentType, String)) {
    let mut registry = Registry::default();
    let pool = db.metrics();
    pool.register(&mut registry);
    let stats = db.stats();
    let connections = Family::<Which, Gauge>::default();
    for (which, value) in [
        ("open", stats.size),
        ("idle", stats.idle),
        ("in_use", stats.size.saturating_sub(stats.idle)),
        ("max", stats.max),
    ] {
        connections
            .get_or_create(&Which { which })
            .set(i64::from(value));
    }
    registry.register(
        "db_pool_connections",
        "Database connections: open, idle, in use, and the pool's maximum",
        connections,
    );
    let schema = Family::<Which, Gauge>::default();
    schema
        .get_or_create(&Which { which: "embedded" })
        .set(i64::from(migrations.0.latest()));
    if let Some(applied) = pool.schema_applied() {
        schema
            .get_or_create(&Which { which: "applied" })
            .set(applied);
    }
    registry.register(
        "db_schema_version",
        "Migration version: embedded in this binary, and applied as the last readiness check read it",
        schema,
    );
    // Scheduled backups: the age of the last good one, or, before any succeeded, the
    // time since the server started (what `/health/db` warns about).
    if let Some(age) = backups.0.as_ref().map(|schedule| {
        schedule
            .health()
            .0
            .last_success_age_secs
            .unwrap_or_else(|| schedule.running_secs())
    }) {
        let gauge = Gauge::<i64>::default();
        gauge.set(i64::try_from(age).unwrap_or(i64::MAX));
        registry.register(
            "db_backup_last_success_age_seconds",
            "Seconds since the last good scheduled backup (since the server started, before one succeeded)",
            gauge,
        );
    }
    let mut text = String::new();
    match prometheus_client::encoding::text::encode(&mut text, &registry) {
        Ok(()) => (
            Status::Ok,
            (
                ContentType::new(OPENMETRICS.0, OPENMETRICS.1)
                    .with_params([("version", "1.0.0"), ("charset", "utf-8")]),
                text,
            ),
        ),
        Err(_) => (
            Status::InternalServerError,
            (ContentType::Plain, "cannot encode the metrics\n".into()),
        ),
    }
}
