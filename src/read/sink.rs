//! Where checked archive data goes: the [`Sink`] a reader feeds (verify
//! keeps nothing, restore writes files, `--deep` decodes them) and the
//! per-file [`FileSink`] each worker thread holds.

use crate::error::Result;
use crate::format::head::{Entry, Head};

/// Receives what the reader has checked so far. A sink must treat file data
/// as unverified until [`crate::read::read_archive`] returns `Ok`.
///
/// Files are handled on worker threads (several files at once, each file's
/// data in order on one thread), so a sink is shared (`Sync`) and keeps
/// per-file state in its [`Sink::File`].
pub trait Sink: Sync {
    /// Per-file state, living on one worker thread.
    type File: FileSink;
    /// HEAD, validated, before any data (on the calling thread).
    fn head(&mut self, _head: &Head) -> Result<()> {
        Ok(())
    }
    /// The SHA-256 SUMS lists for the `index`-th file (after DATA; not
    /// verified until [`crate::read::read_archive`] returns `Ok`).
    fn file_sum(&mut self, _index: usize, _sha256: &[u8; 32]) {}
    /// A directory member that matched its HEAD entry (on the reading
    /// thread, in archive order, before any member inside it).
    fn dir(&self, _entry: &Entry) -> Result<()> {
        Ok(())
    }
    /// A file member that matched its HEAD entry; its data follows.
    fn file(&self, entry: &Entry) -> Result<Self::File>;
    /// How many worker threads to use on `cores` cores (at most 4 are).
    /// The reading thread decompresses meanwhile; a sink with little work
    /// per byte does best leaving it a core of its own.
    fn workers(&self, cores: usize) -> usize {
        cores
    }
}

/// One file being received by a sink.
pub trait FileSink {
    /// The next chunk of the file.
    fn write(&mut self, _data: &[u8]) -> Result<()> {
        Ok(())
    }
    /// The file is complete (its size as declared).
    fn finish(self, _entry: &Entry) -> Result<()>
    where
        Self: Sized,
    {
        Ok(())
    }
}

/// A sink that keeps nothing (for `verify`).
pub struct NullSink;
impl Sink for NullSink {
    type File = ();
    fn file(&self, _entry: &Entry) -> Result<()> {
        Ok(())
    }
    /// Hashing alone: one core decompresses, the others hash.
    fn workers(&self, cores: usize) -> usize {
        cores.saturating_sub(1)
    }
}
impl FileSink for () {}
