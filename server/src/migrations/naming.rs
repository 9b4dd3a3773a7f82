//! The rules for a set of migration files: names, versions, pairs, content. Standard
//! library only, so that `server/build.rs` checks the embedded set with this same code.

use std::collections::BTreeMap;

/// A line in a SQLite migration that makes the runner turn foreign keys off around it and
/// run `PRAGMA foreign_key_check` before commit (SQLite's table-rebuild procedure).
pub const FOREIGN_KEYS_OFF: &str = "-- db: foreign-keys-off";

/// A line among a migration's (or down script's) leading comments that makes the runner
/// run its statements one at a time outside a transaction, under the migration lock, and
/// record it in the history afterwards (`CREATE INDEX CONCURRENTLY`, `VACUUM`).
pub const NO_TRANSACTION: &str = "-- db: no-transaction";

/// One valid migration: its version, name, up script and down script.
#[derive(Debug, Clone)]
pub struct Checked {
    /// Version number.
    pub version: i32,
    /// Name after the `__`.
    pub name: String,
    /// The up script.
    pub up: String,
    /// The down script, if there is one.
    pub down: Option<String>,
}

/// What is wrong with a set, one line per finding.
#[derive(Debug, Clone, Default)]
pub struct Findings {
    /// Mistakes that make the set unusable: every command refuses it.
    pub errors: Vec<String>,
    /// Shortcomings `db-check` reports (a migration without a down script).
    pub warnings: Vec<String>,
    /// Worth knowing, not wrong: `db-check` prints them and still passes.
    pub notes: Vec<String>,
}

/// Checks `(file name, contents)` pairs: the usable migrations by version, and findings.
/// Files that do not look like migrations (`README.md`, `schema.sql`) are ignored.
pub fn check_set(files: &[(String, String)]) -> (Vec<Checked>, Findings) {
    let mut findings = Findings::default();
    let mut ups: BTreeMap<i32, Vec<(String, String, String)>> = BTreeMap::new();
    let mut downs: BTreeMap<(i32, String), String> = BTreeMap::new();
    for (file, sql) in files {
        let classified = classify(file);
        // A byte-order mark some editors write is no SQL: PostgreSQL would fail on it.
        let sql = sql.strip_prefix('\u{feff}').unwrap_or(sql).to_string();
        let sql = &sql;
        // SQLite stops reading a script at a NUL byte and would never get past it.
        if matches!(classified, Classified::Up(..) | Classified::Down(..)) && sql.contains('\0') {
            findings.errors.push(format!(
                "{file}: contains a NUL byte (not an SQL text file?)"
            ));
        }
        match classified {
            Classified::Ignored => {}
            Classified::Malformed(reason) => findings.errors.push(format!("{file}: {reason}")),
            Classified::Up(version, name) => {
                ups.entry(version)
                    .or_default()
                    .push((file.clone(), name, sql.clone()));
            }
            Classified::Down(version, name) => {
                downs.insert((version, name), sql.clone());
            }
        }
    }
    let mut checked = Vec::new();
    for (version, mut candidates) in ups {
        if candidates.len() > 1 {
            let names: Vec<_> = candidates.iter().map(|(file, ..)| file.as_str()).collect();
            findings.errors.push(format!(
                "version {version} is used more than once: {}",
                names.join(", ")
            ));
            continue;
        }
        let (file, name, up) = candidates.remove(0);
        // Comments only: a migration emptied on purpose, or meant for another engine,
        // which real histories keep. Applied and recorded like any other; an empty file
        // is a mistake.
        let no_op = is_blank_sql(&up);
        if up.trim().is_empty() {
            findings
                .errors
                .push(format!("{file}: is empty (no SQL statement)"));
        } else if no_op {
            findings.notes.push(format!(
                "{file}: has no SQL statement (comments only); it is applied and recorded as a migration that changes nothing"
            ));
        }
        if let Some((line, word)) = transaction_control(&up) {
            findings.errors.push(format!(
                "{file}: line {line}: `{word}` is not allowed; each migration already runs in a transaction with its history row"
            ));
        }
        if let Some((line, what)) = copy_stdio(&up) {
            findings.errors.push(copy_error(&file, line, what));
        }
        if let Some(line) = concurrently(&up).filter(|_| !no_transaction(&up)) {
            findings.errors.push(concurrently_error(&file, line));
        }
        if let Some(line) = names_history(&up) {
            findings.errors.push(history_error(&file, line));
        }
        let mut down = downs.remove(&(version, name.clone()));
        // A down script of comments only reverts nothing: it must not pass as a revert,
        // unless its migration does nothing either.
        if down.as_deref().is_some_and(is_blank_sql) && !no_op {
            findings.warnings.push(format!(
                "V{version}__{name}.down.sql: has no SQL statement (comments only); treated as no down script, so it is never rolled back as if it were"
            ));
            down = None;
        } else if down.is_none() {
            findings.warnings.push(format!(
                "V{version}__{name}: no down script (expected migrations/V{version}__{name}.down.sql)"
            ));
        }
        checked.push(Checked {
            version,
            name,
            up,
            down,
        });
    }
    let all_downs = downs
        .iter()
        .map(|((version, name), down)| (*version, name, down));
    let paired = checked
        .iter()
        .filter_map(|m| Some((m.version, &m.name, m.down.as_ref()?)));
    for (version, name, down) in all_downs.chain(paired) {
        let file = format!("V{version}__{name}.down.sql");
        if let Some((line, word)) = transaction_control(down) {
            findings.errors.push(format!(
                "{file}: line {line}: `{word}` is not allowed; each down script already runs in a transaction"
            ));
        }
        if let Some((line, what)) = copy_stdio(down) {
            findings.errors.push(copy_error(&file, line, what));
        }
        if let Some(line) = concurrently(down).filter(|_| !no_transaction(down)) {
            findings.errors.push(concurrently_error(&file, line));
        }
        if let Some(line) = names_history(down) {
            findings.errors.push(history_error(&file, line));
        }
    }
    for (version, name) in downs.keys() {
        findings.errors.push(format!(
            "V{version}__{name}.down.sql: down script without an up script"
        ));
    }
    for (expected, migration) in (1..).zip(&checked) {
        if migration.version != expected {
            findings.errors.push(format!(
                "V{}__{}: versions must be contiguous from 1; V{expected} is missing",
                migration.version, migration.name
            ));
            break;
        }
    }
    (checked, findings)
}

