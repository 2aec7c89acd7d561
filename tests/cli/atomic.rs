//! Atomic publication: killed, interrupted or failed runs never leave a
//! partial OUT.

use std::fs;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::support::*;

const SLOW: [&str; 4] = ["--level", "15", "--threads", "1"];

fn spawn_create(data: &Path, out: &Path, force: bool) -> std::process::Child {
    let mut c = bin();
    c.args(["create", p(data), "-o", p(out), "-q"]).args(SLOW);
    if force {
        c.arg("--force");
    }
    c.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    c.spawn().unwrap()
}

fn signal(child: &std::process::Child, sig: i32) {
    // SAFETY: plain kill(2) on our own child.
    assert_eq!(unsafe { libc::kill(child.id() as i32, sig) }, 0);
}

fn temps(dir: &Path) -> Vec<String> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.contains(".sydra-tmp."))
        .collect()
}

fn time_full_run(data: &Path, out: &Path) -> Duration {
    let start = Instant::now();
    let o = spawn_create(data, out, false).wait_with_output().unwrap();
    expect_code(&o, 0);
    let d = start.elapsed();
    fs::remove_file(out).unwrap();
    d
}

#[test]
fn sigkill_at_many_points_never_leaves_a_partial_archive() {
    let t = tempfile::tempdir().unwrap();
    let data = medium_data(t.path());
    let outdir = t.path().join("out");
    fs::create_dir(&outdir).unwrap();
    let out = outdir.join("a.tar.zst");
    // Kills are spread over 2.5 times the slower of two clean runs, so that
    // on a loaded machine some still land after the publish.
    let full = time_full_run(&data, &out).max(time_full_run(&data, &out));

    let old = {
        let tiny = tiny_data(t.path());
        create(&tiny, &out);
        fs::read(&out).unwrap()
    };
    // If the machine is so loaded that no run of the sweep finished, it
    // goes on, later and later, until one does (k = 0 kills at once, before
    // any publish).
    let steps = 8u32;
    let (mut saw_old, mut saw_new, mut saw_absent) = (0, 0, 0);
    for force in [false, true] {
        let finished_before = saw_new;
        for k in 0.. {
            if k > steps && saw_new > finished_before {
                break;
            }
            assert!(
                k < 100 * steps,
                "no run finished, however late it was killed"
            );
            if force {
                fs::write(&out, &old).unwrap();
            } else {
                let _ = fs::remove_file(&out);
            }
            let mut child = spawn_create(&data, &out, force);
            std::thread::sleep(full * 5 * k / (2 * steps));
            signal(&child, libc::SIGKILL);
            let status = child.wait().unwrap();
            match fs::read(&out) {
                Err(_) => {
                    assert!(!force, "forced run lost the old archive");
                    saw_absent += 1;
                }
                Ok(bytes) if bytes == old => {
                    assert!(force, "old archive appeared from nowhere");
                    saw_old += 1;
                }
                Ok(_) => {
                    let o = run(&["verify", p(&out)]);
                    assert_eq!(
                        code(&o),
                        0,
                        "partial archive after SIGKILL at step {k} ({status:?}): {}",
                        stderr(&o)
                    );
                    saw_new += 1;
                }
            }
        }
    }
    assert!(
        saw_absent + saw_old > 0 && saw_new > 0,
        "kills landed both before and after publish: {saw_absent} {saw_old} {saw_new}"
    );

    // Leftover temporaries of killed runs are recognizable and removed by
    // the next run that writes the same target, once 2 s old (a younger one
    // may belong to a live run that has not locked it yet).
    std::thread::sleep(Duration::from_millis(2100));
    let o = run(&[
        "create",
        p(&data),
        "-o",
        p(&out),
        "--force",
        "--threads",
        "1",
    ]);
    expect_code(&o, 0);
    assert!(temps(&outdir).is_empty(), "{:?}", temps(&outdir));
    let names: Vec<_> = fs::read_dir(&outdir).unwrap().collect();
    assert_eq!(names.len(), 1);
}

