//! Version 2's HEAD: the small, fixed fields that open an archive (and,
//! in version 3, the base it was made on).

use serde::{Deserialize, Serialize};

use super::VERSION2;
use crate::error::{Error, Result};
use crate::format::head::FORMAT_NAME;

/// The version-2 HEAD: small, fixed fields only.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Head2 {
    /// Always `sydra-archive`.
    pub format: String,
    /// Always 2.
    pub version: u64,
    /// When the archive was written.
    pub created_unix_ms: u64,
    /// The writer, e.g. `sydra-archive 0.2.0`.
    pub tool: String,
    /// The data directory as given to `create`.
    pub source: String,
    /// The zstd level of DATA.
    pub zstd_level: i32,
    /// The writer's target of tar bytes per DATA frame.
    pub frame_bytes: u64,
    /// Version 3 (an incremental archive): the archive it was made on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base: Option<crate::format::incremental::BaseRef>,
    /// An archive `merge` wrote: the chain it was made of.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merged: Option<Merged>,
}

/// What a merged archive records of the chain it was made of: how many
/// archives, and the newest and oldest of them (by where they were, their
/// size and TAIL's `body_sha256`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Merged {
    /// Archives merged.
    pub archives: u64,
    /// The newest (the archive `merge` was given).
    pub newest: MergedArchive,
    /// The oldest (the full archive, or `--onto`'s base).
    pub oldest: MergedArchive,
}

/// One archive a merged archive was made from.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct MergedArchive {
    /// Where it was, as given or found.
    pub location: String,
    /// Its size.
    pub size: u64,
    /// Its TAIL's `body_sha256` (hex).
    pub body_sha256: String,
}

impl Head2 {
    /// A HEAD for this writer.
    pub fn new(created_unix_ms: u64, source: String, zstd_level: i32, frame_bytes: u64) -> Head2 {
        Head2 {
            format: FORMAT_NAME.into(),
            version: VERSION2,
            created_unix_ms,
            tool: format!("sydra-archive {}", env!("CARGO_PKG_VERSION")),
            source,
            zstd_level,
            frame_bytes,
            base: None,
            merged: None,
        }
    }

    /// A HEAD for an incremental archive made on `base` (version 3).
    pub fn incremental(mut self, base: crate::format::incremental::BaseRef) -> Head2 {
        self.version = crate::format::incremental::VERSION3;
        self.base = Some(base);
        self
    }

    /// Whether this is an incremental archive (version 3).
    pub fn is_incremental(&self) -> bool {
        self.base.is_some()
    }

    /// Decodes a version-2 HEAD body (the version was already probed).
    pub fn parse(body: &[u8]) -> Result<Head2> {
        let h: Head2 = serde_json::from_slice(body)
            .map_err(|e| Error::corrupt(format!("HEAD does not match format version 2: {e}")))?;
        if h.format != FORMAT_NAME {
            return Err(Error::corrupt("HEAD does not declare sydra-archive"));
        }
        match (h.version, &h.base) {
            (VERSION2, None) => {}
            (crate::format::incremental::VERSION3, Some(b)) => b.check()?,
            (VERSION2 | crate::format::incremental::VERSION3, _) => {
                return Err(Error::corrupt(
                    "HEAD's version and base disagree (version 3, and only it, names a base)",
                ));
            }
            (v, _) => return Err(Error::UnsupportedVersion(v)),
        }
        Ok(h)
    }
}
