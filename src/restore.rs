//! `restore`: rebuild a data directory from an archive so that nothing in
//! the target changes until the whole archive has been verified.
//!
//! The archive is extracted into a staging directory beside the target
//! (same filesystem), verified completely (every member, every SHA-256,
//! the footer), made durable with one `syncfs`, and only then renamed into
//! place — or, over existing data with `force`, swapped with it atomically
//! (`renameat2(RENAME_EXCHANGE)`), the old tree being kept beside it.

use std::ffi::CString;
use std::fs::{self, File, FileTimes, OpenOptions};
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::cleanup::Temp;
use crate::error::{Error, Result};
use crate::head::{Entry, Head};
use crate::location::Location;
use crate::publish::{dead_leftovers, rename_noreplace, split, sync_dir, unique_suffix};
use crate::read::{Depth, FileSink, ReadSummary, Sink};
use crate::verify::open_archive;

/// Marks a staging directory as ours and unpublished; removed just before
/// the staging tree is published.
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
}

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

/// Restores the archive at `archive` into `data_dir`.
pub fn restore(
    archive: &Location,
    data_dir: &Path,
    opts: &RestoreOptions,
) -> Result<RestoreSummary> {
    // A data dir that is a symlink is restored where it points.
    let target = match fs::symlink_metadata(data_dir) {
        Ok(m) if m.file_type().is_symlink() => {
            fs::canonicalize(data_dir).map_err(|e| Error::io("follow symlink", data_dir, e))?
        }
        _ => data_dir.to_path_buf(),
    };
    let (parent, name) = split(&target)?;
    if !parent.is_dir() {
        return Err(Error::Refused(format!(
            "parent directory {} does not exist",
            parent.display()
        )));
    }
    let state = target_state(&target)?;
    if matches!(state, TargetState::Full) && !opts.force {
        return Err(Error::Refused(format!(
            "{} is not empty; use --force to replace it (the old contents are kept beside it)",
            target.display()
        )));
    }
    let src = open_archive(archive, opts.progress.clone())?;

    let (removed_leftovers, reported_leftovers) = clean_leftovers(&parent, &name)?;

    let staging_path = parent.join(format!(".{name}{STAGING_MARK}{}", unique_suffix()));
    let temp = Temp::register(&staging_path);
    if let Err(e) = fs::DirBuilder::new().mode(0o700).create(&staging_path) {
        temp.commit(|_| ()); // nothing was created
        return Err(Error::io("create staging directory", &staging_path, e));
    }
    let mut sink = Extract::new(staging_path.clone(), parent.clone());
    let result = (|| {
        File::create(staging_path.join(STAGING_MARKER))
            .map_err(|e| Error::io("create", staging_path.join(STAGING_MARKER), e))?;
        let read = src.read_into(Depth::Full, &mut sink)?;
        // Verified: now give directories their modes and times, deepest
        // first, and make everything durable with one syncfs.
        sink.finish_dirs()?;
        syncfs(&staging_path)?;
        Ok(read)
    })();
    let read = match result {
        Ok(r) => r,
        Err(e) => {
            if let Err(rm) = temp.remove() {
                return Err(Error::Refused(format!(
                    "{e}; also could not remove staging directory {}: {rm}",
                    staging_path.display()
                )));
            }
            return Err(e);
        }
    };

    // The data dir itself is not in the archive: it keeps the mode of the
    // directory it replaces, or gets the mode mkdir would give it.
    let root_mode = match fs::metadata(&target) {
        Ok(m) => m.permissions().mode() & 0o7777,
        Err(_) => 0o777 & !current_umask(),
    };
    let kept_name = parent.join(format!("{name}.pre-restore.{}", now_ms()));
    let published = temp.commit(|staging| -> Result<Option<PathBuf>> {
        let marker = staging.join(STAGING_MARKER);
        fs::remove_file(&marker).map_err(|e| Error::io("remove", &marker, e))?;
        fs::set_permissions(staging, fs::Permissions::from_mode(root_mode))
            .map_err(|e| Error::io("set mode of", staging, e))?;
        match state {
            TargetState::Absent => {
                rename_noreplace(staging, &target)
                    .map_err(|e| Error::io("rename into place", &target, e))?;
                Ok(None)
            }
            TargetState::Empty => {
                fs::rename(staging, &target)
                    .map_err(|e| Error::io("rename into place", &target, e))?;
                Ok(None)
            }
            TargetState::Full => {
                exchange(staging, &target).map_err(|e| Error::io("swap into place", &target, e))?;
                // `staging` now names the old tree: give it a name that says so.
                rename_noreplace(staging, &kept_name)
                    .map_err(|e| Error::io("keep the old data dir as", &kept_name, e))?;
                Ok(Some(kept_name.clone()))
            }
        }
    });
    let kept_old = match published {
        Ok(k) => k,
        Err(e) => {
            // Not published: the staging tree (without marker) is still there,
            // unless the exchange happened. Remove it only if it is ours.
            if fs::symlink_metadata(&staging_path).is_ok() && !matches!(state, TargetState::Full) {
                let _ = fs::remove_dir_all(&staging_path);
            }
            return Err(e);
        }
    };
    sync_dir(&parent)?;
    Ok(RestoreSummary {
        read,
        data_dir: target,
        kept_old,
        removed_leftovers,
        reported_leftovers,
    })
}

