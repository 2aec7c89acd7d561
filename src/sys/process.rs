//! The process itself: its standard descriptors at start, its user, umask
//! and address-space limit.

/// Which of stdin, stdout and stderr were closed when the process started.
///
/// Rust's runtime puts `/dev/null` (opened read-write) in place of a closed
/// fd 0, 1 or 2 before `main`, so no file opened later takes their place;
/// this tells those from a redirection by the shell, which opens
/// `/dev/null` read-only or write-only.
pub fn closed_std_fds() -> [bool; 3] {
    let mut closed = [false; 3];
    for (fd, was_closed) in closed.iter_mut().enumerate() {
        let fd = fd as libc::c_int;
        // SAFETY: F_GETFL only reads the descriptor's flags.
        let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
        if flags == -1 {
            *was_closed = true;
            continue;
        }
        if flags & libc::O_ACCMODE != libc::O_RDWR {
            continue;
        }
        // SAFETY: `stat` is plain old data; fstat fills it on success.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: a valid descriptor and out-pointer.
        if unsafe { libc::fstat(fd, &mut st) } == 0 {
            *was_closed = st.st_mode & libc::S_IFMT == libc::S_IFCHR
                && libc::major(st.st_rdev) == 1
                && libc::minor(st.st_rdev) == 3;
        }
    }
    closed
}

/// This process's effective user id.
pub fn euid() -> u32 {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() }
}

/// The process's umask.
pub fn current_umask() -> u32 {
    // SAFETY: umask only swaps the process mask; it is put back at once.
    let old = unsafe { libc::umask(0o022) };
    // SAFETY: puts the mask read above back.
    unsafe { libc::umask(old) };
    old as u32
}

/// The process's address-space limit (`RLIMIT_AS`) in bytes, if any.
pub fn address_space_limit() -> Option<u64> {
    // SAFETY: `rlimit` is plain old data.
    let mut lim: libc::rlimit = unsafe { std::mem::zeroed() };
    // SAFETY: a valid resource and out-pointer.
    if unsafe { libc::getrlimit(libc::RLIMIT_AS, &mut lim) } != 0 {
        return None;
    }
    (lim.rlim_cur != libc::RLIM_INFINITY).then_some(lim.rlim_cur)
}
