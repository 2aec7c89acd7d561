//! Segment files (SYSEG2, SYSEG1) decoded byte by byte: the header, the
//! timestamp varints, the values, nothing after; checked, or decoded into
//! points.

use super::Problem;

/// A SYSEG2/SYSEG1 segment, decoded byte by byte: header, `count`
/// timestamp varints, `count` values, nothing after.
#[derive(Debug, Default)]
pub struct SegmentStream {
    /// Bytes consumed.
    pos: u64,
    header: Vec<u8>,
    header_len: usize,
    count: u64,
    series_id: u64,
    hour: i64,
    /// Timestamps and values done.
    ts_done: u64,
    vals_done: u64,
    varint: (u64, u32),
    /// Current value: marker offset, marker, bytes gathered.
    val: Option<(u64, u8, [u8; 11], usize)>,
    /// Decoding (not only checking): timestamps, points.
    collect: bool,
    prev_ts: (i64, i64),
    ts: Vec<i64>,
    points: Vec<(i64, f64)>,
    prev_bits: u64,
}

/// A decoded segment header and its points.
#[derive(Debug, Clone, PartialEq)]
pub struct Segment {
    /// Series id.
    pub series_id: u64,
    /// Hour bucket.
    pub hour: i64,
    /// `(ts, value)` points.
    pub points: Vec<(i64, f64)>,
}

/// Decodes a whole segment; the error is the offset and reason of the
/// first problem.
pub fn decode_segment(b: &[u8]) -> Result<Segment, Problem> {
    let mut s = SegmentStream {
        collect: true,
        ..SegmentStream::default()
    };
    if let Some(p) = s.feed(b) {
        return Err(p);
    }
    s.finish()
}

