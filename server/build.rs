//! Embeds every `.sql` file of the workspace's `migrations/` directory into the library:
//! writes `$OUT_DIR/migrations.rs`, a `&[(file name, contents)]` sorted by file name.
//! A malformed set (the rules of `src/migrations/naming.rs`, which the server and xtask
//! apply too) fails the build, naming each offending file.
//!
//! Paths are read from the environment when the script runs, the inputs are declared
//! relative to this package, and the generated file holds the contents themselves, so a
//! target directory shared by several checkouts (git worktrees, a global
//! `CARGO_TARGET_DIR`) never ties this build to another checkout's files.

use std::path::PathBuf;

#[path = "src/migrations/naming.rs"]
#[allow(dead_code, missing_docs)]
mod naming;

fn main() {
    // Cargo resolves a relative path against the package root (`server/`).
    println!("cargo:rerun-if-changed=../migrations");
    let dir = env_path("CARGO_MANIFEST_DIR").join("../migrations");
    let mut all: Vec<(String, PathBuf)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|entry| {
            let entry = entry.unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()));
            (
                entry.file_name().to_string_lossy().into_owned(),
                entry.path(),
            )
        })
        .collect();
    all.sort();
    // The same rules the server and xtask apply: a malformed set fails the build.
    let named: Vec<(String, String)> = all
        .iter()
        .map(|(name, path)| {
            let contents = if name.to_ascii_lowercase().ends_with(".sql") {
                // A FIFO would block the build; a directory cannot be read.
                if !path.is_file() {
                    panic!("{} is not a regular file", path.display());
                }
                std::fs::read_to_string(path)
                    .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
            } else {
                String::new()
            };
            (name.clone(), contents)
        })
        .collect();
    let (_, findings) = naming::check_set(&named);
    if !findings.errors.is_empty() {
        panic!(
            "the migrations in {} are not valid:\n  {}",
            dir.display(),
            findings.errors.join("\n  ")
        );
    }
    let entries: String = named
        .iter()
        .filter(|(name, _)| name.ends_with(".sql"))
        // `Debug` of a `str` is a valid Rust string literal with the same contents.
        .map(|(name, contents)| format!("    ({name:?}, {contents:?}),\n"))
        .collect();
    let target = env_path("OUT_DIR").join("migrations.rs");
    std::fs::write(&target, format!("&[\n{entries}]"))
        .unwrap_or_else(|e| panic!("cannot write {}: {e}", target.display()));
}

/// A path that cargo passes to build scripts in the environment variable `name`.
fn env_path(name: &str) -> PathBuf {
    std::env::var_os(name).map_or_else(
        || panic!("{name} is not set: run this build script through cargo"),
        PathBuf::from,
    )
}
