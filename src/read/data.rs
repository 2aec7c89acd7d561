//! DATA: decoding the one or more zstd frames after HEAD as one stream,
//! stopping exactly at the first byte that is not a zstd frame (in a
//! version-2 archive, INDEX frames between data frames are handed to the
//! index side on the way), and knowing which frame each byte came from.
//!
//! With [`DataDecoder::parallel`], whole frames that are small enough and
//! declare their size are read ahead and decoded by a [`FramePool`], and
//! their bytes are handed out in archive order; INDEX frames read ahead
//! go to the index side in the same order, and anything else (a frame
//! too large, one without a declared size, a truncated or malformed
//! one) is decoded as a stream when it is reached, exactly as without
//! threads. What is read ahead is bounded in frames and in bytes.

use std::collections::VecDeque;
use std::io::{self, Read, Seek, SeekFrom};

use zstd::zstd_safe::{DCtx, DParameter, InBuffer, OutBuffer, get_error_name};

use crate::error::{Error, Result};
use crate::format::frame::{MAX_WINDOW_LOG, SKIPPABLE_MAGIC, ZSTD_MAGIC};
use crate::format::v2::TAG_INDEX;
use crate::read::frames::{peek_frame, peek_magic};
use crate::read::index::{IndexSide, read_index_frame};
use crate::read::input::{Input, MAX_PEEK, truncated};
use crate::read::pool::{DecodeError, Decoded, FramePool};

/// The largest frame decoded apart: compressed, and what it declares.
const MAX_APART_LEN: usize = MAX_PEEK;
const MAX_APART_CONTENT: u64 = 8 * 1024 * 1024;
/// Bytes read ahead (compressed frames, their declared output, INDEX
/// bodies); one item is always admitted.
const AHEAD_BUDGET: usize = 8 * 1024 * 1024;

/// What was read ahead of the stream, in archive order.
enum Item {
    /// A data frame being decoded apart.
    Frame {
        at: u64,
        number: u64,
        cost: usize,
        reply: std::sync::mpsc::Receiver<Decoded>,
    },
    /// An INDEX frame: offset, length and body.
    Index { at: u64, len: u64, body: Vec<u8> },
    /// What reading ahead met, reported when the stream reaches it.
    Failed(Error),
}

/// The read-ahead side of a parallel decoder.
struct Ahead {
    pool: FramePool,
    items: VecDeque<Item>,
    bytes: usize,
    max_items: usize,
    /// Reading ahead stopped at an error.
    failed: bool,
    /// The input offset of a data frame found not to be decoded apart: it
    /// is not looked at again (it is streamed when reached).
    streamed_at: Option<u64>,
}

/// A decoded frame being handed out.
struct Current {
    data: Vec<u8>,
    pos: usize,
}

/// Reads the decompressed DATA stream. Errors are crate [`Error`]s wrapped
/// in `io::Error::other` (so they survive the tar reader).
pub struct DataDecoder<'a, 'i, R> {
    input: &'a mut Input<R>,
    dctx: DCtx<'static>,
    in_frame: bool,
    done: bool,
    frames: u64,
    /// Decompressed bytes handed out (or skipped) so far.
    pos: u64,
    /// Where skipped bytes are decompressed to.
    scratch: Box<[u8]>,
    /// Frames that may hold a header not yet asked about: (first byte's
    /// position in the stream, archive offset).
    starts: VecDeque<(u64, u64)>,
    /// The version-2 index side, when INDEX frames may come between data
    /// frames.
    index: Option<IndexSide<'i>>,
    /// Frames read ahead and decoded apart, when parallel.
    ahead: Option<Ahead>,
    /// The frame decoded apart that is being handed out.
    cur: Option<Current>,
}

impl<'a, 'i, R: Read> DataDecoder<'a, 'i, R> {
    /// Starts decoding at the current position of `input`.
    pub fn new(input: &'a mut Input<R>) -> Result<Self> {
        let mut dctx = DCtx::try_create()
            .ok_or_else(|| Error::Refused("cannot allocate a zstd decoder".into()))?;
        dctx.set_parameter(DParameter::WindowLogMax(MAX_WINDOW_LOG))
            .map_err(|c| Error::Refused(format!("zstd: {}", get_error_name(c))))?;
        Ok(DataDecoder {
            input,
            dctx,
            in_frame: false,
            done: false,
            frames: 0,
            pos: 0,
            scratch: vec![0u8; SCRATCH].into_boxed_slice(),
            starts: VecDeque::new(),
            index: None,
            ahead: None,
            cur: None,
        })
    }

