//! PostgreSQL connection settings, derived once from the URL for the pool and for the
//! client tools (`pg_dump`, `pg_restore`, `psql`), so both reach the same database.
//!
//! The URL is parsed by sqlx exactly as the pool parses it (percent-decoding, `?host=`
//! sockets, `?dbname=`, `?sslmode=`, IPv6 hosts); the tools get the decoded values
//! through libpq's environment variables, the password included: never through argv.

use std::fs::File;
use std::io::{self, Read, Write};
use std::process::{Child, Command, Stdio};
use std::str::FromStr;
use std::sync::{Arc, LazyLock, Mutex};

use sqlx::ConnectOptions;
use sqlx::postgres::{PgConnectOptions, PgSslMode};

use crate::url::mask_url;

/// The connect options for `url`, before pool-specific settings: no startup parameter
/// beyond the usual ones (sqlx's `extra_float_digits`, which PostgreSQL 12 and later do
/// not need to print floats exactly, is one PgBouncer's default configuration refuses).
///
/// A URL that lists several hosts gives the first one's options; [`hosts`] lists them
/// all and [`connect_options_at`] gives another's.
pub fn connect_options(url: &url::Url) -> Result<PgConnectOptions, sqlx::Error> {
    // What sqlx does not read: the host list and libpq's `target_session_attrs`.
    let several = hosts(url).len() > 1;
    let mut plain = url.clone();
    let kept: Vec<(String, String)> = url
        .query_pairs()
        .filter(|(k, _)| k != "target_session_attrs" && !(several && (k == "host" || k == "port")))
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    plain.set_query(None);
    if !kept.is_empty() {
        plain.query_pairs_mut().extend_pairs(kept);
    }
    Ok(PgConnectOptions::from_str(plain.as_str())?.extra_float_digits(None))
}

/// The hosts of a URL that lists several (`postgres://u@h1:5432,h2:5433/db`, libpq's
/// failover list), in order; one entry otherwise.
pub fn hosts(url: &url::Url) -> Vec<(String, u16)> {
    let param = |name: &str| {
        url.query_pairs()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    };
    match param("host").filter(|h| h.contains(',')) {
        Some(list) => {
            let ports: Vec<u16> = param("port")
                .unwrap_or_default()
                .split(',')
                .map(|p| p.parse().unwrap_or(5432))
                .collect();
            list.split(',')
                .enumerate()
                .map(|(i, host)| {
                    let host = host.trim_start_matches('[').trim_end_matches(']');
                    (host.to_string(), ports.get(i).copied().unwrap_or(5432))
                })
                .collect()
        }
        None => vec![(
            url.host_str().unwrap_or_default().to_string(),
            url.port().unwrap_or(5432),
        )],
    }
}

/// Whether the URL asks for a server that accepts writes (`target_session_attrs=read-write`,
/// as libpq spells it): of several hosts, the first writable one is used.
pub fn wants_read_write(url: &url::Url) -> bool {
    url.query_pairs()
        .any(|(k, v)| k == "target_session_attrs" && v == "read-write")
}

