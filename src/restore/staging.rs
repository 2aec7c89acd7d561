//! The staging directory a restore builds its tree in, beside the target:
//! made private and checked on its descriptor, locked for the whole run,
//! marked as unpublished, removed through descriptors on any failure or
//! signal (renamed first, so a removal killed part way is finished by the
//! next run), and the leftovers of killed runs cleaned up or reported.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::read::ReadSummary;
use crate::restore::sink::StagingSink;
use crate::restore::target::Target;
use crate::store::cleanup::Pending;
use crate::store::publish::{STALE_AFTER, leftover_prefix, lock, unique_name, unlocked_leftovers};
use crate::sys;

/// Marks a staging directory as ours and unpublished: created once the
/// run holds the directory's lock, removed just before the staging tree is
/// published.
pub const STAGING_MARKER: &str = ".sydra-staging";
const STAGING_MARK: &str = ".sydra-staging.";
/// Names a staging directory being removed: it is renamed so (one atomic
/// step) before anything in it is removed, so a removal killed part way
/// leaves a directory the next run recognises and finishes removing.
const REMOVING_MARK: &str = ".sydra-removing.";

/// A verified, durable, unpublished tree beside the target.
pub struct Staged {
    /// Removes the tree on SIGINT/SIGTERM until it is published.
    pub pending: Pending,
    /// The staging directory, open and locked for the whole run.
    pub root: File,
    /// Its name in the parent.
    pub name: OsString,
    /// What the reader verified.
    pub read: ReadSummary,
}

/// Makes a new staging directory beside the target, locked and marked as
/// ours, has `fill` extract and verify the archive into it (through the
/// sink given, at the staging directory and its path) and makes the tree
/// durable with one `syncfs`; removes it on any failure.
pub fn stage(
    t: &Target,
    fill: impl FnOnce(&File, &Path, &mut StagingSink) -> Result<ReadSummary>,
) -> Result<Staged> {
    let name = unique_name(&leftover_prefix(&t.name, STAGING_MARK));
    let staging_path = t.parent.join(&name);
    // Made and opened relative to the parent, and checked on the opened
    // descriptor: a directory another user swapped in is never written to.
    let root = match sys::make_private_dir(&t.parent_dir, name.as_bytes()) {
        Ok(root) => root,
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => {
            // Not ours: whatever is there is left alone.
            return Err(Error::Refused(format!(
                "staging directory {} was replaced by another directory while it was created (someone else can write to {}); nothing was written to it",
                staging_path.display(),
                t.parent.display()
            )));
        }
        Err(e) => return Err(Error::io("create staging directory", &staging_path, e)),
    };
    // From here on the tree is removed through descriptors, never by a
    // path someone could swap: on errors here, on signals until publish.
    let pending = match staging_remover(t, &name, &root) {
        Ok(undo) => Pending::register(
            format!("staging directory {}", staging_path.display()),
            undo,
        ),
        Err(e) => {
            let _ = discard_staging(&t.parent_dir, &t.name, &name, &root);
            return Err(Error::io("open staging directory", &staging_path, e));
        }
    };
    let fail = |pending: Pending, e: Error| -> Error {
        pending.forget();
        remove_staging(t, &name, &root, e)
    };
    let mut sink = match lock(&root)
        .map_err(|e| Error::io("lock staging directory", &staging_path, e))
        .and_then(|()| StagingSink::new(&root, staging_path.clone(), t.parent.clone()))
    {
        Ok(sink) => sink,
        Err(e) => return Err(fail(pending, e)),
    };
    let result = (|| {
        // Only now, with the lock held: a marked staging directory whose
        // lock is free is one whose run is gone.
        let marker = sys::open_at(
            &root,
            STAGING_MARKER.as_bytes(),
            libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL,
            0o600,
        )
        .map_err(|e| Error::io("create", staging_path.join(STAGING_MARKER), e))?;
        drop(marker);
        // The tree: read, verified, and given its modes and times.
        let read = fill(&root, &staging_path, &mut sink)?;
        // Everything durable with one syncfs.
        sys::syncfs(&root).map_err(|e| Error::io("syncfs", &staging_path, e))?;
        Ok(read)
    })();
    drop(sink);
    match result {
        Ok(read) => Ok(Staged {
            pending,
            root,
            name,
            read,
        }),
        Err(e) => Err(fail(pending, e)),
    }
}

