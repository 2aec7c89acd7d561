//! Format version 2's own structures (see `FORMAT.md`): the small HEAD,
//! the index records, the INDEX block opening, the TABLE rows, META and
//! the fixed TAIL that ends every version-2 archive.
//!
//! Every decoder here takes bytes already in memory and bounded by the
//! caller (an index block is at most [`MAX_BLOCK_RAW`] bytes); nothing
//! here reads or allocates by a length it has not checked.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::format::frame::{SKIPPABLE_MAGIC, skippable_header};
use crate::format::head::{EntryKind, FORMAT_NAME, WalPosition};
use crate::format::path::MAX_PATH_LEN;

/// The version number of this format.
pub const VERSION2: u64 = 2;
/// Tag of an INDEX block frame.
pub const TAG_INDEX: [u8; 8] = *b"SYDRINDX";
/// Tag of the TABLE frame (one row per INDEX block).
pub const TAG_TABLE: [u8; 8] = *b"SYDRTABL";
/// Tag of the META frame.
pub const TAG_META: [u8; 8] = *b"SYDRMETA";
/// Tag of the TAIL frame.
pub const TAG_TAIL: [u8; 8] = *b"SYDRTAIL";
/// Largest version-2 HEAD body.
pub const MAX_HEAD2_BODY: u64 = 64 * 1024;
/// Largest META body.
pub const MAX_META_BODY: u64 = 4 * 1024 * 1024;
/// Largest decompressed INDEX block.
pub const MAX_BLOCK_RAW: u64 = 4 * 1024 * 1024;
/// Largest INDEX frame body (its 8-byte opening and the zstd frame).
pub const MAX_BLOCK_BODY: u64 = 8 + MAX_BLOCK_RAW + 64 * 1024;
/// Most records in one INDEX block.
pub const MAX_BLOCK_RECORDS: u64 = 65_536;
/// Length of one TABLE row.
pub const ROW_LEN: usize = 64;
/// Length of the TAIL frame: always the last bytes of the archive.
pub const TAIL_LEN: usize = 128;
/// Most warnings META keeps (the rest are counted in the last one).
pub const MAX_META_WARNINGS: usize = 200;

/// The version-2 HEAD: small, fixed fields only.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Head2 {
    /// Always `sydra-archive`.
    pub format: String,
    /// Always 2.
    pub version: u64,
    /// When the archive was written.
    pub created_unix_ms: u64,
    /// The writer, e.g. `sydra-archive 0.2.0`.
    pub tool: String,
    /// The data directory as given to `create`.
    pub source: String,
    /// The zstd level of DATA.
    pub zstd_level: i32,
    /// The writer's target of tar bytes per DATA frame.
    pub frame_bytes: u64,
    /// Version 3 (an incremental archive): the archive it was made on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base: Option<crate::format::incremental::BaseRef>,
}

impl Head2 {
    /// A HEAD for this writer.
    pub fn new(created_unix_ms: u64, source: String, zstd_level: i32, frame_bytes: u64) -> Head2 {
        Head2 {
            format: FORMAT_NAME.into(),
            version: VERSION2,
            created_unix_ms,
            tool: format!("sydra-archive {}", env!("CARGO_PKG_VERSION")),
            source,
            zstd_level,
            frame_bytes,
            base: None,
        }
    }

    /// A HEAD for an incremental archive made on `base` (version 3).
    pub fn incremental(mut self, base: crate::format::incremental::BaseRef) -> Head2 {
        self.version = crate::format::incremental::VERSION3;
        self.base = Some(base);
        self
    }

    /// Whether this is an incremental archive (version 3).
    pub fn is_incremental(&self) -> bool {
        self.base.is_some()
    }

    /// Decodes a version-2 HEAD body (the version was already probed).
    pub fn parse(body: &[u8]) -> Result<Head2> {
        let h: Head2 = serde_json::from_slice(body)
            .map_err(|e| Error::corrupt(format!("HEAD does not match format version 2: {e}")))?;
        if h.format != FORMAT_NAME {
            return Err(Error::corrupt("HEAD does not declare sydra-archive"));
        }
        match (h.version, &h.base) {
            (VERSION2, None) => {}
            (crate::format::incremental::VERSION3, Some(b)) => b.check()?,
            (VERSION2 | crate::format::incremental::VERSION3, _) => {
                return Err(Error::corrupt(
                    "HEAD's version and base disagree (version 3, and only it, names a base)",
                ));
            }
            (v, _) => return Err(Error::UnsupportedVersion(v)),
        }
        Ok(h)
    }
}

