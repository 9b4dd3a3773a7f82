//! What the target holds before a copy: empty, ready (migrated, every table empty), or
//! occupied (needs `--force`).

use super::schema::{self, quoted};
use super::{CopyError, Histories, Side};
use crate::db::{DbPool, Executor, Target};
use crate::migrations::{self, AppliedMigration, AppliedState, HISTORY_TABLE, SchemaStatus};
use crate::url::DatabaseUrl;

/// What the target holds before a copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetState {
    /// No tables, no migration history.
    Empty,
    /// Migrated to a prefix of the history it is to have (this version), every table
    /// empty.
    Ready(i32),
    /// Rows, unknown tables or another history: copying needs `--force`. Says why.
    Occupied(String),
}

/// What the target holds, compared with the source's history (read outside the copy's
/// transaction, to decide whether to ask; the copy checks again inside it).
pub async fn inspect(
    source: &DbPool,
    target: &DbPool,
    histories: &Histories,
) -> Result<TargetState, CopyError> {
    let mut conn = source
        .acquire()
        .await
        .map_err(CopyError::from_db(Side::Source))?;
    let source_status = migrations::status(&mut conn, &histories.source)
        .await
        .map_err(|e| CopyError::source_history(&e))?;
    let source_tables: Vec<String> = schema::tables(conn.target())
        .await
        .map_err(CopyError::db(Side::Source))?
        .into_iter()
        .map(|t| t.name)
        .collect();
    drop(conn);
    let mut conn = target
        .acquire()
        .await
        .map_err(CopyError::from_db(Side::Target))?;
    target_state(&mut conn, &source_status, &source_tables, histories).await
}

/// The target's state, read on a connection or inside the copy's transaction.
pub async fn target_state(
    on: &mut impl Executor,
    source: &SchemaStatus,
    source_tables: &[String],
    histories: &Histories,
) -> Result<TargetState, CopyError> {
    let err = CopyError::db(Side::Target);
    let history = migrations::status(on, &histories.target)
        .await
        .map_err(|e| CopyError::Db {
            side: Side::Target,
            message: e.to_string(),
        })?;
    let tables = schema::tables(on.target()).await.map_err(&err)?;
    for table in tables.iter().filter(|t| t.name != HISTORY_TABLE) {
        let sql = format!(
            "SELECT count(*) FROM (SELECT 1 FROM {} LIMIT 1) AS any_row",
            quoted(&table.name)
        );
        if schema::count(on.target(), sql).await.map_err(&err)? > 0 {
            return Ok(TargetState::Occupied(format!(
                "is not empty: table {} has rows",
                table.name
            )));
        }
    }
    let others: Vec<&str> = tables
        .iter()
        .filter(|t| t.name != HISTORY_TABLE)
        .map(|t| t.name.as_str())
        .collect();
    if history.applied.is_empty() {
        let own = match others.is_empty() {
            true => objects_of_its_own(on.target()).await.map_err(&err)?,
            false => Vec::new(),
        };
        return Ok(if others.is_empty() && own.is_empty() {
            TargetState::Empty
        } else if others.is_empty() {
            TargetState::Occupied(format!(
                "holds objects no migration made: {}",
                crate::migrations::few_of(&own, "objects")
            ))
        } else {
            TargetState::Occupied(format!(
                "has tables no migration made: {}",
                crate::migrations::few_of(&others, "tables")
            ))
        });
    }
    // The history the target is to have: the source's, or the head of its own set. Its
    // rows must start it, each as the target's engine runs that migration.
    let expected: Vec<(i32, &str)> = match histories.separate {
        true => histories
            .target
            .migrations()
            .iter()
            .map(|m| (m.version, m.name.as_str()))
            .collect(),
        false => source
            .applied
            .iter()
            .map(|a| (a.version, a.name.as_str()))
            .collect(),
    };
    let same = |t: &AppliedMigration, (version, name): &(i32, &str)| {
        t.version == *version && t.name == *name && t.state == AppliedState::Ok
    };
    let prefix = history.applied.len() <= expected.len()
        && history
            .applied
            .iter()
            .zip(&expected)
            .all(|(t, e)| same(t, e));
    if !prefix {
        let ahead = history.applied.len() > expected.len()
            && expected
                .iter()
                .zip(&history.applied)
                .all(|(e, t)| same(t, e));
        let (what, end) = match histories.separate {
            true => ("the target's migrations", "they end"),
            false => ("the source", "the source is"),
        };
        return Ok(TargetState::Occupied(match ahead {
            true => format!(
                "is ahead of {what} (schema version {}, {end} at {})",
                history.current_version,
                expected.last().map_or(0, |e| e.0)
            ),
            false => format!(
                "has another migration history (version {}, with applied migrations that {what} {} not have or {} edited)",
                history.current_version,
                if histories.separate { "do" } else { "does" },
                if histories.separate { "have" } else { "has" },
            ),
        }));
    }
    if histories.separate {
        // Tables that do not line up are listed by the copy's plan, all at once.
        return Ok(TargetState::Ready(history.current_version));
    }
    if let Some(extra) = others
        .iter()
        .find(|t| super::plan::matching(t, source_tables.iter().map(String::as_str)).is_none())
    {
        return Ok(TargetState::Occupied(format!(
            "has a table the source does not: {extra}"
        )));
    }
    Ok(TargetState::Ready(history.current_version))
}

