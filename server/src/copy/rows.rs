//! Moving rows: reading a table in key order from either engine ([`scan`]) and writing
//! rows in bulk ([`Sink`]: multi-row `INSERT`s on SQLite, `COPY … FROM STDIN` on
//! PostgreSQL).

use futures_util::TryStreamExt as _;
use sqlx::postgres::{PgConnection, PgCopyIn};
use sqlx::sqlite::SqliteConnection;
use sqlx::{Row, TypeInfo as _, ValueRef as _};

use super::schema::{Table, quoted};
use super::value::{Kind, Value};
use super::{CopyError, Side};
use crate::db::Target;

/// Reads `columns` of `table` (in that order) from the `side` database, ordered by
/// `key` (bytewise for text on both engines), and hands each row to `each`.
pub async fn scan(
    on: Target<'_>,
    side: Side,
    table: &Table,
    columns: &[String],
    key: &[String],
    mut each: impl AsyncFnMut(Vec<Value>) -> Result<(), CopyError>,
) -> Result<(), CopyError> {
    let err = CopyError::db(side);
    let postgres = matches!(on, Target::Postgres(_));
    let mut kinds = Vec::with_capacity(columns.len());
    let mut select = Vec::with_capacity(columns.len());
    for name in columns {
        let kind = table.column(name).map_or(Kind::Any, |c| c.kind.clone());
        let cast = match (&kind, postgres) {
            (_, false) | (Kind::Boolean | Kind::Blob, true) => "",
            (Kind::Integer(_), true) => "::int8",
            (Kind::Real(_), true) => "::float8",
            (_, true) => "::text",
        };
        select.push(format!("{}{cast}", quoted(name)));
        kinds.push(kind);
    }
    // Qualified: the table's column, not the select list's text cast of it.
    let order: Vec<String> = key
        .iter()
        .map(|k| {
            let collate = match postgres {
                true if table.column(k).is_some_and(|c| c.collatable) => " COLLATE \"C\"",
                true => "",
                false => " COLLATE BINARY",
            };
            format!("{}.{}{collate}", quoted(&table.name), quoted(k))
        })
        .collect();
    let mut sql = format!("SELECT {} FROM {}", select.join(", "), quoted(&table.name));
    if !order.is_empty() {
        sql.push_str(&format!(" ORDER BY {}", order.join(", ")));
    }
    let sql = sqlx::AssertSqlSafe(sql);
    match on {
        Target::Sqlite(c) => {
            let mut rows = sqlx::query(sql).fetch(&mut *c);
            while let Some(row) = rows.try_next().await.map_err(&err)? {
                each(sqlite_values(&row, columns.len()).map_err(&err)?).await?;
            }
        }
        Target::Postgres(c) => {
            let mut rows = sqlx::query(sql).fetch(&mut *c);
            while let Some(row) = rows.try_next().await.map_err(&err)? {
                each(pg_values(&row, &kinds).map_err(&err)?).await?;
            }
        }
    }
    Ok(())
}

/// A SQLite row by each value's own storage class.
pub fn sqlite_values(row: &sqlx::sqlite::SqliteRow, n: usize) -> Result<Vec<Value>, sqlx::Error> {
    let mut values = Vec::with_capacity(n);
    for i in 0..n {
        let raw = row.try_get_raw(i)?;
        if raw.is_null() {
            values.push(Value::Null);
            continue;
        }
        let storage = raw.type_info().name().to_string();
        values.push(match storage.as_str() {
            "INTEGER" => Value::Int(row.try_get_unchecked(i)?),
            "REAL" => Value::Real(row.try_get_unchecked(i)?),
            "TEXT" => {
                let bytes: Vec<u8> = row.try_get_unchecked(i)?;
                String::from_utf8(bytes)
                    .map(Value::Text)
                    .unwrap_or_else(|e| Value::InvalidText(e.into_bytes()))
            }
            _ => Value::Blob(row.try_get_unchecked(i)?),
        });
    }
    Ok(values)
}

/// A PostgreSQL row selected with the casts of [`scan`].
fn pg_values(row: &sqlx::postgres::PgRow, kinds: &[Kind]) -> Result<Vec<Value>, sqlx::Error> {
    kinds
        .iter()
        .enumerate()
        .map(|(i, kind)| {
            Ok(match kind {
                Kind::Integer(_) => row.try_get::<Option<i64>, _>(i)?.map(Value::Int),
                Kind::Real(_) => row.try_get::<Option<f64>, _>(i)?.map(Value::Real),
                Kind::Boolean => row.try_get::<Option<bool>, _>(i)?.map(Value::Bool),
                Kind::Blob => row.try_get::<Option<Vec<u8>>, _>(i)?.map(Value::Blob),
                _ => row.try_get::<Option<String>, _>(i)?.map(Value::Text),
            }
            .unwrap_or(Value::Null))
        })
        .collect()
}

/// Bytes of `COPY` text gathered before they are sent.
const COPY_CHUNK: usize = 1 << 20;

/// Bulk writer for one table.
pub enum Sink<'c> {
    /// SQLite: rows gathered into multi-row `INSERT`s.
    Sqlite {
        /// The target connection (inside the copy's transaction).
        conn: &'c mut SqliteConnection,
        /// `INSERT INTO t (…) VALUES `.
        head: String,
        /// Columns per row.
        width: usize,
        /// Rows per statement.
        batch: usize,
        /// Values of the rows not yet written.
        pending: Vec<Value>,
    },
    /// PostgreSQL: one `COPY` for the whole table.
    Postgres {
        /// The running `COPY`.
        copy: PgCopyIn<&'c mut PgConnection>,
        /// Text not yet sent.
        buffer: Vec<u8>,
    },
}

