//! `watch` into a prefix costs nothing while nothing changes: over 20
//! ticks of an unchanged data dir no byte crosses a relay in front of
//! the server and the request counters of `--metrics-file` stay as they
//! were; a change ships one point, whose requests are what the counters
//! moved by. Ticks are counted by watch itself
//! (`sydra_archive_watch_ticks_total`): nothing here waits on a clock.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::support::*;

use super::proxies::relay;
use super::server::*;

/// The metrics file's samples by name (labels included), once it exists.
fn metrics(path: &Path) -> BTreeMap<String, f64> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (name, value) = l.rsplit_once(' ')?;
            Some((name.to_string(), value.parse().ok()?))
        })
        .collect()
}

fn get(m: &BTreeMap<String, f64>, name: &str) -> f64 {
    m.get(name).copied().unwrap_or(-1.0)
}

const METHODS: [&str; 6] = ["PUT", "POST", "LIST", "GET", "HEAD", "DELETE"];

/// The request counters of a metrics file: by method, then up and down.
fn requests(m: &BTreeMap<String, f64>) -> Vec<f64> {
    let mut v: Vec<f64> = METHODS
        .iter()
        .map(|k| {
            get(
                m,
                &format!("sydra_archive_watch_requests_total{{method=\"{k}\"}}"),
            )
        })
        .collect();
    for d in ["up", "down"] {
        v.push(get(
            m,
            &format!("sydra_archive_watch_request_bytes_total{{direction=\"{d}\"}}"),
        ));
    }
    v
}

