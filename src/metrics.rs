//! node_exporter textfile-collector metrics of the last `create`
//! (`create --metrics-file`), written atomically, so a failed or missing
//! nightly backup can raise an alert (and of the last `verify` and
//! `prune`, see [`Outcome`]):
//!
//! ```text
//! sydra_archive_last_run_timestamp_seconds 1795653300
//! sydra_archive_last_run_success 1
//! sydra_archive_last_success_timestamp_seconds{kind="full"} 1795653300
//! sydra_archive_last_success_bytes{kind="full"} 244971499
//! sydra_archive_last_success_files{kind="full"} 72015
//! sydra_archive_last_success_duration_seconds{kind="full"} 3.56
//! ```
//!
//! A failed run writes the run lines and keeps the previous success lines
//! (read back from the file), so `time() -
//! sydra_archive_last_success_timestamp_seconds > 26 * 3600` alerts on a
//! missing backup and `sydra_archive_last_run_success == 0` on a failed one.

use std::io::Write;
use std::path::Path;

use crate::error::{Error, Result};
use crate::store::publish::AtomicFile;
use crate::write::CreateSummary;

mod watch;

pub use watch::WatchMetrics;

const SUCCESS_PREFIX: &str = "sydra_archive_last_success_";

/// The metrics of one run.
#[derive(Debug, Clone)]
pub struct Metrics {
    run_unix_s: f64,
    /// `(kind, bytes, files, seconds)` of a successful run.
    success: Option<(&'static str, u64, u64, f64)>,
}

fn now_s() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

impl Metrics {
    /// Refuses, before a run writes anything, a metrics file at `path`
    /// that could not be written (its directory is missing or is not a
    /// directory), or that is one of `others` — files the run writes or
    /// reads, each with what it is (`"the archive written"`): the same
    /// path, or the same file by device and inode. Writing the metrics
    /// would replace it.
    pub fn check_file(path: &Path, others: &[(&str, &Path)]) -> Result<()> {
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        match std::fs::metadata(dir) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(Error::Refused(format!(
                    "cannot write the metrics file {}: {} is not a directory",
                    path.display(),
                    dir.display()
                )));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::Refused(format!(
                    "cannot write the metrics file {}: directory {} does not exist",
                    path.display(),
                    dir.display()
                )));
            }
            Err(e) => return Err(Error::io("stat", dir, e)),
        }
        for (what, other) in others {
            if same_file(path, other) {
                return Err(Error::Refused(format!(
                    "the metrics file {} is {}, {what}: writing the metrics would replace it; give --metrics-file another file",
                    path.display(),
                    other.display()
                )));
            }
        }
        Ok(())
    }

    /// A `create` that wrote `s` in `seconds`.
    pub fn success(s: &CreateSummary, seconds: f64) -> Metrics {
        Metrics {
            run_unix_s: now_s(),
            success: Some((
                if s.base.is_some() {
                    "incremental"
                } else {
                    "full"
                },
                s.bytes,
                s.files,
                seconds,
            )),
        }
    }

    /// A `create` that failed.
    pub fn failure() -> Metrics {
        Metrics {
            run_unix_s: now_s(),
            success: None,
        }
    }

    /// The file's text; `previous` is the file as it was (a failed run
    /// keeps the last success's figures, read back from it).
    fn render(&self, previous: &str) -> String {
        let mut out = String::new();
        let t = self.run_unix_s.floor();
        out.push_str(
            "# HELP sydra_archive_last_run_timestamp_seconds When the last sydra-archive create ended.\n\
             # TYPE sydra_archive_last_run_timestamp_seconds gauge\n",
        );
        out.push_str(&format!("sydra_archive_last_run_timestamp_seconds {t}\n"));
        out.push_str(
            "# HELP sydra_archive_last_run_success Whether the last sydra-archive create succeeded.\n\
             # TYPE sydra_archive_last_run_success gauge\n",
        );
        let (success, when) = match self.success {
            Some(s) => {
                out.push_str("sydra_archive_last_run_success 1\n");
                (Some(s), Some(t))
            }
            None => {
                out.push_str("sydra_archive_last_run_success 0\n");
                (
                    last_success(previous),
                    last_value(previous, "timestamp_seconds").map(|(_, v)| v),
                )
            }
        };
        let (Some((kind, bytes, files, secs)), Some(when)) = (success, when) else {
            return out;
        };
        for (name, help, value) in [
            (
                "timestamp_seconds",
                "When the last successful create ended.",
                format!("{when}"),
            ),
            (
                "bytes",
                "Archive bytes of the last successful create.",
                bytes.to_string(),
            ),
            (
                "files",
                "Files in the last successful create.",
                files.to_string(),
            ),
            (
                "duration_seconds",
                "Wall-clock seconds of the last successful create.",
                format!("{secs:.3}"),
            ),
        ] {
            out.push_str(&format!(
                "# HELP {SUCCESS_PREFIX}{name} {help}\n# TYPE {SUCCESS_PREFIX}{name} gauge\n{SUCCESS_PREFIX}{name}{{kind=\"{kind}\"}} {value}\n"
            ));
        }
        out
    }

    /// Writes the metrics to `path` atomically (a temporary file in the
    /// same directory, fsynced and renamed over it).
    pub fn write_to(&self, path: &Path) -> Result<()> {
        let previous = if self.success.is_none() {
            read_previous(path)
        } else {
            String::new()
        };
        write_text(path, &self.render(&previous))
    }
}