#[test]
fn sigint_and_sigterm_remove_the_temporary_and_keep_out() {
    let t = tempfile::tempdir().unwrap();
    let data = medium_data(t.path());
    let outdir = t.path().join("out");
    fs::create_dir(&outdir).unwrap();
    let out = outdir.join("a.tar.zst");
    for sig in [libc::SIGINT, libc::SIGTERM] {
        fs::write(&out, b"old archive").unwrap();
        let child = spawn_create(&data, &out, true);
        // Wait until the temporary exists, then interrupt (the deadline is
        // a guard against a hang, not a window).
        let deadline = Instant::now() + Duration::from_secs(120);
        while temps(&outdir).is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(!temps(&outdir).is_empty(), "no temporary seen");
        signal(&child, sig);
        let o = child.wait_with_output().unwrap();
        assert_eq!(code(&o), 2, "{}", stderr(&o));
        assert!(stderr(&o).contains("interrupted"), "{}", stderr(&o));
        assert_eq!(fs::read(&out).unwrap(), b"old archive");
        assert!(temps(&outdir).is_empty(), "{:?}", temps(&outdir));
    }
}

#[test]
fn write_errors_exit_2() {
    // /dev/full gives a write error on stdout.
    let t = tempfile::tempdir().unwrap();
    let data = tiny_data(t.path());
    let o = bin()
        .args(["create", p(&data), "-o", "-"])
        .stdout(
            fs::OpenOptions::new()
                .write(true)
                .open("/dev/full")
                .unwrap(),
        )
        .output()
        .unwrap();
    expect_code(&o, 2);
    assert!(stderr(&o).contains("No space left"), "{}", stderr(&o));

    // Unwritable output directory.
    let o = run(&["create", p(&data), "-o", "/proc/sydra-archive-test.tar.zst"]);
    expect_code(&o, 2);
}

/// A temporary of another run is stale only when its lock is free (and it
/// is over 2 s old): one whose lock is held is left alone, whatever pid its
/// name carries (a writer in another PID namespace has a pid that means
/// nothing here).
#[test]
fn a_temporary_is_stale_only_when_its_lock_is_free() {
    use std::os::fd::AsRawFd;
    let t = tempfile::tempdir().unwrap();
    let data = tiny_data(t.path());
    let outdir = t.path().join("out");
    fs::create_dir(&outdir).unwrap();
    let out = outdir.join("a.tar.zst");
    let temp = |pid: &str| outdir.join(format!(".a.tar.zst.sydra-tmp.{pid}.0"));
    let (held, free, young) = (temp("2147483646"), temp("2147483645"), temp("2147483644"));
    // `young` is modified in the future: young however slowly the runs
    // below start (no 2 s window to fit in).
    let old = std::time::SystemTime::now() - Duration::from_secs(10);
    let future = std::time::SystemTime::now() + Duration::from_secs(3600);
    for f in [&held, &free, &young] {
        let file = fs::File::create(f).unwrap();
        file.set_modified(if f == &young { future } else { old })
            .unwrap();
    }
    let lock = fs::File::open(&held).unwrap();
    // SAFETY: flock on a descriptor that `lock` keeps open.
    assert_eq!(unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) }, 0);

    let o = run(&["create", p(&data), "-o", p(&out), "--json"]);
    expect_code(&o, 0);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["removed_stale_temps"], serde_json::json!([p(&free)]));
    assert!(held.exists() && young.exists() && !free.exists());

    drop(lock);
    fs::OpenOptions::new()
        .write(true)
        .open(&young)
        .unwrap()
        .set_modified(future)
        .unwrap();
    let o = run(&["create", p(&data), "-o", p(&out), "--force", "--json"]);
    expect_code(&o, 0);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["removed_stale_temps"], serde_json::json!([p(&held)]));
    assert!(
        young.exists(),
        "younger than 2 s: perhaps a run not locked yet"
    );
}
