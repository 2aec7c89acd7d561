//! `restore`: rebuild a data directory from an archive so that nothing in
//! the target changes until the whole archive has been verified.
//!
//! Before a byte of the archive is read, the target is checked to be
//! replaceable by a rename: on the filesystem, and the mount, of its parent
//! (not a mount point). The archive is then extracted into a staging
//! directory beside the target, every entry created relative to that
//! directory's descriptor (so a path within the format's limits can be
//! restored however deep the target is), verified completely (every member,
//! every SHA-256, the footer), made durable with one `syncfs`, and only then
//! renamed into place — or, over existing data with `force`, swapped with
//! it atomically (`renameat2(RENAME_EXCHANGE)`), the old tree being kept
//! beside it. A staging tree that was not published is always removed.
//!
//! The run holds an exclusive `flock` on its staging directory from just
//! after creating it to the end; the staging marker is created only once
//! the lock is held. A staging directory of another run is stale only if
//! its lock is free — which, unlike a pid, means the same in every PID
//! namespace.

use std::ffi::{OsStr, OsString};
use std::fs::{self, File, FileTimes};
use std::io::{self, Write};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::error::{Error, Result};
use crate::format::head::Entry;
use crate::ops::chain::{Link, Trust, chain_of};
use crate::ops::source::{ArchiveReader, open_archive};
use crate::read::{Depth, FileSink, Plan, ReadSummary, Sink};
use crate::store::cleanup::Pending;
use crate::store::location::Location;
use crate::store::publish::{
    NAME_MAX, STALE_AFTER, leftover_prefix, lock, open_dir, shorten, split, try_lock, unique_name,
    unlocked_leftovers,
};
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

/// Options for [`restore`].
#[derive(Debug, Clone, Default)]
pub struct RestoreOptions {
    /// Replace a non-empty data directory (the old one is kept beside it).
    pub force: bool,
    /// Counts the archive bytes read (total: the archive size, if known).
    pub progress: Option<std::sync::Arc<crate::progress::Progress>>,
    /// Threads decoding data (0: the cores hashing leaves, see
    /// [`crate::read::read_archive_with`]; 1: on the reading thread).
    pub threads: usize,
    /// Where an incremental's bases may be, besides where it recorded
    /// them (each one used only if it is the archive recorded).
    pub bases: Vec<Location>,
}

