//! Multipart uploads: 300 MiB within 128 MiB of memory, killed or
//! interrupted uploads leave no object, failed parts are retried and a
//! failed upload is aborted.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::support::*;

use super::bulk::*;
use super::proxies::*;
use super::server::*;

#[test]
fn multipart_upload_of_300_mib_stays_within_128_mib() {
    let Some(s3) = Server::start() else { return };
    let t = tempfile::tempdir().unwrap();
    let data = incompressible_data(t.path(), 300);
    let key = "big.tar.zst";
    let mut child = s3
        .cmd()
        .args(["create", p(&data), "-o", &url(key), "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let read_all = |mut r: Box<dyn std::io::Read + Send>| {
        std::thread::spawn(move || {
            let mut s = String::new();
            r.read_to_string(&mut s).unwrap();
            s
        })
    };
    let outs = read_all(Box::new(child.stdout.take().unwrap()));
    let errs = read_all(Box::new(child.stderr.take().unwrap()));
    let (code, rss_kib) = wait_rss(child);
    let (out, err) = (outs.join().unwrap(), errs.join().unwrap());
    assert_eq!(code, 0, "{err}");
    let j: serde_json::Value = serde_json::from_str(&out).unwrap();
    let bytes = j["bytes"].as_u64().unwrap();
    assert!(bytes > 300 << 20, "{bytes}");
    let parts = j["object"]["parts"].as_u64().unwrap();
    let part_size = j["object"]["part_size"].as_u64().unwrap();
    assert_eq!(parts, bytes.div_ceil(part_size), "{j}");
    assert!(parts >= 30, "{parts}");
    eprintln!("300 MiB upload: {parts} parts of {part_size} bytes, peak RSS {rss_kib} KiB");
    assert!(
        rss_kib > 4 * 1024,
        "peak RSS was not measured: {rss_kib} KiB"
    );
    assert!(rss_kib < 128 * 1024, "peak RSS {rss_kib} KiB");
    // What arrived is whole.
    let o = s3.run(&["verify", &url(key)]);
    expect_code(&o, 0);
    assert!(stdout(&o).contains(j["sha256"].as_str().unwrap()));
}

/// Starts `create` of a 300 MiB data dir to `key` and waits until parts
/// are being uploaded; returns the child and what it says on stderr besides
/// progress events.
fn start_big_upload(
    s3: &Server,
    data: &Path,
    key: &str,
) -> (Child, std::thread::JoinHandle<String>) {
    let mut child = s3
        .cmd()
        .args(["create", p(data), "-o", &url(key), "--progress", "json"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Progress events tell when a good share of the data has gone in.
    let err = child.stderr.take().unwrap();
    let mut lines = BufReader::new(err).lines();
    loop {
        let line = lines
            .next()
            .expect("create ended before uploading")
            .unwrap();
        let v: serde_json::Value = match serde_json::from_str(&line) {
            Ok(v) => v,
            Err(_) => continue,
        };
        if v["done_bytes"].as_u64().unwrap_or(0) > 100 << 20 {
            break;
        }
    }
    // Keep draining stderr so the child never blocks on it; hand back the rest.
    let rest = std::thread::spawn(move || {
        lines
            .map_while(|l| l.ok())
            .filter(|l| !l.starts_with('{'))
            .collect::<Vec<_>>()
            .join("\n")
    });
    (child, rest)
}

#[test]
fn killed_or_interrupted_uploads_leave_no_object() {
    let Some(s3) = Server::start() else { return };
    let t = tempfile::tempdir().unwrap();
    let data = incompressible_data(t.path(), 300);

    // SIGKILL: the upload is never completed, so nothing is at the key.
    let (mut child, _) = start_big_upload(&s3, &data, "killed.tar.zst");
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(!s3.object_file("killed.tar.zst").exists());
    let o = s3.run(&["verify", &url("killed.tar.zst")]);
    expect_code(&o, 2);
    assert!(stderr(&o).contains("no such object"), "{}", stderr(&o));

    // SIGTERM or SIGINT: the upload is aborted, its parts are gone, exit 2.
    let before = s3.settled_files();
    for (sig, key) in [
        (libc::SIGTERM, "termed.tar.zst"),
        (libc::SIGINT, "inted.tar.zst"),
    ] {
        let (mut child, said) = start_big_upload(&s3, &data, key);
        let pid = child.id() as libc::pid_t;
        // SAFETY: signalling our own child.
        assert_eq!(unsafe { libc::kill(pid, sig) }, 0);
        let status = child.wait().unwrap();
        assert_eq!(status.code(), Some(2));
        let said = said.join().unwrap();
        assert!(
            said.contains(&format!("aborted the unfinished upload to {}", url(key))),
            "{said}"
        );
        assert!(!s3.object_file(key).exists());
        assert_eq!(
            s3.settled_files(),
            before,
            "the aborted upload left parts behind"
        );
    }
    let o = s3.run(&["ls", &url("")]);
    expect_code(&o, 0);
    assert_eq!(stdout(&o), "", "no archive should be listed");
}

#[test]
fn failed_parts_are_retried_and_a_failed_upload_is_aborted() {
    let Some(s3) = Server::start() else { return };
    let t = tempfile::tempdir().unwrap();
    let data = incompressible_data(t.path(), 40);

    // Two part uploads cut mid-way: retried, and the object is whole.
    let proxy = FaultyProxy::start(s3.port, 2);
    let o = s3
        .cmd()
        .args(["create", p(&data), "-o", &url("retried.tar.zst"), "--json"])
        .args(["--endpoint", &proxy.endpoint()])
        .output()
        .unwrap();
    expect_code(&o, 0);
    assert_eq!(proxy.cut.load(Ordering::SeqCst), 2);
    let sha = json(&o)["sha256"].as_str().unwrap().to_string();
    let o = s3.run(&["verify", &url("retried.tar.zst")]);
    expect_code(&o, 0);
    assert!(stdout(&o).contains(&sha));

    // Every part upload cut: create gives up (exit 2, one line), aborts
    // the upload, and leaves neither an object nor parts.
    let before = s3.settled_files();
    let proxy = FaultyProxy::start(s3.port, usize::MAX);
    let started = Instant::now();
    let o = s3
        .cmd()
        .args(["create", p(&data), "-o", &url("failed.tar.zst")])
        .args(["--endpoint", &proxy.endpoint()])
        .output()
        .unwrap();
    expect_code(&o, 2);
    assert!(started.elapsed() < Duration::from_secs(90));
    let err = stderr(&o);
    assert!(
        err.contains("cannot upload a part to s3://backups/failed.tar.zst"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(proxy.cut.load(Ordering::SeqCst) > 5);
    assert!(!s3.object_file("failed.tar.zst").exists());
    assert_eq!(
        s3.settled_files(),
        before,
        "the failed upload left parts behind"
    );
}
