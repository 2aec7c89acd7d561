//! `restore`: staged, verified, durable, atomic; never loses data.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::support::*;

fn archive_of(data: &Path, dir: &Path) -> PathBuf {
    let out = dir.join("a.tar.zst");
    create(data, &out);
    out
}

/// A tiny data dir, its archive, and `work/db`: an old data dir to
/// restore over (`old` its digest).
struct Over {
    data: PathBuf,
    a: PathBuf,
    work: PathBuf,
    target: PathBuf,
    old: String,
}

fn over_old_tree(dir: &Path) -> Over {
    let data = tiny_data(dir);
    let a = archive_of(&data, dir);
    let work = dir.join("work");
    let target = work.join("db");
    fs::create_dir_all(target.join("wal")).unwrap();
    fs::write(target.join("wal/old.wal"), b"old").unwrap();
    let old = tree_digest(&target);
    Over {
        data,
        a,
        work,
        target,
        old,
    }
}

#[test]
fn restores_into_absent_and_empty_targets() {
    let t = tempfile::tempdir().unwrap();
    let data = small_data(t.path());
    let a = archive_of(&data, t.path());
    let want = tree_digest(&data);

    let target = t.path().join("restored");
    let o = run(&["restore", p(&a), p(&target), "--json"]);
    expect_code(&o, 0);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["kept_old"], serde_json::Value::Null);
    assert_eq!(v["files"].as_u64().unwrap(), count_tree(&data).0);
    assert_eq!(
        v["sha256"].as_str().unwrap(),
        hex(&sha256(&fs::read(&a).unwrap()))
    );
    assert_eq!(tree_digest(&target), want, "modes, mtimes and contents");
    assert!(leftovers(t.path()).is_empty());

    let empty = t.path().join("empty");
    fs::create_dir(&empty).unwrap();
    fs::set_permissions(&empty, fs::Permissions::from_mode(0o750)).unwrap();
    let o = run(&["restore", p(&a), p(&empty), "-q"]);
    expect_code(&o, 0);
    assert!(stderr(&o).is_empty(), "{}", stderr(&o));
    assert_eq!(tree_digest(&empty), want);
    assert_eq!(
        fs::metadata(&empty).unwrap().permissions().mode() & 0o7777,
        0o750
    );
}

#[test]
fn non_empty_target_needs_force_and_the_old_tree_is_kept() {
    let t = tempfile::tempdir().unwrap();
    let data = small_data(t.path());
    let a = archive_of(&data, t.path());
    let target = tiny_data(t.path()); // existing data dir with other content
    fs::write(
        target.join("wal/extra.wal"),
        b"stale wal that must not be replayed",
    )
    .unwrap();
    let old = tree_digest(&target);

    let o = run(&["restore", p(&a), p(&target)]);
    expect_code(&o, 2);
    assert!(stderr(&o).contains("--force"), "{}", stderr(&o));
    assert_eq!(tree_digest(&target), old);
    assert!(leftovers(t.path()).is_empty());

    let o = run(&["restore", p(&a), p(&target), "--force", "--json"]);
    expect_code(&o, 0);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let kept = PathBuf::from(v["kept_old"].as_str().unwrap());
    assert!(
        kept.file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("tiny.pre-restore.")
    );
    assert_eq!(kept.parent().unwrap(), t.path());
    assert_eq!(tree_digest(&kept), old, "old tree kept whole");
    assert_eq!(
        tree_digest(&target),
        tree_digest(&data),
        "no stale file survives"
    );
    assert!(!target.join("wal/extra.wal").exists());
    assert!(stderr(&o).contains("kept at"), "{}", stderr(&o));
}

