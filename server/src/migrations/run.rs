//! Applying and reverting migrations: each one in its own transaction, under the lock.
//!
//! Every migration (or rollback) is one transaction together with its history row:
//! `BEGIN IMMEDIATE` on SQLite, `BEGIN` + `pg_advisory_xact_lock` on PostgreSQL. Inside
//! it the history is read again, so a migration another process applied meanwhile is
//! skipped; processes starting at once apply each migration exactly once, in order. A
//! failing migration rolls back alone: the ones before it stay applied, as with sqlx-cli,
//! Rails and Alembic's `transaction_per_migration`.

use refinery::{AsyncMigrate, Migration, Runner, Target};
use refinery_core::traits::r#async::{AsyncQuery, AsyncTransaction};

use super::status::{FAILED_PREFIX, history, newest};
use super::{HISTORY_TABLE, MigrationError, MigrationFile, MigrationSet};
use crate::db::{DbConn, DbTx, describe_driver_error, query};

/// Key of the PostgreSQL advisory lock that serializes migrations ("migr" in ASCII).
const PG_LOCK_KEY: i64 = 0x6d69_6772;

/// What a failure part-way through a `-- db: no-transaction` script leaves behind.
const PART_WAY: &str = "it ran outside a transaction (-- db: no-transaction): the statements before the failing one stay applied and the history is unchanged; make them idempotent (IF NOT EXISTS, IF EXISTS) and run the command again, or finish it by hand";

/// Puts a PostgreSQL session back as it was opened (the URL's and the pool's settings
/// included), inside the migration's transaction: a migration's `SET search_path`,
/// `SET statement_timeout` or `SET ROLE` must not reach its history row or the next one.
const PG_RESET_SESSION: &str = "SET SESSION AUTHORIZATION DEFAULT; RESET ROLE; RESET ALL";

/// What an upgrade or downgrade did.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// `V<n>__<name>` of each migration applied or reverted, in order.
    pub changed: Vec<String>,
}

/// Applies pending migrations up to `target` (all when `None`), each in its own locked
/// transaction. Migrations that succeed stay applied when a later one fails.
pub async fn upgrade(
    conn: &mut DbConn,
    set: &MigrationSet,
    target: Option<i32>,
) -> Result<Outcome, MigrationError> {
    let set = &set.for_engine(conn.kind());
    if let Some(target) = target {
        set.check_target(target)?;
    }
    let status = super::status(conn, set).await?;
    status.ensure_compatible()?;
    // refinery is given what to apply, read once here: the history was checked above,
    // and reading it again for refinery would cost each run the whole history.
    let pending = status.to_apply(set, target);
    apply(conn, set, pending).await
}

/// Brings a database this process built and alone uses (a scratch database of
/// `db-check`, `db-schema`) to `version`, applying or rolling back what lies between:
/// the history is trusted, only its newest version is read (one small query instead of
/// the whole history per step of a long round trip).
pub(crate) async fn step_to(
    conn: &mut DbConn,
    set: &MigrationSet,
    version: i32,
) -> Result<Outcome, MigrationError> {
    let set = &set.for_engine(conn.kind());
    let (newest, _) = newest(conn, version).await?;
    let between =
        |m: &&MigrationFile| m.version > newest.min(version) && m.version <= newest.max(version);
    if version >= newest {
        let pending: Vec<&MigrationFile> = set.migrations().iter().filter(between).collect();
        return apply(conn, set, pending).await;
    }
    let to_revert: Vec<&MigrationFile> = set.migrations().iter().filter(between).rev().collect();
    if let Some(m) = to_revert.iter().find(|m| m.down.is_none()) {
        return Err(MigrationError::no_down(m));
    }
    revert(conn, to_revert, version, true).await
}

