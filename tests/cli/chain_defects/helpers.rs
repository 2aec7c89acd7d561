//! What the chain-defect tests share: `create --base` and restores
//! by digest, WAL records and appends, mtimes, an incremental's
//! operations read with stock tar, refusals checked for their reason,
//! age keys, a tiny two-link chain, and `prune --keep-last 1`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, SystemTime};

use sydra_archive::sydradb::{encode_segment, wal_record};

use crate::support::*;

pub(super) fn create_on(data: &Path, out: &Path, base: &Path) -> Output {
    run(&["create", p(data), "-o", p(out), "--base", p(base), "--json"])
}

/// `create --base`, which must succeed.
pub(super) fn incr(data: &Path, out: &Path, base: &Path) {
    let o = create_on(data, out, base);
    expect_code(&o, 0);
    assert_eq!(json(&o)["kind"], "incremental", "{}", stdout(&o));
}

/// Restores `archive` into `dir` and returns the tree's digest.
pub(super) fn restored(archive: &Path, dir: &Path) -> String {
    let o = run(&["restore", p(archive), p(dir), "-q"]);
    expect_code(&o, 0);
    tree_digest(dir)
}

/// The digest of a restore of a full archive of `data` as it is now.
pub(super) fn full_digest(data: &Path, scratch: &Path, tag: &str) -> String {
    let f = scratch.join(format!("full-{tag}.tar.zst"));
    create(data, &f);
    restored(&f, &scratch.join(format!("rf-{tag}")))
}

pub(super) fn append(path: &Path, bytes: &[u8]) {
    use std::io::Write;
    let mut f = fs::OpenOptions::new().append(true).open(path).unwrap();
    f.write_all(bytes).unwrap();
}

pub(super) fn records(series: u64, from_ts: i64, n: usize) -> Vec<u8> {
    let mut v = Vec::new();
    for i in 0..n {
        v.extend(wal_record(series, from_ts + i as i64 * 10, i as f64));
    }
    v
}

pub(super) fn set_mtime(path: &Path, t: SystemTime) {
    let f = if fs::metadata(path).unwrap().is_dir() {
        fs::File::open(path).unwrap()
    } else {
        fs::File::options().write(true).open(path).unwrap()
    };
    f.set_modified(t).unwrap();
}

pub(super) fn hour_ago() -> SystemTime {
    SystemTime::now() - Duration::from_secs(3600)
}

/// The operations of an incremental, read with stock tar.
pub(super) fn changes(inc: &Path) -> Vec<serde_json::Value> {
    let o = Command::new("tar")
        .args([
            "--zstd",
            "-xOf",
            p(inc),
            "x-sydra-incremental/changes.ndjson",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Asserts a refusal: exit `want` and every one of `says` in stderr.
#[track_caller]
pub(super) fn refused(o: &Output, want: i32, says: &[&str], what: &str) {
    let e = stderr(o);
    assert_eq!(code(o), want, "{what}: stderr: {e}\nstdout: {}", stdout(o));
    for s in says {
        assert!(e.contains(s), "{what}: no {s:?} in: {e}");
    }
}

/// An age identity in a file, and its recipient.
pub(super) fn age_key(dir: &Path) -> (PathBuf, String) {
    use age::secrecy::ExposeSecret;
    let id = age::x25519::Identity::generate();
    let path = dir.join("key.txt");
    fs::write(&path, format!("{}\n", id.to_string().expose_secret())).unwrap();
    (path, id.to_public().to_string())
}

/// A tiny chain a0 <- a1 in `dir`, with a WAL append and a new segment.
pub(super) fn tiny_chain(t: &Path, dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let data = tiny_data(t);
    let a0 = dir.join("a0.tar.zst");
    create(&data, &a0);
    append(&data.join("wal/current.wal"), &wal_record(1, 3700, 5.0));
    fs::write(
        data.join("segments/3600/1-3620-3620-2.seg"),
        encode_segment(1, 3600, &[(3620, 2.0)]),
    )
    .unwrap();
    let a1 = dir.join("a1.tar.zst");
    incr(&data, &a1, &a0);
    (data, a0, a1)
}

/// `prune --keep-last 1 --yes` of `shelf` (with `extra` arguments).
pub(super) fn prune_last(shelf: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["prune", p(shelf), "--keep-last", "1", "--yes"];
    args.extend(extra);
    let o = run(&args);
    expect_code(&o, 0);
    o
}
