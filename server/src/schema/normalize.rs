//! One spelling for what the engines write differently: `int8` and `BIGINT`,
//! `character varying(80)` and `VARCHAR(80)`, `'a'::text` and `'a'`, `true` and `TRUE`.

/// The canonical spelling of a column type, from SQLite's declared type or PostgreSQL's
/// `format_type`.
pub fn data_type(raw: &str) -> String {
    let upper = raw.trim().to_ascii_uppercase();
    let collapsed = upper.split_whitespace().collect::<Vec<_>>().join(" ");
    // `NUMERIC(12, 2)` → `NUMERIC(12,2)`; the arguments apart from the name.
    let (base, args) = match collapsed.split_once('(') {
        Some((base, rest)) => {
            let (args, tail) = rest.split_once(')').unwrap_or((rest, ""));
            let args: String = args.chars().filter(|c| !c.is_whitespace()).collect();
            let base = format!("{} {}", base.trim(), tail.trim());
            (base.trim().to_string(), Some(args))
        }
        None => (collapsed, None),
    };
    let name = match base.as_str() {
        "INT" | "INT4" | "INTEGER" => "INTEGER",
        "INT8" | "BIGINT" => "BIGINT",
        "INT2" | "SMALLINT" => "SMALLINT",
        "BOOL" | "BOOLEAN" => "BOOLEAN",
        "FLOAT8" | "DOUBLE" | "DOUBLE PRECISION" => "DOUBLE PRECISION",
        "FLOAT4" | "REAL" => "REAL",
        "CHARACTER VARYING" | "VARCHAR" => "VARCHAR",
        "CHARACTER" | "CHAR" | "BPCHAR" => "CHAR",
        "DECIMAL" | "NUMERIC" => "NUMERIC",
        "TIMESTAMP WITHOUT TIME ZONE" | "TIMESTAMP" => "TIMESTAMP",
        "TIMESTAMP WITH TIME ZONE" | "TIMESTAMPTZ" => "TIMESTAMPTZ",
        "TIME WITHOUT TIME ZONE" | "TIME" => "TIME",
        "TIME WITH TIME ZONE" | "TIMETZ" => "TIMETZ",
        other => other,
    };
    match args {
        Some(args) => format!("{name}({args})"),
        None => name.to_string(),
    }
}

/// For a type SQLite takes but PostgreSQL does not have: the shared type to use instead.
pub fn unshared(data_type: &str) -> Option<&'static str> {
    let base = data_type.split('(').next().unwrap_or("").trim();
    Some(match base {
        "DATETIME" => "TIMESTAMP (or TIMESTAMPTZ)",
        "BLOB" => "BYTEA",
        "STRING" | "CLOB" | "NVARCHAR" | "NCHAR" | "LONGTEXT" | "MEDIUMTEXT" | "TINYTEXT" => {
            "TEXT or VARCHAR(n)"
        }
        "TINYINT" | "MEDIUMINT" => "SMALLINT or INTEGER",
        "UNSIGNED BIG INT" => "BIGINT",
        "" => "a type (SQLite allows none, PostgreSQL does not)",
        _ => return None,
    })
}

/// The canonical spelling of a default expression: PostgreSQL's casts of literals
/// dropped, one pair of outer parentheses dropped, keywords upper-case.
pub fn default(raw: &str) -> String {
    let mut text = raw.trim().to_string();
    loop {
        let before = text.clone();
        text = strip_outer_parens(&text).to_string();
        let (value, cast) = strip_cast(&text);
        // PostgreSQL writes a negative default as `'-1'::integer`.
        let numeric_cast = cast.is_some_and(|c| {
            matches!(
                c.to_ascii_lowercase().as_str(),
                "integer" | "bigint" | "smallint" | "numeric" | "real" | "double precision"
            )
        });
        text = match value.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')) {
            Some(number) if numeric_cast && number.parse::<f64>().is_ok() => number.to_string(),
            _ => value.to_string(),
        };
        if text == before {
            break;
        }
    }
    // PostgreSQL casts literals inside expressions too: `lower('X'::text)`.
    text = strip_inner_casts(&text);
    // SQLite keeps `-(1)` as written; PostgreSQL prints `-1`.
    if let Some(inner) = text.strip_prefix("-(").and_then(|t| t.strip_suffix(')'))
        && inner.parse::<f64>().is_ok()
    {
        text = format!("-{inner}");
    }
    match text.to_ascii_uppercase().as_str() {
        keyword @ ("TRUE" | "FALSE" | "NULL" | "CURRENT_TIMESTAMP" | "CURRENT_DATE"
        | "CURRENT_TIME") => keyword.to_string(),
        "NOW()" => "CURRENT_TIMESTAMP".into(),
        "'T'" | "'TRUE'" => "TRUE".into(),
        "'F'" | "'FALSE'" => "FALSE".into(),
        _ => text,
    }
}

