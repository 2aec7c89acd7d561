//! Atomic publication of an output file: write a temporary sibling, fsync
//! it, rename it over the target, fsync the directory.
//!
//! After a crash at any point the target is absent, the old file, or the
//! complete new one. Temporary files are named
//! `.<name>.sydra-tmp.<pid>.<nonce>` (`<name>` shortened so the whole stays
//! within `NAME_MAX`). The writer holds an exclusive `flock` on its
//! temporary from creation to commit; one whose lock is free (its writer
//! was killed, or the power was lost) is removed by the next run that
//! writes the same target. A lock, unlike a pid, means the same in every
//! PID namespace.

use std::ffi::{OsStr, OsString};
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::error::{Error, Result};
use crate::store::cleanup::Temp;
use crate::sys;

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

    #[cfg(test)]
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
            sys::start_writeback(self.file, self.started, self.written - self.started);
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

/// Longest file name (`NAME_MAX`).
pub(crate) const NAME_MAX: usize = 255;
/// Longest suffix [`unique_suffix`] makes: a pid of up to 10 digits, a dot
/// and 8 hex digits.
const SUFFIX_MAX: usize = 19;

/// Leftovers younger than this are never taken for stale, even with their
/// lock free: a live run may be between creating its temporary (or staging
/// directory) and locking it.
pub const STALE_AFTER: Duration = Duration::from_secs(2);

/// The directory and the file name of `target`.
pub(crate) fn split(target: &Path) -> Result<(PathBuf, OsString)> {
    let name = target
        .file_name()
        .ok_or_else(|| Error::Refused(format!("{} does not name a file", target.display())))?;
    let dir = match target.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    Ok((dir, name.to_os_string()))
}

/// The first `room` bytes of `name` (cut back to a character boundary when
/// `name` is UTF-8): deterministic, so every run shortens a name alike.
pub(crate) fn shorten(name: &[u8], room: usize) -> &[u8] {
    if name.len() <= room {
        return name;
    }
    let mut cut = room;
    if let Ok(s) = std::str::from_utf8(name) {
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
    }
    &name[..cut]
}

/// `.<name><mark>`, with `name` shortened so that the prefix and any
/// [`unique_suffix`] fit in `NAME_MAX`: what temporary files and staging
/// directories of one target are named, and found by.
pub(crate) fn leftover_prefix(name: &OsStr, mark: &str) -> OsString {
    let room = NAME_MAX - 1 - mark.len() - SUFFIX_MAX;
    let mut v = Vec::with_capacity(NAME_MAX);
    v.push(b'.');
    v.extend_from_slice(shorten(name.as_bytes(), room));
    v.extend_from_slice(mark.as_bytes());
    OsString::from_vec(v)
}

/// `prefix` followed by a fresh [`unique_suffix`].
pub(crate) fn unique_name(prefix: &OsStr) -> OsString {
    let mut v = prefix.as_bytes().to_vec();
    v.extend_from_slice(unique_suffix().as_bytes());
    OsString::from_vec(v)
}

/// A name suffix unique to this process and moment: `<pid>.<nonce>`. The
/// pid is only there for people reading a listing: whether a run is alive
/// is told by its lock, never by its pid.
pub fn unique_suffix() -> String {
    let nonce = SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{}.{nonce:08x}", std::process::id())
}

/// Takes an exclusive lock on `file`, waiting for it. Held until every
/// descriptor of this open file is closed (or the process dies).
pub(crate) fn lock(file: &File) -> io::Result<()> {
    sys::flock(file, libc::LOCK_EX)
}

