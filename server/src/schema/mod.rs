//! The schema as data: a live database's tables, columns, keys, unique constraints,
//! indexes and foreign keys in one engine-neutral description ([`Schema`]), read from
//! SQLite's `sqlite_schema` and `pragma_*` functions or PostgreSQL's catalogs, with what
//! the engines spell differently (type aliases, quoting, default casts) normalised, so the
//! same declared schema compares equal on both. Rendered, it is `migrations/schema.sql`.
//!
//! | module | job |
//! |---|---|
//! | `sqlite` | reading a SQLite database |
//! | `postgres` | reading a PostgreSQL database |
//! | `normalize` | one spelling for types and defaults |
//! | `render` | the description as `CREATE EXTENSION` / `CREATE TYPE` / `CREATE TABLE` / `CREATE INDEX` statements |
//! | `file` | `migrations/schema.sql`: its statements, applied with their line numbers |
//! | `declared` | what each statement declares, and the line of each clause, for errors |
//! | `diff` | autogenerate: the migration and down script from one schema to another |
//! | `pg_objects` | autogenerate for PostgreSQL extensions and enum types |
//! | `portable` | whether a migration generated once would run on both engines |

mod declared;
mod diff;
mod file;
mod normalize;
mod order;
mod pg_objects;
mod portable;
mod postgres;
mod render;
mod sqlite;

pub use declared::{Declared, Kind as DeclaredKind, check as check_declared};
pub use diff::{Generated, NoValue, generate};
pub use file::{FILE_NAME, FOR_ENGINE, apply, engine_of, read_file, write};
pub use normalize::{quoted, unshared};
pub use order::parents_first;
pub use render::{
    columns_by_name, create_enum, create_extension, create_index, create_table, default_sql,
    dependency_order, line_diff, render, render_bare,
};
/// What [`read_cached`] keeps between reads of one database.
pub use sqlite::TableCache as ReadCache;

use crate::db::Target;
use crate::url::DbKind;

/// What is wrong with the declared schema file.
#[derive(Debug, thiserror::Error)]
pub enum SchemaFileError {
    /// It cannot be read.
    #[error("cannot read {label}: {source}")]
    Read {
        /// The file as the user named it.
        label: String,
        /// The operating system's reason.
        source: std::io::Error,
    },
    /// A directory, a FIFO, a device.
    #[error("{label} is not a regular file")]
    NotAFile {
        /// The file as the user named it.
        label: String,
    },
    /// A statement at a line: it fails, or declares what cannot be declared.
    #[error("{file}, line {line}: {message}")]
    At {
        /// The file as the user named it.
        file: String,
        /// The line of the statement or clause.
        line: usize,
        /// What is wrong there.
        message: String,
    },
}

/// Something of a table that the description does not hold, named in notes and messages.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Undescribed {
    /// An index that is partial, on an expression, or with `DESC`, `NULLS FIRST`,
    /// `INCLUDE`, `COLLATE` or `WITH (…)`.
    #[error(
        "index {0} (partial, descending or on an expression, or with NULLS FIRST, INCLUDE, COLLATE or WITH)"
    )]
    PartialIndex(String),
    /// A `CHECK` (or PostgreSQL `EXCLUDE`) constraint.
    #[error("a CHECK constraint")]
    Check,
    /// A column collated otherwise than its type.
    #[error("a COLLATE clause")]
    Collate,
    /// SQLite's `AUTOINCREMENT`.
    #[error("AUTOINCREMENT")]
    Autoincrement,
    /// A SQLite `STRICT` or `WITHOUT ROWID` table.
    #[error("STRICT or WITHOUT ROWID")]
    StrictOrWithoutRowid,
    /// A SQLite generated column.
    #[error("a generated column")]
    Generated,
    /// A PostgreSQL generated column (`GENERATED ALWAYS AS (…) STORED`).
    #[error("generated or identity column {0}")]
    GeneratedOrIdentity(String),
    /// A trigger.
    #[error("trigger {0}")]
    Trigger(String),
    /// A partitioned table's key and its partitions.
    #[error("PARTITION BY {key} (partitions: {})", if partitions.is_empty() { "none".to_string() } else { partitions.join(", ") })]
    Partitioned {
        /// The partition key, as PostgreSQL prints it.
        key: String,
        /// The partitions.
        partitions: Vec<String>,
    },
    /// A key, unique constraint, index or foreign key on a column not described.
    #[error("{what} (on {column}, not described)")]
    OnUndescribedColumn {
        /// `the primary key`, `a UNIQUE constraint`, `index x`, `a foreign key`.
        what: String,
        /// The column.
        column: String,
    },
}

