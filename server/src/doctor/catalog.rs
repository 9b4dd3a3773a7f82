//! PostgreSQL's schema for the round trip, read again only where it changed.
//!
//! A round trip reads the schema three times per migration, and the schema grows with
//! the history: described whole each time (`format_type`, `pg_get_indexdef`,
//! `pg_get_constraintdef` for every object), the reads were most of a long history's
//! `db-check`. So the schema is kept in groups, one per relation (a table with its
//! columns, indexes and constraints; a view; a sequence) plus one for the types, each
//! with a version: the oid and `xmin` (the transaction that wrote it) of every catalog
//! row it is described from. A row inserted, updated or deleted changes the version, so
//! each read asks the catalogs for the versions (no deparsing) and describes only the
//! groups whose version moved. What a description names outside its own group is
//! described again with it: a table renamed or a type changed makes every group be
//! described again (names appear everywhere), a changed table also redescribes the
//! tables whose foreign keys reference it, and any change redescribes the views.

use std::collections::{HashMap, HashSet};

use sqlx::PgConnection;
use sqlx::postgres::types::Oid;

/// The group of the schema's types (enums, domains) and their constraints.
const TYPES: Oid = Oid(0);

/// One row per group: its oid, name, whether it is a view, its version, and the
/// relations its foreign keys reference. The schema's and the history table's oids are
/// looked up once, not per row.
const INVENTORY: &str = "\
WITH ns AS (SELECT oid FROM pg_namespace WHERE nspname = current_schema()), \
     history AS (SELECT coalesce(to_regclass('refinery_schema_history')::oid, 0) AS oid), \
     rels AS (SELECT c.oid, c.relname, c.relkind, c.xmin::text AS v FROM pg_class c \
               WHERE c.relnamespace = (SELECT oid FROM ns) \
                 AND c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S') \
                 AND c.oid <> (SELECT oid FROM history)), \
     atts AS (SELECT attrelid AS oid, string_agg(attnum || ':' || xmin, ',' ORDER BY attnum) AS v \
                FROM pg_attribute WHERE attrelid IN (SELECT oid FROM rels) AND attnum > 0 \
               GROUP BY attrelid), \
     defs AS (SELECT adrelid AS oid, string_agg(oid || ':' || xmin, ',' ORDER BY oid) AS v \
                FROM pg_attrdef WHERE adrelid IN (SELECT oid FROM rels) GROUP BY adrelid), \
     cons AS (SELECT conrelid AS oid, string_agg(oid || ':' || xmin, ',' ORDER BY oid) AS v, \
                     array_agg(confrelid) FILTER (WHERE confrelid <> 0) AS refs \
                FROM pg_constraint WHERE conrelid IN (SELECT oid FROM rels) GROUP BY conrelid), \
     idx AS (SELECT i.indrelid AS oid, \
                    string_agg(i.indexrelid || ':' || i.xmin || ':' || c.xmin, ',' ORDER BY i.indexrelid) AS v \
               FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid \
              WHERE i.indrelid IN (SELECT oid FROM rels) GROUP BY i.indrelid) \
SELECT r.oid, r.relname::text, r.relkind IN ('v', 'm'), \
       r.v || ';' || coalesce(atts.v, '') || ';' || coalesce(defs.v, '') || ';' \
           || coalesce(cons.v, '') || ';' || coalesce(idx.v, ''), \
       coalesce(cons.refs, '{}') \
  FROM rels r LEFT JOIN atts USING (oid) LEFT JOIN defs USING (oid) \
  LEFT JOIN cons USING (oid) LEFT JOIN idx USING (oid) \
UNION ALL \
SELECT 0::oid, '', false, \
       coalesce((SELECT string_agg(oid || ':' || xmin, ',' ORDER BY oid) FROM pg_type \
                  WHERE typnamespace = (SELECT oid FROM ns) AND typtype IN ('e', 'd')), '') || ';' \
       || coalesce((SELECT string_agg(oid || ':' || xmin, ',' ORDER BY oid) FROM pg_constraint \
                  WHERE connamespace = (SELECT oid FROM ns) AND conrelid = 0), ''), \
       '{}'::oid[]";

