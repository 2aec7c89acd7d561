//! `verify` and `list`: checking an archive at a path, on stdin or in object
//! storage without writing anything.

use std::sync::Arc;

use crate::error::Result;
use crate::format::head::{Entry, EntryKind};
use crate::ops::chain::{Link, open_chain};
use crate::ops::extract::Patterns;
use crate::ops::source::open_archive;
use crate::progress::Progress;
use crate::read::{Depth, Info, NullSink, ReadSummary, Visit};
use crate::store::location::Location;

/// Verifies the archive at `loc` to `depth`, counting the archive bytes
/// read in `progress`, decoding on `threads` threads (0: the cores hashing
/// leaves, see [`crate::read::read_archive_with`]).
pub fn verify(
    loc: &Location,
    depth: Depth,
    progress: Option<Arc<Progress>>,
    threads: usize,
) -> Result<ReadSummary> {
    open_archive(loc, progress)?
        .with_threads(threads)
        .read_into(depth, &mut NullSink)
}

/// Lists the archive at `loc` into `visit`, entry by entry, with each
/// file's SHA-256 when `sha256` is asked for (a version-2 archive always
/// has them). See [`crate::read::list_archive`] for what is checked and
/// when: an error after entries were handed on means they are not to be
/// trusted.
/// Only entries matching `patterns` (as [`crate::ops::extract`] takes
/// them; none: all) are handed on, and a pattern that matches nothing is
/// an error that names it.
pub fn list(
    loc: &Location,
    sha256: bool,
    patterns: &[String],
    visit: &mut Visit<'_>,
) -> Result<Info> {
    list_chain(loc, sha256, patterns, &[], &mut |e, d, _| visit(e, d)).map(|(info, _)| info)
}

/// What a chain listing is handed: each entry of the whole tree, its
/// SHA-256 (files), and, for an incremental, whether the archive named
/// carries it (`None` for an archive that is not an incremental).
pub type ChainVisit<'a> = dyn FnMut(&Entry, Option<&[u8; 32]>, Option<bool>) -> Result<()> + 'a;

/// [`list`], where an incremental archive (read at offsets) is listed as
/// the whole tree its chain describes (its bases found where it recorded
/// them or among `bases`, each checked, their indexes read at offsets),
/// each entry saying whether this archive carries it. Returns what the
/// archive says about itself and its chain (the full archive first; empty
/// for an archive that is not an incremental).
pub fn list_chain(
    loc: &Location,
    sha256: bool,
    patterns: &[String],
    bases: &[Location],
    visit: &mut ChainVisit<'_>,
) -> Result<(Info, Vec<String>)> {
    let reader = open_archive(loc, None)?;
    if let Some(src) = reader.random_access()?
        && src.has_tail()
    {
        drop(src);
        let link = Link::open(loc)?;
        if link.head.is_incremental() {
            drop(link);
            let links = open_chain(loc, bases)?;
            let last = links.len() - 1;
            let mut pats = Patterns::new(patterns);
            for e in crate::ops::chain::state(&links)? {
                let e = e?;
                if !pats.wants(&e.path) {
                    continue;
                }
                let entry = Entry {
                    path: e.path.clone(),
                    kind: e.kind,
                    size: e.size,
                    mode: e.mode,
                    mtime: e.mtime as i64,
                };
                let d = (e.kind == EntryKind::File).then_some(&e.sha256);
                visit(&entry, d, Some(e.origin == last))?;
            }
            pats.check_all_used()?;
            let l = &links[last];
            let info = Info::of_head2(&l.head, &l.meta);
            return Ok((info, links.iter().map(|l| l.loc.to_string()).collect()));
        }
    }
    let mut pats = Patterns::new(patterns);
    let mut filtered = |e: &crate::format::head::Entry, d: Option<&[u8; 32]>| {
        if pats.wants(&e.path) {
            visit(e, d, None)?;
        }
        Ok(())
    };
    let info = reader.list_into(sha256, &mut filtered)?;
    pats.check_all_used()?;
    Ok((info, Vec::new()))
}

/// `verify --chain` of the archive at `loc`, after the archive itself is
/// verified: every base of an incremental is found (where recorded, or
/// among `bases`) and is the archive recorded (its size and TAIL's
/// SHA-256 of its body, and the SHA-256 its object metadata recorded),
/// and the chain's operations match what each base holds (every delete
/// and append), reading only ends, HEADs, indexes and operations, at
/// offsets. Returns the chain, the full archive first (just `loc` for a
/// full one).
pub fn verify_chain(loc: &Location, bases: &[Location]) -> Result<Vec<String>> {
    let links = open_chain(loc, bases)?;
    for e in crate::ops::chain::state(&links)? {
        e?;
    }
    Ok(links.iter().map(|l| l.loc.to_string()).collect())
}