/// What a finished restore did.
#[derive(Debug, Clone)]
pub struct RestoreSummary {
    /// What the reader verified (of the archive named; for a chain, its
    /// last archive).
    pub read: ReadSummary,
    /// For an incremental: every archive of its chain, the full one first.
    pub chain: Vec<String>,
    /// The data directory that now holds the archive's tree.
    pub data_dir: PathBuf,
    /// Where the previous contents were moved (with `force`).
    pub kept_old: Option<PathBuf>,
    /// Staging directories of killed runs that were removed.
    pub removed_leftovers: Vec<PathBuf>,
    /// Leftovers of killed runs that may hold data, left in place.
    pub reported_leftovers: Vec<PathBuf>,
    /// Problems that came after the data dir was replaced and so do not
    /// make the restore fail (the old tree could not be renamed, the parent
    /// could not be fsynced), one line each.
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TargetState {
    Absent,
    Empty,
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

/// Restores the archive at `archive` into `data_dir`.
pub fn restore(
    archive: &Location,
    data_dir: &Path,
    opts: &RestoreOptions,
) -> Result<RestoreSummary> {
    let t = resolve_target(data_dir, opts.force)?;
    let src = open_archive(archive, opts.progress.clone())?.with_threads(opts.threads);
    // An incremental (read at offsets) brings its chain, each base found
    // and checked to be the archive recorded before a byte is restored.
    let chain = match src.random_access()? {
        Some(r) if r.has_tail() => {
            prove_meta_if_short(&r, &t.parent)?;
            let link = Link::open(archive)?;
            match link.head.base {
                Some(_) => {
                    let links = chain_of(link, &opts.bases, Trust::AsRead)?;
                    // Whatever the chain model refuses, restore refuses,
                    // before a byte is staged. Its bases are hashed as
                    // they are read; if the model refuses, they are
                    // authenticated first, so a forged base is named as
                    // such, not the incremental above it.
                    let modelled = crate::ops::chain::state(&links)
                        .and_then(|mut s| s.try_for_each(|e| e.map(drop)));
                    if let Err(e) = modelled {
                        for w in links.windows(2) {
                            let b = w[1].head.base.as_ref().expect("an incremental");
                            w[0].authenticate(b, &w[1].loc)?;
                        }
                        return Err(e);
                    }
                    Some(links)
                }
                None => None,
            }
        }
        _ => None,
    };
    let (removed_leftovers, reported_leftovers) =
        clean_leftovers(&t.parent, &t.parent_dir, &t.name)?;
    let staged = match &chain {
        None => stage(Some(src), None, &t, opts)?,
        Some(links) => {
            drop(src);
            stage(None, Some(links), &t, opts)?
        }
    };
    let (kept_old, warnings) = publish(staged.pending, &staged.root, &staged.name, &t)?;
    drop(staged.root); // the lock goes last
    Ok(RestoreSummary {
        read: staged.read,
        chain: chain.iter().flatten().map(|l| l.loc.to_string()).collect(),
        data_dir: t.path,
        kept_old,
        removed_leftovers,
        reported_leftovers,
        warnings,
    })
}

/// Where a restore goes, checked before the first byte is read.
struct Target {
    /// The data dir (where a symlink to it points).
    path: PathBuf,
    /// Its parent, where the staging directory is made.
    parent: PathBuf,
    /// The parent, open: every name in it (staging, target, kept) is used
    /// relative to this descriptor, so swapping the parent's path later
    /// redirects nothing.
    parent_dir: File,
    /// Its name in the parent.
    name: OsString,
    state: TargetState,
}

/// Resolves `data_dir` and refuses what cannot be replaced by a rename
/// (a mount point), or not without `force` (a data dir with contents).
fn resolve_target(data_dir: &Path, force: bool) -> Result<Target> {
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

/// A verified, durable, unpublished tree beside the target.
struct Staged {
    /// Removes the tree on SIGINT/SIGTERM until it is published.
    pending: Pending,
    /// The staging directory, open and locked for the whole run.
    root: File,
    /// Its name in the parent.
    name: OsString,
    read: ReadSummary,
}

/// Extracts and verifies the archive into a new staging directory beside
/// the target, locked and marked as ours; removes it on any failure.
fn stage(
    src: Option<ArchiveReader>,
    chain: Option<&[Link]>,
    t: &Target,
    opts: &RestoreOptions,
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
        .and_then(|()| Extract::new(&root, staging_path.clone(), t.parent.clone()))
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
        let read = match (src, chain) {
            (Some(src), _) => {
                let name = src.name().display().to_string();
                let read = src.read_into(Depth::Full, &mut sink)?;
                if read.info.base.is_some() {
                    return Err(Error::Refused(format!(
                        "{name} is an incremental archive: restore it from a file or an object, where its bases can be found"
                    )));
                }
                // Verified: now give directories their modes and times,
                // deepest first.
                sink.finish_dirs()?;
                read
            }
            (None, Some(links)) => restore_chain(links, &root, &staging_path, &mut sink, opts)?,
            (None, None) => unreachable!("a source or a chain"),
        };
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

/// The name of the private directory, inside the staging tree, that each
/// incremental of a chain is extracted into before it is applied.
const INCOMING: &str = ".sydra-incoming";

/// Restores the chain `links` (the full archive first) into the staging
/// tree `root`: the full archive through `sink`, then each incremental
/// extracted whole into a private directory, verified completely and
/// checked to be made on the archive just restored (its SHA-256), and
/// only then applied. Returns the last archive's summary.
fn restore_chain(
    links: &[Link],
    root: &File,
    shown: &Path,
    sink: &mut Extract,
    opts: &RestoreOptions,
) -> Result<ReadSummary> {
    let mut dirs: std::collections::BTreeMap<String, Entry> = std::collections::BTreeMap::new();
    let mut last: Option<ReadSummary> = None;
    for (i, link) in links.iter().enumerate() {
        if let Some(prev) = &last {
            // Made on the archive just read, byte for byte.
            let want = link
                .head
                .base
                .as_ref()
                .expect("an incremental")
                .sha256
                .clone();
            let got = crate::format::sums::hex(&prev.sha256);
            if !got.eq_ignore_ascii_case(&want) {
                return Err(Error::Base {
                    archive: link.loc.to_string(),
                    reason: format!(
                        "its base {} hashes to {got}, not the {want} it was made on",
                        links[i - 1].loc
                    ),
                });
            }
        }
        let src = open_archive(&link.loc, opts.progress.clone())?.with_threads(opts.threads);
        let in_base = |e: Error| -> Error {
            if i + 1 < links.len() {
                e.also(format!(
                    "in {}, a base of {}",
                    link.loc,
                    links[links.len() - 1].loc
                ))
            } else {
                e
            }
        };
        let read = if i == 0 {
            let read = src.read_into(Depth::Full, sink).map_err(in_base)?;
            let got = std::mem::take(sink.dirs.get_mut().unwrap_or_else(|e| e.into_inner()));
            dirs.extend(got.into_iter().map(|d| (d.path.clone(), d)));
            read
        } else {
            let incoming = sys::make_private_dir(root, INCOMING.as_bytes())
                .map_err(|e| Error::io("create directory", shown.join(INCOMING), e))?;
            let mut isink = Extract::new(&incoming, shown.join(INCOMING), sink.parent.clone())?;
            let read = src.read_into(Depth::Full, &mut isink).map_err(in_base)?;
            let carried = std::mem::take(isink.dirs.get_mut().unwrap_or_else(|e| e.into_inner()));
            drop(isink);
            crate::restore::apply::apply(
                root,
                shown,
                &incoming,
                crate::ops::chain::Changes::new,
                &carried,
                &mut dirs,
                &link.loc.to_string(),
            )
            .map_err(in_base)?;
            sys::remove_tree_at(root, INCOMING.as_bytes(), &incoming)
                .map_err(|e| Error::io("remove", shown.join(INCOMING), e))?;
            read
        };
        if read.info.base != link.head.base {
            return Err(crate::read::input::changed_while_read(&link.loc.name()));
        }
        last = Some(read);
    }
    crate::restore::apply::set_dirs(root, shown, &dirs)?;
    crate::restore::apply::check_staged(
        root,
        shown,
        &[STAGING_MARKER],
        crate::ops::chain::state(links)?,
    )?;
    Ok(last.expect("a chain is never empty"))
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

/// Renames the staged tree into place (or swaps it with the old data dir,
/// which is kept beside it), by names relative to the parent's descriptor
/// and only while the staging name still holds the tree this run made.
/// Fails only while nothing was replaced; once the data dir is replaced,
/// problems are warnings. Returns where the old tree was kept and the
/// warnings.
fn publish(
    pending: Pending,
    root: &File,
    staging: &OsStr,
    t: &Target,
) -> Result<(Option<PathBuf>, Vec<String>)> {
    // The data dir itself is not in the archive: it keeps the mode of the
    // directory it replaces, or gets the mode mkdir would give it.
    let root_mode = match fs::metadata(&t.path) {
        Ok(m) => m.permissions().mode() & 0o7777,
        Err(_) => 0o777 & !sys::current_umask(),
    };
    let (p, target) = (&t.parent_dir, &t.path);
    let (sname, tname) = (staging.as_bytes(), t.name.as_bytes());
    let staging_path = t.parent.join(staging);
    let published = pending.commit(|| -> Result<Option<(PathBuf, Option<String>)>> {
        // Anything that fails before the tree is in place leaves it
        // unpublished: it is removed, never kept.
        let unpublished = |e: Error| remove_staging(t, staging, root, e);
        if !sys::is_same_at(p, sname, root) {
            return Err(unpublished(Error::Refused(format!(
                "staging directory {} was replaced before it was published (someone else can write to {}); nothing was published",
                staging_path.display(),
                t.parent.display()
            ))));
        }
        // From the marker's removal to the rename, a run killed leaves an
        // unmarked tree that the next run only reports: as few steps as can
        // be (the mode comes after, as it may forbid the unlink).
        sys::unlink_in(root, STAGING_MARKER.as_bytes(), 0).map_err(|e| {
            unpublished(Error::io("remove", staging_path.join(STAGING_MARKER), e))
        })?;
        root.set_permissions(fs::Permissions::from_mode(root_mode))
            .map_err(|e| unpublished(Error::io("set mode of", &staging_path, e)))?;
        match t.state {
            TargetState::Absent => {
                let moved = match sys::rename_in(p, sname, tname, libc::RENAME_NOREPLACE) {
                    // Filesystems without RENAME_NOREPLACE: the target was
                    // absent a moment ago.
                    Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                        sys::rename_in(p, sname, tname, 0)
                    }
                    r => r,
                };
                moved.map_err(|e| unpublished(Error::io("rename into place", target, e)))?;
                Ok(None)
            }
            TargetState::Empty => {
                sys::rename_in(p, sname, tname, 0)
                    .map_err(|e| unpublished(Error::io("rename into place", target, e)))?;
                Ok(None)
            }
            TargetState::Full => {
                // Lock the old tree too, if no one else holds it, so that
                // under the staging name (between the swap and the rename
                // below) it is not taken for a leftover of a dead run.
                let old_lock = open_dir(target)
                    .ok()
                    .filter(|f| matches!(try_lock(f), Ok(true)));
                sys::rename_in(p, sname, tname, libc::RENAME_EXCHANGE)
                    .map_err(|e| unpublished(Error::io("swap into place", target, e)))?;
                // The staging name now holds the old tree: name it so.
                let kept = keep_old(t, staging, now_ms());
                drop(old_lock);
                Ok(Some(kept))
            }
        }
    })?;
    let mut warnings = Vec::new();
    let kept_old = published.map(|(kept, warning)| {
        warnings.extend(warning);
        kept
    });
    // The data dir is replaced: from here on, nothing is a failure.
    if let Err(e) = p.sync_all() {
        warnings.push(format!(
            "cannot fsync directory {}: {e}; the restore is complete but its rename may not be durable yet",
            t.parent.display()
        ));
    }
    Ok((kept_old, warnings))
}

/// Removes the unpublished staging tree `name` (open as `root`) through
/// descriptors after `e`, and returns `e` (with a note if the tree could
/// not be removed).
fn remove_staging(t: &Target, name: &OsStr, root: &File, e: Error) -> Error {
    match discard_staging(&t.parent_dir, &t.name, name, root) {
        Ok(()) => e,
        Err(rm) => e.also(format!(
            "could not remove staging directory {}: {rm}",
            t.parent.join(name).display()
        )),
    }
}

/// `<name>.pre-restore.<ms>`, or with `.<n>` after it for `n > 0`; `name`
/// shortened so the whole fits `NAME_MAX`.
fn kept_name(name: &OsStr, ms: u128, n: u32) -> OsString {
    let suffix = if n == 0 {
        format!(".pre-restore.{ms}")
    } else {
        format!(".pre-restore.{ms}.{n}")
    };
    let mut v = shorten(name.as_bytes(), NAME_MAX - suffix.len()).to_vec();
    v.extend_from_slice(suffix.as_bytes());
    OsString::from_vec(v)
}

/// Gives the old tree, now at `old` (the staging name), the name
/// `<name>.pre-restore.<ms>` beside it — `.1`, `.2`... after it when that
/// is taken (by an earlier restore, or another one finishing in the same
/// millisecond). Never fails: the data dir is already replaced, so if the
/// rename fails for another reason the old tree stays at `old` and the
/// warning returned says where it is.
fn keep_old(t: &Target, old: &OsStr, ms: u128) -> (PathBuf, Option<String>) {
    keep_old_within(t, old, ms, KEPT_SUFFIXES)
}

/// How many `.<n>` suffixes [`keep_old`] tries after `.pre-restore.<ms>`
/// before it leaves the old tree where it is, with a warning.
const KEPT_SUFFIXES: u32 = 100_000;

/// [`keep_old`], trying the suffixes `.1` to `.<tries>`.
fn keep_old_within(t: &Target, old: &OsStr, ms: u128, tries: u32) -> (PathBuf, Option<String>) {
    let mut n = 0u32;
    loop {
        let kept = kept_name(&t.name, ms, n);
        match sys::rename_in(
            &t.parent_dir,
            old.as_bytes(),
            kept.as_bytes(),
            libc::RENAME_NOREPLACE,
        ) {
            Ok(()) => return (t.parent.join(kept), None),
            Err(e)
                if n < tries
                    && matches!(e.raw_os_error(), Some(libc::EEXIST | libc::ENOTEMPTY)) =>
            {
                n += 1
            }
            Err(e) => {
                let old = t.parent.join(old);
                let warning = format!(
                    "previous contents of {} are at {} (could not rename them to {}: {e})",
                    t.path.display(),
                    old.display(),
                    t.parent.join(kept).display()
                );
                return (old, Some(warning));
            }
        }
    }
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

fn now_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0)
}

/// Staging directories of other runs whose lock is free (their run is
/// gone): the ones still holding the marker were never published and are
/// removed; empty unmarked ones (a run killed before it locked its
/// directory) are removed once older than [`STALE_AFTER`]; the others may
/// hold a user's data (killed between swap and rename) and are only
/// reported. Directories a killed run was removing (renamed with
/// [`REMOVING_MARK`] first) are removed whatever is left in them.
fn clean_leftovers(
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

/// The sink that writes verified-so-far members into the staging tree.
/// Every entry is created relative to the staging directory's descriptor
/// (shared by the worker threads; system calls on it are thread-safe), so
/// only the archive path, at most 4095 bytes, is resolved by the kernel.
struct Extract {
    /// The staging directory.
    root: OwnedFd,
    /// Its path, for messages.
    shown: PathBuf,
    parent: PathBuf,
    dirs: Mutex<Vec<Entry>>,
    umask: u32,
}

impl Extract {
    fn new(root: &File, shown: PathBuf, parent: PathBuf) -> Result<Self> {
        let root = root
            .try_clone()
            .map_err(|e| Error::io("duplicate descriptor of", &shown, e))?;
        Ok(Extract {
            root: root.into(),
            shown,
            parent,
            dirs: Mutex::new(Vec::new()),
            umask: sys::current_umask(),
        })
    }

    fn finish_dirs(&mut self) -> Result<()> {
        let dirs = self.dirs.get_mut().unwrap_or_else(|e| e.into_inner());
        for d in dirs.iter().rev() {
            let path = self.shown.join(&d.path);
            let f = sys::open_at(
                &self.root,
                d.path.as_bytes(),
                libc::O_RDONLY | libc::O_DIRECTORY,
                0,
            )
            .map_err(|e| Error::io("open", &path, e))?;
            set_mode_and_time(&f, &path, d)?;
        }
        Ok(())
    }
}

/// A file being written into the staging tree.
struct ExtractFile {
    file: File,
    path: PathBuf,
    /// The mode still has to be set (the umask took bits away at create).
    chmod: bool,
}

fn mtime_of(e: &Entry) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(e.mtime.max(0) as u64)
}

/// The space a restore of `plan` takes, at most: every entry takes at
/// least a block, and a file's last block is partly empty (an upper
/// estimate without the list of sizes).
fn space_needed(plan: &Plan, block: u64) -> u64 {
    plan.total_bytes
        .saturating_add(plan.files.saturating_add(plan.dirs).saturating_mul(block))
}

/// Before a restore refuses for want of space on what META says, META
/// is proven: the archive's body must hash to what TAIL records (a
/// tampered META is the archive's fault, not the disk's).
fn prove_meta_if_short(src: &crate::ops::source::RandomSource, parent: &Path) -> Result<()> {
    let Some((tail, meta, _)) =
        crate::read::read_end(src.size, &mut |at, buf| src.read_at(at, buf), &src.shown)?
    else {
        return Ok(());
    };
    let space = sys::free_space(parent).map_err(|e| Error::io("statvfs", parent, e))?;
    let plan = Plan {
        files: meta.files,
        dirs: meta.dirs,
        total_bytes: meta.total_bytes,
    };
    if space_needed(&plan, space.block) <= space.bytes {
        return Ok(());
    }
    let (sha, n_all) =
        crate::store::verified::sha256_of(&mut src.stream(0, tail.body_len)?, src.shown.as_ref())?;
    if n_all != tail.body_len || sha != tail.body_sha256 {
        return Err(Error::corrupt(format!(
            "{}: the archive does not hash to what its TAIL records (its META, which asks for {} bytes, cannot be trusted)",
            src.shown, meta.total_bytes
        )));
    }
    Ok(())
}

/// File modes come from HEAD with setuid, setgid and sticky bits masked.
fn safe_mode(e: &Entry) -> u32 {
    e.mode & 0o777
}

fn set_mode_and_time(f: &File, path: &Path, e: &Entry) -> Result<()> {
    f.set_times(
        FileTimes::new()
            .set_modified(mtime_of(e))
            .set_accessed(mtime_of(e)),
    )
    .map_err(|err| Error::io("set times of", path, err))?;
    f.set_permissions(fs::Permissions::from_mode(safe_mode(e)))
        .map_err(|err| Error::io("set mode of", path, err))
}

impl Sink for Extract {
    type File = ExtractFile;

    fn plan(&mut self, plan: &Plan) -> Result<()> {
        let space =
            sys::free_space(&self.parent).map_err(|e| Error::io("statvfs", &self.parent, e))?;
        let (free, free_inodes) = (space.bytes, space.inodes);
        let entries = plan.files.saturating_add(plan.dirs);
        let need = space_needed(plan, space.block);
        if need > free {
            return Err(Error::Refused(format!(
                "not enough free space in {}: the archive needs about {need} bytes, {free} are free",
                self.parent.display()
            )));
        }
        if free_inodes > 0 && entries > free_inodes {
            return Err(Error::Refused(format!(
                "not enough free inodes in {}: the archive has {entries} entries, {free_inodes} inodes are free",
                self.parent.display(),
            )));
        }
        Ok(())
    }

    fn dir(&self, entry: &Entry) -> Result<()> {
        if crate::store::cleanup::stopping() {
            return Err(Error::Interrupted);
        }
        sys::mkdir_at(&self.root, entry.path.as_bytes(), 0o700)
            .map_err(|e| Error::io("create directory", self.shown.join(&entry.path), e))?;
        self.dirs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(entry.clone());
        Ok(())
    }

    fn file(&self, entry: &Entry) -> Result<ExtractFile> {
        if crate::store::cleanup::stopping() {
            return Err(Error::Interrupted);
        }
        let path = self.shown.join(&entry.path);
        // Created with its final mode where the umask allows (one syscall
        // less per file); the fd is writable whatever the mode says.
        let mode = safe_mode(entry);
        let file = sys::open_at(
            &self.root,
            entry.path.as_bytes(),
            libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL,
            mode,
        )
        .map_err(|e| Error::io("create", &path, e))?;
        Ok(ExtractFile {
            file,
            path,
            chmod: mode & self.umask != 0,
        })
    }
}

impl FileSink for ExtractFile {
    fn write(&mut self, data: &[u8]) -> Result<()> {
        self.file
            .write_all(data)
            .map_err(|e| Error::io("write", &self.path, e))
    }

    fn finish(self, entry: &Entry) -> Result<()> {
        let ExtractFile { file, path, chmod } = self;
        file.set_times(
            FileTimes::new()
                .set_modified(mtime_of(entry))
                .set_accessed(mtime_of(entry)),
        )
        .map_err(|e| Error::io("set times of", &path, e))?;
        if chmod {
            file.set_permissions(fs::Permissions::from_mode(safe_mode(entry)))
                .map_err(|e| Error::io("set mode of", &path, e))?;
        }
        // close(2) errors (e.g. NFS) are reported, not dropped.
        sys::close(file).map_err(|e| Error::io("close", &path, e))
    }
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

    /// A target `db` in `parent`, full.
    fn target_in(parent: &Path) -> Target {
        Target {
            path: parent.join("db"),
            parent: parent.to_path_buf(),
            parent_dir: sys::open_dir_path(parent).unwrap(),
            name: "db".into(),
            state: TargetState::Full,
        }
    }

    #[test]
    fn kept_names_never_collide_and_fit_name_max() {
        let t = tempfile::tempdir().unwrap();
        let parent = t.path();
        fs::create_dir(parent.join("db.pre-restore.7")).unwrap();
        fs::create_dir(parent.join("db.pre-restore.7.1")).unwrap();
        fs::write(parent.join("db.pre-restore.7.1/x"), b"earlier").unwrap();
        let old = parent.join(".db.sydra-staging.1.0");
        fs::create_dir(&old).unwrap();
        fs::write(old.join("x"), b"old").unwrap();
        let (kept, warning) = keep_old(&target_in(parent), old.file_name().unwrap(), 7);
        assert_eq!(warning, None);
        assert_eq!(kept, parent.join("db.pre-restore.7.2"));
        assert_eq!(fs::read(kept.join("x")).unwrap(), b"old");
        assert_eq!(
            fs::read(parent.join("db.pre-restore.7.1/x")).unwrap(),
            b"earlier"
        );

        let long = "n".repeat(NAME_MAX);
        for n in [0, 1, 99_999] {
            let k = kept_name(OsStr::new(&long), u128::from(u64::MAX), n);
            assert!(k.len() <= NAME_MAX, "{}", k.len());
            assert!(k.as_bytes().starts_with(b"nnnn"));
        }
    }

    /// Every name `db.pre-restore.<ms>` and `.1` to `.<tries>` taken: the
    /// search stops at its bound and the old tree stays where it is, with
    /// a warning that says so (no clock involved: `ms` is given).
    #[test]
    fn kept_name_collisions_take_the_next_suffix_up_to_a_bound() {
        let t = tempfile::tempdir().unwrap();
        let parent = t.path();
        let old = parent.join(".db.sydra-staging.1.0");
        fs::create_dir(&old).unwrap();
        fs::write(old.join("x"), b"old").unwrap();
        for n in 0..=3 {
            fs::create_dir(parent.join(kept_name(OsStr::new("db"), 7, n))).unwrap();
        }
        let target = target_in(parent);
        // Four taken, a fifth free: `.4`.
        let (kept, warning) = keep_old_within(&target, old.file_name().unwrap(), 7, 4);
        assert_eq!(
            (kept.clone(), warning),
            (parent.join("db.pre-restore.7.4"), None)
        );
        fs::rename(&kept, &old).unwrap();
        // Only three suffixes allowed: `.3` is the last name tried.
        let (kept, warning) = keep_old_within(&target, old.file_name().unwrap(), 7, 3);
        assert_eq!(kept, old);
        let w = warning.unwrap();
        assert!(
            w.starts_with(&format!(
                "previous contents of {} are at {} (could not rename them to {}: ",
                parent.join("db").display(),
                old.display(),
                parent.join("db.pre-restore.7.3").display()
            )),
            "{w}"
        );
        assert_eq!(fs::read(old.join("x")).unwrap(), b"old");
    }

    #[test]
    fn an_old_tree_that_cannot_be_renamed_is_a_warning() {
        let t = tempfile::tempdir().unwrap();
        let old = t.path().join(".db.sydra-staging.1.0");
        let target = t.path().join("db");
        // The rename fails (here: the old tree is not there), not with
        // EEXIST: the old tree is reported where it is.
        let (kept, warning) = keep_old(&target_in(t.path()), old.file_name().unwrap(), 7);
        assert_eq!(kept, old);
        let w = warning.unwrap();
        assert!(
            w.starts_with(&format!(
                "previous contents of {} are at {} (could not rename them to {}: ",
                target.display(),
                old.display(),
                t.path().join("db.pre-restore.7").display()
            )),
            "{w}"
        );
        assert!(!w.contains('\n'));
    }
}