/// What the writer knows only at the end: totals, the WAL position, what
/// was left out and what went wrong on the way.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Meta {
    /// Number of file entries.
    pub files: u64,
    /// Number of directory entries.
    pub dirs: u64,
    /// Sum of the file sizes.
    pub total_bytes: u64,
    /// Number of DATA frames.
    pub frames: u64,
    /// Top-level names left out.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<String>,
    /// The WAL position captured.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub wal: Vec<WalPosition>,
    /// Problems found while the data dir was read (at most
    /// [`MAX_META_WARNINGS`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// The path of each INDEX block's first record, in block order: a
    /// reader at offsets finds the blocks to read without a search.
    /// Optional (archives of the first version-2 writer lack it; a writer
    /// leaves it out past [`MAX_FIRST_PATHS_BYTES`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_paths: Option<Vec<String>>,
}

/// Most bytes of paths a writer puts in META's `first_paths`.
pub const MAX_FIRST_PATHS_BYTES: usize = 1024 * 1024;

impl Meta {
    /// Decodes a META body.
    pub fn parse(body: &[u8]) -> Result<Meta> {
        serde_json::from_slice(body).map_err(|e| Error::corrupt(format!("META is not valid: {e}")))
    }

    /// Checks `first_paths`, when present, against the blocks read: their
    /// number and [`FirstPaths`]'s digest of their first paths.
    pub fn check_first_paths(&self, blocks: u64, digest: [u8; 32]) -> Result<()> {
        let Some(paths) = &self.first_paths else {
            return Ok(());
        };
        let mut f = FirstPaths::default();
        for p in paths {
            f.add(p);
        }
        if paths.len() as u64 != blocks || f.digest() != digest {
            return Err(Error::corrupt(
                "META's first paths are not those of the INDEX blocks",
            ));
        }
        Ok(())
    }
}

/// The digest of the INDEX blocks' first paths, in order (each as a
/// little-endian u16 length and its bytes).
#[derive(Default, Clone)]
pub struct FirstPaths(Sha256);

impl FirstPaths {
    /// Adds the next block's first path.
    pub fn add(&mut self, path: &str) {
        self.0.update((path.len() as u16).to_le_bytes());
        self.0.update(path.as_bytes());
    }

    /// The digest so far.
    pub fn digest(&self) -> [u8; 32] {
        self.0.clone().finalize().into()
    }
}

/// Caps a warning list for META: the first ones, then a count of the rest.
pub fn cap_warnings(mut w: Vec<String>) -> Vec<String> {
    if w.len() > MAX_META_WARNINGS {
        let more = w.len() - (MAX_META_WARNINGS - 1);
        w.truncate(MAX_META_WARNINGS - 1);
        w.push(format!("and {more} more warnings"));
    }
    w
}

/// One index record: an entry and where its member is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Archive path.
    pub path: String,
    /// File or directory.
    pub kind: EntryKind,
    /// Permission bits as in the tar header.
    pub mode: u32,
    /// Modification time, seconds since the epoch.
    pub mtime: u64,
    /// Size (0 for a directory).
    pub size: u64,
    /// Archive offset of the DATA frame holding the member's header block.
    pub frame: u64,
    /// Offset of the header block in that frame's decompressed content.
    pub offset: u64,
    /// SHA-256 of a file's content (zero for a directory; not encoded).
    pub sha256: [u8; 32],
}

impl Record {
    /// The entry this record declares.
    pub fn entry(&self) -> crate::format::head::Entry {
        crate::format::head::Entry {
            path: self.path.clone(),
            kind: self.kind,
            size: self.size,
            mode: self.mode,
            // Readers refuse an mtime over i64::MAX before they get here.
            mtime: self.mtime as i64,
        }
    }
}

const KIND_FILE: u8 = 0;
const KIND_DIR: u8 = 1;

