//! One query for both engines: written once, with `$1, $2, …` placeholders (both SQLite
//! and PostgreSQL accept them), typed parameters and typed rows (`#[derive(Record)]`).
//!
//! ```no_run
//! # async fn example(conn: &mut server::db::DbConn) -> Result<(), sqlx::Error> {
//! #[derive(server::db::Record)]
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
//! the text. Each engine prepares the statement once per connection and caches it. On
//! SQLite, a write transaction's statements and a request's reads run on the caller's
//! thread (see `db::direct` and `db::read`); everything else goes through sqlx.

use std::time::{Duration, Instant};

use sqlx::postgres::{PgArguments, PgConnection, PgRow, Postgres};
use sqlx::sqlite::{Sqlite, SqliteArguments, SqliteConnection, SqliteRow};
use sqlx::{Arguments, Encode, FromRow, Type};

use super::read::SqliteConn;
use super::{DbConn, DbTx, direct};

/// A value that binds as a parameter on both engines: `i64`, `i32`, `f64`, `bool`,
/// `String`, `&str`, `Vec<u8>`, `Option` of these, and any type that implements sqlx's
/// `Encode` and `Type` for SQLite and PostgreSQL and rusqlite's `ToSql`.
pub trait Param: Send + Sync {
    /// Appends the value to SQLite arguments.
    fn add_to_sqlite(&self, args: &mut SqliteArguments) -> Result<(), sqlx::error::BoxDynError>;
    /// Appends the value to PostgreSQL arguments.
    fn add_to_pg(&self, args: &mut PgArguments) -> Result<(), sqlx::error::BoxDynError>;
    /// The value for SQLite's rusqlite connections (see `db::direct`).
    fn as_sql(&self) -> &dyn rusqlite::ToSql;
}

impl<T> Param for T
where
    T: for<'e> Encode<'e, Sqlite> + Type<Sqlite> + for<'e> Encode<'e, Postgres> + Type<Postgres>,
    T: rusqlite::ToSql + Send + Sync,
{
    fn add_to_sqlite(&self, args: &mut SqliteArguments) -> Result<(), sqlx::error::BoxDynError> {
        args.add(self)
    }

    fn add_to_pg(&self, args: &mut PgArguments) -> Result<(), sqlx::error::BoxDynError> {
        args.add(self)
    }

    fn as_sql(&self) -> &dyn rusqlite::ToSql {
        self
    }
}

