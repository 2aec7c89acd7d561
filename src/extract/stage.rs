//! The private staging directory inside the destination that extracted
//! files are written to, each checked before anything is published: made
//! private and locked (a staging directory whose lock is free is a killed
//! run's, removed by the next run), removed on a failure or a signal.

use std::fs::File;
use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use crate::error::{Error, Result};
use crate::extract::ExtractTo;
use crate::format::head::Entry;
use crate::sys;

/// How extract's staging directories are named (`<mark><pid>.<nonce>`).
const STAGE_MARK: &str = ".sydra-extract.";

/// The private staging directory files are extracted into, and publishing
/// them from it.
pub struct Stage {
    pub(super) to: ExtractTo,
    pub(super) force: bool,
    /// The destination directory (for `Dir`) or the output's directory.
    pub(super) root: File,
    pub(super) root_path: PathBuf,
    pub(super) name: Vec<u8>,
    pub(super) dir: File,
    pub(super) dirs_made: AtomicU64,
    /// Removes the staging tree if a signal comes first.
    pub(super) pending: Option<crate::store::cleanup::Pending>,
    /// The destination directory was made by this run (removed again,
    /// if still empty, after a failure).
    pub(super) made_root: bool,
    /// Files and bytes staged from a stream.
    pub(super) files: AtomicU64,
    pub(super) bytes: AtomicU64,
    /// The directories extracted, whose modes and times are set once the
    /// files are in place (a directory's time changes as files arrive).
    /// One per directory: a data dir has one per hour of segments.
    pub(super) dir_entries: std::sync::Mutex<Vec<Entry>>,
    /// The directories publishing created (only those get the archive's
    /// modes and times: one that was there is left as it is).
    pub(super) created_dirs: std::sync::Mutex<std::collections::HashSet<Vec<u8>>>,
    /// The files publishing moved into place, in order, each with whether
    /// it replaced one (swapped into the staging tree).
    pub(super) moved: std::sync::Mutex<Vec<(Vec<u8>, bool)>>,
}

impl Stage {
    /// Makes the staging directory for `to` (a destination directory is
    /// created if absent), after removing killed runs' ones there.
    pub fn new(to: &ExtractTo, force: bool) -> Result<Stage> {
        let mut made_root = false;
        let root_path = match to {
            ExtractTo::Dir(d) => {
                made_root = !d.exists();
                std::fs::create_dir_all(d).map_err(|e| Error::io("create directory", d, e))?;
                d.clone()
            }
            ExtractTo::File(f) => match f.parent() {
                Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
                _ => PathBuf::from("."),
            },
            ExtractTo::Stdout => std::env::temp_dir(),
        };
        let root = sys::open_dir_path(&root_path)
            .map_err(|e| Error::io("open directory", &root_path, e))?;
        let name = format!(
            "{STAGE_MARK}{}.{:x}",
            std::process::id(),
            SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or_default()
                .subsec_nanos()
        )
        .into_bytes();
        // Staging directories of killed runs (their lock is free) go first:
        // they may hold plaintext of an encrypted archive.
        for old in crate::store::publish::unlocked_leftovers(
            &root_path,
            std::ffi::OsStr::new(STAGE_MARK),
            true,
        )? {
            if old.age >= crate::store::publish::STALE_AFTER
                && let Some(n) = old.path.file_name()
            {
                let _ = sys::remove_tree_at(
                    &root,
                    std::os::unix::ffi::OsStrExt::as_bytes(n),
                    &old._lock,
                );
            }
        }
        let dir = sys::make_private_dir(&root, &name)
            .map_err(|e| Error::io("create a staging directory in", &root_path, e))?;
        // Held until the run ends: a staging directory whose lock is free
        // is a killed run's.
        if let Err(e) = crate::store::publish::lock(&dir) {
            let _ = sys::remove_tree_at(&root, &name, &dir);
            return Err(Error::io("lock the staging directory in", &root_path, e));
        }
        let pending = {
            let (r, d, n) = (
                root.try_clone()
                    .map_err(|e| Error::io("open", &root_path, e))?,
                dir.try_clone()
                    .map_err(|e| Error::io("open", &root_path, e))?,
                name.clone(),
            );
            crate::store::cleanup::Pending::register(
                format!("staging directory in {}", root_path.display()),
                move || {
                    // A file being created as the signal came may land
                    // after the first pass: no new one starts once
                    // stopping, so a few passes empty it.
                    let mut tries = 0;
                    loop {
                        match sys::remove_tree_at(&r, &n, &d) {
                            Err(e)
                                if tries < 20
                                    && matches!(
                                        e.raw_os_error(),
                                        Some(libc::ENOTEMPTY | libc::ENOENT)
                                    ) =>
                            {
                                tries += 1;
                                std::thread::sleep(Duration::from_millis(10));
                            }
                            other => return other,
                        }
                    }
                },
            )
        };
        Ok(Stage {
            pending: Some(pending),
            made_root,
            to: to.clone(),
            force,
            root,
            root_path,
            name,
            dir,
            dirs_made: AtomicU64::new(0),
            files: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            dir_entries: std::sync::Mutex::new(Vec::new()),
            created_dirs: std::sync::Mutex::new(std::collections::HashSet::new()),
            moved: std::sync::Mutex::new(Vec::new()),
        })
    }

