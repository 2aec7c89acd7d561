//! Extracting some files out of an archive, without the rest.
//!
//! From a version-2 archive in a file or an object, only the end (TAIL,
//! TABLE, META, checked against TAIL's digest), the INDEX blocks (each
//! against its TABLE row; `blocks` finds the ones that can hold a match)
//! and the data frames that hold the wanted members are read, at offsets
//! (`offsets`). An incremental is read through its chain, every file
//! from the archive of the chain that holds it, at offsets (`chain`).
//! Anything else (a version-1 archive, a pipe) is read whole
//! as a stream, fully verified, and only the wanted members are kept
//! (`stream`). Either way the files go to a private staging directory
//! inside the destination first (`stage`), each checked against its
//! SHA-256, and are moved into place only once every one of them is
//! checked (`publish`): a failure publishes nothing. `patterns` says which
//! paths are wanted.

use std::path::PathBuf;

mod blocks;
pub mod chain;
mod offsets;
pub mod patterns;
mod publish;
pub mod stage;
pub mod stream;

pub use chain::by_chain;
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
