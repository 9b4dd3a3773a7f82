//! PostgreSQL's schema for the round trip, read again only where it changed.
//!
//! A round trip reads the schema twice per migration, and the schema grows with
//! the history: described whole each time (`format_type`, `pg_get_indexdef`,
//! `pg_get_constraintdef` for every object), the reads were most of a long history's
//! `db-check`. So the schema is kept in groups: one per relation (a table with its
//! columns, indexes, constraints and triggers; a view; a sequence), and one for every
//! name a description may print from elsewhere (enums and their labels, domains,
//! composite types, the schema's own functions). Each read asks the catalogs which
//! groups moved since the last one (no deparsing) and describes only those: a group
//! moved when one of its catalog rows was written by a transaction the last read could
//! not see (its `xmin` is at or past that read's snapshot horizon), or when it has fewer
//! or more rows of a kind (a constraint, index or trigger dropped leaves no row to see).
//! What a description names outside its own group is described again with it: a table
//! renamed, the names group changed, a sequence gone or anything written in another
//! schema (a view, default or foreign key may name it) makes every group be described
//! again, a changed table also redescribes the tables whose foreign keys reference it
//! (also when it left the schema), and any change redescribes the views. The schema
//! described is the one `search_path` named before the migrations ran.

use std::collections::{HashMap, HashSet};

use sqlx::postgres::types::Oid;
use sqlx::{Connection as _, PgConnection};

/// The group of the schema's types (enums, domains, composite types), their constraints,
/// and its functions.
const TYPES: Oid = Oid(0);

