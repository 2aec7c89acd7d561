//! Creating files and directories below an open directory without ever
//! leaving it (no symlink, no `..` followed), and private directories
//! checked on their descriptor.

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd};

use super::{Dir, euid, fstat};

/// Opens `rel` relative to the directory `dir` with `flags` (plus
/// `O_NOFOLLOW | O_CLOEXEC`) and `mode` for a file it creates, never
/// leaving `dir`: no component of `rel` may be a symlink or `..`
/// (`openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)`; on kernels without
/// `openat2`, the directories below `dir` are opened one at a time with
/// `O_NOFOLLOW`).
pub fn open_at(dir: &impl AsRawFd, rel: &[u8], flags: libc::c_int, mode: u32) -> io::Result<File> {
    let flags = flags | libc::O_NOFOLLOW | libc::O_CLOEXEC;
    match openat2_beneath(dir.as_raw_fd(), rel, flags, mode) {
        Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => {}
        r => return r,
    }
    let (parent, name) = parent_beneath(dir, rel)?;
    let at = parent.as_ref().map_or(dir.as_raw_fd(), AsRawFd::as_raw_fd);
    let c = CString::new(name).map_err(io::Error::other)?;
    // SAFETY: `at` is an open directory descriptor, `c` NUL-terminated.
    let fd = unsafe { libc::openat(at, c.as_ptr(), flags, mode as libc::c_uint) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a descriptor openat just returned, owned by nothing else.
    Ok(unsafe { File::from_raw_fd(fd) })
}

/// `openat2(dir, rel, flags, mode)` resolving beneath `dir` without
/// symlinks; `ENOSYS` where the kernel lacks it.
fn openat2_beneath(
    dir: libc::c_int,
    rel: &[u8],
    flags: libc::c_int,
    mode: u32,
) -> io::Result<File> {
    let c = CString::new(rel).map_err(io::Error::other)?;
    // The kernel's `struct open_how` (libc's is non-exhaustive).
    #[repr(C)]
    struct OpenHow {
        flags: u64,
        mode: u64,
        resolve: u64,
    }
    let how = OpenHow {
        flags: flags as u64,
        mode: if flags & libc::O_CREAT != 0 {
            u64::from(mode)
        } else {
            0
        },
        resolve: libc::RESOLVE_BENEATH | libc::RESOLVE_NO_SYMLINKS | libc::RESOLVE_NO_MAGICLINKS,
    };
    // SAFETY: a valid directory descriptor, NUL-terminated path, and an
    // `open_how` of the size passed.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            dir,
            c.as_ptr(),
            &how as *const OpenHow,
            std::mem::size_of::<OpenHow>(),
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a descriptor openat2 just returned, owned by nothing else.
    Ok(unsafe { File::from_raw_fd(fd as libc::c_int) })
}

/// The directory holding the last component of `rel` below `dir`, opened
/// component by component without following a symlink (`None`: `dir`
/// itself), and that last component. `..` is refused.
fn parent_beneath<'r>(dir: &impl AsRawFd, rel: &'r [u8]) -> io::Result<(Option<File>, &'r [u8])> {
    let mut parts: Vec<&[u8]> = rel.split(|&b| b == b'/').collect();
    let last = parts.pop().unwrap_or_default();
    let mut at: Option<File> = None;
    for part in parts {
        if part == b".." {
            return Err(io::Error::from_raw_os_error(libc::EXDEV));
        }
        let base = at.as_ref().map_or(dir.as_raw_fd(), AsRawFd::as_raw_fd);
        let c = CString::new(part).map_err(io::Error::other)?;
        let flags = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC;
        // SAFETY: `base` is an open directory descriptor, `c` NUL-terminated.
        let fd = unsafe { libc::openat(base, c.as_ptr(), flags) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a descriptor openat just returned, owned by nothing else.
        at = Some(unsafe { File::from_raw_fd(fd) });
    }
    Ok((at, last))
}

/// Creates the directory `rel` relative to the directory `dir`, never
/// leaving it: its parent is found as [`open_at`] finds a file's.
pub fn mkdir_at(dir: &impl AsRawFd, rel: &[u8], mode: u32) -> io::Result<()> {
    let (parent, name) = match rel.iter().rposition(|&b| b == b'/') {
        None => (None, rel),
        Some(i) => {
            let flags = libc::O_RDONLY | libc::O_DIRECTORY;
            (Some(open_at(dir, &rel[..i], flags, 0)?), &rel[i + 1..])
        }
    };
    let at = parent.as_ref().map_or(dir.as_raw_fd(), AsRawFd::as_raw_fd);
    let c = CString::new(name).map_err(io::Error::other)?;
    // SAFETY: `at` is an open directory descriptor, `c` NUL-terminated.
    if unsafe { libc::mkdirat(at, c.as_ptr(), mode as libc::mode_t) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Creates the directory `name` in `parent` with mode 0700 and opens it,
/// checking on the descriptor that it is the one just made: an empty
/// directory owned by this process's user that no one else may enter. Someone who
/// can write to `parent` and swaps another directory in between the two
/// steps is refused (`EPERM`), so nothing is ever written into a
/// directory another user controls.
pub fn make_private_dir(pdir: &File, name: &[u8]) -> io::Result<File> {
    let cn = CString::new(name).map_err(io::Error::other)?;
    // SAFETY: `pdir` is an open directory descriptor, `cn` NUL-terminated.
    if unsafe { libc::mkdirat(pdir.as_raw_fd(), cn.as_ptr(), 0o700) } != 0 {
        return Err(io::Error::last_os_error());
    }
    open_fresh(pdir, name)
}

/// Opens the directory `name` in `pdir` that this process just made: it
/// must be private ([`check_private`]) and empty. A private directory of
/// this user's swapped in between the mkdir and the open (another 0700
/// tree of root's, say) holds something: `EPERM`, and it is never written
/// to nor removed.
fn open_fresh(pdir: &File, name: &[u8]) -> io::Result<File> {
    let dir = open_at(pdir, name, libc::O_RDONLY | libc::O_DIRECTORY, 0)?;
    check_private(&dir)?;
    if !Dir::from_file(&dir)?.names()?.is_empty() {
        return Err(io::Error::from_raw_os_error(libc::EPERM));
    }
    Ok(dir)
}

/// `EPERM` unless `dir` is owned by this process's effective user and has
/// no group or other permissions.
pub fn check_private(dir: &File) -> io::Result<()> {
    let st = fstat(dir)?;
    if st.uid != euid() || st.mode & 0o077 != 0 {
        return Err(io::Error::from_raw_os_error(libc::EPERM));
    }
    Ok(())
}

/// Sets the access and modification times of `name` (one component) in
/// the directory `dir` to `sec` seconds and `nsec` nanoseconds past the
/// epoch, without following `name` if it is a symlink.
pub fn set_times_in(dir: &impl AsRawFd, name: &[u8], sec: i64, nsec: u32) -> io::Result<()> {
    let c = CString::new(name).map_err(io::Error::other)?;
    let t = libc::timespec {
        tv_sec: sec as libc::time_t,
        tv_nsec: nsec as libc::c_long,
    };
    let times = [t, t];
    // SAFETY: `dir` is an open descriptor, `c` NUL-terminated, `times`
    // two valid timespecs.
    let r = unsafe {
        libc::utimensat(
            dir.as_raw_fd(),
            c.as_ptr(),
            times.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::open_dir_path;

    #[test]
    fn entries_are_created_beneath_the_directory_only() {
        let t = tempfile::tempdir().unwrap();
        let staging = t.path().join("staging");
        let victim = t.path().join("victim");
        std::fs::create_dir_all(staging.join("segments")).unwrap();
        std::fs::create_dir(&victim).unwrap();
        std::os::unix::fs::symlink(&victim, staging.join("wal")).unwrap();
        let d = File::open(&staging).unwrap();
        let create = libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL;
        // Through a symlinked directory, or up and out: refused.
        assert!(open_at(&d, b"wal/current.wal", create, 0o600).is_err());
        assert!(open_at(&d, b"segments/../../victim/x", create, 0o600).is_err());
        assert!(mkdir_at(&d, b"wal/sub", 0o700).is_err());
        assert_eq!(std::fs::read_dir(&victim).unwrap().count(), 0);
        // Below real directories: fine.
        mkdir_at(&d, b"segments/3600", 0o700).unwrap();
        open_at(&d, b"segments/3600/a.seg", create, 0o600).unwrap();
        assert!(staging.join("segments/3600/a.seg").is_file());
        // The fallback for kernels without openat2 refuses the same.
        // (O_DIRECTORY | O_NOFOLLOW on a symlink is ENOTDIR.)
        let e = parent_beneath(&d, b"wal/current.wal").unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ENOTDIR));
        assert!(parent_beneath(&d, b"segments/../x").is_err());
    }

    #[test]
    fn a_private_directory_is_checked_on_its_descriptor() {
        use std::os::unix::fs::PermissionsExt;
        let t = tempfile::tempdir().unwrap();
        let parent = open_dir_path(t.path()).unwrap();
        let d = make_private_dir(&parent, b"stage").unwrap();
        assert!(check_private(&d).is_ok());
        assert!(make_private_dir(&parent, b"stage").is_err(), "exists");
        // What an attacker swaps in: someone else's or an open directory.
        let open = t.path().join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
        let e = check_private(&File::open(&open).unwrap()).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EPERM));
        // What an attacker swaps in between the mkdir and the open: a
        // private tree of this user's from elsewhere. Owner and mode pass;
        // it is not empty, so it is refused and left as it is.
        drop(d);
        std::fs::write(t.path().join("stage/PRECIOUS"), b"keep").unwrap();
        let e = open_fresh(&parent, b"stage").unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EPERM));
        assert_eq!(
            std::fs::read(t.path().join("stage/PRECIOUS")).unwrap(),
            b"keep"
        );
    }
}
