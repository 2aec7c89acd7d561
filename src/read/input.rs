//! A buffered, hashing, peekable reader over an archive source.
//!
//! Every byte the parser consumes is fed to a running SHA-256, so when the
//! parser reaches FOOT the hash of `[0, position)` is exactly what FOOT must
//! hold: no seeking and no hold-back buffer are needed, and stdin works the
//! same way as a file. Reads never allocate more than their fixed buffer.
//! The hashing runs on its own thread ([`HashPipe`]), beside decompression
//! and parsing.

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

const BUF_SIZE: usize = 256 * 1024;
/// The most [`Input::peek`] may ask for: the buffer grows to it only when
/// asked (a whole data frame, peeked to be decoded apart).
pub const MAX_PEEK: usize = 8 * 1024 * 1024 + 64 * 1024;

/// Peekable buffered reader that hashes and counts what is consumed.
pub struct Input<R> {
    inner: R,
    path: PathBuf,
    buf: Vec<u8>,
    pos: usize,
    end: usize,
    eof: bool,
    consumed: u64,
    hasher: HashPipe,
}

/// Where the SHA-256 of the consumed bytes is computed: on a helper thread
/// (the default), or by a thread reading the file itself
/// ([`HashPipe::apart`]).
pub struct HashPipe(Pipe);

enum Pipe {
    /// On a helper thread: bytes are copied into 1 MiB blocks and sent over
    /// a bounded queue (at most 8 MiB in flight).
    Thread {
        tx: Option<mpsc::SyncSender<HashMsg>>,
        worker: Option<JoinHandle<()>>,
        pending: Vec<u8>,
    },
    /// On the calling thread (where no thread can be started).
    Inline(Sha256),
    /// By a thread that reads the file itself, in parallel with the parser
    /// (see [`HashPipe::apart`]); the parser's bytes are not hashed.
    Apart {
        answers: mpsc::Receiver<io::Result<(u64, [u8; 32])>>,
        stop: Arc<AtomicBool>,
        worker: Option<JoinHandle<()>>,
    },
}

/// A message to the hashing thread.
enum HashMsg {
    /// More bytes.
    Data(Vec<u8>),
    /// Reply with the digest of everything so far.
    Digest(mpsc::Sender<[u8; 32]>),
}

const HASH_BLOCK: usize = 1024 * 1024;
/// The read size of [`HashPipe::apart`]: small enough that the bytes are
/// still in the core's L2 cache when they are hashed.
const APART_BLOCK: usize = 128 * 1024;

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
            });
        HashPipe(match worker {
            Ok(worker) => Pipe::Thread {
                tx: Some(tx),
                worker: Some(worker),
                pending: Vec::with_capacity(HASH_BLOCK),
            },
            Err(_) => Pipe::Inline(Sha256::new()),
        })
    }
}

impl HashPipe {
    /// Hashes the `len`-byte file `file` with its own positional reads on a
    /// thread of its own, in one straight pass, while the parser reads the
    /// same file: the digest of the body (all but its last frame, TAIL or
    /// FOOT) and then of the whole file
    /// are answered, in that order, each with its length. The parser's
    /// [`Input::digest`] fails unless it asks at exactly those lengths.
    ///
    /// Only for checks whose result does not depend on the parsed bytes
    /// being the hashed ones (`verify --quick`): the caller must make sure
    /// the file did not change between the two passes.
    pub fn apart(file: File, len: u64) -> io::Result<HashPipe> {
        let (tx, answers) = mpsc::sync_channel(2);
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let worker = std::thread::Builder::new()
            .name("archive-hash".into())
            .spawn(move || {
                let mut h = Sha256::new();
                let mut buf = vec![0u8; APART_BLOCK];
                let mut at = 0u64;
                // The body ends where the last frame begins: a version-2
                // TAIL or a version-1 FOOT.
                let tail = crate::format::v2::TAIL_LEN;
                let mut end = vec![0u8; tail];
                let end_len = if len >= tail as u64
                    && file.read_exact_at(&mut end, len - tail as u64).is_ok()
                    && crate::format::v2::Tail::is_tail(&end)
                {
                    tail as u64
                } else {
                    crate::format::footer::FOOT_LEN as u64
                };
                let marks = [len.saturating_sub(end_len), len];
                for mark in marks {
                    while at < mark {
                        if stopped.load(Ordering::Relaxed) {
                            return;
                        }
                        let n = (mark - at).min(APART_BLOCK as u64) as usize;
                        match file.read_at(&mut buf[..n], at) {
                            Ok(0) => {
                                let _ = tx.send(Err(io::ErrorKind::UnexpectedEof.into()));
                                return;
                            }
                            Ok(n) => {
                                h.update(&buf[..n]);
                                at += n as u64;
                            }
                            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                            Err(e) => {
                                let _ = tx.send(Err(e));
                                return;
                            }
                        }
                    }
                    if tx.send(Ok((at, h.clone().finalize().into()))).is_err() {
                        return;
                    }
                }
            })?;
        Ok(HashPipe(Pipe::Apart {
            answers,
            stop,
            worker: Some(worker),
        }))
    }

