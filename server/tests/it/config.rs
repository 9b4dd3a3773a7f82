//! Configuration: sources, precedence, path resolution, profiles and validation messages.

use std::path::Path;

use server::config::{AppConfig, ConfigError, Environment};
use server::url::DatabaseUrl;

fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn load(dir: &Path, pairs: &[(&str, &str)]) -> Result<AppConfig, ConfigError> {
    AppConfig::from_env(&Environment::new(dir, vars(pairs)))
}

fn project(toml: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("Rocket.toml"), toml).unwrap();
    dir
}

const TOML: &str = r#"
[default.databases.main]
url = "sqlite://app.db"

[staging.databases.main]
url = "sqlite://data/staging.db"
max_connections = 4
"#;

fn sqlite_path(config: &AppConfig) -> &Path {
    config
        .database
        .url
        .sqlite_path()
        .expect("a SQLite file URL")
}

#[test]
fn default_path_resolves_against_the_config_directory_from_any_subdirectory() {
    let dir = project(TOML);
    let nested = dir.path().join("a/b");
    std::fs::create_dir_all(&nested).unwrap();
    let from_root = load(dir.path(), &[]).unwrap();
    let from_nested = load(&nested, &[]).unwrap();
    assert_eq!(sqlite_path(&from_root), dir.path().join("app.db"));
    assert_eq!(sqlite_path(&from_nested), dir.path().join("app.db"));
    assert_eq!(from_nested.root, dir.path());
}

#[test]
fn with_nothing_configured_the_database_is_app_db_in_the_working_directory() {
    let dir = tempfile::tempdir().unwrap();
    let config = load(dir.path(), &[]).unwrap();
    assert_eq!(sqlite_path(&config), dir.path().join("app.db"));
    assert_eq!(config.database.url_origin, "built-in default");
    assert_eq!(config.database.max_connections, 16);
    assert!(config.database.migrate_on_start);
}

#[test]
fn without_a_config_file_paths_resolve_against_the_working_directory() {
    let dir = tempfile::tempdir().unwrap();
    let config = load(dir.path(), &[("DATABASE_URL", "sqlite://x/y.db")]).unwrap();
    assert_eq!(sqlite_path(&config), dir.path().join("x/y.db"));
}

#[test]
fn database_url_from_the_environment_wins_over_rocket_toml() {
    let dir = project(TOML);
    let config = load(
        dir.path(),
        &[("DATABASE_URL", "sqlite:///var/tmp/other.db")],
    )
    .unwrap();
    assert_eq!(sqlite_path(&config), Path::new("/var/tmp/other.db"));
    assert!(
        config.database.url_origin.contains("DATABASE_URL"),
        "{}",
        config.database.url_origin
    );
}

#[test]
fn dotenv_overrides_rocket_toml_and_the_real_environment_beats_dotenv() {
    let dir = project(TOML);
    std::fs::write(
        dir.path().join(".env"),
        "DATABASE_URL=sqlite://from-dotenv.db\nDATABASE_MAX_CONNECTIONS=3\n",
    )
    .unwrap();
    let config = load(dir.path(), &[]).unwrap();
    assert_eq!(sqlite_path(&config), dir.path().join("from-dotenv.db"));
    assert_eq!(config.database.max_connections, 3);

    let config = load(dir.path(), &[("DATABASE_URL", "sqlite://from-env.db")]).unwrap();
    assert_eq!(sqlite_path(&config), dir.path().join("from-env.db"));
    assert_eq!(
        config.database.max_connections, 3,
        "untouched keys still come from .env"
    );
}

#[test]
fn profile_switching_changes_the_database() {
    let dir = project(TOML);
    let config = load(dir.path(), &[("ROCKET_PROFILE", "staging")]).unwrap();
    assert_eq!(sqlite_path(&config), dir.path().join("data/staging.db"));
    assert_eq!(config.database.max_connections, 4);
    assert_eq!(config.profile, "staging");

    std::fs::write(dir.path().join(".env"), "ROCKET_PROFILE=staging\n").unwrap();
    let config = load(dir.path(), &[]).unwrap();
    assert_eq!(sqlite_path(&config), dir.path().join("data/staging.db"));
}