/// Takes an exclusive lock on `file` if no one holds one: `Ok(false)` when
/// someone does.
pub(crate) fn try_lock(file: &File) -> io::Result<bool> {
    match sys::flock(file, libc::LOCK_EX | libc::LOCK_NB) {
        Ok(()) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::EWOULDBLOCK) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Opens the directory `path` itself (not a symlink to one), read-only.
pub(crate) fn open_dir(path: &Path) -> io::Result<File> {
    sys::Dir::open_nofollow(path).map(File::from)
}

/// A leftover of another run whose lock this process holds: no running
/// process owns it (unless it is younger than [`STALE_AFTER`]).
#[derive(Debug)]
pub(crate) struct Leftover {
    /// Where it is.
    pub path: PathBuf,
    /// The lock, held until this is dropped.
    pub _lock: File,
    /// How long ago it was last modified.
    pub age: Duration,
}

/// Entries of `dir` named `<prefix>...` that are directories (`dirs`) or
/// regular files (otherwise) and whose lock could be taken. Entries of the
/// other kind, or that cannot be opened, are left alone.
pub(crate) fn unlocked_leftovers(dir: &Path, prefix: &OsStr, dirs: bool) -> Result<Vec<Leftover>> {
    let prefix = prefix.as_bytes();
    unlocked_matching(dir, &|n| n.starts_with(prefix), dirs)
}

/// [`unlocked_leftovers`] of the names `wanted` accepts (tested before
/// anything is opened: another program's files are never locked).
fn unlocked_matching(
    dir: &Path,
    wanted: &dyn Fn(&[u8]) -> bool,
    dirs: bool,
) -> Result<Vec<Leftover>> {
    let mut out = Vec::new();
    let rd = fs::read_dir(dir).map_err(|e| Error::io("read directory", dir, e))?;
    for ent in rd.flatten() {
        if !wanted(ent.file_name().as_bytes()) {
            continue;
        }
        let path = ent.path();
        // O_NONBLOCK: a fifo named like a temporary must not block the open.
        let opened = if dirs {
            open_dir(&path)
        } else {
            OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
                .open(&path)
        };
        let Ok(file) = opened else { continue };
        let Ok(meta) = file.metadata() else { continue };
        if (dirs && !meta.is_dir()) || (!dirs && !meta.is_file()) {
            continue;
        }
        if !matches!(try_lock(&file), Ok(true)) {
            continue; // its run is alive (or the lock cannot be asked for)
        }
        let age = meta
            .modified()
            .ok()
            .and_then(|m| SystemTime::now().duration_since(m).ok())
            .unwrap_or(Duration::ZERO);
        out.push(Leftover {
            path,
            _lock: file,
            age,
        });
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

fn stale_temp_locks(target: &Path) -> Result<Vec<Leftover>> {
    let (dir, _) = split(target)?;
    stale_temps_in(&dir)
}

/// Temporary files in `dir` of any target whose writer is gone (their
/// lock is free and they are at least [`STALE_AFTER`] old), each locked
/// until dropped: a killed `create -o DIR/` leaves one under a name no
/// later run writes again.
pub(crate) fn stale_temps_in(dir: &Path) -> Result<Vec<Leftover>> {
    let ours = |n: &[u8]| {
        n.starts_with(b".") && n.windows(TMP_MARK.len()).any(|w| w == TMP_MARK.as_bytes())
    };
    let mut found = unlocked_matching(dir, &ours, false)?;
    found.retain(|l| l.age >= STALE_AFTER);
    Ok(found)
}

#[cfg(test)]
/// Leftover temporary files of `target` whose writer is gone: their lock is
/// free and they are at least [`STALE_AFTER`] old.
pub fn stale_temps(target: &Path) -> Result<Vec<PathBuf>> {
    Ok(stale_temp_locks(target)?
        .into_iter()
        .map(|l| l.path)
        .collect())
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
        for stale in stale_temp_locks(target)? {
            // Removed while its lock is held: no one can be using it.
            if fs::remove_file(&stale.path).is_ok() {
                removed.push(stale.path);
            }
        }
        let tmp = dir.join(unique_name(&leftover_prefix(&name, TMP_MARK)));
        let temp = Temp::register(&tmp);
        let file = match OpenOptions::new()
            .write(true)
            .create_new(true)
            // Owner only: an archive holds every byte of the database.
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&tmp)
        {
            Ok(f) => f,
            Err(e) => {
                temp.commit(|_| ()); // nothing was created: just forget it
                return Err(Error::io("create", &tmp, e));
            }
        };
        // Held until commit or abort: the file is ours as long as it is
        // locked (younger than STALE_AFTER, it is not touched either).
        if let Err(e) = lock(&file) {
            let _ = temp.remove();
            return Err(Error::io("lock", &tmp, e));
        }
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

    /// Sets the permission bits the file will have (0600 by default: an
    /// archive holds every byte of the database).
    pub fn set_mode(&self, mode: u32) -> Result<()> {
        use std::os::unix::fs::PermissionsExt;
        self.file
            .set_permissions(fs::Permissions::from_mode(mode))
            .map_err(|e| Error::io("set the mode of", self.temp.path(), e))
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

    #[cfg(test)]
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
        // The lock goes with the last descriptor, after the rename.
        drop(file);
        renamed?;
        sync_dir(&dir)
    }

    /// Removes the temporary file; the target is untouched.
    pub fn abort(self) -> Result<()> {
        let path = self.temp.path().to_path_buf();
        let r = self.temp.remove().map_err(|e| Error::io("remove", path, e));
        drop(self.file);
        r
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
    let Err(err) = sys::renameat2(from, to, libc::RENAME_NOREPLACE) else {
        return Ok(());
    };
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

    /// Sets the mtime of `p` to `secs` seconds ago.
    fn age(p: &Path, secs: u64) {
        let t = SystemTime::now() - Duration::from_secs(secs);
        fs::OpenOptions::new()
            .write(true)
            .open(p)
            .unwrap()
            .set_modified(t)
            .unwrap();
    }

    #[test]
    fn stale_temps_are_the_unlocked_ones() {
        let t = tempfile::tempdir().unwrap();
        let out = t.path().join("x");
        // Named with pids that cannot exist: liveness is the lock, not the pid.
        let free = t.path().join(format!(".x{TMP_MARK}2147483646.0"));
        let held = t.path().join(format!(".x{TMP_MARK}2147483645.0"));
        let young = t.path().join(format!(".x{TMP_MARK}2147483644.0"));
        for f in [&free, &held, &young] {
            fs::write(f, b"").unwrap();
        }
        age(&free, 10);
        age(&held, 10);
        // Another process (or another namespace) holding the lock: an
        // open file description of our own is the same to flock.
        let holder = File::open(&held).unwrap();
        lock(&holder).unwrap();
        assert_eq!(stale_temps(&out).unwrap(), vec![free.clone()]);
        let (f, removed) = AtomicFile::create(&out, false).unwrap();
        assert_eq!(removed, vec![free.clone()]);
        assert!(!free.exists() && held.exists() && young.exists());
        // Our own temporary is locked from its creation on.
        assert!(!try_lock(&File::open(f.temp_path()).unwrap()).unwrap());
        f.abort().unwrap();
        drop(holder);
        assert_eq!(stale_temps(&out).unwrap(), vec![held]);
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
        crate::sys::mkfifo(&fifo).unwrap();
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
    fn temporary_names_fit_name_max() {
        let t = tempfile::tempdir().unwrap();
        for len in [1, 224, 225, 250, 255] {
            let out = t.path().join("o".repeat(len));
            let (mut f, _) = AtomicFile::create(&out, false).unwrap();
            let tmp = f.temp_path().file_name().unwrap().len();
            assert!(tmp <= NAME_MAX, "{len}: {tmp}");
            f.writer().write_all(b"x").unwrap();
            f.commit().unwrap();
            assert_eq!(fs::read(&out).unwrap(), b"x");
        }
        // Shortened alike by every run, whatever its pid.
        let p = leftover_prefix(OsStr::new(&"o".repeat(250)), TMP_MARK);
        assert_eq!(p.len() + SUFFIX_MAX, NAME_MAX);
        assert_eq!(format!("{}.{:08x}", u32::MAX, u32::MAX).len(), SUFFIX_MAX);
        // UTF-8 names are cut on a character boundary.
        assert_eq!(shorten("aé".as_bytes(), 2), b"a");
        assert_eq!(shorten(b"abc", 2), b"ab");
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
