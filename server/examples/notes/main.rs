//! A minimal resource on the real pool and migrations: the pattern for endpoints that use
//! the database, on SQLite and PostgreSQL alike.
//!
//! ```sh
//! cargo run -p server --example notes                      # SQLite: notes.db beside Rocket.toml
//! DATABASE_URL=postgres://… cargo run -p server --example notes
//! ```
//!
//! `POST /notes`, `GET /notes/<id>`, `GET /notes?after=<id>&limit=<n>`; `/openapi.json`
//! and `/docs` list them. The example keeps its own database (`DATABASE_URL`, else
//! `sqlite://notes.db`) and its own migrations (`server/examples/notes/migrations/`), so
//! it never touches the app's. The README section "Adding an endpoint that uses the
//! database" is copied from the marked parts of this file, and a test keeps them equal.

use std::process::ExitCode;
use std::sync::LazyLock;

use server::prelude::*;

/// The example's migrations, embedded like the app's: `V1__create_notes` has a variant
/// per engine (each generates ids its own way) and one down script.
static MIGRATIONS: LazyLock<MigrationSet> = LazyLock::new(|| {
    MigrationSet::from_files(
        [
            (
                "V1__create_notes.sqlite.sql",
                include_str!("migrations/V1__create_notes.sqlite.sql"),
            ),
            (
                "V1__create_notes.postgres.sql",
                include_str!("migrations/V1__create_notes.postgres.sql"),
            ),
            (
                "V1__create_notes.down.sql",
                include_str!("migrations/V1__create_notes.down.sql"),
            ),
        ]
        .map(|(name, sql)| (name.to_string(), sql.to_string())),
    )
});

// ANCHOR: types
/// A stored note.
#[derive(Debug, Serialize, Record, ToSchema)]
struct Note {
    id: i64,
    title: String,
    body: String,
}

/// Body of `POST /notes`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct NewNote {
    title: String,
    body: String,
    /// Up to 10 tags of 1 to 30 characters.
    #[serde(default)]
    tags: Vec<String>,
}
// ANCHOR_END: types

/// A note with its tags.
#[derive(Debug, Serialize, ToSchema)]
struct NoteWithTags {
    #[serde(flatten)]
    note: Note,
    tags: Vec<String>,
}

#[derive(Debug, Record)]
struct Tag {
    tag: String,
}

/// One page of `GET /notes`.
#[derive(Debug, Serialize, ToSchema)]
struct NotePage {
    items: Vec<Note>,
    /// Pass as `after` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    next_after: Option<i64>,
}

// ANCHOR: read
/// One note by id.
#[utoipa::path(get, path = "/notes/{id}", tag = "notes",
    params(("id" = i64, Path, description = "The note's id")),
    responses(
        (status = 200, body = NoteWithTags),
        (status = 404, body = ErrorBody),
        (status = 422, description = "The id is not a 64-bit integer", body = ErrorBody),
        (status = 503, body = ErrorBody),
    ))]
#[get("/notes/<id>")]
async fn get_note(mut db: Connection<Db>, id: i64) -> ApiResult<Json<NoteWithTags>> {
    let note: Note = query("SELECT id, title, body FROM notes WHERE id = $1")
        .bind(id)
        .fetch_optional(&mut db)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("note {id} not found")))?;
    let tags: Vec<Tag> = query("SELECT tag FROM note_tags WHERE note_id = $1 ORDER BY tag")
        .bind(id)
        .fetch_all(&mut db)
        .await?;
    let tags = tags.into_iter().map(|t| t.tag).collect();
    Ok(Json(NoteWithTags { note, tags }))
}
// ANCHOR_END: read

// ANCHOR: write
/// Stores a note and its tags in one transaction: all of it, or nothing.
#[utoipa::path(post, path = "/notes", tag = "notes", request_body = NewNote,
    responses(
        (status = 201, body = NoteWithTags),
        (status = 400, description = "Not JSON", body = ErrorBody),
        (status = 409, description = "A note with this title exists", body = ErrorBody),
        (status = 413, description = "Body above Rocket's `limits.json` (1 MiB)", body = ErrorBody),
        (status = 415, description = "Content-Type is not JSON", body = ErrorBody),
        (status = 422, description = "Missing or invalid fields", body = ErrorBody),
        (status = 503, body = ErrorBody),
    ))]