/// One row per group: its oid, name, kind (`relkind`; the types group has none), its row
/// counts (constraints, indexes, triggers, policies; for the types group: types,
/// composite types, domain constraints, functions, collations, extensions, schemas),
/// whether a row of it was written since the horizon `$1` (all are, without one), the
/// relations its foreign keys reference, and the horizon for the next read (this
/// statement's snapshot `xmin`, as an `xid`). The types group also says whether anything
/// was written in another schema (`elsewhere`): a view, default or foreign key of this
/// schema may print names from there. `$2` is the schema described. Each catalog is
/// scanned once.
const INVENTORY: &str = "\
WITH ns AS (SELECT oid FROM pg_namespace WHERE nspname = $2), \
     t AS (SELECT coalesce(age(nullif($1, '')::xid), 2147483647) AS a), \
     aside AS (SELECT oid FROM pg_namespace \
                WHERE nspname LIKE 'pg\\_toast%' OR nspname LIKE 'pg\\_temp\\_%'), \
     cls AS MATERIALIZED (SELECT c.oid, c.relname, c.relkind, c.relnamespace, \
                                 age(c.xmin) <= (SELECT a FROM t) AS recent \
               FROM pg_class c \
              WHERE (c.relnamespace = (SELECT oid FROM ns) \
                     AND c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S', 'i', 'I', 'c') \
                     AND c.oid <> coalesce(to_regclass('refinery_schema_history')::oid, 0)) \
                 OR age(c.xmin) <= (SELECT a FROM t)), \
     touched AS MATERIALIZED ( \
         SELECT attrelid AS oid FROM pg_attribute WHERE age(xmin) <= (SELECT a FROM t) \
         UNION SELECT adrelid FROM pg_attrdef WHERE age(xmin) <= (SELECT a FROM t) \
         UNION SELECT ev_class FROM pg_rewrite WHERE age(xmin) <= (SELECT a FROM t) \
         UNION SELECT seqrelid FROM pg_sequence WHERE age(xmin) <= (SELECT a FROM t)), \
     cons AS (SELECT conrelid AS oid, count(*) AS n, bool_or(age(xmin) <= (SELECT a FROM t)) AS recent, \
                     array_agg(confrelid) FILTER (WHERE confrelid <> 0) AS refs \
                FROM pg_constraint WHERE connamespace = (SELECT oid FROM ns) GROUP BY conrelid), \
     trig AS (SELECT tgrelid AS oid, count(*) AS n, bool_or(age(xmin) <= (SELECT a FROM t)) AS recent \
                FROM pg_trigger WHERE NOT tgisinternal AND tgrelid IN (SELECT oid FROM cls) \
               GROUP BY tgrelid), \
     pol AS (SELECT polrelid AS oid, count(*) AS n, bool_or(age(xmin) <= (SELECT a FROM t)) AS recent \
               FROM pg_policy GROUP BY polrelid), \
     idx AS (SELECT i.indrelid AS oid, count(*) AS n, \
                    bool_or(age(i.xmin) <= (SELECT a FROM t) OR c.recent) AS recent \
               FROM cls c JOIN pg_index i ON i.indexrelid = c.oid \
              WHERE c.relnamespace = (SELECT oid FROM ns) GROUP BY i.indrelid), \
     typ AS (SELECT count(*) FILTER (WHERE mine) AS n, coalesce(bool_or(mine AND recent), false) AS recent, \
                    coalesce(bool_or(NOT mine AND recent), false) AS elsewhere \
               FROM (SELECT typnamespace = (SELECT oid FROM ns) AND typtype IN ('e', 'd', 'r', 'm') AS mine, \
                            age(xmin) <= (SELECT a FROM t) AS recent, typnamespace FROM pg_type) x \
              WHERE mine OR (recent AND typnamespace NOT IN (SELECT oid FROM aside) \
                             AND typnamespace <> (SELECT oid FROM ns))), \
     comp AS (SELECT count(*) AS n, \
                     coalesce(bool_or(recent OR oid IN (SELECT oid FROM touched)), false) AS recent \
                FROM cls WHERE relkind = 'c' AND relnamespace = (SELECT oid FROM ns)), \
     fns AS (SELECT count(*) FILTER (WHERE pronamespace = (SELECT oid FROM ns)) AS n, \
                    coalesce(bool_or(age(xmin) <= (SELECT a FROM t) AND pronamespace = (SELECT oid FROM ns)), false) AS recent, \
                    coalesce(bool_or(age(xmin) <= (SELECT a FROM t) AND pronamespace <> (SELECT oid FROM ns)), false) AS elsewhere \
               FROM pg_proc WHERE pronamespace = (SELECT oid FROM ns) OR age(xmin) <= (SELECT a FROM t)), \
     coll AS (SELECT count(*) FILTER (WHERE collnamespace = (SELECT oid FROM ns)) AS n, \
                     coalesce(bool_or(age(xmin) <= (SELECT a FROM t)), false) AS recent \
                FROM pg_collation WHERE collnamespace = (SELECT oid FROM ns) OR age(xmin) <= (SELECT a FROM t)), \
     ext AS (SELECT count(*) AS n, coalesce(bool_or(age(xmin) <= (SELECT a FROM t)), false) AS recent \
               FROM pg_extension), \
     nsp AS (SELECT count(*) AS n, coalesce(bool_or(age(xmin) <= (SELECT a FROM t)), false) AS recent \
               FROM pg_namespace WHERE oid NOT IN (SELECT oid FROM aside)), \
     horizon AS (SELECT (pg_snapshot_xmin(pg_current_snapshot())::text::bigint % 4294967296)::text AS h) \
SELECT r.oid, r.relname::text AS name, r.relkind::text AS kind, \
       coalesce(cons.n, 0) || ':' || coalesce(idx.n, 0) || ':' || coalesce(trig.n, 0) \
           || ':' || coalesce(pol.n, 0) AS counts, \
       r.recent OR r.oid IN (SELECT oid FROM touched) \
           OR coalesce(cons.recent, false) OR coalesce(idx.recent, false) \
           OR coalesce(trig.recent, false) OR coalesce(pol.recent, false) AS recent, \
       false AS elsewhere, coalesce(cons.refs, '{}') AS references, (SELECT h FROM horizon) AS horizon \
  FROM cls r LEFT JOIN cons USING (oid) LEFT JOIN idx USING (oid) LEFT JOIN trig USING (oid) \
  LEFT JOIN pol USING (oid) \
 WHERE r.relkind IN ('r', 'p', 'v', 'm', 'f', 'S') AND r.relnamespace = (SELECT oid FROM ns) \
   AND r.oid <> coalesce(to_regclass('refinery_schema_history')::oid, 0) \
UNION ALL \
SELECT 0::oid, '', '', concat_ws(':', typ.n, comp.n, coalesce(cons.n, 0), fns.n, coll.n, ext.n, nsp.n), \
       typ.recent OR comp.recent OR coalesce(cons.recent, false) OR fns.recent OR coll.recent \
       OR ext.recent \
       OR EXISTS (SELECT FROM pg_enum WHERE age(xmin) <= (SELECT a FROM t) \
                   AND enumtypid IN (SELECT oid FROM pg_type WHERE typnamespace = (SELECT oid FROM ns))), \
       typ.elsewhere OR fns.elsewhere OR nsp.recent \
       OR EXISTS (SELECT FROM cls WHERE relnamespace <> (SELECT oid FROM ns) \
                   AND relnamespace NOT IN (SELECT oid FROM aside)) \
       OR EXISTS (SELECT FROM touched JOIN pg_class c USING (oid) \
                   WHERE c.relnamespace <> (SELECT oid FROM ns) \
                     AND c.relnamespace NOT IN (SELECT oid FROM aside)), \
       '{}'::oid[], (SELECT h FROM horizon) \
  FROM typ, comp, fns, coll, ext, nsp LEFT JOIN cons ON cons.oid = 0";