    /// Decodes frames apart on `threads` threads (nothing changes for
    /// fewer than 2, or if no thread starts).
    pub fn parallel(mut self, threads: usize) -> Self {
        if threads >= 2
            && let Some(pool) = FramePool::new(threads)
        {
            let max_items = 2 * pool.threads() + 2;
            self.ahead = Some(Ahead {
                pool,
                items: VecDeque::new(),
                bytes: 0,
                max_items,
                failed: false,
                streamed_at: None,
            });
        }
        self
    }

    /// Also hands INDEX frames met between data frames to `index`.
    pub fn with_index(mut self, index: IndexSide<'i>) -> Self {
        self.index = Some(index);
        self
    }

    /// The index side, once decoding is over.
    pub fn take_index(&mut self) -> Option<IndexSide<'i>> {
        self.index.take()
    }

    /// The frame holding the byte at stream position `p` (at most 512
    /// bytes behind the position reached: a header just read): its
    /// archive offset and `p`'s offset inside it.
    pub fn frame_of(&mut self, p: u64) -> Option<(u64, u64)> {
        while self.starts.len() >= 2 && self.starts[1].0 <= p {
            self.starts.pop_front();
        }
        match self.starts.front() {
            Some(&(start, at)) if start <= p => Some((at, p - start)),
            _ => None,
        }
    }

    fn start_frame(&mut self, at: u64) {
        // A frame that gave no byte holds none: the next one replaces it.
        if self.starts.back().is_some_and(|&(s, _)| s == self.pos) {
            self.starts.pop_back();
        }
        // Frames that ended more than a header ago cannot hold one that
        // is still to be asked about.
        let horizon = self.pos.saturating_sub(512);
        while self.starts.len() >= 2 && self.starts[1].0 <= horizon {
            self.starts.pop_front();
        }
        self.starts.push_back((self.pos, at));
    }

    /// Reads an INDEX frame at the current position into the index side.
    fn index_frame(&mut self) -> Result<()> {
        let (at, len, body) = read_index_frame(self.input)?;
        self.index
            .as_mut()
            .expect("only called with an index side")
            .block(at, len, &body)
    }

    /// Reads frames ahead while the bounds allow: data frames that can be
    /// decoded apart go to the pool, INDEX frames are kept for their turn.
    /// Stops in front of anything else. An error met while items wait is
    /// queued behind them, so errors come out in archive order.
    fn fill_ahead(&mut self) -> Result<()> {
        match self.fill_ahead_inner() {
            Err(e) if self.ahead.as_ref().is_some_and(|a| !a.items.is_empty()) => {
                let ahead = self.ahead.as_mut().expect("checked above");
                ahead.items.push_back(Item::Failed(e));
                ahead.failed = true;
                Ok(())
            }
            r => r,
        }
    }

    fn fill_ahead_inner(&mut self) -> Result<()> {
        loop {
            let Some(ahead) = self.ahead.as_ref() else {
                return Ok(());
            };
            if ahead.failed
                || ahead.items.len() >= ahead.max_items
                || (!ahead.items.is_empty() && ahead.bytes >= AHEAD_BUDGET)
            {
                return Ok(());
            }
            let at = self.input.position();
            if ahead.streamed_at == Some(at) {
                return Ok(());
            }
            match peek_magic(self.input)? {
                Some(ZSTD_MAGIC) => {
                    let Some((len, content)) =
                        peek_frame(self.input, MAX_APART_LEN, MAX_APART_CONTENT)?
                    else {
                        self.ahead.as_mut().expect("checked above").streamed_at = Some(at);
                        return Ok(());
                    };
                    let src = self.input.read_vec(len as u64, "a zstd data frame")?;
                    let ahead = self.ahead.as_mut().expect("checked above");
                    let queued = ahead
                        .items
                        .iter()
                        .filter(|i| matches!(i, Item::Frame { .. }))
                        .count() as u64;
                    let number = self.frames + u64::from(self.cur.is_some()) + queued + 1;
                    let cost = len + content as usize;
                    let reply = ahead.pool.submit(src, content as usize);
                    ahead.bytes += cost;
                    ahead.items.push_back(Item::Frame {
                        at,
                        number,
                        cost,
                        reply,
                    });
                }
                Some(SKIPPABLE_MAGIC) if self.at_index_frame()? => {
                    let item = match read_index_frame(self.input) {
                        Ok((at, len, body)) => Item::Index { at, len, body },
                        Err(e) => Item::Failed(e),
                    };
                    let ahead = self.ahead.as_mut().expect("checked above");
                    match &item {
                        Item::Index { body, .. } => ahead.bytes += body.len(),
                        _ => ahead.failed = true,
                    }
                    ahead.items.push_back(item);
                }
                _ => return Ok(()),
            }
        }
    }

    /// Takes the next item read ahead, if any: a decoded frame becomes the
    /// current one, an INDEX frame goes to the index side. False when
    /// nothing was read ahead.
    fn next_ahead(&mut self) -> Result<bool> {
        self.fill_ahead()?;
        let Some(ahead) = self.ahead.as_mut() else {
            return Ok(false);
        };
        let Some(item) = ahead.items.pop_front() else {
            return Ok(false);
        };
        match item {
            Item::Frame {
                at,
                number,
                cost,
                reply,
            } => {
                ahead.bytes -= cost;
                let data = match reply.recv() {
                    Ok(Ok(data)) => data,
                    Ok(Err(DecodeError::Corrupt(why))) => {
                        return Err(Error::corrupt(format!("zstd data frame {number}: {why}")));
                    }
                    Ok(Err(DecodeError::NoDecoder)) => {
                        return Err(Error::Refused("cannot allocate a zstd decoder".into()));
                    }
                    Err(_) => {
                        return Err(Error::Refused(format!(
                            "a thread decoding zstd data frame {number} failed"
                        )));
                    }
                };
                self.start_frame(at);
                if data.is_empty() {
                    self.frames += 1;
                } else {
                    self.cur = Some(Current { data, pos: 0 });
                }
            }
            Item::Index { at, len, body } => {
                ahead.bytes -= body.len();
                self.index
                    .as_mut()
                    .expect("read ahead only with an index side")
                    .block(at, len, &body)?;
            }
            Item::Failed(e) => return Err(e),
        }
        Ok(true)
    }

    /// Whether the next frame is an INDEX frame this decoder takes.
    fn at_index_frame(&mut self) -> Result<bool> {
        if self.index.is_none() {
            return Ok(false);
        }
        let b = self.input.peek(16)?;
        Ok(b.len() == 16
            && u32::from_le_bytes(b[..4].try_into().unwrap()) == SKIPPABLE_MAGIC
            && b[8..16] == TAG_INDEX)
    }

    /// Frames decoded so far.
    pub fn frames(&self) -> u64 {
        self.frames
    }

    fn read_inner(&mut self, out: &mut [u8]) -> Result<usize> {
        if out.is_empty() {
            return Ok(0);
        }
        loop {
            if self.done {
                return Ok(0);
            }
            if let Some(cur) = self.cur.as_mut() {
                let n = out.len().min(cur.data.len() - cur.pos);
                out[..n].copy_from_slice(&cur.data[cur.pos..cur.pos + n]);
                cur.pos += n;
                if cur.pos == cur.data.len() {
                    self.cur = None;
                    self.frames += 1;
                }
                return Ok(n);
            }
            if !self.in_frame && self.next_ahead()? {
                continue;
            }
            if !self.in_frame {
                match peek_magic(self.input)? {
                    Some(ZSTD_MAGIC) => {
                        self.in_frame = true;
                        let at = self.input.position();
                        self.start_frame(at);
                    }
                    Some(SKIPPABLE_MAGIC) if self.at_index_frame()? => {
                        self.index_frame()?;
                        continue;
                    }
                    _ if self.frames == 0 => {
                        return Err(Error::corrupt("no zstd data frame after HEAD"));
                    }
                    _ => {
                        self.done = true;
                        return Ok(0);
                    }
                }
            }
            let avail = self.input.fill()?;
            if avail.is_empty() {
                return Err(truncated("a zstd data frame"));
            }
            let mut inb = InBuffer::around(avail);
            let mut outb = OutBuffer::around(&mut *out);
            let hint = self
                .dctx
                .decompress_stream(&mut outb, &mut inb)
                .map_err(|c| {
                    Error::corrupt(format!(
                        "zstd data frame {}: {}",
                        self.frames + 1,
                        get_error_name(c)
                    ))
                })?;
            let produced = outb.pos();
            let used = inb.pos();
            self.input.consume(used);
            if hint == 0 {
                self.in_frame = false;
                self.frames += 1;
            }
            if produced > 0 {
                return Ok(produced);
            }
        }
    }
}

