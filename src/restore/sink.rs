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
use std::time::SystemTime;

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
    /// Files whose index records carry nanoseconds: (path, mtime, nsec),
    /// spooled to a temporary file (their times are set once the archive
    /// is read, [`StagingSink::apply_nsec`]; memory stays bounded).
    nsec: Mutex<NsecSpool>,
    umask: u32,
}

/// The spool of [`StagingSink::nsec`], and the next directory of `dirs`
/// an index record may name (records come in member order).
#[derive(Default)]
struct NsecSpool {
    file: Option<std::io::BufWriter<File>>,
    count: u64,
    next_dir: usize,
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
            nsec: Mutex::new(NsecSpool::default()),
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

    /// Gives the files whose index records carry nanoseconds their exact
    /// modification times (once the archive is read; before, each got
    /// the whole seconds of its tar header).
    pub fn apply_nsec(&mut self) -> Result<()> {
        use std::io::{BufRead, BufReader, Seek};
        let spool = self.nsec.get_mut().unwrap_or_else(|e| e.into_inner());
        let Some(w) = spool.file.take() else {
            return Ok(());
        };
        let count = std::mem::take(&mut spool.count);
        let spooled = |e: std::io::Error| Error::io("read back", "the spooled times", e);
        let mut f = w.into_inner().map_err(|e| spooled(e.into_error()))?;
        f.rewind().map_err(spooled)?;
        let mut r = BufReader::new(f);
        // Records come in tree order: one directory descriptor serves all
        // the files of a directory.
        let mut parent: Option<(Vec<u8>, File)> = None;
        let mut line = Vec::new();
        for _ in 0..count {
            line.clear();
            r.read_until(0, &mut line).map_err(spooled)?;
            let mut fixed = [0u8; 12];
            std::io::Read::read_exact(&mut r, &mut fixed).map_err(spooled)?;
            let rel = line.strip_suffix(&[0]).unwrap_or(&line);
            let sec = i64::from_le_bytes(fixed[..8].try_into().expect("8 bytes"));
            let nsec = u32::from_le_bytes(fixed[8..].try_into().expect("4 bytes"));
            let (dir, name) = match rel.iter().rposition(|&b| b == b'/') {
                Some(i) => (&rel[..i], &rel[i + 1..]),
                None => (&rel[..0], rel),
            };
            let shown = || self.shown.join(String::from_utf8_lossy(rel).as_ref());
            let r = if dir.is_empty() {
                sys::set_times_in(&self.root, name, sec, nsec)
            } else {
                if parent.as_ref().is_none_or(|(p, _)| p != dir) {
                    let f = sys::open_at(&self.root, dir, libc::O_PATH | libc::O_DIRECTORY, 0)
                        .map_err(|e| Error::io("open", shown(), e))?;
                    parent = Some((dir.to_vec(), f));
                }
                let (_, f) = parent.as_ref().expect("opened");
                sys::set_times_in(f, name, sec, nsec)
            };
            r.map_err(|e| Error::io("set times of", shown(), e))?;
        }
        Ok(())
    }

    /// The directories written so far (taken: the sink forgets them).
    pub fn take_dirs(&mut self) -> Vec<Entry> {
        self.nsec
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .next_dir = 0;
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
    e.modified()
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

    fn wants_records(&self) -> bool {
        true
    }

    fn record(&self, rec: &crate::format::v2::Record) -> Result<()> {
        let mut spool = self.nsec.lock().unwrap_or_else(|e| e.into_inner());
        let out_of_place = || {
            Error::corrupt(format!(
                "index record {:?} names no member before it, in order",
                rec.path
            ))
        };
        if rec.kind == crate::format::head::EntryKind::Dir {
            // Directories are held until their times are set last: the
            // entry the member declared gets the nanoseconds. Records come
            // in member order, so each names the next directory.
            let mut dirs = self.dirs.lock().unwrap_or_else(|e| e.into_inner());
            let i = spool.next_dir;
            match dirs.get_mut(i) {
                Some(d) if d.path == rec.path => {
                    d.mtime_nsec = rec.mtime_nsec.unwrap_or(0);
                    spool.next_dir = i + 1;
                }
                _ => return Err(out_of_place()),
            }
            return Ok(());
        }
        let Some(nsec) = rec.mtime_nsec.filter(|&n| n > 0) else {
            return Ok(());
        };
        // Beside the staging directory, on the filesystem the restore was
        // found to have room on (the path and 13 bytes per file).
        let parent = self.parent.clone();
        let io = move |e: std::io::Error| {
            Error::io("spool times to a temporary file in", parent.clone(), e)
        };
        if spool.file.is_none() {
            spool.file = Some(std::io::BufWriter::new(
                tempfile::tempfile_in(&self.parent).map_err(&io)?,
            ));
        }
        let w = spool.file.as_mut().expect("made");
        // The path (no NUL in an archive path), a NUL, seconds, nanoseconds.
        w.write_all(rec.path.as_bytes()).map_err(&io)?;
        w.write_all(&[0]).map_err(&io)?;
        w.write_all(&(rec.mtime as i64).to_le_bytes())
            .map_err(&io)?;
        w.write_all(&nsec.to_le_bytes()).map_err(&io)?;
        spool.count += 1;
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
