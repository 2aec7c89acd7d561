//! Atomic publication of an output file: write a temporary sibling, fsync
//! it, rename it over the target, fsync the directory.
//!
//! After a crash at any point the target is absent, the old file, or the
//! complete new one. Temporary files are named
//! `.<name>.sydra-tmp.<pid>.<nonce>`; ones left by a dead process (after
//! SIGKILL or power loss) are removed by the next run that writes the same
//! target.

use std::ffi::CString;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::cleanup::Temp;
use crate::error::{Error, Result};

/// A file being written that appears at its target only on [`AtomicFile::commit`].
#[derive(Debug)]
pub struct AtomicFile {
    file: File,
    temp: Temp,
    target: PathBuf,
    dir: PathBuf,
    force: bool,
}

/// Writes [`AtomicFile`]'s temporary file from its start, and asks the kernel every
/// [`WriteBehind::STEP`] bytes to start writing the last step to disk
/// (`sync_file_range(SYNC_FILE_RANGE_WRITE)`, which does not wait), so disk
/// writes overlap the work that produces the data and the final fsync
/// waits only for the tail. Only a hint: the fsync is what makes the
/// file durable and reports errors.
pub struct WriteBehind<'a> {
    file: &'a mut File,
    written: u64,
    started: u64,
}

impl WriteBehind<'_> {
    /// Bytes between write-back requests.
    pub const STEP: u64 = 8 << 20;

    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.written
    }
}

impl io::Write for WriteBehind<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        self.written += n as u64;
        if self.written - self.started >= Self::STEP {
            // SAFETY: a plain syscall on an open descriptor; a failure only
            // means the data is written back later (at the fsync).
            unsafe {
                libc::sync_file_range(
                    self.file.as_raw_fd(),
                    self.started as libc::off64_t,
                    (self.written - self.started) as libc::off64_t,
                    libc::SYNC_FILE_RANGE_WRITE,
                );
            }
            self.started = self.written;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

/// Marker that names temporary files.
const TMP_MARK: &str = ".sydra-tmp.";

pub(crate) fn split(target: &Path) -> Result<(PathBuf, String)> {
    let name = target
        .file_name()
        .ok_or_else(|| Error::Refused(format!("{} does not name a file", target.display())))?;
    let dir = match target.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    Ok((dir, name.to_string_lossy().into_owned()))
}

/// Leftover temporary files of `target` whose writer process is gone.
pub fn stale_temps(target: &Path) -> Result<Vec<PathBuf>> {
    let (dir, name) = split(target)?;
    dead_leftovers(&dir, &format!(".{name}{TMP_MARK}"))
}

/// Entries of `dir` named `<prefix><pid>.<anything>` whose process `pid`
/// no longer exists: what killed runs left behind.
pub fn dead_leftovers(dir: &Path, prefix: &str) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let rd = fs::read_dir(dir).map_err(|e| Error::io("read directory", dir, e))?;
    for ent in rd.flatten() {
        let fname = ent.file_name();
        let fname = fname.to_string_lossy();
        let Some(rest) = fname.strip_prefix(prefix) else {
            continue;
        };
        let pid: Option<i32> = rest.split('.').next().and_then(|p| p.parse().ok());
        if let Some(pid) = pid
            && !process_alive(pid)
        {
            out.push(ent.path());
        }
    }
    out.sort();
    Ok(out)
}

/// A name suffix unique to this process and moment: `<pid>.<nonce>`.
pub fn unique_suffix() -> String {
    let nonce = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{}.{nonce:08x}", std::process::id())
}

fn process_alive(pid: i32) -> bool {
    // SAFETY: kill with signal 0 only checks for existence.
    let r = unsafe { libc::kill(pid, 0) };
    r == 0 || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

fn describe(t: fs::FileType) -> &'static str {
    if t.is_dir() {
        "a directory"
    } else if t.is_symlink() {
        "a symlink"
    } else if t.is_fifo() {
        "a fifo"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else if t.is_socket() {
        "a socket"
    } else {
        "not a regular file"
    }
}

/// Checks that `target` may be written: absent, or (with `force`) a regular
/// file. Anything else — a directory, a symlink, a fifo, a device — is
/// refused whatever `force` says, with a message naming what it is.
pub fn check_target(target: &Path, force: bool) -> Result<()> {
    match fs::symlink_metadata(target) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io("stat", target, e)),
        Ok(m) if m.is_file() && force => Ok(()),
        Ok(m) if m.is_file() => Err(Error::Refused(format!(
            "{} already exists; use --force to replace it",
            target.display()
        ))),
        Ok(m) => Err(Error::Refused(format!(
            "{} is {}; --force replaces only regular files",
            target.display(),
            describe(m.file_type())
        ))),
    }
}