impl<R: Read> Read for DataDecoder<'_, '_, R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let n = self.read_inner(out).map_err(io::Error::other)?;
        self.pos += n as u64;
        Ok(n)
    }
}

/// Bytes decompressed at a time when skipping.
const SCRATCH: usize = 4096;

/// Forward only: `SeekFrom::Current(n)` with `n >= 0` decompresses and
/// drops `n` bytes (the tar reader skips member padding this way, instead
/// of zeroing a 32 KiB buffer for every member); anything else is refused.
/// Returns the position in the decompressed stream, like a file would.
impl<R: Read> Seek for DataDecoder<'_, '_, R> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let mut left = match to {
            SeekFrom::Current(delta) if delta >= 0 => delta as u64,
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::Unsupported,
                    "the DATA stream only seeks forward",
                ));
            }
        };
        while left > 0 {
            let n = left.min(SCRATCH as u64) as usize;
            let mut scratch = std::mem::take(&mut self.scratch);
            let got = self.read(&mut scratch[..n]);
            self.scratch = scratch;
            match got? {
                0 => return Err(io::ErrorKind::UnexpectedEof.into()),
                got => left -= got as u64,
            }
        }
        Ok(self.pos)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::frame::{TAG_SUMS, write_skippable};
    use std::path::Path;

    #[test]
    fn decodes_several_frames_and_stops_at_skippable() {
        let mut buf = zstd::encode_all(&b"first "[..], 3).unwrap();
        buf.extend(zstd::encode_all(&b"second"[..], 3).unwrap());
        write_skippable(&mut buf, &TAG_SUMS, b"{}").unwrap();
        let mut input = Input::new(&buf[..], Path::new("t"));
        let mut dec = DataDecoder::new(&mut input).unwrap();
        let mut s = String::new();
        dec.read_to_string(&mut s).unwrap();
        assert_eq!(s, "first second");
        assert_eq!(dec.frames(), 2);
        assert_eq!(
            peek_magic(&mut input).unwrap(),
            Some(crate::format::frame::SKIPPABLE_MAGIC)
        );
    }

    #[test]
    fn seeks_forward_only_and_reports_its_position() {
        let data: Vec<u8> = (0..20_000u32).map(|i| (i % 251) as u8).collect();
        let buf = zstd::encode_all(&data[..], 3).unwrap();
        let mut input = Input::new(&buf[..], Path::new("t"));
        let mut dec = DataDecoder::new(&mut input).unwrap();
        let mut one = [0u8; 3];
        dec.read_exact(&mut one).unwrap();
        assert_eq!(dec.stream_position().unwrap(), 3);
        assert_eq!(dec.seek(SeekFrom::Current(10_000)).unwrap(), 10_003);
        dec.read_exact(&mut one).unwrap();
        assert_eq!(one, data[10_003..10_006]);
        assert!(dec.seek(SeekFrom::Current(-1)).is_err());
        assert!(dec.seek(SeekFrom::Start(0)).is_err());
        let e = dec.seek(SeekFrom::Current(20_000)).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
    }

    #[test]
    fn truncated_and_corrupt_frames_fail() {
        let full = zstd::encode_all(&vec![1u8; 100_000][..], 3).unwrap();
        let mut input = Input::new(&full[..full.len() - 2], Path::new("t"));
        let mut dec = DataDecoder::new(&mut input).unwrap();
        assert!(io::copy(&mut dec, &mut io::sink()).is_err());

        let mut input = Input::new(&b"{not zstd}"[..], Path::new("t"));
        let mut dec = DataDecoder::new(&mut input).unwrap();
        let e = io::copy(&mut dec, &mut io::sink()).unwrap_err();
        assert!(e.to_string().contains("no zstd data frame"), "{e}");
    }
}