/// A row type both engines decode: `#[derive(Record)]` on a struct whose fields are
/// named as the columns and typed as both engines know (`i64`, `f64`, `bool`,
/// `String`, `Vec<u8>`, `Option` of these).
pub trait Record:
    for<'r> FromRow<'r, SqliteRow> + for<'r> FromRow<'r, PgRow> + Send + Unpin
{
    /// Decodes a row of SQLite's rusqlite connections (written by `#[derive(Record)]`).
    fn from_rusqlite_row(row: &rusqlite::Row<'_>) -> Result<Self, sqlx::Error>;
}

/// A connection or transaction a [`Query`] runs on, of either engine.
pub enum Target<'c> {
    /// SQLite.
    Sqlite(&'c mut SqliteConnection),
    /// PostgreSQL.
    Postgres(&'c mut PgConnection),
}

/// A connection of sqlx's: a pooled connection ([`DbConn`], and Rocket's
/// `Connection<Db>` guard) or a transaction on one ([`DbTx`]).
pub trait Executor {
    /// The underlying connection.
    fn target(&mut self) -> Target<'_>;
}

/// Something a [`Query`] runs on: a connection ([`DbConn`], and Rocket's
/// `Connection<Db>` guard), a transaction on one ([`DbTx`]), a write transaction
/// (`WriteTx`).
pub trait RunsQueries {
    /// Where the statement goes.
    fn runner(&mut self) -> Runner<'_>;
}

/// Where a [`Query`] runs: opaque outside `server::db`.
pub struct Runner<'c>(pub(super) Run<'c>);

pub(super) enum Run<'c> {
    /// A connection of sqlx's.
    Sqlx(Target<'c>),
    /// A request's SQLite connection: reads go to the pool's readers (see `db::read`)
    /// while it allows, the rest to the connection.
    Read(&'c mut SqliteConn),
    /// The SQLite writer's connection, whether its statements are logged, and how long
    /// a statement waits for an in-memory database's table locks (`busy_timeout_ms`).
    Writer(&'c rusqlite::Connection, bool, Duration),
}

impl RunsQueries for DbConn {
    fn runner(&mut self) -> Runner<'_> {
        Runner(match self {
            Self::Sqlite(c) => Run::Read(c),
            Self::Postgres(c) => Run::Sqlx(Target::Postgres(c)),
        })
    }
}

impl RunsQueries for DbTx<'_> {
    fn runner(&mut self) -> Runner<'_> {
        Runner(Run::Sqlx(self.target()))
    }
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

    fn writer_args(&self) -> Vec<&dyn rusqlite::ToSql> {
        self.params.iter().map(|p| p.as_sql()).collect()
    }

    /// Runs the statement; returns the number of rows it changed.
    pub async fn execute(self, on: &mut impl RunsQueries) -> Result<u64, sqlx::Error> {
        let target = match on.runner().0 {
            Run::Writer(c, echo, busy) => {
                direct::in_transaction(c)?;
                let args = self.writer_args();
                return locked_retried(busy, || direct::execute(c, self.sql, &args, echo));
            }
            Run::Read(c) => Target::Sqlite(c),
            Run::Sqlx(target) => target,
        };
        match target {
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
    pub async fn fetch_one<T: Record>(self, on: &mut impl RunsQueries) -> Result<T, sqlx::Error> {
        self.fetch_optional(on)
            .await?
            .ok_or(sqlx::Error::RowNotFound)
    }

    /// At most one row.
    pub async fn fetch_optional<T: Record>(
        self,
        on: &mut impl RunsQueries,
    ) -> Result<Option<T>, sqlx::Error> {
        Ok(self.rows(on, true).await?.pop())
    }

    /// Every row.
    pub async fn fetch_all<T: Record>(
        self,
        on: &mut impl RunsQueries,
    ) -> Result<Vec<T>, sqlx::Error> {
        self.rows(on, false).await
    }

    /// The first row (`one`) or every row.
    async fn rows<T: Record>(
        self,
        on: &mut impl RunsQueries,
        one: bool,
    ) -> Result<Vec<T>, sqlx::Error> {
        let limit = if one { 1 } else { usize::MAX };
        let target = match on.runner().0 {
            Run::Writer(c, echo, busy) => {
                direct::in_transaction(c)?;
                let args = self.writer_args();
                return locked_retried(busy, || {
                    direct::fetch(c, self.sql, &args, echo, limit, T::from_rusqlite_row)
                });
            }
            Run::Read(c) => {
                let args = self.writer_args();
                let read = c.readers().and_then(|readers| {
                    readers.fetch(self.sql, &args, limit, T::from_rusqlite_row)
                });
                if let Some(rows) = read {
                    return rows;
                }
                // On the connection itself (which pins the request's reads to it).
                Target::Sqlite(c)
            }
            Run::Sqlx(target) => target,
        };
        match (target, one) {
            (Target::Sqlite(c), true) => {
                let query = sqlx::query_as_with(self.sql, self.sqlite_args()?);
                Ok(query.fetch_optional(c).await?.into_iter().collect())
            }
            (Target::Sqlite(c), false) => {
                sqlx::query_as_with(self.sql, self.sqlite_args()?)
                    .fetch_all(c)
                    .await
            }
            (Target::Postgres(c), true) => {
                let query = sqlx::query_as_with(self.sql, self.pg_args()?);
                Ok(query.fetch_optional(c).await?.into_iter().collect())
            }
            (Target::Postgres(c), false) => {
                sqlx::query_as_with(self.sql, self.pg_args()?)
                    .fetch_all(c)
                    .await
            }
        }
    }
}

/// Runs `statement` on the writer again, a millisecond apart and for at most `busy`,
/// while an in-memory database's reader holds the table it needs (shared-cache table
/// locks, which SQLite's busy timeout does not cover); the failed attempts changed
/// nothing. The wait is on the caller's thread, as SQLite's busy handler would be: only
/// in-memory databases (tests, development) have such locks, held for one statement.
fn locked_retried<R>(
    busy: Duration,
    mut statement: impl FnMut() -> Result<R, sqlx::Error>,
) -> Result<R, sqlx::Error> {
    let started = Instant::now();
    loop {
        match statement() {
            Err(e) if direct::is_shared_cache_locked(&e) && started.elapsed() < busy => {
                std::thread::sleep(Duration::from_millis(1));
            }
            other => return other,
        }
    }
}
