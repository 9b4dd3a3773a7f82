//! Autogenerate: the migration (and its down script) that turns one schema into another.
//!
//! Creating and dropping tables and indexes, adding and dropping plain columns are written
//! once for both engines. Changing a column (type, `NOT NULL`, default) or a table's keys
//! is `ALTER TABLE … ALTER COLUMN` / `ADD|DROP CONSTRAINT` on PostgreSQL, and on SQLite,
//! which cannot alter them, the documented table rebuild: new table, copy, drop, rename,
//! indexes again — with foreign keys checked once at the end (the runner's
//! [`FOREIGN_KEYS_OFF`] directive). Extensions and enum types are PostgreSQL's (module
//! `pg_objects`).
//! Destructive steps are commented out unless allowed.

use super::normalize::ident;
use super::render::{column_list, create_index, create_table, foreign_key};
use super::{ColumnDef, Schema, TableDef};
use crate::migrations::FOREIGN_KEYS_OFF;
use crate::url::DbKind;

/// Marks a destructive statement written as a comment.
const DESTRUCTIVE: &str = "-- DESTRUCTIVE (generate with --allow-destructive): ";

/// A generated migration.
#[derive(Debug, Clone, Default)]
pub struct Generated {
    /// The up script.
    pub up: String,
    /// The down script.
    pub down: String,
    /// Set when some step only runs on this engine.
    pub engine: Option<DbKind>,
    /// Why steps written once for both engines would not run on both (a type only
    /// SQLite has, a `SERIAL`, a default PostgreSQL refuses, tables that reference each
    /// other); `engine` is set when there is any.
    pub not_portable: Vec<String>,
    /// What was left commented out as destructive, one line each.
    pub destructive: Vec<String>,
    /// What a human should look at (possible renames, lost data).
    pub notes: Vec<String>,
    /// Enum values added (PostgreSQL): the up and down script of a migration of their
    /// own, outside a transaction (`-- db: no-transaction`), to apply before this one —
    /// PostgreSQL refuses to use a value in the transaction that added it. When nothing
    /// else changes, `up` and `down` hold them instead and this is `None`.
    pub values_first: Option<(String, String)>,
}

/// A change autogenerate cannot write so that it runs on a table that has rows: a new
/// `NOT NULL` column without a default has no value to give them.
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "column {table}.{column} is NOT NULL without a default: the rows {table} already has would have no value for it, and the migration would fail on them; give it a DEFAULT in the declared schema{instead}"
)]
pub struct NoValue {
    /// The table.
    pub table: String,
    /// The new column.
    pub column: String,
    /// What else to do (a rename written by hand, or a data migration).
    instead: String,
}

/// One step: its SQL, whether it destroys data, and whether both engines run it.
struct Step {
    sql: String,
    destructive: Option<String>,
    portable: bool,
}

/// The directive and its reason, first in a migration that adds enum values.
const OUTSIDE: &str = "-- db: no-transaction\n-- Enum values added: PostgreSQL cannot use a value in the transaction that added it,\n-- so this runs outside one (each statement is idempotent: IF NOT EXISTS).\n";

impl Generated {
    /// Whether the up script holds any statement (not only comments).
    pub fn has_statements(&self) -> bool {
        self.up
            .lines()
            .any(|l| !l.trim().is_empty() && !l.trim_start().starts_with("--"))
    }
}

impl Step {
    fn portable(sql: String) -> Self {
        Self {
            sql,
            destructive: None,
            portable: true,
        }
    }
}

