//! `server/build.rs` embeds the migrations of the checkout being built, even when several
//! checkouts (git worktrees, a global `CARGO_TARGET_DIR`) share one target directory.
//!
//! Each checkout here is a tiny workspace laid out like this one: a `server` package with
//! a byte-for-byte copy of the real build script and a `main.rs` that prints what it
//! embedded (building the real server would be slow and prove nothing more).
//!
//! Cargo itself reuses a sibling checkout's artifacts when this checkout's files are all
//! older than the last build (rust-lang/cargo#17312), so each build of an unchanged
//! checkout first touches its migrations, the workaround README.md gives.

use std::fs::File;
use std::io::{Read, Seek};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use tests::workspace_root;

/// One checkout of the tiny workspace.
struct Checkout {
    root: PathBuf,
}

impl Checkout {
    /// Creates a checkout at `root` whose only migration `V1__x.sql` holds `v1`.
    fn create(root: PathBuf, v1: &str) -> Self {
        std::fs::create_dir_all(root.join("server/src/migrations")).expect("create server/src");
        std::fs::create_dir_all(root.join("migrations")).expect("create migrations/");
        // The build script and the rules it checks the set with, byte for byte.
        for file in ["server/build.rs", "server/src/migrations/naming.rs"] {
            let source = workspace_root().join(file);
            std::fs::copy(&source, root.join(file))
                .unwrap_or_else(|e| panic!("cannot copy {}: {e}", source.display()));
        }
        for (path, contents) in [
            (
                "Cargo.toml",
                "[workspace]\nresolver = \"3\"\nmembers = [\"server\"]\n",
            ),
            (
                "server/Cargo.toml",
                "[package]\nname = \"server\"\nversion = \"0.1.0\"\nedition = \"2024\"\n\
                 build = \"build.rs\"\n",
            ),
            (
                "server/src/main.rs",
                "const FILES: &[(&str, &str)] = include!(concat!(env!(\"OUT_DIR\"), \"/migrations.rs\"));\n\
                 fn main() {\n    for (name, contents) in FILES {\n        println!(\"{name}={contents}\");\n    }\n}\n",
            ),
            ("migrations/V1__x.sql", v1),
        ] {
            std::fs::write(root.join(path), contents).unwrap_or_else(|e| panic!("{path}: {e}"));
        }
        Self { root }
    }

    /// Writes a migration, as an edit in this checkout would.
    fn write_migration(&self, name: &str, contents: &str, target: &SharedTarget) {
        let path = self.root.join("migrations").join(name);
        std::fs::write(&path, contents).expect("write migration");
        target.touch(&path);
    }

    /// Marks every migration as changed since the last build, without changing it.
    fn touch_migrations(&self, target: &SharedTarget) {
        for entry in std::fs::read_dir(self.root.join("migrations")).expect("migrations/") {
            target.touch(&entry.expect("migration entry").path());
        }
    }
}

/// The target directory every checkout builds into.
struct SharedTarget {
    dir: PathBuf,
    /// When the last build finished.
    built_at: SystemTime,
}

impl SharedTarget {
    /// Builds `checkout` into this target directory, runs its `server` binary and
    /// returns the `name=contents` lines it prints, one per embedded migration.
    fn build_and_run(&mut self, checkout: &Checkout) -> Vec<String> {
        run(self.build(checkout), Duration::from_secs(300));
        self.built_at = SystemTime::now();
        let binary = self
            .dir
            .join("debug")
            .join(format!("server{}", std::env::consts::EXE_SUFFIX));
        run(Command::new(binary), Duration::from_secs(10))
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// The `cargo build` of `checkout` into this target directory.
    fn build(&self, checkout: &Checkout) -> Command {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut build = Command::new(cargo);
        // Nothing of the outer `cargo test` (its package, its target dir) may leak in.
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("CARGO_") && key != "CARGO_HOME" {
                build.env_remove(key);
            }
        }
        build
            .args(["build", "--offline", "--quiet"])
            .env("CARGO_TARGET_DIR", &self.dir)
            .current_dir(&checkout.root);
        build
    }