/// Applies `pending`, in order, each in its own locked transaction through refinery.
async fn apply(
    conn: &mut DbConn,
    set: &MigrationSet,
    pending: Vec<&MigrationFile>,
) -> Result<Outcome, MigrationError> {
    // Nothing to run: refinery would still log that the history is empty (it is only
    // ever shown the pending migrations), at every start of an up-to-date server.
    if pending.is_empty() {
        return Ok(Outcome::default());
    }
    let runner = Runner::new(&pending.iter().map(|m| m.to_refinery()).collect::<Vec<_>>())
        .set_target(Target::Latest);
    let mut driver = RefineryDriver {
        conn,
        set,
        pending,
        next: 0,
        outcome: Outcome::default(),
        reset: None,
        raced: None,
        bookkeeping_failed: false,
    };
    match runner.run_async(&mut driver).await {
        Ok(_) => Ok(driver.outcome),
        Err(_) if let Some(raced) = driver.raced.take() => Err(raced),
        Err(error) => {
            let migration = driver.next.checked_sub(1).map(|i| driver.pending[i]);
            // A failure in the bookkeeping after the migration's own statements points
            // at no line of the migration.
            let script = migration.filter(|_| !driver.bookkeeping_failed);
            let cause = refinery_reason(&error, script.map(|m| m.up.as_str()));
            // Outside a transaction, what ran stays: recorded as failed below.
            let outside = script.filter(|m| super::naming::no_transaction(&m.up));
            let reason = match driver.bookkeeping_failed {
                true => format!("recording it in {HISTORY_TABLE} failed: {cause}"),
                false => cause.clone(),
            };
            // What this run did before the failure stays done: say so.
            let kept = match driver.outcome.changed.as_slice() {
                [] => String::new(),
                done => format!("; applied before it and kept: {}", list(done)),
            };
            match migration {
                Some(migration) if let Some(failed) = outside => {
                    // Nothing runs after it until it is resolved.
                    record_failure(driver.conn, failed, &cause).await;
                    Err(MigrationError::FailedOutside {
                        name: migration.id(),
                        version: migration.version,
                        cause,
                        kept,
                    })
                }
                Some(migration) => Err(MigrationError::Failed {
                    name: migration.id(),
                    reason: format!("{reason}{kept}"),
                }),
                None => Err(MigrationError::Files(format!(
                    "cannot prepare the migration history table: {reason}{kept}"
                ))),
            }
        }
    }
}

/// Runs `drop_all` (a script that drops every object, history included) and then every
/// migration with its history row, all in one locked transaction: killed or failing
/// midway, the database is exactly as it was. Whatever the history said before (ahead,
/// diverged) does not matter: it is dropped too.
pub async fn reset(
    conn: &mut DbConn,
    set: &MigrationSet,
    drop_all: &str,
) -> Result<Outcome, MigrationError> {
    let set = &set.for_engine(conn.kind());
    let runner = Runner::new(
        &set.migrations()
            .iter()
            .map(MigrationFile::to_refinery)
            .collect::<Vec<_>>(),
    )
    .set_grouped(true);
    let mut driver = RefineryDriver {
        conn,
        set,
        pending: Vec::new(),
        next: 0,
        outcome: Outcome::default(),
        reset: Some(Reset {
            drop_all,
            create_history: None,
        }),
        raced: None,
        bookkeeping_failed: false,
    };
    match runner.run_async(&mut driver).await {
        Ok(_) => Ok(driver.outcome),
        Err(error) => {
            let reason = refinery_reason(&error, None);
            Err(MigrationError::Failed {
                name: "(reset)".into(),
                reason: format!("{reason}; nothing was changed"),
            })
        }
    }
}

