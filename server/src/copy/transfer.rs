//! The copy inside the source's snapshot and the target's transaction: migrate the
//! target, copy each table, check foreign keys and sequences, read everything back.

use super::digest::Digest;
use super::plan::{Plan, plan, row_key};
use super::rows::{Sink, scan};
use super::schema::{self, quoted};
use super::target::{TargetState, target_state};
use super::value::{Value, fit};
use super::{CopyError, CopyReport, Histories, Side, TableCheck};
use crate::db::{DbConn, DbTx, Executor, describe_driver_error};
use crate::migrations::{self, HISTORY_TABLE, MigrationError, MigrationFile, MigrationSet};
use crate::progress::Progress;
use crate::url::DbKind;
use std::time::Duration;

/// Problems listed before a copy with values that do not fit stops looking.
const MAX_PROBLEMS: usize = 10;

/// Migrates an empty target built for this copy to the source's version before the copy's
/// transaction, each migration in its own transaction as `db-upgrade` applies them (an
/// enum value added by one migration can only be used by a later one once committed; a
/// `-- db: no-transaction` migration runs outside one). The copy then finds the target ready. A failing migration empties the
/// target again, in one transaction (and the new database is discarded anyway). Other
/// targets are left alone.
pub async fn premigrate(
    source: &mut DbConn,
    target: &mut DbConn,
    histories: &Histories,
) -> Result<bool, CopyError> {
    let target_err = CopyError::db(Side::Target);
    let version = match histories.separate {
        true => histories.target.latest(),
        false => {
            migrations::status(source, &histories.source)
                .await
                .map_err(|e| CopyError::source_history(&e))?
                .current_version
        }
    };
    let empty = schema::tables(target.target())
        .await
        .map_err(&target_err)?
        .is_empty();
    if version == 0 || !empty {
        return Ok(false);
    }
    // One migration per call: a failure's message names only the migration that failed.
    let mut failed = None;
    for step in 1..=version {
        if let Err(e) = migrations::upgrade(target, &histories.target, Some(step)).await {
            failed = Some(e);
            break;
        }
    }
    let Some(e) = failed else {
        // Rows the migrations inserted are in the source too: the copy brings them.
        let names: Vec<String> = schema::tables(target.target())
            .await
            .map_err(&target_err)?
            .into_iter()
            .map(|t| t.name)
            .filter(|name| name != HISTORY_TABLE)
            .collect();
        let list: Vec<String> = names.iter().map(|n| quoted(n)).collect();
        let empty = match target.kind() {
            _ if list.is_empty() => String::new(),
            DbKind::Postgres => format!("TRUNCATE {}", list.join(", ")),
            // The copy's SQLite target connection has foreign keys off.
            DbKind::Sqlite => list.iter().map(|t| format!("DELETE FROM {t};")).collect(),
        };
        if !empty.is_empty() {
            target.execute_script(&empty).await.map_err(&target_err)?;
        }
        return Ok(true);
    };
    empty_again(target).await.map_err(&target_err)?;
    Err(match e {
        MigrationError::Failed { name, reason }
        | MigrationError::FailedOutside {
            name,
            cause: reason,
            ..
        } => CopyError::Migration { name, reason },
        other => CopyError::Db {
            side: Side::Target,
            message: other.to_string(),
        },
    })
}

/// Whether `set` cannot run in the one transaction of a copy: a `-- db: no-transaction`
/// migration, or an enum value added (`ALTER TYPE … ADD VALUE`), which a later
/// migration may use only once it is committed.
pub fn needs_steps(set: &MigrationSet) -> bool {
    set.migrations().iter().any(|m| {
        let words: Vec<String> =
            m.up.split_whitespace()
                .map(str::to_ascii_uppercase)
                .collect();
        let pair = |a: &str, b: &str| words.windows(2).any(|w| w[0] == a && w[1] == b);
        migrations::no_transaction(&m.up) || (pair("ALTER", "TYPE") && pair("ADD", "VALUE"))
    })
}

