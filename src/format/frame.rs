//! Frames: the one codec for the skippable frames a writer emits and a
//! reader parses, and the checks of zstd frame and block headers that
//! `verify --quick` applies without decompressing. Pure functions on bytes;
//! the reading engine feeds them.
//!
//! Skippable frame: `u32 LE magic 0x184D2A53 | u32 LE n | 8-byte tag | n-8 bytes of body`.

use std::io::Write;

use crate::error::{Error, Result};

/// The skippable-frame magic number this format uses.
pub const SKIPPABLE_MAGIC: u32 = 0x184D_2A53;
/// The magic number of a regular zstd frame.
pub const ZSTD_MAGIC: u32 = 0xFD2F_B528;
/// Tag of the header frame.
pub const TAG_HEAD: [u8; 8] = *b"SYDRHEAD";
/// Tag of the per-file checksum frame.
pub const TAG_SUMS: [u8; 8] = *b"SYDRSUMS";
/// Tag of the footer frame.
pub const TAG_FOOT: [u8; 8] = *b"SYDRFOOT";
/// Largest HEAD body (JSON) a writer emits and a reader accepts.
pub const MAX_HEAD_BODY: u64 = 16 * 1024 * 1024;
/// Largest SUMS body (JSON) a writer emits and a reader accepts.
pub const MAX_SUMS_BODY: u64 = 64 * 1024 * 1024;
/// Largest zstd window a reader accepts (log2): 128 MiB.
pub const MAX_WINDOW_LOG: u32 = 27;

/// The 16 bytes that open a skippable frame with `tag` and a body of `body_len` bytes.
pub fn skippable_header(tag: &[u8; 8], body_len: usize) -> Result<[u8; 16]> {
    let n = u32::try_from(body_len + 8)
        .map_err(|_| Error::Refused(format!("frame body of {body_len} bytes is too large")))?;
    let mut h = [0u8; 16];
    h[..4].copy_from_slice(&SKIPPABLE_MAGIC.to_le_bytes());
    h[4..8].copy_from_slice(&n.to_le_bytes());
    h[8..].copy_from_slice(tag);
    Ok(h)
}

/// Writes one skippable frame.
pub fn write_skippable<W: Write>(w: &mut W, tag: &[u8; 8], body: &[u8]) -> std::io::Result<()> {
    let h = skippable_header(tag, body.len()).map_err(std::io::Error::other)?;
    w.write_all(&h)?;
    w.write_all(body)
}

/// Writes one skippable frame whose body is `value` as compact JSON,
/// without building the JSON in memory: it is serialized once to count its
/// length (the frame header comes first) and once more to write it.
/// Refuses a body over `max` bytes before writing anything.
pub fn write_skippable_json<W: Write, T: serde::Serialize>(
    w: &mut W,
    tag: &[u8; 8],
    value: &T,
    max: u64,
) -> std::io::Result<u64> {
    struct Count(u64);
    impl Write for Count {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0 += b.len() as u64;
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    serde_json::to_writer(&mut count, value)?;
    let len = count.0;
    if len > max {
        return Err(std::io::Error::other(Error::Refused(format!(
            "{} frame of {len} bytes is over the format's limit of {max} bytes",
            tag_name(tag)
        ))));
    }
    let h = skippable_header(tag, len as usize).map_err(std::io::Error::other)?;
    let mut bw = std::io::BufWriter::with_capacity(64 * 1024, &mut *w);
    bw.write_all(&h)?;
    serde_json::to_writer(&mut bw, value)?;
    bw.flush()?;
    Ok(len)
}

/// A frame tag as text, for messages.
pub fn tag_name(tag: &[u8; 8]) -> String {
    String::from_utf8_lossy(tag).into_owned()
}

/// Checks the 16-byte opening `h` of a skippable frame found at offset `at`
/// that must carry `tag`, and returns its body length, at most `max`.
pub fn check_skippable_header(h: &[u8; 16], tag: &[u8; 8], max: u64, at: u64) -> Result<u64> {
    let name = tag_name(tag);
    let magic = u32::from_le_bytes(h[..4].try_into().unwrap());
    if magic != SKIPPABLE_MAGIC {
        return Err(Error::corrupt(format!(
            "expected {name} frame at offset {at}, found magic {magic:#010x}"
        )));
    }
    let n = u32::from_le_bytes(h[4..8].try_into().unwrap()) as u64;
    if h[8..16] != tag[..] {
        return Err(Error::corrupt(format!(
            "expected {name} frame at offset {at}, found tag {:?}",
            String::from_utf8_lossy(&h[8..16])
        )));
    }
    if n < 8 {
        return Err(Error::corrupt(format!(
            "{name} frame length {n} is shorter than its tag"
        )));
    }
    let body = n - 8;
    if body > max {
        return Err(Error::corrupt(format!(
            "{name} frame body of {body} bytes exceeds the limit of {max} bytes"
        )));
    }
    Ok(body)
}

/// What a zstd frame header descriptor byte says about the bytes after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameDescriptor {
    /// A window descriptor byte follows (not a single-segment frame).
    pub window_descriptor: bool,
    /// Bytes of the frame content size field.
    pub content_size_len: usize,
    /// A 4-byte content checksum ends the frame.
    pub checksum: bool,
}

