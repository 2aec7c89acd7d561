//! Archives under a prefix: `ls` and `prune` touch only archives, and
//! incremental chains stored, restored, listed and pruned in object
//! storage.

use std::time::Duration;

use crate::support::*;

use super::server::*;

#[test]
fn ls_and_prune_touch_only_archives() {
    let Some(s3) = Server::start() else { return };
    let t = tempfile::tempdir().unwrap();
    let data = tiny_data(t.path());
    let names = [
        "db/2026-11-20.tar.zst",
        "db/2026-11-21.tar.zst",
        "db/2026-11-22.tar.zst",
    ];
    for n in names {
        expect_code(&s3.run(&["create", p(&data), "-o", &url(n), "-q"]), 0);
        // Distinct upload times (the store keeps whole seconds).
        std::thread::sleep(Duration::from_millis(1100));
    }
    // Objects that are not archives: a .tar.zst that is not ours, a
    // different name, and an archive in a deeper "directory".
    s3.put(
        "db/foreign.tar.zst",
        &[b"not an archive at all. ".as_slice(); 8].concat(),
    );
    s3.put("db/short.tar.zst", b"short");
    s3.put("db/notes.txt", b"keep me");
    expect_code(
        &s3.run(&["create", p(&data), "-o", &url("db/deeper/x.tar.zst"), "-q"]),
        0,
    );

    let o = s3.run(&["ls", "--json", &url("db/")]);
    expect_code(&o, 0);
    let j = json(&o);
    let listed: Vec<&str> = j["archives"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["key"].as_str().unwrap())
        .collect();
    assert_eq!(
        listed,
        [
            "db/2026-11-22.tar.zst",
            "db/2026-11-21.tar.zst",
            "db/2026-11-20.tar.zst"
        ]
    );
    assert_eq!(j["others"][0]["url"], url("db/foreign.tar.zst"));
    assert_eq!(j["others"][1]["url"], url("db/short.tar.zst"));
    assert!(j["archives"][0]["sha256"].as_str().unwrap().len() == 64);
    let o = s3.run(&["ls", &url("db")]);
    expect_code(&o, 0);
    assert_eq!(stdout(&o).lines().count(), 3);
    assert!(
        stderr(&o).contains("foreign.tar.zst is not a sydra-archive"),
        "{}",
        stderr(&o)
    );

    // A dry run deletes nothing.
    let o = s3.run(&["prune", &url("db/"), "--keep-last", "1"]);
    expect_code(&o, 0);
    assert!(stdout(&o).contains("would delete"), "{}", stdout(&o));
    assert_eq!(
        stdout(&o).lines().filter(|l| l.starts_with("keep")).count(),
        1
    );
    assert!(stderr(&o).contains("dry run"), "{}", stderr(&o));
    for n in names {
        assert!(s3.object_file(n).exists(), "{n}");
    }
    // --keep-last 0, an empty policy, is refused.
    let o = s3.run(&["prune", &url("db/"), "--keep-last", "0", "--yes"]);
    expect_code(&o, 2);
    assert!(stderr(&o).contains("policy is empty"), "{}", stderr(&o));

    let o = s3.run(&["prune", &url("db/"), "--keep-last", "1", "--yes", "--json"]);
    expect_code(&o, 0);
    let j = json(&o);
    assert_eq!(j["dry_run"], false);
    assert_eq!(j["deleted"].as_array().unwrap().len(), 2);
    assert_eq!(j["kept"][0]["reasons"], serde_json::json!(["last"]));
    assert!(s3.object_file(names[2]).exists());
    assert!(!s3.object_file(names[0]).exists());
    assert!(!s3.object_file(names[1]).exists());
    for other in [
        "db/foreign.tar.zst",
        "db/short.tar.zst",
        "db/notes.txt",
        "db/deeper/x.tar.zst",
    ] {
        assert!(s3.object_file(other).exists(), "{other} was touched");
    }
}

#[test]
fn incremental_chains_in_object_storage() {
    let Some(s3) = Server::start() else { return };
    let t = tempfile::tempdir().unwrap();
    let data = small_data(t.path());
    let mut server = small_server(&data);
    // Two chains under one prefix, each named by its time; the second
    // full starts at --max-chain 3.
    let mut kinds = Vec::new();
    for k in 0..5u64 {
        server.run(900).unwrap();
        let o = s3
            .cmd()
            .args(["create", p(&data), "-o", &url("db/"), "--incremental"])
            .args(["--max-chain", "3", "--json"])
            .env("SOURCE_DATE_EPOCH", (1_793_577_600 + k * 3600).to_string())
            .output()
            .unwrap();
        expect_code(&o, 0);
        kinds.push(json(&o)["kind"].as_str().unwrap().to_string());
        // Distinct upload times (the store keeps whole seconds).
        std::thread::sleep(Duration::from_millis(1100));
    }
    assert_eq!(
        kinds,
        ["full", "incremental", "incremental", "full", "incremental"]
    );
    let ls = json(&s3.run(&["ls", "--json", &url("db/")]));
    let keys: Vec<String> = ls["archives"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["key"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(keys.len(), 5);
    assert_eq!(
        ls["archives"][0]["base"]["location"].as_str().unwrap(),
        keys[1].rsplit('/').next().unwrap(),
        "{ls}"
    );
    let newest = url(&keys[0]);
    // Restore, list and extract read the chain from the store; the tree
    // is the data dir's.
    let r = t.path().join("r");
    expect_code(&s3.run(&["restore", &newest, p(&r), "-q"]), 0);
    let f = t.path().join("f.tar.zst");
    create(&data, &f);
    let rf = t.path().join("rf");
    expect_code(&run(&["restore", p(&f), p(&rf), "-q"]), 0);
    assert_eq!(tree_digest(&r), tree_digest(&rf));
    expect_code(&s3.run(&["verify", "--chain", &newest]), 0);
    let x = t.path().join("x");
    let o = s3.run(&["extract", &newest, "wal", "-C", p(&x), "--json"]);
    expect_code(&o, 0);
    for e in std::fs::read_dir(data.join("wal")).unwrap() {
        let e = e.unwrap();
        assert_eq!(
            std::fs::read(e.path()).unwrap(),
            std::fs::read(x.join("wal").join(e.file_name())).unwrap()
        );
    }

    // Keeping the newest keeps its chain; with --yes the older chain goes.
    let o = s3.run(&["prune", &url("db/"), "--keep-last", "1", "--yes", "--json"]);
    expect_code(&o, 0);
    let j = json(&o);
    assert_eq!(j["kept"].as_array().unwrap().len(), 2, "{j}");
    assert_eq!(j["deleted"].as_array().unwrap().len(), 3, "{j}");
    assert!(format!("{j}").contains("base of"), "{j}");
    assert!(s3.object_file(&keys[1]).exists());
    let r2 = t.path().join("r2");
    expect_code(&s3.run(&["restore", &newest, p(&r2), "-q"]), 0);
    assert_eq!(tree_digest(&r2), tree_digest(&rf));

    // A base that is gone is named, and nothing is restored.
    std::fs::remove_file(s3.object_file(&keys[1])).unwrap();
    let r3 = t.path().join("r3");
    let o = s3.run(&["restore", &newest, p(&r3)]);
    expect_code(&o, 2);
    assert!(
        stderr(&o).contains("is missing; give it with --base"),
        "{}",
        stderr(&o)
    );
    assert!(!r3.exists());
}
