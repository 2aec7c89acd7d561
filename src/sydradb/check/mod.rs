//! What SydraDB would accept, checked as a stream: one checker per file
//! kind, fed any chunking of a file's bytes, holding at most one WAL record
//! (≤ 1 MiB) whatever the file's size. `create` (while it captures and
//! archives files) and `verify --deep` use the same checkers, so they never
//! disagree about a file, however large it is.
//!
//! One module per file kind: `wal` (records: length, type, CRC),
//! `segment` (SYSEG2/SYSEG1, also decoded), `json` (`tags.json` and
//! MANIFEST's lines); [`Checker`] picks by the file's kind.

mod json;
mod segment;
mod wal;

pub use json::{Json, JsonError, ManifestStream};
pub use segment::{Segment, SegmentStream, decode_segment};
pub use wal::{WalStream, check_wal, check_wal_record, wal_record_len};

use crate::sydradb::layout::FileKind;

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sydradb::{encode_segment, wal_record};

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
