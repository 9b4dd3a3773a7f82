//! What a migration does that locks a PostgreSQL table under traffic, or breaks the
//! previous release during a rolling deploy (the rules squawk and strong_migrations
//! apply). Notes, not errors: on an empty or small table each is fine, and SQLite locks
//! the whole database for any write anyway. A statement whose previous line is
//! [`LOCK_OK`] is accepted knowingly.

use super::naming::statements;

/// The comment that accepts the statement on the next line (`-- db: lock-ok: small table`).
pub const LOCK_OK: &str = "-- db: lock-ok";

/// `(line, what)` for each statement of `sql` that would lock or break, skipping tables
/// the same script creates (they hold no rows yet) and statements accepted with
/// [`LOCK_OK`] on the line before.
pub fn lock_risks(sql: &str) -> Vec<(usize, &'static str)> {
    let lines: Vec<&str> = sql.lines().collect();
    let accepted = |line: usize| {
        line >= 2
            && lines
                .get(line - 2)
                .is_some_and(|l| l.trim_start().starts_with(LOCK_OK))
    };
    let all = statements(sql);
    // Tables this script creates hold no rows yet. Not `CREATE TABLE IF NOT EXISTS`: the
    // table may be there already, full.
    let created: Vec<Relation> = all
        .iter()
        .filter(|s| {
            s.words.first().is_some_and(|w| w == "CREATE")
                && s.words.iter().take(4).any(|w| w == "TABLE")
                && !s.words.iter().take(7).any(|w| w == "EXISTS")
        })
        .filter_map(|s| Relation::after(s.text(sql), "TABLE", &[]))
        .collect();
    let mut out = Vec::new();
    for statement in &all {
        let w: Vec<&str> = statement.words.iter().map(String::as_str).collect();
        let has = |seq: &[&str]| w.windows(seq.len()).any(|x| x == seq);
        let new_table = |after: &str| {
            Relation::after(statement.text(sql), after, &["ONLY", "IF", "EXISTS"])
                .is_some_and(|t| created.iter().any(|c| c.same(&t)))
        };
        let risk = match w.as_slice() {
            ["CREATE", "INDEX", ..] | ["CREATE", "UNIQUE", "INDEX", ..]
                if !has(&["CONCURRENTLY"]) && !new_table("ON") =>
            {
                Some(
                    "`CREATE INDEX` without `CONCURRENTLY` blocks writes to its table while it builds; on a table with rows use `CREATE INDEX CONCURRENTLY` in a `-- db: no-transaction` migration",
                )
            }
            ["ALTER", "TABLE", ..] if new_table("TABLE") => None,
            // `ALTER [COLUMN] c TYPE …`, `… SET DATA TYPE …`.
            ["ALTER", "TABLE", rest @ ..] if rest.contains(&"ALTER") && has(&["TYPE"]) => Some(
                "changing a column's type rewrites the table under an exclusive lock; add a new column, backfill it, and switch over instead",
            ),
            ["ALTER", "TABLE", ..] if has(&["SET", "NOT", "NULL"]) => Some(
                "`SET NOT NULL` scans the table under an exclusive lock; add a `CHECK (… IS NOT NULL) NOT VALID` constraint, `VALIDATE` it in a later migration, then set NOT NULL",
            ),
            ["ALTER", "TABLE", ..]
                if has(&["ADD"])
                    && has(&["NOT", "NULL"])
                    && !has(&["DEFAULT"])
                    && !has(&["CONSTRAINT"]) =>
            {
                Some(
                    "a new `NOT NULL` column without a default fails on a table with rows; give it a default",
                )
            }
            ["ALTER", "TABLE", ..]
                if (has(&["FOREIGN", "KEY"]) || has(&["REFERENCES"]))
                    && !has(&["NOT", "VALID"]) =>
            {
                Some(
                    "a foreign key added without `NOT VALID` scans both tables while it blocks writes; add it `NOT VALID` and `VALIDATE CONSTRAINT` it in a later migration",
                )
            }
            ["ALTER", "TABLE", ..] if has(&["RENAME"]) || has(&["DROP", "COLUMN"]) => Some(
                "renaming or dropping a column or a table breaks the previous release while a rolling deploy runs both; stop using it in one release, drop it in a later one",
            ),
            ["ALTER", "TABLE", ..]
                if has(&["ADD"])
                    && !has(&["ADD", "GENERATED"])
                    && (["SERIAL", "BIGSERIAL", "SMALLSERIAL", "IDENTITY", "STORED"]
                        .iter()
                        .any(|k| w.contains(k))) =>
            {
                Some(
                    "a new serial, identity or stored generated column fills every row: the table is rewritten under an exclusive lock; add a plain column and backfill it in batches",
                )
            }
            ["ALTER", "TABLE", ..] if has(&["CHECK"]) && !has(&["NOT", "VALID"]) => Some(
                "a `CHECK` constraint added without `NOT VALID` scans the table while it blocks writes; add it `NOT VALID` and `VALIDATE CONSTRAINT` it in a later migration",
            ),
            ["ALTER", "TABLE", ..]
                if (has(&["ADD", "UNIQUE"])
                    || has(&["ADD", "PRIMARY", "KEY"])
                    || (has(&["ADD", "CONSTRAINT"])
                        && (has(&["UNIQUE"]) || has(&["PRIMARY", "KEY"]))))
                    && !has(&["USING", "INDEX"]) =>
            {
                Some(
                    "a `UNIQUE` or primary key constraint builds its index while it blocks writes; `CREATE UNIQUE INDEX CONCURRENTLY` first (in a `-- db: no-transaction` migration), then `ADD CONSTRAINT … USING INDEX`",
                )
            }
            ["ALTER", "TABLE", ..]
                if has(&["ADD"])
                    && has(&["DEFAULT"])
                    && [
                        "RANDOM",
                        "GEN_RANDOM_UUID",
                        "CLOCK_TIMESTAMP",
                        "UUID_GENERATE_V4",
                        "NEXTVAL",
                    ]
                    .iter()
                    .any(|f| w.contains(f)) =>
            {
                Some(
                    "a new column whose default is volatile (`random()`, `gen_random_uuid()`, `clock_timestamp()`) rewrites the table under an exclusive lock; add it without a default, set the default, and backfill in batches",
                )
            }
            ["DROP", "TABLE", ..] => Some(
                "dropping a table breaks the previous release while a rolling deploy runs both; stop using it in one release, drop it in a later one",
            ),
            ["DROP", "INDEX", ..] if !has(&["CONCURRENTLY"]) => Some(
                "`DROP INDEX` without `CONCURRENTLY` blocks reads and writes of its table; use `DROP INDEX CONCURRENTLY` in a `-- db: no-transaction` migration",
            ),
            ["REINDEX", ..] if !has(&["CONCURRENTLY"]) => Some(
                "`REINDEX` without `CONCURRENTLY` blocks writes while it rebuilds; use `REINDEX … CONCURRENTLY` in a `-- db: no-transaction` migration",
            ),
            ["VACUUM", ..] if has(&["FULL"]) => Some(
                "`VACUUM FULL` rewrites the table under an exclusive lock, blocking reads and writes",
            ),
            ["CLUSTER", ..] => Some(
                "`CLUSTER` rewrites the table under an exclusive lock, blocking reads and writes",
            ),
            ["LOCK", ..] => Some(
                "`LOCK TABLE` holds the lock until the migration commits, blocking the traffic it conflicts with",
            ),
            _ => None,
        };
        if accepted(statement.line) {
            continue;
        }
        if let Some(risk) = risk {
            out.push((statement.line, risk));
        }
    }
    out
}