/// Writes a metrics file atomically (a temporary file in the same
/// directory, fsynced and renamed over it), mode 0644.
fn write_text(path: &Path, text: &str) -> Result<()> {
    let (mut file, _) = AtomicFile::create(path, true)?;
    // Read by the collector, which runs as another user.
    file.set_mode(0o644)?;
    file.writer()
        .write_all(text.as_bytes())
        .map_err(|e| Error::io("write the metrics file", path, e))?;
    file.commit()
}

/// The outcome of a `verify` or a `prune` run (`--metrics-file`), under
/// names of its own, so that the files of `create`, `verify` and `prune`
/// can sit side by side in the collector's directory (one metric name in
/// two files would be refused by the collector):
///
/// ```text
/// sydra_archive_verify_last_run_timestamp_seconds 1795653400
/// sydra_archive_verify_last_run_success 1
/// sydra_archive_verify_last_success_timestamp_seconds 1795653400
/// ```
///
/// A failed run writes `…_last_run_success 0` and keeps the last
/// success's time, read back from the file.
#[derive(Debug, Clone)]
pub struct Outcome {
    command: &'static str,
    run_unix_s: f64,
    ok: bool,
}

impl Outcome {
    /// A `verify` that proved the archive (`ok`) or did not.
    pub fn verify(ok: bool) -> Outcome {
        Outcome {
            command: "verify",
            run_unix_s: now_s(),
            ok,
        }
    }

    /// A `prune` that did all it had to (`ok`) or did not.
    pub fn prune(ok: bool) -> Outcome {
        Outcome {
            command: "prune",
            run_unix_s: now_s(),
            ok,
        }
    }

    fn render(&self, previous: &str) -> String {
        let c = self.command;
        let t = self.run_unix_s.floor();
        let name = |what: &str| format!("sydra_archive_{c}_last_{what}");
        let last_success = if self.ok {
            Some(t)
        } else {
            let prefix = format!("{} ", name("success_timestamp_seconds"));
            previous.lines().find_map(|l| {
                let v: f64 = l.strip_prefix(&prefix)?.trim().parse().ok()?;
                (v.is_finite() && v >= 0.0).then_some(v)
            })
        };
        let mut out = String::new();
        let mut gauge = |what: &str, help: &str, value: f64| {
            let n = name(what);
            out.push_str(&format!(
                "# HELP {n} {help}\n# TYPE {n} gauge\n{n} {value}\n"
            ));
        };
        gauge(
            "run_timestamp_seconds",
            &format!("When the last sydra-archive {c} ended."),
            t,
        );
        gauge(
            "run_success",
            &format!("Whether the last sydra-archive {c} succeeded."),
            if self.ok { 1.0 } else { 0.0 },
        );
        if let Some(s) = last_success {
            gauge(
                "success_timestamp_seconds",
                &format!("When the last successful sydra-archive {c} ended."),
                s,
            );
        }
        out
    }

    /// Writes the metrics to `path` atomically (as [`Metrics::write_to`]).
    pub fn write_to(&self, path: &Path) -> Result<()> {
        let previous = if self.ok {
            String::new()
        } else {
            read_previous(path)
        };
        write_text(path, &self.render(&previous))
    }
}

/// `path` with its directory resolved (symlinks, `.`, `..`), or as given
/// when the directory cannot be resolved.
fn resolved(path: &Path) -> std::path::PathBuf {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    match (std::fs::canonicalize(dir), path.file_name()) {
        (Ok(d), Some(name)) => d.join(name),
        _ => path.to_path_buf(),
    }
}

/// Whether `a` and `b` name the same file: the same path once their
/// directories are resolved, or (both existing) the same device and inode.
fn same_file(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    if a == b || resolved(a) == resolved(b) {
        return true;
    }
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(x), Ok(y)) => x.dev() == y.dev() && x.ino() == y.ino(),
        _ => false,
    }
}

