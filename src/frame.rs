//! Frames: the one codec for the skippable frames a writer emits and a reader
//! parses, and a walker that checks zstd frame structure without
//! decompressing (for `verify --quick`).
//!
//! Skippable frame: `u32 LE magic 0x184D2A53 | u32 LE n | 8-byte tag | n-8 bytes of body`.

use std::io::{Read, Write};

use crate::error::{Error, Result};
use crate::input::{Input, truncated};

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

fn tag_name(tag: &[u8; 8]) -> String {
    String::from_utf8_lossy(tag).into_owned()
}

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
    input.read_exact(&mut h, &name)?;
    let magic = u32::from_le_bytes(h[..4].try_into().unwrap());
    if magic != SKIPPABLE_MAGIC {
        return Err(Error::corrupt(format!(
            "expected {name} frame at offset {}, found magic {magic:#010x}",
            input.position() - 16
        )));
    }
    let n = u32::from_le_bytes(h[4..8].try_into().unwrap()) as u64;
    if h[8..16] != tag[..] {
        return Err(Error::corrupt(format!(
            "expected {name} frame at offset {}, found tag {:?}",
            input.position() - 16,
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
    let mut frames = 0u64;
    while peek_magic(input)? == Some(ZSTD_MAGIC) {
        walk_one_frame(input)?;
        frames += 1;
    }
    if frames == 0 {
        return Err(Error::corrupt("no zstd data frame after HEAD"));
    }
    Ok(frames)
}

fn walk_one_frame<R: Read>(input: &mut Input<R>) -> Result<()> {
    let start = input.position();
    input.skip(4, "a zstd frame")?;
    let mut fhd = [0u8; 1];
    input.read_exact(&mut fhd, "a zstd frame header")?;
    let fhd = fhd[0];
    let fcs_flag = fhd >> 6;
    let single_segment = (fhd >> 5) & 1 == 1;
    let reserved = (fhd >> 3) & 1;
    let checksum = (fhd >> 2) & 1 == 1;
    let dict_flag = fhd & 3;
    if reserved != 0 {
        return Err(Error::corrupt(format!(
            "zstd frame at offset {start}: reserved bit set"
        )));
    }
    if dict_flag != 0 {
        return Err(Error::corrupt(format!(
            "zstd frame at offset {start} needs a dictionary"
        )));
    }
    let fcs_len = match fcs_flag {
        0 => usize::from(single_segment),
        1 => 2,
        2 => 4,
        _ => 8,
    };
    if !single_segment {
        let mut wd = [0u8; 1];
        input.read_exact(&mut wd, "a zstd frame header")?;
        let exponent = u32::from(wd[0] >> 3);
        let window_log = 10 + exponent;
        if window_log > MAX_WINDOW_LOG {
            return Err(Error::corrupt(format!(
                "zstd frame at offset {start} asks for a window of 2^{window_log} bytes (limit 2^{MAX_WINDOW_LOG})"
            )));
        }
    } else {
        let mut fcs = [0u8; 8];
        input.read_exact(&mut fcs[..fcs_len], "a zstd frame header")?;
        let size = u64::from_le_bytes(fcs) + if fcs_len == 2 { 256 } else { 0 };
        if size > 1u64 << MAX_WINDOW_LOG {
            return Err(Error::corrupt(format!(
                "zstd frame at offset {start} asks for a window of {size} bytes"
            )));
        }
    }
    if !single_segment {
        input.skip(fcs_len as u64, "a zstd frame header")?;
    }
    loop {
        let mut bh = [0u8; 3];
        input.read_exact(&mut bh, "a zstd block header")?;
        let v = u32::from(bh[0]) | u32::from(bh[1]) << 8 | u32::from(bh[2]) << 16;
        let last = v & 1 == 1;
        let kind = (v >> 1) & 3;
        let size = u64::from(v >> 3);
        if size > 128 * 1024 {
            return Err(Error::corrupt(format!(
                "zstd block of {size} bytes in frame at offset {start} exceeds 128 KiB"
            )));
        }
        match kind {
            0 | 2 => input.skip(size, "a zstd block")?,
            1 => input.skip(1, "a zstd block")?,
            _ => {
                return Err(Error::corrupt(format!(
                    "reserved zstd block type in frame at offset {start}"
                )));
            }
        }
        if last {
            break;
        }
    }
    if checksum {
        input.skip(4, "a zstd frame checksum")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
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
