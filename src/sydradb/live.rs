//! Reading a data directory that a running SydraDB server is writing.
//!
//! The server cannot be paused, so every file is read in a way that gives
//! a whole, self-consistent version of it:
//! - WAL files are opened once and held open (a rotation renames the path,
//!   not the open file), their size is taken once, and they are archived
//!   up to the last whole record whose CRC matches: a torn tail is cut.
//! - `MANIFEST`, `tags.json` and recently written segments are read during
//!   the scan (into memory, or a temporary file when large) and read again
//!   until two stat calls agree and the content parses, or stays the same,
//!   unparseable, for a while, or is not being written at all.
//! - Other segments are checked as they are archived; one that does not
//!   parse and is not being written is archived as it is, with a warning.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::fs::FileExt;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
pub use crate::format::head::WalPosition;
use crate::sydradb::check::{Checker, check_wal_record, wal_record_len};
use crate::sydradb::source::Tree;

use crate::sys::{Stat, StatKey, fstat};

/// How long a file may keep changing before `create` gives up on it.
pub const SETTLE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long unparseable content must stay the same to be archived as is.
pub const INVALID_STABLE_FOR: Duration = Duration::from_millis(2500);
/// Segments modified this recently (seconds) are read during the scan.
pub const HOT_WINDOW_SECS: i64 = 5;

pub use crate::sydradb::layout::{FileKind, kind_of};

/// Why `bytes` is not what SydraDB would accept for a file of `kind`.
pub use crate::sydradb::check::problem;

/// Content of a file read whole while it was not changing.
#[derive(Debug)]
pub enum Content {
    /// Held in memory (small files, within [`MAX_CAPTURED_BYTES`] in all).
    Bytes(Vec<u8>),
    /// Copied into an unlinked temporary file (memory stays bounded
    /// whatever the file's size).
    Spooled(File),
}

/// A file captured while it was not changing.
#[derive(Debug)]
pub struct Settled {
    /// Its content.
    pub content: Content,
    /// Its metadata at that moment.
    pub stat: Stat,
    /// Set when the content does not parse but is not being written.
    pub warning: Option<String>,
}

/// Most bytes of hot files kept in memory between scan and archive; the
/// rest is spooled to temporary files.
pub const MAX_CAPTURED_BYTES: u64 = 32 * 1024 * 1024;
/// Largest single hot file kept in memory.
const MAX_IN_MEMORY_FILE: u64 = 8 * 1024 * 1024;

/// One read of a file that may be changing.
struct Snapshot {
    content: Content,
    stat: Stat,
    /// Nothing changed while it was read, and the path still names it.
    stable: bool,
    problem: Option<(u64, String)>,
    digest: [u8; 32],
}

fn read_once(tree: &Tree, rel: &str, kind: FileKind, mem_ok: u64) -> Result<Option<Snapshot>> {
    let path = || tree.full(rel);
    let Some((mut f, before)) = tree.try_open_file(rel)? else {
        return Ok(None);
    };
    let mut checker = Checker::new(kind);
    let mut hasher = Sha256::new();
    let mut content = if before.size <= mem_ok {
        Content::Bytes(Vec::with_capacity(before.size as usize))
    } else {
        Content::Spooled(tempfile::tempfile().map_err(|e| {
            Error::io("create a temporary copy of", path(), e).also(format!(
                "the temporary directory is {} ($TMPDIR)",
                std::env::temp_dir().display()
            ))
        })?)
    };
    // One byte more than the size seen tells a file that grew.
    let mut left = before.size + 1;
    let mut got = 0u64;
    let mut buf = vec![0u8; (before.size as usize + 1).clamp(4096, 256 * 1024)];
    while left > 0 {
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let n = match f.read(&mut buf[..want]) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Error::io("read", path(), e)),
        };
        let chunk = &buf[..n];
        checker.feed(chunk);
        hasher.update(chunk);
        match &mut content {
            Content::Bytes(v) => v.extend_from_slice(chunk),
            Content::Spooled(s) => s
                .write_all(chunk)
                .map_err(|e| Error::io("write a temporary copy of", path(), e))?,
        }
        got += n as u64;
        left -= n as u64;
    }
    let after = fstat(&f).map_err(|e| Error::io("stat", path(), e))?;
    let same_path = match tree.stat(rel) {
        Ok(by_path) => by_path.ino == after.ino && by_path.dev == after.dev,
        Err(_) => false,
    };
    let stable = same_path && before.key() == after.key() && got == after.size;
    Ok(Some(Snapshot {
        content,
        stat: after,
        stable,
        problem: checker.finish(),
        digest: hasher.finalize().into(),
    }))
}

