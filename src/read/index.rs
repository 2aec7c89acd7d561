//! The index side of a version-2 reader: every INDEX block met in the
//! stream is bounded, decompressed no further than it declares, counted,
//! and hashed twice: its frame (for the TABLE row it must have) and its
//! records (for the records the data rebuilds). Nothing of it is kept.

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::format::frame::check_skippable_header;
use crate::format::head::EntryKind;
use crate::format::path::check_path;
use crate::format::v2::{
    FirstPaths, MAX_BLOCK_BODY, Record, Row, TAG_INDEX, TreeOrder, parse_block_opening,
};
use crate::read::input::Input;

/// Reads the INDEX frame at the current position of `input`: its archive
/// offset, its length (header included) and its body, bounded by
/// [`MAX_BLOCK_BODY`].
pub fn read_index_frame<R: std::io::Read>(input: &mut Input<R>) -> Result<(u64, u64, Vec<u8>)> {
    let at = input.position();
    let mut h = [0u8; 16];
    input.read_exact(&mut h, "an INDEX frame header")?;
    let len = check_skippable_header(&h, &TAG_INDEX, MAX_BLOCK_BODY, at)?;
    let body = input.read_vec(len, "an INDEX frame")?;
    Ok((at, 16 + len, body))
}

/// What a reader wants from each record (a listing), besides the hashes.
pub type OnRecord<'a> = Box<dyn FnMut(&Record) -> Result<()> + 'a>;

/// The INDEX blocks seen so far.
pub struct IndexSide<'a> {
    /// SHA-256 of the TABLE rows these blocks must have, in order.
    pub rows: Sha256,
    /// SHA-256 of the records, concatenated in order, each without its
    /// nanoseconds (kind 0 or 1).
    pub content: Sha256,
    /// Blocks seen.
    pub blocks: u64,
    /// Records seen.
    pub records: u64,
    /// The blocks' first paths (for META's `first_paths`).
    pub firsts: FirstPaths,
    /// The frame offset of the last record seen: offsets never go back.
    last_frame: u64,
    /// Whether the records carry nanoseconds: all of them or none; known
    /// up front (TAIL read first) or from the first record (then TAIL's
    /// flag is compared at the end, [`IndexSide::check_nsec`]).
    pub nsec: Option<bool>,
    /// `nsec` is TAIL's word, not the first record's.
    nsec_from_tail: bool,
    /// In one pass: the members read so far (a block lists only members
    /// before it, so never more records than that).
    members: Option<std::sync::Arc<std::sync::atomic::AtomicU64>>,
    /// Checks the records themselves (when they are listed rather than
    /// compared with the data): path rules, order, sizes.
    check: Option<Checked>,
    on_record: Option<OnRecord<'a>>,
}

struct Checked {
    /// `None` when only some blocks are read: parents may be in a block
    /// not read, so only the strict order of the records read is checked
    /// (against `last`).
    order: Option<TreeOrder>,
    last: String,
    counted: Counted,
    /// Paths of an incremental archive (version 3) are allowed.
    incremental: bool,
}

/// Totals of entries counted one by one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counted {
    /// Files.
    pub files: u64,
    /// Directories.
    pub dirs: u64,
    /// Sum of file sizes.
    pub bytes: u64,
}

impl Counted {
    /// Counts one entry.
    pub fn add(&mut self, kind: EntryKind, size: u64) -> Result<()> {
        match kind {
            EntryKind::Dir => self.dirs += 1,
            EntryKind::File => {
                self.files += 1;
                self.bytes = self
                    .bytes
                    .checked_add(size)
                    .ok_or_else(|| Error::corrupt("file sizes overflow"))?;
            }
        }
        Ok(())
    }
}

impl<'a> IndexSide<'a> {
    /// Records must carry nanoseconds exactly when `nsec` (TAIL's flag,
    /// read first).
    pub fn expect_nsec(mut self, nsec: bool) -> Self {
        self.nsec = Some(nsec);
        self.nsec_from_tail = true;
        self
    }

    /// Refuses a block that would make the records more than `members`,
    /// the members read so far (one pass).
    pub fn members_seen(mut self, members: std::sync::Arc<std::sync::atomic::AtomicU64>) -> Self {
        self.members = Some(members);
        self
    }