/// The lines of the groups in `$1`, each with its group. Straight from the catalogs (not
/// `information_schema` or the `pg_indexes`/`pg_views` views, which join far more), a
/// column's default read only for columns that have one.
const DESCRIBE: &str = "\
WITH wanted AS (SELECT unnest($1::oid[]) AS oid), \
     ns AS (SELECT oid FROM pg_namespace WHERE nspname = current_schema()) \
SELECT c.oid, 'column ' || c.relname || '.' || a.attname || ' ' \
        || format_type(a.atttypid, a.atttypmod) || ' ' \
        || CASE WHEN a.attnotnull THEN 'NOT NULL' ELSE 'NULL' END || ' ' \
        || CASE WHEN a.atthasdef THEN coalesce((SELECT pg_get_expr(d.adbin, d.adrelid) \
             FROM pg_attrdef d WHERE d.adrelid = a.attrelid AND d.adnum = a.attnum), '') \
           ELSE '' END || ' ' \
        || a.attidentity::text || a.attgenerated::text \
   FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid \
  WHERE c.oid IN (SELECT oid FROM wanted) AND c.relkind <> 'S' \
    AND a.attnum > 0 AND NOT a.attisdropped \
UNION ALL \
SELECT c.oid, CASE c.relkind WHEN 'S' THEN 'sequence ' || c.relname \
                             WHEN 'v' THEN 'view ' || c.relname || ': ' || pg_get_viewdef(c.oid) \
                             ELSE 'materialized view ' || c.relname || ': ' || pg_get_viewdef(c.oid) END \
  FROM pg_class c WHERE c.oid IN (SELECT oid FROM wanted) AND c.relkind IN ('S', 'v', 'm') \
UNION ALL \
SELECT i.indrelid, 'index ' || c.relname || ': ' || pg_get_indexdef(i.indexrelid) \
  FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid \
 WHERE i.indrelid IN (SELECT oid FROM wanted) \
UNION ALL \
SELECT conrelid, 'constraint ' || conname || ': ' || pg_get_constraintdef(oid) FROM pg_constraint \
 WHERE conrelid IN (SELECT oid FROM wanted) \
    OR (conrelid = 0 AND 0 IN (SELECT oid FROM wanted) AND connamespace = (SELECT oid FROM ns)) \
UNION ALL \
SELECT 0::oid, 'type ' || typname FROM pg_type \
 WHERE 0 IN (SELECT oid FROM wanted) \
   AND typnamespace = (SELECT oid FROM ns) AND typtype IN ('e', 'd')";

/// The groups read so far, for one database.
#[derive(Default)]
pub(super) struct Catalog {
    groups: HashMap<Oid, Group>,
}

struct Group {
    name: String,
    version: String,
    lines: Vec<String>,
}

/// A row of [`INVENTORY`].
struct Entry {
    oid: Oid,
    name: String,
    view: bool,
    version: String,
    references: Vec<Oid>,
}

impl Catalog {
    /// The schema now: one line per object or column, sorted, record separators
    /// between them, in one string.
    pub(super) async fn read(&mut self, conn: &mut PgConnection) -> Result<String, sqlx::Error> {
        let entries: Vec<Entry> =
            sqlx::query_as::<_, (Oid, String, bool, String, Vec<Oid>)>(INVENTORY)
                .fetch_all(&mut *conn)
                .await?
                .into_iter()
                .map(|(oid, name, view, version, references)| Entry {
                    oid,
                    name,
                    view,
                    version,
                    references,
                })
                .collect();
        let present: HashSet<Oid> = entries.iter().map(|e| e.oid).collect();
        self.groups.retain(|oid, _| present.contains(oid));
        let changed: HashSet<Oid> = entries
            .iter()
            .filter(|e| {
                self.groups
                    .get(&e.oid)
                    .is_none_or(|g| g.version != e.version)
            })
            .map(|e| e.oid)
            .collect();
        let everything = changed.iter().any(|oid| {
            *oid == TYPES
                || self
                    .groups
                    .get(oid)
                    .is_some_and(|g| entries.iter().any(|e| e.oid == *oid && e.name != g.name))
        });
        let wanted: Vec<Oid> = entries
            .iter()
            .filter(|e| {
                everything
                    || changed.contains(&e.oid)
                    || (!changed.is_empty()
                        && (e.view || e.references.iter().any(|r| changed.contains(r))))
            })
            .map(|e| e.oid)
            .collect();
        if !wanted.is_empty() {
            let rows: Vec<(Oid, String)> = sqlx::query_as(DESCRIBE)
                .bind(&wanted)
                .fetch_all(&mut *conn)
                .await?;
            let mut described: HashMap<Oid, Vec<String>> =
                wanted.iter().map(|oid| (*oid, Vec::new())).collect();
            for (oid, line) in rows {
                described.entry(oid).or_default().push(line);
            }
            for entry in &entries {
                let Some(lines) = described.remove(&entry.oid) else {
                    continue;
                };
                self.groups.insert(
                    entry.oid,
                    Group {
                        name: entry.name.clone(),
                        version: entry.version.clone(),
                        lines,
                    },
                );
            }
        }
        let mut lines: Vec<&str> = self
            .groups
            .values()
            .flat_map(|g| g.lines.iter().map(String::as_str))
            .collect();
        // Byte order: what `ORDER BY … COLLATE "C"` gave.
        lines.sort_unstable();
        Ok(lines.join("\u{1e}"))
    }
}
