//! Defects in how a chain's bases are found and trusted: a forged base
//! below the newest link or as its own base, a base swapped for a FIFO,
//! a base named in bytes that are not UTF-8, and what `verify --chain`
//! (with and without `--read-data`) checks and says.

use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::process::Stdio;

use sydra_archive::sydradb::wal_record;

use crate::support::*;

use super::helpers::{append, create_on, refused, tiny_chain};

/// `a`'s bytes with one digit of HEAD's `created_unix_ms` changed: the
/// same size and the same TAIL (whose body_sha256 is now a lie), every
/// frame still well formed.
fn forged(a: &[u8]) -> Vec<u8> {
    let key = b"\"created_unix_ms\":";
    let at = a
        .windows(key.len())
        .position(|w| w == key)
        .expect("HEAD records created_unix_ms")
        + key.len();
    let mut b = a.to_vec();
    b[at] = if b[at] == b'1' { b'2' } else { b'1' };
    assert_eq!(b.len(), a.len());
    assert_eq!(b[b.len() - 128..], a[a.len() - 128..]);
    b
}

// ---------------------------------------------------------------------
// 1. A forged base below the newest link.

#[test]
fn d01_a_forged_base_below_the_newest_link_is_refused_by_every_reader() {
    let t = tempfile::tempdir().unwrap();
    let (data, a0, a1) = tiny_chain(t.path(), t.path());
    append(&data.join("wal/current.wal"), &wal_record(1, 3800, 6.0));
    let good = fs::read(&a0).unwrap();
    fs::write(&a0, forged(&good)).unwrap();
    let a2 = t.path().join("a2.tar.zst");
    let o = create_on(&data, &a2, &a1);
    refused(
        &o,
        1,
        &["corrupt archive", "hashes to", "a0.tar.zst"],
        "create",
    );
    assert!(!a2.exists());
    let x = t.path().join("tags");
    for (what, args) in [
        ("verify --chain", vec!["verify", "--chain", p(&a1)]),
        ("list", vec!["list", p(&a1)]),
        ("extract", vec!["extract", p(&a1), "tags.json", "-o", p(&x)]),
    ] {
        let o = run(&args);
        assert_ne!(code(&o), 0, "{what}: {}", stdout(&o));
        refused(&o, code(&o), &["hashes to", "a0.tar.zst"], what);
    }
    assert!(!x.exists());
    // The real a0 back: everything works.
    fs::write(&a0, &good).unwrap();
    expect_code(&create_on(&data, &a2, &a1), 0);
    expect_code(&run(&["verify", "--chain", p(&a2)]), 0);
    expect_code(&run(&["list", p(&a1)]), 0);
    expect_code(&run(&["extract", p(&a1), "tags.json", "-o", p(&x)]), 0);
    assert_eq!(
        fs::read(&x).unwrap(),
        fs::read(data.join("tags.json")).unwrap()
    );
}

// ---------------------------------------------------------------------
// 9. A base swapped for a FIFO.

#[test]
fn d09_a_base_swapped_for_a_fifo_is_refused_promptly() {
    let t = tempfile::tempdir().unwrap();
    let (data, a0, a1) = tiny_chain(t.path(), t.path());
    fs::remove_file(&a0).unwrap();
    let c = std::ffi::CString::new(p(&a0)).unwrap();
    // SAFETY: mkfifo(3) on a path we own.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let a2 = t.path().join("a2.tar.zst");
    for (what, args) in [
        ("list", vec!["list", p(&a1)]),
        ("verify --chain", vec!["verify", "--chain", p(&a1)]),
        ("restore", vec!["restore", p(&a1), p(&t.path().join("r"))]),
        (
            "create --base",
            vec!["create", p(&data), "-o", p(&a2), "--base", p(&a1)],
        ),
    ] {
        let o = run_bounded(&args);
        refused(&o, 2, &["not a regular file", "a0.tar.zst"], what);
    }
    assert!(!a2.exists() && !t.path().join("r").exists());
}

// ---------------------------------------------------------------------
// 15. A base whose file name is not UTF-8.

#[test]
fn d15_a_base_named_in_bytes_that_are_not_utf8_is_refused() {
    let t = tempfile::tempdir().unwrap();
    let data = tiny_data(t.path());
    let a0 = t.path().join("a0.tar.zst");
    create(&data, &a0);
    let odd = t.path().join(OsStr::from_bytes(b"base\xff.tar.zst"));
    fs::rename(&a0, &odd).unwrap();
    let out = t.path().join("a1.tar.zst");
    let o = bin()
        .args(["create", p(&data), "-o", p(&out), "--base"])
        .arg(&odd)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    refused(
        &o,
        2,
        &["not UTF-8", "cannot write an incremental"],
        "create --base",
    );
    assert!(!out.exists());
}

// ---------------------------------------------------------------------
// 16. verify --chain and --read-data.

#[test]
fn d16_verify_chain_says_what_it_checked_and_finds_a_flipped_base() {
    let t = tempfile::tempdir().unwrap();
    let (_data, a0, a1) = tiny_chain(t.path(), t.path());
    let o = run(&["verify", "--chain", p(&a1)]);
    expect_code(&o, 0);
    assert!(stderr(&o).contains("--read-data"), "{}", stderr(&o));
    assert!(stderr(&o).contains("chain of 2 archives"), "{}", stderr(&o));
    let o = run(&["verify", "--chain", "--read-data", p(&a1)]);
    expect_code(&o, 0);
    assert!(
        stderr(&o).contains("every byte of every base read"),
        "{}",
        stderr(&o)
    );
    // One byte flipped in a data frame of the base.
    let good = fs::read(&a0).unwrap();
    let parts = split2(&good);
    let (at, frame) = &parts.data[0];
    let mut b = good.clone();
    b[*at as usize + frame.len() / 2] ^= 0x10;
    fs::write(&a0, &b).unwrap();
    // A corrupted base is an archive fault (exit 1) in both modes, named.
    let o = run(&["verify", "--chain", p(&a1)]);
    refused(&o, 1, &["hashes to", "a0.tar.zst"], "verify --chain");
    let o = run(&["verify", "--chain", "--read-data", p(&a1)]);
    refused(
        &o,
        1,
        &["a0.tar.zst, the base of", "hashes to"],
        "verify --chain --read-data",
    );
}

// ---------------------------------------------------------------------
// Regressions.

/// The forged base as the newest link's own base: restore and verify
/// refuse it by its whole SHA-256 too.
#[test]
fn r_a_forged_direct_base_is_refused_by_restore() {
    let t = tempfile::tempdir().unwrap();
    let (_data, a0, a1) = tiny_chain(t.path(), t.path());
    let good = fs::read(&a0).unwrap();
    fs::write(&a0, forged(&good)).unwrap();
    let r = t.path().join("r");
    let o = run(&["restore", p(&a1), p(&r)]);
    // restore reads the base whole: its bytes do not hash to its TAIL.
    refused(
        &o,
        1,
        &["does not match TAIL", "a0.tar.zst, a base of"],
        "restore",
    );
    assert!(!r.exists());
    assert!(leftovers(t.path()).is_empty(), "{:?}", leftovers(t.path()));
    let o = run(&["verify", "--chain", p(&a1)]);
    refused(&o, code(&o), &["hashes to"], "verify --chain");
    assert_ne!(code(&o), 0);
}