/// A table as PostgreSQL resolves its name: unquoted folded to lower case, quoted kept
/// as written, with its schema when one is written.
#[derive(Debug)]
struct Relation {
    schema: Option<String>,
    name: String,
}

impl Relation {
    /// The relation named after the first `keyword` of `text` (a statement), past the
    /// words in `skip` (`ONLY`, `IF EXISTS`).
    fn after(text: &str, keyword: &str, skip: &[&str]) -> Option<Self> {
        let tokens = tokens(text);
        let at = tokens
            .iter()
            .position(|t| matches!(t, Token::Word(w) if w.eq_ignore_ascii_case(keyword)))?;
        let mut rest = tokens[at + 1..].iter().skip_while(
            |t| matches!(t, Token::Word(w) if skip.iter().any(|s| w.eq_ignore_ascii_case(s))),
        );
        let first = rest.next()?.identifier()?;
        let mut rest = rest.peekable();
        Some(match rest.peek() {
            Some(Token::Dot) => {
                rest.next();
                Self {
                    schema: Some(first),
                    name: rest.next()?.identifier()?,
                }
            }
            _ => Self {
                schema: None,
                name: first,
            },
        })
    }

    /// Whether both name the same table (a name without a schema matches either).
    fn same(&self, other: &Self) -> bool {
        self.name == other.name
            && (self.schema.is_none() || other.schema.is_none() || self.schema == other.schema)
    }
}

/// What [`Relation::after`] reads a statement as.
enum Token {
    /// A bare word, as written.
    Word(String),
    /// A quoted name.
    Quoted(String),
    Dot,
    Other,
}

impl Token {
    /// The name this token is, as PostgreSQL resolves it.
    fn identifier(&self) -> Option<String> {
        match self {
            Self::Word(w) => Some(w.to_ascii_lowercase()),
            Self::Quoted(q) => Some(q.clone()),
            Self::Dot | Self::Other => None,
        }
    }
}