/// The finding for a `COPY` from or to the client in `file`.
fn copy_error(file: &str, line: usize, what: &str) -> String {
    format!(
        "{file}: line {line}: `{what}` is not allowed; a migration has no client to stream rows from or to (use `INSERT … VALUES`, or `COPY` from a file on the server)"
    )
}

enum Classified {
    Ignored,
    Malformed(String),
    Up(i32, String),
    Down(i32, String),
}

/// Whether `file` is named like a migration (well-formed or not): such a file must be a
/// readable regular file.
pub fn is_migration_like(file: &str) -> bool {
    !matches!(classify(file), Classified::Ignored)
}

/// Sorts a file name: a migration, a down script, a malformed attempt at one, or not ours.
fn classify(file: &str) -> Classified {
    let mut chars = file.chars();
    let first = chars.next();
    let second = chars.next();
    // `V` followed by anything but a letter (`V2`, `V-2`, `V__`, `V２`) is an attempt at a
    // migration; `views.sql` is not.
    let versioned =
        matches!(first, Some('V' | 'v')) && second.is_some_and(|c| !c.is_ascii_alphabetic());
    let numbered = first.is_some_and(|c| c.is_ascii_digit());
    let sql = file.to_ascii_lowercase().ends_with(".sql");
    let spaced = first.is_some_and(char::is_whitespace) && sql;
    if !(versioned || spaced || numbered && sql) {
        return Classified::Ignored;
    }
    let expected = "expected V<number>__<snake_case_name>.sql or .down.sql";
    let malformed = |what: &str| Classified::Malformed(format!("{what}; {expected}"));
    if spaced {
        return malformed("not a migration name (it starts with a space)");
    }
    let Some(stem) = file.strip_suffix(".sql") else {
        return malformed("not a migration name (the extension must be `.sql`, lowercase)");
    };
    let (stem, down) = match stem.strip_suffix(".down") {
        Some(stem) => (stem, true),
        None => (stem, false),
    };
    let Some(rest) = stem.strip_prefix('V') else {
        return malformed("not a migration name (it must start with a capital `V`)");
    };
    let Some((version, name)) = rest.split_once("__") else {
        return malformed("not a migration name (two underscores must follow the version)");
    };
    if version.len() > 1 && version.starts_with('0') {
        return malformed("not a migration name (the version has a leading zero)");
    }
    let Some(version) = version.parse::<i32>().ok().filter(|v| *v > 0) else {
        return malformed(
            "not a migration name (the version must be a number from 1 to 2147483647)",
        );
    };
    if !is_snake_case(name) {
        return malformed("not a migration name (the name must be snake_case)");
    }
    if down {
        Classified::Down(version, name.to_string())
    } else {
        Classified::Up(version, name.to_string())
    }
}

