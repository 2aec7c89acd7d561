//! Restoring a data directory: an incremental applied to the staged tree
//! (`apply`).

pub mod apply;