impl Record {
    /// Appends the record's encoding to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.push(match self.kind {
            EntryKind::File => KIND_FILE,
            EntryKind::Dir => KIND_DIR,
        });
        out.extend((self.path.len() as u16).to_le_bytes());
        out.extend(self.path.as_bytes());
        out.extend(self.mode.to_le_bytes());
        out.extend(self.mtime.to_le_bytes());
        out.extend(self.size.to_le_bytes());
        out.extend(self.frame.to_le_bytes());
        out.extend(self.offset.to_le_bytes());
        if self.kind == EntryKind::File {
            out.extend(self.sha256);
        }
    }

    /// Decodes the record at the start of `b`; returns it and its length.
    /// Only the encoding is checked here (path rules are the caller's).
    pub fn decode(b: &[u8]) -> Result<(Record, usize)> {
        let bad = |why: &str| Error::corrupt(format!("index record: {why}"));
        let need = |n: usize| {
            if b.len() < n {
                Err(bad("truncated"))
            } else {
                Ok(())
            }
        };
        need(3)?;
        let kind = match b[0] {
            KIND_FILE => EntryKind::File,
            KIND_DIR => EntryKind::Dir,
            k => return Err(bad(&format!("unknown kind {k}"))),
        };
        let plen = u16::from_le_bytes([b[1], b[2]]) as usize;
        if plen == 0 || plen > MAX_PATH_LEN {
            return Err(bad(&format!("path length {plen}")));
        }
        let fixed = 3 + plen + 4 + 8 * 4;
        let len = fixed + if kind == EntryKind::File { 32 } else { 0 };
        need(len)?;
        let path = std::str::from_utf8(&b[3..3 + plen])
            .map_err(|_| bad("path is not UTF-8"))?
            .to_string();
        let mut at = 3 + plen;
        let mode = u32::from_le_bytes(b[at..at + 4].try_into().unwrap());
        at += 4;
        let mut u64s = [0u64; 4];
        for v in &mut u64s {
            *v = u64::from_le_bytes(b[at..at + 8].try_into().unwrap());
            at += 8;
        }
        let mut sha256 = [0u8; 32];
        if kind == EntryKind::File {
            sha256.copy_from_slice(&b[at..at + 32]);
        }
        let [mtime, size, frame, offset] = u64s;
        Ok((
            Record {
                path,
                kind,
                mode,
                mtime,
                size,
                frame,
                offset,
                sha256,
            },
            len,
        ))
    }
}

/// The 8 bytes that open an INDEX frame's body: how many records the
/// block holds and their decompressed length; a zstd frame follows.
pub fn block_opening(records: u32, raw_len: u32) -> [u8; 8] {
    let mut b = [0u8; 8];
    b[..4].copy_from_slice(&records.to_le_bytes());
    b[4..].copy_from_slice(&raw_len.to_le_bytes());
    b
}

/// Decodes and bounds an INDEX frame's opening: `(records, raw_len)`.
pub fn parse_block_opening(b: &[u8; 8]) -> Result<(u64, u64)> {
    let records = u64::from(u32::from_le_bytes(b[..4].try_into().unwrap()));
    let raw = u64::from(u32::from_le_bytes(b[4..].try_into().unwrap()));
    if records == 0 || records > MAX_BLOCK_RECORDS {
        return Err(Error::corrupt(format!(
            "INDEX block declares {records} records (1 to {MAX_BLOCK_RECORDS})"
        )));
    }
    if raw > MAX_BLOCK_RAW {
        return Err(Error::corrupt(format!(
            "INDEX block declares {raw} bytes of records (at most {MAX_BLOCK_RAW})"
        )));
    }
    Ok((records, raw))
}

/// One TABLE row: where an INDEX block is and what it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Row {
    /// Archive offset of the INDEX frame.
    pub offset: u64,
    /// Length of the whole frame (16-byte opening included).
    pub len: u64,
    /// Records in the block.
    pub records: u64,
    /// Decompressed length of the records.
    pub raw_len: u64,
    /// SHA-256 of the frame's body.
    pub sha256: [u8; 32],
}

impl Row {
    /// The row's 64 bytes.
    pub fn encode(&self) -> [u8; ROW_LEN] {
        let mut b = [0u8; ROW_LEN];
        b[..8].copy_from_slice(&self.offset.to_le_bytes());
        b[8..16].copy_from_slice(&self.len.to_le_bytes());
        b[16..24].copy_from_slice(&self.records.to_le_bytes());
        b[24..32].copy_from_slice(&self.raw_len.to_le_bytes());
        b[32..].copy_from_slice(&self.sha256);
        b
    }

    /// Decodes a row.
    pub fn decode(b: &[u8; ROW_LEN]) -> Row {
        let u = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().unwrap());
        Row {
            offset: u(0),
            len: u(8),
            records: u(16),
            raw_len: u(24),
            sha256: b[32..].try_into().unwrap(),
        }
    }
}

