//! A restore interrupted: SIGINT and SIGTERM remove the staging tree,
//! SIGKILL at many points leaves the old tree or the new one, never a mix,
//! and a cleanup killed at any point is finished by the next run.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Instant;

use crate::support::*;

use super::{archive_of, restore_paused};

#[test]
fn sigint_and_sigterm_during_restore_remove_staging() {
    let t = tempfile::tempdir().unwrap();
    let data = medium_data(t.path());
    let a = fs::read(archive_of(&data, t.path())).unwrap();
    let old = tiny_data(t.path());
    let old_digest = tree_digest(&old);
    for (sig, target, force) in [
        (libc::SIGINT, t.path().join("fresh"), false),
        (libc::SIGTERM, t.path().join("fresh"), false),
        (libc::SIGTERM, old.clone(), true),
    ] {
        let (child, stdin) = restore_paused(&a, a.len() / 2, &target, force);
        unsafe { libc::kill(child.id() as i32, sig) };
        let o = child.wait_with_output().unwrap();
        drop(stdin);
        expect_code(&o, 2);
        assert!(stderr(&o).contains("interrupted"), "{}", stderr(&o));
        assert!(leftovers(t.path()).is_empty(), "{:?}", leftovers(t.path()));
        if force {
            assert_eq!(tree_digest(&target), old_digest);
        } else {
            assert!(!target.exists());
        }
    }
}

