//! One `watch` a prefix (`store::s3::watcher`): a second is refused
//! while the first runs, with who holds it; an entry left by a killed
//! watch, or not renewed for a lease, is taken over; SIGTERM removes it;
//! creates and prunes go on beside a watch; two watches starting at once
//! never both ship.

use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::support::*;

use super::server::*;
use super::watches::Watch;

/// The `watch-` entries under `db/`: name and body.
fn watch_entries(s3: &Server) -> Vec<(String, String)> {
    let dir = s3.object_file("db/.sydra-archive.lock");
    let mut v: Vec<(String, String)> = std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("watch-"))
                .map(|n| {
                    let body = std::fs::read_to_string(
                        s3.object_file(&format!("db/.sydra-archive.lock/{n}")),
                    )
                    .unwrap_or_default();
                    (n, body)
                })
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Every lock entry under `db/`.
fn all_entries(s3: &Server) -> Vec<String> {
    std::fs::read_dir(s3.object_file("db/.sydra-archive.lock"))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Waits until the watch of `pid` holds the prefix.
fn wait_held(s3: &Server, pid: u32) {
    let deadline = Instant::now() + Duration::from_secs(120);
    let mine = format!("\"pid\":{pid},");
    while !watch_entries(s3)
        .iter()
        .any(|(_, b)| b.contains(&mine) && b.contains("\"held\":true"))
    {
        assert!(Instant::now() < deadline, "{:?}", watch_entries(s3));
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// An entry of a watch on another machine (never taken for gone by its
/// pid; stale only once its lease runs out).
fn foreign(held: bool) -> Vec<u8> {
    format!(
        r#"{{"side":"watch","host":"elsewhere","machine":"elsewhere","pid":1,"start":1,"held":{held}}}"#
    )
    .into_bytes()
}

/// The binary against `s3`, with a cache directory of the test's.
fn cmd(s3: &Server, t: &tempfile::TempDir) -> std::process::Command {
    let mut c = s3.cmd();
    c.env("SYDRA_ARCHIVE_CACHE_DIR", t.path().join("cache"));
    c
}

/// `watch --once` of `data` into `db/`, with `env`.
fn once(
    s3: &Server,
    t: &tempfile::TempDir,
    data: &std::path::Path,
    env: &[(&str, String)],
) -> std::process::Output {
    let mut c = cmd(s3, t);
    c.args(["watch", p(data), "-o", &url("db/"), "--once", "-q"]);
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

/// The refusal of a second watch: one line naming the prefix and `who`.
fn refused(o: &std::process::Output, who: &str) {
    expect_code(o, 2);
    let err = stderr(o);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("another watch ships into s3://backups/db/ (")
            && err.contains(who)
            && err.trim_end().ends_with("): one watch a destination"),
        "{err}"
    );
}

#[test]
fn a_second_watch_on_a_prefix_is_refused_while_creates_and_prunes_go_on() {
    let Some(s3) = Server::start() else { return };
    let t = tempfile::tempdir().unwrap();
    let data = tiny_data(t.path());
    let mut w = Watch::start(cmd(&s3, &t), &data, "db/", &[]);
    w.next_with("\"event\":\"point\"");
    let pid = w.child.id();
    wait_held(&s3, pid);
    refused(&once(&s3, &t, &data, &[]), &format!("pid {pid} on "));
    // A create and a deleting prune of the prefix are not kept out.
    let o = s3.run(&["create", p(&data), "-o", &url("db/other.tar.zst"), "-q"]);
    expect_code(&o, 0);
    let o = s3.run(&["prune", &url("db/"), "--keep-last", "1", "--yes", "-q"]);
    expect_code(&o, 0);
    // And the watch goes on shipping.
    std::fs::write(data.join("tags.json"), b"{\"c\":2}").unwrap();
    w.next_with("\"event\":\"point\"");
    // SIGTERM removes its entry (and every other).
    let (code, err) = w.term();
    assert_eq!(code, Some(0), "{err}");
    assert!(all_entries(&s3).is_empty(), "{:?}", all_entries(&s3));
}

#[test]
fn entries_of_killed_or_expired_watches_are_taken_over() {
    let Some(s3) = Server::start() else { return };
    let t = tempfile::tempdir().unwrap();
    let data = tiny_data(t.path());
    // SIGKILL leaves the entry; the next watch on this machine finds its
    // process gone.
    let mut w = Watch::start(cmd(&s3, &t), &data, "db/", &[]);
    w.next_with("\"event\":\"point\"");
    wait_held(&s3, w.child.id());
    w.child.kill().unwrap();
    w.child.wait().unwrap();
    assert_eq!(watch_entries(&s3).len(), 1);
    expect_code(&once(&s3, &t, &data, &[]), 0);
    assert!(all_entries(&s3).is_empty(), "{:?}", all_entries(&s3));

    // A watch of another machine within its lease holds the prefix ...
    s3.put("db/.sydra-archive.lock/watch-elsewhere", &foreign(true));
    refused(&once(&s3, &t, &data, &[]), "pid 1 on elsewhere");
    // ... until its lease (1 s here, by the store's clock, which keeps
    // whole seconds) ran out without a renewal.
    std::thread::sleep(Duration::from_millis(2100));
    let lease = [("SYDRA_ARCHIVE_TEST_LOCK_LEASE_MS", "1000".to_string())];
    expect_code(&once(&s3, &t, &data, &lease), 0);
    assert!(all_entries(&s3).is_empty(), "{:?}", all_entries(&s3));
}

#[test]
fn of_two_watches_starting_at_once_exactly_one_ships() {
    let Some(s3) = Server::start() else { return };
    let t = tempfile::tempdir().unwrap();
    let data = tiny_data(t.path());
    // A claim that sorts first wins: this watch gives way.
    s3.put("db/.sydra-archive.lock/watch-0", &foreign(false));
    refused(&once(&s3, &t, &data, &[]), "starting; pid 1 on elsewhere");
    std::fs::remove_file(s3.object_file("db/.sydra-archive.lock/watch-0")).unwrap();
    // A claim that sorts after: this watch waits for it to be decided,
    // then gives way to it once held, or ships once it is withdrawn.
    let claim = "db/.sydra-archive.lock/watch-~";
    for (then_held, code) in [(true, 2), (false, 0)] {
        s3.put(claim, &foreign(false));
        let flag = t.path().join("waiting");
        let mut child = cmd(&s3, &t)
            .args(["watch", p(&data), "-o", &url("db/"), "--once", "-q"])
            .env(
                "SYDRA_ARCHIVE_TEST_PAUSE",
                format!("watch-wait:{}", flag.display()),
            )
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(120);
        while !flag.exists() {
            assert!(child.try_wait().unwrap().is_none(), "it did not wait");
            assert!(Instant::now() < deadline, "it did not wait");
            std::thread::sleep(Duration::from_millis(10));
        }
        if then_held {
            s3.put(claim, &foreign(true));
        } else {
            std::fs::remove_file(s3.object_file(claim)).unwrap();
        }
        std::fs::remove_file(&flag).unwrap();
        let o = child.wait_with_output().unwrap();
        if code == 2 {
            refused(&o, "pid 1 on elsewhere");
            std::fs::remove_file(s3.object_file(claim)).unwrap();
        } else {
            expect_code(&o, 0);
        }
        assert!(all_entries(&s3).is_empty(), "{:?}", all_entries(&s3));
    }
    // Two real ones started together, a few times: one is refused, the
    // other holds the prefix.
    for round in 0..3 {
        std::fs::write(data.join("tags.json"), format!("{{\"r\":{round}}}")).unwrap();
        let mut a = Watch::start(cmd(&s3, &t), &data, "db/", &[]);
        let mut b = Watch::start(cmd(&s3, &t), &data, "db/", &[]);
        let deadline = Instant::now() + Duration::from_secs(120);
        let (loser, winner) = loop {
            if a.child.try_wait().unwrap().is_some() {
                break (a, b);
            }
            if b.child.try_wait().unwrap().is_some() {
                break (b, a);
            }
            assert!(Instant::now() < deadline, "both watches still run");
            std::thread::sleep(Duration::from_millis(20));
        };
        wait_held(&s3, winner.child.id());
        let (code, err) = loser.wait();
        assert_eq!(code, Some(2), "{err}");
        assert!(err.contains("one watch a destination"), "{err}");
        let (code, err) = winner.term();
        assert_eq!(code, Some(0), "{err}");
        assert!(all_entries(&s3).is_empty(), "{:?}", all_entries(&s3));
    }
}
