//! The index as it is written: a record per member, completed once its
//! frame is written (its archive offset known) and its digest computed,
//! gathered into blocks that are compressed and written as INDEX frames
//! between the data frames, as soon as they fill. Only the records of the
//! frames in flight and one block are ever held.

use std::collections::VecDeque;
use std::io::{self, Write};

use sha2::{Digest, Sha256};

use crate::format::frame::write_skippable;
use crate::format::v2::{
    MAX_BLOCK_RECORDS, MAX_FIRST_PATHS_BYTES, Record, Row, TAG_INDEX, block_opening,
};

use super::hash::HashWriter;

/// A block is written once its records reach this many bytes.
pub(super) const BLOCK_RAW: usize = 1024 * 1024;
/// zstd level of INDEX blocks.
const INDEX_LEVEL: i32 = 6;

struct Pending {
    /// `frame` holds the frame's sequence number until it is written.
    rec: Record,
    has_digest: bool,
}

pub(super) struct IndexWriter {
    pending: VecDeque<Pending>,
    /// Archive offsets of written frames that pending records may need,
    /// by sequence number (oldest first).
    offsets: VecDeque<(u64, u64)>,
    /// Frames written so far.
    frames_written: u64,
    block: Vec<u8>,
    block_records: u32,
    pub(super) rows: Vec<Row>,
    pub(super) entries: u64,
    /// Each block's first path (for META), until they pass
    /// [`MAX_FIRST_PATHS_BYTES`]: then `None`.
    pub(super) first_paths: Option<Vec<String>>,
    first_paths_bytes: usize,
    scratch: Vec<u8>,
}

impl IndexWriter {
    pub(super) fn new() -> Self {
        IndexWriter {
            pending: VecDeque::new(),
            offsets: VecDeque::new(),
            frames_written: 0,
            block: Vec::with_capacity(BLOCK_RAW + 8 * 1024),
            block_records: 0,
            rows: Vec::new(),
            entries: 0,
            first_paths: Some(Vec::new()),
            first_paths_bytes: 0,
            scratch: Vec::new(),
        }
    }

    /// Adds the next member's record; `rec.frame` is its frame's sequence
    /// number. A file's digest follows with [`IndexWriter::set_digest`].
    pub(super) fn push(&mut self, rec: Record) {
        let has_digest = rec.kind == crate::format::head::EntryKind::Dir;
        self.pending.push_back(Pending { rec, has_digest });
    }

    /// The digest of the file pushed last.
    pub(super) fn set_digest(&mut self, sha256: [u8; 32]) {
        let last = self.pending.back_mut().expect("a file was pushed");
        last.rec.sha256 = sha256;
        last.has_digest = true;
    }

    /// Frames written out: (sequence number, archive offset).
    pub(super) fn written(&mut self, frames: Vec<(u64, u64)>) {
        for (seq, at) in frames {
            debug_assert_eq!(seq, self.frames_written);
            self.frames_written = seq + 1;
            self.offsets.push_back((seq, at));
        }
    }

    /// Completes every record that can be, writing full blocks to `out`.
    pub(super) fn drain<W: Write>(&mut self, out: &mut HashWriter<'_, W>) -> io::Result<()> {
        while let Some(front) = self.pending.front() {
            let seq = front.rec.frame;
            if !front.has_digest || seq >= self.frames_written {
                break;
            }
            while self.offsets.front().is_some_and(|&(s, _)| s < seq) {
                self.offsets.pop_front();
            }
            let at = match self.offsets.front() {
                Some(&(s, at)) if s == seq => at,
                _ => unreachable!("offsets of frames not yet indexed are kept"),
            };
            let mut p = self.pending.pop_front().expect("front exists");
            p.rec.frame = at;
            if self.block_records == 0 {
                self.first_path(&p.rec.path);
            }
            p.rec.encode(&mut self.block);
            self.block_records += 1;
            self.entries += 1;
            if self.block.len() >= BLOCK_RAW || u64::from(self.block_records) >= MAX_BLOCK_RECORDS {
                self.write_block(out)?;
            }
        }
        Ok(())
    }

    fn first_path(&mut self, path: &str) {
        // As META will hold it: JSON-escaped, quoted, a comma.
        self.first_paths_bytes +=
            serde_json::to_string(path).map_or(6 * path.len(), |j| j.len()) + 1;
        if self.first_paths_bytes > MAX_FIRST_PATHS_BYTES {
            self.first_paths = None;
        }
        if let Some(v) = &mut self.first_paths {
            v.push(path.to_string());
        }
    }

    /// Records still waiting for a frame or a digest.
    pub(super) fn waiting(&self) -> usize {
        self.pending.len()
    }

    /// Writes the records gathered so far as an INDEX frame.
    pub(super) fn write_block<W: Write>(&mut self, out: &mut HashWriter<'_, W>) -> io::Result<()> {
        if self.block_records == 0 {
            return Ok(());
        }
        self.scratch.clear();
        self.scratch
            .extend(block_opening(self.block_records, self.block.len() as u32));
        let mut c = zstd::bulk::Compressor::new(INDEX_LEVEL)?;
        c.include_checksum(true)?;
        c.include_contentsize(true)?;
        let z = c.compress(&self.block)?;
        self.scratch.extend(&z);
        let at = out.count;
        write_skippable(out, &TAG_INDEX, &self.scratch)?;
        let len = 16 + self.scratch.len() as u64;
        self.rows.push(Row {
            offset: at,
            len,
            records: u64::from(self.block_records),
            raw_len: self.block.len() as u64,
            sha256: Sha256::digest(&self.scratch).into(),
        });
        self.block.clear();
        self.block_records = 0;
        Ok(())
    }
}