/// The tables of a database (the migration history excluded), by name, and on
/// PostgreSQL its extensions and enum types. Two schemas are equal when these are: what
/// the description cannot hold is reported, not compared.
#[derive(Debug, Clone, Default)]
pub struct Schema {
    /// Tables, sorted by name.
    pub tables: Vec<TableDef>,
    /// PostgreSQL extensions (`CREATE EXTENSION`) but `plpgsql`, which every database
    /// has, sorted. Their tables, types and functions are theirs, not described.
    pub extensions: Vec<String>,
    /// PostgreSQL enum types (`CREATE TYPE … AS ENUM`), sorted by name.
    pub enums: Vec<EnumType>,
    /// What the database has outside its tables that this description does not hold (a
    /// view, a virtual or foreign table), sorted.
    pub undescribed: Vec<String>,
}

impl PartialEq for Schema {
    fn eq(&self, other: &Self) -> bool {
        (&self.tables, &self.extensions, &self.enums)
            == (&other.tables, &other.extensions, &other.enums)
    }
}

impl Eq for Schema {}

/// One table. Two tables are equal when their described parts are: what the
/// description cannot hold (`undescribed`) is reported, not compared.
#[derive(Debug, Clone)]
pub struct TableDef {
    /// Name.
    pub name: String,
    /// Columns in table order.
    pub columns: Vec<ColumnDef>,
    /// Primary-key columns in key order (empty: none).
    pub primary_key: Vec<String>,
    /// `UNIQUE` constraints, each its columns; sorted.
    pub uniques: Vec<Vec<String>>,
    /// Foreign keys, sorted.
    pub foreign_keys: Vec<ForeignKey>,
    /// Indexes created with `CREATE INDEX` on plain columns, sorted by name.
    pub indexes: Vec<IndexDef>,
    /// What the table has that this description does not hold (a `CHECK`, a trigger, a
    /// generated column, a partial or expression index, …): a SQLite rebuild would lose it.
    pub undescribed: Vec<Undescribed>,
}

impl PartialEq for TableDef {
    fn eq(&self, other: &Self) -> bool {
        (
            &self.name,
            &self.columns,
            &self.primary_key,
            &self.uniques,
            &self.foreign_keys,
            &self.indexes,
        ) == (
            &other.name,
            &other.columns,
            &other.primary_key,
            &other.uniques,
            &other.foreign_keys,
            &other.indexes,
        )
    }
}

impl Eq for TableDef {}

/// One column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnDef {
    /// Name.
    pub name: String,
    /// Canonical type (`BIGINT`, `VARCHAR(80)`, `TIMESTAMPTZ`, …).
    pub data_type: String,
    /// `NOT NULL` (always for primary-key columns, as on PostgreSQL).
    pub not_null: bool,
    /// Canonical default expression.
    pub default: Option<String>,
    /// A PostgreSQL identity column: `ALWAYS` or `BY DEFAULT` (`GENERATED … AS IDENTITY`).
    pub identity: Option<String>,
}

/// A foreign key.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ForeignKey {
    /// Referencing columns.
    pub columns: Vec<String>,
    /// Referenced table.
    pub references: String,
    /// Referenced columns.
    pub referenced_columns: Vec<String>,
    /// `NO ACTION`, `CASCADE`, `SET NULL`, `SET DEFAULT` or `RESTRICT`.
    pub on_delete: String,
    /// The same, on update.
    pub on_update: String,
}

/// A PostgreSQL enum type: `CREATE TYPE name AS ENUM (values)`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct EnumType {
    /// Name.
    pub name: String,
    /// Its values in their order.
    pub values: Vec<String>,
}

/// An index made by `CREATE [UNIQUE] INDEX`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct IndexDef {
    /// Name.
    pub name: String,
    /// Indexed columns (an expression appears as its text).
    pub columns: Vec<String>,
    /// `UNIQUE`.
    pub unique: bool,
    /// The access method when not the default B-tree (`gin`, `gist`, `hash`, …); empty
    /// for a B-tree.
    pub method: String,
    /// Each column's operator class when one is not its type's default (`gin_trgm_ops`),
    /// else empty; the whole list is empty when every column has its default.
    pub opclasses: Vec<String>,
}

impl Schema {
    /// The table named `name`.
    pub fn table(&self, name: &str) -> Option<&TableDef> {
        self.tables.iter().find(|t| t.name == name)
    }
}

/// A column whose type only SQLite takes.
pub struct Unshared<'s> {
    /// Its table.
    pub table: &'s str,
    /// The column.
    pub column: &'s str,
    /// Its type as the description spells it (empty: none).
    pub data_type: &'s str,
    /// The shared type to use instead.
    pub instead: &'static str,
}

impl Schema {
    /// The one engine this schema can be declared for, when it is not both: SQLite when
    /// a column has a type PostgreSQL does not have, PostgreSQL when it has enum types or
    /// extensions.
    pub fn only_for(&self) -> Option<DbKind> {
        if !self.unshared_columns().is_empty() {
            Some(DbKind::Sqlite)
        } else if !self.enums.is_empty() || !self.extensions.is_empty() {
            Some(DbKind::Postgres)
        } else {
            None
        }
    }