/// The decoded TAIL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tail {
    /// The format version: 2, or 3 for an incremental archive (as HEAD's).
    pub version: u64,
    /// Archive offset of the TABLE frame.
    pub table_offset: u64,
    /// Archive offset of the META frame.
    pub meta_offset: u64,
    /// Archive offset of TAIL itself (the archive's length minus 128).
    pub body_len: u64,
    /// Number of index records.
    pub entries: u64,
    /// Number of INDEX blocks (TABLE rows).
    pub blocks: u64,
    /// SHA-256 of bytes `[table_offset, body_len)`: TABLE and META.
    pub meta_sha256: [u8; 32],
    /// SHA-256 of bytes `[0, body_len)`.
    pub body_sha256: [u8; 32],
}

impl Tail {
    /// The 128 bytes of the frame.
    pub fn encode(&self) -> [u8; TAIL_LEN] {
        let mut b = [0u8; TAIL_LEN];
        b[..16].copy_from_slice(&skippable_header(&TAG_TAIL, TAIL_LEN - 16).expect("small"));
        b[16..20].copy_from_slice(&(self.version as u32).to_le_bytes());
        // 20..24: flags, zero.
        let fields = [
            self.table_offset,
            self.meta_offset,
            self.body_len,
            self.entries,
            self.blocks,
        ];
        for (i, v) in fields.iter().enumerate() {
            b[24 + 8 * i..32 + 8 * i].copy_from_slice(&v.to_le_bytes());
        }
        b[64..96].copy_from_slice(&self.meta_sha256);
        b[96..].copy_from_slice(&self.body_sha256);
        b
    }

    /// The `body_sha256` of the TAIL that ends `end` (an archive's last
    /// bytes), if they end with one: what names a version-2 archive
    /// cheaply (an incremental records its base's).
    pub fn body_sha256_of(end: &[u8]) -> Option<[u8; 32]> {
        let t = end.get(end.len().checked_sub(TAIL_LEN)?..)?;
        Tail::is_tail(t).then(|| t[96..].try_into().expect("32 bytes"))
    }

    /// Whether the last 128 bytes of an archive are a TAIL frame (and not
    /// a version-1 FOOT).
    pub fn is_tail(b: &[u8]) -> bool {
        b.len() >= 16
            && u32::from_le_bytes(b[..4].try_into().unwrap()) == SKIPPABLE_MAGIC
            && b[8..16] == TAG_TAIL
    }

    /// Decodes the frame and checks everything it says about itself: its
    /// opening, version, flags, and that TABLE, META and TAIL follow each
    /// other with TABLE as long as its rows.
    pub fn decode(b: &[u8; TAIL_LEN]) -> Result<Tail> {
        if !Tail::is_tail(b) {
            return Err(Error::corrupt(
                "the last 128 bytes are not a SYDRTAIL frame (not a version-2 archive, or truncated)",
            ));
        }
        let n = u32::from_le_bytes(b[4..8].try_into().unwrap());
        if n as usize != TAIL_LEN - 8 {
            return Err(Error::corrupt(format!(
                "TAIL frame length is {n}, expected {}",
                TAIL_LEN - 8
            )));
        }
        let version = u32::from_le_bytes(b[16..20].try_into().unwrap());
        let version = u64::from(version);
        if version != VERSION2 && version != crate::format::incremental::VERSION3 {
            return Err(Error::UnsupportedVersion(version));
        }
        let flags = u32::from_le_bytes(b[20..24].try_into().unwrap());
        if flags != 0 {
            return Err(Error::corrupt(format!("TAIL has unknown flags {flags:#x}")));
        }
        let u = |i: usize| u64::from_le_bytes(b[24 + 8 * i..32 + 8 * i].try_into().unwrap());
        let t = Tail {
            version,
            table_offset: u(0),
            meta_offset: u(1),
            body_len: u(2),
            entries: u(3),
            blocks: u(4),
            meta_sha256: b[64..96].try_into().unwrap(),
            body_sha256: b[96..].try_into().unwrap(),
        };
        let table_len = t
            .blocks
            .checked_mul(ROW_LEN as u64)
            .and_then(|n| n.checked_add(16));
        if t.table_offset >= t.meta_offset
            || t.meta_offset >= t.body_len
            || Some(t.meta_offset - t.table_offset) != table_len
            || t.body_len - t.meta_offset < 16
            || t.body_len - t.meta_offset > 16 + MAX_META_BODY
        {
            return Err(Error::corrupt(
                "TAIL's offsets do not describe TABLE and META before it",
            ));
        }
        if t.entries > t.blocks.saturating_mul(MAX_BLOCK_RECORDS) {
            return Err(Error::corrupt(
                "TAIL declares more entries than its blocks can hold",
            ));
        }
        Ok(t)
    }