/// `lower_snake_case`: starts with a letter, then letters, digits and single underscores.
pub fn is_snake_case(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && !name.contains("__")
        && !name.ends_with('_')
}

/// Whether `sql` holds nothing but white space, comments and semicolons.
fn is_blank_sql(sql: &str) -> bool {
    let mut rest = sql;
    loop {
        rest = rest.trim_start_matches(|c: char| c.is_whitespace() || c == ';');
        if let Some(after) = rest.strip_prefix("--") {
            rest = after.split_once('\n').map_or("", |(_, next)| next);
        } else if let Some(after) = rest.strip_prefix("/*") {
            rest = after.split_once("*/").map_or("", |(_, next)| next);
        } else {
            return rest.is_empty();
        }
    }
}

/// One statement of a script as the rules see it: the line of its first word and its
/// words, upper-cased, outside strings, quoted names, comments and dollar-quoted bodies.
pub(super) struct Statement {
    pub(super) line: usize,
    pub(super) words: Vec<String>,
    /// Its text: from after the previous `;` to before its own.
    span: std::ops::Range<usize>,
}

/// The statements of `sql`. The `BEGIN … END` body of a SQLite trigger belongs to its
/// `CREATE TRIGGER`.
pub(super) fn statements(sql: &str) -> Vec<Statement> {
    let bytes = sql.as_bytes();
    let mut all: Vec<Statement> = Vec::new();
    let mut current = Statement {
        line: 0,
        words: Vec::new(),
        span: 0..0,
    };
    let mut i = 0;
    let mut line = 1;
    // Inside a trigger body: whether the next word starts one of its statements.
    let mut in_trigger = false;
    let mut body_start = false;
    while i < bytes.len() {
        let c = bytes[i];
        match c {
            b'\n' => {
                line += 1;
                i += 1;
            }
            b'-' if bytes.get(i + 1) == Some(&b'-') => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                let end = sql[i + 2..]
                    .find("*/")
                    .map_or(bytes.len(), |e| i + 2 + e + 2);
                line += sql[i..end].matches('\n').count();
                i = end;
            }
            b'\'' | b'"' | b'`' => {
                let end = sql[i + 1..]
                    .find(c as char)
                    .map_or(bytes.len(), |e| i + 1 + e + 1);
                line += sql[i..end].matches('\n').count();
                i = end;
                body_start = false;
            }
            b'$' => {
                // A dollar-quoted body: $tag$ … $tag$.
                let tag_end = sql[i + 1..]
                    .find(|ch: char| !(ch.is_ascii_alphanumeric() || ch == '_'))
                    .map(|e| i + 1 + e);
                match tag_end {
                    Some(t) if bytes[t] == b'$' => {
                        let tag = &sql[i..=t];
                        let end = sql[t + 1..]
                            .find(tag)
                            .map_or(bytes.len(), |e| t + 1 + e + tag.len());
                        line += sql[i..end].matches('\n').count();
                        i = end;
                    }
                    _ => i += 1,
                }
                body_start = false;
            }
            b';' if in_trigger => {
                body_start = true;
                i += 1;
            }
            b';' => {
                let next = Statement {
                    line: 0,
                    words: Vec::new(),
                    span: i + 1..i + 1,
                };
                let done = std::mem::replace(&mut current, next);
                if !done.words.is_empty() {
                    all.push(Statement {
                        span: done.span.start..i,
                        ..done
                    });
                }
                i += 1;
            }
            c if c.is_ascii_alphabetic() || c == b'_' => {
                let end = sql[i..]
                    .find(|ch: char| !(ch.is_ascii_alphanumeric() || ch == '_'))
                    .map_or(bytes.len(), |e| i + e);
                let word = sql[i..end].to_ascii_uppercase();
                if current.words.is_empty() {
                    current.line = line;
                }
                if in_trigger && body_start && word == "END" {
                    in_trigger = false;
                }
                body_start = false;
                // CREATE [TEMP|TEMPORARY] TRIGGER … BEGIN: its body holds `;` and ends in
                // END (a PostgreSQL trigger has no such body).
                if !in_trigger
                    && word == "BEGIN"
                    && current.words.first().is_some_and(|w| w == "CREATE")
                    && current.words.iter().take(4).any(|w| w == "TRIGGER")
                {
                    in_trigger = true;
                    body_start = true;
                }
                current.words.push(word);
                i = end;
            }
            c if c.is_ascii_whitespace() => i += 1,
            _ => {
                body_start = false;
                i += 1;
            }
        }
    }
    if !current.words.is_empty() {
        all.push(Statement {
            span: current.span.start..sql.len(),
            ..current
        });
    }
    all
}

