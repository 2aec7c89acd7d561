//! The commands as library functions, one file each, on paths,
//! stdin/stdout or objects, each composing the folders below it:
//! `create`, `verify` (quick, full, `--deep`, `--chain`) and `list`,
//! `restore`, `extract`, `prune` (`ls` is the shelf's listing,
//! `crate::shelf::ls`).

pub mod create;
pub mod extract;
pub mod merge;
pub mod output;
pub mod prune;
pub mod restore;
pub mod verify;
pub mod watch;
