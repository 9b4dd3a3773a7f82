//! The tables a copy moves: their columns and kinds, primary keys, foreign-key parents
//! and (PostgreSQL) sequences, read from either engine's catalog.

use sqlx::Row;

use super::value::Kind;
use crate::db::Target;

/// A table as the copy sees it.
#[derive(Debug, Clone)]
pub struct Table {
    /// Name (unquoted).
    pub name: String,
    /// Stored columns in table order (generated columns left out: the target computes them).
    pub columns: Vec<Column>,
    /// Primary-key column names, in key order (empty: no primary key).
    pub key: Vec<String>,
    /// Tables this one references through foreign keys (itself excluded).
    pub parents: Vec<String>,
}

/// A column.
#[derive(Debug, Clone)]
pub struct Column {
    /// Name (unquoted).
    pub name: String,
    /// What it holds.
    pub kind: Kind,
    /// PostgreSQL: a text type whose order can be made bytewise with `COLLATE "C"`.
    pub collatable: bool,
    /// `NOT NULL` (on PostgreSQL, every primary-key column too).
    pub not_null: bool,
}

impl Table {
    /// The column named `name`.
    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }
}

/// Names in the copy's SQL are always quoted: the catalogs give them exactly.
pub use crate::db::quoted;

/// Every table of the database (the current schema on PostgreSQL), by name.
pub async fn tables(on: Target<'_>) -> Result<Vec<Table>, sqlx::Error> {
    match on {
        Target::Sqlite(c) => {
            let names: Vec<String> = sqlx::query_scalar(
                // Virtual tables and their shadow tables are left out (their module fills them).
                "SELECT name FROM pragma_table_list WHERE schema = 'main' AND type = 'table' \
                 AND lower(substr(name, 1, 7)) <> 'sqlite_' ORDER BY name",
            )
            .fetch_all(&mut *c)
            .await?;
            let mut tables = Vec::new();
            for name in names {
                let rows = sqlx::query(
                    "SELECT name, type, pk, \"notnull\" FROM pragma_table_xinfo($1) WHERE hidden = 0 ORDER BY cid",
                )
                .bind(&name)
                .fetch_all(&mut *c)
                .await?;
                let mut key: Vec<(i64, String)> = Vec::new();
                let mut columns = Vec::new();
                for row in rows {
                    let column: String = row.try_get(0)?;
                    let decl: String = row.try_get::<Option<String>, _>(1)?.unwrap_or_default();
                    let pk: i64 = row.try_get(2)?;
                    if pk > 0 {
                        key.push((pk, column.clone()));
                    }
                    columns.push(Column {
                        name: column,
                        kind: Kind::from_sqlite_decl(&decl),
                        collatable: false,
                        not_null: row.try_get::<i64, _>(3)? != 0,
                    });
                }
                key.sort();
                let parents: Vec<String> = sqlx::query_scalar(
                    "SELECT DISTINCT \"table\" FROM pragma_foreign_key_list($1) WHERE \"table\" <> $1",
                )
                .bind(&name)
                .fetch_all(&mut *c)
                .await?;
                tables.push(Table {
                    name,
                    columns,
                    key: key.into_iter().map(|(_, c)| c).collect(),
                    parents,
                });
            }
            Ok(tables)
        }
        Target::Postgres(c) => {
            let names: Vec<String> = sqlx::query_scalar(
                "SELECT relname::text FROM pg_class \
                 WHERE relnamespace = current_schema()::regnamespace AND relkind IN ('r', 'p') \
                   AND NOT relispartition ORDER BY relname",
            )
            .fetch_all(&mut *c)
            .await?;
            let mut tables = Vec::new();
            for name in names {
                let relation = quoted(&name);
                let columns = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT a.attname::text, t.typname::text, a.atttypmod, a.attnotnull FROM pg_attribute a \
                     JOIN pg_type t ON t.oid = a.atttypid \
                     WHERE a.attrelid = {relation}::regclass AND a.attnum > 0 \
                       AND NOT a.attisdropped AND a.attgenerated = '' ORDER BY a.attnum",
                    relation = literal(&relation)
                )))
                .fetch_all(&mut *c)
                .await?
                .into_iter()
                .map(|row| {
                    let typname: String = row.try_get(1)?;
                    Ok(Column {
                        name: row.try_get(0)?,
                        kind: Kind::from_pg_type(&typname, row.try_get(2)?),
                        collatable: matches!(typname.as_str(), "text" | "varchar" | "bpchar"),
                        not_null: row.try_get(3)?,
                    })
                })
                .collect::<Result<Vec<_>, sqlx::Error>>()?;
                let key: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                    "SELECT a.attname::text FROM pg_index i \
                     CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord) \
                     JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum \
                     WHERE i.indrelid = {}::regclass AND i.indisprimary ORDER BY k.ord",
                    literal(&relation)
                )))
                .fetch_all(&mut *c)
                .await?;
                let parents: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                    "SELECT DISTINCT p.relname::text FROM pg_constraint f \
                     JOIN pg_class p ON p.oid = f.confrelid \
                     WHERE f.conrelid = {0}::regclass AND f.contype = 'f' AND f.confrelid <> {0}::regclass",
                    literal(&relation)
                )))
                .fetch_all(&mut *c)
                .await?;
                tables.push(Table {
                    name,
                    columns,
                    key,
                    parents,
                });
            }
            Ok(tables)
        }
    }
}

