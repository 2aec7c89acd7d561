//! `merge`: the archive of the tree a chain describes, made from the
//! chain's archives alone (no data dir), as a *synthetic full*.
//!
//! The tree is the chain model's ([`crate::chain::state`]), in tree
//! order. A member the full archive holds and the tree keeps unchanged
//! comes from the full archive at copy speed (see `base`: whole data
//! frames copied, records moved to the new offsets); anything else (a
//! member an incremental added or changed, a WAL file appended to) is
//! written as `create` writes it: a new header, its content read from the
//! link that holds it (`cursor`, each link read forward once) or put
//! together from its lineage ([`crate::chain::write_content`]), hashed as
//! it is written and checked against the digest the tree records.
//!
//! What is trusted: the links below the newest are authenticated by the
//! whole SHA-256 the link above recorded before a byte of them is used
//! ([`crate::chain::open_chain`]); the frames copied come only from the
//! full archive, which is such a link. The newest archive's members are
//! hashed as they are read.

mod base;
mod cursor;
mod onto;

use std::io::Write;
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::chain::{Link, lineage};
use crate::error::{Error, Result};
use crate::format::head::EntryKind;
use crate::format::incremental::StateEntry;
use crate::format::sums::hex;
use crate::format::v2::Record;
use crate::format::v2::{Head2, Merged, MergedArchive};
use crate::write::{CreateOptions, CreateSummary, Splice, write_spliced};

use base::Base;
use cursor::Cursor;

/// Bytes the links' read windows may hold together before the ones not
/// in use let go of theirs.
const HELD: usize = 16 << 20;

/// What a merge did besides what every archive reports.
#[derive(Debug, Clone, Default)]
pub struct MergeCounts {
    /// Archives merged.
    pub archives: u64,
    /// Members taken from the full archive unchanged.
    pub kept: u64,
    /// Data frames copied whole from it.
    pub copied_frames: u64,
    /// For `--onto`: operations written (`kept` then counts the members
    /// written).
    pub operations: u64,
}

/// Writes the full archive (format version 2) of the tree the chain
/// `links` (the full archive first) describes to `out`. Nothing is read
/// from a data dir. Its HEAD's time is `opts`' or else the newest
/// archive's (the moment the tree is of).
pub fn write_merged<W: Write>(
    links: &[Link],
    out: W,
    out_name: &Path,
    opts: &CreateOptions,
) -> Result<(W, CreateSummary, MergeCounts)> {
    let (first, newest) = (&links[0], links.last().expect("a chain is never empty"));
    let frame_bytes = opts.frame_bytes.clamp(4 * 1024, 64 * 1024 * 1024);
    // The moment the tree is of: the newest archive's.
    let created = opts.created_unix_ms.unwrap_or(newest.head.created_unix_ms);
    let mut head = Head2::new(
        created,
        newest.head.source.clone(),
        opts.level,
        frame_bytes as u64,
    );
    head.merged = Some(Merged {
        archives: links.len() as u64,
        newest: about(newest),
        oldest: about(first),
    });
    let mut counts = MergeCounts {
        archives: links.len() as u64,
        ..Default::default()
    };
    let wal = newest.meta.wal.clone();
    let warnings = newest.meta.warnings.clone();
    // Progress: of the files' bytes, out of what the chain holds (the
    // tree holds at most that much).
    if let Some(p) = &opts.progress {
        p.set_total(links.iter().map(|l| l.meta.total_bytes).sum());
    }
    let (w, summary) = write_spliced(&head, out, out_name, opts, &wal, warnings, |s| {
        // The full archive's copied frames are checked as they are read
        // against the SHA-256 the link above recorded (not the verified-
        // digest cache: bytes copied without decoding must be the ones
        // hashed). An encrypted one is authenticated as it is decrypted.
        let expect = (!first.encrypted)
            .then(|| links[1].head.base.as_ref().map(|b| b.sha256.clone()))
            .flatten();
        let mut base = Base::new(first, expect)?;
        let mut src = Sources::new(links);
        for e in crate::chain::state(links)? {
            let e = e?;
            if e.origin == 0 && !e.appended {
                base.keep(s, &e)?;
                continue;
            }
            base.flush(s)?;
            write_member(s, &mut base, &mut src, &e)?;
        }
        base.finish(s)?;
        counts.kept = base.kept;
        counts.copied_frames = base.copied_frames;
        Ok(())
    })?;
    Ok((w, summary, counts))
}