    /// Adds bytes to the hash.
    pub fn update(&mut self, data: &[u8]) {
        match &mut self.0 {
            Pipe::Inline(h) => h.update(data),
            Pipe::Thread { tx, pending, .. } => {
                pending.extend_from_slice(data);
                if pending.len() >= HASH_BLOCK {
                    let block = std::mem::replace(pending, Vec::with_capacity(HASH_BLOCK));
                    send(tx, HashMsg::Data(block));
                }
            }
            Pipe::Apart { .. } => {}
        }
    }

    /// Asks for the SHA-256 of everything added so far (`consumed` bytes),
    /// to be collected with [`HashPipe::resolve`], so that more bytes can be
    /// read (and checked) meanwhile.
    pub fn mark(&mut self, consumed: u64) -> Mark {
        Mark(match &mut self.0 {
            Pipe::Inline(h) => Due::Ready(h.clone().finalize().into()),
            Pipe::Thread { tx, pending, .. } => {
                send(tx, HashMsg::Data(std::mem::take(pending)));
                let (reply, answer) = mpsc::channel();
                send(tx, HashMsg::Digest(reply));
                Due::Reply(answer)
            }
            Pipe::Apart { .. } => Due::At(consumed),
        })
    }

    /// The digest asked for by `mark`; `name` names the source in errors.
    /// With [`HashPipe::apart`], marks must be resolved in order.
    pub fn resolve(&mut self, mark: Mark, name: &Path) -> Result<[u8; 32]> {
        match (mark.0, &mut self.0) {
            (Due::Ready(d), _) => Ok(d),
            (Due::Reply(answer), _) => Ok(answer.recv().expect("hash thread alive")),
            (Due::At(at), Pipe::Apart { answers, .. }) => match answers.recv() {
                Ok(Ok((len, digest))) if len == at => Ok(digest),
                Ok(Err(e)) if e.kind() != io::ErrorKind::UnexpectedEof => {
                    Err(Error::io("read", name, e))
                }
                _ => Err(changed_while_read(name)),
            },
            (Due::At(_), _) => unreachable!("a mark is resolved by the pipe that made it"),
        }
    }
}

/// The error for a file that changed between two reads of it.
pub fn changed_while_read(name: &Path) -> Error {
    Error::io(
        "verify",
        name,
        io::Error::other("the file changed while it was being read"),
    )
}

/// A digest asked for by [`HashPipe::mark`].
pub struct Mark(Due);

enum Due {
    /// Computed already.
    Ready([u8; 32]),
    /// To come from the hashing thread.
    Reply(mpsc::Receiver<[u8; 32]>),
    /// To come from a [`HashPipe::apart`] thread, for this many bytes.
    At(u64),
}

fn send(tx: &Option<mpsc::SyncSender<HashMsg>>, msg: HashMsg) {
    tx.as_ref()
        .expect("open until dropped")
        .send(msg)
        .expect("hash thread alive");
}

impl Drop for HashPipe {
    fn drop(&mut self) {
        let worker = match &mut self.0 {
            Pipe::Inline(_) => return,
            Pipe::Thread { tx, worker, .. } => {
                // Closing the queue ends the thread.
                tx.take();
                worker.take()
            }
            Pipe::Apart { stop, worker, .. } => {
                stop.store(true, Ordering::Relaxed);
                worker.take()
            }
        };
        if let Some(w) = worker {
            let _ = w.join();
        }
    }
}

impl<R: Read> Input<R> {
    /// Wraps `inner`; `path` names the source in error messages.
    #[cfg(test)]
    pub fn new(inner: R, path: &Path) -> Input<R> {
        Input::with_hasher(inner, path, HashPipe::default())
    }

    /// Wraps `inner`, with the hash computed by `hasher` (see
    /// [`HashPipe::apart`]).
    pub fn with_hasher(inner: R, path: &Path, hasher: HashPipe) -> Input<R> {
        Input {
            inner,
            path: path.to_path_buf(),
            buf: vec![0u8; BUF_SIZE],
            pos: 0,
            end: 0,
            eof: false,
            consumed: 0,
            hasher,
        }
    }

