//! A location opened as an [`ArchiveReader`]: a file (a FIFO or a
//! device read once, like stdin), stdin, or an object checked by a
//! ranged read of its end; an encrypted archive told by its first bytes.
//! The archives of a chain are opened as regular files only.

use std::fs::File;
use std::io::Read;
use std::os::fd::AsFd;
use std::path::Path;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::progress::Progress;
use crate::store::location::Location;
use crate::store::s3::Remote;

use super::{ArchiveReader, Inner};

/// Bytes of an archive's start read to tell (and describe) an age file.
const START: usize = 16 * 1024;

/// Opens an archive for reading; a local `-` is stdin. Directories are
/// refused. An object is first checked with a ranged read of its end (a
/// TAIL or a version-1 FOOT); its stream starts at the first read. The
/// progress total is the size (unknown for stdin).
pub fn open_archive(loc: &Location, progress: Option<Arc<Progress>>) -> Result<ArchiveReader> {
    let path = match loc {
        Location::Local(p) => p,
        Location::S3 { url, options } => {
            let remote = Remote::connect(url, options)?;
            // An object whose end is not an archive's may be an encrypted
            // one: its start says (a read only then).
            let (probe, start) = match remote.probe() {
                Ok(p) => (p, Vec::new()),
                Err(e) if e.is_archive_fault() => {
                    let probe = remote.probe_unchecked()?;
                    let mut start = vec![0u8; START.min(probe.size as usize)];
                    remote.read_at(0, &mut start, probe.e_tag.as_deref())?;
                    if !crate::store::crypt::is_encrypted(&start) {
                        return Err(e);
                    }
                    (probe, start)
                }
                Err(e) => return Err(e),
            };
            if let Some(p) = &progress {
                p.set_total(probe.size);
            }
            return Ok(ArchiveReader {
                inner: Inner::Object {
                    reader: None,
                    remote: Box::new(remote),
                    size: probe.size,
                    e_tag: probe.e_tag,
                },
                progress,
                expected_sha256: probe.sha256,
                name: loc.name(),
                threads: 0,
                pending: Vec::new(),
                cipher: None,
            }
            .sniff(&start));
        }
    };
    if path == Path::new("-") {
        // A duplicate of fd 0: closing it leaves stdin open.
        let stdin = std::io::stdin()
            .as_fd()
            .try_clone_to_owned()
            .map_err(|e| Error::io("read", path, e))?;
        let mut file = File::from(stdin);
        // The first bytes tell an encrypted archive; they are given back.
        let mut pending = Vec::with_capacity(START);
        (&mut file)
            .take(START as u64)
            .read_to_end(&mut pending)
            .map_err(|e| Error::io("read", path, e))?;
        let start = pending.clone();
        return Ok(ArchiveReader {
            inner: Inner::File { file, stdin: true },
            progress,
            expected_sha256: None,
            name: path.clone(),
            threads: 0,
            pending,
            cipher: None,
        }
        .sniff(&start));
    }
    let f = File::open(path).map_err(|e| Error::io("open", path, e))?;
    open_file(path, f, progress)
}

/// The archive of a chain at `loc`: only a regular file (opened without
/// blocking, so a FIFO swapped in is refused, never waited on) or an
/// object, read at offsets.
pub fn open_link(loc: &Location) -> Result<ArchiveReader> {
    use std::os::unix::fs::OpenOptionsExt;
    let Location::Local(path) = loc else {
        return open_archive(loc, None);
    };
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| Error::io("open", path, e))?;
    let m = f.metadata().map_err(|e| Error::io("stat", path, e))?;
    if !m.is_file() {
        return Err(Error::Refused(format!(
            "{loc} is not a regular file: the archives of a chain are read at offsets"
        )));
    }
    open_file(path, f, None)
}

/// [`open_archive`] of the file `f` opened at `path`.
fn open_file(path: &Path, f: File, progress: Option<Arc<Progress>>) -> Result<ArchiveReader> {
    let m = f.metadata().map_err(|e| Error::io("stat", path, e))?;
    if m.is_dir() {
        return Err(Error::Refused(format!(
            "{} is a directory, not an archive",
            path.display()
        )));
    }
    if let Some(p) = &progress {
        p.set_total(m.len());
    }
    let mut pending = Vec::new();
    let mut f = f;
    let start = if m.is_file() {
        let mut b = vec![0u8; START.min(m.len() as usize)];
        std::os::unix::fs::FileExt::read_exact_at(&f, &mut b, 0)
            .map_err(|e| Error::io("read", path, e))?;
        b
    } else {
        // A FIFO (`<(curl …)`) or a device: its first bytes are read to
        // tell an encrypted archive, and given back.
        (&mut f)
            .take(START as u64)
            .read_to_end(&mut pending)
            .map_err(|e| Error::io("read", path, e))?;
        pending.clone()
    };
    Ok(ArchiveReader {
        inner: Inner::File {
            file: f,
            stdin: false,
        },
        progress,
        expected_sha256: None,
        name: path.to_path_buf(),
        threads: 0,
        pending,
        cipher: None,
    }
    .sniff(&start))
}
