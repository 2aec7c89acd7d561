//! A restore that cannot finish: byte flips and truncations restore
//! nothing, a full disk fails cleanly, a failed swap removes the staging
//! tree, and leftover staging is removed only when its lock is free.

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Stdio;

use crate::support::*;

use super::{archive_of, restore_paused};

#[test]
fn byte_flips_and_truncations_restore_nothing() {
    let t = tempfile::tempdir().unwrap();
    let data = tiny_data(t.path());
    let a = fs::read(archive_of(&data, t.path())).unwrap();
    let work = t.path().join("work");
    fs::create_dir(&work).unwrap();
    let bad = t.path().join("bad.tar.zst");
    let target = work.join("d");
    let mut cases: Vec<Vec<u8>> = Vec::new();
    for i in (0..a.len()).step_by(3) {
        let mut b = a.clone();
        b[i] ^= 0x10;
        cases.push(b);
    }
    for len in (0..a.len()).step_by(17) {
        cases.push(a[..len].to_vec());
    }
    for (n, b) in cases.iter().enumerate() {
        fs::write(&bad, b).unwrap();
        let o = run(&["restore", p(&bad), p(&target)]);
        assert_eq!(code(&o), 1, "case {n}: {}", stderr(&o));
        assert_eq!(
            fs::read_dir(&work).unwrap().count(),
            0,
            "case {n} left something"
        );
    }
}

#[test]
fn disk_full_fails_cleanly() {
    if !root_tests("tmpfs and bind mounts") {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let data = medium_data(t.path());
    let a = archive_of(&data, t.path());
    let bytes = fs::read(&a).unwrap();

    // Too small from the start: refused before extracting anything.
    let small = Mount::tmpfs(&t.path().join("small"), "2m");
    let o = run(&["restore", p(&a), p(&small.0.join("db"))]);
    expect_code(&o, 2);
    assert!(
        stderr(&o).contains("not enough free space"),
        "{}",
        stderr(&o)
    );
    assert_eq!(fs::read_dir(&small.0).unwrap().count(), 0);
    drop(small);

    // Fills up half way through extraction.
    let fs_ = Mount::tmpfs(&t.path().join("full"), "64m");
    let old = fs_.0.join("db");
    let cp = std::process::Command::new("cp")
        .args(["-a", p(&tiny_data(t.path())), p(&old)])
        .status()
        .unwrap();
    assert!(cp.success());
    let old_digest = tree_digest(&old);
    for (target, force) in [(fs_.0.join("fresh"), false), (old.clone(), true)] {
        let (child, mut stdin) = restore_paused(&bytes, bytes.len() / 2, &target, force);
        let filler = fs_.0.join("filler");
        let mut f = fs::File::create(&filler).unwrap();
        let chunk = vec![7u8; 1 << 20];
        while f.write_all(&chunk).is_ok() {}
        let _ = stdin.write_all(&bytes[bytes.len() / 2..]);
        drop(stdin);
        let o = child.wait_with_output().unwrap();
        expect_code(&o, 2);
        assert!(stderr(&o).contains("No space left"), "{}", stderr(&o));
        assert!(leftovers(&fs_.0).is_empty(), "{:?}", leftovers(&fs_.0));
        if force {
            assert_eq!(tree_digest(&target), old_digest);
        } else {
            assert!(!target.exists());
        }
        drop(f);
        fs::remove_file(&filler).unwrap();
    }
}

/// A swap that fails after staging (here: a sticky parent and a data dir
/// owned by someone else, restored by an unprivileged user) removes the
/// staging tree: nothing is left beside the data dir, which is unchanged.
#[test]
fn a_failed_swap_removes_the_staging_tree() {
    use std::os::unix::process::CommandExt;
    if !root_tests("tmpfs and bind mounts") {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    fs::set_permissions(t.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let data = tiny_data(t.path());
    let a = archive_of(&data, t.path());
    // Archives are owner-only; this one is read by another user.
    fs::set_permissions(&a, fs::Permissions::from_mode(0o644)).unwrap();
    let work = t.path().join("work");
    fs::create_dir(&work).unwrap();
    fs::set_permissions(&work, fs::Permissions::from_mode(0o1777)).unwrap();
    let target = work.join("db");
    let cp = std::process::Command::new("cp")
        .args(["-a", p(&small_data(t.path())), p(&target)])
        .status()
        .unwrap();
    assert!(cp.success());
    let old = tree_digest(&target);
    let mut c = bin();
    c.args(["restore", p(&a), p(&target), "--force"])
        .stdin(Stdio::null());
    // SAFETY: setgid/setuid are async-signal-safe.
    unsafe {
        c.pre_exec(|| {
            if libc::setgid(65534) != 0 || libc::setuid(65534) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let o = c.output().unwrap();
    expect_code(&o, 2);
    assert!(
        stderr(&o).starts_with(&format!(
            "sydra-archive: restore {}: cannot swap into place {}: Operation not permitted",
            p(&a),
            p(&target)
        )),
        "{}",
        stderr(&o)
    );
    assert!(leftovers(&work).is_empty(), "{:?}", leftovers(&work));
    assert_eq!(fs::read_dir(&work).unwrap().count(), 1);
    assert_eq!(tree_digest(&target), old);
}

/// Takes an exclusive flock on `path` (a directory or a file) for as long
/// as the returned file is open, as a live run in any PID namespace would.
fn hold_lock(path: &Path) -> fs::File {
    use std::os::fd::AsRawFd;
    let f = fs::File::open(path).unwrap();
    // SAFETY: flock on a descriptor that `f` keeps open.
    assert_eq!(unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) }, 0);
    f
}

/// A staging directory of another run is stale only when its lock is free:
/// one whose lock is held is left alone, whatever pid its name carries (a
/// restore in another PID namespace has a pid that means nothing here).
#[test]
fn leftover_staging_is_removed_only_when_its_lock_is_free() {
    let t = tempfile::tempdir().unwrap();
    let data = tiny_data(t.path());
    let a = archive_of(&data, t.path());
    let work = t.path().join("work");
    fs::create_dir(&work).unwrap();
    let target = work.join("db");
    let staging = |pid: &str| work.join(format!(".db.sydra-staging.{pid}.0"));
    let (held, free, unmarked) = (staging("2147483646"), staging("2147483645"), staging("2"));
    for d in [&held, &free, &unmarked] {
        fs::create_dir(d).unwrap();
        fs::write(d.join("MANIFEST"), b"staged").unwrap();
    }
    fs::write(held.join(".sydra-staging"), b"").unwrap();
    fs::write(free.join(".sydra-staging"), b"").unwrap();
    let lock = hold_lock(&held);

    let o = run(&["restore", p(&a), p(&target), "--json"]);
    expect_code(&o, 0);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["removed_leftovers"], serde_json::json!([p(&free)]));
    assert_eq!(v["reported_leftovers"], serde_json::json!([p(&unmarked)]));
    assert!(!free.exists());
    assert_eq!(fs::read(held.join("MANIFEST")).unwrap(), b"staged");
    assert_eq!(tree_digest(&target), tree_digest(&data));

    // Its run is gone: the next restore removes it.
    drop(lock);
    let o = run(&["restore", p(&a), p(&target), "--force", "--json"]);
    expect_code(&o, 0);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["removed_leftovers"], serde_json::json!([p(&held)]));
    assert_eq!(v["reported_leftovers"], serde_json::json!([p(&unmarked)]));
    assert!(!held.exists());
    assert_eq!(fs::read(unmarked.join("MANIFEST")).unwrap(), b"staged");
}
