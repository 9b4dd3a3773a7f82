//! Reading a SQLite database's schema: `pragma_table_list`, `pragma_table_xinfo`,
//! `pragma_index_list`, `pragma_index_info` and `pragma_foreign_key_list`.

use std::collections::HashMap;

use sqlx::{Row, SqliteConnection};

use super::normalize;
use super::{ColumnDef, ForeignKey, IndexDef, Schema, TableDef, Undescribed};
use crate::migrations::HISTORY_TABLE;

/// Table descriptions kept between reads of one database: a table whose defining text
/// (its `CREATE TABLE`, its indexes' and triggers', and its parents' `CREATE TABLE`) is
/// unchanged is not read again, so reading after each of many small changes costs what
/// the changes cost, not the whole schema each time.
#[derive(Default)]
pub struct TableCache(HashMap<String, (String, TableDef)>);

/// [`read`], reusing the descriptions in `cache` that are still true.
pub async fn read_cached(
    c: &mut SqliteConnection,
    cache: &mut TableCache,
) -> Result<Schema, sqlx::Error> {
    let names: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM pragma_table_list WHERE schema = 'main' AND type = 'table' \
         AND lower(substr(name, 1, 7)) <> 'sqlite_' AND name <> $1 ORDER BY name",
    )
    .bind(HISTORY_TABLE)
    .fetch_all(&mut *c)
    .await?;
    let texts = Texts::read(c).await?;
    let mut tables = Vec::new();
    for name in names {
        if let Some((fingerprint, table)) = cache.0.get(&name)
            && texts.fingerprint(table) == *fingerprint
        {
            tables.push(table.clone());
            continue;
        }
        let table = describe(c, name).await?;
        cache.0.insert(
            table.name.clone(),
            (texts.fingerprint(&table), table.clone()),
        );
        tables.push(table);
    }
    others(c, tables).await
}

/// The SQL text that defines each table, keyed by lower-case name: its own, and that of
/// its indexes and triggers.
struct Texts {
    own: HashMap<String, String>,
    related: HashMap<String, String>,
}

impl Texts {
    async fn read(c: &mut SqliteConnection) -> Result<Self, sqlx::Error> {
        let rows: Vec<(String, String, String, String)> = sqlx::query_as(
            "SELECT type, name, tbl_name, coalesce(sql, '') FROM sqlite_schema \
             ORDER BY type, name",
        )
        .fetch_all(&mut *c)
        .await?;
        let (mut own, mut related) = (HashMap::new(), HashMap::<String, String>::new());
        for (kind, name, table, sql) in rows {
            if kind == "table" {
                own.insert(name.to_lowercase(), sql);
            } else {
                let text = related.entry(table.to_lowercase()).or_default();
                text.push_str(&format!("\0{kind} {name} {sql}"));
            }
        }
        Ok(Self { own, related })
    }

    /// What `table`'s description follows from: a description is still true while this
    /// text is the same.
    fn fingerprint(&self, table: &TableDef) -> String {
        let text = |name: &str| {
            self.own
                .get(&name.to_lowercase())
                .map_or("", String::as_str)
        };
        let mut all = format!("{}\0", text(&table.name));
        if let Some(related) = self.related.get(&table.name.to_lowercase()) {
            all.push_str(related);
        }
        for fk in &table.foreign_keys {
            all.push_str(&format!("\0parent {}", text(&fk.references)));
        }
        all
    }
}

