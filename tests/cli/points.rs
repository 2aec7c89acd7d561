//! Points in time: `ls --points` and `restore`, `list`, `extract` of
//! `DIR/ --at TIME` — the newest point at or before TIME, from the
//! archive of that moment with the shortest chain; before the first
//! point, a refusal naming the earliest.

use std::fs;
use std::path::{Path, PathBuf};

use crate::support::*;

/// 2026-12-05T00:00:00Z.
const T0: u64 = 1_796_428_800;

/// A shelf of four archives of one chain, an hour apart by their moment
/// (T0, T0+1h, ...), and the data dir's digest at each.
fn shelf(dir: &Path) -> (PathBuf, PathBuf, Vec<String>) {
    let data = small_data(dir);
    let mut server = small_server(&data);
    let shelf = dir.join("shelf");
    fs::create_dir(&shelf).unwrap();
    let mut digests = Vec::new();
    for k in 0..4u64 {
        if k > 0 {
            server.run(900).unwrap();
        }
        let o = bin()
            .args(["create", p(&data), "-o", &format!("{}/", shelf.display())])
            .args(["--incremental", "-q"])
            .env("SOURCE_DATE_EPOCH", (T0 + k * 3600).to_string())
            .output()
            .unwrap();
        expect_code(&o, 0);
        digests.push(tree_digest(&data));
    }
    (data, shelf, digests)
}

fn dir_arg(shelf: &Path) -> String {
    format!("{}/", shelf.display())
}

