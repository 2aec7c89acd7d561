//! Where a restore goes, checked before a byte of the archive is read:
//! the data dir's own path (a symlink followed only if it is this user's
//! or root's), its parent held open, whether it is absent, empty or full,
//! and that it can be replaced by a rename (not a mount point).

use std::ffi::OsString;
use std::fs::{self, File};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};

use crate::error::{Error, Result};
use crate::store::publish::split;
use crate::sys;

/// What is at the target now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetState {
    /// Nothing there.
    Absent,
    /// An empty directory.
    Empty,
    /// A directory with contents (replaced only with `force`).
    Full,
}

fn target_state(target: &Path) -> Result<TargetState> {
    match fs::symlink_metadata(target) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(TargetState::Absent),
        Err(e) => Err(Error::io("stat", target, e)),
        Ok(m) if m.is_dir() => {
            let mut rd =
                fs::read_dir(target).map_err(|e| Error::io("read directory", target, e))?;
            Ok(if rd.next().is_none() {
                TargetState::Empty
            } else {
                TargetState::Full
            })
        }
        Ok(_) => Err(Error::Refused(format!(
            "{} exists and is not a directory; refusing to replace it",
            target.display()
        ))),
    }
}

/// `data_dir` with `.` components, repeated and trailing slashes taken
/// away (`DIR/.` and `DIR/` are `DIR`). A path whose last component is not
/// a name (`..`, `.`, `/`) is refused: it names a directory through
/// another one, and a directory cannot be renamed by such a path.
fn normalise(data_dir: &Path) -> Result<PathBuf> {
    let path: PathBuf = data_dir.components().collect();
    match path.components().next_back() {
        Some(Component::Normal(_)) => Ok(path),
        _ => Err(Error::Refused(format!(
            "{} does not end in a directory name (it ends in `.`, `..` or `/`); give the data directory's own path",
            data_dir.display()
        ))),
    }
}

/// Where a restore goes, checked before the first byte is read.
pub struct Target {
    /// The data dir (where a symlink to it points).
    pub path: PathBuf,
    /// Its parent, where the staging directory is made.
    pub parent: PathBuf,
    /// The parent, open: every name in it (staging, target, kept) is used
    /// relative to this descriptor, so swapping the parent's path later
    /// redirects nothing.
    pub parent_dir: File,
    /// Its name in the parent.
    pub name: OsString,
    /// Absent, empty or full when checked.
    pub state: TargetState,
}

/// Resolves `data_dir` and refuses what cannot be replaced by a rename
/// (a mount point), or not without `force` (a data dir with contents).
pub fn resolve_target(data_dir: &Path, force: bool) -> Result<Target> {
    let data_dir = normalise(data_dir)?;
    // A data dir that is a symlink is restored where it points, if the
    // symlink is this user's or root's: one planted by someone else would
    // make this run replace a directory of their choosing.
    let path = match fs::symlink_metadata(&data_dir) {
        Ok(m) if m.file_type().is_symlink() => {
            if m.uid() != 0 && m.uid() != sys::euid() {
                return Err(Error::Refused(format!(
                    "{} is a symlink owned by uid {}, not by this user or root; refusing to follow it (give the real path)",
                    data_dir.display(),
                    m.uid()
                )));
            }
            fs::canonicalize(&data_dir).map_err(|e| Error::io("follow symlink", &data_dir, e))?
        }
        _ => data_dir,
    };
    let (parent, name) = split(&path)?;
    let parent_dir = sys::open_dir_path(&parent).map_err(|e| {
        Error::Refused(format!(
            "parent directory {} cannot be opened: {e}",
            parent.display()
        ))
    })?;
    let state = target_state(&path)?;
    if state != TargetState::Absent {
        check_replaceable(&parent, &path)?;
    }
    if state == TargetState::Full && !force {
        return Err(Error::Refused(format!(
            "{} is not empty; use --force to replace it (the old contents are kept beside it)",
            path.display()
        )));
    }
    Ok(Target {
        path,
        parent,
        parent_dir,
        name,
        state,
    })
}

/// Refuses a target that cannot be replaced by a rename in its parent: a
/// mount point (of another filesystem, or a bind mount of the same one).
/// `statx` tells the mount (`STATX_MNT_ID`) and whether the target is the
/// root of one (`STATX_ATTR_MOUNT_ROOT`); where the kernel tells neither,
/// a device number that differs from the parent's is taken for a mount.
fn check_replaceable(parent: &Path, target: &Path) -> Result<()> {
    let mounted = match (sys::mount_of(target, false), sys::mount_of(parent, true)) {
        (Ok(t), Ok(p)) => {
            if t.is_mount_root == Some(true) {
                true
            } else if let (Some(a), Some(b)) = (t.mount_id, p.mount_id) {
                // Different ids: another mount. The same id and different
                // devices: a btrfs subvolume, which renames like a directory.
                a != b
            } else if t.is_mount_root.is_some() {
                false
            } else {
                t.dev != p.dev
            }
        }
        _ => {
            let t = fs::symlink_metadata(target).map_err(|e| Error::io("stat", target, e))?;
            let p = fs::metadata(parent).map_err(|e| Error::io("stat", parent, e))?;
            t.dev() != p.dev()
        }
    };
    if mounted {
        return Err(Error::Refused(format!(
            "{} is a mount point and cannot be replaced by a rename; restore into a directory below it (e.g. {}) instead",
            target.display(),
            target.join("data").display()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trailing_dots_are_normalised_and_dotdot_refused() {
        assert_eq!(normalise(Path::new("a/b/.")).unwrap(), Path::new("a/b"));
        assert_eq!(normalise(Path::new("a/./b/")).unwrap(), Path::new("a/b"));
        assert_eq!(normalise(Path::new("/x//y/./")).unwrap(), Path::new("/x/y"));
        assert_eq!(normalise(Path::new("./db")).unwrap(), Path::new("./db"));
        for bad in ["a/..", ".", "./", "/", "a/b/../.."] {
            match normalise(Path::new(bad)) {
                Err(Error::Refused(m)) => assert_eq!(
                    m,
                    format!(
                        "{bad} does not end in a directory name (it ends in `.`, `..` or `/`); give the data directory's own path"
                    )
                ),
                other => panic!("{bad}: {other:?}"),
            }
        }
    }
}
