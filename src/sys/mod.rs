//! Every system call the crate makes (but the part buffers' `mmap`), each
//! `unsafe` block with its `SAFETY` note, behind safe functions:
//! - `stat`: what `stat` says of a file (kind, size, mode, times, inode)
//! - `dir`: an open directory and the lookups below it that never follow
//!   a swapped-in symlink (reading a tree others may change)
//! - `beneath`: creating files and directories below an open directory
//!   without leaving it; private directories checked on their descriptor
//! - `rename`, `remove`: renames and removals by names in open directories
//! - `file`: writeback, `syncfs`, `flock`, `close` on an open file
//! - `space`: the mount a path is on and the room left on it
//! - `process`: standard descriptors at start, user, umask, limits

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

mod beneath;
mod dir;
mod file;
mod process;
mod remove;
mod rename;
mod space;
mod stat;

pub use beneath::{make_private_dir, mkdir_at, open_at, set_times_in};
#[cfg(test)]
pub use dir::mkfifo;
pub use dir::{Dir, chmod_path_nofollow, is_symlink_error, open_dir_path};
pub use file::{close, flock, start_writeback, syncfs};
pub use process::{
    ProcessStamp, address_space_limit, closed_std_fds, current_umask, euid, kill_step, pause_point,
    record_closed_std_fds, this_process,
};
pub use remove::{removal_step, remove_tree_at, remove_tree_at_last, unlink_in};
pub use rename::{is_same_at, rename_between, rename_in, renameat2};
pub use space::{free_space, mount_of};
pub use stat::{Kind, Stat, StatKey, fstat};

fn cname(name: &[u8]) -> io::Result<CString> {
    CString::new(name).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in name"))
}

fn cpath(p: &Path) -> io::Result<CString> {
    cname(p.as_os_str().as_bytes())
}