impl<'c> Sink<'c> {
    /// Starts writing `columns` of `table`.
    pub async fn open(
        on: Target<'c>,
        table: &str,
        columns: &[String],
    ) -> Result<Self, sqlx::Error> {
        let list: Vec<String> = columns.iter().map(|c| quoted(c)).collect();
        let list = list.join(", ");
        Ok(match on {
            Target::Sqlite(conn) => Sink::Sqlite {
                conn,
                head: format!("INSERT INTO {} ({list}) VALUES ", quoted(table)),
                width: columns.len(),
                // SQLite allows 32,766 parameters per statement.
                batch: (32_766 / columns.len().max(1)).clamp(1, 256),
                pending: Vec::new(),
            },
            Target::Postgres(conn) => Sink::Postgres {
                copy: conn
                    .copy_in_raw(&format!("COPY {} ({list}) FROM STDIN", quoted(table)))
                    .await?,
                buffer: Vec::with_capacity(COPY_CHUNK + 4096),
            },
        })
    }

    /// Adds one row.
    pub async fn push(&mut self, row: Vec<Value>) -> Result<(), sqlx::Error> {
        match self {
            Sink::Sqlite {
                pending,
                batch,
                width,
                ..
            } => {
                pending.extend(row);
                if pending.len() >= *batch * *width {
                    self.flush().await?;
                }
            }
            Sink::Postgres { copy, buffer } => {
                copy_text_row(&row, buffer);
                if buffer.len() >= COPY_CHUNK {
                    copy.send(std::mem::take(buffer)).await?;
                }
            }
        }
        Ok(())
    }

    /// Writes the gathered SQLite rows.
    async fn flush(&mut self) -> Result<(), sqlx::Error> {
        let Sink::Sqlite {
            conn,
            head,
            width,
            pending,
            ..
        } = self
        else {
            return Ok(());
        };
        if pending.is_empty() {
            return Ok(());
        }
        let rows = pending.len() / *width;
        let tuple = format!("({})", vec!["?"; *width].join(", "));
        let sql = format!("{head}{}", vec![tuple; rows].join(", "));
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for value in pending.drain(..) {
            query = match value {
                Value::Null | Value::InvalidText(_) => query.bind(None::<i64>),
                Value::Int(i) => query.bind(i),
                Value::Real(f) => query.bind(f),
                Value::Text(s) => query.bind(s),
                Value::Blob(b) => query.bind(b),
                Value::Bool(b) => query.bind(b),
            };
        }
        query.execute(&mut **conn).await?;
        Ok(())
    }

    /// Writes what is left and ends the table.
    pub async fn finish(mut self) -> Result<(), sqlx::Error> {
        self.flush().await?;
        if let Sink::Postgres { mut copy, buffer } = self {
            if !buffer.is_empty() {
                copy.send(buffer).await?;
            }
            copy.finish().await?;
        }
        Ok(())
    }

    /// Stops without writing the rest (the transaction is rolled back afterwards).
    pub async fn abort(self) {
        if let Sink::Postgres { copy, .. } = self {
            let _ = copy.abort("the copy found data that does not fit").await;
        }
    }
}

/// One row in PostgreSQL's `COPY … FROM STDIN` text format.
pub fn copy_text_row(row: &[Value], out: &mut Vec<u8>) {
    for (i, value) in row.iter().enumerate() {
        if i > 0 {
            out.push(b'\t');
        }
        match value {
            Value::Null | Value::InvalidText(_) => out.extend_from_slice(b"\\N"),
            Value::Int(n) => out.extend_from_slice(n.to_string().as_bytes()),
            Value::Real(f) if f.is_nan() => out.extend_from_slice(b"NaN"),
            Value::Real(f) if f.is_infinite() => {
                out.extend_from_slice(if *f > 0.0 { b"Infinity" } else { b"-Infinity" })
            }
            Value::Real(f) => out.extend_from_slice(format!("{f:?}").as_bytes()),
            Value::Bool(b) => out.push(if *b { b't' } else { b'f' }),
            Value::Text(s) => {
                for byte in s.bytes() {
                    match byte {
                        b'\\' => out.extend_from_slice(b"\\\\"),
                        b'\n' => out.extend_from_slice(b"\\n"),
                        b'\r' => out.extend_from_slice(b"\\r"),
                        b'\t' => out.extend_from_slice(b"\\t"),
                        other => out.push(other),
                    }
                }
            }
            Value::Blob(bytes) => {
                out.extend_from_slice(b"\\\\x");
                for b in bytes {
                    out.extend_from_slice(format!("{b:02x}").as_bytes());
                }
            }
        }
    }
    out.push(b'\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_text_escapes() {
        let mut out = Vec::new();
        copy_text_row(
            &[
                Value::Text("a\tb\\".into()),
                Value::Null,
                Value::Blob(vec![0, 255]),
            ],
            &mut out,
        );
        assert_eq!(out, b"a\\tb\\\\\t\\N\t\\\\x00ff\n");
    }
}