/// Rolls back applied migrations above version `to`, newest first, each in its own
/// locked transaction that runs the down script and deletes the history row.
/// Rolling back to 0 also drops the history table.
pub async fn downgrade(
    conn: &mut DbConn,
    set: &MigrationSet,
    to: i32,
) -> Result<Outcome, MigrationError> {
    let set = &set.for_engine(conn.kind());
    let status = super::status(conn, set).await?;
    status.ensure_compatible()?;
    let to_revert = status.to_revert(set, to);
    if let Some(m) = to_revert.iter().find(|m| m.down.is_none()) {
        return Err(MigrationError::no_down(m));
    }
    revert(conn, to_revert, to, !status.applied.is_empty()).await
}

/// Rolls back `to_revert`, newest first, each in its own locked transaction; at 0, drops
/// the history table when there was one (`had_history`).
async fn revert(
    conn: &mut DbConn,
    to_revert: Vec<&MigrationFile>,
    to: i32,
    had_history: bool,
) -> Result<Outcome, MigrationError> {
    let mut outcome = Outcome::default();
    for migration in to_revert {
        let down = migration.down.as_deref().unwrap_or_default();
        let keys_off = foreign_keys_off(conn, down);
        let step = if super::naming::no_transaction(down) {
            revert_outside_transaction(conn, migration.version, down).await
        } else {
            with_foreign_keys_off(conn, keys_off, async |conn| {
                let mut tx = lock(conn).await?;
                let (newest, _) = newest(&mut tx, migration.version).await?;
                if newest < migration.version {
                    // Another process rolled it back meanwhile.
                    tx.rollback().await?;
                    return Ok(Step::Skipped);
                }
                if newest != migration.version {
                    tx.rollback().await?;
                    return Ok(Step::Raced);
                }
                let result = async {
                    let before = crate::db::session_timeouts(&mut tx).await?;
                    tx.execute_script(down).await?;
                    reset_session(&mut tx, &before).await?;
                    tx.execute_script(&format!(
                        "DELETE FROM {HISTORY_TABLE} WHERE version = {}",
                        migration.version
                    ))
                    .await?;
                    if keys_off {
                        foreign_key_check(&mut tx).await?;
                    }
                    Ok(())
                }
                .await;
                match result {
                    Ok(()) => tx.commit().await.map(|()| Step::Done),
                    Err(e) => {
                        let _ = tx.rollback().await;
                        Err(e)
                    }
                }
            })
            .await
        };
        let result = match step {
            Ok(Step::Skipped) => continue,
            Ok(Step::Raced) => {
                return Err(MigrationError::Target(format!(
                    "another process applied migrations while rolling back to {to}; run the command again"
                )));
            }
            Ok(Step::Done) => Ok(()),
            Err(e) => Err(e),
        };
        if let Err(e) = result {
            let reason = match super::naming::no_transaction(down) {
                true => format!("{}; {PART_WAY}", script_reason(&e, down)),
                false => script_reason(&e, down),
            };
            let reason = match outcome.changed.as_slice() {
                [] => reason,
                done => format!(
                    "{reason}; rolled back before it and kept so: {}",
                    list(done)
                ),
            };
            return Err(MigrationError::Failed {
                name: format!("{}.down", migration.id()),
                reason,
            });
        }
        outcome.changed.push(migration.id());
    }
    if to == 0 && had_history {
        let mut tx = lock(conn).await?;
        if history(&mut tx).await?.is_empty() {
            tx.execute_script(&format!("DROP TABLE IF EXISTS {HISTORY_TABLE}"))
                .await?;
        }
        tx.commit().await?;
    }
    Ok(outcome)
}

/// How one migration went.
enum Applied {
    Done,
    /// Another process applied it meanwhile.
    Skipped,
    /// Another process rolled back the history below it: it ends at this version now.
    Raced(i32),
}

/// How one rollback went.
enum Step {
    Done,
    /// Another process rolled it back meanwhile.
    Skipped,
    /// Another process applied migrations meanwhile.
    Raced,
}

/// Whether `script` asks for SQLite's foreign keys off around it (the table rebuild that
/// `db-migrate --autogenerate` writes).
fn foreign_keys_off(conn: &DbConn, script: &str) -> bool {
    conn.kind() == crate::url::DbKind::Sqlite
        && script.lines().any(|l| l.trim() == super::FOREIGN_KEYS_OFF)
}

