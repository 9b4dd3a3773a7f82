//! Helpers shared by every test in the workspace: a scratch PostgreSQL database per test,
//! a temporary project directory, the built binaries, and a minimal HTTP client.
//!
//! Nothing here mocks a database: tests talk to real SQLite files and the real PostgreSQL
//! server (`TEST_POSTGRES_URL`, default `postgres://postgres@127.0.0.1:5432/postgres`).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// Default server used when `TEST_POSTGRES_URL` is not set.
const DEFAULT_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// The admin URL of the test PostgreSQL server.
pub fn postgres_admin_url() -> String {
    std::env::var("TEST_POSTGRES_URL").unwrap_or_else(|_| DEFAULT_POSTGRES_URL.to_string())
}

/// A fresh PostgreSQL database, dropped when this value is dropped.
pub struct PgDatabase {
    /// URL of the new database.
    pub url: String,
    name: String,
}

impl PgDatabase {
    /// Creates a database, or returns `None` (saying so loudly) when PostgreSQL is not
    /// reachable outside CI. With `CI=true` an unreachable server fails the test.
    pub fn create() -> Option<Self> {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let admin = postgres_admin_url();
        if let Err(reason) = psql(&admin, "SELECT 1") {
            skip(&format!(
                "PostgreSQL not reachable at {admin} ({reason}); set TEST_POSTGRES_URL to run this test"
            ));
            return None;
        }
        let name = format!(
            "t_{}_{}_{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.subsec_nanos())
        );
        psql(&admin, &format!("CREATE DATABASE {name}")).expect("create test database");
        let url = match admin.rfind('/') {
            Some(i) if admin[..i].ends_with(|c: char| c != '/') => {
                format!("{}/{name}", &admin[..i])
            }
            _ => format!("{admin}/{name}"),
        };
        Some(Self { url, name })
    }

    /// The database's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs `sql` in the database and returns its output.
    pub fn execute(&self, sql: &str) -> String {
        psql(&self.url, sql).unwrap_or_else(|e| panic!("psql failed: {e}"))
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let _ = psql(
            &postgres_admin_url(),
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
        );
    }
}

/// The PostgreSQL server's own client binaries (`/usr/lib/postgresql/<version>/bin`).
///
/// Debian's `/usr/bin/psql` and friends are a wrapper that reads every cluster's
/// configuration, and fails while a test is creating its private cluster; tests and the
/// commands they run use the real binaries instead.
pub fn pg_bin_dir() -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|bin| bin.join("psql").is_file())
        .collect();
    dirs.sort();
    dirs.pop()
}

/// A command for a PostgreSQL client tool, the real binary when there is one.
pub fn pg_command(tool: &str) -> Command {
    Command::new(pg_bin_dir().map_or_else(|| PathBuf::from(tool), |dir| dir.join(tool)))
}

/// `PATH` with the real PostgreSQL client binaries first.
fn path_with_pg_tools() -> std::ffi::OsString {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs = pg_bin_dir().into_iter().chain(std::env::split_paths(&path));
    std::env::join_paths(dirs).unwrap_or(path)
}

/// Runs one SQL command with `psql`, returning its unaligned output.
pub fn psql(url: &str, sql: &str) -> Result<String, String> {
    let output = pg_command("psql")
        .args([
            "--no-psqlrc",
            "-v",
            "ON_ERROR_STOP=1",
            "-tA",
            "-d",
            url,
            "-c",
            sql,
        ])
        .env("PGCONNECT_TIMEOUT", "5")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run psql: {e}"))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).trim().to_string())
    }
}

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ sits in the workspace")
        .to_path_buf()
}

