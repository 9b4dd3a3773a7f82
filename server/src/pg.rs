//! PostgreSQL connection settings, derived once from the URL for the pool and for the
//! client tools (`pg_dump`, `pg_restore`, `psql`), so both reach the same database.
//!
//! The URL is parsed by sqlx exactly as the pool parses it (percent-decoding, `?host=`
//! sockets, `?dbname=`, `?sslmode=`, IPv6 hosts); the tools get the decoded values
//! through libpq's environment variables, the password included: never through argv.

use std::io::{self, Read};
use std::process::{Command, Output, Stdio};
use std::str::FromStr;

use sqlx::ConnectOptions;
use sqlx::postgres::{PgConnectOptions, PgSslMode};

use crate::url::mask_url;

/// The pool's connect options for `url`, before pool-specific settings.
pub fn connect_options(url: &url::Url) -> Result<PgConnectOptions, sqlx::Error> {
    PgConnectOptions::from_str(url.as_str())
}

/// The database name the URL selects, decoded (`x%20y` is `x y`; `?dbname=` wins).
pub fn database_name(url: &url::Url) -> Result<String, sqlx::Error> {
    let options = connect_options(url)?;
    Ok(options
        .get_database()
        .unwrap_or(options.get_username())
        .to_string())
}

/// A stable identity of the database, without credentials: `postgres://host:port/dbname`.
pub fn identity(url: &url::Url) -> Result<String, sqlx::Error> {
    let options = connect_options(url)?;
    Ok(format!(
        "postgres://{}/{}",
        server_address(&options),
        database_name(url)?
    ))
}

/// The host as libpq takes it: a socket directory, or a name or address without brackets.
fn host(options: &PgConnectOptions) -> String {
    match options.get_socket() {
        Some(socket) => socket.display().to_string(),
        None => options
            .get_host()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string(),
    }
}

/// `host:port` of the server (`[::1]:5432` for IPv6, the socket directory for a socket),
/// never credentials.
pub fn server_address(options: &PgConnectOptions) -> String {
    let host = host(options);
    if options.get_socket().is_none() && host.contains(':') {
        format!("[{host}]:{}", options.get_port())
    } else {
        format!("{host}:{}", options.get_port())
    }
}

/// libpq environment variables that reach the same database as the pool.
pub fn tool_env(url: &url::Url) -> Result<Vec<(&'static str, String)>, sqlx::Error> {
    let options = connect_options(url)?;
    let mut env = vec![
        ("PGHOST", host(&options)),
        ("PGPORT", options.get_port().to_string()),
        ("PGUSER", options.get_username().to_string()),
        ("PGDATABASE", database_name(url)?),
        ("PGSSLMODE", ssl_mode(options.get_ssl_mode()).to_string()),
    ];
    if let Some(name) = options.get_application_name() {
        env.push(("PGAPPNAME", name.to_string()));
    }
    if let Some(opts) = options.get_options() {
        env.push(("PGOPTIONS", opts.to_string()));
    }
    // sqlx keeps the password and certificate paths private; its lossy URL carries them
    // (percent-encoded again), so decode once more.
    let lossy = options.to_url_lossy();
    if let Some(password) = lossy.password() {
        env.push(("PGPASSWORD", crate::url::percent_decode_lossy(password)));
    }
    for (key, value) in lossy.query_pairs() {
        let var = match &*key {
            "sslrootcert" => "PGSSLROOTCERT",
            "sslcert" => "PGSSLCERT",
            "sslkey" => "PGSSLKEY",
            _ => continue,
        };
        env.push((var, value.into_owned()));
    }
    Ok(env)
}

fn ssl_mode(mode: PgSslMode) -> &'static str {
    match mode {
        PgSslMode::Disable => "disable",
        PgSslMode::Allow => "allow",
        PgSslMode::Prefer => "prefer",
        PgSslMode::Require => "require",
        PgSslMode::VerifyCa => "verify-ca",
        PgSslMode::VerifyFull => "verify-full",
    }
}

/// A client tool that could not run or failed; the message names the tool, masks secrets.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ToolError(pub String);

/// Checks that `tool` is on `PATH` and runs, before anything is changed.
pub fn require_tool(tool: &str) -> Result<(), ToolError> {
    let mut command = Command::new(tool);
    command.arg("--version");
    run(tool, command, None).map(drop)
}

