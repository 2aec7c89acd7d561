//! Chains against a simulated server writer: each link restores
//! byte-identical to a full archive of the same moment and carries only
//! what changed; stock tar never writes a WAL tail under the WAL's name;
//! a WAL rewritten in the middle, kind flips and odd data dirs restore as
//! a full archive would; `-o DIR/ --incremental` starts a full at
//! `--max-chain`, and prune keeps the chains it needs.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use sydra_archive::sydradb::Server;

use crate::support::*;

use super::{create_on, live, restored, spec};

#[test]
fn chains_restore_byte_identical_to_a_full_archive_of_the_same_moment() {
    let t = tempfile::tempdir().unwrap();
    let (data, mut server) = live(t.path());
    let first_hour = spec().start_ts;
    let a0 = t.path().join("a0.tar.zst");
    create(&data, &a0);
    let mut prev = a0;
    let mut renamed = 0;
    // Appends (with rotations), new segments, compaction, retention, and
    // an archive of nothing new.
    type Step = Box<dyn Fn(&mut Server)>;
    let steps: Vec<Step> = vec![
        Box::new(|s| s.run(1800).unwrap()),
        Box::new(move |s| {
            s.run(600).unwrap();
            s.compact(first_hour + 3600).unwrap();
        }),
        Box::new(move |s| {
            s.drop_hour(first_hour).unwrap();
            s.run(3000).unwrap();
        }),
        Box::new(|_| {}),
        Box::new(|s| s.run(4200).unwrap()),
        Box::new(|s| s.run(60).unwrap()),
    ];
    for (i, step) in steps.iter().enumerate() {
        step(&mut server);
        let inc = t.path().join(format!("a{}.tar.zst", i + 1));
        let o = create_on(&data, &inc, &prev);
        expect_code(&o, 0);
        let j = json(&o);
        assert_eq!(j["kind"], "incremental", "{j}");
        assert_eq!(j["base"]["depth"], i as u64 + 1, "{j}");
        let full = t.path().join(format!("f{}.tar.zst", i + 1));
        create(&data, &full);
        let inc_size = fs::metadata(&inc).unwrap().len();
        let full_size = fs::metadata(&full).unwrap().len();
        assert!(inc_size < full_size, "step {i}: {inc_size} !< {full_size}");

        let want = restored(&full, &t.path().join(format!("rf{i}")));
        assert_eq!(tree_digest(&data), want, "step {i}: the full archive");
        let got = restored(&inc, &t.path().join(format!("ri{i}")));
        assert_eq!(got, want, "step {i}: the chain restores another tree");

        // The whole tree, as list and list --sha256 give it.
        let lf = stdout(&run(&["list", "--sha256", p(&full)]));
        let li = stdout(&run(&["list", "--sha256", p(&inc)]));
        assert_eq!(li, lf, "step {i}: list --sha256 of the chain");
        let v = run(&["verify", "--chain", p(&inc)]);
        expect_code(&v, 0);
        let changes = Command::new("tar")
            .args([
                "--zstd",
                "-xOf",
                p(&inc),
                "x-sydra-incremental/changes.ndjson",
            ])
            .output()
            .unwrap();
        for line in String::from_utf8_lossy(&changes.stdout).lines() {
            let c: serde_json::Value = serde_json::from_str(line).unwrap();
            if c["op"] == "append" && c["from"] != c["path"] {
                renamed += 1;
            }
        }
        prev = inc;
    }
    assert!(renamed > 0, "no rotation was continued under its new name");
    // Extract of the whole chain gives the same files; one appended WAL
    // file alone, too.
    let x = t.path().join("x");
    let o = run(&["extract", p(&prev), "-C", p(&x)]);
    expect_code(&o, 0);
    let d = Command::new("diff")
        .args(["-r", p(&data), p(&x)])
        .output()
        .unwrap();
    assert!(d.status.success(), "{}", String::from_utf8_lossy(&d.stdout));
    let o = run(&[
        "extract",
        p(&prev),
        "wal/current.wal",
        "-o",
        p(&t.path().join("cw")),
    ]);
    expect_code(&o, 0);
    assert_eq!(
        fs::read(t.path().join("cw")).unwrap(),
        fs::read(data.join("wal/current.wal")).unwrap()
    );
}

