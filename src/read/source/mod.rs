//! Opening an archive wherever it is (a path, stdin, an object) as one
//! source every command reads from, counting the bytes for progress:
//! `open` (a location opened, an encrypted archive told by its start),
//! `random` (the archive read at offsets: a file of the descriptor pool,
//! an object by ranged GETs, an encrypted one decrypted at offsets),
//! `sealed` (an encrypted archive decrypted, as a stream or at offsets);
//! here, the [`ArchiveReader`] every command reads through (listed from
//! its end, or read whole to a sink and its hash checked).

mod open;
mod random;
mod sealed;

pub use open::{open_archive, open_link};
pub use random::RandomSource;

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::format::sums::hex;
use crate::progress::Progress;
use crate::read::input::{HashPipe, changed_while_read};
use crate::read::{
    Depth, Info, Plan, ReadSummary, Sink, Visit, list_archive, list_archive_hashed, list_from_end,
    plan_from_end, read_archive_hashed,
};
use crate::store::pool::PooledFile;
use crate::store::s3::{ObjectReader, Remote};

use random::{SourceKind, stamp};
use sealed::Cipher;

/// An open archive source: a file, stdin when the path is `-`, or an
/// object in object storage; counts the bytes read in an optional
/// [`Progress`].
pub struct ArchiveReader {
    inner: Inner,
    progress: Option<Arc<Progress>>,
    expected_sha256: Option<String>,
    name: PathBuf,
    /// Threads decoding data (0: see [`crate::read::resolve_threads`]).
    threads: usize,
    /// Bytes read from stdin to tell an encrypted archive, given back
    /// before the rest.
    pending: Vec<u8>,
    /// For an encrypted archive: what decrypts it.
    cipher: Option<Cipher>,
}

enum Inner {
    File {
        /// The file, or a duplicate of the stdin descriptor.
        file: File,
        stdin: bool,
    },
    Object {
        /// The stream of the whole object, started at the first read (a
        /// reader that only reads at offsets never starts it).
        reader: Option<Box<dyn Read + Send>>,
        remote: Box<Remote>,
        size: u64,
        e_tag: Option<String>,
    },
    /// Moved into the decryptor of an encrypted archive.
    Gone,
}

impl ArchiveReader {
    /// The first bytes of an encrypted archive (its age header, but for
    /// a very long one).
    pub fn age_start(&self) -> Option<&[u8]> {
        self.cipher.as_ref().map(|c| c.start.as_slice())
    }

    /// The archive's name in messages (`-` for stdin).
    pub fn name(&self) -> &Path {
        &self.name
    }

    /// For an object: its remote, ETag and size as first seen (what
    /// tells later that it is still the object read).
    pub fn object_seen(&self) -> Option<(Remote, Option<String>, u64)> {
        match &self.inner {
            Inner::Object {
                remote,
                size,
                e_tag,
                ..
            } => Some(((**remote).clone(), e_tag.clone(), *size)),
            _ => None,
        }
    }

    /// Whether the archive is encrypted (an age file).
    pub fn is_encrypted(&self) -> bool {
        self.cipher.is_some()
    }

