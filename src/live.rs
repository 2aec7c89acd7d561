//! Reading a data directory that a running SydraDB server is writing.
//!
//! The server cannot be paused, so every file is read in a way that gives
//! a whole, self-consistent version of it:
//! - WAL files are opened once and held open (a rotation renames the path,
//!   not the open file), their size is taken once, and they are archived
//!   up to the last whole record whose CRC matches: a torn tail is cut.
//! - `MANIFEST`, `tags.json` and recently written segments are read into
//!   memory during the scan and read again until two stat calls agree and
//!   the content parses (or stays the same, unparseable, for a while).
//! - Other segments are checked when archived and re-read while they do
//!   not parse.

use std::fs::{self, File, Metadata};
use std::io::{self, Read};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::Path;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::sydradb::{crc32, decode_segment};

/// How long a file may keep changing before `create` gives up on it.
pub const SETTLE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long unparseable content must stay the same to be archived as is.
pub const INVALID_STABLE_FOR: Duration = Duration::from_millis(2500);
/// Segments modified this recently (seconds) are read during the scan.
pub const HOT_WINDOW_SECS: i64 = 5;
/// Files up to this size may be read into memory to be checked.
pub const MAX_BUFFERED_FILE: u64 = 16 * 1024 * 1024;
/// Longest WAL record payload the server accepts.
const MAX_WAL_RECORD: u32 = 1 << 20;

/// What a file is to SydraDB, for the checks it gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// `MANIFEST`: newline-terminated JSON objects.
    Manifest,
    /// `tags.json`: one JSON object.
    Tags,
    /// `wal/*.wal`: WAL records.
    Wal,
    /// `segments/<hour>/*.seg`: a SYSEG2/SYSEG1 segment.
    Segment,
    /// Anything else inside the layout: archived without checks.
    Other,
}

/// Classifies an archive path.
pub fn kind_of(path: &str) -> FileKind {
    if path == "MANIFEST" {
        FileKind::Manifest
    } else if path == "tags.json" {
        FileKind::Tags
    } else if path.starts_with("wal/") && path.ends_with(".wal") {
        FileKind::Wal
    } else if path.starts_with("segments/") && path.ends_with(".seg") {
        FileKind::Segment
    } else {
        FileKind::Other
    }
}

fn json_lossy(bytes: &[u8]) -> Option<serde_json::Value> {
    serde_json::from_str(&String::from_utf8_lossy(bytes)).ok()
}

/// Why `bytes` is not what SydraDB would accept for a file of `kind`, with
/// the offset of the problem, or `None` if it is.
pub fn problem(kind: FileKind, bytes: &[u8]) -> Option<(u64, String)> {
    match kind {
        FileKind::Tags => {
            if bytes.is_empty() {
                Some((0, "empty tags.json (the server refuses to start)".into()))
            } else if !json_lossy(bytes).is_some_and(|v| v.is_object()) {
                Some((0, "tags.json is not a JSON object".into()))
            } else {
                None
            }
        }
        FileKind::Manifest => {
            let mut off = 0u64;
            for line in bytes.split_inclusive(|&b| b == b'\n') {
                if !line.ends_with(b"\n") {
                    return Some((off, "MANIFEST line not newline-terminated".into()));
                }
                if !json_lossy(line).is_some_and(|v| v.is_object()) {
                    return Some((off, "MANIFEST line is not a JSON object".into()));
                }
                off += line.len() as u64;
            }
            None
        }
        FileKind::Segment => decode_segment(bytes).err(),
        FileKind::Wal => crate::sydradb::check_wal(bytes).err(),
        FileKind::Other => None,
    }
}

/// A file read whole while it was not changing.
#[derive(Debug)]
pub struct Settled {
    /// Its content.
    pub bytes: Vec<u8>,
    /// Its metadata at that moment.
    pub meta: Metadata,
    /// Set when the content does not parse but stopped changing.
    pub warning: Option<String>,
}

/// What must not change while a file is read: inode, size, mtime.
type StatKey = (u64, u64, i64, i64);

fn stat_key(m: &Metadata) -> StatKey {
    (m.ino(), m.len(), m.mtime(), m.mtime_nsec())
}