/// Reads every file of `hot` (entry index, archive path, kind) until a
/// read happens while the file is not changing and its content is valid
/// for its kind. Content that is invalid but not being written (unchanged
/// and not modified for [`HOT_WINDOW_SECS`]) is taken at once with a
/// warning; content that stays invalid and unchanged for
/// [`INVALID_STABLE_FOR`] is taken with a warning too. All files are read
/// in the same rounds, under one deadline ([`SETTLE_TIMEOUT`] in all, not
/// per file).
pub fn settle_all(
    tree: &Tree,
    hot: Vec<(usize, String, FileKind)>,
) -> Result<Vec<(usize, Settled)>> {
    struct Pending {
        idx: usize,
        rel: String,
        kind: FileKind,
        invalid_since: Option<([u8; 32], StatKey, Instant)>,
    }
    let start = Instant::now();
    let mut pending: Vec<Pending> = hot
        .into_iter()
        .map(|(idx, rel, kind)| Pending {
            idx,
            rel,
            kind,
            invalid_since: None,
        })
        .collect();
    let mut done = Vec::with_capacity(pending.len());
    let mut in_memory = 0u64;
    let mut delay = Duration::from_millis(2);
    loop {
        let now_s = unix_now();
        let mut still = Vec::new();
        for mut p in pending {
            let mem_ok = MAX_IN_MEMORY_FILE.min(MAX_CAPTURED_BYTES.saturating_sub(in_memory));
            let Some(s) = read_once(tree, &p.rel, p.kind, mem_ok)? else {
                still.push(p);
                continue;
            };
            if !s.stable {
                still.push(p);
                continue;
            }
            let warning = match &s.problem {
                None => None,
                Some((off, why)) if now_s - s.stat.mtime > HOT_WINDOW_SECS => Some(format!(
                    "{}: {why} at offset {off}; not modified for {}s, archived as it is",
                    p.rel,
                    now_s - s.stat.mtime
                )),
                Some((off, why)) => match &p.invalid_since {
                    Some((d, k, since)) if *d == s.digest && *k == s.stat.key() => {
                        if since.elapsed() < INVALID_STABLE_FOR {
                            still.push(p);
                            continue;
                        }
                        Some(format!(
                            "{}: {why} at offset {off}; unchanged for {:.1}s, archived as it is",
                            p.rel,
                            since.elapsed().as_secs_f64()
                        ))
                    }
                    _ => {
                        p.invalid_since = Some((s.digest, s.stat.key(), Instant::now()));
                        still.push(p);
                        continue;
                    }
                },
            };
            if let Content::Bytes(b) = &s.content {
                in_memory += b.len() as u64;
            }
            done.push((
                p.idx,
                Settled {
                    content: s.content,
                    stat: s.stat,
                    warning,
                },
            ));
        }
        pending = still;
        let Some(first) = pending.first() else {
            return Ok(done);
        };
        if start.elapsed() > SETTLE_TIMEOUT {
            return Err(Error::Source {
                path: tree.full(&first.rel),
                reason: format!(
                    "kept changing for {}s while being read; it never settled",
                    SETTLE_TIMEOUT.as_secs()
                ),
            });
        }
        std::thread::sleep(delay);
        delay = (delay * 2).min(Duration::from_millis(100));
    }
}

