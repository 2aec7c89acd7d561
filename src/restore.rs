//! `restore`: rebuild a data directory from an archive so that nothing in
//! the target changes until the whole archive has been verified.
//!
//! The archive is extracted into a staging directory beside the target
//! (same filesystem), every entry created relative to that directory's
//! descriptor (so a path within the format's limits can be restored however
//! deep the target is), verified completely (every member, every SHA-256,
//! the footer), made durable with one `syncfs`, and only then renamed into
//! place — or, over existing data with `force`, swapped with it atomically
//! (`renameat2(RENAME_EXCHANGE)`), the old tree being kept beside it.

use std::ffi::CString;
use std::fs::{self, File, FileTimes, OpenOptions};
use std::io::{self, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::cleanup::{Temp, make_writable};
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
    let result = (|| {
        let root = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&staging_path)
            .map_err(|e| Error::io("open staging directory", &staging_path, e))?;
        let mut sink = Extract::new(&root, staging_path.clone(), parent.clone())?;
        open_at(
            &root,
            STAGING_MARKER.as_bytes(),
            libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL,
            0o600,
        )
        .map_err(|e| Error::io("create", staging_path.join(STAGING_MARKER), e))?;
        let read = src.read_into(Depth::Full, &mut sink)?;
        // Verified: now give directories their modes and times, deepest
        // first, and make everything durable with one syncfs.
        sink.finish_dirs()?;
        syncfs(&root, &staging_path)?;
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
    // SAFETY: puts the mask read above back.
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

/// Flushes the whole filesystem holding `dir` (one call instead of one
/// fsync per file).
fn syncfs(dir: &File, path: &Path) -> Result<()> {
    // SAFETY: a valid open descriptor.
    let r = unsafe { libc::syncfs(dir.as_raw_fd()) };
    if r != 0 {
        return Err(Error::io("syncfs", path, io::Error::last_os_error()));
    }
    Ok(())
}

/// Bytes free for unprivileged users on the filesystem of `path`, and its
/// block size.
fn free_space(path: &Path) -> Result<(u64, u64, u64)> {
    let c = cpath(path).map_err(|e| Error::io("statvfs", path, e))?;
    // SAFETY: an all-zero statvfs is a valid value to be overwritten.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: valid path and out-pointer.
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return Err(Error::io("statvfs", path, io::Error::last_os_error()));
    }
    let frsize = st.f_frsize.max(1);
    Ok((st.f_bavail * frsize, frsize, st.f_favail))
}

/// Opens `rel` relative to the directory `dir` with `flags` (plus
/// `O_NOFOLLOW | O_CLOEXEC`) and `mode` for a file it creates.
fn open_at(dir: &impl AsRawFd, rel: &[u8], flags: libc::c_int, mode: u32) -> io::Result<File> {
    let c = CString::new(rel).map_err(io::Error::other)?;
    let flags = flags | libc::O_NOFOLLOW | libc::O_CLOEXEC;
    // SAFETY: `dir` is an open directory descriptor, `c` NUL-terminated.
    let fd = unsafe { libc::openat(dir.as_raw_fd(), c.as_ptr(), flags, mode as libc::c_uint) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a descriptor openat just returned, owned by nothing else.
    Ok(unsafe { File::from_raw_fd(fd) })
}

/// Creates the directory `rel` relative to the directory `dir`.
fn mkdir_at(dir: &impl AsRawFd, rel: &[u8], mode: u32) -> io::Result<()> {
    let c = CString::new(rel).map_err(io::Error::other)?;
    // SAFETY: `dir` is an open directory descriptor, `c` NUL-terminated.
    if unsafe { libc::mkdirat(dir.as_raw_fd(), c.as_ptr(), mode as libc::mode_t) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
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
            umask: current_umask(),
        })
    }

    fn finish_dirs(&mut self) -> Result<()> {
        let dirs = self.dirs.get_mut().unwrap_or_else(|e| e.into_inner());
        for d in dirs.iter().rev() {
            let path = self.shown.join(&d.path);
            let f = open_at(
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
        mkdir_at(&self.root, entry.path.as_bytes(), 0o700)
            .map_err(|e| Error::io("create directory", self.shown.join(&entry.path), e))?;
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
        let path = self.shown.join(&entry.path);
        // Created with its final mode where the umask allows (one syscall
        // less per file); the fd is writable whatever the mode says.
        let mode = safe_mode(entry);
        let file = open_at(
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
        let fd = std::os::fd::IntoRawFd::into_raw_fd(file);
        // SAFETY: we own fd and close it exactly once.
        if unsafe { libc::close(fd) } != 0 {
            return Err(Error::io("close", &path, io::Error::last_os_error()));
        }
        Ok(())
    }
}
