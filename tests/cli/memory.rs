//! Memory stays bounded whatever the number of files: synthetic archives
//! of many entries (made in memory by the library's own writer, no data
//! dir needed) are verified, listed and read from a pipe within a fixed
//! peak RSS, and ten times the entries cost (almost) nothing more.

use std::fs::File;
use std::path::Path;
use std::process::{Command, Stdio};

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
/// bytes. A child's `ru_maxrss` counts the RSS of whoever spawned it (the
/// kernel carries the old address space's peak across `exec`), and this
/// test process is large: the binary is started by a small python
/// process instead, which reports its child's peak.
fn peak_rss(args: &[&str], stdin: Option<&Path>) -> (i32, u64) {
    let script = r#"
import resource, subprocess, sys
stdin = open(sys.argv[1], "rb") if sys.argv[1] else subprocess.DEVNULL
# Write-only /dev/null: a read-write one is what a closed stdout becomes.
sink = open("/dev/null", "wb")
code = subprocess.run(sys.argv[2:], stdin=stdin, stdout=sink, stderr=sink).returncode
print(code, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
"#;
    let out = Command::new("python3")
        .args([
            "-c",
            script,
            stdin.map_or("", p),
            env!("CARGO_BIN_EXE_sydra-archive"),
        ])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut it = text.split_whitespace();
    let code: i32 = it
        .next()
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("{text}"));
    let kib: u64 = it
        .next()
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("{text}"));
    (code, kib * 1024)
}

#[test]
fn many_entries_are_read_in_bounded_memory() {
    let t = tempfile::tempdir().unwrap();
    let small = t.path().join("small.tar.zst");
    let big = t.path().join("big.tar.zst");
    synthetic(&small, 20_000);
    synthetic(&big, 200_000);
    let dest = t.path().join("extracted");
    let commands: [(&[&str], bool); 7] = [
        (&["verify"], false),
        (&["verify", "--threads", "2"], false),
        (&["verify", "--quick"], false),
        (&["list", "--json"], false),
        (&["list", "--sha256"], false),
        (&["verify", "-"], true),
        (
            &["extract", "{}", "MANIFEST", "--force", "-C", p(&dest)],
            false,
        ),
    ];
    for (args, piped) in commands {
        let measure = || {
            let mut peaks = Vec::new();
            for archive in [&small, &big] {
                let mut argv = args.to_vec();
                if let Some(at) = argv.iter().position(|a| *a == "{}") {
                    argv[at] = p(archive);
                } else if !piped {
                    argv.push(p(archive));
                }
                let (code, rss) = peak_rss(&argv, piped.then_some(archive.as_path()));
                assert_eq!(code, 0, "{argv:?}");
                assert!(rss <= MAX_RSS, "{argv:?}: peak RSS {} MiB", rss >> 20);
                peaks.push(rss);
            }
            peaks
        };
        let mut peaks = measure();
        if peaks[1] > peaks[0] + MAX_GROWTH {
            // On a loaded machine threads run late and a peak can be a
            // little higher: measured again, the lower peak of each counts
            // (growth with the entries shows in both runs).
            let again = measure();
            peaks = vec![peaks[0].min(again[0]), peaks[1].min(again[1])];
        }
        assert!(
            peaks[1] <= peaks[0] + MAX_GROWTH,
            "{args:?}: peak RSS {} KiB at 20,000 entries, {} KiB at 200,000",
            peaks[0] >> 10,
            peaks[1] >> 10
        );
    }
}
