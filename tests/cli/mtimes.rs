//! Sub-second modification times: kept by every way out of an archive
//! (restore from a file and from a pipe, a chain, extract), used by
//! `create --base` to tell a change, and never demanded of archives
//! written before records carried them.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, UNIX_EPOCH};

use crate::support::*;

/// Sets `path`'s mtime to `sec` seconds and `nsec` nanoseconds.
fn set_mtime(path: &Path, sec: u64, nsec: u32) {
    let f = if fs::metadata(path).unwrap().is_dir() {
        fs::File::open(path).unwrap()
    } else {
        fs::File::options().write(true).open(path).unwrap()
    };
    f.set_modified(UNIX_EPOCH + Duration::new(sec, nsec))
        .unwrap();
}

fn mtime(path: &Path) -> (i64, i64) {
    let m = fs::symlink_metadata(path).unwrap();
    (m.mtime(), m.mtime_nsec())
}

/// Tiny data with sub-second times on a file, a segment and a directory.
fn data_with_nsec(t: &Path) -> std::path::PathBuf {
    let data = tiny_data(t);
    set_mtime(&data.join("tags.json"), 1_790_000_000, 123_456_789);
    set_mtime(&data.join("MANIFEST"), 1_790_000_001, 1);
    set_mtime(&data.join("segments"), 1_790_000_002, 999_999_999);
    data
}

#[test]
fn restore_keeps_nanoseconds_from_a_file_and_from_a_pipe() {
    let t = tempfile::tempdir().unwrap();
    let data = data_with_nsec(t.path());
    let a = t.path().join("a.tar.zst");
    create(&data, &a);
    let r = t.path().join("r");
    expect_code(&run(&["restore", p(&a), p(&r), "-q"]), 0);
    assert_eq!(tree_digest(&r), tree_digest(&data));
    assert_eq!(mtime(&r.join("tags.json")), (1_790_000_000, 123_456_789));
    assert_eq!(mtime(&r.join("segments")), (1_790_000_002, 999_999_999));
    // From a pipe: the nanoseconds come from the index, after the data.
    let piped = t.path().join("piped");
    let o = run_stdin(&["restore", "-", p(&piped), "-q"], &fs::read(&a).unwrap());
    expect_code(&o, 0);
    assert_eq!(tree_digest(&piped), tree_digest(&data));
    // Stock tar sees whole seconds (the tar header's), the same second.
    let x = t.path().join("x");
    fs::create_dir(&x).unwrap();
    let o = std::process::Command::new("tar")
        .args(["--zstd", "-xf", p(&a), "-C", p(&x)])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(mtime(&x.join("tags.json")), (1_790_000_000, 0));
}

#[test]
fn extract_keeps_nanoseconds_of_files_and_directories() {
    let t = tempfile::tempdir().unwrap();
    let data = data_with_nsec(t.path());
    let a = t.path().join("a.tar.zst");
    create(&data, &a);
    let x = t.path().join("x");
    expect_code(
        &run(&["extract", p(&a), "tags.json", "segments", "-C", p(&x), "-q"]),
        0,
    );
    assert_eq!(mtime(&x.join("tags.json")), (1_790_000_000, 123_456_789));
    assert_eq!(mtime(&x.join("segments")), (1_790_000_002, 999_999_999));
}

#[test]
fn a_change_of_nanoseconds_alone_is_a_change_and_a_chain_restores_them() {
    let t = tempfile::tempdir().unwrap();
    let data = data_with_nsec(t.path());
    let a0 = t.path().join("a0.tar.zst");
    create(&data, &a0);
    // The same second, another nanosecond: tags.json is carried again.
    set_mtime(&data.join("tags.json"), 1_790_000_000, 123_456_790);
    let a1 = t.path().join("a1.tar.zst");
    let o = run(&["create", p(&data), "-o", p(&a1), "--base", p(&a0), "--json"]);
    expect_code(&o, 0);
    let l = run(&["list", p(&a1), "--json"]);
    expect_code(&l, 0);
    let carried: Vec<String> = json(&l)["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["carried"] == true)
        .map(|e| e["path"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(carried, ["tags.json"], "what the incremental carries");
    let r = t.path().join("r");
    expect_code(&run(&["restore", p(&a1), p(&r), "-q"]), 0);
    assert_eq!(tree_digest(&r), tree_digest(&data));
    assert_eq!(mtime(&r.join("tags.json")), (1_790_000_000, 123_456_790));
    expect_code(&run(&["verify", "--chain", "--read-data", p(&a1), "-q"]), 0);
}

/// An archive whose records hold whole seconds (written before records
/// carried nanoseconds: the golden vector) restores them as they are, and
/// an incremental on it does not take every file for changed for want
/// of nanoseconds.
#[test]
fn an_archive_of_whole_seconds_reads_and_bases_an_incremental() {
    let t = tempfile::tempdir().unwrap();
    let golden = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/golden-v2.tar.zst");
    let r = t.path().join("r");
    expect_code(&run(&["restore", p(&golden), p(&r), "-q"]), 0);
    assert_eq!(mtime(&r.join("tags.json")).1, 0);
    // The data dir as the golden archive describes it, each time given a
    // fraction of a second: the same files to an archive of whole seconds.
    let data = t.path().join("data");
    fs::rename(&r, &data).unwrap();
    let mut dirs = Vec::new();
    for e in walk(&data) {
        let (sec, _) = mtime(&e);
        if e.is_dir() {
            dirs.push((e, sec));
        } else {
            set_mtime(&e, sec as u64, 500_000_000);
        }
    }
    for (d, sec) in dirs.into_iter().rev() {
        set_mtime(&d, sec as u64, 500_000_000);
    }
    let base = t.path().join("golden.tar.zst");
    fs::copy(&golden, &base).unwrap();
    let inc = t.path().join("inc.tar.zst");
    let o = run(&[
        "create",
        p(&data),
        "-o",
        p(&inc),
        "--base",
        p(&base),
        "--json",
    ]);
    expect_code(&o, 0);
    let l = run(&["list", p(&inc), "--json"]);
    expect_code(&l, 0);
    let carried: Vec<String> = json(&l)["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["carried"] == true)
        .map(|e| e["path"].as_str().unwrap().to_string())
        .collect();
    assert!(
        carried.is_empty(),
        "unchanged files were carried: {carried:?}"
    );
}

/// Every path below `root`, parents before children.
fn walk(root: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            out.push(p.clone());
            if p.is_dir() {
                stack.push(p);
            }
        }
    }
    out
}

#[test]
fn new_archives_say_so_in_their_tail_and_records() {
    let t = tempfile::tempdir().unwrap();
    let data = data_with_nsec(t.path());
    let a = t.path().join("a.tar.zst");
    create(&data, &a);
    let b = fs::read(&a).unwrap();
    // TAIL's flags (bytes 20..24 of the last 128): bit 0.
    let tail = &b[b.len() - 128..];
    assert_eq!(u32::from_le_bytes(tail[20..24].try_into().unwrap()), 1);
    // A reader that knows no such flag refuses it: a flag it does not know
    // is refused the same way.
    let mut other = b.clone();
    let at = other.len() - 128 + 20;
    other[at] = 2;
    let bad = t.path().join("bad.tar.zst");
    fs::write(&bad, &other).unwrap();
    let o = run(&["list", p(&bad)]);
    expect_code(&o, 1);
    assert!(stderr(&o).contains("flags"), "{}", stderr(&o));
}
