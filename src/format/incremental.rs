//! Format version 3, the incremental archive (see `FORMAT.md`, part C): a
//! version-2 archive whose HEAD names the archive it was made on (its
//! base), whose members are only what changed, and whose last members,
//! under [`INCREMENTAL_DIR`], say what else changed: the bytes appended to
//! WAL files ([`TAILS_DIR`]) and the operations ([`CHANGES_PATH`], one
//! JSON [`Change`] per line, in tree order).

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::format::head::EntryKind;
use crate::format::path::{MAX_NAME_LEN, check_path};

/// The version of an incremental archive.
pub const VERSION3: u64 = 3;
/// The top-level directory of an incremental's own members. It sorts after
/// `wal`, so it comes last in tree order, and it is not part of SydraDB's
/// layout: stock `tar` puts it beside the data, never into `wal/`.
pub const INCREMENTAL_DIR: &str = "x-sydra-incremental";
/// The operations member.
pub const CHANGES_PATH: &str = "x-sydra-incremental/changes.ndjson";
/// The directory of the bytes appended to WAL files.
pub const TAILS_DIR: &str = "x-sydra-incremental/wal-tails";
/// The suffix of a tail member: `<wal name>.tail`, never `*.wal`, so a
/// server never replays one, wherever it is copied.
pub const TAIL_SUFFIX: &str = ".tail";
/// Longest line of [`CHANGES_PATH`].
pub const MAX_CHANGE_LINE: usize = 16 * 1024;
/// Most incrementals on one full archive that a reader follows.
pub const MAX_CHAIN: usize = 1000;

/// [`MAX_CHAIN`]; in debug builds (the tests'), the value of
/// `SYDRA_ARCHIVE_TEST_MAX_CHAIN` when set: the limit's edge is tested
/// without a chain of 1,000 archives. Readers and writers use the same.
pub fn max_chain() -> usize {
    #[cfg(debug_assertions)]
    if let Some(n) = std::env::var("SYDRA_ARCHIVE_TEST_MAX_CHAIN")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|&n| n >= 1)
    {
        return n;
    }
    MAX_CHAIN
}
/// Most appends (tail members) in one incremental that a reader takes.
pub const MAX_TAILS: usize = 100_000;
/// Most appends from another name (renames) in one incremental that a
/// reader takes.
pub const MAX_RENAMES: usize = 10_000;

/// The base an incremental was made on.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct BaseRef {
    /// SHA-256 of the whole base archive, lowercase hex (as `sha256sum`
    /// prints it).
    pub sha256: String,
    /// Its size in bytes.
    pub size: u64,
    /// Its TAIL's `body_sha256`, lowercase hex: a reader can tell the
    /// right base from its last 128 bytes before reading the rest.
    pub body_sha256: String,
    /// Where it was found: a file name relative to the incremental's own
    /// directory (or an absolute path), or an `s3://` URL.
    pub location: String,
    /// How many incrementals this archive is on its full archive (1 for
    /// one made on a full).
    pub depth: u64,
}

impl BaseRef {
    /// Checks the fields' shapes.
    pub fn check(&self) -> Result<()> {
        let hex = |s: &str| s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit());
        if !hex(&self.sha256) || !hex(&self.body_sha256) {
            return Err(Error::corrupt("HEAD's base digests are not 64 hex digits"));
        }
        if self.depth == 0 || self.depth > max_chain() as u64 {
            return Err(Error::corrupt(format!(
                "HEAD's base depth {} is outside 1..={}",
                self.depth,
                max_chain()
            )));
        }
        if self.location.is_empty() || self.location.len() > 4096 || self.location.contains('\0') {
            return Err(Error::corrupt("HEAD's base location is not a usable name"));
        }
        Ok(())
    }
}

