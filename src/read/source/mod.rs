//! Opening an archive wherever it is (a path, stdin, an object) as one
//! source every command reads from, counting the bytes for progress.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{Error, Result};
use crate::format::sums::hex;
use crate::format::v2::TAIL_LEN;
use crate::progress::Progress;
use crate::read::input::{HashPipe, changed_while_read};
use crate::read::{
    Depth, Info, Plan, ReadSummary, Sink, Visit, list_archive, list_archive_hashed, list_from_end,
    plan_from_end, read_archive_hashed,
};
use crate::store::location::Location;
use crate::store::pool::PooledFile;
use crate::store::s3::{ObjectReader, RangedReader, Remote};

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

/// An encrypted archive being read: its first bytes (for messages), the
/// SHA-256 and length of the stored bytes read (the ciphertext: what
/// `sha256sum` gives), and the decrypted stream once started.
struct Cipher {
    start: Vec<u8>,
    stored: Arc<std::sync::Mutex<(sha2::Sha256, u64)>>,
    plain: Option<Box<dyn Read + Send>>,
}

/// The stored bytes of an archive (a file, stdin, an object), hashed and
/// counted as they are read, for the decryptor.
struct Stored {
    raw: ArchiveReader,
    stored: Arc<std::sync::Mutex<(sha2::Sha256, u64)>>,
}

