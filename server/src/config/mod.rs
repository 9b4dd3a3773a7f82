//! Configuration: one figment built the Rocket way, shared by the server and xtask.
//!
//! Precedence, lowest first: built-in defaults, `Rocket.toml` (the selected
//! profile over `[default]`), the `.env` file next to `Rocket.toml`, then the
//! real process environment. Within each environment layer, `ROCKET_*`
//! variables come first, then `DATABASE_*` shortcuts, then `DATABASE_URL`.
//!
//! | module | job |
//! |---|---|
//! | `sources` | finding `Rocket.toml`, reading `.env`, the profile, the env-var layers |
//! | `settings` | the `databases.main` keys: defaults, validation, [`DbSettings`] |
//! | `error` | [`ConfigError`] and naming where a bad value came from |

mod error;
mod settings;
mod sources;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use figment::providers::{Format, Serialized, Toml};
use figment::{Figment, Profile};

pub use error::ConfigError;
pub use settings::{DbSettings, Pooler};
use sources::{EnvLayer, find_config_file, read_dotenv, select_profile};

/// Name of the database in `Rocket.toml` (`[default.databases.main]`) and in `#[database]`.
pub const DATABASE_NAME: &str = "main";

/// Figment path of the database settings.
pub const DATABASE_KEY: &str = "databases.main";

/// The name of the layer of a program's own defaults ([`Environment::with_default_var`]).
const PROGRAM_DEFAULT: &str = "default of this program";

/// The variable naming `db-copy`'s target, read from the environment or `.env`.
pub const COPY_TO_VAR: &str = "DATABASE_COPY_TO";

/// The variable naming a database of the other engine that `db-check` also checks the
/// migrations on, read from the environment or `.env`.
pub const CHECK_ALSO_VAR: &str = "DATABASE_CHECK_ALSO";

/// Variables of this program's commands, not settings of the server.
const COMMAND_VARS: [&str; 2] = [COPY_TO_VAR, CHECK_ALSO_VAR];

/// The inputs configuration is read from: a working directory and environment variables.
///
/// Tests build one explicitly; binaries use [`Environment::from_process`].
#[derive(Debug, Clone)]
pub struct Environment {
    cwd: PathBuf,
    vars: BTreeMap<String, String>,
    /// The program's own defaults for variables the environment does not set.
    defaults: BTreeMap<String, String>,
}

impl Environment {
    /// The current process: its working directory and its environment.
    pub fn from_process() -> Result<Self, ConfigError> {
        let cwd = std::env::current_dir().map_err(|e| ConfigError::File {
            what: "working directory",
            path: PathBuf::from("."),
            reason: e.to_string(),
        })?;
        let mut vars = BTreeMap::new();
        for (name, value) in std::env::vars_os() {
            // A variable whose name is not UTF-8 is nobody's setting.
            let Ok(name) = name.into_string() else {
                continue;
            };
            match value.into_string() {
                Ok(value) => {
                    vars.insert(name, value);
                }
                Err(_) if sources::is_setting(&name) => {
                    return Err(ConfigError::NotUtf8 { var: name });
                }
                Err(_) => {}
            }
        }
        Ok(Self {
            cwd,
            vars,
            defaults: BTreeMap::new(),
        })
    }

    /// An explicit working directory and set of variables.
    pub fn new(cwd: impl Into<PathBuf>, vars: impl IntoIterator<Item = (String, String)>) -> Self {
        Self {
            cwd: cwd.into(),
            vars: vars.into_iter().collect(),
            defaults: BTreeMap::new(),
        }
    }

