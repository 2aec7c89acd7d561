//! Reading frames from the archive stream: skippable frames by tag, and
//! the walk over DATA's zstd frames that checks every frame and block
//! header without decompressing (for `verify --quick`). The byte-level
//! rules are in [`crate::format::frame`].

use std::io::Read;

use crate::error::{Error, Result};
use crate::format::frame::{
    ZSTD_MAGIC, check_single_segment_size, check_skippable_header, check_window_descriptor,
    parse_block_header, parse_frame_descriptor, tag_name,
};
use crate::read::input::{Input, MAX_PEEK, truncated};

/// Reads the 16-byte opening of a skippable frame that must carry `tag`, and
/// returns its body length after checking it against `max`.
pub fn read_skippable_header<R: Read>(
    input: &mut Input<R>,
    tag: &[u8; 8],
    max: u64,
) -> Result<u64> {
    let name = tag_name(tag);
    let mut h = [0u8; 16];
    let got = input.peek(16)?.len();
    if got < 16 {
        if got == 0 {
            return Err(Error::corrupt(format!(
                "missing {name} frame: archive ends"
            )));
        }
        return Err(truncated(&format!("the {name} frame header")));
    }
    let at = input.position();
    input.read_exact(&mut h, &name)?;
    check_skippable_header(&h, tag, max, at)
}

/// Reads a whole skippable frame with `tag` and returns its body.
pub fn read_skippable<R: Read>(input: &mut Input<R>, tag: &[u8; 8], max: u64) -> Result<Vec<u8>> {
    let len = read_skippable_header(input, tag, max)?;
    input.read_vec(len, &tag_name(tag))
}

/// Reads the magic number at the current position without consuming it, or
/// `None` at EOF (fewer than 4 bytes left).
pub fn peek_magic<R: Read>(input: &mut Input<R>) -> Result<Option<u32>> {
    let b = input.peek(4)?;
    if b.len() < 4 {
        return Ok(None);
    }
    Ok(Some(u32::from_le_bytes(b.try_into().unwrap())))
}

/// Walks the zstd frames of DATA without decompressing them: checks every
/// frame header (no dictionary, window at most 128 MiB, no reserved bits) and
/// every block header, and skips block contents. Returns the number of
/// frames. Stops in front of the first non-zstd frame.
pub fn walk_zstd_frames<R: Read>(input: &mut Input<R>) -> Result<u64> {
    let frames = walk_zstd_run(input)?;
    if frames == 0 {
        return Err(Error::corrupt("no zstd data frame after HEAD"));
    }
    Ok(frames)
}

/// [`walk_zstd_frames`] of a run that may be empty (between INDEX frames).
pub fn walk_zstd_run<R: Read>(input: &mut Input<R>) -> Result<u64> {
    let mut frames = 0u64;
    while peek_magic(input)? == Some(ZSTD_MAGIC) {
        walk_one_frame(input)?;
        frames += 1;
    }
    Ok(frames)
}

fn walk_one_frame<R: Read>(input: &mut Input<R>) -> Result<()> {
    let at = input.position();
    input.skip(4, "a zstd frame")?;
    let d = parse_frame_descriptor(read_byte(input, "a zstd frame header")?, at)?;
    if d.window_descriptor {
        check_window_descriptor(read_byte(input, "a zstd frame header")?, at)?;
        input.skip(d.content_size_len as u64, "a zstd frame header")?;
    } else {
        let mut fcs = [0u8; 8];
        input.read_exact(&mut fcs[..d.content_size_len], "a zstd frame header")?;
        check_single_segment_size(&fcs[..d.content_size_len], at)?;
    }
    loop {
        let mut bh = [0u8; 3];
        input.read_exact(&mut bh, "a zstd block header")?;
        let b = parse_block_header(bh, at)?;
        input.skip(b.content_len, "a zstd block")?;
        if b.last {
            break;
        }
    }
    if d.checksum {
        input.skip(4, "a zstd frame checksum")?;
    }
    Ok(())
}

