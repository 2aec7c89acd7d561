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
        let st = fstat(&file)?;
        if st.kind == Kind::File {
            // Plain blocking reads from here on (O_NONBLOCK only kept the
            // open itself from waiting on a FIFO).
            // SAFETY: fcntl on a descriptor we own.
            unsafe { libc::fcntl(fd, libc::F_SETFL, libc::O_RDONLY) };
        }
        Ok((file, st))
    }

    /// The names in this directory (not `.` and `..`), in no order.
    pub fn names(&self) -> io::Result<Vec<Vec<u8>>> {
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
        let mut names = Vec::new();
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
            if name != b"." && name != b".." {
                names.push(name.to_vec());
            }
        };
        // SAFETY: `dirp` came from fdopendir and is closed exactly once.
        unsafe { libc::closedir(dirp) };
        result.map(|()| names)
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
    Ok(Dir {
        fd: unsafe { OwnedFd::from_raw_fd(fd) },
    })
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
        let fifo = cname(t.path().join("fifo").as_os_str().as_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
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