#[test]
fn rocket_env_vars_override_database_keys() {
    let dir = project(TOML);
    let config = load(
        dir.path(),
        &[(
            "ROCKET_DATABASES",
            r#"{main={url="sqlite://r.db",max_connections=7}}"#,
        )],
    )
    .unwrap();
    assert_eq!(sqlite_path(&config), dir.path().join("r.db"));
    assert_eq!(config.database.max_connections, 7);
}

#[test]
fn absolute_relative_memory_and_postgres_urls_are_accepted() {
    let dir = project(TOML);
    for (url, expected) in [
        (
            "sqlite:///srv/db/app.db",
            DatabaseUrl::Sqlite {
                path: "/srv/db/app.db".into(),
            },
        ),
        (
            "sqlite:data/app.db",
            DatabaseUrl::Sqlite {
                path: dir.path().join("data/app.db"),
            },
        ),
        ("sqlite::memory:", DatabaseUrl::SqliteMemory),
    ] {
        let config = load(dir.path(), &[("DATABASE_URL", url)]).unwrap();
        assert_eq!(config.database.url, expected, "{url}");
    }
    let config = load(
        dir.path(),
        &[("DATABASE_URL", "postgres://app:s3cret@db.internal:5432/app")],
    )
    .unwrap();
    assert_eq!(config.database.url.kind(), server::url::DbKind::Postgres);
    assert_eq!(
        config.database.url.to_string(),
        "postgres://app:****@db.internal:5432/app"
    );
    assert!(!format!("{:?}", config.database).contains("s3cret"));
}

#[test]
fn invalid_urls_are_rejected_naming_the_key_and_its_source_without_the_password() {
    let dir = project(TOML);
    for (url, reason) in [
        (
            "mysql://root:hunter2@localhost/app",
            "unknown scheme `mysql:`",
        ),
        ("app.db", "no scheme"),
        ("postgres://app:hunter2@/app", "host"),
        ("sqlite://", "names no file"),
        ("", "empty"),
        // Unencoded delimiters in the password make the URL malformed; still masked.
        ("postgres://app:hun/ter2@db/app", "malformed"),
        ("postgres://app:hun#ter2@db/app", "malformed"),
        ("postgres://app:hun?ter2@db/app", "malformed"),
    ] {
        let message = load(dir.path(), &[("DATABASE_URL", url)])
            .unwrap_err()
            .to_string();
        assert!(message.contains("databases.main.url"), "{message}");
        assert!(
            message.contains("DATABASE_URL environment variable"),
            "{message}"
        );
        assert!(message.contains(reason), "{url}: {message}");
        assert!(!message.contains("hunter2"), "{message}");
        assert!(
            !message.contains("hun") && !message.contains("ter2"),
            "{message}"
        );
        assert!(!message.contains('\n'), "one line: {message}");
    }
    let dir = project("[default.databases.main]\nurl = \"ftp://x\"\n");
    let message = load(dir.path(), &[]).unwrap_err().to_string();
    assert!(message.contains("Rocket.toml"), "{message}");
}

#[test]
fn nonsense_pool_sizes_and_unknown_keys_are_rejected_with_their_source() {
    let dir = project(TOML);
    let cases: &[(&[(&str, &str)], &str)] = &[
        (
            &[("DATABASE_MAX_CONNECTIONS", "0")],
            "max_connections (from DATABASE_MAX_CONNECTIONS environment variable): must be at least 1",
        ),
        (
            &[("DATABASE_MAX_CONNECTIONS", "lots")],
            "max_connections (from DATABASE_MAX_CONNECTIONS",
        ),
        (
            &[("DATABASE_MIN_CONNECTIONS", "20")],
            "min_connections (from DATABASE_MIN_CONNECTIONS environment variable): 20 is greater than max_connections (16)",
        ),
        (
            &[("DATABASE_HEALTH_TIMEOUT_MS", "5000")],
            "health_timeout_ms",
        ),
    ];
    for (env, expected) in cases {
        let message = load(dir.path(), env).unwrap_err().to_string();
        assert!(message.contains(expected), "{env:?}: {message}");
    }
    let dir = project("[default.databases.main]\nurl = \"sqlite://a.db\"\nmax_conections = 3\n");
    let message = load(dir.path(), &[]).unwrap_err().to_string();
    assert!(
        message.contains("unknown key `max_conections`"),
        "{message}"
    );
    assert!(message.contains("Rocket.toml"), "{message}");
}

