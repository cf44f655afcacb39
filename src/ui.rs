//! Progress and messages, passed to the stages (never global): a progress bar per long
//! stage on a terminal, plain timestamped lines when not (cron mail, CI logs), silence with
//! `--quiet` apart from warnings and errors.

use std::fmt::Display;
use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

/// Skip warnings printed before the rest are only counted (all are in the report).
const MAX_SKIP_MESSAGES: usize = 20;

pub struct Ui {
    quiet: bool,
    term: bool,
    skips_shown: Mutex<usize>,
    /// Messages kept to be said later (see `hold`), instead of now.
    held: Option<Mutex<Vec<Held>>>,
}

/// A message a held `Ui` keeps.
enum Held {
    Info(String),
    Warn(String),
    Skipped(String, String),
}

pub struct Stage<'a> {
    ui: &'a Ui,
    name: &'static str,
    total: u64,
    start: Instant,
    bar: Option<ProgressBar>,
    /// (items done, last plain log line time)
    plain: Mutex<(u64, Instant)>,
}

impl Ui {
    pub fn new(quiet: bool) -> Ui {
        Ui { quiet, term: std::io::stderr().is_terminal(), skips_shown: Mutex::new(0), held: None }
    }

    /// A `Ui` for work done beside other work whose messages should come first: it keeps
    /// its messages until `say_to` (dropped, it says nothing). No progress bars.
    pub fn hold(&self) -> Ui {
        Ui { quiet: self.quiet, term: false, skips_shown: Mutex::new(0), held: Some(Mutex::new(Vec::new())) }
    }

    /// Says, through `to`, what this held `Ui` kept, in order.
    pub fn say_to(self, to: &Ui) {
        for m in self.held.map(|h| h.into_inner().unwrap_or_else(|e| e.into_inner())).unwrap_or_default() {
            match m {
                Held::Info(m) => to.info(m),
                Held::Warn(m) => to.warn(m),
                Held::Skipped(p, r) => to.skipped(&p, &r),
            }
        }
    }

    /// Keeps the message `m` makes when this `Ui` is held (true); false when it is not, and
    /// the caller says it now.
    fn keep(&self, m: impl FnOnce() -> Held) -> bool {
        match &self.held {
            Some(h) => {
                h.lock().unwrap_or_else(|e| e.into_inner()).push(m());
                true
            }
            None => false,
        }
    }

    pub fn info(&self, msg: impl Display) {
        if !self.quiet && !self.keep(|| Held::Info(msg.to_string())) {
            eprintln!("{}", printable(&msg.to_string()));
        }
    }

    pub fn warn(&self, msg: impl Display) {
        if !self.keep(|| Held::Warn(msg.to_string())) {
            eprintln!("warning: {}", printable(&msg.to_string()));
        }
    }

    /// Reports a skipped file, up to a limit, so a broken archive does not flood cron mail.
    pub fn skipped(&self, path: &str, reason: &str) {
        if self.keep(|| Held::Skipped(path.to_string(), reason.to_string())) {
            return;
        }
        let mut shown = self.skips_shown.lock().unwrap_or_else(|e| e.into_inner());
        *shown += 1;
        if *shown <= MAX_SKIP_MESSAGES {
            eprintln!("skipped {}: {}", printable(path), printable(reason));
        } else if *shown == MAX_SKIP_MESSAGES + 1 {
            eprintln!("(further skipped files are listed in the build report only)");
        }
    }

    pub fn stage(&self, name: &'static str, total: u64) -> Stage<'_> {
        let bar = (self.term && !self.quiet).then(|| {
            let bar = ProgressBar::new(total);
            bar.set_style(
                ProgressStyle::with_template("{prefix:>10} [{bar:30}] {pos}/{len} {per_sec} eta {eta}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> "),
            );
            bar.set_prefix(name);
            bar
        });
        if bar.is_none() {
            self.info(format!("{name}: {total} to look at"));
        }
        Stage { ui: self, name, total, start: Instant::now(), bar, plain: Mutex::new((0, Instant::now())) }
    }
}

impl Stage<'_> {
    pub fn inc(&self, n: u64) {
        if let Some(b) = &self.bar {
            b.inc(n);
            return;
        }
        let mut p = self.plain.lock().unwrap_or_else(|e| e.into_inner());
        p.0 += n;
        if p.1.elapsed() >= Duration::from_secs(10) && p.0 < self.total {
            p.1 = Instant::now();
            let pct = 100 * p.0 / self.total.max(1);
            self.ui.info(format!("{}: {}/{} ({pct}%)", self.name, p.0, self.total));
        }
    }

    /// Ends the stage and returns its wall time.
    pub fn finish(self) -> Duration {
        let t = self.start.elapsed();
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
        let rate = if t.as_secs_f64() > 0.0 { self.total as f64 / t.as_secs_f64() } else { 0.0 };
        self.ui.info(format!("{}: {} in {:.2} s ({rate:.0}/s)", self.name, self.total, t.as_secs_f64()));
        t
    }
}

/// `s` with its control characters escaped (`\n`, `\r`, `\u{1b}`): a file name cannot
/// forge a line of the log or send escape sequences to the terminal.
pub fn printable(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.chars().any(char::is_control) {
        return std::borrow::Cow::Borrowed(s);
    }
    std::borrow::Cow::Owned(s.chars().map(|c| if c.is_control() { c.escape_default().to_string() } else { c.to_string() }).collect())
}

#[cfg(test)]
mod printable_tests {
    #[test]
    fn control_characters_in_names_are_escaped() {
        assert_eq!(super::printable("bad.png\npublished 999 item(s)"), "bad.png\\npublished 999 item(s)");
        assert_eq!(super::printable("x\u{1b}]0;pwned\u{7}\r.png"), "x\\u{1b}]0;pwned\\u{7}\\r.png");
        assert_eq!(super::printable("M31 仙女座.png"), "M31 仙女座.png");
    }
}
