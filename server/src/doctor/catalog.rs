//! PostgreSQL's schema for the round trip, read again only where it changed.
//!
//! A round trip reads the schema three times per migration, and the schema grows with
//! the history: described whole each time (`format_type`, `pg_get_indexdef`,
//! `pg_get_constraintdef` for every object), the reads were most of a long history's
//! `db-check`. So the schema is kept in groups: one per relation (a table with its
//! columns, indexes, constraints and triggers; a view; a sequence), and one for every
//! name a description may print from elsewhere (enums and their labels, domains,
//! composite types, the schema's own functions). Each group has a version: the oid and
//! `xmin` (the transaction that wrote it) of every catalog row it is described from. A
//! row inserted, updated or deleted changes the version, so each read asks the catalogs
//! for the versions (no deparsing) and describes only the groups whose version moved.
//! What a description names outside its own group is described again with it: a table
//! renamed or the names group changed makes every group be described again, a changed
//! table also redescribes the tables whose foreign keys reference it (also when it left
//! the schema), and any change redescribes the views.

use std::collections::{HashMap, HashSet};

use sqlx::PgConnection;
use sqlx::postgres::types::Oid;

/// The group of the schema's types (enums, domains, composite types), their constraints,
/// and its functions.
const TYPES: Oid = Oid(0);

/// One row per group: its oid, name, whether it is a view, its version, and the
/// relations its foreign keys reference. The schema's and the history table's oids are
/// looked up once, not per row; a relation's columns by the catalog's index (one small
/// lookup each, instead of scanning every column of every catalog).
const INVENTORY: &str = "\
WITH ns AS (SELECT oid FROM pg_namespace WHERE nspname = current_schema()), \
     history AS (SELECT coalesce(to_regclass('refinery_schema_history')::oid, 0) AS oid), \
     rels AS (SELECT c.oid, c.relname, c.relkind, c.xmin::text AS v FROM pg_class c \
               WHERE c.relnamespace = (SELECT oid FROM ns) \
                 AND c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S') \
                 AND c.oid <> (SELECT oid FROM history)), \
     defs AS (SELECT adrelid AS oid, string_agg(oid || ':' || xmin, ',' ORDER BY oid) AS v \
                FROM pg_attrdef WHERE adrelid IN (SELECT oid FROM rels) GROUP BY adrelid), \
     cons AS (SELECT conrelid AS oid, string_agg(oid || ':' || xmin, ',' ORDER BY oid) AS v, \
                     array_agg(confrelid) FILTER (WHERE confrelid <> 0) AS refs \
                FROM pg_constraint WHERE connamespace = (SELECT oid FROM ns) AND conrelid <> 0 \
               GROUP BY conrelid), \
     trig AS (SELECT tgrelid AS oid, string_agg(oid || ':' || xmin, ',' ORDER BY oid) AS v \
                FROM pg_trigger WHERE tgrelid IN (SELECT oid FROM rels) AND NOT tgisinternal \
               GROUP BY tgrelid), \
     idx AS (SELECT i.indrelid AS oid, \
                    string_agg(i.indexrelid || ':' || i.xmin || ':' || c.xmin, ',' ORDER BY i.indexrelid) AS v \
               FROM pg_class c JOIN pg_index i ON i.indexrelid = c.oid \
              WHERE c.relnamespace = (SELECT oid FROM ns) AND c.relkind IN ('i', 'I') \
              GROUP BY i.indrelid) \
SELECT r.oid, r.relname::text, r.relkind IN ('v', 'm'), \
       r.v || ';' || coalesce(atts.v, '') || ';' || coalesce(defs.v, '') || ';' \
           || coalesce(cons.v, '') || ';' || coalesce(idx.v, '') || ';' || coalesce(trig.v, ''), \
       coalesce(cons.refs, '{}') \
  FROM rels r \
  LEFT JOIN LATERAL (SELECT string_agg(attnum || ':' || xmin, ',' ORDER BY attnum) AS v \
                       FROM pg_attribute WHERE attrelid = r.oid AND attnum > 0) atts ON true \
  LEFT JOIN defs USING (oid) LEFT JOIN cons USING (oid) LEFT JOIN idx USING (oid) \
  LEFT JOIN trig USING (oid) \
UNION ALL \
SELECT 0::oid, '', false, \
       concat_ws(';', \
         (SELECT string_agg(t.oid || ':' || t.xmin, ',' ORDER BY t.oid) FROM pg_type t \
           WHERE t.typnamespace = (SELECT oid FROM ns) AND t.typtype IN ('e', 'd')), \
         (SELECT string_agg(e.oid || ':' || e.xmin, ',' ORDER BY e.oid) FROM pg_enum e \
           WHERE e.enumtypid IN (SELECT oid FROM pg_type \
                                  WHERE typnamespace = (SELECT oid FROM ns) AND typtype = 'e')), \
         (SELECT string_agg(c.oid || ':' || c.xmin || ':' || t.xmin || ':' || a.v, ',' ORDER BY c.oid) \
            FROM pg_class c JOIN pg_type t ON t.oid = c.reltype, \
                 LATERAL (SELECT string_agg(attnum || ':' || xmin, '.') AS v FROM pg_attribute \
                           WHERE attrelid = c.oid) a \
           WHERE c.relnamespace = (SELECT oid FROM ns) AND c.relkind = 'c'), \
         (SELECT string_agg(oid || ':' || xmin, ',' ORDER BY oid) FROM pg_constraint \
           WHERE connamespace = (SELECT oid FROM ns) AND conrelid = 0), \
         (SELECT string_agg(oid || ':' || xmin, ',' ORDER BY oid) FROM pg_proc \
           WHERE pronamespace = (SELECT oid FROM ns))), \
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
        || CASE WHEN a.attcollation <> 0 AND a.attcollation <> \
                     (SELECT typcollation FROM pg_type WHERE oid = a.atttypid) \
                THEN ' COLLATE ' || (SELECT quote_ident(collname) FROM pg_collation \
                                   WHERE oid = a.attcollation) ELSE '' END \
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
SELECT t.tgrelid, 'trigger ' || t.tgname || ': ' || pg_get_triggerdef(t.oid) FROM pg_trigger t \
 WHERE t.tgrelid IN (SELECT oid FROM wanted) AND NOT t.tgisinternal \
