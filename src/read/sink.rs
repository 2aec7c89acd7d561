//! Where checked archive data goes: the [`Sink`] a reader feeds (verify
//! keeps nothing, restore writes files, `--deep` decodes them) and the
//! per-file [`FileSink`] each worker thread holds.

use crate::error::Result;
use crate::format::head::Entry;

/// What an archive holds, known before its data when it can be read
/// from the end (a file, an object; never a pipe of version 2).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Plan {
    /// File entries.
    pub files: u64,
    /// Directory entries.
    pub dirs: u64,
    /// Sum of the file sizes.
    pub total_bytes: u64,
}

/// Receives what the reader has checked so far. A sink must treat file data
/// as unverified until [`crate::read::read_archive`] returns `Ok`.
///
/// Files are handled on worker threads (several files at once, each file's
/// data in order on one thread), so a sink is shared (`Sync`) and keeps
/// per-file state in its [`Sink::File`].
pub trait Sink: Sync {
    /// Per-file state, living on one worker thread.
    type File: FileSink;
    /// What the archive holds, before any data (on the calling thread),
    /// when that is known (not for a version-2 archive from a pipe).
    fn plan(&mut self, _plan: &Plan) -> Result<()> {
        Ok(())
    }
    /// A directory member that passed its checks (on the reading
    /// thread, in archive order, before any member inside it).
    fn dir(&self, _entry: &Entry) -> Result<()> {
        Ok(())
    }
    /// A file member that passed its checks; its data follows.
    fn file(&self, entry: &Entry) -> Result<Self::File>;
    /// An index record, once its INDEX block is checked (on the reading
    /// thread, in archive order, after the member it describes was handed
    /// over; the archive as a whole is verified only at its end). What
    /// only the index holds: the nanoseconds of the member's mtime.
    fn record(&self, _rec: &crate::format::v2::Record) -> Result<()> {
        Ok(())
    }
    /// Whether [`Sink::record`] is wanted (else records are not handed
    /// over at all).
    fn wants_records(&self) -> bool {
        false
    }
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