/// The metrics file as it was, or nothing: opened without following a
/// link or waiting on a FIFO, a regular file only, at most 64 KiB.
fn read_previous(path: &Path) -> String {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let Ok(f) = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
    else {
        return String::new();
    };
    if !f.metadata().is_ok_and(|m| m.is_file()) {
        return String::new();
    }
    let mut buf = Vec::new();
    if f.take(64 * 1024).read_to_end(&mut buf).is_err() {
        return String::new();
    }
    String::from_utf8_lossy(&buf).into_owned()
}

/// The kind and value of `sydra_archive_last_success_<name>` in `text`.
fn last_value(text: &str, name: &str) -> Option<(String, f64)> {
    let metric = format!("{SUCCESS_PREFIX}{name}{{kind=\"");
    text.lines().find_map(|l| {
        let rest = l.strip_prefix(&metric)?;
        let (kind, value) = rest.split_once("\"} ")?;
        if kind != "full" && kind != "incremental" {
            return None;
        }
        let v: f64 = value.trim().parse().ok()?;
        (v.is_finite() && v >= 0.0).then(|| (kind.to_string(), v))
    })
}

/// The last success's figures in a previous metrics file.
fn last_success(text: &str) -> Option<(&'static str, u64, u64, f64)> {
    let (kind, _) = last_value(text, "timestamp_seconds")?;
    let kind = if kind == "full" {
        "full"
    } else {
        "incremental"
    };
    let bytes = last_value(text, "bytes")?.1;
    let files = last_value(text, "files")?.1;
    let secs = last_value(text, "duration_seconds")?.1;
    Some((kind, bytes as u64, files as u64, secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_keeps_the_last_success() {
        let ok = Metrics {
            run_unix_s: 100.5,
            success: Some(("full", 10, 2, 1.25)),
        }
        .render("");
        assert!(ok.contains("sydra_archive_last_run_success 1\n"), "{ok}");
        assert!(
            ok.contains("sydra_archive_last_success_timestamp_seconds{kind=\"full\"} 100\n"),
            "{ok}"
        );
        assert!(ok.contains("sydra_archive_last_success_bytes{kind=\"full\"} 10\n"));
        let failed = Metrics {
            run_unix_s: 200.0,
            success: None,
        }
        .render(&ok);
        assert!(failed.contains("sydra_archive_last_run_timestamp_seconds 200\n"));
        assert!(failed.contains("sydra_archive_last_run_success 0\n"));
        assert!(
            failed.contains("sydra_archive_last_success_timestamp_seconds{kind=\"full\"} 100\n")
        );
        assert!(failed.contains("# TYPE sydra_archive_last_success_files gauge\n"));
        assert_eq!(failed.matches("last_run_success").count(), 3, "{failed}");
        // Junk or duplicates before: only well-formed figures are carried
        // over, once.
        let again = Metrics {
            run_unix_s: 300.0,
            success: None,
        }
        .render(&format!("{failed}{failed}garbage{{\n\u{fffd}"));
        assert_eq!(again.matches("_last_success_bytes{").count(), 1, "{again}");
        assert!(again.contains("_last_success_timestamp_seconds{kind=\"full\"} 100\n"));
        let none = Metrics {
            run_unix_s: 300.0,
            success: None,
        }
        .render("sydra_archive_last_success_bytes{kind=\"x\"} NaN\n");
        assert!(!none.contains("last_success"), "{none}");
    }

    #[test]
    fn an_outcome_keeps_the_last_success_time() {
        let ok = Outcome {
            command: "verify",
            run_unix_s: 100.5,
            ok: true,
        }
        .render("");
        assert!(
            ok.contains("sydra_archive_verify_last_run_timestamp_seconds 100\n"),
            "{ok}"
        );
        assert!(
            ok.contains("sydra_archive_verify_last_run_success 1\n"),
            "{ok}"
        );
        assert!(ok.contains("sydra_archive_verify_last_success_timestamp_seconds 100\n"));
        assert!(ok.contains("# TYPE sydra_archive_verify_last_run_success gauge\n"));
        let failed = Outcome {
            command: "verify",
            run_unix_s: 200.0,
            ok: false,
        };
        let text = failed.render(&ok);
        assert!(
            text.contains("sydra_archive_verify_last_run_success 0\n"),
            "{text}"
        );
        assert!(text.contains("sydra_archive_verify_last_run_timestamp_seconds 200\n"));
        assert!(text.contains("sydra_archive_verify_last_success_timestamp_seconds 100\n"));
        // Nothing to keep, or junk: no success line.
        for before in [
            "",
            "sydra_archive_verify_last_success_timestamp_seconds NaN\n",
        ] {
            assert!(!failed.render(before).contains("last_success"), "{before}");
        }
        let prune = Outcome {
            command: "prune",
            run_unix_s: 1.0,
            ok: true,
        }
        .render("");
        assert!(
            prune.contains("sydra_archive_prune_last_run_success 1\n"),
            "{prune}"
        );
    }
}
