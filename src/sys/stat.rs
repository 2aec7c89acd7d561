//! What `stat` says of a file, in the parts this crate uses: its kind,
//! size, mode, times, inode, device and owner.

use std::io;
use std::os::fd::AsRawFd;

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
    /// Nanoseconds past the mtime as an archive records it: 0 for an
    /// mtime before the epoch (archived as the epoch itself).
    pub fn archived_nsec(&self) -> u32 {
        if self.mtime < 0 {
            0
        } else {
            self.mtime_nsec.clamp(0, 999_999_999) as u32
        }
    }

    pub(super) fn from_raw(st: &libc::stat) -> Stat {
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
