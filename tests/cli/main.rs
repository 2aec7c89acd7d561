//! Integration tests: drive the real `sydra-archive` binary.

mod atomic;
mod chain_defects;
mod chain_model;
mod chain_refusals;
mod corruption;
mod crafted2;
mod cron;
mod docs;
mod encrypt;
mod extract;
mod format;
mod hostile;
mod incremental;
mod latest;
mod live;
mod memory;
mod merge;
mod mtimes;
mod probe;
mod prune;
mod refusals;
mod restore;
mod roundtrip;
mod s3;
mod support;
mod ux;