impl SegmentStream {
    pub(super) fn feed(&mut self, mut data: &[u8]) -> Option<Problem> {
        let bad = |off: u64, why: &str| Some((off, why.to_string()));
        while !data.is_empty() {
            if self.header_len == 0 || self.header.len() < self.header_len {
                let want = if self.header.len() < 6 {
                    6
                } else {
                    self.header_len
                };
                let n = (want - self.header.len()).min(data.len());
                self.header.extend_from_slice(&data[..n]);
                data = &data[n..];
                self.pos += n as u64;
                if self.header.len() == 6 && self.header_len == 0 {
                    self.header_len = match &self.header[..] {
                        b"SYSEG2" => crate::sydradb::SEGMENT_HEADER_LEN,
                        b"SYSEG1" => 42,
                        _ => return bad(0, "not a SYSEG2/SYSEG1 header"),
                    };
                }
                if self.header_len > 0 && self.header.len() == self.header_len {
                    let h = &self.header;
                    let u64_at = |o: usize| u64::from_le_bytes(h[o..o + 8].try_into().unwrap());
                    self.series_id = u64_at(6);
                    self.hour = u64_at(14) as i64;
                    self.count = u64::from(u32::from_le_bytes(h[22..26].try_into().unwrap()));
                    self.prev_ts = (u64_at(26) as i64, 0);
                }
                continue;
            }
            if self.ts_done < self.count && !self.collect {
                // Checking only: the varints' lengths are all that
                // matters, in one tight pass over the chunk.
                let mut i = 0;
                let mut shift = self.varint.1;
                while i < data.len() && self.ts_done < self.count {
                    let byte = data[i];
                    i += 1;
                    if shift > 63 {
                        return bad(self.pos + i as u64, "varint too long");
                    }
                    shift += 7;
                    if byte & 0x80 == 0 {
                        shift = 0;
                        self.ts_done += 1;
                    }
                }
                self.varint.1 = shift;
                self.pos += i as u64;
                data = &data[i..];
                continue;
            }
            if self.vals_done < self.count && !self.collect && self.val.is_none() {
                // Checking only: whole values in place.
                let mut i = 0;
                while self.vals_done < self.count {
                    let Some(&m) = data.get(i) else { break };
                    let len = match m {
                        0 if self.vals_done > 0 => 1,
                        2 => 9,
                        1 => match data.get(i + 3) {
                            Some(&n) if n <= 8 => 4 + n as usize,
                            _ => break,
                        },
                        _ => break,
                    };
                    if data.len() - i < len {
                        break;
                    }
                    i += len;
                    self.vals_done += 1;
                }
                if i > 0 {
                    self.pos += i as u64;
                    data = &data[i..];
                    continue;
                }
            }
            if self.ts_done < self.count {
                let byte = data[0];
                data = &data[1..];
                self.pos += 1;
                let (v, shift) = &mut self.varint;
                if *shift > 63 {
                    return bad(self.pos, "varint too long");
                }
                *v |= u64::from(byte & 0x7f) << *shift;
                *shift += 7;
                if byte & 0x80 == 0 {
                    let v = std::mem::take(&mut self.varint).0;
                    self.ts_done += 1;
                    if self.collect {
                        let z = ((v >> 1) as i64) ^ -((v & 1) as i64);
                        let delta = self.prev_ts.1.wrapping_add(z);
                        let ts = self.prev_ts.0.wrapping_add(delta);
                        self.prev_ts = (ts, delta);
                        self.ts.push(ts);
                    }
                }
                continue;
            }
            if self.vals_done < self.count {
                let (at, marker, mut buf, mut got) = match self.val.take() {
                    Some(v) => v,
                    None => {
                        let m = data[0];
                        data = &data[1..];
                        self.pos += 1;
                        let first = self.vals_done == 0;
                        if !(matches!(m, 1 | 2) || m == 0 && !first) {
                            return bad(self.pos - 1, "bad value marker or truncated value");
                        }
                        (self.pos - 1, m, [0u8; 11], 0)
                    }
                };
                // Bytes after the marker: 8 raw, or lz, tz, n and n bytes.
                let need = match marker {
                    2 => 8,
                    1 if got >= 3 => {
                        if buf[2] > 8 {
                            return bad(at, "bad value marker or truncated value");
                        }
                        3 + buf[2] as usize
                    }
                    1 => 3,
                    _ => 0,
                };
                let n = (need - got).min(data.len());
                buf[got..got + n].copy_from_slice(&data[..n]);
                got += n;
                data = &data[n..];
                self.pos += n as u64;
                let complete = got == need && !(marker == 1 && got == 3 && buf[2] > 0);
                if marker == 1 && got == 3 && buf[2] > 8 {
                    return bad(at, "bad value marker or truncated value");
                }
                if !complete {
                    self.val = Some((at, marker, buf, got));
                    continue;
                }
                let bits = match marker {
                    2 => u64::from_le_bytes(buf[..8].try_into().unwrap()),
                    0 => self.prev_bits,
                    _ => {
                        let (tz, n) = (u32::from(buf[1]), buf[2] as usize);
                        let mut x = [0u8; 8];
                        x[..n].copy_from_slice(&buf[3..3 + n]);
                        self.prev_bits ^ u64::from_le_bytes(x).checked_shl(tz).unwrap_or(0)
                    }
                };
                self.prev_bits = bits;
                if self.collect {
                    let ts = self.ts[self.vals_done as usize];
                    self.points.push((ts, f64::from_bits(bits)));
                }
                self.vals_done += 1;
                continue;
            }
            return bad(self.pos, "trailing bytes after the last value");
        }
        None
    }

    pub(super) fn finish(self) -> Result<Segment, Problem> {
        let bad = |off: u64, why: &str| Err((off, why.to_string()));
        if self.header.len() < 42 {
            return bad(0, "not a SYSEG2/SYSEG1 header");
        }
        if self.header.len() < self.header_len {
            return bad(0, "short header");
        }
        if self.ts_done < self.count {
            return bad(self.pos, "truncated timestamp varint");
        }
        if let Some((at, ..)) = self.val {
            return bad(at, "bad value marker or truncated value");
        }
        if self.vals_done < self.count {
            return bad(self.pos, "truncated value");
        }
        Ok(Segment {
            series_id: self.series_id,
            hour: self.hour,
            points: self.points,
        })
    }
}