#[test]
fn refusals_exit_2_and_change_nothing() {
    let t = tempfile::tempdir().unwrap();
    let data = tiny_data(t.path());
    let a = archive_of(&data, t.path());
    let f = t.path().join("a-file");
    fs::write(&f, b"x").unwrap();
    expect_code(&run(&["restore", p(&a), p(&f)]), 2);
    expect_code(&run(&["restore", p(&a), p(&f), "--force"]), 2);
    assert_eq!(fs::read(&f).unwrap(), b"x");
    let deep = t.path().join("no/such/parent/data");
    expect_code(&run(&["restore", p(&a), p(&deep)]), 2);
    assert!(!t.path().join("no").exists());
    expect_code(
        &run(&[
            "restore",
            p(&t.path().join("missing")),
            p(&t.path().join("d")),
        ]),
        2,
    );
    assert!(!t.path().join("d").exists());
    assert!(leftovers(t.path()).is_empty());
}

#[test]
fn special_mode_bits_are_masked_and_owners_are_not_taken() {
    let mut m = vec![dir("wal"), file("wal/current.wal", &[1u8; 33])];
    m[1].path = "wal/current.wal".into();
    let mut head = head_for(&m);
    head["entries"][0]["mode"] = serde_json::json!(0o1777);
    head["entries"][1]["mode"] = serde_json::json!(0o6755);
    let bytes = craft(&head, &raw_tar(&m), &sums_for(&m));
    let t = tempfile::tempdir().unwrap();
    let f = t.path().join("a.tar.zst");
    fs::write(&f, bytes).unwrap();
    let target = t.path().join("d");
    expect_code(&run(&["restore", p(&f), p(&target)]), 0);
    let fm = fs::metadata(target.join("wal/current.wal")).unwrap();
    assert_eq!(fm.permissions().mode() & 0o7777, 0o755);
    assert_eq!(
        fs::metadata(target.join("wal"))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777,
        0o777
    );
    // The crafted tar says uid 0 / gid 0; files belong to whoever restores.
    assert_eq!(fm.uid(), unsafe { libc::geteuid() });
    assert_eq!(fm.mtime(), 1);
}

#[test]
fn restore_from_stdin() {
    let t = tempfile::tempdir().unwrap();
    let data = small_data(t.path());
    let a = fs::read(archive_of(&data, t.path())).unwrap();
    let target = t.path().join("r");
    let o = run_stdin(&["restore", "-", p(&target)], &a);
    expect_code(&o, 0);
    assert_eq!(tree_digest(&target), tree_digest(&data));
    let bad_target = t.path().join("r2");
    let o = run_stdin(&["restore", "-", p(&bad_target)], &a[..a.len() - 10]);
    expect_code(&o, 1);
    assert!(!bad_target.exists());
    assert!(leftovers(t.path()).is_empty());
}

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

/// Starts a restore reading from a pipe, feeds it `first` bytes and waits
/// until the staging tree holds a file, so a fault can be injected while
/// the restore is in the middle of extracting. The data is decoded as one
/// stream (`--threads 1`): frames decoded apart are taken only whole, and
/// the first one is not whole in `first` bytes.
fn restore_paused(
    archive: &[u8],
    first: usize,
    target: &Path,
    force: bool,
) -> (Child, std::process::ChildStdin) {
    let mut c = bin();
    c.args(["restore", "-", p(target), "--threads", "1"]);
    if force {
        c.arg("--force");
    }
    let mut child = c
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(&archive[..first]).unwrap();
    stdin.flush().unwrap();
    let parent = target.parent().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let staged = leftovers(parent)
            .iter()
            .any(|n| parent.join(n).join("MANIFEST").exists());
        if staged {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "restore never started extracting"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    (child, stdin)
}

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

/// Every entry below `dir` (type, mode, mtime, size, path) and every file's
/// SHA-256, listed by `find` run inside `dir`: relative paths, so a tree
/// deeper than PATH_MAX from `/` can be compared.
fn deep_listing(dir: &Path) -> String {
    let script = r#"cd "$1" && find . -mindepth 1 -printf '%y %m %Ts %s %p\n' | LC_ALL=C sort && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 -r sha256sum"#;
    let o = std::process::Command::new("sh")
        .args(["-c", script, "sh", p(dir)])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout).unwrap()
}

#[track_caller]
fn same_listing(a: &Path, b: &Path) {
    let (la, lb) = (deep_listing(a), deep_listing(b));
    if let Some((x, y)) = la.lines().zip(lb.lines()).find(|(x, y)| x != y) {
        panic!("trees differ:\n{x}\n{y}");
    }
    assert_eq!(la.lines().count(), lb.lines().count());
}