    /// TAIL's flag against the records seen (one pass: TAIL comes last).
    pub fn check_nsec(&self, tail: &crate::format::v2::Tail) -> Result<()> {
        match self.nsec {
            Some(n) if n != tail.nsec() => Err(Error::corrupt(format!(
                "TAIL's flags say the records {} nanoseconds, and they {}",
                if tail.nsec() { "carry" } else { "lack" },
                if n { "do carry them" } else { "do not" }
            ))),
            _ => Ok(()),
        }
    }

    /// Also hands each record, once its block is checked, to `f` (a sink
    /// that wants what only the index holds: the nanoseconds of mtimes).
    pub fn on_record(mut self, f: OnRecord<'a>) -> Self {
        self.on_record = Some(f);
        self
    }

    /// An index side that only hashes (the data rebuilds the records).
    pub fn hashing() -> Self {
        IndexSide {
            rows: Sha256::new(),
            content: Sha256::new(),
            blocks: 0,
            records: 0,
            firsts: FirstPaths::default(),
            last_frame: 0,
            nsec: None,
            nsec_from_tail: false,
            members: None,
            check: None,
            on_record: None,
        }
    }

    /// An index side that checks every record on its own and hands it to
    /// `on_record` (a listing that does not decompress the data).
    pub fn checking(on_record: Option<OnRecord<'a>>) -> Self {
        IndexSide {
            check: Some(Checked {
                order: Some(TreeOrder::default()),
                last: String::new(),
                counted: Counted::default(),
                incremental: false,
            }),
            on_record,
            ..IndexSide::hashing()
        }
    }

    /// [`IndexSide::checking`] for a reader that reads only some blocks:
    /// each record's own rules and the frame offsets are checked, not the
    /// tree order, whose parents may be in a block not read.
    pub fn checking_some(on_record: Option<OnRecord<'a>>) -> Self {
        IndexSide {
            check: Some(Checked {
                order: None,
                last: String::new(),
                counted: Counted::default(),
                incremental: false,
            }),
            on_record,
            ..IndexSide::hashing()
        }
    }

    /// Accepts the paths of an incremental archive (version 3) when
    /// `incremental`.
    pub fn incremental(mut self, incremental: bool) -> Self {
        if let Some(c) = &mut self.check {
            c.incremental = incremental;
        }
        self
    }

    /// Totals of the checked records (for [`IndexSide::checking`]).
    pub fn counted(&self) -> Option<Counted> {
        self.check.as_ref().map(|c| c.counted)
    }

