//! `restore DIR/` (the newest restorable archive there), the marks `ls`
//! gives it, `ls -q`, and SYDRA_ARCHIVE_PASSPHRASE_FILE.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use crate::support::*;

/// 2026-11-02T00:00:00Z.
const T0: u64 = 1_793_577_600;

/// `create DATA -o SHELF/` at `when` (its name and its mtime), with
/// `extra` arguments; the archive's path.
fn create_at(data: &Path, shelf: &Path, when: u64, extra: &[&str]) -> PathBuf {
    let shelf_arg = format!("{}/", p(shelf));
    let o = bin()
        .args(["create", p(data), "-o", &shelf_arg, "--json"])
        .args(extra)
        .env("SOURCE_DATE_EPOCH", when.to_string())
        .env_remove("SYDRA_ARCHIVE_PASSPHRASE_FILE")
        .output()
        .unwrap();
    expect_code(&o, 0);
    let path = PathBuf::from(json(&o)["archive"].as_str().unwrap());
    fs::File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_modified(UNIX_EPOCH + Duration::from_secs(when))
        .unwrap();
    path
}

/// Appends one WAL record: each archive holds something new.
fn grow(data: &Path, i: u64) {
    let mut wal = fs::read(data.join("wal/current.wal")).unwrap();
    wal.extend(sydra_archive::sydradb::wal_record(
        1,
        4000 + i as i64,
        i as f64,
    ));
    fs::write(data.join("wal/current.wal"), wal).unwrap();
}

/// Two chains of two (full, incremental), an hour apart each.
fn two_chains(t: &Path) -> (PathBuf, PathBuf, [PathBuf; 4]) {
    let data = tiny_data(t);
    let shelf = t.join("shelf");
    fs::create_dir(&shelf).unwrap();
    let mut made = Vec::new();
    for k in 0..4 {
        grow(&data, k);
        made.push(create_at(
            &data,
            &shelf,
            T0 + k * 3600,
            &["--incremental", "--max-chain", "2"],
        ));
    }
    (data, shelf, made.try_into().unwrap())
}

fn name(p: &Path) -> String {
    p.file_name().unwrap().to_string_lossy().into_owned()
}

