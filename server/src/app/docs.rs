//! The OpenAPI document (`/openapi.json`) and the interactive docs page (`/docs`), served from vendored assets.

use rocket::{Build, Rocket};
use utoipa::OpenApi;
use utoipa_swagger_ui::SwaggerUi;

use super::{metrics, routes};

#[derive(OpenApi)]
#[openapi(
    info(title = "server", description = "Health endpoints of the server."),
    paths(routes::live, routes::database, metrics::metrics),
    components(schemas(
        routes::Liveness,
        crate::health::DbHealth,
        crate::health::SchemaHealth,
        crate::db::PoolStats,
        crate::health::Status,
        crate::backup::BackupHealth,
        super::ErrorBody
    ))
)]
struct ApiDoc;

/// The OpenAPI document of the health routes and the error body; an app adds its own
/// paths to it (`utoipa::openapi::OpenApi::merge`).
pub fn base_openapi() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// Mounts `/openapi.json` (serving `doc`) and the Swagger UI at `/docs`.
pub fn mount_docs(rocket: Rocket<Build>, doc: utoipa::openapi::OpenApi) -> Rocket<Build> {
    rocket.mount("/", SwaggerUi::new("/docs/<_..>").url("/openapi.json", doc))
}
