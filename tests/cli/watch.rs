//! `watch`: points shipped as the data dir changes, each restorable and
//! equal to the data dir when it was taken; nothing shipped when nothing
//! changed; killed at any moment, the next start continues the chain;
//! SIGTERM ends it with 0.

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::*;

fn watcher(data: &Path, dest: &Path, cache: &Path) -> Command {
    let mut c = bin();
    c.args(["watch", p(data), "-o", &format!("{}/", dest.display())])
        .args(["--every", "100ms"])
        .env("SYDRA_ARCHIVE_CACHE_DIR", cache);
    c
}

/// The lines `child` writes to its stdout, gathered as they come.
fn collect_lines(child: &mut Child) -> std::sync::Arc<std::sync::Mutex<Vec<String>>> {
    let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let sink = lines.clone();
    let out = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for l in BufReader::new(out).lines().map_while(Result::ok) {
            sink.lock().unwrap().push(l);
        }
    });
    lines
}

/// Waits until the newest point at `dest` restores to `want` (the data
/// dir, unchanged meanwhile); fails after a minute.
fn wait_for_point(dest: &Path, scratch: &Path, want: &str, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            panic!("watch exited ({st})");
        }
        let r = scratch.join("probe");
        let _ = fs::remove_dir_all(&r);
        let o = run(&["restore", &format!("{}/", dest.display()), p(&r), "-q"]);
        if o.status.success() && tree_digest(&r) == want {
            let _ = fs::remove_dir_all(&r);
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no point of the data dir shipped in 60 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn watch_ships_points_that_each_restore_and_survives_a_kill() {
    let t = tempfile::tempdir().unwrap();
    let data = small_data(t.path());
    let mut server = small_server(&data);
    let (dest, cache) = (t.path().join("dest"), t.path().join("cache"));
    fs::create_dir(&dest).unwrap();
    let mut w = watcher(&data, &dest, &cache)
        .args(["--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // The NDJSON lines, as they come.
    let lines = collect_lines(&mut w);
    wait_for_point(&dest, t.path(), &tree_digest(&data), &mut w);
    for k in 0..4 {
        server.run(900).unwrap();
        let want = tree_digest(&data);
        if k == 2 {
            // Killed at whatever it was doing; started again, it goes on
            // with the chain it finds.
            w.kill().unwrap();
            w.wait().unwrap();
            w = watcher(&data, &dest, &cache)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
        }
        wait_for_point(&dest, t.path(), &want, &mut w);
    }
    // A second watch of the same destination is refused while this one
    // runs.
    let o = watcher(&data, &dest, &cache)
        .args(["--once"])
        .output()
        .unwrap();
    expect_code(&o, 2);
    assert!(
        stderr(&o).contains("another watch ships into"),
        "{}",
        stderr(&o)
    );
    // SIGTERM: a clean stop, exit 0.
    // SAFETY: kill(2) of our own child.
    unsafe { libc::kill(w.id() as i32, libc::SIGTERM) };
    let st = w.wait().unwrap();
    assert_eq!(st.code(), Some(0), "{st}");
    let shipped = lines.lock().unwrap().clone();
    assert!(
        shipped.iter().any(|l| l.contains("\"kind\":\"full\"")),
        "{shipped:?}"
    );
    assert!(
        shipped
            .iter()
            .any(|l| l.contains("\"kind\":\"incremental\"")),
        "{shipped:?}"
    );
    // Every point there is a whole archive whose chain is there.
    std::thread::sleep(Duration::from_millis(2100));
    for a in archive_names(&dest) {
        expect_code(&run(&["verify", "--chain", p(&dest.join(&a)), "-q"]), 0);
    }
    // Only one full: the restarted run continued the chain.
    let o = run(&["ls", p(&dest), "--json"]);
    let fulls = json(&o)["archives"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["base"].is_null())
        .count();
    assert_eq!(fulls, 1, "{}", stdout(&o));
    // Nothing changed: --once ships nothing (after one point that tells
    // it what the newest one saw, if the killed run was the last to ship).
    let before = archive_names(&dest).len();
    let once = |extra: &[&str]| {
        watcher(&data, &dest, &cache)
            .args(["--once"])
            .args(extra)
            .output()
            .unwrap()
    };
    expect_code(&once(&[]), 0);
    let after_first = archive_names(&dest).len();
    assert!(after_first <= before + 1);
    let o = once(&[]);
    expect_code(&o, 0);
    assert!(stderr(&o).contains("nothing changed"), "{}", stderr(&o));
    assert_eq!(archive_names(&dest).len(), after_first);
    assert!(leftovers(&dest).is_empty(), "{:?}", leftovers(&dest));
}

#[test]
fn watch_says_what_it_refuses() {
    let t = tempfile::tempdir().unwrap();
    let data = tiny_data(t.path());
    let o = run(&["watch", p(&data), "-o", p(t.path()), "--once"]);
    expect_code(&o, 2);
    assert!(stderr(&o).contains("DEST must end in /"), "{}", stderr(&o));
    for bad in ["10", "10y", "5ms", "9999999999d"] {
        let o = run(&["watch", p(&data), "-o", "x/", "--every", bad]);
        expect_code(&o, 2);
        assert!(stderr(&o).contains(bad), "{bad}: {}", stderr(&o));
    }
    // Levels: finest first, --keep one more than them, room in the chain.
    let dest = t.path().join("d");
    fs::create_dir(&dest).unwrap();
    let d = format!("{}/", dest.display());
    for (args, why) in [
        (&["--levels", "1h,5m"][..], "longer than the one before"),
        (
            &["--levels", "5m,1h", "--keep", "1h,1d"],
            "--keep takes 3 durations",
        ),
        (&["--levels", "5m,1h,1d", "--max-chain", "4"], "at least 5"),
        (&["--keep", "1h"], "--levels"),
    ] {
        let o = run(&[&["watch", p(&data), "-o", &d, "--once"][..], args].concat());
        expect_code(&o, 2);
        assert!(stderr(&o).contains(why), "{args:?}: {}", stderr(&o));
    }
    assert_eq!(fs::read_dir(&dest).unwrap().count(), 0, "nothing shipped");
}

#[test]
fn a_data_dir_gone_for_a_moment_is_a_failed_point_retried() {
    let t = tempfile::tempdir().unwrap();
    let data = tiny_data(t.path());
    let (dest, cache) = (t.path().join("dest"), t.path().join("cache"));
    fs::create_dir(&dest).unwrap();
    let prom = t.path().join("watch.prom");
    let mut w = watcher(&data, &dest, &cache)
        .args(["--json", "--metrics-file", p(&prom)])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let out = w.stdout.take().unwrap();
    std::thread::spawn(move || {
        for l in BufReader::new(out).lines().map_while(Result::ok) {
            let _ = tx.send(l);
        }
    });
    let next_with = |what: &str| loop {
        let l = rx
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("no {what} line in 60 s"));
        if l.contains(what) {
            return l;
        }
    };
    next_with("\"event\":\"point\"");
    let away = t.path().join("moved");
    fs::rename(&data, &away).unwrap();
    let failed = next_with("\"event\":\"failed\"");
    assert!(failed.contains("No such file"), "{failed}");
    let failing = |prom: &Path| {
        let m = fs::read_to_string(prom).unwrap_or_default();
        m.lines()
            .find_map(|l| l.strip_prefix("sydra_archive_watch_failing "))
            .and_then(|v| v.trim().parse::<u64>().ok())
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while failing(&prom).unwrap_or(0) == 0 {
        assert!(
            Instant::now() < deadline,
            "the failure is not in the metrics"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    fs::rename(&away, &data).unwrap();
    // Back as the newest point has it: nothing to ship, nothing failing.
    let deadline = Instant::now() + Duration::from_secs(60);
    while failing(&prom) != Some(0) {
        assert!(Instant::now() < deadline, "still failing once back");
        std::thread::sleep(Duration::from_millis(50));
    }
    fs::write(data.join("tags.json"), b"{\"back\":1}").unwrap();
    next_with("\"event\":\"point\"");
    // SAFETY: kill(2) of our own child.
    unsafe { libc::kill(w.id() as i32, libc::SIGTERM) };
    assert_eq!(w.wait().unwrap().code(), Some(0));
}

#[test]
fn once_keeps_the_metrics_and_what_is_beside_the_layout_ships_nothing() {
    let t = tempfile::tempdir().unwrap();
    let data = tiny_data(t.path());
    // The destination inside the data dir, and a pid file beside the
    // layout: neither is part of an archive.
    let (dest, cache) = (data.join("points"), t.path().join("cache"));
    fs::create_dir(&dest).unwrap();
    let prom = t.path().join("watch.prom");
    let once = || {
        watcher(&data, &dest, &cache)
            .args(["--once", "--metrics-file", p(&prom)])
            .output()
            .unwrap()
    };
    expect_code(&once(), 0);
    fs::write(data.join("server.pid"), b"123\n").unwrap();
    let o = once();
    expect_code(&o, 0);
    assert!(stderr(&o).contains("nothing changed"), "{}", stderr(&o));
    assert_eq!(archive_names(&dest).len(), 1);
    // The newest point's time is in the metrics of a run that shipped
    // nothing: the RPO alert keeps working.
    let m = fs::read_to_string(&prom).unwrap();
    assert!(
        m.contains("sydra_archive_watch_newest_point_timestamp_seconds 1"),
        "{m}"
    );
    // The server rewrites tags.json about every 2 s even when idle: the
    // same bytes under new times, or put in place by a rename, are no
    // change; other bytes of the same size are.
    let tags = data.join("tags.json");
    fs::write(&tags, b"{\"a=b\":[1]}").unwrap();
    let tmp = data.join("tags.tmp");
    fs::write(&tmp, b"{\"a=b\":[1]}").unwrap();
    fs::rename(&tmp, &tags).unwrap();
    let o = once();
    assert!(stderr(&o).contains("nothing changed"), "{}", stderr(&o));
    fs::write(&tags, b"{\"a=c\":[1]}").unwrap();
    expect_code(&once(), 0);
    assert_eq!(
        archive_names(&dest).len(),
        2,
        "a change of the same size ships"
    );
    let r = t.path().join("r");
    expect_code(
        &run(&["restore", &format!("{}/", dest.display()), p(&r), "-q"]),
        0,
    );
    assert_eq!(fs::read(r.join("tags.json")).unwrap(), b"{\"a=c\":[1]}");
    // Encrypting without a key to read the points back: refused.
    let o = watcher(&data, &dest, &cache)
        .args([
            "--once",
            "-r",
            "age1qyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqs3290gq",
        ])
        .output()
        .unwrap();
    expect_code(&o, 2);
    assert!(stderr(&o).contains("give -i"), "{}", stderr(&o));
}

#[test]
fn levels_keep_every_point_within_max_chain_archives_and_expire_old_ones() {
    let t = tempfile::tempdir().unwrap();
    let data = small_data(t.path());
    let mut server = small_server(&data);
    let (dest, cache) = (t.path().join("dest"), t.path().join("cache"));
    fs::create_dir(&dest).unwrap();
    let mut w = watcher(&data, &dest, &cache)
        .args([
            "--levels",
            "1s,3s",
            "--keep",
            "2s,5s,1d",
            "--max-chain",
            "5",
        ])
        .arg("--json")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let lines = collect_lines(&mut w);
    // Changes for at least 6 s (more on a loaded machine: only more
    // points, anchors and expiries).
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(6) {
        server.run(120).unwrap();
        std::thread::sleep(Duration::from_millis(200));
    }
    wait_for_point(&dest, t.path(), &tree_digest(&data), &mut w);
    // SAFETY: kill(2) of our own child.
    unsafe { libc::kill(w.id() as i32, libc::SIGTERM) };
    assert_eq!(w.wait().unwrap().code(), Some(0));
    let log = lines.lock().unwrap().clone();
    assert!(
        log.iter().any(|l| l.contains("\"event\":\"expired\"")),
        "{log:?}"
    );
    // Every archive: depth at most 4, and whole.
    let o = run(&["ls", p(&dest), "--json"]);
    let j = json(&o);
    for a in j["archives"].as_array().unwrap() {
        assert!(a["base"]["depth"].as_u64().unwrap_or(0) <= 4, "{a}");
        expect_code(
            &run(&["verify", "--chain", a["url"].as_str().unwrap(), "-q"]),
            0,
        );
    }
    // Every point restores from at most five archives.
    let o = run(&["ls", p(&dest), "--points", "--json"]);
    let j = json(&o);
    let points = j["points"].as_array().unwrap();
    assert!(points.len() >= 2, "{j}");
    for pt in points {
        assert!(pt["archives"].as_array().unwrap().len() <= 5, "{pt}");
    }
    let oldest = points.last().unwrap()["time"].as_str().unwrap().to_string();
    let r = t.path().join("oldest");
    expect_code(
        &run(&[
            "restore",
            &format!("{}/", dest.display()),
            p(&r),
            "--at",
            &oldest,
            "-q",
        ]),
        0,
    );
}

#[test]
fn levels_go_on_with_a_full_where_an_anchor_cannot_be_a_base() {
    use age::secrecy::ExposeSecret;
    let t = tempfile::tempdir().unwrap();
    let data = tiny_data(t.path());
    let (dest, cache) = (t.path().join("dest"), t.path().join("cache"));
    fs::create_dir(&dest).unwrap();
    // An encrypted full there, and points that are not encrypted: the
    // anchor cannot be their base; the point is a full archive.
    let id = age::x25519::Identity::generate();
    let recipient = id.to_public().to_string();
    let key = t.path().join("key.txt");
    fs::write(&key, format!("{}\n", id.to_string().expose_secret())).unwrap();
    let o = run(&[
        "create",
        p(&data),
        "-o",
        &format!("{}/", dest.display()),
        "-r",
        &recipient,
        "-q",
    ]);
    expect_code(&o, 0);
    fs::write(data.join("tags.json"), b"{\"next\":1}").unwrap();
    let o = watcher(&data, &dest, &cache)
        .args(["--once", "--levels", "5m,1h", "-i", p(&key), "--json"])
        .output()
        .unwrap();
    expect_code(&o, 0);
    let out = stdout(&o);
    assert!(out.contains("\"kind\":\"full\""), "{out}");
    assert!(out.contains("cannot be used"), "{out}");
}