#[test]
fn an_incremental_carries_only_what_changed() {
    let t = tempfile::tempdir().unwrap();
    let (data, mut server) = live(t.path());
    // A base whose current.wal holds records (an empty one is not
    // appended to: the whole file is new).
    server.run(60).unwrap();
    let a0 = t.path().join("a0.tar.zst");
    create(&data, &a0);
    let before = fs::metadata(data.join("wal/current.wal")).unwrap().len();
    assert!(before > 0);
    // Less than a rotation's worth: current.wal only grows.
    server.run(60).unwrap();
    let a1 = t.path().join("a1.tar.zst");
    expect_code(&create_on(&data, &a1, &a0), 0);
    let l = stdout(&run(&["list", p(&a1)]));
    let carried: Vec<&str> = l
        .lines()
        .filter(|l| l.contains(" + "))
        .map(|l| l.rsplit(' ').next().unwrap())
        .collect();
    // The WAL's growth is an append: current.wal is not carried whole, and
    // the tail holds only what was appended.
    let tar = Command::new("tar")
        .args(["--zstd", "-tvf", p(&a1)])
        .output()
        .unwrap();
    assert!(tar.status.success());
    let members = String::from_utf8_lossy(&tar.stdout).to_string();
    assert!(!members.contains(" wal/current.wal"), "{members}");
    let after = fs::metadata(data.join("wal/current.wal")).unwrap().len();
    let tail_line = members
        .lines()
        .find(|l| l.ends_with("x-sydra-incremental/wal-tails/current.wal.tail"))
        .unwrap_or_else(|| panic!("no tail: {members}"));
    assert!(
        tail_line.contains(&format!(" {} ", after - before)),
        "{tail_line}"
    );
    // What changed, and nothing else: the new segments (and their hour
    // directory), MANIFEST, tags.json, and the appended WAL file.
    assert!(carried.contains(&"MANIFEST") && carried.contains(&"tags.json"));
    assert!(carried.contains(&"wal/current.wal"), "{l}");
    assert!(
        carried.iter().all(|c| [
            "MANIFEST",
            "tags.json",
            "wal",
            "wal/current.wal",
            "segments"
        ]
        .contains(c)
            || c.starts_with("segments/")),
        "{carried:?}"
    );
    let segs = carried.iter().filter(|c| c.ends_with(".seg")).count();
    assert_eq!(segs, 4, "one flush of 4 series: {carried:?}");
}

#[test]
fn stock_tar_never_writes_a_wal_tail_under_the_wal_s_name() {
    let t = tempfile::tempdir().unwrap();
    let (data, mut server) = live(t.path());
    server.run(60).unwrap();
    let a0 = t.path().join("a0.tar.zst");
    create(&data, &a0);
    server.run(3600).unwrap();
    let a1 = t.path().join("a1.tar.zst");
    expect_code(&create_on(&data, &a1, &a0), 0);
    // Extracted over a restore of the base, stock tar leaves every WAL
    // file of the base as it was (or whole): never a tail in its place.
    let r = t.path().join("r");
    restored(&a0, &r);
    let x = Command::new("tar")
        .args(["--zstd", "-xf", p(&a1), "-C", p(&r)])
        .output()
        .unwrap();
    assert!(x.status.success(), "{}", String::from_utf8_lossy(&x.stderr));
    for e in fs::read_dir(r.join("wal")).unwrap() {
        let e = e.unwrap();
        let got = fs::read(e.path()).unwrap();
        let name = e.file_name();
        let live = fs::read(data.join("wal").join(&name)).unwrap_or_default();
        assert!(
            live.starts_with(&got),
            "{name:?}: stock tar wrote something that is not a prefix of the WAL file"
        );
        assert_eq!(got.len() % 33, 0, "{name:?}: not whole records");
    }
    // The tails are under their own directory, named *.tail.
    let tails = fs::read_dir(r.join("x-sydra-incremental/wal-tails")).unwrap();
    for e in tails {
        let n = e.unwrap().file_name().into_string().unwrap();
        assert!(n.ends_with(".wal.tail"), "{n}");
    }
}

