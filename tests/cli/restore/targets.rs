//! Where a restore goes and what it refuses: absent, empty and non-empty
//! targets (`--force` keeps the old tree), refusals that change nothing,
//! special mode bits and owners, stdin, paths deeper than PATH_MAX,
//! `DIR/.` and `..`, mount points, names of 250 bytes.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::support::*;

use super::archive_of;

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
