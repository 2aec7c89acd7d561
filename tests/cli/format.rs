//! The v1 format, byte by byte, as an independent reader sees it.

use std::fs;

use crate::support::*;

#[test]
fn frames_head_sums_and_foot_are_exact() {
    let t = tempfile::tempdir().unwrap();
    let data = small_data(t.path());
    fs::write(data.join("0123456789abcdef"), b"snapshot temp leftover").unwrap();
    let out = t.path().join("a.tar.zst");
    create(&data, &out);
    let a = fs::read(&out).unwrap();
    let (head, dat, sums, foot) = split(&a);

    // HEAD
    let head: serde_json::Value = serde_json::from_slice(&head).unwrap();
    assert_eq!(head["format"], "sydra-archive");
    assert_eq!(head["version"], 1);
    assert_eq!(head["zstd_level"], 3);
    assert_eq!(head["source"], p(&data));
    assert!(head["tool"].as_str().unwrap().starts_with("sydra-archive "));
    assert!(head["created_unix_ms"].as_u64().unwrap() > 1_700_000_000_000);
    let entries = head["entries"].as_array().unwrap();
    // Same entries as a name-ordered walk of the layout, dirs before contents.
    let mut want = Vec::new();
    fn walk(root: &std::path::Path, rel: &str, want: &mut Vec<(String, bool)>) {
        let mut names: Vec<_> = fs::read_dir(root.join(rel))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        for n in names {
            let r = if rel.is_empty() {
                n.clone()
            } else {
                format!("{rel}/{n}")
            };
            if rel.is_empty() && !["MANIFEST", "tags.json", "wal", "segments"].contains(&n.as_str())
            {
                continue;
            }
            let is_dir = root.join(&r).is_dir();
            want.push((r.clone(), is_dir));
            if is_dir {
                walk(root, &r, want);
            }
        }
    }
    walk(&data, "", &mut want);
    let got: Vec<(String, bool)> = entries
        .iter()
        .map(|e| (e["path"].as_str().unwrap().to_string(), e["type"] == "dir"))
        .collect();
    assert_eq!(got, want);
    let mut total = 0;
    for e in entries {
        let path = data.join(e["path"].as_str().unwrap());
        let m = fs::metadata(&path).unwrap();
        if e["type"] == "file" {
            assert_eq!(e["size"].as_u64().unwrap(), m.len());
            total += m.len();
        } else {
            assert_eq!(e["size"], 0);
        }
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        assert_eq!(
            e["mode"].as_u64().unwrap(),
            u64::from(m.permissions().mode() & 0o777)
        );
        assert_eq!(e["mtime"].as_i64().unwrap(), m.mtime());
    }
    assert_eq!(head["total_bytes"].as_u64().unwrap(), total);
    assert_eq!(head["skipped"], serde_json::json!(["0123456789abcdef"]));

    // DATA: zstd frames with checksums whose output is one tar stream
    // holding exactly the HEAD entries, in order.
    assert_eq!(&dat[..4], &0xFD2F_B528u32.to_le_bytes());
    assert_ne!(dat[4] & 0b100, 0, "content checksum flag set");
    let tar_bytes = zstd::decode_all(&dat[..]).unwrap();
    let mut ar = tar::Archive::new(&tar_bytes[..]);
    let members: Vec<String> = ar
        .entries()
        .unwrap()
        .map(|e| {
            e.unwrap()
                .path()
                .unwrap()
                .to_str()
                .unwrap()
                .trim_end_matches('/')
                .to_string()
        })
        .collect();
    assert_eq!(members, got.iter().map(|g| g.0.clone()).collect::<Vec<_>>());
    assert!(tar_bytes.ends_with(&[0u8; 1024]));

    // SUMS: one object per file, in archive order, with true digests.
    let sums: serde_json::Value = serde_json::from_slice(&sums).unwrap();
    let files = sums["files"].as_array().unwrap();
    let file_entries: Vec<_> = entries.iter().filter(|e| e["type"] == "file").collect();
    assert_eq!(files.len(), file_entries.len());
    for (s, e) in files.iter().zip(file_entries) {
        assert_eq!(s["path"], e["path"]);
        assert_eq!(s["size"], e["size"]);
        let content = fs::read(data.join(s["path"].as_str().unwrap())).unwrap();
        assert_eq!(s["sha256"].as_str().unwrap(), hex(&sha256(&content)));
    }

    // FOOT: 64 bytes, version 1, flags 0, body_len, SHA-256 of the body.
    assert_eq!(foot.len(), 64);
    assert_eq!(&foot[..4], &SKIP_MAGIC.to_le_bytes());
    assert_eq!(&foot[4..8], &56u32.to_le_bytes());
    assert_eq!(&foot[8..16], b"SYDRFOOT");
    assert_eq!(&foot[16..20], &1u32.to_le_bytes());
    assert_eq!(&foot[20..24], &0u32.to_le_bytes());
    let body_len = a.len() - 64;
    assert_eq!(&foot[24..32], &(body_len as u64).to_le_bytes());
    assert_eq!(&foot[32..64], &sha256(&a[..body_len]));
}

