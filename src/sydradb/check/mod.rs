//! What SydraDB would accept, checked as a stream: one checker per file
//! kind, fed any chunking of a file's bytes, holding at most one WAL record
//! (≤ 1 MiB) whatever the file's size. `create` (while it captures and
//! archives files) and `verify --deep` use the same checkers, so they never
//! disagree about a file, however large it is.

use crate::sydradb::layout::FileKind;
use crate::sydradb::{MAX_WAL_RECORD, WAL_PUT, crc32};

/// The first problem found: byte offset in the file and why.
pub type Problem = (u64, String);

/// A streaming checker for one file.
#[derive(Debug)]
pub struct Checker {
    state: State,
    problem: Option<Problem>,
}

#[derive(Debug)]
enum State {
    None,
    Wal(WalStream),
    Segment(Box<SegmentStream>),
    Tags(Json, u64),
    Manifest(ManifestStream),
}

impl Checker {
    /// A checker for a file of `kind` (`Other` accepts anything).
    pub fn new(kind: FileKind) -> Checker {
        let state = match kind {
            FileKind::Wal => State::Wal(WalStream::default()),
            FileKind::Segment => State::Segment(Box::default()),
            FileKind::Tags => State::Tags(Json::default(), 0),
            FileKind::Manifest => State::Manifest(ManifestStream::default()),
            FileKind::Other => State::None,
        };
        Checker {
            state,
            problem: None,
        }
    }

    /// Feeds the next bytes of the file.
    pub fn feed(&mut self, data: &[u8]) {
        if self.problem.is_some() || data.is_empty() {
            return;
        }
        self.problem = match &mut self.state {
            State::None => None,
            State::Wal(w) => w.feed(data),
            State::Segment(s) => s.feed(data),
            State::Tags(j, n) => {
                *n += data.len() as u64;
                j.feed(data).err().map(|_| tags_problem())
            }
            State::Manifest(m) => m.feed(data),
        };
    }

    /// The first problem in the whole file, if any.
    pub fn finish(self) -> Option<Problem> {
        if self.problem.is_some() {
            return self.problem;
        }
        match self.state {
            State::None => None,
            State::Wal(w) => w.finish(),
            State::Segment(s) => s.finish().err(),
            State::Tags(_, 0) => Some((0, "empty tags.json (the server refuses to start)".into())),
            State::Tags(j, _) => (!j.is_object()).then(tags_problem),
            State::Manifest(m) => m.finish(),
        }
    }
}

fn tags_problem() -> Problem {
    (0, "tags.json is not a JSON object".into())
}

/// Why `bytes` is not what SydraDB would accept for a file of `kind`.
pub fn problem(kind: FileKind, bytes: &[u8]) -> Option<Problem> {
    let mut c = Checker::new(kind);
    c.feed(bytes);
    c.finish()
}

// ---------------------------------------------------------------- WAL

/// Checks a WAL file the way replay does (the one WAL parser,
/// [`crate::sydradb::check::WalStream`]); returns the record count or the offset
/// and reason of the first bad record.
pub fn check_wal(data: &[u8]) -> Result<u64, (u64, String)> {
    let mut w = WalStream::default();
    if let Some(p) = w.feed(data).or_else(|| w.finish()) {
        return Err(p);
    }
    Ok(w.records)
}

/// The whole size of a WAL record whose length field says `len`, or `None`
/// when replay refuses that length (0, or over 1 MiB): no record boundary
/// can be found past it. The one rule for WAL record lengths.
pub fn wal_record_len(len: u32) -> Option<usize> {
    (len != 0 && len <= MAX_WAL_RECORD).then_some(len as usize + 8)
}

/// Checks one whole WAL record (`len | payload | crc32`, its length already
/// accepted by [`wal_record_len`]) as replay does: the record type, then
/// the CRC over the payload. The one rule for WAL record contents, used by
/// `create`'s capture ([`crate::sydradb::live::scan_wal`]) and by every
/// check of a WAL file.
pub fn check_wal_record(rec: &[u8]) -> Result<(), String> {
    let payload = &rec[4..rec.len() - 4];
    let crc = u32::from_le_bytes(rec[rec.len() - 4..].try_into().unwrap());
    if payload[0] != WAL_PUT {
        return Err(format!("unknown record type {}", payload[0]));
    }
    if crc32(payload) != crc {
        return Err("record CRC mismatch".into());
    }
    Ok(())
}

