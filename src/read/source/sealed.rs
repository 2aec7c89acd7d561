//! An encrypted archive (an age file) being read: as a stream, its
//! stored bytes hashed as the decryptor takes them and the plaintext
//! read ahead by a thread of its own; at offsets, through a decryptor
//! over a file or an object read with a position of its own.

use std::io::{Read, Seek, SeekFrom};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{Error, Result};
use crate::store::pool::PooledFile;
use crate::store::s3::Remote;

use super::random::{RandomSource, SeekRead, SourceKind};
use super::{ArchiveReader, Inner};

/// An encrypted archive being read: its first bytes (for messages), the
/// SHA-256 and length of the stored bytes read (the ciphertext: what
/// `sha256sum` gives), and the decrypted stream once started.
pub(super) struct Cipher {
    pub(super) start: Vec<u8>,
    pub(super) stored: Arc<std::sync::Mutex<(sha2::Sha256, u64)>>,
    pub(super) plain: Option<Box<dyn Read + Send>>,
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

impl ArchiveReader {
    /// An encrypted archive read at offsets through its decryptor: age's
    /// chunks are at offsets computed from the plaintext's, each
    /// authenticated as it is read.
    pub(super) fn sealed_access(
        &self,
        start: &[u8],
        shown: String,
    ) -> Result<Option<RandomSource>> {
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
}

/// The archive's bytes: the stored ones, or for an encrypted archive the
/// plaintext, its decryptor taking the stored stream over at the first
/// read.
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