/// Seconds since the epoch, now.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Walks the records of the first `size` bytes of an open WAL file.
///
/// Reads 1 MiB at a time with positional reads (so several files can be
/// walked at once, and the file offset is left alone) and checks each
/// record in place: a WAL holds tens of millions of small records.
pub fn scan_wal(file: &File, path: &str, size: u64) -> io::Result<WalPosition> {
    let mut win = Window::new(file, size);
    let mut off = 0u64;
    let mut good_end = 0u64;
    let mut records = 0u64;
    let mut damaged = Vec::new();
    let mut bad_after_good = Vec::new();
    // Bytes the next record needs in the window (more than 4 when the
    // last one did not fit).
    let mut need = 4usize;
    'walk: loop {
        if size - off < 4 {
            break;
        }
        let buf = win.get(off, need)?;
        let mut p = 0usize;
        // Every whole record the window holds, in place.
        loop {
            let at = off + p as u64;
            let left = size - at;
            if left < 4 {
                break 'walk;
            }
            if buf.len() - p < 4 {
                need = 4;
                break;
            }
            let len = u32::from_le_bytes([buf[p], buf[p + 1], buf[p + 2], buf[p + 3]]);
            let Some(whole) = wal_record_len(len) else {
                // No record boundary can be found past this: damage on disk.
                damaged.append(&mut bad_after_good);
                damaged.push(at);
                good_end = size;
                break 'walk;
            };
            if left < whole as u64 {
                break 'walk; // incomplete record being appended: the torn tail
            }
            if buf.len() - p < whole {
                need = whole;
                break;
            }
            // A record replay would refuse (unknown type, bad CRC) is
            // damage if good records follow, else the torn tail.
            if check_wal_record(&buf[p..p + whole]).is_ok() {
                damaged.append(&mut bad_after_good);
                records += 1;
                good_end = at + whole as u64;
            } else {
                bad_after_good.push(at);
            }
            p += whole;
        }
        off += p as u64;
    }
    Ok(WalPosition {
        path: path.to_string(),
        size_seen: size,
        archived: good_end,
        records,
        damaged,
    })
}

/// A moving window over the first `size` bytes of a file, filled with
/// positional reads; requests go forward only.
struct Window<'a> {
    file: &'a File,
    size: u64,
    buf: Vec<u8>,
    /// File offset of `buf[0]`.
    base: u64,
    /// Bytes of `buf` holding file data.
    filled: usize,
}

impl<'a> Window<'a> {
    const BLOCK: usize = 1 << 20;

    fn new(file: &'a File, size: u64) -> Self {
        Window {
            file,
            size,
            buf: Vec::new(),
            base: 0,
            filled: 0,
        }
    }

