//! What a column holds ([`Kind`]), from its declared type (SQLite) or catalog type
//! (PostgreSQL).

/// What a column holds, from its declared type (SQLite) or catalog type (PostgreSQL).
#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    /// `smallint`, `integer`, `bigint` (bits: 16, 32, 64).
    Integer(u8),
    /// `real` (32) or `double precision` (64).
    Real(u8),
    /// `numeric` / `decimal`: exact decimal numbers, compared as normalised text;
    /// PostgreSQL's precision and scale when declared.
    Numeric(Option<(u32, u32)>),
    /// `text`, `varchar(n)`: the character limit, if any.
    Text(Option<u32>),
    /// `char(n)`: padded with spaces, which do not count.
    Char(Option<u32>),
    /// `bytea` / `BLOB`.
    Blob,
    /// `boolean`.
    Boolean,
    /// `timestamp` (without time zone).
    Timestamp,
    /// `timestamptz`, kept in UTC.
    TimestampTz,
    /// `date`.
    Date,
    /// `time`.
    Time,
    /// `json` / `jsonb`, compared as parsed JSON.
    Json,
    /// `uuid`.
    Uuid,
    /// Any other PostgreSQL type (enums, intervals, …): copied as its text.
    Other(String),
    /// A SQLite column without a type: whatever each value is.
    Any,
}

/// PostgreSQL types a migration may name that SQLite's affinity rules would misread
/// (`INTERVAL` and `POINT` contain "INT"): their values travel as text.
const PG_ONLY_TYPES: &[&str] = &[
    "interval",
    "inet",
    "cidr",
    "macaddr",
    "macaddr8",
    "money",
    "name",
    "bit",
    "varbit",
    "bit varying",
    "xml",
    "timetz",
    "oid",
    "tsvector",
    "tsquery",
    "point",
    "line",
    "lseg",
    "box",
    "path",
    "polygon",
    "circle",
    "int4range",
    "int8range",
    "numrange",
    "tsrange",
    "tstzrange",
    "daterange",
    "int4multirange",
    "int8multirange",
    "citext",
    "pg_lsn",
];

impl Kind {
    /// The kind of a SQLite column from its declared type, by SQLite's affinity rules
    /// refined for the names PostgreSQL shares.
    pub fn from_sqlite_decl(decl: &str) -> Self {
        let t = decl.trim().to_ascii_uppercase();
        let base = t.split('(').next().unwrap_or("").trim();
        if t.contains("WITH TIME ZONE") && !t.contains("WITHOUT") {
            return if base.starts_with("TIMESTAMP") {
                Self::TimestampTz
            } else {
                Self::Other(t)
            };
        }
        if PG_ONLY_TYPES.contains(&base.to_ascii_lowercase().as_str()) {
            // What PostgreSQL calls these, so both sides agree they hold text.
            return Self::Other(base.to_ascii_lowercase());
        }
        match base {
            "" => Self::Any,
            "SERIAL" | "BIGSERIAL" | "SMALLSERIAL" => Self::Integer(64),
            "BOOLEAN" | "BOOL" => Self::Boolean,
            "TIMESTAMPTZ" | "TIMESTAMP WITH TIME ZONE" => Self::TimestampTz,
            "TIMESTAMP" | "DATETIME" | "TIMESTAMP WITHOUT TIME ZONE" => Self::Timestamp,
            "DATE" => Self::Date,
            "TIME" | "TIME WITHOUT TIME ZONE" => Self::Time,
            "JSON" | "JSONB" => Self::Json,
            "UUID" => Self::Uuid,
            "BYTEA" | "BLOB" => Self::Blob,
            "NUMERIC" | "DECIMAL" => Self::Numeric(None),
            "CHAR" | "CHARACTER" | "NCHAR" => Self::Char(None),
            _ if base.contains("INT") => Self::Integer(64),
            _ if base.contains("CHAR") || base.contains("CLOB") || base.contains("TEXT") => {
                Self::Text(None)
            }
            _ if base.contains("REAL") || base.contains("FLOA") || base.contains("DOUB") => {
                Self::Real(64)
            }
            _ => Self::Numeric(None),
        }
    }

    /// The kind of a PostgreSQL column from `pg_type.typname` and `atttypmod`.
    pub fn from_pg_type(typname: &str, typmod: i32) -> Self {
        match typname {
            "int2" => Self::Integer(16),
            "int4" => Self::Integer(32),
            "int8" => Self::Integer(64),
            "float4" => Self::Real(32),
            "float8" => Self::Real(64),
            "numeric" => Self::Numeric(
                u32::try_from(typmod - 4)
                    .ok()
                    .map(|m| (m >> 16, m & 0xffff)),
            ),
            "text" => Self::Text(None),
            "varchar" => Self::Text(u32::try_from(typmod - 4).ok().filter(|n| *n > 0)),
            "bpchar" => Self::Char(u32::try_from(typmod - 4).ok().filter(|n| *n > 0)),
            "bytea" => Self::Blob,
            "bool" => Self::Boolean,
            "timestamp" => Self::Timestamp,
            "timestamptz" => Self::TimestampTz,
            "date" => Self::Date,
            "time" => Self::Time,
            "json" | "jsonb" => Self::Json,
            "uuid" => Self::Uuid,
            other => Self::Other(other.to_string()),
        }
    }

    /// Kinds that hold the same values on both sides compare equal here.
    pub fn family(&self) -> &'static str {
        match self {
            Self::Integer(_) => "integer",
            Self::Real(_) => "real",
            Self::Numeric(_) => "numeric",
            Self::Text(_) | Self::Char(_) | Self::Other(_) => "text",
            Self::Blob => "blob",
            Self::Boolean => "boolean",
            Self::Timestamp => "timestamp",
            Self::TimestampTz => "timestamptz",
            Self::Date => "date",
            Self::Time => "time",
            Self::Json => "json",
            Self::Uuid => "uuid",
            Self::Any => "any type",
        }
    }

    /// Whether a column of `self` can receive the values of a column of `source`: the
    /// same family, or what one engine spells differently from the other (an engine
    /// variant's `JSONB`, `UUID`, `DATE` or `TIMESTAMPTZ` against SQLite's `TEXT`;
    /// `BOOLEAN` against `INTEGER`; `NUMERIC` against `REAL`; a timestamp with time zone
    /// against one without, read as UTC). Each value is still checked as it is copied.
    pub fn accepts(&self, source: &Kind) -> bool {
        let timestamp = |k: &Kind| matches!(k, Self::Timestamp | Self::TimestampTz);
        let text = |k: &Kind| matches!(k, Self::Text(_) | Self::Char(_) | Self::Other(_));
        let spelled_as_text = |k: &Kind| {
            matches!(
                k,
                Self::Json
                    | Self::Uuid
                    | Self::Timestamp
                    | Self::TimestampTz
                    | Self::Date
                    | Self::Time
                    | Self::Numeric(_)
            )
        };
        *self == Self::Any
            || *source == Self::Any
            || self.family() == source.family()
            || (timestamp(self) && timestamp(source))
            || (spelled_as_text(self) && text(source))
            || (text(self) && spelled_as_text(source))
            || matches!(
                (self, source),
                (Self::Boolean, Self::Integer(_))
                    | (Self::Integer(_), Self::Boolean)
                    | (Self::Numeric(_), Self::Real(_))
                    | (Self::Real(_), Self::Numeric(_))
            )
    }
}
