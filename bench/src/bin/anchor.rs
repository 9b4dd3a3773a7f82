//! The naive anchor: what a newcomer writes with Rocket and a plain sqlx pool on its
//! defaults, as Rocket's guide does (a pooled connection per request). `/health`
//! answers without the database; `/health/db` runs `SELECT 1`; `/notes` is the notes
//! example (`server/examples/notes`) with the same SQL and the same JSON, without its
//! checks. The bench runs it beside the server so that every comparison is made in one
//! run.
//!
//! `DATABASE_URL` chooses the engine (`sqlite://…` or `postgres://…`); `ROCKET_PORT`
//! the port.

use rocket::http::Status;
use rocket::response::status::Created;
use rocket::serde::json::Json;
use rocket::{State, get, post, routes};
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

/// Runs `$body` with `$p` bound to the pool, whichever engine it is.
macro_rules! on_pool {
    ($pool:expr, |$p:ident| $body:expr) => {
        match $pool {
            Pool::Sqlite($p) => $body,
            Pool::Postgres($p) => $body,
        }
    };
}

#[derive(serde::Serialize, sqlx::FromRow)]
struct Note {
    id: i64,
    title: String,
    body: String,
}

#[derive(serde::Serialize)]
struct NoteWithTags {
    #[serde(flatten)]
    note: Note,
    tags: Vec<String>,
}

#[derive(serde::Serialize)]
struct NotePage {
    items: Vec<Note>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_after: Option<i64>,
}

#[derive(serde::Deserialize)]
struct NewNote {
    title: String,
    body: String,
    #[serde(default)]
    tags: Vec<String>,
}

fn failed(e: sqlx::Error) -> Status {
    match e {
        sqlx::Error::Database(db) if db.is_unique_violation() => Status::Conflict,
        sqlx::Error::PoolTimedOut => Status::ServiceUnavailable,
        _ => Status::InternalServerError,
    }
}

#[get("/notes/<id>")]
async fn get_note(pool: &State<Pool>, id: i64) -> Result<Json<NoteWithTags>, Status> {
    on_pool!(pool.inner(), |p| {
        let mut conn = p.acquire().await.map_err(failed)?;
        let note: Note = sqlx::query_as("SELECT id, title, body FROM notes WHERE id = $1")
            .bind(id)
            .fetch_optional(&mut *conn)
            .await
            .map_err(failed)?
            .ok_or(Status::NotFound)?;
        let tags: Vec<(String,)> =
            sqlx::query_as("SELECT tag FROM note_tags WHERE note_id = $1 ORDER BY tag")
                .bind(id)
                .fetch_all(&mut *conn)
                .await
                .map_err(failed)?;
        let tags = tags.into_iter().map(|(t,)| t).collect();
        Ok(Json(NoteWithTags { note, tags }))
    })
}

#[get("/notes?<after>&<limit>")]
async fn list_notes(
    pool: &State<Pool>,
    after: Option<i64>,
    limit: Option<i64>,
) -> Result<Json<NotePage>, Status> {
    let limit = limit.unwrap_or(20);
    on_pool!(pool.inner(), |p| {
        let mut conn = p.acquire().await.map_err(failed)?;
        let items: Vec<Note> =
            sqlx::query_as("SELECT id, title, body FROM notes WHERE id > $1 ORDER BY id LIMIT $2")
                .bind(after.unwrap_or(i64::MIN))
                .bind(limit)
                .fetch_all(&mut *conn)
                .await
                .map_err(failed)?;
        let next_after = (items.len() as i64 == limit)
            .then(|| items.last().map(|n| n.id))
            .flatten();
        Ok(Json(NotePage { items, next_after }))
    })
}

#[post("/notes", data = "<new>")]
async fn create_note(
    pool: &State<Pool>,
    new: Json<NewNote>,
) -> Result<Created<Json<NoteWithTags>>, Status> {
    let NewNote { title, body, tags } = new.into_inner();
    on_pool!(pool.inner(), |p| {
        let mut tx = p.begin().await.map_err(failed)?;
        let note: Note = sqlx::query_as(
            "INSERT INTO notes (title, body) VALUES ($1, $2) RETURNING id, title, body",
        )
        .bind(&title)
        .bind(&body)
        .fetch_one(&mut *tx)
        .await
        .map_err(failed)?;
        for tag in &tags {
            sqlx::query("INSERT INTO note_tags (note_id, tag) VALUES ($1, $2)")
                .bind(note.id)
                .bind(tag)
                .execute(&mut *tx)
                .await
                .map_err(failed)?;
        }
        tx.commit().await.map_err(failed)?;
        let location = format!("/notes/{}", note.id);
        Ok(Created::new(location).body(Json(NoteWithTags { note, tags })))
    })
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
    // The notes example's schema, once (a second start finds it there).
    let schema = match &pool {
        Pool::Sqlite(p) => sqlx::raw_sql(include_str!(
            "../../../server/examples/notes/migrations/V1__create_notes.sqlite.sql"
        ))
        .execute(p)
        .await
        .map(drop),
        Pool::Postgres(p) => sqlx::raw_sql(include_str!(
            "../../../server/examples/notes/migrations/V1__create_notes.postgres.sql"
        ))
        .execute(p)
        .await
        .map(drop),
    };
    drop(schema);
    rocket::build().manage(pool).mount(
        "/",
        routes![health, health_db, get_note, list_notes, create_note],
    )
}