/// Checks a zstd frame header descriptor (at frame offset `at`): no
/// reserved bit, no dictionary.
pub fn parse_frame_descriptor(fhd: u8, at: u64) -> Result<FrameDescriptor> {
    let single_segment = (fhd >> 5) & 1 == 1;
    if (fhd >> 3) & 1 != 0 {
        return Err(Error::corrupt(format!(
            "zstd frame at offset {at}: reserved bit set"
        )));
    }
    if fhd & 3 != 0 {
        return Err(Error::corrupt(format!(
            "zstd frame at offset {at} needs a dictionary"
        )));
    }
    Ok(FrameDescriptor {
        window_descriptor: !single_segment,
        content_size_len: match fhd >> 6 {
            0 => usize::from(single_segment),
            1 => 2,
            2 => 4,
            _ => 8,
        },
        checksum: (fhd >> 2) & 1 == 1,
    })
}

/// Checks a window descriptor byte: the window is at most
/// 2^[`MAX_WINDOW_LOG`] bytes.
pub fn check_window_descriptor(wd: u8, at: u64) -> Result<()> {
    // Window = 2^(10 + exponent) plus mantissa eighths of it.
    let base = 1u64 << (10 + u32::from(wd >> 3));
    let window = base + base / 8 * u64::from(wd & 7);
    if window > 1u64 << MAX_WINDOW_LOG {
        return Err(Error::corrupt(format!(
            "zstd frame at offset {at} asks for a window of {window} bytes (limit 2^{MAX_WINDOW_LOG})"
        )));
    }
    Ok(())
}

/// Checks the content size of a single-segment frame (its window): at most
/// 2^[`MAX_WINDOW_LOG`] bytes. `fcs` holds the field's bytes.
pub fn check_single_segment_size(fcs: &[u8], at: u64) -> Result<()> {
    let mut b = [0u8; 8];
    b[..fcs.len()].copy_from_slice(fcs);
    let size = u64::from_le_bytes(b) + if fcs.len() == 2 { 256 } else { 0 };
    if size > 1u64 << MAX_WINDOW_LOG {
        return Err(Error::corrupt(format!(
            "zstd frame at offset {at} asks for a window of {size} bytes"
        )));
    }
    Ok(())
}

/// A zstd block header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockHeader {
    /// The frame's last block.
    pub last: bool,
    /// Bytes of block content that follow the header.
    pub content_len: u64,
}

/// Checks a 3-byte zstd block header in the frame at offset `at`: a known
/// block type, at most 128 KiB.
pub fn parse_block_header(bh: [u8; 3], at: u64) -> Result<BlockHeader> {
    let v = u32::from(bh[0]) | u32::from(bh[1]) << 8 | u32::from(bh[2]) << 16;
    let size = u64::from(v >> 3);
    if size > 128 * 1024 {
        return Err(Error::corrupt(format!(
            "zstd block of {size} bytes in frame at offset {at} exceeds 128 KiB"
        )));
    }
    let content_len = match (v >> 1) & 3 {
        0 | 2 => size,
        1 => 1,
        _ => {
            return Err(Error::corrupt(format!(
                "reserved zstd block type in frame at offset {at}"
            )));
        }
    };
    Ok(BlockHeader {
        last: v & 1 == 1,
        content_len,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streamed_json_frame_equals_buffered_one() {
        let v = serde_json::json!({"files": [{"path": "MANIFEST", "size": 3}]});
        let mut a = Vec::new();
        write_skippable_json(&mut a, &TAG_SUMS, &v, 1000).unwrap();
        let mut b = Vec::new();
        write_skippable(&mut b, &TAG_SUMS, &serde_json::to_vec(&v).unwrap()).unwrap();
        assert_eq!(a, b);
        let mut c = Vec::new();
        assert!(write_skippable_json(&mut c, &TAG_SUMS, &v, 10).is_err());
        assert!(c.is_empty(), "nothing written when over the limit");
    }

    #[test]
    fn headers_are_checked() {
        let h = skippable_header(&TAG_HEAD, 2).unwrap();
        assert_eq!(check_skippable_header(&h, &TAG_HEAD, 10, 0).unwrap(), 2);
        assert!(check_skippable_header(&h, &TAG_SUMS, 10, 0).is_err());
        assert!(check_skippable_header(&h, &TAG_HEAD, 1, 0).is_err());
        assert!(parse_frame_descriptor(0b0000_1000, 0).is_err());
        assert!(parse_frame_descriptor(0b0000_0001, 0).is_err());
        assert!(check_window_descriptor(20 << 3, 0).is_err());
        assert!(check_window_descriptor(17 << 3, 0).is_ok());
        // 2^27 plus 7/8 of it: over the limit.
        assert!(check_window_descriptor((17 << 3) | 7, 0).is_err());
        assert!(check_window_descriptor((16 << 3) | 7, 0).is_ok());
        assert!(parse_block_header([0b110, 0, 0], 0).is_err());
        let b = parse_block_header([0b011 | (5 << 3), 0, 0], 0).unwrap();
        assert_eq!((b.last, b.content_len), (true, 1));
    }
}