/// One operation of an incremental, besides its members.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "op", rename_all = "lowercase", deny_unknown_fields)]
pub enum Change {
    /// `path` (and, for a directory, everything below it) is gone.
    Delete {
        /// The path in the base's tree.
        path: String,
    },
    /// `path` is the base's file `from` (the same path, or the WAL file a
    /// rotation renamed), with bytes appended: its first `offset` bytes
    /// are the whole base file, whose SHA-256 is `prefix_sha256`; the
    /// rest is the member `tail`. `size`, `sha256`, `mode` and `mtime`
    /// describe the whole file.
    Append {
        /// The file's path now.
        path: String,
        /// The base file it continues.
        from: String,
        /// Length of the base file, where the tail starts.
        offset: u64,
        /// SHA-256 of the base file (the first `offset` bytes).
        prefix_sha256: String,
        /// The member holding the appended bytes.
        tail: String,
        /// The whole file's size.
        size: u64,
        /// The whole file's SHA-256.
        sha256: String,
        /// Its permission bits.
        mode: u32,
        /// Its modification time.
        mtime: u64,
        /// Nanoseconds past `mtime` (below 1,000,000,000), where the
        /// writer knew them.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        mtime_nsec: Option<u32>,
    },
}

impl Change {
    /// The path the operation is about (the changes are in its tree order).
    pub fn path(&self) -> &str {
        match self {
            Change::Delete { path } | Change::Append { path, .. } => path,
        }
    }

    /// Decodes and checks one line.
    pub fn parse(line: &[u8]) -> Result<Change> {
        let c: Change = serde_json::from_slice(line)
            .map_err(|e| Error::corrupt(format!("{CHANGES_PATH}: a line is not valid: {e}")))?;
        let bad = |why: String| Error::hostile(c.path(), format!("{CHANGES_PATH}: {why}"));
        match &c {
            Change::Delete { path } => {
                // A path of the base's tree: a file or a directory.
                check_path(path, is_layout_dir(path)).map_err(bad)?;
            }
            Change::Append {
                path,
                from,
                offset,
                prefix_sha256,
                tail,
                size,
                sha256,
                mode,
                mtime,
                mtime_nsec,
            } => {
                check_path(path, false).map_err(&bad)?;
                check_path(from, false).map_err(&bad)?;
                let top = |p: &str| p.strip_prefix("wal/").is_some_and(|n| !n.contains('/'));
                if !top(path) || !top(from) {
                    return Err(bad(
                        "only WAL files are appended to (files directly in wal/)".into(),
                    ));
                }
                let name_len = tail.rsplit('/').next().map_or(0, str::len);
                if *tail != tail_path(path) || name_len > MAX_NAME_LEN {
                    return Err(bad(format!("its tail must be {:?}", tail_path(path))));
                }
                let hex = |s: &str| s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit());
                if !hex(prefix_sha256) || !hex(sha256) {
                    return Err(bad("digests are not 64 hex digits".into()));
                }
                if offset > size
                    || *mode > 0o7777
                    || *mtime > i64::MAX as u64
                    || mtime_nsec.is_some_and(|n| n > crate::format::v2::MAX_NSEC)
                {
                    return Err(bad("impossible offset, mode or mtime".into()));
                }
            }
        }
        Ok(c)
    }

    /// One line of [`CHANGES_PATH`], with its newline.
    pub fn line(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec(self).expect("a change serializes");
        v.push(b'\n');
        v
    }
}

/// The operations of one incremental, checked line by line: each parses
/// ([`Change::parse`]), they come in strictly increasing tree order, and
/// an append from another name continues a file that comes after it.
/// Every reader of the operations goes through this.
#[derive(Debug, Default)]
pub struct ChangeOrder {
    last: String,
}

impl ChangeOrder {
    /// The next line (without its newline), checked against those before.
    pub fn next(&mut self, line: &[u8]) -> Result<Change> {
        let c = Change::parse(line)?;
        if !self.last.is_empty() && tree_cmp(&self.last, c.path()) != std::cmp::Ordering::Less {
            return Err(Error::hostile(
                c.path(),
                format!(
                    "{CHANGES_PATH}: out of order or repeated after {:?}",
                    self.last
                ),
            ));
        }
        if let Change::Append { path, from, .. } = &c
            && from != path
            && tree_cmp(from, path) != std::cmp::Ordering::Greater
        {
            return Err(Error::hostile(
                path,
                format!("{CHANGES_PATH}: continues {from:?}, which does not come after it"),
            ));
        }
        self.last.clear();
        self.last.push_str(c.path());
        Ok(c)
    }
}

/// Whether a path of the layout can only be a directory (`wal`,
/// `segments`, and the hour directories below `segments/`).
fn is_layout_dir(path: &str) -> bool {
    path == "wal"
        || path == "segments"
        || path.matches('/').count() == 1 && path.starts_with("segments/")
}

