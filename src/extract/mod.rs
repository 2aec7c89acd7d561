//! Extracting some files out of an archive, without the rest.
//!
//! From a version-2 archive in a file or an object, only the end (TAIL,
//! TABLE, META, checked against TAIL's digest), the INDEX blocks (each
//! against its TABLE row; `blocks` finds the ones that can hold a match)
//! and the data frames that hold the wanted members are read, at offsets
//! (`offsets`). Anything else (a version-1 archive, a pipe) is read whole
//! as a stream, fully verified, and only the wanted members are kept
//! (`stream`). Either way the files go to a private staging directory
//! inside the destination first (`stage`), each checked against its
//! SHA-256, and are moved into place only once every one of them is
//! checked (`publish`): a failure publishes nothing. `patterns` says which
//! paths are wanted.

use std::io::Read;
use std::path::PathBuf;

use crate::error::Result;

mod blocks;
mod offsets;
pub mod patterns;
mod publish;
pub mod stage;
pub mod stream;

pub use offsets::by_index;
pub use patterns::Patterns;

/// Where extracted files go.
#[derive(Debug, Clone)]
pub enum ExtractTo {
    /// Into this directory (created if absent), at their archive paths.
    Dir(PathBuf),
    /// The one matching file, to this path (written atomically).
    File(PathBuf),
    /// The one matching file, to stdout (after it is checked).
    Stdout,
}

/// What an extract did.
#[derive(Debug, Clone, Default)]
pub struct ExtractSummary {
    /// Files extracted.
    pub files: u64,
    /// Directories created for them.
    pub dirs: u64,
    /// Bytes of file data extracted.
    pub bytes: u64,
    /// Archive bytes read.
    pub read_bytes: u64,
    /// Reads at offsets (ranged GETs for an object); 0 when streamed.
    pub reads: u64,
    /// The archive was read whole as a stream (version 1, or a pipe).
    pub streamed: bool,
}

/// An archive read at offsets (a file, an object, an encrypted archive
/// decrypted at offsets): what extracting by the index needs of it.
pub trait AtOffsets {
    /// Fills `buf` with the bytes at offset `at`.
    fn read_at(&self, at: u64, buf: &mut [u8]) -> std::io::Result<()>;
    /// The bytes from `at` to `end`, as a stream.
    fn stream(&self, at: u64, end: u64) -> Result<Box<dyn Read + '_>>;
    /// The archive's name in messages.
    fn shown(&self) -> &str;
}
