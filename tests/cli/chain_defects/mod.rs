//! One test per chain defect found in review (each fixed in src): a test
//! here fails, for the defect's reason, on the code before its fix. Each
//! refusal is checked for its reason, not only its exit code (1: the
//! archive's fault, 2: anything else).
//!
//! Grouped by what the defect is about: [`model`] (what an incremental
//! records of a changed tree, and crafted incrementals whose tree cannot
//! be), [`links`] (the bases a chain links to: forged, flipped, swapped
//! for a FIFO, named in bytes that are not UTF-8, and what `verify
//! --chain` says of them), [`retention`] (prune, `ls` and `restore DIR/`
//! among the archives of a directory), [`resources`] (descriptors, reads
//! and free space), [`staging`] (temporary files, staging directories and
//! all-or-nothing publication). The defects keep their review numbers
//! (`d01`..`d17`); the `r_` tests are regressions found since.
//! [`helpers`] holds what the groups share.

mod helpers;
mod links;
mod model;
mod resources;
mod retention;
mod staging;
