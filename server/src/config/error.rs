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
        kind => (error.path.join("."), mask_url(&kind.to_string())),
    };
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
