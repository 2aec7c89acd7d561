//! Everything SydraDB-specific: its on-disk records (WAL, segments), what
//! it would accept (streaming checks, and `deep`: the sink that runs them
//! over an archive's files for `verify --deep`), reading a data dir a
//! running server writes, and a generator of data dirs for tests and
//! benchmarks.

pub mod check;
pub(crate) mod deep;
pub mod fixture;
pub mod layout;
pub mod live;
pub mod records;
pub mod scan;
pub mod source;
pub mod walk;

pub use check::{Segment, check_wal, decode_segment};
pub use fixture::{FixtureSpec, Server, generate};
pub use records::*;
