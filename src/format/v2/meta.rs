//! META, what the writer knows only at the end (totals, the WAL position,
//! what was left out, warnings, each INDEX block's first path), and the
//! digest that ties those first paths to the blocks.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::MAX_META_WARNINGS;
use crate::error::{Error, Result};
use crate::format::head::WalPosition;

/// What the writer knows only at the end: totals, the WAL position, what
/// was left out and what went wrong on the way.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Meta {
    /// Number of file entries.
    pub files: u64,
    /// Number of directory entries.
    pub dirs: u64,
    /// Sum of the file sizes.
    pub total_bytes: u64,
    /// Number of DATA frames.
    pub frames: u64,
    /// Top-level names left out.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<String>,
    /// The WAL position captured.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub wal: Vec<WalPosition>,
    /// Problems found while the data dir was read (at most
    /// [`MAX_META_WARNINGS`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// The path of each INDEX block's first record, in block order: a
    /// reader at offsets finds the blocks to read without a search.
    /// Optional (archives of the first version-2 writer lack it; a writer
    /// leaves it out past [`MAX_FIRST_PATHS_BYTES`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_paths: Option<Vec<String>>,
}

/// Most bytes of paths a writer puts in META's `first_paths`.
pub const MAX_FIRST_PATHS_BYTES: usize = 1024 * 1024;

impl Meta {
    /// Decodes a META body.
    pub fn parse(body: &[u8]) -> Result<Meta> {
        serde_json::from_slice(body).map_err(|e| Error::corrupt(format!("META is not valid: {e}")))
    }

    /// Checks `first_paths`, when present, against the blocks read: their
    /// number and [`FirstPaths`]'s digest of their first paths.
    pub fn check_first_paths(&self, blocks: u64, digest: [u8; 32]) -> Result<()> {
        let Some(paths) = &self.first_paths else {
            return Ok(());
        };
        let mut f = FirstPaths::default();
        for p in paths {
            f.add(p);
        }
        if paths.len() as u64 != blocks || f.digest() != digest {
            return Err(Error::corrupt(
                "META's first paths are not those of the INDEX blocks",
            ));
        }
        Ok(())
    }
}

/// The digest of the INDEX blocks' first paths, in order (each as a
/// little-endian u16 length and its bytes).
#[derive(Default, Clone)]
pub struct FirstPaths(Sha256);

impl FirstPaths {
    /// Adds the next block's first path.
    pub fn add(&mut self, path: &str) {
        self.0.update((path.len() as u16).to_le_bytes());
        self.0.update(path.as_bytes());
    }

    /// The digest so far.
    pub fn digest(&self) -> [u8; 32] {
        self.0.clone().finalize().into()
    }
}

/// Caps a warning list for META: the first ones, then a count of the rest.
pub fn cap_warnings(mut w: Vec<String>) -> Vec<String> {
    if w.len() > MAX_META_WARNINGS {
        let more = w.len() - (MAX_META_WARNINGS - 1);
        w.truncate(MAX_META_WARNINGS - 1);
        w.push(format!("and {more} more warnings"));
    }
    w
}
