//! Integration tests: drive the real `sydra-archive` binary.

mod atomic;
mod corruption;
mod crafted2;
mod cron;
mod encrypt;
mod extract;
mod format;
mod hostile;
mod incremental;
mod live;
mod memory;
mod probe;
mod prune;
mod refusals;
mod restore;
mod roundtrip;
mod s3;
mod support;
mod ux;
