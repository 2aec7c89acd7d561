//! The format, byte by byte, as an independent reader sees it: what
//! `create` writes (version 2), and the golden archives of both versions.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};

use crate::support::*;

/// The entries a name-ordered walk of the layout gives, dirs before
/// their contents: (path, is_dir).
fn walk_layout(root: &std::path::Path) -> Vec<(String, bool)> {
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
    let mut want = Vec::new();
    walk(root, "", &mut want);
    want
}

#[test]
fn frames_index_table_meta_and_tail_are_exact() {
    let t = tempfile::tempdir().unwrap();
    let data = small_data(t.path());
    fs::write(data.join("0123456789abcdef"), b"snapshot temp leftover").unwrap();
    // A path over 100 bytes takes a GNU long-name record.
    let long = format!("wal/{}.wal", "7".repeat(120));
    fs::write(data.join(&long), b"long name").unwrap();
    let out = t.path().join("a.tar.zst");
    // Small frames, so several data frames and cuts inside a file happen.
    let o = run(&["create", p(&data), "-o", p(&out), "-q", "--frame-kib", "4"]);
    expect_code(&o, 0);
    let a = fs::read(&out).unwrap();
    let parts = split2(&a);

    // HEAD: small, fixed fields.
    let head = &parts.head;
    assert_eq!(head["format"], "sydra-archive");
    assert_eq!(head["version"], 2);
    assert_eq!(head["zstd_level"], 3);
    assert_eq!(head["frame_bytes"], 4096);
    assert_eq!(head["source"], p(&data));
    assert!(head["tool"].as_str().unwrap().starts_with("sydra-archive "));
    assert!(head["created_unix_ms"].as_u64().unwrap() > 1_700_000_000_000);
    assert!(head.get("entries").is_none());

    // DATA: independent frames with checksums, each at most 4 KiB of tar,
    // none empty; together one tar stream of exactly the layout's entries.
    assert!(parts.data.len() > 3, "{} frames", parts.data.len());
    let mut tar_bytes = Vec::new();
    let mut frame_start = std::collections::HashMap::new();
    for (at, f) in &parts.data {
        assert_ne!(f[4] & 0b100, 0, "content checksum flag set");
        let content = zstd::decode_all(&f[..]).unwrap();
        assert!(!content.is_empty() && content.len() <= 4096);
        frame_start.insert(*at, tar_bytes.len());
        tar_bytes.extend(content);
    }
    assert!(tar_bytes.ends_with(&[0u8; 1024]));
    let mut ar = tar::Archive::new(&tar_bytes[..]);
    let members: Vec<String> = ar
        .entries()
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            assert_eq!(e.header().uid().unwrap(), 0);
            e.path()
                .unwrap()
                .to_str()
                .unwrap()
                .trim_end_matches('/')
                .to_string()
        })
        .collect();
    let want = walk_layout(&data);
    assert_eq!(
        members,
        want.iter().map(|w| w.0.clone()).collect::<Vec<_>>()
    );

    // INDEX: one record per member, in order, true to the data dir, each
    // pointing at its own header block.
    let recs = parts.records();
    assert_eq!(
        recs.iter()
            .map(|r| (r.path.clone(), r.dir))
            .collect::<Vec<_>>(),
        want
    );
    let mut total = 0;
    for r in &recs {
        let m = fs::symlink_metadata(data.join(&r.path)).unwrap();
        assert_eq!(u64::from(r.mode), u64::from(m.permissions().mode() & 0o777));
        assert_eq!(r.mtime as i64, m.mtime());
        assert_eq!(r.nsec, Some(m.mtime_nsec() as u32), "{}", r.path);
        let at = frame_start[&r.frame] + r.offset as usize;
        let h = &tar_bytes[at..at + 512];
        let name = &h[..100];
        assert!(
            r.path
                .as_bytes()
                .starts_with(&name[..name.iter().position(|&b| b == 0).unwrap_or(100)]),
            "{} at {at}",
            r.path
        );
        if r.dir {
            assert_eq!(r.size, 0);
        } else {
            let content = fs::read(data.join(&r.path)).unwrap();
            assert_eq!(r.size, content.len() as u64);
            assert_eq!(r.sha256, sha256(&content), "{}", r.path);
            assert_eq!(&tar_bytes[at + 512..at + 512 + content.len()], &content[..]);
            total += content.len() as u64;
        }
    }

    // TABLE: one row per INDEX frame.
    assert_eq!(parts.table.len(), 64 * parts.index.len());
    for (row, (at, body)) in parts.table.chunks(64).zip(&parts.index) {
        let u = |i: usize| u64::from_le_bytes(row[i..i + 8].try_into().unwrap());
        assert_eq!(u(0), *at);
        assert_eq!(u(8), 16 + body.len() as u64);
        assert_eq!(
            u(16),
            u64::from(u32::from_le_bytes(body[..4].try_into().unwrap()))
        );
        assert_eq!(
            u(24),
            u64::from(u32::from_le_bytes(body[4..8].try_into().unwrap()))
        );
        assert_eq!(&row[32..], &sha256(body));
    }

    // META: totals, the WAL position, what was left out.
    let meta = &parts.meta;
    assert_eq!(meta["files"], recs.iter().filter(|r| !r.dir).count());
    assert_eq!(meta["dirs"], recs.iter().filter(|r| r.dir).count());
    assert_eq!(meta["total_bytes"].as_u64().unwrap(), total);
    assert_eq!(meta["frames"], parts.data.len());
    assert_eq!(meta["skipped"], serde_json::json!(["0123456789abcdef"]));
    assert!(!meta["wal"].as_array().unwrap().is_empty());

    // TAIL: 128 bytes that find and authenticate everything.
    let tail = &parts.tail;
    let u = |i: usize| u64::from_le_bytes(tail[i..i + 8].try_into().unwrap());
    assert_eq!(&tail[..4], &SKIP_MAGIC.to_le_bytes());
    assert_eq!(&tail[4..8], &120u32.to_le_bytes());
    assert_eq!(&tail[8..16], b"SYDRTAIL");
    assert_eq!(&tail[16..20], &2u32.to_le_bytes());
    // Flag bit 0: every record carries its nanoseconds.
    assert_eq!(&tail[20..24], &1u32.to_le_bytes());
    let body_len = a.len() - 128;
    assert_eq!(u(24), parts.table_offset);
    assert_eq!(u(32), parts.meta_offset);
    assert_eq!(u(40), body_len as u64);
    assert_eq!(u(48), recs.len() as u64);
    assert_eq!(u(56), parts.index.len() as u64);
    assert_eq!(
        &tail[64..96],
        &sha256(&a[parts.table_offset as usize..body_len])
    );
    assert_eq!(&tail[96..128], &sha256(&a[..body_len]));
}

