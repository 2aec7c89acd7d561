//! Calls on an open file or the filesystem under it: writeback hints,
//! `syncfs`, `flock`, and a `close` whose error is reported.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;

/// Asks the kernel to start writing `len` bytes of `file` at `offset` back
/// to disk, without waiting (`sync_file_range(SYNC_FILE_RANGE_WRITE)`). A
/// hint only: the fsync that follows is what makes the data durable.
pub fn start_writeback(file: &File, offset: u64, len: u64) {
    // SAFETY: a plain syscall on an open descriptor; a failure only means
    // the data is written back later (at the fsync).
    unsafe {
        libc::sync_file_range(
            file.as_raw_fd(),
            offset as libc::off64_t,
            len as libc::off64_t,
            libc::SYNC_FILE_RANGE_WRITE,
        );
    }
}

/// Flushes the whole filesystem holding the open directory `dir` (one call
/// instead of one fsync per file).
pub fn syncfs(dir: &impl AsRawFd) -> io::Result<()> {
    // SAFETY: a valid open descriptor.
    if unsafe { libc::syncfs(dir.as_raw_fd()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `flock(file, op)`, retried on EINTR.
pub fn flock(file: &File, op: libc::c_int) -> io::Result<()> {
    loop {
        // SAFETY: flock on a descriptor `file` keeps open; no memory involved.
        if unsafe { libc::flock(file.as_raw_fd(), op) } == 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Closes `file`, reporting what `close(2)` says (NFS reports write errors
/// there), instead of dropping it silently.
pub fn close(file: File) -> io::Result<()> {
    let fd = std::os::fd::IntoRawFd::into_raw_fd(file);
    // SAFETY: we own fd and close it exactly once.
    if unsafe { libc::close(fd) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