impl AtomicFile {
    /// Starts writing `target`. Refuses an existing target unless `force`,
    /// and anything but a regular file even with it ([`check_target`]);
    /// removes stale temporary files of earlier, killed runs (returned in
    /// the second element so the caller can report them).
    pub fn create(target: &Path, force: bool) -> Result<(AtomicFile, Vec<PathBuf>)> {
        check_target(target, force)?;
        let (dir, name) = split(target)?;
        let mut removed = Vec::new();
        for stale in stale_temps(target)? {
            if fs::remove_file(&stale).is_ok() {
                removed.push(stale);
            }
        }
        let nonce = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let tmp = dir.join(format!(
            ".{name}{TMP_MARK}{}.{nonce:08x}",
            std::process::id()
        ));
        let temp = Temp::register(&tmp);
        let file = match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&tmp)
        {
            Ok(f) => f,
            Err(e) => {
                temp.commit(|_| ()); // nothing was created: just forget it
                return Err(Error::io("create", &tmp, e));
            }
        };
        Ok((
            AtomicFile {
                file,
                temp,
                target: target.to_path_buf(),
                dir,
                force,
            },
            removed,
        ))
    }

    /// A writer onto the temporary file, from its start; it starts
    /// writing back to disk every few MiB ([`WriteBehind`]).
    pub fn writer(&mut self) -> WriteBehind<'_> {
        WriteBehind {
            file: &mut self.file,
            written: 0,
            started: 0,
        }
    }

    /// The temporary path.
    pub fn temp_path(&self) -> &Path {
        self.temp.path()
    }

    /// Makes the file durable and renames it over the target, then makes
    /// the rename durable. On failure the temporary file is removed. With
    /// `force`, a target that became anything but a regular file while the
    /// archive was written is refused here too.
    pub fn commit(self) -> Result<()> {
        let AtomicFile {
            file,
            temp,
            target,
            dir,
            force,
        } = self;
        if let Err(e) = file.sync_all() {
            let path = temp.path().to_path_buf();
            let _ = temp.remove();
            return Err(Error::io("fsync", path, e));
        }
        let renamed = temp.commit(|tmp| {
            let r = if force {
                check_target(&target, true).and_then(|()| {
                    fs::rename(tmp, &target).map_err(|e| Error::io("rename into place", tmp, e))
                })
            } else {
                rename_noreplace(tmp, &target).map_err(|e| {
                    if e.kind() == io::ErrorKind::AlreadyExists {
                        Error::Refused(format!(
                            "{} appeared while writing; refusing to replace it (use --force)",
                            target.display()
                        ))
                    } else {
                        Error::io("rename into place", tmp, e)
                    }
                })
            };
            if r.is_err() {
                let _ = fs::remove_file(tmp);
            }
            r
        });
        // Closed only after the rename.
        drop(file);
        renamed?;
        sync_dir(&dir)
    }

    /// Removes the temporary file; the target is untouched.
    pub fn abort(self) -> Result<()> {
        let path = self.temp.path().to_path_buf();
        drop(self.file);
        self.temp.remove().map_err(|e| Error::io("remove", path, e))
    }
}

/// fsyncs a directory so that renames in it are durable.
pub fn sync_dir(dir: &Path) -> Result<()> {
    let d = File::open(dir).map_err(|e| Error::io("open directory", dir, e))?;
    d.sync_all()
        .map_err(|e| Error::io("fsync directory", dir, e))
}