#[post("/notes", data = "<new>")]
async fn create_note(
    db: &State<Db>,
    new: Result<JsonBody<NewNote>, ApiError>,
) -> ApiResult<Created<Json<NoteWithTags>>> {
    // The body is read and checked before a connection is taken: a slow upload never
    // holds one of the pool's connections (a `Connection<Db>` guard would).
    let JsonBody(NewNote { title, body, tags }) = new?;
    let title = title.trim().to_string();
    if title.is_empty() || title.chars().count() > 200 {
        return Err(ApiError::invalid("title must have 1 to 200 characters"));
    }
    if tags.len() > 10 {
        return Err(ApiError::invalid("at most 10 tags"));
    }
    // Tags are trimmed like titles; the database's CHECK keeps their length.
    let mut tags: Vec<String> = tags.iter().map(|t| t.trim().to_string()).collect();
    if tags.iter().any(|t| t.is_empty() || t.chars().count() > 30) {
        return Err(ApiError::invalid("each tag must have 1 to 30 characters"));
    }
    // The engines disagree on NUL characters: PostgreSQL refuses them, SQLite stores
    // them (and its length() stops at them). Refuse them on both.
    if [&title, &body]
        .into_iter()
        .chain(&tags)
        .any(|s| s.contains('\0'))
    {
        return Err(ApiError::invalid("text must not contain NUL characters"));
    }
    tags.sort();
    tags.dedup();
    // Dropped without commit (an error, a panic): everything below is rolled back.
    let mut tx = db.begin_write().await?;
    // The engine picks the id (SQLite's rowid, PostgreSQL's identity): no round trip
    // for it, no row that every insert must lock.
    let note: Note =
        query("INSERT INTO notes (title, body) VALUES ($1, $2) RETURNING id, title, body")
            .bind(&title)
            .bind(&body)
            .fetch_one(&mut tx)
            .await?;
    let id = note.id;
    for tag in &tags {
        // A tag the CHECK constraint refuses fails here, after the note was inserted:
        // 422, and the note is not stored.
        query("INSERT INTO note_tags (note_id, tag) VALUES ($1, $2)")
            .bind(id)
            .bind(tag)
            .execute(&mut tx)
            .await?;
    }
    tx.commit().await?;
    let location = format!("/notes/{id}");
    Ok(Created::new(location).body(Json(NoteWithTags { note, tags })))
}
// ANCHOR_END: write

/// Notes by id, a page at a time.
#[utoipa::path(get, path = "/notes", tag = "notes",
    params(
        ("after" = Option<i64>, Query, description = "Only notes with a larger id (the previous page's `next_after`)"),
        ("limit" = Option<u32>, Query, description = "Page size, 1 to 100 (default 20)"),
    ),
    responses(
        (status = 200, body = NotePage),
        (status = 422, body = ErrorBody),
        (status = 503, body = ErrorBody),
    ))]
#[get("/notes?<after>&<limit>")]
async fn list_notes(
    mut db: Connection<Db>,
    uri: &Origin<'_>,
    after: Vec<&str>,
    limit: Vec<&str>,
) -> ApiResult<Json<NotePage>> {
    // A misspelt parameter (`limt=5`) is a mistake, not silently the default.
    if let Some(unknown) = uri
        .query()
        .into_iter()
        .flat_map(|q| q.segments())
        .map(|(name, _)| name)
        .find(|name| !["after", "limit"].contains(name))
    {
        return Err(ApiError::invalid(format!(
            "unknown query parameter `{unknown}`; expected after and limit"
        )));
    }
    // Taken as text, every occurrence: Rocket's `Option<u32>` would quietly read
    // `limit=abc` as absent, and a repeated parameter would be half ignored.
    let after = match once(&after, "after")?.map(str::parse::<i64>).transpose() {
        Ok(after) => after,
        Err(_) => return Err(ApiError::invalid("after must be a note id")),
    };
    let limit = match once(&limit, "limit")?.map_or(Ok(20), str::parse::<u32>) {
        Ok(limit @ 1..=100) => limit,
        _ => return Err(ApiError::invalid("limit must be a number from 1 to 100")),
    };
    let items: Vec<Note> =
        query("SELECT id, title, body FROM notes WHERE id > $1 ORDER BY id LIMIT $2")
            .bind(after.unwrap_or(i64::MIN))
            .bind(i64::from(limit))
            .fetch_all(&mut db)
            .await?;
    let next_after = (items.len() == limit as usize)
        .then(|| items.last().map(|n| n.id))
        .flatten();
    Ok(Json(NotePage { items, next_after }))
}

/// The one value of a query parameter given at most once.
fn once<'a>(values: &[&'a str], name: &str) -> ApiResult<Option<&'a str>> {
    match values {
        [] => Ok(None),
        [value] => Ok(Some(value)),
        _ => Err(ApiError::invalid(format!("{name} is given more than once"))),
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "notes example",
        description = "A resource on the real pool and migrations."
    ),
    paths(get_note, create_note, list_notes),
    components(schemas(Note, NewNote, NoteWithTags, NotePage))
)]
struct NotesDoc;

fn main() -> ExitCode {
    let env = Environment::from_process()
        .map(|env| env.with_default_var("DATABASE_URL", "sqlite://notes.db"));
    run(env, |config| {
        let mut doc = base_openapi();
        doc.merge(NotesDoc::openapi());
        // ANCHOR: mount
        let rocket =
            rocket_with(config, &MIGRATIONS).mount("/", routes![get_note, create_note, list_notes]);
        // ANCHOR_END: mount
        mount_docs(rocket, doc)
    })
}