/// The tail member of the WAL file `path`.
pub fn tail_path(path: &str) -> String {
    let name = path.rsplit('/').next().unwrap_or(path);
    format!("{TAILS_DIR}/{name}{TAIL_SUFFIX}")
}

/// Checks a path of an incremental archive: the layout's, or one of its
/// own members under [`INCREMENTAL_DIR`].
pub fn check_incremental_path(path: &str, is_dir: bool) -> std::result::Result<(), String> {
    let Some(rest) = path.strip_prefix(INCREMENTAL_DIR) else {
        return check_path(path, is_dir);
    };
    let ok = match rest {
        "" => is_dir,
        "/changes.ndjson" => !is_dir,
        "/wal-tails" => is_dir,
        _ => rest.strip_prefix("/wal-tails/").is_some_and(|name| {
            !is_dir
                && name.ends_with(TAIL_SUFFIX)
                && name.len() > TAIL_SUFFIX.len()
                && name.len() <= MAX_NAME_LEN
                && !name.contains('/')
                && !name.contains('\0')
        }),
    };
    if ok {
        Ok(())
    } else {
        Err(format!(
            "not one of an incremental archive's own members ({CHANGES_PATH}, {TAILS_DIR}/<wal name>{TAIL_SUFFIX})"
        ))
    }
}

/// Whether `path` is one of an incremental's own members.
pub fn is_own(path: &str) -> bool {
    path == INCREMENTAL_DIR
        || path
            .strip_prefix(INCREMENTAL_DIR)
            .is_some_and(|r| r.starts_with('/'))
}

/// Compares two paths in tree order.
pub fn tree_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    // The same order as comparing `a.split('/')` with `b.split('/')`
    // (components byte-wise): the bytes, with `/` below every other
    // byte. At the first byte that differs, a component that ended
    // (`/`) comes first; past the common prefix, the shorter first.
    // Every reader compares millions of paths per chain level: no
    // splitting, no allocation.
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let n = a.len().min(b.len());
    let mut i = 0;
    while i + 8 <= n && a[i..i + 8] == b[i..i + 8] {
        i += 8;
    }
    while i < n && a[i] == b[i] {
        i += 1;
    }
    let key = |c: u8| if c == b'/' { 0u16 } else { u16::from(c) + 1 };
    match (a.get(i), b.get(i)) {
        (Some(&x), Some(&y)) => key(x).cmp(&key(y)),
        (x, y) => x.is_some().cmp(&y.is_some()),
    }
}

/// Whether `path` is `dir` or below it.
pub fn is_under(path: &str, dir: &str) -> bool {
    path == dir || path.strip_prefix(dir).is_some_and(|r| r.starts_with('/'))
}

/// One entry of an archive's whole tree: what an incremental and its
/// chain describe together (the record of the archive that last carried
/// it, or what an append made of it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateEntry {
    /// Archive path.
    pub path: String,
    /// File or directory.
    pub kind: EntryKind,
    /// Permission bits.
    pub mode: u32,
    /// Modification time.
    pub mtime: u64,
    /// Nanoseconds past `mtime`, where the archive that last wrote it
    /// recorded them (see [`crate::format::v2::Record::mtime_nsec`]).
    pub mtime_nsec: Option<u32>,
    /// Size (0 for a directory).
    pub size: u64,
    /// SHA-256 of a file's content.
    pub sha256: [u8; 32],
    /// Which archive of the chain last wrote it (0: the full archive).
    pub origin: usize,
    /// Where its member is in that archive (its index record's `frame`
    /// and `offset`), unless it was appended to.
    pub frame: u64,
    /// See `frame`.
    pub offset: u64,
    /// The archive `origin` continued it (an `append`): its content is
    /// its base's file and that archive's tail.
    pub appended: bool,
}

impl StateEntry {
    /// The index record of its member in the archive `origin` (unless it
    /// was appended to).
    pub fn record(&self) -> crate::format::v2::Record {
        crate::format::v2::Record {
            path: self.path.clone(),
            kind: self.kind,
            mode: self.mode,
            mtime: self.mtime,
            mtime_nsec: self.mtime_nsec,
            size: self.size,
            frame: self.frame,
            offset: self.offset,
            sha256: self.sha256,
        }
    }

