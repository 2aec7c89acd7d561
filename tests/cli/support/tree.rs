//! Inspecting trees: digests, leftovers, counts.

use std::path::Path;

use sha2::{Digest, Sha256};

use super::craft::hex;

/// A digest of a whole tree: every path, type, mode, mtime (to the
/// nanosecond) and content,
/// in name order. Two trees with the same digest are the same to SydraDB.
pub fn tree_digest(root: &Path) -> String {
    digest_of(root, true)
}

/// [`tree_digest`] with whole-second mtimes: what stock `tar` restores
/// (a tar header holds seconds).
pub fn tree_digest_seconds(root: &Path) -> String {
    digest_of(root, false)
}

fn digest_of(root: &Path, nsec: bool) -> String {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    fn walk(root: &Path, rel: &Path, h: &mut Sha256, nsec: bool) {
        let mut names: Vec<_> = std::fs::read_dir(root.join(rel))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        for n in names {
            let r = rel.join(&n);
            let m = std::fs::symlink_metadata(root.join(&r)).unwrap();
            h.update(r.to_str().unwrap().as_bytes());
            h.update(
                format!(
                    "|{:o}|{}.{:09}|",
                    m.permissions().mode(),
                    m.mtime(),
                    if nsec { m.mtime_nsec() } else { 0 }
                )
                .as_bytes(),
            );
            if m.is_dir() {
                h.update(b"dir\n");
                walk(root, &r, h, nsec);
            } else {
                h.update(std::fs::read(root.join(&r)).unwrap());
                h.update(b"\n");
            }
        }
    }
    let mut h = Sha256::new();
    walk(root, Path::new(""), &mut h, nsec);
    hex(&h.finalize())
}

/// Names in `dir` that look like staging or temporary leftovers.
pub fn leftovers(dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| {
            n.contains(".sydra-staging.")
                || n.contains(".sydra-removing.")
                || n.contains(".sydra-tmp.")
                || n.contains(".sydra-extract.")
        })
        .collect()
}

/// Files and directories below `d`, not counting `d` (none when `d` does
/// not exist).
pub fn count_tree(d: &Path) -> (u64, u64) {
    let (mut files, mut dirs) = (0, 0);
    let Ok(entries) = std::fs::read_dir(d) else {
        return (0, 0);
    };
    for e in entries {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            let (f, s) = count_tree(&e.path());
            files += f;
            dirs += 1 + s;
        } else {
            files += 1;
        }
    }
    (files, dirs)
}

/// The names of the archives (`*.tar.zst`) directly in `dir`, sorted.
pub fn archive_names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".tar.zst"))
        .collect();
    v.sort();
    v
}
