//! Errors of routes that use the database: a status a client can act on, a JSON body
//! that never holds SQL, a path or a credential, and the cause in the server's log.
//!
//! | what happened | status |
//! |---|---|
//! | no row (`RowNotFound`, [`ApiError::not_found`]) | 404 |
//! | a unique constraint | 409 |
//! | a foreign-key, not-null or check constraint; a value the engine cannot store (PostgreSQL data exceptions); [`ApiError::invalid`] | 422 |
//! | the pool is exhausted or closed, the database is unreachable, locked, busy, out of disk, corrupt, its schema is not this server's, or a timeout expired | 503, `Retry-After: 1` |
//! | anything else | 500 |

use std::io::Cursor;

use rocket::data::{self, Data, FromData};
use rocket::http::{ContentType, Header, Status};
use rocket::response::{self, Responder, Response};
use rocket::serde::json::{self, Json};
use rocket::{Catcher, Request, catch, catchers};
use serde::{Deserialize, Serialize};
use sqlx::error::ErrorKind;
use utoipa::ToSchema;

use super::Db;

/// What a handler that uses the database returns.
pub type ApiResult<T> = Result<T, ApiError>;

/// Body of every error answer.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ErrorBody {
    /// What went wrong, for a person; never SQL, a path or a credential.
    #[schema(example = "not found")]
    pub error: String,
}

/// An error answer; build one with `?` on a `sqlx::Error` or with the constructors.
#[derive(Debug)]
pub struct ApiError {
    status: Status,
    message: String,
    cause: Option<sqlx::Error>,
}

impl ApiError {
    /// 404 with `message` (e.g. "note 7 not found").
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(Status::NotFound, message)
    }

    /// 422: the request is well-formed but its values are not acceptable.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(Status::UnprocessableEntity, message)
    }

    fn new(status: Status, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            cause: None,
        }
    }

    /// The HTTP status this error answers with.
    pub fn status(&self) -> Status {
        self.status
    }
}

/// A JSON request body. Take it as `Result<JsonBody<T>, ApiError>` and use `?`: 415
/// unless the `Content-Type` is JSON, 400 when the body is not JSON, 413 above Rocket's
/// `limits.json`, 422 when the fields or types are wrong. Rocket logs a failed data guard
/// with the whole body; taken as a `Result`, nothing of the body reaches the log.
#[derive(Debug)]
pub struct JsonBody<T>(pub T);

#[rocket::async_trait]
impl<'r, T: Deserialize<'r>> FromData<'r> for JsonBody<T> {
    type Error = ApiError;

    async fn from_data(request: &'r Request<'_>, data: Data<'r>) -> data::Outcome<'r, Self> {
        // JSON is UTF-8 (RFC 8259): a declared charset of anything else is not JSON.
        let json = request.content_type().is_some_and(|ct| {
            ct.is_json()
                && ct
                    .param("charset")
                    .is_none_or(|charset| charset.eq_ignore_ascii_case("utf-8"))
        });
        if !json {
            let error = ApiError::new(
                Status::UnsupportedMediaType,
                "the request body must be JSON (Content-Type: application/json)",
            );
            return data::Outcome::Error((error.status, error));
        }
        match <Json<T> as FromData<'r>>::from_data(request, data).await {
            data::Outcome::Success(body) => data::Outcome::Success(Self(body.into_inner())),
            data::Outcome::Error((_, e)) => {
                let error = body_error(&e);
                data::Outcome::Error((error.status, error))
            }
            data::Outcome::Forward(forward) => data::Outcome::Forward(forward),
        }
    }
}

