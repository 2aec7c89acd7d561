//! DATA: the tar stream of the data dir's members, compressed as it is
//! written. Each file comes from what the scan captured (settled bytes, a
//! spooled copy, a held WAL file) or is opened now, relative to the
//! directories the scan held, and checked as it streams.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Seek, SeekFrom, Write};

use crate::error::{Error, Result};
use crate::format::head::{Entry, EntryKind};
use crate::progress::Progress;
use crate::sydradb::check::Checker;
use crate::sydradb::live::{self, Content, FileKind};
use crate::sydradb::scan::Captured;
use crate::sydradb::source::Tree;

use super::OnError;
use super::source::{SourceReader, changed};

type Encoder<W> = zstd::stream::write::Encoder<'static, W>;

/// Files up to this size are read with one `read(2)` (see `stream`'s
/// buffer), so they need no second `fstat` after it.
const SINGLE_READ: u64 = 64 * 1024;

/// The members written so far.
pub(super) struct Members<'a, W: Write> {
    // zstd's multi-threaded stream costs a lot per call: it is fed 1 MiB
    // at a time, not tar's 512-byte headers and small files one by one.
    tar: tar::Builder<BufWriter<Encoder<W>>>,
    tree: &'a Tree,
    captured: HashMap<usize, Captured>,
    progress: Option<&'a Progress>,
    on_error: &'a OnError<'a>,
    done: Done,
}

/// What DATA holds once finished.
pub(super) struct Done {
    /// SHA-256 of each file, in archive order.
    pub digests: Vec<[u8; 32]>,
    pub files: u64,
    pub dirs: u64,
    /// Files that did not parse but were archived as they are.
    pub warnings: Vec<String>,
}

impl<'a, W: Write> Members<'a, W> {
    pub(super) fn new(
        encoder: Encoder<W>,
        tree: &'a Tree,
        captured: HashMap<usize, Captured>,
        progress: Option<&'a Progress>,
        on_error: &'a OnError<'a>,
    ) -> Self {
        Members {
            tar: tar::Builder::new(BufWriter::with_capacity(1 << 20, encoder)),
            tree,
            captured,
            progress,
            on_error,
            done: Done {
                digests: Vec::new(),
                files: 0,
                dirs: 0,
                warnings: Vec::new(),
            },
        }
    }

    /// Appends entry `i` of HEAD.
    pub(super) fn append(&mut self, i: usize, e: &Entry) -> Result<()> {
        let mut header = tar::Header::new_gnu();
        header.set_mode(e.mode);
        header.set_mtime(e.mtime as u64);
        header.set_uid(0);
        header.set_gid(0);
        match e.kind {
            EntryKind::Dir => {
                header.set_entry_type(tar::EntryType::Directory);
                header.set_size(0);
                self.tar
                    .append_data(&mut header, &e.path, io::empty())
                    .map_err(|err| self.on_error.wrap(err))?;
                self.done.dirs += 1;
            }
            EntryKind::File => {
                header.set_entry_type(tar::EntryType::Regular);
                header.set_size(e.size);
                let digest = match self.captured.remove(&i) {
                    Some(Captured::Settled(Content::Bytes(bytes))) => {
                        self.stream(&mut header, e, &mut &bytes[..], None)?.0
                    }
                    Some(Captured::Settled(Content::Spooled(file)) | Captured::Held(file)) => {
                        let mut f: &File = &file;
                        f.seek(SeekFrom::Start(0))
                            .map_err(|err| Error::io("seek", self.tree.full(&e.path), err))?;
                        self.stream(&mut header, e, &mut f, None)?.0
                    }
                    None => self.append_opened(&mut header, e)?,
                };
                self.done.digests.push(digest);
                self.done.files += 1;
            }
        }
        Ok(())
    }

    /// A file the scan did not capture: opened now relative to the
    /// directories the scan held (never following a link), refused if it
    /// changed since the scan or while it is read, checked as it streams.
    fn append_opened(&mut self, header: &mut tar::Header, e: &Entry) -> Result<[u8; 32]> {
        let path = self.tree.full(&e.path);
        let (mut file, opened) = self.tree.open_file(&e.path)?;
        if opened.size != e.size || opened.mtime.max(0) != e.mtime {
            return Err(changed(&path, "since the scan"));
        }
        let kind = live::kind_of(&e.path);
        let check = (kind != FileKind::Other).then(|| Checker::new(kind));
        let (digest, check) = self.stream(header, e, &mut file, check)?;
        // A file over one read is checked again once read: it must not
        // have changed meanwhile (a growing file is never cut silently).
        // A smaller one is read by a single read(2) of the size just
        // checked on its descriptor: what that returns is the file as it
        // was at that instant.
        if e.size > SINGLE_READ {
            let now = crate::sys::fstat(&file).map_err(|err| Error::io("stat", &path, err))?;
            if now.key() != opened.key() {
                return Err(changed(&path, "while it was read"));
            }
        }
        if let Some((off, why)) = check.and_then(Checker::finish) {
            self.done.warnings.push(format!(
                "{}: {why} at offset {off}; not modified for {}s, archived as it is",
                e.path,
                live::unix_now() - opened.mtime
            ));
        }
        Ok(digest)
    }

    /// Streams `src` as the member `e`: its digest and its checker.
    fn stream(
        &mut self,
        header: &mut tar::Header,
        e: &Entry,
        src: &mut dyn Read,
        check: Option<Checker>,
    ) -> Result<([u8; 32], Option<Checker>)> {
        let path = self.tree.full(&e.path);
        // Big reads for big files; a small file gets a small buffer (a new
        // one is zeroed whole, and most segments are a few KiB).
        let buffer = (e.size as usize).clamp(8 * 1024, 256 * 1024);
        let mut src = BufReader::with_capacity(
            buffer,
            SourceReader::new(src, &path, e.size, self.progress, check),
        );
        self.tar
            .append_data(header, &e.path, &mut src)
            .map_err(|err| self.on_error.wrap(err))?;
        Ok(src.into_inner().finish())
    }

    /// Ends the tar stream and the zstd stream (explicitly: a failure to
    /// finish is an error, never left to `Drop`).
    pub(super) fn finish(self) -> Result<Done> {
        let wrap = |err| self.on_error.wrap(err);
        let buffered = self.tar.into_inner().map_err(wrap)?;
        let enc = buffered.into_inner().map_err(|e| wrap(e.into_error()))?;
        enc.finish().map_err(wrap)?;
        Ok(self.done)
    }
}
