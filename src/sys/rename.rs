//! Renames: of paths, between two names of one open directory, between
//! two open directories, and checking that a name still holds the file
//! this process has open.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::path::Path;

use super::{Dir, cname, cpath, fstat};

/// `renameat2(from, to, flags)` on paths.
pub fn renameat2(from: &Path, to: &Path, flags: libc::c_uint) -> io::Result<()> {
    let (cfrom, cto) = (cpath(from)?, cpath(to)?);
    // SAFETY: valid NUL-terminated paths, AT_FDCWD.
    let r = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            cfrom.as_ptr(),
            libc::AT_FDCWD,
            cto.as_ptr(),
            flags,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// `renameat2(dir, from, dir, to, flags)`: a rename between two names of
/// one open directory.
pub fn rename_in(dir: &File, from: &[u8], to: &[u8], flags: libc::c_uint) -> io::Result<()> {
    let (cf, ct) = (cname(from)?, cname(to)?);
    let fd = dir.as_raw_fd();
    // SAFETY: an open directory descriptor and NUL-terminated names.
    if unsafe { libc::renameat2(fd, cf.as_ptr(), fd, ct.as_ptr(), flags) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `renameat2(from_dir, from, to_dir, to, flags)`: a name moved between
/// two directories held open.
pub fn rename_between(
    from_dir: &File,
    from: &[u8],
    to_dir: &File,
    to: &[u8],
    flags: libc::c_uint,
) -> io::Result<()> {
    let (cf, ct) = (cname(from)?, cname(to)?);
    // SAFETY: open directory descriptors and NUL-terminated names.
    let r = unsafe {
        libc::renameat2(
            from_dir.as_raw_fd(),
            cf.as_ptr(),
            to_dir.as_raw_fd(),
            ct.as_ptr(),
            flags,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// True when `name` in `dir` is (now) the very file `f` is open on: same
/// device and inode, not following a symlink.
pub fn is_same_at(dir: &File, name: &[u8], f: &File) -> bool {
    let Ok(d) = Dir::from_file(dir) else {
        return false;
    };
    match (d.stat_at(name), fstat(f)) {
        (Ok(a), Ok(b)) => a.dev == b.dev && a.ino == b.ino,
        _ => false,
    }
}
