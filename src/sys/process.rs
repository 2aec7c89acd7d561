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

/// What tells one running process from every other, as a process on the
/// same machine can check it: the pid and its start time (so a reused
/// pid is another process), and the machine (the boot and the pid
/// namespace in which pids are compared).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessStamp {
    /// The host name (for people reading a lock).
    pub host: String,
    /// The boot id and pid namespace: pids compare only where this is equal.
    pub machine: String,
    /// The pid.
    pub pid: u32,
    /// Its start time, in clock ticks after boot (`/proc/PID/stat`).
    pub start: u64,
}

/// This process's [`ProcessStamp`]; `machine` is empty where `/proc` does
/// not say it (then no other process takes this one for dead by its pid).
pub fn this_process() -> ProcessStamp {
    let pid = std::process::id();
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap_or_default();
    let ns = std::fs::read_link("/proc/self/ns/pid")
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    // /proc must be this pid namespace's (not so after `unshare -p`
    // without a /proc of its own): else pids are not comparable.
    let own_proc = std::fs::read_link("/proc/self")
        .ok()
        .and_then(|p| p.to_str().and_then(|s| s.parse::<u32>().ok()))
        == Some(pid);
    let machine = if boot.trim().is_empty() || ns.is_empty() || !own_proc {
        String::new()
    } else {
        format!("{}/{ns}", boot.trim())
    };
    ProcessStamp {
        host: host_name(),
        machine,
        pid,
        start: start_ticks(pid).unwrap_or(0),
    }
}

/// The host name, or an empty string.
fn host_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: a valid buffer and its length.
    if unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } != 0 {
        return String::new();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

/// The start time of process `pid` (field 22 of `/proc/PID/stat`).
fn start_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: the
    // fields after it start after the last `)`, at field 3.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

impl ProcessStamp {
    /// Whether the process this stamp names is known to be gone: it was
    /// of this machine (same boot and pid namespace), and no process of
    /// that pid and start time runs. False whenever that cannot be told.
    pub fn is_gone(&self) -> bool {
        let here = this_process();
        if self.machine.is_empty() || self.machine != here.machine || self.start == 0 {
            return false;
        }
        start_ticks(self.pid) != Some(self.start)
    }
}

/// In debug builds (the tests'), with `SYDRA_ARCHIVE_TEST_PAUSE=NAME:PATH`
/// in the environment, at the point called `name`: makes the file PATH
/// and waits until it is removed, so a test can act at that point of a
/// run (remove a base just before an incremental is published; see that
/// a run waits for a lock). Nothing otherwise.
pub fn pause_point(name: &str) {
    #[cfg(debug_assertions)]
    if let Some(v) = std::env::var_os("SYDRA_ARCHIVE_TEST_PAUSE") {
        use std::os::unix::ffi::OsStrExt;
        let v = v.as_bytes();
        let Some(at) = v.iter().position(|&b| b == b':') else {
            return;
        };
        if &v[..at] != name.as_bytes() {
            return;
        }
        let p = std::path::PathBuf::from(std::ffi::OsStr::from_bytes(&v[at + 1..]));
        if std::fs::write(&p, b"paused\n").is_ok() {
            while p.exists() {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
        }
    }
    #[cfg(not(debug_assertions))]
    let _ = name;
}

/// In debug builds (the tests'), with `SYDRA_ARCHIVE_TEST_KILL_AT_STEP=N`
/// in the environment: the process sends itself `SIGKILL` at the `N`th
/// call (from 0), so a test kills a run at each of its steps
/// deterministically, however loaded the machine. `merge` calls it before
/// each member and each frame it copies. Nothing otherwise.
pub fn kill_step() {
    #[cfg(debug_assertions)]
    {
        use std::sync::OnceLock;
        use std::sync::atomic::{AtomicU64, Ordering};
        static AT: OnceLock<Option<u64>> = OnceLock::new();
        static DONE: AtomicU64 = AtomicU64::new(0);
        let at = AT.get_or_init(|| {
            std::env::var("SYDRA_ARCHIVE_TEST_KILL_AT_STEP")
                .ok()
                .and_then(|v| v.parse().ok())
        });
        if let Some(at) = *at
            && DONE.fetch_add(1, Ordering::SeqCst) == at
        {
            // SAFETY: kill and getpid have no preconditions.
            unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
            std::process::abort();
        }
    }
}

#[cfg(test)]
mod stamp_tests {
    use super::*;

    #[test]
    fn this_process_is_alive_and_a_finished_child_is_gone() {
        let me = this_process();
        assert!(me.start > 0, "{me:?}");
        assert!(!me.is_gone());
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        let start = start_ticks(pid);
        child.wait().unwrap();
        let gone = ProcessStamp {
            pid,
            start: start.unwrap_or(1),
            ..me.clone()
        };
        assert!(gone.is_gone());
        // Another start time under a live pid: the pid was reused.
        assert!(
            ProcessStamp {
                start: me.start + 1,
                ..me.clone()
            }
            .is_gone()
        );
        // Another machine's process is never taken for gone by its pid.
        assert!(
            !ProcessStamp {
                machine: "elsewhere".into(),
                ..gone
            }
            .is_gone()
        );
    }
}
