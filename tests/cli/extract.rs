//! `extract`: some files out of an archive, reading only what holds them,
//! each checked before any is moved into place.

use std::fs;

use crate::support::*;

/// An archive of `small_data` in 4 KiB frames (many frames), and its data.
fn archive(t: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let data = small_data(t);
    let out = t.join("a.tar.zst");
    let o = run(&["create", p(&data), "-o", p(&out), "-q", "--frame-kib", "4"]);
    expect_code(&o, 0);
    (data, out)
}

#[test]
fn files_globs_and_directories_come_out_as_they_went_in() {
    let t = tempfile::tempdir().unwrap();
    let (data, out) = archive(t.path());
    let parts = split2(&fs::read(&out).unwrap());
    let recs = parts.records();
    let seg = recs
        .iter()
        .find(|r| r.path.ends_with(".seg"))
        .unwrap()
        .path
        .clone();
    let hour = seg.rsplit_once('/').unwrap().0.to_string();

    // One file: the index and the frames that hold it, in a few reads.
    let dest = t.path().join("one");
    let o = run(&["extract", p(&out), &seg, "-C", p(&dest), "--json"]);
    expect_code(&o, 0);
    let v = json(&o);
    assert_eq!(v["files"], 1);
    assert_eq!(v["streamed"], false);
    assert!(v["reads"].as_u64().unwrap() <= 5, "{v}");
    // The end, the index, and the frame(s) of one small file with the
    // decoder's 16 KiB of input buffering: not the rest of the data.
    let len = fs::metadata(&out).unwrap().len();
    let index: u64 = parts.index.iter().map(|(_, b)| 16 + b.len() as u64).sum();
    let biggest = parts
        .data
        .iter()
        .map(|(_, f)| f.len() as u64)
        .max()
        .unwrap();
    // (The end may take a read of up to a sixteenth of the archive.)
    let bound = (len - parts.table_offset) + len / 16 + index + 2 * biggest + 16 * 1024;
    assert!(
        v["read_bytes"].as_u64().unwrap() <= bound,
        "{v}: bound {bound}, archive {len}"
    );
    assert_eq!(
        fs::read(dest.join(&seg)).unwrap(),
        fs::read(data.join(&seg)).unwrap()
    );
    assert_eq!(count_tree(&dest).0, 1);

    // A glob, a directory, and everything.
    for (pats, want) in [
        (
            vec![format!("{hour}/*.seg")],
            recs.iter()
                .filter(|r| !r.dir && r.path.starts_with(&format!("{hour}/")))
                .count(),
        ),
        (
            vec!["wal".to_string()],
            recs.iter()
                .filter(|r| !r.dir && r.path.starts_with("wal/"))
                .count(),
        ),
        (vec![], recs.iter().filter(|r| !r.dir).count()),
    ] {
        let dest = t.path().join(format!("d{}", want));
        let mut args = vec!["extract", p(&out)];
        args.extend(pats.iter().map(String::as_str));
        args.extend(["-C", p(&dest), "--json"]);
        let o = run(&args);
        expect_code(&o, 0);
        assert_eq!(json(&o)["files"], want as u64, "{pats:?}");
        for r in recs.iter().filter(|r| !r.dir) {
            if dest.join(&r.path).exists() {
                assert_eq!(
                    fs::read(dest.join(&r.path)).unwrap(),
                    fs::read(data.join(&r.path)).unwrap()
                );
            }
        }
        assert_eq!(count_tree(&dest).0, want as u64, "{pats:?}");
        assert_eq!(leftovers(&dest), Vec::<String>::new());
    }
    // Everything equals the data dir's layout.
    let all = t
        .path()
        .join(format!("d{}", recs.iter().filter(|r| !r.dir).count()));
    for r in recs.iter().filter(|r| !r.dir) {
        assert!(all.join(&r.path).is_file(), "{}", r.path);
    }

    // One file to stdout.
    let o = run(&["extract", p(&out), "tags.json", "-o", "-"]);
    expect_code(&o, 0);
    assert_eq!(o.stdout, fs::read(data.join("tags.json")).unwrap());
    let f = t.path().join("tags.copy");
    expect_code(&run(&["extract", p(&out), "tags.json", "-o", p(&f)]), 0);
    assert_eq!(
        fs::read(&f).unwrap(),
        fs::read(data.join("tags.json")).unwrap()
    );
}