/// The connect options for `host` of a URL's host list.
pub fn connect_options_at(
    url: &url::Url,
    (host, port): &(String, u16),
) -> Result<PgConnectOptions, sqlx::Error> {
    Ok(connect_options(url)?.host(host).port(*port))
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

/// Whether the server of `options` refuses connections right now (nothing listens at
/// its port or socket): the error, when it does. Unknown (`None`) when it accepts or
/// does not answer within 200 ms. The pool retries refused connections until its
/// acquire timeout and then says only that it timed out.
pub async fn refuses(options: &PgConnectOptions) -> Option<std::io::Error> {
    let attempt = async {
        match options.get_socket() {
            Some(dir) => tokio::net::UnixStream::connect(
                dir.join(format!(".s.PGSQL.{}", options.get_port())),
            )
            .await
            .map(drop),
            None => tokio::net::TcpStream::connect((options.get_host(), options.get_port()))
                .await
                .map(drop),
        }
    };
    match tokio::time::timeout(std::time::Duration::from_millis(200), attempt).await {
        Ok(Err(e))
            if matches!(
                e.kind(),
                std::io::ErrorKind::ConnectionRefused | std::io::ErrorKind::NotFound
            ) =>
        {
            Some(e)
        }
        _ => None,
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
    // Several hosts: libpq tries them in order, as the pool does.
    let list = hosts(url);
    if list.len() > 1 {
        let names: Vec<&str> = list.iter().map(|(h, _)| h.as_str()).collect();
        let ports: Vec<String> = list.iter().map(|(_, p)| p.to_string()).collect();
        env.retain(|(var, _)| *var != "PGHOST" && *var != "PGPORT");
        env.push(("PGHOST", names.join(",")));
        env.push(("PGPORT", ports.join(",")));
    }
    if wants_read_write(url) {
        env.push(("PGTARGETSESSIONATTRS", "read-write".to_string()));
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

/// Where a tool's standard output goes. Either way this process reads it: a tool whose
/// caller died (even by SIGKILL) gets SIGPIPE at its next write instead of running on.
#[derive(Debug)]
pub enum ToolOutput {
    /// Read and thrown away (`pg_restore` verifying an archive, `psql`).
    Discard,
    /// Written into this file (`pg_dump`'s archive, a restore script).
    Into(File),
}

/// Checks that `tool` is on `PATH` and runs, before anything is changed.
pub fn require_tool(tool: &str) -> Result<(), ToolError> {
    let mut command = Command::new(tool);
    command.arg("--version");
    let child = spawn(tool, command, false)?;
    let shared = Mutex::new(Some(child));
    collect(tool, &shared, ToolOutput::Discard, None)
}

/// Runs a PostgreSQL client tool against `url` with `args`, off the async runtime's
/// workers; connection settings travel in the environment. Its standard output goes to
/// `output`; it must end successfully.
///
/// Dropping the returned future (a server shutting down) kills the tool.
pub async fn run_tool(
    tool: &'static str,
    url: &url::Url,
    args: &[&std::ffi::OsStr],
    output: ToolOutput,
) -> Result<(), ToolError> {
    run_tool_with_input(tool, url, args, output, None).await
}

/// Like [`run_tool`], feeding `input` to the tool's stdin. The input is streamed by this
/// process: if it dies, the tool reads end-of-file instead of the rest (so `psql` never
/// reaches a `COMMIT` that was not sent).
pub async fn run_tool_with_input(
    tool: &'static str,
    url: &url::Url,
    args: &[&std::ffi::OsStr],
    output: ToolOutput,
    input: Option<Box<dyn Read + Send>>,
) -> Result<(), ToolError> {
    let env = tool_env(url).map_err(|e| ToolError(mask_url(&e.to_string())))?;
    // The tool dies with this process, even by SIGKILL: a parent-death signal set by
    // util-linux's `setpriv` before it becomes the tool (same pid). Without `setpriv`,
    // the tool still stops at its next write to the pipe this process no longer reads.
    let mut command = match (&*SETPRIV, on_path(tool)) {
        (Some(setpriv), Some(resolved)) => {
            let mut command = Command::new(setpriv);
            command.args(["--pdeathsig", "KILL", "--"]).arg(resolved);
            command
        }
        // A missing tool is reported as such when it is spawned.
        _ => Command::new(tool),
    };
    command.arg("--no-password").args(args);
    // Only the pool's settings: no libpq variable of the caller's shell (PGHOSTADDR,
    // PGSERVICE, ...) may point a tool at another server than the pool's.
    for (var, _) in std::env::vars_os() {
        if var.to_string_lossy().starts_with("PG") {
            command.env_remove(var);
        }
    }
    command.envs(env);
    let child = spawn(tool, command, input.is_some())?;
    let shared = Arc::new(Mutex::new(Some(child)));
    let _kill_on_drop = KillOnDrop(Arc::clone(&shared));
    tokio::task::spawn_blocking(move || collect(tool, &shared, output, input))
        .await
        .map_err(|e| ToolError(format!("{tool}: {e}")))?
}

/// util-linux's `setpriv`, when on `PATH`: it sets the parent-death signal of the tools.
static SETPRIV: LazyLock<Option<std::path::PathBuf>> = LazyLock::new(|| on_path("setpriv"));

/// The first `program` on this process's `PATH`.
fn on_path(program: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}

/// Kills the tool, unless it has been reaped already, when the caller's future is
/// dropped. The child is reaped only under the same lock, so the signal never reaches
/// another process that was given its pid.
struct KillOnDrop(Arc<Mutex<Option<Child>>>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(child) = self.0.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
            let _ = child.kill();
        }
    }
}

fn spawn(tool: &str, mut command: Command, piped_input: bool) -> Result<Child, ToolError> {
    command
        .stdin(if piped_input {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command.spawn().map_err(|e| {
        ToolError(if e.kind() == io::ErrorKind::NotFound {
            format!(
                "{tool} not found on PATH; install the PostgreSQL client tools (e.g. `apt install postgresql-client`)"
            )
        } else {
            format!("cannot run {tool}: {e}")
        })
    })
}

/// How much of a tool's stderr is kept for its error message.
const STDERR_KEPT: u64 = 64 * 1024;

/// Feeds the tool, copies its output until it closes it, then reaps it. Blocking.
fn collect(
    tool: &str,
    shared: &Mutex<Option<Child>>,
    output: ToolOutput,
    input: Option<Box<dyn Read + Send>>,
) -> Result<(), ToolError> {
    let lock = || shared.lock().unwrap_or_else(|e| e.into_inner());
    let (stdin, stdout, stderr) = {
        let mut guard = lock();
        let child = guard.as_mut().expect("the child is reaped only here");
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    };
    let feeder = match (input, stdin) {
        (Some(mut input), Some(mut stdin)) => Some(std::thread::spawn(move || {
            // A tool that stops reading (it failed) ends the copy; its exit status tells.
            let result = io::copy(&mut input, &mut stdin);
            drop(stdin);
            result
        })),
        _ => None,
    };
    let errors = stderr.map(|stderr| {
        std::thread::spawn(move || {
            let mut kept = Vec::new();
            let mut stderr = stderr;
            let _ = stderr.by_ref().take(STDERR_KEPT).read_to_end(&mut kept);
            // Drain the rest, so the tool never blocks on a full pipe.
            let _ = io::copy(&mut stderr, &mut io::sink());
            kept
        })
    });
    let copied = match (stdout, output) {
        (Some(mut stdout), ToolOutput::Into(mut file)) => {
            io::copy(&mut stdout, &mut file).and_then(|_| file.flush())
        }
        (Some(mut stdout), ToolOutput::Discard) => io::copy(&mut stdout, &mut io::sink()).map(drop),
        (None, _) => Ok(()),
    };
    if copied.is_err() {
        // Nowhere to put the output (a full disk): stop the tool rather than wait for it.
        if let Some(child) = lock().as_mut() {
            let _ = child.kill();
        }
    }
    let stderr = errors
        .and_then(|reader| reader.join().ok())
        .unwrap_or_default();
    let status = {
        let mut guard = lock();
        let status = guard.as_mut().map(Child::wait);
        *guard = None;
        status
    };
    let status = match status {
        Some(Ok(status)) => status,
        Some(Err(e)) => return Err(ToolError(format!("cannot run {tool}: {e}"))),
        None => return Err(ToolError(format!("{tool} was stopped"))),
    };
    if let Err(e) = copied {
        return Err(ToolError(format!("cannot write the output of {tool}: {e}")));
    }
    if let Some(feeder) = feeder
        && let Ok(Err(e)) = feeder.join()
        && status.success()
    {
        return Err(ToolError(format!("cannot feed {tool}: {e}")));
    }
    if !status.success() {
        let stderr = String::from_utf8_lossy(&stderr);
        let first = stderr
            .lines()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("no output");
        return Err(ToolError(format!(
            "{tool} failed ({status}): {}",
            mask_url(first.trim())
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::url::{DatabaseUrl, UrlError};
    use std::path::Path;

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

    #[test]
    fn a_host_list_is_kept_in_libpq_form() {
        let root = Path::new("/");
        let url = DatabaseUrl::parse(
            "postgres://u:secret@db1:5432,db2:6432,[::1]/app?target_session_attrs=read-write",
            root,
        )
        .unwrap();
        let DatabaseUrl::Postgres { url: inner } = &url else {
            panic!("{url}");
        };
        assert_eq!(
            hosts(inner),
            [
                ("db1".to_string(), 5432),
                ("db2".to_string(), 6432),
                ("::1".to_string(), 5432)
            ]
        );
        assert!(wants_read_write(inner));
        assert!(!url.to_string().contains("secret"), "{url}");
        let env = tool_env(inner).unwrap();
        assert!(
            env.contains(&("PGHOST", "db1,db2,::1".to_string())),
            "{env:?}"
        );
        assert!(env.contains(&("PGTARGETSESSIONATTRS", "read-write".to_string())));
        for bad in ["postgres://u@db1,/app", "postgres://u@db1:x,db2/app"] {
            assert!(
                matches!(DatabaseUrl::parse(bad, root), Err(UrlError::Malformed(_))),
                "{bad}"
            );
        }
    }
}
