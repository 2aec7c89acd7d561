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
        }
    }
}

const KIND_FILE: u8 = 0;
const KIND_DIR: u8 = 1;

impl Record {
    /// Appends the record's encoding to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.push(match self.kind {
            EntryKind::File => KIND_FILE,
            EntryKind::Dir => KIND_DIR,
        });
        out.extend((self.path.len() as u16).to_le_bytes());
        out.extend(self.path.as_bytes());
        out.extend(self.mode.to_le_bytes());
        out.extend(self.mtime.to_le_bytes());
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
        let kind = match b[0] {
            KIND_FILE => EntryKind::File,
            KIND_DIR => EntryKind::Dir,
            k => return Err(bad(&format!("unknown kind {k}"))),
        };
        let plen = u16::from_le_bytes([b[1], b[2]]) as usize;
        if plen == 0 || plen > MAX_PATH_LEN {
            return Err(bad(&format!("path length {plen}")));
        }
        let fixed = 3 + plen + 4 + 8 * 4;
        let len = fixed + if kind == EntryKind::File { 32 } else { 0 };
        need(len)?;
        let path = std::str::from_utf8(&b[3..3 + plen])
            .map_err(|_| bad("path is not UTF-8"))?
            .to_string();
        let mut at = 3 + plen;
        let mode = u32::from_le_bytes(b[at..at + 4].try_into().unwrap());
        at += 4;
        let mut u64s = [0u64; 4];
        for v in &mut u64s {
            *v = u64::from_le_bytes(b[at..at + 8].try_into().unwrap());
            at += 8;
        }
        let mut sha256 = [0u8; 32];
        if kind == EntryKind::File {
            sha256.copy_from_slice(&b[at..at + 32]);
        }
        let [mtime, size, frame, offset] = u64s;
        Ok((
            Record {
                path,
                kind,
                mode,
                mtime,
                size,
                frame,
                offset,
                sha256,
            },
            len,
        ))
    }
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
}