/// Finds, without consuming anything, the length of the zstd frame at the
/// current position and the content size it declares, when the frame is
/// a single-segment frame (its window is its content, so decoding it in
/// one shot accepts exactly what a stream does; the writer's frames all
/// are), whole in the next `max_len` bytes (at most [`MAX_PEEK`]), well
/// formed (the checks of [`walk_zstd_frames`]) and declares a content size
/// of at most `max_content`. `None` otherwise: the frame is then decoded
/// as a stream, which reports whatever is wrong with it.
pub fn peek_frame<R: Read>(
    input: &mut Input<R>,
    max_len: usize,
    max_content: u64,
) -> Result<Option<(usize, u64)>> {
    let h = input.peek(18)?;
    if h.len() < 6 || u32::from_le_bytes(h[..4].try_into().unwrap()) != ZSTD_MAGIC {
        return Ok(None);
    }
    let Ok(d) = parse_frame_descriptor(h[4], 0) else {
        return Ok(None);
    };
    let max_len = max_len.min(MAX_PEEK);
    let mut off = 5;
    if d.window_descriptor {
        return Ok(None);
    }
    let n = d.content_size_len;
    if n == 0 || h.len() < off + n {
        return Ok(None);
    }
    let mut b = [0u8; 8];
    b[..n].copy_from_slice(&h[off..off + n]);
    let content = u64::from_le_bytes(b) + if n == 2 { 256 } else { 0 };
    if content > max_content {
        return Ok(None);
    }
    off += n;
    loop {
        if off + 3 > max_len {
            return Ok(None);
        }
        let p = input.peek(off + 3)?;
        if p.len() < off + 3 {
            return Ok(None);
        }
        let Ok(b) = parse_block_header(p[off..off + 3].try_into().unwrap(), 0) else {
            return Ok(None);
        };
        off += 3 + b.content_len as usize;
        if off > max_len {
            return Ok(None);
        }
        if b.last {
            break;
        }
    }
    if d.checksum {
        off += 4;
    }
    if off > max_len || input.peek(off)?.len() < off {
        return Ok(None);
    }
    Ok(Some((off, content)))
}