    /// An INDEX frame whose body is `body`, at archive offset `at`
    /// (`frame_len` bytes in all). Records must point before `data_end`
    /// (the frame's own offset: data frames come first).
    pub fn block(&mut self, at: u64, frame_len: u64, body: &[u8]) -> Result<()> {
        let n = self.blocks + 1;
        let bad = |why: String| Error::corrupt(format!("INDEX block {n} at offset {at}: {why}"));
        if body.len() < 8 {
            return Err(bad("shorter than its opening".into()));
        }
        let (records, raw_len) =
            parse_block_opening(body[..8].try_into().unwrap()).map_err(|e| bad(e.to_string()))?;
        // Never more than declared: a block that inflates past it fails.
        let raw = zstd::bulk::Decompressor::new()
            .and_then(|mut d| {
                d.window_log_max(crate::format::frame::MAX_WINDOW_LOG)?;
                d.decompress(&body[8..], raw_len as usize)
            })
            .map_err(|e| {
                bad(format!(
                    "does not decompress to its declared {raw_len} bytes: {e}"
                ))
            })?;
        if raw.len() as u64 != raw_len {
            return Err(bad(format!(
                "decompresses to {} bytes, not its declared {raw_len}",
                raw.len()
            )));
        }
        // The whole frame body must be one zstd frame.
        let used = zstd::zstd_safe::find_frame_compressed_size(&body[8..])
            .map_err(|_| bad("its zstd frame is malformed".into()))?;
        if used != body.len() - 8 {
            return Err(bad("bytes after its zstd frame".into()));
        }
        // Every record is checked, and counted, before any is handed on.
        let mut off = 0usize;
        let mut count = 0u64;
        while off < raw.len() {
            let (rec, len) = Record::decode(&raw[off..]).map_err(|e| bad(e.to_string()))?;
            // Hashed as the records rebuilt from the tar members read:
            // without their nanoseconds (FORMAT.md A.4), which TABLE's
            // digest of this frame covers.
            Record::hash_without_nsec(&raw[off..off + len], &mut self.content);
            off += len;
            match self.nsec {
                Some(n) if self.nsec_from_tail => crate::format::v2::check_nsec(&rec, n)?,
                Some(n) if n != rec.mtime_nsec.is_some() => {
                    return Err(Error::corrupt(format!(
                        "index record {:?} {} nanoseconds, unlike the records before it (all or none carry them)",
                        rec.path,
                        if n { "lacks" } else { "carries" }
                    )));
                }
                Some(_) => {}
                None => self.nsec = Some(rec.mtime_nsec.is_some()),
            }
            if count == 0 {
                self.firsts.add(&rec.path);
            }
            count += 1;
            // A block lists members whose headers are in data frames
            // written before it, in order.
            if rec.frame < self.last_frame || rec.frame >= at {
                return Err(Error::corrupt(format!(
                    "index record {:?} points at offset {} outside the data before its block",
                    rec.path, rec.frame
                )));
            }
            self.last_frame = rec.frame;
            if let Some(c) = &mut self.check {
                check_record(c, &rec)?;
            }
        }
        if count != records {
            return Err(bad(format!("holds {count} records but declares {records}")));
        }
        if let Some(m) = &self.members {
            let seen = m.load(std::sync::atomic::Ordering::Relaxed);
            if self.records + count > seen {
                return Err(bad(format!(
                    "lists {} records in all, more than the {seen} members before it",
                    self.records + count
                )));
            }
        }
        if let Some(f) = &mut self.on_record {
            let mut off = 0usize;
            while off < raw.len() {
                let (rec, len) = Record::decode(&raw[off..]).expect("decoded above");
                off += len;
                f(&rec)?;
            }
        }
        self.blocks += 1;
        self.records += records;
        self.rows.update(
            Row {
                offset: at,
                len: frame_len,
                records,
                raw_len,
                sha256: Sha256::digest(body).into(),
            }
            .encode(),
        );
        Ok(())
    }
}

fn check_record(c: &mut Checked, rec: &Record) -> Result<()> {
    let is_dir = rec.kind == EntryKind::Dir;
    if c.incremental {
        crate::format::incremental::check_incremental_path(&rec.path, is_dir)
    } else {
        check_path(&rec.path, is_dir)
    }
    .map_err(|why| Error::hostile(&rec.path, why))?;
    match &mut c.order {
        Some(order) => order
            .next(&rec.path, rec.kind)
            .map_err(|why| Error::hostile(&rec.path, format!("index: {why}")))?,
        None => {
            if !c.last.is_empty()
                && c.last.split('/').cmp(rec.path.split('/')) != std::cmp::Ordering::Less
            {
                return Err(Error::hostile(
                    &rec.path,
                    format!("index: out of order or repeated after {:?}", c.last),
                ));
            }
            c.last.clear();
            c.last.push_str(&rec.path);
        }
    }
    if rec.mtime > i64::MAX as u64 {
        return Err(Error::corrupt(format!(
            "index record {:?} has an impossible mtime",
            rec.path
        )));
    }
    if is_dir && rec.size != 0 {
        return Err(Error::hostile(&rec.path, "directory with a non-zero size"));
    }
    c.counted.add(rec.kind, rec.size)
}

/// Checks that the 512-byte header `h` is the member `rec` describes.
pub(crate) fn check_header(h: &[u8; 512], rec: &Record) -> std::result::Result<(), String> {
    let header = tar::Header::from_byte_slice(h);
    let kind = match header.entry_type() {
        tar::EntryType::Regular => EntryKind::File,
        tar::EntryType::Directory => EntryKind::Dir,
        _ => return Err("the index points at something other than its member".into()),
    };
    let size = header
        .size()
        .map_err(|_| "invalid tar header".to_string())?;
    let name = &header.as_old().name;
    let mut name = &name[..name.iter().position(|&b| b == 0).unwrap_or(100)];
    if kind == EntryKind::Dir && name.len() > 1 && name.ends_with(b"/") {
        name = &name[..name.len() - 1];
    }
    let path = rec.path.as_bytes();
    let want = &path[..path.len().min(100)];
    if kind != rec.kind || size != rec.size || name != want {
        return Err("the index points at another member".into());
    }
    Ok(())
}
