//! Format version 2's own structures (see `FORMAT.md`): the small HEAD
//! (`head`), the index records and the INDEX block opening (`record`),
//! the TABLE rows (`table`), META (`meta`), the fixed TAIL that ends every
//! version-2 archive (`tail`), and the tree order records come in
//! (`order`). The format's numbers are here.
//!
//! Every decoder here takes bytes already in memory and bounded by the
//! caller (an index block is at most [`MAX_BLOCK_RAW`] bytes); nothing
//! here reads or allocates by a length it has not checked.

mod head;
mod meta;
mod order;
mod record;
mod table;
mod tail;

pub use head::{Head2, Merged, MergedArchive};
pub use meta::{FirstPaths, MAX_FIRST_PATHS_BYTES, Meta, cap_warnings};
pub use order::TreeOrder;
pub use record::{MAX_NSEC, Record, block_opening, check_nsec, parse_block_opening};
pub use table::Row;
pub use tail::{FLAG_NSEC, Tail, check_end};

/// The version number of this format.
pub const VERSION2: u64 = 2;
/// Tag of an INDEX block frame.
pub const TAG_INDEX: [u8; 8] = *b"SYDRINDX";
/// Tag of the TABLE frame (one row per INDEX block).
pub const TAG_TABLE: [u8; 8] = *b"SYDRTABL";
/// Tag of the META frame.
pub const TAG_META: [u8; 8] = *b"SYDRMETA";
/// Tag of the TAIL frame.
pub const TAG_TAIL: [u8; 8] = *b"SYDRTAIL";
/// Largest version-2 HEAD body.
pub const MAX_HEAD2_BODY: u64 = 64 * 1024;
/// Largest META body.
pub const MAX_META_BODY: u64 = 4 * 1024 * 1024;
/// Largest decompressed INDEX block.
pub const MAX_BLOCK_RAW: u64 = 4 * 1024 * 1024;
/// Largest INDEX frame body (its 8-byte opening and the zstd frame).
pub const MAX_BLOCK_BODY: u64 = 8 + MAX_BLOCK_RAW + 64 * 1024;
/// Most records in one INDEX block.
pub const MAX_BLOCK_RECORDS: u64 = 65_536;
/// Length of one TABLE row.
pub const ROW_LEN: usize = 64;
/// Length of the TAIL frame: always the last bytes of the archive.
pub const TAIL_LEN: usize = 128;
/// Most warnings META keeps (the rest are counted in the last one).
pub const MAX_META_WARNINGS: usize = 200;
