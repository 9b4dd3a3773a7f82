//! The kill loop of the scratch-database experiments, shared by both engines' fault
//! suites: `db-check`, `db-schema` and `db-migrate --autogenerate` caught while their
//! scratch database exists, sent SIGINT, SIGTERM or SIGKILL, and what each leaves.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tests::{Project, random_below};

/// The commands that work on a scratch database.
pub const COMMANDS: [&[&str]; 3] = [
    &["db-check"],
    &["db-schema"],
    &["db-migrate", "next_step", "--autogenerate"],
];

/// One engine's view of the experiment.
pub struct Experiment<'a> {
    /// A project whose migrations take a while (so a run can be caught midway), with
    /// `schema.sql` written.
    pub project: &'a Project,
    /// The `TMPDIR` every run gets: must stay empty once a run is over.
    pub tmp: &'a Path,
    /// The scratch databases (or files) the run with this pid has, or left.
    pub scratch_of: &'a dyn Fn(u32) -> Vec<String>,
}

impl Experiment<'_> {
    /// `xtask <args>` with this experiment's `TMPDIR`.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = self.project.command("xtask");
        command.args(args).env("TMPDIR", self.tmp);
        command
    }

    /// Everything in the temporary directory.
    pub fn tmp_entries(&self) -> Vec<String> {
        std::fs::read_dir(self.tmp)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect()
    }

    /// Sends `signal` to a run of `args` caught while its scratch database exists, after a
    /// random delay (printed); tries again (at most 8 runs) until the signal reached a run
    /// still working. Returns its pid, exit code and stderr.
    fn interrupt(&self, args: &[&str], signal: &str) -> (u32, Option<i32>, String) {
        for attempt in 0..8 {
            let stderr = tempfile::NamedTempFile::new().unwrap();
            let mut child = self
                .command(args)
                .stdout(Stdio::null())
                .stderr(stderr.reopen().unwrap())
                .spawn()
                .unwrap();
            let pid = child.id();
            let started = Instant::now();
            while (self.scratch_of)(pid).is_empty() && child.try_wait().unwrap().is_none() {
                assert!(
                    started.elapsed() < Duration::from_secs(60),
                    "no scratch appeared"
                );
                std::thread::sleep(Duration::from_millis(5));
            }
            let delay = random_below(300);
            println!(
                "{args:?} SIG{signal}, attempt {attempt}: {delay} ms after the scratch appeared"
            );
            std::thread::sleep(Duration::from_millis(delay));
            // Finished, or between scratches (past one, before the next): try again, after
            // a SIGTERM that lets it clean up whatever it made meanwhile.
            if child.try_wait().unwrap().is_some() || (self.scratch_of)(pid).is_empty() {
                Command::new("kill")
                    .args(["-s", "TERM", &pid.to_string()])
                    .status()
                    .ok();
                wait(&mut child);
                continue;
            }
            Command::new("kill")
                .args(["-s", signal, &pid.to_string()])
                .status()
                .unwrap();
            let code = wait(&mut child);
            return (pid, code, std::fs::read_to_string(stderr.path()).unwrap());
        }
        panic!("{args:?} always finished before SIG{signal} reached it");
    }

    /// The whole experiment; see the module docs.
    pub fn run(&self) {
        for (i, args) in COMMANDS.iter().enumerate() {
            for signal in ["INT", "TERM"] {
                let (pid, code, stderr) = self.interrupt(args, signal);
                assert_eq!(code, Some(1), "{args:?} SIG{signal}: {stderr}");
                assert!(
                    stderr.contains(&format!("error: interrupted by SIG{signal}")),
                    "{args:?}: {stderr}"
                );
                assert_eq!(
                    (self.scratch_of)(pid),
                    Vec::<String>::new(),
                    "{args:?} SIG{signal}"
                );
                assert_eq!(
                    self.tmp_entries(),
                    Vec::<String>::new(),
                    "{args:?} SIG{signal}"
                );
            }
            let (pid, code, _) = self.interrupt(args, "KILL");
            assert_eq!(code, None, "{args:?} was killed");
            assert!(
                !(self.scratch_of)(pid).is_empty(),
                "{args:?}: a SIGKILL leaves its scratch behind for the next run"
            );
            // The next run, of another of these commands, sweeps it.
            let next = COMMANDS[(i + 1) % COMMANDS.len()];
            let run = tests::Run::from(self.command(next).output().unwrap());
            run.ok();
            assert_eq!(
                (self.scratch_of)(pid),
                Vec::<String>::new(),
                "after {args:?} SIGKILL, {next:?}"
            );
            assert_eq!(
                self.tmp_entries(),
                Vec::<String>::new(),
                "after {args:?} SIGKILL, {next:?}"
            );
        }
    }
}

/// Waits (at most 60 s) for `child` to exit; its exit code, `None` when a signal ended it.
pub fn wait(child: &mut Child) -> Option<i32> {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code();
        }
        if started.elapsed() > Duration::from_secs(60) {
            child.kill().ok();
            panic!("the command did not exit within 60 s of its signal");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}
