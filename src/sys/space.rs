//! Where a path lives: which mount it is on (`statx`) and the room left
//! on its filesystem (`statvfs`).

use std::io;
use std::path::Path;

use super::cpath;

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