/// The single integer `sql` returns (a count).
pub async fn count(on: Target<'_>, sql: String) -> Result<i64, sqlx::Error> {
    let sql = sqlx::AssertSqlSafe(sql);
    match on {
        Target::Sqlite(c) => sqlx::query_scalar(sql).fetch_one(c).await,
        Target::Postgres(c) => sqlx::query_scalar(sql).fetch_one(c).await,
    }
}

/// A SQL string literal.
fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// Turns off, for the rest of the transaction, what would make loading rows depend on
/// their order or fire business logic: triggers (the source already holds what they
/// would write, as with `pg_restore --disable-triggers`) and, on PostgreSQL, foreign
/// keys (so tables that reference each other load too; SQLite's are off for the
/// connection and checked before commit). PostgreSQL: `DISABLE TRIGGER USER` and the
/// foreign keys dropped; SQLite, which cannot disable a trigger: dropped. Returns the
/// statements that bring them back — re-adding a foreign key checks every row.
pub async fn suspend_checks(on: Target<'_>, tables: &[&str]) -> Result<Vec<String>, sqlx::Error> {
    let mut restore = Vec::new();
    match on {
        Target::Sqlite(c) => {
            let triggers: Vec<(String, String)> = sqlx::query_as(
                "SELECT name, sql FROM sqlite_schema WHERE type = 'trigger' AND sql IS NOT NULL",
            )
            .fetch_all(&mut *c)
            .await?;
            for (name, sql) in triggers {
                sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                    "DROP TRIGGER {}",
                    quoted(&name)
                )))
                .execute(&mut *c)
                .await?;
                restore.push(sql);
            }
        }
        Target::Postgres(c) => {
            let foreign_keys: Vec<(String, String, String)> = sqlx::query_as(
                "SELECT conrelid::regclass::text, conname::text, pg_get_constraintdef(oid) \
                 FROM pg_constraint WHERE contype = 'f' \
                   AND connamespace = current_schema()::regnamespace",
            )
            .fetch_all(&mut *c)
            .await?;
            for (relation, name, definition) in foreign_keys {
                sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                    "ALTER TABLE {relation} DROP CONSTRAINT {}",
                    quoted(&name)
                )))
                .execute(&mut *c)
                .await?;
                restore.push(format!(
                    "ALTER TABLE {relation} ADD CONSTRAINT {} {definition}",
                    quoted(&name)
                ));
            }
            for table in tables {
                let relation = literal(&quoted(table));
                let user_triggers: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                    "SELECT count(*) FROM pg_trigger WHERE tgrelid = {relation}::regclass AND NOT tgisinternal"
                )))
                .fetch_one(&mut *c)
                .await?;
                if user_triggers > 0 {
                    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                        "ALTER TABLE {} DISABLE TRIGGER USER",
                        quoted(table)
                    )))
                    .execute(&mut *c)
                    .await?;
                    restore.push(format!("ALTER TABLE {} ENABLE TRIGGER USER", quoted(table)));
                }
            }
        }
    }
    Ok(restore)
}

/// Sets every sequence behind a PostgreSQL column (`serial`, identity) past the values
/// copied — the largest for an ascending sequence, the smallest for a descending one —
/// so the next insert does not collide with a copied id. A sequence whose copied values
/// all lie before where it starts, or past its bound, is left as it is.
pub async fn advance_sequences(c: &mut sqlx::PgConnection) -> Result<(), super::CopyError> {
    let err = super::CopyError::db(super::Side::Target);
    let columns: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT c.relname::text, a.attname::text, s.seq::text FROM pg_class c \
         JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped \
         CROSS JOIN LATERAL (SELECT pg_get_serial_sequence(quote_ident(c.relname), a.attname::text) AS seq) s \
         WHERE c.relnamespace = current_schema()::regnamespace AND c.relkind IN ('r', 'p') \
           AND s.seq IS NOT NULL",
    )
    .fetch_all(&mut *c)
    .await
    .map_err(&err)?;
    for (table, column, sequence) in columns {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT setval($1::regclass, v, true) FROM ( \
               SELECT CASE WHEN s.seqincrement > 0 THEN m.hi ELSE m.lo END AS v, s.* \
                 FROM (SELECT max({c})::int8 AS hi, min({c})::int8 AS lo FROM {t}) m, pg_sequence s \
                WHERE s.seqrelid = $1::regclass) p \
             WHERE v IS NOT NULL AND v BETWEEN seqmin AND seqmax \
               AND CASE WHEN seqincrement > 0 THEN v >= seqstart ELSE v <= seqstart END",
            c = quoted(&column),
            t = quoted(&table)
        )))
        .bind(sequence)
        .execute(&mut *c)
        .await
        .map_err(|e| super::CopyError::Db {
            side: super::Side::Target,
            message: format!(
                "moving the sequence of {table}.{column} past the copied values: {}",
                crate::db::describe_driver_error(&e, None)
            ),
        })?;
    }
    Ok(())
}

/// Tables ordered so that every table comes after the tables it references (a cycle
/// keeps the remaining tables in name order).
pub fn in_dependency_order(tables: Vec<Table>) -> Vec<Table> {
    crate::schema::parents_first(tables, |t| t.name.as_str(), |t| t.parents.clone())
}
