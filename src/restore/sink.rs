//! The sink a restore reads an archive into: each verified-so-far member
//! written into the staging tree relative to its descriptor, with the
//! archive's modes (setuid, setgid and sticky bits masked) and times;
//! directories get theirs last, deepest first.

use std::fs::{self, File, FileTimes};
use std::io::Write;
use std::os::fd::OwnedFd;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::error::{Error, Result};
use crate::format::head::Entry;
use crate::read::{FileSink, Plan, Sink};
use crate::restore::space::check_room;
use crate::sys;

/// The sink that writes verified-so-far members into the staging tree.
/// Every entry is created relative to the staging directory's descriptor
/// (shared by the worker threads; system calls on it are thread-safe), so
/// only the archive path, at most 4095 bytes, is resolved by the kernel.
pub struct StagingSink {
    /// The staging directory.
    root: OwnedFd,
    /// Its path, for messages.
    shown: PathBuf,
    parent: PathBuf,
    dirs: Mutex<Vec<Entry>>,
    umask: u32,
}

impl StagingSink {
    /// A sink writing into the staging directory `root` (shown as
    /// `shown`) in `parent`.
    pub fn new(root: &File, shown: PathBuf, parent: PathBuf) -> Result<Self> {
        let root = root
            .try_clone()
            .map_err(|e| Error::io("duplicate descriptor of", &shown, e))?;
        Ok(StagingSink {
            root: root.into(),
            shown,
            parent,
            dirs: Mutex::new(Vec::new()),
            umask: sys::current_umask(),
        })
    }

    /// Gives the directories written their modes and times, deepest
    /// first (once the archive is verified).
    pub fn finish_dirs(&mut self) -> Result<()> {
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

    /// The directories written so far (taken: the sink forgets them).
    pub fn take_dirs(&mut self) -> Vec<Entry> {
        std::mem::take(self.dirs.get_mut().unwrap_or_else(|e| e.into_inner()))
    }

    /// The directory the staging directory is in.
    pub fn parent(&self) -> &Path {
        &self.parent
    }
}

/// A file being written into the staging tree.
pub struct StagingFile {
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

impl Sink for StagingSink {
    type File = StagingFile;

    fn plan(&mut self, plan: &Plan) -> Result<()> {
        check_room(&self.parent, plan)
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

    fn file(&self, entry: &Entry) -> Result<StagingFile> {
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
        Ok(StagingFile {
            file,
            path,
            chmod: mode & self.umask != 0,
        })
    }
}

impl FileSink for StagingFile {
    fn write(&mut self, data: &[u8]) -> Result<()> {
        self.file
            .write_all(data)
            .map_err(|e| Error::io("write", &self.path, e))
    }

    fn finish(self, entry: &Entry) -> Result<()> {
        let StagingFile { file, path, chmod } = self;
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
