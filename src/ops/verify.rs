//! `verify` and `list`: checking an archive at a path, on stdin or in object
//! storage without writing anything.

use std::sync::Arc;

use crate::error::Result;
use crate::ops::source::open_archive;
use crate::progress::Progress;
use crate::read::{Depth, Info, NullSink, ReadSummary, Visit};
use crate::store::location::Location;

/// Verifies the archive at `loc` to `depth`, counting the archive bytes
/// read in `progress`.
pub fn verify(
    loc: &Location,
    depth: Depth,
    progress: Option<Arc<Progress>>,
) -> Result<ReadSummary> {
    open_archive(loc, progress)?.read_into(depth, &mut NullSink)
}

/// Lists the archive at `loc` into `visit`, entry by entry, with each
/// file's SHA-256 when `sha256` is asked for (a version-2 archive always
/// has them). See [`crate::read::list_archive`] for what is checked and
/// when: an error after entries were handed on means they are not to be
/// trusted.
pub fn list(loc: &Location, sha256: bool, visit: &mut Visit<'_>) -> Result<Info> {
    open_archive(loc, None)?.list_into(sha256, visit)
}
