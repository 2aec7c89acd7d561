//! Version-2 archives crafted by an independent writer, each wrong in one
//! way: the index, TABLE, META or TAIL lie, or the members are hostile.
//! Every one is refused with exit 1, for its own reason, and a restore of
//! it leaves nothing behind.

use std::fs;
use std::path::Path;

use sydra_archive::{Depth, NullSink, read_archive};

use crate::support::*;

fn lib(bytes: &[u8], depth: Depth) -> sydra_archive::Result<()> {
    read_archive(bytes, Path::new("mem"), depth, &mut NullSink).map(|_| ())
}

fn quick_refused(bytes: &[u8], needle: &str) {
    let e = lib(bytes, Depth::Quick).unwrap_err();
    assert!(e.is_archive_fault(), "{e}");
    assert!(e.to_string().contains(needle), "want {needle:?}, got: {e}");
}

#[test]
fn the_crafted_control_verifies_in_several_frames() {
    let mut c = Craft2::new(&members());
    // Cut after MANIFEST's member and inside a.seg's data.
    c.cuts = vec![1024, 4096];
    let a = c.build();
    lib(&a, Depth::Full).unwrap();
    lib(&a, Depth::Quick).unwrap();
    let t = tempfile::tempdir().unwrap();
    let f = t.path().join("c.tar.zst");
    fs::write(&f, &a).unwrap();
    expect_code(&run(&["verify", p(&f)]), 0);
    let o = run(&["list", "--sha256", p(&f)]);
    expect_code(&o, 0);
    assert_eq!(stdout(&o).lines().count(), 4);
    let dest = t.path().join("r");
    expect_code(&run(&["restore", p(&f), p(&dest)]), 0);
    assert_eq!(
        fs::read(dest.join("segments/3600/a.seg")).unwrap(),
        [7u8; 3000]
    );
}

#[test]
fn hostile_members_are_refused_before_their_bytes() {
    let mut link = members();
    link[6].kind = b'2';
    link[6].link = "/etc/passwd".into();
    link[6].data.clear();
    refused(&craft2(&link), "symlink");
    for bad in ["wal/../../etc/x", "/etc/passwd", "other/file", "wal//x"] {
        let mut m = members();
        m[6].path = bad.into();
        refused(&craft2(&m), "hostile archive entry");
    }
    let mut dup = members();
    dup.push(file("wal/current.wal", b"again"));
    refused(&craft2(&dup), "duplicate");
    let mut order = members();
    order.swap(3, 4);
    refused(&craft2(&order), "out of order");
    let mut orphan = members();
    orphan.remove(2);
    refused(&craft2(&orphan), "not declared before it");
}

#[test]
fn an_index_that_disagrees_with_the_members_is_refused() {
    const MISMATCH: &str = "index does not match the tar members";
    type Lie = fn(&mut Vec<Rec>);
    let lies: [(&str, Lie); 7] = [
        ("size", |r| r[3].size += 1),
        ("digest", |r| r[3].sha256[0] ^= 1),
        ("mode", |r| r[6].mode = 0o777),
        ("mtime", |r| r[6].mtime += 1),
        ("offset inside the frame", |r| r[4].offset += 512),
        ("overlapping members", |r| {
            r[4].frame = r[3].frame;
            r[4].offset = r[3].offset;
        }),
        ("a path", |r| r[6].path = "wal/other.wal".into()),
    ];
    for (what, lie) in lies {
        let mut c = Craft2::new(&members());
        c.cuts = vec![1024];
        c.records = Box::new(lie);
        let a = c.build();
        let e = lib(&a, Depth::Full).unwrap_err();
        assert!(e.to_string().contains(MISMATCH), "{what}: {e}");
        refused(&a, MISMATCH);
    }
    // Records that point outside the data before their block, or back.
    for lie in [(|r: &mut Vec<Rec>| r[4].frame = 1 << 40) as Lie, |r| {
        r[6].frame = 0
    }] {
        let mut c = Craft2::new(&members());
        c.cuts = vec![1024];
        c.records = Box::new(lie);
        refused(&c.build(), "outside the data before its block");
    }
    // A record missing, or one too many: the counts lie too.
    let mut c = Craft2::new(&members());
    c.records = Box::new(|r| {
        r.pop();
    });
    refused(&c.build(), MISMATCH);
    let mut c = Craft2::new(&members());
    c.records = Box::new(|r| {
        let extra = r[6].clone();
        r.push(Rec {
            path: "wal/zz.wal".into(),
            ..extra
        });
    });
    // A record more than the members: refused as its block comes.
    refused(&c.build(), "more than the 7 members before it");
}

#[test]
fn index_blocks_that_lie_about_themselves_are_refused() {
    // A record count that lies.
    let mut c = Craft2::new(&members());
    c.block = Box::new(|b| b[0] += 1);
    refused(&c.build(), "declares");
    quick_refused(&c.build(), "declares");
    // A block that inflates past its declared size.
    let mut c = Craft2::new(&members());
    c.block = Box::new(|b| {
        let n = u32::from_le_bytes(b[4..8].try_into().unwrap()) - 10;
        b[4..8].copy_from_slice(&n.to_le_bytes());
    });
    refused(&c.build(), "does not decompress to its declared");
    // An absurd declared size is refused before anything is allocated.
    let mut c = Craft2::new(&members());
    c.block = Box::new(|b| b[4..8].copy_from_slice(&u32::MAX.to_le_bytes()));
    refused(&c.build(), "at most");
    // Bytes after the block's zstd frame.
    let mut c = Craft2::new(&members());
    c.block = Box::new(|b| b.extend(b"junk"));
    refused(&c.build(), "INDEX block");
}