/// WAL records: `len u32 | type u8 | … | crc32 u32`, checked as replay
/// checks them (length, record type, CRC).
#[derive(Debug, Default)]
pub struct WalStream {
    /// Offset of the record being gathered.
    off: u64,
    /// Bytes of a record that crossed a chunk boundary.
    rec: Vec<u8>,
    /// Whole records seen.
    pub records: u64,
}

impl WalStream {
    /// Feeds bytes; returns the first problem.
    pub fn feed(&mut self, mut data: &[u8]) -> Option<Problem> {
        while !data.is_empty() {
            if self.rec.is_empty() {
                // Whole records in place.
                while data.len() >= 4 {
                    let len = u32::from_le_bytes(data[..4].try_into().unwrap());
                    if let Some(p) = self.check_len(len) {
                        return Some(p);
                    }
                    let whole = len as usize + 8;
                    if data.len() < whole {
                        break;
                    }
                    if let Some(p) = self.check_record(&data[..whole]) {
                        return Some(p);
                    }
                    data = &data[whole..];
                }
                self.rec.extend_from_slice(data);
                return None;
            }
            let want = if self.rec.len() < 4 {
                4
            } else {
                u32::from_le_bytes(self.rec[..4].try_into().unwrap()) as usize + 8
            };
            let n = (want - self.rec.len()).min(data.len());
            self.rec.extend_from_slice(&data[..n]);
            data = &data[n..];
            if self.rec.len() == 4 {
                let len = u32::from_le_bytes(self.rec[..4].try_into().unwrap());
                if let Some(p) = self.check_len(len) {
                    return Some(p);
                }
            } else if self.rec.len() == want && want > 4 {
                let rec = std::mem::take(&mut self.rec);
                if let Some(p) = self.check_record(&rec) {
                    return Some(p);
                }
                self.rec = rec;
                self.rec.clear();
            }
        }
        None
    }

    fn check_len(&self, len: u32) -> Option<Problem> {
        wal_record_len(len)
            .is_none()
            .then(|| (self.off, format!("bad record length {len}")))
    }

    fn check_record(&mut self, rec: &[u8]) -> Option<Problem> {
        if let Err(why) = check_wal_record(rec) {
            return Some((self.off, why));
        }
        self.off += rec.len() as u64;
        self.records += 1;
        None
    }

    /// The problem at the end: an incomplete last record.
    pub fn finish(&self) -> Option<Problem> {
        (!self.rec.is_empty())
            .then(|| (self.off, "incomplete record at the end (torn tail)".into()))
    }
}