UNION ALL \
SELECT k.conrelid, 'constraint ' || k.conname || ' on ' \
        || coalesce((SELECT relname FROM pg_class WHERE oid = k.conrelid), \
                    (SELECT typname FROM pg_type WHERE oid = k.contypid)) \
        || ': ' || pg_get_constraintdef(k.oid) \
  FROM pg_constraint k \
 WHERE k.conrelid IN (SELECT oid FROM wanted) \
    OR (k.conrelid = 0 AND 0 IN (SELECT oid FROM wanted) AND k.connamespace = (SELECT oid FROM ns)) \
UNION ALL \
SELECT 0::oid, 'type ' || t.typname || CASE t.typtype \
         WHEN 'e' THEN ': enum' \
         WHEN 'd' THEN ': domain ' || format_type(t.typbasetype, t.typtypmod) \
                       || CASE WHEN t.typnotnull THEN ' NOT NULL' ELSE '' END \
                       || coalesce(' DEFAULT ' || t.typdefault, '') \
         ELSE ': (' || (SELECT string_agg(a.attname || ' ' || format_type(a.atttypid, a.atttypmod), ', ' \
                                          ORDER BY a.attnum) \
                          FROM pg_attribute a WHERE a.attrelid = t.typrelid AND a.attnum > 0 \
                           AND NOT a.attisdropped) || ')' END \
  FROM pg_type t \
 WHERE 0 IN (SELECT oid FROM wanted) AND t.typnamespace = (SELECT oid FROM ns) \
   AND (t.typtype IN ('e', 'd') \
        OR (t.typtype = 'c' AND (SELECT relkind FROM pg_class WHERE oid = t.typrelid) = 'c')) \
UNION ALL \
SELECT 0::oid, 'function ' || p.oid::regprocedure || ': ' || pg_get_functiondef(p.oid) \
  FROM pg_proc p \
 WHERE 0 IN (SELECT oid FROM wanted) AND p.pronamespace = (SELECT oid FROM ns) \
   AND p.prokind IN ('f', 'p') \
   AND NOT EXISTS (SELECT 1 FROM pg_depend d \
        WHERE d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e')";

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
        // Gone: dropped, or moved to another schema (`SET SCHEMA`), where a foreign key
        // still names it, now with its schema.
        let gone: HashSet<Oid> = self
            .groups
            .keys()
            .filter(|oid| !present.contains(oid))
            .copied()
            .collect();
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
                let moved = |r: &Oid| changed.contains(r) || gone.contains(r);
                everything
                    || changed.contains(&e.oid)
                    || (!(changed.is_empty() && gone.is_empty())
                        && (e.view || e.references.iter().any(moved)))
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
