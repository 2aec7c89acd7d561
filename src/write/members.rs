//! DATA's members: tar headers written here (GNU format, a GNU `L` record
//! before a path of more than 100 bytes), each member's content streamed
//! from what the scan captured or from the file opened now, checked as it
//! streams, and its index record handed to the [`IndexWriter`].

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::Path;

use crate::error::{Error, Result};
use crate::format::head::{Entry, EntryKind};
use crate::format::v2::Record;
use crate::progress::Progress;
use crate::sydradb::check::Checker;
use crate::sydradb::live::{self, Content, FileKind};
use crate::sydradb::scan::Captured;
use crate::sys::Stat;

use super::OnError;
use super::frames::Frames;
use super::index::IndexWriter;
use super::source::{SourceReader, changed};

/// Files up to this size are read with one `read(2)` (see the buffer),
/// so they need no second `fstat` after it.
const SINGLE_READ: u64 = 64 * 1024;
/// Read buffer for file content.
const READ_BUF: usize = 256 * 1024;

/// Where a file's content comes from.
pub(super) enum Source {
    /// Captured by the scan (settled bytes, a spooled copy, a held WAL).
    Captured(Captured),
    /// Opened now; `listed` is what the listing saw.
    Opened { file: File, opened: Stat },
    /// The bytes of a held file from `from` on (a WAL file's tail).
    Range { file: File, from: u64 },
}

/// The members written so far.
pub(super) struct Members<'a, 'o, W: Write> {
    pub(super) frames: Frames<'o, W>,
    pub(super) index: IndexWriter,
    progress: Option<&'a Progress>,
    on_error: &'a OnError<'a>,
    buf: Vec<u8>,
    pub(super) files: u64,
    pub(super) dirs: u64,
    pub(super) data_bytes: u64,
    pub(super) warnings: Vec<String>,
}

/// The tar header block(s) of `e`: a GNU long-name record when the path
/// needs one, then the member's own header.
pub(crate) fn tar_header(e: &Entry) -> (Vec<u8>, [u8; 512]) {
    let mut long = Vec::new();
    let path = e.path.as_bytes();
    let mut h = tar::Header::new_gnu();
    if path.len() > 100 {
        let mut l = tar::Header::new_gnu();
        l.as_old_mut().name[..13].copy_from_slice(b"././@LongLink");
        l.set_mode(0o644);
        l.set_uid(0);
        l.set_gid(0);
        l.set_mtime(0);
        l.set_size(path.len() as u64 + 1);
        l.set_entry_type(tar::EntryType::GNULongName);
        l.set_cksum();
        long.extend_from_slice(l.as_bytes());
        long.extend_from_slice(path);
        long.push(0);
        long.resize(long.len().next_multiple_of(512), 0);
        h.as_old_mut().name.copy_from_slice(&path[..100]);
    } else {
        h.as_old_mut().name[..path.len()].copy_from_slice(path);
    }
    h.set_mode(e.mode);
    h.set_mtime(e.mtime as u64);
    h.set_uid(0);
    h.set_gid(0);
    match e.kind {
        EntryKind::Dir => {
            h.set_entry_type(tar::EntryType::Directory);
            h.set_size(0);
        }
        EntryKind::File => {
            h.set_entry_type(tar::EntryType::Regular);
            h.set_size(e.size);
        }
    }
    h.set_cksum();
    (long, *h.as_bytes())
}

impl<'a, 'o, W: Write> Members<'a, 'o, W> {
    pub(super) fn new(
        frames: Frames<'o, W>,
        progress: Option<&'a Progress>,
        on_error: &'a OnError<'a>,
    ) -> Self {
        Members {
            frames,
            index: IndexWriter::new(),
            progress,
            on_error,
            buf: vec![0u8; READ_BUF],
            files: 0,
            dirs: 0,
            data_bytes: 0,
            warnings: Vec::new(),
        }
    }

    pub(super) fn tar(&mut self, data: &[u8]) -> Result<()> {
        self.frames
            .write_tar(data)
            .map_err(|err| self.on_error.wrap(err))?;
        self.settle_index()
    }

    /// Counts `n` bytes of file content done, for progress.
    pub(super) fn advance(&self, n: u64) {
        if let Some(p) = self.progress {
            p.add(n);
        }
    }

    /// Ends the frame being filled and adds `frame`, compressed
    /// elsewhere, as the next one.
    pub(super) fn raw_frame(&mut self, frame: Vec<u8>) -> Result<()> {
        self.frames
            .raw(frame)
            .map_err(|err| self.on_error.wrap(err))?;
        self.settle_index()
    }

    /// Ends the frame being filled.
    pub(super) fn cut(&mut self) -> Result<()> {
        self.frames.cut().map_err(|err| self.on_error.wrap(err))?;
        self.settle_index()
    }

