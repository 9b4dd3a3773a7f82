//! Where configuration comes from: `Rocket.toml`, `.env`, the profile, environment variables.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use figment::providers::Toml;
use figment::value::{Dict, Map, Value};
use figment::{Metadata, Profile, Provider};

use super::settings::DATABASE_ENV_KEYS;
use super::{ConfigError, DATABASE_KEY, Environment};
use crate::url::mask_url;

/// Finds the `Rocket.toml` in use: `ROCKET_CONFIG`, else `Rocket.toml` in the working directory or a parent.
///
/// Whatever is found must be a regular file (or a link to one): a directory or a FIFO
/// named `Rocket.toml` is a mistake to report, not a reason to fall back to defaults.
pub(super) fn find_config_file(env: &Environment) -> Result<Option<PathBuf>, ConfigError> {
    if let Some(explicit) = env.var("ROCKET_CONFIG") {
        let path = env.cwd.join(explicit);
        let what = "config file named by ROCKET_CONFIG";
        return match regular_file(&path) {
            Some(Ok(())) => Ok(Some(path)),
            Some(Err(reason)) => Err(ConfigError::File {
                what,
                path,
                reason: reason.to_string(),
            }),
            None => Err(ConfigError::File {
                what,
                path,
                reason: "no such file".into(),
            }),
        };
    }
    for path in env.cwd.ancestors().map(|dir| dir.join("Rocket.toml")) {
        match regular_file(&path) {
            Some(Ok(())) => return Ok(Some(path)),
            Some(Err(reason)) => {
                return Err(ConfigError::File {
                    what: "config file",
                    path,
                    reason: reason.to_string(),
                });
            }
            None => {}
        }
    }
    Ok(None)
}

/// Why a configuration file's path holds no readable regular file.
#[derive(Debug, thiserror::Error)]
enum NotAFile {
    #[error("is a symbolic link to nothing")]
    DanglingLink,
    #[error("is a directory, not a regular file")]
    Directory,
    #[error("is a FIFO (named pipe), not a regular file")]
    Fifo,
    #[error("is not a regular file")]
    Other,
    #[error("{0}")]
    Unreadable(std::io::Error),
}

/// Whether something is at `path` (`None`: nothing), and whether it is a regular file.
fn regular_file(path: &Path) -> Option<Result<(), NotAFile>> {
    use std::os::unix::fs::FileTypeExt as _;
    let meta = match std::fs::metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return path
                .symlink_metadata()
                .is_ok()
                .then_some(Err(NotAFile::DanglingLink));
        }
        Err(e) => return Some(Err(NotAFile::Unreadable(e))),
    };
    let kind = meta.file_type();
    Some(if kind.is_file() {
        Ok(())
    } else if kind.is_dir() {
        Err(NotAFile::Directory)
    } else if kind.is_fifo() {
        Err(NotAFile::Fifo)
    } else {
        Err(NotAFile::Other)
    })
}

/// Whether the environment variable `var` is one this crate reads: a `ROCKET_*` or
/// `DATABASE_*` setting.
pub(super) fn is_setting(var: &str) -> bool {
    // Rocket's default `temp_dir` is read from `TMPDIR`.
    var.starts_with("ROCKET_") || var.starts_with("DATABASE_") || var == "TMPDIR"
}

/// Rocket's own top-level keys, and `databases`.
const KNOWN_KEYS: &[&str] = &[
    "address",
    "port",
    "workers",
    "max_blocking",
    "keep_alive",
    "ident",
    "ip_header",
    "limits",
    "tls",
    "secret_key",
    "temp_dir",
    "log_level",
    "shutdown",
    "cli_colors",
    "databases",
];

/// Profiles Rocket and this project know by name.
const KNOWN_PROFILES: &[&str] = &["default", "global", "debug", "release", "production"];

/// The closest of `known` to `name` within `within` edits, if `name` is not one of them.
fn closest<S: AsRef<str>>(
    name: &str,
    known: impl IntoIterator<Item = S>,
    within: usize,
) -> Option<S> {
    let mut candidates: Vec<(usize, S)> = Vec::new();
    for k in known {
        if k.as_ref() == name {
            return None;
        }
        candidates.push((edit_distance(name, k.as_ref()), k));
    }
    candidates
        .into_iter()
        .filter(|(distance, _)| *distance <= within)
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, k)| k)
}

