//! Values on their way between engines: what each column holds ([`Kind`]), fitting a
//! value to the target's column ([`fit`]), and the engine-neutral encoding the checksums
//! hash ([`Digest`]).

use sha2::{Digest as _, Sha256};

use crate::url::DbKind;

/// A value as read from either engine.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// SQL NULL.
    Null,
    /// An integer.
    Int(i64),
    /// A floating-point number.
    Real(f64),
    /// Text (also timestamps, numerics, JSON and UUIDs, in their canonical spelling).
    Text(String),
    /// Bytes.
    Blob(Vec<u8>),
    /// A boolean.
    Bool(bool),
    /// SQLite text that is not valid UTF-8: never fits anywhere.
    InvalidText(Vec<u8>),
}

/// What a column holds, from its declared type (SQLite) or catalog type (PostgreSQL).
#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    /// `smallint`, `integer`, `bigint` (bits: 16, 32, 64).
    Integer(u8),
    /// `real` (32) or `double precision` (64).
    Real(u8),
    /// `numeric` / `decimal`: exact decimal numbers, compared as normalised text.
    Numeric,
    /// `text`, `varchar(n)`: the character limit, if any.
    Text(Option<u32>),
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
            "NUMERIC" | "DECIMAL" => Self::Numeric,
            _ if base.contains("INT") => Self::Integer(64),
            _ if base.contains("CHAR") || base.contains("CLOB") || base.contains("TEXT") => {
                Self::Text(None)
            }
            _ if base.contains("REAL") || base.contains("FLOA") || base.contains("DOUB") => {
                Self::Real(64)
            }
            _ => Self::Numeric,
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
            "numeric" => Self::Numeric,
            "text" => Self::Text(None),
            "varchar" | "bpchar" => Self::Text(u32::try_from(typmod - 4).ok().filter(|n| *n > 0)),
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
            Self::Numeric => "numeric",
            Self::Text(_) | Self::Other(_) => "text",
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

    /// Whether a column of `self` can receive the values of a column of `source`.
    pub fn accepts(&self, source: &Kind) -> bool {
        *self == Self::Any || *source == Self::Any || self.family() == source.family()
    }
}

/// The value `value` becomes in a column of `kind` on `target`, or why it does not fit.
pub fn fit(kind: &Kind, value: Value, target: DbKind) -> Result<Value, String> {
    let pg = target == DbKind::Postgres;
    match (kind, value) {
        (_, Value::Null) => Ok(Value::Null),
        (_, Value::InvalidText(_)) => Err("text that is not valid UTF-8".into()),
        (Kind::Any, value) => Ok(value),
        (Kind::Integer(bits), Value::Int(i)) => {
            let limit = 1i128 << (bits - 1);
            if (i as i128) < -limit || (i as i128) >= limit {
                return Err(format!(
                    "{i} is out of range for a {bits}-bit integer column"
                ));
            }
            Ok(Value::Int(i))
        }
        (Kind::Real(bits), Value::Int(i)) => fit(&Kind::Real(*bits), Value::Real(i as f64), target),
        (Kind::Real(bits), Value::Real(f)) => {
            if !pg && f.is_nan() {
                return Err("NaN, which SQLite stores as NULL".into());
            }
            if pg && *bits == 32 && !f.is_nan() && f64::from(f as f32) != f {
                return Err(format!(
                    "{f} loses precision in PostgreSQL's `real` (4 bytes); declare the column DOUBLE PRECISION"
                ));
            }
            Ok(Value::Real(f))
        }
        (Kind::Numeric, Value::Int(i)) => Ok(Value::Text(i.to_string())),
        (Kind::Numeric, Value::Real(f)) if f.is_finite() => Ok(Value::Text(
            normalize_decimal(&format!("{f}")).unwrap_or_default(),
        )),
        (Kind::Numeric, Value::Text(s)) => {
            let n = normalize_decimal(&s)
                .ok_or_else(|| format!("text {} is not a number", quote(&s)))?;
            if !pg && !fits_sqlite_number(&n) {
                return Err(format!(
                    "{n} has more digits than SQLite keeps (it stores numerics as 64-bit integers or doubles)"
                ));
            }
            Ok(Value::Text(n))
        }
        (Kind::Text(max), Value::Text(s)) => {
            if pg && s.contains('\0') {
                return Err(
                    "text containing a NUL character, which PostgreSQL cannot store".into(),
                );
            }
            if let Some(max) = max
                && s.chars().count() > *max as usize
            {
                return Err(format!(
                    "text {} is longer than the column's {max} characters",
                    quote(&s)
                ));
            }
            Ok(Value::Text(s))
        }
        (Kind::Other(_), Value::Text(s)) => Ok(Value::Text(s)),
        (Kind::Json, Value::Text(s)) => match serde_json::from_str::<serde_json::Value>(&s) {
            Ok(_) => Ok(Value::Text(s)),
            Err(e) => Err(format!("text {} is not JSON ({e})", quote(&s))),
        },
        (Kind::Uuid, Value::Text(s)) => canonical_uuid(&s)
            .map(Value::Text)
            .ok_or_else(|| format!("text {} is not a UUID", quote(&s))),
        (Kind::Blob, Value::Blob(b)) => Ok(Value::Blob(b)),
        (Kind::Boolean, Value::Bool(b)) => Ok(Value::Bool(b)),
        (Kind::Boolean, Value::Int(i @ (0 | 1))) => Ok(Value::Bool(i == 1)),
        (Kind::Timestamp | Kind::TimestampTz | Kind::Date | Kind::Time, Value::Text(s)) => {
            super::time_text::canonical(kind, &s).map(Value::Text)
        }
        (kind, value) => {
            let family = kind.family();
            let article = if family.starts_with(['a', 'i', 'u']) {
                "an"
            } else {
                "a"
            };
            Err(format!("{} in {article} {family} column", describe(&value)))
        }
    }
}

