//! A link's data frames in archive order, read forward once (a stream
//! over the archive, whatever it is: a file, an object, an encrypted
//! archive decrypted at offsets), each with where its content sits in
//! the link's tar stream. A window of frames is held: their compressed
//! bytes (to copy them whole) and, once asked for, their content. A frame
//! let go of keeps its place, and is read again at its offset if needed.

use std::collections::VecDeque;
use std::io::{BufReader, Read};
use std::sync::{Arc, Mutex};

use crate::read::input::HashPipe;

use crate::chain::Link;
use crate::error::{Error, Result};
use crate::format::frame::{
    SKIPPABLE_MAGIC, ZSTD_MAGIC, check_single_segment_size, check_window_descriptor,
    parse_block_header, parse_frame_descriptor,
};

/// The most content a data frame may declare (the largest frame a writer
/// makes: `--frame-kib` up to 64 MiB).
const MAX_CONTENT: u64 = 64 << 20;

/// One data frame of a link.
pub struct Frame {
    /// Its archive offset.
    pub at: u64,
    /// Its length in the archive.
    pub len: u64,
    /// Where its content starts in the link's tar stream.
    pub tar_start: u64,
    /// Its content's length.
    pub tar_len: u64,
    bytes: Option<Vec<u8>>,
    content: Option<Vec<u8>>,
}

impl Frame {
    /// Where its content ends in the tar stream.
    pub fn tar_end(&self) -> u64 {
        self.tar_start + self.tar_len
    }

    /// Bytes held for it.
    fn held(&self) -> usize {
        self.bytes.as_ref().map_or(0, Vec::len) + self.content.as_ref().map_or(0, Vec::len)
    }
}

/// A stream that hashes what is read through it (on a thread of its
/// own, beside the copying).
struct Hashed<'l> {
    inner: Box<dyn Read + 'l>,
    hash: Arc<Mutex<HashPipe>>,
}

impl Read for Hashed<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .update(&buf[..n]);
        Ok(n)
    }
}

/// The frames of one link, forward.
pub struct Cursor<'l> {
    link: &'l Link,
    input: BufReader<Box<dyn Read + 'l>>,
    /// With [`Cursor::hashed`]: the SHA-256 of the archive's bytes read
    /// so far, in order (`None` once a restart broke the order).
    hash: Option<Arc<Mutex<HashPipe>>>,
    /// Archive offset and tar position of the next frame to read.
    next_at: u64,
    next_tar: u64,
    window: VecDeque<Frame>,
}