#[test]
fn refusals_name_their_reason_and_write_nothing() {
    let t = tempfile::tempdir().unwrap();
    let (_, out) = archive(t.path());
    let dest = t.path().join("x");
    let o = run(&[
        "extract",
        p(&out),
        "tags.json",
        "segments/nope/*",
        "-C",
        p(&dest),
    ]);
    expect_code(&o, 2);
    assert!(
        stderr(&o).contains("\"segments/nope/*\" matches nothing"),
        "{}",
        stderr(&o)
    );
    assert_eq!(count_tree(&dest), (0, 0));

    expect_code(&run(&["extract", p(&out), "tags.json", "-C", p(&dest)]), 0);
    let o = run(&["extract", p(&out), "tags.json", "-C", p(&dest)]);
    expect_code(&o, 2);
    assert!(stderr(&o).contains("exists; use --force"), "{}", stderr(&o));
    expect_code(
        &run(&["extract", p(&out), "tags.json", "-C", p(&dest), "--force"]),
        0,
    );

    let o = run(&["extract", p(&out), "wal", "-o", p(&t.path().join("one"))]);
    expect_code(&o, 2);
    assert!(
        stderr(&o).contains("-o takes exactly one"),
        "{}",
        stderr(&o)
    );
    assert_eq!(leftovers(&dest), Vec::<String>::new());
    assert_eq!(leftovers(t.path()), Vec::<String>::new());
}

#[test]
fn a_corrupt_frame_or_a_tampered_index_publishes_nothing() {
    let t = tempfile::tempdir().unwrap();
    let (_, out) = archive(t.path());
    let a = fs::read(&out).unwrap();
    let parts = split2(&a);
    let recs = parts.records();
    // Flip a byte inside the data frame that holds the last WAL file.
    let wal = recs
        .iter()
        .rev()
        .find(|r| !r.dir && r.path.starts_with("wal/") && r.size > 0)
        .unwrap();
    let (at, frame) = parts.data.iter().find(|(at, _)| *at == wal.frame).unwrap();
    let mut b = a.clone();
    b[*at as usize + frame.len() / 2] ^= 0x40;
    let bad = t.path().join("bad.tar.zst");
    fs::write(&bad, &b).unwrap();
    let dest = t.path().join("x");
    let o = run(&["extract", p(&bad), "tags.json", &wal.path, "-C", p(&dest)]);
    expect_code(&o, 1);
    assert_eq!(count_tree(&dest), (0, 0), "nothing published");
    assert_eq!(leftovers(&dest), Vec::<String>::new());
    // Files in other frames still come out.
    expect_code(&run(&["extract", p(&bad), "tags.json", "-C", p(&dest)]), 0);

    // A tampered index fails before any data is read.
    let mut c = a.clone();
    c[parts.index[0].0 as usize + 30] ^= 1;
    fs::write(&bad, &c).unwrap();
    let dest = t.path().join("y");
    let o = run(&["extract", p(&bad), "tags.json", "-C", p(&dest), "--json"]);
    expect_code(&o, 1);
    assert!(
        stderr(&o).contains("does not match its row"),
        "{}",
        stderr(&o)
    );
    assert_eq!(count_tree(&dest), (0, 0));
}

#[test]
fn version_1_and_pipes_are_read_whole_and_say_so() {
    let t = tempfile::tempdir().unwrap();
    let golden = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/golden-v1.tar.zst");
    let sample = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/sample"));
    let dest = t.path().join("v1");
    let o = run(&[
        "extract",
        golden,
        "tags.json",
        "wal",
        "-C",
        p(&dest),
        "--json",
    ]);
    expect_code(&o, 0);
    assert!(stderr(&o).contains("read whole"), "{}", stderr(&o));
    assert_eq!(json(&o)["streamed"], true);
    assert_eq!(
        fs::read(dest.join("tags.json")).unwrap(),
        fs::read(sample.join("tags.json")).unwrap()
    );
    let (_, out) = archive(t.path());
    let piped = bin()
        .args(["extract", "-", "MANIFEST", "-o", "-"])
        .stdin(fs::File::open(&out).unwrap())
        .output()
        .unwrap();
    assert!(
        piped.status.success(),
        "{}",
        String::from_utf8_lossy(&piped.stderr)
    );
    assert!(!piped.stdout.is_empty());
}