#[test]
fn create_json_reports_what_sha256sum_prints() {
    let t = tempfile::tempdir().unwrap();
    let data = small_data(t.path());
    let out = t.path().join("a.tar.zst");
    let o = run(&["create", p(&data), "-o", p(&out), "--json"]);
    expect_code(&o, 0);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let a = fs::read(&out).unwrap();
    assert_eq!(v["archive"], p(&out));
    assert_eq!(v["bytes"].as_u64().unwrap(), a.len() as u64);
    assert_eq!(v["sha256"].as_str().unwrap(), hex(&sha256(&a)));
    let sha = std::process::Command::new("sha256sum")
        .arg(&out)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&sha.stdout).starts_with(v["sha256"].as_str().unwrap()));
    let (n_files, _) = count_tree(&data);
    assert_eq!(v["files"].as_u64().unwrap(), n_files);
    assert!(v["data_bytes"].as_u64().unwrap() > 0);
    assert_eq!(v["skipped"], serde_json::json!([]));
}

#[test]
fn same_tree_gives_same_bytes() {
    let t = tempfile::tempdir().unwrap();
    let data = small_data(t.path());
    let mut outs = Vec::new();
    for name in ["a", "b"] {
        let out = t.path().join(name);
        let o = bin()
            .args(["create", p(&data), "-o", p(&out), "--threads", "2", "-q"])
            .env("SOURCE_DATE_EPOCH", "1795313063")
            .output()
            .unwrap();
        expect_code(&o, 0);
        outs.push(fs::read(&out).unwrap());
    }
    assert_eq!(outs[0], outs[1]);
    let (head, ..) = split(&outs[0]);
    let head: serde_json::Value = serde_json::from_slice(&head).unwrap();
    assert_eq!(head["created_unix_ms"], 1_795_313_063_000u64);
}

#[test]
fn golden_archive_still_verifies() {
    // fixtures/golden-v1.tar.zst was written by an early build from
    // fixtures/sample; readers must keep accepting it.
    let golden = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/golden-v1.tar.zst");
    let o = run(&["verify", golden, "--json"]);
    expect_code(&o, 0);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["ok"], true);
    let o = run(&["list", golden]);
    expect_code(&o, 0);
    let listed: Vec<String> = stdout(&o)
        .lines()
        .map(|l| l.split_whitespace().last().unwrap().to_string())
        .collect();
    let sample = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/sample");
    for path in &listed {
        assert!(std::path::Path::new(sample).join(path).exists(), "{path}");
    }
    assert_eq!(listed.len() as u64, {
        let (files, dirs) = count_tree(std::path::Path::new(sample));
        files + dirs
    });
}