/// Runs a PostgreSQL client tool against `url` with `args`, off the async runtime's
/// workers; connection settings travel in the environment. Returns its output once it
/// succeeded.
pub async fn run_tool(
    tool: &'static str,
    url: &url::Url,
    args: &[&std::ffi::OsStr],
) -> Result<Output, ToolError> {
    run_tool_with_input(tool, url, args, None).await
}

/// Like [`run_tool`], feeding `input` to the tool's stdin. The input is streamed by this
/// process: if it dies, the tool reads end-of-file instead of the rest (so `psql` never
/// reaches a `COMMIT` that was not sent).
pub async fn run_tool_with_input(
    tool: &'static str,
    url: &url::Url,
    args: &[&std::ffi::OsStr],
    input: Option<Box<dyn Read + Send>>,
) -> Result<Output, ToolError> {
    let env = tool_env(url).map_err(|e| ToolError(mask_url(&e.to_string())))?;
    let mut command = Command::new(tool);
    command.arg("--no-password").args(args);
    // Only the pool's settings: no libpq variable of the caller's shell (PGHOSTADDR,
    // PGSERVICE, ...) may point a tool at another server than the pool's.
    for (var, _) in std::env::vars_os() {
        if var.to_string_lossy().starts_with("PG") {
            command.env_remove(var);
        }
    }
    command.envs(env);
    tokio::task::spawn_blocking(move || run(tool, command, input))
        .await
        .map_err(|e| ToolError(format!("{tool}: {e}")))?
}

fn run(
    tool: &str,
    mut command: Command,
    input: Option<Box<dyn Read + Send>>,
) -> Result<Output, ToolError> {
    command
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().map_err(|e| {
        ToolError(if e.kind() == io::ErrorKind::NotFound {
            format!(
                "{tool} not found on PATH; install the PostgreSQL client tools (e.g. `apt install postgresql-client`)"
            )
        } else {
            format!("cannot run {tool}: {e}")
        })
    })?;
    let feeder = match (input, child.stdin.take()) {
        (Some(mut input), Some(mut stdin)) => Some(std::thread::spawn(move || {
            // A tool that stops reading (it failed) ends the copy; its exit status tells.
            let result = io::copy(&mut input, &mut stdin);
            drop(stdin);
            result
        })),
        _ => None,
    };
    let output = child
        .wait_with_output()
        .map_err(|e| ToolError(format!("cannot run {tool}: {e}")))?;
    if let Some(feeder) = feeder
        && let Ok(Err(e)) = feeder.join()
        && output.status.success()
    {
        return Err(ToolError(format!("cannot feed {tool}: {e}")));
    }
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let first = stderr
            .lines()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("no output");
        return Err(ToolError(format!(
            "{tool} failed ({}): {}",
            output.status,
            mask_url(first.trim())
        )));
    }
    Ok(output)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(raw: &str) -> Vec<(&'static str, String)> {
        tool_env(&url::Url::parse(raw).unwrap()).unwrap()
    }

    fn get<'a>(env: &'a [(&'static str, String)], key: &str) -> Option<&'a str> {
        env.iter().find(|(k, _)| *k == key).map(|(_, v)| v.as_str())
    }

    #[test]
    fn tools_get_decoded_settings_of_the_same_database() {
        let env =
            env_of("postgres://app%20user:S3c%40r%2Fet@db.example:6543/x%20y?sslmode=require");
        assert_eq!(get(&env, "PGPASSWORD"), Some("S3c@r/et"));
        assert_eq!(get(&env, "PGUSER"), Some("app user"));
        assert_eq!(get(&env, "PGDATABASE"), Some("x y"));
        assert_eq!(get(&env, "PGHOST"), Some("db.example"));
        assert_eq!(get(&env, "PGPORT"), Some("6543"));
        assert_eq!(get(&env, "PGSSLMODE"), Some("require"));

        let env = env_of("postgres://u@[::1]:5432/ignored?dbname=real&host=/run/postgresql");
        assert_eq!(get(&env, "PGDATABASE"), Some("real"));
        assert_eq!(get(&env, "PGHOST"), Some("/run/postgresql"));
        let env = env_of("postgres://u@[::1]:5432/app");
        assert_eq!(get(&env, "PGHOST"), Some("::1"));
        let env = env_of("postgres://u@h/app?password=p%26w");
        assert_eq!(get(&env, "PGPASSWORD"), Some("p&w"));
    }
}
