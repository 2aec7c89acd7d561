//! `watch` into a prefix whose store fails or stalls (a [`SwitchProxy`]
//! in front of s3s-fs) while a simulated server advances the data dir:
//! failed points are reported, retried and counted in the metrics (the
//! RPO grows), nothing wrong or half-made is published, and every point
//! shipped restores to the data dir of its moment. No wall-clock window:
//! every wait is on an event, with a generous deadline as a guard.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use sydra_archive::sydradb::Server as Sim;

use crate::support::*;

use super::proxies::*;
use super::server::*;

/// How long any one wait may take before the test fails.
const GUARD: Duration = Duration::from_secs(180);

/// A running `watch --json`: its NDJSON lines as they come, its stderr
/// gathered.
pub(super) struct Watch {
    pub(super) child: Child,
    lines: Receiver<String>,
    err: std::thread::JoinHandle<String>,
}

impl Watch {
    /// `watch DATA -o s3://backups/PREFIX --every 100ms --json` plus
    /// `extra`, from `cmd` (the server's, perhaps through a proxy).
    pub(super) fn start(mut cmd: Command, data: &Path, prefix: &str, extra: &[&str]) -> Watch {
        let mut child = cmd
            .args(["watch", p(data), "-o", &url(prefix), "--every", "100ms"])
            .args(["--json"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        let out = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines().map_while(Result::ok) {
                let _ = tx.send(l);
            }
        });
        let mut e = child.stderr.take().unwrap();
        let err = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = e.read_to_string(&mut s);
            s
        });
        Watch { child, lines, err }
    }

    /// The next line that contains `what` (the lines before it skipped).
    pub(super) fn next_with(&mut self, what: &str) -> serde_json::Value {
        let deadline = Instant::now() + GUARD;
        loop {
            match self.lines.recv_timeout(Duration::from_millis(500)) {
                Ok(l) if l.contains(what) => return serde_json::from_str(&l).unwrap(),
                Ok(_) | Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    let st = self.child.wait().unwrap();
                    panic!("watch exited ({st}) before a {what} line");
                }
            }
            assert!(Instant::now() < deadline, "no {what} line in time");
        }
    }

    /// SIGTERM; its exit code and what it said on stderr.
    pub(super) fn term(self) -> (Option<i32>, String) {
        // SAFETY: kill(2) of our own child, not yet waited for.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        self.wait()
    }

    /// Its exit code and what it said on stderr, once it exits.
    pub(super) fn wait(mut self) -> (Option<i32>, String) {
        let st = self.child.wait().unwrap();
        (st.code(), self.err.join().unwrap())
    }
}