/// The lines of the groups in `$1`, each with its group. Straight from the catalogs (not
/// `information_schema` or the `pg_indexes`/`pg_views` views, which join far more), a
/// column's default read only for columns that have one.
const DESCRIBE: &str = "\
WITH wanted AS (SELECT unnest($1::oid[]) AS oid), \
     ns AS (SELECT oid FROM pg_namespace WHERE nspname = $2) \
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
SELECT c.oid, CASE c.relkind WHEN 'v' THEN 'view ' || c.relname || ': ' || pg_get_viewdef(c.oid) \
                             ELSE 'materialized view ' || c.relname || ': ' || pg_get_viewdef(c.oid) END \
  FROM pg_class c WHERE c.oid IN (SELECT oid FROM wanted) AND c.relkind IN ('v', 'm') \
UNION ALL \
SELECT c.oid, 'sequence ' || c.relname || ': ' || format_type(s.seqtypid, NULL) \
        || ' increment ' || s.seqincrement || ' start ' || s.seqstart || ' min ' || s.seqmin \
        || ' max ' || s.seqmax || ' cache ' || s.seqcache || CASE WHEN s.seqcycle THEN ' cycle' ELSE '' END \
  FROM pg_class c JOIN pg_sequence s ON s.seqrelid = c.oid WHERE c.oid IN (SELECT oid FROM wanted) \
UNION ALL \
SELECT c.oid, 'table ' || c.relname || ':' \
        || CASE WHEN c.relrowsecurity THEN ' row level security' ELSE '' END \
        || CASE WHEN c.relforcerowsecurity THEN ' forced' ELSE '' END \
        || CASE WHEN c.relkind = 'p' THEN ' partitioned by ' || pg_get_partkeydef(c.oid) ELSE '' END \
        || CASE WHEN c.relispartition THEN ' partition of ' \
                || (SELECT i.inhparent::regclass::text FROM pg_inherits i WHERE i.inhrelid = c.oid LIMIT 1) \
                || ' ' || pg_get_expr(c.relpartbound, c.oid) ELSE '' END \
  FROM pg_class c WHERE c.oid IN (SELECT oid FROM wanted) \
   AND (c.relrowsecurity OR c.relforcerowsecurity OR c.relkind = 'p' OR c.relispartition) \