/// A few of the objects other than tables in a target without tables or history (views,
/// sequences, types, functions; not those of an extension, which a migration's `CREATE
/// EXTENSION IF NOT EXISTS` takes as they are): the migrations would collide with them.
async fn objects_of_its_own(on: Target<'_>) -> Result<Vec<String>, sqlx::Error> {
    match on {
        Target::Sqlite(c) => {
            sqlx::query_scalar(
                "SELECT type || ' ' || name FROM sqlite_schema \
                 WHERE type IN ('view', 'trigger') ORDER BY name LIMIT 5",
            )
            .fetch_all(c)
            .await
        }
        Target::Postgres(c) => {
            sqlx::query_scalar(
                "SELECT kind || ' ' || name FROM ( \
                   SELECT CASE c.relkind WHEN 'v' THEN 'view' WHEN 'm' THEN 'materialized view' \
                          WHEN 'S' THEN 'sequence' ELSE 'foreign table' END AS kind, \
                          c.relname::text AS name, c.oid, 'pg_class'::regclass AS catalog \
                     FROM pg_class c WHERE c.relnamespace = current_schema()::regnamespace \
                      AND c.relkind IN ('v', 'm', 'S', 'f') \
                   UNION ALL \
                   SELECT 'type', t.typname::text, t.oid, 'pg_type'::regclass FROM pg_type t \
                    WHERE t.typnamespace = current_schema()::regnamespace \
                      AND t.typtype IN ('e', 'd', 'r', 'm') \
                   UNION ALL \
                   SELECT 'function', p.proname::text, p.oid, 'pg_proc'::regclass FROM pg_proc p \
                    WHERE p.pronamespace = current_schema()::regnamespace \
                 ) o \
                 WHERE NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = o.catalog \
                                     AND d.objid = o.oid AND d.deptype = 'e') \
                 ORDER BY 1 LIMIT 5",
            )
            .fetch_all(c)
            .await
        }
    }
}

/// Refuses a target that is the source under another name: a SQLite file reached through
/// a linked directory or a hard link, a PostgreSQL database through another host name.
pub async fn ensure_distinct(
    source_url: &DatabaseUrl,
    source: &DbPool,
    target_url: &DatabaseUrl,
    target: &DbPool,
) -> Result<(), CopyError> {
    use std::os::unix::fs::MetadataExt as _;
    let same = match (source_url.sqlite_path(), target_url.sqlite_path()) {
        (Some(a), Some(b)) => match (std::fs::metadata(a), std::fs::metadata(b)) {
            (Ok(a), Ok(b)) => (a.dev(), a.ino()) == (b.dev(), b.ino()),
            _ => false,
        },
        (None, None) => {
            let a = pg_fingerprint(source)
                .await
                .map_err(CopyError::db(Side::Source))?;
            let b = pg_fingerprint(target)
                .await
                .map_err(CopyError::db(Side::Target))?;
            a == b
        }
        _ => false,
    };
    if same {
        return Err(CopyError::SameDatabase(
            "--to names the configured database itself under another name; copy into another database".into(),
        ));
    }
    Ok(())
}

/// The database's name and id and its server's start time: equal only for one database.
async fn pg_fingerprint(pool: &DbPool) -> Result<String, sqlx::Error> {
    let mut conn = pool
        .acquire()
        .await
        .map_err(|e| sqlx::Error::Protocol(e.to_string()))?;
    let Target::Postgres(c) = conn.target() else {
        return Ok(String::new());
    };
    sqlx::query_scalar(
        "SELECT d.datname::text || '/' || d.oid::text || '/' || pg_postmaster_start_time()::text \
         FROM pg_database d WHERE d.datname = current_database()",
    )
    .fetch_one(c)
    .await
}