/// Runs `work` with SQLite's foreign keys off when `off` (the pragma only works outside
/// a transaction), and on again afterwards.
async fn with_foreign_keys_off<T>(
    conn: &mut DbConn,
    off: bool,
    work: impl AsyncFnOnce(&mut DbConn) -> Result<T, sqlx::Error>,
) -> Result<T, sqlx::Error> {
    if off {
        conn.execute_script("PRAGMA foreign_keys = OFF").await?;
    }
    let result = work(conn).await;
    let restored = match off {
        true => conn.execute_script("PRAGMA foreign_keys = ON").await,
        false => Ok(()),
    };
    let value = result?;
    restored?;
    Ok(value)
}

/// Fails when a row's foreign key points at nothing, as SQLite's procedure requires
/// before committing a rebuild made with foreign keys off.
async fn foreign_key_check(tx: &mut DbTx<'_>) -> Result<(), sqlx::Error> {
    let DbTx::Sqlite(c) = tx else {
        return Ok(());
    };
    let violation: Option<(String, Option<i64>, String)> =
        sqlx::query_as("SELECT \"table\", rowid, parent FROM pragma_foreign_key_check LIMIT 1")
            .fetch_optional(&mut **c)
            .await?;
    match violation {
        None => Ok(()),
        Some((table, rowid, parent)) => Err(sqlx::Error::InvalidArgument(format!(
            "FOREIGN KEY constraint failed: row {} of {table} points at a row missing from {parent}",
            rowid.map_or("?".into(), |r| r.to_string())
        ))),
    }
}

/// The driver's own description of a refinery failure (`script`: the migration it ran,
/// for the line a PostgreSQL error points at), passwords masked.
fn refinery_reason(error: &refinery::Error, script: Option<&str>) -> String {
    match std::error::Error::source(error) {
        Some(source) => match source.downcast_ref::<sqlx::Error>() {
            Some(e) => match script {
                Some(script) => script_reason(e, script),
                None => describe_driver_error(e, None),
            },
            None => crate::url::mask_url(&source.to_string()),
        },
        None => crate::url::mask_url(&error.to_string()),
    }
}

/// The description of `error`, raised by `script`: when the script set the timeout that
/// expired itself, say so instead of advising a setting its `SET` overrides.
fn script_reason(error: &sqlx::Error, script: &str) -> String {
    let code = match error {
        sqlx::Error::Database(db) => db.code(),
        _ => None,
    };
    let parameter = match code.as_deref() {
        Some("57014") => "statement_timeout",
        Some("55P03") => "lock_timeout",
        _ => return describe_driver_error(error, Some(script)),
    };
    let Some(line) = super::naming::sets_parameter(script, parameter) else {
        return describe_driver_error(error, Some(script));
    };
    let sqlx::Error::Database(db) = error else {
        return describe_driver_error(error, Some(script));
    };
    crate::url::mask_url(&format!(
        "{} (the migration's own `SET {parameter}` at line {line} caused this; databases.main.{parameter}_ms does not apply after it: raise or remove that SET)",
        db.message()
    ))
}

