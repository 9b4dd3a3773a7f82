//! SQLite reads of request handlers, on the caller's thread.
//!
//! A request's connection (`Connection<Db>`, [`super::DbPool::acquire_for_request`]) is a pooled
//! sqlx connection that also carries its pool's readers: rusqlite connections to the
//! same file. A query it fetches rows with, whose statement starts with `SELECT` or
//! `WITH` and that SQLite calls read-only, runs on one of those readers right where the
//! handler runs, as the writer's statements do (see [`super::direct`]), instead of a
//! round trip to sqlx's worker thread. Everything else (writes, `PRAGMA`, transaction
//! control, `execute`) runs on the sqlx connection, as does a read that finds the
//! database busy (it waits there, off the caller's thread, for `busy_timeout_ms`).
//! Each read is a statement of its own, in its own snapshot, as it was on the pooled
//! connection in autocommit; once anything ran on the sqlx connection itself (a write,
//! a `PRAGMA`, the connection used directly), the request's later reads run there too,
//! so they see what it did. Transactions are [`super::DbConn::begin_write`]'s and
//! [`super::DbPool::begin_write`]'s.

use std::ops::{Deref, DerefMut};
use std::sync::{Arc, Mutex};

use rusqlite::ToSql;
use sqlx::pool::PoolConnection;
use sqlx::sqlite::{Sqlite, SqliteConnection};

use super::direct::{self, DirectOptions};

/// A pooled SQLite connection; dereferences to sqlx's connection.
pub struct SqliteConn {
    conn: PoolConnection<Sqlite>,
    /// The pool's readers, on a request's connection.
    readers: Option<Arc<Readers>>,
    /// Something ran on the sqlx connection itself (a write, a statement that is not a
    /// `SELECT`, direct use of the connection): the request's reads stay on it too, so
    /// they see what it did (`last_insert_rowid()`, a temporary table, a `BEGIN`).
    pinned: bool,
}

impl SqliteConn {
    pub(super) fn new(conn: PoolConnection<Sqlite>, readers: Option<Arc<Readers>>) -> Self {
        Self {
            conn,
            readers,
            pinned: false,
        }
    }

    /// The pool's readers, while reads may run on them.
    pub(super) fn readers(&self) -> Option<&Readers> {
        self.readers.as_deref().filter(|_| !self.pinned)
    }
}

impl Deref for SqliteConn {
    type Target = SqliteConnection;

    fn deref(&self) -> &SqliteConnection {
        &self.conn
    }
}

/// Any statement run on the connection itself pins the request's reads to it.
impl DerefMut for SqliteConn {
    fn deref_mut(&mut self) -> &mut SqliteConnection {
        self.pinned = true;
        &mut self.conn
    }
}

/// The read connections of one file identity, opened as needed and kept idle up to a
/// few per core (reads on the caller's thread never outnumber the threads running them).
pub struct Readers {
    config: DirectOptions,
    /// `None` once closed.
    idle: Mutex<Option<Vec<rusqlite::Connection>>>,
    keep: usize,
    /// Whether the file at the path is still this generation's: checked before a reader
    /// opens it by its path, so a reader never opens a file that replaced it.
    same_file: Box<dyn Fn() -> bool + Send + Sync>,
}

impl Readers {
    pub(super) fn new(
        config: DirectOptions,
        max_connections: usize,
        same_file: Box<dyn Fn() -> bool + Send + Sync>,
    ) -> Self {
        let cores = std::thread::available_parallelism().map_or(2, usize::from);
        Self {
            config,
            idle: Mutex::new(Some(Vec::new())),
            keep: max_connections.min(2 * cores),
            same_file,
        }
    }

    /// At most `limit` rows of `sql`, decoded by `decode`, read on a reader; `None` when
    /// the statement is not a read, found the database busy, or no reader could be had
    /// (the pool closed, the file replaced): the caller runs it on its sqlx connection.
    pub(super) fn fetch<T>(
        &self,
        sql: &str,
        params: &[&dyn ToSql],
        limit: usize,
        decode: fn(&rusqlite::Row<'_>) -> Result<T, sqlx::Error>,
    ) -> Option<Result<Vec<T>, sqlx::Error>> {
        // An in-memory database's readers would meet the writer's shared-cache table
        // locks, which sqlx's connections wait out and these would not.
        if !is_select(sql) || self.config.memory {
            return None;
        }
        let taken = self.idle.lock().ok()?.as_mut()?.pop();
        let conn = match taken {
            Some(conn) => conn,
            // A reader that cannot open leaves the read to sqlx, which reports the problem.
            None if (self.same_file)() => self.config.open().ok()?,
            None => return None,
        };
        let rows = direct::read(&conn, sql, params, self.config.echo, limit, decode);
        if conn.is_autocommit()
            && let Ok(mut idle) = self.idle.lock()
            && let Some(idle) = idle.as_mut()
            && idle.len() < self.keep
        {
            idle.push(conn);
        }
        rows
    }

    /// Closes the idle readers; those in use close when they finish.
    pub(super) fn close(&self) {
        if let Ok(mut idle) = self.idle.lock() {
            *idle = None;
        }
    }
}

/// Whether `sql` starts with `SELECT` or `WITH` (the only statements readers take: other
/// statements SQLite calls read-only change the connection, `BEGIN` or a `PRAGMA`).
fn is_select(sql: &str) -> bool {
    let word: String = sql
        .trim_start()
        .chars()
        .take_while(char::is_ascii_alphabetic)
        .collect();
    word.eq_ignore_ascii_case("select") || word.eq_ignore_ascii_case("with")
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_selects_go_to_readers() {
        for sql in [
            "SELECT 1",
            "  select *",
            "WITH x AS (SELECT 1) SELECT * FROM x",
        ] {
            assert!(super::is_select(sql), "{sql}");
        }
        for sql in [
            "BEGIN",
            "PRAGMA foreign_keys",
            "SELECTED",
            "-- x\nSELECT 1",
            "",
        ] {
            assert!(!super::is_select(sql), "{sql}");
        }
    }
}
