//! Configuration: one figment built the Rocket way, shared by the server and xtask.
//!
//! Precedence, lowest first: built-in defaults, `Rocket.toml` (the selected
//! profile over `[default]`), the `.env` file next to `Rocket.toml`, then the
//! real process environment. Within each environment layer, `ROCKET_*`
//! variables come first, then `DATABASE_*` shortcuts, then `DATABASE_URL`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::providers::{Format, Serialized, Toml};
use figment::value::{Dict, Map, Value};
use figment::{Figment, Metadata, Profile, Provider};
use serde::{Deserialize, Serialize};

use crate::url::{DatabaseUrl, mask_url};

/// Name of the database in `Rocket.toml` (`[default.databases.main]`) and in `#[database]`.
pub const DATABASE_NAME: &str = "main";

/// Figment path of the database settings.
pub const DATABASE_KEY: &str = "databases.main";

/// Environment variables that set one database key each: `DATABASE_<KEY>`.
const DATABASE_ENV_KEYS: &[&str] = &[
    "min_connections",
    "max_connections",
    "acquire_timeout_ms",
    "idle_timeout_secs",
    "connect_timeout_ms",
    "busy_timeout_ms",
    "statement_timeout_ms",
    "lock_timeout_ms",
    "health_timeout_ms",
    "echo",
    "migrate_on_start",
    "backup_dir",
];

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

/// The inputs configuration is read from: a working directory and environment variables.
///
/// Tests build one explicitly; binaries use [`Environment::from_process`].
#[derive(Debug, Clone)]
pub struct Environment {
    cwd: PathBuf,
    vars: BTreeMap<String, String>,
}

impl Environment {
    /// The current process: its working directory and its environment.
    pub fn from_process() -> Result<Self, ConfigError> {
        let cwd = std::env::current_dir().map_err(|e| ConfigError::File {
            what: "working directory",
            path: PathBuf::from("."),
            reason: e.to_string(),
        })?;
        Ok(Self::new(cwd, std::env::vars()))
    }

    /// An explicit working directory and set of variables.
    pub fn new(cwd: impl Into<PathBuf>, vars: impl IntoIterator<Item = (String, String)>) -> Self {
        Self {
            cwd: cwd.into(),
            vars: vars.into_iter().collect(),
        }
    }

    fn var(&self, key: &str) -> Option<&str> {
        self.vars.get(key).map(String::as_str)
    }
}

/// The resolved configuration: the full figment (for Rocket) and the validated database settings.
#[derive(Debug, Clone)]
pub struct AppConfig {
    /// Directory that relative paths resolve against: the directory of `Rocket.toml`, or the working directory.
    pub root: PathBuf,
    /// The `Rocket.toml` in use, if any.
    pub config_file: Option<PathBuf>,
    /// The selected profile.
    pub profile: Profile,
    /// The figment Rocket reads, with the database URL already resolved.
    pub figment: Figment,
    /// The validated database settings.
    pub database: DbSettings,
}

impl AppConfig {
    /// Reads and validates the configuration from the process environment.
    pub fn load() -> Result<Self, ConfigError> {
        Self::from_env(&Environment::from_process()?)
    }

    /// Reads and validates the configuration from an explicit environment.
    pub fn from_env(env: &Environment) -> Result<Self, ConfigError> {
        let config_file = find_config_file(env)?;
        let root = config_file
            .as_deref()
            .and_then(Path::parent)
            .map_or_else(|| env.cwd.clone(), Path::to_path_buf);
        let dotenv = read_dotenv(&root)?;

        let toml = config_file
            .as_ref()
            .map(|path| Toml::file_exact(path).nested());
        let profile = select_profile(env, &dotenv, toml.as_ref())?;

        let mut figment = Figment::from(rocket::Config::default());
        if let Some(toml) = toml {
            figment = figment.merge(toml);
        }
        if let Some((path, vars)) = dotenv {
            figment = figment.merge(EnvLayer {
                vars,
                name: format!("{} file", path.display()),
                source: Some(path),
            });
        }
        let figment = figment
            .merge(EnvLayer {
                vars: env.vars.clone(),
                name: "environment variable".into(),
                source: None,
            })
            .select(profile.clone());

        // Rocket's own keys (port, address, ...) are checked here too, so that a bad
        // value is reported like any other instead of failing the launch later.
        rocket::Config::try_from(&figment).map_err(|e| figment_error(&figment, e, None))?;
        let (database, canonical) = DbSettings::validate(&figment.focus(DATABASE_KEY), &root)?;
        // Rocket and rocket_db_pools read the validated values, with the URL resolved,
        // so the pool sees exactly what was checked here.
        let figment = figment.merge(Serialized::global(DATABASE_KEY, canonical));
        Ok(Self {
            root,
            config_file,
            profile,
            figment,
            database,
        })
    }

