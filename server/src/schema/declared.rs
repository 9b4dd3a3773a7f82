//! What each statement of `schema.sql` declares and where: the table, index, enum type or
//! extension it creates,
//! and the line of each of its words, so that an error about a declared object names the
//! line of the statement, or of the clause, that causes it.

use super::{Schema, SchemaFileError, Undescribed};

/// What a statement of the file declares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `CREATE TABLE`.
    Table,
    /// `CREATE [UNIQUE] INDEX`.
    Index,
    /// `CREATE TYPE … AS ENUM` (PostgreSQL).
    Enum,
    /// `CREATE EXTENSION` (PostgreSQL).
    Extension,
}

/// A table, an index, an enum type or an extension, as one statement of the file declares it.
#[derive(Debug, Clone)]
pub struct Declared {
    /// What it is.
    pub kind: Kind,
    /// Its name, in lower case (the engines' names compare so in this module).
    pub name: String,
    /// The table: itself, or the table an index is on (lower case); an enum type's or an
    /// extension's name.
    pub table: String,
    /// The line its statement starts on.
    pub line: usize,
    tokens: Vec<Token>,
}

/// A word, quoted name, string literal or punctuation mark, with its line.
#[derive(Debug, Clone)]
struct Token {
    /// The text, unquoted; upper case for a bare word.
    text: String,
    line: usize,
    /// A bare word (a keyword or an unquoted name).
    bare: bool,
    /// A string literal (`'…'`): never a name nor a keyword.
    literal: bool,
}

/// The tokens of `sql`, whose first line is `first_line`.
fn tokens(sql: &str, first_line: usize) -> Vec<Token> {
    let mut out = Vec::new();
    let mut line = first_line;
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        let at = line;
        match c {
            '\n' => line += 1,
            c if c.is_whitespace() => {}
            '-' if chars.peek() == Some(&'-') => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        line += 1;
                        break;
                    }
                }
            }
            '/' if chars.peek() == Some(&'*') => {
                chars.next();
                let mut star = false;
                for c in chars.by_ref() {
                    if c == '\n' {
                        line += 1;
                    }
                    if star && c == '/' {
                        break;
                    }
                    star = c == '*';
                }
            }
            '\'' | '"' | '`' | '[' => {
                let end = if c == '[' { ']' } else { c };
                let text = quoted_text(&mut chars, end, &mut line);
                out.push(Token {
                    text,
                    line: at,
                    bare: false,
                    literal: c == '\'',
                });
            }
            c if c.is_alphanumeric() || c == '_' => {
                let mut text = c.to_string();
                while let Some(&n) = chars.peek() {
                    if !(n.is_alphanumeric() || n == '_' || n == '$') {
                        break;
                    }
                    text.push(n);
                    chars.next();
                }
                out.push(Token {
                    text: text.to_ascii_uppercase(),
                    line: at,
                    bare: true,
                    literal: false,
                });
            }
            c => out.push(Token {
                text: c.to_string(),
                line: at,
                bare: false,
                literal: false,
            }),
        }
    }
    out
}

/// The rest of a quoted name or literal up to `end` (consumed), a doubled quote kept as
/// one; counts the lines it spans.
fn quoted_text(
    chars: &mut std::iter::Peekable<std::str::Chars<'_>>,
    end: char,
    line: &mut usize,
) -> String {
    let mut text = String::new();
    while let Some(c) = chars.next() {
        if c == '\n' {
            *line += 1;
        }
        if c == end {
            if end != ']' && chars.peek() == Some(&end) {
                chars.next();
            } else {
                break;
            }
        }
        text.push(c);
    }
    text
}

/// The line of the first code in `sql` (whose first line is `first_line`), not a comment;
/// `None` for comments only.
pub fn first_code_line(sql: &str, first_line: usize) -> Option<usize> {
    tokens(sql, first_line).first().map(|t| t.line)
}

/// The line of the first mention of `name` in `sql` (whose first line is `first_line`)
/// after the statement's own name.
pub fn line_naming(sql: &str, first_line: usize, name: &str) -> Option<usize> {
    tokens(sql, first_line)
        .iter()
        .skip(3)
        .find(|t| t.names(name))
        .map(|t| t.line)
}

impl Token {
    fn is(&self, keyword: &str) -> bool {
        self.bare && self.text == keyword
    }

    /// Whether this token names `name` (compared without regard to ASCII case).
    fn names(&self, name: &str) -> bool {
        !self.literal && self.text.eq_ignore_ascii_case(name)
    }
}

