//! Memory stays bounded whatever the number of files: synthetic archives
//! of many entries (made in memory by the library's own writer, no data
//! dir needed) are verified, listed and read from a pipe within a fixed
//! peak RSS, and ten times the entries cost (almost) nothing more.

use std::fs::File;
use std::path::Path;
use std::process::Stdio;

use crate::support::*;

/// Peak RSS allowed for any command (the project's target).
const MAX_RSS: u64 = 64 << 20;
/// What ten times the entries may add to the peak.
const MAX_GROWTH: u64 = 8 << 20;

fn synthetic(path: &Path, files: u64) {
    let f = File::create(path).unwrap();
    let w = std::io::BufWriter::new(f);
    // Two hour directories: one of them is large.
    sydra_archive::write_synthetic(w, files, 40, files / 2 + 1, 2).unwrap();
}

/// Runs the binary and returns its exit code and its own peak RSS in
/// bytes (from `wait4`, so other tests' children do not count).
fn peak_rss(args: &[&str], stdin: Option<&Path>) -> (i32, u64) {
    let mut c = bin();
    c.args(args).stdout(Stdio::null()).stderr(Stdio::null());
    match stdin {
        Some(p) => c.stdin(File::open(p).unwrap()),
        None => c.stdin(Stdio::null()),
    };
    let child = c.spawn().unwrap();
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: an all-zero rusage is valid.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waits for our own child, with valid out pointers; the Child
    // is forgotten so it is not waited for again.
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    std::mem::forget(child);
    assert_eq!(r, pid, "wait4: {}", std::io::Error::last_os_error());
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        -1
    };
    (code, usage.ru_maxrss as u64 * 1024)
}

#[test]
fn many_entries_are_read_in_bounded_memory() {
    let t = tempfile::tempdir().unwrap();
    let small = t.path().join("small.tar.zst");
    let big = t.path().join("big.tar.zst");
    synthetic(&small, 20_000);
    synthetic(&big, 200_000);
    let commands: [(&[&str], bool); 5] = [
        (&["verify"], false),
        (&["verify", "--quick"], false),
        (&["list", "--json"], false),
        (&["list", "--sha256"], false),
        (&["verify", "-"], true),
    ];
    for (args, piped) in commands {
        let mut peaks = Vec::new();
        for archive in [&small, &big] {
            let mut argv = args.to_vec();
            if !piped {
                argv.push(p(archive));
            }
            let (code, rss) = peak_rss(&argv, piped.then_some(archive.as_path()));
            assert_eq!(code, 0, "{argv:?}");
            assert!(rss <= MAX_RSS, "{argv:?}: peak RSS {} MiB", rss >> 20);
            peaks.push(rss);
        }
        assert!(
            peaks[1] <= peaks[0] + MAX_GROWTH,
            "{args:?}: peak RSS {} KiB at 20,000 entries, {} KiB at 200,000",
            peaks[0] >> 10,
            peaks[1] >> 10
        );
    }
}
