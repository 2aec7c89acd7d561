//! Corrupt, truncated, tampered and hostile archives all fail verification
//! with exit 1.

use std::fs;
use std::path::Path;

use sydra_archive::NullSink;
use sydra_archive::{Depth, read_archive_with};

use crate::support::*;

/// Verifies in process; a full check runs with data decoded as one
/// stream and decoded apart on 2 threads, which must agree.
fn lib_verify(bytes: &[u8], depth: Depth) -> sydra_archive::Result<()> {
    let one = read_archive_with(bytes, Path::new("mem"), depth, &mut NullSink, 1).map(|_| ());
    if depth == Depth::Full {
        let two = read_archive_with(bytes, Path::new("mem"), depth, &mut NullSink, 2).map(|_| ());
        assert_eq!(
            one.as_ref().map_err(|e| e.is_archive_fault()),
            two.as_ref().map_err(|e| e.is_archive_fault()),
            "1 and 2 decoding threads disagree: {one:?} / {two:?}"
        );
    }
    one
}

fn tiny_archive(t: &Path) -> Vec<u8> {
    let data = tiny_data(t);
    let out = t.join("tiny.tar.zst");
    create(&data, &out);
    fs::read(out).unwrap()
}

#[test]
fn every_single_byte_flip_is_caught_in_process() {
    let t = tempfile::tempdir().unwrap();
    let a = tiny_archive(t.path());
    lib_verify(&a, Depth::Full).unwrap();
    for i in 0..a.len() {
        for mask in [0x01u8, 0x80] {
            let mut b = a.clone();
            b[i] ^= mask;
            for depth in [Depth::Full, Depth::Quick] {
                match lib_verify(&b, depth) {
                    Err(e) if e.is_archive_fault() => {}
                    other => panic!("flip {mask:#x} at {i}/{} ({depth:?}): {other:?}", a.len()),
                }
            }
        }
    }
}

#[test]
fn every_truncation_and_extension_is_caught_in_process() {
    let t = tempfile::tempdir().unwrap();
    let a = tiny_archive(t.path());
    for len in 0..a.len() {
        for depth in [Depth::Full, Depth::Quick] {
            match lib_verify(&a[..len], depth) {
                Err(e) if e.is_archive_fault() => {}
                other => panic!("truncated to {len} ({depth:?}): {other:?}"),
            }
        }
    }
    for extra in [&[0u8][..], b"x", &[0u8; 64], &a[a.len() - 64..]] {
        let mut b = a.clone();
        b.extend_from_slice(extra);
        let e = lib_verify(&b, Depth::Full).unwrap_err();
        assert!(
            e.is_archive_fault() && e.to_string().contains("after the TAIL"),
            "{e}"
        );
    }
}

#[test]
fn byte_flips_through_the_binary_exit_1() {
    let t = tempfile::tempdir().unwrap();
    let data = small_data(t.path());
    let out = t.path().join("a.tar.zst");
    create(&data, &out);
    let a = fs::read(&out).unwrap();
    let parts = split2(&a);
    // Positions in every region, and at every frame boundary.
    let h_end = parts.data[0].0 as usize;
    let d_end = parts.index[0].0 as usize;
    let s_end = parts.meta_offset as usize;
    let mut positions = vec![
        0,
        4,
        8,
        15,
        16,
        h_end - 1,
        h_end,
        h_end + 4,
        d_end - 1,
        d_end,
        d_end + 8,
        d_end + 20,
        parts.table_offset as usize + 20,
        s_end - 1,
        s_end + 20,
    ];
    positions.extend((a.len() - 128..a.len()).step_by(5));
    positions.extend((0..a.len()).step_by(a.len() / 60));
    let bad = t.path().join("bad.tar.zst");
    for &i in &positions {
        let mut b = a.clone();
        b[i] ^= 0x20;
        fs::write(&bad, &b).unwrap();
        for args in [["verify", p(&bad), ""], ["verify", "--quick", p(&bad)]] {
            let args: Vec<&str> = args.into_iter().filter(|s| !s.is_empty()).collect();
            let o = run(&args);
            assert_eq!(code(&o), 1, "flip at {i}: {args:?}: {}", stderr(&o));
            assert_eq!(stderr(&o).lines().count(), 1, "{}", stderr(&o));
        }
    }
    for len in [0, 10, 16, h_end, h_end + 100, d_end, s_end, a.len() - 1] {
        fs::write(&bad, &a[..len]).unwrap();
        let o = run(&["verify", p(&bad)]);
        assert_eq!(code(&o), 1, "truncated to {len}: {}", stderr(&o));
    }
}

