//! The full archive's members that the merged tree keeps unchanged, at
//! copy speed: kept members that follow each other in the full archive
//! make one *span* of its tar stream; every data frame that lies wholly
//! inside a span is copied byte for byte (with the records of the
//! members whose header it holds, their offsets kept), and only the
//! frames a span starts or ends inside are decoded, their kept bytes
//! compressed again with whatever comes before or after them.

use std::collections::VecDeque;
use std::io::Write;

use sha2::{Digest, Sha256};

use crate::chain::Link;
use crate::error::{Error, Result};
use crate::format::head::EntryKind;
use crate::format::incremental::{StateEntry, tree_cmp};
use crate::format::sums::hex;
use crate::format::v2::Record;
use crate::write::Splice;

use super::cursor::Cursor;

/// Kept bytes of the full archive's tar stream not yet written, and the
/// records of the members whose header block is in them (with its tar
/// position).
struct Span {
    start: u64,
    end: u64,
    records: VecDeque<(u64, Record)>,
}

/// The full archive of a chain, read forward beside the merged tree.
pub(super) struct Base<'l> {
    link: &'l Link,
    records: crate::chain::Records<'l>,
    cursor: Cursor<'l>,
    /// Where the next member must start: the end of the one before (tar
    /// members follow each other).
    next_start: u64,
    span: Option<Span>,
    /// The next record, read ahead: with its member's extent and header.
    peeked: Option<(Record, u64, u64, u64)>,
    /// The whole SHA-256 the link above recorded of it, checked against
    /// what was read (as the frames are copied) before the archive is
    /// finished; `None` where the archive's own encryption authenticates
    /// what is read.
    expect: Option<String>,
    /// Members written from it, and frames copied whole.
    pub(super) kept: u64,
    pub(super) copied_frames: u64,
}

/// Bytes of the GNU long-name record before a member's header.
fn long_len(path: &str) -> u64 {
    if path.len() > 100 {
        512 + (path.len() as u64 + 1).next_multiple_of(512)
    } else {
        0
    }
}

