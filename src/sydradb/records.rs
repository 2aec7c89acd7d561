//! SydraDB's on-disk records: WAL records and SYSEG2 segments (encode and
//! decode), as the server writes and reads them.

/// Bytes in one WAL record: `len u32 (=25) | type u8 | series u64 | ts i64 | value f64 | crc32`.
pub const WAL_RECORD_LEN: usize = 33;
/// Payload bytes covered by the CRC (type through value).
pub const WAL_PAYLOAD_LEN: u32 = 25;
/// Bytes of a SYSEG2 header.
pub const SEGMENT_HEADER_LEN: usize = 44;
/// Longest WAL record payload replay accepts.
pub const MAX_WAL_RECORD: u32 = 1 << 20;
/// The record type byte of a `Put`, the only type replay knows.
pub const WAL_PUT: u8 = 1;

/// CRC-32 (IEEE, as zlib's `crc32`).
///
/// WAL records are small (25-byte payloads, tens of millions per WAL):
/// those are done inline, 8 bytes a step from tables built at compile
/// time; long inputs go to `crc32fast`'s carry-less multiply.
pub fn crc32(data: &[u8]) -> u32 {
    if data.len() >= 128 {
        return crc32fast::hash(data);
    }
    let t = &CRC_TABLES;
    let mut c = !0u32;
    let mut chunks = data.chunks_exact(8);
    for b in &mut chunks {
        let lo = c ^ u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        let hi = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
        c = t[7][(lo & 0xff) as usize]
            ^ t[6][((lo >> 8) & 0xff) as usize]
            ^ t[5][((lo >> 16) & 0xff) as usize]
            ^ t[4][(lo >> 24) as usize]
            ^ t[3][(hi & 0xff) as usize]
            ^ t[2][((hi >> 8) & 0xff) as usize]
            ^ t[1][((hi >> 16) & 0xff) as usize]
            ^ t[0][(hi >> 24) as usize];
    }
    for &b in chunks.remainder() {
        c = t[0][((c ^ u32::from(b)) & 0xff) as usize] ^ (c >> 8);
    }
    !c
}

/// Slicing-by-8 tables for [`crc32`]: `[0]` is the classic byte table,
/// `[k]` advances a byte through `k` more zero bytes.
static CRC_TABLES: [[u32; 256]; 8] = crc_tables();

const fn crc_tables() -> [[u32; 256]; 8] {
    let mut t = [[0u32; 256]; 8];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
            k += 1;
        }
        t[0][i] = c;
        i += 1;
    }
    let mut k = 1;
    while k < 8 {
        let mut i = 0;
        while i < 256 {
            let prev = t[k - 1][i];
            t[k][i] = t[0][(prev & 0xff) as usize] ^ (prev >> 8);
            i += 1;
        }
        k += 1;
    }
    t
}

/// One WAL `Put` record.
pub fn wal_record(series_id: u64, ts: i64, value: f64) -> [u8; WAL_RECORD_LEN] {
    let mut r = [0u8; WAL_RECORD_LEN];
    r[..4].copy_from_slice(&WAL_PAYLOAD_LEN.to_le_bytes());
    r[4] = WAL_PUT;
    r[5..13].copy_from_slice(&series_id.to_le_bytes());
    r[13..21].copy_from_slice(&ts.to_le_bytes());
    r[21..29].copy_from_slice(&value.to_bits().to_le_bytes());
    let crc = crc32(&r[4..29]);
    r[29..].copy_from_slice(&crc.to_le_bytes());
    r
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Encodes a SYSEG2 segment of `points` (time-ordered, all in `hour`).
pub fn encode_segment(series_id: u64, hour: i64, points: &[(i64, f64)]) -> Vec<u8> {
    let start = points.first().map_or(0, |p| p.0);
    let end = points.last().map_or(0, |p| p.0);
    let mut out = Vec::with_capacity(SEGMENT_HEADER_LEN + points.len() * 4);
    out.extend_from_slice(b"SYSEG2");
    out.extend_from_slice(&series_id.to_le_bytes());
    out.extend_from_slice(&hour.to_le_bytes());
    out.extend_from_slice(&(points.len() as u32).to_le_bytes());
    out.extend_from_slice(&start.to_le_bytes());
    out.extend_from_slice(&end.to_le_bytes());
    out.extend_from_slice(&[1, 1]);
    let (mut prev_ts, mut prev_delta) = (start, 0i64);
    for &(ts, _) in points {
        let delta = ts - prev_ts;
        put_varint(&mut out, zigzag(delta - prev_delta));
        prev_delta = delta;
        prev_ts = ts;
    }
    let mut prev: Option<u64> = None;
    for &(_, v) in points {
        let bits = v.to_bits();
        match prev {
            None => {
                out.push(2);
                out.extend_from_slice(&bits.to_le_bytes());
            }
            Some(p) if p == bits => out.push(0),
            Some(p) => {
                let x = p ^ bits;
                let (lz, tz) = (x.leading_zeros(), x.trailing_zeros());
                let nbytes = (64 - lz - tz).div_ceil(8) as usize;
                out.extend_from_slice(&[1, lz as u8, tz as u8, nbytes as u8]);
                out.extend_from_slice(&(x >> tz).to_le_bytes()[..nbytes]);
            }
        }
        prev = Some(bits);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sydradb::check::decode_segment;

    #[test]
    fn crc_matches_zlib() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
        // Every length through the inline path and past it, against
        // crc32fast.
        let data: Vec<u8> = (0..300u32).map(|i| (i * 131 + 7) as u8).collect();
        for n in 0..data.len() {
            for start in [0, 1, 5] {
                let d = &data[start..n.max(start)];
                assert_eq!(crc32(d), crc32fast::hash(d), "length {}", d.len());
            }
        }
    }

    #[test]
    fn segment_round_trip() {
        let pts: Vec<(i64, f64)> = (0..360)
            .map(|i| {
                (
                    3600 + i * 10,
                    if i % 3 == 0 {
                        19.5
                    } else {
                        19.5 + i as f64 * 0.01
                    },
                )
            })
            .collect();
        let b = encode_segment(0x9000_0000_0000_0001, 3600, &pts);
        let s = decode_segment(&b).unwrap();
        assert_eq!(s.points, pts);
        assert_eq!(s.hour, 3600);
        assert!(decode_segment(&b[..b.len() - 1]).is_err());
        let one = encode_segment(1, 0, &[(5, 1.0)]);
        assert_eq!(one.len(), 54); // the smallest segment seen on a real server
    }
}