#[test]
fn a_wal_rewritten_in_the_middle_is_archived_whole_with_a_warning() {
    let t = tempfile::tempdir().unwrap();
    let (data, mut server) = live(t.path());
    server.run(60).unwrap();
    let a0 = t.path().join("a0.tar.zst");
    create(&data, &a0);
    // A rotated WAL file whose 3rd record is replaced by another valid one.
    let mut rotated: Vec<PathBuf> = fs::read_dir(data.join("wal"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| !p.ends_with("current.wal"))
        .collect();
    rotated.sort();
    let victim = &rotated[0];
    let mut b = fs::read(victim).unwrap();
    b[66..99].copy_from_slice(&sydra_archive::sydradb::wal_record(7, 7, 7.0));
    fs::write(victim, &b).unwrap();
    // Written later than the base was taken (a rotated WAL file with the
    // base's size, mode and mtime is taken as unchanged, as a segment is).
    let later = fs::metadata(victim).unwrap().modified().unwrap() + Duration::from_secs(3600);
    fs::File::options()
        .write(true)
        .open(victim)
        .unwrap()
        .set_modified(later)
        .unwrap();
    // current.wal is always checked: one record replaced, and more
    // appended (it grew, so it is not a rewrite a size would show).
    let cw = data.join("wal/current.wal");
    let mut c = fs::read(&cw).unwrap();
    assert!(c.len() >= 66, "the base's current.wal holds records");
    c[33..66].copy_from_slice(&sydra_archive::sydradb::wal_record(8, 8, 8.0));
    c.extend(sydra_archive::sydradb::wal_record(9, 9, 9.0));
    fs::write(&cw, &c).unwrap();
    let a1 = t.path().join("a1.tar.zst");
    let o = create_on(&data, &a1, &a0);
    expect_code(&o, 0);
    assert!(
        stderr(&o).contains("wal/current.wal: does not start with the bytes the base archived"),
        "{}",
        stderr(&o)
    );
    let name = format!("wal/{}", victim.file_name().unwrap().to_str().unwrap());
    assert!(
        stderr(&o).contains(&format!(
            "{name}: does not start with the bytes the base archived, and no WAL file here does (rewritten in the middle, truncated, or rotated and removed); archived whole"
        )),
        "{}",
        stderr(&o)
    );
    let l = stdout(&run(&["list", p(&a1)]));
    assert!(l.contains(&format!("+ {name}")), "{l}");
    let f = t.path().join("f.tar.zst");
    create(&data, &f);
    assert_eq!(
        restored(&a1, &t.path().join("ri")),
        restored(&f, &t.path().join("rf"))
    );
}

#[test]
fn incremental_into_a_directory_starts_a_full_at_max_chain_and_prune_keeps_chains() {
    let t = tempfile::tempdir().unwrap();
    let (data, mut server) = live(t.path());
    let shelf = t.path().join("shelf");
    fs::create_dir(&shelf).unwrap();
    let shelf_arg = format!("{}/", p(&shelf));
    // Two chains of 3 (a full, two incrementals), a day apart.
    let day0 = 1_793_577_600u64;
    let mut kinds = Vec::new();
    for k in 0..6u64 {
        server.run(600).unwrap();
        let when = day0 + k * 43_200;
        let o = bin()
            .args(["create", p(&data), "-o", &shelf_arg, "--incremental"])
            .args(["--max-chain", "3", "--json"])
            .env("SOURCE_DATE_EPOCH", when.to_string())
            .output()
            .unwrap();
        expect_code(&o, 0);
        let j = json(&o);
        kinds.push(j["kind"].as_str().unwrap().to_string());
        let name = j["archive"].as_str().unwrap().to_string();
        fs::File::options()
            .write(true)
            .open(&name)
            .unwrap()
            .set_modified(std::time::UNIX_EPOCH + Duration::from_secs(when))
            .unwrap();
    }
    assert_eq!(
        kinds,
        [
            "full",
            "incremental",
            "incremental",
            "full",
            "incremental",
            "incremental"
        ]
    );
    let ls = json(&run(&["ls", p(&shelf), "--json"]));
    let archives = ls["archives"].as_array().unwrap();
    assert_eq!(archives.len(), 6);
    assert!(archives[0]["base"]["location"].is_string(), "{ls}");
    assert!(archives[2]["base"].is_null(), "{ls}");

    // Whatever the rule, every base of a kept archive is kept.
    let base_of: std::collections::HashMap<String, String> = archives
        .iter()
        .filter(|a| a["base"].is_object())
        .map(|a| {
            (
                a["key"].as_str().unwrap().to_string(),
                a["base"]["location"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    for rule in [
        "--keep-last",
        "--keep-hourly",
        "--keep-daily",
        "--keep-weekly",
        "--keep-monthly",
    ] {
        let o = run(&["prune", p(&shelf), rule, "1", "--json"]);
        expect_code(&o, 0);
        let j = json(&o);
        let kept: Vec<String> = j["kept"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["key"].as_str().unwrap().to_string())
            .collect();
        for k in &kept {
            if let Some(b) = base_of.get(k) {
                assert!(
                    kept.contains(b),
                    "{rule}: keeps {k} but not its base {b}: {j}"
                );
            }
        }
    }
    // Keep only the newest: its whole chain stays, and says why.
    let o = run(&["prune", p(&shelf), "--keep-last", "1", "--json"]);
    expect_code(&o, 0);
    let j = json(&o);
    let kept: Vec<&str> = j["kept"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["key"].as_str().unwrap())
        .collect();
    assert_eq!(kept.len(), 3, "{j}");
    let text = format!("{j}");
    assert!(text.contains("base of"), "{text}");
    // Daily rules over the older chain: its newest is kept with its bases.
    let o = run(&["prune", p(&shelf), "--keep-daily", "2", "--yes"]);
    expect_code(&o, 0);
    let left = fs::read_dir(&shelf).unwrap().count();
    let mut restored_any = false;
    for a in archives {
        let path = shelf.join(a["key"].as_str().unwrap());
        if path.exists() {
            let o = run(&["verify", "--chain", p(&path)]);
            expect_code(&o, 0);
            restored_any = true;
        }
    }
    assert!(restored_any && left >= 3, "{left}");
    let newest = shelf.join(archives[0]["key"].as_str().unwrap());
    let f = t.path().join("f.tar.zst");
    create(&data, &f);
    assert_eq!(
        restored(&newest, &t.path().join("ri")),
        restored(&f, &t.path().join("rf"))
    );
}

#[test]
fn a_directory_replaced_by_a_file_and_back_restores_as_a_full_archive_would() {
    let t = tempfile::tempdir().unwrap();
    let data = tiny_data(t.path());
    fs::write(data.join("segments/7200"), b"a file where an hour belongs").unwrap();
    let a0 = t.path().join("a0.tar.zst");
    create(&data, &a0);
    // The hour directory becomes a file, the file a directory.
    fs::remove_dir_all(data.join("segments/3600")).unwrap();
    fs::write(data.join("segments/3600"), b"now a file").unwrap();
    fs::remove_file(data.join("segments/7200")).unwrap();
    fs::create_dir(data.join("segments/7200")).unwrap();
    fs::write(
        data.join("segments/7200/1-7200-7200-2.seg"),
        sydra_archive::sydradb::encode_segment(1, 7200, &[(7200, 1.0)]),
    )
    .unwrap();
    let a1 = t.path().join("a1.tar.zst");
    expect_code(&create_on(&data, &a1, &a0), 0);
    let f = t.path().join("f.tar.zst");
    create(&data, &f);
    assert_eq!(
        restored(&a1, &t.path().join("ri")),
        restored(&f, &t.path().join("rf"))
    );
    let li = stdout(&run(&["list", "--sha256", p(&a1)]));
    assert_eq!(li, stdout(&run(&["list", "--sha256", p(&f)])));
}

#[test]
fn odd_data_dirs_restore_as_full_archives_would() {
    let t = tempfile::tempdir().unwrap();
    let data = tiny_data(t.path());
    // Files that are not SydraDB's, WAL files in a directory of wal/.
    fs::write(data.join("wal/checkpoint"), b"checkpoint=0001\n").unwrap();
    fs::write(data.join("segments/3600/notes.txt"), b"note one\n").unwrap();
    fs::create_dir_all(data.join("wal/a")).unwrap();
    fs::create_dir_all(data.join("wal/b")).unwrap();
    fs::write(data.join("wal/a/1.wal"), b"").unwrap();
    fs::write(data.join("wal/b/1.wal"), b"").unwrap();
    let a0 = t.path().join("a0.tar.zst");
    create(&data, &a0);
    // Same sizes and times, other content; the WAL files in directories grow.
    let same_time = |p: &Path, content: &[u8]| {
        let m = fs::metadata(p).unwrap().modified().unwrap();
        fs::write(p, content).unwrap();
        fs::File::options()
            .write(true)
            .open(p)
            .unwrap()
            .set_modified(m)
            .unwrap();
    };
    same_time(&data.join("wal/checkpoint"), b"checkpoint=0002\n");
    same_time(&data.join("segments/3600/notes.txt"), b"note two\n");
    let rec = sydra_archive::sydradb::wal_record(1, 1, 1.0);
    fs::write(data.join("wal/a/1.wal"), rec).unwrap();
    fs::write(data.join("wal/b/1.wal"), rec).unwrap();
    let a1 = t.path().join("a1.tar.zst");
    expect_code(&create_on(&data, &a1, &a0), 0);
    expect_code(&run(&["verify", p(&a1)]), 0);
    let f = t.path().join("f.tar.zst");
    create(&data, &f);
    assert_eq!(
        restored(&a1, &t.path().join("ri")),
        restored(&f, &t.path().join("rf"))
    );
    // A base named through a symlink is recorded, and pruned, as the file.
    let shelf = t.path().join("shelf");
    fs::create_dir(&shelf).unwrap();
    fs::copy(&a0, shelf.join("full-1.tar.zst")).unwrap();
    fs::File::options()
        .write(true)
        .open(shelf.join("full-1.tar.zst"))
        .unwrap()
        .set_modified(std::time::UNIX_EPOCH + Duration::from_secs(1_700_000_000))
        .unwrap();
    std::os::unix::fs::symlink("full-1.tar.zst", shelf.join("latest.tar.zst")).unwrap();
    let inc = shelf.join("inc-2.tar.zst");
    expect_code(
        &run(&[
            "create",
            p(&data),
            "-o",
            p(&inc),
            "--base",
            p(&shelf.join("latest.tar.zst")),
            "-q",
        ]),
        0,
    );
    let o = run(&["prune", p(&shelf), "--keep-last", "1", "--yes"]);
    expect_code(&o, 0);
    assert!(shelf.join("full-1.tar.zst").exists(), "{}", stdout(&o));
    expect_code(
        &run(&["restore", p(&inc), p(&t.path().join("rs")), "-q"]),
        0,
    );
    // A kept incremental whose base is elsewhere is said.
    let other = t.path().join("other");
    fs::create_dir(&other).unwrap();
    fs::rename(&inc, other.join("inc-2.tar.zst")).unwrap();
    let o = run(&["prune", p(&other), "--keep-last", "1"]);
    expect_code(&o, 0);
    assert!(
        stderr(&o).contains("is not among the archives here"),
        "{}",
        stderr(&o)
    );
}

/// A WAL file an incremental never appends to (below `wal/`, or named too
/// long for a tail) is left out when it is the base's file, byte for
/// byte, and carried whole when it changed (it was carried in every
/// incremental, changed or not).
#[test]
fn wal_files_never_appended_to_are_carried_only_when_they_change() {
    let t = tempfile::tempdir().unwrap();
    let data = tiny_data(t.path());
    fs::create_dir_all(data.join("wal/sub")).unwrap();
    fs::write(data.join("wal/sub/x.wal"), b"nested wal bytes").unwrap();
    let long = format!("wal/{}.wal", "7".repeat(250));
    fs::write(data.join(&long), b"long-named wal bytes").unwrap();
    let a0 = t.path().join("a0.tar.zst");
    create(&data, &a0);
    let carried = |a: &Path| -> Vec<String> {
        let o = run(&["list", p(a), "--json"]);
        expect_code(&o, 0);
        json(&o)["entries"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["carried"] == true && e["type"] == "file")
            .map(|e| e["path"].as_str().unwrap().to_string())
            .collect()
    };
    let a1 = t.path().join("a1.tar.zst");
    expect_code(&create_on(&data, &a1, &a0), 0);
    assert_eq!(carried(&a1), Vec::<String>::new(), "nothing changed");
    fs::write(data.join("wal/sub/x.wal"), b"nested wal bytes, more").unwrap();
    let a2 = t.path().join("a2.tar.zst");
    expect_code(&create_on(&data, &a2, &a1), 0);
    assert_eq!(carried(&a2), ["wal/sub/x.wal"]);
    assert_eq!(restored(&a2, &t.path().join("r")), tree_digest(&data));
}
