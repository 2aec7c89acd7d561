//! An archive read at offsets: a regular file (its descriptor in the
//! pool), an object (ranged GETs pinned to its ETag), or an encrypted
//! archive decrypted at offsets; its reads and bytes counted, its
//! stored bytes hashed (or the digest taken from the verified cache).

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{Error, Result};
use crate::format::v2::TAIL_LEN;
use crate::store::pool::PooledFile;
use crate::store::s3::{RangedReader, Remote};

/// What tells a file that changed: size, mtime and ctime (with ns).
pub(super) type Stamp = (u64, i64, i64, i64, i64);

/// An archive read at offsets: a regular file, or an object with ranged
/// GETs pinned to the ETag first seen. Counts its reads and the bytes
/// they brought.
pub struct RandomSource {
    kind: SourceKind,
    /// The archive's size.
    pub size: u64,
    /// Its name in messages.
    pub shown: String,
    pub(super) reads: Arc<AtomicU64>,
    pub(super) read_bytes: Arc<AtomicU64>,
}

/// What a [`RandomSource`] reads.
pub(super) enum SourceKind {
    /// A file, its descriptor in the pool.
    File(PooledFile),
    Object(Box<Remote>, Option<String>),
    /// An encrypted archive, decrypted at offsets (and its file, if any,
    /// for its stamp).
    Sealed(std::sync::Mutex<Box<dyn SeekRead>>, Option<Arc<PooledFile>>),
}

impl RandomSource {
    pub(super) fn new(kind: SourceKind, size: u64, shown: String) -> Self {
        // An object was probed already: one ranged read of its end.
        let probed = matches!(kind, SourceKind::Object(..));
        RandomSource {
            kind,
            size,
            shown,
            reads: Arc::new(AtomicU64::new(u64::from(probed))),
            read_bytes: Arc::new(AtomicU64::new(if probed { TAIL_LEN as u64 } else { 0 })),
        }
    }

    /// Reads and bytes read so far.
    pub fn counts(&self) -> (u64, u64) {
        (
            self.reads.load(Ordering::Relaxed),
            self.read_bytes.load(Ordering::Relaxed),
        )
    }

    /// Reads `buf.len()` bytes at `at`; our errors travel inside the
    /// `io::Error`.
    pub fn read_at(&self, at: u64, buf: &mut [u8]) -> std::io::Result<()> {
        self.reads.fetch_add(1, Ordering::Relaxed);
        self.read_bytes
            .fetch_add(buf.len() as u64, Ordering::Relaxed);
        match &self.kind {
            SourceKind::File(f) => {
                f.with(|f| std::os::unix::fs::FileExt::read_exact_at(f, buf, at))
            }
            SourceKind::Object(r, e) => r
                .read_at(at, buf, e.as_deref())
                .map_err(std::io::Error::other),
            SourceKind::Sealed(plain, _) => {
                let mut p = plain.lock().unwrap_or_else(|e| e.into_inner());
                p.seek(SeekFrom::Start(at))?;
                p.read_exact(buf)
            }
        }
    }

