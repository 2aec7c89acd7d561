//! node_exporter textfile-collector metrics of the last `create`
//! (`create --metrics-file`), written atomically, so a failed or missing
//! nightly backup can raise an alert:
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
    /// A `create` that wrote `s` in `seconds`.
    pub fn success(s: &CreateSummary, seconds: f64) -> Metrics {
        Metrics {
            run_unix_s: now_s(),
            success: Some(("full", s.bytes, s.files, seconds)),
        }
    }

    /// A `create` that failed.
    pub fn failure() -> Metrics {
        Metrics {
            run_unix_s: now_s(),
            success: None,
        }
    }

    /// The file's text; `previous` is the file as it was (its success
    /// lines are kept by a failed run).
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
        match self.success {
            Some((kind, bytes, files, secs)) => {
                out.push_str("sydra_archive_last_run_success 1\n");
                for (name, help, value) in [
                    (
                        "timestamp_seconds",
                        "When the last successful create ended.",
                        format!("{t}"),
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
            }
            None => {
                out.push_str("sydra_archive_last_run_success 0\n");
                for line in previous.lines() {
                    let metric = line
                        .strip_prefix("# HELP ")
                        .or_else(|| line.strip_prefix("# TYPE "))
                        .unwrap_or(line);
                    if metric.starts_with(SUCCESS_PREFIX) {
                        out.push_str(line);
                        out.push('\n');
                    }
                }
            }
        }
        out
    }

    /// Writes the metrics to `path` atomically (a temporary file in the
    /// same directory, fsynced and renamed over it).
    pub fn write_to(&self, path: &Path) -> Result<()> {
        let previous = match std::fs::read_to_string(path) {
            Ok(s) => s,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(Error::io("read the metrics file", path, e)),
        };
        let text = self.render(&previous);
        let (mut file, _) = AtomicFile::create(path, true)?;
        // Read by the collector, which runs as another user.
        file.set_mode(0o644)?;
        file.writer()
            .write_all(text.as_bytes())
            .map_err(|e| Error::io("write the metrics file", path, e))?;
        file.commit()
    }
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
    }
}
