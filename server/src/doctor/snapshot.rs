//! The schema after each step of `db-check`'s round trip, taken cheaply and compared by
//! meaning.
//!
//! SQLite: the text of `sqlite_schema`, one query. Equal texts are the same schema;
//! different texts (a table rebuilt by a down script, `ALTER TABLE` rewriting a
//! `CREATE TABLE`) are loaded into two in-memory databases and compared as the schema
//! module describes them, so a table rebuilt with other text is still the same table.
//! PostgreSQL: the catalogs, described again only where they changed ([`Catalog`]).

use std::collections::BTreeSet;

use sqlx::Connection as _;

use super::catalog::Catalog;
use crate::db::{DbConn, Target};
use crate::schema;

/// The schema of a database at one step of the round trip (the history table excluded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Snapshot {
    /// `type`, `name` and `sql` of each SQLite object, in that order (unit and record
    /// separators between them), in one string: one value to read and compare.
    Sqlite(String),
    /// One line per PostgreSQL object or column, sorted.
    Postgres(Vec<String>),
}

impl Snapshot {
    /// Reads the schema of `conn`'s database; on PostgreSQL through `catalog` (made on
    /// first use when `None`), which keeps what earlier reads of the same database found.
    pub(super) async fn take(
        conn: &mut DbConn,
        catalog: &mut Option<Catalog>,
    ) -> Result<Self, sqlx::Error> {
        Ok(match conn {
            DbConn::Sqlite(c) => Self::Sqlite(
                sqlx::query_scalar(
                    "SELECT coalesce(group_concat(o, char(30)), '') FROM ( \
                       SELECT type || char(31) || name || char(31) || coalesce(sql, '') AS o \
                         FROM sqlite_schema \
                        WHERE lower(substr(name, 1, 7)) <> 'sqlite_' \
                          AND tbl_name <> 'refinery_schema_history' \
                        ORDER BY type, name, sql)",
                )
                .fetch_one(&mut **c)
                .await?,
            ),
            DbConn::Postgres(c) => {
                let catalog = match catalog {
                    Some(catalog) => catalog,
                    None => catalog.insert(Catalog::of(c).await?),
                };
                Self::Postgres(catalog.read(c).await?)
            }
        })
    }

    /// `None` when `self` and `now` are the same schema; otherwise both as comparable
    /// lines, to name what differs.
    pub(super) async fn differs(
        &self,
        now: &Snapshot,
    ) -> Result<Option<(BTreeSet<String>, BTreeSet<String>)>, sqlx::Error> {
        if self == now {
            return Ok(None);
        }
        let (then, now) = (self.lines().await?, now.lines().await?);
        Ok((then != now).then_some((then, now)))
    }

    /// The schema as comparable lines: SQLite's tables and indexes as the schema module
    /// spells them (loaded into an in-memory database), its views and triggers as written.
    async fn lines(&self) -> Result<BTreeSet<String>, sqlx::Error> {
        let objects: Vec<(String, String, String)> = match self {
            Self::Postgres(lines) => return Ok(lines.iter().cloned().collect()),
            Self::Sqlite(text) => text
                .split('\u{1e}')
                .filter(|o| !o.is_empty())
                .map(|o| {
                    let mut parts = o.splitn(3, '\u{1f}').map(str::to_string);
                    let mut next = || parts.next().unwrap_or_default();
                    (next(), next(), next())
                })
                .collect(),
        };
        let mut memory = sqlx::SqliteConnection::connect("sqlite::memory:").await?;
        // A virtual table makes its shadow tables (`<name>_…`) itself.
        let virtual_tables: Vec<String> = objects
            .iter()
            .filter(|(k, _, s)| {
                k == "table" && s.to_ascii_uppercase().starts_with("CREATE VIRTUAL")
            })
            .map(|(_, name, _)| format!("{}_", name.to_ascii_lowercase()))
            .collect();
        let shadow = |name: &str| {
            let name = name.to_ascii_lowercase();
            virtual_tables.iter().any(|v| name.starts_with(v.as_str()))
        };
        for kind in ["table", "index", "view", "trigger"] {
            for (_, name, sql) in objects
                .iter()
                .filter(|(k, _, s)| k == kind && !s.is_empty())
            {
                if kind == "table" && shadow(name) {
                    continue;
                }
                sqlx::raw_sql(sqlx::AssertSqlSafe(sql.clone()))
                    .execute(&mut memory)
                    .await?;
            }
        }
        let described = schema::read(Target::Sqlite(&mut memory)).await?;
        let mut lines: BTreeSet<String> = objects
            .iter()
            .filter(|(kind, ..)| kind == "view" || kind == "trigger")
            .map(|(kind, name, sql)| format!("{kind} {name}: {sql}"))
            .collect();
        for table in &described.tables {
            lines.insert(format!(
                "table {}: {}",
                table.name,
                schema::create_table(&schema::columns_by_name(table))
            ));
            for index in &table.indexes {
                lines.insert(format!(
                    "index {}: {}",
                    index.name,
                    schema::create_index(&table.name, index)
                ));
            }
        }
        Ok(lines)
    }
}