/// A binary of this workspace, built by `cargo test --workspace` (the `server` and
/// `xtask` packages have integration tests, so cargo builds their binaries first).
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>/deps");
    let path = dir.join(name);
    let built = std::fs::metadata(&path)
        .and_then(|m| m.modified())
        .unwrap_or_else(|_| {
            panic!(
                "{} is missing: run `cargo test --workspace`, which builds it",
                path.display()
            )
        });
    // What each binary is built from: its own sources, the shared library and the
    // embedded migrations (the server's `main.rs` is not part of xtask).
    let root = workspace_root();
    let sources: &[&str] = match name {
        "xtask" => &["xtask/src", "server/src", "server/build.rs", "migrations"],
        name if name.starts_with("examples/") => &[
            "server/src",
            "server/build.rs",
            "migrations",
            "server/examples",
        ],
        _ => &["server/src", "server/build.rs", "migrations"],
    };
    let newest_source = sources
        .iter()
        .filter_map(|source| {
            newest_mtime(&root.join(source), &root.join("server/src/main.rs"), name)
        })
        .max();
    assert!(
        newest_source.is_none_or(|source| source <= built),
        "{} is older than its sources: run `cargo test --workspace`, which rebuilds it",
        path.display()
    );
    path
}

/// The newest modification time of `path` (a file, or any file below a directory),
/// skipping the server's `main.rs` unless `binary` is the server.
fn newest_mtime(path: &Path, server_main: &Path, binary: &str) -> Option<std::time::SystemTime> {
    if path == server_main && binary != "server" {
        return None;
    }
    let meta = std::fs::metadata(path).ok()?;
    if !meta.is_dir() {
        return meta.modified().ok();
    }
    std::fs::read_dir(path)
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| newest_mtime(&e.path(), server_main, binary))
        .max()
}

/// The uid (and gid) of `nobody`, for processes run as another user.
pub const NOBODY: u32 = 65534;

/// Whether this test runs as root and so may run processes as [`NOBODY`]; when not, says
/// the test is skipped (`what` needs root), which fails it under CI.
pub fn as_root_or_skip(what: &str) -> bool {
    use std::os::unix::fs::MetadataExt as _;
    // `/proc/self` belongs to the effective user.
    let root = std::fs::metadata("/proc/self").is_ok_and(|meta| meta.uid() == 0);
    if !root {
        skip(&format!("needs root to {what}"));
    }
    root
}

/// A temporary project: `Rocket.toml`, a copy of `migrations/`, and nothing else.
pub struct Project {
    dir: tempfile::TempDir,
}

impl Project {
    /// A project whose database is `sqlite://app.db` (next to its `Rocket.toml`).
    pub fn sqlite() -> Self {
        Self::with_url("sqlite://app.db")
    }

    /// A project whose `Rocket.toml` points at `url`.
    pub fn with_url(url: &str) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(
            dir.path().join("Rocket.toml"),
            format!(
                "[default]\naddress = \"127.0.0.1\"\nport = 0\nlog_level = \"normal\"\n\n\
                 [default.databases.main]\nurl = \"{url}\"\nacquire_timeout_ms = 500\nbusy_timeout_ms = 2000\n\
                 disk_free_min_mb = 0\n\n\
                 [production.databases.main]\nurl = \"{url}\"\n"
            ),
        )
        .expect("write Rocket.toml");
        let migrations = dir.path().join("migrations");
        std::fs::create_dir(&migrations).expect("migrations dir");
        for entry in std::fs::read_dir(workspace_root().join("migrations")).expect("migrations/") {
            let entry = entry.expect("entry");
            // The declared schema describes the workspace's migrations, not a test's.
            if entry.file_name() == "schema.sql" {
                continue;
            }
            std::fs::copy(entry.path(), migrations.join(entry.file_name()))
                .expect("copy migration");
        }
        Self { dir }
    }

    /// The project directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The default SQLite database file.
    pub fn db_path(&self) -> PathBuf {
        self.path().join("app.db")
    }

    /// Writes `V2__events` (an `events (seq, payload)` table) and its down script.
    pub fn write_events_migration(&self) {
        self.write_migration(
            "V2__events",
            "CREATE TABLE events (seq INTEGER PRIMARY KEY, payload TEXT NOT NULL);",
            Some("DROP TABLE events;"),
        );
    }

    /// Writes a migration pair into `migrations/`.
    pub fn write_migration(&self, id: &str, up: &str, down: Option<&str>) {
        let dir = self.path().join("migrations");
        std::fs::write(dir.join(format!("{id}.sql")), up).expect("write up script");
        if let Some(down) = down {
            std::fs::write(dir.join(format!("{id}.down.sql")), down).expect("write down script");
        }
    }

    /// A command for a workspace binary, run in this project with a clean environment.
    pub fn command(&self, binary_name: &str) -> Command {
        let mut command = Command::new(binary(binary_name));
        command
            .current_dir(self.path())
            .stdin(Stdio::null())
            .env("PATH", path_with_pg_tools());
        for (key, _) in std::env::vars_os() {
            let name = key.to_string_lossy();
            if name.starts_with("ROCKET_") || name.starts_with("DATABASE_") {
                command.env_remove(key);
            }
        }
        command
    }

    /// Starts `xtask <args>` in this project without waiting (output discarded), e.g. to kill it.
    pub fn spawn_xtask(&self, args: &[&str]) -> Child {
        self.command("xtask")
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn xtask")
    }

    /// Runs `xtask <args>` in this project.
    pub fn xtask(&self, args: &[&str]) -> Run {
        self.xtask_with(args, &[])
    }

    /// Runs `xtask <args>` in this project with extra environment variables.
    pub fn xtask_with(&self, args: &[&str], env: &[(&str, &str)]) -> Run {
        let output = self
            .command("xtask")
            .args(args)
            .envs(env.iter().copied())
            .output()
            .expect("run xtask");
        Run::from(output)
    }
}