    /// Whether the selected profile is the protected `production` profile.
    pub fn is_production(&self) -> bool {
        self.profile == "production"
    }
}

/// Validated database settings.
#[derive(Debug, Clone)]
pub struct DbSettings {
    /// Which database, and where.
    pub url: DatabaseUrl,
    /// Where the URL came from, for error messages.
    pub url_origin: String,
    /// Connections kept open when idle.
    pub min_connections: u32,
    /// Upper bound of the pool.
    pub max_connections: u32,
    /// How long a request waits for a free connection before it gets a 503.
    pub acquire_timeout: Duration,
    /// Idle connections above the minimum are closed after this long.
    pub idle_timeout: Option<Duration>,
    /// Bound on opening a connection (and on startup).
    pub connect_timeout: Duration,
    /// SQLite: how long a statement waits for a lock.
    pub busy_timeout: Duration,
    /// PostgreSQL: `statement_timeout` of every connection.
    pub statement_timeout: Duration,
    /// PostgreSQL: `lock_timeout` of every connection.
    pub lock_timeout: Duration,
    /// Bound on the whole `/health/db` check.
    pub health_timeout: Duration,
    /// Log every SQL statement.
    pub echo: bool,
    /// Apply pending migrations when the server starts.
    pub migrate_on_start: bool,
    /// Where backups go.
    pub backup_dir: PathBuf,
}

/// The raw, unvalidated shape of `[<profile>.databases.main]`.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RawDbSettings {
    #[serde(default = "defaults::url")]
    url: String,
    /// `rocket_db_pools` joins this key (in seconds) into every pool's config;
    /// our bound is `connect_timeout_ms`, so it is accepted and ignored.
    #[serde(default, rename = "connect_timeout", skip_serializing)]
    _connect_timeout: Option<serde::de::IgnoredAny>,
    #[serde(default = "defaults::min_connections")]
    min_connections: u32,
    #[serde(default = "defaults::max_connections")]
    max_connections: u32,
    #[serde(default = "defaults::acquire_timeout_ms")]
    acquire_timeout_ms: u64,
    #[serde(default = "defaults::idle_timeout_secs")]
    idle_timeout_secs: u64,
    #[serde(default = "defaults::connect_timeout_ms")]
    connect_timeout_ms: u64,
    #[serde(default = "defaults::busy_timeout_ms")]
    busy_timeout_ms: u64,
    #[serde(default = "defaults::statement_timeout_ms")]
    statement_timeout_ms: u64,
    #[serde(default = "defaults::lock_timeout_ms")]
    lock_timeout_ms: u64,
    #[serde(default = "defaults::health_timeout_ms")]
    health_timeout_ms: u64,
    #[serde(default)]
    echo: bool,
    #[serde(default = "defaults::migrate_on_start")]
    migrate_on_start: bool,
    #[serde(default)]
    backup_dir: Option<String>,
}

/// Defaults of the database keys, also listed in `.env.example` and the README.
mod defaults {
    pub fn url() -> String {
        "sqlite://app.db".into()
    }
    pub fn min_connections() -> u32 {
        1
    }
    pub fn max_connections() -> u32 {
        16
    }
    pub fn acquire_timeout_ms() -> u64 {
        1_000
    }
    pub fn idle_timeout_secs() -> u64 {
        600
    }
    pub fn connect_timeout_ms() -> u64 {
        5_000
    }
    pub fn busy_timeout_ms() -> u64 {
        5_000
    }
    pub fn statement_timeout_ms() -> u64 {
        30_000
    }
    pub fn lock_timeout_ms() -> u64 {
        10_000
    }
    pub fn health_timeout_ms() -> u64 {
        800
    }
    pub fn migrate_on_start() -> bool {
        true
    }
}

impl DbSettings {
    /// Extracts and validates settings from a figment focused on `databases.main`
    /// (what `rocket_db_pools` hands to a pool); relative SQLite paths resolve against `root`.
    pub fn from_focused(figment: &Figment, root: &Path) -> Result<Self, ConfigError> {
        Self::validate(figment, root).map(|(settings, _)| settings)
    }

