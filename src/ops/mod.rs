//! The commands as library functions: `create`, `verify` (quick, full,
//! deep), `list` and `restore`, on paths, stdin/stdout or objects.

pub mod create;
pub mod deep;
pub mod restore;
pub mod source;
pub mod verify;
