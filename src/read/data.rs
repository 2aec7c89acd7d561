//! DATA: decoding the one or more zstd frames after HEAD as one stream,
//! stopping exactly at the first byte that is not a zstd frame (in a
//! version-2 archive, INDEX frames between data frames are handed to the
//! index side on the way), and knowing which frame each byte came from.

use std::collections::VecDeque;
use std::io::{self, Read, Seek, SeekFrom};

use zstd::zstd_safe::{DCtx, DParameter, InBuffer, OutBuffer, get_error_name};

use crate::error::{Error, Result};
use crate::format::frame::{MAX_WINDOW_LOG, SKIPPABLE_MAGIC, ZSTD_MAGIC, check_skippable_header};
use crate::format::v2::{MAX_BLOCK_BODY, TAG_INDEX};
use crate::read::frames::peek_magic;
use crate::read::index::IndexSide;
use crate::read::input::{Input, truncated};

/// Reads the decompressed DATA stream. Errors are crate [`Error`]s wrapped
/// in `io::Error::other` (so they survive the tar reader).
pub struct DataDecoder<'a, R> {
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
    index: Option<IndexSide<'static>>,
}

impl<'a, R: Read> DataDecoder<'a, R> {
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
        })
    }

    /// Also hands INDEX frames met between data frames to `index`.
    pub fn with_index(mut self, index: IndexSide<'static>) -> Self {
        self.index = Some(index);
        self
    }

    /// The index side, once decoding is over.
    pub fn take_index(&mut self) -> Option<IndexSide<'static>> {
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

    fn start_frame(&mut self) {
        let at = self.input.position();
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
        let at = self.input.position();
        let mut h = [0u8; 16];
        self.input.read_exact(&mut h, "an INDEX frame header")?;
        let len = check_skippable_header(&h, &TAG_INDEX, MAX_BLOCK_BODY, at)?;
        let body = self.input.read_vec(len, "an INDEX frame")?;
        self.index
            .as_mut()
            .expect("only called with an index side")
            .block(at, 16 + len, &body)
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
            if !self.in_frame {
                match peek_magic(self.input)? {
                    Some(ZSTD_MAGIC) => {
                        self.in_frame = true;
                        self.start_frame();
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

impl<R: Read> Read for DataDecoder<'_, R> {
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
impl<R: Read> Seek for DataDecoder<'_, R> {
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
