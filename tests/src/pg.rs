//! The real PostgreSQL server: a scratch database per test, `psql`, a private cluster
//! that checks passwords, the real client binaries and `PATH`s made of them, and a
//! session that holds a lock.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use crate::{free_port, poll_until, skip};

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
pub(crate) fn path_with_pg_tools() -> std::ffi::OsString {
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

    /// A streaming replica of this cluster (`pg_basebackup -R` over the local socket) on
    /// its own port, started; dropped with the value. `None` (reported as skipped) when
    /// it cannot be made outside CI.
    pub fn replica(&self) -> Option<Self> {
        let name = format!("{}_standby", self.name);
        let port = free_port();
        let created = Command::new("pg_createcluster")
            .args([&self.version, &name, "-p", &port.to_string()])
            .args(["--", "--auth-host=scram-sha-256", "--auth-local=trust"])
            .stdin(Stdio::null())
            .output()
            .ok()?;
        if !created.status.success() {
            skip(&format!(
                "pg_createcluster failed: {}",
                String::from_utf8_lossy(&created.stderr).trim()
            ));
            return None;
        }
        let replica = Self {
            version: self.version.clone(),
            name,
            port,
        };
        let data = format!("/var/lib/postgresql/{}/{}", replica.version, replica.name);
        // Emptied, kept (pg_basebackup fills an empty directory that the server owns).
        for entry in std::fs::read_dir(&data).expect("the replica's data directory") {
            let path = entry.expect("entry").path();
            let removed = match path.is_dir() {
                true => std::fs::remove_dir_all(&path),
                false => std::fs::remove_file(&path),
            };
            removed.expect("empty the replica's data directory");
        }
        let basebackup = pg_bin_dir()
            .map(|dir| dir.join("pg_basebackup"))
            .unwrap_or_else(|| "pg_basebackup".into());
        let copied = Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(basebackup)
            .args(["-h", "/var/run/postgresql", "-p", &self.port.to_string()])
            .args(["-D", &data, "-R", "-X", "stream", "--checkpoint=fast"])
            .stdin(Stdio::null())
            .output()
            .expect("run pg_basebackup");
        assert!(
            copied.status.success(),
            "pg_basebackup: {}",
            String::from_utf8_lossy(&copied.stderr)
        );
        replica.ctl(&["start"]);
        Some(replica)
    }

    /// Runs `pg_ctlcluster <version> <name> <args>` (e.g. `stop -m immediate`, `promote`).
    pub fn ctl(&self, args: &[&str]) {
        let output = Command::new("pg_ctlcluster")
            .args([&self.version, &self.name])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run pg_ctlcluster");
        assert!(
            output.status.success(),
            "pg_ctlcluster {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
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

/// Another session holding an `ACCESS SHARE` lock on `table` of the PostgreSQL database
/// at `url` for `seconds` (DDL waits behind it), returned once PostgreSQL shows the lock
/// granted (at most 10 s); wait on it to end.
pub fn hold_pg_lock(url: &str, table: &str, seconds: u32) -> Child {
    hold_pg_lock_in(url, table, "AccessShareLock", seconds)
}

/// [`hold_pg_lock`] in `mode`, as `pg_locks` names it (`AccessExclusiveLock`: writes and
/// reads wait behind it too).
pub fn hold_pg_lock_in(url: &str, table: &str, mode: &str, seconds: u32) -> Child {
    // `AccessShareLock` → `ACCESS SHARE`.
    let words: String = mode
        .trim_end_matches("Lock")
        .chars()
        .flat_map(|c| {
            let space = c.is_uppercase().then_some(' ');
            space.into_iter().chain(c.to_uppercase())
        })
        .collect();
    let mut child = pg_command("psql")
        .args(["--no-psqlrc", "-d", url, "-c"])
        .arg(format!(
            "BEGIN; LOCK TABLE {table} IN {} MODE; SELECT pg_sleep({seconds}); COMMIT;",
            words.trim()
        ))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn psql");
    let granted = format!(
        "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation \
         WHERE c.relname = '{table}' AND l.mode = '{mode}' AND l.granted \
         AND l.pid <> pg_backend_pid()"
    );
    let taken = poll_until(Duration::from_secs(10), || {
        assert!(
            child.try_wait().expect("poll psql").is_none(),
            "psql ended before it took the lock on {table}"
        );
        psql(url, &granted).is_ok_and(|n| n != "0")
    });
    assert!(taken, "psql did not take the lock on {table} within 10 s");
    child
}
