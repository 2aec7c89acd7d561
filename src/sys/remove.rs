//! Removing names and whole trees through the descriptors of open
//! directories (never by a path someone could swap), with the test hook
//! that kills a removal at any step.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;

use super::{Dir, Kind, cname};

/// `unlinkat(dir, name, flags)` (`AT_REMOVEDIR` for a directory).
pub fn unlink_in(dir: &impl AsRawFd, name: &[u8], flags: libc::c_int) -> io::Result<()> {
    let c = cname(name)?;
    // SAFETY: an open directory descriptor and a NUL-terminated name.
    if unsafe { libc::unlinkat(dir.as_raw_fd(), c.as_ptr(), flags) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::{make_private_dir, mkdir_at, open_at, open_dir_path};

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
}
