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
const HELD: usize = 8 << 20;

/// What a merge did besides what every archive reports.
#[derive(Debug, Clone, Default)]
pub struct MergeCounts {
    /// Archives merged.
    pub archives: u64,
    /// Members taken from the full archive unchanged.
    pub kept: u64,
    /// Data frames copied whole from it.
    pub copied_frames: u64,
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
    let about = |l: &Link| MergedArchive {
        location: l.loc.to_string(),
        size: l.src.size,
        body_sha256: hex(&l.tail.body_sha256),
    };
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
    let (w, summary) = write_spliced(&head, out, out_name, opts, &wal, warnings, |s| {
        let mut base = Base::new(first)?;
        let mut cursors: Vec<Option<Cursor<'_>>> = links.iter().map(|_| None).collect();
        for e in crate::chain::state(links)? {
            let e = e?;
            if e.origin == 0 && !e.appended {
                base.keep(s, &e)?;
                continue;
            }
            base.flush(s)?;
            write_member(s, &mut base, links, &mut cursors, &e)?;
        }
        base.finish(s)?;
        counts.kept = base.kept;
        counts.copied_frames = base.copied_frames;
        Ok(())
    })?;
    Ok((w, summary, counts))
}

/// Writes the member `e` of the tree with a new header, its content
/// from the link that holds it or its lineage, checked against its digest.
fn write_member<'l, W: Write>(
    s: &mut Splice<'_, '_, W>,
    base: &mut Base<'l>,
    links: &'l [Link],
    cursors: &mut [Option<Cursor<'l>>],
    e: &StateEntry,
) -> Result<()> {
    s.begin(&e.entry(), e.sha256)?;
    if e.kind == EntryKind::Dir {
        return Ok(());
    }
    let mut h = Sha256::new();
    let l = &links[e.origin];
    let pieces = if e.appended {
        lineage(links, e)?
    } else {
        vec![(e.origin, e.record())]
    };
    for (n, (level, rec)) in pieces.iter().enumerate() {
        // A file appended to that started as the full archive's member:
        // its frames are copied (each decoded only to hash it).
        if n == 0 && *level == 0 && base.copy_data(s, &e.path, rec, &mut h)? {
            continue;
        }
        if cursors[*level].is_none() {
            cursors[*level] = Some(Cursor::new(&links[*level], 64 << 10)?);
        }
        let c = cursors[*level].as_mut().expect("just made");
        member_content(c, rec, &mut |b: &[u8]| {
            h.update(b);
            s.data(b)
        })?;
        // Links not in use let go of what they hold past the budget.
        let held: usize = cursors.iter().flatten().map(Cursor::held).sum();
        if held > HELD {
            for (i, c) in cursors.iter_mut().enumerate() {
                if i != *level
                    && let Some(c) = c
                {
                    c.shed();
                }
            }
        }
    }
    let got: [u8; 32] = h.finalize().into();
    if got != e.sha256 {
        return Err(Error::corrupt(format!(
            "{}: {} hashes to {}, not the {} its index records",
            l.loc,
            e.path,
            hex(&got),
            hex(&e.sha256)
        )));
    }
    s.pad(e.size)
}

/// The content of the member `e` of a link (its record), from its frames.
fn member_content(
    c: &mut Cursor<'_>,
    e: &Record,
    out: &mut dyn FnMut(&[u8]) -> Result<()>,
) -> Result<()> {
    let i = c.frame_at(e.frame, None)?;
    let f = c.frame(i);
    if e.offset >= f.tar_len {
        return Err(Error::corrupt(format!(
            "{} is at offset {} of a frame of {} bytes",
            e.path, e.offset, f.tar_len
        )));
    }
    let mut pos = f.tar_start + e.offset + 512;
    let end = pos + e.size;
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
    Ok(())
}
