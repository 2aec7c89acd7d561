//! Every refusal and its exit code.

use std::fs;

use crate::support::*;

#[test]
fn existing_output_is_refused_unless_forced() {
    let t = tempfile::tempdir().unwrap();
    let data = tiny_data(t.path());
    let out = t.path().join("a.tar.zst");
    fs::write(&out, b"precious").unwrap();
    let o = run(&["create", p(&data), "-o", p(&out)]);
    expect_code(&o, 2);
    assert!(stderr(&o).contains("already exists"), "{}", stderr(&o));
    assert_eq!(fs::read(&out).unwrap(), b"precious");
    assert_eq!(fs::read_dir(t.path()).unwrap().count(), 2, "no temp left");

    let o = run(&["create", p(&data), "-o", p(&out), "--force"]);
    expect_code(&o, 0);
    expect_code(&run(&["verify", p(&out)]), 0);
}

#[test]
fn data_dir_without_layout_is_refused() {
    let t = tempfile::tempdir().unwrap();
    let empty = t.path().join("empty");
    fs::create_dir(&empty).unwrap();
    fs::write(empty.join("notes.txt"), b"x").unwrap();
    let out = t.path().join("a.tar.zst");
    let o = run(&["create", p(&empty), "-o", p(&out)]);
    expect_code(&o, 2);
    assert!(stderr(&o).contains("no SydraDB data"), "{}", stderr(&o));
    assert!(!out.exists());
    assert_eq!(fs::read_dir(t.path()).unwrap().count(), 1);

    let o = run(&["create", p(&t.path().join("missing")), "-o", p(&out)]);
    expect_code(&o, 2);
    assert!(!out.exists());
}

#[test]
fn special_files_below_the_layout_are_refused() {
    let t = tempfile::tempdir().unwrap();
    let data = tiny_data(t.path());
    std::os::unix::fs::symlink("/etc/hostname", data.join("segments/3600/link.seg")).unwrap();
    let out = t.path().join("a.tar.zst");
    let o = run(&["create", p(&data), "-o", p(&out)]);
    expect_code(&o, 2);
    assert!(
        stderr(&o).contains("segments/3600/link.seg"),
        "{}",
        stderr(&o)
    );
    assert!(!out.exists());

    fs::remove_file(data.join("segments/3600/link.seg")).unwrap();
    let fifo = data.join("wal/pipe");
    let c = std::ffi::CString::new(p(&fifo)).unwrap();
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
    let o = run(&["create", p(&data), "-o", p(&out)]);
    expect_code(&o, 2);
    assert!(stderr(&o).contains("fifo"), "{}", stderr(&o));
    assert!(!out.exists());
}

#[test]
fn leftovers_at_the_top_are_skipped_and_reported() {
    let t = tempfile::tempdir().unwrap();
    let data = tiny_data(t.path());
    fs::write(data.join("0123456789abcdef"), b"x").unwrap();
    fs::create_dir(data.join("lost+found")).unwrap();
    let out = t.path().join("a.tar.zst");
    let o = run(&["create", p(&data), "-o", p(&out), "--json"]);
    expect_code(&o, 0);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(
        v["skipped"],
        serde_json::json!(["0123456789abcdef", "lost+found"])
    );
    assert!(stderr(&o).contains("skipped \"lost+found\""));
    let o = run(&["list", p(&out)]);
    assert!(!stdout(&o).contains("0123456789abcdef"));
}

#[test]
fn stdout_terminal_is_refused() {
    let t = tempfile::tempdir().unwrap();
    let data = tiny_data(t.path());
    let o = run_in_pty(&["create", p(&data), "-o", "-"]);
    assert_eq!(o.status.code(), Some(2), "{}", stdout(&o));
    assert!(stdout(&o).contains("terminal"), "{}", stdout(&o));
    assert!(!stdout(&o).contains("SYDRHEAD"));
}

#[test]
fn usage_errors_exit_2() {
    expect_code(&run(&["frobnicate"]), 2);
    expect_code(&run(&["create", "x"]), 2); // missing -o
    expect_code(&run(&["verify", "a", "--bogus"]), 2);
    expect_code(&run(&["create", "x", "-o", "y", "--level", "99"]), 2);
    expect_code(&run(&[]), 2);
    let help = run(&["--help"]);
    expect_code(&help, 0);
    assert!(stdout(&help).contains("Exit codes"));
    for cmd in ["create", "verify", "list"] {
        let o = run(&[cmd, "--help"]);
        expect_code(&o, 0);
        assert!(stdout(&o).contains("Exit codes"), "{cmd}");
    }
}