#[test]
fn list_takes_the_same_patterns() {
    let t = tempfile::tempdir().unwrap();
    let (_, out) = archive(t.path());
    let o = run(&["list", p(&out), "wal/*.wal", "tags.json"]);
    expect_code(&o, 0);
    let text = stdout(&o);
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines.len() >= 2);
    assert!(
        lines
            .iter()
            .all(|l| l.ends_with("tags.json") || l.contains(" wal/")),
        "{lines:?}"
    );
    let o = run(&["list", "--sha256", p(&out), "MANIFEST"]);
    expect_code(&o, 0);
    assert_eq!(stdout(&o).lines().count(), 1);
    let o = run(&["list", p(&out), "segments/none"]);
    expect_code(&o, 2);
    assert!(
        stderr(&o).contains("\"segments/none\" matches nothing"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn extract_and_list_read_across_many_index_blocks() {
    // 30,000 entries make several INDEX blocks; order and offsets are
    // checked across them.
    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("s.tar.zst");
    let f = fs::File::create(&out).unwrap();
    sydra_archive::write_synthetic(std::io::BufWriter::new(f), 30_000, 40, 7_000, 2).unwrap();
    let parts = split2(&fs::read(&out).unwrap());
    assert!(parts.index.len() >= 3, "{} blocks", parts.index.len());
    let recs = parts.records();
    let last = recs
        .iter()
        .rev()
        .find(|r| !r.dir && r.path.starts_with("segments/"))
        .unwrap();
    let hour = last.path.rsplit_once('/').unwrap().0;
    let dest = t.path().join("x");
    let o = run(&[
        "extract",
        p(&out),
        &last.path,
        hour,
        "-C",
        p(&dest),
        "--json",
    ]);
    expect_code(&o, 0);
    let v = json(&o);
    let in_hour = recs
        .iter()
        .filter(|r| !r.dir && r.path.starts_with(&format!("{hour}/")))
        .count();
    assert_eq!(v["files"], in_hour as u64);
    assert_eq!(
        hex(&sha256(&fs::read(dest.join(&last.path)).unwrap())),
        rec_sha(last)
    );
    let o = run(&["list", p(&out), hour]);
    expect_code(&o, 0);
    assert_eq!(stdout(&o).lines().count(), in_hour + 1);
    // One file: the end (TAIL, TABLE, META with each block's first path),
    // the one block that holds its record and its frame; no search.
    let o = run(&["extract", p(&out), &last.path, "-o", "-", "--json"]);
    expect_code(&o, 0);
    let v: serde_json::Value = serde_json::from_slice(o.stderr.trim_ascii()).unwrap();
    assert_eq!(v["reads"], 3, "{v}");
}

#[test]
fn extract_checks_the_index_it_reads_and_leaves_nothing_on_failure() {
    let t = tempfile::tempdir().unwrap();
    let check = |bytes: Vec<u8>, pats: &[&str], code: i32, needle: &str| {
        let f = t.path().join("c.tar.zst");
        fs::write(&f, bytes).unwrap();
        let dest = t.path().join("out");
        let mut args = vec!["extract", p(&f)];
        args.extend(pats);
        args.extend(["-C", p(&dest)]);
        let o = run(&args);
        expect_code(&o, code);
        assert!(stderr(&o).contains(needle), "{pats:?}: {}", stderr(&o));
        assert!(
            !dest.exists(),
            "{pats:?}: the directory it made is removed again"
        );
        assert_eq!(leftovers(t.path()), Vec::<String>::new());
    };
    // Out of order, and a repeated path, whether every block is read or
    // only some.
    let mut m = members();
    m.swap(3, 4);
    check(craft2(&m), &[], 1, "out of order");
    check(craft2(&m), &["segments/3600"], 1, "out of order");
    let mut m = members();
    m.push(file("wal/current.wal", b"again"));
    check(craft2(&m), &[], 1, "duplicate");
    check(craft2(&m), &["wal"], 1, "repeated");
    // A directory record that is not the member at its place.
    let mut c = Craft2::new(&members());
    c.records = Box::new(|r| r[2].path = "segments/3599".into());
    check(c.build(), &["segments/3599"], 1, "another member");
    // Damage found at the end (META, TABLE, TAIL) leaves no staging.
    for at in [20usize, 60, 100] {
        let mut b = craft2(&members());
        let n = b.len();
        b[n - 128 - at] ^= 0x10;
        check(b, &["MANIFEST"], 1, "corrupt archive");
    }
    let mut c = Craft2::new(&members());
    c.tail = Box::new(|t| t[16] = 4);
    check(c.build(), &["MANIFEST"], 1, "versions 1 to 3");
}

/// META rewritten by `f`, with TAIL's digests recomputed (as a forger
/// would).
fn reseal_meta(a: &[u8], f: impl Fn(&mut serde_json::Value)) -> Vec<u8> {
    let parts = split2(a);
    let mut meta = parts.meta.clone();
    f(&mut meta);
    let mut out = a[..parts.meta_offset as usize].to_vec();
    out.extend(skippable(b"SYDRMETA", &serde_json::to_vec(&meta).unwrap()));
    let body_len = out.len() as u64;
    let mut tail: [u8; 128] = parts.tail.clone().try_into().unwrap();
    tail[40..48].copy_from_slice(&body_len.to_le_bytes());
    tail[64..96].copy_from_slice(&sha256(&out[parts.table_offset as usize..]));
    tail[96..].copy_from_slice(&sha256(&out));
    out.extend(tail);
    out
}

/// A META whose first paths lie (in tree order, digests recomputed) so
/// that the search would stop before a block that holds wanted files:
/// extract reads that block too and refuses, instead of giving fewer files.
/// (Found by a review.)
#[test]
fn lying_first_paths_cannot_make_extract_skip_a_block() {
    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("s.tar.zst");
    let f = fs::File::create(&out).unwrap();
    sydra_archive::write_synthetic(std::io::BufWriter::new(f), 30_000, 40, 7_000, 2).unwrap();
    let a = fs::read(&out).unwrap();
    let parts = split2(&a);
    let firsts: Vec<String> = parts.meta["first_paths"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    assert!(firsts.len() >= 3, "{firsts:?}");
    // Block 1 starts inside a directory that block 0 holds files of.
    let dir = firsts[1].rsplit_once('/').unwrap().0.to_string();
    let lie = format!("{dir}zzz");
    assert!(lie.as_str() < firsts[2].as_str());
    let lied = reseal_meta(&a, |m| m["first_paths"][1] = serde_json::json!(lie));
    let bad = t.path().join("lie.tar.zst");
    fs::write(&bad, &lied).unwrap();
    let dest = t.path().join("x");
    let o = run(&["extract", p(&bad), &dir, "-C", p(&dest)]);
    expect_code(&o, 1);
    assert!(stderr(&o).contains("META gives"), "{}", stderr(&o));
    assert_eq!(count_tree(&dest), (0, 0));
    // Out of tree order: refused before any block is read.
    let lied = reseal_meta(&a, |m| m["first_paths"][1] = serde_json::json!("wal/zzz"));
    fs::write(&bad, &lied).unwrap();
    let o = run(&["extract", p(&bad), &dir, "-C", p(&dest)]);
    expect_code(&o, 1);
    assert!(stderr(&o).contains("not in tree order"), "{}", stderr(&o));
    // The honest archive gives every file of the directory.
    let o = run(&["extract", p(&out), &dir, "-C", p(&dest), "--json"]);
    expect_code(&o, 0);
    let want = parts
        .records()
        .iter()
        .filter(|r| !r.dir && r.path.starts_with(&format!("{dir}/")))
        .count();
    assert_eq!(json(&o)["files"], want as u64);
}

/// Directories extract creates get the archive's modes and times once
/// their files are in place; a directory that was already there is left
/// as it was (its mode is the owner's choice).
#[test]
fn created_directories_get_their_times_and_existing_ones_are_left_alone() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let t = tempfile::tempdir().unwrap();
    let (data, out) = archive(t.path());
    let dest = t.path().join("x");
    expect_code(&run(&["extract", p(&out), "segments", "-C", p(&dest)]), 0);
    assert_eq!(
        tree_digest(&dest.join("segments")),
        tree_digest(&data.join("segments"))
    );
    let src = fs::metadata(data.join("segments")).unwrap();
    let got = fs::metadata(dest.join("segments")).unwrap();
    assert_eq!(got.mtime(), src.mtime());

    let dest = t.path().join("y");
    fs::create_dir_all(dest.join("segments")).unwrap();
    fs::set_permissions(dest.join("segments"), fs::Permissions::from_mode(0o700)).unwrap();
    expect_code(&run(&["extract", p(&out), "segments", "-C", p(&dest)]), 0);
    let got = fs::metadata(dest.join("segments")).unwrap();
    assert_eq!(got.permissions().mode() & 0o777, 0o700);
    // Its subdirectories were created: they have the archive's times.
    for e in fs::read_dir(data.join("segments")).unwrap() {
        let e = e.unwrap();
        let mine = fs::metadata(dest.join("segments").join(e.file_name())).unwrap();
        assert_eq!(mine.mtime(), e.metadata().unwrap().mtime());
    }
}
