//! A refusal by the chain model, or a `NotIncremental` from the writer,
//! reaches the user the same way whatever the output: a file, stdout, or
//! an age-encrypted archive (found in review of the one-pass `create
//! --base`: the encrypting thread's "not completed" masked the model's
//! reason, exit 2 instead of 1, and an encrypted `--incremental` never
//! fell back to a full archive; stdout got part of an archive before the
//! refusal).

use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::process::Stdio;
use std::time::{Duration, SystemTime};

use crate::support::*;

/// A full archive `a0` of tiny data and an incremental on it whose hashes
/// are right but whose operation does not fit its base's tree.
fn inconsistent_chain(t: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let data = tiny_data(t);
    let a0 = t.join("a0.tar.zst");
    create(&data, &a0);
    let inc = t.join("inc.tar.zst");
    fs::write(
        &inc,
        crafted_on(
            &a0,
            &[],
            "{\"op\":\"delete\",\"path\":\"segments/9999\"}\n",
            &[],
        ),
    )
    .unwrap();
    (data, inc)
}

const WHY: &str = "deletes segments/9999, which its base does not hold";

fn recipient() -> String {
    age::x25519::Identity::generate().to_public().to_string()
}

#[test]
fn an_encrypted_create_on_a_chain_the_model_refuses_says_why_with_exit_1() {
    let t = tempfile::tempdir().unwrap();
    let (data, inc) = inconsistent_chain(t.path());
    let out = t.path().join("out.tar.zst.age");
    let o = run(&[
        "create",
        p(&data),
        "-o",
        p(&out),
        "-r",
        &recipient(),
        "--base",
        p(&inc),
    ]);
    expect_code(&o, 1);
    assert!(stderr(&o).contains(WHY), "{}", stderr(&o));
    assert!(!out.exists(), "published");
    // Plain, the same.
    let plain = t.path().join("out.tar.zst");
    let o = run(&["create", p(&data), "-o", p(&plain), "--base", p(&inc)]);
    expect_code(&o, 1);
    assert!(stderr(&o).contains(WHY), "{}", stderr(&o));
    assert!(!plain.exists(), "published");
}

#[test]
fn create_to_stdout_on_a_chain_the_model_refuses_writes_nothing() {
    let t = tempfile::tempdir().unwrap();
    let (data, inc) = inconsistent_chain(t.path());
    let o = bin()
        .args(["create", p(&data), "-o", "-", "--base", p(&inc)])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    expect_code(&o, 1);
    assert!(stderr(&o).contains(WHY), "{}", stderr(&o));
    assert_eq!(o.stdout.len(), 0, "part of an archive went out");
}

#[test]
fn an_encrypted_incremental_that_cannot_be_written_falls_back_to_a_full_archive() {
    let t = tempfile::tempdir().unwrap();
    let data = tiny_data(t.path());
    // 19 nested directories of 200 control characters: their delete's
    // escaped line is over the 16 KiB a reader takes.
    let name = OsStr::from_bytes(&[0x01; 200]).to_os_string();
    let mut deepest = data.join("segments");
    for _ in 0..19 {
        deepest.push(&name);
    }
    fs::create_dir_all(&deepest).unwrap();
    let shelf = t.path().join("shelf");
    fs::create_dir(&shelf).unwrap();
    let a0 = shelf.join("a0.tar.zst");
    create(&data, &a0);
    fs::File::options()
        .write(true)
        .open(&a0)
        .unwrap()
        .set_modified(SystemTime::now() - Duration::from_secs(3600))
        .unwrap();
    fs::remove_dir(&deepest).unwrap();
    let o = run(&[
        "create",
        p(&data),
        "-o",
        &format!("{}/", p(&shelf)),
        "--incremental",
        "-r",
        &recipient(),
        "--json",
    ]);
    expect_code(&o, 0);
    assert_eq!(json(&o)["kind"], "full", "{}", stdout(&o));
    let e = stderr(&o);
    assert!(
        e.contains("cannot write an incremental") && e.contains("writing a full archive"),
        "{e}"
    );
}

/// `create --base` on the last link a reader follows (its depth at the
/// limit) refuses, naming the limit, and publishes nothing; `--incremental`
/// writes a full archive instead; every reader takes the chain at the
/// limit. The limit is lowered to 3 (a debug build's test hook) to reach
/// its edge without 1,000 archives (the defect: the 1,000th link's
/// `create --base` wrote depth 1,001, which every reader refused).
#[test]
fn an_incremental_past_the_longest_chain_is_refused_and_falls_back_to_full() {
    let t = tempfile::tempdir().unwrap();
    let data = tiny_data(t.path());
    let shelf = t.path().join("shelf");
    fs::create_dir(&shelf).unwrap();
    let limit = |args: &[&str]| {
        bin()
            .args(args)
            .env("SYDRA_ARCHIVE_TEST_MAX_CHAIN", "3")
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let mut prev = shelf.join("a0.tar.zst");
    create(&data, &prev);
    for k in 1..=3 {
        fs::write(data.join("tags.json"), format!("{{\"k\":[{k}]}}")).unwrap();
        let next = shelf.join(format!("a{k}.tar.zst"));
        let o = limit(&["create", p(&data), "-o", p(&next), "--base", p(&prev), "-q"]);
        expect_code(&o, 0);
        prev = next;
    }
    // Depth 3, the limit: every reader follows it.
    expect_code(&limit(&["verify", "--chain", p(&prev), "-q"]), 0);
    let r = t.path().join("r");
    expect_code(&limit(&["restore", p(&prev), p(&r), "-q"]), 0);
    assert_eq!(tree_digest(&r), tree_digest(&data));
    // One more would be depth 4.
    fs::write(data.join("tags.json"), b"{\"k\":[4]}").unwrap();
    let a4 = t.path().join("a4.tar.zst");
    let o = limit(&["create", p(&data), "-o", p(&a4), "--base", p(&prev)]);
    expect_code(&o, 2);
    assert!(
        stderr(&o).contains("ends a chain of 4 archives, the most a reader follows"),
        "{}",
        stderr(&o)
    );
    assert!(!a4.exists(), "published");
    let o = limit(&[
        "create",
        p(&data),
        "-o",
        &format!("{}/", p(&shelf)),
        "--incremental",
        "--max-chain",
        "1000",
        "--json",
    ]);
    expect_code(&o, 0);
    assert_eq!(json(&o)["kind"], "full", "{}", stdout(&o));
}
