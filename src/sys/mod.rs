//! Reading a directory tree that others may change while it is read.
//!
//! Everything below the data directory is reached relative to a directory
//! that is already open (`openat`, `fstatat`), never by a path walked again
//! from the top: a directory swapped for a symlink after it was listed is
//! not followed, and a file swapped for a symlink, a FIFO or a device is
//! opened with `O_NOFOLLOW | O_NONBLOCK` and refused after an `fstat` of
//! the descriptor itself, so a race can make `create` fail, never read
//! something else or hang.

use std::ffi::{CStr, CString};
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// What a directory entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link.
    Symlink,
    /// A named pipe.
    Fifo,
    /// A socket.
    Socket,
    /// A character or block device.
    Device,
}

impl Kind {
    /// How messages name it: "a regular file", "a symlink", ...
    pub fn describe(self) -> &'static str {
        match self {
            Kind::File => "a regular file",
            Kind::Dir => "a directory",
            Kind::Symlink => "a symlink",
            Kind::Fifo => "a fifo",
            Kind::Socket => "a socket",
            Kind::Device => "a device",
        }
    }
}

/// The parts of `struct stat` this crate uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    /// File type.
    pub kind: Kind,
    /// Size in bytes.
    pub size: u64,
    /// Permission bits (`st_mode & 0o7777`).
    pub mode: u32,
    /// Modification time, seconds.
    pub mtime: i64,
    /// Modification time, nanoseconds part.
    pub mtime_nsec: i64,
    /// Inode number.
    pub ino: u64,
    /// Device number.
    pub dev: u64,
    /// Owner.
    pub uid: u32,
}

impl Stat {
    fn from_raw(st: &libc::stat) -> Stat {
        let kind = match st.st_mode & libc::S_IFMT {
            libc::S_IFREG => Kind::File,
            libc::S_IFDIR => Kind::Dir,
            libc::S_IFLNK => Kind::Symlink,
            libc::S_IFIFO => Kind::Fifo,
            libc::S_IFSOCK => Kind::Socket,
            _ => Kind::Device,
        };
        Stat {
            kind,
            size: st.st_size.max(0) as u64,
            mode: st.st_mode & 0o7777,
            mtime: st.st_mtime,
            mtime_nsec: st.st_mtime_nsec,
            ino: st.st_ino,
            dev: st.st_dev,
            uid: st.st_uid,
        }
    }

    /// What must not change while a file is read: device, inode, size, mtime.
    pub fn key(&self) -> StatKey {
        (self.dev, self.ino, self.size, self.mtime, self.mtime_nsec)
    }
}

/// Device, inode, size and mtime (seconds, nanoseconds) of a file.
pub type StatKey = (u64, u64, u64, i64, i64);

/// `fstat` of an open descriptor.
pub fn fstat(fd: &impl AsRawFd) -> io::Result<Stat> {
    // SAFETY: `stat` is plain old data; fstat fills it on success.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: a valid descriptor and out-pointer.
    if unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(Stat::from_raw(&st))
}

fn cname(name: &[u8]) -> io::Result<CString> {
    CString::new(name).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in name"))
}

/// An open directory, the base of every lookup below it.
#[derive(Debug)]
pub struct Dir {
    fd: OwnedFd,
}

impl Dir {
    /// Opens `path` as a directory, following symlinks (the data dir itself
    /// may be one).
    pub fn open(path: &Path) -> io::Result<Dir> {
        let c = cname(path.as_os_str().as_bytes())?;
        open_raw(libc::AT_FDCWD, &c, libc::O_DIRECTORY)
    }

    /// Opens `path` as a directory, not following a symlink at its end.
    pub fn open_nofollow(path: &Path) -> io::Result<Dir> {
        let c = cname(path.as_os_str().as_bytes())?;
        open_raw(libc::AT_FDCWD, &c, libc::O_DIRECTORY | libc::O_NOFOLLOW)
    }

    /// Sets the permission bits of `name` inside this directory, never
    /// through a symlink (`AT_SYMLINK_NOFOLLOW`: a symlink swapped in is
    /// refused, not followed).
    pub fn chmod_at(&self, name: &[u8], mode: u32) -> io::Result<()> {
        let c = cname(name)?;
        chmod_nofollow(self.fd.as_raw_fd(), &c, mode)
    }

