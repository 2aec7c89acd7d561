//! Large data for the S3 tests: a data dir whose archive is `mib` MiB of
//! incompressible segments, and a child's peak RSS while it runs.

use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, SystemTime};

use crate::support::*;

/// A data dir whose archive is about `mib` MiB: the tiny layout plus
/// incompressible segment files over the 16 MiB read-buffer limit, dated
/// an hour back so nothing treats them as being written.
pub(super) fn incompressible_data(dir: &Path, mib: usize) -> PathBuf {
    let d = tiny_data(dir);
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut left = mib << 20;
    let mut n = 0;
    let old = SystemTime::now() - Duration::from_secs(3600);
    while left > 0 {
        let size = left.min(30 << 20);
        let mut buf = vec![0u8; size];
        for chunk in buf.chunks_mut(8) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            chunk.copy_from_slice(&state.to_le_bytes()[..chunk.len()]);
        }
        let path = d.join(format!("segments/3600/{}-3600-3610-{n}.seg", 100 + n));
        std::fs::write(&path, &buf).unwrap();
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(old)
            .unwrap();
        left -= size;
        n += 1;
    }
    d
}

/// Waits for `child` and returns its exit code and peak RSS in KiB, read
/// from its own `VmHWM` while it runs. (`wait4`'s `ru_maxrss` would count
/// the test process too: a spawned child inherits its parent's peak at exec.)
pub(super) fn wait_rss(mut child: Child) -> (i32, u64) {
    let status_file = format!("/proc/{}/status", child.id());
    let mut peak = 0;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return (status.code().expect("exited normally"), peak);
        }
        if let Ok(s) = std::fs::read_to_string(&status_file)
            && let Some(kib) = s
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        {
            peak = peak.max(kib);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}
