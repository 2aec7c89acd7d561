//! sydra-archive: one verifiable `.tar.zst` file from a SydraDB data
//! directory, and back.
//!
//! An archive is a sequence of zstd frames (see `FORMAT.md`):
//! `HEAD` (skippable, JSON header) · `DATA` (zstd frames holding one tar
//! stream) · `SUMS` (skippable, per-file SHA-256) · `FOOT` (skippable,
//! 64 bytes, SHA-256 of everything before it). Stock `zstd` and `tar`
//! read the data; this crate proves it whole.
//!
//! Modules, one concept each:
//! - [`error`]: the one error type and its exit-code classification
//! - [`layout`]: what belongs to a SydraDB data directory
//! - [`frame`]: skippable frames and the zstd frame walker
//! - [`head`], [`sums`], [`footer`]: the three metadata frames
//! - [`input`]: the hashing, peekable archive reader
//! - [`data`]: decoding the DATA frames as one stream
//! - [`scan`]: walking a data directory in archive order
//! - [`source`]: the data directory as opened: files found relative to held directories
//! - [`sys`]: `openat`/`fstatat`/`readdir` wrappers that never follow a swapped-in link
//! - [`check`]: streaming checks of what SydraDB would accept (WAL, segments, JSON)
//! - [`live`]: consistent reads of a data dir a running server writes
//! - [`create`]: writing an archive
//! - [`read`]: reading and checking an archive as a stream
//! - [`workers`]: bounded queues from the reading thread to hashing/writing workers
//! - [`location`]: where an archive is: a path, stdin, or `s3://bucket/key`
//! - [`remote`]: object storage: multipart uploads, streamed reads, `ls`, `prune`
//! - [`verify`]: `verify` and `list` on paths, stdin or objects
//! - [`deep`]: `verify --deep`, decoding what SydraDB would read
//! - [`restore`]: staged, verified, atomic restore
//! - [`progress`]: byte counters a front end turns into a progress display
//! - [`publish`]: atomic write-then-rename of output files
//! - [`cleanup`]: temporary paths removed on error and signals
//! - [`sydradb`]: SydraDB WAL records and segments (encode, decode)
//! - [`fixture`]: a deterministic generator of SydraDB data directories

pub mod check;
pub mod cleanup;
pub mod create;
pub mod data;
pub mod deep;
pub mod error;
pub mod fixture;
pub mod footer;
pub mod frame;
pub mod head;
pub mod input;
pub mod layout;
pub mod live;
pub mod location;
pub mod progress;
pub mod publish;
pub mod read;
mod store;
pub use store::s3 as remote;
pub mod restore;
pub mod scan;
pub mod source;
pub mod sums;
pub mod sydradb;
pub mod sys;
pub mod verify;
pub mod workers;

pub use create::{CreateOptions, CreateSummary, Output, create, write_archive};
pub use error::{Error, Result};
pub use head::{Entry, EntryKind, Head};
pub use location::Location;
pub use read::{Depth, ReadSummary, Sink, read_archive, read_head};
pub use restore::{RestoreOptions, RestoreSummary, restore};
pub use verify::{list, verify};
