//! The hostile corpus: every archive the readers must refuse, each with
//! the reason it must be refused for.

use super::craft::*;

/// Every kind of hostile or broken archive the readers must refuse with
/// exit 1, by name ([`reason`] says why each must be refused).
pub fn hostile_archives() -> Vec<(&'static str, Vec<u8>)> {
    let mut v: Vec<(&'static str, Vec<u8>)> = Vec::new();
    for (name, bad) in [
        ("dotdot", "wal/../../escape"),
        ("absolute", "/tmp/sydra-archive-escape"),
        ("outside-layout", "other/file"),
        ("double-slash", "wal//x"),
        ("dot", "wal/./x"),
        ("trailing-slash", "wal/x/"),
    ] {
        v.push((name, craft_members(&[dir("wal"), file(bad, b"x")])));
    }
    for (name, kind) in [
        ("symlink", b'2'),
        ("hardlink", b'1'),
        ("chardev", b'3'),
        ("blockdev", b'4'),
        ("fifo", b'6'),
    ] {
        // Declared in HEAD as an empty file; the tar member is something else.
        let mut m = good();
        m[2] = Member {
            path: "wal/current.wal".into(),
            kind,
            data: Vec::new(),
            link: "/etc/passwd".into(),
            declared: None,
        };
        let mut head = head_for(&m);
        head["entries"][2]["type"] = serde_json::json!("file");
        v.push((name, craft(&head, &raw_tar(&m), &sums_for(&m))));
    }
    {
        // HEAD itself declares a symlink.
        let m = good();
        let mut head = head_for(&m);
        head["entries"][2]["type"] = serde_json::json!("symlink");
        v.push(("head-symlink", craft(&head, &raw_tar(&m), &sums_for(&m))));
    }
    v.push((
        "duplicate",
        craft_members(&[dir("wal"), file("wal/a", b"x"), file("wal/a", b"y")]),
    ));
    {
        let m = good();
        let mut head = head_for(&m[..2]);
        head["total_bytes"] = serde_json::json!(3);
        v.push((
            "member-not-in-head",
            craft(&head, &raw_tar(&m), &sums_for(&m[..2])),
        ));
        v.push((
            "head-entry-not-in-tar",
            craft(&head_for(&m), &raw_tar(&m[..2]), &sums_for(&m)),
        ));
    }
    {
        // A member that claims 1 TB where HEAD declares 33 bytes; only a
        // little zero data follows.
        let m = good();
        let mut big = good();
        big[2].declared = Some(1 << 40);
        big[2].data = vec![0u8; 4096];
        let mut tar = raw_tar(&big);
        tar.truncate(tar.len() - 1024);
        v.push((
            "member-larger-than-head",
            craft(&head_for(&m), &tar, &sums_for(&m)),
        ));
    }
    {
        let mut body = SKIP_MAGIC.to_le_bytes().to_vec();
        body.extend(u32::MAX.to_le_bytes());
        body.extend(b"SYDRHEAD{}");
        v.push(("absurd-head-length", seal(body)));
        let m = good();
        let mut body = skippable(b"SYDRHEAD", &serde_json::to_vec(&head_for(&m)).unwrap());
        body.extend(zstd::encode_all(&raw_tar(&m)[..], 3).unwrap());
        let mut sums = SKIP_MAGIC.to_le_bytes().to_vec();
        sums.extend(u32::MAX.to_le_bytes());
        sums.extend(b"SYDRSUMS{}");
        body.extend(sums);
        v.push(("absurd-sums-length", seal(body)));
    }
    {
        let m = good();
        let tar = zstd::encode_all(&raw_tar(&m)[..], 3).unwrap();
        let mut body = skippable(
            b"SYDRHEAD",
            b"{\"format\": \"sydra-archive\", \"version\": 1, \"entries\": [",
        );
        body.extend(&tar);
        body.extend(skippable(
            b"SYDRSUMS",
            &serde_json::to_vec(&sums_for(&m)).unwrap(),
        ));
        v.push(("head-invalid-json", seal(body)));
        let mut body = skippable(b"SYDRHEAD", &serde_json::to_vec(&head_for(&m)).unwrap());
        body.extend(&tar);
        body.extend(skippable(b"SYDRSUMS", b"[[[["));
        v.push(("sums-invalid-json", seal(body)));
    }
    {
        // A DATA frame whose header asks for a 256 MiB window.
        let m = good();
        let mut enc = zstd::stream::Encoder::new(Vec::new(), 3).unwrap();
        enc.window_log(28).unwrap();
        enc.long_distance_matching(true).unwrap();
        std::io::Write::write_all(&mut enc, &raw_tar(&m)).unwrap();
        let frame = enc.finish().unwrap();
        let mut body = skippable(b"SYDRHEAD", &serde_json::to_vec(&head_for(&m)).unwrap());
        body.extend(frame);
        body.extend(skippable(
            b"SYDRSUMS",
            &serde_json::to_vec(&sums_for(&m)).unwrap(),
        ));
        v.push(("huge-window", seal(body)));
    }
    {
        let m = good();
        let mut t = good();
        t[2].data[7] ^= 0xff;
        v.push((
            "tampered-recomputed-footer",
            craft(&head_for(&m), &raw_tar(&t), &sums_for(&m)),
        ));
    }
    let ok = craft_members(&good());
    let mut after = ok.clone();
    after.extend(b"\0");
    v.push(("bytes-after-foot", after));
    v.push(("truncated-end", ok[..ok.len() - 1].to_vec()));
    v.push(("truncated-middle", ok[..ok.len() / 2].to_vec()));
    v.push(("empty", Vec::new()));
    v.push(("one-byte", vec![0x53]));
    v.push(("sixteen-bytes", ok[..16].to_vec()));
    v.push(("foot-only", ok[ok.len() - 64..].to_vec()));
    v
}

/// What the one-line refusal of hostile archive `name` must say: a case
/// refused for another reason than the one it was built for fails.
pub fn reason(name: &str) -> &'static str {
    match name {
        "dotdot" => "\"wal/../../escape\": \"..\" path component",
        "absolute" => "\"/tmp/sydra-archive-escape\": absolute path",
        "outside-layout" => "\"other/file\": outside the SydraDB layout",
        "double-slash" => "\"wal//x\": empty path component",
        "dot" => "\"wal/./x\": \".\" path component",
        "trailing-slash" => "\"wal/x/\": empty path component",
        "symlink" => "symlink member: only files and directories are allowed",
        "hardlink" => "hardlink member: only files and directories are allowed",
        "chardev" => "device member: only files and directories are allowed",
        "blockdev" => "device member: only files and directories are allowed",
        "fifo" => "fifo member: only files and directories are allowed",
        "head-symlink" => "unknown variant `symlink`",
        "duplicate" => "\"wal/a\": duplicate path in HEAD",
        "member-not-in-head" => "tar member not listed in HEAD",
        "head-entry-not-in-tar" => "HEAD entry missing from the tar stream",
        "member-larger-than-head" => "tar member is 1099511627776 bytes but HEAD declares 33",
        "absurd-head-length" => "SYDRHEAD frame body of 4294967287 bytes exceeds the limit",
        "absurd-sums-length" => "SYDRSUMS frame body of 4294967287 bytes exceeds the limit",
        "head-invalid-json" => "HEAD is not valid JSON",
        "sums-invalid-json" => "SUMS is not valid",
        "huge-window" => "requires too much memory",
        "tampered-recomputed-footer" => "does not match its SHA-256 in SUMS",
        "bytes-after-foot" => "bytes after the FOOT frame",
        "truncated-end" => "truncated: archive ends inside the FOOT frame",
        "truncated-middle" => "truncated: archive ends inside a zstd data frame",
        "empty" => "missing SYDRHEAD frame: archive ends",
        "one-byte" => "truncated: archive ends inside the SYDRHEAD frame header",
        "sixteen-bytes" => "truncated: archive ends inside SYDRHEAD",
        "foot-only" => "expected SYDRHEAD frame at offset 0, found tag \"SYDRFOOT\"",
        other => panic!("no reason recorded for hostile case {other}"),
    }
}

