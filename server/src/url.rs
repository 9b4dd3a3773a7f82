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

/// Why a database URL is not usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    /// Nothing but spaces.
    #[error("the URL is empty")]
    Empty,
    /// A scheme this crate does not serve.
    #[error("unknown scheme `{0}:`; expected `sqlite:` or `postgres://`")]
    UnknownScheme(String),
    /// No scheme at all (`app.db`).
    #[error("no scheme; expected `sqlite://<path>` or `postgres://...`")]
    NoScheme,
    /// A PostgreSQL URL the URL parser rejects.
    #[error("malformed PostgreSQL URL ({0})")]
    Malformed(String),
    /// A PostgreSQL URL without a host (or `?host=` socket directory).
    #[error("the PostgreSQL URL has no host")]
    NoHost,
    /// A PostgreSQL URL without a database name.
    #[error("the PostgreSQL URL names no database (postgres://user@host/dbname)")]
    NoDatabase,
    /// A query parameter the driver would silently ignore.
    #[error(
        "unknown parameter `{name}` in the PostgreSQL URL; supported: {}",
        PG_PARAMETERS.join(", ")
    )]
    UnknownParameter {
        /// The parameter.
        name: String,
    },
    /// A query parameter given twice: the driver would silently take the last one.
    #[error("parameter `{0}` is given more than once in the PostgreSQL URL")]
    RepeatedParameter(String),
    /// A query string on a SQLite URL.
    #[error("query parameters are not supported in SQLite URLs; use the databases.main keys")]
    SqliteQuery,
    /// `sqlite://` and nothing else.
    #[error("the SQLite URL names no file (sqlite://app.db)")]
    NoFile,
    /// `sqlite://data/`.
    #[error("the SQLite URL names a directory, not a file")]
    Directory,
    /// A symbolic link that does not resolve.
    #[error("{} is a symbolic link that cannot be followed ({reason})", path.display())]
    BrokenLink {
        /// The link.
        path: PathBuf,
        /// The operating system's reason.
        reason: String,
    },
    /// A path that is not UTF-8, which SQLite's driver cannot open.
    #[error(
        "the database path {} is not valid UTF-8, which the SQLite driver requires; rename the directory or set DATABASE_URL to another path",
        path.display()
    )]
    NotUtf8 {
        /// The resolved path.
        path: PathBuf,
    },
}

/// The query parameters of a PostgreSQL URL that the driver reads (libpq's names and
/// sqlx's spellings of them).
const PG_PARAMETERS: &[&str] = &[
    "sslmode",
    "ssl-mode",
    "sslrootcert",
    "ssl-root-cert",
    "ssl-ca",
    "sslcert",
    "ssl-cert",
    "sslkey",
    "ssl-key",
    "statement-cache-capacity",
    "host",
    "hostaddr",
    "port",
    "dbname",
    "user",
    "password",
    "application_name",
    "options",
    "target_session_attrs",
];

/// The canonical name of a PostgreSQL URL parameter (`ssl-mode` is `sslmode`).
fn canonical_parameter(name: &str) -> &str {
    match name {
        "ssl-mode" => "sslmode",
        "ssl-root-cert" | "ssl-ca" => "sslrootcert",
        "ssl-cert" => "sslcert",
        "ssl-key" => "sslkey",
        other => other,
    }
}