    /// Sets `key` to `value` unless the environment sets it already; messages name the
    /// value as the program's default, not as an environment variable.
    pub fn with_default_var(mut self, key: &str, value: &str) -> Self {
        if !self.vars.contains_key(key) {
            self.defaults.insert(key.to_string(), value.to_string());
        }
        self
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
    /// Rocket's own settings (address, port, workers, ...), validated.
    pub server: rocket::Config,
    /// `DATABASE_COPY_TO` from the environment, else from `.env`: `db-copy`'s target.
    pub copy_to: Option<String>,
    /// `DATABASE_CHECK_ALSO` from the environment, else from `.env`: the other engine
    /// `db-check` also runs on.
    pub check_also: Option<String>,
    /// Mistakes that do not stop anything, for a `warning:` line each (a `DATABASE_*`
    /// variable that sets nothing).
    pub warnings: Vec<String>,
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
        let mut warnings = sources::unused_database_vars(env.vars.keys(), "environment variable");
        if let Some((path, vars)) = &dotenv {
            warnings.extend(sources::unused_database_vars(
                vars.keys(),
                &format!("in {}", path.display()),
            ));
        }
        if let (Some(toml), Some(path)) = (&toml, &config_file)
            && let Ok(data) = figment::Provider::data(toml)
        {
            let profiles = data.keys().map(|p| p.to_string());
            warnings.extend(sources::check_profiles(profiles, &profile, path)?);
        }
        let command_var = |name: &str| {
            env.var(name).map(str::to_string).or_else(|| {
                dotenv
                    .as_ref()
                    .and_then(|(_, vars)| vars.get(name).cloned())
            })
        };
        let (copy_to, check_also) = (command_var(COPY_TO_VAR), command_var(CHECK_ALSO_VAR));

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
                vars: env.defaults.clone(),
                name: PROGRAM_DEFAULT.into(),
                source: None,
            })
            .merge(EnvLayer {
                vars: env.vars.clone(),
                name: "environment variable".into(),
                source: None,
            })
            .select(profile.clone());

        // Rocket's own keys (port, address, ...) are checked here too, so that a bad
        // value is reported like any other instead of failing the launch later.
        let server = rocket::Config::try_from(&figment)
            .map_err(|e| error::figment_error(&figment, e, None))?;
        for (key, value) in [
            ("workers", server.workers),
            ("max_blocking", server.max_blocking),
        ] {
            if value == 0 {
                return Err(ConfigError::Invalid {
                    key: key.into(),
                    origin: error::origin_of(&figment, key),
                    reason: "must be at least 1".into(),
                });
            }
        }
        // Focusing on a value that is not a table yields an empty one: all defaults,
        // silently. `main = "postgres://…"` must not quietly mean SQLite.
        for key in ["databases", DATABASE_KEY] {
            if let Ok(value) = figment.find_value(key)
                && value.as_dict().is_none()
            {
                return Err(ConfigError::Invalid {
                    key: key.into(),
                    origin: error::origin_of(&figment, key),
                    reason: format!(
                        "must be a table such as [{}.{DATABASE_KEY}] with url = \"…\", not a {}",
                        profile,
                        match value {
                            figment::value::Value::String(..) | figment::value::Value::Char(..) =>
                                "string",
                            figment::value::Value::Array(..) => "list",
                            figment::value::Value::Bool(..) => "boolean",
                            _ => "number",
                        }
                    ),
                });
            }
        }
        // A misspelt database name (`[production.databases.mian]`) would otherwise be
        // ignored and the server run on the default SQLite file.
        if let Ok(value) = figment.find_value("databases")
            && let Some(names) = value.as_dict()
            && let Some(name) = names.keys().find(|name| *name != DATABASE_NAME)
        {
            let key = format!("databases.{name}");
            return Err(ConfigError::Invalid {
                origin: error::origin_of(&figment, &key),
                key,
                reason: format!(
                    "unknown database `{name}`; the server has one database, `{DATABASE_NAME}` ([{profile}.{DATABASE_KEY}])"
                ),
            });
        }
        let (database, canonical) = DbSettings::validate(&figment.focus(DATABASE_KEY), &root)?;
        // Rocket and rocket_db_pools read the validated values, with the URL resolved,
        // so the pool sees exactly what was checked here.
        let figment = figment.merge(Serialized::global(DATABASE_KEY, canonical));
        // Rocket gets the selected profile's values alone: it warns about any profile
        // *defined* whose name starts with `prod`, `dev` or `stag`, selected or not.
        let values: figment::value::Dict = figment
            .extract()
            .map_err(|e| error::figment_error(&figment, e, None))?;
        warnings.extend(sources::misspelt_keys(values.keys(), |key| {
            error::origin_of(&figment, key)
        }));
        let figment = Figment::from(Serialized::globals(values)).select(profile.clone());
        Ok(Self {
            root,
            config_file,
            profile,
            figment,
            database,
            server,
            copy_to,
            check_also,
            warnings,
        })
    }

    /// Whether the selected profile is the protected `production` profile.
    pub fn is_production(&self) -> bool {
        self.profile == "production"
    }
}
