//! The shelf lock: `prune --yes` and the commands that make an archive
//! on a base (`create --base`, `create --incremental`) serialise on the
//! directory that holds the base (and the one the new archive goes to),
//! so a prune never deletes a base that an incremental being written
//! will name, and a create never reads a base a prune is deleting.
//!
//! The lock is an `flock` on `.sydra-archive.lock` in that directory:
//! creates take it shared (they may run together), a deleting prune
//! exclusive. The kernel releases it when its holder exits, however it
//! exits, so a lock is never stale. A directory where the lock file
//! cannot be made (read-only) is used unlocked: nothing can be deleted
//! there by a prune of this user either. An `s3://` prefix is locked by
//! entries under it (see [`crate::store::s3::Lease`]), with the same
//! sides: creates together, a prune alone (and, unlike `flock`, a
//! create where it may not write an entry runs unlocked, as in a
//! read-only directory).
//!
//! A `watch` also holds, for its whole run, the lock of the one watch of
//! its destination: an exclusive `flock` on `.sydra-archive.watch` in a
//! directory, a `watch-` entry under a prefix (see
//! [`crate::store::s3::take_watch_lease`]). It keeps other watches out
//! only; the watch's points take the shelf lock as creates.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use crate::error::{Error, Result};
use crate::store::location::Location;
use crate::store::s3::{Remote, Side, take_lease};
use crate::sys;

/// The lock file's name in a shelf directory.
pub const LOCK_NAME: &str = ".sydra-archive.lock";

/// A held shelf lock; released when dropped.
#[derive(Debug)]
pub enum ShelfLock {
    /// A directory's `flock`.
    Dir(File),
    /// A prefix's lock entry.
    Prefix(crate::store::s3::Lease),
}

/// Opens (making it if absent) the lock file at `path` without following
/// a link or blocking on a FIFO; with `read_only`, an existing one this
/// user may only read is opened read-only. `None` when it cannot be.
fn open_lock_file(path: &Path, read_only: bool) -> Option<File> {
    let flags = libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC;
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o644)
        .custom_flags(flags)
        .open(path)
        .or_else(|e| match read_only {
            true => OpenOptions::new().read(true).custom_flags(flags).open(path),
            false => Err(e),
        })
        .ok()
}

/// The refusal of a lock path that is not a regular file.
fn not_a_lock_file(path: &Path) -> Error {
    Error::Refused(format!(
        "{} is not a regular file; remove it (it is sydra-archive's lock)",
        path.display()
    ))
}

/// Takes the lock of the directory `dir`, shared or `exclusive`, waiting
/// for it. `None` when the lock file cannot be made or opened there.
pub fn lock_shelf(dir: &Path, exclusive: bool) -> Result<Option<ShelfLock>> {
    let path = dir.join(LOCK_NAME);
    let Some(file) = open_lock_file(&path, true) else {
        return Ok(None);
    };
    if !file.metadata().is_ok_and(|m| m.is_file()) {
        return Err(not_a_lock_file(&path));
    }
    let op = if exclusive {
        libc::LOCK_EX
    } else {
        libc::LOCK_SH
    };
    sys::flock(&file, op).map_err(|e| Error::io("lock", &path, e))?;
    Ok(Some(ShelfLock::Dir(file)))
}

/// The exclusive lock of the directory `dir`, if no one holds it now
/// (`Ok(None)` when someone does, or when the lock file cannot be made:
/// then nothing should be deleted this time).
pub fn try_lock_shelf(dir: &Path) -> Result<Option<ShelfLock>> {
    let path = dir.join(LOCK_NAME);
    let Some(file) = open_lock_file(&path, false) else {
        return Ok(None);
    };
    if !file.metadata().is_ok_and(|m| m.is_file()) {
        return Ok(None);
    }
    match sys::flock(&file, libc::LOCK_EX | libc::LOCK_NB) {
        Ok(()) => Ok(Some(ShelfLock::Dir(file))),
        Err(e) if e.raw_os_error() == Some(libc::EWOULDBLOCK) => Ok(None),
        Err(e) => Err(Error::io("lock", &path, e)),
    }
}

/// The lock of the directory holding the file `archive` (shared).
pub fn lock_beside(archive: &Path) -> Result<Option<ShelfLock>> {
    let dir = match archive.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    lock_shelf(dir, false)
}

/// The lock of where `archive` is (its directory, or its object's
/// prefix), for a create: shared.
pub fn lock_location(archive: &Location) -> Result<Option<ShelfLock>> {
    match archive {
        Location::Local(p) => lock_beside(p),
        Location::S3 { url, options } => {
            let remote = Remote::connect(url, options)?;
            Ok(take_lease(&remote, true, Side::Create)?.map(ShelfLock::Prefix))
        }
    }
}

/// The lock of the prefix of `remote` for a deleting prune: exclusive.
pub fn lock_prefix(remote: &Remote) -> Result<Option<ShelfLock>> {
    Ok(take_lease(remote, false, Side::Prune)?.map(ShelfLock::Prefix))
}

/// The lock a create takes of the shelf it chooses its base from
/// (`--incremental`): `arg` a directory or an `s3://` prefix.
pub fn lock_for_create(arg: &str, opts: &crate::store::s3::S3Options) -> Result<Option<ShelfLock>> {
    if crate::store::s3::S3Url::is_s3(arg) {
        let remote = Remote::connect(&crate::store::s3::S3Url::parse(arg)?, opts)?;
        return Ok(take_lease(&remote, false, Side::Create)?.map(ShelfLock::Prefix));
    }
    lock_shelf(Path::new(arg), false)
}

/// The name of the lock a `watch` holds on its destination directory
/// for as long as it runs.
pub const WATCH_LOCK_NAME: &str = ".sydra-archive.watch";

/// Takes the lock of the one `watch` that ships into the prefix of
/// `remote`, without waiting: refused while another watch ships there.
/// `None` where its entry may not be written.
pub fn lock_prefix_watcher(remote: &Remote) -> Result<Option<ShelfLock>> {
    Ok(crate::store::s3::take_watch_lease(remote)?.map(ShelfLock::Prefix))
}

/// Takes the lock of the one `watch` that ships into the directory
/// `dir`, without waiting: refused when another holds it (two watchers
/// would fork the chain). `None` where the lock file cannot be made.
pub fn lock_watcher(dir: &Path) -> Result<Option<ShelfLock>> {
    let path = dir.join(WATCH_LOCK_NAME);
    let Some(file) = open_lock_file(&path, false) else {
        return Ok(None);
    };
    if !file.metadata().is_ok_and(|m| m.is_file()) {
        return Err(not_a_lock_file(&path));
    }
    match sys::flock(&file, libc::LOCK_EX | libc::LOCK_NB) {
        Ok(()) => Ok(Some(ShelfLock::Dir(file))),
        Err(e) if e.raw_os_error() == Some(libc::EWOULDBLOCK) => Err(Error::Refused(format!(
            "another watch ships into {} (it holds {}): one watch a destination",
            dir.display(),
            path.display()
        ))),
        Err(e) => Err(Error::io("lock", &path, e)),
    }
}
