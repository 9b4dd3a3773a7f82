//! Configuration errors, and naming where a bad value came from.

use std::path::PathBuf;

use figment::{Figment, Metadata, Profile};

use super::DATABASE_KEY;
use crate::url::mask_url;

/// A configuration mistake, with the key and the place it came from.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A value is present but wrong.
    #[error("invalid {key} ({origin}): {reason}")]
    Invalid {
        /// The configuration key, e.g. `databases.main.url`.
        key: String,
        /// Where the value came from (file, env var).
        origin: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The selected profile is not defined anywhere.
    #[error("unknown profile `{profile}` ({origin}); known profiles: {known}")]
    UnknownProfile {
        /// The requested profile.
        profile: String,
        /// Where the request came from.
        origin: String,
        /// Comma-separated list of known profiles.
        known: String,
    },
    /// An environment variable this crate reads holds bytes that are not UTF-8.
    #[error(
        "environment variable {var} is not valid UTF-8 (its value is not shown: it may hold a secret)"
    )]
    NotUtf8 {
        /// The variable's name.
        var: String,
    },
    /// A file named by the configuration cannot be read.
    #[error("cannot read {what} {path}: {reason}")]
    File {
        /// What the file is (config file, .env file).
        what: &'static str,
        /// Its path.
        path: PathBuf,
        /// The underlying error.
        reason: String,
    },
}

/// Describes where the database key `key` came from: the env var, or the file.
///
/// `figment` is focused on `databases.main`.
pub(super) fn origin(figment: &Figment, key: &str) -> String {
    let Some(metadata) = figment.find_metadata(key) else {
        return "built-in default".into();
    };
    describe_source(metadata, &format!("{DATABASE_KEY}.{key}"))
}

/// Names a value's source: the file it is in, or the env var that set it.
fn describe_source(metadata: &Metadata, full_key: &str) -> String {
    match &metadata.source {
        Some(figment::Source::File(path)) => format!("from {}", path.display()),
        _ if metadata.name == super::PROGRAM_DEFAULT => format!("the {}", metadata.name),
        _ => {
            let keys: Vec<&str> = full_key.split('.').collect();
            format!(
                "from {} {}",
                metadata.interpolate(&Profile::Default, &keys),
                metadata.name
            )
        }
    }
}

/// A parser's multi-line message (TOML errors quote the offending line with a caret
/// under it) as one line: the quoted snippet is dropped, the rest joined with `; `.
pub(super) fn one_line(message: &str) -> String {
    message
        .lines()
        .map(str::trim)
        .filter(|line| {
            !line.is_empty()
                && !line.starts_with('|')
                && !line
                    .split_once(" |")
                    .is_some_and(|(n, _)| n.chars().all(|c| c.is_ascii_digit()))
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// Describes where the top-level (Rocket) key `key` came from.
pub(super) fn origin_of(figment: &Figment, key: &str) -> String {
    figment
        .find_metadata(key)
        .map_or_else(|| "built-in default".into(), |m| describe_source(m, key))
}

/// Turns a figment extraction error into a one-line [`ConfigError`] naming the key and
/// its source. `prefix` is the path of the extracted table (`databases.main`, or none
/// for Rocket's own keys).
pub(super) fn figment_error(
    figment: &Figment,
    error: figment::Error,
    prefix: Option<&str>,
) -> ConfigError {
    let (key, reason) = match &error.kind {
        figment::error::Kind::UnknownField(field, _) => {
            (field.clone(), format!("unknown key `{field}`"))
        }
        kind => (error.path.join("."), one_line(&mask_url(&kind.to_string()))),
    };
    // The file itself does not parse: no key to name, the file and position instead.
    if key.is_empty()
        && prefix.is_none()
        && let Some(path) = error
            .metadata
            .as_ref()
            .and_then(|m| m.source.as_ref())
            .and_then(|s| s.file_path())
    {
        return ConfigError::File {
            what: "config file",
            path: path.to_path_buf(),
            reason,
        };
    }
    let full_key = match (prefix, key.is_empty()) {
        (Some(prefix), true) => prefix.to_string(),
        (Some(prefix), false) => format!("{prefix}.{key}"),
        (None, _) => key.clone(),
    };
    let origin = match &error.metadata {
        Some(metadata) => describe_source(metadata, &full_key),
        None => figment.find_metadata(&key).map_or_else(
            || "built-in default".into(),
            |m| describe_source(m, &full_key),
        ),
    };
    ConfigError::Invalid {
        key: full_key,
        origin,
        reason,
    }
}
