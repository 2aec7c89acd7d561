//! `restore`: staged, verified, durable, atomic; never loses data.
//!
//! One concern a file: [`targets`] (where a restore goes and what it
//! refuses: absent, empty and non-empty targets, stdin, modes and owners,
//! deep paths, `DIR/.`, mount points, long names), [`kills`] (signals and
//! SIGKILL at any point, cleanups finished by the next run) and
//! [`failures`] (damaged archives, a full disk, a failed swap, leftover
//! staging and its lock). This file holds the helpers they share.

mod failures;
mod kills;
mod targets;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::support::*;

fn archive_of(data: &Path, dir: &Path) -> PathBuf {
    let out = dir.join("a.tar.zst");
    create(data, &out);
    out
}

/// Starts a restore reading from a pipe, feeds it `first` bytes and waits
/// until the staging tree holds a file, so a fault can be injected while
/// the restore is in the middle of extracting. The data is decoded as one
/// stream (`--threads 1`): frames decoded apart are taken only whole, and
/// the first one is not whole in `first` bytes.
fn restore_paused(
    archive: &[u8],
    first: usize,
    target: &Path,
    force: bool,
) -> (Child, std::process::ChildStdin) {
    let mut c = bin();
    c.args(["restore", "-", p(target), "--threads", "1"]);
    if force {
        c.arg("--force");
    }
    let mut child = c
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(&archive[..first]).unwrap();
    stdin.flush().unwrap();
    let parent = target.parent().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let staged = leftovers(parent)
            .iter()
            .any(|n| parent.join(n).join("MANIFEST").exists());
        if staged {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "restore never started extracting"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    (child, stdin)
}