    /// Checks the archive's real size against `body_len`.
    pub fn check_size(&self, size: u64, name: &str) -> Result<()> {
        match self.body_len.checked_add(TAIL_LEN as u64) {
            Some(n) if n == size => Ok(()),
            _ => Err(Error::corrupt(format!(
                "TAIL says the archive is {} bytes but {name} is {size} bytes (truncated or padded)",
                self.body_len.saturating_add(TAIL_LEN as u64)
            ))),
        }
    }
}

/// Checks the end of an archive of `size` bytes whose last bytes are
/// `last` (at least the last 64, ideally the last [`TAIL_LEN`]): a
/// version-2 TAIL or a version-1 FOOT, and that the archive is as long as
/// it says.
pub fn check_end(last: &[u8], size: u64, name: &str) -> Result<()> {
    use crate::format::footer::{FOOT_LEN, Footer};
    if last.len() >= TAIL_LEN && Tail::is_tail(&last[last.len() - TAIL_LEN..]) {
        let t: [u8; TAIL_LEN] = last[last.len() - TAIL_LEN..].try_into().unwrap();
        return Tail::decode(&t)?.check_size(size, name);
    }
    if last.len() < FOOT_LEN {
        return Err(Error::corrupt(format!(
            "{name} is {size} bytes, too short to be an archive"
        )));
    }
    let f: [u8; FOOT_LEN] = last[last.len() - FOOT_LEN..].try_into().unwrap();
    Footer::decode(&f)
        .map_err(|e| match e {
            Error::Corrupt(_) => Error::corrupt(
                "the archive does not end with a SYDRTAIL or SYDRFOOT frame (not a sydra-archive, or truncated)",
            ),
            e => e,
        })?
        .check_size(size, name)
}

/// Checks that paths come in the writers' order (depth first, names by
/// bytes within a directory, each directory before its contents) with
/// every parent declared, in memory bounded by the tree's depth.
#[derive(Debug, Default)]
pub struct TreeOrder {
    /// The last path seen.
    last: String,
    /// The directories that enclose the last path (prefixes of it).
    open: Vec<usize>,
}