#[test]
fn crafted_control_archive_verifies() {
    // Proves the test writer is right, so the refusals below are for the
    // one thing each changes.
    let a = craft_members(&good());
    lib_verify(&a, Depth::Full).unwrap();
    lib_verify(&a, Depth::Quick).unwrap();
    let t = tempfile::tempdir().unwrap();
    let f = t.path().join("c.tar.zst");
    fs::write(&f, &a).unwrap();
    expect_code(&run(&["verify", p(&f)]), 0);
}

#[test]
fn unsupported_versions_are_refused() {
    let m = good();
    let mut head = head_for(&m);
    head["version"] = serde_json::json!(4);
    refused(
        &craft(&head, &raw_tar(&m), &sums_for(&m)),
        "unsupported archive version 4",
    );

    let mut a = craft_members(&m);
    let n = a.len();
    a[n - 48] = 2; // FOOT version
    refused(&a, "unsupported archive version 2");

    // Version 2: TAIL's version, unknown or not HEAD's (3 is an
    // incremental's).
    let mut c = Craft2::new(&m);
    c.tail = Box::new(|t| t[16] = 4);
    refused(&c.build(), "unsupported archive version 4");
    let mut c = Craft2::new(&m);
    c.tail = Box::new(|t| t[16] = 3);
    refused(&c.build(), "TAIL says version 3 but HEAD says version 2");
}

#[test]
fn wrong_or_missing_frames_are_refused() {
    let m = good();
    let head = serde_json::to_vec(&head_for(&m)).unwrap();
    let tar = zstd::encode_all(&raw_tar(&m)[..], 3).unwrap();
    let sums = serde_json::to_vec(&sums_for(&m)).unwrap();

    let mut body = skippable(b"SYDRSUMS", &head);
    body.extend(&tar);
    refused(&seal(body), "expected SYDRHEAD");

    let mut body = skippable(b"SYDRHEAD", &head);
    body.extend(skippable(b"SYDRSUMS", &sums));
    refused(&seal(body), "no zstd data frame");

    let mut body = skippable(b"SYDRHEAD", &head);
    body.extend(&tar);
    body.extend(skippable(b"SYDRXXXX", &sums));
    refused(&seal(body), "expected SYDRSUMS");

    let mut body = skippable(b"SYDRHEAD", &head);
    body.extend(&tar);
    body.extend(skippable(b"SYDRSUMS", &sums));
    refused(&body, "FOOT");

    let mut body = skippable(b"SYDRHEAD", b"{not json");
    body.extend(&tar);
    refused(&seal(body), "HEAD is not valid JSON");

    // An absurd HEAD length is refused before anything is allocated.
    let mut body = SKIP_MAGIC.to_le_bytes().to_vec();
    body.extend(u32::MAX.to_le_bytes());
    body.extend(b"SYDRHEAD{}");
    refused(&body, "exceeds the limit");
}

#[test]
fn members_must_match_head() {
    let m = good();
    let tar = raw_tar(&m);
    let sums = sums_for(&m);

    // tar member missing from HEAD
    let mut head = head_for(&m);
    head["entries"].as_array_mut().unwrap().pop();
    head["total_bytes"] = serde_json::json!(3);
    let short_sums = sums_for(&m[..2]);
    refused(&craft(&head, &tar, &short_sums), "not listed in HEAD");

    // HEAD entry missing from tar
    refused(
        &craft(&head_for(&m), &raw_tar(&m[..2]), &sums),
        "missing from the tar stream",
    );

    // path differs
    let mut other = good();
    other[2].path = "wal/other.wal".into();
    refused(
        &craft(&head_for(&m), &raw_tar(&other), &sums),
        "does not match HEAD entry",
    );

    // size differs: the member is larger than HEAD declares
    let mut big = good();
    big[2].data = vec![0u8; 1 << 20];
    refused(
        &craft(&head_for(&m), &raw_tar(&big), &sums),
        "HEAD declares 33",
    );

    // symlink member, even when HEAD calls it a file
    let mut link = good();
    link[2].kind = b'2';
    link[2].link = "/etc/passwd".into();
    link[2].data.clear();
    let mut lhead = head_for(&m);
    lhead["entries"][2]["size"] = serde_json::json!(0);
    lhead["total_bytes"] = serde_json::json!(3);
    let mut lsums = sums.clone();
    lsums["files"][1]["size"] = serde_json::json!(0);
    refused(&craft(&lhead, &raw_tar(&link), &lsums), "symlink");

    // hardlink member
    link[2].kind = b'1';
    refused(&craft(&lhead, &raw_tar(&link), &lsums), "hardlink");
}