/// The outcome of running a command.
#[derive(Debug)]
pub struct Run {
    /// Exit code (-1 when killed by a signal).
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(output: Output) -> Self {
        Self {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }
}

impl Run {
    /// Asserts a zero exit and returns stdout.
    pub fn ok(&self) -> &str {
        assert_eq!(
            self.code, 0,
            "expected success\nstdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        &self.stdout
    }

    /// Asserts a given exit code.
    pub fn code(&self, code: i32) -> &Self {
        assert_eq!(
            self.code, code,
            "unexpected exit code\nstdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }

    /// The one `error:` line on stderr.
    pub fn error_line(&self) -> &str {
        assert_ne!(self.code, 0, "expected failure\nstdout:\n{}", self.stdout);
        let lines: Vec<&str> = self
            .stderr
            .lines()
            .filter(|l| l.starts_with("error:"))
            .collect();
        assert_eq!(
            lines.len(),
            1,
            "expected one error line, got:\n{}",
            self.stderr
        );
        assert!(!self.stderr.contains("panicked"), "panic:\n{}", self.stderr);
        lines[0]
    }
}

/// The newest backup in `dir` whose name ends with `suffix` (`.db`, `.db.gz`): backup
/// names start with the database's name and the time, so the last by name is the newest.
pub fn newest_backup(dir: &Path, suffix: &str) -> PathBuf {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.to_string_lossy().ends_with(suffix))
        .collect();
    files.sort();
    files.pop().expect("a backup")
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind an ephemeral port")
        .port()
}

impl Project {
    /// Runs the server with `env` (`RUST_BACKTRACE=1`) and waits at most 20 s for it to
    /// exit; `None` (after killing it) when it kept running.
    pub fn server_until_exit<V: AsRef<std::ffi::OsStr>>(&self, env: &[(&str, V)]) -> Option<Run> {
        let mut command = self.command("server");
        command
            .env("RUST_BACKTRACE", "1")
            .env("ROCKET_PORT", free_port().to_string())
            .envs(env.iter().map(|(k, v)| (k, v)));
        run_with_deadline(command, Duration::from_secs(20))
    }
}

/// Runs `command` to its end, capturing its output, for at most `limit`; `None` (after
/// killing it) when it is still running then: a hang fails a test instead of stalling it.
pub fn run_with_deadline(mut command: Command, limit: Duration) -> Option<Run> {
    let out = tempfile::NamedTempFile::new().expect("stdout file");
    let err = tempfile::NamedTempFile::new().expect("stderr file");
    let mut child = command
        .stdin(Stdio::null())
        .stdout(out.reopen().expect("stdout file"))
        .stderr(err.reopen().expect("stderr file"))
        .spawn()
        .expect("spawn");
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().expect("poll child") {
            break status;
        }
        if Instant::now() > deadline {
            child.kill().ok();
            child.wait().ok();
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Some(Run {
        code: status.code().unwrap_or(-1),
        stdout: std::fs::read_to_string(out.path()).unwrap_or_default(),
        stderr: std::fs::read_to_string(err.path()).unwrap_or_default(),
    })
}

/// A running `server` process, killed when dropped.
pub struct Server {
    child: Child,
    /// Its port on 127.0.0.1.
    pub port: u16,
    log: tempfile::NamedTempFile,
}

impl Server {
    /// Starts the server in `project` with extra env vars and waits (at most 30 s) until `/health` answers.
    pub fn start(project: &Project, env: &[(&str, &str)]) -> Self {
        Self::start_with(project.command("server"), env)
    }

    /// Starts `command` (the server, e.g. with another user id) like [`Server::start`].
    pub fn start_with(mut command: Command, env: &[(&str, &str)]) -> Self {
        let port = free_port();
        let log = tempfile::NamedTempFile::new().expect("log file");
        // Both streams append to one file: two plain handles would each write from
        // offset 0 over the other's lines.
        let append = || {
            std::fs::OpenOptions::new()
                .append(true)
                .open(log.path())
                .expect("log file")
        };
        let child = command
            .env("ROCKET_PORT", port.to_string())
            .envs(env.iter().copied())
            .stdout(append())
            .stderr(append())
            .spawn()
            .expect("spawn server");
        let mut server = Self { child, port, log };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = server.child.try_wait().expect("poll server") {
                panic!("server exited with {status}:\n{}", server.output());
            }
            if get(port, "/health").is_ok_and(|r| r.status == 200) {
                return server;
            }
            assert!(
                Instant::now() < deadline,
                "server did not answer /health within 30 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `POST path` with a JSON `body` on this server.
    pub fn post_json(&self, path: &str, body: &str) -> Response {
        let raw = format!(
            "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        request(self.port, raw.as_bytes()).unwrap_or_else(|e| panic!("POST {path}: {e}"))
    }

    /// `GET path` on this server.
    pub fn get(&self, path: &str) -> Response {
        get(self.port, path).unwrap_or_else(|e| panic!("GET {path}: {e}"))
    }

    /// Everything the server printed so far (stdout and stderr).
    pub fn output(&self) -> String {
        std::fs::read_to_string(self.log.path()).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An HTTP response.
#[derive(Debug)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Header lines, lowercased names.
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: String,
}

impl Response {
    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    /// A header value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A minimal HTTP/1.1 GET with a 10-second bound.
pub fn get(port: u16, path: &str) -> std::io::Result<Response> {
    request(
        port,
        format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").as_bytes(),
    )
}

/// Sends `raw` bytes as a request and reads the response, with a 10-second bound.
pub fn request(port: u16, raw: &[u8]) -> std::io::Result<Response> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    // The server may answer and close before reading everything (e.g. a huge header).
    let _ = stream.write_all(raw);
    let mut bytes = Vec::new();
    let _ = stream.read_to_end(&mut bytes);
    let raw = String::from_utf8_lossy(&bytes);
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad response: {raw}")))?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Ok(Response {
        status,
        headers,
        body: body.to_string(),
    })
}

/// Runs `sql` on the SQLite file at `path` (one statement or a script) and returns each
/// row as its columns joined by `|`.
pub fn sqlite(path: &Path, sql: &str) -> Vec<String> {
    use sqlx::{ConnectOptions, Connection, Row, ValueRef};
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let mut conn = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(path)
            .busy_timeout(Duration::from_secs(10))
            .connect()
            .await
            .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
        let rows = sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_string()))
            .fetch_all(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        let values: Vec<String> = rows
            .iter()
            .map(|row| {
                (0..row.columns().len())
                    .map(|i| {
                        let raw = row.try_get_raw(i).expect("column");
                        if raw.is_null() {
                            "NULL".to_string()
                        } else if let Ok(v) = row.try_get::<i64, _>(i) {
                            v.to_string()
                        } else {
                            row.try_get::<String, _>(i).unwrap_or_default()
                        }
                    })
                    .collect::<Vec<_>>()
                    .join("|")
            })
            .collect();
        drop(rows);
        // Closed (and, as the last connection, checkpointed) before returning, so the
        // file on disk holds what was just written.
        conn.close()
            .await
            .unwrap_or_else(|e| panic!("close {}: {e}", path.display()));
        values
    })
}

/// Hex sha256 of a file's contents.
pub fn sha256(path: &Path) -> String {
    use sha2::Digest;
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    sha2::Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Whether this run must not skip anything (`CI=true`).
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// Reports a test as skipped: loudly outside CI; under `CI=true` a skip is a failure.
///
/// Written to the process's stderr directly, past the test harness's output capture, so
/// the line shows in the run's output next to the test's `ok` instead of vanishing.
pub fn skip(reason: &str) {
    assert!(!in_ci(), "cannot skip under CI=true: {reason}");
    let test = std::thread::current()
        .name()
        .unwrap_or("a test")
        .to_string();
    let _ = writeln!(std::io::stderr().lock(), "SKIPPED: {test}: {reason}");
}

/// A small tmpfs mounted on a temporary directory (a disk that fills up), unmounted on drop.
pub struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (e.g. `"4m"`); `None` (reported as skipped) without permission.
    pub fn mount(size: &str) -> Option<Self> {
        let dir = tempfile::tempdir().expect("temp dir");
        let output = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0755"),
                "tmpfs",
            ])
            .arg(dir.path())
            .stdin(Stdio::null())
            .output();
        match output {
            Ok(o) if o.status.success() => Some(Self { dir }),
            Ok(o) => {
                skip(&format!(
                    "cannot mount a tmpfs (needs root): {}",
                    String::from_utf8_lossy(&o.stderr).trim()
                ));
                None
            }
            Err(e) => {
                skip(&format!("cannot run mount: {e}"));
                None
            }
        }
    }

