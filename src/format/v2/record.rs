//! The INDEX: one record per entry (path, kind, mode, mtime, size, where
//! its member is, SHA-256), and the 8 bytes that open each INDEX block.

use super::{MAX_BLOCK_RAW, MAX_BLOCK_RECORDS};
use crate::error::{Error, Result};
use crate::format::head::EntryKind;
use crate::format::path::MAX_PATH_LEN;

/// One index record: an entry and where its member is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Archive path.
    pub path: String,
    /// File or directory.
    pub kind: EntryKind,
    /// Permission bits as in the tar header.
    pub mode: u32,
    /// Modification time, seconds since the epoch.
    pub mtime: u64,
    /// Nanoseconds past `mtime` (below 1,000,000,000): `None` in a record
    /// of kind 0 or 1 (whole seconds only, as archives written before
    /// records carried them), `Some` in one of kind 2 or 3.
    pub mtime_nsec: Option<u32>,
    /// Size (0 for a directory).
    pub size: u64,
    /// Archive offset of the DATA frame holding the member's header block.
    pub frame: u64,
    /// Offset of the header block in that frame's decompressed content.
    pub offset: u64,
    /// SHA-256 of a file's content (zero for a directory; not encoded).
    pub sha256: [u8; 32],
}

impl Record {
    /// The entry this record declares.
    pub fn entry(&self) -> crate::format::head::Entry {
        crate::format::head::Entry {
            path: self.path.clone(),
            kind: self.kind,
            size: self.size,
            mode: self.mode,
            // Readers refuse an mtime over i64::MAX before they get here.
            mtime: self.mtime as i64,
            mtime_nsec: self.mtime_nsec.unwrap_or(0),
        }
    }
}

const KIND_FILE: u8 = 0;
const KIND_DIR: u8 = 1;
/// Added to the kind: the record carries `mtime_nsec` after `mtime`.
const KIND_NSEC: u8 = 2;
/// The largest `mtime_nsec`.
pub const MAX_NSEC: u32 = 999_999_999;

impl Record {
    /// Appends the record's encoding to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let kind = match self.kind {
            EntryKind::File => KIND_FILE,
            EntryKind::Dir => KIND_DIR,
        };
        out.push(
            kind + if self.mtime_nsec.is_some() {
                KIND_NSEC
            } else {
                0
            },
        );
        out.extend((self.path.len() as u16).to_le_bytes());
        out.extend(self.path.as_bytes());
        out.extend(self.mode.to_le_bytes());
        out.extend(self.mtime.to_le_bytes());
        if let Some(n) = self.mtime_nsec {
            out.extend(n.to_le_bytes());
        }
        out.extend(self.size.to_le_bytes());
        out.extend(self.frame.to_le_bytes());
        out.extend(self.offset.to_le_bytes());
        if self.kind == EntryKind::File {
            out.extend(self.sha256);
        }
    }

    /// Decodes the record at the start of `b`; returns it and its length.
    /// Only the encoding is checked here (path rules are the caller's).
    pub fn decode(b: &[u8]) -> Result<(Record, usize)> {
        let bad = |why: &str| Error::corrupt(format!("index record: {why}"));
        let need = |n: usize| {
            if b.len() < n {
                Err(bad("truncated"))
            } else {
                Ok(())
            }
        };
        need(3)?;
        let (kind, nsec) = match b[0] {
            KIND_FILE => (EntryKind::File, false),
            KIND_DIR => (EntryKind::Dir, false),
            k if k == KIND_FILE + KIND_NSEC => (EntryKind::File, true),
            k if k == KIND_DIR + KIND_NSEC => (EntryKind::Dir, true),
            k => return Err(bad(&format!("unknown kind {k}"))),
        };
        let plen = u16::from_le_bytes([b[1], b[2]]) as usize;
        if plen == 0 || plen > MAX_PATH_LEN {
            return Err(bad(&format!("path length {plen}")));
        }
        let nsec_len = if nsec { 4 } else { 0 };
        let fixed = 3 + plen + 4 + 8 * 4 + nsec_len;
        let len = fixed + if kind == EntryKind::File { 32 } else { 0 };
        need(len)?;
        let path = std::str::from_utf8(&b[3..3 + plen])
            .map_err(|_| bad("path is not UTF-8"))?
            .to_string();
        let mut at = 3 + plen;
        let mode = u32::from_le_bytes(b[at..at + 4].try_into().unwrap());
        at += 4;
        let mtime = u64::from_le_bytes(b[at..at + 8].try_into().unwrap());
        at += 8;
        let mtime_nsec = if nsec {
            let n = u32::from_le_bytes(b[at..at + 4].try_into().unwrap());
            at += 4;
            if n > MAX_NSEC {
                return Err(bad(&format!("mtime_nsec {n} is not below one second")));
            }
            Some(n)
        } else {
            None
        };
        let mut u64s = [0u64; 3];
        for v in &mut u64s {
            *v = u64::from_le_bytes(b[at..at + 8].try_into().unwrap());
            at += 8;
        }
        let mut sha256 = [0u8; 32];
        if kind == EntryKind::File {
            sha256.copy_from_slice(&b[at..at + 32]);
        }
        let [size, frame, offset] = u64s;
        Ok((
            Record {
                path,
                kind,
                mode,
                mtime,
                mtime_nsec,
                size,
                frame,
                offset,
                sha256,
            },
            len,
        ))
    }

    /// [`Record::decode`], in an archive whose TAIL says (`nsec`) whether
    /// its records carry nanoseconds: a record that does otherwise is
    /// refused (the flag is outside the hashes TAIL holds; its records
    /// are not).
    pub fn decode_in(b: &[u8], nsec: bool) -> Result<(Record, usize)> {
        let (rec, len) = Record::decode(b)?;
        check_nsec(&rec, nsec)?;
        Ok((rec, len))
    }

    /// Hashes the well-formed record at the start of `b` (decoded before)
    /// as it reads without its `mtime_nsec` (kind 0 or 1): what a reader
    /// compares with a record rebuilt from the tar member, whose header
    /// holds whole seconds. Returns the record's length.
    pub fn hash_without_nsec(b: &[u8], h: &mut sha2::Sha256) -> usize {
        use sha2::Digest;
        let plen = u16::from_le_bytes([b[1], b[2]]) as usize;
        let kind = b[0] & !KIND_NSEC;
        let sha = if kind == KIND_FILE { 32 } else { 0 };
        let upto_mtime = 3 + plen + 4 + 8;
        h.update([kind]);
        h.update(&b[1..upto_mtime]);
        let rest = if b[0] & KIND_NSEC != 0 {
            upto_mtime + 4
        } else {
            upto_mtime
        };
        h.update(&b[rest..rest + 24 + sha]);
        rest + 24 + sha
    }
}

