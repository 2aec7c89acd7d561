//! A buffered, hashing, peekable reader over an archive source.
//!
//! Every byte the parser consumes is fed to a running SHA-256, so when the
//! parser reaches FOOT the hash of `[0, position)` is exactly what FOOT must
//! hold: no seeking and no hold-back buffer are needed, and stdin works the
//! same way as a file. Reads never allocate more than their fixed buffer.
//! The hashing runs on its own thread ([`HashPipe`]), beside decompression
//! and parsing.

use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread::JoinHandle;

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

const BUF_SIZE: usize = 256 * 1024;

/// Peekable buffered reader that hashes and counts what is consumed.
pub struct Input<R> {
    inner: R,
    path: PathBuf,
    buf: Box<[u8]>,
    pos: usize,
    end: usize,
    eof: bool,
    consumed: u64,
    hasher: HashPipe,
}

/// A SHA-256 computed on a helper thread: bytes are copied into 1 MiB
/// blocks and sent over a bounded queue (at most 8 MiB in flight).
/// Where no thread can be started, it hashes inline.
pub struct HashPipe {
    tx: Option<mpsc::SyncSender<HashMsg>>,
    worker: Option<JoinHandle<()>>,
    pending: Vec<u8>,
    inline: Option<Sha256>,
}

enum HashMsg {
    Data(Vec<u8>),
    Digest(mpsc::Sender<[u8; 32]>),
}

const HASH_BLOCK: usize = 1024 * 1024;

impl Default for HashPipe {
    fn default() -> Self {
        let (tx, rx) = mpsc::sync_channel::<HashMsg>(8);
        let worker = std::thread::Builder::new()
            .name("archive-hash".into())
            .spawn(move || {
                let mut h = Sha256::new();
                for msg in rx {
                    match msg {
                        HashMsg::Data(d) => h.update(&d),
                        HashMsg::Digest(reply) => {
                            let _ = reply.send(h.clone().finalize().into());
                        }
                    }
                }
            })
            .ok();
        HashPipe {
            tx: worker.as_ref().map(|_| tx),
            inline: if worker.is_some() {
                None
            } else {
                Some(Sha256::new())
            },
            worker,
            pending: Vec::with_capacity(HASH_BLOCK),
        }
    }
}

impl HashPipe {
    /// Adds bytes to the hash.
    pub fn update(&mut self, data: &[u8]) {
        if let Some(h) = &mut self.inline {
            h.update(data);
            return;
        }
        self.pending.extend_from_slice(data);
        if self.pending.len() >= HASH_BLOCK {
            self.send_pending();
        }
    }

    fn send_pending(&mut self) {
        let block = std::mem::replace(&mut self.pending, Vec::with_capacity(HASH_BLOCK));
        if let Some(tx) = &self.tx {
            tx.send(HashMsg::Data(block)).expect("hash thread alive");
        }
    }

    /// SHA-256 of everything added so far.
    pub fn digest(&mut self) -> [u8; 32] {
        if let Some(h) = &self.inline {
            return h.clone().finalize().into();
        }
        let Some(tx) = &self.tx else {
            unreachable!("a hash pipe hashes inline or on its thread");
        };
        let block = std::mem::take(&mut self.pending);
        tx.send(HashMsg::Data(block)).expect("hash thread alive");
        let (reply, answer) = mpsc::channel();
        tx.send(HashMsg::Digest(reply)).expect("hash thread alive");
        answer.recv().expect("hash thread alive")
    }
}

impl Drop for HashPipe {
    fn drop(&mut self) {
        self.tx.take();
        if let Some(w) = self.worker.take() {
            let _ = w.join();
        }
    }
}

impl<R: Read> Input<R> {
    /// Wraps `inner`; `path` names the source in error messages.
    pub fn new(inner: R, path: &Path) -> Input<R> {
        Input {
            inner,
            path: path.to_path_buf(),
            buf: vec![0u8; BUF_SIZE].into_boxed_slice(),
            pos: 0,
            end: 0,
            eof: false,
            consumed: 0,
            hasher: HashPipe::default(),
        }
    }

    /// Bytes consumed so far.
    pub fn position(&self) -> u64 {
        self.consumed
    }

    /// SHA-256 of every byte consumed so far.
    pub fn digest(&mut self) -> [u8; 32] {
        self.hasher.digest()
    }

    fn read_more(&mut self) -> Result<usize> {
        if self.eof {
            return Ok(0);
        }
        loop {
            match self.inner.read(&mut self.buf[self.end..]) {
                Ok(0) => {
                    self.eof = true;
                    return Ok(0);
                }
                Ok(n) => {
                    self.end += n;
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Error::io("read", &self.path, e)),
            }
        }
    }

    /// The buffered bytes, reading more if none are buffered. Empty at EOF.
    pub fn fill(&mut self) -> Result<&[u8]> {
        if self.pos == self.end {
            self.pos = 0;
            self.end = 0;
            self.read_more()?;
        }
        Ok(&self.buf[self.pos..self.end])
    }

