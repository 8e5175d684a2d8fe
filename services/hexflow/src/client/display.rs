//! How `hexflow import` shows progress: a redrawn bar on a terminal, plain rate-limited lines
//! anywhere else (a pipe, a log file, a CI job), where `\r` and ANSI codes would pile up.

use std::{
    io::{IsTerminal, Write},
    time::{Duration, Instant},
};

use shared::ProgressEvent;

/// How often a plain line is written while nothing but the numbers change.
const PLAIN_EVERY: Duration = Duration::from_secs(5);

/// Draws progress on stderr.
#[derive(Debug)]
pub(super) struct Progress {
    /// Redraw one line in place (both stdout and stderr are terminals).
    frames: bool,
    started: Instant,
    /// When the last plain line was written, and for which status and phase.
    last_line: Option<(Instant, String)>,
}

impl Progress {
    /// Frames when stdout and stderr are both terminals, plain lines otherwise.
    pub(super) fn for_this_process() -> Progress {
        Progress::new(std::io::stdout().is_terminal() && std::io::stderr().is_terminal())
    }

    pub(super) fn new(frames: bool) -> Progress {
        Progress { frames, started: Instant::now(), last_line: None }
    }

    /// Shows `e`: a redrawn frame, or a plain line when the status or phase changed, the import
    /// ended, or [`PLAIN_EVERY`] went by.
    pub(super) fn show(&mut self, e: &ProgressEvent) {
        let elapsed = self.started.elapsed();
        if self.frames {
            eprint!("\r\x1b[2K{}", frame(e, elapsed));
            let _ = std::io::stderr().flush();
            return;
        }
        let stage = format!("{:?}/{}", e.status, e.phase.as_str());
        let due = match &self.last_line {
            None => true,
            Some((at, last)) => *last != stage || e.is_terminal() || at.elapsed() >= PLAIN_EVERY,
        };
        if due {
            eprintln!("{}", line(e, elapsed));
            self.last_line = Some((Instant::now(), stage));
        }
    }

    /// Ends the frame line before other text is written.
    pub(super) fn break_line(&self) {
        if self.frames {
            eprintln!();
        }
    }
}

/// `██████░░░░  20.0% loading     12000 rows  4000 rows/s ETA 3s  3.0s`
fn frame(e: &ProgressEvent, elapsed: Duration) -> String {
    const WIDTH: usize = 30;
    let filled = (((e.progress / 100.0) * WIDTH as f64).round() as usize).min(WIDTH);
    let bar: String = "█".repeat(filled) + &"░".repeat(WIDTH - filled);
    format!("{bar} {}", numbers(e, elapsed))
}

/// `progress  20.0% loading 12000 rows 4000 rows/s ETA 3s 3.0s`: no control characters.
fn line(e: &ProgressEvent, elapsed: Duration) -> String {
    format!("progress {}", numbers(e, elapsed))
}

fn numbers(e: &ProgressEvent, elapsed: Duration) -> String {
    let eta = e.eta_seconds.map(|s| format_eta(s.round() as u64)).unwrap_or_else(|| "–".into());
    format!(
        "{:>5.1}% {:<10} {:>9} rows {:>8.0} rows/s ETA {eta:<8} {:>5.1}s",
        e.progress,
        e.phase.as_str(),
        e.processed_rows,
        e.rows_per_second,
        elapsed.as_secs_f64()
    )
}

/// `45s`, `1m 30s`, `61m 5s`.
pub fn format_eta(secs: u64) -> String {
    if secs < 60 { format!("{secs}s") } else { format!("{}m {}s", secs / 60, secs % 60) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eta_is_formatted_like_the_page() {
        assert_eq!(format_eta(45), "45s");
        assert_eq!(format_eta(90), "1m 30s");
        assert_eq!(format_eta(3665), "61m 5s");
    }

    #[test]
    fn a_plain_line_has_no_control_characters() {
        let metadata = shared::events::Metadata::new("scan.csv", "generic", "2026-01-01T00:00:00Z", 2);
        let mut e =
            ProgressEvent::new(uuid::Uuid::nil(), 3, shared::Status::Processing, shared::Phase::Loading, metadata);
        (e.progress, e.processed_rows, e.eta_seconds, e.rows_per_second) = (42.0, 1200, Some(75.0), 400.0);
        let plain = line(&e, Duration::from_millis(2500));
        assert!(plain.chars().all(|c| !c.is_control()), "{plain:?}");
        assert!(plain.contains("42.0%") && plain.contains("loading") && plain.contains("ETA 1m 15s"), "{plain}");
    }
}