/// Profiles of `Rocket.toml` (at `path`) that are mistakes: a top-level table named like
/// a key (`[databases.main]` without a profile) is an error; a profile one or two letters
/// away from a known one (`[relase]`), not selected, is a warning.
pub(super) fn check_profiles(
    profiles: impl IntoIterator<Item = String>,
    selected: &Profile,
    path: &Path,
) -> Result<Vec<String>, ConfigError> {
    let mut warnings = Vec::new();
    for profile in profiles {
        let lower = profile.to_ascii_lowercase();
        if KNOWN_KEYS.contains(&lower.as_str()) {
            return Err(ConfigError::File {
                what: "config file",
                path: path.to_path_buf(),
                reason: format!(
                    "[{profile}] is read as a profile named `{profile}`, not as a setting; write it under a profile, e.g. [default.{profile}]"
                ),
            });
        }
        if *selected != profile.as_str()
            && let Some(known) = closest(&lower, KNOWN_PROFILES.iter().copied(), 2)
        {
            warnings.push(format!(
                "profile [{profile}] in {} is not selected (ROCKET_PROFILE) and is ignored; did you mean [{known}]?",
                path.display()
            ));
        }
    }
    Ok(warnings)
}

/// Top-level keys of the selected configuration that look like a misspelt setting
/// (`prot`, `databses`, `database_url`), with where each came from. Other unknown keys
/// pass silently: an application may read keys of its own.
pub(super) fn misspelt_keys<'a>(
    keys: impl IntoIterator<Item = &'a String>,
    origin: impl Fn(&str) -> String,
) -> Vec<String> {
    keys.into_iter()
        .filter(|key| !KNOWN_KEYS.contains(&key.as_str()))
        .filter_map(|key| {
            let guess = closest(key, KNOWN_KEYS.iter().copied(), 2)
                .or_else(|| key.starts_with("database").then_some("databases"))?;
            Some(format!(
                "`{key}` ({}) is not a setting and is ignored; did you mean `{guess}`?",
                origin(key)
            ))
        })
        .collect()
}

/// Warnings for `DATABASE_*` variables in `vars` that set nothing (a typo such as
/// `DATABASE_MAX_CONECTIONS`), naming where they came from and the closest real one.
pub(super) fn unused_database_vars<'a>(
    vars: impl IntoIterator<Item = &'a String>,
    origin: &str,
) -> Vec<String> {
    vars.into_iter()
        .filter(|var| {
            var.starts_with("DATABASE_")
                && !super::COMMAND_VARS.contains(&var.as_str())
                && EnvLayer::key_for(var).is_none()
        })
        .map(|var| {
            let known = std::iter::once("DATABASE_URL".to_string())
                .chain(super::COMMAND_VARS.map(str::to_string))
                .chain(
                    DATABASE_ENV_KEYS
                        .iter()
                        .map(|key| format!("DATABASE_{}", key.to_ascii_uppercase())),
                );
            let closest = closest(var, known, 3)
                .map_or_else(String::new, |name| format!(" (did you mean {name}?)"));
            format!("{var} ({origin}) is not a setting of this server and is ignored{closest}")
        })
        .collect()
}

/// Levenshtein distance between two ASCII-ish names.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut previous = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous + usize::from(ca != *cb);
            previous = row[j + 1];
            row[j + 1] = substitution.min(row[j] + 1).min(previous + 1);
        }
    }
    row[b.len()]
}

/// A `.env` file: its path and its variables.
pub(super) type DotEnv = (PathBuf, BTreeMap<String, String>);

