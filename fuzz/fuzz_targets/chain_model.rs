//! Fuzz the chain model (`apply_level`, what every reader of an
//! incremental goes through) against its simple statement
//! (`reference_level`): for any base tree, members, operation lines and
//! tails, both accept with the same tree or both refuse; never a panic.
#![no_main]

use std::collections::HashMap;

use libfuzzer_sys::fuzz_target;
use sydra_archive::{EntryKind, StateEntry, apply_level, reference_level};

const PATHS: &[&str] = &[
    "MANIFEST",
    "segments",
    "segments/1",
    "segments/1/a.seg",
    "segments/2",
    "tags.json",
    "wal",
    "wal/1.wal",
    "wal/1.wal/x",
    "wal/2.wal",
    "wal/current.wal",
];

fn entry(path: &str, dir: bool, b: u8, origin: usize) -> StateEntry {
    StateEntry {
        path: path.into(),
        kind: if dir { EntryKind::Dir } else { EntryKind::File },
        mode: 0o644,
        mtime: 1,
        mtime_nsec: Some(u32::from(b)),
        size: if dir { 0 } else { u64::from(b % 3) },
        sha256: [if dir { 0 } else { b % 3 }; 32],
        origin,
        frame: 0,
        offset: 0,
        appended: false,
    }
}

/// A tree from bits: each path present or not, a file or a directory.
fn tree(bits: u32, kinds: u32, sizes: &[u8], origin: usize, whole: bool) -> Vec<StateEntry> {
    let mut out: Vec<StateEntry> = Vec::new();
    for (i, p) in PATHS.iter().enumerate() {
        if bits & (1 << i) == 0 {
            continue;
        }
        if whole
            && let Some((parent, _)) = p.rsplit_once('/')
            && !out.iter().any(|e| e.path == parent && e.kind == EntryKind::Dir)
        {
            continue;
        }
        let dir = kinds & (1 << i) != 0;
        out.push(entry(p, dir, sizes.get(i).copied().unwrap_or(0), origin));
    }
    out
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 12 {
        return;
    }
    let word = |i: usize| u32::from_le_bytes(data[i..i + 4].try_into().unwrap());
    let prev = tree(word(0), word(4), &data[12..], 0, true);
    let members = tree(word(8), word(4).rotate_left(7), &data[12..], 1, false);
    // The rest: operation lines (JSON, one per `\n`), then `\0` and tails
    // as `name=size` lines.
    let rest = &data[12.min(data.len())..];
    let (ops, tails_part) = match rest.iter().position(|&b| b == 0) {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, &[][..]),
    };
    let lines: Vec<Vec<u8>> = ops
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .take(16)
        .map(<[u8]>::to_vec)
        .collect();
    let mut tails = HashMap::new();
    for t in String::from_utf8_lossy(tails_part).lines().take(16) {
        if let Some((name, size)) = t.split_once('=')
            && let Ok(size) = size.parse::<u64>()
        {
            tails.insert(name.to_string(), size);
        }
    }
    let model = apply_level(prev.clone(), members.clone(), &lines, tails.clone());
    let reference = reference_level(&prev, &members, &lines, &tails);
    match (model, reference) {
        (Ok(m), Ok(r)) => assert_eq!(m, r),
        (Err(_), Err(_)) => {}
        (m, r) => panic!("model {:?} but reference {:?}", m.is_ok(), r.is_ok()),
    }
});
