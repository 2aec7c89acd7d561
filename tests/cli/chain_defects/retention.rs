//! Defects in retention among the archives of a directory: `prune`
//! keeps what kept archives need (copies, encrypted bases under any
//! name, without the key), waits for a run that holds the directory's
//! lock, and `ls` and `restore DIR/` find a renamed base.

use std::fs;
use std::process::Stdio;
use std::time::{Duration, Instant};

use sydra_archive::sydradb::wal_record;

use crate::support::*;

use super::helpers::{
    age_key, append, full_digest, hour_ago, prune_last, restored, set_mtime, tiny_chain,
};

// ---------------------------------------------------------------------
// 7. prune keeps what kept archives need.

#[test]
fn d07a_a_byte_identical_copy_of_the_base_and_the_base_are_both_kept() {
    let t = tempfile::tempdir().unwrap();
    let shelf = t.path().join("shelf");
    fs::create_dir(&shelf).unwrap();
    let (data, a0, a1) = tiny_chain(t.path(), &shelf);
    let copy = shelf.join("a0-copy.tar.zst");
    fs::copy(&a0, &copy).unwrap();
    set_mtime(&a0, hour_ago() - Duration::from_secs(60));
    set_mtime(&copy, hour_ago());
    let o = prune_last(&shelf, &[]);
    assert!(
        a0.exists() && copy.exists() && a1.exists(),
        "{}",
        stdout(&o)
    );
    assert_eq!(
        restored(&a1, &t.path().join("r")),
        full_digest(&data, t.path(), "1")
    );
}

#[test]
fn d07b_the_plain_base_of_an_encrypted_incremental_named_tar_zst_is_kept() {
    let t = tempfile::tempdir().unwrap();
    let shelf = t.path().join("shelf");
    fs::create_dir(&shelf).unwrap();
    let (id, r) = age_key(t.path());
    let data = tiny_data(t.path());
    let a0 = shelf.join("a0.tar.zst");
    create(&data, &a0);
    set_mtime(&a0, hour_ago());
    append(&data.join("wal/current.wal"), &wal_record(1, 3700, 5.0));
    // Encrypted, but named like a plain archive.
    let a1 = shelf.join("a1.tar.zst");
    let o = run(&[
        "create",
        p(&data),
        "-o",
        p(&a1),
        "--base",
        p(&a0),
        "-r",
        &r,
        "-q",
    ]);
    expect_code(&o, 0);
    assert!(
        fs::read(&a1)
            .unwrap()
            .starts_with(b"age-encryption.org/v1\n")
    );
    let ls = run(&["ls", p(&shelf), "--json"]);
    expect_code(&ls, 0);
    let j = json(&ls);
    let listed = j["archives"].as_array().unwrap();
    let one = listed
        .iter()
        .find(|a| a["key"] == "a1.tar.zst")
        .unwrap_or_else(|| panic!("a1.tar.zst not listed as an archive: {j}"));
    assert_eq!(one["encrypted"], true, "{j}");
    assert!(j["others"].as_array().unwrap().is_empty(), "{j}");
    let o = prune_last(&shelf, &[]);
    assert!(a0.exists(), "the base was deleted: {}", stdout(&o));
    expect_code(
        &run(&[
            "restore",
            p(&a1),
            p(&t.path().join("r")),
            "-i",
            p(&id),
            "-q",
        ]),
        0,
    );
}

#[test]
fn d07c_an_encrypted_base_under_another_name_is_kept_by_its_sha256() {
    let t = tempfile::tempdir().unwrap();
    let shelf = t.path().join("shelf");
    let elsewhere = t.path().join("elsewhere");
    fs::create_dir(&shelf).unwrap();
    fs::create_dir(&elsewhere).unwrap();
    let (id, r) = age_key(t.path());
    let data = tiny_data(t.path());
    let a0 = elsewhere.join("a0.tar.zst.age");
    expect_code(&run(&["create", p(&data), "-o", p(&a0), "-r", &r, "-q"]), 0);
    append(&data.join("wal/current.wal"), &wal_record(1, 3700, 5.0));
    let a1 = shelf.join("a1.tar.zst.age");
    let o = run(&[
        "create",
        p(&data),
        "-o",
        p(&a1),
        "--base",
        p(&a0),
        "-r",
        &r,
        "-i",
        p(&id),
        "-q",
    ]);
    expect_code(&o, 0);
    // The base moved beside the incremental, under another name.
    let moved = shelf.join("moved-base.tar.zst.age");
    fs::rename(&a0, &moved).unwrap();
    set_mtime(&moved, hour_ago());
    let o = prune_last(&shelf, &[]);
    assert!(moved.exists(), "the base was deleted: {}", stdout(&o));
    let o = prune_last(&shelf, &["-i", p(&id)]);
    assert!(
        moved.exists(),
        "the base was deleted (with -i): {}",
        stdout(&o)
    );
    expect_code(
        &run(&[
            "restore",
            p(&a1),
            p(&t.path().join("r")),
            "-i",
            p(&id),
            "--base",
            p(&moved),
            "-q",
        ]),
        0,
    );
}