    /// The entry it declares.
    pub fn entry(&self) -> crate::format::head::Entry {
        crate::format::head::Entry {
            path: self.path.clone(),
            kind: self.kind,
            size: self.size,
            mode: self.mode,
            // Readers refuse an mtime over i64::MAX before they get here.
            mtime: self.mtime as i64,
            mtime_nsec: self.mtime_nsec.unwrap_or(0),
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn tree_cmp_is_the_order_of_components() {
        // Against the definition, on strings of a few symbols (with
        // empty components, leading and trailing slashes).
        let sym = [b'/', b'-', b'.', b'0', b'a', b'b'];
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let word = |r: u64| -> String {
            let n = (r % 12) as usize;
            let bytes: Vec<u8> = (0..n)
                .map(|k| sym[((r >> (4 + 3 * k)) % 6) as usize])
                .collect();
            String::from_utf8(bytes).unwrap()
        };
        for _ in 0..200_000 {
            let (a, b) = (word(next()), word(next()));
            assert_eq!(
                tree_cmp(&a, &b),
                a.split('/').cmp(b.split('/')),
                "{a:?} {b:?}"
            );
            let c = format!("{a}{b}");
            assert_eq!(
                tree_cmp(&a, &c),
                a.split('/').cmp(c.split('/')),
                "{a:?} {c:?}"
            );
        }
    }

    use super::*;

    #[test]
    fn changes_round_trip_and_refuse_what_no_writer_makes() {
        let a = Change::Append {
            path: "wal/1700000000000.wal".into(),
            from: "wal/current.wal".into(),
            offset: 33,
            prefix_sha256: "a".repeat(64),
            tail: tail_path("wal/1700000000000.wal"),
            size: 66,
            sha256: "b".repeat(64),
            mode: 0o644,
            mtime: 1,
            mtime_nsec: Some(999_999_999),
        };
        assert_eq!(Change::parse(&a.line()).unwrap(), a);
        let d = Change::Delete {
            path: "segments/3600".into(),
        };
        assert_eq!(Change::parse(&d.line()).unwrap(), d);
        for bad in [
            r#"{"op":"delete","path":"../x"}"#,
            r#"{"op":"delete","path":"wal"}"#.replace("wal", "other").as_str(),
            r#"{"op":"delete","path":"MANIFEST","extra":1}"#,
            r#"{"op":"rename","path":"MANIFEST"}"#,
        ] {
            assert!(Change::parse(bad.as_bytes()).is_err(), "{bad}");
        }
        let mut wrong_tail = a.clone();
        if let Change::Append { tail, .. } = &mut wrong_tail {
            *tail = "wal/current.wal".into();
        }
        assert!(Change::parse(&wrong_tail.line()).is_err());
        let mut not_wal = a;
        if let Change::Append { path, tail, .. } = &mut not_wal {
            *path = "MANIFEST".into();
            *tail = tail_path("MANIFEST");
        }
        assert!(Change::parse(&not_wal.line()).is_err());
    }

    #[test]
    fn own_paths() {
        assert!(check_incremental_path(INCREMENTAL_DIR, true).is_ok());
        assert!(check_incremental_path(CHANGES_PATH, false).is_ok());
        assert!(check_incremental_path(TAILS_DIR, true).is_ok());
        assert!(
            check_incremental_path("x-sydra-incremental/wal-tails/current.wal.tail", false).is_ok()
        );
        assert!(
            check_incremental_path("x-sydra-incremental/wal-tails/current.wal", false).is_err()
        );
        assert!(check_incremental_path("x-sydra-incremental/other", false).is_err());
        assert!(check_incremental_path("x-sydra-incremental/wal-tails/a/b.tail", false).is_err());
        assert!(check_incremental_path("wal/current.wal", false).is_ok());
        assert!(is_own("x-sydra-incremental/changes.ndjson"));
        assert!(!is_own("x-sydra-incrementalx"));
        // The own directory sorts after the whole layout.
        assert_eq!(
            tree_cmp("wal/zzz", INCREMENTAL_DIR),
            std::cmp::Ordering::Less
        );
        assert_eq!(
            tree_cmp(TAILS_DIR, CHANGES_PATH),
            std::cmp::Ordering::Greater
        );
    }
}
