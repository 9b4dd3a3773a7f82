//! The OpenAPI document (`/openapi.json`) and the interactive docs page (`/docs`), served from vendored assets.

use rocket::fairing::AdHoc;
use utoipa::OpenApi;
use utoipa_swagger_ui::SwaggerUi;

use super::routes;

#[derive(OpenApi)]
#[openapi(
    info(title = "server", description = "Health endpoints of the server."),
    paths(routes::live, routes::database),
    components(schemas(
        routes::Liveness,
        crate::health::DbHealth,
        crate::health::SchemaHealth,
        crate::db::PoolStats,
        crate::health::Status
    ))
)]
struct ApiDoc;

/// Mounts `/openapi.json` and `/docs`.
pub fn stage() -> AdHoc {
    AdHoc::on_ignite("OpenAPI docs", |rocket| async {
        rocket.mount(
            "/",
            SwaggerUi::new("/docs/<_..>").url("/openapi.json", ApiDoc::openapi()),
        )
    })
}
