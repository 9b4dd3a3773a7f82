//! Embeds every `.sql` file of the workspace's `migrations/` directory into the library:
//! writes `$OUT_DIR/migrations.rs`, a `&[(file name, contents)]` sorted by file name.
//!
//! Paths are read from the environment when the script runs, the inputs are declared
//! relative to this package, and the generated file holds the contents themselves, so a
//! target directory shared by several checkouts (git worktrees, a global
//! `CARGO_TARGET_DIR`) never ties this build to another checkout's files.

use std::path::PathBuf;

fn main() {
    // Cargo resolves a relative path against the package root (`server/`).
    println!("cargo:rerun-if-changed=../migrations");
    let dir = env_path("CARGO_MANIFEST_DIR").join("../migrations");
    let mut files: Vec<(String, PathBuf)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|entry| {
            let entry = entry.unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()));
            (
                entry.file_name().to_string_lossy().into_owned(),
                entry.path(),
            )
        })
        .filter(|(_, path)| path.extension().is_some_and(|ext| ext == "sql"))
        .collect();
    files.sort();
    let entries: String = files
        .iter()
        .map(|(name, path)| {
            let contents = std::fs::read_to_string(path)
                .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
            // `Debug` of a `str` is a valid Rust string literal with the same contents.
            format!("    ({name:?}, {contents:?}),\n")
        })
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