/// Applies a `-- db: no-transaction` migration: under the migration lock held for all of
/// it (a session-level advisory lock on PostgreSQL), its statements one at a time in
/// autocommit, the session put back, then its history row in a transaction of its own.
/// SQLite has no lock that spans autocommit statements: the history is checked first and
/// the row written under `BEGIN IMMEDIATE`.
async fn apply_outside_transaction(
    conn: &mut DbConn,
    migration: &MigrationFile,
    previous: i32,
    record: &str,
    bookkeeping: &mut bool,
) -> Result<Applied, sqlx::Error> {
    session_lock(conn, true).await?;
    let result = async {
        let (newest, has) = newest(conn, migration.version).await?;
        if has {
            return Ok(Applied::Skipped);
        }
        if newest < previous {
            return Ok(Applied::Raced(newest));
        }
        if newest == 0 {
            conn.execute_script(&create_history_sql()).await?;
        }
        one_by_one(conn, &migration.up).await?;
        *bookkeeping = true;
        if conn.kind() == crate::url::DbKind::Postgres {
            conn.execute_script(PG_RESET_SESSION).await?;
        }
        let mut tx = lock(conn).await?;
        if let Err(e) = tx.execute_script(record).await {
            let _ = tx.rollback().await;
            return Err(e);
        }
        tx.commit().await?;
        Ok(Applied::Done)
    }
    .await;
    let unlocked = session_lock(conn, false).await;
    let applied = result?;
    unlocked?;
    Ok(applied)
}

/// Reverts a migration with a `-- db: no-transaction` down script, as
/// [`apply_outside_transaction`] applies one: `Ok(None)` when done.
async fn revert_outside_transaction(
    conn: &mut DbConn,
    version: i32,
    down: &str,
) -> Result<Step, sqlx::Error> {
    session_lock(conn, true).await?;
    let result = async {
        let (newest, _) = newest(conn, version).await?;
        if newest < version {
            return Ok(Step::Skipped);
        }
        if newest != version {
            return Ok(Step::Raced);
        }
        one_by_one(conn, down).await?;
        if conn.kind() == crate::url::DbKind::Postgres {
            conn.execute_script(PG_RESET_SESSION).await?;
        }
        let mut tx = lock(conn).await?;
        let delete = format!("DELETE FROM {HISTORY_TABLE} WHERE version = {version}");
        if let Err(e) = tx.execute_script(&delete).await {
            let _ = tx.rollback().await;
            return Err(e);
        }
        tx.commit().await?;
        Ok(Step::Done)
    }
    .await;
    let unlocked = session_lock(conn, false).await;
    let step = result?;
    unlocked?;
    Ok(step)
}

/// Runs `script`'s statements one at a time in autocommit. Each is sent after the text
/// before it blanked out (line breaks kept), so an error's position is the script's.
async fn one_by_one(conn: &mut DbConn, script: &str) -> Result<(), sqlx::Error> {
    for (start, statement) in super::naming::split_statements(script) {
        let blank: String = script[..start]
            .chars()
            .map(|c| if c == '\n' { '\n' } else { ' ' })
            .collect();
        conn.execute_script(&format!("{blank}{statement}")).await?;
    }
    Ok(())
}

/// Takes (`on`) or releases the PostgreSQL migration lock for the session, so that it
/// spans several transactions; nothing on SQLite.
async fn session_lock(conn: &mut DbConn, on: bool) -> Result<(), sqlx::Error> {
    let DbConn::Postgres(pg) = conn else {
        return Ok(());
    };
    let sql = match on {
        true => "SELECT pg_advisory_lock($1)",
        false => "SELECT pg_advisory_unlock($1)",
    };
    sqlx::query(sql)
        .bind(PG_LOCK_KEY)
        .execute(&mut **pg)
        .await
        .map(drop)
}