fn current_umask() -> u32 {
    // SAFETY: umask only swaps the process mask; it is put back at once.
    let old = unsafe { libc::umask(0o022) };
    unsafe { libc::umask(old) };
    old as u32
}

fn now_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0)
}

/// Staging directories of killed runs: the ones still holding the marker
/// were never published and are removed; the others may hold a user's data
/// (killed between swap and rename) and are only reported.
fn clean_leftovers(parent: &Path, name: &str) -> Result<(Vec<PathBuf>, Vec<PathBuf>)> {
    let (mut removed, mut reported) = (Vec::new(), Vec::new());
    for p in dead_leftovers(parent, &format!(".{name}{STAGING_MARK}"))? {
        if p.join(STAGING_MARKER).is_file() {
            make_writable(&p);
            fs::remove_dir_all(&p).map_err(|e| Error::io("remove leftover staging", &p, e))?;
            removed.push(p);
        } else {
            reported.push(p);
        }
    }
    Ok((removed, reported))
}

/// Gives every directory below `root` owner write permission, so a tree
/// with read-only directories can be removed by a non-root user.
fn make_writable(root: &Path) {
    if let Ok(m) = fs::symlink_metadata(root)
        && m.is_dir()
    {
        let mode = m.permissions().mode() | 0o700;
        let _ = fs::set_permissions(root, fs::Permissions::from_mode(mode));
        if let Ok(rd) = fs::read_dir(root) {
            for e in rd.flatten() {
                make_writable(&e.path());
            }
        }
    }
}

fn cpath(p: &Path) -> io::Result<CString> {
    CString::new(p.as_os_str().as_bytes()).map_err(io::Error::other)
}

/// Swaps two paths atomically (`renameat2(RENAME_EXCHANGE)`).
pub fn exchange(a: &Path, b: &Path) -> io::Result<()> {
    let (ca, cb) = (cpath(a)?, cpath(b)?);
    // SAFETY: valid NUL-terminated paths, AT_FDCWD.
    let r = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            ca.as_ptr(),
            libc::AT_FDCWD,
            cb.as_ptr(),
            libc::RENAME_EXCHANGE,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Flushes the whole filesystem holding `path` (one call instead of one
/// fsync per file).
fn syncfs(path: &Path) -> Result<()> {
    let d = File::open(path).map_err(|e| Error::io("open", path, e))?;
    // SAFETY: a valid open descriptor.
    let r = unsafe { libc::syncfs(d.as_raw_fd()) };
    if r != 0 {
        return Err(Error::io("syncfs", path, io::Error::last_os_error()));
    }
    Ok(())
}

/// Bytes free for unprivileged users on the filesystem of `path`, and its
/// block size.
fn free_space(path: &Path) -> Result<(u64, u64, u64)> {
    let c = cpath(path).map_err(|e| Error::io("statvfs", path, e))?;
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: valid path and out-pointer.
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return Err(Error::io("statvfs", path, io::Error::last_os_error()));
    }
    let frsize = st.f_frsize.max(1);
    Ok((st.f_bavail * frsize, frsize, st.f_favail))
}

/// The sink that writes verified-so-far members into the staging tree.
struct Extract {
    root: PathBuf,
    parent: PathBuf,
    dirs: Mutex<Vec<Entry>>,
    umask: u32,
}

impl Extract {
    fn new(root: PathBuf, parent: PathBuf) -> Self {
        Extract {
            root,
            parent,
            dirs: Mutex::new(Vec::new()),
            umask: current_umask(),
        }
    }

    fn finish_dirs(&mut self) -> Result<()> {
        let dirs = self.dirs.get_mut().unwrap_or_else(|e| e.into_inner());
        for d in dirs.iter().rev() {
            let path = self.root.join(&d.path);
            set_mode_and_time(&path, d)?;
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

fn set_mode_and_time(path: &Path, e: &Entry) -> Result<()> {
    let f = File::open(path).map_err(|err| Error::io("open", path, err))?;
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
        let (free, block, free_inodes) = free_space(&self.parent)?;
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
        if crate::cleanup::stopping() {
            return Err(Error::Interrupted);
        }
        let path = self.root.join(&entry.path);
        fs::DirBuilder::new()
            .mode(0o700)
            .create(&path)
            .map_err(|e| Error::io("create directory", &path, e))?;
        self.dirs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(entry.clone());
        Ok(())
    }

    fn file(&self, entry: &Entry) -> Result<ExtractFile> {
        if crate::cleanup::stopping() {
            return Err(Error::Interrupted);
        }
        let path = self.root.join(&entry.path);
        // Created with its final mode where the umask allows (one syscall
        // less per file); the fd is writable whatever the mode says.
        let mode = safe_mode(entry);
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&path)
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
        let fd = std::os::fd::IntoRawFd::into_raw_fd(file);
        // SAFETY: we own fd and close it exactly once.
        if unsafe { libc::close(fd) } != 0 {
            return Err(Error::io("close", &path, io::Error::last_os_error()));
        }
        Ok(())
    }
}