/// Reads `<root>/.env` if it exists.
pub(super) fn read_dotenv(root: &Path) -> Result<Option<DotEnv>, ConfigError> {
    let path = root.join(".env");
    let file_error = |reason: String| ConfigError::File {
        what: ".env file",
        path: path.clone(),
        reason,
    };
    // No `.env` is fine; one that cannot be read is a mistake to report, not to skip.
    match regular_file(&path) {
        None => return Ok(None),
        Some(Err(reason)) => return Err(file_error(reason.to_string())),
        Some(Ok(())) => {}
    }
    // dotenvy's own error for bytes that are not UTF-8 names no line.
    let bytes = std::fs::read(&path).map_err(|e| file_error(e.to_string()))?;
    if let Some(number) = bytes
        .split(|&b| b == b'\n')
        .position(|line| std::str::from_utf8(line).is_err())
    {
        return Err(file_error(format!(
            "line {}: not valid UTF-8; the line is not shown, it may hold a secret",
            number + 1
        )));
    }
    if let Some((number, var)) = not_utf8_reference(&bytes) {
        return Err(file_error(format!(
            "line {number}: ${{{var}}} refers to environment variable {var}, whose value is not valid UTF-8 (not shown)"
        )));
    }
    // A byte-order mark (Windows editors) is not part of the first variable's name.
    let text = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&bytes);
    let iter = dotenvy::from_read_iter(text);
    let vars = iter
        .collect::<Result<BTreeMap<_, _>, _>>()
        .map_err(|e| file_error(describe_dotenv_error(&path, e)))?;
    Ok(Some((path, vars)))
}

/// The first `${VAR}` or `$VAR` in `.env` text whose variable is set to bytes that are
/// not UTF-8 (dotenvy would substitute nothing, silently), with its line number.
fn not_utf8_reference(bytes: &[u8]) -> Option<(usize, String)> {
    let text = std::str::from_utf8(bytes).ok()?;
    for (number, line) in text.lines().enumerate() {
        let mut rest = line;
        while let Some(at) = rest.find('$') {
            rest = &rest[at + 1..];
            let braced = rest.strip_prefix('{');
            let name: String = braced
                .unwrap_or(rest)
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty()
                && std::env::var_os(&name).is_some_and(|value| value.to_str().is_none())
            {
                return Some((number + 1, name));
            }
        }
    }
    None
}

/// A `.env` error without the offending line's text, which may hold a secret: the line
/// number and, when there is one, the variable's name.
fn describe_dotenv_error(path: &Path, error: dotenvy::Error) -> String {
    let dotenvy::Error::LineParse(line, index) = error else {
        return mask_url(&error.to_string());
    };
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let number = text
        .find(line.as_str())
        .map_or(0, |at| text[..at].matches('\n').count() + 1);
    let name = line
        .split_once('=')
        .map(|(name, _)| name.trim().trim_start_matches("export ").trim())
        .filter(|name| {
            !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        });
    let what = name.map_or_else(
        || "a line".to_string(),
        |name| format!("the line setting {name}"),
    );
    let at = if number > 0 {
        format!("line {number}: ")
    } else {
        String::new()
    };
    format!(
        "{at}cannot parse {what} (error at character {}); the line is not shown, it may hold a secret",
        index + 1
    )
}

/// Picks the profile: `ROCKET_PROFILE` from the environment, then from `.env`, then Rocket's default.
pub(super) fn select_profile(
    env: &Environment,
    dotenv: &Option<DotEnv>,
    toml: Option<&figment::providers::Data<Toml>>,
) -> Result<Profile, ConfigError> {
    let (requested, origin) = if let Some(p) = env.var("ROCKET_PROFILE") {
        (
            p.to_string(),
            "ROCKET_PROFILE environment variable".to_string(),
        )
    } else if let Some((path, p)) = dotenv
        .as_ref()
        .and_then(|(path, vars)| vars.get("ROCKET_PROFILE").map(|p| (path, p)))
    {
        (p.clone(), format!("ROCKET_PROFILE in {}", path.display()))
    } else {
        return Ok(rocket::Config::DEFAULT_PROFILE);
    };

    let mut known: Vec<String> = ["default", "debug", "release"]
        .into_iter()
        .map(String::from)
        .collect();
    if let Some(toml) = toml {
        let data = toml.data().map_err(|e| ConfigError::File {
            what: "config file",
            path: toml
                .metadata()
                .source
                .and_then(|s| s.file_path().map(Path::to_path_buf))
                .unwrap_or_default(),
            reason: super::error::one_line(&mask_url(&e.to_string())),
        })?;
        for profile in data.keys() {
            if !known.iter().any(|k| profile == k.as_str()) && *profile != Profile::Global {
                known.push(profile.to_string());
            }
        }
    }
    if !known.iter().any(|k| k.eq_ignore_ascii_case(&requested)) {
        return Err(ConfigError::UnknownProfile {
            profile: requested,
            origin,
            known: known.join(", "),
        });
    }
    Ok(Profile::new(&requested))
}

