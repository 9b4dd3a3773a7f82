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
///
/// Extensions are dropped whole, never member by member: first every extension of the
/// current schema this role may drop (`DROP EXTENSION … CASCADE`; the migrations, or a
/// restore script, create it again), then the remaining objects, skipping anything that
/// belongs to an extension (`pg_depend.deptype = 'e'`), such as the members of one this
/// role does not own, which stays as it is.
pub const PG_DROP_ALL: &str = r#"
DO $$
DECLARE r record; k text;
BEGIN
  FOR r IN SELECT e.extname AS n FROM pg_extension e
           WHERE e.extnamespace = current_schema()::regnamespace
             AND pg_has_role(e.extowner, 'USAGE') LOOP
    EXECUTE format('DROP EXTENSION IF EXISTS %I CASCADE', r.n);
  END LOOP;
  FOREACH k IN ARRAY ARRAY['m:MATERIALIZED VIEW', 'v:VIEW', 'f:FOREIGN TABLE', 'p:TABLE',
                           'r:TABLE', 'S:SEQUENCE'] LOOP
    FOR r IN SELECT c.relname AS n FROM pg_class c
             WHERE c.relnamespace = current_schema()::regnamespace
               AND c.relkind::text = split_part(k, ':', 1)
               AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                               AND d.objid = c.oid AND d.deptype = 'e') LOOP
      EXECUTE format('DROP %s IF EXISTS %I CASCADE', split_part(k, ':', 2), r.n);
    END LOOP;
  END LOOP;
  FOR r IN SELECT p.oid::regprocedure AS n FROM pg_proc p
           WHERE p.pronamespace = current_schema()::regnamespace
             AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_proc'::regclass
                             AND d.objid = p.oid AND d.deptype = 'e') LOOP
    EXECUTE format('DROP ROUTINE IF EXISTS %s CASCADE', r.n);
  END LOOP;
  FOR r IN SELECT t.typname AS n FROM pg_type t
           WHERE t.typnamespace = current_schema()::regnamespace
             AND t.typtype IN ('e', 'd', 'c', 'r')
             AND NOT EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = t.typrelid AND c.relkind <> 'c')
             AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_type'::regclass
                             AND d.objid = t.oid AND d.deptype = 'e') LOOP
    EXECUTE format('DROP TYPE IF EXISTS %I CASCADE', r.n);
  END LOOP;
END $$;
"#;
