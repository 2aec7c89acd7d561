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
use crate::format::head::{Entry, Head};
use crate::ops::source::{ArchiveReader, open_archive};
use crate::read::{Depth, FileSink, ReadSummary, Sink};
use crate::store::cleanup::{Temp, remove_path};
use crate::store::location::Location;
use crate::store::publish::{
    NAME_MAX, STALE_AFTER, leftover_prefix, lock, open_dir, rename_noreplace, shorten, split,
    sync_dir, try_lock, unique_name, unlocked_leftovers,
};
use crate::sys;

/// Marks a staging directory as ours and unpublished: created once the
/// run holds the directory's lock, removed just before the staging tree is
/// published.
pub const STAGING_MARKER: &str = ".sydra-staging";
const STAGING_MARK: &str = ".sydra-staging.";

/// Options for [`restore`].
#[derive(Debug, Clone, Default)]
pub struct RestoreOptions {
    /// Replace a non-empty data directory (the old one is kept beside it).
    pub force: bool,
    /// Counts the archive bytes read (total: the archive size, if known).
    pub progress: Option<std::sync::Arc<crate::progress::Progress>>,
}

/// What a finished restore did.
#[derive(Debug, Clone)]
pub struct RestoreSummary {
    /// What the reader verified.
    pub read: ReadSummary,
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
    let src = open_archive(archive, opts.progress.clone())?;
    let (removed_leftovers, reported_leftovers) = clean_leftovers(&t.parent, &t.name)?;
    let staged = stage(src, &t)?;
    let (kept_old, warnings) = publish(staged.temp, &staged.root, &t)?;
    drop(staged.root); // the lock goes last
    Ok(RestoreSummary {
        read: staged.read,
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
    /// Its name in the parent.
    name: OsString,
    state: TargetState,
}

/// Resolves `data_dir` and refuses what cannot be replaced by a rename
/// (a mount point), or not without `force` (a data dir with contents).
fn resolve_target(data_dir: &Path, force: bool) -> Result<Target> {
    let data_dir = normalise(data_dir)?;
    // A data dir that is a symlink is restored where it points.
    let path = match fs::symlink_metadata(&data_dir) {
        Ok(m) if m.file_type().is_symlink() => {
            fs::canonicalize(&data_dir).map_err(|e| Error::io("follow symlink", &data_dir, e))?
        }
        _ => data_dir,
    };
    let (parent, name) = split(&path)?;
    if !parent.is_dir() {
        return Err(Error::Refused(format!(
            "parent directory {} does not exist",
            parent.display()
        )));
    }
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
        name,
        state,
    })
}

/// A verified, durable, unpublished tree beside the target.
struct Staged {
    temp: Temp,
    /// The staging directory, open and locked for the whole run.
    root: File,
    read: ReadSummary,
}

/// Extracts and verifies the archive into a new staging directory beside
/// the target, locked and marked as ours; removes it on any failure.
fn stage(src: ArchiveReader, t: &Target) -> Result<Staged> {
    let staging_path = t
        .parent
        .join(unique_name(&leftover_prefix(&t.name, STAGING_MARK)));
    let temp = Temp::register(&staging_path);
    // Made and opened relative to the parent, and checked on the opened
    // descriptor: a directory another user swapped in is never written to.
    let made = sys::make_private_dir(
        &t.parent,
        staging_path.file_name().unwrap_or_default().as_bytes(),
    );
    let root = match made {
        Ok(root) => root,
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => {
            // Not ours any more: leave whatever is there alone.
            temp.commit(|_| ());
            return Err(Error::Refused(format!(
                "staging directory {} was replaced by a directory this user does not own alone while it was created (someone else can write to {}); nothing was written",
                staging_path.display(),
                t.parent.display()
            )));
        }
        Err(e) => {
            let _ = temp.remove();
            return Err(Error::io("create staging directory", &staging_path, e));
        }
    };
    let staged = (|| {
        lock(&root).map_err(|e| Error::io("lock staging directory", &staging_path, e))?;
        let sink = Extract::new(&root, staging_path.clone(), t.parent.clone())?;
        Ok((root, sink))
    })();
    let (root, mut sink) = match staged {
        Ok(x) => x,
        Err(e) => return Err(remove_staging(temp, e)),
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
        let read = src.read_into(Depth::Full, &mut sink)?;
        // Verified: now give directories their modes and times, deepest
        // first, and make everything durable with one syncfs.
        sink.finish_dirs()?;
        sys::syncfs(&root).map_err(|e| Error::io("syncfs", &staging_path, e))?;
        Ok(read)
    })();
    match result {
        Ok(read) => Ok(Staged { temp, root, read }),
        Err(e) => Err(remove_staging(temp, e)),
    }
}

