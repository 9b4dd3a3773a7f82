//! `migrations/schema.sql`, the declared schema: its statements with the line each starts
//! on, checked to be `CREATE TABLE` / `CREATE INDEX` / `CREATE TYPE … AS ENUM` /
//! `CREATE EXTENSION` only, and applied one by one so an error names its line.

use super::SchemaFileError;
use super::declared::{Declared, Kind};
use crate::db::DbConn;
use crate::url::DbKind;

/// The file's name inside the migrations directory.
pub const FILE_NAME: &str = "schema.sql";

/// One statement of the file and the line it starts on.
struct Statement<'a> {
    /// The line of its first code.
    line: usize,
    /// The line its text (`sql`, comments before it included) starts on.
    text_line: usize,
    sql: &'a str,
}

/// Splits `sql` at semicolons outside quotes and comments.
fn statements(sql: &str) -> Vec<Statement<'_>> {
    let mut out = Vec::new();
    let (mut start, mut line, mut start_line) = (0, 1, 1);
    let mut in_quote: Option<char> = None;
    let mut chars = sql.char_indices().peekable();
    let (mut in_comment, mut in_block) = (false, false);
    let mut previous = ' ';
    while let Some((i, c)) = chars.next() {
        let before = std::mem::replace(&mut previous, c);
        if c == '\n' {
            line += 1;
            in_comment = false;
            continue;
        }
        if in_block {
            in_block = !(before == '*' && c == '/');
            // The closing `/` starts nothing: `*/*` is not a new comment.
            previous = ' ';
            continue;
        }
        if in_comment {
            continue;
        }
        match (in_quote, c) {
            (Some(q), c) if c == q => in_quote = None,
            (Some(_), _) => {}
            (None, '\'' | '"') => in_quote = Some(c),
            (None, '-') if chars.peek().is_some_and(|(_, n)| *n == '-') => in_comment = true,
            (None, '/') if chars.peek().is_some_and(|(_, n)| *n == '*') => {
                chars.next();
                in_block = true;
            }
            (None, ';') => {
                out.push(Statement {
                    line: start_line,
                    text_line: start_line,
                    sql: &sql[start..i],
                });
                start = i + 1;
                start_line = line;
            }
            _ => {}
        }
    }
    out.push(Statement {
        line: start_line,
        text_line: start_line,
        sql: &sql[start..],
    });
    // Each statement starts at its first line of code, not at the comments before it.
    out.into_iter()
        .filter_map(|s| {
            let line = super::declared::first_code_line(s.sql, s.text_line)?;
            Some(Statement { line, ..s })
        })
        .collect()
}

/// The text of `dir/schema.sql` (named `label` in errors); `None` when there is none.
/// Anything but a readable regular file (a FIFO would block the reader) is an error.
pub fn read_file(dir: &std::path::Path, label: &str) -> Result<Option<String>, SchemaFileError> {
    let path = dir.join(FILE_NAME);
    let read = |source| SchemaFileError::Read {
        label: label.to_string(),
        source,
    };
    match std::fs::metadata(&path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(read(e)),
        Ok(meta) if !meta.is_file() => {
            return Err(SchemaFileError::NotAFile {
                label: label.to_string(),
            });
        }
        Ok(_) => {}
    }
    std::fs::read_to_string(&path).map(Some).map_err(read)
}

/// Writes `text` to `dir/schema.sql` all or nothing: a temporary file beside it, synced,
/// renamed over it.
pub fn write(dir: &std::path::Path, text: &str) -> std::io::Result<std::path::PathBuf> {
    let path = dir.join(FILE_NAME);
    crate::durable::write_file(&path, text.as_bytes())?;
    Ok(path)
}

/// Runs the declared schema on `conn` (a scratch database), statement by statement, and
/// returns what each statement declared. Errors read `<file>, line N: …`; a table,
/// index or type declared twice is one.
pub async fn apply(
    conn: &mut DbConn,
    sql: &str,
    file: &str,
) -> Result<Vec<Declared>, SchemaFileError> {
    // A byte-order mark some editors write is not SQL.
    let sql = sql.strip_prefix('\u{feff}').unwrap_or(sql);
    let all = statements(sql);
    let mut declared = Vec::new();
    for statement in &all {
        let code: String = statement
            .sql
            .lines()
            .map(|l| l.split("--").next().unwrap_or(""))
            .collect::<Vec<_>>()
            .join(" ");
        let words: Vec<&str> = code.split_whitespace().take(3).collect();
        match super::declared::parse(statement.sql, statement.text_line, statement.line) {
            Some(d) => declared.push(d),
            None => {
                return Err(SchemaFileError::At {
                    file: file.to_string(),
                    line: statement.line,
                    message: format!(
                        "only CREATE TABLE, CREATE [UNIQUE] INDEX, CREATE TYPE … AS ENUM and CREATE EXTENSION statements declare the schema (found `{}`)",
                        words.join(" ")
                    ),
                });
            }
        }
    }
    super::declared::check_unique(&declared, file)?;
    if conn.kind() == DbKind::Sqlite
        && let Some(d) = declared
            .iter()
            .find(|d| matches!(d.kind, Kind::Enum | Kind::Extension))
    {
        let message = match d.kind {
            Kind::Enum => {
                "is an enum type (CREATE TYPE … AS ENUM), which only PostgreSQL has; on SQLite declare its columns TEXT"
            }
            _ => "is a PostgreSQL extension (CREATE EXTENSION), which SQLite does not have",
        };
        return Err(SchemaFileError::At {
            file: file.to_string(),
            line: d.line,
            message: format!("{} {message}", d.describe()),
        });
    }
    // Any order: a statement that fails (a table referencing one declared further down)
    // is tried again after the others, until a pass makes no progress.
    let mut pending: Vec<&Statement<'_>> = all.iter().collect();
    loop {
        let mut failed = Vec::new();
        let mut first_error = None;
        for statement in &pending {
            if let Err(e) = conn.execute_script(statement.sql).await {
                first_error.get_or_insert_with(|| describe(&e, statement, file));
                failed.push(*statement);
            }
        }
        match first_error {
            None => return Ok(declared),
            Some(error) if failed.len() == pending.len() => return Err(error),
            Some(_) => pending = failed,
        }
    }
}

/// A statement's error at its line: where PostgreSQL points (counted from the statement's
/// first line), else the line that names what the message names (`relation "nowhere"
/// does not exist`, `no such collation sequence: C`), else the statement's first.
fn describe(e: &sqlx::Error, statement: &Statement<'_>, file: &str) -> SchemaFileError {
    let message = crate::db::describe_driver_error(e, None);
    let line = match crate::db::error_line(e, statement.sql) {
        Some(k) => statement.text_line + k - 1,
        None => message
            .split('"')
            .nth(1)
            .or_else(|| message.rsplit(": ").next().filter(|w| !w.contains(' ')))
            .and_then(|name| super::declared::line_naming(statement.sql, statement.text_line, name))
            .unwrap_or(statement.line),
    };
    SchemaFileError::At {
        file: file.to_string(),
        line,
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_know_their_lines() {
        let sql = "-- header\n\nCREATE TABLE a (x TEXT DEFAULT ';');\n\n-- b\nCREATE TABLE b (\n  y INT\n);\n";
        let found: Vec<usize> = statements(sql).iter().map(|s| s.line).collect();
        assert_eq!(found, [3, 6]);
    }
}
