//! The commands as library functions: `create`, `verify` (quick, full,
//! deep), `list`, `restore` and `extract`, on paths, stdin/stdout or
//! objects.

pub mod create;
pub mod extract;
pub mod prune;
pub mod restore;
pub mod verify;
