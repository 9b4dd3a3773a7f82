//! The naive anchor: what a newcomer writes with Rocket and a plain sqlx pool on its
//! defaults. `/health` answers without the database; `/health/db` runs `SELECT 1`.
//! The bench runs it beside the server so that every comparison is made in one run.
//!
//! `DATABASE_URL` chooses the engine (`sqlite://…` or `postgres://…`); `ROCKET_PORT`
//! the port.

use rocket::http::Status;
use rocket::{State, get, routes};
use sqlx::{PgPool, SqlitePool};

enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

#[get("/health")]
fn health() -> &'static str {
    "ok"
}

#[get("/health/db")]
async fn health_db(pool: &State<Pool>) -> Status {
    let result = match pool.inner() {
        Pool::Sqlite(p) => sqlx::query("SELECT 1").execute(p).await.map(drop),
        Pool::Postgres(p) => sqlx::query("SELECT 1").execute(p).await.map(drop),
    };
    match result {
        Ok(()) => Status::Ok,
        Err(_) => Status::ServiceUnavailable,
    }
}

#[rocket::launch]
async fn rocket() -> _ {
    let url = std::env::var("DATABASE_URL").unwrap_or_else(|_| "sqlite://anchor.db".into());
    let pool = if url.starts_with("postgres") {
        Pool::Postgres(PgPool::connect(&url).await.expect("connect to PostgreSQL"))
    } else {
        let options: sqlx::sqlite::SqliteConnectOptions = url.parse().expect("a sqlite:// URL");
        Pool::Sqlite(
            SqlitePool::connect_with(options.create_if_missing(true))
                .await
                .expect("open SQLite"),
        )
    };
    rocket::build()
        .manage(pool)
        .mount("/", routes![health, health_db])
}