impl TreeOrder {
    /// Accepts the next path (already checked by [`crate::format::path::check_path`])
    /// or says why it is out of place.
    pub fn next(&mut self, path: &str, kind: EntryKind) -> std::result::Result<(), String> {
        if !self.last.is_empty()
            && self.last.split('/').cmp(path.split('/')) != std::cmp::Ordering::Less
        {
            return Err(if self.last == path {
                "duplicate path".into()
            } else {
                format!("out of order after {:?}", self.last)
            });
        }
        let parent = crate::format::path::parent(path);
        // Close the directories that do not enclose this path.
        while let Some(&end) = self.open.last() {
            let dir = &self.last[..end];
            if path.len() > end && path.starts_with(dir) && path.as_bytes()[end] == b'/' {
                break;
            }
            self.open.pop();
        }
        let enclosing = self.open.last().map(|&end| &self.last[..end]);
        if parent != enclosing {
            return Err(match parent {
                Some(p) => format!("parent directory {p:?} is not declared before it"),
                None => "out of order".into(),
            });
        }
        // The directories still open enclose `path`: prefixes of it too.
        self.last.clear();
        self.last.push_str(path);
        if kind == EntryKind::Dir {
            self.open.push(path.len());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(path: &str, kind: EntryKind) -> Record {
        Record {
            path: path.into(),
            kind,
            mode: 0o644,
            mtime: 1_700_000_000,
            size: if kind == EntryKind::File { 5 } else { 0 },
            frame: 40,
            offset: 1024,
            sha256: if kind == EntryKind::File {
                [7; 32]
            } else {
                [0; 32]
            },
        }
    }

    #[test]
    fn records_round_trip_and_refuse_garbage() {
        let mut b = Vec::new();
        rec("wal", EntryKind::Dir).encode(&mut b);
        rec("wal/current.wal", EntryKind::File).encode(&mut b);
        let (a, n) = Record::decode(&b).unwrap();
        assert_eq!(a, rec("wal", EntryKind::Dir));
        let (c, m) = Record::decode(&b[n..]).unwrap();
        assert_eq!(c, rec("wal/current.wal", EntryKind::File));
        assert_eq!(n + m, b.len());
        for cut in 0..m {
            assert!(Record::decode(&b[n..n + cut]).is_err(), "{cut}");
        }
        let mut bad = b.clone();
        bad[0] = 9;
        assert!(
            Record::decode(&bad)
                .unwrap_err()
                .to_string()
                .contains("kind")
        );
        let mut bad = b.clone();
        bad[1] = 0;
        bad[2] = 0;
        assert!(Record::decode(&bad).is_err());
    }

    #[test]
    fn tail_round_trips_and_checks_its_offsets() {
        let t = Tail {
            version: VERSION2,
            table_offset: 1000,
            meta_offset: 1000 + 16 + 64 * 2,
            body_len: 1000 + 16 + 128 + 100,
            entries: 7,
            blocks: 2,
            meta_sha256: [1; 32],
            body_sha256: [2; 32],
        };
        let b = t.encode();
        assert_eq!(Tail::decode(&b).unwrap(), t);
        t.check_size(t.body_len + 128, "x").unwrap();
        assert!(t.check_size(t.body_len + 127, "x").is_err());
        // A TAIL that points at itself, or rows that do not fit.
        for f in [
            |t: &mut Tail| t.meta_offset = t.body_len,
            |t: &mut Tail| t.table_offset = t.meta_offset,
            |t: &mut Tail| t.blocks = 3,
            |t: &mut Tail| t.blocks = u64::MAX,
            |t: &mut Tail| t.entries = 2 * 65_536 + 1,
        ] {
            let mut bad = t;
            f(&mut bad);
            assert!(Tail::decode(&bad.encode()).is_err(), "{bad:?}");
        }
        let mut b2 = b;
        b2[20] = 1;
        assert!(Tail::decode(&b2).unwrap_err().to_string().contains("flags"));
        let mut b3 = b;
        b3[16] = 4;
        assert!(matches!(
            Tail::decode(&b3),
            Err(Error::UnsupportedVersion(4))
        ));
        // Version 3 (an incremental) is read.
        b3[16] = 3;
        assert_eq!(Tail::decode(&b3).unwrap().version, 3);
    }

    #[test]
    fn tree_order_accepts_a_walk_and_refuses_the_rest() {
        let walk = [
            ("MANIFEST", EntryKind::File),
            ("segments", EntryKind::Dir),
            ("segments/1", EntryKind::Dir),
            ("segments/1/a", EntryKind::File),
            ("segments/1-2", EntryKind::Dir),
            ("segments/1-2/b", EntryKind::File),
            ("segments/10", EntryKind::Dir),
            ("tags.json", EntryKind::File),
            ("wal", EntryKind::Dir),
            ("wal/current.wal", EntryKind::File),
        ];
        let mut o = TreeOrder::default();
        for (p, k) in walk {
            o.next(p, k).unwrap_or_else(|e| panic!("{p}: {e}"));
        }
        let refuse = |seq: &[(&str, EntryKind)]| {
            let mut o = TreeOrder::default();
            let mut last = Ok(());
            for (p, k) in seq {
                last = o.next(p, *k);
                if last.is_err() {
                    break;
                }
            }
            last.unwrap_err()
        };
        assert!(refuse(&[("wal", EntryKind::Dir), ("wal", EntryKind::Dir)]).contains("duplicate"));
        assert!(refuse(&[("wal/x", EntryKind::File)]).contains("not declared"));
        assert!(
            refuse(&[
                ("segments", EntryKind::Dir),
                ("segments/1/a", EntryKind::File)
            ])
            .contains("not declared")
        );
        assert!(refuse(&[("wal", EntryKind::Dir), ("segments", EntryKind::Dir)]).contains("order"));
        // A file is not a directory to put things in.
        assert!(
            refuse(&[
                ("segments", EntryKind::File),
                ("segments/x", EntryKind::File)
            ])
            .contains("not declared")
        );
        // A path that only shares a prefix is not inside.
        assert!(
            refuse(&[
                ("segments", EntryKind::Dir),
                ("segments/1", EntryKind::Dir),
                ("segments/1-2/x", EntryKind::File)
            ])
            .contains("not declared")
        );
    }
}
