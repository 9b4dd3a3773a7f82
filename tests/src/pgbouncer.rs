//! A real PgBouncer in front of the test PostgreSQL server, on a loopback port, with its
//! default configuration but for the pool mode: what a fleet puts between its servers
//! and the database.

use std::os::unix::process::CommandExt as _;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::{NOBODY, as_root_or_skip, free_port, poll_until, postgres_admin_url, skip};

/// A running PgBouncer, stopped (and its files removed) when dropped.
pub struct PgBouncer {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl PgBouncer {
    /// Starts PgBouncer in `pool_mode` (`session` or `transaction`) in front of the test
    /// server, as `nobody` (PgBouncer refuses to run as root); `None` (said loudly, a
    /// failure under CI) when it is not installed or the test does not run as root.
    pub fn start(pool_mode: &str) -> Option<Self> {
        Self::start_with_pool(pool_mode, None)
    }

    /// [`PgBouncer::start`] with at most `server_sessions` server sessions per database
    /// (`default_pool_size`; PgBouncer's default is 20), so that clients share them.
    pub fn start_with_pool(pool_mode: &str, server_sessions: Option<u32>) -> Option<Self> {
        let Some(binary) = ["/usr/sbin/pgbouncer", "/usr/bin/pgbouncer"]
            .into_iter()
            .map(PathBuf::from)
            .find(|p| p.is_file())
        else {
            skip("pgbouncer is not installed (apt-get install pgbouncer)");
            return None;
        };
        if !as_root_or_skip("run PgBouncer as another user") {
            return None;
        }
        let admin = url::Url::parse(&postgres_admin_url()).expect("TEST_POSTGRES_URL");
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::set_permissions(
            dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o777),
        )
        .expect("chmod");
        let port = free_port();
        let path = |name: &str| dir.path().join(name).display().to_string();
        std::fs::write(
            path("userlist.txt"),
            format!("\"{}\" \"\"\n", admin.username()),
        )
        .expect("write userlist");
        std::fs::write(
            path("pgbouncer.ini"),
            format!(
                "[databases]\n* = host={} port={}\n\n[pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = {port}\n\
                 unix_socket_dir =\nauth_type = trust\nauth_file = {}\npool_mode = {pool_mode}\n\
                 logfile = {}\npidfile = {}\n{}",
                admin.host_str().unwrap_or("127.0.0.1"),
                admin.port().unwrap_or(5432),
                path("userlist.txt"),
                path("pgbouncer.log"),
                path("pgbouncer.pid"),
                server_sessions.map_or_else(String::new, |n| format!("default_pool_size = {n}\n")),
            ),
        )
        .expect("write pgbouncer.ini");
        let child = Command::new(binary)
            .arg(path("pgbouncer.ini"))
            .uid(NOBODY)
            .gid(NOBODY)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn pgbouncer");
        let mut bouncer = Self { child, port, dir };
        let up = poll_until(Duration::from_secs(10), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        assert!(up, "pgbouncer did not listen: {}", bouncer.log());
        assert!(
            bouncer.child.try_wait().expect("poll pgbouncer").is_none(),
            "pgbouncer exited: {}",
            bouncer.log()
        );
        Some(bouncer)
    }

    /// The URL of `database_url`'s database through this PgBouncer.
    pub fn url(&self, database_url: &str) -> String {
        let mut url = url::Url::parse(database_url).expect("a database URL");
        url.set_port(Some(self.port)).expect("a port");
        url.to_string()
    }

    /// PgBouncer's log, for a failing assertion.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("pgbouncer.log")).unwrap_or_default()
    }
}

impl Drop for PgBouncer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