/// Reads one table's columns, keys, indexes and what is not described.
async fn describe(c: &mut SqliteConnection, name: String) -> Result<TableDef, sqlx::Error> {
    let mut columns = Vec::new();
    let mut key: Vec<(i64, String)> = Vec::new();
    for row in sqlx::query(
        "SELECT name, type, \"notnull\", dflt_value, pk FROM pragma_table_xinfo($1) \
         WHERE hidden = 0 ORDER BY cid",
    )
    .bind(&name)
    .fetch_all(&mut *c)
    .await?
    {
        let column: String = row.try_get(0)?;
        let pk: i64 = row.try_get(4)?;
        if pk > 0 {
            key.push((pk, column.clone()));
        }
        columns.push(ColumnDef {
            name: column,
            data_type: normalize::data_type(&row.try_get::<String, _>(1)?),
            not_null: row.try_get::<i64, _>(2)? != 0,
            default: row
                .try_get::<Option<String>, _>(3)?
                .map(|d| normalize::default(&d)),
            identity: None,
        });
    }
    key.sort();
    let primary_key: Vec<String> = key.into_iter().map(|(_, c)| c).collect();

    let mut uniques = Vec::new();
    let mut indexes = Vec::new();
    let list: Vec<(String, i64, String, i64)> = sqlx::query_as(
        "SELECT name, \"unique\", origin, partial FROM pragma_index_list($1) ORDER BY name",
    )
    .bind(&name)
    .fetch_all(&mut *c)
    .await?;
    let mut undescribed = Vec::new();
    for (index, unique, origin, partial) in list {
        let columns: Vec<Option<String>> =
            sqlx::query_scalar("SELECT name FROM pragma_index_info($1) ORDER BY seqno")
                .bind(&index)
                .fetch_all(&mut *c)
                .await?;
        let descending: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pragma_index_xinfo($1) \
             WHERE key = 1 AND (\"desc\" = 1 OR coll <> 'BINARY')",
        )
        .bind(&index)
        .fetch_one(&mut *c)
        .await?;
        if partial != 0 || descending > 0 || columns.iter().any(Option::is_none) {
            undescribed.push(Undescribed::PartialIndex(index));
            continue;
        }
        let columns: Vec<String> = columns.into_iter().flatten().collect();
        match origin.as_str() {
            "pk" => {}
            "u" => uniques.push(columns),
            _ => indexes.push(IndexDef {
                name: index,
                columns,
                unique: unique != 0,
                method: String::new(),
                opclasses: Vec::new(),
            }),
        }
    }
    let create: String = sqlx::query_scalar(
        "SELECT coalesce(sql, '') FROM sqlite_schema WHERE type = 'table' AND name = $1",
    )
    .bind(&name)
    .fetch_one(&mut *c)
    .await?;
    let upper = create.to_ascii_uppercase();
    for (word, what) in [
        ("CHECK", Undescribed::Check),
        ("GENERATED", Undescribed::Generated),
        ("AUTOINCREMENT", Undescribed::Autoincrement),
        ("COLLATE", Undescribed::Collate),
    ] {
        if upper.contains(word) {
            undescribed.push(what);
        }
    }
    let hidden: i64 =
        sqlx::query_scalar("SELECT count(*) FROM pragma_table_xinfo($1) WHERE hidden <> 0")
            .bind(&name)
            .fetch_one(&mut *c)
            .await?;
    let tail = upper.trim_end().trim_end_matches(';');
    if tail.ends_with("STRICT") || tail.contains("WITHOUT ROWID") {
        undescribed.push(Undescribed::StrictOrWithoutRowid);
    }
    if hidden > 0 && !undescribed.contains(&Undescribed::Generated) {
        undescribed.push(Undescribed::Generated);
    }
    let triggers: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_schema WHERE type = 'trigger' AND tbl_name = $1 ORDER BY name",
    )
    .bind(&name)
    .fetch_all(&mut *c)
    .await?;
    undescribed.extend(triggers.into_iter().map(Undescribed::Trigger));

    let mut foreign_keys: Vec<ForeignKey> = Vec::new();
    let rows: Vec<(i64, String, String, Option<String>, String, String)> = sqlx::query_as(
        "SELECT id, \"table\", \"from\", \"to\", on_delete, on_update \
         FROM pragma_foreign_key_list($1) ORDER BY id, seq",
    )
    .bind(&name)
    .fetch_all(&mut *c)
    .await?;
    let mut current: Option<i64> = None;
    for (id, parent, from, to, on_delete, on_update) in rows {
        if current != Some(id) {
            current = Some(id);
            foreign_keys.push(ForeignKey {
                columns: Vec::new(),
                references: parent.clone(),
                referenced_columns: Vec::new(),
                on_delete: on_delete.to_ascii_uppercase(),
                on_update: on_update.to_ascii_uppercase(),
            });
        }
        if let Some(fk) = foreign_keys.last_mut() {
            fk.columns.push(from);
            fk.referenced_columns.push(to.unwrap_or_default());
        }
    }
    // `REFERENCES parent` without columns means the parent's primary key.
    for fk in &mut foreign_keys {
        if fk.referenced_columns.iter().any(String::is_empty) {
            let parent_key: Vec<String> = sqlx::query_scalar(
                "SELECT name FROM pragma_table_info($1) WHERE pk > 0 ORDER BY pk",
            )
            .bind(&fk.references)
            .fetch_all(&mut *c)
            .await?;
            fk.referenced_columns = parent_key;
        }
    }
    Ok(TableDef {
        name,
        columns,
        primary_key,
        uniques,
        foreign_keys,
        indexes,
        undescribed,
    })
}

/// The schema of `tables` with the views and virtual tables named.
async fn others(c: &mut SqliteConnection, tables: Vec<TableDef>) -> Result<Schema, sqlx::Error> {
    // Views and virtual tables (FTS): not described, but named.
    let others: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT l.type, l.name, coalesce(s.sql, '') FROM pragma_table_list l \
         LEFT JOIN sqlite_schema s ON s.name = l.name \
         WHERE l.schema = 'main' AND l.type IN ('view', 'virtual') \
           AND lower(substr(l.name, 1, 7)) <> 'sqlite_' ORDER BY l.name",
    )
    .fetch_all(&mut *c)
    .await?;
    let undescribed = others
        .into_iter()
        .map(|(kind, name, sql)| match kind.as_str() {
            "view" => format!("view {name}"),
            _ => {
                let upper = sql.to_ascii_uppercase();
                let module = upper
                    .find(" USING ")
                    .and_then(|at| sql[at + 7..].split(['(', ' ']).next())
                    .unwrap_or("");
                format!("virtual table {name} (USING {module})")
            }
        })
        .collect();
    Ok(Schema {
        tables,
        extensions: Vec::new(),
        enums: Vec::new(),
        undescribed,
    })
}
