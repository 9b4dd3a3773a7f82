//! One query for both engines: written once, with `$1, $2, …` placeholders (both SQLite
//! and PostgreSQL accept them), typed parameters and typed rows (`sqlx::FromRow`).
//!
//! ```no_run
//! # async fn example(conn: &mut server::db::DbConn) -> Result<(), sqlx::Error> {
//! #[derive(sqlx::FromRow)]
//! struct Note { id: i64, title: String }
//!
//! let mut tx = conn.begin_write().await?;
//! let note: Note = server::db::query("INSERT INTO notes (title) VALUES ($1) RETURNING id, title")
//!     .bind("groceries")
//!     .fetch_one(&mut tx)
//!     .await?;
//! tx.commit().await?;
//! # Ok(()) }
//! ```
//!
//! The SQL is a `&'static str`: values only ever travel as parameters, never spliced into
//! the text. Each engine prepares the statement once per connection and caches it.

use sqlx::postgres::{PgArguments, PgConnection, PgRow, Postgres};
use sqlx::sqlite::{Sqlite, SqliteArguments, SqliteConnection, SqliteRow};
use sqlx::{Arguments, Encode, FromRow, Type};

use super::{DbConn, DbTx};

/// A value that binds as a parameter on both engines: `i64`, `i32`, `f64`, `bool`,
/// `String`, `&str`, `Vec<u8>`, `Option` of these, and any type that implements sqlx's
/// `Encode` and `Type` for SQLite and PostgreSQL.
pub trait Param: Send + Sync {
    /// Appends the value to SQLite arguments.
    fn add_to_sqlite(&self, args: &mut SqliteArguments) -> Result<(), sqlx::error::BoxDynError>;
    /// Appends the value to PostgreSQL arguments.
    fn add_to_pg(&self, args: &mut PgArguments) -> Result<(), sqlx::error::BoxDynError>;
}

impl<T> Param for T
where
    T: for<'e> Encode<'e, Sqlite> + Type<Sqlite> + for<'e> Encode<'e, Postgres> + Type<Postgres>,
    T: Send + Sync,
{
    fn add_to_sqlite(&self, args: &mut SqliteArguments) -> Result<(), sqlx::error::BoxDynError> {
        args.add(self)
    }

    fn add_to_pg(&self, args: &mut PgArguments) -> Result<(), sqlx::error::BoxDynError> {
        args.add(self)
    }
}

/// A row type both engines can decode: derive `sqlx::FromRow` on a struct whose fields
/// are types both engines know (`i64`, `String`, `bool`, `Option<…>`, …).
pub trait Record:
    for<'r> FromRow<'r, SqliteRow> + for<'r> FromRow<'r, PgRow> + Send + Unpin
{
}

impl<T> Record for T where
    T: for<'r> FromRow<'r, SqliteRow> + for<'r> FromRow<'r, PgRow> + Send + Unpin
{
}

/// A connection or transaction a [`Query`] runs on, of either engine.
pub enum Target<'c> {
    /// SQLite.
    Sqlite(&'c mut SqliteConnection),
    /// PostgreSQL.
    Postgres(&'c mut PgConnection),
}

/// Something a query can run on: a pooled connection ([`DbConn`], and Rocket's
/// `Connection<Db>` guard) or a transaction ([`DbTx`]).
pub trait Executor {
    /// The underlying connection.
    fn target(&mut self) -> Target<'_>;
}

impl Executor for DbConn {
    fn target(&mut self) -> Target<'_> {
        match self {
            Self::Sqlite(c) => Target::Sqlite(c),
            Self::Postgres(c) => Target::Postgres(c),
        }
    }
}

impl Executor for DbTx<'_> {
    fn target(&mut self) -> Target<'_> {
        match self {
            Self::Sqlite(tx) => Target::Sqlite(tx),
            Self::Postgres(tx) => Target::Postgres(tx),
        }
    }
}

/// A statement and its parameters; run it with one of the `fetch_*` methods or
/// [`Query::execute`].
#[must_use = "a query does nothing until it is run"]
pub struct Query<'a> {
    sql: &'static str,
    params: Vec<Box<dyn Param + 'a>>,
}

/// Starts a query. Placeholders are `$1, $2, …`, in the order of the `bind` calls.
pub fn query(sql: &'static str) -> Query<'static> {
    Query {
        sql,
        params: Vec::new(),
    }
}

impl<'a> Query<'a> {
    /// Binds the next parameter.
    pub fn bind<'b, T: Param + 'b>(self, value: T) -> Query<'b>
    where
        'a: 'b,
    {
        let mut params: Vec<Box<dyn Param + 'b>> = self.params;
        params.push(Box::new(value));
        Query {
            sql: self.sql,
            params,
        }
    }

    fn sqlite_args(&self) -> Result<SqliteArguments, sqlx::Error> {
        let mut args = SqliteArguments::default();
        for param in &self.params {
            param
                .add_to_sqlite(&mut args)
                .map_err(sqlx::Error::Encode)?;
        }
        Ok(args)
    }

    fn pg_args(&self) -> Result<PgArguments, sqlx::Error> {
        let mut args = PgArguments::default();
        for param in &self.params {
            param.add_to_pg(&mut args).map_err(sqlx::Error::Encode)?;
        }
        Ok(args)
    }

    /// Runs the statement; returns the number of rows it changed.
    pub async fn execute(self, on: &mut impl Executor) -> Result<u64, sqlx::Error> {
        match on.target() {
            Target::Sqlite(c) => Ok(sqlx::query_with(self.sql, self.sqlite_args()?)
                .execute(c)
                .await?
                .rows_affected()),
            Target::Postgres(c) => Ok(sqlx::query_with(self.sql, self.pg_args()?)
                .execute(c)
                .await?
                .rows_affected()),
        }
    }

    /// Exactly one row: `sqlx::Error::RowNotFound` when there is none.
    pub async fn fetch_one<T: Record>(self, on: &mut impl Executor) -> Result<T, sqlx::Error> {
        match on.target() {
            Target::Sqlite(c) => {
                sqlx::query_as_with(self.sql, self.sqlite_args()?)
                    .fetch_one(c)
                    .await
            }
            Target::Postgres(c) => {
                sqlx::query_as_with(self.sql, self.pg_args()?)
                    .fetch_one(c)
                    .await
            }
        }
    }

    /// At most one row.
    pub async fn fetch_optional<T: Record>(
        self,
        on: &mut impl Executor,
    ) -> Result<Option<T>, sqlx::Error> {
        match on.target() {
            Target::Sqlite(c) => {
                sqlx::query_as_with(self.sql, self.sqlite_args()?)
                    .fetch_optional(c)
                    .await
            }
            Target::Postgres(c) => {
                sqlx::query_as_with(self.sql, self.pg_args()?)
                    .fetch_optional(c)
                    .await
            }
        }
    }

    /// Every row.
    pub async fn fetch_all<T: Record>(self, on: &mut impl Executor) -> Result<Vec<T>, sqlx::Error> {
        match on.target() {
            Target::Sqlite(c) => {
                sqlx::query_as_with(self.sql, self.sqlite_args()?)
                    .fetch_all(c)
                    .await
            }
            Target::Postgres(c) => {
                sqlx::query_as_with(self.sql, self.pg_args()?)
                    .fetch_all(c)
                    .await
            }
        }
    }
}
