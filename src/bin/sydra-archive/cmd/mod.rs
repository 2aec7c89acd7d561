//! The commands, one file each: the arguments turned into a call of the
//! library, and its result printed (a line, or a `--json` report).

pub mod create;
pub mod extract;
pub mod list;
pub mod ls;
pub mod man;
pub mod merge;
pub mod prune;
pub mod restore;
pub mod verify;
pub mod watch;
