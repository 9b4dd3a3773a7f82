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
//! connection in autocommit; transactions are [`super::DbConn::begin_write`]'s and
//! [`super::DbPool::begin_write`]'s.

use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicBool, Ordering};
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
}

impl SqliteConn {
    pub(super) fn new(conn: PoolConnection<Sqlite>, readers: Option<Arc<Readers>>) -> Self {
        Self { conn, readers }
    }

    /// The connection, and the pool's readers when reads may run on them.
    pub(super) fn split(&mut self) -> (&mut SqliteConnection, Option<&Readers>) {
        (&mut self.conn, self.readers.as_deref())
    }
}

impl Deref for SqliteConn {
    type Target = SqliteConnection;

    fn deref(&self) -> &SqliteConnection {
        &self.conn
    }
}

impl DerefMut for SqliteConn {
    fn deref_mut(&mut self) -> &mut SqliteConnection {
        &mut self.conn
    }
}

/// The read connections of one file identity, opened as needed and kept idle up to the
/// pool's size.
pub struct Readers {
    config: DirectOptions,
    idle: Mutex<Vec<rusqlite::Connection>>,
    keep: usize,
    closed: AtomicBool,
}

impl Readers {
    pub(super) fn new(config: DirectOptions, keep: usize) -> Self {
        Self {
            config,
            idle: Mutex::new(Vec::new()),
            keep,
            closed: AtomicBool::new(false),
        }
    }

    /// At most `limit` rows of `sql`, decoded by `decode`, read on a reader; `None` when
    /// the statement is not a read, or found the database busy: the caller runs it on its
    /// sqlx connection instead.
    pub(super) fn fetch<T>(
        &self,
        sql: &str,
        params: &[&dyn ToSql],
        limit: usize,
        decode: fn(&rusqlite::Row<'_>) -> Result<T, sqlx::Error>,
    ) -> Option<Result<Vec<T>, sqlx::Error>> {
        if !is_select(sql) || self.closed.load(Ordering::Relaxed) {
            return None;
        }
        let taken = self.idle.lock().ok()?.pop();
        // A reader that cannot open leaves the read to sqlx, which reports the problem.
        let conn = match taken {
            Some(conn) => conn,
            None => self.config.open().ok()?,
        };
        let rows = direct::read(&conn, sql, params, self.config.echo, limit, decode);
        if conn.is_autocommit()
            && !self.closed.load(Ordering::Relaxed)
            && let Ok(mut idle) = self.idle.lock()
            && idle.len() < self.keep
        {
            idle.push(conn);
        }
        rows
    }

    /// Closes the idle readers; those in use close when they finish.
    pub(super) fn close(&self) {
        self.closed.store(true, Ordering::Relaxed);
        if let Ok(mut idle) = self.idle.lock() {
            idle.clear();
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