    /// Sets the modification time of `path` to now, and to after the last build
    /// even on a file system with coarse timestamps.
    fn touch(&self, path: &Path) {
        let file = File::options()
            .write(true)
            .open(path)
            .unwrap_or_else(|e| panic!("cannot open {}: {e}", path.display()));
        loop {
            file.set_modified(SystemTime::now()).expect("set mtime");
            if file.metadata().and_then(|m| m.modified()).expect("mtime") > self.built_at {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Runs `command` (killed after `limit`) and returns its stdout; panics unless it succeeds.
fn run(command: Command, limit: Duration) -> String {
    let (status, stdout, stderr) = run_to_end(command, limit);
    assert!(
        status.success(),
        "the command failed with {status}\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    stdout
}

/// Runs `command` (killed after `limit`): its exit status, stdout and stderr.
fn run_to_end(mut command: Command, limit: Duration) -> (std::process::ExitStatus, String, String) {
    let stdout = tempfile::tempfile().expect("stdout file");
    let stderr = tempfile::tempfile().expect("stderr file");
    let mut child = command
        .stdin(Stdio::null())
        .stdout(stdout.try_clone().expect("stdout file"))
        .stderr(stderr.try_clone().expect("stderr file"))
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().expect("poll child") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{command:?} did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let [stdout, stderr] = [stdout, stderr].map(|mut file| {
        let mut text = String::new();
        file.rewind().expect("rewind output");
        file.read_to_string(&mut text).expect("read output");
        text
    });
    (status, stdout, stderr)
}

#[test]
fn each_checkout_embeds_its_own_migrations_in_a_shared_target_dir() {
    let temp = tempfile::tempdir().expect("temp dir");
    let mut target = SharedTarget {
        dir: temp.path().join("target"),
        built_at: SystemTime::UNIX_EPOCH,
    };
    // Quotes, backslashes and braces must survive embedding unchanged.
    let a1 = r#"SELECT 'a' AS "A", '\n{}';"#;
    let b1 = "SELECT 'b';";

    let a = Checkout::create(temp.path().join("a"), a1);
    assert_eq!(target.build_and_run(&a), [format!("V1__x.sql={a1}")]);
    let b = Checkout::create(temp.path().join("b"), b1);
    assert_eq!(target.build_and_run(&b), [format!("V1__x.sql={b1}")]);
    a.touch_migrations(&target);
    assert_eq!(
        target.build_and_run(&a),
        [format!("V1__x.sql={a1}")],
        "back in checkout a, the build embeds b's migrations"
    );

    // A changed migration is rebuilt into the binary.
    a.write_migration("V1__x.sql", "SELECT 'a2';", &target);
    assert_eq!(target.build_and_run(&a), ["V1__x.sql=SELECT 'a2';"]);

    // So is a new one, in file-name order.
    a.write_migration("V2__y.sql", "SELECT 'y';", &target);
    assert_eq!(
        target.build_and_run(&a),
        ["V1__x.sql=SELECT 'a2';", "V2__y.sql=SELECT 'y';"]
    );

    // Once the checkout that built last is gone, the other one still builds its own.
    b.touch_migrations(&target);
    assert_eq!(target.build_and_run(&b), [format!("V1__x.sql={b1}")]);
    std::fs::remove_dir_all(&b.root).expect("remove checkout b");
    a.touch_migrations(&target);
    assert_eq!(
        target.build_and_run(&a),
        ["V1__x.sql=SELECT 'a2';", "V2__y.sql=SELECT 'y';"]
    );

    // A malformed set fails the build, naming the offending file.
    a.write_migration("V3__BadName.sql", "SELECT 1;", &target);
    let (status, _, stderr) = run_to_end(target.build(&a), Duration::from_secs(300));
    assert!(!status.success(), "a malformed migration set was built");
    assert!(
        stderr.contains("V3__BadName.sql") && stderr.contains("snake_case"),
        "{stderr}"
    );
}