UNION ALL \
SELECT p.polrelid, 'policy ' || p.polname || ' on ' || c.relname || ': ' \
        || CASE p.polcmd WHEN 'r' THEN 'SELECT' WHEN 'a' THEN 'INSERT' WHEN 'w' THEN 'UPDATE' \
                         WHEN 'd' THEN 'DELETE' ELSE 'ALL' END \
        || CASE WHEN p.polpermissive THEN '' ELSE ' RESTRICTIVE' END \
        || ' TO ' || (SELECT string_agg(CASE WHEN r = 0 THEN 'PUBLIC' ELSE r::regrole::text END, ', ' ORDER BY r) \
                        FROM unnest(p.polroles) r) \
        || coalesce(' USING (' || pg_get_expr(p.polqual, p.polrelid) || ')', '') \
        || coalesce(' WITH CHECK (' || pg_get_expr(p.polwithcheck, p.polrelid) || ')', '') \
  FROM pg_policy p JOIN pg_class c ON c.oid = p.polrelid WHERE p.polrelid IN (SELECT oid FROM wanted) \
UNION ALL \
SELECT i.indrelid, 'index ' || c.relname || ': ' || pg_get_indexdef(i.indexrelid) \
  FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid \
 WHERE i.indrelid IN (SELECT oid FROM wanted) \
UNION ALL \
SELECT t.tgrelid, 'trigger ' || t.tgname || ': ' || pg_get_triggerdef(t.oid) \
        || CASE t.tgenabled WHEN 'D' THEN ' (disabled)' WHEN 'R' THEN ' (enabled on replicas)' \
                            WHEN 'A' THEN ' (enabled always)' ELSE '' END FROM pg_trigger t \
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
         WHEN 'r' THEN ': range of ' || (SELECT format_type(rngsubtype, NULL) FROM pg_range \
                                         WHERE rngtypid = t.oid) \
         ELSE ': (' || coalesce((SELECT string_agg(a.attname || ' ' || format_type(a.atttypid, a.atttypmod), \
                                                   ', ' ORDER BY a.attnum) \
                                   FROM pg_attribute a WHERE a.attrelid = t.typrelid AND a.attnum > 0 \
                                    AND NOT a.attisdropped), '') || ')' END \
  FROM pg_type t \
 WHERE 0 IN (SELECT oid FROM wanted) AND t.typnamespace = (SELECT oid FROM ns) \
   AND (t.typtype IN ('e', 'd', 'r') \
        OR (t.typtype = 'c' AND (SELECT relkind FROM pg_class WHERE oid = t.typrelid) = 'c')) \
UNION ALL \
SELECT 0::oid, 'collation ' || quote_ident(collname) FROM pg_collation \
 WHERE 0 IN (SELECT oid FROM wanted) AND collnamespace = (SELECT oid FROM ns) \