/// Refuses `rec` unless it carries nanoseconds exactly when `nsec` (what
/// TAIL's flag says every record of the archive does).
pub fn check_nsec(rec: &Record, nsec: bool) -> Result<()> {
    if rec.mtime_nsec.is_some() != nsec {
        return Err(Error::corrupt(format!(
            "index record {:?} {} nanoseconds, unlike what TAIL's flags say of every record",
            rec.path,
            if nsec { "lacks" } else { "carries" }
        )));
    }
    Ok(())
}

/// The 8 bytes that open an INDEX frame's body: how many records the
/// block holds and their decompressed length; a zstd frame follows.
pub fn block_opening(records: u32, raw_len: u32) -> [u8; 8] {
    let mut b = [0u8; 8];
    b[..4].copy_from_slice(&records.to_le_bytes());
    b[4..].copy_from_slice(&raw_len.to_le_bytes());
    b
}

/// Decodes and bounds an INDEX frame's opening: `(records, raw_len)`.
pub fn parse_block_opening(b: &[u8; 8]) -> Result<(u64, u64)> {
    let records = u64::from(u32::from_le_bytes(b[..4].try_into().unwrap()));
    let raw = u64::from(u32::from_le_bytes(b[4..].try_into().unwrap()));
    if records == 0 || records > MAX_BLOCK_RECORDS {
        return Err(Error::corrupt(format!(
            "INDEX block declares {records} records (1 to {MAX_BLOCK_RECORDS})"
        )));
    }
    if raw > MAX_BLOCK_RAW {
        return Err(Error::corrupt(format!(
            "INDEX block declares {raw} bytes of records (at most {MAX_BLOCK_RAW})"
        )));
    }
    Ok((records, raw))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(path: &str, kind: EntryKind) -> Record {
        Record {
            path: path.into(),
            kind,
            mode: 0o644,
            mtime: 1_700_000_000,
            mtime_nsec: None,
            size: if kind == EntryKind::File { 5 } else { 0 },
            frame: 40,
            offset: 1024,
            sha256: if kind == EntryKind::File {
                [7; 32]
            } else {
                [0; 32]
            },
        }
    }

    #[test]
    fn records_round_trip_and_refuse_garbage() {
        let mut b = Vec::new();
        rec("wal", EntryKind::Dir).encode(&mut b);
        rec("wal/current.wal", EntryKind::File).encode(&mut b);
        let (a, n) = Record::decode(&b).unwrap();
        assert_eq!(a, rec("wal", EntryKind::Dir));
        let (c, m) = Record::decode(&b[n..]).unwrap();
        assert_eq!(c, rec("wal/current.wal", EntryKind::File));
        assert_eq!(n + m, b.len());
        for cut in 0..m {
            assert!(Record::decode(&b[n..n + cut]).is_err(), "{cut}");
        }
        let mut bad = b.clone();
        bad[0] = 9;
        assert!(
            Record::decode(&bad)
                .unwrap_err()
                .to_string()
                .contains("kind")
        );
        let mut bad = b.clone();
        bad[1] = 0;
        bad[2] = 0;
        assert!(Record::decode(&bad).is_err());
    }

    #[test]
    fn records_with_nanoseconds_round_trip_and_hash_as_without() {
        use sha2::Digest;
        for kind in [EntryKind::Dir, EntryKind::File] {
            let plain = rec("wal/current.wal", kind);
            let with = Record {
                mtime_nsec: Some(123_456_789),
                ..plain.clone()
            };
            let (mut a, mut b) = (Vec::new(), Vec::new());
            plain.encode(&mut a);
            with.encode(&mut b);
            assert_eq!(b.len(), a.len() + 4);
            assert_eq!(Record::decode(&b).unwrap(), (with.clone(), b.len()));
            assert_eq!(with.entry().mtime_nsec, 123_456_789);
            // Hashed without its nanoseconds, it is the plain record.
            let (mut ha, mut hb) = (sha2::Sha256::new(), sha2::Sha256::new());
            assert_eq!(Record::hash_without_nsec(&a, &mut ha), a.len());
            assert_eq!(Record::hash_without_nsec(&b, &mut hb), b.len());
            assert_eq!(ha.finalize(), hb.finalize());
            for cut in 0..b.len() {
                assert!(Record::decode(&b[..cut]).is_err(), "{cut}");
            }
            // A second or more is no fraction of one.
            let mut bad = b.clone();
            let at = 3 + "wal/current.wal".len() + 4 + 8;
            bad[at..at + 4].copy_from_slice(&1_000_000_000u32.to_le_bytes());
            assert!(
                Record::decode(&bad)
                    .unwrap_err()
                    .to_string()
                    .contains("below one second")
            );
        }
    }
}
