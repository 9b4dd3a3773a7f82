//! Autogenerate for what only PostgreSQL declares. Extensions: one declared is
//! `CREATE EXTENSION IF NOT EXISTS`, one no longer declared `DROP EXTENSION`. Enum
//! types: a new type is `CREATE TYPE`, a value added is
//! `ALTER TYPE … ADD VALUE`, a value removed or the values reordered recreate the type
//! and cast its columns to it (destructive: a row holding a removed value fails it), a
//! type no longer declared is `DROP TYPE`.

use super::normalize::ident;
use super::render::{create_enum, create_extension, default_sql, literal};
use super::{EnumType, Schema};

/// One step of the migration and its reverse for the down script.
pub(super) struct Change {
    pub up: String,
    pub down: String,
    /// What the up step destroys, when it does.
    pub destructive: Option<String>,
    /// Enum values added: a migration of their own, applied first and outside a
    /// transaction, so that the next one may use them.
    pub adds_values: bool,
}

/// The steps that come before the tables change: extensions created, types created,
/// values added, types recreated without a value (their columns as `from` has them).
pub(super) fn before_tables(from: &Schema, to: &Schema) -> Vec<Change> {
    let mut out: Vec<Change> = to
        .extensions
        .iter()
        .filter(|e| !from.extensions.contains(e))
        .map(|e| Change {
            up: create_extension(e),
            down: format!("DROP EXTENSION IF EXISTS {};", ident(e)),
            destructive: None,
            adds_values: false,
        })
        .collect();
    for new in &to.enums {
        let Some(old) = from.enums.iter().find(|e| e.name == new.name) else {
            out.push(Change {
                up: create_enum(new),
                down: format!("DROP TYPE {};", ident(&new.name)),
                destructive: None,
                adds_values: false,
            });
            continue;
        };
        if old == new {
            continue;
        }
        let name = ident(&new.name);
        match added_values(&name, &old.values, &new.values) {
            Some(added) => out.push(Change {
                up: added.join("\n"),
                down: recreate(old, from),
                destructive: None,
                adds_values: true,
            }),
            None => out.push(Change {
                up: recreate(new, from),
                down: recreate(old, from),
                destructive: Some(format!(
                    "remove or reorder values of enum type {name} (a row holding a removed value fails it)"
                )),
                adds_values: false,
            }),
        }
    }
    out
}

/// The steps that come after the tables change: types, then extensions, no longer
/// declared dropped.
pub(super) fn after_tables(from: &Schema, to: &Schema) -> Vec<Change> {
    let types = from
        .enums
        .iter()
        .filter(|old| !to.enums.iter().any(|e| e.name == old.name))
        .map(|old| Change {
            up: format!("DROP TYPE {};", ident(&old.name)),
            down: create_enum(old),
            destructive: None,
            adds_values: false,
        });
    let extensions = from
        .extensions
        .iter()
        .filter(|e| !to.extensions.contains(e))
        .map(|e| Change {
            up: format!("DROP EXTENSION {};", ident(e)),
            down: create_extension(e),
            destructive: None,
            adds_values: false,
        });
    types.chain(extensions).collect()
}

/// `ALTER TYPE name ADD VALUE` for each value of `new` that `old` lacks, each placed
/// before the old value that follows it; `None` when `new` does not keep `old`'s values
/// in order.
fn added_values(name: &str, old: &[String], new: &[String]) -> Option<Vec<String>> {
    let kept: Vec<&String> = new.iter().filter(|v| old.contains(v)).collect();
    if kept.len() != old.len() || kept.iter().zip(old).any(|(k, o)| *k != o) {
        return None;
    }
    let mut out = Vec::new();
    for (n, value) in new.iter().enumerate() {
        if old.contains(value) {
            continue;
        }
        let before = new[n..].iter().find(|v| old.contains(v));
        out.push(format!(
            "ALTER TYPE {name} ADD VALUE IF NOT EXISTS {}{};",
            literal(value),
            before.map_or(String::new(), |b| format!(" BEFORE {}", literal(b)))
        ));
    }
    Some(out)
}

/// The type made again with `enum_type`'s values, its columns in `columns_of` cast to it.
fn recreate(enum_type: &EnumType, columns_of: &Schema) -> String {
    let name = ident(&enum_type.name);
    let old = ident(&format!("{}__old", enum_type.name));
    let mut sql = vec![
        format!("ALTER TYPE {name} RENAME TO {old};"),
        create_enum(enum_type),
    ];
    for table in &columns_of.tables {
        let t = ident(&table.name);
        let array = format!("{name}[]");
        for column in table
            .columns
            .iter()
            .filter(|c| c.data_type == name || c.data_type == array)
        {
            let c = ident(&column.name);
            // An array of the type casts through `text[]`.
            let (ty, text) = match column.data_type == array {
                true => (array.as_str(), "text[]"),
                false => (name.as_str(), "text"),
            };
            if column.default.is_some() {
                sql.push(format!("ALTER TABLE {t} ALTER COLUMN {c} DROP DEFAULT;"));
            }
            sql.push(format!(
                "ALTER TABLE {t} ALTER COLUMN {c} TYPE {ty} USING {c}::{text}::{ty};"
            ));
            if let Some(d) = &column.default {
                sql.push(format!(
                    "ALTER TABLE {t} ALTER COLUMN {c} SET DEFAULT {};",
                    default_sql(d)
                ));
            }
        }
    }
    sql.push(format!("DROP TYPE {old};"));
    sql.join("\n")
}