/// A value for a message: its type and a short quote.
fn describe(value: &Value) -> String {
    match value {
        Value::Null => "NULL".into(),
        Value::Int(i) => format!("integer {i}"),
        Value::Real(f) => format!("real {f}"),
        Value::Text(s) => format!("text {}", quote(s)),
        Value::Blob(b) => format!("a blob of {} bytes", b.len()),
        Value::Bool(b) => format!("boolean {b}"),
        Value::InvalidText(_) => "text that is not valid UTF-8".into(),
    }
}

/// A text value quoted for a message, cut at 40 characters.
pub fn quote(s: &str) -> String {
    let short: String = s.chars().take(40).collect();
    let ellipsis = if short.len() < s.len() { "…" } else { "" };
    format!("{:?}", format!("{short}{ellipsis}"))
}

/// `-0012.3400` → `-12.34`; `NaN` stays; `None` when it is not a decimal number.
fn normalize_decimal(s: &str) -> Option<String> {
    let s = s.trim();
    if s.eq_ignore_ascii_case("nan") {
        return Some("NaN".into());
    }
    let (negative, digits) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    if digits.contains(['e', 'E']) {
        // An exponent: through f64 when exact, as SQLite would store it.
        let f: f64 = s.parse().ok()?;
        return f
            .is_finite()
            .then(|| normalize_decimal(&format!("{f}")))
            .flatten();
    }
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    if int.is_empty() && frac.is_empty()
        || !int.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let int = int.trim_start_matches('0');
    let frac = frac.trim_end_matches('0');
    let mut out = String::new();
    if negative && !(int.is_empty() && frac.is_empty()) {
        out.push('-');
    }
    out.push_str(if int.is_empty() { "0" } else { int });
    if !frac.is_empty() {
        out.push('.');
        out.push_str(frac);
    }
    Some(out)
}

/// Whether SQLite's NUMERIC affinity keeps this normalised decimal exactly.
fn fits_sqlite_number(n: &str) -> bool {
    if n == "NaN" {
        return false;
    }
    if !n.contains('.') {
        return n.parse::<i64>().is_ok();
    }
    n.parse::<f64>()
        .ok()
        .and_then(|f| normalize_decimal(&format!("{f}")))
        .is_some_and(|back| back == n)
}