/// A path of about 4,000 bytes (within the format's 4095) restores into a
/// target whose staging directory is so deep that the staging path joined
/// with it exceeds PATH_MAX: entries are created relative to the staging
/// directory.
#[test]
fn deep_paths_restore_wherever_the_target_is() {
    let t = tempfile::tempdir().unwrap();
    let data = tiny_data(t.path());
    let mut rel = PathBuf::from("segments");
    for i in 0..19 {
        rel.push(format!("{i:02}{}", "d".repeat(198)));
    }
    fs::create_dir_all(data.join(&rel)).unwrap();
    rel.push("f".repeat(180));
    assert_eq!(rel.as_os_str().len(), 4008);
    fs::write(data.join(&rel), b"deep").unwrap();
    let a = archive_of(&data, t.path());

    let parent = t.path().join("c".repeat(200)).join("c".repeat(200));
    fs::create_dir_all(&parent).unwrap();
    let target = parent.join("db");
    assert!(p(&target).len() + rel.as_os_str().len() > 4096);
    let o = run(&["restore", p(&a), p(&target), "--json"]);
    expect_code(&o, 0);
    same_listing(&target, &data);
    assert!(deep_listing(&target).contains(&format!("/{}\n", "f".repeat(180))));
    assert!(leftovers(&parent).is_empty(), "{:?}", leftovers(&parent));

    // Over the restored tree (and a failed one removes its deep staging tree).
    let o = run(&["restore", p(&a), p(&target), "--force", "-q"]);
    expect_code(&o, 0);
    same_listing(&target, &data);
    let kept: Vec<_> = fs::read_dir(&parent)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n != "db")
        .collect();
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert!(kept[0].starts_with("db.pre-restore."), "{kept:?}");
    let mut bad = fs::read(&a).unwrap();
    let n = bad.len();
    bad.truncate(n - 100);
    let bad_path = t.path().join("bad.tar.zst");
    fs::write(&bad_path, bad).unwrap();
    let o = run(&["restore", p(&bad_path), p(&parent.join("db2"))]);
    expect_code(&o, 1);
    assert!(leftovers(&parent).is_empty(), "{:?}", leftovers(&parent));
    assert!(!parent.join("db2").exists());
}

/// `DIR/.` is `DIR` (normalised lexically); a path ending in `..` is
/// refused before anything is read or created.
#[test]
fn trailing_dot_is_the_directory_and_dotdot_is_refused() {
    let t = tempfile::tempdir().unwrap();
    let Over {
        data,
        a,
        work,
        target,
        old,
    } = over_old_tree(t.path());

    let dotdot = format!("{}/wal/..", p(&target));
    let o = run(&["restore", p(&a), &dotdot, "--force"]);
    expect_code(&o, 2);
    assert_eq!(
        stderr(&o).trim_end(),
        format!(
            "sydra-archive: restore {}: {dotdot} does not end in a directory name (it ends in `.`, `..` or `/`); give the data directory's own path",
            p(&a)
        )
    );
    assert_eq!(tree_digest(&target), old);
    assert_eq!(fs::read_dir(&work).unwrap().count(), 1);

    let dot = format!("{}/.", p(&target));
    let o = run(&["restore", p(&a), &dot, "--force", "--json"]);
    expect_code(&o, 0);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["data_dir"].as_str().unwrap(), p(&target));
    assert_eq!(tree_digest(&target), tree_digest(&data));
    let kept = PathBuf::from(v["kept_old"].as_str().unwrap());
    assert_eq!(kept.parent().unwrap(), work);
    assert_eq!(tree_digest(&kept), old);
    assert!(leftovers(&work).is_empty(), "{:?}", leftovers(&work));
}