#[test]
fn restore_dir_takes_the_newest_archive_whose_chain_is_whole() {
    let t = tempfile::tempdir().unwrap();
    let (_, shelf, [full0, inc1, full2, inc3]) = two_chains(t.path());
    let shelf_arg = format!("{}/", p(&shelf));

    // All there: the newest is the latest.
    let o = run(&["ls", p(&shelf)]);
    expect_code(&o, 0);
    let text = stdout(&o);
    let first = text.lines().next().unwrap();
    assert!(
        first.contains(&name(&inc3)) && first.ends_with("[latest]"),
        "{text}"
    );
    assert_eq!(text.matches("[latest]").count(), 1, "{text}");
    let j = json(&run(&["ls", "--json", p(&shelf)]));
    assert_eq!(j["latest"], inc3.to_string_lossy().as_ref(), "{j}");
    assert!(
        j["archives"]
            .as_array()
            .unwrap()
            .iter()
            .all(|a| a["restorable"] == true),
        "{j}"
    );

    // The newest's base deleted: the incremental before it is taken.
    fs::remove_file(&full2).unwrap();
    let o = run(&["ls", p(&shelf)]);
    let text = stdout(&o);
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].contains(&name(&inc3)), "{text}");
    assert!(lines[0].ends_with("[chain incomplete]"), "{text}");
    assert!(
        lines[1].contains(&name(&inc1)) && lines[1].ends_with("[latest]"),
        "{text}"
    );
    let j = json(&run(&["ls", "--json", p(&shelf)]));
    assert_eq!(j["latest"], inc1.to_string_lossy().as_ref(), "{j}");
    let flags: Vec<&serde_json::Value> = j["archives"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| &a["restorable"])
        .collect();
    assert_eq!(flags, [false, true, true], "{j}");

    let r = t.path().join("r");
    let o = run(&["restore", &shelf_arg, p(&r)]);
    expect_code(&o, 0);
    let err = stderr(&o);
    assert!(
        err.contains(&format!(
            "sydra-archive: skipped {}: broken chain of",
            inc3.display()
        )),
        "{err}"
    );
    assert!(err.contains(&name(&full2)), "{err}");
    assert!(
        err.contains(&format!(
            "sydra-archive: restoring the newest restorable archive {} (1 newer archive skipped: {})",
            inc1.display(),
            inc3.display()
        )),
        "{err}"
    );
    // What was restored is the chain full0 <- inc1.
    let want = t.path().join("want");
    expect_code(&run(&["restore", p(&inc1), p(&want), "-q"]), 0);
    assert_eq!(tree_digest(&r), tree_digest(&want));

    // --json names the archive chosen, where from, and what was skipped.
    let r2 = t.path().join("r2");
    let o = run(&["restore", &shelf_arg, p(&r2), "--json", "-q"]);
    expect_code(&o, 0);
    assert_eq!(stderr(&o), "", "-q");
    let j = json(&o);
    assert_eq!(j["archive"], inc1.to_string_lossy().as_ref(), "{j}");
    assert_eq!(j["chosen_from"], shelf_arg.as_str(), "{j}");
    assert_eq!(j["chain"].as_array().unwrap().len(), 2, "{j}");
    assert_eq!(j["skipped"][0]["url"], inc3.to_string_lossy().as_ref());
    assert!(
        j["skipped"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("broken chain"),
        "{j}"
    );

    // No archive restorable: refused, nothing written.
    fs::remove_file(&full0).unwrap();
    let j = json(&run(&["ls", "--json", p(&shelf)]));
    assert!(j["latest"].is_null(), "{j}");
    let r3 = t.path().join("r3");
    let o = run(&["restore", &shelf_arg, p(&r3)]);
    expect_code(&o, 2);
    let err = stderr(&o);
    assert_eq!(err.matches("sydra-archive: skipped ").count(), 2, "{err}");
    assert!(
        err.contains(&format!(
            "sydra-archive: no restorable archive in {shelf_arg}: all 2 archives were skipped"
        )),
        "{err}"
    );
    assert!(!r3.exists());
    // ... and one only: the error says why.
    fs::remove_file(&inc3).unwrap();
    let o = run(&["restore", &shelf_arg, p(&r3)]);
    expect_code(&o, 2);
    let err = stderr(&o);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains(&format!(
            "no restorable archive in {shelf_arg}: its only archive was skipped ({}: broken chain of",
            inc1.display()
        )),
        "{err}"
    );
    // None at all.
    fs::remove_file(&inc1).unwrap();
    let o = run(&["restore", &shelf_arg, p(&r3)]);
    expect_code(&o, 2);
    assert_eq!(
        stderr(&o),
        format!("sydra-archive: no archive in {shelf_arg}\n")
    );
    assert!(!r3.exists());
}

