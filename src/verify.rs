//! `verify` and `list`: checking an archive at a path or on stdin without
//! writing anything.

use std::fs::File;
use std::io::Read;
use std::mem::ManuallyDrop;
use std::os::fd::FromRawFd;
use std::path::Path;
use std::sync::Arc;

use crate::progress::Progress;

use crate::error::{Error, Result};
use crate::head::Head;
use crate::read::{Depth, NullSink, ReadSummary, Sink, read_archive, read_head};

/// An open archive source: a file, or stdin when the path is `-`; counts
/// the bytes read in an optional [`Progress`].
pub struct ArchiveReader {
    file: ManuallyDrop<File>,
    stdin: bool,
    progress: Option<Arc<Progress>>,
}

impl Read for ArchiveReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.file.read(buf)?;
        if let Some(p) = &self.progress {
            p.add(n as u64);
        }
        Ok(n)
    }
}

impl Drop for ArchiveReader {
    fn drop(&mut self) {
        if !self.stdin {
            // SAFETY: dropped once; stdin (fd 0) is never closed.
            unsafe { ManuallyDrop::drop(&mut self.file) };
        }
    }
}

/// Opens `path` for reading; `-` is stdin. Directories are refused. The
/// progress total is the file size (unknown for stdin).
pub fn open_archive(path: &Path, progress: Option<Arc<Progress>>) -> Result<ArchiveReader> {
    if path == Path::new("-") {
        return Ok(ArchiveReader {
            // SAFETY: fd 0 stays open for the life of the process; it is
            // never closed (see Drop).
            file: ManuallyDrop::new(unsafe { File::from_raw_fd(0) }),
            stdin: true,
            progress,
        });
    }
    let f = File::open(path).map_err(|e| Error::io("open", path, e))?;
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
    Ok(ArchiveReader {
        file: ManuallyDrop::new(f),
        stdin: false,
        progress,
    })
}

/// Verifies the archive at `path` (`-` for stdin) to `depth`, counting the
/// archive bytes read in `progress`.
pub fn verify(path: &Path, depth: Depth, progress: Option<Arc<Progress>>) -> Result<ReadSummary> {
    let src = open_archive(path, progress)?;
    read_archive(src, path, depth, &mut NullSink)
}

/// Checks the archive at `path` as `verify --quick` does and returns its
/// HEAD and the SHA-256 SUMS lists for each file entry, in order (for
/// `list --sha256`). Nothing is returned unless the check passes.
pub fn list_sha256(path: &Path) -> Result<(Head, Vec<[u8; 32]>)> {
    struct Collect(Vec<[u8; 32]>);
    impl Sink for Collect {
        type File = ();
        fn file(&self, _entry: &crate::head::Entry) -> Result<()> {
            Ok(())
        }
        fn file_sum(&mut self, _index: usize, sha256: &[u8; 32]) {
            self.0.push(*sha256);
        }
    }
    let src = open_archive(path, None)?;
    let mut sink = Collect(Vec::new());
    let summary = read_archive(src, path, Depth::Quick, &mut sink)?;
    Ok((summary.head, sink.0))
}

/// Reads and validates the HEAD of the archive at `path` (`-` for stdin).
/// This does not verify any data: use [`verify`] for that.
pub fn list(path: &Path) -> Result<Head> {
    let src = open_archive(path, None)?;
    read_head(src, path)
}