/// `bytes` are refused by the full check for a reason that says `needle`:
/// in process with data decoded as one stream and on 2 threads, and
/// through the binary, whose `verify` exits 1 saying it and whose
/// `restore` leaves nothing behind.
pub fn refused(bytes: &[u8], needle: &str) {
    use std::path::Path;
    for threads in [1, 2] {
        let e = sydra_archive::read_archive_with(
            bytes,
            Path::new("mem"),
            sydra_archive::Depth::Full,
            &mut sydra_archive::NullSink,
            threads,
        )
        .unwrap_err();
        assert!(e.is_archive_fault(), "{e}");
        assert!(e.to_string().contains(needle), "want {needle:?}, got: {e}");
    }
    let t = tempfile::tempdir().unwrap();
    let f = t.path().join("x.tar.zst");
    std::fs::write(&f, bytes).unwrap();
    let o = super::run(&["verify", super::p(&f)]);
    assert_eq!(super::code(&o), 1, "{}", super::stderr(&o));
    assert!(super::stderr(&o).contains(needle), "{}", super::stderr(&o));
    let dest = t.path().join("restored");
    let o = super::run(&["restore", super::p(&f), super::p(&dest)]);
    assert_eq!(super::code(&o), 1, "{}", super::stderr(&o));
    assert!(!dest.exists());
    assert_eq!(super::leftovers(t.path()), Vec::<String>::new());
}
