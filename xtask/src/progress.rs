//! Progress on stderr: a bar with bytes or rows and ETA on a terminal, one line per step
//! otherwise.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Reports backup progress.
pub struct Reporter {
    bar: Option<ProgressBar>,
}

impl Reporter {
    /// A bar in bytes when stderr is a terminal, plain lines otherwise.
    pub fn new() -> Self {
        Self::with_template("{bar:30} {bytes}/{total_bytes} ({bytes_per_sec}, ETA {eta})")
    }

    /// A bar in rows when stderr is a terminal, plain lines otherwise.
    pub fn rows() -> Self {
        Self::with_template("{bar:30} {human_pos}/{human_len} rows (ETA {eta})")
    }

    fn with_template(template: &str) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
            bar.set_style(ProgressStyle::with_template(template).expect("a valid template"));
            bar
        });
        Self { bar }
    }
}

impl Drop for Reporter {
    fn drop(&mut self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

impl server::progress::Progress for Reporter {
    fn step(&self, message: &str) {
        match &self.bar {
            Some(bar) => bar.println(message),
            None => note!("{message}"),
        }
    }

    fn advance(&self, done: u64, total: u64) {
        if let Some(bar) = &self.bar {
            bar.set_length(total);
            bar.set_position(done);
        }
    }
}
