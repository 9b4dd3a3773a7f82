//! Reading a PostgreSQL database's schema (its current schema) from the catalogs.

use sqlx::{PgConnection, Row};

use super::normalize;
use super::{ColumnDef, EnumType, ForeignKey, IndexDef, Schema, TableDef, Undescribed};
use crate::migrations::HISTORY_TABLE;

pub async fn read(c: &mut PgConnection) -> Result<Schema, sqlx::Error> {
    let relations: Vec<(i64, String)> = sqlx::query_as(
        "SELECT oid::int8, relname::text FROM pg_class \
         WHERE relnamespace = current_schema()::regnamespace AND relkind IN ('r', 'p') \
           AND NOT relispartition AND relname <> $1 \
           AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass \
                       AND d.objid = pg_class.oid AND d.deptype = 'e') \
         ORDER BY relname",
    )
    .bind(HISTORY_TABLE)
    .fetch_all(&mut *c)
    .await?;
    let mut tables = Vec::new();
    for (oid, name) in relations {
        let mut columns = Vec::new();
        for row in sqlx::query(
            "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod), a.attnotnull, \
                    pg_get_expr(d.adbin, d.adrelid), \
                    (SELECT e.typname::text || CASE WHEN t.typcategory = 'A' THEN '[]' ELSE '' END \
                       FROM pg_type t JOIN pg_type e \
                         ON e.oid = CASE WHEN t.typcategory = 'A' THEN t.typelem ELSE t.oid END \
                      WHERE t.oid = a.atttypid AND e.typtype = 'e'), \
                    a.attidentity::text \
             FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum \
             WHERE a.attrelid = $1::int8::oid AND a.attnum > 0 AND NOT a.attisdropped \
               AND a.attgenerated = '' \
             ORDER BY a.attnum",
        )
        .bind(oid)
        .fetch_all(&mut *c)
        .await?
        {
            let mut data_type = normalize::data_type(&row.try_get::<String, _>(1)?);
            let mut default: Option<String> = row.try_get(3)?;
            // An enum type keeps its name as written: `mood`, `"Mood"`, `mood[]`.
            if let Some(name) = row.try_get::<Option<String>, _>(4)? {
                data_type = match name.strip_suffix("[]") {
                    Some(element) => format!("{}[]", normalize::ident(element)),
                    None => normalize::ident(&name),
                };
            }
            // `serial` is an integer with a sequence default: both engines read `SERIAL`.
            if default.as_deref().is_some_and(|d| d.starts_with("nextval(")) {
                data_type = match data_type.as_str() {
                    "BIGINT" => "BIGSERIAL".into(),
                    "SMALLINT" => "SMALLSERIAL".into(),
                    _ => "SERIAL".into(),
                };
                default = None;
            }
            columns.push(ColumnDef {
                name: row.try_get(0)?,
                data_type,
                not_null: row.try_get(2)?,
                default: default.map(|d| normalize::default(&d)),
                identity: match row.try_get::<String, _>(5)?.as_str() {
                    "a" => Some("ALWAYS".into()),
                    "d" => Some("BY DEFAULT".into()),
                    _ => None,
                },
            });
        }
        let key_columns = |array: &str| {
            format!(
                "(SELECT array_agg(a.attname::text ORDER BY k.ord) FROM unnest({array}) WITH ORDINALITY AS k(attnum, ord) \
                 JOIN pg_attribute a ON a.attrelid = $1::int8::oid AND a.attnum = k.attnum)"
            )
        };
        let primary_key: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT coalesce({}, '{{}}') FROM pg_constraint WHERE conrelid = $1::int8::oid AND contype = 'p'",
            key_columns("conkey")
        )))
        .bind(oid)
        .fetch_optional(&mut *c)
        .await?
        .unwrap_or_default();
        let uniques: Vec<Vec<String>> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT {} FROM pg_constraint WHERE conrelid = $1::int8::oid AND contype = 'u'",
            key_columns("conkey")
        )))
        .bind(oid)
        .fetch_all(&mut *c)
        .await?;
        let mut foreign_keys = Vec::new();
        for row in sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {}, (SELECT relname::text FROM pg_class WHERE oid = f.confrelid), \
                    (SELECT array_agg(a.attname::text ORDER BY k.ord) FROM unnest(f.confkey) WITH ORDINALITY AS k(attnum, ord) \
                     JOIN pg_attribute a ON a.attrelid = f.confrelid AND a.attnum = k.attnum), \
                    f.confdeltype::text, f.confupdtype::text \
             FROM pg_constraint f WHERE f.conrelid = $1::int8::oid AND f.contype = 'f'",
            key_columns("f.conkey")
        )))
        .bind(oid)
        .fetch_all(&mut *c)
        .await?
        {
            foreign_keys.push(ForeignKey {
                columns: row.try_get(0)?,
                references: row.try_get(1)?,
                referenced_columns: row.try_get(2)?,
                on_delete: action(&row.try_get::<String, _>(3)?),
                on_update: action(&row.try_get::<String, _>(4)?),
            });
        }
        // Indexes of their own: not the ones behind the primary key or a constraint.
        let mut indexes = Vec::new();
        let mut undescribed = Vec::new();
        for row in sqlx::query(
            "SELECT c.relname::text, i.indisunique, \
                    (SELECT array_agg(a.attname::text ORDER BY k.ord) \
                       FROM unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord) \
                       JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum \
                      WHERE k.ord <= i.indnkeyatts), \
                    i.indexprs IS NOT NULL OR i.indpred IS NOT NULL \
                      OR EXISTS (SELECT 1 FROM unnest(i.indoption) o WHERE o::int & 3 IN (1, 2)) \
                      OR i.indnatts > i.indnkeyatts OR c.reloptions IS NOT NULL \
                      OR EXISTS (SELECT 1 FROM unnest(i.indkey, i.indcollation) AS k(attnum, coll) \
                                 JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum \
                                WHERE k.coll <> 0 AND k.coll <> a.attcollation), \
                    (SELECT CASE amname WHEN 'btree' THEN '' ELSE amname::text END \
                       FROM pg_am WHERE oid = c.relam), \
                    (SELECT array_agg(CASE WHEN o.opcdefault THEN '' ELSE o.opcname::text END ORDER BY k.ord) \
                       FROM unnest(i.indclass) WITH ORDINALITY AS k(opclass, ord) \
                       JOIN pg_opclass o ON o.oid = k.opclass \
                      WHERE k.ord <= i.indnkeyatts) \
             FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid \
             WHERE i.indrelid = $1::int8::oid \
               AND NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conindid = i.indexrelid)",
        )
        .bind(oid)
        .fetch_all(&mut *c)
        .await?
        {
            let name: String = row.try_get(0)?;
            // Partial, on an expression, DESC, NULLS FIRST, INCLUDE, COLLATE, WITH (…).
            if row.try_get::<bool, _>(3)? {
                undescribed.push(Undescribed::PartialIndex(name));
                continue;
            }
            let mut opclasses: Vec<String> = row.try_get(5)?;
            if opclasses.iter().all(String::is_empty) {
                opclasses.clear();
            }
            indexes.push(IndexDef {
                name,
                unique: row.try_get(1)?,
                columns: row.try_get(2)?,
                method: row.try_get(4)?,
                opclasses,
            });
        }
        let checks: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_constraint WHERE conrelid = $1::int8::oid AND contype IN ('c', 'x')",
        )
        .bind(oid)
        .fetch_one(&mut *c)
        .await?;
        if checks > 0 {
            undescribed.push(Undescribed::Check);
        }
        let collated: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid \
             WHERE a.attrelid = $1::int8::oid AND a.attnum > 0 AND NOT a.attisdropped \
               AND a.attcollation <> t.typcollation",
        )
        .bind(oid)
        .fetch_one(&mut *c)
        .await?;
        if collated > 0 {
            undescribed.push(Undescribed::Collate);
        }
        let triggers: Vec<String> = sqlx::query_scalar(
            "SELECT tgname::text FROM pg_trigger WHERE tgrelid = $1::int8::oid AND NOT tgisinternal ORDER BY 1",
        )
        .bind(oid)
        .fetch_all(&mut *c)
        .await?;
        undescribed.extend(triggers.into_iter().map(Undescribed::Trigger));
        let special: Vec<String> = sqlx::query_scalar(
            "SELECT attname::text FROM pg_attribute WHERE attrelid = $1::int8::oid AND attnum > 0 \
               AND NOT attisdropped AND attgenerated <> '' ORDER BY attnum",
        )
        .bind(oid)
        .fetch_all(&mut *c)
        .await?;
        undescribed.extend(special.into_iter().map(Undescribed::GeneratedOrIdentity));
        let partitioning: Option<String> =
            sqlx::query_scalar("SELECT pg_get_partkeydef($1::int8::oid)")
                .bind(oid)
                .fetch_one(&mut *c)
                .await?;
        if let Some(key) = partitioning {
            let partitions: Vec<String> = sqlx::query_scalar(
                "SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid \
                 WHERE i.inhparent = $1::int8::oid ORDER BY 1",
            )
            .bind(oid)
            .fetch_all(&mut *c)
            .await?;
            undescribed.push(Undescribed::Partitioned { key, partitions });
        }
        tables.push(TableDef {
            name,
            columns,
            primary_key,
            uniques,
            foreign_keys,
            indexes,
            undescribed,
        });
    }
    // Enum types of the schema, not those an extension owns.
    let enums = sqlx::query_as::<_, (String, Vec<String>)>(
        "SELECT t.typname::text, array_agg(e.enumlabel::text ORDER BY e.enumsortorder) \
         FROM pg_type t JOIN pg_enum e ON e.enumtypid = t.oid \
         WHERE t.typnamespace = current_schema()::regnamespace AND t.typtype = 'e' \
           AND NOT EXISTS (SELECT 1 FROM pg_depend WHERE classid = 'pg_type'::regclass \
                           AND objid = t.oid AND deptype = 'e') \
         GROUP BY t.typname ORDER BY 1",
    )
    .fetch_all(&mut *c)
    .await?
    .into_iter()
    .map(|(name, values)| EnumType { name, values })
    .collect();
    // Extensions; `plpgsql` is in every database.
    let extensions: Vec<String> = sqlx::query_scalar(
        "SELECT extname::text FROM pg_extension WHERE extname <> 'plpgsql' ORDER BY 1",
    )
    .fetch_all(&mut *c)
    .await?;
    // The rest, not described but named.
    let others: Vec<(String, String)> = sqlx::query_as(OTHERS).fetch_all(&mut *c).await?;
    Ok(Schema {
        tables,
        extensions,
        enums,
        undescribed: others
            .into_iter()
            .map(|(kind, name)| format!("{kind} {name}"))
            .collect(),
    })
}

