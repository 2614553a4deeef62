//! Sync progress: a bar on a terminal (Cases, Cases/s, the cursor's date), plain lines on stderr
//! otherwise. Fed by the engine's `ProgressObserver` after every page.

use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::sync::PoisonError;
use std::time::{Duration, Instant};

use casesync_core::domain::Connection;
use casesync_core::sync::{Progress, ProgressObserver};
use chrono::{DateTime, Utc};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// At most one plain progress line per this interval (per connection).
const LINE_EVERY: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Display {
    /// An indicatif bar on stderr.
    Bar,
    /// A line on stderr every few seconds.
    Lines,
}

impl Display {
    /// A bar when stderr is a terminal that can draw one; lines otherwise.
    pub fn detect() -> Self {
        let dumb = std::env::var("TERM").is_ok_and(|t| t == "dumb");
        if std::io::stderr().is_terminal() && !dumb {
            Self::Bar
        } else {
            Self::Lines
        }
    }
}

struct State {
    /// Cases read by the runs before the current one.
    before: u64,
    /// Cases read by the current run so far.
    current: u64,
    last_line: Option<Instant>,
}

/// The progress of one connection across its runs in one drain.
pub struct ConnectionProgress {
    label: String,
    /// Where the first run started: the bar measures time covered from here to the run's end.
    start: DateTime<Utc>,
    started: Instant,
    bar: Option<ProgressBar>,
    state: Mutex<State>,
}

impl ConnectionProgress {
    pub fn new(display: Display, connection: &Connection) -> Self {
        let label = format!("{} ({})", connection.id, connection.channel);
        let bar = (display == Display::Bar).then(|| {
            let bar = ProgressBar::with_draw_target(Some(1), ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template("{prefix} [{bar:20.cyan/blue}] {percent:>3}% {msg}")
                    .expect("the template is valid")
                    .progress_chars("=> "),
            );
            // Short enough for an 80-column terminal: the channel and the id's start.
            bar.set_prefix(format!(
                "{} {}",
                connection.channel,
                &connection.id.as_str()[..13]
            ));
            bar.set_message("connecting to Salesforce...");
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        Self {
            label,
            start: connection.cursor.system_modstamp,
            started: Instant::now(),
            bar,
            state: Mutex::new(State {
                before: 0,
                current: 0,
                last_line: None,
            }),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Another run of the connection starts.
    pub fn next_run(&self) {
        let mut s = self.state();
        s.before += s.current;
        s.current = 0;
    }

    /// The connection is done for this drain: the bar goes (the summary line follows).
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

impl ProgressObserver for ConnectionProgress {
    fn on_page(&self, p: &Progress) {
        let (cases, print_line) = {
            let mut s = self.state();
            s.current = p.counts.fetched;
            let due = s.last_line.is_none_or(|t| t.elapsed() >= LINE_EVERY);
            if due && self.bar.is_none() {
                s.last_line = Some(Instant::now());
            }
            (s.before + s.current, due)
        };
        let elapsed = self.started.elapsed().as_secs_f64().max(0.001);
        let rate = cases as f64 / elapsed;
        let at = p.position.system_modstamp;
        match &self.bar {
            Some(bar) => {
                let total = (p.until - self.start).num_seconds().max(1) as u64;
                // Sliced backfills read several spans at once: the bar shows all they read.
                let done = (p.progress_point - self.start)
                    .num_seconds()
                    .clamp(0, total as i64) as u64;
                bar.set_length(total);
                bar.set_position(done);
                bar.set_message(format!(
                    "{cases} Cases, {rate:.0}/s, at {}",
                    at.format("%Y-%m-%d")
                ));
            }
            None if print_line => {
                // Progress is not the command's output: stderr, so stdout stays parseable.
                let _ = writeln!(
                    std::io::stderr(),
                    "{}: {cases} Cases read, {rate:.0}/s, at {}",
                    self.label,
                    casesync_core::data_point::rfc3339::format(&at)
                );
            }
            None => {}
        }
    }
}