/// The migration from `from` (what the migrations produce) to `to` (the declared schema)
/// for `engine`; `None` when they are the same. Every step runs on tables that have rows;
/// one that cannot (a new `NOT NULL` column without a default) is refused.
pub fn generate(
    from: &Schema,
    to: &Schema,
    engine: DbKind,
    allow_destructive: bool,
) -> Result<Option<Generated>, NoValue> {
    if from == to {
        return Ok(None);
    }
    let mut pairs: Vec<(Step, Step)> = Vec::new();
    let mut notes = Vec::new();
    let dropped: Vec<&TableDef> = from
        .tables
        .iter()
        .filter(|t| to.table(&t.name).is_none())
        .collect();
    let created: Vec<&TableDef> = to
        .tables
        .iter()
        .filter(|t| from.table(&t.name).is_none())
        .collect();
    if !dropped.is_empty() && !created.is_empty() {
        notes.push(format!(
            "tables dropped ({}) and created ({}) in one change: if that is a rename, write `ALTER TABLE … RENAME TO …` instead, or the rows are lost",
            names(&dropped),
            names(&created)
        ));
    }
    let (values, before): (Vec<_>, Vec<_>) = super::pg_objects::before_tables(from, to)
        .into_iter()
        .partition(|change| change.adds_values);
    let values: Vec<(Step, Step)> = values.into_iter().map(pg_only).collect();
    pairs.extend(before.into_iter().map(pg_only));
    for table in super::render::dependency_order(created.clone()) {
        pairs.push((
            Step::portable(create_with_indexes(table)),
            Step::portable(format!("DROP TABLE {};", ident(&table.name))),
        ));
    }
    for table in from
        .tables
        .iter()
        .filter_map(|f| to.table(&f.name).map(|t| (f, t)))
    {
        let (old, new) = table;
        if old == new {
            continue;
        }
        change_table(old, new, engine, &mut pairs, &mut notes)?;
    }
    // Children before the parents they reference.
    for table in super::render::dependency_order(dropped.clone())
        .into_iter()
        .rev()
    {
        pairs.push((
            Step {
                sql: format!("DROP TABLE {};", ident(&table.name)),
                destructive: Some(format!("drop table {} and its rows", table.name)),
                portable: true,
            },
            Step::portable(format!(
                "-- The rows of {} cannot come back: this recreates the empty table.\n{}",
                table.name,
                create_with_indexes(table)
            )),
        ));
    }
    pairs.extend(
        super::pg_objects::after_tables(from, to)
            .into_iter()
            .map(pg_only),
    );
    let only_values = !values.is_empty() && pairs.is_empty();
    let values_first = match (values.is_empty(), only_values) {
        (true, _) => None,
        (false, true) => {
            pairs = values;
            None
        }
        (false, false) => Some(values),
    };
    let values_first = values_first.map(|values| {
        let (up, down, _) = write(&values, allow_destructive);
        (format!("{OUTSIDE}{up}"), down)
    });
    let not_portable = super::portable::problems(from, to);
    let engine_only = (!not_portable.is_empty()
        || pairs.iter().any(|(u, d)| !u.portable || !d.portable))
    .then_some(engine);
    let (mut up, down, destructive) = write(&pairs, allow_destructive);
    if only_values {
        up = format!("{OUTSIDE}{up}");
    }
    Ok(Some(Generated {
        values_first,
        up,
        down,
        engine: engine_only,
        not_portable,
        destructive,
        notes,
    }))
}

/// An enum type's step and its reverse: PostgreSQL's only.
fn pg_only(change: super::pg_objects::Change) -> (Step, Step) {
    (
        Step {
            sql: change.up,
            destructive: change.destructive,
            portable: false,
        },
        Step {
            sql: change.down,
            destructive: None,
            portable: false,
        },
    )
}

