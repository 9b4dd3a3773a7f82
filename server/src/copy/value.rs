//! Values on their way between engines, and fitting a value to the target's column
//! ([`fit`]).

pub use super::kind::Kind;
use super::quote;
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

/// Why a value does not fit a target column (quoted values already cut for a message).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Misfit {
    /// A NULL in a NOT NULL column.
    #[error("NULL in a NOT NULL column")]
    Null,
    /// SQLite text that is not UTF-8.
    #[error("text that is not valid UTF-8")]
    NotUtf8,
    /// An integer too large for the column.
    #[error("{value} is out of range for a {bits}-bit integer column")]
    OutOfRange {
        /// The value.
        value: i64,
        /// The column's width.
        bits: u8,
    },
    /// NaN in a SQLite REAL column.
    #[error("NaN, which SQLite stores as NULL")]
    NanReal,
    /// A double that a 4-byte `real` would round.
    #[error(
        "{0} loses precision in PostgreSQL's `real` (4 bytes); declare the column DOUBLE PRECISION"
    )]
    LosesPrecision(f64),
    /// Text in a numeric column that is no number.
    #[error("text {0} is not a number")]
    NotANumber(String),
    /// NaN in a SQLite NUMERIC column.
    #[error("NaN, which SQLite cannot store in a NUMERIC column")]
    NanNumeric,
    /// A decimal SQLite would round.
    #[error(
        "{0} has more digits than SQLite keeps (it stores numerics as 64-bit integers or doubles)"
    )]
    TooManyDigits(String),
    /// More decimal places than the column's scale.
    #[error(
        "{n} has more than {scale} decimal places, which NUMERIC({precision},{scale}) would round"
    )]
    TooManyPlaces {
        /// The number.
        n: String,
        /// The column's precision.
        precision: u32,
        /// The column's scale.
        scale: u32,
    },
    /// More digits than the column's precision.
    #[error("{n} does not fit NUMERIC({precision},{scale})")]
    TooLarge {
        /// The number.
        n: String,
        /// The column's precision.
        precision: u32,
        /// The column's scale.
        scale: u32,
    },
    /// A NUL character for PostgreSQL.
    #[error("text containing a NUL character, which PostgreSQL cannot store")]
    Nul,
    /// Text longer than `varchar(n)`.
    #[error("text {text}, longer than the column's {max} characters,")]
    TooLong {
        /// The text, quoted.
        text: String,
        /// The limit.
        max: u32,
    },
    /// Text in a JSON column that does not parse.
    #[error("text {text} is not JSON ({reason})")]
    NotJson {
        /// The text, quoted.
        text: String,
        /// The parser's reason.
        reason: String,
    },
    /// Text in a UUID column that is no UUID.
    #[error("text {0} is not a UUID")]
    NotUuid(String),
    /// Text in a date or time column that is not one.
    #[error("text {text} is not a {family} ({why})")]
    NotATime {
        /// The text, quoted.
        text: String,
        /// The column's family.
        family: &'static str,
        /// What is wrong with it.
        why: super::time_text::BadTime,
    },
    /// A value of another family (a blob in an integer column).
    #[error("{value} in {} {family} column", if family.starts_with(['a', 'i', 'u']) { "an" } else { "a" })]
    WrongFamily {
        /// The value, described.
        value: String,
        /// The column's family.
        family: &'static str,
    },
}