    /// At least `n` bytes at `off` (at or after the last request's offset,
    /// and within `size`): all the window holds from there. A file shorter
    /// than `size` is an `UnexpectedEof`.
    fn get(&mut self, off: u64, n: usize) -> io::Result<&[u8]> {
        let end = off + n as u64;
        if end > self.base + self.filled as u64 {
            // Keep what is still needed, then read at least a block more.
            let keep = (off - self.base) as usize;
            self.buf.copy_within(keep..self.filled, 0);
            self.filled -= keep;
            self.base = off;
            let want = (n.max(Self::BLOCK) as u64).min(self.size - off) as usize;
            if self.buf.len() < want {
                self.buf.resize(want, 0);
            }
            while self.filled < n {
                let at = self.base + self.filled as u64;
                let room = (want - self.filled).min((self.size - at) as usize);
                match self
                    .file
                    .read_at(&mut self.buf[self.filled..self.filled + room], at)
                {
                    Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                    Ok(k) => self.filled += k,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
        }
        let start = (off - self.base) as usize;
        Ok(&self.buf[start..self.filled])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sydradb::wal_record;
    use std::io::Write;

    fn wal_file(bytes: &[u8]) -> (tempfile::NamedTempFile, File) {
        let mut t = tempfile::NamedTempFile::new().unwrap();
        t.write_all(bytes).unwrap();
        let f = File::open(t.path()).unwrap();
        (t, f)
    }

    #[test]
    fn records_across_window_refills_are_walked_whole() {
        // 33-byte records do not divide the 1 MiB window; a 700 kB record
        // makes the window grow; one damaged record sits in the middle.
        let mut b = Vec::new();
        let mut good = 0u64;
        for i in 0..40_000 {
            b.extend(wal_record(1, i, i as f64));
            good += 1;
        }
        let mut payload: Vec<u8> = (0..700_000u32).map(|i| (i % 251) as u8).collect();
        payload[0] = crate::sydradb::WAL_PUT;
        b.extend((payload.len() as u32).to_le_bytes());
        b.extend(&payload);
        b.extend(crate::sydradb::crc32(&payload).to_le_bytes());
        good += 1;
        let bad_at = b.len() as u64;
        let mut bad = wal_record(1, 1, 1.0);
        bad[20] ^= 4;
        b.extend(bad);
        for i in 0..40_000 {
            b.extend(wal_record(2, i, -(i as f64)));
            good += 1;
        }
        let whole = b.len() as u64;
        b.extend(&wal_record(3, 3, 3.0)[..17]);
        let (_t, f) = wal_file(&b);
        let p = scan_wal(&f, "wal/1.wal", b.len() as u64).unwrap();
        assert_eq!(p.records, good);
        assert_eq!(p.archived, whole);
        assert_eq!(p.cut_bytes(), 17);
        assert_eq!(p.damaged, vec![bad_at]);

        // The file is shorter than the size it was scanned for: an error,
        // not a silent cut.
        let e = scan_wal(&f, "wal/1.wal", b.len() as u64 + 100).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
    }

    #[test]
    fn torn_tails_are_cut_at_the_last_good_record() {
        let mut w = Vec::new();
        for i in 0..5 {
            w.extend(wal_record(1, i, i as f64));
        }
        let whole = w.len() as u64;
        for tail in 0..33 {
            let mut b = w.clone();
            b.extend(&wal_record(1, 9, 9.0)[..tail]);
            let (_t, f) = wal_file(&b);
            let p = scan_wal(&f, "wal/current.wal", b.len() as u64).unwrap();
            assert_eq!(p.archived, whole, "tail {tail}");
            assert_eq!(p.records, 5);
            assert_eq!(p.cut_bytes(), tail as u64);
            assert!(p.damaged.is_empty());
        }
        // A whole last record whose CRC does not match is cut too.
        let mut b = w.clone();
        let mut last = wal_record(1, 9, 9.0);
        last[32] ^= 1;
        b.extend(last);
        let (_t, f) = wal_file(&b);
        let p = scan_wal(&f, "x", b.len() as u64).unwrap();
        assert_eq!(p.archived, whole);
    }

    #[test]
    fn damage_in_the_middle_is_kept_and_reported() {
        let mut w = Vec::new();
        for i in 0..5 {
            w.extend(wal_record(1, i, i as f64));
        }
        w[33 * 2 + 10] ^= 0xff;
        let (_t, f) = wal_file(&w);
        let p = scan_wal(&f, "x", w.len() as u64).unwrap();
        assert_eq!(p.archived, w.len() as u64);
        assert_eq!(p.records, 4);
        assert_eq!(p.damaged, vec![66]);

        let mut w2 = w.clone();
        w2[33..37].copy_from_slice(&0u32.to_le_bytes());
        let (_t, f) = wal_file(&w2);
        let p = scan_wal(&f, "x", w2.len() as u64).unwrap();
        assert_eq!(p.archived, w2.len() as u64);
        assert_eq!(p.damaged, vec![33]);
    }

    fn tree_with(files: &[(&str, &[u8])]) -> (tempfile::TempDir, Tree) {
        let t = tempfile::tempdir().unwrap();
        for (name, bytes) in files {
            std::fs::write(t.path().join(name), bytes).unwrap();
        }
        let tree = Tree::open(t.path()).unwrap();
        (t, tree)
    }

    fn bytes(s: &Settled) -> &[u8] {
        match &s.content {
            Content::Bytes(b) => b,
            Content::Spooled(_) => panic!("spooled"),
        }
    }

    #[test]
    fn settle_waits_for_valid_content() {
        let (t, tree) = tree_with(&[("tags.json", b"")]);
        let p = t.path().join("tags.json");
        let writer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            std::fs::write(&p, b"{\"a=b\":[1]}").unwrap();
        });
        let s = settle_all(&tree, vec![(0, "tags.json".into(), FileKind::Tags)]).unwrap();
        writer.join().unwrap();
        assert_eq!(bytes(&s[0].1), b"{\"a=b\":[1]}");
        assert!(s[0].1.warning.is_none());
    }

    #[test]
    fn invalid_content_is_taken_when_unchanged_or_old() {
        let (t, tree) = tree_with(&[("MANIFEST", b"not json\n"), ("tags.json", b"{")]);
        // tags.json is old: taken at once; MANIFEST is fresh: after it
        // stayed the same for a while.
        let f = std::fs::File::options()
            .write(true)
            .open(t.path().join("tags.json"))
            .unwrap();
        f.set_modified(std::time::SystemTime::now() - Duration::from_secs(600))
            .unwrap();
        let s = settle_all(
            &tree,
            vec![
                (0, "MANIFEST".into(), FileKind::Manifest),
                (1, "tags.json".into(), FileKind::Tags),
            ],
        )
        .unwrap();
        let by = |i| &s.iter().find(|(j, _)| *j == i).unwrap().1;
        assert_eq!(bytes(by(0)), b"not json\n");
        assert!(by(0).warning.as_ref().unwrap().contains("unchanged for"));
        assert!(by(1).warning.as_ref().unwrap().contains("not modified for"));
        // The old one was taken in the first round: it comes first.
        assert_eq!(s[0].0, 1);
    }

    #[test]
    fn large_hot_files_are_spooled_not_held_in_memory() {
        let big = vec![b' '; MAX_IN_MEMORY_FILE as usize + 10];
        let mut tags = b"{}".to_vec();
        tags.extend_from_slice(&big);
        let (_t, tree) = tree_with(&[("tags.json", &tags)]);
        let s = settle_all(&tree, vec![(0, "tags.json".into(), FileKind::Tags)]).unwrap();
        assert!(s[0].1.warning.is_none());
        let Content::Spooled(f) = &s[0].1.content else {
            panic!("held in memory")
        };
        assert_eq!(f.metadata().unwrap().len(), tags.len() as u64);
    }

    #[test]
    fn problems_by_kind() {
        assert!(problem(FileKind::Tags, b"").is_some());
        assert!(problem(FileKind::Tags, b"{}").is_none());
        assert!(
            problem(FileKind::Tags, b"{\"h=\xff\":[1]}").is_none(),
            "invalid UTF-8 is tolerated"
        );
        assert!(problem(FileKind::Manifest, b"").is_none());
        assert!(problem(FileKind::Manifest, b"{\"a\":1}\n").is_none());
        assert!(problem(FileKind::Manifest, b"{\"a\":1}").is_some());
        assert!(problem(FileKind::Segment, b"SYSEG2").is_some());
        assert_eq!(kind_of("wal/current.wal"), FileKind::Wal);
        assert_eq!(kind_of("segments/1/a.seg"), FileKind::Segment);
        assert_eq!(kind_of("wal/notes"), FileKind::Other);
    }
}
