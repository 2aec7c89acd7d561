//! `verify` and `list`: checking an archive at a path, on stdin or in object
//! storage without writing anything.

use std::sync::Arc;

use crate::error::Result;
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
    let mut pats = Patterns::new(patterns);
    let mut filtered = |e: &crate::format::head::Entry, d: Option<&[u8; 32]>| {
        if pats.wants(&e.path) {
            visit(e, d)?;
        }
        Ok(())
    };
    let info = open_archive(loc, None)?.list_into(sha256, &mut filtered)?;
    pats.check_all_used()?;
    Ok(info)
}