    pub(super) fn shown(&self, rel: &str) -> PathBuf {
        match &self.to {
            ExtractTo::Dir(d) => d.join(rel),
            ExtractTo::File(f) => f.clone(),
            ExtractTo::Stdout => PathBuf::from("-"),
        }
    }

    /// The files and bytes staged from a stream.
    pub fn streamed(&self) -> (u64, u64) {
        (
            self.files.load(Ordering::Relaxed),
            self.bytes.load(Ordering::Relaxed),
        )
    }

    /// Refuses a file that exists where `rel` goes, unless `--force`.
    pub fn check_target(&self, rel: &str) -> Result<()> {
        let target = match &self.to {
            ExtractTo::Dir(d) => d.join(rel),
            ExtractTo::File(f) => f.clone(),
            ExtractTo::Stdout => return Ok(()),
        };
        match std::fs::symlink_metadata(&target) {
            Ok(m) if m.is_file() && self.force => Ok(()),
            Ok(m) if m.is_file() => Err(Error::Refused(format!(
                "{} exists; use --force to replace it",
                target.display()
            ))),
            Ok(_) => Err(Error::Refused(format!(
                "{} exists and is not a regular file",
                target.display()
            ))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io("stat", &target, e)),
        }
    }

    /// The directories above `rel` in the staging directory.
    fn parents(&self, rel: &str) -> Result<()> {
        if crate::store::cleanup::stopping() {
            return Err(Error::Interrupted);
        }
        for (i, _) in rel.match_indices('/') {
            match sys::mkdir_at(&self.dir, &rel.as_bytes()[..i], 0o755) {
                Ok(()) => {
                    self.dirs_made.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(Error::io("create directory", self.shown(&rel[..i]), e)),
            }
        }
        Ok(())
    }

    /// Stages the directory `e` (into a destination directory only).
    pub fn dir(&self, e: &Entry) -> Result<()> {
        if !matches!(self.to, ExtractTo::Dir(_)) {
            return Ok(());
        }
        self.parents(&format!("{}/", e.path))?;
        self.dir_entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(e.clone());
        Ok(())
    }

    /// Creates the staged file for `e`.
    pub fn file(&self, e: &Entry) -> Result<StagedFile> {
        if crate::store::cleanup::stopping() {
            return Err(Error::Interrupted);
        }
        let rel = match &self.to {
            ExtractTo::Dir(_) => e.path.clone(),
            // One file: it takes a fixed name; a second one is refused.
            _ => "the-file".to_string(),
        };
        self.parents(&rel)?;
        let f = sys::open_at(
            &self.dir,
            rel.as_bytes(),
            libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL,
            0o600,
        )
        .map_err(|err| match err.kind() {
            io::ErrorKind::AlreadyExists if !matches!(self.to, ExtractTo::Dir(_)) => {
                Error::Refused("more than one file matches; -o takes exactly one".into())
            }
            io::ErrorKind::AlreadyExists => Error::hostile(&e.path, "duplicate path in the index"),
            _ => Error::io("create", self.shown(&e.path), err),
        })?;
        Ok(StagedFile {
            f,
            shown: self.shown(&e.path),
        })
    }

    /// Removes the staging directory after a failure; `e` is what failed.
    pub fn abandon(mut self, e: Error) -> Error {
        let removed = sys::remove_tree_at(&self.root, &self.name, &self.dir);
        if let Some(p) = self.pending.take() {
            p.forget();
        }
        if self.made_root && removed.is_ok() {
            // Only if still empty: rmdir refuses anything else.
            let _ = std::fs::remove_dir(&self.root_path);
        }
        match removed {
            Ok(()) => e,
            Err(err) => e.also(format!(
                "could not remove the staging directory in {}: {err}",
                self.root_path.display()
            )),
        }
    }
}

/// A file being written into the staging directory.
pub struct StagedFile {
    f: File,
    shown: PathBuf,
}

impl StagedFile {
    /// Writes the next bytes.
    pub fn write(&mut self, data: &[u8]) -> Result<()> {
        self.f
            .write_all(data)
            .map_err(|e| Error::io("write", &self.shown, e))
    }

    /// Gives the file `e`'s mode and time, and syncs it.
    pub fn finish(self, e: &Entry) -> Result<()> {
        use std::os::unix::fs::PermissionsExt;
        let mtime = e.modified();
        self.f
            .set_modified(mtime)
            .and_then(|()| {
                self.f
                    .set_permissions(std::fs::Permissions::from_mode(e.mode & 0o777))
            })
            .and_then(|()| self.f.sync_all())
            .map_err(|err| Error::io("finish", &self.shown, err))
    }
}