    fn validate(figment: &Figment, root: &Path) -> Result<(Self, RawDbSettings), ConfigError> {
        let url_key = format!("{DATABASE_KEY}.url");
        let mut raw: RawDbSettings = figment
            .extract()
            .map_err(|e| figment_error(figment, e, Some(DATABASE_KEY)))?;
        let url_origin = origin(figment, "url");
        let url = DatabaseUrl::parse(&raw.url, root).map_err(|reason| ConfigError::Invalid {
            key: url_key.clone(),
            origin: url_origin.clone(),
            reason: format!("{reason} in `{}`", mask_url(&raw.url)),
        })?;

        let invalid = |key: &str, reason: String| ConfigError::Invalid {
            key: format!("{DATABASE_KEY}.{key}"),
            origin: origin(figment, key),
            reason,
        };
        if raw.max_connections == 0 {
            return Err(invalid("max_connections", "must be at least 1".into()));
        }
        if raw.min_connections > raw.max_connections {
            return Err(invalid(
                "min_connections",
                format!(
                    "{} is greater than max_connections ({})",
                    raw.min_connections, raw.max_connections
                ),
            ));
        }
        for (key, value) in [
            ("acquire_timeout_ms", raw.acquire_timeout_ms),
            ("connect_timeout_ms", raw.connect_timeout_ms),
            ("health_timeout_ms", raw.health_timeout_ms),
        ] {
            if value == 0 {
                return Err(invalid(key, "must be greater than 0".into()));
            }
        }
        if raw.health_timeout_ms >= 1_000 {
            return Err(invalid(
                "health_timeout_ms",
                "must be below 1000 so /health/db answers within a second".into(),
            ));
        }
        let backup_dir = match &raw.backup_dir {
            Some(dir) => root.join(dir),
            None => match &url {
                DatabaseUrl::Sqlite { path } => path
                    .parent()
                    .map_or_else(|| root.to_path_buf(), Path::to_path_buf)
                    .join("backups"),
                _ => root.join("backups"),
            },
        };

        let settings = Self {
            url: url.clone(),
            url_origin,
            min_connections: raw.min_connections,
            max_connections: raw.max_connections,
            acquire_timeout: Duration::from_millis(raw.acquire_timeout_ms),
            idle_timeout: (raw.idle_timeout_secs > 0)
                .then(|| Duration::from_secs(raw.idle_timeout_secs)),
            connect_timeout: Duration::from_millis(raw.connect_timeout_ms),
            busy_timeout: Duration::from_millis(raw.busy_timeout_ms),
            statement_timeout: Duration::from_millis(raw.statement_timeout_ms),
            lock_timeout: Duration::from_millis(raw.lock_timeout_ms),
            health_timeout: Duration::from_millis(raw.health_timeout_ms),
            echo: raw.echo,
            migrate_on_start: raw.migrate_on_start,
            backup_dir: backup_dir.clone(),
        };
        raw.url = url.to_url_string();
        raw.backup_dir = Some(backup_dir.display().to_string());
        Ok((settings, raw))
    }
}

/// Describes where the database key `key` came from: the env var, or the file.
///
/// `figment` is focused on `databases.main`.
fn origin(figment: &Figment, key: &str) -> String {
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
fn figment_error(figment: &Figment, error: figment::Error, prefix: Option<&str>) -> ConfigError {
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

/// Finds the `Rocket.toml` in use: `ROCKET_CONFIG`, else `Rocket.toml` in the working directory or a parent.
fn find_config_file(env: &Environment) -> Result<Option<PathBuf>, ConfigError> {
    if let Some(explicit) = env.var("ROCKET_CONFIG") {
        let path = env.cwd.join(explicit);
        if !path.is_file() {
            return Err(ConfigError::File {
                what: "config file named by ROCKET_CONFIG",
                path,
                reason: "no such file".into(),
            });
        }
        return Ok(Some(path));
    }
    Ok(env
        .cwd
        .ancestors()
        .map(|dir| dir.join("Rocket.toml"))
        .find(|path| path.is_file()))
}

/// A `.env` file: its path and its variables.
type DotEnv = (PathBuf, BTreeMap<String, String>);

/// Reads `<root>/.env` if it exists.
fn read_dotenv(root: &Path) -> Result<Option<DotEnv>, ConfigError> {
    let path = root.join(".env");
    if !path.is_file() {
        return Ok(None);
    }
    let file_error = |reason: String| ConfigError::File {
        what: ".env file",
        path: path.clone(),
        reason,
    };
    let iter = dotenvy::from_path_iter(&path).map_err(|e| file_error(e.to_string()))?;
    let vars = iter
        .collect::<Result<BTreeMap<_, _>, _>>()
        .map_err(|e| file_error(describe_dotenv_error(&path, e)))?;
    Ok(Some((path, vars)))
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
fn select_profile(
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
            reason: e.to_string(),
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
struct EnvLayer {
    vars: BTreeMap<String, String>,
    name: String,
    source: Option<PathBuf>,
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

    /// Maps a figment key back to the variable that sets it, for messages.
    fn var_for(keys: &[&str]) -> String {
        match keys {
            ["databases", "main", "url"] => "DATABASE_URL".into(),
            ["databases", "main", key] if DATABASE_ENV_KEYS.contains(key) => {
                format!("DATABASE_{}", key.to_ascii_uppercase())
            }
            [first, ..] => format!("ROCKET_{}", first.to_ascii_uppercase()),
            [] => "ROCKET_".into(),
        }
    }
}

impl Provider for EnvLayer {
    fn metadata(&self) -> Metadata {
        let metadata = Metadata::named(self.name.clone())
            .interpolater(|_: &Profile, keys: &[&str]| EnvLayer::var_for(keys));
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