impl<'l> Base<'l> {
    pub(super) fn new(link: &'l Link, expect: Option<String>) -> Result<Base<'l>> {
        let cursor = match &expect {
            Some(_) => Cursor::hashed(link, 1 << 20)?,
            None => Cursor::new(link, 1 << 20)?,
        };
        Ok(Base {
            link,
            records: link.records(),
            cursor,
            expect,
            next_start: 0,
            span: None,
            peeked: None,
            kept: 0,
            copied_frames: 0,
        })
    }

    /// The next record of the full archive, with its member's tar extent
    /// `[start, end)` and its header block's position.
    fn next_record(&mut self) -> Result<Option<(Record, u64, u64, u64)>> {
        if let Some(p) = self.peeked.take() {
            return Ok(Some(p));
        }
        self.read_record()
    }

    /// The next record, left to be taken by [`Base::next_record`].
    fn peek_record(&mut self) -> Result<Option<&(Record, u64, u64, u64)>> {
        if self.peeked.is_none() {
            self.peeked = self.read_record()?;
        }
        Ok(self.peeked.as_ref())
    }

    fn read_record(&mut self) -> Result<Option<(Record, u64, u64, u64)>> {
        let Some(rec) = self.records.next().transpose()? else {
            return Ok(None);
        };
        let keep = self.span.as_ref().map(|s| s.start);
        let i = self.cursor.frame_at(rec.frame, keep)?;
        let f = self.cursor.frame(i);
        if rec.offset >= f.tar_len {
            return Err(Error::corrupt(format!(
                "{}: {} is at offset {} of a frame of {} bytes",
                self.link.loc, rec.path, rec.offset, f.tar_len
            )));
        }
        let header = f.tar_start + rec.offset;
        let start = header
            .checked_sub(long_len(&rec.path))
            .filter(|&s| s == self.next_start)
            .ok_or_else(|| {
                Error::corrupt(format!(
                    "{}: {} does not start where the member before it ends",
                    self.link.loc, rec.path
                ))
            })?;
        let size = match rec.kind {
            EntryKind::File => rec.size.next_multiple_of(512),
            EntryKind::Dir => 0,
        };
        let end = header + 512 + size;
        self.next_start = end;
        Ok(Some((rec, start, end, header)))
    }

    /// Writes the member `e`, which the merged tree keeps as the full
    /// archive holds it (every member before it that the tree does not
    /// keep is left out).
    pub(super) fn keep<W: Write>(
        &mut self,
        s: &mut Splice<'_, '_, W>,
        e: &StateEntry,
    ) -> Result<()> {
        loop {
            let Some((rec, start, end, header)) = self.next_record()? else {
                return Err(Error::corrupt(format!(
                    "{}: the chain keeps {}, which it does not hold",
                    self.link.loc, e.path
                )));
            };
            if rec.path != e.path {
                // Left out: what comes before it is written now.
                self.flush(s)?;
                continue;
            }
            if (rec.frame, rec.offset, rec.size, rec.kind) != (e.frame, e.offset, e.size, e.kind) {
                return Err(Error::corrupt(format!(
                    "{}: {} is not the member the chain's model took",
                    self.link.loc, e.path
                )));
            }
            match &mut self.span {
                Some(span) if span.end == start => span.end = end,
                _ => {
                    self.flush(s)?;
                    self.span = Some(Span {
                        start,
                        end,
                        records: VecDeque::new(),
                    });
                }
            }
            let span = self.span.as_mut().expect("just made");
            span.records.push_back((header, rec));
            self.kept += 1;
            return self.drain(s, false);
        }
    }

    /// Writes what the span holds: before a member from elsewhere, or at
    /// the end.
    pub(super) fn flush<W: Write>(&mut self, s: &mut Splice<'_, '_, W>) -> Result<()> {
        self.drain(s, true)
    }

    /// Writes the span's frames that lie wholly inside it by copying
    /// them, and decodes the bytes of a frame it starts inside; with
    /// `last`, also the bytes of the frame it ends inside.
    fn drain<W: Write>(&mut self, s: &mut Splice<'_, '_, W>, last: bool) -> Result<()> {
        let Base {
            cursor,
            span,
            copied_frames,
            ..
        } = self;
        let Some(sp) = span else { return Ok(()) };
        while sp.start < sp.end {
            let i = cursor.frame_for(sp.start)?;
            let (fs, fe) = {
                let f = cursor.frame(i);
                (f.tar_start, f.tar_end())
            };
            if sp.start == fs && fe <= sp.end {
                let bytes = cursor.take_bytes(i)?;
                let mut records = Vec::new();
                while sp.records.front().is_some_and(|(h, _)| *h < fe) {
                    let (h, mut r) = sp.records.pop_front().expect("checked");
                    r.offset = h - fs;
                    records.push(r);
                }
                s.raw(bytes, records)?;
                *copied_frames += 1;
                sp.start = fe;
                cursor.release(fe);
            } else if sp.start > fs || last {
                let stop = fe.min(sp.end);
                let content = cursor.content(i)?;
                let mut at = sp.start;
                while sp.records.front().is_some_and(|(h, _)| *h < stop) {
                    let (h, r) = sp.records.pop_front().expect("checked");
                    s.data(&content[(at - fs) as usize..(h - fs) as usize])?;
                    s.declare(r)?;
                    at = h;
                }
                s.data(&content[(at - fs) as usize..(stop - fs) as usize])?;
                sp.start = stop;
                if stop == fe {
                    cursor.release(fe);
                }
            } else {
                // It starts a frame that may yet be copied whole.
                break;
            }
        }
        if last {
            *span = None;
        }
        Ok(())
    }

    /// For a file the tree appended to, which started as the full
    /// archive's member `first`: when that member is the next one the
    /// full archive holds after everything before `path` (nothing kept in
    /// between), writes its content (no header, no padding) with the
    /// frames wholly inside it copied, every byte hashed into `h` (a
    /// copied frame is decoded only for that), and returns true. False,
    /// with nothing written, otherwise.
    pub(super) fn copy_data<W: Write>(
        &mut self,
        s: &mut Splice<'_, '_, W>,
        path: &str,
        first: &Record,
        h: &mut Sha256,
    ) -> Result<bool> {
        // Members before `path` are not kept (the tree is in order).
        while let Some((r, ..)) = self.peek_record()? {
            if tree_cmp(&r.path, path).is_ge() {
                break;
            }
            self.next_record()?;
            self.flush(s)?;
        }
        match self.peek_record()? {
            Some((r, ..))
                if r.path == first.path && (r.frame, r.offset) == (first.frame, first.offset) => {}
            _ => return Ok(false),
        }
        let (rec, _, _, header) = self.next_record()?.expect("peeked");
        self.flush(s)?;
        let (mut pos, end) = (header + 512, header + 512 + rec.size);
        let cursor = &mut self.cursor;
        while pos < end {
            let i = cursor.frame_for(pos)?;
            let (fs, fe) = (cursor.frame(i).tar_start, cursor.frame(i).tar_end());
            if pos == fs && fe <= end {
                h.update(cursor.content(i)?);
                let bytes = cursor.take_bytes(i)?;
                s.raw(bytes, Vec::new())?;
                self.copied_frames += 1;
                pos = fe;
            } else {
                let stop = fe.min(end);
                let piece = &cursor.content(i)?[(pos - fs) as usize..(stop - fs) as usize];
                h.update(piece);
                s.data(piece)?;
                pos = stop;
            }
            if pos == fe {
                cursor.release(fe);
            }
        }
        Ok(true)
    }

    /// Writes the rest of the span; the full archive's records left (not
    /// kept) are read to the end, so its index is checked whole.
    pub(super) fn finish<W: Write>(&mut self, s: &mut Splice<'_, '_, W>) -> Result<()> {
        self.flush(s)?;
        for r in self.records.by_ref() {
            r?;
        }
        // The frames copied were the archive recorded: its bytes as read
        // hash to what the link above recorded (a file changed under an
        // unchanged stat, which the verified-digest cache cannot see,
        // fails here, before anything is published).
        let Some(want) = &self.expect else {
            return Ok(());
        };
        let got = match self.cursor.finish_hash()? {
            Some(got) => got,
            None => self.link.src.stored_sha256()?.unwrap_or([0; 32]),
        };
        if !hex(&got).eq_ignore_ascii_case(want) {
            return Err(Error::corrupt(format!(
                "{} hashes to {}, not the {want} the archive above it was made on (corrupted or replaced while it was merged)",
                self.link.loc,
                hex(&got)
            )));
        }
        Ok(())
    }
}