    /// Bytes consumed so far.
    pub fn position(&self) -> u64 {
        self.consumed
    }

    /// SHA-256 of every byte consumed so far.
    pub fn digest(&mut self) -> Result<[u8; 32]> {
        let mark = self.mark();
        self.resolve(mark)
    }

    /// Asks for the SHA-256 of every byte consumed so far, to be collected
    /// later with [`Input::resolve`].
    pub fn mark(&mut self) -> Mark {
        self.hasher.mark(self.consumed)
    }

    /// The digest asked for by `mark`.
    pub fn resolve(&mut self, mark: Mark) -> Result<[u8; 32]> {
        self.hasher.resolve(mark, &self.path)
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
                // A source that found the archive at fault (a decryptor
                // whose chunk does not authenticate) says so.
                Err(e) => {
                    return Err(match Error::from_carrier(e) {
                        Ok(ours) if ours.is_archive_fault() => ours,
                        Ok(ours) => Error::io("read", &self.path, io::Error::other(ours)),
                        Err(e) => Error::io("read", &self.path, e),
                    });
                }
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
    /// `n` must not exceed [`MAX_PEEK`]; the buffer grows past its usual
    /// size only for such a peek.
    pub fn peek(&mut self, n: usize) -> Result<&[u8]> {
        assert!(n <= MAX_PEEK);
        if self.end - self.pos < n {
            if self.pos + n > self.buf.len() {
                self.buf.copy_within(self.pos..self.end, 0);
                self.end -= self.pos;
                self.pos = 0;
                if n > self.buf.len() {
                    self.buf
                        .resize(n.next_multiple_of(BUF_SIZE).min(MAX_PEEK), 0);
                }
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
        self.consume_each(len, what, |chunk| out.extend_from_slice(chunk))?;
        Ok(out)
    }

    /// Consumes `len` bytes without keeping them.
    pub fn skip(&mut self, len: u64, what: &str) -> Result<()> {
        self.consume_each(len, what, |_| {})
    }

    /// Consumes `len` bytes, handing each buffered chunk to `each`; fewer
    /// bytes before EOF are a truncated `what`.
    fn consume_each(&mut self, len: u64, what: &str, mut each: impl FnMut(&[u8])) -> Result<()> {
        let mut left = len;
        while left > 0 {
            let avail = self.fill()?;
            if avail.is_empty() {
                return Err(truncated(what));
            }
            let n = (avail.len() as u64).min(left) as usize;
            each(&avail[..n]);
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
    Error::truncated(what)
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
        assert_eq!(input.digest().unwrap(), want);
    }

    #[test]
    fn a_hash_apart_answers_for_the_body_then_the_whole_file() {
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7) as u8).collect();
        let mut f = tempfile::tempfile().unwrap();
        std::io::Write::write_all(&mut f, &data).unwrap();
        let len = data.len() as u64;
        let pipe = HashPipe::apart(f.try_clone().unwrap(), len).unwrap();
        let mut input = Input::with_hasher(&data[..], Path::new("t"), pipe);
        input.skip(len - 64, "x").unwrap();
        let body = input.mark();
        input.skip(64, "x").unwrap();
        let body: [u8; 32] = input.resolve(body).unwrap();
        assert_eq!(
            body,
            <[u8; 32]>::from(Sha256::digest(&data[..data.len() - 64]))
        );
        assert_eq!(
            input.digest().unwrap(),
            <[u8; 32]>::from(Sha256::digest(&data))
        );

        // The parser saw a different length than the hashing thread: the
        // file changed in between, and that is an error, not a digest.
        let pipe = HashPipe::apart(f.try_clone().unwrap(), len).unwrap();
        let mut input = Input::with_hasher(&data[..], Path::new("t"), pipe);
        input.skip(100, "x").unwrap();
        let e = input.digest().unwrap_err();
        assert!(
            e.to_string().contains("changed while it was being read"),
            "{e}"
        );
        assert!(!e.is_archive_fault());

        // The file is shorter than the hashing thread was told.
        let pipe = HashPipe::apart(f, len + 10).unwrap();
        let mut input = Input::with_hasher(&data[..], Path::new("t"), pipe);
        input.skip(len - 54, "x").unwrap();
        input.digest().unwrap();
        input.skip(54, "x").unwrap();
        let e = input.digest().unwrap_err();
        assert!(
            e.to_string().contains("changed while it was being read"),
            "{e}"
        );
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
