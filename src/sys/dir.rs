//! Reading a directory tree that others may change while it is read.
//!
//! Everything below the data directory is reached relative to a directory
//! that is already open (`openat`, `fstatat`), never by a path walked again
//! from the top: a directory swapped for a symlink after it was listed is
//! not followed, and a file swapped for a symlink, a FIFO or a device is
//! opened with `O_NOFOLLOW | O_NONBLOCK` and refused after an `fstat` of
//! the descriptor itself, so a race can make `create` fail, never read
//! something else or hang.

use std::ffi::CStr;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use super::{Kind, Stat, cname, cpath, fstat};

/// An open directory, the base of every lookup below it.
#[derive(Debug)]
pub struct Dir {
    pub(super) fd: OwnedFd,
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

/// Opens the directory `path` (following symlinks: the path as given now,
/// pinned from here on by the descriptor).
pub fn open_dir_path(path: &Path) -> io::Result<File> {
    Dir::open(path).map(File::from)
}

/// True when `e` is what `O_NOFOLLOW` gives for a symlink.
pub fn is_symlink_error(e: &io::Error) -> bool {
    e.raw_os_error() == Some(libc::ELOOP)
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