/// What `sql` (a statement whose text starts on `text_line`, at `line`) declares: `None`
/// for anything but `CREATE TABLE` / `CREATE [UNIQUE] INDEX` / `CREATE TYPE … AS ENUM` /
/// `CREATE EXTENSION`.
pub fn parse(sql: &str, text_line: usize, line: usize) -> Option<Declared> {
    let tokens = tokens(sql, text_line);
    let mut at = 0;
    let next = |keyword: &str, at: &mut usize| {
        let found = tokens.get(*at).is_some_and(|t| t.is(keyword));
        if found {
            *at += 1;
        }
        found
    };
    if !next("CREATE", &mut at) {
        return None;
    }
    if next("EXTENSION", &mut at) {
        let _ = next("IF", &mut at) && next("NOT", &mut at) && next("EXISTS", &mut at);
        let name = qualified_name(&tokens, &mut at)?;
        return Some(Declared {
            kind: Kind::Extension,
            table: name.clone(),
            name,
            line,
            tokens,
        });
    }
    if next("TYPE", &mut at) {
        let name = qualified_name(&tokens, &mut at)?;
        if !(next("AS", &mut at) && next("ENUM", &mut at)) {
            return None;
        }
        return Some(Declared {
            kind: Kind::Enum,
            table: name.clone(),
            name,
            line,
            tokens,
        });
    }
    let index = next("UNIQUE", &mut at) || tokens.get(at).is_some_and(|t| t.is("INDEX"));
    if !(next("TABLE", &mut at) || next("INDEX", &mut at)) {
        return None;
    }
    let _ = next("IF", &mut at) && next("NOT", &mut at) && next("EXISTS", &mut at);
    let name = qualified_name(&tokens, &mut at)?;
    let table = match index {
        true => {
            if !tokens.get(at).is_some_and(|t| t.is("ON")) {
                return None;
            }
            at += 1;
            qualified_name(&tokens, &mut at)?
        }
        false => name.clone(),
    };
    Some(Declared {
        kind: if index { Kind::Index } else { Kind::Table },
        name,
        table,
        line,
        tokens,
    })
}

/// `name` or `schema.name` at `tokens[*at]`: the name, in lower case.
fn qualified_name(tokens: &[Token], at: &mut usize) -> Option<String> {
    let first = tokens.get(*at).filter(|t| !t.literal && t.text != "(")?;
    *at += 1;
    if tokens.get(*at).is_some_and(|t| t.text == ".") {
        let second = tokens.get(*at + 1)?;
        *at += 2;
        return Some(second.text.to_ascii_lowercase());
    }
    Some(first.text.to_ascii_lowercase())
}

impl Declared {
    /// What the statement is, for messages: `table users`, `index users_name`, `type mood`.
    pub fn describe(&self) -> String {
        let kind = match self.kind {
            Kind::Table => "table",
            Kind::Index => "index",
            Kind::Enum => "type",
            Kind::Extension => "extension",
        };
        format!("{kind} {}", self.name)
    }

    /// The line of the first bare `keyword` (then `name` after it, when given).
    fn line_of(&self, keyword: &str, name: Option<&str>) -> Option<usize> {
        self.tokens
            .windows(2)
            .find(|w| w[0].is(keyword) && name.is_none_or(|n| w[1].names(n)))
            .map(|w| w[0].line)
    }

    /// The line of the first mention of `name` after the statement's own name: a
    /// column's definition.
    fn line_of_name(&self, name: &str) -> Option<usize> {
        self.tokens
            .iter()
            .skip(3)
            .find(|t| t.names(name))
            .map(|t| t.line)
    }
}

/// The clause words that show where a thing the description cannot hold is written,
/// most telling first.
fn clause_words(what: &Undescribed) -> &'static [&'static str] {
    match what {
        Undescribed::PartialIndex(_) => &["WHERE", "DESC", "NULLS", "INCLUDE", "COLLATE", "WITH"],
        Undescribed::Check => &["CHECK", "EXCLUDE"],
        Undescribed::GeneratedOrIdentity(_) => &["GENERATED", "IDENTITY"],
        Undescribed::Generated => &["GENERATED", "AS"],
        Undescribed::Collate => &["COLLATE"],
        Undescribed::Autoincrement => &["AUTOINCREMENT"],
        Undescribed::StrictOrWithoutRowid => &["WITHOUT", "STRICT"],
        Undescribed::Trigger(_)
        | Undescribed::Partitioned { .. }
        | Undescribed::OnUndescribedColumn { .. } => &[],
    }
}

