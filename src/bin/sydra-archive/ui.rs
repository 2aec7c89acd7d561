//! Progress display for the binary: a bar on a terminal (indicatif), NDJSON
//! events for scripts, or nothing. It reads the library's counters from a
//! ticker thread; the library itself never draws.

use std::borrow::Cow;
use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use clap::ValueEnum;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use sydra_archive::Progress;

/// How progress is shown on stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ProgressMode {
    /// A bar when stderr is a terminal and -q is not given; else nothing.
    Auto,
    /// One JSON object per line (NDJSON), every half second and at the end.
    Json,
    /// Nothing.
    None,
}

/// A running display; [`Display::finish`] stops it.
pub struct Display {
    stop: Arc<AtomicBool>,
    ticker: Option<JoinHandle<()>>,
}

impl Display {
    /// Starts showing `progress` for `command` as `mode` says.
    pub fn start(
        command: &'static str,
        mode: ProgressMode,
        quiet: bool,
        progress: &Arc<Progress>,
    ) -> Display {
        let stop = Arc::new(AtomicBool::new(false));
        let ticker = match mode {
            ProgressMode::Auto if !quiet && std::io::stderr().is_terminal() => {
                let (stop, p) = (stop.clone(), progress.clone());
                std::thread::Builder::new()
                    .name("progress".into())
                    .spawn(move || bar(command, &p, &stop))
                    .ok()
            }
            ProgressMode::Json => {
                let (stop, p) = (stop.clone(), progress.clone());
                std::thread::Builder::new()
                    .name("progress".into())
                    .spawn(move || ndjson(command, &p, &stop))
                    .ok()
            }
            _ => None,
        };
        Display { stop, ticker }
    }

    /// Whether progress is shown at all.
    pub fn shown(&self) -> bool {
        self.ticker.is_some()
    }

    /// Stops the display (the bar is cleared; NDJSON ends with a
    /// `finished` event).
    pub fn finish(mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.ticker.take() {
            let _ = t.join();
        }
    }
}

fn bar(command: &str, p: &Progress, stop: &AtomicBool) {
    let pb = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    let style = ProgressStyle::with_template(
        "{spinner} {msg} [{wide_bar}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar())
    .progress_chars("=> ");
    pb.set_style(style);
    pb.set_message(command.to_string());
    loop {
        let total = p.total();
        if total > 0 {
            pb.set_length(total);
        }
        pb.set_position(p.done());
        pb.tick();
        if stop.load(Ordering::SeqCst) {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    pb.finish_and_clear();
}

/// One `--progress json` event.
#[derive(serde::Serialize)]
struct ProgressEvent<'a> {
    event: &'a str,
    command: &'a str,
    done_bytes: u64,
    total_bytes: u64,
    elapsed_s: f64,
}

fn ndjson(command: &str, p: &Progress, stop: &AtomicBool) {
    let start = Instant::now();
    let event = |name: &str| {
        let e = ProgressEvent {
            event: name,
            command,
            done_bytes: p.done(),
            total_bytes: p.total(),
            elapsed_s: start.elapsed().as_secs_f64(),
        };
        if let Ok(line) = serde_json::to_string(&e) {
            let _ = writeln!(std::io::stderr(), "{line}");
        }
    };
    // `started` once the total is known (the archive opened, the data
    // dir counted), or at the first tick without one (a pipe).
    let mut started = false;
    let mut last = Instant::now();
    while !stop.load(Ordering::SeqCst) {
        if !started && (p.total() > 0 || last.elapsed() >= Duration::from_millis(500)) {
            event("started");
            started = true;
            last = Instant::now();
        } else if started && last.elapsed() >= Duration::from_millis(500) {
            event("progress");
            last = Instant::now();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    if !started {
        event("started");
    }
    event("finished");
}

/// An archive path as one line of a listing: backslash, newline, tab,
/// carriage return and other control bytes escaped, so a name cannot
/// break a line or a terminal.
pub fn escape_name(name: &str) -> Cow<'_, str> {
    escape(name, true)
}

/// A message as one line: control characters (newline, tab, escape...)
/// escaped, backslashes left as they are.
pub fn escape_line(line: &str) -> Cow<'_, str> {
    escape(line, false)
}

fn escape(s: &str, backslash: bool) -> Cow<'_, str> {
    let special = |c: char| c.is_control() || (backslash && c == '\\');
    if !s.chars().any(special) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\\' if backslash => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// `n` and the noun that goes with it: `1 file`, `2 files`, `0 files`.
pub fn count(n: impl Into<u64>, one: &str, many: &str) -> String {
    let n = n.into();
    format!("{n} {}", if n == 1 { one } else { many })
}

/// Writes one line to stderr, control characters escaped, dropping it if
/// stderr is closed or broken (never a panic, never another exit code).
pub fn say(line: std::fmt::Arguments<'_>) {
    let line = line.to_string();
    let _ = writeln!(std::io::stderr(), "{}", escape_line(&line));
}

/// What `create` reports on stderr besides its summary: names left out,
/// symlinks followed, stale temporaries removed, warnings.
pub fn create_notes(s: &sydra_archive::CreateSummary) {
    for name in &s.skipped {
        say(format_args!(
            "sydra-archive: skipped {name:?} (not part of the SydraDB layout)"
        ));
    }
    for name in &s.followed {
        say(format_args!("sydra-archive: followed symlink {name:?}"));
    }
    for p in &s.removed_stale {
        say(format_args!(
            "sydra-archive: removed stale temporary file {}",
            p.display()
        ));
    }
    for w in &s.warnings {
        say(format_args!("sydra-archive: warning: {w}"));
    }
}

/// `verify --deep`'s problems on stderr, then one line saying how many.
pub fn deep_problems(archive: &str, d: &sydra_archive::DeepSummary) {
    for p in &d.problems {
        say(format_args!(
            "sydra-archive: {}: offset {}: {}",
            p.path, p.offset, p.reason
        ));
    }
    say(format_args!(
        "sydra-archive: verify --deep {archive}: {}; a data dir restored from it would not start cleanly",
        count(d.problem_count as u64, "problem", "problems")
    ));
}

/// The line `verify` prints on stdout for an archive that verified.
pub fn verified_line(
    archive: &str,
    mode: &str,
    s: &sydra_archive::ReadSummary,
    secs: f64,
) -> String {
    format!(
        "ok {archive}: {} ({}, {}, {}, sha256 {}) in {secs:.2}s",
        match mode {
            "quick" => "quick check",
            "deep" => "fully verified, SydraDB files decoded",
            _ => "fully verified",
        },
        count(s.info.files, "file", "files"),
        count(s.info.total_bytes, "data byte", "data bytes"),
        count(s.bytes, "archive byte", "archive bytes"),
        sydra_archive::hex(&s.sha256)
    )
}

/// An age in seconds, short: `42s`, `15m`, `3h`, `2d`.
pub fn age(secs: u64) -> String {
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 2 * 3600 => format!("{}m", s / 60),
        s if s < 2 * 86_400 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn counts_agree_with_their_noun() {
        assert_eq!(super::count(1u64, "file", "files"), "1 file");
        assert_eq!(super::count(0u64, "file", "files"), "0 files");
        assert_eq!(super::count(2u32, "entry", "entries"), "2 entries");
    }

    #[test]
    fn names_are_escaped_onto_one_line() {
        assert_eq!(super::escape_name("wal/a.wal"), "wal/a.wal");
        assert_eq!(super::escape_name("wal/a\nb\\c\x1b"), "wal/a\\nb\\\\c\\x1b");
    }
}