    /// The mount point.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("--lazy")
            .arg(self.dir.path())
            .status();
    }
}

/// Fills the file system of `dir` until fewer than `leave` bytes are free.
pub fn fill_disk(dir: &Path, leave: u64) {
    let filler = dir.join("filler");
    let mut file = std::fs::File::create(&filler).expect("create filler");
    let chunk = vec![0xA5u8; 64 * 1024];
    loop {
        let free = free_bytes(dir);
        if free <= leave {
            break;
        }
        let n = usize::try_from((free - leave).min(chunk.len() as u64)).expect("small");
        if file.write_all(&chunk[..n]).is_err() {
            break;
        }
    }
    let _ = file.sync_all();
}

/// Free bytes on the file system of `dir` (`df`).
pub fn free_bytes(dir: &Path) -> u64 {
    let output = Command::new("df")
        .args(["--output=avail", "-B1"])
        .arg(dir)
        .output()
        .expect("run df");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .nth(1)
        .and_then(|l| l.trim().parse().ok())
        .expect("df output")
}

/// A pseudo-random number in `0..bound`, different for each call.
pub fn random_below(bound: u64) -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64),
    );
    hasher.finish() % bound.max(1)
}

/// Hidden files in `dir` other than the directory lock: debris of killed commands.
pub fn debris(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().to_string())
                .filter(|n| n.starts_with('.') && n != ".lock" && !n.ends_with(".in-use"))
                .collect()
        })
        .unwrap_or_default()
}