#[test]
fn rockets_own_keys_are_validated_with_their_source_too() {
    let dir = project("[default]\nport = \"eighty\"\n");
    let message = load(dir.path(), &[]).unwrap_err().to_string();
    assert!(message.starts_with("invalid port (from "), "{message}");
    assert!(message.contains("Rocket.toml"), "{message}");
    let dir = project(TOML);
    let message = load(dir.path(), &[("ROCKET_PORT", "abc")])
        .unwrap_err()
        .to_string();
    assert!(
        message.starts_with("invalid port (from ROCKET_PORT environment variable)"),
        "{message}"
    );
}

#[test]
fn unknown_profile_is_rejected_listing_the_known_ones() {
    let dir = project(TOML);
    let message = load(dir.path(), &[("ROCKET_PROFILE", "prod")])
        .unwrap_err()
        .to_string();
    assert_eq!(
        message,
        "unknown profile `prod` (ROCKET_PROFILE environment variable); known profiles: default, debug, release, staging"
    );
}

#[test]
fn a_missing_explicit_config_file_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let message = load(dir.path(), &[("ROCKET_CONFIG", "nope.toml")])
        .unwrap_err()
        .to_string();
    assert!(
        message.contains("ROCKET_CONFIG") && message.contains("nope.toml"),
        "{message}"
    );
}

#[test]
fn the_repository_rocket_toml_and_env_example_agree_with_the_defaults() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let config = load(root, &[]).unwrap();
    assert_eq!(sqlite_path(&config), root.join("app.db"));
    let production = load(root, &[("ROCKET_PROFILE", "production")]).unwrap();
    assert!(production.is_production());
    let example = std::fs::read_to_string(root.join(".env.example")).unwrap();
    for key in [
        "DATABASE_URL",
        "DATABASE_MIN_CONNECTIONS",
        "DATABASE_MAX_CONNECTIONS",
        "DATABASE_ACQUIRE_TIMEOUT_MS",
        "DATABASE_IDLE_TIMEOUT_SECS",
        "DATABASE_CONNECT_TIMEOUT_MS",
        "DATABASE_BUSY_TIMEOUT_MS",
        "DATABASE_STATEMENT_TIMEOUT_MS",
        "DATABASE_LOCK_TIMEOUT_MS",
        "DATABASE_HEALTH_TIMEOUT_MS",
        "DATABASE_ECHO",
        "DATABASE_MIGRATE_ON_START",
        "DATABASE_BACKUP_DIR",
        "ROCKET_PROFILE",
    ] {
        assert!(
            example.contains(key),
            ".env.example does not document {key}"
        );
    }
}

#[test]
fn an_unparsable_dotenv_line_is_named_by_number_and_never_echoed() {
    let dir = project(TOML);
    std::fs::write(
        dir.path().join(".env"),
        "ROCKET_PORT=8001\nDATABASE_URL=\"postgres://app:hunter2@db/app\n",
    )
    .unwrap();
    let message = load(dir.path(), &[]).unwrap_err().to_string();
    assert!(message.contains(".env"), "{message}");
    assert!(message.contains("line 2"), "{message}");
    assert!(message.contains("DATABASE_URL"), "{message}");
    assert!(!message.contains("hunter2"), "{message}");
    assert!(!message.contains('\n'), "one line: {message}");
}

#[test]
fn a_password_query_parameter_is_masked_wherever_the_url_is_shown() {
    let dir = project(TOML);
    let config = load(
        dir.path(),
        &[(
            "DATABASE_URL",
            "postgres://app@db/app?sslmode=disable&password=hunter2",
        )],
    )
    .unwrap();
    let shown = format!("{} {:?}", config.database.url, config.database);
    assert!(!shown.contains("hunter2"), "{shown}");
    assert!(shown.contains("password=****"), "{shown}");
}