/// The action that removes staging directory `name` (open as `root`)
/// through descriptors, for the signal path.
fn staging_remover(
    t: &Target,
    name: &OsStr,
    root: &File,
) -> io::Result<impl FnMut() -> io::Result<()> + Send + 'static> {
    let (parent, root, name, target) = (
        t.parent_dir.try_clone()?,
        root.try_clone()?,
        name.to_owned(),
        t.name.clone(),
    );
    Ok(move || discard_staging(&parent, &target, &name, &root))
}

/// Removes the staging directory `name` in `parent` (open, and locked by
/// this process, as `tree`) of target `target` so that a run killed at any
/// point of the removal leaves something the next run removes: first it is
/// renamed to `.<target>.sydra-removing.<suffix>` (atomic: before, it is a
/// marked staging directory; after, a directory being removed, which no
/// one else makes), then emptied with the marker last, then removed. If
/// the rename fails it is removed where it is, still marker last.
fn discard_staging(parent: &File, target: &OsStr, name: &OsStr, tree: &File) -> io::Result<()> {
    let mut at = name.to_owned();
    if sys::is_same_at(parent, name.as_bytes(), tree) {
        for _ in 0..3 {
            let to = unique_name(&leftover_prefix(target, REMOVING_MARK));
            sys::removal_step();
            match sys::rename_in(
                parent,
                name.as_bytes(),
                to.as_bytes(),
                libc::RENAME_NOREPLACE,
            ) {
                Ok(()) => {
                    at = to;
                    break;
                }
                Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
                Err(_) => break,
            }
        }
    }
    sys::remove_tree_at_last(parent, at.as_bytes(), tree, Some(STAGING_MARKER.as_bytes()))
}

/// Removes the unpublished staging tree `name` (open as `root`) through
/// descriptors after `e`, and returns `e` (with a note if the tree could
/// not be removed).
pub fn remove_staging(t: &Target, name: &OsStr, root: &File, e: Error) -> Error {
    match discard_staging(&t.parent_dir, &t.name, name, root) {
        Ok(()) => e,
        Err(rm) => e.also(format!(
            "could not remove staging directory {}: {rm}",
            t.parent.join(name).display()
        )),
    }
}

/// Staging directories of other runs whose lock is free (their run is
/// gone): the ones still holding the marker were never published and are
/// removed; empty unmarked ones (a run killed before it locked its
/// directory) are removed once older than [`STALE_AFTER`]; the others may
/// hold a user's data (killed between swap and rename) and are only
/// reported. Directories a killed run was removing (renamed with
/// [`REMOVING_MARK`] first) are removed whatever is left in them.
pub fn clean_leftovers(
    parent: &Path,
    parent_dir: &File,
    name: &OsStr,
) -> Result<(Vec<PathBuf>, Vec<PathBuf>)> {
    let (mut removed, mut reported) = (Vec::new(), Vec::new());
    for lo in unlocked_leftovers(parent, &leftover_prefix(name, REMOVING_MARK), true)? {
        // Only a run holding its lock renames a directory so; the lock is
        // free, so that run is gone. Removed through the locked descriptor.
        let lo_name = lo.path.file_name().unwrap_or_default().as_bytes();
        sys::remove_tree_at_last(
            parent_dir,
            lo_name,
            &lo._lock,
            Some(STAGING_MARKER.as_bytes()),
        )
        .map_err(|e| Error::io("remove leftover staging", &lo.path, e))?;
        removed.push(lo.path);
    }
    for lo in unlocked_leftovers(parent, &leftover_prefix(name, STAGING_MARK), true)? {
        // Removed while its lock is held, so no run can start using it.
        // Looked at and removed through the descriptor that holds the
        // lock, never by a path someone could swap meanwhile.
        let dir = sys::Dir::from_file(&lo._lock)
            .map_err(|e| Error::io("open leftover staging", &lo.path, e))?;
        let lo_name_os = lo.path.file_name().unwrap_or_default();
        let lo_name = lo_name_os.as_bytes();
        let marked = dir
            .stat_at(STAGING_MARKER.as_bytes())
            .is_ok_and(|st| st.kind == sys::Kind::File);
        if marked {
            discard_staging(parent_dir, name, lo_name_os, &lo._lock)
                .map_err(|e| Error::io("remove leftover staging", &lo.path, e))?;
            removed.push(lo.path);
        } else if dir.names().is_ok_and(|n| n.is_empty()) {
            // Younger: its run may not have locked it yet.
            if lo.age >= STALE_AFTER
                && sys::unlink_in(parent_dir, lo_name, libc::AT_REMOVEDIR).is_ok()
            {
                removed.push(lo.path);
            }
        } else {
            reported.push(lo.path);
        }
    }
    Ok((removed, reported))
}