UNION ALL \
SELECT 0::oid, 'function ' || p.oid::regprocedure || ': ' || pg_get_functiondef(p.oid) \
  FROM pg_proc p \
 WHERE 0 IN (SELECT oid FROM wanted) AND p.pronamespace = (SELECT oid FROM ns) \
   AND p.prokind IN ('f', 'p') \
   AND NOT EXISTS (SELECT 1 FROM pg_depend d \
        WHERE d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e')";

/// Runs [`DESCRIBE`] under a generic plan: left to choose, PostgreSQL plans it anew for
/// every list of groups (about 1.2 ms each time, three times what running it takes).
const GENERIC_PLAN: &str = "BEGIN READ ONLY; SET LOCAL plan_cache_mode = force_generic_plan";

/// Every this many reads, the catalogs they scan are vacuumed.
const VACUUM_EVERY: u32 = 32;

/// The catalogs the reads scan (and `pg_depend`, which each table written grows). A round
/// trip writes and drops each table twice: the dead rows it leaves would make every
/// later scan longer (reads took twice as long at 350 migrations), and autovacuum, a
/// minute apart, comes after the round trip is over. `VACUUM` needs the database's
/// owner (the round trip made the scratch database); anyone else gets a warning only.
const VACUUM: &str = "VACUUM pg_class, pg_attribute, pg_attrdef, pg_type, pg_depend, \
                      pg_constraint, pg_index, pg_rewrite, pg_sequence, pg_trigger, pg_policy, \
                      pg_proc, pg_enum, pg_collation, pg_namespace";

/// The groups read so far, for one database.
pub(super) struct Catalog {
    /// The schema described: the one the connection's `search_path` named before the
    /// migrations ran (a schema they create named after the role would take its place).
    schema: String,
    groups: HashMap<Oid, Group>,
    /// The last read's snapshot horizon (an `xid`); empty before the first read.
    horizon: String,
    /// Reads so far.
    reads: u32,
}

struct Group {
    name: String,
    /// `relkind`; empty for the types group.
    kind: String,
    /// Its rows of each kind that can be dropped on their own, counted.
    counts: String,
    lines: Vec<String>,
}

/// A row of [`INVENTORY`].
#[derive(sqlx::FromRow)]
struct Entry {
    oid: Oid,
    name: String,
    kind: String,
    counts: String,
    /// A row of it was written since the last read.
    recent: bool,
    /// The types group: something was written in another schema since the last read.
    elsewhere: bool,
    references: Vec<Oid>,
    /// This read's snapshot horizon, for the next one.
    horizon: String,
}

impl Catalog {
    /// A reader of the schema `conn`'s `search_path` names now (`public`, as a rule, and
    /// when it names none that exists).
    pub(super) async fn of(conn: &mut PgConnection) -> Result<Self, sqlx::Error> {
        let schema: String =
            sqlx::query_scalar("SELECT coalesce(current_schema(), 'public')::text")
                .fetch_one(&mut *conn)
                .await?;
        Ok(Self {
            schema,
            groups: HashMap::new(),
            horizon: String::new(),
            reads: 0,
        })
    }

    /// The schema now: one line per object or column, sorted.
    pub(super) async fn read(
        &mut self,
        conn: &mut PgConnection,
    ) -> Result<Vec<String>, sqlx::Error> {
        self.reads += 1;
        // Only to keep the reads fast: a vacuum that fails does not fail the read.
        if self.reads.is_multiple_of(VACUUM_EVERY)
            && let Err(e) = sqlx::raw_sql(VACUUM).execute(&mut *conn).await
        {
            log::debug!("db-check: vacuuming the scratch database's catalogs: {e}");
        }
        let entries: Vec<Entry> = sqlx::query_as(INVENTORY)
            .bind(&self.horizon)
            .bind(&self.schema)
            .fetch_all(&mut *conn)
            .await?;
        let horizon = entries
            .first()
            .map(|e| e.horizon.clone())
            .unwrap_or_default();
        let present: HashSet<Oid> = entries.iter().map(|e| e.oid).collect();
        // Gone: dropped, or moved to another schema (`SET SCHEMA`), where a foreign key
        // still names it, now with its schema. A sequence gone may still be named by a
        // column's default, now with its schema: every group is described again.
        let gone: HashSet<Oid> = self
            .groups
            .keys()
            .filter(|oid| !present.contains(oid))
            .copied()
            .collect();
        let sequence_gone = gone
            .iter()
            .any(|oid| self.groups.get(oid).is_some_and(|g| g.kind == "S"));
        self.groups.retain(|oid, _| present.contains(oid));
        let changed: HashSet<Oid> = entries
            .iter()
            .filter(|e| e.recent || self.groups.get(&e.oid).is_none_or(|g| g.counts != e.counts))
            .map(|e| e.oid)
            .collect();
        let everything = sequence_gone
            || entries.iter().any(|e| e.elsewhere)
            || changed.iter().any(|oid| {
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
                        && (matches!(e.kind.as_str(), "v" | "m") || e.references.iter().any(moved)))
            })
            .map(|e| e.oid)
            .collect();
        if !wanted.is_empty() {
            let mut tx = conn.begin_with(GENERIC_PLAN).await?;
            let rows: Vec<(Oid, String)> = sqlx::query_as(DESCRIBE)
                .bind(&wanted)
                .bind(&self.schema)
                .fetch_all(&mut *tx)
                .await?;
            tx.commit().await?;
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
                        kind: entry.kind.clone(),
                        counts: entry.counts.clone(),
                        lines,
                    },
                );
            }
        }
        // Only once every moved group is described again: a failed read is repeated whole.
        self.horizon = horizon;
        let mut lines: Vec<String> = self
            .groups
            .values()
            .flat_map(|g| g.lines.iter().cloned())
            .collect();
        // Byte order: what `ORDER BY … COLLATE "C"` gave.
        lines.sort_unstable();
        Ok(lines)
    }
}
