//! `bench`: builds the release binaries, then runs the `bench` crate's runner, which
//! measures every scenario and writes the report.

use std::process::ExitCode;

use anyhow::Context as _;
use xshell::{Shell, cmd};

use crate::flags::Bench;

impl Bench {
    /// Runs the command from the workspace root.
    pub fn run(self) -> anyhow::Result<ExitCode> {
        let sh = Shell::new().context("cannot start a shell")?;
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let manifest = cmd!(
            sh,
            "{cargo} locate-project --workspace --message-format plain"
        )
        .quiet()
        .read()
        .context("cannot find the workspace")?;
        let root = std::path::Path::new(&manifest)
            .parent()
            .context("cannot find the workspace")?
            .to_path_buf();
        sh.change_dir(&root);
        cmd!(
            sh,
            "{cargo} build --release -p server -p bench --bins --example notes"
        )
        .run()
        .context("cannot build the release binaries")?;
        let mut args = Vec::new();
        if self.quick {
            args.push("--quick".to_string());
        }
        if let Some(out) = self.out {
            args.push("--out".into());
            args.push(out.display().to_string());
        }
        if let Some(mib) = self.backup_mib {
            args.push("--backup-mib".into());
            args.push(mib.to_string());
        }
        cmd!(
            sh,
            "{cargo} run --release --quiet -p bench --bin bench -- {args...}"
        )
        .quiet()
        .run()
        .context("the benchmark failed")?;
        Ok(ExitCode::SUCCESS)
    }
}
