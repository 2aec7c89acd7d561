//! `merge` from and to object storage: a chain under a prefix merged
//! into a full archive and onto its oldest incremental, each written
//! under the prefix and restored from there.

use std::time::Duration;

use crate::support::*;

use super::server::*;

#[test]
fn a_chain_under_a_prefix_merges_into_objects() {
    let Some(s3) = Server::start() else { return };
    let t = tempfile::tempdir().unwrap();
    let data = small_data(t.path());
    let mut server = small_server(&data);
    let mut keys: Vec<String> = Vec::new();
    for k in 0..4u64 {
        if k > 0 {
            server.run(900).unwrap();
        }
        let key = format!("db/c{k}.tar.zst");
        let mut args = vec![
            "create".to_string(),
            p(&data).into(),
            "-o".into(),
            url(&key),
            "-q".into(),
        ];
        if let Some(b) = keys.last() {
            args.extend(["--base".into(), url(b)]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        expect_code(&s3.run(&args), 0);
        keys.push(key);
        std::thread::sleep(Duration::from_millis(1100));
    }
    let want = tree_digest(&data);
    // A full archive, named under the prefix by the newest's moment.
    let o = s3.run(&["merge", &url(&keys[3]), "-o", &url("db/"), "--json"]);
    expect_code(&o, 0);
    let j = json(&o);
    assert_eq!(j["kind"], "full");
    let merged = j["archive"].as_str().unwrap().to_string();
    assert!(merged.starts_with(&url("db/sydradb-")), "{merged}");
    let r = t.path().join("r");
    expect_code(&s3.run(&["restore", &merged, p(&r), "-q"]), 0);
    assert_eq!(tree_digest(&r), want);
    // Its point is the newest archive's, restored from it alone.
    let o = s3.run(&["ls", &url("db/"), "--points", "--json"]);
    expect_code(&o, 0);
    let j = json(&o);
    assert_eq!(j["points"].as_array().unwrap().len(), 4, "{j}");
    assert_eq!(j["points"][0]["archive"].as_str().unwrap(), merged, "{j}");
    let r1 = t.path().join("r1");
    expect_code(
        &s3.run(&["restore", &url("db/"), p(&r1), "-q", "--at", "-0s"]),
        0,
    );
    assert_eq!(tree_digest(&r1), want);
    // One incremental on the first archive, beside it.
    let onto = url("db/c1-c3.tar.zst");
    let o = s3.run(&[
        "merge",
        &url(&keys[3]),
        "--onto",
        &url(&keys[0]),
        "-o",
        &onto,
        "--json",
    ]);
    expect_code(&o, 0);
    assert_eq!(json(&o)["base"]["location"], "c0.tar.zst");
    let r2 = t.path().join("r2");
    expect_code(&s3.run(&["restore", &onto, p(&r2), "-q"]), 0);
    assert_eq!(tree_digest(&r2), want);
    // No lock entries are left behind.
    assert!(
        !s3.all_files()
            .iter()
            .any(|f| f.contains(".sydra-archive.lock/create-")),
        "{:?}",
        s3.all_files()
    );
}