/// Whether the target's schema holds nothing at all (no relation, type or function):
/// only then may a copy into an existing database migrate it step by step, since
/// emptying it again on failure (`empty_again`) leaves it exactly as it was.
pub async fn holds_nothing(target: &mut DbConn) -> Result<bool, sqlx::Error> {
    match target {
        DbConn::Sqlite(c) => {
            // SQLite's own tables (sqlite_sequence, sqlite_stat1) outlive a drop of
            // everything else.
            let n: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM sqlite_schema WHERE name NOT LIKE 'sqlite\\_%' ESCAPE '\\'",
            )
                .fetch_one(&mut **c)
                .await?;
            Ok(n == 0)
        }
        DbConn::Postgres(c) => {
            sqlx::query_scalar(
                "SELECT NOT EXISTS (SELECT 1 FROM pg_class WHERE relnamespace = current_schema()::regnamespace) \
                    AND NOT EXISTS (SELECT 1 FROM pg_type WHERE typnamespace = current_schema()::regnamespace) \
                    AND NOT EXISTS (SELECT 1 FROM pg_proc WHERE pronamespace = current_schema()::regnamespace)",
            )
            .fetch_one(&mut **c)
            .await
        }
    }
}

/// Drops everything a step-by-step migration of the target made, in one transaction:
/// the target is empty again, as it was before the copy.
pub async fn empty_again(target: &mut DbConn) -> Result<(), sqlx::Error> {
    let drop_all = crate::db::drop_all_script(target).await?;
    let mut tx = target.begin_write().await?;
    tx.execute_script(&drop_all).await?;
    tx.commit().await
}

