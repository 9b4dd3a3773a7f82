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

/// The engines a migration may have a variant for, in the order of [`Checked::scripts`]:
/// `V<n>__<name>.sqlite.sql` and `V<n>__<name>.postgres.sql`.
pub const ENGINES: [&str; 2] = ["sqlite", "postgres"];

/// How an engine is named in messages, in the order of [`ENGINES`].
const ENGINE_NAMES: [&str; 2] = ["SQLite", "PostgreSQL"];

/// One valid migration: its version, name, and each engine's scripts.
#[derive(Debug, Clone)]
pub struct Checked {
    /// Version number.
    pub version: i32,
    /// Name after the `__`.
    pub name: String,
    /// What each engine of [`ENGINES`] runs; the same twice for a portable migration.
    pub scripts: [Scripts; 2],
}

/// The scripts one engine runs for a migration, with the files they come from.
#[derive(Debug, Clone)]
pub struct Scripts {
    /// The up script's file name.
    pub up_file: String,
    /// The up script.
    pub up: String,
    /// The down script and its file name, if there is one.
    pub down: Option<(String, String)>,
    /// A down script of comments only for a migration that does something, kept aside
    /// (it is no down script): its file name and text.
    pub blank_down: Option<(String, String)>,
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

/// A file that names a migration or a down script.
struct Entry {
    file: String,
    name: String,
    /// Its engine's index in [`ENGINES`]; `None` when portable.
    engine: Option<usize>,
    sql: String,
}

/// Checks `(file name, contents)` pairs: the usable migrations by version, and findings.
/// Files that do not look like migrations (`README.md`, `schema.sql`) are ignored.
///
/// A version has one portable up script (`V<n>__<name>.sql`) or one variant per engine
/// (`.sqlite.sql` and `.postgres.sql`, never beside a portable one). Each engine's down
/// script is its variant (`.sqlite.down.sql`) or else the portable `.down.sql`.
pub fn check_set(files: &[(String, String)]) -> (Vec<Checked>, Findings) {
    let mut findings = Findings::default();
    let mut ups: BTreeMap<i32, Vec<Entry>> = BTreeMap::new();
    let mut downs: BTreeMap<(i32, String), Vec<Entry>> = BTreeMap::new();
    for (file, sql) in files {
        let classified = classify(file);
        // A byte-order mark some editors write is no SQL: PostgreSQL would fail on it.
        let sql = sql.strip_prefix('\u{feff}').unwrap_or(sql).to_string();
        match classified {
            Classified::Ignored => {}
            Classified::Malformed(reason) => findings.errors.push(format!("{file}: {reason}")),
            Classified::Script {
                version,
                name,
                engine,
                down,
            } => {
                check_content(file, &sql, down, &mut findings.errors);
                let entry = Entry {
                    file: file.clone(),
                    name: name.clone(),
                    engine,
                    sql,
                };
                match down {
                    false => ups.entry(version).or_default().push(entry),
                    true => downs.entry((version, name)).or_default().push(entry),
                }
            }
        }
    }
    let mut checked = Vec::new();
    for (version, candidates) in ups {
        let names: Vec<String> = candidates.iter().map(|e| e.name.clone()).collect();
        let Some(ups) = pick_ups(version, candidates, &mut findings.errors) else {
            // Its down scripts belong to it: the error above is the one finding.
            for name in names {
                downs.remove(&(version, name));
            }
            continue;
        };
        let name = ups[0].name.clone();
        let id = format!("V{version}__{name}");
        let down_entries = downs.remove(&(version, name.clone())).unwrap_or_default();
        let mut scripts = Vec::new();
        let mut missing_downs = Vec::new();
        for (engine, up) in ups.into_iter().enumerate() {
            let file = up.file;
            // Comments only: a migration emptied on purpose, or meant for another
            // engine, which real histories keep. Applied and recorded like any other;
            // an empty file is a mistake (reported once for a portable file).
            let no_op = is_blank_sql(&up.sql);
            let first_of_file = engine == 0 || up.engine.is_some();
            if first_of_file && up.sql.trim().is_empty() {
                findings
                    .errors
                    .push(format!("{file}: is empty (no SQL statement)"));
            } else if first_of_file && no_op {
                findings.notes.push(format!(
                    "{file}: has no SQL statement (comments only); it is applied and recorded as a migration that changes nothing"
                ));
            }
            let Ok(mut down) = pick_down(&id, engine, &down_entries, &mut findings.errors) else {
                // Two down scripts for this engine: reported once, as that.
                scripts.push(Scripts {
                    up_file: file,
                    up: up.sql,
                    down: None,
                    blank_down: None,
                });
                continue;
            };
            let mut blank_down = None;
            // A down script of comments only reverts nothing: it must not pass as a
            // revert, unless its migration does nothing either.
            if let Some((down_file, _)) = down.as_ref().filter(|(_, sql)| is_blank_sql(sql)) {
                if !no_op {
                    let warning = format!(
                        "{down_file}: has no SQL statement (comments only); treated as no down script, so it is never rolled back as if it were"
                    );
                    if !findings.warnings.contains(&warning) {
                        findings.warnings.push(warning);
                    }
                    blank_down = down.take();
                }
            } else if down.is_none() {
                missing_downs.push(engine);
            }
            scripts.push(Scripts {
                up_file: file,
                up: up.sql,
                down,
                blank_down,
            });
        }
        match missing_downs[..] {
            [] => {}
            [engine] => findings.warnings.push(format!(
                "{id}: no down script for {} (expected migrations/{id}.{}.down.sql)",
                ENGINE_NAMES[engine], ENGINES[engine]
            )),
            _ => findings.warnings.push(format!(
                "{id}: no down script (expected migrations/{id}.down.sql)"
            )),
        }
        let Ok(scripts) = <[Scripts; 2]>::try_from(scripts) else {
            unreachable!("one script per engine")
        };
        checked.push(Checked {
            version,
            name,
            scripts,
        });
    }
    for entry in downs.values().flatten() {
        findings
            .errors
            .push(format!("{}: down script without an up script", entry.file));
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

/// The up script of each engine for `version`, from its candidate files: one portable
/// file, or one variant per engine with the same name. `None` (with the errors) otherwise.
fn pick_ups(version: i32, candidates: Vec<Entry>, errors: &mut Vec<String>) -> Option<[Entry; 2]> {
    let files = || {
        candidates
            .iter()
            .map(|e| e.file.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let names: std::collections::BTreeSet<&str> =
        candidates.iter().map(|e| e.name.as_str()).collect();
    let portable = candidates.iter().filter(|e| e.engine.is_none()).count();
    if names.len() > 1 || portable > 1 {
        errors.push(format!(
            "version {version} is used more than once: {}",
            files()
        ));
        return None;
    }
    if portable == 1 && candidates.len() > 1 {
        errors.push(format!(
            "{}: a migration is either portable (.sql) or has one variant per engine (.sqlite.sql and .postgres.sql), not both",
            files()
        ));
        return None;
    }
    let mut candidates = candidates;
    if portable == 1 {
        let only = candidates.remove(0);
        let copy = Entry {
            file: only.file.clone(),
            name: only.name.clone(),
            engine: None,
            sql: only.sql.clone(),
        };
        return Some([only, copy]);
    }
    candidates.sort_by_key(|e| e.engine);
    let [first, ..] = &candidates[..] else {
        return None;
    };
    if candidates.len() == 1 {
        let missing = 1 - first.engine.unwrap_or(0);
        errors.push(format!(
            "{}: has no {} variant (expected V{version}__{}.{}.sql beside it)",
            first.file, ENGINE_NAMES[missing], first.name, ENGINES[missing]
        ));
        return None;
    }
    let second = candidates.pop()?;
    let first = candidates.pop()?;
    Some([first, second])
}

/// The down script `engine` runs for migration `id`: its variant, else the portable one.
/// Both present is an error (reported, `Err`): which one reverts it would be a guess.
fn pick_down(
    id: &str,
    engine: usize,
    entries: &[Entry],
    errors: &mut Vec<String>,
) -> Result<Option<(String, String)>, ()> {
    let variant = entries.iter().find(|e| e.engine == Some(engine));
    let portable = entries.iter().find(|e| e.engine.is_none());
    match (variant, portable) {
        (Some(v), Some(p)) => {
            errors.push(format!(
                "{}, {}: both revert {id} on {}; keep one",
                p.file, v.file, ENGINE_NAMES[engine]
            ));
            Err(())
        }
        (Some(one), None) | (None, Some(one)) => Ok(Some((one.file.clone(), one.sql.clone()))),
        (None, None) => Ok(None),
    }
}

/// The mistakes in one script's contents, with its file name and line.
fn check_content(file: &str, sql: &str, down: bool, errors: &mut Vec<String>) {
    // SQLite stops reading a script at a NUL byte and would never get past it.
    if sql.contains('\0') {
        errors.push(format!(
            "{file}: contains a NUL byte (not an SQL text file?)"
        ));
    }
    if let Some((line, word)) = transaction_control(sql) {
        let already = match down {
            false => "each migration already runs in a transaction with its history row",
            true => "each down script already runs in a transaction",
        };
        errors.push(format!(
            "{file}: line {line}: `{word}` is not allowed; {already}"
        ));
    }
    if let Some((line, what)) = copy_stdio(sql) {
        errors.push(copy_error(file, line, what));
    }
    if let Some(line) = concurrently(sql).filter(|_| !no_transaction(sql)) {
        errors.push(concurrently_error(file, line));
    }
    if let Some(line) = names_history(sql) {
        errors.push(history_error(file, line));
    }
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
    /// An up or down script, portable or for one engine of [`ENGINES`].
    Script {
        version: i32,
        name: String,
        engine: Option<usize>,
        down: bool,
    },
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
    let expected = "expected V<number>__<snake_case_name>.sql or .down.sql (.sqlite.sql, .postgres.sql for one engine)";
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
    let (stem, engine) = match ENGINES
        .iter()
        .position(|e| stem.strip_suffix(e).is_some_and(|s| s.ends_with('.')))
    {
        Some(i) => (&stem[..stem.len() - ENGINES[i].len() - 1], Some(i)),
        None => (stem, None),
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
    Classified::Script {
        version,
        name: name.to_string(),
        engine,
        down,
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

impl Statement {
    /// Its text in `sql`, the script it was read from.
    pub(super) fn text<'s>(&self, sql: &'s str) -> &'s str {
        &sql[self.span.clone()]
    }
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
                // PostgreSQL's escape string `E'it\'s'`: a backslash escapes the quote.
                let escapes = c == b'\''
                    && i > 0
                    && matches!(bytes[i - 1], b'E' | b'e')
                    && (i == 1 || !(bytes[i - 2].is_ascii_alphanumeric() || bytes[i - 2] == b'_'));
                let mut j = i + 1;
                while j < bytes.len() && bytes[j] != c {
                    j += if escapes && bytes[j] == b'\\' { 2 } else { 1 };
                }
                let end = (j + 1).min(bytes.len());
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