#[test]
fn table_meta_and_tail_that_lie_are_refused() {
    // A TABLE row that points at the TABLE itself.
    let mut c = Craft2::new(&members());
    c.table = Box::new(|t, at| t[..8].copy_from_slice(&at.to_le_bytes()));
    refused(&c.build(), "TABLE does not describe");
    // A TABLE with a row too many.
    let mut c = Craft2::new(&members());
    c.table = Box::new(|t, _| {
        let row = t[..64].to_vec();
        t.extend(row);
    });
    refused(&c.build(), "TABLE");
    // META counts that lie.
    for field in ["files", "dirs", "total_bytes", "frames"] {
        let mut c = Craft2::new(&members());
        c.meta = Box::new(move |m| {
            m[field] = serde_json::json!(m[field].as_u64().unwrap() + 1);
        });
        refused(&c.build(), "META counts");
        quick_refused(&c.build(), "META counts");
    }
    // A TAIL that points at itself, or at the wrong places.
    type Lie = fn(&mut [u8; 128]);
    let tails: [(&str, Lie); 5] = [
        ("TAIL's offsets", |t| {
            let body = u64::from_le_bytes(t[40..48].try_into().unwrap());
            t[32..40].copy_from_slice(&body.to_le_bytes());
        }),
        ("TAIL's offsets", |t| {
            let table = u64::from_le_bytes(t[24..32].try_into().unwrap());
            t[24..32].copy_from_slice(&(table - 1).to_le_bytes());
        }),
        ("TAIL declares", |t| t[48] += 1),
        ("TAIL", |t| t[56] += 1),
        ("TAIL's SHA-256", |t| t[70] ^= 1),
    ];
    for (needle, lie) in tails {
        let mut c = Craft2::new(&members());
        c.tail = Box::new(lie);
        refused(&c.build(), needle);
        quick_refused(&c.build(), needle);
    }
}

#[test]
fn list_from_the_index_refuses_a_tampered_index() {
    // The index is checked against TAIL and TABLE before a record of it is
    // printed: nothing is listed from a tampered block.
    let t = tempfile::tempdir().unwrap();
    let a = craft2(&members());
    let parts = split2(&a);
    let mut b = a.clone();
    let at = parts.index[0].0 as usize + 16 + 12;
    b[at] ^= 0x10;
    let f = t.path().join("x.tar.zst");
    fs::write(&f, &b).unwrap();
    let o = run(&["list", p(&f)]);
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    assert!(o.stdout.is_empty());
    assert!(
        stderr(&o).contains("does not match its row"),
        "{}",
        stderr(&o)
    );
}

fn raw(path: &str, kind: u8, data: &[u8]) -> Member {
    Member {
        kind,
        ..file(path, data)
    }
}

#[test]
fn tar_extensions_other_than_one_long_name_are_refused() {
    // What GNU tar would apply and a reader that skipped them would not: a
    // pax path, a GNU long link name, a pax global header.
    for (kind, what) in [
        (b'x', "pax extended header"),
        (b'K', "GNU long link name"),
        (b'g', "pax global header"),
    ] {
        let mut m = members();
        m.insert(
            6,
            raw("././@PaxHeader", kind, b"26 path=wal/elsewhere.wal\n"),
        );
        refused(&craft2(&m), what);
    }
    // A long-name record with no member after it, two in a row, one too
    // long for any path.
    let long = raw("././@LongLink", b'L', b"wal/a-long-name.wal\0");
    let mut m = members();
    m.push(long.clone());
    refused(&craft2(&m), "not followed by a member");
    let mut m = members();
    m.insert(6, long.clone());
    m.insert(6, long);
    refused(&craft2(&m), "two GNU long-name records in a row");
    let mut m = members();
    m.insert(6, raw("././@LongLink", b'L', &vec![b'a'; 5000]));
    refused(&craft2(&m), "GNU long-name record longer than");
}

/// META's `first_paths` (each INDEX block's first path, for readers at
/// offsets) is optional; when there, it must be exactly the blocks' first
/// paths: a verify at either depth, `list` and `extract` refuse a lie.
#[test]
fn first_paths_in_meta_must_be_the_blocks_own() {
    let ok = |paths: serde_json::Value| {
        let mut c = Craft2::new(&members());
        c.meta = Box::new(move |m| m["first_paths"] = paths.clone());
        c.build()
    };
    let right = ok(serde_json::json!(["MANIFEST"]));
    lib(&right, Depth::Full).unwrap();
    lib(&right, Depth::Quick).unwrap();
    for lie in [
        serde_json::json!(["segments"]),
        serde_json::json!([]),
        serde_json::json!(["MANIFEST", "wal"]),
    ] {
        let a = ok(lie.clone());
        refused(&a, "META's first paths");
        quick_refused(&a, "META's first paths");
        let t = tempfile::tempdir().unwrap();
        let f = t.path().join("x.tar.zst");
        fs::write(&f, &a).unwrap();
        let o = run(&["list", p(&f)]);
        assert_eq!(code(&o), 1, "{lie}: {}", stderr(&o));
        assert!(stderr(&o).contains("first paths"), "{}", stderr(&o));
        let dest = t.path().join("x");
        let o = run(&["extract", p(&f), "MANIFEST", "-C", p(&dest)]);
        assert_eq!(code(&o), 1, "{lie}: {}", stderr(&o));
        assert!(
            stderr(&o).contains("first paths") || stderr(&o).contains("META gives"),
            "{}",
            stderr(&o)
        );
        assert!(!dest.join("MANIFEST").exists());
    }
}
