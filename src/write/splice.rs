//! An archive assembled from pieces of others (`merge`): tar bytes
//! compressed into new frames as `create` compresses them, and whole data
//! frames of a source archive copied as they are, each with the index
//! records of the members whose header it holds. HEAD, the INDEX blocks,
//! TABLE, META and TAIL are written here, as for any archive.

use std::io::Write;
use std::path::Path;

use crate::error::Result;
use crate::format::frame::{TAG_HEAD, write_skippable_json};
use crate::format::head::{Entry, EntryKind, WalPosition};
use crate::format::v2::{Head2, MAX_HEAD2_BODY, Record, cap_warnings};

use super::end::seal;
use super::frames::Frames;
use super::hash::HashWriter;
use super::members::Members;
use super::{CreateOptions, CreateSummary, OnError, effective_threads};

/// The archive being assembled; see [`write_spliced`].
pub struct Splice<'a, 'o, W: Write> {
    m: Members<'a, 'o, W>,
}

impl<W: Write> Splice<'_, '_, W> {
    /// Starts the member `e` with a header written here (a new frame if
    /// it does not fit the room left, as `create` cuts): a file's
    /// content follows with [`Splice::data`], then [`Splice::pad`].
    /// `sha256` is its content's digest (a directory's is ignored).
    pub fn begin(&mut self, e: &Entry, sha256: [u8; 32]) -> Result<()> {
        crate::sys::kill_step();
        self.m.begin(e)?;
        self.count(e.kind, e.size);
        if e.kind == EntryKind::File {
            self.m.index.set_digest(sha256);
        }
        self.m.settle_index()
    }

    /// [`Splice::begin`] of a file whose digest is known only once its
    /// content was written: given then with [`Splice::set_digest`].
    pub fn begin_unhashed(&mut self, e: &Entry) -> Result<()> {
        crate::sys::kill_step();
        self.m.begin(e)?;
        self.count(e.kind, e.size);
        self.m.settle_index()
    }

    /// The digest of the file begun last with [`Splice::begin_unhashed`].
    pub fn set_digest(&mut self, sha256: [u8; 32]) -> Result<()> {
        self.m.index.set_digest(sha256);
        self.m.settle_index()
    }

    /// Tar bytes: a member's content, or members whose headers come in
    /// these bytes (each declared first with [`Splice::declare`]).
    pub fn data(&mut self, bytes: &[u8]) -> Result<()> {
        self.m.tar(bytes)
    }

    /// The zero bytes after a file of `size` bytes.
    pub fn pad(&mut self, size: u64) -> Result<()> {
        let pad = (size.next_multiple_of(512) - size) as usize;
        self.m.tar(&[0u8; 512][..pad])
    }

    /// Declares `rec` as the member whose own header block is the next
    /// tar byte (given with [`Splice::data`]).
    pub fn declare(&mut self, mut rec: Record) -> Result<()> {
        crate::sys::kill_step();
        rec.frame = self.m.frames.seq();
        rec.offset = self.m.frames.fill() as u64;
        self.push(rec);
        self.m.settle_index()
    }

    /// Ends the frame being filled and adds `frame`, a whole data frame
    /// of another archive, with the records of the members whose header
    /// block it holds (each with its offset in the frame's content).
    pub fn raw(&mut self, frame: Vec<u8>, records: Vec<Record>) -> Result<()> {
        crate::sys::kill_step();
        self.m.cut()?;
        let seq = self.m.frames.seq();
        for mut rec in records {
            rec.frame = seq;
            self.push(rec);
        }
        self.m.raw_frame(frame)
    }

    fn push(&mut self, mut rec: Record) {
        // Every record of this writer carries its nanoseconds (TAIL's
        // flag): a source's whole seconds are nanosecond 0.
        rec.mtime_nsec = Some(rec.mtime_nsec.unwrap_or(0));
        let (kind, size, sha) = (rec.kind, rec.size, rec.sha256);
        self.m.index.push(rec);
        if kind == EntryKind::File {
            self.m.index.set_digest(sha);
        }
        self.count(kind, size);
    }

    fn count(&mut self, kind: EntryKind, size: u64) {
        match kind {
            EntryKind::File => {
                self.m.files += 1;
                self.m.data_bytes += size;
                self.m.advance(size);
            }
            EntryKind::Dir => self.m.dirs += 1,
        }
    }
}

/// Writes an archive with `head` to `out`, its members given by `body`
/// (in tree order), then the tar end, TABLE, META (with `wal` and
/// `warnings`) and TAIL. Frames are compressed with `opts`' level,
/// threads and frame size.
pub fn write_spliced<W: Write>(
    head: &Head2,
    out: W,
    out_name: &Path,
    opts: &CreateOptions,
    wal: &[WalPosition],
    warnings: Vec<String>,
    body: impl FnOnce(&mut Splice<'_, '_, W>) -> Result<()>,
) -> Result<(W, CreateSummary)> {
    let threads = effective_threads(opts.threads);
    let on_error = OnError {
        out_name,
        level: opts.level,
        threads,
    };
    let wrap = |e| on_error.wrap(e);
    let frame_bytes = opts.frame_bytes.clamp(4 * 1024, 64 * 1024 * 1024);
    let mut w = HashWriter::new(out, out_name);
    write_skippable_json(&mut w, &TAG_HEAD, head, MAX_HEAD2_BODY).map_err(wrap)?;
    let frames = Frames::new(w, opts.level, threads, frame_bytes).map_err(wrap)?;
    let mut s = Splice {
        m: Members::new(frames, opts.progress.as_deref(), &on_error),
    };
    body(&mut s)?;
    let mut m = s.m;
    m.finish()?;
    let warnings = cap_warnings(warnings);
    let (w, sealed) = seal(m, head.version, &[], wal, &warnings, &on_error)?;
    Ok((
        w,
        CreateSummary {
            bytes: sealed.bytes,
            sha256: sealed.sha256,
            files: sealed.files,
            dirs: sealed.dirs,
            data_bytes: sealed.data_bytes,
            skipped: Vec::new(),
            followed: Vec::new(),
            removed_stale: Vec::new(),
            threads,
            wal: wal.to_vec(),
            warnings,
            uploaded: None,
            base: head.base.clone(),
            encrypted: false,
        },
    ))
}