/// `lower('X'::text)` → `lower('X')`: every cast outside quotes, with its type name.
fn strip_inner_casts(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut quoted = false;
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        if c == '\'' {
            quoted = !quoted;
        }
        if !quoted && rest.starts_with("::") {
            rest = &rest[2..];
            let name_len = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '"' | '[' | ']')))
                .unwrap_or(rest.len());
            rest = &rest[name_len..];
            for tail in [
                " varying",
                " precision",
                " without time zone",
                " with time zone",
            ] {
                if let Some(after) = rest.strip_prefix(tail) {
                    rest = after;
                }
            }
            continue;
        }
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    out
}

/// `(x)` → `x` when the parentheses enclose the whole text.
fn strip_outer_parens(text: &str) -> &str {
    let Some(inner) = text.strip_prefix('(').and_then(|t| t.strip_suffix(')')) else {
        return text;
    };
    let mut depth = 0i32;
    let mut quoted = false;
    for c in inner.chars() {
        match c {
            '\'' => quoted = !quoted,
            '(' if !quoted => depth += 1,
            ')' if !quoted => {
                depth -= 1;
                if depth < 0 {
                    return text;
                }
            }
            _ => {}
        }
    }
    inner
}

/// `'a'::text` → (`'a'`, `text`): a trailing cast outside quotes, and its type.
fn strip_cast(text: &str) -> (&str, Option<&str>) {
    let Some(at) = text.rfind("::") else {
        return (text, None);
    };
    let (value, cast) = (&text[..at], &text[at + 2..]);
    let is_type = !cast.is_empty()
        && cast
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, ' ' | '_' | '"' | '[' | ']'));
    // The cast must follow the whole value, not sit inside a quoted string.
    if is_type && value.matches('\'').count() % 2 == 0 {
        (value, Some(cast))
    } else {
        (text, None)
    }
}

/// `name`, or `"Name"` when it needs quotes (upper case, spaces, a reserved word).
pub fn ident(name: &str) -> String {
    let plain = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && !RESERVED.contains(&name);
    if plain {
        name.to_string()
    } else {
        quoted(name)
    }
}

pub use crate::db::quoted;

/// Words that cannot name a table or column without quotes on one of the engines.
const RESERVED: &[&str] = &[
    "all",
    "and",
    "any",
    "as",
    "asc",
    "between",
    "by",
    "case",
    "check",
    "column",
    "constraint",
    "create",
    "default",
    "delete",
    "desc",
    "distinct",
    "drop",
    "else",
    "end",
    "exists",
    "foreign",
    "from",
    "group",
    "having",
    "in",
    "index",
    "insert",
    "into",
    "is",
    "join",
    "key",
    "limit",
    "not",
    "null",
    "of",
    "offset",
    "on",
    "or",
    "order",
    "primary",
    "references",
    "select",
    "set",
    "table",
    "then",
    "to",
    "union",
    "unique",
    "update",
    "user",
    "using",
    "values",
    "when",
    "where",
    "with",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_and_defaults_have_one_spelling() {
        assert_eq!(data_type("int8"), "BIGINT");
        assert_eq!(data_type("character varying(80)"), "VARCHAR(80)");
        assert_eq!(data_type("numeric(12, 2)"), "NUMERIC(12,2)");
        assert_eq!(data_type("timestamp with time zone"), "TIMESTAMPTZ");
        assert_eq!(data_type("Bool"), "BOOLEAN");
        assert_eq!(default("'abc'::text"), "'abc'");
        assert_eq!(default("'{}'::jsonb"), "'{}'");
        assert_eq!(default("(0)"), "0");
        assert_eq!(default("true"), "TRUE");
        assert_eq!(default("'a::b'"), "'a::b'");
        assert_eq!(default("now()"), "CURRENT_TIMESTAMP");
        assert_eq!(default("'-1'::integer"), "-1");
        assert_eq!(default("'5'::text"), "'5'");
        assert_eq!(default("(-(1))"), "-1");
        assert_eq!(default("lower('X'::text)"), "lower('X')");
        assert_eq!(default("'a::b'::character varying"), "'a::b'");
        assert_eq!(ident("notes"), "notes");
        assert_eq!(ident("Users"), "\"Users\"");
        assert_eq!(ident("order"), "\"order\"");
    }
}