/// `A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11` or without hyphens → lowercase with hyphens.
fn canonical_uuid(s: &str) -> Option<String> {
    let hex: String = s.trim().chars().filter(|c| *c != '-').collect();
    let hex = hex
        .strip_prefix('{')
        .and_then(|h| h.strip_suffix('}'))
        .unwrap_or(&hex);
    if hex.len() != 32 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let h = hex.to_ascii_lowercase();
    Some(format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    ))
}

/// A table's checksum: its rows in key order hashed as one stream, or, for a table
/// without a primary key, the sum of each row's hash (any order gives the same sum).
pub struct Digest {
    rows: u64,
    ordered: Option<Sha256>,
    sum: [u64; 4],
    row: Vec<u8>,
}

impl Digest {
    /// A checksum over rows read in key order (`ordered`) or in any order.
    pub fn new(ordered: bool) -> Self {
        Self {
            rows: 0,
            ordered: ordered.then(Sha256::new),
            sum: [0; 4],
            row: Vec::with_capacity(256),
        }
    }

    /// Adds one row: each value with its column's kind.
    pub fn add(&mut self, kinds: &[Kind], row: &[Value]) {
        self.row.clear();
        for (kind, value) in kinds.iter().zip(row) {
            encode(kind, value, &mut self.row);
        }
        self.rows += 1;
        match &mut self.ordered {
            Some(hasher) => {
                hasher.update((self.row.len() as u64).to_be_bytes());
                hasher.update(&self.row);
            }
            None => {
                let hash = Sha256::digest(&self.row);
                let mut carry = false;
                for (i, part) in self.sum.iter_mut().enumerate() {
                    let word =
                        u64::from_be_bytes(hash[i * 8..i * 8 + 8].try_into().unwrap_or_default());
                    let (s1, c1) = part.overflowing_add(word);
                    let (s2, c2) = s1.overflowing_add(u64::from(carry));
                    *part = s2;
                    carry = c1 || c2;
                }
            }
        }
    }

    /// Rows added and the checksum in hex (16 bytes are plenty to tell tables apart).
    pub fn finish(self) -> (u64, String) {
        let bytes: Vec<u8> = match self.ordered {
            Some(hasher) => hasher.finalize().to_vec(),
            None => self.sum.iter().flat_map(|w| w.to_be_bytes()).collect(),
        };
        let hex = bytes[..16].iter().map(|b| format!("{b:02x}")).collect();
        (self.rows, hex)
    }
}

/// The engine-neutral encoding: a tag, then the value (lengths before variable data).
fn encode(kind: &Kind, value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Null => out.push(b'N'),
        Value::Int(i) => {
            out.push(b'I');
            out.extend_from_slice(&i.to_be_bytes());
        }
        Value::Real(f) => {
            out.push(b'R');
            out.extend_from_slice(&f.to_bits().to_be_bytes());
        }
        Value::Bool(b) => out.extend_from_slice(&[b'b', u8::from(*b)]),
        Value::Text(s) if *kind == Kind::Json => {
            let canonical = serde_json::from_str::<serde_json::Value>(s)
                .map(|v| canonical_json(&v))
                .unwrap_or_else(|_| s.clone());
            encode_bytes(b'T', canonical.as_bytes(), out);
        }
        Value::Text(s) => encode_bytes(b'T', s.as_bytes(), out),
        Value::Blob(b) | Value::InvalidText(b) => encode_bytes(b'B', b, out),
    }
}

fn encode_bytes(tag: u8, bytes: &[u8], out: &mut Vec<u8>) {
    out.push(tag);
    out.extend_from_slice(&(bytes.len() as u64).to_be_bytes());
    out.extend_from_slice(bytes);
}

/// JSON with object keys sorted and no spaces, as `jsonb` would compare it.
fn canonical_json(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::Object(map) => {
            let mut entries: Vec<_> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            let inner: Vec<String> = entries
                .iter()
                .map(|(k, v)| {
                    format!(
                        "{}:{}",
                        serde_json::Value::from(k.as_str()),
                        canonical_json(v)
                    )
                })
                .collect();
            format!("{{{}}}", inner.join(","))
        }
        serde_json::Value::Array(items) => {
            let inner: Vec<String> = items.iter().map(canonical_json).collect();
            format!("[{}]", inner.join(","))
        }
        other => other.to_string(),
    }
}

