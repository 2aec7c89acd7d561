//! The process itself: its standard descriptors at start, its user, umask
//! and address-space limit.

use std::sync::atomic::{AtomicU8, Ordering};

/// Bit `fd` set: that standard descriptor was closed before Rust's
/// runtime started; bit 7: the check ran.
static CLOSED_AT_START: AtomicU8 = AtomicU8::new(0);
const CHECKED: u8 = 1 << 7;

/// Notes which of fds 0, 1 and 2 are closed. Meant to run from the
/// binary's `.init_array` constructor, before `main` and before Rust's
/// runtime puts `/dev/null` in place of a closed standard descriptor (so
/// no file opened later takes their place): only then can a closed fd be
/// told from `/dev/null` given by the caller (which a shell opens
/// write-only, but Python's `subprocess.DEVNULL` and Rust's
/// `Stdio::null()` open read-write). Calls nothing but fcntl(2) and an
/// atomic store: nothing of the runtime is needed.
pub fn record_closed_std_fds() {
    let mut bits = CHECKED;
    for fd in 0..3 {
        // SAFETY: F_GETFL only reads the descriptor's flags.
        if unsafe { libc::fcntl(fd, libc::F_GETFL) } == -1 {
            bits |= 1 << fd;
        }
    }
    CLOSED_AT_START.store(bits, Ordering::SeqCst);
}

/// Which of stdin, stdout and stderr were closed when the process started,
/// as [`record_closed_std_fds`] found them before `main`. Where it did not
/// run (a program that does not call it from a constructor), a guess: a
/// read-write `/dev/null` is taken for the runtime's stand-in for a
/// closed fd.
pub fn closed_std_fds() -> [bool; 3] {
    let bits = CLOSED_AT_START.load(Ordering::SeqCst);
    if bits & CHECKED != 0 {
        return [bits & 1 != 0, bits & 2 != 0, bits & 4 != 0];
    }
    guess_closed_std_fds()
}

fn guess_closed_std_fds() -> [bool; 3] {
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