    /// Opens the directory `name` inside this one; a symlink is followed
    /// only when `follow` is set, else it fails with `ELOOP`.
    pub fn open_dir(&self, name: &[u8], follow: bool) -> io::Result<Dir> {
        let c = cname(name)?;
        let flags = libc::O_DIRECTORY | if follow { 0 } else { libc::O_NOFOLLOW };
        match open_raw(self.fd.as_raw_fd(), &c, flags) {
            // O_DIRECTORY answers ENOTDIR for a symlink: say what it is.
            Err(e)
                if e.raw_os_error() == Some(libc::ENOTDIR)
                    && !follow
                    && self.stat_at(name).is_ok_and(|s| s.kind == Kind::Symlink) =>
            {
                Err(io::Error::from_raw_os_error(libc::ELOOP))
            }
            r => r,
        }
    }

    /// `fstatat` of `name` inside this directory, not following a symlink.
    pub fn stat_at(&self, name: &[u8]) -> io::Result<Stat> {
        let c = cname(name)?;
        // SAFETY: `stat` is plain old data.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: a valid directory descriptor, NUL-terminated name, out-pointer.
        let r = unsafe {
            libc::fstatat(
                self.fd.as_raw_fd(),
                c.as_ptr(),
                &mut st,
                libc::AT_SYMLINK_NOFOLLOW,
            )
        };
        if r != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Stat::from_raw(&st))
    }

    /// A directory handle on a duplicate of `f`'s descriptor (the other
    /// way, `File::from(dir)`).
    pub fn from_file(f: &File) -> io::Result<Dir> {
        Ok(Dir {
            fd: f.try_clone()?.into(),
        })
    }

    /// Sets the directory's own permission bits (`fchmod`).
    pub fn chmod(&self, mode: u32) -> io::Result<()> {
        // SAFETY: an open descriptor.
        if unsafe { libc::fchmod(self.fd.as_raw_fd(), mode & 0o7777) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// `fstat` of the directory itself.
    pub fn stat(&self) -> io::Result<Stat> {
        fstat(&self.fd)
    }

    /// Opens the file `name` inside this directory for reading without
    /// following a symlink (`ELOOP`) and without blocking on a FIFO, and
    /// returns it with the `fstat` of what was opened. The caller checks
    /// [`Stat::kind`]: anything but [`Kind::File`] must be refused.
    pub fn open_file(&self, name: &[u8]) -> io::Result<(File, Stat)> {
        let c = cname(name)?;
        let flags =
            libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_CLOEXEC;
        // SAFETY: a valid directory descriptor and NUL-terminated name.
        let fd = unsafe { libc::openat(self.fd.as_raw_fd(), c.as_ptr(), flags) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: openat returned a new descriptor that nothing else owns.
        let file = unsafe { File::from_raw_fd(fd) };
        // O_NONBLOCK only kept the open itself from waiting on a FIFO; it
        // has no effect on reads of a regular file, so it stays.
        let st = fstat(&file)?;
        Ok((file, st))
    }

    /// The names in this directory (not `.` and `..`), in no order.
    pub fn names(&self) -> io::Result<Vec<Vec<u8>>> {
        let mut names = Vec::new();
        self.each_name(|n| {
            names.push(n.to_vec());
            Ok(())
        })?;
        Ok(names)
    }

    /// Calls `f` with each name in this directory (not `.` and `..`), in
    /// no order, holding none of them: a directory of millions of names
    /// costs no memory here.
    pub fn each_name(&self, mut f: impl FnMut(&[u8]) -> io::Result<()>) -> io::Result<()> {
        // A new open file description, so each listing starts at the top
        // and the directory's own descriptor keeps its offset.
        let dot = self.open_dir(b".", false)?;
        let raw = std::os::fd::IntoRawFd::into_raw_fd(dot.fd);
        // SAFETY: `raw` is an open directory descriptor; fdopendir takes it
        // over and closedir below closes it.
        let dirp = unsafe { libc::fdopendir(raw) };
        if dirp.is_null() {
            let e = io::Error::last_os_error();
            // SAFETY: fdopendir failed, so `raw` is still ours to close.
            unsafe { libc::close(raw) };
            return Err(e);
        }
        let result = loop {
            // SAFETY: errno is thread-local; cleared so end of directory
            // (NULL, errno 0) is told from an error (NULL, errno set).
            unsafe { *libc::__errno_location() = 0 };
            // SAFETY: `dirp` is a valid DIR* until closedir.
            let ent = unsafe { libc::readdir(dirp) };
            if ent.is_null() {
                let e = io::Error::last_os_error();
                break match e.raw_os_error() {
                    Some(0) | None => Ok(()),
                    _ => Err(e),
                };
            }
            // SAFETY: readdir returned a valid dirent whose d_name is
            // NUL-terminated and lives until the next readdir call.
            let name = unsafe { CStr::from_ptr((*ent).d_name.as_ptr()) }.to_bytes();
            if name != b"."
                && name != b".."
                && let Err(e) = f(name)
            {
                break Err(e);
            }
        };
        // SAFETY: `dirp` came from fdopendir and is closed exactly once.
        unsafe { libc::closedir(dirp) };
        result
    }
}

/// `fchmodat(at, name, mode, AT_SYMLINK_NOFOLLOW)`.
fn chmod_nofollow(at: libc::c_int, name: &CStr, mode: u32) -> io::Result<()> {
    // SAFETY: `at` is AT_FDCWD or an open directory descriptor, `name`
    // NUL-terminated.
    let r = unsafe { libc::fchmodat(at, name.as_ptr(), mode & 0o7777, libc::AT_SYMLINK_NOFOLLOW) };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Sets the permission bits of `path` itself, never through a symlink.
pub fn chmod_path_nofollow(path: &Path, mode: u32) -> io::Result<()> {
    chmod_nofollow(libc::AT_FDCWD, &cpath(path)?, mode)
}

impl From<Dir> for File {
    fn from(d: Dir) -> File {
        File::from(d.fd)
    }
}

fn open_raw(dirfd: libc::c_int, name: &CStr, flags: libc::c_int) -> io::Result<Dir> {
    // SAFETY: a valid (or AT_FDCWD) directory descriptor and NUL-terminated name.
    let fd = unsafe {
        libc::openat(
            dirfd,
            name.as_ptr(),
            flags | libc::O_RDONLY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: openat returned a new descriptor that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    Ok(Dir { fd })
}

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

/// True when `e` is what `O_NOFOLLOW` gives for a symlink.
pub fn is_symlink_error(e: &io::Error) -> bool {
    e.raw_os_error() == Some(libc::ELOOP)
}

// ------------------------------------------------------------ publish

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

// ------------------------------------------------------------ restore

fn cpath(p: &Path) -> io::Result<CString> {
    cname(p.as_os_str().as_bytes())
}

/// Which mount a path is on, as far as the kernel tells (`statx`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MountOf {
    /// `STATX_ATTR_MOUNT_ROOT`, when the kernel reports it.
    pub is_mount_root: Option<bool>,
    /// `STATX_MNT_ID`, when the kernel reports it.
    pub mount_id: Option<u64>,
    /// Device (major, minor).
    pub dev: (u32, u32),
}

/// `statx` of `path` (following a symlink only with `follow`).
pub fn mount_of(path: &Path, follow: bool) -> io::Result<MountOf> {
    let c = cpath(path)?;
    let flags = if follow { 0 } else { libc::AT_SYMLINK_NOFOLLOW };
    // SAFETY: an all-zero statx is a valid value to be overwritten.
    let mut st: libc::statx = unsafe { std::mem::zeroed() };
    // SAFETY: a valid NUL-terminated path, AT_FDCWD, a valid out-pointer.
    let r = unsafe {
        libc::statx(
            libc::AT_FDCWD,
            c.as_ptr(),
            flags,
            libc::STATX_BASIC_STATS | libc::STATX_MNT_ID,
            &mut st,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    let root_attr = libc::STATX_ATTR_MOUNT_ROOT as u64;
    Ok(MountOf {
        is_mount_root: (st.stx_attributes_mask & root_attr != 0)
            .then_some(st.stx_attributes & root_attr != 0),
        mount_id: (st.stx_mask & libc::STATX_MNT_ID != 0).then_some(st.stx_mnt_id),
        dev: (st.stx_dev_major, st.stx_dev_minor),
    })
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

/// The process's umask.
pub fn current_umask() -> u32 {
    // SAFETY: umask only swaps the process mask; it is put back at once.
    let old = unsafe { libc::umask(0o022) };
    // SAFETY: puts the mask read above back.
    unsafe { libc::umask(old) };
    old as u32
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

/// Room left on a filesystem for unprivileged users.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FreeSpace {
    /// Bytes free.
    pub bytes: u64,
    /// The block size files are rounded up to.
    pub block: u64,
    /// Inodes free (0 where the filesystem does not count them).
    pub inodes: u64,
}

/// Free space on the filesystem of `path` (`statvfs`).
pub fn free_space(path: &Path) -> io::Result<FreeSpace> {
    let c = cpath(path)?;
    // SAFETY: an all-zero statvfs is a valid value to be overwritten.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: valid path and out-pointer.
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let block = st.f_frsize.max(1);
    Ok(FreeSpace {
        bytes: st.f_bavail * block,
        block,
        inodes: st.f_favail,
    })
}

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

/// Opens the directory `path` (following symlinks: the path as given now,
/// pinned from here on by the descriptor).
pub fn open_dir_path(path: &Path) -> io::Result<File> {
    Dir::open(path).map(File::from)
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

/// `unlinkat(dir, name, flags)` (`AT_REMOVEDIR` for a directory).
pub fn unlink_in(dir: &impl AsRawFd, name: &[u8], flags: libc::c_int) -> io::Result<()> {
    let c = cname(name)?;
    // SAFETY: an open directory descriptor and a NUL-terminated name.
    if unsafe { libc::unlinkat(dir.as_raw_fd(), c.as_ptr(), flags) } != 0 {
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

/// Removes the directory `tree` is open on, named `name` in `parent`:
/// everything below it is removed through the descriptor (never by a path
/// someone could swap), then the emptied directory by name, which only
/// succeeds if that name still holds an empty directory.
pub fn remove_tree_at(parent: &File, name: &[u8], tree: &File) -> io::Result<()> {
    remove_tree_at_last(parent, name, tree, None)
}

/// [`remove_tree_at`], removing the entry `last` of the top directory
/// (a marker) only after everything else below it: a removal killed part
/// way leaves the marker in place.
pub fn remove_tree_at_last(
    parent: &File,
    name: &[u8],
    tree: &File,
    last: Option<&[u8]>,
) -> io::Result<()> {
    let d = Dir::from_file(tree)?;
    empty(&d, last)?;
    if let Some(last) = last {
        removal_step();
        match unlink_in(&d.fd, last, 0) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            r => r?,
        }
    }
    removal_step();
    match unlink_in(parent, name, libc::AT_REMOVEDIR) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        r => r,
    }
}

fn empty(d: &Dir, skip: Option<&[u8]>) -> io::Result<()> {
    // Removing entries needs write permission on their directory.
    let _ = d.chmod(0o700);
    for name in d.names()? {
        if skip == Some(name.as_slice()) {
            continue;
        }
        match d.stat_at(&name) {
            Ok(st) if st.kind == Kind::Dir => {
                let child = d.open_dir(&name, false)?;
                empty(&child, None)?;
                removal_step();
                unlink_in(&d.fd, &name, libc::AT_REMOVEDIR)?;
            }
            Ok(_) => {
                removal_step();
                unlink_in(&d.fd, &name, 0)?
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// The environment variable of the test hook in [`removal_step`].
#[cfg(debug_assertions)]
const KILL_AT_REMOVAL_ENV: &str = "SYDRA_ARCHIVE_TEST_KILL_AT_REMOVAL";

/// Called before each step that removes a tree (a rename before the
/// removal, each unlink, each rmdir). Test hook, compiled into debug
/// builds only: with `SYDRA_ARCHIVE_TEST_KILL_AT_REMOVAL=N` in the
/// environment, the process sends itself `SIGKILL` just before its step
/// number `N` (counting from 0), so tests can kill a cleanup at every
/// point of it deterministically, however loaded the machine is. Release
/// builds ignore the variable.
#[inline]
pub fn removal_step() {
    #[cfg(debug_assertions)]
    {
        use std::sync::OnceLock;
        use std::sync::atomic::{AtomicU64, Ordering};
        static AT: OnceLock<Option<u64>> = OnceLock::new();
        static DONE: AtomicU64 = AtomicU64::new(0);
        let at = AT.get_or_init(|| {
            std::env::var(KILL_AT_REMOVAL_ENV)
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

/// This process's effective user id.
pub fn euid() -> u32 {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() }
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

/// Makes a FIFO at `path` (tests swap them in for files).
#[cfg(test)]
pub fn mkfifo(path: &Path) -> io::Result<()> {
    let c = cpath(path)?;
    // SAFETY: a valid NUL-terminated path.
    if unsafe { libc::mkfifo(c.as_ptr(), 0o600) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn files_are_opened_without_following_or_blocking() {
        let t = tempfile::tempdir().unwrap();
        std::fs::write(t.path().join("f"), b"data").unwrap();
        std::fs::write(t.path().join("secret"), b"secret").unwrap();
        std::os::unix::fs::symlink(t.path().join("secret"), t.path().join("link")).unwrap();
        mkfifo(&t.path().join("fifo")).unwrap();
        std::fs::create_dir(t.path().join("d")).unwrap();

        let d = Dir::open(t.path()).unwrap();
        let (mut f, st) = d.open_file(b"f").unwrap();
        assert_eq!((st.kind, st.size), (Kind::File, 4));
        let mut s = String::new();
        f.read_to_string(&mut s).unwrap();
        assert_eq!(s, "data");

        let e = d.open_file(b"link").unwrap_err();
        assert!(is_symlink_error(&e), "{e}");
        // A FIFO opens at once (no writer needed) and says what it is.
        let (_, st) = d.open_file(b"fifo").unwrap();
        assert_eq!(st.kind, Kind::Fifo);
        assert_eq!(d.stat_at(b"link").unwrap().kind, Kind::Symlink);

        let mut names = d.names().unwrap();
        names.sort();
        assert_eq!(names, [&b"d"[..], b"f", b"fifo", b"link", b"secret"]);
        // Listing twice gives the same names (own open file description).
        assert_eq!(d.names().unwrap().len(), 5);
    }

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

    #[test]
    fn a_tree_is_removed_through_its_descriptor_not_its_name() {
        let t = tempfile::tempdir().unwrap();
        let parent = open_dir_path(t.path()).unwrap();
        let ours = make_private_dir(&parent, b"stage").unwrap();
        mkdir_at(&ours, b"wal", 0o700).unwrap();
        let create = libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL;
        open_at(&ours, b"wal/x.wal", create, 0o400).unwrap();
        // A read-only directory inside, as restored trees have.
        use std::os::unix::fs::PermissionsExt;
        let ro = std::fs::Permissions::from_mode(0o500);
        std::fs::set_permissions(t.path().join("stage/wal"), ro).unwrap();
        // Someone swaps another tree in at our name.
        std::fs::rename(t.path().join("stage"), t.path().join("moved")).unwrap();
        std::fs::create_dir(t.path().join("stage")).unwrap();
        std::fs::write(t.path().join("stage/PRECIOUS"), b"keep").unwrap();
        let e = remove_tree_at(&parent, b"stage", &ours).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ENOTEMPTY));
        assert_eq!(
            std::fs::read(t.path().join("stage/PRECIOUS")).unwrap(),
            b"keep"
        );
        assert_eq!(
            std::fs::read_dir(t.path().join("moved")).unwrap().count(),
            0
        );
    }

    #[test]
    fn modes_are_never_set_through_a_symlink() {
        use std::os::unix::fs::PermissionsExt;
        let t = tempfile::tempdir().unwrap();
        let secret = t.path().join("secret");
        std::fs::write(&secret, b"s").unwrap();
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::os::unix::fs::symlink(&secret, t.path().join("l")).unwrap();
        let d = Dir::open(t.path()).unwrap();
        assert!(d.chmod_at(b"l", 0o4777).is_err());
        assert!(chmod_path_nofollow(&t.path().join("l"), 0o777).is_err());
        let mode = std::fs::metadata(&secret).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, 0o600);
    }

    #[test]
    fn directories_swapped_for_symlinks_are_not_followed() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir(t.path().join("real")).unwrap();
        std::os::unix::fs::symlink(t.path().join("real"), t.path().join("d")).unwrap();
        let d = Dir::open(t.path()).unwrap();
        assert!(is_symlink_error(&d.open_dir(b"d", false).unwrap_err()));
        assert_eq!(
            d.open_dir(b"d", true).unwrap().stat().unwrap().kind,
            Kind::Dir
        );
    }
}