/// Reads `path` (shown as `name`) until a read happens while the file is
/// not changing and its content is valid for `kind`; content that stays
/// invalid and unchanged for [`INVALID_STABLE_FOR`] is accepted with a
/// warning. `Ok(None)` when the file is larger than [`MAX_BUFFERED_FILE`].
pub fn settle(path: &Path, name: &str, kind: FileKind) -> Result<Option<Settled>> {
    let start = Instant::now();
    let mut delay = Duration::from_millis(2);
    let mut invalid_since: Option<(Vec<u8>, StatKey, Instant)> = None;
    loop {
        match read_once(path)? {
            Snapshot::TooBig => return Ok(None),
            Snapshot::Gone => {}
            Snapshot::Got {
                bytes,
                meta,
                stable,
            } => {
                if stable {
                    let key = stat_key(&meta);
                    match problem(kind, &bytes) {
                        None => {
                            return Ok(Some(Settled {
                                bytes,
                                meta: *meta,
                                warning: None,
                            }));
                        }
                        Some((off, why)) => match &invalid_since {
                            Some((prev, k, since)) if prev == &bytes && *k == key => {
                                if since.elapsed() >= INVALID_STABLE_FOR {
                                    return Ok(Some(Settled {
                                        bytes,
                                        meta: *meta,
                                        warning: Some(format!(
                                            "{name}: {why} at offset {off}; unchanged for {:.1}s, archived as it is",
                                            since.elapsed().as_secs_f64()
                                        )),
                                    }));
                                }
                            }
                            _ => invalid_since = Some((bytes, key, Instant::now())),
                        },
                    }
                }
            }
        }
        if start.elapsed() > SETTLE_TIMEOUT {
            return Err(Error::Source {
                path: path.to_path_buf(),
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

/// One read of a file that may be changing.
enum Snapshot {
    /// Larger than [`MAX_BUFFERED_FILE`].
    TooBig,
    /// Not there at this instant (being replaced).
    Gone,
    /// Content and metadata, and whether nothing changed meanwhile.
    Got {
        bytes: Vec<u8>,
        meta: Box<Metadata>,
        stable: bool,
    },
}

fn read_once(path: &Path) -> Result<Snapshot> {
    let mut f = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Snapshot::Gone),
        Err(e) => return Err(Error::io("open", path, e)),
    };
    let before = f.metadata().map_err(|e| Error::io("stat", path, e))?;
    if before.len() > MAX_BUFFERED_FILE {
        return Ok(Snapshot::TooBig);
    }
    let mut bytes = Vec::with_capacity(before.len() as usize);
    (&mut f)
        .take(MAX_BUFFERED_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| Error::io("read", path, e))?;
    let after = f.metadata().map_err(|e| Error::io("stat", path, e))?;
    let same_path = fs::metadata(path)
        .map(|m| m.ino() == after.ino())
        .unwrap_or(false);
    let stable =
        same_path && stat_key(&before) == stat_key(&after) && bytes.len() as u64 == after.len();
    Ok(Snapshot::Got {
        bytes,
        meta: Box::new(after),
        stable,
    })
}

/// Reads a segment that was not hot at scan time, `size` bytes as HEAD
/// declares, re-reading while it does not parse (it may be mid-write).
/// Returns its content and a warning if it never parsed.
pub fn read_segment(
    path: &Path,
    name: &str,
    size: u64,
    buf: &mut Vec<u8>,
) -> Result<Option<String>> {
    let start = Instant::now();
    let mut delay = Duration::from_millis(2);
    loop {
        buf.clear();
        let f = File::open(path).map_err(|e| Error::io("open", path, e))?;
        f.take(size)
            .read_to_end(buf)
            .map_err(|e| Error::io("read", path, e))?;
        if (buf.len() as u64) < size {
            if start.elapsed() > Duration::from_secs(1) {
                return Err(Error::Source {
                    path: path.to_path_buf(),
                    reason: format!(
                        "file shrank while being archived ({} bytes missing)",
                        size - buf.len() as u64
                    ),
                });
            }
        } else {
            match decode_segment(buf) {
                Ok(_) => return Ok(None),
                Err((off, why)) if start.elapsed() > Duration::from_secs(1) => {
                    return Ok(Some(format!(
                        "{name}: {why} at offset {off}; the segment stayed broken, archived as it is"
                    )));
                }
                Err(_) => {}
            }
        }
        std::thread::sleep(delay);
        delay = (delay * 2).min(Duration::from_millis(100));
    }
}

/// What the WAL pre-pass found in one WAL file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WalPosition {
    /// Archive path.
    pub path: String,
    /// Size when it was opened.
    pub size_seen: u64,
    /// Bytes archived: up to the last whole record whose CRC matches.
    pub archived: u64,
    /// Whole records with matching CRCs in the archived part.
    pub records: u64,
    /// Offsets of damaged records kept in the archived part (damage on
    /// disk, not a live write).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub damaged: Vec<u64>,
}

impl WalPosition {
    /// Bytes left out at the end (an incomplete record being appended).
    pub fn cut_bytes(&self) -> u64 {
        self.size_seen - self.archived
    }
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
            if len == 0 || len > MAX_WAL_RECORD {
                // No record boundary can be found past this: damage on disk.
                damaged.append(&mut bad_after_good);
                damaged.push(at);
                good_end = size;
                break 'walk;
            }
            let whole = 8 + len as usize;
            if left < whole as u64 {
                break 'walk; // incomplete record being appended: the torn tail
            }
            if buf.len() - p < whole {
                need = whole;
                break;
            }
            let payload = &buf[p + 4..p + 4 + len as usize];
            let crc = &buf[p + 4 + len as usize..p + whole];
            if crc32(payload) == u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]) {
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
        let payload: Vec<u8> = (0..700_000u32).map(|i| (i % 251) as u8).collect();
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

    #[test]
    fn settle_waits_for_valid_content() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("tags.json");
        fs::write(&p, b"").unwrap();
        let p2 = p.clone();
        let writer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            fs::write(&p2, b"{\"a=b\":[1]}").unwrap();
        });
        let s = settle(&p, "tags.json", FileKind::Tags).unwrap().unwrap();
        writer.join().unwrap();
        assert_eq!(s.bytes, b"{\"a=b\":[1]}");
        assert!(s.warning.is_none());
    }

    #[test]
    fn stable_invalid_content_is_archived_with_a_warning() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("MANIFEST");
        fs::write(&p, b"not json\n").unwrap();
        let s = settle(&p, "MANIFEST", FileKind::Manifest).unwrap().unwrap();
        assert_eq!(s.bytes, b"not json\n");
        assert!(s.warning.unwrap().contains("archived as it is"));
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