impl Read for Stored {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        use sha2::Digest;
        let n = self.raw.read_stored(buf)?;
        let mut st = self.stored.lock().unwrap_or_else(|e| e.into_inner());
        st.0.update(&buf[..n]);
        st.1 += n as u64;
        Ok(n)
    }
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

    /// An encrypted archive read at offsets through its decryptor: age's
    /// chunks are at offsets computed from the plaintext's, each
    /// authenticated as it is read.
    fn sealed_access(&self, start: &[u8], shown: String) -> Result<Option<RandomSource>> {
        let reads = Arc::new(AtomicU64::new(0));
        let read_bytes = Arc::new(AtomicU64::new(0));
        let (raw, file): (Box<dyn SeekRead>, Option<Arc<PooledFile>>) = match &self.inner {
            Inner::File { file, stdin: false } => {
                if !file
                    .metadata()
                    .map_err(|e| Error::io("stat", &self.name, e))?
                    .is_file()
                {
                    return Ok(None);
                }
                // One descriptor, in the pool, for the decryptor's reads
                // and the stamp and hash of the stored bytes.
                let f = Arc::new(
                    file.try_clone()
                        .and_then(|f| PooledFile::new(&self.name, f))
                        .map_err(|e| Error::io("read", &self.name, e))?,
                );
                (
                    Box::new(CountedSeek {
                        file: Arc::clone(&f),
                        pos: 0,
                        reads: Arc::clone(&reads),
                        read_bytes: Arc::clone(&read_bytes),
                    }),
                    Some(f),
                )
            }
            Inner::Object {
                remote,
                size,
                e_tag,
                ..
            } => (
                Box::new(ObjectSeek {
                    remote: remote.clone(),
                    e_tag: e_tag.clone(),
                    size: *size,
                    pos: 0,
                    buf: Vec::new(),
                    buf_at: 0,
                    reads: Arc::clone(&reads),
                    read_bytes: Arc::clone(&read_bytes),
                }),
                None,
            ),
            _ => return Ok(None),
        };
        let mut plain = crate::store::crypt::decrypt(raw, start, &shown)?;
        let size = std::io::Seek::seek(&mut plain, SeekFrom::End(0))
            .map_err(|e| crate::error::from_io(e, "read", &self.name))?;
        let mut src = RandomSource::new(
            SourceKind::Sealed(std::sync::Mutex::new(Box::new(plain)), file),
            size,
            shown,
        );
        src.reads = reads;
        src.read_bytes = read_bytes;
        Ok(Some(src))
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

/// What tells a file that changed: size, mtime and ctime (with ns).
type Stamp = (u64, i64, i64, i64, i64);

/// An archive read at offsets: a regular file, or an object with ranged
/// GETs pinned to the ETag first seen. Counts its reads and the bytes
/// they brought.
pub struct RandomSource {
    kind: SourceKind,
    /// The archive's size.
    pub size: u64,
    /// Its name in messages.
    pub shown: String,
    reads: Arc<AtomicU64>,
    read_bytes: Arc<AtomicU64>,
}

enum SourceKind {
    /// A file, its descriptor in the pool.
    File(PooledFile),
    Object(Box<Remote>, Option<String>),
    /// An encrypted archive, decrypted at offsets (and its file, if any,
    /// for its stamp).
    Sealed(std::sync::Mutex<Box<dyn SeekRead>>, Option<Arc<PooledFile>>),
}

impl RandomSource {
    fn new(kind: SourceKind, size: u64, shown: String) -> Self {
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
    fn stamp(&self) -> Result<Option<Stamp>> {
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
fn stamp(f: &File, name: &Path) -> Result<Stamp> {
    let m = f.metadata().map_err(|e| Error::io("stat", name, e))?;
    Ok((
        m.len(),
        m.mtime(),
        m.mtime_nsec(),
        m.ctime(),
        m.ctime_nsec(),
    ))
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

impl Read for ArchiveReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let Some(c) = &mut self.cipher else {
            return self.read_stored(buf);
        };
        if c.plain.is_none() {
            // The decryptor takes the stored stream over.
            let start = c.start.clone();
            let stored = Arc::clone(&c.stored);
            let raw = ArchiveReader {
                inner: std::mem::replace(&mut self.inner, Inner::Gone),
                progress: self.progress.take(),
                expected_sha256: None,
                name: self.name.clone(),
                threads: 0,
                pending: std::mem::take(&mut self.pending),
                cipher: None,
            };
            let shown = self.name.display().to_string();
            let plain = crate::store::crypt::decrypt(Stored { raw, stored }, &start, &shown)
                .map_err(std::io::Error::other)?;
            self.cipher.as_mut().expect("checked").plain = Some(Box::new(Decrypting::start(plain)));
        }
        self.cipher
            .as_mut()
            .and_then(|c| c.plain.as_mut())
            .expect("started above")
            .read(buf)
    }
}

/// A decrypted stream read ahead by a thread of its own (decryption and
/// the ciphertext's hash overlap the decompression), 1 MiB at a time,
/// at most 4 MiB ahead. Dropped, it ends the thread at its next chunk.
struct Decrypting {
    rx: std::sync::mpsc::Receiver<std::io::Result<Vec<u8>>>,
    cur: Vec<u8>,
    at: usize,
    done: bool,
}

impl Decrypting {
    fn start<R: Read + Send + 'static>(mut plain: R) -> Self {
        let (tx, rx) = std::sync::mpsc::sync_channel(4);
        std::thread::spawn(move || {
            loop {
                let mut buf = vec![0u8; 1 << 20];
                let mut n = 0;
                let got = loop {
                    match plain.read(&mut buf[n..]) {
                        Ok(0) => break Ok(()),
                        Ok(k) => {
                            n += k;
                            if n == buf.len() {
                                break Ok(());
                            }
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                        Err(e) => break Err(e),
                    }
                };
                buf.truncate(n);
                let end = n == 0;
                let sent = match got {
                    Ok(()) => tx.send(Ok(buf)),
                    Err(e) => {
                        if n > 0 && tx.send(Ok(buf)).is_err() {
                            return;
                        }
                        let _ = tx.send(Err(e));
                        return;
                    }
                };
                if sent.is_err() || end {
                    return;
                }
            }
        });
        Decrypting {
            rx,
            cur: Vec::new(),
            at: 0,
            done: false,
        }
    }
}

impl Read for Decrypting {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.at == self.cur.len() {
            if self.done {
                return Ok(0);
            }
            match self.rx.recv() {
                Ok(Ok(chunk)) => {
                    if chunk.is_empty() {
                        self.done = true;
                    }
                    self.cur = chunk;
                    self.at = 0;
                }
                Ok(Err(e)) => {
                    self.done = true;
                    return Err(e);
                }
                Err(_) => {
                    self.done = true;
                    return Err(std::io::Error::other(
                        "the decrypting thread stopped before the end",
                    ));
                }
            }
        }
        let n = buf.len().min(self.cur.len() - self.at);
        buf[..n].copy_from_slice(&self.cur[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

/// A stored archive read at offsets, for the decryptor.
trait SeekRead: Read + Seek + Send {}
impl<T: Read + Seek + Send> SeekRead for T {}

/// A file read at offsets with `pread` (a position of its own: the
/// descriptor's offset, shared with the stream reading it, never moves),
/// counting reads and bytes.
struct CountedSeek {
    file: Arc<PooledFile>,
    pos: u64,
    reads: Arc<AtomicU64>,
    read_bytes: Arc<AtomicU64>,
}

impl Read for CountedSeek {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.reads.fetch_add(1, Ordering::Relaxed);
        let pos = self.pos;
        let n = self
            .file
            .with(|f| std::os::unix::fs::FileExt::read_at(f, buf, pos))?;
        self.pos += n as u64;
        self.read_bytes.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

impl Seek for CountedSeek {
    fn seek(&mut self, pos: SeekFrom) -> std::io::Result<u64> {
        let to = match pos {
            SeekFrom::Start(n) => Some(n),
            SeekFrom::End(d) => self
                .file
                .with(|f| f.metadata())?
                .len()
                .checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        self.pos = to.ok_or_else(|| std::io::Error::other("seek out of range"))?;
        Ok(self.pos)
    }
}

/// An object read at offsets with ranged GETs (pinned to its ETag) of at
/// least 256 KiB: a few of age's 64 KiB chunks each.
struct ObjectSeek {
    remote: Box<Remote>,
    e_tag: Option<String>,
    size: u64,
    pos: u64,
    buf: Vec<u8>,
    buf_at: u64,
    reads: Arc<AtomicU64>,
    read_bytes: Arc<AtomicU64>,
}

impl Read for ObjectSeek {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        if self.pos >= self.size || out.is_empty() {
            return Ok(0);
        }
        let inside = self.pos >= self.buf_at && self.pos < self.buf_at + self.buf.len() as u64;
        if !inside {
            let len = (out.len() as u64).max(256 * 1024).min(self.size - self.pos);
            let mut b = vec![0u8; len as usize];
            self.reads.fetch_add(1, Ordering::Relaxed);
            self.read_bytes.fetch_add(len, Ordering::Relaxed);
            self.remote
                .read_at(self.pos, &mut b, self.e_tag.as_deref())
                .map_err(std::io::Error::other)?;
            self.buf = b;
            self.buf_at = self.pos;
        }
        let off = (self.pos - self.buf_at) as usize;
        let n = out.len().min(self.buf.len() - off);
        out[..n].copy_from_slice(&self.buf[off..off + n]);
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for ObjectSeek {
    fn seek(&mut self, pos: SeekFrom) -> std::io::Result<u64> {
        let to = match pos {
            SeekFrom::Start(n) => Some(n),
            SeekFrom::End(d) => self.size.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        self.pos = to.ok_or_else(|| std::io::Error::other("seek out of range"))?;
        Ok(self.pos)
    }
}

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