/// The value `value` becomes in a column of `kind` on `target`, or why it does not fit.
pub fn fit(kind: &Kind, value: Value, target: DbKind) -> Result<Value, Misfit> {
    let pg = target == DbKind::Postgres;
    match (kind, value) {
        (_, Value::Null) => Ok(Value::Null),
        (_, Value::InvalidText(_)) => Err(Misfit::NotUtf8),
        (Kind::Any, value) => Ok(value),
        (Kind::Integer(bits), Value::Int(i)) => {
            let limit = 1i128 << (bits - 1);
            if (i as i128) < -limit || (i as i128) >= limit {
                return Err(Misfit::OutOfRange {
                    value: i,
                    bits: *bits,
                });
            }
            Ok(Value::Int(i))
        }
        (Kind::Real(bits), Value::Int(i)) => fit(&Kind::Real(*bits), Value::Real(i as f64), target),
        // A numeric column's value (text) into a real column.
        (Kind::Real(bits), Value::Text(s)) => {
            let exact = normalize_decimal(&s).ok_or_else(|| Misfit::NotANumber(quote(&s)))?;
            let f: f64 = exact.parse().map_err(|_| Misfit::NotANumber(quote(&s)))?;
            // A decimal a double would round is refused, not rounded.
            if normalize_decimal(&format!("{f}")).as_deref() != Some(exact.as_str()) {
                return Err(Misfit::TooManyDigits(cut(&exact)));
            }
            fit(&Kind::Real(*bits), Value::Real(f), target)
        }
        (Kind::Integer(_), Value::Bool(b)) => Ok(Value::Int(i64::from(b))),
        (Kind::Real(bits), Value::Real(f)) => {
            if !pg && f.is_nan() {
                return Err(Misfit::NanReal);
            }
            if pg && *bits == 32 && !f.is_nan() && f64::from(f as f32) != f {
                return Err(Misfit::LosesPrecision(f));
            }
            Ok(Value::Real(f))
        }
        (Kind::Numeric(size), Value::Int(i)) => fit_decimal(i.to_string(), *size, pg),
        (Kind::Numeric(size), Value::Real(f)) if f.is_finite() => fit_decimal(
            normalize_decimal(&format!("{f}")).unwrap_or_default(),
            *size,
            pg,
        ),
        (Kind::Numeric(size), Value::Text(s)) => {
            let n = normalize_decimal(&s).ok_or_else(|| Misfit::NotANumber(quote(&s)))?;
            fit_decimal(n, *size, pg)
        }
        (Kind::Text(max) | Kind::Char(max), Value::Text(s)) => {
            if pg && s.contains('\0') {
                return Err(Misfit::Nul);
            }
            if let Some(max) = max
                && s.chars().count() > *max as usize
            {
                return Err(Misfit::TooLong {
                    text: quote(&s),
                    max: *max,
                });
            }
            Ok(Value::Text(s))
        }
        (Kind::Other(_), Value::Text(s)) => Ok(Value::Text(s)),
        // SQLite's JSON column (NUMERIC affinity) keeps a bare JSON number as a number.
        (Kind::Json, Value::Int(i)) => Ok(Value::Text(i.to_string())),
        (Kind::Json, Value::Real(f)) if f.is_finite() => Ok(Value::Text(format!("{f}"))),
        (Kind::Json, Value::Text(s)) => match serde_json::from_str::<serde_json::Value>(&s) {
            Ok(_) => Ok(Value::Text(s)),
            Err(e) => Err(Misfit::NotJson {
                text: quote(&s),
                reason: e.to_string(),
            }),
        },
        (Kind::Uuid, Value::Text(s)) => canonical_uuid(&s)
            .map(Value::Text)
            .ok_or_else(|| Misfit::NotUuid(quote(&s))),
        (Kind::Blob, Value::Blob(b)) => Ok(Value::Blob(b)),
        (Kind::Boolean, Value::Bool(b)) => Ok(Value::Bool(b)),
        (Kind::Boolean, Value::Int(i @ (0 | 1))) => Ok(Value::Bool(i == 1)),
        (Kind::Timestamp | Kind::TimestampTz | Kind::Date | Kind::Time, Value::Text(s)) => {
            super::time_text::canonical(kind, &s)
                .map(Value::Text)
                .map_err(|why| Misfit::NotATime {
                    text: quote(&s),
                    family: kind.family(),
                    why,
                })
        }
        (kind, value) => Err(Misfit::WrongFamily {
            value: describe(&value),
            family: kind.family(),
        }),
    }
}

/// A normalised decimal in a `numeric(precision, scale)` column, or in SQLite.
fn fit_decimal(n: String, size: Option<(u32, u32)>, pg: bool) -> Result<Value, Misfit> {
    if !pg && n == "NaN" {
        return Err(Misfit::NanNumeric);
    }
    if !pg && !fits_sqlite_number(&n) {
        return Err(Misfit::TooManyDigits(cut(&n)));
    }
    if let (true, Some((precision, scale))) = (pg, size)
        && n != "NaN"
    {
        let (int, frac) = n
            .trim_start_matches('-')
            .split_once('.')
            .unwrap_or((&n, ""));
        let int = int.trim_start_matches('-').trim_start_matches('0');
        if frac.len() > scale as usize {
            return Err(Misfit::TooManyPlaces {
                n: cut(&n),
                precision,
                scale,
            });
        }
        if int.len() + scale as usize > precision as usize {
            return Err(Misfit::TooLarge {
                n: cut(&n),
                precision,
                scale,
            });
        }
    }
    Ok(Value::Text(n))
}

/// A long number for a message: its first 40 characters.
fn cut(n: &str) -> String {
    match n.char_indices().nth(40) {
        Some((i, _)) => format!("{}… ({} digits)", &n[..i], n.len()),
        None => n.to_string(),
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

/// A value as a row key in a message: `7`, `"abc"`, `x'00ff'`.
pub fn key_text(value: &Value) -> String {
    match value {
        Value::Null => "NULL".into(),
        Value::Int(i) => i.to_string(),
        Value::Real(f) => f.to_string(),
        Value::Text(s) => quote(s),
        Value::Bool(b) => b.to_string(),
        Value::Blob(b) | Value::InvalidText(b) => {
            let hex: String = b.iter().take(16).map(|b| format!("{b:02x}")).collect();
            format!("x'{hex}{}'", if b.len() > 16 { "…" } else { "" })
        }
    }
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
    if !n.contains('.') && n.parse::<i64>().is_ok() {
        return true;
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
        assert_eq!(e.to_string(), "text \"abc\" in an integer column");
        assert!(fit(&Kind::Integer(32), Value::Int(1 << 40), DbKind::Postgres).is_err());
        assert_eq!(
            fit(&Kind::Boolean, Value::Int(1), DbKind::Postgres),
            Ok(Value::Bool(true))
        );
    }
}