/// Puts the session back as it was opened, so that what a migration left in it does not
/// reach the next one (or itself, applied again by `db-check`): on PostgreSQL
/// [`PG_RESET_SESSION`], its temporary tables and the statements it prepared with
/// `PREPARE`, then the timeouts `before` holds (read with
/// [`crate::db::session_timeouts`] before the migration ran); on SQLite its temporary
/// tables and views.
async fn reset_session(tx: &mut DbTx<'_>, before: &str) -> Result<(), sqlx::Error> {
    let leftovers: String = match tx {
        DbTx::Postgres(pg) => {
            sqlx::query_scalar(
                "SELECT coalesce(string_agg(format('DEALLOCATE %I', name), '; '), '') \
                   FROM pg_prepared_statements WHERE from_sql",
            )
            .fetch_one(&mut **pg)
            .await?
        }
        DbTx::Sqlite(sqlite) => {
            sqlx::query_scalar(
                "SELECT coalesce(group_concat(format('DROP %s temp.\"%w\"', upper(type), name), '; '), '') \
                   FROM temp.sqlite_schema WHERE type IN ('table', 'view')",
            )
            .fetch_one(&mut **sqlite)
            .await?
        }
    };
    match tx {
        DbTx::Postgres(_) => {
            tx.execute_script(&format!(
                "{PG_RESET_SESSION}; DISCARD TEMP; {leftovers}; {before}"
            ))
            .await
        }
        DbTx::Sqlite(_) if leftovers.is_empty() => Ok(()),
        DbTx::Sqlite(_) => tx.execute_script(&leftovers).await,
    }
}

/// Writes `migration`'s row into the history table, as applied at `applied_on` (or, for
/// a failure, the note that says so), with its checksum.
pub(crate) async fn record_row(
    on: &mut impl crate::db::RunsQueries,
    migration: &MigrationFile,
    applied_on: &str,
) -> Result<(), sqlx::Error> {
    query(
        "INSERT INTO refinery_schema_history (version, name, applied_on, checksum) \
         VALUES ($1, $2, $3, $4)",
    )
    .bind(migration.version)
    .bind(migration.name.clone())
    .bind(applied_on.to_string())
    .bind(migration.checksum().to_string())
    .execute(on)
    .await
    .map(drop)
}

/// refinery's statement that creates the history table if it is missing.
pub(crate) fn create_history_sql() -> String {
    <RefineryDriver<'_, '_> as AsyncMigrate>::assert_migrations_table_query(HISTORY_TABLE)
}

/// Records that `migration` failed part-way with `reason` (best effort: the failure
/// itself is what the caller reports).
async fn record_failure(conn: &mut DbConn, migration: &MigrationFile, reason: &str) {
    let note: String = format!("{FAILED_PREFIX}{reason}")
        .chars()
        .take(255)
        .collect();
    let recorded = async {
        let mut tx = lock(conn).await?;
        tx.execute_script(&create_history_sql()).await?;
        record_row(&mut tx, migration, &note).await?;
        tx.commit().await
    }
    .await;
    if let Err(e) = recorded {
        log::warn!("recording that {} failed part-way: {e}", migration.id());
    }
}

/// Names for a message, at most five of them: a long history or a large schema does not
/// make a one-line message grow (`V1__a, V2__b, …, V247__z (247 migrations)`, with
/// `noun` "migrations").
pub fn few_of(names: &[impl AsRef<str>], noun: &str) -> String {
    let names: Vec<&str> = names.iter().map(AsRef::as_ref).collect();
    match names.as_slice() {
        [] | [_] | [_, _] | [_, _, _] | [_, _, _, _] | [_, _, _, _, _] => names.join(", "),
        [first, second, .., before_last, last] => format!(
            "{first}, {second}, …, {before_last}, {last} ({} {noun})",
            names.len()
        ),
    }
}

/// Migration ids for a message ([`few_of`]).
fn list(ids: &[String]) -> String {
    few_of(ids, "migrations")
}

/// Starts a write transaction and takes the migration lock.
pub(crate) async fn lock(conn: &mut DbConn) -> Result<DbTx<'_>, sqlx::Error> {
    let mut tx = conn.begin_write().await?;
    if let DbTx::Postgres(pg) = &mut tx {
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(PG_LOCK_KEY)
            .execute(&mut **pg)
            .await?;
    }
    Ok(tx)
}