    /// The SHA-256 and size of the stored bytes (for an encrypted
    /// archive, the ciphertext), read whole.
    pub fn stored_sha256(mut self) -> Result<([u8; 32], u64)> {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        let mut n = 0u64;
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let got = match self.read_stored(&mut buf) {
                Ok(0) => break,
                Ok(got) => got,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(crate::error::from_io(e, "read", &self.name)),
            };
            h.update(&buf[..got]);
            n += got as u64;
        }
        Ok((h.finalize().into(), n))
    }

    /// Notes that the archive is encrypted when `start` (its first bytes)
    /// says so.
    fn sniff(mut self, start: &[u8]) -> Self {
        if crate::store::crypt::is_encrypted(start) {
            self.cipher = Some(Cipher {
                start: start.to_vec(),
                stored: Arc::default(),
                plain: None,
            });
        }
        self
    }
    /// Decodes data on `threads` threads (0, the default: see
    /// [`crate::read::resolve_threads`]; 1: one stream, on the reading
    /// thread).
    pub fn with_threads(mut self, threads: usize) -> Self {
        self.threads = threads;
        self
    }

    /// The SHA-256 object metadata recorded at upload (hex), if any.
    pub fn recorded_sha256(&self) -> Option<String> {
        self.expected_sha256.clone()
    }

    /// What a version-2 archive holds, read from its end where the source
    /// allows it (a regular file, an object); `None` for a pipe or a
    /// version-1 archive (whose HEAD says it).
    fn plan(&self) -> Result<Option<Plan>> {
        let Some(src) = self.random_access()? else {
            return Ok(None);
        };
        let meta = plan_from_end(src.size, &mut |at, buf| src.read_at(at, buf), &src.shown)?;
        Ok(meta.map(|m| Plan {
            files: m.files,
            dirs: m.dirs,
            total_bytes: m.total_bytes,
        }))
    }

    /// The archive read at offsets, where it can be: a regular file or an
    /// object (not stdin, a fifo or a device).
    pub fn random_access(&self) -> Result<Option<RandomSource>> {
        let shown = self.name.display().to_string();
        if let Some(c) = &self.cipher {
            return self.sealed_access(&c.start, shown);
        }
        Ok(match &self.inner {
            Inner::File { file, stdin: false } => {
                let m = file
                    .metadata()
                    .map_err(|e| Error::io("stat", &self.name, e))?;
                if !m.is_file() {
                    return Ok(None);
                }
                let file = file
                    .try_clone()
                    .and_then(|f| PooledFile::new(&self.name, f))
                    .map_err(|e| Error::io("read", &self.name, e))?;
                Some(RandomSource::new(SourceKind::File(file), m.len(), shown))
            }
            Inner::File { .. } | Inner::Gone => None,
            Inner::Object {
                remote,
                size,
                e_tag,
                ..
            } => Some(RandomSource::new(
                SourceKind::Object(remote.clone(), e_tag.clone()),
                *size,
                shown,
            )),
        })
    }

    /// Lists the archive into `visit`. A version-2 archive in a file or
    /// an object is listed from its index alone, with reads at offsets
    /// (TAIL, TABLE, META, INDEX blocks), each checked before it is used,
    /// with or without `sha256` (the digests are the index's, which TAIL
    /// authenticates; the data is not read: `verify` checks it).
    /// Anything else is listed as it streams by (see
    /// [`crate::read::list_archive`]).
    pub fn list_into(self, sha256: bool, visit: &mut Visit<'_>) -> Result<Info> {
        // Only the end decides: a version-1 archive has no TAIL.
        if let Some(src) = self.random_access()?
            && src.has_tail()
        {
            // The file must not change while it is read at offsets.
            let path = self.name.clone();
            let before = src.stamp()?;
            let info = list_from_end(
                src.size,
                &mut |at, buf| src.read_at(at, buf),
                &src.shown,
                visit,
            )?;
            if src.stamp()? != before {
                return Err(changed_while_read(&path));
            }
            return Ok(info.expect("a TAIL was found"));
        }
        let name = self.name.clone();
        let expected = self.expected_sha256.clone();
        let local = self.local_file(Depth::Quick)?;
        let (info, digest) = match local {
            Some(file) => quick_in_parallel(file, &name, |hasher| {
                list_archive_hashed(self, &name, sha256, hasher, visit)
            })?,
            None => list_archive(self, &name, sha256, visit)?,
        };
        if let (Some(want), Some(got)) = (expected, digest) {
            let got = hex(&got);
            if !want.eq_ignore_ascii_case(&got) {
                return Err(Error::corrupt(format!(
                    "the archive hashes to {got} but its object metadata recorded {want} at upload"
                )));
            }
        }
        Ok(info)
    }

    /// A second descriptor of a regular file, for hashing apart while a
    /// quick check parses.
    fn local_file(&self, depth: Depth) -> Result<Option<File>> {
        if self.cipher.is_some() {
            return Ok(None);
        }
        // Only a regular file can be read twice at once; a fifo (such as
        // `<(curl …)`) or a device is read once, like stdin.
        match &self.inner {
            Inner::File { file, stdin: false }
                if depth == Depth::Quick && file.metadata().is_ok_and(|m| m.is_file()) =>
            {
                Ok(Some(
                    file.try_clone()
                        .map_err(|e| Error::io("read", &self.name, e))?,
                ))
            }
            _ => Ok(None),
        }
    }

    /// Reads the whole archive to `depth` into `sink`, then checks its
    /// SHA-256 against the one object metadata recorded at upload, if any.
    pub fn read_into<S: Sink>(self, depth: Depth, sink: &mut S) -> Result<ReadSummary> {
        if let Some(plan) = self.plan()? {
            sink.plan(&plan)?;
        }
        let expected = self.expected_sha256.clone();
        let name = self.name.clone();
        let stored = self.cipher.as_ref().map(|c| Arc::clone(&c.stored));
        let local = self.local_file(depth)?;
        let mut summary = match local {
            Some(file) => quick_in_parallel(file, &name, |hasher| {
                let threads = self.threads;
                read_archive_hashed(self, &name, depth, sink, hasher, threads)
            })?,
            None => {
                let threads = self.threads;
                read_archive_hashed(self, &name, depth, sink, HashPipe::default(), threads)?
            }
        };
        // An encrypted archive's SHA-256 and size are what is stored.
        if let Some(stored) = stored {
            use sha2::Digest;
            let st = stored.lock().unwrap_or_else(|e| e.into_inner());
            summary.sha256 = st.0.clone().finalize().into();
            summary.bytes = st.1;
        }
        let got = hex(&summary.sha256);
        match expected {
            Some(want) if !want.eq_ignore_ascii_case(&got) => Err(Error::corrupt(format!(
                "the archive hashes to {got} but its object metadata recorded {want} at upload"
            ))),
            _ => Ok(summary),
        }
    }
}