    /// Every column whose type PostgreSQL does not have, in table order.
    pub fn unshared_columns(&self) -> Vec<Unshared<'_>> {
        self.tables
            .iter()
            .flat_map(|t| t.columns.iter().map(move |c| (t, c)))
            .filter_map(|(t, c)| {
                Some(Unshared {
                    table: &t.name,
                    column: &c.name,
                    data_type: &c.data_type,
                    instead: unshared(&c.data_type)?,
                })
            })
            .collect()
    }
}

impl Unshared<'_> {
    /// `column t.c has type X, which PostgreSQL does not have; use Y`.
    pub fn describe(&self) -> String {
        let data_type = if self.data_type.is_empty() {
            "(none)"
        } else {
            self.data_type
        };
        format!(
            "column {}.{} has type {data_type}, which PostgreSQL does not have; use {}",
            self.table, self.column, self.instead
        )
    }
}

impl TableDef {
    /// The column named `name`.
    pub fn column(&self, name: &str) -> Option<&ColumnDef> {
        self.columns.iter().find(|c| c.name == name)
    }
}

/// Reads the schema of the database behind `on` (its current schema on PostgreSQL).
pub async fn read(on: Target<'_>) -> Result<Schema, sqlx::Error> {
    read_cached(on, &mut ReadCache::default()).await
}

/// [`read`] again and again as a database changes little by little (`db-check`'s round
/// trip): what `cache` holds from earlier reads of the same database is reused where it
/// is still true.
pub async fn read_cached(on: Target<'_>, cache: &mut ReadCache) -> Result<Schema, sqlx::Error> {
    let mut schema = match on {
        // SQLite compares names without regard to ASCII case, quoted or not: one case.
        Target::Sqlite(c) => fold_case(sqlite::read_cached(c, cache).await?),
        Target::Postgres(c) => postgres::read(c).await?,
    };
    for table in &mut schema.tables {
        for column in &mut table.columns {
            if table.primary_key.contains(&column.name) {
                column.not_null = true;
            }
            // `DEFAULT NULL` is no default (PostgreSQL drops it, SQLite keeps it).
            if column
                .default
                .as_deref()
                .is_some_and(|d| d.eq_ignore_ascii_case("NULL"))
            {
                column.default = None;
            }
        }
        keep_what_loads(table);
        table.uniques.sort();
        table.foreign_keys.sort();
        table.indexes.sort();
        table.undescribed.sort_by_key(ToString::to_string);
    }
    schema.tables.sort_by(|a, b| a.name.cmp(&b.name));
    schema.enums.sort();
    schema.extensions.sort();
    schema.undescribed.sort();
    Ok(schema)
}

/// Moves a key, index or foreign key on a column the description does not hold (a
/// generated column) to `undescribed`: written, it would name a column that is not there.
fn keep_what_loads(table: &mut TableDef) {
    let names: Vec<String> = table.columns.iter().map(|c| c.name.clone()).collect();
    let missing = |columns: &[String]| columns.iter().find(|c| !names.contains(c)).cloned();
    let mut moved = Vec::new();
    if let Some(c) = missing(&table.primary_key) {
        moved.push(Undescribed::OnUndescribedColumn {
            what: "the primary key".into(),
            column: c,
        });
        table.primary_key.clear();
    }
    table.uniques.retain(|u| match missing(u) {
        Some(c) => {
            moved.push(Undescribed::OnUndescribedColumn {
                what: "a UNIQUE constraint".into(),
                column: c,
            });
            false
        }
        None => true,
    });
    table.indexes.retain(|i| match missing(&i.columns) {
        Some(c) => {
            moved.push(Undescribed::OnUndescribedColumn {
                what: format!("index {}", i.name),
                column: c,
            });
            false
        }
        None => true,
    });
    table.foreign_keys.retain(|f| match missing(&f.columns) {
        Some(c) => {
            moved.push(Undescribed::OnUndescribedColumn {
                what: "a foreign key".into(),
                column: c,
            });
            false
        }
        None => true,
    });
    table.undescribed.extend(moved);
}

/// Every name in lower case (SQLite's names are ASCII case-insensitive).
fn fold_case(mut schema: Schema) -> Schema {
    let lower = |names: &mut Vec<String>| names.iter_mut().for_each(|n| n.make_ascii_lowercase());
    for table in &mut schema.tables {
        table.name.make_ascii_lowercase();
        table
            .columns
            .iter_mut()
            .for_each(|c| c.name.make_ascii_lowercase());
        lower(&mut table.primary_key);
        table.uniques.iter_mut().for_each(lower);
        for fk in &mut table.foreign_keys {
            lower(&mut fk.columns);
            fk.references.make_ascii_lowercase();
            lower(&mut fk.referenced_columns);
        }
        for index in &mut table.indexes {
            index.name.make_ascii_lowercase();
            lower(&mut index.columns);
        }
    }
    schema
}
