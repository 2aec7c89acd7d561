//! Chains of incremental archives: finding an incremental's bases (from
//! what its HEAD records, or among archives the caller names), checking
//! each is the archive it was made on before a byte of it is used, and
//! the whole tree a chain describes, as a stream merged from the chain's
//! indexes and operations (see `FORMAT.md`, part C). Everything is read
//! at offsets (files, objects); nothing holds more than one INDEX block
//! per archive of the chain.
//!
//! - `link`: one archive of a chain opened, checked, authenticated
//!   ([`Trust`])
//! - `records`: a link's index records and members, read at offsets
//! - `changes`: a link's operations (and the spill file of larger ones)
//! - `find`: where a base is (the location HEAD records), the base
//!   found, the chain found link by link
//! - `base`: what an incremental's HEAD records of its base (its whole
//!   SHA-256, checked; its location relative to the incremental)
//! - `model`: the one model of a chain, the tree each level means
//! - `reference`: the same rules stated on a map (tests, the fuzz target)
//! - `content`: a file's content out of a chain (its member and tails)

// `model.rs` names these through `super::`.
use crate::format::incremental::ChangeOrder;

mod base;
mod changes;
mod content;
mod find;
mod link;
mod model;
mod records;
pub mod reference;

pub use base::base_ref;
pub use changes::{Changes, Spill};
pub use content::{Piece, lineage, write_content};
pub use find::{chain_of, open_chain};
pub use link::{Link, Trust};
pub use model::{apply_level, state};
pub use records::Records;

/// The stack a thread that runs the model over a whole chain needs: the
/// tree is merged level by level, one nested iterator per archive, and a
/// 1,000-link chain runs deep (only the pages used are committed).
pub const MODEL_STACK: usize = 256 << 20;
