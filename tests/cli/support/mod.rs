//! Shared test support, one concern per file: running the binary, data
//! dir fixtures, the independent archive writer, the hostile corpus and
//! tree inspection.

pub mod craft;
pub mod craft2;
pub mod fixtures;
pub mod hostile;
pub mod mounts;
pub mod runner;
pub mod skip;
pub mod tree;

pub use craft::*;
pub use craft2::*;
pub use fixtures::*;
pub use hostile::*;
pub use mounts::*;
pub use runner::*;
pub use skip::*;
pub use tree::*;