/// Lets refinery drive the run: its first `execute` creates the history table; each
/// later one is the next pending migration with its history row, run in its own locked
/// transaction (skipped when another process applied it meanwhile).
struct RefineryDriver<'c, 's> {
    conn: &'c mut DbConn,
    set: &'s MigrationSet,
    /// The migrations refinery will apply, in order.
    pending: Vec<&'s MigrationFile>,
    /// How many of `pending` were started.
    next: usize,
    outcome: Outcome,
    /// A reset: everything in one transaction, after dropping everything.
    reset: Option<Reset<'s>>,
    /// Set when another process rolled back migrations this run counted on.
    raced: Option<MigrationError>,
    /// Set when a migration's own statements ran but what follows them failed (resetting
    /// the session, the history row).
    bookkeeping_failed: bool,
}

/// What a reset runs before the migrations, in their transaction.
struct Reset<'s> {
    drop_all: &'s str,
    /// refinery's statement that creates the history table, kept for after the drop.
    create_history: Option<String>,
}

impl AsyncTransaction for RefineryDriver<'_, '_> {
    type Error = sqlx::Error;

    async fn execute<'a, T: Iterator<Item = &'a str> + Send + 'a>(
        &'a mut self,
        queries: T,
    ) -> Result<usize, Self::Error> {
        let queries: Vec<&str> = queries.collect();
        if self.reset.is_some() {
            return self.execute_reset(&queries).await;
        }
        if queries.len() == 1 {
            // Creating the history table: done in the first migration's own transaction
            // instead, so that a run whose first migration fails leaves nothing behind.
            return Ok(1);
        }
        let migration = self.pending.get(self.next).copied();
        self.next += 1;
        // The version of the migration before this one in the set (0: none).
        let previous = migration.map_or(0, |m| {
            self.set
                .migrations()
                .iter()
                .map(|other| other.version)
                .filter(|&v| v < m.version)
                .max()
                .unwrap_or(0)
        });
        let keys_off = migration.is_some_and(|m| foreign_keys_off(self.conn, &m.up));
        // Each migration starts with its own statements: a failure is theirs until they ran.
        self.bookkeeping_failed = false;
        let bookkeeping = &mut self.bookkeeping_failed;
        let outside = migration.filter(|m| super::naming::no_transaction(&m.up));
        let result = if let (Some(migration), [_, record]) = (outside, queries.as_slice()) {
            apply_outside_transaction(self.conn, migration, previous, record, bookkeeping).await?
        } else {
            with_foreign_keys_off(self.conn, keys_off, async |conn| {
                let mut tx = lock(conn).await?;
                if let Some(migration) = migration {
                    let (newest, has) = newest(&mut tx, migration.version).await?;
                    if has {
                        tx.rollback().await?;
                        return Ok(Applied::Skipped);
                    }
                    // The migration before this one must still be applied: another process
                    // may have rolled the history back since refinery read it.
                    if newest < previous {
                        tx.rollback().await?;
                        return Ok(Applied::Raced(newest));
                    }
                    // No history yet (this run's first migration), or rolled back to 0 by
                    // another process: the table is made in this migration's transaction.
                    if newest == 0
                        && let Err(e) = tx.execute_script(&create_history_sql()).await
                    {
                        let _ = tx.rollback().await;
                        return Err(e);
                    }
                }
                let before = match crate::db::session_timeouts(&mut tx).await {
                    Ok(before) => before,
                    Err(e) => {
                        let _ = tx.rollback().await;
                        return Err(e);
                    }
                };
                for (i, query) in queries.iter().enumerate() {
                    // The migration's statements, then the session put back before its
                    // history row lands (in the right schema, under the right timeouts).
                    let result = match tx.execute_script(query).await {
                        Ok(()) if i == 0 && migration.is_some() => reset_session(&mut tx, &before)
                            .await
                            .inspect_err(|_| *bookkeeping = true),
                        Ok(()) => Ok(()),
                        Err(e) => {
                            *bookkeeping = i > 0;
                            Err(e)
                        }
                    };
                    if let Err(e) = result {
                        // The engine may have rolled back already (e.g. SQLite on a full
                        // disk): report the statement's error, not the failed rollback.
                        let _ = tx.rollback().await;
                        return Err(e);
                    }
                }
                if keys_off && let Err(e) = foreign_key_check(&mut tx).await {
                    let _ = tx.rollback().await;
                    return Err(e);
                }
                tx.commit().await?;
                Ok(Applied::Done)
            })
            .await?
        };
        match (result, migration) {
            (Applied::Done, _) => {}
            (Applied::Skipped, _) => return Ok(0),
            (Applied::Raced(now), Some(migration)) => {
                self.raced = Some(MigrationError::Raced {
                    step: migration.id(),
                    now,
                });
                return Err(sqlx::Error::Protocol(
                    "the migration history changed".into(),
                ));
            }
            (Applied::Raced(_), None) => return Ok(0),
        }
        if let Some(migration) = migration {
            self.outcome.changed.push(migration.id());
        }
        Ok(queries.len())
    }
}