#[test]
fn golden_v2_is_the_documented_test_vector() {
    // fixtures/golden-v2.tar.zst: `create fixtures/sample` with
    // SOURCE_DATE_EPOCH=1800000000 (FORMAT.md A.9).
    let golden = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/golden-v2.tar.zst");
    let a = fs::read(golden).unwrap();
    let parts = split2(&a);
    assert_eq!(parts.head["version"], 2);
    assert_eq!(parts.head["created_unix_ms"], 1_800_000_000_000u64);
    let head_len = 16 + serde_json::to_vec(&parts.head).unwrap().len() as u64;
    assert_eq!(parts.data.len(), 1);
    assert_eq!(parts.data[0].0, head_len);
    assert_eq!(parts.index.len(), 1);
    assert_eq!(parts.index[0].0, head_len + parts.data[0].1.len() as u64);
    let recs = parts.records();
    assert_eq!(recs.len(), 38);
    assert_eq!(recs.iter().filter(|r| !r.dir).count(), 33);
    assert_eq!(parts.meta["files"], 33);
    assert_eq!(parts.meta["dirs"], 5);
    // The table in FORMAT.md A.9.
    assert_eq!(
        hex(&sha256(&a)),
        "54e55f3c16440035924e36d007b46bdd55f4e94d772122b7e1f219018a105482"
    );
    assert_eq!(
        (
            parts.data[0].0,
            parts.index[0].0,
            parts.table_offset,
            parts.meta_offset,
            a.len()
        ),
        (179, 44_129, 45_830, 45_910, 46_673)
    );
    assert!(recs.iter().all(|r| r.frame == 179));
    for args in [
        &["verify"][..],
        &["verify", "--quick"],
        &["verify", "--deep"],
    ] {
        let mut args = args.to_vec();
        args.push(golden);
        expect_code(&run(&args), 0);
    }
    // Every file of the sample, byte for byte, at the place the index says.
    let sample = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/sample"));
    let tar_bytes = parts.tar();
    for r in recs.iter().filter(|r| !r.dir) {
        let at = r.offset as usize;
        let content = fs::read(sample.join(&r.path)).unwrap();
        assert_eq!(&tar_bytes[at + 512..at + 512 + content.len()], &content[..]);
        assert_eq!(r.sha256, sha256(&content));
    }
    let t = tempfile::tempdir().unwrap();
    let dest = t.path().join("r");
    expect_code(&run(&["restore", golden, p(&dest)]), 0);
    // Content only: a fresh clone gives the sample other mtimes.
    assert_eq!(count_tree(sample), count_tree(&dest));
    for r in &recs {
        if !r.dir {
            assert_eq!(
                fs::read(sample.join(&r.path)).unwrap(),
                fs::read(dest.join(&r.path)).unwrap()
            );
        }
    }
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
    let parts = split2(&outs[0]);
    assert_eq!(parts.head["created_unix_ms"], 1_795_313_063_000u64);
}

#[test]
fn golden_archive_still_verifies() {
    // fixtures/golden-v1.tar.zst was written by an early build from
    // fixtures/sample; readers must keep accepting it.
    let golden = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/golden-v1.tar.zst");
    // Still the version-1 layout (FORMAT.md B): HEAD, DATA, SUMS, FOOT.
    let (head, _, sums, foot) = split(&fs::read(golden).unwrap());
    let head: serde_json::Value = serde_json::from_slice(&head).unwrap();
    assert_eq!(head["version"], 1);
    assert!(sums.starts_with(b"{\"files\":["));
    assert_eq!(&foot[8..16], b"SYDRFOOT");
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
