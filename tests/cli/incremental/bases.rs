//! Bases: a missing or different base fails before anything is written,
//! bases that cannot be used are refused, a recorded base location is
//! followed only to a local regular file, and an incremental from a pipe
//! is not restored as a whole tree.

use std::fs;
use std::process::Command;

use crate::support::*;

use super::{create_on, live, restored};

#[test]
fn a_missing_or_different_base_fails_before_anything_is_written() {
    let t = tempfile::tempdir().unwrap();
    let (data, mut server) = live(t.path());
    let shelf = t.path().join("shelf");
    fs::create_dir(&shelf).unwrap();
    let a0 = shelf.join("a0.tar.zst");
    create(&data, &a0);
    server.run(1200).unwrap();
    let a1 = shelf.join("a1.tar.zst");
    expect_code(&create_on(&data, &a1, &a0), 0);
    server.run(1200).unwrap();
    let a2 = shelf.join("a2.tar.zst");
    expect_code(&create_on(&data, &a2, &a1), 0);
    let good = fs::read(&a1).unwrap();
    let good_bytes = good.clone();
    let mid = good.len() / 3;
    let other = t.path().join("other.tar.zst");
    create(&tiny_data(t.path()), &other);

    let target = t.path().join("restored");
    type Damage<'a> = Box<dyn Fn() + 'a>;
    let mut cases: Vec<(&str, Damage<'_>, i32, &str)> = vec![
        (
            "deleted",
            Box::new(|| fs::remove_file(&a1).unwrap()),
            2,
            "is missing; give it with --base",
        ),
        (
            "overwritten with another archive",
            Box::new(|| {
                fs::copy(&other, &a1).unwrap();
            }),
            2,
            "is another archive",
        ),
        (
            "truncated",
            Box::new(|| fs::write(&a1, &good[..good.len() - 1000]).unwrap()),
            1,
            "does not end with a TAIL",
        ),
    ];
    // A byte of its data flipped: it is the archive recorded by its end,
    // so the damage is found when it is read, and nothing is published.
    cases.push((
        "corrupted",
        Box::new(|| {
            let mut b = good.clone();
            b[mid] ^= 0x40;
            fs::write(&a1, b).unwrap();
        }),
        1,
        "a1.tar.zst",
    ));
    for (what, damage, want, says) in &cases {
        fs::write(&a1, &good_bytes).unwrap();
        damage();
        for verb in ["restore", "verify"] {
            if verb == "verify" && *what == "corrupted" {
                // verify --chain reads ends and indexes only.
                continue;
            }
            let o = match verb {
                "restore" => run(&["restore", p(&a2), p(&target)]),
                _ => run(&["verify", "--chain", p(&a2)]),
            };
            expect_code(&o, *want);
            let e = stderr(&o);
            assert!(e.contains(says) && e.contains("a1.tar.zst"), "{what}: {e}");
        }
        assert!(!target.exists(), "{what}: a restore published something");
        assert!(
            leftovers(t.path()).is_empty(),
            "{what}: {:?}",
            leftovers(t.path())
        );
    }

    // Given the right base elsewhere with --base, the chain restores.
    let moved = t.path().join("moved.tar.zst");
    fs::write(&moved, &good_bytes).unwrap();
    fs::remove_file(&a1).unwrap();
    let o = run(&["restore", p(&a2), p(&target), "--base", p(&moved), "-q"]);
    expect_code(&o, 0);
    let f = t.path().join("f.tar.zst");
    create(&data, &f);
    assert_eq!(tree_digest(&target), restored(&f, &t.path().join("rf")));
}

#[test]
fn an_incremental_from_a_pipe_is_not_restored_as_a_whole_tree() {
    let t = tempfile::tempdir().unwrap();
    let (data, mut server) = live(t.path());
    let a0 = t.path().join("a0.tar.zst");
    create(&data, &a0);
    server.run(600).unwrap();
    let a1 = t.path().join("a1.tar.zst");
    expect_code(&create_on(&data, &a1, &a0), 0);
    let target = t.path().join("r");
    let o = run_stdin(&["restore", "-", p(&target)], &fs::read(&a1).unwrap());
    expect_code(&o, 2);
    assert!(
        stderr(&o).contains("is an incremental archive"),
        "{}",
        stderr(&o)
    );
    assert!(!target.exists());
    let x = t.path().join("x");
    let o = run_stdin(&["extract", "-", "-C", p(&x)], &fs::read(&a1).unwrap());
    expect_code(&o, 2);
    assert!(
        stderr(&o).contains("is an incremental archive"),
        "{}",
        stderr(&o)
    );
    assert!(!x.exists());
    // verify of the stream checks the archive itself.
    let o = run_stdin(&["verify", "-"], &fs::read(&a1).unwrap());
    expect_code(&o, 0);
}