/// The copy inside the source snapshot and the target transaction.
pub async fn copy_in(
    snapshot: &mut DbTx<'_>,
    tx: &mut DbTx<'_>,
    histories: &Histories,
    replace: bool,
    progress: &dyn Progress,
) -> Result<CopyReport, CopyError> {
    let source_err = CopyError::db(Side::Source);
    let target_err = CopyError::db(Side::Target);
    let source_status = migrations::status(snapshot, &histories.source)
        .await
        .map_err(|e| CopyError::source_history(&e))?;
    source_status
        .ensure_compatible()
        .map_err(|e| CopyError::source_history(&e))?;
    let mut source_tables = schema::tables(snapshot.target())
        .await
        .map_err(&source_err)?;

    // The target at the source's schema version (its history about to be copied), or at
    // the head of its own set (keeping its own history).
    let source_names: Vec<String> = source_tables.iter().map(|t| t.name.clone()).collect();
    let current = match target_state(tx, &source_status, &source_names, histories).await? {
        TargetState::Empty => 0,
        TargetState::Ready(version) => version,
        TargetState::Occupied(why) if !replace => return Err(CopyError::Occupied(why)),
        TargetState::Occupied(_) => {
            progress.step("emptying the target");
            let drop_all = crate::db::drop_all_script(tx).await.map_err(&target_err)?;
            tx.execute_script(&drop_all).await.map_err(&target_err)?;
            0
        }
    };
    tx.execute_script(&migrations::create_history_sql())
        .await
        .map_err(&target_err)?;
    let head = match histories.separate {
        true => histories.target.latest(),
        false => source_status.current_version,
    };
    for migration in histories.target.migrations() {
        if migration.version <= current || migration.version > head {
            continue;
        }
        progress.step(&format!("applying {} to the target", migration.id()));
        tx.execute_script(&migration.up)
            .await
            .map_err(|e| CopyError::Migration {
                name: migration.id(),
                reason: describe_driver_error(&e, Some(&migration.up)),
            })?;
        if histories.separate {
            record(tx, migration).await.map_err(&target_err)?;
        }
    }
    let mut target_tables = schema::tables(tx.target()).await.map_err(&target_err)?;
    if histories.separate {
        // Each side keeps its own history: it is not copied.
        source_tables.retain(|t| t.name != HISTORY_TABLE);
        target_tables.retain(|t| t.name != HISTORY_TABLE);
    } else {
        tx.execute_script(&format!("DELETE FROM {HISTORY_TABLE}"))
            .await
            .map_err(&target_err)?;
    }
    let plans = plan(&source_tables, target_tables)?;

    let mut total = 0;
    for plan in &plans {
        total += count(snapshot, &plan.source.name)
            .await
            .map_err(&source_err)?;
    }
    let target_kind = match tx {
        DbTx::Sqlite(_) => DbKind::Sqlite,
        DbTx::Postgres(_) => DbKind::Postgres,
    };
    let names: Vec<&str> = plans.iter().map(|p| p.target.name.as_str()).collect();
    let suspended = schema::suspend_checks(tx.target(), &names)
        .await
        .map_err(&target_err)?;
    // Rows the migrations applied here inserted are in the source too (the same
    // history ran there): the source's rows are the ones copied. A target that held rows
    // of its own was refused above unless --force.
    for name in &names {
        tx.execute_script(&format!("DELETE FROM {}", quoted(name)))
            .await
            .map_err(&target_err)?;
    }
    let mut done = 0u64;
    let mut problems = Vec::new();
    let mut source_sums = Vec::new();
    for (i, plan) in plans.iter().enumerate() {
        progress.step(&format!(
            "copying {} (table {} of {})",
            plan.target.name,
            i + 1,
            plans.len()
        ));
        let mut sink = match problems.is_empty() {
            true => Some(
                Sink::open(tx.target(), &plan.target.name, &plan.columns)
                    .await
                    .map_err(&target_err)?,
            ),
            false => None,
        };
        let mut digest = Digest::new(plan.ordered);
        let mut ordinal = 0u64;
        let scanned = scan(
            snapshot.target(),
            Side::Source,
            plan.source,
            &plan.source_columns,
            &plan.source_key,
            async |row: Vec<Value>| -> Result<(), CopyError> {
                ordinal += 1;
                let mut fitted = Vec::with_capacity(row.len());
                let mut bad = Vec::new();
                for (i, value) in row.iter().enumerate() {
                    let fits = match (value, plan.not_null[i]) {
                        (Value::Null, true) => Err(super::value::Misfit::Null),
                        _ => fit(&plan.kinds[i], value.clone(), target_kind),
                    };
                    match fits {
                        Ok(v) => fitted.push(v),
                        Err(why) => bad.push((&plan.columns[i], why)),
                    }
                }
                for (column, why) in bad {
                    let key = row_key(plan, &row, ordinal);
                    problems.push(format!(
                        "table {}, row {key}, column {column}: {why}",
                        plan.target.name
                    ));
                }
                if !problems.is_empty() {
                    // Nothing more is written; the rest is only checked.
                    if let Some(sink) = sink.take() {
                        sink.abort().await;
                    }
                    if problems.len() >= MAX_PROBLEMS {
                        return Err(CopyError::BadData(Vec::new()));
                    }
                    return Ok(());
                }
                digest.add(&plan.kinds, &fitted);
                if let Some(sink) = &mut sink {
                    sink.push(fitted).await.map_err(|e| write_error(plan, e))?;
                }
                done += 1;
                if done.is_multiple_of(4096) {
                    progress.advance(done, total);
                }
                Ok(())
            },
        )
        .await;
        match scanned {
            Err(CopyError::BadData(_)) => break,
            Err(e) => return Err(e),
            Ok(()) => {}
        }
        if let Some(sink) = sink {
            sink.finish().await.map_err(|e| write_error(plan, e))?;
        }
        source_sums.push(digest.finish());
    }
    progress.advance(done, total);
    if problems.is_empty() {
        problems = after_copy(tx, &plans).await?;
    }
    if problems.is_empty() {
        for statement in &suspended {
            if let Err(e) = tx.execute_script(statement).await {
                // A foreign key that does not hold names its row in PostgreSQL's detail.
                problems.push(with_detail(&e));
                break;
            }
        }
    }
    if !problems.is_empty() {
        return Err(CopyError::BadData(problems));
    }

    progress.step("verifying");
    let mut checks = Vec::new();
    for (plan, (source_rows, source_sum)) in plans.iter().zip(source_sums) {
        let mut digest = Digest::new(plan.ordered);
        scan(
            tx.target(),
            Side::Target,
            &plan.target,
            &plan.columns,
            &plan.key,
            async |row: Vec<Value>| -> Result<(), CopyError> {
                // Values the target returns: fitted again to spell them canonically.
                let fitted: Vec<Value> = row
                    .into_iter()
                    .zip(&plan.kinds)
                    .map(|(v, kind)| fit(kind, v.clone(), target_kind).unwrap_or(v))
                    .collect();
                digest.add(&plan.kinds, &fitted);
                Ok(())
            },
        )
        .await?;
        let (target_rows, target_sum) = digest.finish();
        checks.push(TableCheck {
            name: plan.target.name.clone(),
            source_rows,
            target_rows,
            source_sum,
            target_sum,
        });
    }
    let report = CopyReport {
        tables: checks,
        version: head,
        elapsed: Duration::ZERO,
    };
    if report.tables.iter().any(|t| !t.matches()) {
        return Err(CopyError::Mismatch(report));
    }
    if !histories.separate {
        own_checksums(tx, histories).await.map_err(&target_err)?;
    }
    Ok(report)
}

