//! `restore`: staged, verified, durable, atomic; never loses data.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::helpers::*;

fn archive_of(data: &Path, dir: &Path) -> PathBuf {
    let out = dir.join("a.tar.zst");
    create(data, &out);
    out
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
/// the restore is in the middle of extracting.
fn restore_paused(
    archive: &[u8],
    first: usize,
    target: &Path,
    force: bool,
) -> (Child, std::process::ChildStdin) {
    let mut c = bin();
    c.args(["restore", "-", p(target)]);
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

fn root_tests() -> bool {
    let yes =
        std::env::var_os("SYDRA_ARCHIVE_ROOT_TESTS").is_some() && unsafe { libc::geteuid() } == 0;
    if !yes {
        eprintln!("skipped: needs root and SYDRA_ARCHIVE_ROOT_TESTS=1 (tmpfs mounts)");
    }
    yes
}

struct Tmpfs(PathBuf);
impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Tmpfs {
        fs::create_dir_all(at).unwrap();
        let s = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs", p(at)])
            .status()
            .unwrap();
        assert!(s.success(), "mount tmpfs");
        Tmpfs(at.to_path_buf())
    }
}
impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn disk_full_fails_cleanly() {
    if !root_tests() {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let data = medium_data(t.path());
    let a = archive_of(&data, t.path());
    let bytes = fs::read(&a).unwrap();

    // Too small from the start: refused before extracting anything.
    let small = Tmpfs::mount(&t.path().join("small"), "2m");
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
    let fs_ = Tmpfs::mount(&t.path().join("full"), "64m");
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
