//! A [`Schema`] as SQL both engines run: `CREATE TABLE` (parents before the tables that
//! reference them) and `CREATE INDEX`, in a stable order, so the file reads well in review
//! and changes only where the schema does.

use super::normalize::ident;
use super::{EnumType, ForeignKey, IndexDef, Schema, TableDef};

/// The statements that create `schema`, after a `header` of comment lines; what a table
/// has that the description does not hold follows it as a comment.
pub fn render(schema: &Schema, header: &str) -> String {
    render_with(schema, header, true)
}

/// The statements alone, for comparing two schemas: columns by name, since a column
/// added back by a down script comes last (`ADD COLUMN` cannot place it).
pub fn render_bare(schema: &Schema) -> String {
    let mut schema = schema.clone();
    for table in &mut schema.tables {
        *table = columns_by_name(table);
    }
    render_with(&schema, "", false)
}

/// `table` with its columns sorted by name.
pub fn columns_by_name(table: &TableDef) -> TableDef {
    let mut table = table.clone();
    table.columns.sort_by(|a, b| a.name.cmp(&b.name));
    table
}

fn render_with(schema: &Schema, header: &str, notes: bool) -> String {
    let mut out = String::new();
    for line in header.lines() {
        out.push_str(&format!("-- {line}\n").replace("-- \n", "--\n"));
    }
    if notes && !schema.undescribed.is_empty() {
        out.push_str(&format!(
            "\n-- Not described here (write it in a migration by hand): {}.\n",
            schema.undescribed.join(", ")
        ));
    }
    if !(schema.extensions.is_empty() && schema.enums.is_empty()) {
        out.push('\n');
    }
    for extension in &schema.extensions {
        out.push_str(&create_extension(extension));
        out.push('\n');
    }
    for enum_type in &schema.enums {
        out.push_str(&create_enum(enum_type));
        out.push('\n');
    }
    for table in in_dependency_order(schema) {
        out.push('\n');
        out.push_str(&create_table(table));
        if notes && !table.undescribed.is_empty() {
            out.push_str(&format!(
                "-- Not described here (write it in a migration by hand): {}.\n",
                join(&table.undescribed)
            ));
        }
        for index in &table.indexes {
            out.push_str(&create_index(&table.name, index));
            out.push('\n');
        }
    }
    out
}

/// `CREATE EXTENSION IF NOT EXISTS pg_trgm;`
pub fn create_extension(name: &str) -> String {
    format!("CREATE EXTENSION IF NOT EXISTS {};", ident(name))
}

/// `CREATE TYPE mood AS ENUM ('ok', 'happy');`
pub fn create_enum(enum_type: &EnumType) -> String {
    format!(
        "CREATE TYPE {} AS ENUM ({});",
        ident(&enum_type.name),
        enum_values(&enum_type.values)
    )
}