/// Renames the staged tree into place (or swaps it with the old data dir,
/// which is kept beside it). Fails only while nothing was replaced; once
/// the data dir is replaced, problems are warnings. Returns where the old
/// tree was kept and the warnings.
fn publish(temp: Temp, root: &File, t: &Target) -> Result<(Option<PathBuf>, Vec<String>)> {
    // The data dir itself is not in the archive: it keeps the mode of the
    // directory it replaces, or gets the mode mkdir would give it.
    let root_mode = match fs::metadata(&t.path) {
        Ok(m) => m.permissions().mode() & 0o7777,
        Err(_) => 0o777 & !sys::current_umask(),
    };
    let target = &t.path;
    let published = temp.commit(|staging| -> Result<Option<(PathBuf, Option<String>)>> {
        // Anything that fails before the tree is in place leaves it
        // unpublished: it is removed, never kept.
        let unpublished = |e: Error| match remove_path(staging) {
            Ok(()) => e,
            Err(rm) => e.also(format!(
                "could not remove staging directory {}: {rm}",
                staging.display()
            )),
        };
        let marker = staging.join(STAGING_MARKER);
        fs::remove_file(&marker).map_err(|e| unpublished(Error::io("remove", &marker, e)))?;
        root.set_permissions(fs::Permissions::from_mode(root_mode))
            .map_err(|e| unpublished(Error::io("set mode of", staging, e)))?;
        match t.state {
            TargetState::Absent => {
                rename_noreplace(staging, target)
                    .map_err(|e| unpublished(Error::io("rename into place", target, e)))?;
                Ok(None)
            }
            TargetState::Empty => {
                fs::rename(staging, target)
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
                sys::exchange(staging, target)
                    .map_err(|e| unpublished(Error::io("swap into place", target, e)))?;
                // `staging` now names the old tree: give it a name that says so.
                let kept = keep_old(staging, &t.parent, &t.name, target, now_ms());
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
    if let Err(e) = sync_dir(&t.parent) {
        warnings.push(format!(
            "{e}; the restore is complete but its rename may not be durable yet"
        ));
    }
    Ok((kept_old, warnings))
}

/// Removes the unpublished staging tree after `e`, and returns `e` (with a
/// note if the tree could not be removed).
fn remove_staging(temp: Temp, e: Error) -> Error {
    let path = temp.path().to_path_buf();
    match temp.remove() {
        Ok(()) => e,
        Err(rm) => e.also(format!(
            "could not remove staging directory {}: {rm}",
            path.display()
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
fn keep_old(
    old: &Path,
    parent: &Path,
    name: &OsStr,
    target: &Path,
    ms: u128,
) -> (PathBuf, Option<String>) {
    let mut n = 0u32;
    loop {
        let kept = parent.join(kept_name(name, ms, n));
        match rename_noreplace(old, &kept) {
            Ok(()) => return (kept, None),
            Err(e)
                if n < 100_000
                    && matches!(e.raw_os_error(), Some(libc::EEXIST | libc::ENOTEMPTY)) =>
            {
                n += 1
            }
            Err(e) => {
                let warning = format!(
                    "previous contents of {} are at {} (could not rename them to {}: {e})",
                    target.display(),
                    old.display(),
                    kept.display()
                );
                return (old.to_path_buf(), Some(warning));
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
/// reported.
fn clean_leftovers(parent: &Path, name: &OsStr) -> Result<(Vec<PathBuf>, Vec<PathBuf>)> {
    let (mut removed, mut reported) = (Vec::new(), Vec::new());
    for lo in unlocked_leftovers(parent, &leftover_prefix(name, STAGING_MARK), true)? {
        // Removed while its lock is held, so no run can start using it.
        let marked = fs::symlink_metadata(lo.path.join(STAGING_MARKER)).is_ok_and(|m| m.is_file());
        if marked {
            remove_path(&lo.path).map_err(|e| Error::io("remove leftover staging", &lo.path, e))?;
            removed.push(lo.path);
        } else if fs::read_dir(&lo.path).is_ok_and(|mut rd| rd.next().is_none()) {
            // Younger: its run may not have locked it yet.
            if lo.age >= STALE_AFTER && fs::remove_dir(&lo.path).is_ok() {
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

    fn head(&mut self, head: &Head) -> Result<()> {
        let space =
            sys::free_space(&self.parent).map_err(|e| Error::io("statvfs", &self.parent, e))?;
        let (free, block, free_inodes) = (space.bytes, space.block, space.inodes);
        let round = |n: u64| n.div_ceil(block).saturating_mul(block);
        let mut need: u64 = 0;
        for e in &head.entries {
            need = need.saturating_add(round(e.size.max(1)));
        }
        if need > free {
            return Err(Error::Refused(format!(
                "not enough free space in {}: the archive needs about {need} bytes, {free} are free",
                self.parent.display()
            )));
        }
        if free_inodes > 0 && (head.entries.len() as u64) > free_inodes {
            return Err(Error::Refused(format!(
                "not enough free inodes in {}: the archive has {} entries, {free_inodes} inodes are free",
                self.parent.display(),
                head.entries.len()
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

    #[test]
    fn kept_names_never_collide_and_fit_name_max() {
        let t = tempfile::tempdir().unwrap();
        let (parent, target) = (t.path(), t.path().join("db"));
        fs::create_dir(parent.join("db.pre-restore.7")).unwrap();
        fs::create_dir(parent.join("db.pre-restore.7.1")).unwrap();
        fs::write(parent.join("db.pre-restore.7.1/x"), b"earlier").unwrap();
        let old = parent.join(".db.sydra-staging.1.0");
        fs::create_dir(&old).unwrap();
        fs::write(old.join("x"), b"old").unwrap();
        let (kept, warning) = keep_old(&old, parent, OsStr::new("db"), &target, 7);
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

    #[test]
    fn an_old_tree_that_cannot_be_renamed_is_a_warning() {
        let t = tempfile::tempdir().unwrap();
        let old = t.path().join(".db.sydra-staging.1.0");
        let target = t.path().join("db");
        // The rename fails (here: the old tree is not there), not with
        // EEXIST: the old tree is reported where it is.
        let (kept, warning) = keep_old(&old, t.path(), OsStr::new("db"), &target, 7);
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