/// Runs `check` with the archive file hashed by a thread of its own, in
/// parallel: `verify --quick` then takes as long as hashing alone, not
/// hashing plus parsing HEAD and SUMS. The parse and the hash read the file
/// separately, so the file must not change in between: its size, mtime
/// and ctime are compared before and after.
fn quick_in_parallel<T>(
    file: File,
    name: &Path,
    check: impl FnOnce(HashPipe) -> Result<T>,
) -> Result<T> {
    let before = stamp(&file, name)?;
    let apart = file
        .try_clone()
        .and_then(|f| HashPipe::apart(f, before.0))
        .map_err(|e| Error::io("read", name, e))?;
    let result = check(apart);
    if stamp(&file, name)? != before {
        return Err(changed_while_read(name));
    }
    result
}

impl ArchiveReader {
    /// Reads the stored bytes (for an encrypted archive, the ciphertext).
    fn read_stored(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if !self.pending.is_empty() {
            let n = buf.len().min(self.pending.len());
            buf[..n].copy_from_slice(&self.pending[..n]);
            self.pending.drain(..n);
            return Ok(n);
        }
        let n = match &mut self.inner {
            Inner::File { file, .. } => file.read(buf)?,
            Inner::Object {
                reader,
                remote,
                e_tag,
                size,
            } => {
                if reader.is_none() {
                    let r = ObjectReader::open(remote, e_tag.clone(), *size)
                        .map_err(std::io::Error::other)?;
                    *reader = Some(r);
                }
                reader.as_mut().expect("started above").read(buf)?
            }
            Inner::Gone => 0,
        };
        if let Some(p) = &self.progress {
            p.add(n as u64);
        }
        Ok(n)
    }
}