    /// Bytes `[at, end)` as a stream: from a file, one read at an offset
    /// (then buffered reads); from an object, ranged GETs made only as the
    /// stream is read (1 MiB, then twice as much each time), so a reader
    /// that stops early has fetched at most as much again as it used.
    pub fn stream(&self, at: u64, end: u64) -> Result<Box<dyn Read + '_>> {
        Ok(match &self.kind {
            SourceKind::Sealed(..) => Box::new(SealedRange { src: self, at, end }),
            SourceKind::File(f) => {
                self.reads.fetch_add(1, Ordering::Relaxed);
                Box::new(Counted(FileRange { file: f, at, end }, &self.read_bytes))
            }
            SourceKind::Object(r, e) => Box::new(RangedReader::lazy(
                r,
                e.clone(),
                at..end,
                1 << 20,
                (Arc::clone(&self.reads), Arc::clone(&self.read_bytes)),
            )?),
        })
    }

    /// The SHA-256 of the stored bytes (for an encrypted archive, the
    /// ciphertext: what `sha256sum` gives and what a link above records),
    /// read whole through this source's own descriptor, or taken from the
    /// verified-digest cache for a file unchanged since it was hashed.
    /// `None` for an encrypted object (its stored bytes are not at hand).
    pub fn stored_sha256(&self) -> Result<Option<[u8; 32]>> {
        let file = match &self.kind {
            SourceKind::File(f) => f,
            SourceKind::Sealed(_, Some(f)) => f.as_ref(),
            SourceKind::Sealed(_, None) => return Ok(None),
            SourceKind::Object(remote, e_tag) => {
                // An object is known by its ETag (which changes with its
                // content) once hashed whole.
                let key = e_tag.as_deref().map(|e| {
                    crate::store::verified::object_key(&remote.url().to_string(), e, self.size)
                });
                if let Some(sha) = key.as_ref().and_then(crate::store::verified::lookup) {
                    return Ok(Some(sha));
                }
                let (sha, _) = crate::store::verified::sha256_of(
                    &mut self.stream(0, self.size)?,
                    self.shown.as_ref(),
                )?;
                if let Some(k) = key {
                    crate::store::verified::remember(&k, &sha);
                }
                return Ok(Some(sha));
            }
        };
        file.with(|f| {
            crate::store::verified::digest(f, self.shown.as_ref()).map_err(std::io::Error::other)
        })
        .map(Some)
        .map_err(|e| crate::error::from_io(e, "read", self.shown.as_ref()))
    }

    /// The device and inode of the file read, if it is a file.
    pub fn file_id(&self) -> Option<(u64, u64)> {
        use std::os::unix::fs::MetadataExt;
        match &self.kind {
            SourceKind::File(f) => f.with(|f| f.metadata()).ok().map(|m| (m.dev(), m.ino())),
            SourceKind::Sealed(_, Some(f)) => {
                f.with(|f| f.metadata()).ok().map(|m| (m.dev(), m.ino()))
            }
            _ => None,
        }
    }

    /// Whether the archive ends with a version-2 TAIL.
    pub fn has_tail(&self) -> bool {
        let mut t = [0u8; TAIL_LEN];
        self.size >= TAIL_LEN as u64
            && self.read_at(self.size - TAIL_LEN as u64, &mut t).is_ok()
            && crate::format::v2::Tail::is_tail(&t)
    }

    /// What tells a file that changed (size, mtime, ctime); an object is
    /// pinned to its ETag instead.
    pub(super) fn stamp(&self) -> Result<Option<Stamp>> {
        match &self.kind {
            SourceKind::File(f) => f
                .with(|f| stamp(f, Path::new(&self.shown)).map_err(std::io::Error::other))
                .map(Some)
                .map_err(|e| crate::error::from_io(e, "stat", self.shown.as_ref())),
            SourceKind::Sealed(_, Some(f)) => f
                .with(|f| stamp(f, Path::new(&self.shown)).map_err(std::io::Error::other))
                .map(Some)
                .map_err(|e| crate::error::from_io(e, "stat", self.shown.as_ref())),
            SourceKind::Object(..) | SourceKind::Sealed(_, None) => Ok(None),
        }
    }
}

/// Bytes `[at, end)` of a file of the pool, read at offsets.
struct FileRange<'a> {
    file: &'a PooledFile,
    at: u64,
    end: u64,
}

impl Read for FileRange<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = (buf.len() as u64).min(self.end - self.at) as usize;
        if n == 0 {
            return Ok(0);
        }
        let got = self
            .file
            .with(|f| std::os::unix::fs::FileExt::read_at(f, &mut buf[..n], self.at))?;
        self.at += got as u64;
        Ok(got)
    }
}

/// Bytes `[at, end)` of an encrypted archive, decrypted at offsets.
struct SealedRange<'a> {
    src: &'a RandomSource,
    at: u64,
    end: u64,
}

impl Read for SealedRange<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = (buf.len() as u64).min(self.end - self.at).min(256 * 1024) as usize;
        if n == 0 {
            return Ok(0);
        }
        self.src.read_at(self.at, &mut buf[..n])?;
        self.at += n as u64;
        Ok(n)
    }
}

/// Counts the bytes read through it.
struct Counted<'a, R>(R, &'a AtomicU64);

impl<R: Read> Read for Counted<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.0.read(buf)?;
        self.1.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// What tells a file that changed: its size, mtime and ctime.
pub(super) fn stamp(f: &File, name: &Path) -> Result<Stamp> {
    let m = f.metadata().map_err(|e| Error::io("stat", name, e))?;
    Ok((
        m.len(),
        m.mtime(),
        m.mtime_nsec(),
        m.ctime(),
        m.ctime_nsec(),
    ))
}

/// A stored archive read at offsets, for the decryptor.
pub(super) trait SeekRead: Read + Seek + Send {}
impl<T: Read + Seek + Send> SeekRead for T {}
