//! Ranged downloads: `extract` reads only what it needs, an object
//! overwritten mid-read fails cleanly, cut responses are retried piece by
//! piece.

use std::process::Stdio;
use std::sync::atomic::Ordering;

use crate::support::*;

use super::bulk::*;
use super::proxies::*;
use super::server::*;

#[test]
fn extract_from_an_object_reads_only_what_it_needs() {
    let Some(s3) = Server::start() else { return };
    let t = tempfile::tempdir().unwrap();
    let data = small_data(t.path());
    let key = "sydradb/extract.tar.zst";
    let o = s3.run(&[
        "create",
        p(&data),
        "-o",
        &url(key),
        "-q",
        "--frame-kib",
        "4",
    ]);
    expect_code(&o, 0);
    let dest = t.path().join("x");
    let o = s3.run(&[
        "extract",
        &url(key),
        "tags.json",
        "wal/*.wal",
        "-C",
        p(&dest),
        "--json",
    ]);
    expect_code(&o, 0);
    let j = json(&o);
    assert_eq!(j["streamed"], false);
    // The probe, TAIL, TABLE+META, the INDEX block and one ranged read per
    // run of frames that holds a wanted file.
    assert!(j["reads"].as_u64().unwrap() <= 10, "{j}");
    // Every extracted file equals the source: the WAL files by the glob,
    // the segments by their directory.
    assert_eq!(
        std::fs::read(dest.join("tags.json")).unwrap(),
        std::fs::read(data.join("tags.json")).unwrap()
    );
    let o = s3.run(&["extract", &url(key), "segments", "-C", p(&dest)]);
    expect_code(&o, 0);
    for d in ["wal", "segments"] {
        assert_eq!(
            tree_digest(&dest.join(d)),
            tree_digest(&data.join(d)),
            "{d}"
        );
    }

    // A tampered INDEX block: refused before any data frame is fetched,
    // nothing written.
    let file = s3.object_file(key);
    let good = std::fs::read(&file).unwrap();
    let parts = split2(&good);
    let mut bad = good.clone();
    bad[parts.index[0].0 as usize + 30] ^= 1;
    std::fs::write(&file, &bad).unwrap();
    let dest2 = t.path().join("tampered");
    let o = s3.run(&["extract", &url(key), "tags.json", "-C", p(&dest2)]);
    expect_code(&o, 1);
    assert!(
        stderr(&o).contains("does not match its row"),
        "{}",
        stderr(&o)
    );
    assert!(!dest2.join("tags.json").exists());
    std::fs::write(&file, &good).unwrap();
    // A pattern that matches nothing: exit 2, nothing written.
    let o = s3.run(&["extract", &url(key), "nope", "-C", p(&t.path().join("y"))]);
    expect_code(&o, 2);
    assert!(
        stderr(&o).contains("\"nope\" matches nothing"),
        "{}",
        stderr(&o)
    );
}

/// An object overwritten while `verify` and `restore` fetch it with
/// several ranged GETs in flight: the command fails saying the object
/// changed (nothing restored, nothing left behind); no two versions are
/// mixed. A proxy holds the responses once 4 MiB of the 64 MiB came
/// through; the object is replaced meanwhile by a much smaller archive:
/// no timing is assumed. (S3 refuses the GETs after the overwrite by the
/// ETag they are pinned to, 412; s3s-fs ignores If-Match on GET, so here
/// the ranges past the new end are refused, 416: both read as a change.)
#[test]
fn an_object_overwritten_mid_read_fails_cleanly() {
    let Some(s3) = Server::start() else { return };
    let t = tempfile::tempdir().unwrap();
    let data = incompressible_data(t.path(), 64);
    let other = small_data(t.path());
    let key = "moving.tar.zst";
    let restore_to = t.path().join("restored");
    let server_port: u16 = s3.endpoint().rsplit(':').next().unwrap().parse().unwrap();
    for cmd in ["verify", "restore"] {
        expect_code(
            &s3.run(&["create", p(&data), "-o", &url(key), "-q", "--force"]),
            0,
        );
        let gate = GateProxy::start(server_port, 4 << 20);
        let u = url(key);
        let mut args = vec![cmd, &u as &str, "--concurrency", "4", "--progress", "none"];
        if cmd == "restore" {
            args.push(p(&restore_to));
        }
        let child = s3
            .cmd()
            .env("AWS_ENDPOINT_URL", gate.endpoint())
            .args(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        gate.wait_holding();
        expect_code(
            &s3.run(&["create", p(&other), "-o", &url(key), "-q", "--force"]),
            0,
        );
        gate.open();
        let o = child.wait_with_output().unwrap();
        expect_code(&o, 2);
        assert!(
            stderr(&o).contains("changed while it was being read"),
            "{cmd}: {}",
            stderr(&o)
        );
        assert!(!restore_to.exists());
        assert_eq!(leftovers(t.path()), Vec::<String>::new());
    }
}

/// Responses cut mid-body: each piece of a download is retried on its
/// own, and the archive still verifies and restores whole; the restore
/// from an object stays within 64 MiB with 8 GETs in flight.
#[test]
fn cut_downloads_are_retried_piece_by_piece() {
    let Some(s3) = Server::start() else { return };
    let t = tempfile::tempdir().unwrap();
    let data = incompressible_data(t.path(), 24);
    let key = "cut.tar.zst";
    expect_code(&s3.run(&["create", p(&data), "-o", &url(key), "-q"]), 0);
    let server_port: u16 = s3.endpoint().rsplit(':').next().unwrap().parse().unwrap();
    let gate = GateProxy::start_cutting(server_port, usize::MAX, 3);
    let o = s3
        .cmd()
        .env("AWS_ENDPOINT_URL", gate.endpoint())
        .args(["verify", &url(key), "--concurrency", "4"])
        .output()
        .unwrap();
    expect_code(&o, 0);
    assert_eq!(gate.cut.load(Ordering::SeqCst), 3);
    let dest = t.path().join("restored");
    let child = s3
        .cmd()
        .args(["restore", &url(key), p(&dest), "-q", "--concurrency", "8"])
        .spawn()
        .unwrap();
    let (code, peak_kib) = wait_rss(child);
    assert_eq!(code, 0);
    assert!(peak_kib <= 64 * 1024, "restore peaked at {peak_kib} KiB");
    assert_eq!(tree_digest(&dest), tree_digest(&data));
}
