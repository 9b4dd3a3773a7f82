//! `--help` text: every command and flag is documented.

use std::process::Command;

fn help(args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(args)
        .arg("--help")
        .output()
        .expect("run xtask");
    assert!(output.status.success());
    String::from_utf8(output.stdout).expect("utf-8")
}

#[test]
fn every_command_has_help() {
    let top = help(&[]);
    for command in [
        "db-init",
        "db-status",
        "db-migrate",
        "db-upgrade",
        "db-downgrade",
        "db-reset",
        "db-backup",
        "db-backups",
        "db-restore",
        "db-check",
        "db-resolve",
        "db-baseline",
    ] {
        assert!(top.contains(command), "{command} missing from --help");
        assert!(help(&[command]).contains("Usage: cargo xtask"), "{command}");
    }
    let downgrade = help(&["db-downgrade"]);
    for flag in [
        "--steps",
        "--to",
        "--dry-run",
        "--yes",
        "--force",
        "--no-backup",
    ] {
        assert!(downgrade.contains(flag), "db-downgrade --help lacks {flag}");
    }
    assert!(help(&["db-status"]).contains("3 database ahead"));
}