/// A private PostgreSQL cluster on its own port whose TCP connections check passwords
/// (scram-sha-256); local socket connections are trusted for setup. Dropped with the value.
pub struct PgCluster {
    version: String,
    name: String,
    /// Its TCP port on 127.0.0.1.
    pub port: u16,
}

impl PgCluster {
    /// Creates and starts the cluster; `None` (reported as skipped) where `pg_createcluster`
    /// is not available outside CI.
    pub fn create() -> Option<Self> {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let version = std::fs::read_dir("/etc/postgresql")
            .ok()
            .and_then(|mut entries| entries.next())
            .and_then(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().to_string());
        let Some(version) = version else {
            skip("no PostgreSQL server installation (/etc/postgresql) to create a private cluster");
            return None;
        };
        let name = format!(
            "test_{}_{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        );
        let port = free_port();
        let output = Command::new("pg_createcluster")
            .args([&version, &name, "-p", &port.to_string(), "--start"])
            .args(["--", "--auth-host=scram-sha-256", "--auth-local=trust"])
            .stdin(Stdio::null())
            .output();
        match output {
            Ok(o) if o.status.success() => Some(Self {
                version,
                name,
                port,
            }),
            Ok(o) => {
                skip(&format!(
                    "pg_createcluster failed: {}",
                    String::from_utf8_lossy(&o.stderr).trim()
                ));
                None
            }
            Err(e) => {
                skip(&format!("cannot run pg_createcluster: {e}"));
                None
            }
        }
    }

    /// Runs SQL as the superuser over the local socket (trusted).
    pub fn admin(&self, sql: &str) -> String {
        let url = format!(
            "host=/var/run/postgresql port={} user=postgres dbname=postgres",
            self.port
        );
        psql(&url, sql).unwrap_or_else(|e| panic!("psql failed: {e}"))
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let _ = Command::new("pg_dropcluster")
            .args(["--stop", &self.version, &self.name])
            .stdin(Stdio::null())
            .output();
    }
}

/// A directory of wrappers for the PostgreSQL client tools that log each call's arguments
/// to `calls.log` inside it, then run the real tool: put it first on `PATH`.
pub fn logging_pg_tools() -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("temp dir");
    let log = dir.path().join("calls.log");
    for tool in ["pg_dump", "pg_restore", "psql"] {
        let real = which(tool).unwrap_or_else(|| panic!("{tool} is not on PATH"));
        let script = dir.path().join(tool);
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\necho \"{tool} $*\" >> '{}'\nexec '{}' \"$@\"\n",
                log.display(),
                real.display()
            ),
        )
        .expect("write wrapper");
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755))
            .expect("chmod wrapper");
    }
    dir
}