/// `'ok', 'happy'`: values as string literals.
pub fn enum_values(values: &[String]) -> String {
    values
        .iter()
        .map(|v| literal(v))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `value` as a SQL string literal, a quote doubled.
pub fn literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

/// `CREATE [UNIQUE] INDEX` for an index of `table`, with its method and operator
/// classes when they are not the defaults (`USING gin (s gin_trgm_ops)`).
pub fn create_index(table: &str, index: &IndexDef) -> String {
    let columns = index
        .columns
        .iter()
        .enumerate()
        .map(
            |(n, c)| match index.opclasses.get(n).filter(|o| !o.is_empty()) {
                Some(opclass) => format!("{} {}", ident(c), ident(opclass)),
                None => ident(c),
            },
        )
        .collect::<Vec<_>>()
        .join(", ");
    let using = match index.method.as_str() {
        "" => String::new(),
        method => format!("USING {} ", ident(method)),
    };
    format!(
        "CREATE {}INDEX {} ON {} {using}({columns});",
        if index.unique { "UNIQUE " } else { "" },
        ident(&index.name),
        ident(table),
    )
}

/// `a, "B", c`: column names as identifiers.
pub fn column_list(columns: &[String]) -> String {
    columns
        .iter()
        .map(|c| ident(c))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A default as SQL: a literal or keyword as it is, an expression (a function call) in
/// parentheses, which SQLite requires and PostgreSQL accepts.
pub fn default_sql(default: &str) -> String {
    let literal = default.starts_with('\'')
        || default.parse::<f64>().is_ok()
        || matches!(
            default,
            "TRUE" | "FALSE" | "NULL" | "CURRENT_TIMESTAMP" | "CURRENT_DATE" | "CURRENT_TIME"
        );
    match literal {
        true => default.to_string(),
        false => format!("({default})"),
    }
}

/// `FOREIGN KEY (…) REFERENCES … (…) [ON DELETE …] [ON UPDATE …]`.
pub fn foreign_key(fk: &ForeignKey) -> String {
    let mut line = format!(
        "FOREIGN KEY ({}) REFERENCES {} ({})",
        column_list(&fk.columns),
        ident(&fk.references),
        column_list(&fk.referenced_columns)
    );
    if fk.on_delete != "NO ACTION" {
        line.push_str(&format!(" ON DELETE {}", fk.on_delete));
    }
    if fk.on_update != "NO ACTION" {
        line.push_str(&format!(" ON UPDATE {}", fk.on_update));
    }
    line
}

/// `CREATE TABLE` with its columns and table constraints.
pub fn create_table(table: &TableDef) -> String {
    let mut lines: Vec<String> = table
        .columns
        .iter()
        .map(|c| {
            let mut line = format!("{} {}", ident(&c.name), c.data_type);
            if c.not_null {
                line.push_str(" NOT NULL");
            }
            if let Some(default) = &c.default {
                line.push_str(&format!(" DEFAULT {}", default_sql(default)));
            }
            if let Some(how) = &c.identity {
                line.push_str(&format!(" GENERATED {how} AS IDENTITY"));
            }
            line
        })
        .collect();
    if !table.primary_key.is_empty() {
        lines.push(format!("PRIMARY KEY ({})", column_list(&table.primary_key)));
    }
    for unique in &table.uniques {
        lines.push(format!("UNIQUE ({})", column_list(unique)));
    }
    for fk in &table.foreign_keys {
        lines.push(foreign_key(fk));
    }
    format!(
        "CREATE TABLE {} (\n    {}\n);\n",
        ident(&table.name),
        lines.join(",\n    ")
    )
}

/// Tables by name, each after the tables it references (a cycle keeps name order).
fn in_dependency_order(schema: &Schema) -> Vec<&TableDef> {
    dependency_order(schema.tables.iter().collect())
}

/// `tables` (by name), each after the tables among them it references (a cycle keeps
/// name order).
pub fn dependency_order(tables: Vec<&TableDef>) -> Vec<&TableDef> {
    super::order::parents_first(
        tables,
        |t| t.name.as_str(),
        |t| {
            t.foreign_keys
                .iter()
                .map(|fk| fk.references.clone())
                .collect()
        },
    )
}

/// The lines that differ between `old` and `new`, `-` for old and `+` for new, in order
/// (a longest-common-subsequence diff; schema files are small). A line inside a
/// `CREATE TABLE` (a column, a key) says which table: `+     email TEXT,  -- in users`.
pub fn line_diff(old: &str, new: &str) -> Vec<String> {
    let (a, b) = (in_tables(old), in_tables(new));
    let mut lcs = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i][j] = if a[i].0 == b[j].0 {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let (mut i, mut j, mut out) = (0, 0, Vec::new());
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i].0 == b[j].0 {
            i += 1;
            j += 1;
        } else if j < b.len() && (i == a.len() || lcs[i][j + 1] >= lcs[i + 1][j]) {
            out.push(format!("+ {}", b[j].1));
            j += 1;
        } else {
            out.push(format!("- {}", a[i].1));
            i += 1;
        }
    }
    out
}

/// Each line of `text`, and the same line for a message: one inside a `CREATE TABLE`
/// with the table it belongs to.
fn in_tables(text: &str) -> Vec<(&str, String)> {
    let mut table: Option<&str> = None;
    text.lines()
        .map(|line| {
            if let Some(rest) = line.strip_prefix("CREATE TABLE ") {
                table = rest.split_whitespace().next();
                return (line, line.to_string());
            }
            if line.starts_with(')') {
                table = None;
            }
            match table {
                Some(t) if line.starts_with(char::is_whitespace) => {
                    (line, format!("{line}  -- in {t}"))
                }
                _ => (line, line.to_string()),
            }
        })
        .collect()
}

/// Things the description does not hold, as a list for a comment or a message.
pub(super) fn join(things: &[super::Undescribed]) -> String {
    things
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}
