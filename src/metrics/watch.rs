//! The metrics file of a running `watch`.

use std::path::Path;

use crate::error::Result;

use super::{now_s, write_text};

/// The metrics of a running `watch`, rewritten after every point:
///
/// ```text
/// sydra_archive_watch_newest_point_timestamp_seconds 1795653300
/// sydra_archive_watch_points_total 1234
/// sydra_archive_watch_full_points_total 2
/// sydra_archive_watch_bytes_total 987654321
/// sydra_archive_watch_failures_total 3
/// sydra_archive_watch_failing 0
/// sydra_archive_watch_last_update_timestamp_seconds 1795653301
/// ```
///
/// `time() - sydra_archive_watch_newest_point_timestamp_seconds` is the
/// RPO (the data a lost server would lose); `sydra_archive_watch_failing
/// > 0` says points are failing now (counted since this run started).
#[derive(Debug, Clone, Default)]
pub struct WatchMetrics {
    /// The newest point's moment (ms), if one was shipped by this run.
    pub newest_unix_ms: Option<u64>,
    /// Points published, of them full archives, bytes published.
    pub points: u64,
    /// See `points`.
    pub fulls: u64,
    /// See `points`.
    pub bytes: u64,
    /// Points that failed, and failures in a row now.
    pub failures: u64,
    /// See `failures`.
    pub failing: u64,
}

impl WatchMetrics {
    /// Writes the file at `path` atomically.
    pub fn write_to(&self, path: &Path) -> Result<()> {
        let mut out = String::new();
        let mut gauge = |name: &str, help: &str, kind: &str, v: String| {
            out.push_str(&format!(
                "# HELP sydra_archive_watch_{name} {help}\n# TYPE sydra_archive_watch_{name} {kind}\nsydra_archive_watch_{name} {v}\n"
            ));
        };
        if let Some(ms) = self.newest_unix_ms {
            gauge(
                "newest_point_timestamp_seconds",
                "The moment of the newest point shipped.",
                "gauge",
                format!("{:.3}", ms as f64 / 1000.0),
            );
        }
        gauge(
            "points_total",
            "Points shipped by this run.",
            "counter",
            self.points.to_string(),
        );
        gauge(
            "full_points_total",
            "Of them, full archives.",
            "counter",
            self.fulls.to_string(),
        );
        gauge(
            "bytes_total",
            "Bytes shipped by this run.",
            "counter",
            self.bytes.to_string(),
        );
        gauge(
            "failures_total",
            "Points that failed (retried).",
            "counter",
            self.failures.to_string(),
        );
        gauge(
            "failing",
            "Failed points in a row now.",
            "gauge",
            self.failing.to_string(),
        );
        gauge(
            "last_update_timestamp_seconds",
            "When this file was written.",
            "gauge",
            format!("{:.3}", now_s()),
        );
        write_text(path, &out)
    }
}
