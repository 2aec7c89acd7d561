//! DATA: decoding the one or more zstd frames between HEAD and SUMS as one
//! stream, stopping exactly at the first byte that is not a zstd frame.

use std::io::{self, Read};

use zstd::zstd_safe::{DCtx, DParameter, InBuffer, OutBuffer, get_error_name};

use crate::error::{Error, Result};
use crate::frame::{MAX_WINDOW_LOG, ZSTD_MAGIC, peek_magic};
use crate::input::{Input, truncated};

/// Reads the decompressed DATA stream. Errors are crate [`Error`]s wrapped
/// in `io::Error::other` (so they survive the tar reader).
pub struct DataDecoder<'a, R> {
    input: &'a mut Input<R>,
    dctx: DCtx<'static>,
    in_frame: bool,
    done: bool,
    frames: u64,
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
        })
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
                    Some(ZSTD_MAGIC) => self.in_frame = true,
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
        self.read_inner(out).map_err(io::Error::other)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::{TAG_SUMS, write_skippable};
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
            Some(crate::frame::SKIPPABLE_MAGIC)
        );
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