/// Renames without replacing an existing target (`renameat2(RENAME_NOREPLACE)`,
/// or `link` + `unlink` where the filesystem lacks it).
pub fn rename_noreplace(from: &Path, to: &Path) -> io::Result<()> {
    let cfrom = CString::new(from.as_os_str().as_bytes())?;
    let cto = CString::new(to.as_os_str().as_bytes())?;
    // SAFETY: valid NUL-terminated paths, AT_FDCWD.
    let r = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            cfrom.as_ptr(),
            libc::AT_FDCWD,
            cto.as_ptr(),
            libc::RENAME_NOREPLACE,
        )
    };
    if r == 0 {
        return Ok(());
    }
    let err = io::Error::last_os_error();
    match err.raw_os_error() {
        Some(libc::EINVAL) | Some(libc::ENOSYS) => {
            fs::hard_link(from, to)?;
            fs::remove_file(from)
        }
        _ => Err(err),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn write_behind_writes_everything_across_steps() {
        let t = tempfile::tempdir().unwrap();
        let out = t.path().join("big.tar.zst");
        let (mut f, _) = AtomicFile::create(&out, false).unwrap();
        let chunk: Vec<u8> = (0..1_000_003u32).map(|i| (i % 253) as u8).collect();
        let mut expect = Vec::new();
        {
            let mut w = f.writer();
            while (expect.len() as u64) < 2 * WriteBehind::STEP + 5 {
                w.write_all(&chunk).unwrap();
                expect.extend_from_slice(&chunk);
            }
            assert!(
                w.started > 0 && w.started <= w.written(),
                "write-back was asked for"
            );
            assert_eq!(w.written(), expect.len() as u64);
            w.flush().unwrap();
        }
        f.commit().unwrap();
        assert!(fs::read(&out).unwrap() == expect, "content intact");
    }

    #[test]
    fn commit_refuse_and_abort() {
        let t = tempfile::tempdir().unwrap();
        let out = t.path().join("a.tar.zst");
        let (mut f, _) = AtomicFile::create(&out, false).unwrap();
        f.writer().write_all(b"new").unwrap();
        assert!(!out.exists());
        f.commit().unwrap();
        assert_eq!(fs::read(&out).unwrap(), b"new");

        assert!(matches!(
            AtomicFile::create(&out, false),
            Err(Error::Refused(_))
        ));

        let (mut f, _) = AtomicFile::create(&out, true).unwrap();
        f.writer().write_all(b"other").unwrap();
        let tmp = f.temp_path().to_path_buf();
        f.abort().unwrap();
        assert!(!tmp.exists());
        assert_eq!(fs::read(&out).unwrap(), b"new");
        assert_eq!(fs::read_dir(t.path()).unwrap().count(), 1);
    }

    #[test]
    fn stale_temps_of_dead_processes_are_found() {
        let t = tempfile::tempdir().unwrap();
        let out = t.path().join("x");
        // pid 0x7fffffff cannot exist; our own pid is alive.
        let dead = t.path().join(format!(".x{TMP_MARK}2147483646.0"));
        let alive = t
            .path()
            .join(format!(".x{TMP_MARK}{}.0", std::process::id()));
        fs::write(&dead, b"").unwrap();
        fs::write(&alive, b"").unwrap();
        assert_eq!(stale_temps(&out).unwrap(), vec![dead.clone()]);
        let (f, removed) = AtomicFile::create(&out, false).unwrap();
        assert_eq!(removed, vec![dead]);
        f.abort().unwrap();
    }

    #[test]
    fn check_target_names_what_it_refuses() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path();
        let file = d.join("file");
        fs::write(&file, b"x").unwrap();
        let link = d.join("link");
        std::os::unix::fs::symlink(&file, &link).unwrap();
        let fifo = d.join("fifo");
        let c = CString::new(fifo.as_os_str().as_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
        let msg = |p: &Path, force| match check_target(p, force) {
            Err(Error::Refused(m)) => m,
            other => panic!("{p:?} {force}: {other:?}"),
        };
        assert!(check_target(&d.join("absent"), false).is_ok());
        assert!(check_target(&file, true).is_ok());
        assert_eq!(
            msg(&file, false),
            format!(
                "{} already exists; use --force to replace it",
                file.display()
            )
        );
        for (p, what) in [
            (&link, "a symlink"),
            (&fifo, "a fifo"),
            (&d.to_path_buf(), "a directory"),
        ] {
            for force in [false, true] {
                assert_eq!(
                    msg(p, force),
                    format!(
                        "{} is {what}; --force replaces only regular files",
                        p.display()
                    )
                );
                assert!(matches!(
                    AtomicFile::create(p, force),
                    Err(Error::Refused(_))
                ));
            }
        }
        assert_eq!(fs::read(&file).unwrap(), b"x");
        assert!(fs::symlink_metadata(&fifo).unwrap().file_type().is_fifo());
        assert!(
            fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink()
        );
    }

    #[test]
    fn commit_refuses_a_target_that_became_special() {
        let t = tempfile::tempdir().unwrap();
        let out = t.path().join("a.tar.zst");
        fs::write(&out, b"old").unwrap();
        let (mut f, _) = AtomicFile::create(&out, true).unwrap();
        f.writer().write_all(b"new").unwrap();
        fs::remove_file(&out).unwrap();
        std::os::unix::fs::symlink("/dev/null", &out).unwrap();
        match f.commit() {
            Err(Error::Refused(m)) => assert_eq!(
                m,
                format!(
                    "{} is a symlink; --force replaces only regular files",
                    out.display()
                )
            ),
            other => panic!("{other:?}"),
        }
        assert_eq!(fs::read_link(&out).unwrap(), Path::new("/dev/null"));
        assert_eq!(
            fs::read_dir(t.path()).unwrap().count(),
            1,
            "temporary removed"
        );
    }

    #[test]
    fn noreplace_refuses_existing() {
        let t = tempfile::tempdir().unwrap();
        let a = t.path().join("a");
        let b = t.path().join("b");
        fs::write(&a, b"a").unwrap();
        fs::write(&b, b"b").unwrap();
        let e = rename_noreplace(&a, &b).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(fs::read(&b).unwrap(), b"b");
    }
}
