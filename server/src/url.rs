//! Database URLs: parsing, resolving relative SQLite paths, and masking passwords.

use std::fmt;
use std::path::{Path, PathBuf};

/// Which database engine a URL points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DbKind {
    /// SQLite, a file or an in-memory database.
    Sqlite,
    /// PostgreSQL.
    Postgres,
}

impl fmt::Display for DbKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DbKind::Sqlite => "sqlite",
            DbKind::Postgres => "postgres",
        })
    }
}

/// A validated database location.
#[derive(Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    /// A SQLite file at an absolute path.
    Sqlite {
        /// Absolute path of the database file.
        path: PathBuf,
    },
    /// One shared in-memory SQLite database for the whole process.
    SqliteMemory,
    /// A PostgreSQL server.
    Postgres {
        /// The full URL, password included: never print it, use `Display`.
        url: url::Url,
    },
}

impl DatabaseUrl {
    /// Parses `raw`; a relative SQLite path is resolved against `root`.
    pub fn parse(raw: &str, root: &Path) -> Result<Self, String> {
        let raw = raw.trim();
        if raw.is_empty() {
            return Err("the URL is empty".into());
        }
        if let Some(rest) = raw.strip_prefix("sqlite:") {
            return Self::parse_sqlite(rest, root);
        }
        if raw.starts_with("postgres://") || raw.starts_with("postgresql://") {
            let url =
                url::Url::parse(raw).map_err(|e| format!("malformed PostgreSQL URL ({e})"))?;
            if url.host_str().is_none_or(str::is_empty) {
                return Err("the PostgreSQL URL has no host".into());
            }
            if url.path().trim_start_matches('/').is_empty() {
                return Err(
                    "the PostgreSQL URL names no database (postgres://user@host/dbname)".into(),
                );
            }
            return Ok(Self::Postgres { url });
        }
        match raw.split_once(':') {
            Some((scheme, _)) if !scheme.is_empty() && !scheme.contains('/') => Err(format!(
                "unknown scheme `{scheme}:`; expected `sqlite:` or `postgres://`"
            )),
            _ => Err("no scheme; expected `sqlite://<path>` or `postgres://...`".into()),
        }
    }

    fn parse_sqlite(rest: &str, root: &Path) -> Result<Self, String> {
        let rest = rest.strip_prefix("//").unwrap_or(rest);
        if rest == ":memory:" || rest == "memory:" {
            return Ok(Self::SqliteMemory);
        }
        if rest.contains('?') {
            return Err(
                "query parameters are not supported in SQLite URLs; use the databases.main keys"
                    .into(),
            );
        }
        if rest.is_empty() {
            return Err("the SQLite URL names no file (sqlite://app.db)".into());
        }
        let path = Path::new(rest);
        if path.file_name().is_none() || rest.ends_with('/') {
            return Err("the SQLite URL names a directory, not a file".into());
        }
        let path = if path.is_absolute() {
            path.to_path_buf()
        } else {
            root.join(path)
        };
        Ok(Self::Sqlite {
            path: normalize(&path),
        })
    }

    /// The engine.
    pub fn kind(&self) -> DbKind {
        match self {
            Self::Sqlite { .. } | Self::SqliteMemory => DbKind::Sqlite,
            Self::Postgres { .. } => DbKind::Postgres,
        }
    }

    /// The SQLite file, if this is a file database.
    pub fn sqlite_path(&self) -> Option<&Path> {
        match self {
            Self::Sqlite { path } => Some(path),
            _ => None,
        }
    }

    /// The URL in canonical form, password included (for handing to a driver, never for printing).
    pub fn to_url_string(&self) -> String {
        match self {
            Self::Sqlite { path } => format!("sqlite://{}", path.display()),
            Self::SqliteMemory => "sqlite::memory:".into(),
            Self::Postgres { url } => url.to_string(),
        }
    }
}

impl fmt::Display for DatabaseUrl {
    /// The URL with any password masked.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&mask_url(&self.to_url_string()))
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DatabaseUrl({self})")
    }
}

/// Replaces the password of every `scheme://user:password@` in `text` with `****`.
///
/// Works on text that is not a valid URL too (error messages, malformed input).
pub fn mask_url(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.find("://") {
        let (head, tail) = rest.split_at(pos + 3);
        out.push_str(head);
        let authority_end = tail
            .find(|c: char| c == '/' || c == '?' || c == '#' || c.is_whitespace())
            .unwrap_or(tail.len());
        let authority = &tail[..authority_end];
        match (authority.rfind('@'), authority.find(':')) {
            (Some(at), Some(colon)) if colon < at => {
                out.push_str(&authority[..=colon]);
                out.push_str("****");
                out.push_str(&authority[at..]);
            }
            _ => out.push_str(authority),
        }
        rest = &tail[authority_end..];
    }
    out.push_str(rest);
    out
}

/// Removes `.` and `..` components without touching the file system.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_passwords_in_urls_and_free_text() {
        assert_eq!(
            mask_url("postgres://app:s3cret@db:5432/app"),
            "postgres://app:****@db:5432/app"
        );
        assert_eq!(
            mask_url("error: cannot reach postgres://u:p%40ss@h/db (refused)"),
            "error: cannot reach postgres://u:****@h/db (refused)"
        );
        assert_eq!(mask_url("postgres://app@db/app"), "postgres://app@db/app");
        assert_eq!(mask_url("sqlite:///tmp/x.db"), "sqlite:///tmp/x.db");
    }

    #[test]
    fn sqlite_paths_resolve_against_root() {
        let root = Path::new("/srv/app");
        assert_eq!(
            DatabaseUrl::parse("sqlite://app.db", root).unwrap(),
            DatabaseUrl::Sqlite {
                path: "/srv/app/app.db".into()
            }
        );
        assert_eq!(
            DatabaseUrl::parse("sqlite:./data/../x.db", root).unwrap(),
            DatabaseUrl::Sqlite {
                path: "/srv/app/x.db".into()
            }
        );
        assert_eq!(
            DatabaseUrl::parse("sqlite:///var/db/app.db", root).unwrap(),
            DatabaseUrl::Sqlite {
                path: "/var/db/app.db".into()
            }
        );
        assert_eq!(
            DatabaseUrl::parse("sqlite::memory:", root).unwrap(),
            DatabaseUrl::SqliteMemory
        );
    }

    #[test]
    fn rejects_bad_urls_with_a_reason() {
        let root = Path::new("/");
        for (raw, expected) in [
            ("mysql://root@localhost/db", "unknown scheme `mysql:`"),
            ("app.db", "no scheme"),
            ("", "empty"),
            ("sqlite://", "names no file"),
            ("sqlite://data/", "directory"),
            ("postgres://", "no host"),
            ("postgres://u:pw@[::1/db", "malformed"),
            ("postgres://u:pw@host", "names no database"),
        ] {
            let err = DatabaseUrl::parse(raw, root).unwrap_err();
            assert!(err.contains(expected), "{raw}: {err}");
            assert!(!err.contains("pw"), "{raw}: {err}");
        }
    }
}
