//! An archive written as one age stream encrypted to its recipients:
//! the writer's output handed in chunks to a thread that encrypts,
//! hashes and writes the ciphertext (they overlap the compression); the
//! summary's size and SHA-256 are the ciphertext's, what is stored.

use std::io;
use std::path::Path;

use crate::error::{Error, Result, from_io};
use crate::store::crypt::Recipients;
use crate::sydradb::scan::Scan;

use super::{BaseState, CreateOptions, CreateSummary, write_archive_on};

/// Writes the archive of `scan` to `out`, or with `sealed` an age stream
/// of it: the summary's size and SHA-256 are then the ciphertext's, what
/// `out` receives. The age stream is finished explicitly.
pub fn write_sealed<W: std::io::Write + Send>(
    scan: Scan,
    state: Option<BaseState<'_>>,
    out: W,
    name: &Path,
    opts: &CreateOptions,
    sealed: Option<&Recipients>,
) -> Result<(W, CreateSummary)> {
    let base = state.as_ref().map(|s| s.base.clone());
    seal_with(out, name, sealed, base, |w| {
        write_archive_on(scan, state, w, name, opts).map(|(_, s)| s)
    })
}

/// The archive `write` writes to the writer it is given, written to
/// `out` as it is, or with `sealed` as an age stream (its chain record
/// naming `base`): the summary's size and SHA-256 are then the
/// ciphertext's. The age stream is finished explicitly, and only once
/// `write` returned `Ok`.
pub fn seal_with<W: std::io::Write + Send>(
    mut out: W,
    name: &Path,
    sealed: Option<&Recipients>,
    base: Option<crate::format::incremental::BaseRef>,
    write: impl FnOnce(&mut (dyn std::io::Write + Send)) -> Result<CreateSummary>,
) -> Result<(W, CreateSummary)> {
    use sha2::Digest;
    use std::io::Write;
    let Some(r) = sealed else {
        let s = write(&mut out)?;
        return Ok((out, s));
    };
    let stored = Stored {
        inner: out,
        count: 0,
        hasher: sha2::Sha256::new(),
    };
    let record = crate::store::crypt::ChainRecord { base };
    let mut enc = r.encrypt(stored, &record)?;
    // Encryption, the ciphertext's hash and the output run on a thread of
    // their own, fed 1 MiB at a time: they overlap the compression.
    std::thread::scope(|s| {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(4);
        // `None`: the stream ended early (the writer stopped, for its own
        // reason).
        let sealer = s.spawn(move || -> Result<Option<Stored<W>>> {
            // An empty chunk says the archive is complete: only then is the
            // age stream finished. A failed run leaves it visibly
            // truncated (age refuses it), never a clean, shorter stream.
            let mut complete = false;
            for chunk in rx {
                if chunk.is_empty() {
                    complete = true;
                    break;
                }
                enc.write_all(&chunk)
                    .map_err(|e| from_io(e, "write", name))?;
            }
            if !complete {
                return Ok(None);
            }
            enc.finish()
                .map(Some)
                .map_err(|e| from_io(e, "write", name))
        });
        let mut pipe = Chunks {
            tx: Some(tx),
            buf: Vec::with_capacity(CHUNK),
        };
        let written = write(&mut pipe).and_then(|s| {
            pipe.send()
                .and_then(|()| pipe.end())
                .map_err(|e| from_io(e, "write", name))?;
            Ok(s)
        });
        drop(pipe);
        // The sealer's own error (a full disk, a failed upload) says more
        // than the closed channel the writer saw.
        let sealed = sealer
            .join()
            .unwrap_or_else(|_| Err(Error::Refused("the encrypting thread panicked".into())));
        // The sealer's own error first; else the writer's (a refusal by
        // the chain model, a source error: the sealer only saw the stream
        // end early).
        let mut summary = match (written, sealed) {
            (Ok(s), Ok(Some(stored))) => (s, stored),
            (_, Err(e)) | (Err(e), Ok(_)) => return Err(e),
            (Ok(_), Ok(None)) => {
                return Err(Error::Refused("the archive was not completed".into()));
            }
        };
        let stored = summary.1;
        summary.0.bytes = stored.count;
        summary.0.sha256 = stored.hasher.finalize().into();
        summary.0.encrypted = true;
        Ok((stored.inner, summary.0))
    })
}

/// Bytes handed to the sealing thread at a time.
const CHUNK: usize = 1 << 20;

/// A writer that hands what it is given to another thread in chunks.
struct Chunks {
    tx: Option<std::sync::mpsc::SyncSender<Vec<u8>>>,
    buf: Vec<u8>,
}

impl Chunks {
    fn send(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let full = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK));
        match &self.tx {
            Some(tx) => tx
                .send(full)
                .map_err(|_| io::Error::other("the encrypting thread stopped")),
            None => Err(io::Error::other("the encrypting thread stopped")),
        }
    }
}

impl Chunks {
    /// Says the archive is complete (an empty chunk).
    fn end(&mut self) -> io::Result<()> {
        match &self.tx {
            Some(tx) => tx
                .send(Vec::new())
                .map_err(|_| io::Error::other("the encrypting thread stopped")),
            None => Err(io::Error::other("the encrypting thread stopped")),
        }
    }
}

impl std::io::Write for Chunks {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = data.len().min(CHUNK - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == CHUNK {
            self.send()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for Chunks {
    fn drop(&mut self) {
        // Closing the channel ends the sealing thread's loop (what was not
        // sent is not written: only a failed run drops unsent bytes).
        self.tx.take();
    }
}

/// Counts and hashes what is stored (the ciphertext).
struct Stored<W> {
    inner: W,
    count: u64,
    hasher: sha2::Sha256,
}

impl<W: std::io::Write> std::io::Write for Stored<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        use sha2::Digest;
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}