/// A mount point cannot be replaced by a rename: refused before anything is
/// read or staged (a tmpfs, with --force over data and empty without, and a
/// bind mount of the same filesystem).
#[test]
fn mount_points_are_refused_before_anything_is_staged() {
    if !root_tests("tmpfs and bind mounts") {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let data = tiny_data(t.path());
    let a = archive_of(&data, t.path());
    let work = t.path().join("work");
    fs::create_dir(&work).unwrap();

    let full = Mount::tmpfs(&work.join("full"), "8m");
    fs::write(full.0.join("MANIFEST"), b"old").unwrap();
    let empty = Mount::tmpfs(&work.join("empty"), "8m");
    let src = t.path().join("src");
    fs::create_dir(&src).unwrap();
    fs::write(src.join("MANIFEST"), b"bound").unwrap();
    let bound = Mount::bind(&src, &work.join("bound"));
    for (target, force) in [(&full.0, true), (&empty.0, false), (&bound.0, true)] {
        // Read from a pipe that is never written to: a run that read the
        // archive first would wait forever (and time out).
        let mut args = vec!["restore", "-", p(target)];
        if force {
            args.push("--force");
        }
        let mut child = bin()
            .args(&args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while child.try_wait().unwrap().is_none() {
            assert!(
                Instant::now() < deadline,
                "{target:?}: not refused up front"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        drop(stdin);
        let o = child.wait_with_output().unwrap();
        expect_code(&o, 2);
        assert_eq!(
            stderr(&o).trim_end(),
            format!(
                "sydra-archive: restore -: {} is a mount point and cannot be replaced by a rename; restore into a directory below it (e.g. {}/data) instead",
                p(target),
                p(target)
            )
        );
        assert!(leftovers(&work).is_empty(), "{:?}", leftovers(&work));
    }
    assert_eq!(fs::read(full.0.join("MANIFEST")).unwrap(), b"old");
    assert_eq!(fs::read_dir(&empty.0).unwrap().count(), 0);
    assert_eq!(fs::read(bound.0.join("MANIFEST")).unwrap(), b"bound");
    // A directory below a mount point is fine.
    let o = run(&["restore", p(&a), p(&empty.0.join("data")), "-q"]);
    expect_code(&o, 0);
    assert_eq!(tree_digest(&empty.0.join("data")), tree_digest(&data));
    drop((full, empty, bound));
    assert_eq!(fs::read_dir(work.join("empty")).unwrap().count(), 0);
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

/// Names up to NAME_MAX work everywhere: a data dir, OUT and a target named
/// with 250 bytes (temporary and kept names are shortened, not refused).
#[test]
fn names_of_250_bytes_archive_and_restore_without_leftovers() {
    let t = tempfile::tempdir().unwrap();
    let data = t.path().join("d".repeat(250));
    fs::rename(tiny_data(t.path()), &data).unwrap();
    let out = t.path().join("o".repeat(250));
    for force in [false, true] {
        let mut args = vec!["create", p(&data), "-o", p(&out), "-q"];
        if force {
            args.push("--force");
        }
        expect_code(&run(&args), 0);
        expect_code(&run(&["verify", p(&out)]), 0);
        assert!(leftovers(t.path()).is_empty(), "{:?}", leftovers(t.path()));
    }
    let target = t.path().join("r".repeat(250));
    expect_code(&run(&["restore", p(&out), p(&target), "-q"]), 0);
    assert_eq!(tree_digest(&target), tree_digest(&data));
    fs::write(target.join("wal/extra.wal"), b"old").unwrap();
    let old = tree_digest(&target);
    let o = run(&["restore", p(&out), p(&target), "--force", "--json"]);
    expect_code(&o, 0);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let kept = PathBuf::from(v["kept_old"].as_str().unwrap());
    let kept_name = kept.file_name().unwrap().to_str().unwrap();
    assert!(kept_name.len() <= 255, "{kept_name}");
    assert!(kept_name.starts_with(&"r".repeat(200)), "{kept_name}");
    assert!(kept_name.contains(".pre-restore."), "{kept_name}");
    assert_eq!(tree_digest(&kept), old);
    assert_eq!(tree_digest(&target), tree_digest(&data));
    assert!(leftovers(t.path()).is_empty(), "{:?}", leftovers(t.path()));
}
