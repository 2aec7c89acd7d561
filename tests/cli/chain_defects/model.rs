//! Defects in what an incremental records of a changed tree (WAL names
//! shifted down, a WAL-named directory turned into a file, WAL names too
//! long for a tail, deletes too long to write, rotations in every link)
//! and crafted incrementals with right hashes and an impossible tree.

use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use sydra_archive::sydradb::wal_record;

use crate::support::*;

use super::helpers::{
    append, changes, create_on, full_digest, hour_ago, incr, records, refused, restored, set_mtime,
};

// ---------------------------------------------------------------------
// 2. WAL names shifted down one between archives.

#[test]
fn d02_wal_names_shifted_down_one_are_followed_by_every_reader() {
    let t = tempfile::tempdir().unwrap();
    let data = tiny_data(t.path());
    let w = data.join("wal");
    fs::write(w.join("a.wal"), records(2, 100, 2)).unwrap();
    fs::write(w.join("b.wal"), records(3, 100, 3)).unwrap();
    fs::write(w.join("c.wal"), records(4, 100, 4)).unwrap();
    let a0 = t.path().join("a0.tar.zst");
    create(&data, &a0);
    // b -> a, c -> b, each with a record more.
    let b = fs::read(w.join("b.wal")).unwrap();
    let c = fs::read(w.join("c.wal")).unwrap();
    fs::remove_file(w.join("c.wal")).unwrap();
    fs::write(
        w.join("a.wal"),
        [b, wal_record(3, 999, 9.0).to_vec()].concat(),
    )
    .unwrap();
    fs::write(
        w.join("b.wal"),
        [c, wal_record(4, 999, 9.0).to_vec()].concat(),
    )
    .unwrap();
    let a1 = t.path().join("a1.tar.zst");
    incr(&data, &a1, &a0);
    let renamed: Vec<(String, String)> = changes(&a1)
        .iter()
        .filter(|c| c["op"] == "append")
        .map(|c| {
            (
                c["from"].as_str().unwrap().to_string(),
                c["path"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert!(
        renamed.contains(&("wal/b.wal".into(), "wal/a.wal".into()))
            && renamed.contains(&("wal/c.wal".into(), "wal/b.wal".into())),
        "the shift is not written as appends on other names: {renamed:?}"
    );
    let want = full_digest(&data, t.path(), "1");
    let l = run(&["list", "--sha256", p(&a1)]);
    expect_code(&l, 0);
    assert!(stdout(&l).contains("wal/a.wal") && !stdout(&l).contains("wal/c.wal"));
    expect_code(&run(&["verify", "--chain", p(&a1)]), 0);
    let x = t.path().join("x");
    expect_code(&run(&["extract", p(&a1), "-C", p(&x)]), 0);
    assert_eq!(
        fs::read(x.join("wal/a.wal")).unwrap(),
        fs::read(w.join("a.wal")).unwrap()
    );
    assert_eq!(
        fs::read(x.join("wal/b.wal")).unwrap(),
        fs::read(w.join("b.wal")).unwrap()
    );
    assert_eq!(restored(&a1, &t.path().join("r1")), want);
    // And the next link on it.
    append(&w.join("b.wal"), &wal_record(4, 1999, 1.0));
    let a2 = t.path().join("a2.tar.zst");
    incr(&data, &a2, &a1);
    expect_code(&run(&["verify", "--chain", p(&a2)]), 0);
    assert_eq!(
        restored(&a2, &t.path().join("r2")),
        full_digest(&data, t.path(), "2")
    );
}

// ---------------------------------------------------------------------
// 3. A WAL-named directory removed, and current.wal rotated to its name.

#[test]
fn d03_a_wal_named_directory_replaced_by_a_rotated_wal_file() {
    let t = tempfile::tempdir().unwrap();
    let data = tiny_data(t.path());
    let w = data.join("wal");
    fs::create_dir(w.join("1000.wal")).unwrap();
    fs::write(w.join("1000.wal/inner"), b"inner").unwrap();
    let a0 = t.path().join("a0.tar.zst");
    create(&data, &a0);
    fs::remove_dir_all(w.join("1000.wal")).unwrap();
    fs::rename(w.join("current.wal"), w.join("1000.wal")).unwrap();
    fs::write(w.join("current.wal"), records(1, 5000, 1)).unwrap();
    let a1 = t.path().join("a1.tar.zst");
    incr(&data, &a1, &a0);
    expect_code(&run(&["verify", "--chain", p(&a1)]), 0);
    let l = run(&["list", p(&a1)]);
    expect_code(&l, 0);
    assert!(!stdout(&l).contains("wal/1000.wal/inner"), "{}", stdout(&l));
    assert!(stdout(&l).contains("wal/1000.wal"), "{}", stdout(&l));
    assert_eq!(
        restored(&a1, &t.path().join("r")),
        full_digest(&data, t.path(), "1")
    );
    assert!(t.path().join("r/wal/1000.wal").is_file());
}

// ---------------------------------------------------------------------
// 4. WAL file names of 251..255 bytes (their tail's name would not fit).

fn long_wal_names(lens: std::ops::RangeInclusive<usize>) -> Vec<String> {
    lens.map(|n| format!("{}.wal", "w".repeat(n - 4))).collect()
}

#[test]
fn d04_a_wal_file_with_a_name_too_long_for_a_tail_is_archived_whole() {
    let t = tempfile::tempdir().unwrap();
    let data = tiny_data(t.path());
    let names = long_wal_names(251..=255);
    for (i, n) in names.iter().enumerate() {
        fs::write(data.join("wal").join(n), records(10 + i as u64, 100, 2)).unwrap();
    }
    let a0 = t.path().join("a0.tar.zst");
    create(&data, &a0);
    for (i, n) in names.iter().enumerate() {
        append(
            &data.join("wal").join(n),
            &wal_record(10 + i as u64, 500, 1.0),
        );
    }
    let a1 = t.path().join("a1.tar.zst");
    incr(&data, &a1, &a0);
    expect_code(&run(&["verify", "--chain", p(&a1)]), 0);
    assert_eq!(
        restored(&a1, &t.path().join("r")),
        full_digest(&data, t.path(), "1")
    );
    let ops = changes(&a1);
    let l = stdout(&run(&["list", p(&a1)]));
    for n in &names {
        let path = format!("wal/{n}");
        assert!(
            !ops.iter().any(|c| c["path"] == path.as_str()),
            "{} bytes: an operation for it: {ops:?}",
            n.len()
        );
        assert!(
            l.contains(&format!("+ {path}")),
            "{} bytes: not carried: {l}",
            n.len()
        );
    }
}

/// Regression: a 250-byte WAL name (its tail's name is exactly 255 bytes)
/// is still appended to, not carried whole.
#[test]
fn r_a_wal_name_whose_tail_name_just_fits_is_still_appended() {
    let t = tempfile::tempdir().unwrap();
    let data = tiny_data(t.path());
    let n = &long_wal_names(250..=250)[0];
    fs::write(data.join("wal").join(n), records(10, 100, 2)).unwrap();
    let a0 = t.path().join("a0.tar.zst");
    create(&data, &a0);
    append(&data.join("wal").join(n), &wal_record(10, 500, 1.0));
    let a1 = t.path().join("a1.tar.zst");
    incr(&data, &a1, &a0);
    let path = format!("wal/{n}");
    assert!(
        changes(&a1)
            .iter()
            .any(|c| c["op"] == "append" && c["path"] == path.as_str()),
        "{:?}",
        changes(&a1)
    );
    expect_code(&run(&["verify", "--chain", p(&a1)]), 0);
    assert_eq!(
        restored(&a1, &t.path().join("r")),
        full_digest(&data, t.path(), "1")
    );
}

// ---------------------------------------------------------------------
// 5. A deleted path whose escaped operation line exceeds 16 KiB.

/// Nested directories under segments/ named by `c` repeated: 19 levels of
/// 200 bytes (a path of about 3,850 bytes, over 16 KiB once escaped when
/// `c` is a control character). Returns the deepest one.
fn deep_dirs(data: &Path, c: u8, levels: usize) -> PathBuf {
    let name = OsStr::from_bytes(&[c; 200]).to_os_string();
    let mut d = data.join("segments");
    for _ in 0..levels {
        d.push(&name);
    }
    fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn d05_a_delete_too_long_to_write_refuses_the_incremental_and_falls_back_to_full() {
    let t = tempfile::tempdir().unwrap();
    let data = tiny_data(t.path());
    let deepest = deep_dirs(&data, 0x01, 19);
    let shelf = t.path().join("shelf");
    fs::create_dir(&shelf).unwrap();
    let a0 = shelf.join("a0.tar.zst");
    create(&data, &a0);
    set_mtime(&a0, hour_ago());
    fs::remove_dir(&deepest).unwrap();
    let a1 = t.path().join("a1.tar.zst");
    let o = create_on(&data, &a1, &a0);
    refused(&o, 2, &["cannot write an incremental"], "create --base");
    assert!(!a1.exists(), "an incremental was published");
    assert!(leftovers(t.path()).is_empty(), "{:?}", leftovers(t.path()));
    // --incremental into the directory: a full archive, said so.
    let o = run(&[
        "create",
        p(&data),
        "-o",
        &format!("{}/", p(&shelf)),
        "--incremental",
        "--json",
    ]);
    expect_code(&o, 0);
    assert_eq!(json(&o)["kind"], "full", "{}", stdout(&o));
    let e = stderr(&o);
    assert!(
        e.contains("cannot write an incremental") && e.contains("writing a full archive"),
        "{e}"
    );
    let full = PathBuf::from(json(&o)["archive"].as_str().unwrap());
    assert_eq!(
        restored(&full, &t.path().join("r")),
        tree_digest(&data),
        "the full archive"
    );
}

/// Regression: a deleted path whose line stays under the limit (the same
/// depth of plain names) is still an incremental.
#[test]
fn r_a_long_delete_that_fits_is_still_an_incremental() {
    let t = tempfile::tempdir().unwrap();
    let data = tiny_data(t.path());
    let deepest = deep_dirs(&data, b'd', 19);
    let a0 = t.path().join("a0.tar.zst");
    create(&data, &a0);
    fs::remove_dir(&deepest).unwrap();
    let a1 = t.path().join("a1.tar.zst");
    incr(&data, &a1, &a0);
    assert!(
        changes(&a1).iter().any(|c| c["op"] == "delete"),
        "{:?}",
        changes(&a1)
    );
    expect_code(&run(&["verify", "--chain", p(&a1)]), 0);
    assert_eq!(
        restored(&a1, &t.path().join("r")),
        full_digest(&data, t.path(), "1")
    );
}

// ---------------------------------------------------------------------
// 6. Crafted incrementals with right hashes and an impossible tree.

/// Every reader of `inc` refuses with exit 1 and `says`; nothing appears.
fn every_reader_refuses(t: &Path, inc: &Path, says: &str, what: &str) {
    let x = t.join("x");
    let r = t.join("r");
    for (verb, args) in [
        ("verify --chain", vec!["verify", "--chain", p(inc)]),
        ("list", vec!["list", p(inc)]),
        ("extract", vec!["extract", p(inc), "-C", p(&x)]),
        ("restore", vec!["restore", p(inc), p(&r)]),
    ] {
        let o = run(&args);
        refused(&o, 1, &[says], &format!("{what}: {verb}"));
    }
    assert!(!r.exists(), "{what}: restore published something");
    assert!(
        !x.exists() || fs::read_dir(&x).unwrap().next().is_none(),
        "{what}: extract published something"
    );
    assert!(leftovers(t).is_empty(), "{what}: {:?}", leftovers(t));
}

#[test]
fn d06a_an_append_whose_size_is_not_offset_plus_tail_is_refused() {
    let t = tempfile::tempdir().unwrap();
    let data = tiny_data(t.path());
    let a0 = t.path().join("a0.tar.zst");
    create(&data, &a0);
    let wal = fs::read(data.join("wal/current.wal")).unwrap();
    let more = wal_record(1, 9999, 1.0);
    let whole = [wal.clone(), more.to_vec()].concat();
    let line = |size: usize| {
        format!(
            "{{\"op\":\"append\",\"path\":\"wal/current.wal\",\"from\":\"wal/current.wal\",\"offset\":{},\"prefix_sha256\":\"{}\",\"tail\":\"x-sydra-incremental/wal-tails/current.wal.tail\",\"size\":{size},\"sha256\":\"{}\",\"mode\":420,\"mtime\":1}}\n",
            wal.len(),
            hex(&sha256(&wal)),
            hex(&sha256(&whole))
        )
    };
    let inc = t.path().join("inc.tar.zst");
    // The control: the right size reads everywhere.
    fs::write(
        &inc,
        crafted_on(&a0, &[], &line(whole.len()), &[("current.wal.tail", &more)]),
    )
    .unwrap();
    expect_code(&run(&["verify", "--chain", p(&inc)]), 0);
    expect_code(&run(&["list", p(&inc)]), 0);
    // A size one record more than offset + tail.
    fs::write(
        &inc,
        crafted_on(
            &a0,
            &[],
            &line(whole.len() + 33),
            &[("current.wal.tail", &more)],
        ),
    )
    .unwrap();
    every_reader_refuses(
        t.path(),
        &inc,
        &format!(
            "wal/current.wal is {} bytes from {} continued, but its tail x-sydra-incremental/wal-tails/current.wal.tail holds 33",
            whole.len() + 33,
            wal.len()
        ),
        "size",
    );
}

/// A directory of the base turned into a file member without a delete
/// below it: by the model's rule 5 the file takes what was below it, and
/// every reader agrees on that tree (before the fix, the base's entries
/// stayed below a file: a tree no reader could restore). What cannot fit
/// that tree (a delete below the file, a member below it) is refused.
#[test]
fn d06b_a_directory_turned_into_a_file_member_takes_what_was_below_it() {
    let t = tempfile::tempdir().unwrap();
    let data = tiny_data(t.path());
    let a0 = t.path().join("a0.tar.zst");
    create(&data, &a0);
    let below = "segments/3600/1-3600-3610-1.seg";
    assert!(stdout(&run(&["list", p(&a0)])).contains(below));
    let inc = t.path().join("inc.tar.zst");
    let turned = [dir("segments"), file("segments/3600", b"now a file")];
    fs::write(&inc, crafted_on(&a0, &turned, "", &[])).unwrap();
    expect_code(&run(&["verify", "--chain", p(&inc)]), 0);
    let l = run(&["list", p(&inc)]);
    expect_code(&l, 0);
    assert!(
        stdout(&l).contains("+ segments/3600\n") && !stdout(&l).contains("segments/3600/"),
        "{}",
        stdout(&l)
    );
    let x = t.path().join("x");
    expect_code(&run(&["extract", p(&inc), "-C", p(&x)]), 0);
    assert_eq!(fs::read(x.join("segments/3600")).unwrap(), b"now a file");
    let r = t.path().join("r");
    expect_code(&run(&["restore", p(&inc), p(&r), "-q"]), 0);
    assert_eq!(fs::read(r.join("segments/3600")).unwrap(), b"now a file");
    fs::remove_dir_all(&x).unwrap();
    fs::remove_dir_all(&r).unwrap();

    // A delete of what the file took: the base no longer holds it there.
    fs::write(
        &inc,
        crafted_on(
            &a0,
            &turned,
            &format!("{{\"op\":\"delete\",\"path\":\"{below}\"}}\n"),
            &[],
        ),
    )
    .unwrap();
    every_reader_refuses(
        t.path(),
        &inc,
        &format!("it deletes {below}, which its base does not hold"),
        "a delete below the file",
    );
    // A member below the file: no tree has both.
    let mut below_too = turned.to_vec();
    below_too.push(file("segments/3600/9-3600-3600-9.seg", b"below a file"));
    fs::write(&inc, crafted_on(&a0, &below_too, "", &[])).unwrap();
    every_reader_refuses(
        t.path(),
        &inc,
        "parent directory \"segments/3600\" is not declared before it",
        "a member below the file",
    );
}

// ---------------------------------------------------------------------
// Regressions.

/// A chain where every link rotates current.wal to a numbered name and
/// appends to the new one restores as a full archive would.
#[test]
fn r_rotations_in_every_link_restore_byte_identical() {
    let t = tempfile::tempdir().unwrap();
    let data = tiny_data(t.path());
    let w = data.join("wal");
    let mut prev = t.path().join("a0.tar.zst");
    create(&data, &prev);
    for i in 1..=4u64 {
        append(
            &w.join("current.wal"),
            &wal_record(1, 20_000 + i as i64, 1.0),
        );
        fs::rename(w.join("current.wal"), w.join(format!("{:04}.wal", i))).unwrap();
        fs::write(
            w.join("current.wal"),
            records(1, 30_000 + i as i64 * 100, 2),
        )
        .unwrap();
        let next = t.path().join(format!("a{i}.tar.zst"));
        incr(&data, &next, &prev);
        expect_code(&run(&["verify", "--chain", p(&next)]), 0);
        prev = next;
    }
    assert_eq!(
        restored(&prev, &t.path().join("r")),
        full_digest(&data, t.path(), "1")
    );
}