fn read_byte<R: Read>(input: &mut Input<R>, what: &str) -> Result<u8> {
    let mut b = [0u8; 1];
    input.read_exact(&mut b, what)?;
    Ok(b[0])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::frame::{
        MAX_HEAD_BODY, SKIPPABLE_MAGIC, TAG_HEAD, TAG_SUMS, skippable_header, write_skippable,
    };
    use std::path::Path;

    #[test]
    fn skippable_round_trip() {
        let mut buf = Vec::new();
        write_skippable(&mut buf, &TAG_HEAD, b"{}").unwrap();
        assert_eq!(&buf[..4], &[0x53, 0x2A, 0x4D, 0x18]);
        assert_eq!(&buf[4..8], &10u32.to_le_bytes());
        assert_eq!(&buf[8..16], b"SYDRHEAD");
        let mut input = Input::new(&buf[..], Path::new("t"));
        assert_eq!(read_skippable(&mut input, &TAG_HEAD, 100).unwrap(), b"{}");
    }

    #[test]
    fn wrong_tag_and_absurd_length_are_refused() {
        let mut buf = Vec::new();
        write_skippable(&mut buf, &TAG_SUMS, b"{}").unwrap();
        let mut input = Input::new(&buf[..], Path::new("t"));
        let e = read_skippable(&mut input, &TAG_HEAD, 100).unwrap_err();
        assert!(
            e.is_archive_fault() && e.to_string().contains("SYDRSUMS"),
            "{e}"
        );

        let mut h = skippable_header(&TAG_HEAD, 0).unwrap();
        h[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        let mut input = Input::new(&h[..], Path::new("t"));
        let e = read_skippable(&mut input, &TAG_HEAD, MAX_HEAD_BODY).unwrap_err();
        assert!(e.to_string().contains("exceeds the limit"), "{e}");
    }

    #[test]
    fn walker_accepts_real_frames_and_counts_them() {
        let mut buf = zstd::encode_all(&b"hello hello hello"[..], 3).unwrap();
        buf.extend(zstd::encode_all(&vec![7u8; 300_000][..], 1).unwrap());
        write_skippable(&mut buf, &TAG_SUMS, b"x").unwrap();
        let mut input = Input::new(&buf[..], Path::new("t"));
        assert_eq!(walk_zstd_frames(&mut input).unwrap(), 2);
        assert_eq!(peek_magic(&mut input).unwrap(), Some(SKIPPABLE_MAGIC));
    }

    #[test]
    fn a_frame_is_peeked_whole_or_not_at_all() {
        let data = vec![9u8; 300_000];
        let mut buf = zstd::bulk::compress(&data, 3).unwrap();
        let len = buf.len();
        buf.extend(b"after");
        let mut input = Input::new(&buf[..], Path::new("t"));
        assert_eq!(
            peek_frame(&mut input, 1 << 20, 1 << 20).unwrap(),
            Some((len, 300_000))
        );
        assert_eq!(input.position(), 0);
        // Too long, too large, truncated, or no declared size: streamed.
        assert_eq!(peek_frame(&mut input, len - 1, 1 << 20).unwrap(), None);
        assert_eq!(peek_frame(&mut input, 1 << 20, 299_999).unwrap(), None);
        let mut input = Input::new(&buf[..len - 1], Path::new("t"));
        assert_eq!(peek_frame(&mut input, 1 << 20, 1 << 20).unwrap(), None);
        let mut streamed = Vec::new();
        let mut enc = zstd::Encoder::new(&mut streamed, 3).unwrap();
        std::io::Write::write_all(&mut enc, &data).unwrap();
        enc.finish().unwrap();
        let mut input = Input::new(&streamed[..], Path::new("t"));
        assert_eq!(peek_frame(&mut input, 1 << 20, 1 << 20).unwrap(), None);
        // Empty raw blocks up to the peek limit and past it: never a peek
        // over the limit (which would panic), the frame is streamed.
        let mut f = ZSTD_MAGIC.to_le_bytes().to_vec();
        f.extend([0x20, 0x00]); // single segment, 1-byte size 0
        let blocks = MAX_PEEK / 3 + 2;
        f.extend(std::iter::repeat_n([0u8, 0, 0], blocks).flatten());
        f.extend([1u8, 0, 0]); // last, raw, empty
        let mut input = Input::new(&f[..], Path::new("t"));
        assert_eq!(peek_frame(&mut input, MAX_PEEK, 1 << 20).unwrap(), None);
        // A frame with a window descriptor (not single segment): streamed.
        let mut f = ZSTD_MAGIC.to_le_bytes().to_vec();
        f.extend([0x40, 0x00, 0x05, 0x00, 1, 0, 0]);
        let mut input = Input::new(&f[..], Path::new("t"));
        assert_eq!(peek_frame(&mut input, 1 << 20, 1 << 20).unwrap(), None);
    }

    #[test]
    fn walker_refuses_huge_window_and_truncation() {
        // Frame header: magic, FHD = 0 (no single segment), window descriptor
        // with exponent 20 -> window log 30.
        let mut buf = ZSTD_MAGIC.to_le_bytes().to_vec();
        buf.extend([0x00, 20 << 3]);
        let mut input = Input::new(&buf[..], Path::new("t"));
        let e = walk_zstd_frames(&mut input).unwrap_err();
        assert!(e.to_string().contains("window"), "{e}");

        let full = zstd::encode_all(&b"some data to compress"[..], 3).unwrap();
        let cut = &full[..full.len() - 3];
        let mut input = Input::new(cut, Path::new("t"));
        assert!(
            walk_zstd_frames(&mut input)
                .unwrap_err()
                .to_string()
                .contains("truncated")
        );
    }
}
