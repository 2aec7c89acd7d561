//! `verify` and `list`: checking an archive at a path, on stdin or in object
//! storage without writing anything.

use std::sync::Arc;

use crate::error::Result;
use crate::format::head::Head;
use crate::ops::source::open_archive;
use crate::progress::Progress;
use crate::read::{Depth, NullSink, ReadSummary, Sink, read_head};
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

/// Checks the archive at `path` as `verify --quick` does and returns its
/// HEAD and the SHA-256 SUMS lists for each file entry, in order (for
/// `list --sha256`). Nothing is returned unless the check passes.
pub fn list_sha256(loc: &Location) -> Result<(Head, Vec<[u8; 32]>)> {
    struct Collect(Vec<[u8; 32]>);
    impl Sink for Collect {
        type File = ();
        fn file(&self, _entry: &crate::format::head::Entry) -> Result<()> {
            Ok(())
        }
        fn file_sum(&mut self, _index: usize, sha256: &[u8; 32]) {
            self.0.push(*sha256);
        }
    }
    let mut sink = Collect(Vec::new());
    let summary = open_archive(loc, None)?.read_into(Depth::Quick, &mut sink)?;
    Ok((summary.head, sink.0))
}

/// Reads and validates the HEAD of the archive at `loc`. This does not
/// verify any data: use [`verify`] for that.
pub fn list(loc: &Location) -> Result<Head> {
    let src = open_archive(loc, None)?;
    let name = src.name().to_path_buf();
    read_head(src, &name)
}
