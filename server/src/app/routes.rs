//! Health routes: `/health` (liveness) and `/health/db` (readiness).

use std::sync::Arc;

use rocket::fairing::AdHoc;
use rocket::http::{Header, Status};
use rocket::serde::json::Json;
use rocket::{State, get, routes};
use serde::Serialize;
use utoipa::ToSchema;

use super::{Backups, Db, Migrations};
use crate::config::DbSettings;
use crate::health::{self, DbHealth};

/// Body of `/health`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Liveness {
    /// Always `pass` while the process serves requests.
    #[schema(example = "pass")]
    pub status: health::Status,
}

/// A JSON answer that must never be cached.
#[derive(rocket::Responder)]
pub struct NoStore<T> {
    body: (Status, Json<T>),
    cache_control: Header<'static>,
}

impl<T> NoStore<T> {
    fn new(status: Status, body: T) -> Self {
        Self {
            body: (status, Json(body)),
            cache_control: Header::new("Cache-Control", "no-store"),
        }
    }
}

/// Liveness: the process answers. No database access.
#[utoipa::path(
    get,
    path = "/health",
    tag = "health",
    responses((status = 200, description = "The server is running", body = Liveness))
)]
#[get("/health")]
pub fn live() -> NoStore<Liveness> {
    NoStore::new(
        Status::Ok,
        Liveness {
            status: health::Status::Pass,
        },
    )
}

/// Readiness: a real round trip to the database, bounded in time, and the schema version.
#[utoipa::path(
    get,
    path = "/health/db",
    tag = "health",
    responses(
        (status = 200, description = "The database answers and its schema matches this binary (`pass`), or it answers but something degrades it (`warn`: little free disk space, the last scheduled backup failed or is older than twice its interval)", body = DbHealth),
        (status = 503, description = "The database is down, locked, exhausted, unreadable, its disk is full, or its schema does not match", body = DbHealth)
    )
)]
#[get("/health/db")]
pub async fn database(
    db: &State<Db>,
    migrations: &State<Migrations>,
    settings: &State<DbSettings>,
    backups: &State<Backups>,
    shared: &State<Arc<health::Coalesced>>,
) -> NoStore<DbHealth> {
    let report = health::ready(shared, db, &migrations.0, settings, backups.0.as_ref()).await;
    let label = match report.status {
        health::Status::Pass => "pass",
        health::Status::Warn => "warn",
        health::Status::Fail => "fail",
    };
    db.metrics().readiness(
        label,
        report.reason,
        report.schema.as_ref().map(|s| s.applied_version),
    );
    let status = match report.status {
        health::Status::Pass | health::Status::Warn => Status::Ok,
        health::Status::Fail => Status::ServiceUnavailable,
    };
    NoStore::new(status, report)
}

/// Mounts the health routes.
pub fn stage() -> AdHoc {
    AdHoc::on_ignite("Health routes", |rocket| async {
        rocket
            .manage(Arc::new(health::Coalesced::default()))
            .mount("/", routes![live, database, super::metrics::metrics])
    })
}
