//! `db-check`, the migration doctor: the files, the applied checksums, and a round trip
//! (up, down, up) of every migration on a scratch database.

use std::collections::BTreeSet;

mod catalog;
mod snapshot;

use snapshot::Snapshot;

use crate::config::DbSettings;
use crate::db::{DbConn, DbError, DbPool, OpenMode};
use crate::migrations::{self, MigrationError, MigrationSet};
use crate::scratch::{Scratch, ScratchError};
use crate::url::DatabaseUrl;

/// Why `db-check` could not finish (its findings are not errors: they are its result).
#[derive(Debug, thiserror::Error)]
pub enum DoctorError {
    /// The database failed.
    #[error(transparent)]
    Db(#[from] DbError),
    /// Reading the migration history failed.
    #[error(transparent)]
    Migration(#[from] MigrationError),
    /// The scratch database could not be made or removed.
    #[error(transparent)]
    Scratch(#[from] ScratchError),
}

impl From<sqlx::Error> for DoctorError {
    fn from(e: sqlx::Error) -> Self {
        Self::Db(e.into())
    }
}

/// Everything `db-check` finds wrong, one line each; empty when all is well.
///
/// Checks the files (names, contiguous versions, down scripts), the applied checksums
/// of the configured database when it exists, and a round trip on a scratch database:
/// for each migration, up, down and up again must give back the same schema.
pub async fn check(settings: &DbSettings, set: &MigrationSet) -> Result<Vec<String>, DoctorError> {
    let set = &set.for_engine(settings.url.kind());
    let mut problems: Vec<String> = set.problems().to_vec();

    let exists = settings.url.sqlite_path().is_none_or(|p| p.exists());
    // A PostgreSQL database that does not exist yet has no history to check, like a
    // SQLite file that is not there.
    let opened = match exists && settings.url != DatabaseUrl::SqliteMemory {
        false => None,
        true => match DbPool::open(settings, OpenMode::MustExist).await {
            Err(DbError::Driver(e)) if crate::db::is_missing_database(&e) => None,
            other => Some(other?),
        },
    };
    if let Some(pool) = opened {
        let mut conn = pool.acquire().await?;
        let status = migrations::status(&mut conn, set).await?;
        drop(conn);
        pool.close().await;
        for applied in &status.applied {
            let id = format!("V{}__{}", applied.version, applied.name);
            match applied.state {
                migrations::AppliedState::Ok => {}
                migrations::AppliedState::Divergent => problems.push(format!(
                    "{id}: edited after it was applied (checksum in the database differs from the file)"
                )),
                migrations::AppliedState::Unknown => problems.push(format!(
                    "{id}: applied to the database but missing from migrations/"
                )),
                migrations::AppliedState::Failed => problems.push(format!(
                    "{id}: failed part-way outside a transaction and is not resolved (db-resolve)"
                )),
            }
        }
    }

    problems.extend(round_trip(settings, set).await?);
    Ok(problems)
}

/// At most this many round-trip problems are reported; the migrations after the last
/// one are said to be unchecked.
const MOST_PROBLEMS: usize = 20;

/// Up, down, up for each migration in turn on scratch databases, comparing the schema
/// after each down script with the one before its migration (two reads per migration:
/// after the down script, and after applying the migration again, which is the next
/// one's "before").
/// A problem does not end the check: the scratch database is rebuilt up to the
/// migration concerned and the round trip goes on with the next one, so one run names
/// every independent problem (until one migration does not apply at all: the ones after
/// it build on it).
///
/// Public for checking the migrations on another engine too (`db-check --also`): on a
/// scratch database of `settings`' engine and server, each migration as that engine runs
/// it.
pub async fn round_trip(
    settings: &DbSettings,
    set: &MigrationSet,
) -> Result<Vec<String>, DoctorError> {
    let set = &set.for_engine(settings.url.kind());
    let mut problems = Vec::new();
    let mut from = 0;
    loop {
        let scratch = Scratch::create(settings).await?;
        let result = round_trip_from(&scratch.settings, set, from, &mut problems).await;
        // The round trip's own error first: a failed drop comes second.
        let removed = scratch.remove().await;
        let next = result?;
        removed?;
        let Some(next) = next else {
            return Ok(problems);
        };
        let left = set.migrations().len() - next;
        if problems.len() >= MOST_PROBLEMS && left > 0 {
            problems.push(format!(
                "stopped after {MOST_PROBLEMS} round-trip problems: the last {left} migration(s) were not checked"
            ));
            return Ok(problems);
        }
        from = next;
    }
}

/// The round trip of the migrations from index `from` on, on a database brought to the
/// one before it. Returns where to go on from when a problem left the database in a state
/// the next migration cannot start from, `None` when done.
async fn round_trip_from(
    settings: &DbSettings,
    set: &MigrationSet,
    from: usize,
    problems: &mut Vec<String>,
) -> Result<Option<usize>, DoctorError> {
    let all = set.migrations();
    let pool = DbPool::open(settings, OpenMode::Create).await?;
    let mut conn = pool.acquire().await?;
    without_durability(&mut conn).await?;
    // The first read, before any migration, fixes which schema is described on
    // PostgreSQL: a migration may create one that `search_path` then finds first.
    let catalog = &mut None;
    let mut before = Snapshot::take(&mut conn, catalog).await?;
    if let Some(previous) = from.checked_sub(1).map(|i| &all[i]) {
        // Applied before, by the run that found the problem: it applies.
        migrations::step_to(&mut conn, set, previous.version).await?;
        before = Snapshot::take(&mut conn, catalog).await?;
    }
    let mut go_on = None;
    for (at, migration) in all.iter().enumerate().skip(from) {
        let id = migration.id();
        if let Err(e) = migrations::step_to(&mut conn, set, migration.version).await {
            // Its advice (db-resolve) is for a real database, not this scratch one.
            let e = match e {
                MigrationError::FailedOutside { name, cause, .. } => {
                    format!("migration {name} failed outside a transaction: {cause}")
                }
                e => e.to_string(),
            };
            let after = all.len() - at - 1;
            let unchecked = match after {
                0 => String::new(),
                n => format!(" (the {n} migration(s) after it were not checked: they build on it)"),
            };
            problems.push(format!(
                "{id}: does not apply on a scratch database after the migrations before it (yours is untouched): {e}{unchecked}"
            ));
            break;
        }
        if migration.down.is_none() {
            before = Snapshot::take(&mut conn, catalog).await?;
            continue;
        }
        if let Err(e) = migrations::step_to(&mut conn, set, migration.version - 1).await {
            let file = migration.down_file.as_deref().unwrap_or_default();
            problems.push(format!("{file}: fails: {e}"));
            // Rolled back with its transaction: the round trip goes on from the schema
            // its migration left. Outside one, what ran of it stays: rebuild.
            let down = migration.down.as_deref().unwrap_or_default();
            if !migrations::no_transaction(down)
                && migrations::status(&mut conn, set).await?.current_version == migration.version
            {
                before = Snapshot::take(&mut conn, catalog).await?;
                continue;
            }
            go_on = Some(at + 1);
            break;
        }
        let reverted = Snapshot::take(&mut conn, catalog).await?;
        if let Some((before, reverted)) = before.differs(&reverted).await? {
            problems.push(format!(
                "{} does not fully revert {id}: {}",
                migration.down_file.as_deref().unwrap_or_default(),
                differences(&before, &reverted, "leaves behind", "removes")
            ));
            go_on = Some(at + 1);
            break;
        }
        if let Err(e) = migrations::step_to(&mut conn, set, migration.version).await {
            problems.push(format!(
                "{id}: does not apply again after its down script: {e}"
            ));
            go_on = Some(at + 1);
            break;
        }
        // The schema it leaves, read once: after its down script gave back the schema
        // before it, applying it again starts from where the first time did.
        before = Snapshot::take(&mut conn, catalog).await?;
    }
    drop(conn);
    pool.close().await;
    Ok(go_on.filter(|&next| next < all.len()))
}

/// A scratch database is thrown away: its commits need not reach the disk, which is
/// most of a long round trip's time (three commits per migration). PostgreSQL: for this
/// session and, as the database's default, for every later one (a migration's `RESET
/// ALL` goes back to it); SQLite: for this connection, which runs the migrations.
async fn without_durability(conn: &mut DbConn) -> Result<(), sqlx::Error> {
    match conn {
        DbConn::Postgres(c) => {
            let name: String = sqlx::query_scalar("SELECT current_database()")
                .fetch_one(&mut **c)
                .await?;
            let sql = format!(
                "ALTER DATABASE {} SET synchronous_commit = off; SET synchronous_commit = off",
                crate::db::quoted(&name)
            );
            sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                .execute(&mut **c)
                .await
                .map(drop)
        }
        DbConn::Sqlite(c) => sqlx::raw_sql("PRAGMA synchronous = OFF")
            .execute(&mut **c)
            .await
            .map(drop),
    }
}

/// How schema `now` differs from `then`, for a message: the objects only in one of
/// them (at most [`SHOWN`] of each, and how many more), each cut to a readable length.
/// A long line whose object is also on the other side (the same view, function or
/// column, changed) is cut around where the two first differ, not after its head.
fn differences(then: &BTreeSet<String>, now: &BTreeSet<String>, added: &str, gone: &str) -> String {
    let new: Vec<&String> = now.difference(then).collect();
    let old: Vec<&String> = then.difference(now).collect();
    let mut detail = Vec::new();
    if !new.is_empty() {
        detail.push(format!("{added} {}", listed(&new, &old)));
    }
    if !old.is_empty() {
        detail.push(format!("{gone} {}", listed(&old, &new)));
    }
    detail.join("; ")
}

/// `lines` for a message, each one line of at most [`WIDTH`] characters, cut around its
/// first difference from the line of the same object in `others` when it has one.
fn listed(lines: &[&String], others: &[&String]) -> String {
    let one_line = |line: &str| {
        let line = line.split_whitespace().collect::<Vec<_>>().join(" ");
        line.trim_end_matches(';').to_string()
    };
    let mut shown: Vec<String> = lines
        .iter()
        .take(SHOWN)
        .map(|line| {
            let line = one_line(line);
            let chars: Vec<char> = line.chars().collect();
            if chars.len() <= WIDTH {
                return line;
            }
            let key = object_of(&line);
            let twin = others
                .iter()
                .map(|other| one_line(other))
                .find(|other| object_of(other) == key);
            let head = key.chars().count();
            let from = twin
                .map(|twin| {
                    line.chars()
                        .zip(twin.chars())
                        .take_while(|(a, b)| a == b)
                        .count()
                })
                .filter(|&same| same > head + CONTEXT)
                .map_or(0, |same| same - CONTEXT);
            if from == 0 {
                return format!("{}…", chars[..WIDTH].iter().collect::<String>());
            }
            // The object's name first, itself cut when it would take most of the line
            // (a function with many arguments), then the text around the difference.
            let key: String = match head > WIDTH / 2 {
                true => format!("{}…", key.chars().take(WIDTH / 2).collect::<String>()),
                false => key,
            };
            let cut: String = chars[from..]
                .iter()
                .take(WIDTH - key.chars().count())
                .collect();
            format!("{key} …{cut}…")
        })
        .collect();
    if lines.len() > SHOWN {
        shown.push(format!("and {} more", lines.len() - SHOWN));
    }
    shown.join("; ")
}

/// The object a schema line is about: what comes before its first `": "` (`view v`,
/// `function f(integer)`), or its first two words (`column t.c`).
fn object_of(line: &str) -> String {
    match line.split_once(": ") {
        Some((object, _)) => format!("{object}:"),
        None => line.split(' ').take(2).collect::<Vec<_>>().join(" "),
    }
}

/// How long a line of a message may be, in characters.
const WIDTH: usize = 120;

/// How much of what two lines share is shown before where they differ.
const CONTEXT: usize = 30;

/// How many differing objects a message names.
const SHOWN: usize = 5;

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    #[test]
    fn a_long_changed_object_is_shown_where_it_differs() {
        let body = |rate: &str| {
            format!(
                "function price_with_tax(numeric): CREATE OR REPLACE FUNCTION public.price_with_tax(p numeric) \
                 RETURNS numeric LANGUAGE sql AS $function$SELECT round(p * {rate}, 2)$function$"
            )
        };
        let then = BTreeSet::from([body("1.19")]);
        let now = BTreeSet::from([body("1.20")]);
        let message = super::differences(&then, &now, "leaves behind", "removes");
        assert!(
            message.contains("round(p * 1.20, 2)") && message.contains("round(p * 1.19, 2)"),
            "{message}"
        );
        assert!(
            message.starts_with("leaves behind function price_with_tax(numeric): …"),
            "{message}"
        );
        // Short lines are shown whole.
        let then = BTreeSet::from(["column t.c integer NULL".to_string()]);
        let now = BTreeSet::from(["column t.c bigint NULL".to_string()]);
        assert_eq!(
            super::differences(&then, &now, "now has", "no longer has"),
            "now has column t.c bigint NULL; no longer has column t.c integer NULL"
        );
    }

    #[test]
    fn an_object_named_longer_than_a_line_is_cut_too() {
        let arguments = ["timestamp with time zone"; 8].join(", ");
        let body = |rate: &str| {
            format!(
                "function public.window_total({arguments}): CREATE OR REPLACE FUNCTION                  public.window_total() RETURNS numeric LANGUAGE sql AS $function$SELECT {rate}$function$"
            )
        };
        let then = BTreeSet::from([body("1.19")]);
        let now = BTreeSet::from([body("1.20")]);
        let message = super::differences(&then, &now, "leaves behind", "removes");
        assert!(
            message.contains("SELECT 1.20") && message.contains("SELECT 1.19"),
            "{message}"
        );
        assert!(
            message.starts_with("leaves behind function public.window_total("),
            "{message}"
        );
        for part in message.split("; ") {
            assert!(part.chars().count() < 400, "{part}");
        }
    }
}
