//! Dates and times as text: SQLite keeps whatever the application wrote
//! (`2024-05-01T12:00:00Z`, `2024-05-01 12:00:00.5`), PostgreSQL prints its own form.
//! Both become one canonical spelling, which is what the target receives and what the
//! checksum hashes: `YYYY-MM-DD HH:MM:SS[.ffffff]`, `+00:00` after a `timestamptz`.

use time::{Date, Month, PrimitiveDateTime, Time, UtcOffset};

use super::kind::Kind;

/// What is wrong with a date or time written as text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadTime {
    /// Not `YYYY-MM-DD`.
    #[error("expected YYYY-MM-DD")]
    Date,
    /// Not `YYYY-MM-DD HH:MM:SS`.
    #[error("expected YYYY-MM-DD HH:MM:SS")]
    Timestamp,
    /// Not `HH:MM:SS`.
    #[error("expected HH:MM:SS")]
    Time,
    /// One digit of seconds, or none.
    #[error("expected two digits of seconds")]
    Seconds,
    /// A fraction of 0 or more than 9 digits.
    #[error("a fraction of a second of 1 to 9 digits expected")]
    Fraction,
    /// Nanoseconds that PostgreSQL would round away.
    #[error("finer than microseconds, which PostgreSQL does not keep")]
    Nanoseconds,
    /// An hour, minute or second out of range.
    #[error("{0}")]
    Range(String),
    /// Text after the time that is no offset.
    #[error("unexpected text after the time")]
    Trailing,
    /// A malformed offset.
    #[error("a time zone offset like +02:00 expected")]
    Offset,
    /// An offset in a column without time zone.
    #[error("a time zone offset in a column without time zone; declare it TIMESTAMPTZ")]
    OffsetWithoutZone,
    /// A moment outside what both engines store.
    #[error("outside the years 1 to 9999 in UTC")]
    Years,
}

/// The canonical spelling of `s` for a column of `kind` (a date or time kind).
pub fn canonical(kind: &Kind, s: &str) -> Result<String, BadTime> {
    let t = s.trim();
    match kind {
        Kind::Date => {
            let date = parse_date(t).ok_or(BadTime::Date)?;
            Ok(date.to_string())
        }
        Kind::Time => {
            let (time, rest) = parse_time(t)?;
            if !rest.is_empty() {
                return Err(BadTime::Trailing);
            }
            Ok(format_time(time))
        }
        _ => {
            let (date, rest) = match t.get(..10).and_then(parse_date) {
                Some(date) => (date, &t[10..]),
                None => return Err(BadTime::Timestamp),
            };
            let (time, rest) = match rest.strip_prefix([' ', 'T', 't']) {
                Some(rest) => parse_time(rest)?,
                None => (Time::MIDNIGHT, rest),
            };
            let offset = parse_offset(rest.trim_start())?;
            let at = PrimitiveDateTime::new(date, time);
            if *kind == Kind::Timestamp {
                if offset.is_some_and(|o| !o.is_utc()) {
                    return Err(BadTime::OffsetWithoutZone);
                }
                return Ok(format!("{} {}", at.date(), format_time(at.time())));
            }
            let utc = at
                .assume_offset(offset.unwrap_or(UtcOffset::UTC))
                .checked_to_offset(UtcOffset::UTC)
                .filter(|utc| (1..=9999).contains(&utc.year()))
                .ok_or(BadTime::Years)?;
            Ok(format!("{} {}+00:00", utc.date(), format_time(utc.time())))
        }
    }
}

fn parse_date(s: &str) -> Option<Date> {
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let year: i32 = s[..4].parse().ok().filter(|y| *y >= 1)?;
    let month: u8 = s[5..7].parse().ok()?;
    let day: u8 = s[8..10].parse().ok()?;
    Date::from_calendar_date(year, Month::try_from(month).ok()?, day).ok()
}