/// The value of `sydra_archive_watch_NAME` in the metrics file `prom`.
fn metric(prom: &Path, name: &str) -> Option<f64> {
    let text = std::fs::read_to_string(prom).ok()?;
    let want = format!("sydra_archive_watch_{name} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&want))
        .and_then(|v| v.trim().parse().ok())
}

/// Waits until the metric `name` satisfies `ok` (the metrics file is
/// rewritten just after the line that told of the event).
fn wait_metric(prom: &Path, name: &str, ok: impl Fn(f64) -> bool) -> f64 {
    let deadline = Instant::now() + GUARD;
    loop {
        if let Some(v) = metric(prom, name).filter(|&v| ok(v)) {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "{name}: {:?}",
            metric(prom, name)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The last component of an archive's key or URL.
fn name_of(s: &str) -> String {
    s.rsplit('/').next().unwrap().to_string()
}

/// A simulated server writing into `data` (as `small_data` made it).
fn simulated(data: &Path) -> Sim {
    small_server(data)
}

/// What is left at the store besides the archives of `prefix`: objects
/// (lock entries, temporaries), unfinished multipart uploads and their
/// parts. (s3s-fs keeps the metadata files of deleted objects: those are
/// not looked at.)
fn strays(s3: &Server, prefix: &str) -> Vec<String> {
    let archives: Vec<String> = archive_names(s3, prefix)
        .iter()
        .map(|a| format!("{BUCKET}/{prefix}{a}"))
        .collect();
    s3.settled_files()
        .into_iter()
        .filter(|f| {
            let object = f.starts_with(&format!("{BUCKET}/"));
            (object && !archives.contains(f)) || f.contains(".upload") || f.contains(".tmp.")
        })
        .collect()
}

fn archive_names(s3: &Server, prefix: &str) -> Vec<String> {
    let o = s3.run(&["ls", "--json", &url(prefix)]);
    expect_code(&o, 0);
    json(&o)["archives"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| name_of(a["key"].as_str().unwrap()))
        .collect()
}

/// Every archive under `prefix` verifies with its chain, every point
/// `ls --points` lists restores (`--at` its time) to the data dir
/// `want` recorded for its archive, and every point shipped is listed.
fn check_points(s3: &Server, prefix: &str, want: &HashMap<String, String>, scratch: &Path) {
    for a in archive_names(s3, prefix) {
        let o = s3.run(&["verify", "--chain", &url(&format!("{prefix}{a}")), "-q"]);
        expect_code(&o, 0);
    }
    let o = s3.run(&["ls", "--points", "--json", &url(prefix)]);
    expect_code(&o, 0);
    let j = json(&o);
    let points = j["points"].as_array().unwrap();
    assert_eq!(points.len(), want.len(), "{j}");
    for (i, pt) in points.iter().enumerate() {
        let archive = name_of(pt["archive"].as_str().unwrap());
        let digest = want.get(&archive).unwrap_or_else(|| panic!("{archive}"));
        let r = scratch.join(format!("r{i}"));
        let time = pt["time"].as_str().unwrap();
        let o = s3.run(&["restore", &url(prefix), p(&r), "--at", time, "-q"]);
        expect_code(&o, 0);
        assert_eq!(&tree_digest(&r), digest, "the point of {time} ({archive})");
        std::fs::remove_dir_all(&r).unwrap();
    }
}

#[test]
fn watch_on_a_failing_store_retries_and_never_publishes_a_wrong_point() {
    let Some(s3) = Server::start() else { return };
    let t = tempfile::tempdir().unwrap();
    let data = small_data(t.path());
    let mut sim = simulated(&data);
    let proxy = SwitchProxy::start(s3.port);
    let prom = t.path().join("watch.prom");
    let mut cmd = s3.cmd();
    cmd.env("SYDRA_ARCHIVE_CACHE_DIR", t.path().join("cache"));
    let extra = ["--endpoint", &proxy.endpoint(), "--metrics-file", p(&prom)];
    let mut w = Watch::start(cmd, &data, "db/", &extra);
    // The data dir of each point shipped, by archive.
    let mut want = HashMap::new();
    let shipped = |w: &mut Watch, want: &mut HashMap<String, String>| {
        let ev = w.next_with("\"event\":\"point\"");
        want.insert(name_of(ev["archive"].as_str().unwrap()), tree_digest(&data));
        ev
    };
    assert_eq!(shipped(&mut w, &mut want)["kind"], "full");
    sim.run(900).unwrap();
    assert_eq!(shipped(&mut w, &mut want)["kind"], "incremental");
    wait_metric(&prom, "points_total", |v| v == 2.0);
    let newest_ts = metric(&prom, "newest_point_timestamp_seconds").unwrap();

    // The store is down: every request cut. Points fail, the RPO grows.
    proxy.set(Mode::Cut);
    for n in 1..=2u64 {
        sim.run(900).unwrap();
        let ev = w.next_with("\"event\":\"failed\"");
        assert!(ev["failing"].as_u64().unwrap() >= n, "{ev}");
        assert!(!ev["error"].as_str().unwrap().contains('\n'), "{ev}");
        let failing = wait_metric(&prom, "failing", |v| v >= n as f64);
        assert!(metric(&prom, "failures_total").unwrap() >= failing);
        assert_eq!(metric(&prom, "points_total"), Some(2.0));
        assert_eq!(
            metric(&prom, "newest_point_timestamp_seconds"),
            Some(newest_ts),
            "the newest point moved while failing"
        );
    }
    assert!(proxy.cut.load(Ordering::SeqCst) > 0);
    assert_eq!(archive_names(&s3, "db/").len(), 2);

    // Healed: the next tick ships what the data dir is now.
    proxy.set(Mode::Pass);
    assert_eq!(shipped(&mut w, &mut want)["kind"], "incremental");
    wait_metric(&prom, "failing", |v| v == 0.0);
    assert!(metric(&prom, "newest_point_timestamp_seconds").unwrap() > newest_ts);
    let failures = metric(&prom, "failures_total").unwrap();
    assert!(failures >= 2.0, "{failures}");

    // Part uploads cut (the upload starts, its part fails, it is
    // aborted): a failed point again, then a point once they pass.
    proxy.set(Mode::CutParts);
    sim.run(900).unwrap();
    w.next_with("\"event\":\"failed\"");
    wait_metric(&prom, "failures_total", |v| v > failures);
    assert_eq!(metric(&prom, "points_total"), Some(3.0));
    proxy.set(Mode::Pass);
    assert_eq!(shipped(&mut w, &mut want)["kind"], "incremental");

    let (code, err) = w.term();
    assert_eq!(code, Some(0), "{err}");
    check_points(&s3, "db/", &want, t.path());
    assert_eq!(strays(&s3, "db/"), Vec::<String>::new());
}

#[test]
fn a_watch_stalled_mid_upload_stops_cleanly_and_the_next_continues_the_chain() {
    let Some(s3) = Server::start() else { return };
    let t = tempfile::tempdir().unwrap();
    let data = small_data(t.path());
    let mut sim = simulated(&data);
    let proxy = SwitchProxy::start(s3.port);
    let cache = t.path().join("cache");
    let mut cmd = s3.cmd();
    cmd.env("SYDRA_ARCHIVE_CACHE_DIR", &cache);
    let mut w = Watch::start(cmd, &data, "db/", &["--endpoint", &proxy.endpoint()]);
    let mut want = HashMap::new();
    let ev = w.next_with("\"event\":\"point\"");
    want.insert(name_of(ev["archive"].as_str().unwrap()), tree_digest(&data));

    // The store stalls on the next point's part upload.
    proxy.set(Mode::HoldParts);
    sim.run(900).unwrap();
    let deadline = Instant::now() + GUARD;
    while proxy.held.load(Ordering::SeqCst) == 0 {
        assert!(
            Instant::now() < deadline,
            "no part upload reached the proxy"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    // Stopped there: exit 0, the upload aborted, nothing published.
    let (code, err) = w.term();
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("aborted the unfinished upload"), "{err}");
    // The held part never reaches the server.
    proxy.set(Mode::Cut);
    assert_eq!(archive_names(&s3, "db/").len(), 1);
    assert_eq!(strays(&s3, "db/"), Vec::<String>::new());

    // The next watch goes on with the chain.
    let mut cmd = s3.cmd();
    cmd.env("SYDRA_ARCHIVE_CACHE_DIR", &cache);
    let o = cmd
        .args(["watch", p(&data), "-o", &url("db/"), "--once", "--json"])
        .output()
        .unwrap();
    expect_code(&o, 0);
    let ev: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(ev["kind"], "incremental", "{ev}");
    want.insert(name_of(ev["archive"].as_str().unwrap()), tree_digest(&data));
    check_points(&s3, "db/", &want, t.path());
    assert_eq!(strays(&s3, "db/"), Vec::<String>::new());
}