/// One layer of environment variables (the process environment or a `.env` file) as a figment provider.
///
/// `ROCKET_<KEY>` sets the global `<key>` (Rocket's own convention), `DATABASE_<KEY>`
/// sets `databases.main.<key>` for the keys in [`DATABASE_ENV_KEYS`], and
/// `DATABASE_URL` sets `databases.main.url`.
pub(super) struct EnvLayer {
    pub(super) vars: BTreeMap<String, String>,
    pub(super) name: String,
    pub(super) source: Option<PathBuf>,
}

impl EnvLayer {
    /// Maps a variable name to the figment key it sets, if any.
    fn key_for(var: &str) -> Option<String> {
        if var == "DATABASE_URL" {
            return Some(format!("{DATABASE_KEY}.url"));
        }
        if let Some(key) = var.strip_prefix("DATABASE_") {
            let key = key.to_ascii_lowercase();
            return DATABASE_ENV_KEYS
                .contains(&key.as_str())
                .then(|| format!("{DATABASE_KEY}.{key}"));
        }
        let key = var.strip_prefix("ROCKET_")?;
        if key.is_empty() || key == "PROFILE" || key == "CONFIG" {
            return None;
        }
        Some(key.to_ascii_lowercase())
    }

    /// Maps a figment key back to the variable of this layer that set it, for messages:
    /// a database key came from its own `DATABASE_*` variable when that is set, else from
    /// `ROCKET_DATABASES`.
    fn var_for(keys: &[&str], set: &std::collections::BTreeSet<String>) -> String {
        let own = match keys {
            ["databases", "main", "url"] => Some("DATABASE_URL".to_string()),
            ["databases", "main", key] if DATABASE_ENV_KEYS.contains(key) => {
                Some(format!("DATABASE_{}", key.to_ascii_uppercase()))
            }
            _ => None,
        };
        match (own, keys) {
            (Some(var), _) if set.contains(&var) || !set.contains("ROCKET_DATABASES") => var,
            (_, [first, ..]) => format!("ROCKET_{}", first.to_ascii_uppercase()),
            (_, []) => "ROCKET_".into(),
        }
    }
}

impl Provider for EnvLayer {
    fn metadata(&self) -> Metadata {
        let set: std::collections::BTreeSet<String> = self.vars.keys().cloned().collect();
        let metadata = Metadata::named(self.name.clone())
            .interpolater(move |_: &Profile, keys: &[&str]| EnvLayer::var_for(keys, &set));
        match &self.source {
            Some(path) => metadata.source(figment::Source::Custom(path.display().to_string())),
            None => metadata,
        }
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        // DATABASE_URL is merged last so that it wins over `ROCKET_DATABASES`.
        let mut ordered: Vec<(String, &str)> = self
            .vars
            .iter()
            .filter_map(|(var, value)| Some((Self::key_for(var)?, value.as_str())))
            .collect();
        ordered.sort_by_key(|(key, _)| key.starts_with("databases."));
        let mut dict = Dict::new();
        for (key, value) in ordered {
            let value = if key.ends_with(".url") || key.ends_with(".backup_dir") {
                Value::from(value.to_string())
            } else {
                value
                    .parse()
                    .expect("parsing a figment value is infallible")
            };
            let nested = figment::util::nest(&key, value)
                .into_dict()
                .expect("a non-empty key nests into a dict");
            dict = merge_dicts(dict, nested);
        }
        Ok(Profile::Global.collect(dict))
    }
}

/// Deep-merges `incoming` into `base`, `incoming` winning on conflicts.
fn merge_dicts(mut base: Dict, incoming: Dict) -> Dict {
    for (key, value) in incoming {
        let merged = match (base.remove(&key), value) {
            (Some(Value::Dict(_, old)), Value::Dict(tag, new)) => {
                Value::Dict(tag, merge_dicts(old, new))
            }
            (_, new) => new,
        };
        base.insert(key, merged);
    }
    base
}