#[test]
fn an_encrypted_newest_without_its_key_is_skipped_and_the_env_passphrase_reads_it() {
    let t = tempfile::tempdir().unwrap();
    let data = tiny_data(t.path());
    let shelf = t.path().join("shelf");
    fs::create_dir(&shelf).unwrap();
    let pass = t.path().join("pass.txt");
    fs::write(&pass, "correct horse battery staple\n").unwrap();
    let plain = create_at(&data, &shelf, T0, &[]);
    grow(&data, 1);
    let sealed = create_at(&data, &shelf, T0 + 3600, &["--passphrase-file", p(&pass)]);
    assert!(name(&sealed).ends_with(".tar.zst.age"));
    let shelf_arg = format!("{}/", p(&shelf));
    let with_env = |args: &[&str]| {
        bin()
            .args(args)
            .env("SYDRA_ARCHIVE_PASSPHRASE_FILE", &pass)
            .env_remove("SYDRA_ARCHIVE_IDENTITY_FILE")
            .output()
            .unwrap()
    };
    let without = |args: &[&str]| {
        bin()
            .args(args)
            .env_remove("SYDRA_ARCHIVE_PASSPHRASE_FILE")
            .env_remove("SYDRA_ARCHIVE_IDENTITY_FILE")
            .output()
            .unwrap()
    };

    // Without the key: skipped, with the reason; the older one restored.
    let r = t.path().join("r");
    let o = without(&["restore", &shelf_arg, p(&r)]);
    expect_code(&o, 0);
    let err = stderr(&o);
    assert!(
        err.contains(&format!(
            "sydra-archive: skipped {}: cannot decrypt",
            sealed.display()
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "restoring the newest restorable archive {} (1 newer archive skipped",
            plain.display()
        )),
        "{err}"
    );
    let want = t.path().join("want");
    expect_code(&without(&["restore", p(&plain), p(&want), "-q"]), 0);
    assert_eq!(tree_digest(&r), tree_digest(&want));

    // With SYDRA_ARCHIVE_PASSPHRASE_FILE: the encrypted one, by every reader.
    let r2 = t.path().join("r2");
    let o = with_env(&["restore", &shelf_arg, p(&r2)]);
    expect_code(&o, 0);
    assert!(
        stderr(&o).contains(&format!(
            "restoring the newest restorable archive {}\n",
            sealed.display()
        )),
        "{}",
        stderr(&o)
    );
    assert_eq!(tree_digest(&r2), tree_digest(&data));
    expect_code(&with_env(&["verify", p(&sealed)]), 0);
    let o = with_env(&["list", p(&sealed)]);
    expect_code(&o, 0);
    assert!(stdout(&o).contains("tags.json"), "{}", stdout(&o));
    let o = without(&["verify", p(&sealed)]);
    expect_code(&o, 2);
    assert!(stderr(&o).contains("cannot decrypt"), "{}", stderr(&o));
    // The flag wins over the environment.
    let wrong = t.path().join("wrong.txt");
    fs::write(&wrong, "not it\n").unwrap();
    let o = bin()
        .args(["verify", p(&sealed), "--passphrase-file", p(&wrong)])
        .env("SYDRA_ARCHIVE_PASSPHRASE_FILE", &pass)
        .output()
        .unwrap();
    expect_code(&o, 2);
    // An unreadable one is a warning, not a failure, for an archive that
    // needs no key.
    let o = bin()
        .args(["verify", p(&plain)])
        .env("SYDRA_ARCHIVE_PASSPHRASE_FILE", t.path().join("nope.txt"))
        .output()
        .unwrap();
    expect_code(&o, 0);
    assert!(
        stderr(&o).contains("warning: SYDRA_ARCHIVE_PASSPHRASE_FILE: "),
        "{}",
        stderr(&o)
    );

    // create never encrypts because of the environment.
    let out = t.path().join("plain-again.tar.zst");
    let o = with_env(&["create", p(&data), "-o", p(&out), "-q"]);
    expect_code(&o, 0);
    assert!(
        !fs::read(&out)
            .unwrap()
            .starts_with(b"age-encryption.org/v1\n")
    );
    expect_code(&without(&["verify", p(&out)]), 0);
}

#[test]
fn ls_quiet_prints_only_the_listing() {
    let t = tempfile::tempdir().unwrap();
    let data = tiny_data(t.path());
    let shelf = t.path().join("shelf");
    fs::create_dir(&shelf).unwrap();
    let a = create_at(&data, &shelf, T0, &[]);
    fs::write(shelf.join("notes.tar.zst"), b"not an archive").unwrap();
    let o = run(&["ls", p(&shelf)]);
    expect_code(&o, 0);
    assert!(
        stderr(&o).contains("notes.tar.zst is not a sydra-archive"),
        "{}",
        stderr(&o)
    );
    let listing = stdout(&o);
    assert!(listing.contains(&name(&a)), "{listing}");
    for q in ["-q", "--quiet"] {
        let o = run(&["ls", q, p(&shelf)]);
        expect_code(&o, 0);
        assert_eq!(stderr(&o), "", "{q}");
        assert_eq!(stdout(&o), listing, "{q}");
    }
    // Errors still show.
    let o = run(&["ls", "-q", p(&t.path().join("missing"))]);
    expect_code(&o, 2);
    assert!(stderr(&o).contains("missing"), "{}", stderr(&o));
}