impl DatabaseUrl {
    /// Parses `raw`; a relative SQLite path is resolved against `root`.
    pub fn parse(raw: &str, root: &Path) -> Result<Self, UrlError> {
        let raw = raw.trim();
        if raw.is_empty() {
            return Err(UrlError::Empty);
        }
        if let Some(rest) = raw.strip_prefix("sqlite:") {
            return Self::parse_sqlite(rest, root);
        }
        if raw.starts_with("postgres://") || raw.starts_with("postgresql://") {
            let raw = host_list_in_query(raw)?;
            let url = url::Url::parse(&raw).map_err(|e| UrlError::Malformed(e.to_string()))?;
            let mut seen = std::collections::BTreeSet::new();
            for (name, _) in url.query_pairs() {
                if !PG_PARAMETERS.contains(&&*name) {
                    return Err(UrlError::UnknownParameter {
                        name: name.into_owned(),
                    });
                }
                if !seen.insert(canonical_parameter(&name).to_string()) {
                    return Err(UrlError::RepeatedParameter(name.into_owned()));
                }
            }
            // libpq's `postgres://user@/db?host=/run/postgresql` names a socket directory.
            let host_in_query = url.query_pairs().any(|(k, v)| k == "host" && !v.is_empty());
            if url.host_str().is_none_or(str::is_empty) && !host_in_query {
                return Err(UrlError::NoHost);
            }
            if url.path().trim_start_matches('/').is_empty() {
                return Err(UrlError::NoDatabase);
            }
            return Ok(Self::Postgres {
                url: with_dotted_ipv4(url),
            });
        }
        match raw.split_once(':') {
            Some((scheme, _)) if !scheme.is_empty() && !scheme.contains('/') => {
                Err(UrlError::UnknownScheme(scheme.to_string()))
            }
            _ => Err(UrlError::NoScheme),
        }
    }