/// `HH:MM[:SS[.fraction]]`, and the text after it.
fn parse_time(s: &str) -> Result<(Time, &str), BadTime> {
    let two = |at: usize| -> Option<u8> {
        s.get(at..at + 2)
            .filter(|d| d.bytes().all(|b| b.is_ascii_digit()))?
            .parse()
            .ok()
    };
    let (Some(hour), Some(minute)) = (two(0), two(3)) else {
        return Err(BadTime::Time);
    };
    if s.as_bytes().get(2) != Some(&b':') {
        return Err(BadTime::Time);
    }
    let mut rest = &s[5..];
    let mut second = 0;
    let mut micro = 0;
    if let Some(after) = rest.strip_prefix(':') {
        second = two(6).ok_or(BadTime::Seconds)?;
        rest = &after[2..];
        if let Some(after) = rest.strip_prefix('.') {
            let digits = after.bytes().take_while(u8::is_ascii_digit).count();
            let fraction = &after[..digits];
            if fraction.is_empty() || fraction.len() > 9 {
                return Err(BadTime::Fraction);
            }
            if fraction.len() > 6 && fraction[6..].bytes().any(|b| b != b'0') {
                return Err(BadTime::Nanoseconds);
            }
            let padded = format!("{:0<6}", &fraction[..fraction.len().min(6)]);
            micro = padded.parse().map_err(|_| BadTime::Fraction)?;
            rest = &after[digits..];
        }
    }
    let time = Time::from_hms_micro(hour, minute, second, micro)
        .map_err(|e| BadTime::Range(e.to_string()))?;
    Ok((time, rest))
}

/// `Z`, `+HH`, `+HH:MM`, `+HHMM` (or nothing).
fn parse_offset(s: &str) -> Result<Option<UtcOffset>, BadTime> {
    if s.is_empty() {
        return Ok(None);
    }
    if s.eq_ignore_ascii_case("z") {
        return Ok(Some(UtcOffset::UTC));
    }
    let sign: i8 = match s.as_bytes()[0] {
        b'+' => 1,
        b'-' => -1,
        _ => return Err(BadTime::Trailing),
    };
    let digits: String = s[1..].chars().filter(|c| *c != ':').collect();
    if !(digits.len() == 2 || digits.len() == 4) || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(BadTime::Offset);
    }
    let hours: i8 = digits[..2].parse().map_err(|_| BadTime::Offset)?;
    let minutes: i8 = digits
        .get(2..)
        .filter(|m| !m.is_empty())
        .map_or(Ok(0), str::parse)
        .map_err(|_| BadTime::Offset)?;
    UtcOffset::from_hms(sign * hours, sign * minutes, 0)
        .map(Some)
        .map_err(|e| BadTime::Range(e.to_string()))
}

/// `HH:MM:SS`, with `.ffffff` (trailing zeros cut) when there is a fraction.
fn format_time(time: Time) -> String {
    let (h, m, s, micro) = time.as_hms_micro();
    let mut out = format!("{h:02}:{m:02}:{s:02}");
    if micro > 0 {
        let fraction = format!("{micro:06}");
        out.push('.');
        out.push_str(fraction.trim_end_matches('0'));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spellings_agree() {
        let ts = |s| canonical(&Kind::Timestamp, s);
        assert_eq!(ts("2024-05-01T12:00:00Z").unwrap(), "2024-05-01 12:00:00");
        assert_eq!(
            ts("2024-05-01 12:00:00.500").unwrap(),
            "2024-05-01 12:00:00.5"
        );
        assert_eq!(ts("2024-05-01").unwrap(), "2024-05-01 00:00:00");
        assert!(ts("2024-05-01 12:00:00+02:00").is_err());
        assert!(ts("yesterday").is_err());
        assert!(ts("2024-13-01").is_err());
        let tz = |s| canonical(&Kind::TimestampTz, s);
        assert_eq!(
            tz("2024-05-01 14:00:00+02").unwrap(),
            "2024-05-01 12:00:00+00:00"
        );
        assert_eq!(
            tz("2024-05-01T12:00:00Z").unwrap(),
            "2024-05-01 12:00:00+00:00"
        );
        assert_eq!(canonical(&Kind::Time, "07:30").unwrap(), "07:30:00");
        assert_eq!(canonical(&Kind::Date, "2024-02-29").unwrap(), "2024-02-29");
        assert!(canonical(&Kind::Date, "2023-02-29").is_err());
        assert!(canonical(&Kind::Date, "0000-01-01").is_err());
        assert!(tz("9999-12-31 23:00:00-05:00").is_err());
    }
}
