//! The servers under load, as child processes: this project's `server` and the naive
//! `anchor`, both release builds beside the bench's own executable.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// A server process, killed when dropped.
pub struct ServerProcess {
    child: Child,
    /// The port it listens on, on 127.0.0.1.
    pub port: u16,
}

impl ServerProcess {
    /// Starts the release binary `name` in `dir` on a free port, with `DATABASE_URL` set
    /// to `url`, and waits until `/health` answers.
    pub async fn start(name: &str, dir: &Path, url: &str) -> Result<Self> {
        let binary = sibling(name)?;
        let port = free_port()?;
        let child = Command::new(&binary)
            .current_dir(dir)
            .env("ROCKET_PORT", port.to_string())
            .env("ROCKET_ADDRESS", "127.0.0.1")
            .env("ROCKET_LOG_LEVEL", "off")
            .env("ROCKET_CLI_COLORS", "false")
            .env("DATABASE_URL", url)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("cannot start {}", binary.display()))?;
        let mut server = Self { child, port };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = server.child.try_wait()? {
                bail!("{name} exited with {status} before it answered");
            }
            if crate::load::get(port, "/health").await == Some(200) {
                return Ok(server);
            }
            if Instant::now() > deadline {
                bail!("{name} did not answer /health within 30 s");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A binary built beside this one (`target/release/<name>`, or an example's
/// `target/release/examples/<name>`).
fn sibling(name: &str) -> Result<PathBuf> {
    let me = std::env::current_exe().context("cannot find the bench executable")?;
    let path = [
        me.with_file_name(name),
        me.with_file_name("examples").join(name),
    ]
    .into_iter()
    .find(|p| p.is_file())
    .unwrap_or_else(|| me.with_file_name(name));
    if !path.is_file() {
        bail!(
            "{} is missing: build it with `cargo build --release -p server -p bench --bins --example notes` (or run `cargo xtask bench`)",
            path.display()
        );
    }
    Ok(path)
}

fn free_port() -> Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("no free port")?;
    Ok(listener.local_addr()?.port())
}