    /// Completes the index records whose frames are out.
    pub(super) fn settle_index(&mut self) -> Result<()> {
        let written = self.frames.take_written();
        if !written.is_empty() {
            self.index.written(written);
        }
        self.index
            .drain(self.frames.out())
            .map_err(|err| self.on_error.wrap(err))
    }

    /// Starts member `e`: a new frame if it does not fit the room left,
    /// its header block(s), its index record.
    pub(super) fn begin(&mut self, e: &Entry) -> Result<()> {
        let (long, header) = tar_header(e);
        let len = long.len() as u64 + 512 + e.size.next_multiple_of(512);
        if !self.frames.is_fresh() && len > self.frames.room() as u64 {
            self.frames.cut().map_err(|err| self.on_error.wrap(err))?;
            self.settle_index()?;
        }
        self.tar(&long)?;
        self.index.push(Record {
            path: e.path.clone(),
            kind: e.kind,
            mode: e.mode,
            mtime: e.mtime as u64,
            mtime_nsec: Some(e.mtime_nsec),
            size: e.size,
            frame: self.frames.seq(),
            offset: self.frames.fill() as u64,
            sha256: [0; 32],
        });
        self.tar(&header)
    }

    /// Appends a directory.
    pub(super) fn dir(&mut self, e: &Entry) -> Result<()> {
        self.begin(e)?;
        self.dirs += 1;
        Ok(())
    }

    /// Appends a file from `src` (`path` names it in errors); returns
    /// the SHA-256 of its content.
    pub(super) fn file(&mut self, e: &Entry, path: &Path, src: Source) -> Result<[u8; 32]> {
        let digest = match src {
            Source::Captured(Captured::Settled(Content::Bytes(bytes))) => {
                self.stream(e, path, &mut &bytes[..], None)?.0
            }
            Source::Captured(Captured::Settled(Content::Spooled(file)) | Captured::Held(file)) => {
                let mut f: &File = &file;
                f.seek(SeekFrom::Start(0))
                    .map_err(|err| Error::io("seek", path, err))?;
                self.stream(e, path, &mut f, None)?.0
            }
            Source::Range { file, from } => {
                let mut f: &File = &file;
                f.seek(SeekFrom::Start(from))
                    .map_err(|err| Error::io("seek", path, err))?;
                self.stream(e, path, &mut f, None)?.0
            }
            Source::Opened { mut file, opened } => {
                let kind = live::kind_of(&e.path);
                let check = (kind != FileKind::Other).then(|| Checker::new(kind));
                let (digest, check) = self.stream(e, path, &mut file, check)?;
                // A file over one read is checked again once read: it must
                // not have changed meanwhile (a growing file is never cut
                // silently). A smaller one is read by a single read(2) of
                // the size just checked on its descriptor: what that
                // returns is the file as it was at that instant.
                if e.size > SINGLE_READ {
                    let now =
                        crate::sys::fstat(&file).map_err(|err| Error::io("stat", path, err))?;
                    if now.key() != opened.key() {
                        return Err(changed(path, "while it was read"));
                    }
                }
                if let Some((off, why)) = check.and_then(Checker::finish) {
                    self.warnings.push(format!(
                        "{}: {why} at offset {off}; not modified for {}s, archived as it is",
                        e.path,
                        live::unix_now() - opened.mtime
                    ));
                }
                digest
            }
        };
        self.files += 1;
        self.data_bytes += e.size;
        Ok(digest)
    }

    /// Streams `src` as the member `e`; returns its digest and checker.
    fn stream(
        &mut self,
        e: &Entry,
        path: &Path,
        src: &mut dyn Read,
        check: Option<Checker>,
    ) -> Result<([u8; 32], Option<Checker>)> {
        self.begin(e)?;
        let mut buf = std::mem::take(&mut self.buf);
        let mut reader = SourceReader::new(src, path, e.size, self.progress, check);
        let streamed = loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => break Ok(()),
                Ok(n) => n,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) => break Err(self.on_error.wrap(err)),
            };
            if let Err(err) = self.tar(&buf[..n]) {
                break Err(err);
            }
        };
        self.buf = buf;
        streamed?;
        let pad = (e.size.next_multiple_of(512) - e.size) as usize;
        self.tar(&[0u8; 512][..pad])?;
        let (digest, check) = reader.finish();
        self.index.set_digest(digest);
        self.settle_index()?;
        Ok((digest, check))
    }

    /// Ends the tar stream (two zero blocks) and DATA, and completes the
    /// index. Nothing is left to `Drop`.
    pub(super) fn finish(&mut self) -> Result<()> {
        self.tar(&[0u8; 1024])?;
        self.frames
            .flush_all()
            .map_err(|err| self.on_error.wrap(err))?;
        self.settle_index()?;
        debug_assert_eq!(self.index.waiting(), 0);
        self.index
            .write_block(self.frames.out())
            .map_err(|err| self.on_error.wrap(err))
    }
}
