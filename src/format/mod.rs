//! The archive's bytes on disk, and nothing else: frame codec, HEAD, SUMS,
//! FOOT and the path rules (see `FORMAT.md`). No I/O engine lives here:
//! this module depends only on [`crate::error`].

pub mod footer;
pub mod frame;
pub mod head;
pub mod incremental;
pub mod path;
pub mod sums;
pub mod v2;