#[test]
fn sigkill_at_many_points_leaves_old_or_new_never_mixed() {
    let t = tempfile::tempdir().unwrap();
    let data = medium_data(t.path());
    let a = archive_of(&data, t.path());
    let new_digest = tree_digest(&data);
    let old_src = tiny_data(t.path());
    let old_digest = tree_digest(&old_src);
    let work = t.path().join("work");
    fs::create_dir(&work).unwrap();
    let target = work.join("db");

    let start = Instant::now();
    expect_code(&run(&["restore", p(&a), p(&target), "-q"]), 0);
    let full = start.elapsed();
    fs::remove_dir_all(&target).unwrap();

    // Kills spread over twice a clean run's time: each run first removes
    // the staging trees earlier kills left, so later runs take longer. On
    // a loaded machine the sweep goes on, later and later, until a run has
    // been seen to finish, so that kills fall on both sides of the commit.
    let steps = 12u32;
    let mut outcomes = [0u32; 2];
    for force in [false, true] {
        let finished_before = outcomes[1];
        for k in 0.. {
            if k > steps && (outcomes[1] > finished_before || k > 6 * steps) {
                break;
            }
            if force {
                let _ = fs::remove_dir_all(&target);
                let cp = std::process::Command::new("cp")
                    .args(["-a", p(&old_src), p(&target)])
                    .status()
                    .unwrap();
                assert!(cp.success());
            } else if target.exists() {
                fs::remove_dir_all(&target).unwrap();
            }
            let mut c = bin();
            c.args(["restore", p(&a), p(&target), "-q"]);
            if force {
                c.arg("--force");
            }
            let mut child = c
                .stdin(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            std::thread::sleep(full * 2 * k / steps);
            unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
            child.wait().unwrap();
            let now = if target.exists() {
                Some(tree_digest(&target))
            } else {
                None
            };
            match (force, now.as_deref()) {
                (false, None) => outcomes[0] += 1,
                (true, Some(d)) if d == old_digest => outcomes[0] += 1,
                (_, Some(d)) if d == new_digest => {
                    outcomes[1] += 1;
                    if force {
                        // The old tree is kept beside it (or, if the kill fell
                        // between swap and rename, under the staging name).
                        let holders: Vec<_> = fs::read_dir(&work)
                            .unwrap()
                            .map(|e| e.unwrap().path())
                            .filter(|p| p != &target && tree_digest(p) == old_digest)
                            .collect();
                        assert!(!holders.is_empty(), "old data lost at step {k}");
                        for h in holders {
                            fs::remove_dir_all(h).unwrap();
                        }
                    }
                }
                (f, other) => {
                    panic!("step {k} force={f}: target is {other:?}, neither old nor new")
                }
            }
        }
    }
    assert!(outcomes[0] > 0 && outcomes[1] > 0, "{outcomes:?}");
    // The next run cleans up unfinished staging trees of killed runs.
    let _ = fs::remove_dir_all(&target);
    let o = run(&["restore", p(&a), p(&target), "--json"]);
    expect_code(&o, 0);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert!(
        v["reported_leftovers"].as_array().unwrap().is_empty(),
        "{v}"
    );
    assert!(leftovers(&work).is_empty(), "{:?}", leftovers(&work));
}

/// The test hook of debug builds (see `removal_step` in src/sys/remove.rs): the
/// binary kills itself with SIGKILL just before removal step number N.
const KILL_AT_REMOVAL: &str = "SYDRA_ARCHIVE_TEST_KILL_AT_REMOVAL";

/// What a run killed while it extracted leaves: a marked staging
/// directory, its lock free, holding part of a data dir.
fn killed_staging(work: &Path, data: &Path) -> PathBuf {
    let s = work.join(".db.sydra-staging.1.deadbeef");
    let cp = std::process::Command::new("cp")
        .args(["-a", p(data), p(&s)])
        .status()
        .unwrap();
    assert!(cp.success());
    fs::write(s.join(".sydra-staging"), b"").unwrap();
    fs::create_dir_all(s.join("segments/7200/deeper")).unwrap();
    fs::write(s.join("segments/7200/deeper/x.seg"), b"partial").unwrap();
    s
}

#[test]
fn a_cleanup_killed_at_any_point_is_finished_by_the_next_run() {
    use std::os::unix::process::ExitStatusExt;
    if !cfg!(debug_assertions) {
        eprintln!("skipped: the kill hook is compiled into debug builds only");
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let data = tiny_data(t.path());
    let a = archive_of(&data, t.path());
    let want = tree_digest(&data);
    let work = t.path().join("work");
    let target = work.join("db");
    // Kill the run that removes a killed run's staging directory just
    // before each of its removal steps in turn (twice: the run after is
    // killed at the same step of its own cleanup), until a run gets
    // through; every time, the next unhindered run removes everything and
    // reports nothing.
    let mut killed = 0;
    for n in 0u32.. {
        assert!(n < 1000, "the restore never got through its cleanup");
        let _ = fs::remove_dir_all(&work);
        fs::create_dir(&work).unwrap();
        killed_staging(&work, &data);
        let mut got_through = None;
        for run in 0..2 {
            let o = bin()
                .args(["restore", p(&a), p(&target), "-q"])
                .env(KILL_AT_REMOVAL, n.to_string())
                .stdin(Stdio::null())
                .output()
                .unwrap();
            if o.status.success() {
                got_through = Some(run);
                break;
            }
            assert_eq!(
                o.status.signal(),
                Some(libc::SIGKILL),
                "step {n}: {}",
                stderr(&o)
            );
            assert!(!target.exists(), "step {n}: killed before it staged");
        }
        if got_through == Some(0) {
            // Step n is past the end of the cleanup: every step was hit.
            assert!(leftovers(&work).is_empty(), "{:?}", leftovers(&work));
            assert_eq!(tree_digest(&target), want);
            break;
        }
        killed += 1;
        if got_through.is_some() {
            // The second run finished the first one's cleanup.
            assert!(
                leftovers(&work).is_empty(),
                "step {n}: {:?}",
                leftovers(&work)
            );
            assert_eq!(tree_digest(&target), want, "step {n}");
            continue;
        }
        let o = run(&["restore", p(&a), p(&target), "--json"]);
        expect_code(&o, 0);
        let v = json(&o);
        assert!(
            v["reported_leftovers"].as_array().unwrap().is_empty(),
            "step {n}: {v}"
        );
        assert!(
            !v["removed_leftovers"].as_array().unwrap().is_empty(),
            "step {n}: {v}"
        );
        assert!(
            leftovers(&work).is_empty(),
            "step {n}: {:?}",
            leftovers(&work)
        );
        assert_eq!(tree_digest(&target), want, "step {n}");
    }
    // A rename, every file and directory below, the marker, the directory.
    assert!(killed >= 13, "only {killed} kill points");
}
