//! The archive's own hash: everything written is counted and hashed on
//! its way to the output.

use std::io::{self, Write};
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::error::Error;

/// Counts and hashes everything written through it; write errors carry the
/// output's name.
pub(super) struct HashWriter<'a, W> {
    pub(super) inner: W,
    name: &'a Path,
    pub(super) count: u64,
    pub(super) hasher: Sha256,
}

impl<'a, W: Write> HashWriter<'a, W> {
    pub(super) fn new(inner: W, name: &'a Path) -> Self {
        HashWriter {
            inner,
            name,
            count: 0,
            hasher: Sha256::new(),
        }
    }
}

impl<W: Write> Write for HashWriter<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf).map_err(|e| {
            if e.kind() == io::ErrorKind::Interrupted {
                return e;
            }
            // The output's own errors (an upload's) pass through as they are.
            match Error::from_carrier(e) {
                Ok(ours) => io::Error::other(ours),
                Err(e) => io::Error::other(Error::io("write", self.name, e)),
            }
        })?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner
            .flush()
            .map_err(|e| io::Error::other(Error::io("flush", self.name, e)))
    }
}
