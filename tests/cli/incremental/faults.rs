//! Incrementals that are hostile, damaged or cut short: crafted
//! incrementals are refused and restore nothing, `verify` checks an
//! incremental's own members, every byte flip is caught in process, and
//! SIGKILL during `create --base` leaves no archive.

use std::fs;
use std::path::Path;
use std::process::Stdio;
use std::time::Instant;

use sydra_archive::sydradb::{FixtureSpec, Server};

use crate::support::*;

use super::create_on;

#[test]
fn sigkill_during_an_incremental_create_leaves_no_archive() {
    let t = tempfile::tempdir().unwrap();
    let data = medium_data(t.path());
    let a0 = t.path().join("a0.tar.zst");
    create(&data, &a0);
    // Everything changed: a base of another data dir.
    let mut server = Server::new(
        &data,
        &FixtureSpec {
            series: 20,
            ..FixtureSpec::default()
        },
        10_000_000,
    );
    server.run(3 * 3600).unwrap();
    let out = t.path().join("out");
    fs::create_dir(&out).unwrap();
    let a1 = out.join("a1.tar.zst");
    let spawn = || {
        bin()
            .args(["create", p(&data), "-o", p(&a1), "--base", p(&a0), "-q"])
            .args(["--level", "15", "--threads", "1"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    let start = Instant::now();
    let o = spawn().wait_with_output().unwrap();
    assert!(o.status.success());
    let clean = start.elapsed();
    fs::remove_file(&a1).unwrap();
    let (mut absent, mut whole) = (0, 0);
    // k = 0 kills at once: before the publish however loaded the machine.
    for k in 0..=8u32 {
        let mut c = spawn();
        std::thread::sleep(clean * k / 8);
        // SAFETY: plain kill(2) on our own child.
        unsafe { libc::kill(c.id() as i32, libc::SIGKILL) };
        c.wait().unwrap();
        if a1.exists() {
            expect_code(&run(&["verify", "--chain", p(&a1)]), 0);
            whole += 1;
            fs::remove_file(&a1).unwrap();
        } else {
            absent += 1;
        }
        let temps: Vec<_> = fs::read_dir(&out)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .filter(|n| !n.to_string_lossy().contains(".sydra-tmp.") && n != ".sydra-archive.lock")
            .collect();
        assert!(temps.is_empty(), "{temps:?}");
    }
    assert!(
        absent > 0,
        "no kill landed before the publish ({whole} after)"
    );
}

#[test]
fn hostile_incrementals_are_refused_and_restore_nothing() {
    let t = tempfile::tempdir().unwrap();
    let data = tiny_data(t.path());
    let a0 = t.path().join("a0.tar.zst");
    create(&data, &a0);
    let wal = fs::read(data.join("wal/current.wal")).unwrap();
    let wal_sha = hex(&sha256(&wal));
    let more = sydra_archive::sydradb::wal_record(1, 9999, 1.0);
    let mut whole = wal.clone();
    whole.extend(&more);
    let append = |path: &str, from: &str, prefix: &str, tail: &str| {
        format!(
            "{{\"op\":\"append\",\"path\":\"{path}\",\"from\":\"{from}\",\"offset\":{},\"prefix_sha256\":\"{prefix}\",\"tail\":\"{tail}\",\"size\":{},\"sha256\":\"{}\",\"mode\":420,\"mtime\":1}}\n",
            wal.len(),
            whole.len(),
            hex(&sha256(&whole))
        )
    };
    let tail = "x-sydra-incremental/wal-tails/current.wal.tail";
    // The control: a well-formed append restores.
    let good = crafted_on(
        &a0,
        &[],
        &append("wal/current.wal", "wal/current.wal", &wal_sha, tail),
        &[("current.wal.tail", &more)],
    );
    let target = t.path().join("r");
    let inc = t.path().join("inc.tar.zst");
    fs::write(&inc, &good).unwrap();
    expect_code(&run(&["restore", p(&inc), p(&target), "-q"]), 0);
    assert_eq!(fs::read(target.join("wal/current.wal")).unwrap(), whole);
    fs::remove_dir_all(&target).unwrap();

    let cases: Vec<(&str, Vec<u8>, i32, &str)> = vec![
        (
            "a delete the base cannot satisfy",
            crafted_on(
                &a0,
                &[],
                "{\"op\":\"delete\",\"path\":\"segments/9999\"}\n",
                &[],
            ),
            1,
            "deletes segments/9999, which its base does not hold",
        ),
        (
            "an append on other bytes than the base's",
            crafted_on(
                &a0,
                &[],
                &append("wal/current.wal", "wal/current.wal", &"0".repeat(64), tail),
                &[("current.wal.tail", &more)],
            ),
            1,
            "continues wal/current.wal",
        ),
        (
            "an append from a file before it",
            crafted_on(
                &a0,
                &[],
                &append(
                    "wal/zzz.wal",
                    "wal/current.wal",
                    &wal_sha,
                    "x-sydra-incremental/wal-tails/zzz.wal.tail",
                ),
                &[("zzz.wal.tail", &more)],
            ),
            1,
            "does not come after it",
        ),
        (
            "an append to a file that is not a WAL file",
            crafted_on(
                &a0,
                &[],
                &append(
                    "MANIFEST",
                    "MANIFEST",
                    &wal_sha,
                    "x-sydra-incremental/wal-tails/MANIFEST.tail",
                ),
                &[],
            ),
            1,
            "only WAL files are appended to",
        ),
        (
            "a path out of the tree",
            crafted_on(&a0, &[], "{\"op\":\"delete\",\"path\":\"../etc\"}\n", &[]),
            1,
            "path component",
        ),
        (
            "an unknown operation",
            crafted_on(&a0, &[], "{\"op\":\"rename\",\"path\":\"MANIFEST\"}\n", &[]),
            1,
            "is not valid",
        ),
        (
            "a missing tail",
            crafted_on(
                &a0,
                &[],
                &append("wal/current.wal", "wal/current.wal", &wal_sha, tail),
                &[],
            ),
            1,
            "is missing",
        ),
        (
            "a tail that does not make the recorded file",
            crafted_on(
                &a0,
                &[],
                &append("wal/current.wal", "wal/current.wal", &wal_sha, tail),
                &[("current.wal.tail", b"not the tail")],
            ),
            1,
            "continued, but its tail x-sydra-incremental/wal-tails/current.wal.tail holds 12",
        ),
        (
            "operations out of order",
            crafted_on(
                &a0,
                &[],
                "{\"op\":\"delete\",\"path\":\"tags.json\"}\n{\"op\":\"delete\",\"path\":\"MANIFEST\"}\n",
                &[],
            ),
            1,
            "out of order",
        ),
        (
            "another member under the own directory",
            crafted_on(&a0, &[file("x-sydra-incremental/evil", b"x")], "", &[]),
            1,
            "not one of an incremental archive's own members",
        ),
    ];
    for (what, bytes, want, says) in cases {
        fs::write(&inc, &bytes).unwrap();
        let o = run(&["restore", p(&inc), p(&target)]);
        expect_code(&o, want);
        assert!(stderr(&o).contains(says), "{what}: {}", stderr(&o));
        assert!(!target.exists(), "{what}: a restore published something");
        assert!(
            leftovers(t.path()).is_empty(),
            "{what}: {:?}",
            leftovers(t.path())
        );
    }

    // verify of the archive alone applies the same rules to its operations.
    fs::write(
        &inc,
        crafted_on(
            &a0,
            &[],
            &append(
                "wal/zzz.wal",
                "wal/current.wal",
                &wal_sha,
                "x-sydra-incremental/wal-tails/zzz.wal.tail",
            ),
            &[("zzz.wal.tail", &more)],
        ),
    )
    .unwrap();
    let o = run(&["verify", p(&inc)]);
    expect_code(&o, 1);
    assert!(
        stderr(&o).contains("does not come after it"),
        "{}",
        stderr(&o)
    );

    // A version-2 archive may not hold an incremental's own members.
    let mut c = Craft2::new(&[dir("x-sydra-incremental")]);
    c.head["version"] = serde_json::json!(2);
    fs::write(&inc, c.build()).unwrap();
    let o = run(&["verify", p(&inc)]);
    expect_code(&o, 1);
    assert!(
        stderr(&o).contains("outside the SydraDB layout"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn verify_checks_an_incremental_s_own_members() {
    let t = tempfile::tempdir().unwrap();
    let data = tiny_data(t.path());
    let a0 = t.path().join("a0.tar.zst");
    create(&data, &a0);
    let inc = t.path().join("inc.tar.zst");
    let tail = "x-sydra-incremental/wal-tails/current.wal.tail";
    let append = format!(
        "{{\"op\":\"append\",\"path\":\"wal/current.wal\",\"from\":\"wal/current.wal\",\"offset\":99,\"prefix_sha256\":\"{z}\",\"tail\":\"{tail}\",\"size\":132,\"sha256\":\"{z}\",\"mode\":420,\"mtime\":1}}\n",
        z = "0".repeat(64)
    );
    for (what, bytes, says) in [
        (
            "garbage operations",
            crafted_on(&a0, &[], "garbage\n", &[]),
            "is not valid",
        ),
        (
            "no newline at the end",
            crafted_on(&a0, &[], "{\"op\":\"delete\",\"path\":\"MANIFEST\"}", &[]),
            "no newline",
        ),
        (
            "a tail missing",
            crafted_on(&a0, &[], &append, &[]),
            "is not in the archive",
        ),
    ] {
        fs::write(&inc, &bytes).unwrap();
        for deep in [false, true] {
            let mut args = vec!["verify", p(&inc)];
            if deep {
                args.push("--deep");
            }
            let o = run(&args);
            expect_code(&o, 1);
            assert!(stderr(&o).contains(says), "{what}: {}", stderr(&o));
        }
    }
    // Without its own members at all.
    let mut c = Craft2::new(&[file("MANIFEST", b"{}\n")]);
    c.head["version"] = serde_json::json!(3);
    let b = fs::read(&a0).unwrap();
    c.head["base"] = serde_json::json!({
        "sha256": hex(&sha256(&b)), "size": b.len(),
        "body_sha256": hex(&b[b.len() - 32..]), "location": "a0.tar.zst", "depth": 1,
    });
    c.tail = Box::new(|t| t[16] = 3);
    fs::write(&inc, c.build()).unwrap();
    let o = run(&["verify", p(&inc)]);
    expect_code(&o, 1);
    assert!(
        stderr(&o).contains("without its x-sydra-incremental/changes.ndjson"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn every_byte_flip_of_an_incremental_is_caught_in_process() {
    let t = tempfile::tempdir().unwrap();
    let data = tiny_data(t.path());
    let a0 = t.path().join("a0.tar.zst");
    create(&data, &a0);
    let mut wal = fs::OpenOptions::new()
        .append(true)
        .open(data.join("wal/current.wal"))
        .unwrap();
    std::io::Write::write_all(&mut wal, &sydra_archive::sydradb::wal_record(1, 9, 9.0)).unwrap();
    fs::write(data.join("segments/3600/2-3600-3600-2.seg"), b"new").unwrap();
    fs::remove_file(data.join("segments/3600/1-3600-3610-1.seg")).unwrap();
    let a1 = t.path().join("a1.tar.zst");
    expect_code(&create_on(&data, &a1, &a0), 0);
    let good = fs::read(&a1).unwrap();
    // The control reads, and holds an append, a delete and a member.
    let read = |b: &[u8]| {
        sydra_archive::read_archive(
            b,
            Path::new("a1"),
            sydra_archive::Depth::Full,
            &mut sydra_archive::NullSink,
        )
    };
    assert!(read(&good).unwrap().info.base.is_some());
    let l = stdout(&run(&["list", p(&a1)]));
    assert!(
        l.contains("+ wal/current.wal") && l.contains("+ segments/3600/2-"),
        "{l}"
    );
    for i in 0..good.len() {
        let mut b = good.clone();
        b[i] ^= 0x01;
        assert!(
            read(&b).is_err(),
            "a flip at byte {i} of {} went unnoticed",
            good.len()
        );
    }
}