/// What is wrong with a JSON body, as a status and a message that never quotes it.
fn body_error(error: &json::Error<'_>) -> ApiError {
    match error {
        json::Error::Io(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            ApiError::new(Status::PayloadTooLarge, "the request body is too large")
        }
        json::Error::Parse(_, e) if e.classify() == serde_json::error::Category::Data => {
            ApiError::invalid(format!(
                "the request body does not have the expected fields and types ({})",
                // serde's message names the field and the type, never the input.
                e.to_string().split(" at line ").next().unwrap_or_default()
            ))
        }
        _ => ApiError::new(Status::BadRequest, "the request body is not valid JSON"),
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(error: sqlx::Error) -> Self {
        let (status, message) = classify(&error);
        Self {
            status,
            message: message.into(),
            cause: Some(error),
        }
    }
}

impl From<crate::db::DbError> for ApiError {
    /// Acquiring a connection failed: the database is unavailable.
    fn from(error: crate::db::DbError) -> Self {
        match error {
            crate::db::DbError::Driver(e) => e.into(),
            _ => Self::new(Status::ServiceUnavailable, "the database is unavailable"),
        }
    }
}

/// The status and public message for a driver error.
fn classify(error: &sqlx::Error) -> (Status, &'static str) {
    let (status, message, _) = class_of(error);
    (status, message)
}

/// The status, public message and metrics class (`db_errors{class}`) of a driver error.
pub(crate) fn class_of(error: &sqlx::Error) -> (Status, &'static str, &'static str) {
    const BUSY: (Status, &str, &str) = (
        Status::ServiceUnavailable,
        "the database is busy; retry shortly",
        "busy",
    );
    const SCHEMA: (Status, &str, &str) = (
        Status::ServiceUnavailable,
        "the database schema does not match this server",
        "schema",
    );
    const UNAVAILABLE: (Status, &str, &str) = (
        Status::ServiceUnavailable,
        "the database is unavailable",
        "unavailable",
    );
    const INVALID: &str = "invalid";
    match error {
        sqlx::Error::RowNotFound => (Status::NotFound, "not found", "not_found"),
        sqlx::Error::PoolTimedOut => BUSY,
        sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::WorkerCrashed => UNAVAILABLE,
        sqlx::Error::Database(db) => match db.kind() {
            ErrorKind::UniqueViolation => (
                Status::Conflict,
                "conflicts with an existing record",
                "conflict",
            ),
            ErrorKind::ForeignKeyViolation => (
                Status::UnprocessableEntity,
                "refers to a record that does not exist, or is still referred to",
                INVALID,
            ),
            ErrorKind::NotNullViolation => (
                Status::UnprocessableEntity,
                "a required value is missing",
                INVALID,
            ),
            ErrorKind::CheckViolation => (
                Status::UnprocessableEntity,
                "a value is outside what is allowed",
                INVALID,
            ),
            _ => match db.code().as_deref() {
                // SQLite BUSY/LOCKED and their extended codes; PostgreSQL lock timeout,
                // statement timeout, serialization failure, deadlock.
                Some("5" | "6" | "261" | "262" | "517" | "55P03" | "57014" | "40001" | "40P01") => {
                    BUSY
                }
                // PostgreSQL data exceptions: a NUL character, a number out of range, a
                // string too long for its column.
                Some(code) if code.starts_with("22") => (
                    Status::UnprocessableEntity,
                    "a value cannot be stored as given",
                    INVALID,
                ),
                // A read-only database: a PostgreSQL standby (read_only_sql_transaction,
                // or a hot standby cancelling for recovery), SQLite read-only file or
                // media (SQLITE_READONLY and its extended codes).
                Some("25006" | "8" | "264" | "520" | "776" | "1032" | "1288" | "1544") => (
                    Status::ServiceUnavailable,
                    "the database accepts no writes (read-only)",
                    "read_only",
                ),
                // The schema is not the one this server was built for (a file replaced
                // by an empty database, a table dropped): what `/health/db` reports too.
                Some("42P01" | "42703") => SCHEMA,
                // Refused at connection time: the database is gone or not accepting
                // connections, the credentials were rotated.
                Some("3D000" | "28000" | "28P01" | "57P01" | "57P02" | "57P03") => UNAVAILABLE,
                Some("1")
                    if db.message().starts_with("no such table")
                        || db.message().starts_with("no such column") =>
                {
                    SCHEMA
                }
                _ if crate::db::classify_incident(error).is_some() => UNAVAILABLE,
                _ => (Status::InternalServerError, "internal error", "internal"),
            },
        },
        _ => (Status::InternalServerError, "internal error", "internal"),
    }
}

impl<'r> Responder<'r, 'static> for ApiError {
    fn respond_to(self, request: &'r Request<'_>) -> response::Result<'static> {
        if let Some(cause) = &self.cause {
            // Errors that mean the database fails also fail readiness for a while.
            if let Some(db) = request.rocket().state::<Db>() {
                db.note_error(cause);
                db.metrics().error(class_of(cause).2);
            }
            let text = crate::db::describe_driver_error(cause, None);
            if self.status.code >= 500 {
                rocket::error!("{} {}: {text}", request.method(), request.uri());
            } else {
                rocket::info!("{} {}: {text}", request.method(), request.uri());
            }
        }
        json_response(self.status, &self.message)
    }
}

fn json_response(status: Status, message: &str) -> response::Result<'static> {
    let body = serde_json::to_string(&ErrorBody {
        error: message.to_string(),
    })
    .map_err(|_| Status::InternalServerError)?;
    let mut response = Response::build();
    response
        .status(status)
        .header(ContentType::JSON)
        .header(Header::new("Cache-Control", "no-store"))
        .sized_body(body.len(), Cursor::new(body));
    if status == Status::ServiceUnavailable {
        response.header(Header::new("Retry-After", "1"));
    }
    Ok(response.finalize())
}

/// JSON answers (an [`ErrorBody`]) for requests no route handled: a malformed or
/// unacceptable body (400, 422), an unknown path (404), a failed guard such as an
/// unavailable database (503), a panicking handler (500).
pub fn json_catchers() -> Vec<Catcher> {
    catchers![default_catcher]
}

#[catch(default)]
fn default_catcher(status: Status, _request: &Request<'_>) -> JsonCaught {
    JsonCaught(status)
}

struct JsonCaught(Status);

impl<'r> Responder<'r, 'static> for JsonCaught {
    fn respond_to(self, _request: &'r Request<'_>) -> response::Result<'static> {
        let message = match self.0.code {
            400 => "the request body is not valid JSON or is missing",
            404 => "not found",
            413 => "the request body is too large",
            422 => "the request's path, query or body does not have the expected form",
            503 => "the database is unavailable",
            500 => "internal error",
            _ => self.0.reason_lossy(),
        };
        json_response(self.0, message)
    }
}
