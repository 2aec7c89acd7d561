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

/// A restore as a user other than the archive's owner, of a directory
/// without its search bit: the files' nanoseconds are set before the
/// directories' modes take the search bit away (they were set after, and
/// the restore failed "permission denied").
#[test]
fn a_directory_without_search_bit_restores_as_another_user() {
    if !root_tests("a restore as another user (setpriv)") {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let data = data_with_nsec(t.path());
    let seg = fs::read_dir(data.join("segments"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.is_dir())
        .unwrap();
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&seg, fs::Permissions::from_mode(0o600)).unwrap();
    let a = t.path().join("a.tar.zst");
    create(&data, &a);
    let home = t.path().join("nobody");
    fs::create_dir(&home).unwrap();
    fs::set_permissions(t.path(), fs::Permissions::from_mode(0o755)).unwrap();
    fs::set_permissions(&a, fs::Permissions::from_mode(0o644)).unwrap();
    std::os::unix::fs::chown(&home, Some(65534), Some(65534)).unwrap();
    let r = home.join("r");
    let o = std::process::Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
        ])
        .arg(env!("CARGO_BIN_EXE_sydra-archive"))
        .args(["restore", p(&a), p(&r), "-q"])
        .env("HOME", &home)
        .env("SYDRA_ARCHIVE_CACHE_DIR", "off")
        .output()
        .unwrap();
    expect_code(&o, 0);
    fs::set_permissions(
        r.join(seg.strip_prefix(&data).unwrap()),
        fs::Permissions::from_mode(0o700),
    )
    .unwrap();
    fs::set_permissions(&seg, fs::Permissions::from_mode(0o700)).unwrap();
    assert_eq!(mtime(&r.join("tags.json")), (1_790_000_000, 123_456_789));
}

/// On a filesystem that keeps whole seconds (ext4 with 128-byte inodes),
/// a chain restores (its staged tree compared to the second) instead of
/// being called corrupt.
#[test]
fn a_chain_restores_onto_a_filesystem_of_whole_seconds() {
    if !root_tests("a loop-mounted ext4 of 128-byte inodes") {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let data = data_with_nsec(t.path());
    let a0 = t.path().join("a0.tar.zst");
    create(&data, &a0);
    set_mtime(&data.join("tags.json"), 1_790_000_005, 5);
    let a1 = t.path().join("a1.tar.zst");
    expect_code(
        &run(&["create", p(&data), "-o", p(&a1), "--base", p(&a0), "-q"]),
        0,
    );
    let img = t.path().join("fs.img");
    fs::File::create(&img).unwrap().set_len(32 << 20).unwrap();
    let sh = |cmd: &str| {
        let o = std::process::Command::new("sh")
            .args(["-c", cmd])
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "{cmd}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    };
    let m = t.path().join("m");
    fs::create_dir(&m).unwrap();
    sh(&format!(
        "mkfs.ext4 -q -F -I 128 {} && mount -o loop {} {}",
        p(&img),
        p(&img),
        p(&m)
    ));
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(&self.0).status();
        }
    }
    let _u = Unmount(m.clone());
    let r = m.join("r");
    let o = run(&["restore", p(&a1), p(&r), "-q"]);
    expect_code(&o, 0);
    assert_eq!(mtime(&r.join("tags.json")), (1_790_000_005, 0));
    assert_eq!(tree_digest_seconds(&r), tree_digest_seconds(&data));
}

/// An index that repeats records (with nanoseconds) is refused as the
/// block that lists more records than the members before it comes, before
/// anything grows with it.
#[test]
fn repeated_index_records_are_refused_as_they_come() {
    let t = tempfile::tempdir().unwrap();
    let mut c = Craft2::new(&[
        dir("segments"),
        file("segments/a.seg", b"a"),
        dir("wal"),
        file("wal/current.wal", b""),
    ]);
    c.records = Box::new(|r| {
        for x in r.iter_mut() {
            x.nsec = Some(7);
        }
        let again = r.clone();
        r.extend(again);
    });
    let a = t.path().join("a.tar.zst");
    fs::write(&a, c.build()).unwrap();
    let o = run(&["restore", p(&a), p(&t.path().join("r")), "-q"]);
    expect_code(&o, 1);
    assert!(
        stderr(&o).contains("more than the 4 members before it"),
        "{}",
        stderr(&o)
    );
    assert!(!t.path().join("r").exists());
}

/// TAIL's flag cleared on an archive whose records carry nanoseconds (the
/// flag is outside TAIL's hashes): `create --base` on it refuses, as every
/// other reader does (it took it, and wrote an incremental).
#[test]
fn a_base_whose_tail_flag_disagrees_with_its_records_is_refused() {
    let t = tempfile::tempdir().unwrap();
    let data = tiny_data(t.path());
    let a = t.path().join("a.tar.zst");
    create(&data, &a);
    let mut b = fs::read(&a).unwrap();
    let at = b.len() - 128 + 20;
    assert_eq!(b[at], 1);
    b[at] = 0;
    let flipped = t.path().join("flipped.tar.zst");
    fs::write(&flipped, &b).unwrap();
    expect_code(&run(&["list", p(&flipped)]), 1);
    let inc = t.path().join("inc.tar.zst");
    let o = run(&["create", p(&data), "-o", p(&inc), "--base", p(&flipped)]);
    expect_code(&o, 1);
    assert!(stderr(&o).contains("nanoseconds"), "{}", stderr(&o));
    assert!(!inc.exists());
}

/// A version-1 HEAD has whole seconds: an `mtime_nsec` in its entries is
/// not read (it was, unchecked: a time 1.5 s late, or a panic at the
/// largest mtime).
#[test]
fn a_version_1_head_with_nanoseconds_keeps_whole_seconds() {
    let t = tempfile::tempdir().unwrap();
    let members = good();
    let mut head = head_for(&members);
    for e in head["entries"].as_array_mut().unwrap() {
        e["mtime_nsec"] = serde_json::json!(1_500_000_000u64);
    }
    let f = t.path().join("v1.tar.zst");
    fs::write(&f, craft(&head, &raw_tar(&members), &sums_for(&members))).unwrap();
    let r = t.path().join("r");
    expect_code(&run(&["restore", p(&f), p(&r), "-q"]), 0);
    assert_eq!(mtime(&r.join("MANIFEST")).1, 0);
    head["entries"][0]["mtime"] = serde_json::json!(i64::MAX);
    fs::write(&f, craft(&head, &raw_tar(&members), &sums_for(&members))).unwrap();
    let o = run(&["restore", p(&f), p(&t.path().join("r2")), "-q"]);
    assert!(matches!(o.status.code(), Some(0..=2)), "{}", stderr(&o));
}