fn names(tables: &[&TableDef]) -> String {
    tables
        .iter()
        .map(|t| t.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The up script (steps in order) and the down script (their reverses, in reverse
/// order). A destructive step not allowed is commented out, and so is its reverse: a
/// down script never undoes what its up script did not do.
fn write(pairs: &[(Step, Step)], allow_destructive: bool) -> (String, String, Vec<String>) {
    let (mut up, mut down, mut skipped) = (String::new(), String::new(), Vec::new());
    let comment = |out: &mut String, sql: &str| {
        for line in sql.lines() {
            out.push_str(DESTRUCTIVE);
            out.push_str(line);
            out.push('\n');
        }
    };
    for (step, _) in pairs {
        match (&step.destructive, allow_destructive) {
            (Some(what), false) => {
                skipped.push(what.clone());
                comment(&mut up, &step.sql);
            }
            _ => {
                up.push_str(&step.sql);
                up.push('\n');
            }
        }
    }
    for (step, reverse) in pairs.iter().rev() {
        if step.destructive.is_some() && !allow_destructive {
            comment(&mut down, &reverse.sql);
        } else {
            down.push_str(&reverse.sql);
            down.push('\n');
        }
    }
    (up, down, skipped)
}

fn create_with_indexes(table: &TableDef) -> String {
    let mut sql = create_table(table).trim_end().to_string();
    for index in &table.indexes {
        sql.push('\n');
        sql.push_str(&create_index(&table.name, index));
    }
    sql
}

/// Steps that turn table `old` into `new` (same name).
fn change_table(
    old: &TableDef,
    new: &TableDef,
    engine: DbKind,
    pairs: &mut Vec<(Step, Step)>,
    notes: &mut Vec<String>,
) -> Result<(), NoValue> {
    let t = ident(&new.name);
    let added: Vec<&ColumnDef> = new
        .columns
        .iter()
        .filter(|c| old.column(&c.name).is_none())
        .collect();
    let removed: Vec<&ColumnDef> = old
        .columns
        .iter()
        .filter(|c| new.column(&c.name).is_none())
        .collect();
    if !added.is_empty() && !removed.is_empty() {
        notes.push(format!(
            "table {}: columns dropped ({}) and added ({}): if that is a rename, write `ALTER TABLE … RENAME COLUMN … TO …` instead, or the values are lost",
            new.name,
            removed.iter().map(|c| c.name.as_str()).collect::<Vec<_>>().join(", "),
            added.iter().map(|c| c.name.as_str()).collect::<Vec<_>>().join(", ")
        ));
    }
    // A rebuild copies the rows and an ADD COLUMN keeps them: a NOT NULL column needs a
    // value for each (a serial column on PostgreSQL makes its own).
    if let Some(column) = added
        .iter()
        .find(|c| c.not_null && c.default.is_none() && !(engine == DbKind::Postgres && serial(c)))
    {
        let instead = match removed.as_slice() {
            [old_column] => format!(
                ", or, if it renames {}.{}, write `ALTER TABLE {t} RENAME COLUMN {} TO {};` in a migration by hand (`cargo xtask db-migrate NAME`)",
                new.name,
                old_column.name,
                ident(&old_column.name),
                ident(&column.name)
            ),
            _ => ", or write the migration by hand (add the column without NOT NULL, fill it, then add NOT NULL)".to_string(),
        };
        return Err(NoValue {
            table: new.name.clone(),
            column: column.name.clone(),
            instead,
        });
    }
    let changed: Vec<(&ColumnDef, &ColumnDef)> = new
        .columns
        .iter()
        .filter_map(|c| old.column(&c.name).filter(|o| *o != c).map(|o| (o, c)))
        .collect();
    for (_, n) in changed
        .iter()
        .filter(|(o, n)| n.not_null && !o.not_null && n.default.is_none())
    {
        notes.push(format!(
            "column {}.{} becomes NOT NULL without a default: the migration fails if a row holds NULL there; fill those rows first (an UPDATE at the top of the migration) or give it a DEFAULT",
            new.name, n.name
        ));
    }
    let keys_changed = old.primary_key != new.primary_key
        || old.uniques != new.uniques
        || old.foreign_keys != new.foreign_keys;
    // What ALTER TABLE … ADD/DROP COLUMN does alike on both engines.
    let simple = !keys_changed
        && changed.is_empty()
        && added.iter().all(|c| can_add_column(c))
        && removed
            .iter()
            .all(|c| can_drop_column(old, c) && !(c.not_null && c.default.is_none()));
    // A SQLite rebuild drops the old indexes with the table and creates the new ones.
    let indexes_apart = simple || engine == DbKind::Postgres;
    if indexes_apart {
        // First out, last in: a dropped column may be indexed.
        for index in old.indexes.iter().filter(|i| !new.indexes.contains(i)) {
            pairs.push((
                Step::portable(format!("DROP INDEX {};", ident(&index.name))),
                Step::portable(create_index(&old.name, index)),
            ));
        }
    }
    if simple {
        for column in &added {
            pairs.push((
                Step::portable(format!(
                    "ALTER TABLE {t} ADD COLUMN {};",
                    column_sql(column)
                )),
                Step::portable(format!(
                    "ALTER TABLE {t} DROP COLUMN {};",
                    ident(&column.name)
                )),
            ));
        }
        for column in &removed {
            pairs.push((
                Step {
                    sql: format!("ALTER TABLE {t} DROP COLUMN {};", ident(&column.name)),
                    destructive: Some(format!(
                        "drop column {}.{} and its values",
                        new.name, column.name
                    )),
                    portable: true,
                },
                Step::portable(format!(
                    "-- The values of {}.{} cannot come back.\nALTER TABLE {t} ADD COLUMN {};",
                    new.name,
                    column.name,
                    column_sql(column)
                )),
            ));
        }
    } else {
        let how = match engine {
            DbKind::Sqlite => "rebuild",
            DbKind::Postgres => "alter",
        };
        let mut destructive = (!removed.is_empty()
            || changed
                .iter()
                .any(|(o, n)| narrows(&o.data_type, &n.data_type)))
        .then(|| format!("{how} table {} (drops or narrows columns)", new.name));
        // A rebuild keeps only what the description holds.
        if engine == DbKind::Sqlite && !old.undescribed.is_empty() {
            destructive = Some(format!(
                "rebuild table {}, which would drop what the declared schema cannot describe: {}",
                new.name,
                super::render::join(&old.undescribed)
            ));
        }
        let (forward, backward) = match engine {
            DbKind::Sqlite => (rebuild(old, new), rebuild(new, old)),
            DbKind::Postgres => alter_pg(old, new, &added, &removed, &changed),
        };
        pairs.push((
            Step {
                sql: forward,
                destructive,
                portable: false,
            },
            Step {
                sql: backward,
                destructive: None,
                portable: false,
            },
        ));
    }
    if indexes_apart {
        for index in new.indexes.iter().filter(|i| !old.indexes.contains(i)) {
            pairs.push((
                Step::portable(create_index(&new.name, index)),
                Step::portable(format!("DROP INDEX {};", ident(&index.name))),
            ));
        }
    }
    Ok(())
}

/// A column definition for `ADD COLUMN`.
fn column_sql(c: &ColumnDef) -> String {
    let mut sql = format!("{} {}", ident(&c.name), c.data_type);
    if c.not_null {
        sql.push_str(" NOT NULL");
    }
    if let Some(d) = &c.default {
        sql.push_str(&format!(" DEFAULT {}", super::render::default_sql(d)));
    }
    if let Some(how) = &c.identity {
        sql.push_str(&format!(" GENERATED {how} AS IDENTITY"));
    }
    sql
}

/// `SERIAL`, `BIGSERIAL` or `SMALLSERIAL`, or an identity column: PostgreSQL fills it
/// from a sequence.
fn serial(c: &ColumnDef) -> bool {
    c.data_type.ends_with("SERIAL") || c.identity.is_some()
}

/// SQLite adds a column only without `NOT NULL` unless it has a constant default.
fn can_add_column(c: &ColumnDef) -> bool {
    let constant = c
        .default
        .as_deref()
        .is_some_and(|d| !d.starts_with("CURRENT_") && !d.contains('('));
    !c.not_null || constant
}

/// SQLite drops a column only when no key, index or foreign key uses it.
fn can_drop_column(table: &TableDef, c: &ColumnDef) -> bool {
    let name = &c.name;
    !table.primary_key.contains(name)
        && !table.uniques.iter().any(|u| u.contains(name))
        && !table.indexes.iter().any(|i| i.columns.contains(name))
        && !table.foreign_keys.iter().any(|f| f.columns.contains(name))
}

/// A type change that may not keep every value (anything but a known widening).
fn narrows(from: &str, to: &str) -> bool {
    let rank = |t: &str| match t {
        "SMALLINT" => Some(1),
        "INTEGER" => Some(2),
        "BIGINT" => Some(3),
        _ => None,
    };
    let length = |t: &str| {
        t.strip_prefix("VARCHAR(")
            .and_then(|n| n.strip_suffix(')'))
            .and_then(|n| n.parse::<u32>().ok())
    };
    let widens = match (from, to) {
        _ if from == to => true,
        (_, "TEXT") => length(from).is_some() || from == "TEXT",
        ("REAL", "DOUBLE PRECISION") => true,
        _ => match (rank(from), rank(to), length(from), length(to)) {
            (Some(a), Some(b), _, _) => b >= a,
            (_, _, Some(a), Some(b)) => b >= a,
            _ => false,
        },
    };
    !widens
}

/// SQLite's table rebuild from `old` to `new`: the columns both have are copied.
fn rebuild(old: &TableDef, new: &TableDef) -> String {
    let t = ident(&new.name);
    let temp = ident(&format!("{}__new", new.name));
    let mut staged = new.clone();
    staged.name = format!("{}__new", new.name);
    staged.indexes.clear();
    let common: Vec<&ColumnDef> = new
        .columns
        .iter()
        .filter(|c| old.column(&c.name).is_some())
        .collect();
    // A new column takes its default, but one that is NOT NULL without a default (a
    // dropped column a down script brings back: its values are gone) needs a value.
    let refilled: Vec<&ColumnDef> = new
        .columns
        .iter()
        .filter(|c| old.column(&c.name).is_none() && c.not_null && c.default.is_none())
        .collect();
    let mut into: Vec<String> = common.iter().map(|c| ident(&c.name)).collect();
    // A column that becomes NOT NULL takes its default where it was NULL.
    let mut from: Vec<String> = common
        .iter()
        .map(|c| match (&c.default, c.not_null) {
            (Some(d), true) => format!("coalesce({}, {d})", ident(&c.name)),
            _ => ident(&c.name),
        })
        .collect();
    into.extend(refilled.iter().map(|c| ident(&c.name)));
    from.extend(refilled.iter().map(|c| filler(&c.data_type).to_string()));
    let mut sql = format!(
        "{FOREIGN_KEYS_OFF}\n-- For SQLite only: it cannot alter a column or a key, so {} is rebuilt (copy, drop, rename).\n",
        new.name
    );
    for c in &refilled {
        sql.push_str(&format!(
            "-- The values of {}.{} cannot come back: each row gets {}.\n",
            new.name,
            c.name,
            filler(&c.data_type)
        ));
    }
    sql.push_str(&create_table(&staged));
    sql.push_str(&format!(
        "INSERT INTO {temp} ({}) SELECT {} FROM {t};\nDROP TABLE {t};\nALTER TABLE {temp} RENAME TO {t};",
        into.join(", "),
        from.join(", ")
    ));
    for index in &new.indexes {
        sql.push('\n');
        sql.push_str(&create_index(&new.name, index));
    }
    sql
}

/// PostgreSQL's `ALTER TABLE` from `old` to `new`, and back.
fn alter_pg(
    old: &TableDef,
    new: &TableDef,
    added: &[&ColumnDef],
    removed: &[&ColumnDef],
    changed: &[(&ColumnDef, &ColumnDef)],
) -> (String, String) {
    let t = ident(&new.name);
    let mut forward = vec![format!(
        "-- For PostgreSQL only: {} changes in place.",
        new.name
    )];
    let mut backward = vec![format!(
        "-- For PostgreSQL only: {} changes back.",
        new.name
    )];
    // Constraints go first and come back last: they may use the changed columns.
    forward.extend(drop_constraints(old, new));
    backward.extend(drop_constraints(new, old));
    for c in added {
        forward.push(format!("ALTER TABLE {t} ADD COLUMN {};", column_sql(c)));
        backward.push(format!("ALTER TABLE {t} DROP COLUMN {};", ident(&c.name)));
    }
    for c in removed {
        forward.push(format!("ALTER TABLE {t} DROP COLUMN {};", ident(&c.name)));
        backward.extend(add_back(&t, &new.name, c));
    }
    for (o, n) in changed {
        forward.extend(alter_column(&t, o, n));
        backward.extend(alter_column(&t, n, o));
    }
    forward.extend(add_constraints(old, new));
    backward.extend(add_constraints(new, old));
    (forward.join("\n"), backward.join("\n"))
}

/// `ADD COLUMN` for a dropped column a down script brings back; its values are gone, and
/// when it is NOT NULL without a default the rows get a filler value, so it runs on a
/// table that has rows.
fn add_back(t: &str, table: &str, c: &ColumnDef) -> Vec<String> {
    let add = format!("ALTER TABLE {t} ADD COLUMN {}", column_sql(c));
    if !(c.not_null && c.default.is_none()) {
        return vec![format!("{add};")];
    }
    let filler = filler(&c.data_type);
    vec![
        format!(
            "-- The values of {table}.{} cannot come back: each row gets {filler}.",
            c.name
        ),
        format!("{add} DEFAULT {filler};"),
        format!(
            "ALTER TABLE {t} ALTER COLUMN {} DROP DEFAULT;",
            ident(&c.name)
        ),
    ]
}

/// A value of `data_type` for rows that have none (a NOT NULL column brought back).
fn filler(data_type: &str) -> &'static str {
    match (family(data_type), data_type) {
        ("text", _) => "''",
        ("integer" | "number", _) => "0",
        (_, "BOOLEAN") => "FALSE",
        (_, "DATE") => "CURRENT_DATE",
        (_, "TIME" | "TIMETZ") => "CURRENT_TIME",
        (_, "TIMESTAMP" | "TIMESTAMPTZ") => "CURRENT_TIMESTAMP",
        (_, "UUID") => "'00000000-0000-0000-0000-000000000000'",
        (_, "JSON" | "JSONB") => "'null'",
        _ => "''",
    }
}

fn alter_column(t: &str, o: &ColumnDef, n: &ColumnDef) -> Vec<String> {
    let c = ident(&n.name);
    let mut sql = Vec::new();
    let retyped = o.data_type != n.data_type;
    if retyped {
        // The old default may not cast to the new type: off first, the new one after.
        if o.default.is_some() {
            sql.push(format!("ALTER TABLE {t} ALTER COLUMN {c} DROP DEFAULT;"));
        }
        // Within a family the assignment cast refuses what does not fit (a too-long
        // text) where an explicit cast would cut it; across families it needs `USING`.
        sql.push(match family(&o.data_type) == family(&n.data_type) {
            true => format!("ALTER TABLE {t} ALTER COLUMN {c} TYPE {};", n.data_type),
            false => format!(
                "ALTER TABLE {t} ALTER COLUMN {c} TYPE {ty} USING {c}::{ty};",
                ty = n.data_type
            ),
        });
    }
    let dropped_already = retyped && o.default.is_some();
    match &n.default {
        Some(d) if o.default != n.default || dropped_already => sql.push(format!(
            "ALTER TABLE {t} ALTER COLUMN {c} SET DEFAULT {};",
            super::render::default_sql(d)
        )),
        None if o.default.is_some() && !dropped_already => {
            sql.push(format!("ALTER TABLE {t} ALTER COLUMN {c} DROP DEFAULT;"))
        }
        _ => {}
    }
    if o.not_null != n.not_null {
        if let (true, Some(d)) = (n.not_null, &n.default) {
            sql.push(format!(
                "UPDATE {t} SET {c} = {} WHERE {c} IS NULL;",
                super::render::default_sql(d)
            ));
        }
        sql.push(format!(
            "ALTER TABLE {t} ALTER COLUMN {c} {} NOT NULL;",
            if n.not_null { "SET" } else { "DROP" }
        ));
    }
    // An identity added starts after the values the rows already hold.
    match (&o.identity, &n.identity) {
        (None, Some(how)) => sql.extend([
            format!("ALTER TABLE {t} ALTER COLUMN {c} ADD GENERATED {how} AS IDENTITY;"),
            format!(
                "SELECT setval(pg_get_serial_sequence({}, {}), coalesce(max({c}), 0) + 1, false) FROM {t};",
                super::render::literal(t),
                super::render::literal(&n.name)
            ),
        ]),
        (Some(_), None) => sql.push(format!("ALTER TABLE {t} ALTER COLUMN {c} DROP IDENTITY;")),
        (Some(old), Some(how)) if old != how => {
            sql.push(format!("ALTER TABLE {t} ALTER COLUMN {c} SET GENERATED {how};"))
        }
        _ => {}
    }
    sql
}

/// The family of a type, for whether PostgreSQL casts between them by assignment.
fn family(data_type: &str) -> &str {
    match data_type.split('(').next().unwrap_or("") {
        "TEXT" | "VARCHAR" | "CHAR" => "text",
        "SMALLINT" | "INTEGER" | "BIGINT" | "SERIAL" | "BIGSERIAL" | "SMALLSERIAL" => "integer",
        "REAL" | "DOUBLE PRECISION" | "NUMERIC" => "number",
        other => other,
    }
}

/// PostgreSQL's default constraint names, which the declared schema does not spell.
fn constraint_name(table: &str, columns: &[String], suffix: &str) -> String {
    let name = match suffix {
        "pkey" => format!("{table}_pkey"),
        _ => format!("{table}_{}_{suffix}", columns.join("_")),
    };
    ident(&name.chars().take(63).collect::<String>())
}

fn drop_constraints(old: &TableDef, new: &TableDef) -> Vec<String> {
    let t = ident(&old.name);
    let mut sql = Vec::new();
    for fk in old
        .foreign_keys
        .iter()
        .filter(|f| !new.foreign_keys.contains(f))
    {
        sql.push(format!(
            "ALTER TABLE {t} DROP CONSTRAINT {};",
            constraint_name(&old.name, &fk.columns, "fkey")
        ));
    }
    for unique in old.uniques.iter().filter(|u| !new.uniques.contains(u)) {
        sql.push(format!(
            "ALTER TABLE {t} DROP CONSTRAINT {};",
            constraint_name(&old.name, unique, "key")
        ));
    }
    if old.primary_key != new.primary_key && !old.primary_key.is_empty() {
        sql.push(format!(
            "ALTER TABLE {t} DROP CONSTRAINT {};",
            constraint_name(&old.name, &[], "pkey")
        ));
    }
    sql
}

fn add_constraints(old: &TableDef, new: &TableDef) -> Vec<String> {
    let t = ident(&new.name);
    let mut sql = Vec::new();
    if old.primary_key != new.primary_key && !new.primary_key.is_empty() {
        sql.push(format!(
            "ALTER TABLE {t} ADD PRIMARY KEY ({});",
            column_list(&new.primary_key)
        ));
    }
    for unique in new.uniques.iter().filter(|u| !old.uniques.contains(u)) {
        sql.push(format!(
            "ALTER TABLE {t} ADD UNIQUE ({});",
            column_list(unique)
        ));
    }
    for fk in new
        .foreign_keys
        .iter()
        .filter(|f| !old.foreign_keys.contains(f))
    {
        sql.push(format!("ALTER TABLE {t} ADD {};", foreign_key(fk)));
    }
    sql
}
