//! The lock of a prefix (`store::s3::lease`): a deleting prune waits
//! while a create holds it, and a create on a base there while a prune
//! does; entries of runs that are gone are removed by whoever finds
//! them; and a create never publishes an incremental whose base object
//! went away (nor, in a directory, whose base file did).

use std::path::Path;
use std::process::{Child, Output, Stdio};
use std::time::Duration;

use crate::support::*;

use super::server::*;

/// An entry of a run on another machine (never taken for gone by its
/// pid; stale only once its lease runs out).
fn foreign(side: &str) -> Vec<u8> {
    format!(r#"{{"side":"{side}","host":"elsewhere","machine":"elsewhere","pid":1,"start":1}}"#)
        .into_bytes()
}

/// The lock entries under `db/`.
fn entries(s3: &Server) -> Vec<String> {
    entries_in(s3, "db")
}

/// The lock entries under `prefix/`.
fn entries_in(s3: &Server, prefix: &str) -> Vec<String> {
    let dir = s3.object_file(&format!("{prefix}/.sydra-archive.lock"));
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("create-") || n.starts_with("prune-"))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Waits until the paused child made `flag`, or fails if it exited first.
fn wait_paused(child: &mut Child, flag: &Path) {
    while !flag.exists() {
        if let Some(status) = child.try_wait().unwrap() {
            let o = std::mem::replace(child, bin().spawn().unwrap()).wait_with_output();
            panic!("the run exited ({status}) instead of pausing: {o:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn finish(child: Child) -> Output {
    child.wait_with_output().unwrap()
}

fn archives(s3: &Server) -> Vec<String> {
    archives_in(s3, "db")
}

fn archives_in(s3: &Server, prefix: &str) -> Vec<String> {
    let o = s3.run(&["ls", "--json", &url(&format!("{prefix}/"))]);
    expect_code(&o, 0);
    json(&o)["archives"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["key"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn prune_waits_while_a_create_or_another_prune_holds_the_prefix() {
    let Some(s3) = Server::start() else { return };
    let t = tempfile::tempdir().unwrap();
    let data = tiny_data(t.path());
    // Prefixes whose names an object path would escape (`~`, `[`, `%`)
    // are listed as they are written.
    for (prefix, holder) in [("db", "create"), ("db", "prune"), ("t~1[a]%", "create")] {
        for n in ["a.tar.zst", "b.tar.zst"] {
            let key = format!("{prefix}/{n}");
            expect_code(
                &s3.run(&["create", p(&data), "-o", &url(&key), "-q", "--force"]),
                0,
            );
            std::thread::sleep(Duration::from_millis(1100));
        }
        let entry = format!("{prefix}/.sydra-archive.lock/{holder}-elsewhere");
        s3.put(&entry, &foreign(holder));
        let flag = t.path().join("waiting");
        let mut prune = s3
            .cmd()
            .args([
                "prune",
                &url(&format!("{prefix}/")),
                "--keep-last",
                "1",
                "--yes",
            ])
            .env(
                "SYDRA_ARCHIVE_TEST_PAUSE",
                format!("lock-wait:{}", flag.display()),
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // It found the other run's entry and backed off: nothing
        // deleted, and its own entry withdrawn.
        wait_paused(&mut prune, &flag);
        assert!(s3.object_file(&format!("{prefix}/a.tar.zst")).exists());
        assert_eq!(entries_in(&s3, prefix), [format!("{holder}-elsewhere")]);
        // The other run ends; the prune goes on.
        std::fs::remove_file(s3.object_file(&entry)).unwrap();
        std::fs::remove_file(&flag).unwrap();
        let o = finish(prune);
        expect_code(&o, 0);
        assert_eq!(archives_in(&s3, prefix), [format!("{prefix}/b.tar.zst")]);
        assert!(
            entries_in(&s3, prefix).is_empty(),
            "{:?}",
            entries_in(&s3, prefix)
        );
    }
}

#[test]
fn a_create_on_a_base_waits_while_a_prune_holds_the_prefix() {
    let Some(s3) = Server::start() else { return };
    let t = tempfile::tempdir().unwrap();
    let data = small_data(t.path());
    expect_code(
        &s3.run(&["create", p(&data), "-o", &url("db/full.tar.zst"), "-q"]),
        0,
    );
    s3.put("db/.sydra-archive.lock/prune-elsewhere", &foreign("prune"));
    let flag = t.path().join("waiting");
    let mut create = s3
        .cmd()
        .args(["create", p(&data), "-o", &url("db/"), "--incremental", "-q"])
        .env(
            "SYDRA_ARCHIVE_TEST_PAUSE",
            format!("lock-wait:{}", flag.display()),
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_paused(&mut create, &flag);
    assert_eq!(archives(&s3), ["db/full.tar.zst"]);
    assert_eq!(entries(&s3), ["prune-elsewhere"]);
    std::fs::remove_file(s3.object_file("db/.sydra-archive.lock/prune-elsewhere")).unwrap();
    std::fs::remove_file(&flag).unwrap();
    let o = finish(create);
    expect_code(&o, 0);
    let keys = archives(&s3);
    assert_eq!(keys.len(), 2, "{keys:?}");
    expect_code(&s3.run(&["verify", "--chain", &url(&keys[0])]), 0);
    assert!(entries(&s3).is_empty(), "{:?}", entries(&s3));
}

/// This machine as the binary names it (boot and pid namespace).
fn machine() -> String {
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap();
    let ns = std::fs::read_link("/proc/self/ns/pid").unwrap();
    format!("{}/{}", boot.trim(), ns.display())
}

#[test]
fn entries_of_runs_that_are_gone_are_removed_and_do_not_hold_the_lock() {
    let Some(s3) = Server::start() else { return };
    let t = tempfile::tempdir().unwrap();
    let data = tiny_data(t.path());
    for n in ["db/a.tar.zst", "db/b.tar.zst"] {
        expect_code(&s3.run(&["create", p(&data), "-o", &url(n), "-q"]), 0);
        std::thread::sleep(Duration::from_millis(1100));
    }
    // A create of this machine that is no longer running ...
    let mut dead = std::process::Command::new("true").spawn().unwrap();
    let pid = dead.id();
    dead.wait().unwrap();
    let body = format!(
        r#"{{"side":"create","host":"here","machine":"{}","pid":{pid},"start":1}}"#,
        machine()
    );
    s3.put("db/.sydra-archive.lock/create-dead", body.as_bytes());
    // ... and one of another machine not renewed for a whole lease (by
    // the store's clock: it keeps whole seconds).
    s3.put("db/.sydra-archive.lock/create-expired", &foreign("create"));
    // ... and one dated a day ahead of the store's clock.
    s3.put("db/.sydra-archive.lock/prune-future", &foreign("prune"));
    let ahead = std::time::SystemTime::now() + Duration::from_secs(86_400);
    std::fs::File::options()
        .write(true)
        .open(s3.object_file("db/.sydra-archive.lock/prune-future"))
        .unwrap()
        .set_modified(ahead)
        .unwrap();
    std::thread::sleep(Duration::from_millis(3100));
    let flag = t.path().join("waiting");
    let o = s3
        .cmd()
        .args(["prune", &url("db/"), "--keep-last", "1", "--yes"])
        .env("SYDRA_ARCHIVE_TEST_LOCK_LEASE_MS", "1000")
        .env(
            "SYDRA_ARCHIVE_TEST_PAUSE",
            format!("lock-wait:{}", flag.display()),
        )
        .output()
        .unwrap();
    expect_code(&o, 0);
    assert!(!flag.exists(), "prune waited for a stale entry");
    assert_eq!(archives(&s3), ["db/b.tar.zst"]);
    assert!(entries(&s3).is_empty(), "{:?}", entries(&s3));

    // A live entry of another machine, within its lease, is not stale.
    s3.put("db/.sydra-archive.lock/create-live", &foreign("create"));
    let mut prune = s3
        .cmd()
        .args(["prune", &url("db/"), "--keep-last", "1", "--yes"])
        .env(
            "SYDRA_ARCHIVE_TEST_PAUSE",
            format!("lock-wait:{}", flag.display()),
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_paused(&mut prune, &flag);
    std::fs::remove_file(s3.object_file("db/.sydra-archive.lock/create-live")).unwrap();
    std::fs::remove_file(&flag).unwrap();
    expect_code(&finish(prune), 0);
}

#[test]
fn an_incremental_is_not_published_when_its_base_object_went_away() {
    let Some(s3) = Server::start() else { return };
    let t = tempfile::tempdir().unwrap();
    let data = small_data(t.path());
    let base = url("db/full.tar.zst");
    expect_code(&s3.run(&["create", p(&data), "-o", &base, "-q"]), 0);
    let bytes = std::fs::read(s3.object_file("db/full.tar.zst")).unwrap();
    for (what, act) in [("removed", 0), ("replaced", 1)] {
        let flag = t.path().join(format!("publish-{what}"));
        let out = url(&format!("db/inc-{what}.tar.zst"));
        let mut create = s3
            .cmd()
            .args(["create", p(&data), "--base", &base, "-o", &out])
            .env(
                "SYDRA_ARCHIVE_TEST_PAUSE",
                format!("publish:{}", flag.display()),
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        wait_paused(&mut create, &flag);
        // Another tool (not a prune: it would wait) takes the base away.
        if act == 0 {
            std::fs::remove_file(s3.object_file("db/full.tar.zst")).unwrap();
        } else {
            let mut other = bytes.clone();
            other.truncate(bytes.len() - 1);
            s3.put("db/full.tar.zst", &other);
        }
        std::fs::remove_file(&flag).unwrap();
        let o = finish(create);
        expect_code(&o, 2);
        assert!(
            stderr(&o).contains(
                "was removed or replaced while the incremental was written; nothing was published"
            ),
            "{}",
            stderr(&o)
        );
        assert!(!s3.object_file(&format!("db/inc-{what}.tar.zst")).exists());
        s3.put("db/full.tar.zst", &bytes);
    }
}

#[test]
fn an_incremental_is_not_published_when_its_base_file_went_away() {
    let t = tempfile::tempdir().unwrap();
    let data = small_data(t.path());
    let base = t.path().join("full.tar.zst");
    create(&data, &base);
    let flag = t.path().join("publish");
    let out = t.path().join("inc.tar.zst");
    let mut c = bin()
        .args(["create", p(&data), "--base", p(&base), "-o", p(&out)])
        .env(
            "SYDRA_ARCHIVE_TEST_PAUSE",
            format!("publish:{}", flag.display()),
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_paused(&mut c, &flag);
    // Moved aside (not deleted: a prune would have to wait for the lock).
    std::fs::rename(&base, t.path().join("aside.tar.zst")).unwrap();
    std::fs::remove_file(&flag).unwrap();
    let o = finish(c);
    expect_code(&o, 2);
    assert!(
        stderr(&o).contains("was removed or replaced while the incremental was written"),
        "{}",
        stderr(&o)
    );
    assert!(!out.exists());
    let left: Vec<_> = std::fs::read_dir(t.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .filter(|n| n != ".sydra-archive.lock")
        .collect();
    assert!(left.is_empty(), "temporaries left: {left:?}");
}
