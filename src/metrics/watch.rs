//! The metrics file of a running `watch`.

use std::path::Path;

use crate::error::Result;
use crate::store::s3::RequestCounts;

use super::{now_s, write_text};

/// The metrics of a running `watch`, rewritten after every point and
/// every tick:
///
/// ```text
/// sydra_archive_watch_newest_point_timestamp_seconds 1795653300
/// sydra_archive_watch_points_total 1234
/// sydra_archive_watch_full_points_total 2
/// sydra_archive_watch_bytes_total 987654321
/// sydra_archive_watch_failures_total 3
/// sydra_archive_watch_failing 0
/// sydra_archive_watch_last_update_timestamp_seconds 1795653301
/// sydra_archive_watch_ticks_total 8640
/// sydra_archive_watch_requests_total{method="PUT"} 2470
/// sydra_archive_watch_requests_total{method="POST"} 2468
/// sydra_archive_watch_requests_total{method="LIST"} 2470
/// sydra_archive_watch_requests_total{method="GET"} 1234
/// sydra_archive_watch_requests_total{method="HEAD"} 1234
/// sydra_archive_watch_requests_total{method="DELETE"} 1234
/// sydra_archive_watch_request_bytes_total{direction="up"} 987700000
/// sydra_archive_watch_request_bytes_total{direction="down"} 4400000
/// ```
///
/// `time() - sydra_archive_watch_newest_point_timestamp_seconds` is the
/// RPO (the data a lost server would lose); `sydra_archive_watch_failing
/// > 0` says points are failing now (counted since this run started).
///
/// The file is rewritten every tick, a tick with nothing to ship too (no
/// request is sent then: the requests stay as they were).
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
    /// Looks at the data dir.
    pub ticks: u64,
    /// Requests sent to object storage, and their bytes.
    pub requests: RequestCounts,
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
        gauge(
            "ticks_total",
            "Looks at the data dir by this run (one a tick).",
            "counter",
            self.ticks.to_string(),
        );
        out.push_str(
            "# HELP sydra_archive_watch_requests_total Object-storage requests sent by this run, by method (LIST: a GET that lists).\n\
             # TYPE sydra_archive_watch_requests_total counter\n",
        );
        for (method, n) in self.requests.by_method() {
            out.push_str(&format!(
                "sydra_archive_watch_requests_total{{method=\"{method}\"}} {n}\n"
            ));
        }
        out.push_str(
            "# HELP sydra_archive_watch_request_bytes_total Bytes of object-storage request bodies sent (up) and response bodies received (down) by this run.\n\
             # TYPE sydra_archive_watch_request_bytes_total counter\n",
        );
        for (direction, n) in [
            ("up", self.requests.bytes_up),
            ("down", self.requests.bytes_down),
        ] {
            out.push_str(&format!(
                "sydra_archive_watch_request_bytes_total{{direction=\"{direction}\"}} {n}\n"
            ));
        }
        write_text(path, &out)
    }
}