/// Records `migration` as applied in the target's history.
async fn record(tx: &mut DbTx<'_>, migration: &MigrationFile) -> Result<(), sqlx::Error> {
    let now = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    migrations::record_row(tx, migration, &now).await
}

/// Gives the copied history rows the target engine's checksums where they differ from
/// the source's (a migration with engine variants), after it was verified as copied.
async fn own_checksums(tx: &mut DbTx<'_>, histories: &Histories) -> Result<(), sqlx::Error> {
    for (source, target) in histories
        .source
        .migrations()
        .iter()
        .zip(histories.target.migrations())
        .filter(|(s, t)| s.checksum() != t.checksum())
    {
        crate::db::query("UPDATE refinery_schema_history SET checksum = $1 WHERE version = $2")
            .bind(target.checksum().to_string())
            .bind(source.version)
            .execute(&mut *tx)
            .await?;
    }
    Ok(())
}

fn write_error(plan: &Plan<'_>, e: sqlx::Error) -> CopyError {
    CopyError::Db {
        side: Side::Target,
        message: format!("writing table {}: {}", plan.target.name, with_detail(&e)),
    }
}

/// The driver's description with PostgreSQL's detail, which names the row
/// (`Key (author_id)=(99) is not present in table "authors".`).
fn with_detail(e: &sqlx::Error) -> String {
    let detail = match e {
        sqlx::Error::Database(db) => db
            .try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
            .and_then(|pg| pg.detail())
            .map(|d| format!(" ({d})"))
            .unwrap_or_default(),
        _ => String::new(),
    };
    format!("{}{detail}", describe_driver_error(e, None))
}

/// Checks after the rows are in: foreign keys (SQLite, whose checks were off while
/// copying) and PostgreSQL sequences moved past the copied ids.
async fn after_copy(tx: &mut DbTx<'_>, plans: &[Plan<'_>]) -> Result<Vec<String>, CopyError> {
    let err = CopyError::db(Side::Target);
    match tx {
        DbTx::Sqlite(c) => {
            let violations: Vec<(String, Option<i64>, String)> = sqlx::query_as(
                "SELECT \"table\", rowid, parent FROM pragma_foreign_key_check LIMIT 10",
            )
            .fetch_all(&mut **c)
            .await
            .map_err(&err)?;
            let mut problems = Vec::new();
            for (table, rowid, parent) in violations {
                // The row by its key, as in the source (a rowid means nothing there).
                let plan = plans.iter().find(|p| p.target.name == table);
                let key = match (plan, rowid) {
                    (Some(plan), Some(rowid)) if !plan.key.is_empty() => {
                        let columns: Vec<String> = plan.key.iter().map(|k| quoted(k)).collect();
                        let sql = format!(
                            "SELECT {} FROM {} WHERE rowid = {rowid}",
                            columns.join(", "),
                            quoted(&table)
                        );
                        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
                            .fetch_one(&mut **c)
                            .await
                            .map_err(&err)?;
                        let values =
                            super::rows::sqlite_values(&row, columns.len()).map_err(&err)?;
                        plan.key
                            .iter()
                            .zip(&values)
                            .map(|(k, v)| format!("{k}={}", super::value::key_text(v)))
                            .collect::<Vec<_>>()
                            .join(", ")
                    }
                    (_, Some(rowid)) => format!("rowid {rowid}"),
                    (_, None) => "?".into(),
                };
                problems.push(format!(
                    "table {table}, row {key}: a foreign key points at a row missing from {parent}"
                ));
            }
            Ok(problems)
        }
        DbTx::Postgres(c) => {
            schema::advance_sequences(c).await?;
            Ok(Vec::new())
        }
    }
}

async fn count(on: &mut DbTx<'_>, table: &str) -> Result<u64, sqlx::Error> {
    let n = schema::count(
        on.target(),
        format!("SELECT count(*) FROM {}", quoted(table)),
    )
    .await?;
    Ok(n.max(0) as u64)
}