#[test]
fn d07d_ls_and_prune_of_encrypted_archives_work_without_the_key() {
    let t = tempfile::tempdir().unwrap();
    let shelf = t.path().join("shelf");
    fs::create_dir(&shelf).unwrap();
    let (id, r) = age_key(t.path());
    let data = tiny_data(t.path());
    let old = shelf.join("old.tar.zst.age");
    expect_code(
        &run(&["create", p(&data), "-o", p(&old), "-r", &r, "-q"]),
        0,
    );
    set_mtime(&old, hour_ago() - Duration::from_secs(600));
    let a0 = shelf.join("a0.tar.zst.age");
    expect_code(&run(&["create", p(&data), "-o", p(&a0), "-r", &r, "-q"]), 0);
    set_mtime(&a0, hour_ago());
    append(&data.join("wal/current.wal"), &wal_record(1, 3700, 5.0));
    let a1 = shelf.join("a1.tar.zst.age");
    let o = run(&[
        "create",
        p(&data),
        "-o",
        p(&a1),
        "--base",
        p(&a0),
        "-r",
        &r,
        "-i",
        p(&id),
        "-q",
    ]);
    expect_code(&o, 0);
    let ls = run(&["ls", p(&shelf), "--json"]);
    expect_code(&ls, 0);
    let j = json(&ls);
    assert_eq!(j["archives"].as_array().unwrap().len(), 3, "{j}");
    let o = prune_last(&shelf, &[]);
    assert!(
        a0.exists(),
        "the encrypted base was deleted: {}",
        stdout(&o)
    );
    assert!(!old.exists(), "the old archive was kept: {}", stdout(&o));
    assert!(a1.exists());
}

// ---------------------------------------------------------------------
// 8. prune waits for a run that holds the directory's lock.

/// The syscall number of flock(2).
#[cfg(target_arch = "x86_64")]
const SYS_FLOCK: i64 = 73;
#[cfg(target_arch = "aarch64")]
const SYS_FLOCK: i64 = 32;

/// Whether a thread of `pid` sits in flock(2).
fn in_flock(pid: u32) -> bool {
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return false;
    };
    tasks.flatten().any(|task| {
        fs::read_to_string(task.path().join("syscall")).is_ok_and(|s| {
            s.split_whitespace()
                .next()
                .and_then(|n| n.parse::<i64>().ok())
                == Some(SYS_FLOCK)
        })
    })
}

#[test]
fn d08_prune_blocks_while_a_create_holds_the_directory_lock() {
    use std::os::fd::AsRawFd;
    let t = tempfile::tempdir().unwrap();
    let shelf = t.path().join("shelf");
    fs::create_dir(&shelf).unwrap();
    let data = tiny_data(t.path());
    let old = shelf.join("old.tar.zst");
    create(&data, &old);
    set_mtime(&old, hour_ago());
    create(&data, &shelf.join("new.tar.zst"));
    // A shared lock, as create --base and --incremental take.
    let lock = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(shelf.join(".sydra-archive.lock"))
        .unwrap();
    // SAFETY: flock(2) on a descriptor we own.
    assert_eq!(unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_SH) }, 0);
    let mut child = bin()
        .args(["prune", p(&shelf), "--keep-last", "1", "--yes"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let o = child.wait_with_output().unwrap();
            panic!(
                "prune exited ({status}) while the lock was held: {}{}",
                stdout(&o),
                stderr(&o)
            );
        }
        if in_flock(child.id()) {
            break;
        }
        if start.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            panic!("prune neither blocked in flock nor exited in 30 s");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(old.exists(), "prune deleted while the lock was held");
    drop(lock);
    let o = wait_bounded(child, Duration::from_secs(30));
    expect_code(&o, 0);
    assert!(!old.exists(), "{}", stdout(&o));
}