impl<'l> Cursor<'l> {
    /// The data frames of `link`, from the first, read `buffer` bytes
    /// at a time.
    pub fn new(link: &'l Link, buffer: usize) -> Result<Cursor<'l>> {
        let end = link.tail.table_offset;
        let stream = link.src.stream(link.data_at, end)?;
        Ok(Cursor {
            link,
            input: BufReader::with_capacity(buffer, stream),
            hash: None,
            next_at: link.data_at,
            next_tar: 0,
            window: VecDeque::new(),
        })
    }

    /// [`Cursor::new`], hashing the archive as it is read (HEAD first),
    /// so that [`Cursor::finish_hash`] gives its whole SHA-256 without a
    /// second read.
    pub fn hashed(link: &'l Link, buffer: usize) -> Result<Cursor<'l>> {
        let mut head = vec![0u8; link.data_at as usize];
        link.src
            .read_at(0, &mut head)
            .map_err(|e| crate::error::from_io(e, "read", link.src.shown.as_ref()))?;
        let hash = Arc::new(Mutex::new(HashPipe::default()));
        hash.lock().unwrap_or_else(|e| e.into_inner()).update(&head);
        let stream = link.src.stream(link.data_at, link.tail.table_offset)?;
        let mut c = Cursor::new(link, buffer)?;
        c.input = BufReader::with_capacity(
            buffer,
            Box::new(Hashed {
                inner: stream,
                hash: Arc::clone(&hash),
            }),
        );
        c.hash = Some(hash);
        Ok(c)
    }

    /// For a cursor made by [`Cursor::hashed`]: reads the rest of DATA,
    /// then TABLE, META and TAIL, and returns the whole archive's
    /// SHA-256; `None` if the link was read out of order.
    pub fn finish_hash(&mut self) -> Result<Option<[u8; 32]>> {
        let Some(hash) = self.hash.take() else {
            return Ok(None);
        };
        std::io::copy(&mut self.input, &mut std::io::sink()).map_err(|e| self.read_error(e))?;
        let link = self.link;
        let mut end = vec![0u8; (link.src.size - link.tail.table_offset) as usize];
        link.src
            .read_at(link.tail.table_offset, &mut end)
            .map_err(|e| crate::error::from_io(e, "read", link.src.shown.as_ref()))?;
        let mut h = hash.lock().unwrap_or_else(|e| e.into_inner());
        h.update(&end);
        let mark = h.mark(link.src.size);
        h.resolve(mark, std::path::Path::new(&link.src.shown))
            .map(Some)
    }

    /// Reads the next data frame into the window (INDEX frames between
    /// are skipped); false at the end of DATA.
    fn load_next(&mut self) -> Result<bool> {
        let end = self.link.tail.table_offset;
        loop {
            if self.next_at >= end {
                return Ok(false);
            }
            let at = self.next_at;
            let mut magic = [0u8; 4];
            self.read_exact(&mut magic)?;
            match u32::from_le_bytes(magic) {
                SKIPPABLE_MAGIC => {
                    let mut n = [0u8; 4];
                    self.read_exact(&mut n)?;
                    let n = u64::from(u32::from_le_bytes(n));
                    self.skip(n)?;
                    self.next_at += 8 + n;
                }
                ZSTD_MAGIC => {
                    let (bytes, tar_len) = self.read_zstd(at, magic)?;
                    let len = bytes.len() as u64;
                    self.window.push_back(Frame {
                        at,
                        len,
                        tar_start: self.next_tar,
                        tar_len,
                        bytes: Some(bytes),
                        content: None,
                    });
                    self.next_at += len;
                    self.next_tar += tar_len;
                    return Ok(true);
                }
                _ => {
                    return Err(Error::corrupt(format!(
                        "{}: no frame at offset {at} of DATA",
                        self.link.loc
                    )));
                }
            }
        }
    }

    fn read_exact(&mut self, buf: &mut [u8]) -> Result<()> {
        self.input.read_exact(buf).map_err(|e| self.read_error(e))
    }

    fn skip(&mut self, n: u64) -> Result<()> {
        let got = std::io::copy(&mut (&mut self.input).take(n), &mut std::io::sink())
            .map_err(|e| self.read_error(e))?;
        if got != n {
            return Err(self.read_error(std::io::ErrorKind::UnexpectedEof.into()));
        }
        Ok(())
    }

    fn read_error(&self, e: std::io::Error) -> Error {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            return Error::corrupt(format!(
                "{}: DATA ends inside a frame (before TABLE)",
                self.link.loc
            ));
        }
        crate::error::from_io(e, "read", self.link.src.shown.as_ref())
    }

    /// The zstd frame whose magic was read at `at`, whole, and the content
    /// size it declares (which every writer of the format sets).
    fn read_zstd(&mut self, at: u64, magic: [u8; 4]) -> Result<(Vec<u8>, u64)> {
        let mut out = magic.to_vec();
        let mut b = [0u8; 1];
        self.read_exact(&mut b)?;
        out.push(b[0]);
        let d = parse_frame_descriptor(b[0], at)?;
        if d.window_descriptor {
            self.read_exact(&mut b)?;
            out.push(b[0]);
            check_window_descriptor(b[0], at)?;
        }
        let mut fcs = [0u8; 8];
        let n = d.content_size_len;
        self.read_exact(&mut fcs[..n])?;
        out.extend_from_slice(&fcs[..n]);
        if !d.window_descriptor {
            check_single_segment_size(&fcs[..n], at)?;
        }
        if n == 0 {
            return Err(Error::corrupt(format!(
                "{}: the data frame at offset {at} does not declare its content size",
                self.link.loc
            )));
        }
        let content = u64::from_le_bytes(fcs) + if n == 2 { 256 } else { 0 };
        if content == 0 || content > MAX_CONTENT {
            return Err(Error::corrupt(format!(
                "{}: the data frame at offset {at} declares {content} bytes of content",
                self.link.loc
            )));
        }
        loop {
            let mut bh = [0u8; 3];
            self.read_exact(&mut bh)?;
            out.extend_from_slice(&bh);
            let h = parse_block_header(bh, at)?;
            let start = out.len();
            out.resize(start + h.content_len as usize, 0);
            self.read_exact(&mut out[start..])?;
            if out.len() as u64 > 2 * MAX_CONTENT {
                return Err(Error::corrupt(format!(
                    "{}: the data frame at offset {at} is larger than its content allows",
                    self.link.loc
                )));
            }
            if h.last {
                break;
            }
        }
        if d.checksum {
            let mut c = [0u8; 4];
            self.read_exact(&mut c)?;
            out.extend_from_slice(&c);
        }
        Ok((out, content))
    }

    /// The frame at archive offset `at` (a frame that holds a member's
    /// header, as a record says), reading forward to it; its place in the
    /// window. Frames before it that end before `keep` in the tar stream
    /// are let go of; without `keep`, all but the last three.
    pub fn frame_at(&mut self, at: u64, keep: Option<u64>) -> Result<usize> {
        // Behind what was read (a WAL file's tail read, then a member
        // before it): read again from the start.
        let behind = match self.window.front() {
            Some(f) => at < f.at,
            None => at < self.next_at,
        };
        if behind {
            self.restart()?;
        }
        loop {
            if let Some(i) = self.window.iter().position(|f| f.at == at) {
                return Ok(i);
            }
            if self.window.back().is_some_and(|f| f.at > at) || !self.load_next()? {
                return Err(Error::corrupt(format!(
                    "{}: a record names a data frame at offset {at}, which is not where a frame starts (or not after the one before)",
                    self.link.loc
                )));
            }
            match keep {
                Some(p) => self.release(p),
                None => {
                    while self.window.len() > 3 {
                        self.window.pop_front();
                    }
                }
            }
        }
    }

    /// Reads the link again from its first data frame.
    fn restart(&mut self) -> Result<()> {
        let link = self.link;
        let stream = link.src.stream(link.data_at, link.tail.table_offset)?;
        self.input = BufReader::with_capacity(self.input.capacity(), stream);
        // Read out of order: no longer the archive's bytes in order.
        self.hash = None;
        self.next_at = link.data_at;
        self.next_tar = 0;
        self.window.clear();
        Ok(())
    }

    /// The frame that holds tar byte `pos`, reading forward to it; its
    /// place in the window.
    pub fn frame_for(&mut self, pos: u64) -> Result<usize> {
        loop {
            if let Some(i) = self
                .window
                .iter()
                .position(|f| f.tar_start <= pos && pos < f.tar_end())
            {
                return Ok(i);
            }
            if self.window.back().is_some_and(|f| f.tar_start > pos) || !self.load_next()? {
                return Err(Error::corrupt(format!(
                    "{}: its tar stream ends before byte {pos}, which a record needs",
                    self.link.loc
                )));
            }
        }
    }

    /// The frame at place `i` of the window.
    pub fn frame(&self, i: usize) -> &Frame {
        &self.window[i]
    }

    /// Lets go of the frames whose content ends at or before `pos`.
    pub fn release(&mut self, pos: u64) {
        while self.window.front().is_some_and(|f| f.tar_end() <= pos) {
            self.window.pop_front();
        }
    }

    /// Bytes held: the read buffer and the window.
    pub fn held(&self) -> usize {
        self.input.capacity() + self.window.iter().map(Frame::held).sum::<usize>()
    }

    /// The compressed bytes of frame `i`, taken (read again if let go of).
    pub fn take_bytes(&mut self, i: usize) -> Result<Vec<u8>> {
        match self.window[i].bytes.take() {
            Some(b) => Ok(b),
            None => read_again(self.link, &self.window[i]),
        }
    }

    /// The content of frame `i`, decoded once.
    pub fn content(&mut self, i: usize) -> Result<&[u8]> {
        let link = self.link;
        let f = &mut self.window[i];
        if f.content.is_none() {
            let bytes = match &f.bytes {
                Some(b) => std::borrow::Cow::Borrowed(b.as_slice()),
                None => std::borrow::Cow::Owned(read_again(link, f)?),
            };
            let got = zstd::bulk::decompress(&bytes, f.tar_len as usize).map_err(|e| {
                Error::corrupt(format!(
                    "{}: the data frame at offset {} does not decode: {e}",
                    link.loc, f.at
                ))
            })?;
            if got.len() as u64 != f.tar_len {
                return Err(Error::corrupt(format!(
                    "{}: the data frame at offset {} holds {} bytes, not the {} it declares",
                    link.loc,
                    f.at,
                    got.len(),
                    f.tar_len
                )));
            }
            f.content = Some(got);
        }
        Ok(f.content.as_deref().expect("just decoded"))
    }
}

fn read_again(link: &Link, f: &Frame) -> Result<Vec<u8>> {
    let mut b = vec![0u8; f.len as usize];
    link.src
        .read_at(f.at, &mut b)
        .map_err(|e| crate::error::from_io(e, "read", link.src.shown.as_ref()))?;
    Ok(b)
}
