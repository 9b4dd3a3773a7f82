//! Dropping everything the application owns: the first half of a reset, a restore and
//! a copy over an occupied target.

use super::{Executor, Target};

/// The script that drops every table, view, trigger and sequence the application owns,
/// history included, for the engine of `conn` (SQLite: its objects as they are now).
pub async fn drop_all_script(on: &mut impl Executor) -> Result<String, sqlx::Error> {
    Ok(match on.target() {
        Target::Sqlite(c) => {
            let objects: Vec<(String, String)> = sqlx::query_as(
                "SELECT type, name FROM sqlite_master \
                 WHERE type IN ('table', 'view', 'trigger') AND lower(substr(name, 1, 7)) <> 'sqlite_' \
                 ORDER BY CASE type WHEN 'trigger' THEN 0 WHEN 'view' THEN 1 ELSE 2 END",
            )
            .fetch_all(c)
            .await?;
            objects
                .iter()
                .map(|(kind, name)| {
                    format!(
                        "DROP {} IF EXISTS {};\n",
                        kind.to_uppercase(),
                        super::quoted(name)
                    )
                })
                .collect()
        }
        Target::Postgres(_) => PG_DROP_ALL.to_string(),
    })
}

/// Drops the objects of the current schema, keeping the schema itself (and its grants).
pub const PG_DROP_ALL: &str = r#"
DO $$
DECLARE r record;
BEGIN
  FOR r IN SELECT matviewname AS n FROM pg_matviews WHERE schemaname = current_schema() LOOP
    EXECUTE format('DROP MATERIALIZED VIEW IF EXISTS %I CASCADE', r.n);
  END LOOP;
  FOR r IN SELECT viewname AS n FROM pg_views WHERE schemaname = current_schema() LOOP
    EXECUTE format('DROP VIEW IF EXISTS %I CASCADE', r.n);
  END LOOP;
  FOR r IN SELECT tablename AS n FROM pg_tables WHERE schemaname = current_schema() LOOP
    EXECUTE format('DROP TABLE IF EXISTS %I CASCADE', r.n);
  END LOOP;
  FOR r IN SELECT sequencename AS n FROM pg_sequences WHERE schemaname = current_schema() LOOP
    EXECUTE format('DROP SEQUENCE IF EXISTS %I CASCADE', r.n);
  END LOOP;
  FOR r IN SELECT p.oid::regprocedure AS n FROM pg_proc p
           WHERE p.pronamespace = current_schema()::regnamespace LOOP
    EXECUTE format('DROP ROUTINE IF EXISTS %s CASCADE', r.n);
  END LOOP;
  FOR r IN SELECT t.typname AS n FROM pg_type t
           WHERE t.typnamespace = current_schema()::regnamespace
             AND t.typtype IN ('e', 'd', 'c', 'r')
             AND NOT EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = t.typrelid AND c.relkind <> 'c') LOOP
    EXECUTE format('DROP TYPE IF EXISTS %I CASCADE', r.n);
  END LOOP;
END $$;
"#;
