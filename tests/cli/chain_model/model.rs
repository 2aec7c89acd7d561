//! The model: a data dir's tree as the test reads it (paths as bytes,
//! kinds, contents, modes, mtimes), and what differs between two trees.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::support::*;

pub(super) const LAYOUT: &[&[u8]] = &[b"MANIFEST", b"tags.json", b"wal", b"segments"];

// ------------------------------------------------------------ the model

#[derive(Clone, PartialEq, Debug)]
pub(super) enum Kind {
    Dir,
    File(Vec<u8>),
}

#[derive(Clone, PartialEq, Debug)]
pub(super) struct Ent {
    pub(super) kind: Kind,
    pub(super) mode: u32,
    pub(super) mtime: i64,
    pub(super) nsec: i64,
}

/// A tree: relative path (bytes) to entry, in byte order.
pub(super) type Snap = BTreeMap<Vec<u8>, Ent>;

pub(super) fn os(b: &[u8]) -> &OsStr {
    OsStr::from_bytes(b)
}

pub(super) fn join(root: &Path, rel: &[u8]) -> PathBuf {
    if rel.is_empty() {
        root.to_path_buf()
    } else {
        root.join(os(rel))
    }
}

pub(super) fn rel_join(rel: &[u8], name: &[u8]) -> Vec<u8> {
    if rel.is_empty() {
        name.to_vec()
    } else {
        [rel, b"/", name].concat()
    }
}

/// The tree below `root` (with `layout_only`, only what `create`
/// archives at the top).
pub(super) fn snapshot(root: &Path, layout_only: bool) -> Snap {
    fn walk(root: &Path, rel: &[u8], out: &mut Snap, layout_only: bool) {
        for e in fs::read_dir(join(root, rel)).unwrap() {
            let e = e.unwrap();
            let name = e.file_name();
            if rel.is_empty() && layout_only && !LAYOUT.contains(&name.as_bytes()) {
                continue;
            }
            let r = rel_join(rel, name.as_bytes());
            let m = fs::symlink_metadata(e.path()).unwrap();
            let kind = if m.is_dir() {
                Kind::Dir
            } else {
                Kind::File(fs::read(e.path()).unwrap())
            };
            let dir = m.is_dir();
            out.insert(
                r.clone(),
                Ent {
                    kind,
                    mode: m.permissions().mode() & 0o7777,
                    mtime: m.mtime(),
                    nsec: m.mtime_nsec(),
                },
            );
            if dir {
                walk(root, &r, out, layout_only);
            }
        }
    }
    let mut s = Snap::new();
    walk(root, b"", &mut s, layout_only);
    s
}

/// A path for messages: quoted, escaped, long names shortened.
pub(super) fn show(b: &[u8]) -> String {
    let s = String::from_utf8_lossy(b);
    if s.len() > 60 {
        let head: String = s.chars().take(24).collect();
        format!("{head:?}...({} bytes)", b.len())
    } else {
        format!("{s:?}")
    }
}

pub(super) fn describe(e: &Ent) -> String {
    match &e.kind {
        Kind::Dir => format!("dir mode {:o} mtime {}", e.mode, e.mtime),
        Kind::File(c) => format!(
            "file {} bytes sha {} mode {:o} mtime {}",
            c.len(),
            &hex(&sha256(c))[..12],
            e.mode,
            e.mtime
        ),
    }
}

/// What differs between the model and a restored tree (whole-second
/// mtimes), and how many entries lost their sub-second mtime.
pub(super) fn diff(want: &Snap, got: &Snap) -> (Vec<String>, usize) {
    let mut out = Vec::new();
    let mut subsec = 0;
    let keys: BTreeSet<&Vec<u8>> = want.keys().chain(got.keys()).collect();
    for k in keys {
        match (want.get(k), got.get(k)) {
            (Some(w), None) => out.push(format!("missing {}: {}", show(k), describe(w))),
            (None, Some(g)) => out.push(format!("extra {}: {}", show(k), describe(g))),
            (Some(w), Some(g)) => {
                if w.kind != g.kind || w.mode != g.mode || w.mtime != g.mtime {
                    out.push(format!(
                        "differs {}: want {}, got {}",
                        show(k),
                        describe(w),
                        describe(g)
                    ));
                } else if w.nsec != g.nsec {
                    subsec += 1;
                }
            }
            (None, None) => unreachable!(),
        }
    }
    out.truncate(20);
    (out, subsec)
}