    /// At least `n` bytes (fewer only at EOF), without consuming them.
    /// `n` must not exceed the buffer size.
    pub fn peek(&mut self, n: usize) -> Result<&[u8]> {
        assert!(n <= BUF_SIZE);
        if self.end - self.pos < n {
            if self.pos + n > BUF_SIZE {
                self.buf.copy_within(self.pos..self.end, 0);
                self.end -= self.pos;
                self.pos = 0;
            }
            while self.end - self.pos < n {
                if self.read_more()? == 0 {
                    break;
                }
            }
        }
        let avail = (self.end - self.pos).min(n);
        Ok(&self.buf[self.pos..self.pos + avail])
    }

    /// Marks `n` buffered bytes as consumed (and hashes them).
    pub fn consume(&mut self, n: usize) {
        assert!(n <= self.end - self.pos);
        self.hasher.update(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        self.consumed += n as u64;
    }

    /// Reads exactly `out.len()` bytes; running out is a truncated archive.
    pub fn read_exact(&mut self, out: &mut [u8], what: &str) -> Result<()> {
        let mut done = 0;
        while done < out.len() {
            let avail = self.fill()?;
            if avail.is_empty() {
                return Err(truncated(what));
            }
            let n = avail.len().min(out.len() - done);
            out[done..done + n].copy_from_slice(&avail[..n]);
            self.consume(n);
            done += n;
        }
        Ok(())
    }

    /// Reads `len` bytes into a vector that grows only as bytes arrive, so a
    /// hostile length never causes a large allocation by itself.
    pub fn read_vec(&mut self, len: u64, what: &str) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        let mut left = len;
        while left > 0 {
            let avail = self.fill()?;
            if avail.is_empty() {
                return Err(truncated(what));
            }
            let n = (avail.len() as u64).min(left) as usize;
            out.extend_from_slice(&avail[..n]);
            self.consume(n);
            left -= n as u64;
        }
        Ok(out)
    }

    /// Consumes `len` bytes without keeping them.
    pub fn skip(&mut self, len: u64, what: &str) -> Result<()> {
        let mut left = len;
        while left > 0 {
            let avail = self.fill()?;
            if avail.is_empty() {
                return Err(truncated(what));
            }
            let n = (avail.len() as u64).min(left) as usize;
            self.consume(n);
            left -= n as u64;
        }
        Ok(())
    }

    /// True when no byte is left.
    pub fn at_eof(&mut self) -> Result<bool> {
        Ok(self.fill()?.is_empty())
    }
}

/// Reads the next `len` bytes of an [`Input`] as a stream (a frame body);
/// running out early is a truncated archive (reported as an I/O error of
/// kind `UnexpectedEof`).
pub struct Body<'a, R> {
    input: &'a mut Input<R>,
    left: u64,
}

impl<'a, R: Read> Body<'a, R> {
    /// The next `len` bytes of `input`.
    pub fn new(input: &'a mut Input<R>, len: u64) -> Self {
        Body { input, left: len }
    }

    /// Bytes of the body not read yet.
    pub fn left(&self) -> u64 {
        self.left
    }
}

impl<R: Read> Read for Body<'_, R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 || out.is_empty() {
            return Ok(0);
        }
        let avail = self.input.fill().map_err(io::Error::other)?;
        if avail.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "archive ends inside a frame",
            ));
        }
        let n = avail.len().min(out.len()).min(self.left as usize);
        out[..n].copy_from_slice(&avail[..n]);
        self.input.consume(n);
        self.left -= n as u64;
        Ok(n)
    }
}

/// The error for an archive that ends too early.
pub fn truncated(what: &str) -> Error {
    Error::corrupt(format!("truncated: archive ends inside {what}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader that hands out one byte per call, to exercise refills.
    struct Trickle<'a>(&'a [u8]);
    impl Read for Trickle<'_> {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            if self.0.is_empty() || out.is_empty() {
                return Ok(0);
            }
            out[0] = self.0[0];
            self.0 = &self.0[1..];
            Ok(1)
        }
    }

    #[test]
    fn peek_consume_and_hash() {
        let data: Vec<u8> = (0..1000u32).map(|i| i as u8).collect();
        let mut input = Input::new(Trickle(&data), Path::new("t"));
        assert_eq!(input.peek(4).unwrap(), &data[..4]);
        input.consume(2);
        let mut two = [0u8; 10];
        input.read_exact(&mut two, "x").unwrap();
        assert_eq!(&two, &data[2..12]);
        let rest = input.read_vec(988, "x").unwrap();
        assert_eq!(rest, &data[12..]);
        assert!(input.at_eof().unwrap());
        assert_eq!(input.position(), 1000);
        let want: [u8; 32] = Sha256::digest(&data).into();
        assert_eq!(input.digest(), want);
    }

    #[test]
    fn short_reads_are_truncation() {
        let mut input = Input::new(&b"abc"[..], Path::new("t"));
        let err = input.read_vec(10, "head").unwrap_err();
        assert!(err.is_archive_fault(), "{err}");
        assert!(err.to_string().contains("truncated"));
    }

    #[test]
    fn peek_at_eof_is_short() {
        let mut input = Input::new(&b"ab"[..], Path::new("t"));
        assert_eq!(input.peek(4).unwrap(), b"ab");
        input.consume(2);
        assert!(input.at_eof().unwrap());
    }
}