/// The statements of `sql` one by one, each with its byte offset, for running them one
/// at a time (a PostgreSQL script sent whole runs in one implicit transaction).
pub fn split_statements(sql: &str) -> Vec<(usize, &str)> {
    statements(sql)
        .into_iter()
        .map(|s| (s.span.start, &sql[s.span]))
        .collect()
}

/// Whether `sql` asks, among its leading comments, to run outside a transaction
/// ([`NO_TRANSACTION`]).
pub fn no_transaction(sql: &str) -> bool {
    sql.lines()
        .map(str::trim)
        .take_while(|l| l.is_empty() || l.starts_with("--"))
        .any(|l| l == NO_TRANSACTION)
}

/// The line of the first statement that PostgreSQL refuses inside a transaction block
/// because of its `CONCURRENTLY` (`CREATE INDEX`, `DROP INDEX`, `REINDEX`, `DETACH
/// PARTITION`; `REFRESH MATERIALIZED VIEW CONCURRENTLY` runs in one).
fn concurrently(sql: &str) -> Option<usize> {
    statements(sql).into_iter().find_map(|s| {
        (s.words.first().is_some_and(|w| w != "REFRESH")
            && s.words.iter().any(|w| w == "CONCURRENTLY"))
        .then_some(s.line)
    })
}

/// The finding for a `CONCURRENTLY` statement in `file` that lacks [`NO_TRANSACTION`].
fn concurrently_error(file: &str, line: usize) -> String {
    format!(
        "{file}: line {line}: `CONCURRENTLY` cannot run inside a transaction; add the line `{NO_TRANSACTION}` to the file's leading comments"
    )
}

/// The line of the first statement that names the history table
/// (`refinery_schema_history`): a script that changes it makes the history lie.
fn names_history(sql: &str) -> Option<usize> {
    statements(sql)
        .into_iter()
        .find(|s| s.words.iter().any(|w| w == "REFINERY_SCHEMA_HISTORY"))
        .map(|s| s.line)
}

/// The finding for a script in `file` that names the history table at `line`.
fn history_error(file: &str, line: usize) -> String {
    format!(
        "{file}: line {line}: migrations must not touch the history table refinery_schema_history; the runner keeps it"
    )
}

/// The first statement that controls transactions (`BEGIN`, `COMMIT`, `ROLLBACK`, `END`,
/// `SAVEPOINT`, `RELEASE`, `START TRANSACTION`), with its line: it would end the
/// transaction a migration runs in.
fn transaction_control(sql: &str) -> Option<(usize, String)> {
    const CONTROL: &[&str] = &[
        "BEGIN",
        "COMMIT",
        "ROLLBACK",
        "END",
        "SAVEPOINT",
        "RELEASE",
        "START",
    ];
    statements(sql).into_iter().find_map(|s| {
        let first = s.words.first()?;
        CONTROL
            .contains(&first.as_str())
            .then(|| (s.line, first.clone()))
    })
}

/// The first `COPY … FROM STDIN` or `COPY … TO STDOUT`, with its line: the runner has no
/// client-side stream to feed or drain, and would wait for it forever.
fn copy_stdio(sql: &str) -> Option<(usize, &'static str)> {
    statements(sql).into_iter().find_map(|s| {
        if s.words.first().map(String::as_str) != Some("COPY") {
            return None;
        }
        s.words
            .windows(2)
            .find_map(|pair| match [pair[0].as_str(), pair[1].as_str()] {
                ["FROM", "STDIN"] => Some((s.line, "COPY … FROM STDIN")),
                ["TO", "STDOUT"] => Some((s.line, "COPY … TO STDOUT")),
                _ => None,
            })
    })
}

/// The line of the first `SET [SESSION | LOCAL] <parameter> …` in `sql` (`parameter` in
/// lower case, e.g. `statement_timeout`): a migration that changes its own session.
pub fn sets_parameter(sql: &str, parameter: &str) -> Option<usize> {
    statements(sql).into_iter().find_map(|s| {
        let mut words = s.words.iter().map(String::as_str);
        if words.next() != Some("SET") {
            return None;
        }
        let name = match words.next()? {
            "SESSION" | "LOCAL" => words.next()?,
            name => name,
        };
        name.eq_ignore_ascii_case(parameter).then_some(s.line)
    })
}