// ---------------------------------------------------------------------
// Regressions.

/// The shared lock of create --incremental into a directory does not
/// make a concurrent prune fail: it waits, and both succeed.
#[test]
fn r_prune_after_a_released_lock_runs_at_once() {
    let t = tempfile::tempdir().unwrap();
    let shelf = t.path().join("shelf");
    fs::create_dir(&shelf).unwrap();
    let data = tiny_data(t.path());
    let o = run(&[
        "create",
        p(&data),
        "-o",
        &format!("{}/", p(&shelf)),
        "--incremental",
        "-q",
    ]);
    expect_code(&o, 0);
    assert!(shelf.join(".sydra-archive.lock").exists());
    let o = run_bounded(&["prune", p(&shelf), "--keep-last", "1", "--yes"]);
    expect_code(&o, 0);
}

/// Review finding: the recorded name of an encrypted base now names a
/// newer full archive (the base was renamed): the name alone never stands
/// in for the base; the real one is found by its whole SHA-256 and kept.
#[test]
fn r_an_encrypted_base_renamed_and_its_name_reused_is_still_kept() {
    let t = tempfile::tempdir().unwrap();
    let shelf = t.path().join("shelf");
    fs::create_dir(&shelf).unwrap();
    let (id, r) = age_key(t.path());
    let data = tiny_data(t.path());
    let full = shelf.join("full.tar.zst.age");
    expect_code(
        &run(&["create", p(&data), "-o", p(&full), "-r", &r, "-q"]),
        0,
    );
    set_mtime(&full, hour_ago() - std::time::Duration::from_secs(600));
    append(&data.join("wal/current.wal"), &wal_record(1, 3700, 5.0));
    let inc = shelf.join("inc.tar.zst.age");
    let o = run(&[
        "create",
        p(&data),
        "-o",
        p(&inc),
        "--base",
        p(&full),
        "-r",
        &r,
        "-i",
        p(&id),
        "-q",
    ]);
    expect_code(&o, 0);
    let old = shelf.join("full-old.tar.zst.age");
    fs::rename(&full, &old).unwrap();
    set_mtime(&old, hour_ago() - std::time::Duration::from_secs(600));
    set_mtime(&inc, hour_ago() - std::time::Duration::from_secs(300));
    // A new full archive under the base's recorded name, the newest.
    expect_code(
        &run(&["create", p(&data), "-o", p(&full), "-r", &r, "-q"]),
        0,
    );
    let o = run(&["prune", p(&shelf), "--keep-last", "2", "--yes"]);
    expect_code(&o, 0);
    assert!(old.exists(), "the real base was deleted: {}", stdout(&o));
    expect_code(
        &run(&[
            "restore",
            p(&inc),
            p(&t.path().join("r")),
            "-i",
            p(&id),
            "--base",
            p(&old),
            "-q",
        ]),
        0,
    );
}

/// Probe finding: `ls` marked an incremental whose base was renamed as
/// `[latest]`, and `restore DIR/` skipped it for an older archive; the
/// base is looked for among the directory's archives too.
#[test]
fn r_restore_dir_finds_a_renamed_base_among_the_archives_there() {
    let t = tempfile::tempdir().unwrap();
    let shelf = t.path().join("F");
    fs::create_dir(&shelf).unwrap();
    let (data, a0, a1) = tiny_chain(t.path(), &shelf);
    set_mtime(&a0, hour_ago());
    fs::rename(&a0, shelf.join("real0.tar.zst")).unwrap();
    let o = run(&["ls", p(&shelf)]);
    assert!(stdout(&o).contains("[latest]"), "{}", stdout(&o));
    let r = t.path().join("r");
    let o = run(&["restore", &format!("{}/", shelf.display()), p(&r)]);
    expect_code(&o, 0);
    assert!(
        stderr(&o).contains(&format!(
            "restoring the newest restorable archive {}",
            a1.display()
        )),
        "{}",
        stderr(&o)
    );
    assert!(!stderr(&o).contains("skipped"), "{}", stderr(&o));
    assert_eq!(tree_digest(&r), tree_digest(&data));
}
