//! WAL files checked as replay checks them: each record's length, type
//! and CRC, fed in any chunking, holding at most one record.

use super::Problem;
use crate::sydradb::{MAX_WAL_RECORD, WAL_PUT, crc32};

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sydradb::wal_record;

    #[test]
    fn wal_records_check() {
        let mut w = wal_record(u64::MAX - 3, 1_748_736_000, 19.71).to_vec();
        w.extend(wal_record(7, 1_748_736_010, -1.5));
        assert_eq!(check_wal(&w), Ok(2));
        assert!(check_wal(&w[..40]).is_err());
        w[10] ^= 1;
        assert_eq!(check_wal(&w).unwrap_err().0, 0);
    }
}