impl RefineryDriver<'_, '_> {
    /// In a reset, refinery's first call creates the history table (kept for later); its
    /// second holds every migration with its history row.
    async fn execute_reset(&mut self, queries: &[&str]) -> Result<usize, sqlx::Error> {
        let Some(reset) = self.reset.as_mut() else {
            return Ok(0);
        };
        if reset.create_history.is_none() {
            reset.create_history = queries.first().map(|q| q.to_string());
            return Ok(queries.len());
        }
        let prelude = [
            reset.drop_all.to_string(),
            reset.create_history.clone().unwrap_or_default(),
        ];
        let sqlite = matches!(self.conn, DbConn::Sqlite(_));
        // Foreign keys would make the drop order matter; the pragma only works outside a
        // transaction, and only for this connection.
        if sqlite {
            self.conn
                .execute_script("PRAGMA foreign_keys = OFF")
                .await?;
        }
        let result = async {
            let mut tx = lock(self.conn).await?;
            let before = crate::db::session_timeouts(&mut tx).await?;
            for query in prelude
                .iter()
                .map(String::as_str)
                .chain(queries.iter().copied())
            {
                // Each migration starts from the session as it was opened.
                let result = match tx.execute_script(query).await {
                    Ok(()) => reset_session(&mut tx, &before).await,
                    Err(e) => Err(e),
                };
                if let Err(e) = result {
                    let _ = tx.rollback().await;
                    return Err(e);
                }
            }
            tx.commit().await
        }
        .await;
        // The reset's own error first: a failure to restore the pragma comes second.
        let restored = match sqlite {
            true => self.conn.execute_script("PRAGMA foreign_keys = ON").await,
            false => Ok(()),
        };
        result?;
        restored?;
        self.outcome.changed = self.pending.iter().map(|m| m.id()).collect();
        Ok(queries.len())
    }
}

impl AsyncQuery<Vec<Migration>> for RefineryDriver<'_, '_> {
    /// refinery only asks for the applied migrations. It was given only the pending ones
    /// (or, in a reset, all of them, applied from nothing): none of those is applied.
    async fn query<'a>(&'a mut self, _query: &'a str) -> Result<Vec<Migration>, Self::Error> {
        if self.reset.is_some() {
            self.pending = self.set.migrations().iter().collect();
        }
        Ok(Vec::new())
    }
}

impl AsyncMigrate for RefineryDriver<'_, '_> {}

#[cfg(test)]
mod tests {
    use super::list;

    #[test]
    fn long_lists_of_migrations_are_cut_in_messages() {
        let ids: Vec<String> = (1..=247).map(|n| format!("V{n}__m")).collect();
        assert_eq!(
            list(&ids),
            "V1__m, V2__m, …, V246__m, V247__m (247 migrations)"
        );
        assert_eq!(list(&ids[..3]), "V1__m, V2__m, V3__m");
    }
}
