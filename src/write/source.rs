//! Reading a member's content from the data dir: exactly the size HEAD
//! declares, hashed, counted for progress and fed to its SydraDB checker.

use std::io::{self, Read};
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::error::Error;
use crate::progress::Progress;
use crate::sydradb::check::Checker;

/// The error for a file that changed while `create` archived it: its
/// size is already in HEAD, so no consistent copy can be made now.
pub(super) fn changed(path: &Path, when: &str) -> Error {
    Error::Source {
        path: path.to_path_buf(),
        reason: format!("file changed {when} (it is being written); run create again"),
    }
}

/// Reads exactly the scanned size of a source, hashes it and feeds its
/// checker.
pub(super) struct SourceReader<'a, R> {
    file: R,
    path: &'a Path,
    remaining: u64,
    hasher: Sha256,
    progress: Option<&'a Progress>,
    check: Option<Checker>,
}

impl<'a, R: Read> SourceReader<'a, R> {
    pub(super) fn new(
        file: R,
        path: &'a Path,
        size: u64,
        progress: Option<&'a Progress>,
        check: Option<Checker>,
    ) -> Self {
        SourceReader {
            file,
            path,
            remaining: size,
            hasher: Sha256::new(),
            progress,
            check,
        }
    }

    pub(super) fn finish(self) -> ([u8; 32], Option<Checker>) {
        (self.hasher.finalize().into(), self.check)
    }
}

impl<R: Read> Read for SourceReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.remaining == 0 || buf.is_empty() {
            return Ok(0);
        }
        let want = buf
            .len()
            .min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
        let n = loop {
            match self.file.read(&mut buf[..want]) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(io::Error::other(Error::io("read", self.path, e))),
            }
        };
        if n == 0 {
            return Err(io::Error::other(Error::Source {
                path: self.path.to_path_buf(),
                reason: format!(
                    "file shrank while being archived ({} bytes missing)",
                    self.remaining
                ),
            }));
        }
        self.hasher.update(&buf[..n]);
        if let Some(c) = &mut self.check {
            c.feed(&buf[..n]);
        }
        self.remaining -= n as u64;
        if let Some(p) = self.progress {
            p.add(n as u64);
        }
        Ok(n)
    }
}