/// `pg_constraint`'s one-letter referential action, spelled out.
fn action(code: &str) -> String {
    match code {
        "r" => "RESTRICT",
        "c" => "CASCADE",
        "n" => "SET NULL",
        "d" => "SET DEFAULT",
        _ => "NO ACTION",
    }
    .to_string()
}

/// What the schema has besides its tables, extensions and enum types, as (kind, name):
/// views, materialized views, foreign tables, sequences no column owns, functions and
/// procedures, domains, composite and range types, policies, row-level security. An
/// extension's own objects are the extension's, not listed.
const OTHERS: &str = "
SELECT kind, name FROM (
  SELECT CASE c.relkind WHEN 'v' THEN 'view' WHEN 'm' THEN 'materialized view'
              WHEN 'f' THEN 'foreign table' ELSE 'sequence' END AS kind, c.relname::text AS name
    FROM pg_class c
   WHERE c.relnamespace = current_schema()::regnamespace AND c.relkind IN ('v', 'm', 'f', 'S')
     AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                     AND d.objid = c.oid AND d.deptype IN ('e', 'a', 'i'))
  UNION ALL
  SELECT CASE p.prokind WHEN 'p' THEN 'procedure' WHEN 'a' THEN 'aggregate' ELSE 'function' END,
         p.oid::regprocedure::text
    FROM pg_proc p
   WHERE p.pronamespace = current_schema()::regnamespace
     AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_proc'::regclass
                     AND d.objid = p.oid AND d.deptype = 'e')
  UNION ALL
  SELECT CASE t.typtype WHEN 'd' THEN 'domain' WHEN 'r' THEN 'range type' ELSE 'composite type' END,
         t.typname::text
    FROM pg_type t
   WHERE t.typnamespace = current_schema()::regnamespace
     AND (t.typtype IN ('d', 'r')
          OR (t.typtype = 'c' AND (SELECT relkind FROM pg_class WHERE oid = t.typrelid) = 'c'))
     AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_type'::regclass
                     AND d.objid = t.oid AND d.deptype = 'e')
  UNION ALL
  SELECT 'policy', p.polname::text || ' on ' || c.relname::text
    FROM pg_policy p JOIN pg_class c ON c.oid = p.polrelid
   WHERE c.relnamespace = current_schema()::regnamespace
  UNION ALL
  SELECT 'row-level security on', c.relname::text
    FROM pg_class c
   WHERE c.relnamespace = current_schema()::regnamespace AND c.relrowsecurity
) o ORDER BY name, kind";