/// The tokens of one statement (comments and strings are skipped as one token).
fn tokens(text: &str) -> Vec<Token> {
    let mut out = Vec::new();
    let mut chars = text.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        match c {
            '-' if text[i..].starts_with("--") => {
                while chars.next_if(|&(_, c)| c != '\n').is_some() {}
            }
            '"' => {
                let mut name = String::new();
                while let Some((_, c)) = chars.next() {
                    if c == '"' {
                        // `""` inside a quoted name is one quote.
                        if chars.next_if(|&(_, c)| c == '"').is_none() {
                            break;
                        }
                    }
                    name.push(c);
                }
                out.push(Token::Quoted(name));
            }
            '\'' => {
                while chars.next_if(|&(_, c)| c != '\'').is_some() {}
                chars.next();
                out.push(Token::Other);
            }
            '.' => out.push(Token::Dot),
            c if c.is_alphabetic() || c == '_' => {
                let mut word = c.to_string();
                while let Some((_, c)) =
                    chars.next_if(|&(_, c)| c.is_alphanumeric() || c == '_' || c == '$')
                {
                    word.push(c);
                }
                out.push(Token::Word(word));
            }
            c if c.is_whitespace() => {}
            _ => out.push(Token::Other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::lock_risks;

    #[test]
    fn statements_that_lock_a_table_with_rows_are_named_with_their_line() {
        let lines = |sql: &str| {
            lock_risks(sql)
                .into_iter()
                .map(|(l, _)| l)
                .collect::<Vec<_>>()
        };
        assert_eq!(lines("CREATE INDEX a_b ON a (b);"), [1]);
        assert!(lines("-- db: no-transaction\nCREATE INDEX CONCURRENTLY a_b ON a (b);").is_empty());
        // A table made by the same migration has no rows yet.
        assert!(lines("CREATE TABLE a (b INT);\nCREATE INDEX a_b ON a (b);\nALTER TABLE a ADD COLUMN c INT NOT NULL;").is_empty());
        assert_eq!(
            lines(
                "SELECT 1;\nALTER TABLE a ALTER COLUMN b TYPE BIGINT;\nALTER TABLE a ALTER COLUMN b SET NOT NULL;\nALTER TABLE a ADD COLUMN c INT NOT NULL;\nALTER TABLE a ADD CONSTRAINT f FOREIGN KEY (b) REFERENCES p (id);\nALTER TABLE a RENAME COLUMN b TO d;"
            ),
            [2, 3, 4, 5, 6]
        );
        assert!(lines("ALTER TABLE a ADD COLUMN c INT NOT NULL DEFAULT 0;\nALTER TABLE a ADD CONSTRAINT f FOREIGN KEY (b) REFERENCES p (id) NOT VALID;").is_empty());
        assert_eq!(
            lines(
                "ALTER TABLE a ADD CONSTRAINT c CHECK (b > 0);\nALTER TABLE a ADD CONSTRAINT u UNIQUE (b);\nALTER TABLE a ADD COLUMN u UUID DEFAULT gen_random_uuid();\nDROP TABLE old;\nDROP INDEX a_b;\nREINDEX TABLE a;\nVACUUM FULL a;\nCLUSTER a;\nLOCK TABLE a;\nALTER TABLE a ALTER b TYPE TEXT;\nALTER TABLE a ADD COLUMN n BIGSERIAL;\nALTER TABLE a ADD COLUMN g INT GENERATED ALWAYS AS (b * 2) STORED;"
            ),
            [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]
        );
        // Names as PostgreSQL resolves them: quoted, schema-qualified, temporary tables.
        assert!(lines("CREATE TABLE \"Items\" (b INT);\nCREATE INDEX i ON \"Items\" (b);\nCREATE TEMP TABLE t (b INT);\nCREATE INDEX t_b ON t (b);\nCREATE TABLE app.x (b INT);\nALTER TABLE ONLY app.x ADD COLUMN c INT NOT NULL;\nCREATE INDEX x_b ON x (b);").is_empty());
        // Another table of the same name elsewhere, or one that may exist already.
        assert_eq!(
            lines(
                "CREATE TABLE \"Items\" (b INT);\nCREATE INDEX i ON items (b);\nCREATE TABLE app.x (b INT);\nCREATE INDEX x_b ON other.x (b);\nCREATE TABLE IF NOT EXISTS y (b INT);\nCREATE INDEX y_b ON y (b);"
            ),
            [2, 4, 6]
        );
        // The safe rewrites, and a statement accepted knowingly on the line before.
        assert!(
            lines(
                "ALTER TABLE a ADD CONSTRAINT c CHECK (b > 0) NOT VALID;\nALTER TABLE a VALIDATE CONSTRAINT c;\nALTER TABLE a ADD CONSTRAINT u UNIQUE USING INDEX a_u;\nALTER TABLE a ADD COLUMN t TIMESTAMPTZ DEFAULT now();\n-- db: no-transaction\nDROP INDEX CONCURRENTLY a_b;\n-- db: lock-ok: a has ten rows\nCREATE INDEX a_c ON a (c);"
            )
            .is_empty()
        );
    }
}