#[test]
fn hostile_paths_are_refused() {
    for bad in [
        "wal/../../etc/x",
        "/etc/passwd",
        "other/file",
        "wal//x",
        "wal/./x",
    ] {
        let m = vec![dir("wal"), file(bad, b"x")];
        refused(&craft_members(&m), "hostile archive entry");
    }
    let m = vec![dir("wal"), file("wal/a", b"x"), file("wal/a", b"y")];
    refused(&craft_members(&m), "duplicate");
}

#[test]
fn tampered_content_with_recomputed_footer_is_refused() {
    let m = good();
    let mut tampered = good();
    tampered[2].data[5] ^= 1;
    // HEAD and SUMS describe the original; the tar holds other bytes of the
    // same size; the footer is recomputed over the tampered body.
    let a = craft(&head_for(&m), &raw_tar(&tampered), &sums_for(&m));
    refused(&a, "does not match its SHA-256 in SUMS");
    // --quick does not decompress, so it cannot see this; full verify must.
    lib_verify(&a, Depth::Quick).unwrap();
}

#[test]
fn tar_end_must_be_clean() {
    let m = good();
    let mut tar = raw_tar(&m);
    tar.truncate(tar.len() - 1024);
    refused(&craft(&head_for(&m), &tar, &sums_for(&m)), "end-of-archive");

    let mut tar = raw_tar(&m);
    tar.extend(b"junk after the end");
    refused(
        &craft(&head_for(&m), &tar, &sums_for(&m)),
        "after the end of the tar stream",
    );
}

/// Random damage of several bytes at once, and random truncations, never
/// panic any reader (the stream reader at both depths, the streamed
/// listing, the listing from the index at offsets): a poor man's fuzz run
/// that needs no nightly toolchain.
#[test]
fn random_damage_never_panics_a_reader() {
    let t = tempfile::tempdir().unwrap();
    let a = tiny_archive(t.path());
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for round in 0..10_000 {
        let mut b = a.clone();
        for _ in 0..1 + next() % 8 {
            let i = (next() % b.len() as u64) as usize;
            b[i] = next() as u8;
        }
        if round % 5 == 0 {
            b.truncate((next() % b.len() as u64) as usize);
        }
        let _ = lib_verify(&b, Depth::Full);
        let _ = lib_verify(&b, Depth::Quick);
        let mut seen = |_: &sydra_archive::Entry, _: Option<&[u8; 32]>| Ok(());
        let _ = sydra_archive::list_archive(&b[..], Path::new("mem"), true, &mut seen);
        let mut read_at = |at: u64, buf: &mut [u8]| -> std::io::Result<()> {
            let at = at as usize;
            match b.get(at..at.saturating_add(buf.len())) {
                Some(s) if at.checked_add(buf.len()).is_some() => {
                    buf.copy_from_slice(s);
                    Ok(())
                }
                _ => Err(std::io::ErrorKind::UnexpectedEof.into()),
            }
        };
        let _ = sydra_archive::list_from_end(b.len() as u64, &mut read_at, "mem", &mut seen);
    }
}

/// Decoding frames apart (`--threads 2`) and as one stream (`--threads 1`)
/// agree on every archive: the same summary for a sound one, and for each
/// damaged one (a byte flipped in every few, including in the frames read
/// ahead, INDEX blocks between them, TABLE, META and TAIL) a refusal by
/// both, never a panic or a hang. The archive has 4 KiB frames, so many
/// frames are in flight at once.
#[test]
fn parallel_decoding_agrees_with_one_stream() {
    let t = tempfile::tempdir().unwrap();
    let data = small_data(t.path());
    let out = t.path().join("framed.tar.zst");
    let o = run(&["create", p(&data), "-o", p(&out), "-q", "--frame-kib", "4"]);
    expect_code(&o, 0);
    let a = fs::read(&out).unwrap();
    let mut sink = NullSink;
    let one = read_archive_with(&a[..], Path::new("mem"), Depth::Full, &mut sink, 1).unwrap();
    let two = read_archive_with(&a[..], Path::new("mem"), Depth::Full, &mut sink, 2).unwrap();
    assert!(one.frames > 20, "only {} frames", one.frames);
    assert_eq!(
        (one.frames, one.sha256, one.info.files, one.info.total_bytes),
        (two.frames, two.sha256, two.info.files, two.info.total_bytes)
    );
    let step = (a.len() / 1500).max(1);
    for i in (0..a.len()).step_by(step) {
        let mut b = a.clone();
        b[i] ^= 0x20;
        for threads in [1, 2, 3] {
            match read_archive_with(&b[..], Path::new("mem"), Depth::Full, &mut sink, threads) {
                Err(e) if e.is_archive_fault() => {}
                other => panic!("flip at {i}/{} with {threads} threads: {other:?}", a.len()),
            }
        }
    }
}