#[test]
fn unreadable_archives_are_other_failures() {
    let t = tempfile::tempdir().unwrap();
    let o = run(&["verify", p(&t.path().join("missing"))]);
    expect_code(&o, 2);
    let o = run(&["verify", p(t.path())]);
    expect_code(&o, 2);
    let o = run(&["list", p(&t.path().join("missing"))]);
    expect_code(&o, 2);
    let o = run(&["verify", "--json", p(&t.path().join("missing"))]);
    expect_code(&o, 2);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["ok"], false);
    assert!(v["error"].as_str().unwrap().contains("cannot open"));
}

#[test]
fn non_archives_fail_verification() {
    let t = tempfile::tempdir().unwrap();
    let cases: [(&str, Vec<u8>); 4] = [
        ("empty", Vec::new()),
        ("text", b"hello, this is not an archive\n".to_vec()),
        ("plain-zstd", zstd::encode_all(&b"data"[..], 3).unwrap()),
        ("tiny", vec![0x53]),
    ];
    for (name, bytes) in cases {
        let f = t.path().join(name);
        fs::write(&f, &bytes).unwrap();
        for args in [vec!["verify"], vec!["verify", "--quick"], vec!["list"]] {
            let mut a = args.clone();
            a.push(p(&f));
            let o = run(&a);
            expect_code(&o, 1);
            assert_eq!(stderr(&o).lines().count(), 1, "one line: {}", stderr(&o));
        }
        let o = run(&["verify", "--json", p(&f)]);
        let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
        assert_eq!(v["ok"], false, "{name}");
        assert!(!v["error"].as_str().unwrap().is_empty());
    }
}

/// `-o OUT --force` replaces a regular file only: anything else is refused,
/// named, and left as it was; a directory is named as such with or without
/// `--force` (and `--force` is not suggested for it).
#[test]
fn force_replaces_only_regular_files() {
    use std::os::unix::fs::FileTypeExt;
    let t = tempfile::tempdir().unwrap();
    let data = tiny_data(t.path());
    let out = t.path().join("out");
    fs::create_dir(&out).unwrap();
    let fifo = out.join("fifo");
    let c = std::ffi::CString::new(p(&fifo)).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
    let precious = out.join("precious");
    fs::write(&precious, b"precious").unwrap();
    let link = out.join("link");
    std::os::unix::fs::symlink(&precious, &link).unwrap();
    let dir = out.join("dir");
    fs::create_dir(&dir).unwrap();
    for (target, what) in [
        (&fifo, "a fifo"),
        (&link, "a symlink"),
        (&dir, "a directory"),
    ] {
        for force in [true, false] {
            let mut args = vec!["create", p(&data), "-o", p(target)];
            if force {
                args.push("--force");
            }
            let o = run(&args);
            expect_code(&o, 2);
            // A directory gets a hint on how to write into it instead.
            let want = if what == "a directory" {
                format!(
                    "sydra-archive: {} is a directory; to put a timestamped archive in it, write {}/",
                    p(target),
                    p(target)
                )
            } else {
                format!(
                    "sydra-archive: {} is {what}; --force replaces only regular files",
                    p(target)
                )
            };
            assert_eq!(stderr(&o).trim_end(), want, "force={force}");
            assert!(!stderr(&o).contains("use --force"));
        }
    }
    assert!(fs::symlink_metadata(&fifo).unwrap().file_type().is_fifo());
    assert_eq!(fs::read_link(&link).unwrap(), precious);
    assert_eq!(fs::read(&precious).unwrap(), b"precious");
    assert_eq!(fs::read_dir(&dir).unwrap().count(), 0);
    assert_eq!(fs::read_dir(&out).unwrap().count(), 4, "no temporary left");
}

#[test]
fn force_does_not_replace_a_character_device() {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    if !root_tests("mknod") {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let data = tiny_data(t.path());
    // A copy of /dev/null (char 1:3), where the test may make one.
    let null = t.path().join("null");
    let c = std::ffi::CString::new(p(&null)).unwrap();
    // SAFETY: a valid NUL-terminated path; mknod only creates a node.
    let r = unsafe { libc::mknod(c.as_ptr(), libc::S_IFCHR | 0o666, libc::makedev(1, 3)) };
    assert_eq!(r, 0, "mknod: {}", std::io::Error::last_os_error());
    let o = run(&["create", p(&data), "-o", p(&null), "--force"]);
    expect_code(&o, 2);
    assert_eq!(
        stderr(&o).trim_end(),
        format!(
            "sydra-archive: {} is a character device; --force replaces only regular files",
            p(&null)
        )
    );
    let m = fs::symlink_metadata(&null).unwrap();
    assert!(m.file_type().is_char_device());
    assert_eq!(m.rdev(), libc::makedev(1, 3));
    let names: Vec<_> = fs::read_dir(t.path()).unwrap().collect();
    assert_eq!(names.len(), 2, "no temporary left");
}
