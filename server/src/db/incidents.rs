//! Errors that requests hit for a reason other than their own SQL (a file that cannot be
//! opened, corrupt pages, a full disk, an I/O error, a lost server), remembered for a
//! short window so that readiness reflects what requests see, not only its own probe.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long an error that connections hit keeps `/health/db` failing.
pub const INCIDENT_WINDOW: Duration = Duration::from_secs(10);

/// The most recent serious error a connection of one pool hit.
#[derive(Debug, Default)]
pub struct Incidents {
    last: Mutex<Option<(Instant, &'static str)>>,
}

impl Incidents {
    /// Remembers `error` if it means the database itself is failing.
    pub fn note(&self, error: &sqlx::Error) {
        if let Some(reason) = classify(error) {
            *self.last.lock().unwrap_or_else(|e| e.into_inner()) = Some((Instant::now(), reason));
        }
    }

    /// The latest serious error within [`INCIDENT_WINDOW`], and how long ago it was.
    pub fn recent(&self) -> Option<(Duration, &'static str)> {
        let last = *self.last.lock().unwrap_or_else(|e| e.into_inner());
        last.map(|(at, reason)| (at.elapsed(), reason))
            .filter(|(age, _)| *age < INCIDENT_WINDOW)
    }
}

/// A reason safe for a public endpoint (no path, no SQL), or `None` for errors that are
/// the request's own (a constraint, a syntax error, a busy database).
pub fn classify(error: &sqlx::Error) -> Option<&'static str> {
    match error {
        sqlx::Error::Io(_) | sqlx::Error::Protocol(_) => {
            Some("connections to the database are failing")
        }
        sqlx::Error::Database(db) => {
            if let Some(pg) = db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>() {
                return match pg.code().get(..2) {
                    Some("53") => Some(
                        "the database server is out of resources (disk, memory or connections)",
                    ),
                    Some("58") => Some("the database server reports an I/O error"),
                    Some("XX") => Some("the database server reports corrupted data"),
                    Some("57") if pg.code() != "57014" => {
                        Some("the database server is shutting down")
                    }
                    _ => None,
                };
            }
            let code: i32 = db.code()?.parse().ok()?;
            match code & 0xff {
                3 | 8 | 14 => Some("the database file cannot be opened or written (permissions?)"),
                10 => Some("disk I/O error on the database file"),
                11 | 26 => Some("the database file is corrupt"),
                13 => Some("the database's disk is full"),
                _ => None,
            }
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_errors_are_not_incidents() {
        let incidents = Incidents::default();
        incidents.note(&sqlx::Error::RowNotFound);
        incidents.note(&sqlx::Error::PoolTimedOut);
        assert!(incidents.recent().is_none());
        incidents.note(&sqlx::Error::Io(std::io::ErrorKind::ConnectionReset.into()));
        let (age, reason) = incidents.recent().expect("an I/O error is an incident");
        assert!(age < INCIDENT_WINDOW);
        assert!(reason.contains("failing"));
    }
}