#[test]
fn bases_that_cannot_be_used_are_refused_before_anything_is_written() {
    let t = tempfile::tempdir().unwrap();
    let (data, _server) = live(t.path());
    let a0 = t.path().join("a0.tar.zst");
    create(&data, &a0);
    // The base itself as OUT: replacing it would break the chain.
    let before = fs::read(&a0).unwrap();
    let o = run(&[
        "create",
        p(&data),
        "-o",
        p(&a0),
        "--base",
        p(&a0),
        "--force",
    ]);
    expect_code(&o, 2);
    assert!(
        stderr(&o).contains("is the base of the archive to write"),
        "{}",
        stderr(&o)
    );
    assert_eq!(fs::read(&a0).unwrap(), before);
    // A version-1 archive (no index to merge with) and a missing one.
    let v1 = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/golden-v1.tar.zst");
    let out = t.path().join("a1.tar.zst");
    let o = run(&["create", p(&data), "-o", p(&out), "--base", p(&v1)]);
    expect_code(&o, 2);
    assert!(
        stderr(&o).contains("is a version-1 archive"),
        "{}",
        stderr(&o)
    );
    let o = run(&[
        "create",
        p(&data),
        "-o",
        p(&out),
        "--base",
        p(&t.path().join("nope.tar.zst")),
    ]);
    expect_code(&o, 2);
    assert!(stderr(&o).contains("nope.tar.zst"), "{}", stderr(&o));
    assert!(!out.exists());
    // A corrupted base is refused (an incremental on it could never be
    // restored, even from a good copy), as is any archive of the chain
    // as OUT.
    let bad = t.path().join("bad.tar.zst");
    let mut b = before.clone();
    let mid = b.len() / 2;
    b[mid] ^= 0x20;
    fs::write(&bad, &b).unwrap();
    let o = run(&["create", p(&data), "-o", p(&out), "--base", p(&bad)]);
    expect_code(&o, 1);
    assert!(
        stderr(&o).contains("does not hash to what its TAIL records"),
        "{}",
        stderr(&o)
    );
    expect_code(
        &run(&["create", p(&data), "-o", p(&out), "--base", p(&a0), "-q"]),
        0,
    );
    let o = run(&[
        "create",
        p(&data),
        "-o",
        p(&a0),
        "--base",
        p(&out),
        "--force",
    ]);
    expect_code(&o, 2);
    assert!(
        stderr(&o).contains("of the chain the incremental is made on"),
        "{}",
        stderr(&o)
    );
    assert_eq!(fs::read(&a0).unwrap(), before);
    fs::remove_file(&out).unwrap();
}

#[test]
fn a_base_location_is_followed_only_to_a_local_regular_file() {
    let t = tempfile::tempdir().unwrap();
    let data = tiny_data(t.path());
    let a0 = t.path().join("a0.tar.zst");
    create(&data, &a0);
    let fifo = t.path().join("fifo.tar.zst");
    let b = fs::read(&a0).unwrap();
    let crafted = |location: &str| {
        let mut c = Craft2::new(&[
            dir("x-sydra-incremental"),
            file("x-sydra-incremental/changes.ndjson", b""),
        ]);
        c.head["version"] = serde_json::json!(3);
        c.head["base"] = serde_json::json!({
            "sha256": hex(&sha256(&b)), "size": b.len(),
            "body_sha256": hex(&b[b.len() - 32..]), "location": location, "depth": 1,
        });
        c.tail = Box::new(|t| t[16] = 3);
        c.build()
    };
    let inc = t.path().join("inc.tar.zst");
    let status = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(status.success());
    fs::write(&inc, crafted(p(&fifo))).unwrap();
    let o = run_bounded(&["list", p(&inc)]);
    expect_code(&o, 2);
    assert!(
        stderr(&o).contains("is not a regular file"),
        "{}",
        stderr(&o)
    );
    fs::write(&inc, crafted("s3://elsewhere/a0.tar.zst")).unwrap();
    let o = run_bounded(&["restore", p(&inc), p(&t.path().join("r"))]);
    expect_code(&o, 2);
    assert!(stderr(&o).contains("give it with --base"), "{}", stderr(&o));
    // Given, it is used (and a --base that is not it is named).
    let o = run_bounded(&["list", p(&inc), "--base", p(&fifo), "--base", p(&a0)]);
    expect_code(&o, 0);
    let o = run_bounded(&["list", p(&inc), "--base", p(&inc)]);
    expect_code(&o, 2);
    assert!(
        stderr(&o).contains("of the --base archives"),
        "{}",
        stderr(&o)
    );
}
