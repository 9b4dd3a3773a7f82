//! Pairing the source's tables and columns with the target's, in the order the target
//! needs them (parents before children).

use super::CopyError;
use super::schema::{self, Table};
use super::value::{self, Kind, Value};

/// How one table is copied: the columns (target order), each one's kind for fitting
/// and hashing, and the key the rows are read in.
pub struct Plan<'s> {
    /// The source table.
    pub source: &'s Table,
    /// The target table.
    pub target: Table,
    /// Column names, in the target's order.
    pub columns: Vec<String>,
    /// The same columns as the source spells them.
    pub source_columns: Vec<String>,
    /// Each column's kind for fitting and hashing.
    pub kinds: Vec<Kind>,
    /// Per column: the target refuses NULL.
    pub not_null: Vec<bool>,
    /// Whether both engines return rows in the same key order (else the checksum is a sum).
    pub ordered: bool,
    /// The key rows are read in (empty: no primary key), as the target spells it.
    pub key: Vec<String>,
    /// The same key as the source spells it.
    pub source_key: Vec<String>,
}

/// The name in `names` that `name` refers to: the same, or, failing that, the same but
/// for ASCII case (PostgreSQL folds unquoted names to lower case, SQLite keeps them).
pub fn matching<'n>(name: &str, names: impl Iterator<Item = &'n str> + Clone) -> Option<&'n str> {
    names
        .clone()
        .find(|n| *n == name)
        .or_else(|| names.clone().find(|n| n.eq_ignore_ascii_case(name)))
}

/// Pairs source and target tables, in the order the target needs them. Any table or
/// column on one side only, or of kinds that cannot hold the same values, is a problem:
/// every one is listed ([`CopyError::Misaligned`]).
pub fn plan(source: &[Table], target: Vec<Table>) -> Result<Vec<Plan<'_>>, CopyError> {
    let mut problems = Vec::new();
    let names = |tables: &[Table]| tables.iter().map(|t| t.name.clone()).collect::<Vec<_>>();
    let (source_names, target_names) = (names(source), names(&target));
    for t in source_names
        .iter()
        .filter(|s| matching(s, target_names.iter().map(String::as_str)).is_none())
    {
        problems.push(format!("table {t} is in the source but not in the target"));
    }
    for t in target_names
        .iter()
        .filter(|t| matching(t, source_names.iter().map(String::as_str)).is_none())
    {
        problems.push(format!("table {t} is in the target but not in the source"));
    }
    let mut plans = Vec::new();
    for table in schema::in_dependency_order(target) {
        let Some(source) = matching(&table.name, source_names.iter().map(String::as_str))
            .and_then(|name| source.iter().find(|s| s.name == name))
        else {
            continue;
        };
        let source_column = |name: &str| {
            matching(name, source.columns.iter().map(|c| c.name.as_str()))
                .and_then(|n| source.column(n))
        };
        let mut kinds = Vec::new();
        let mut source_columns = Vec::new();
        for column in &table.columns {
            let Some(from) = source_column(&column.name) else {
                problems.push(format!(
                    "column {}.{} is in the target but not in the source",
                    table.name, column.name
                ));
                continue;
            };
            if !column.kind.accepts(&from.kind) {
                problems.push(format!(
                    "column {}.{} holds {} values in the source and {} values in the target",
                    table.name,
                    column.name,
                    from.kind.family(),
                    column.kind.family()
                ));
                continue;
            }
            kinds.push(match column.kind {
                Kind::Any => from.kind.clone(),
                _ => column.kind.clone(),
            });
            source_columns.push(from.name.clone());
        }
        for c in source
            .columns
            .iter()
            .filter(|c| matching(&c.name, table.columns.iter().map(|c| c.name.as_str())).is_none())
        {
            problems.push(format!(
                "column {}.{} is in the source but not in the target",
                table.name, c.name
            ));
        }
        if !problems.is_empty() {
            continue;
        }
        let source_key: Option<Vec<String>> = table
            .key
            .iter()
            .map(|k| source_column(k).map(|c| c.name.clone()))
            .collect();
        let (key, source_key) = match source_key {
            Some(source_key) => (table.key.clone(), source_key),
            None => (Vec::new(), Vec::new()),
        };
        // Engines order these key types alike; other keys (dates spelled differently in
        // SQLite text, enums, padded CHAR) are summed in any order instead.
        let ordered = !key.is_empty()
            && key.iter().all(|k| {
                let i = table.columns.iter().position(|c| &c.name == k);
                i.is_some_and(|i| {
                    matches!(
                        kinds[i],
                        Kind::Integer(_)
                            | Kind::Real(_)
                            | Kind::Numeric(_)
                            | Kind::Text(_)
                            | Kind::Blob
                            | Kind::Boolean
                    )
                })
            });
        plans.push(Plan {
            not_null: table.columns.iter().map(|c| c.not_null).collect(),
            ordered,
            source,
            columns: table.columns.iter().map(|c| c.name.clone()).collect(),
            source_columns,
            kinds,
            key,
            source_key,
            target: table,
        });
    }
    match problems.is_empty() {
        true => Ok(plans),
        false => Err(CopyError::Misaligned(problems)),
    }
}

/// The row's primary key for a message (`id=7`), or its position when there is none.
pub fn row_key(plan: &Plan<'_>, row: &[Value], ordinal: u64) -> String {
    if plan.key.is_empty() {
        return format!("#{ordinal}");
    }
    plan.key
        .iter()
        .filter_map(|k| {
            let i = plan.columns.iter().position(|c| c == k)?;
            Some(format!("{k}={}", value::key_text(&row[i])))
        })
        .collect::<Vec<_>>()
        .join(", ")
}