/// A directory holding only links to the given tools: a `PATH` where others are missing.
pub fn path_with_only(tools: &[&str]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    for tool in tools {
        let real = which(tool).unwrap_or_else(|| panic!("{tool} is not on PATH"));
        std::os::unix::fs::symlink(real, dir.path().join(tool)).expect("link tool");
    }
    dir
}

/// The first `tool` on `PATH`, the real PostgreSQL client binaries first.
pub fn which(tool: &str) -> Option<PathBuf> {
    std::env::split_paths(&path_with_pg_tools())
        .map(|dir| dir.join(tool))
        .find(|path| path.is_file())
}

/// A reader that holds a read transaction (an old snapshot) on a SQLite database, so that
/// commits after it stay in the `-wal`; `close` ends it.
pub struct SnapshotHolder {
    runtime: tokio::runtime::Runtime,
    conn: sqlx::SqliteConnection,
}

impl SnapshotHolder {
    /// Opens `db` and reads `table` inside a transaction that stays open.
    pub fn open(db: &Path, table: &str) -> Self {
        Self::holding(db, &format!("BEGIN; SELECT count(*) FROM {table};"))
    }

    /// Opens `db` and takes an exclusive lock on it, as `sqlite3` with
    /// `PRAGMA locking_mode = EXCLUSIVE` does: no other connection can even read.
    pub fn exclusive(db: &Path) -> Self {
        Self::holding(
            db,
            "PRAGMA locking_mode = EXCLUSIVE; BEGIN EXCLUSIVE; SELECT count(*) FROM sqlite_master;",
        )
    }

    fn holding(db: &Path, sql: &str) -> Self {
        use sqlx::ConnectOptions;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let mut conn = runtime
            .block_on(
                sqlx::sqlite::SqliteConnectOptions::new()
                    .filename(db)
                    .connect(),
            )
            .unwrap_or_else(|e| panic!("open {}: {e}", db.display()));
        runtime
            .block_on(sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_string())).execute(&mut conn))
            .expect("hold a snapshot");
        Self { runtime, conn }
    }

    /// Ends the transaction and closes the connection.
    pub fn close(self) {
        use sqlx::Connection;
        let Self { runtime, conn } = self;
        runtime
            .block_on(conn.close())
            .expect("close the snapshot holder");
    }
}

/// Another session holding a lock on `table` of the PostgreSQL database at `url` for
/// `seconds`, started and given half a second to take the lock; wait on it to end.
pub fn hold_pg_lock(url: &str, table: &str, seconds: u32) -> Child {
    let child = pg_command("psql")
        .args(["--no-psqlrc", "-d", url, "-c"])
        .arg(format!(
            "BEGIN; LOCK TABLE {table} IN ACCESS SHARE MODE; SELECT pg_sleep({seconds}); COMMIT;"
        ))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn psql");
    std::thread::sleep(Duration::from_millis(500));
    child
}