    fn parse_sqlite(rest: &str, root: &Path) -> Result<Self, UrlError> {
        let rest = rest.strip_prefix("//").unwrap_or(rest);
        if rest == ":memory:" || rest == "memory:" {
            return Ok(Self::SqliteMemory);
        }
        if rest.contains('?') {
            return Err(UrlError::SqliteQuery);
        }
        if rest.is_empty() {
            return Err(UrlError::NoFile);
        }
        let path = Path::new(rest);
        if path.file_name().is_none() || rest.ends_with('/') {
            return Err(UrlError::Directory);
        }
        let path = if path.is_absolute() {
            path.to_path_buf()
        } else {
            root.join(path)
        };
        let path = normalize(&path);
        // A symbolic link names the file it points to: SQLite writes `-wal` beside the
        // target, and a restore must replace the target, not the link.
        let path = match std::fs::symlink_metadata(&path) {
            Ok(meta) if meta.file_type().is_symlink() => {
                std::fs::canonicalize(&path).map_err(|e| UrlError::BrokenLink {
                    path: path.clone(),
                    reason: e.to_string(),
                })?
            }
            _ => path,
        };
        if path.to_str().is_none() {
            return Err(UrlError::NotUtf8 { path });
        }
        Ok(Self::Sqlite { path })
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

/// Masks every password in `text`: the `user:password@` part of any `scheme://` URL,
/// and the value of any `password=` parameter (URL query or key/value string, the key
/// percent-decoded, so `pass%77ord=` too).
///
/// Works on text that is not a valid URL too (error messages, config snippets, malformed
/// input): a password holding an unencoded `/`, `#`, `?`, `@`, quote or space is masked
/// as well. When in doubt it masks too much rather than too little.
pub fn mask_url(text: &str) -> String {
    mask_password_params(&mask_userinfo(text))
}

/// A user-supplied URL, redacted for echoing in an error: the userinfo's password and
/// everything after `?` (query parameters may carry secrets) are hidden.
pub fn redact_url(raw: &str) -> String {
    let without_query = match raw.find('?') {
        // A `?` inside the userinfo (an unencoded password) is not the query.
        Some(q) if raw.rfind('@').is_none_or(|at| q > at) => format!("{}?…", &raw[..q]),
        _ => raw.to_string(),
    };
    mask_url(&without_query)
}

/// `scheme://user:secret@host` → `scheme://user:****@host`. The userinfo runs from after
/// `://` to the last `@` on the same line (before any other URL), so an unencoded `/`,
/// `?`, `#`, quote or space in the password does not hide its end.
fn mask_userinfo(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.find("://") {
        let (head, tail) = rest.split_at(pos + 3);
        out.push_str(head);
        let line_end = tail.find('\n').unwrap_or(tail.len());
        let scope = &tail[..tail[..line_end].find("://").unwrap_or(line_end)];
        match scope.rfind('@') {
            Some(at) if scope[..at].contains(':') => {
                let colon = scope.find(':').expect("checked above");
                out.push_str(&scope[..=colon]);
                out.push_str("****");
                rest = &tail[at..];
            }
            _ => rest = tail,
        }
    }
    out.push_str(rest);
    out
}

/// `password=secret` → `password=****` for any key whose percent-decoded, lowercased
/// name ends in `password` (`sslpassword`, `db_password`, `pass%77ord`), as a URL query
/// parameter or a key/value pair.
fn mask_password_params(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    for (eq, _) in text.match_indices('=') {
        if eq < copied {
            continue;
        }
        // `password = x` (libpq key/value style) has spaces around the `=`.
        let key_end = text[..eq].trim_end().len();
        let key_start = text[..key_end]
            .rfind(|c: char| {
                c.is_whitespace() || matches!(c, '?' | '&' | ';' | ',' | '`' | '"' | '\'' | '(')
            })
            .map_or(0, |i| i + 1);
        let key = percent_decode_lossy(&text[key_start..key_end]).to_ascii_lowercase();
        if !key.ends_with("password") {
            continue;
        }
        let after = &text[eq + 1..];
        let value_start = eq + 1 + (after.len() - after.trim_start().len());
        let value = &text[value_start..];
        // A quoted value runs to its closing quote (or the end of the line), spaces and all.
        let value_len = match value.chars().next() {
            Some(quote @ ('\'' | '"')) => value[1..]
                .find([quote, '\n'])
                .map_or(value.len(), |end| end + 2),
            _ => value
                .find(|c: char| {
                    c.is_whitespace() || matches!(c, '&' | ';' | ',' | '`' | '"' | '\'' | ')')
                })
                .unwrap_or(value.len()),
        };
        out.push_str(&text[copied..value_start]);
        out.push_str("****");
        copied = value_start + value_len;
    }
    out.push_str(&text[copied..]);
    out
}

/// Decodes `%XX` escapes, leaving anything undecodable as it is.
pub(crate) fn percent_decode_lossy(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = text
            .get(i + 1..i + 3)
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The URL with an IPv4 address written in a short form that libpq accepts (`127.1`,
/// `0x7f.0.0.1`, `2130706433`, as `inet_aton` reads them) spelt as a dotted quad, in the
/// host and in `?host=`: sqlx takes such a host for a DNS name, which its TLS handshake
/// (`sslmode=prefer`, the default) then refuses as invalid.
/// A URL that lists several hosts (`postgres://u@h1:5432,h2:5433/db`, as libpq accepts
/// for failover) in the form the URL parser takes: the first host in the authority and
/// the whole list in libpq's `?host=h1,h2&port=5432,5433`. Other URLs as they are.
fn host_list_in_query(raw: &str) -> Result<std::borrow::Cow<'_, str>, UrlError> {
    let Some((scheme, rest)) = raw.split_once("://") else {
        return Ok(raw.into());
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, after) = rest.split_at(end);
    let (userinfo, hosts) = match authority.rsplit_once('@') {
        Some((userinfo, hosts)) => (Some(userinfo), hosts),
        None => (None, authority),
    };
    if !hosts.contains(',') {
        return Ok(raw.into());
    }
    let mut names = Vec::new();
    let mut ports = Vec::new();
    for host in hosts.split(',') {
        // `[::1]:5432`, `host:5432` or `host`.
        let (name, port) = match host.strip_prefix('[') {
            Some(v6) => {
                let (name, tail) = v6.split_once(']').ok_or_else(|| {
                    UrlError::Malformed(format!("unclosed `[` in the host list: {host}"))
                })?;
                (format!("[{name}]"), tail.strip_prefix(':').unwrap_or(""))
            }
            None => match host.split_once(':') {
                Some((name, port)) => (name.to_string(), port),
                None => (host.to_string(), ""),
            },
        };
        if name.is_empty() {
            return Err(UrlError::Malformed(
                "an empty host in the host list".to_string(),
            ));
        }
        if !port.is_empty() && port.parse::<u16>().is_err() {
            return Err(UrlError::Malformed(format!(
                "invalid port `{port}` in the host list"
            )));
        }
        names.push(name);
        ports.push(if port.is_empty() { "5432" } else { port }.to_string());
    }
    let at = userinfo.map_or(String::new(), |u| format!("{u}@"));
    let (path, query) = match after.split_once('?') {
        Some((path, query)) => (path, format!("?{query}&")),
        None => (after, "?".to_string()),
    };
    Ok(format!(
        "{scheme}://{at}{}:{}{path}{query}host={}&port={}",
        names[0],
        ports[0],
        names.join(","),
        ports.join(",")
    )
    .into())
}

fn with_dotted_ipv4(mut url: url::Url) -> url::Url {
    if let Some(ip) = url.host_str().and_then(ipv4_shorthand) {
        // A host that is a valid dotted quad can always replace another host.
        let _ = url.set_host(Some(&ip.to_string()));
    }
    let pairs: Vec<(String, String)> = url
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    if pairs
        .iter()
        .any(|(k, v)| k == "host" && ipv4_shorthand(v).is_some())
    {
        let mut query = url.query_pairs_mut();
        query.clear();
        for (key, value) in pairs {
            let value = match ipv4_shorthand(&value) {
                Some(ip) if key == "host" => ip.to_string(),
                _ => value,
            };
            query.append_pair(&key, &value);
        }
    }
    url
}

/// The address `host` names when it is an IPv4 address in a form other than the dotted
/// quad: one to four numbers (decimal, `0x` hexadecimal or `0` octal), the last filling
/// the remaining bytes, as `inet_aton` reads them. `None` for anything else.
fn ipv4_shorthand(host: &str) -> Option<std::net::Ipv4Addr> {
    if host.parse::<std::net::Ipv4Addr>().is_ok() {
        return None;
    }
    let parts: Vec<u64> = host
        .split('.')
        .map(|part| {
            let (digits, radix) = match part.strip_prefix("0x").or(part.strip_prefix("0X")) {
                Some(hex) => (hex, 16),
                None if part.len() > 1 && part.starts_with('0') => (&part[1..], 8),
                None => (part, 10),
            };
            match digits.chars().all(|c| c.is_digit(radix)) && !digits.is_empty() {
                true => u64::from_str_radix(digits, radix).ok(),
                false => None,
            }
        })
        .collect::<Option<_>>()?;
    let (last, leading) = parts.split_last()?;
    if parts.len() > 4 || leading.iter().any(|&p| p > 255) {
        return None;
    }
    let last_bits = 8 * (4 - leading.len() as u32);
    if *last >= 1u64 << last_bits {
        return None;
    }
    let value = leading
        .iter()
        .fold(0u64, |acc, &p| (acc << 8) | p)
        .checked_shl(last_bits)?
        | last;
    Some(std::net::Ipv4Addr::from(u32::try_from(value).ok()?))
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
    fn masks_passwords_with_unencoded_delimiters() {
        for secret in ["pa/ss", "pa#ss", "pa?ss", "p@ss", "a/b?c#d@e"] {
            let text = format!("malformed URL in `postgres://app:{secret}@db:5432/app`");
            let masked = mask_url(&text);
            assert!(!masked.contains(secret), "{masked}");
            assert!(
                masked.contains("postgres://app:****@db:5432/app`"),
                "{masked}"
            );
        }
    }

    #[test]
    fn masks_passwords_with_spaces_and_quotes_in_config_snippets() {
        for text in [
            "in `postgres://u:SEK RIT@127.0.0.1:99999/db`",
            "in `postgres://u:SEK\"RIT@127.0.0.1:99999/db`",
            "  |\n1 | url = \"postgres://u:SEK RIT@h/db\n  |       ^",
        ] {
            let masked = mask_url(text);
            assert!(
                !masked.contains("SEK") && !masked.contains("RIT"),
                "{masked}"
            );
        }
        assert_eq!(
            redact_url("postgres://u:p w@h/db?password=A B&x=1"),
            "postgres://u:****@h/db?…"
        );
        assert_eq!(
            redact_url("postgres://u:a?b@h/db"),
            "postgres://u:****@h/db"
        );
    }

    #[test]
    fn masks_password_parameters() {
        assert_eq!(
            mask_url("postgres://db/app?user=app&password=s3cret&sslmode=require"),
            "postgres://db/app?user=app&password=****&sslmode=require"
        );
        assert_eq!(
            mask_url("host=db PASSWORD=s3cret user=app"),
            "host=db PASSWORD=**** user=app"
        );
        assert_eq!(mask_url("?sslpassword=k3y"), "?sslpassword=****");
        assert_eq!(
            mask_url("no scheme in `host=db password='hunter 2' user=app`"),
            "no scheme in `host=db password=**** user=app`"
        );
        assert_eq!(mask_url("password = hunter2 x"), "password = **** x");
        assert_eq!(
            mask_url("postgres://db/app?pass%77ord=s3cret&x=1"),
            "postgres://db/app?pass%77ord=****&x=1"
        );
        assert_eq!(mask_url("no secrets here"), "no secrets here");
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
    fn ipv4_shorthand_hosts_become_dotted_quads() {
        let root = Path::new("/");
        for (raw, expected) in [
            ("postgres://u:pw@127.1/db", "postgres://u:pw@127.0.0.1/db"),
            (
                "postgres://u@127.1:5433/db",
                "postgres://u@127.0.0.1:5433/db",
            ),
            ("postgres://u@0x7f.0.0.1/db", "postgres://u@127.0.0.1/db"),
            ("postgres://u@2130706433/db", "postgres://u@127.0.0.1/db"),
            ("postgres://u@10.1.2/db", "postgres://u@10.1.0.2/db"),
            ("postgres://u@0177.1/db", "postgres://u@127.0.0.1/db"),
            (
                "postgres:///db?host=127.1&sslmode=disable",
                "postgres:///db?host=127.0.0.1&sslmode=disable",
            ),
            ("postgres://u@127.0.0.1/db", "postgres://u@127.0.0.1/db"),
            ("postgres://u@db1.example/db", "postgres://u@db1.example/db"),
            ("postgres://u@256.1/db", "postgres://u@256.1/db"),
            ("postgres://u@1.2.3.4.5/db", "postgres://u@1.2.3.4.5/db"),
            ("postgres://u@08.1/db", "postgres://u@08.1/db"),
            ("postgres://u@1.2.65536/db", "postgres://u@1.2.65536/db"),
        ] {
            assert_eq!(
                DatabaseUrl::parse(raw, root).unwrap().to_url_string(),
                expected,
                "{raw}"
            );
        }
    }

    #[test]
    fn rejects_bad_urls_by_kind() {
        let root = Path::new("/");
        for (raw, expected) in [
            (
                "mysql://root@localhost/db",
                UrlError::UnknownScheme("mysql".into()),
            ),
            ("app.db", UrlError::NoScheme),
            ("", UrlError::Empty),
            ("sqlite://", UrlError::NoFile),
            ("sqlite://data/", UrlError::Directory),
            ("postgres://", UrlError::NoHost),
            ("postgres://u:pw@host", UrlError::NoDatabase),
            (
                "postgres://u:pw@host/db?bogus=1",
                UrlError::UnknownParameter {
                    name: "bogus".into(),
                },
            ),
            (
                "postgres://u:pw@host/db?sslmode=require&ssl-mode=disable",
                UrlError::RepeatedParameter("ssl-mode".into()),
            ),
        ] {
            let err = DatabaseUrl::parse(raw, root).unwrap_err();
            assert_eq!(err, expected, "{raw}");
            assert!(!err.to_string().contains("pw"), "{raw}: {err}");
        }
        let err = DatabaseUrl::parse("postgres://u:pw@[::1/db", root).unwrap_err();
        assert!(matches!(err, UrlError::Malformed(_)), "{err}");
    }

    #[test]
    fn a_sqlite_path_that_is_not_utf8_is_refused() {
        use std::os::unix::ffi::OsStrExt as _;
        let root = Path::new(std::ffi::OsStr::from_bytes(b"/srv/caf\xe9"));
        let err = DatabaseUrl::parse("sqlite://app.db", root).unwrap_err();
        assert!(matches!(err, UrlError::NotUtf8 { .. }), "{err}");
    }
}