// ----------------------------------------------------------- segments

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
    fn feed(&mut self, mut data: &[u8]) -> Option<Problem> {
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

    fn finish(self) -> Result<Segment, Problem> {
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

// --------------------------------------------------------------- JSON

/// Deepest nesting accepted (as serde_json's default recursion limit).
const MAX_DEPTH: usize = 128;

/// A JSON syntax checker over bytes, one value with whitespace around it.
/// String contents are opaque bytes (SydraDB's tags may hold bytes that are
/// not UTF-8); control bytes in strings and bad escapes are errors.
#[derive(Debug, Default)]
pub struct Json {
    /// Open containers: `{` or `[`.
    stack: Vec<u8>,
    st: St,
    /// The top-level value was an object.
    top_object: bool,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum St {
    /// Expecting a value (`first`: just after `[`, so `]` is allowed).
    #[default]
    Start,
    Value {
        first: bool,
    },
    /// After `{` (`first`) or `,` in an object: a key.
    Key {
        first: bool,
    },
    Colon,
    /// After a value: `,`, a closing bracket, or the end.
    After,
    Str {
        key: bool,
        esc: u8,
    },
    Num(Num),
    Lit(&'static [u8], u8),
    Done,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Num {
    Minus,
    Zero,
    Int,
    Dot,
    Frac,
    E,
    ESign,
    Exp,
}

/// A JSON syntax error (where is not needed by the callers).
#[derive(Debug)]
pub struct JsonError;

fn ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

impl Json {
    /// Feeds bytes.
    pub fn feed(&mut self, data: &[u8]) -> Result<(), JsonError> {
        for &b in data {
            self.byte(b)?;
        }
        Ok(())
    }

    /// True when the input so far is exactly one JSON object (and
    /// whitespace).
    pub fn is_object(&self) -> bool {
        // (A number at the top level would end only at the end of input;
        // an object is what is asked for.)
        self.st == St::Done && self.top_object
    }

    fn value_done(&mut self) -> St {
        if self.stack.is_empty() {
            St::Done
        } else {
            St::After
        }
    }

    fn open(&mut self, c: u8) -> Result<St, JsonError> {
        if self.stack.len() >= MAX_DEPTH {
            return Err(JsonError);
        }
        if self.stack.is_empty() && self.st == St::Start {
            self.top_object = c == b'{';
        }
        self.stack.push(c);
        Ok(if c == b'{' {
            St::Key { first: true }
        } else {
            St::Value { first: true }
        })
    }

    fn close(&mut self, c: u8) -> Result<St, JsonError> {
        let want = if c == b'}' { b'{' } else { b'[' };
        if self.stack.pop() != Some(want) {
            return Err(JsonError);
        }
        Ok(self.value_done())
    }

    fn byte(&mut self, b: u8) -> Result<(), JsonError> {
        self.st = match self.st {
            St::Start | St::Value { .. } if ws(b) => self.st,
            St::Value { first: true } if b == b']' => self.close(b)?,
            St::Start | St::Value { .. } => match b {
                b'{' | b'[' => self.open(b)?,
                b'"' => St::Str { key: false, esc: 0 },
                b'-' => St::Num(Num::Minus),
                b'0' => St::Num(Num::Zero),
                b'1'..=b'9' => St::Num(Num::Int),
                b't' => St::Lit(b"rue", 0),
                b'f' => St::Lit(b"alse", 0),
                b'n' => St::Lit(b"ull", 0),
                _ => return Err(JsonError),
            },
            St::Key { .. } if ws(b) => self.st,
            St::Key { first: true } if b == b'}' => self.close(b)?,
            St::Key { .. } if b == b'"' => St::Str { key: true, esc: 0 },
            St::Key { .. } => return Err(JsonError),
            St::Colon if ws(b) => St::Colon,
            St::Colon if b == b':' => St::Value { first: false },
            St::Colon => return Err(JsonError),
            St::After if ws(b) => St::After,
            St::After => match (b, self.stack.last()) {
                (b',', Some(b'{')) => St::Key { first: false },
                (b',', Some(b'[')) => St::Value { first: false },
                (b'}' | b']', _) => self.close(b)?,
                _ => return Err(JsonError),
            },
            St::Str { key, esc: 0 } => match b {
                b'"' if key => St::Colon,
                b'"' => self.value_done(),
                b'\\' => St::Str { key, esc: 1 },
                0..=0x1f => return Err(JsonError),
                _ => self.st,
            },
            St::Str { key, esc: 1 } => match b {
                b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => St::Str { key, esc: 0 },
                b'u' => St::Str { key, esc: 2 },
                _ => return Err(JsonError),
            },
            St::Str { key, esc } => {
                if !b.is_ascii_hexdigit() {
                    return Err(JsonError);
                }
                St::Str {
                    key,
                    esc: if esc == 5 { 0 } else { esc + 1 },
                }
            }
            St::Lit(rest, i) => {
                if rest[i as usize] != b {
                    return Err(JsonError);
                }
                if i as usize + 1 == rest.len() {
                    self.value_done()
                } else {
                    St::Lit(rest, i + 1)
                }
            }
            St::Num(n) => {
                let next = match (n, b) {
                    (Num::Minus, b'0') => Some(Num::Zero),
                    (Num::Minus, b'1'..=b'9') => Some(Num::Int),
                    (Num::Int, b'0'..=b'9') => Some(Num::Int),
                    (Num::Zero | Num::Int, b'.') => Some(Num::Dot),
                    (Num::Zero | Num::Int | Num::Frac, b'e' | b'E') => Some(Num::E),
                    (Num::Dot | Num::Frac, b'0'..=b'9') => Some(Num::Frac),
                    (Num::E, b'+' | b'-') => Some(Num::ESign),
                    (Num::E | Num::ESign | Num::Exp, b'0'..=b'9') => Some(Num::Exp),
                    _ => None,
                };
                match next {
                    Some(n) => St::Num(n),
                    None if matches!(n, Num::Zero | Num::Int | Num::Frac | Num::Exp) => {
                        // The number ended; this byte belongs to what follows.
                        self.st = self.value_done();
                        return self.byte(b);
                    }
                    None => return Err(JsonError),
                }
            }
            St::Done if ws(b) => St::Done,
            St::Done => return Err(JsonError),
        };
        Ok(())
    }
}

// ----------------------------------------------------------- MANIFEST

/// MANIFEST: newline-terminated lines, each one JSON object.
#[derive(Debug, Default)]
pub struct ManifestStream {
    line_start: u64,
    pos: u64,
    json: Json,
    /// The current line is already known not to be a JSON object.
    bad: bool,
    /// Bytes in the current line.
    len: u64,
}

impl ManifestStream {
    fn feed(&mut self, data: &[u8]) -> Option<Problem> {
        for &b in data {
            self.pos += 1;
            if b == b'\n' {
                if self.bad || !self.json.is_object() {
                    return Some(self.not_object());
                }
                self.line_start = self.pos;
                self.json = Json::default();
                self.len = 0;
                continue;
            }
            self.len += 1;
            if !self.bad && self.json.byte(b).is_err() {
                self.bad = true;
            }
        }
        None
    }

    fn not_object(&self) -> Problem {
        (self.line_start, "MANIFEST line is not a JSON object".into())
    }

    fn finish(self) -> Option<Problem> {
        (self.len > 0).then(|| {
            (
                self.line_start,
                "MANIFEST line not newline-terminated".into(),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sydradb::{encode_segment, wal_record};

    #[test]
    fn wal_records_check() {
        let mut w = wal_record(u64::MAX - 3, 1_748_736_000, 19.71).to_vec();
        w.extend(wal_record(7, 1_748_736_010, -1.5));
        assert_eq!(check_wal(&w), Ok(2));
        assert!(check_wal(&w[..40]).is_err());
        w[10] ^= 1;
        assert_eq!(check_wal(&w).unwrap_err().0, 0);
    }

    /// Every split of `b` into two chunks, and byte by byte, gives the
    /// same answer as the whole.
    fn all_chunkings(kind: FileKind, b: &[u8]) -> Option<Problem> {
        let whole = problem(kind, b);
        for cut in 0..=b.len() {
            let mut c = Checker::new(kind);
            c.feed(&b[..cut]);
            c.feed(&b[cut..]);
            assert_eq!(c.finish(), whole, "{kind:?} cut at {cut} of {}", b.len());
        }
        let mut c = Checker::new(kind);
        for x in b {
            c.feed(std::slice::from_ref(x));
        }
        assert_eq!(c.finish(), whole, "{kind:?} byte by byte");
        whole
    }

    #[test]
    fn json_agrees_with_serde_json() {
        let cases: &[&str] = &[
            "{}",
            " {} ",
            "{\"a=b\":[1,2,3]}",
            "{\"a\":{\"b\":[true,false,null,-0.5e+3,0,12.25E-2,\"x\\\"\\u00e9\"]}}",
            "{\"a\":[]}",
            "{\"a\":[{}]}",
            "[]",
            "1",
            "\"s\"",
            "{",
            "{\"a\"}",
            "{\"a\":}",
            "{\"a\":1,}",
            "{\"a\":[1,]}",
            "{\"a\":01}",
            "{\"a\":1.}",
            "{\"a\":-}",
            "{\"a\":1e}",
            "{\"a\":tru}",
            "{\"a\":\"\\x\"}",
            "{\"a\":\"\\u12g4\"}",
            "{\"a\":\"x\ty\"}",
            "{} {}",
            "{}x",
            "{\"a\":1}}",
            "{\"a\":[1}",
            "{1:2}",
            "",
            "   ",
        ];
        for c in cases {
            let serde = serde_json::from_str::<serde_json::Value>(c).is_ok_and(|v| v.is_object());
            let mut j = Json::default();
            let ours = j.feed(c.as_bytes()).is_ok() && j.is_object();
            assert_eq!(ours, serde, "{c:?}");
        }
        let deep = "[".repeat(200) + &"]".repeat(200);
        assert!(Json::default().feed(deep.as_bytes()).is_err());
    }

    #[test]
    fn tags_and_manifest() {
        assert_eq!(
            all_chunkings(FileKind::Tags, b"").unwrap().1,
            "empty tags.json (the server refuses to start)"
        );
        assert!(all_chunkings(FileKind::Tags, b"{\"h=\xff\":[1]}").is_none());
        assert!(all_chunkings(FileKind::Tags, b"{\"a\":[1,2]").is_some());
        assert!(all_chunkings(FileKind::Manifest, b"").is_none());
        assert!(all_chunkings(FileKind::Manifest, b"{\"a\":1}\n{}\n").is_none());
        assert_eq!(
            all_chunkings(FileKind::Manifest, b"{}\n{\"a\":1}"),
            Some((3, "MANIFEST line not newline-terminated".into()))
        );
        assert_eq!(
            all_chunkings(FileKind::Manifest, b"{}\nnot json\n{}\n"),
            Some((3, "MANIFEST line is not a JSON object".into()))
        );
        assert_eq!(
            all_chunkings(FileKind::Manifest, b"{}\n\n"),
            Some((3, "MANIFEST line is not a JSON object".into()))
        );
    }

    #[test]
    fn wal_in_any_chunking() {
        let mut w = Vec::new();
        for i in 0..6 {
            w.extend(wal_record(7, i, i as f64));
        }
        assert!(all_chunkings(FileKind::Wal, &w).is_none());
        assert_eq!(
            all_chunkings(FileKind::Wal, &w[..w.len() - 5]),
            Some((33 * 5, "incomplete record at the end (torn tail)".into()))
        );
        let mut bad = w.clone();
        bad[33 * 4 + 20] ^= 1;
        assert_eq!(
            all_chunkings(FileKind::Wal, &bad),
            Some((132, "record CRC mismatch".into()))
        );
        let mut typ = w.clone();
        typ[33 + 4] = 9;
        assert_eq!(
            all_chunkings(FileKind::Wal, &typ).unwrap().1,
            "unknown record type 9"
        );
        let mut len = w.clone();
        len[66..70].copy_from_slice(&0u32.to_le_bytes());
        assert_eq!(
            all_chunkings(FileKind::Wal, &len),
            Some((66, "bad record length 0".into()))
        );
    }

    #[test]
    fn checking_and_decoding_agree_on_every_mutation() {
        let pts: Vec<(i64, f64)> = (0..30)
            .map(|i| (7200 + i * 10, if i % 4 == 0 { 2.5 } else { i as f64 * 0.3 }))
            .collect();
        let seg = encode_segment(3, 7200, &pts);
        let mut cases = vec![seg.clone()];
        for i in 0..seg.len() {
            for x in [0x01u8, 0x80, 0xff] {
                let mut m = seg.clone();
                m[i] ^= x;
                cases.push(m);
            }
            cases.push(seg[..i].to_vec());
        }
        for (k, b) in cases.iter().enumerate() {
            let decoded = decode_segment(b).err();
            assert_eq!(problem(FileKind::Segment, b), decoded, "case {k}");
            let mut c = Checker::new(FileKind::Segment);
            for chunk in b.chunks(7) {
                c.feed(chunk);
            }
            assert_eq!(c.finish(), decoded, "case {k} in chunks");
        }
    }

    #[test]
    fn segments_in_any_chunking() {
        let pts: Vec<(i64, f64)> = (0..40)
            .map(|i| (3600 + i * 10, if i % 3 == 0 { 1.5 } else { i as f64 * 0.1 }))
            .collect();
        let seg = encode_segment(9, 3600, &pts);
        assert!(all_chunkings(FileKind::Segment, &seg).is_none());
        assert_eq!(decode_segment(&seg).unwrap().points, pts);
        for cut in [0, 5, 41, 43, 44, 50, seg.len() - 1] {
            let p = all_chunkings(FileKind::Segment, &seg[..cut]);
            assert!(p.is_some(), "cut {cut}");
        }
        let mut long = seg.clone();
        long.push(0);
        assert_eq!(
            all_chunkings(FileKind::Segment, &long),
            Some((
                seg.len() as u64,
                "trailing bytes after the last value".into()
            ))
        );
        let mut marker = seg.clone();
        // The first value's marker follows the 40 one-byte varints.
        marker[44 + 40] = 0; // "same as previous" is illegal for the first value
        assert_eq!(
            all_chunkings(FileKind::Segment, &marker),
            Some((84, "bad value marker or truncated value".into()))
        );
        assert_eq!(
            all_chunkings(FileKind::Segment, b"NOTSEG").unwrap().1,
            "not a SYSEG2/SYSEG1 header"
        );
    }
}