/// Checks what the file declared (`schema`, read back from the scratch database, and the
/// statements that made it) for what the declared schema cannot hold: a type only SQLite
/// takes, what the description cannot hold, a foreign key to an undeclared table. The
/// first problem in the file, as `<file>, line N: …`. A file for SQLite only may use its
/// types (`sqlite_only`).
pub fn check(
    schema: &Schema,
    declared: &[Declared],
    file: &str,
    sqlite_only: bool,
) -> Result<(), SchemaFileError> {
    let first_line = declared.iter().map(|d| d.line).min().unwrap_or(1);
    let statement = |table: &str| {
        declared
            .iter()
            .find(|d| d.kind == Kind::Table && d.name.eq_ignore_ascii_case(table))
    };
    let table_line = |table: &str| statement(table).map_or(first_line, |d| d.line);
    let mut problems: Vec<(usize, String)> = Vec::new();
    for column in schema
        .unshared_columns()
        .into_iter()
        .filter(|_| !sqlite_only)
    {
        let line = statement(column.table)
            .and_then(|d| d.line_of_name(column.column))
            .unwrap_or_else(|| table_line(column.table));
        problems.push((line, column.describe()));
    }
    for table in &schema.tables {
        for what in &table.undescribed {
            let index = match what {
                Undescribed::PartialIndex(name) => declared
                    .iter()
                    .find(|d| d.kind == Kind::Index && d.name.eq_ignore_ascii_case(name)),
                _ => None,
            };
            let within = index.or_else(|| statement(&table.name));
            let line = within.map_or(first_line, |d| {
                clause_words(what)
                    .iter()
                    .find_map(|w| d.line_of(w, None))
                    .unwrap_or(d.line)
            });
            problems.push((
                line,
                format!(
                    "table {} has {what}, which {file} cannot declare; write it in a migration by hand (`db-schema` lists it in a comment)",
                    table.name
                ),
            ));
        }
        for fk in &table.foreign_keys {
            if schema.table(&fk.references).is_some() {
                continue;
            }
            let line = statement(&table.name)
                .and_then(|d| d.line_of("REFERENCES", Some(&fk.references)))
                .unwrap_or_else(|| table_line(&table.name));
            problems.push((
                line,
                format!(
                    "table {} references table {}, which {file} does not declare",
                    table.name, fk.references
                ),
            ));
        }
    }
    match problems.into_iter().min_by_key(|(line, _)| *line) {
        Some((line, message)) => Err(SchemaFileError::At {
            file: file.to_string(),
            line,
            message,
        }),
        None => Ok(()),
    }
}

/// A table or index declared twice (`CREATE TABLE IF NOT EXISTS` would let the second
/// pass unnoticed): `<file>, line N: …` naming both lines.
pub fn check_unique(declared: &[Declared], file: &str) -> Result<(), SchemaFileError> {
    for (n, later) in declared.iter().enumerate() {
        if let Some(first) = declared[..n].iter().find(|d| d.name == later.name) {
            return Err(SchemaFileError::At {
                file: file.to_string(),
                line: later.line,
                message: format!(
                    "{} is declared again (first at line {}, as {}); one statement per table, index, type or extension",
                    later.describe(),
                    first.line,
                    first.describe()
                ),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_say_what_they_declare_and_where_each_word_is() {
        let sql = "CREATE TABLE IF NOT EXISTS \"Main\".\"Users\" (\n  id INT,\n  -- CHECK in a comment\n  note TEXT DEFAULT 'CHECK',\n  age INT CHECK (age > 0)\n)";
        let d = parse(sql, 10, 10).unwrap();
        assert_eq!((d.kind, d.name.as_str()), (Kind::Table, "users"));
        assert_eq!(d.line_of("CHECK", None), Some(14));
        assert_eq!(d.line_of_name("age"), Some(14));
        let i = parse("CREATE UNIQUE INDEX ix ON t (a)\nWHERE a > 0", 3, 3).unwrap();
        assert_eq!(
            (i.kind, i.name.as_str(), i.table.as_str()),
            (Kind::Index, "ix", "t")
        );
        let e = parse("CREATE TYPE \"Mood\" AS ENUM ('a', 'b')", 2, 2).unwrap();
        assert_eq!((e.kind, e.name.as_str()), (Kind::Enum, "mood"));
        assert!(parse("CREATE TYPE pair AS (a INT, b INT)", 1, 1).is_none());
        let x = parse("CREATE EXTENSION IF NOT EXISTS pg_trgm", 1, 1).unwrap();
        assert_eq!((x.kind, x.name.as_str()), (Kind::Extension, "pg_trgm"));
        assert_eq!(i.line_of("WHERE", None), Some(4));
        assert!(parse("DELETE FROM t", 1, 1).is_none());
        assert!(parse("CREATE VIEW v AS SELECT 1", 1, 1).is_none());
    }
}