#[test]
fn points_are_listed_and_restored_at_a_time() {
    let t = tempfile::tempdir().unwrap();
    let (_, shelf, digests) = shelf(t.path());
    // A merged full of the newest moment: the same point, one archive.
    let newest = shelf.join("sydradb-20261205T030000Z.tar.zst");
    let o = run(&["merge", p(&newest), "-o", &dir_arg(&shelf), "--json"]);
    expect_code(&o, 0);
    let merged = json(&o)["archive"].as_str().unwrap().to_string();
    assert!(
        merged.ends_with("sydradb-20261205T030000Z-2.tar.zst"),
        "{merged}"
    );

    let o = run(&["ls", p(&shelf), "--points", "--json"]);
    expect_code(&o, 0);
    let j = json(&o);
    let points = j["points"].as_array().unwrap();
    let times: Vec<&str> = points.iter().map(|p| p["time"].as_str().unwrap()).collect();
    assert_eq!(
        times,
        [
            "2026-12-05T03:00:00Z",
            "2026-12-05T02:00:00Z",
            "2026-12-05T01:00:00Z",
            "2026-12-05T00:00:00Z"
        ]
    );
    assert_eq!(points[0]["archive"].as_str().unwrap(), merged);
    assert_eq!(points[0]["archives"].as_array().unwrap().len(), 1, "{j}");
    assert_eq!(points[0]["also"].as_array().unwrap().len(), 1, "{j}");
    assert_eq!(points[1]["archives"].as_array().unwrap().len(), 3, "{j}");
    assert!(points[0]["age_s"].as_f64().unwrap() > 0.0);
    let o = run(&["ls", p(&shelf), "--points"]);
    expect_code(&o, 0);
    assert!(
        stdout(&o).starts_with("2026-12-05T03:00:00Z"),
        "{}",
        stdout(&o)
    );

    // Between points: the earlier one; at a point: that one; after the
    // newest (back from now): the newest.
    for (at, want) in [
        ("2026-12-05T01:30:00Z", 1),
        ("2026-12-05T02:00:00Z", 2),
        ("2026-12-05T03:00:00.000+00:00", 3),
        ("2026-12-05T00:59:59Z", 0),
        ("-1m", 3),
    ] {
        let r = t.path().join(format!("r-{at}"));
        let o = run(&["restore", &dir_arg(&shelf), p(&r), "--at", at]);
        expect_code(&o, 0);
        assert_eq!(tree_digest(&r), digests[want], "--at {at}");
    }
    // Before the first point: refused, the earliest named.
    let r = t.path().join("none");
    let o = run(&[
        "restore",
        &dir_arg(&shelf),
        p(&r),
        "--at",
        "2026-12-04T23:59:59Z",
    ]);
    expect_code(&o, 2);
    assert!(
        stderr(&o).contains("no point in")
            && stderr(&o).contains("the earliest is 2026-12-05T00:00:00Z"),
        "{}",
        stderr(&o)
    );
    assert!(!r.exists());
    // Not a time; not a directory.
    let o = run(&["restore", &dir_arg(&shelf), p(&r), "--at", "yesterday"]);
    expect_code(&o, 2);
    assert!(stderr(&o).contains("is not a time"), "{}", stderr(&o));
    let o = run(&["restore", p(&newest), p(&r), "--at", "-1m"]);
    expect_code(&o, 2);
    assert!(
        stderr(&o).contains("ARCHIVE must end in /"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn list_and_extract_take_a_point_too() {
    let t = tempfile::tempdir().unwrap();
    let (_, shelf, _) = shelf(t.path());
    let size_at = |at: &str| {
        let o = run(&["list", &dir_arg(&shelf), "--at", at, "--json"]);
        expect_code(&o, 0);
        let j = json(&o);
        j["entries"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["path"] == "wal/current.wal")
            .map(|e| e["size"].as_u64().unwrap())
    };
    let (s1, s3) = (
        size_at("2026-12-05T01:00:00Z"),
        size_at("2026-12-05T03:00:00Z"),
    );
    assert!(s1.is_some() && s3.is_some() && s1 != s3, "{s1:?} {s3:?}");
    let got = t.path().join("wal-at-1");
    let o = run(&[
        "extract",
        &dir_arg(&shelf),
        "wal/current.wal",
        "--at",
        "2026-12-05T01:00:00Z",
        "-o",
        p(&got),
    ]);
    expect_code(&o, 0);
    assert_eq!(Some(fs::metadata(&got).unwrap().len()), s1);
}

#[test]
fn a_point_named_by_its_shown_time_is_that_point() {
    let t = tempfile::tempdir().unwrap();
    let data = tiny_data(t.path());
    let shelf = t.path().join("shelf");
    fs::create_dir(&shelf).unwrap();
    // Two points within one second: their times differ in milliseconds.
    let mut digests = Vec::new();
    for k in 0..2 {
        fs::write(data.join("tags.json"), format!("{{\"k\":{k}}}")).unwrap();
        expect_code(
            &run(&[
                "create",
                p(&data),
                "-o",
                &dir_arg(&shelf),
                "--incremental",
                "-q",
            ]),
            0,
        );
        digests.push(tree_digest(&data));
    }
    let o = run(&["ls", p(&shelf), "--points", "--json"]);
    let j = json(&o);
    let points = j["points"].as_array().unwrap();
    assert_eq!(points.len(), 2, "{j}");
    for (i, want) in [(1, &digests[0]), (0, &digests[1])] {
        let at = points[i]["time"].as_str().unwrap();
        let r = t.path().join(format!("r{i}"));
        expect_code(
            &run(&["restore", &dir_arg(&shelf), p(&r), "--at", at, "-q"]),
            0,
        );
        assert_eq!(&tree_digest(&r), want, "--at {at}");
    }
}

#[test]
fn archives_of_one_second_restore_the_newest_state() {
    let t = tempfile::tempdir().unwrap();
    let data = tiny_data(t.path());
    let dir = t.path().join("same");
    fs::create_dir(&dir).unwrap();
    let d = format!("{}/", dir.display());
    for i in 1..=4 {
        fs::write(data.join("tags.json"), format!("{{\"s=\":[{i}]}}")).unwrap();
        let o = bin()
            .args(["create", p(&data), "-o", &d, "--incremental", "-q"])
            .env("SOURCE_DATE_EPOCH", "1796528000")
            .output()
            .unwrap();
        expect_code(&o, 0);
    }
    let j = json(&run(&["ls", p(&dir), "--points", "--json"]));
    let point = &j["points"][0];
    assert!(
        point["archive"].as_str().unwrap().ends_with("Z-4.tar.zst"),
        "{j}"
    );
    let r = t.path().join("r");
    expect_code(&run(&["restore", &d, p(&r), "--at", "-0s", "-q"]), 0);
    assert_eq!(fs::read(r.join("tags.json")).unwrap(), b"{\"s=\":[4]}");
}
