//! `GET /metrics`, scraped from the real notes example and parsed with a Prometheus
//! text-format parser: what an operator's Prometheus reads.

use prometheus_parse::{Sample, Scrape, Value};
use tests::{Project, Server};

/// The samples of one scrape.
fn scrape(server: &Server) -> Vec<Sample> {
    let response = server.get("/metrics");
    assert_eq!(response.status, 200, "{}", response.body);
    assert!(
        response
            .header("content-type")
            .is_some_and(|t| t.starts_with("application/openmetrics-text")),
        "{:?}",
        response.header("content-type")
    );
    Scrape::parse(response.body.lines().map(|l| Ok(l.to_string())))
        .unwrap_or_else(|e| panic!("not Prometheus text: {e}\n{}", response.body))
        .samples
}

/// The value of the sample `name` whose labels include `labels`.
fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples
        .iter()
        .find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match &s.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
            Value::Histogram(buckets) => buckets.last().map_or(0.0, |b| b.count),
            Value::Summary(_) => f64::NAN,
        })
}

#[test]
fn metrics_carry_the_pool_errors_readiness_schema_and_backups_and_parse() {
    let project = Project::sqlite();
    let server = Server::start_with(
        project.command("notes"),
        &[
            ("DATABASE_URL", "sqlite://notes.db"),
            ("DATABASE_BACKUP_INTERVAL_SECS", "3600"),
        ],
    );
    for _ in 0..2 {
        let posted = server.post_json("/notes", r#"{"title": "same", "body": "b"}"#);
        assert!([201, 409].contains(&posted.status), "{}", posted.body);
    }
    assert_eq!(server.get("/health/db").status, 200);
    assert!(
        tests::poll_until(std::time::Duration::from_secs(20), || {
            server.get("/health/db").json()["backup"]["last_success_age_secs"].is_u64()
        }),
        "the first scheduled backup did not finish"
    );
    let samples = scrape(&server);
    let names: Vec<&str> = samples.iter().map(|s| s.metric.as_str()).collect();
    let has = |name: &str, labels: &[(&str, &str)]| {
        value(&samples, name, labels).unwrap_or_else(|| panic!("no {name} {labels:?} in {names:?}"))
    };
    assert!(has("db_pool_connections", &[("which", "max")]) >= 1.0);
    // The pool's connection (min_connections) and the writer the POSTs opened.
    assert!(has("db_pool_connections", &[("which", "open")]) >= 2.0);
    has("db_pool_connections", &[("which", "in_use")]);
    assert!(
        has("db_pool_acquire_seconds_count", &[]) >= 1.0,
        "{names:?}"
    );
    assert_eq!(has("db_pool_acquire_timeouts_total", &[]), 0.0);
    assert_eq!(has("db_errors_total", &[("class", "conflict")]), 1.0);
    assert_eq!(has("db_write_queue", &[]), 0.0);
    assert!(
        has(
            "db_readiness_checks_total",
            &[("status", "pass"), ("reason", "none")]
        ) >= 1.0
    );
    assert_eq!(has("db_schema_version", &[("which", "embedded")]), 1.0);
    assert_eq!(has("db_schema_version", &[("which", "applied")]), 1.0);
    assert!(has("db_backup_last_success_age_seconds", &[]) < 60.0);
    // A request whose `Connection<Db>` guard fails (the database file is gone) answers
    // 503 before its handler runs, and counts as an error of its class.
    for side in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(project.path().join(format!("notes.db{side}")));
    }
    assert_eq!(server.get("/notes/1").status, 503);
    let samples = scrape(&server);
    assert_eq!(
        value(&samples, "db_errors_total", &[("class", "unavailable")]),
        Some(1.0)
    );
    // Listed in the OpenAPI document.
    let doc = server.get("/openapi.json").json();
    assert!(doc["paths"]["/metrics"]["get"].is_object(), "{doc}");
}