/// One row in PostgreSQL's `COPY … FROM STDIN` text format.
pub fn copy_text_row(row: &[Value], out: &mut Vec<u8>) {
    for (i, value) in row.iter().enumerate() {
        if i > 0 {
            out.push(b'\t');
        }
        match value {
            Value::Null | Value::InvalidText(_) => out.extend_from_slice(b"\\N"),
            Value::Int(n) => out.extend_from_slice(n.to_string().as_bytes()),
            Value::Real(f) if f.is_nan() => out.extend_from_slice(b"NaN"),
            Value::Real(f) if f.is_infinite() => {
                out.extend_from_slice(if *f > 0.0 { b"Infinity" } else { b"-Infinity" })
            }
            Value::Real(f) => out.extend_from_slice(format!("{f:?}").as_bytes()),
            Value::Bool(b) => out.push(if *b { b't' } else { b'f' }),
            Value::Text(s) => {
                for byte in s.bytes() {
                    match byte {
                        b'\\' => out.extend_from_slice(b"\\\\"),
                        b'\n' => out.extend_from_slice(b"\\n"),
                        b'\r' => out.extend_from_slice(b"\\r"),
                        b'\t' => out.extend_from_slice(b"\\t"),
                        other => out.push(other),
                    }
                }
            }
            Value::Blob(bytes) => {
                out.extend_from_slice(b"\\\\x");
                for b in bytes {
                    out.extend_from_slice(format!("{b:02x}").as_bytes());
                }
            }
        }
    }
    out.push(b'\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_normalise() {
        assert_eq!(normalize_decimal("-0012.3400").as_deref(), Some("-12.34"));
        assert_eq!(normalize_decimal("10").as_deref(), Some("10"));
        assert_eq!(normalize_decimal("-0.0").as_deref(), Some("0"));
        assert_eq!(normalize_decimal("1e2").as_deref(), Some("100"));
        assert_eq!(normalize_decimal("abc"), None);
        assert_eq!(normalize_decimal("."), None);
    }

    #[test]
    fn text_in_an_integer_column_does_not_fit() {
        let e = fit(
            &Kind::Integer(64),
            Value::Text("abc".into()),
            DbKind::Postgres,
        )
        .unwrap_err();
        assert_eq!(e, "text \"abc\" in an integer column");
        assert!(fit(&Kind::Integer(32), Value::Int(1 << 40), DbKind::Postgres).is_err());
        assert_eq!(
            fit(&Kind::Boolean, Value::Int(1), DbKind::Postgres),
            Ok(Value::Bool(true))
        );
    }

    #[test]
    fn json_compares_parsed() {
        let mut a = Digest::new(true);
        let mut b = Digest::new(true);
        a.add(
            &[Kind::Json],
            &[Value::Text(r#"{"b": 1, "a": [1, 2]}"#.into())],
        );
        b.add(&[Kind::Json], &[Value::Text(r#"{"a":[1,2],"b":1}"#.into())]);
        assert_eq!(a.finish(), b.finish());
    }

    #[test]
    fn unordered_sum_ignores_order() {
        let kinds = [Kind::Integer(64)];
        let mut a = Digest::new(false);
        let mut b = Digest::new(false);
        for i in 0..100 {
            a.add(&kinds, &[Value::Int(i)]);
            b.add(&kinds, &[Value::Int(99 - i)]);
        }
        assert_eq!(a.finish(), b.finish());
    }

    #[test]
    fn copy_text_escapes() {
        let mut out = Vec::new();
        copy_text_row(
            &[
                Value::Text("a\tb\\".into()),
                Value::Null,
                Value::Blob(vec![0, 255]),
            ],
            &mut out,
        );
        assert_eq!(out, b"a\\tb\\\\\t\\N\t\\\\x00ff\n");
    }
}