/// Waits until the metrics file satisfies `done`; fails after two
/// minutes (a deadline for a hung run, not a measured window) or if
/// watch exited.
fn wait_for(
    path: &Path,
    child: &mut std::process::Child,
    what: &str,
    done: impl Fn(&BTreeMap<String, f64>) -> bool,
) -> BTreeMap<String, f64> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            panic!("watch exited ({st}) before {what}");
        }
        let m = metrics(path);
        if done(&m) {
            return m;
        }
        assert!(Instant::now() < deadline, "no {what} in 120 s: {m:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Points `link` at `target` in one rename: watch sees one data dir or
/// the other, never one half written.
fn swap_link(link: &Path, target: &Path) {
    let tmp = link.with_extension("new");
    std::os::unix::fs::symlink(target, &tmp).unwrap();
    std::fs::rename(&tmp, link).unwrap();
}

/// A child killed when the test ends, passed or failed (a failed
/// assertion must not leave a watch running).
struct Reaped(std::process::Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn copy_tree(from: &Path, to: &Path) {
    let st = std::process::Command::new("cp")
        .args(["-a", p(from), p(to)])
        .status()
        .unwrap();
    assert!(st.success());
}

#[test]
fn watch_sends_nothing_while_nothing_changes_and_one_point_per_change() {
    let Some(s3) = Server::start() else { return };
    let t = tempfile::tempdir().unwrap();
    let live = small_data(t.path());
    let mut sim = small_server(&live);
    // watch looks at `data`, a link to a still copy of the live dir.
    let (data, first) = (t.path().join("data-link"), t.path().join("snap-1"));
    copy_tree(&live, &first);
    std::os::unix::fs::symlink(&first, &data).unwrap();
    let (up, down) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (u, d) = (up.clone(), down.clone());
    let port = relay(
        s3.port,
        move |_, chunk| {
            u.fetch_add(chunk.len(), Ordering::SeqCst);
            true
        },
        move |_, chunk| {
            d.fetch_add(chunk.len(), Ordering::SeqCst);
            true
        },
    );
    let wire = || (up.load(Ordering::SeqCst), down.load(Ordering::SeqCst));
    let prom = t.path().join("watch.prom");
    let w = s3
        .cmd()
        .env("AWS_ENDPOINT_URL", format!("http://127.0.0.1:{port}"))
        .env("SYDRA_ARCHIVE_CACHE_DIR", t.path().join("cache"))
        .args(["watch", p(&data), "-o", &url("db/"), "--every", "100ms"])
        .args(["--json", "--metrics-file", p(&prom)])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut w = Reaped(w);
    let stdout = w.0.stdout.take().unwrap();
    let lines = std::thread::spawn(move || {
        use std::io::BufRead;
        std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .collect::<Vec<_>>()
    });
    let ticks = "sydra_archive_watch_ticks_total";
    let points = "sydra_archive_watch_points_total";
    // The first point, then a tick after it: the baseline.
    let shipped = wait_for(&prom, &mut w.0, "first point", |m| get(m, points) == 1.0);
    let after = get(&shipped, ticks);
    let quiet = wait_for(&prom, &mut w.0, "tick after the point", |m| {
        get(m, ticks) > after
    });
    let (wire0, requests0) = (wire(), requests(&quiet));
    assert!(wire0.0 > 0 && wire0.1 > 0, "{wire0:?}");
    assert!(requests0[0] >= 1.0, "{requests0:?}");
    // 20 ticks of an unchanged data dir: no byte either way, no request.
    let from = get(&quiet, ticks);
    let idle = wait_for(&prom, &mut w.0, "20 more ticks", |m| {
        get(m, ticks) >= from + 20.0
    });
    assert_eq!(
        wire(),
        wire0,
        "bytes crossed the relay while nothing changed"
    );
    assert_eq!(requests(&idle), requests0, "{idle:?}");
    assert_eq!(get(&idle, points), 1.0);
    // A change, whole at once: one point, and the counters move by its
    // requests exactly.
    sim.run(900).unwrap();
    let second = t.path().join("snap-2");
    copy_tree(&live, &second);
    swap_link(&data, &second);
    let moved = wait_for(&prom, &mut w.0, "second point", |m| get(m, points) == 2.0);
    let from = get(&moved, ticks);
    let settled = wait_for(&prom, &mut w.0, "5 ticks after the point", |m| {
        get(m, ticks) >= from + 5.0
    });
    assert_eq!(requests(&settled), requests(&moved), "{settled:?}");
    assert_eq!(get(&settled, points), 2.0);
    assert_eq!(get(&settled, "sydra_archive_watch_failures_total"), 0.0);
    let wire1 = wire();
    assert!(
        wire1.0 > wire0.0 && wire1.1 > wire0.1,
        "{wire0:?} {wire1:?}"
    );
    // SAFETY: kill(2) of our own child.
    unsafe { libc::kill(w.0.id() as i32, libc::SIGTERM) };
    assert_eq!(w.0.wait().unwrap().code(), Some(0));
    let events: Vec<serde_json::Value> = lines
        .join()
        .unwrap()
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|e: &serde_json::Value| e["event"] == "point")
        .collect();
    assert_eq!(events.len(), 2, "{events:?}");
    let point = &events[1]["requests"];
    let delta: Vec<f64> = requests(&moved)
        .iter()
        .zip(&requests0)
        .map(|(a, b)| a - b)
        .collect();
    let want: Vec<f64> = [
        "put",
        "post",
        "list",
        "get",
        "head",
        "delete",
        "bytes_up",
        "bytes_down",
    ]
    .iter()
    .map(|k| point[k].as_f64().unwrap())
    .collect();
    assert_eq!(delta, want, "{point}");
    // The archive went up in request bodies, which crossed the relay.
    let bytes = events[1]["bytes"].as_f64().unwrap();
    assert!(want[6] >= bytes, "{point} {bytes}");
    assert!((wire1.0 - wire0.0) as f64 >= want[6], "{wire1:?} {point}");
    assert!((wire1.1 - wire0.1) as f64 >= want[7], "{wire1:?} {point}");
}

#[test]
fn a_points_reads_do_not_grow_with_the_archives_at_the_prefix() {
    let Some(s3) = Server::start() else { return };
    let t = tempfile::tempdir().unwrap();
    let data = tiny_data(t.path());
    let dest = format!("s3://{BUCKET}/grow/");
    let mut w = s3
        .cmd()
        .args(["watch", p(&data), "-o", &dest, "--every", "100ms", "--json"])
        .env("SYDRA_ARCHIVE_CACHE_DIR", t.path().join("cache"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(w.stdout.take().unwrap()));
    let w = Reaped(w);
    // One change at a time, each waited for: a point per change.
    let mut gets = Vec::new();
    for i in 0..12 {
        std::fs::write(data.join("tags.json"), format!("{{\"i={i}\":[1]}}")).unwrap();
        let point = loop {
            let l = lines.next().expect("watch ended").unwrap();
            let j: serde_json::Value = serde_json::from_str(&l).unwrap();
            if j["event"] == "point" {
                break j;
            }
            assert_ne!(j["event"], "failed", "{j}");
        };
        gets.push(point["requests"]["get"].as_u64().unwrap());
    }
    drop(w);
    // The chain's links already read are not read again: the last
    // point, on a chain of 12, reads what the third did on one of 3.
    assert!(gets[11] <= gets[2], "GETs a point: {gets:?}");
}