/// Writes one incremental archive (format version 3) on the link `at` of
/// `links` (recorded as `base`), equivalent to every link above it: the
/// tree of `links` on the tree of `links[..=at]`. Nothing is read from a
/// data dir, nor a byte of the links at or below `at` but their records
/// (see `onto`).
pub fn write_merged_onto<W: Write>(
    links: &[Link],
    at: usize,
    base: crate::format::incremental::BaseRef,
    out: W,
    out_name: &Path,
    opts: &CreateOptions,
) -> Result<(W, CreateSummary, MergeCounts)> {
    let newest = links.last().expect("a chain is never empty");
    let frame_bytes = opts.frame_bytes.clamp(4 * 1024, 64 * 1024 * 1024);
    let created = opts.created_unix_ms.unwrap_or(newest.head.created_unix_ms);
    let mut head = Head2::new(
        created,
        newest.head.source.clone(),
        opts.level,
        frame_bytes as u64,
    )
    .incremental(base);
    head.merged = Some(Merged {
        archives: (links.len() - at - 1) as u64,
        newest: about(newest),
        oldest: about(&links[at + 1]),
    });
    let mut counts = MergeCounts {
        archives: (links.len() - at - 1) as u64,
        ..Default::default()
    };
    let wal = newest.meta.wal.clone();
    let warnings = newest.meta.warnings.clone();
    if let Some(p) = &opts.progress {
        p.set_total(links[at + 1..].iter().map(|l| l.meta.total_bytes).sum());
    }
    let (w, summary) = write_spliced(&head, out, out_name, opts, &wal, warnings, |s| {
        let mut src = Sources::new(links);
        let mut o = onto::Onto::new(links, at, (created / 1000) as i64)?;
        for e in crate::chain::state(links)? {
            o.entry(s, &mut src, e?)?;
        }
        counts.kept = o.members;
        counts.operations = o.operations;
        o.finish(s, &mut src)
    })?;
    Ok((w, summary, counts))
}

fn about(l: &Link) -> MergedArchive {
    MergedArchive {
        location: l.loc.to_string(),
        size: l.src.size,
        body_sha256: hex(&l.tail.body_sha256),
    }
}

/// Writes the member `e` of the tree with a new header, its content
/// from the link that holds it or its lineage, checked against its digest.
fn write_member<'l, W: Write>(
    s: &mut Splice<'_, '_, W>,
    base: &mut Base<'l>,
    src: &mut Sources<'l>,
    e: &StateEntry,
) -> Result<()> {
    s.begin(&e.entry(), e.sha256)?;
    if e.kind == EntryKind::Dir {
        return Ok(());
    }
    let mut h = Sha256::new();
    let pieces = src.pieces(e)?;
    for (n, (level, rec)) in pieces.iter().enumerate() {
        // A file appended to that started as the full archive's member:
        // its frames are copied (each decoded only to hash it).
        if n == 0 && *level == 0 && base.copy_data(s, &e.path, rec, &mut h)? {
            continue;
        }
        src.content(*level, rec, &mut |b: &[u8]| {
            h.update(b);
            s.data(b)
        })?;
    }
    src.check(e, h)?;
    s.pad(e.size)
}

/// The links of a chain, each read forward as its members are needed.
pub(super) struct Sources<'l> {
    links: &'l [Link],
    cursors: Vec<Option<Cursor<'l>>>,
}

impl<'l> Sources<'l> {
    pub(super) fn new(links: &'l [Link]) -> Sources<'l> {
        Sources {
            links,
            cursors: links.iter().map(|_| None).collect(),
        }
    }

    /// The members that make the file `e`, each with its link.
    pub(super) fn pieces(&self, e: &StateEntry) -> Result<Vec<(usize, Record)>> {
        Ok(if e.appended {
            lineage(self.links, e)?
                .into_iter()
                .map(|p| (p.level, p.member))
                .collect()
        } else {
            vec![(e.origin, e.record())]
        })
    }

    /// Checks the digest `h` of what was written as `e`'s content.
    pub(super) fn check(&self, e: &StateEntry, h: Sha256) -> Result<()> {
        let got: [u8; 32] = h.finalize().into();
        if got != e.sha256 {
            return Err(Error::corrupt(format!(
                "{}: {} hashes to {}, not the {} its index records",
                self.links[e.origin].loc,
                e.path,
                hex(&got),
                hex(&e.sha256)
            )));
        }
        Ok(())
    }

    /// The content of the member `rec` of link `level`, from its frames.
    pub(super) fn content(
        &mut self,
        level: usize,
        rec: &Record,
        out: &mut dyn FnMut(&[u8]) -> Result<()>,
    ) -> Result<()> {
        if self.cursors[level].is_none() {
            self.cursors[level] = Some(Cursor::new(&self.links[level], 64 << 10)?);
        }
        let c = self.cursors[level].as_mut().expect("just made");
        let i = c.frame_at(rec.frame, None)?;
        let f = c.frame(i);
        if rec.offset >= f.tar_len {
            return Err(Error::corrupt(format!(
                "{}: {} is at offset {} of a frame of {} bytes",
                self.links[level].loc, rec.path, rec.offset, f.tar_len
            )));
        }
        let mut pos = f.tar_start + rec.offset + 512;
        let end = pos + rec.size;
        while pos < end {
            let i = c.frame_for(pos)?;
            let (fs, fe) = (c.frame(i).tar_start, c.frame(i).tar_end());
            let stop = fe.min(end);
            let content = c.content(i)?;
            out(&content[(pos - fs) as usize..(stop - fs) as usize])?;
            pos = stop;
            if stop == fe {
                c.release(fe);
            }
        }
        // Past the budget, the links not in use are let go of whole (a
        // link needed again is read again from its start): memory stays
        // bounded however long the chain.
        let held: usize = self.cursors.iter().flatten().map(Cursor::held).sum();
        if held > HELD {
            for (i, c) in self.cursors.iter_mut().enumerate() {
                if i != level {
                    *c = None;
                }
            }
        }
        Ok(())
    }
}
