//! TAIL, the fixed 128 bytes that end every version-2 archive (where
//! TABLE and META are, the counts, the digests of META and of everything
//! before it), and the check of an archive's end (TAIL, or version 1's
//! FOOT) against its size.

use super::{MAX_BLOCK_RECORDS, MAX_META_BODY, ROW_LEN, TAG_TAIL, TAIL_LEN, VERSION2};
use crate::error::{Error, Result};
use crate::format::frame::{SKIPPABLE_MAGIC, skippable_header};

/// The decoded TAIL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tail {
    /// The format version: 2, or 3 for an incremental archive (as HEAD's).
    pub version: u64,
    /// [`FLAG_NSEC`], or 0.
    pub flags: u32,
    /// Archive offset of the TABLE frame.
    pub table_offset: u64,
    /// Archive offset of the META frame.
    pub meta_offset: u64,
    /// Archive offset of TAIL itself (the archive's length minus 128).
    pub body_len: u64,
    /// Number of index records.
    pub entries: u64,
    /// Number of INDEX blocks (TABLE rows).
    pub blocks: u64,
    /// SHA-256 of bytes `[table_offset, body_len)`: TABLE and META.
    pub meta_sha256: [u8; 32],
    /// SHA-256 of bytes `[0, body_len)`.
    pub body_sha256: [u8; 32],
}

/// TAIL's flag: the index records carry nanoseconds of their mtimes
/// (records of kinds 2 and 3). Readers that know no flag refuse the
/// archive at its TAIL (as they refuse such records in one pass) rather
/// than misread it; readers take records of any kind whatever the flag.
pub const FLAG_NSEC: u32 = 1;

impl Tail {
    /// Whether every index record carries nanoseconds ([`FLAG_NSEC`]).
    pub fn nsec(&self) -> bool {
        self.flags & FLAG_NSEC != 0
    }

    /// The 128 bytes of the frame.
    pub fn encode(&self) -> [u8; TAIL_LEN] {
        let mut b = [0u8; TAIL_LEN];
        b[..16].copy_from_slice(&skippable_header(&TAG_TAIL, TAIL_LEN - 16).expect("small"));
        b[16..20].copy_from_slice(&(self.version as u32).to_le_bytes());
        b[20..24].copy_from_slice(&self.flags.to_le_bytes());
        let fields = [
            self.table_offset,
            self.meta_offset,
            self.body_len,
            self.entries,
            self.blocks,
        ];
        for (i, v) in fields.iter().enumerate() {
            b[24 + 8 * i..32 + 8 * i].copy_from_slice(&v.to_le_bytes());
        }
        b[64..96].copy_from_slice(&self.meta_sha256);
        b[96..].copy_from_slice(&self.body_sha256);
        b
    }

    /// The `body_sha256` of the TAIL that ends `end` (an archive's last
    /// bytes), if they end with one: what names a version-2 archive
    /// cheaply (an incremental records its base's).
    pub fn body_sha256_of(end: &[u8]) -> Option<[u8; 32]> {
        let t = end.get(end.len().checked_sub(TAIL_LEN)?..)?;
        Tail::is_tail(t).then(|| t[96..].try_into().expect("32 bytes"))
    }

    /// Whether the last 128 bytes of an archive are a TAIL frame (and not
    /// a version-1 FOOT).
    pub fn is_tail(b: &[u8]) -> bool {
        b.len() >= 16
            && u32::from_le_bytes(b[..4].try_into().unwrap()) == SKIPPABLE_MAGIC
            && b[8..16] == TAG_TAIL
    }

    /// Decodes the frame and checks everything it says about itself: its
    /// opening, version, flags, and that TABLE, META and TAIL follow each
    /// other with TABLE as long as its rows.
    pub fn decode(b: &[u8; TAIL_LEN]) -> Result<Tail> {
        if !Tail::is_tail(b) {
            return Err(Error::corrupt(
                "the last 128 bytes are not a SYDRTAIL frame (not a version-2 archive, or truncated)",
            ));
        }
        let n = u32::from_le_bytes(b[4..8].try_into().unwrap());
        if n as usize != TAIL_LEN - 8 {
            return Err(Error::corrupt(format!(
                "TAIL frame length is {n}, expected {}",
                TAIL_LEN - 8
            )));
        }
        let version = u32::from_le_bytes(b[16..20].try_into().unwrap());
        let version = u64::from(version);
        if version != VERSION2 && version != crate::format::incremental::VERSION3 {
            return Err(Error::UnsupportedVersion(version));
        }
        let flags = u32::from_le_bytes(b[20..24].try_into().unwrap());
        if flags & !FLAG_NSEC != 0 {
            return Err(Error::corrupt(format!("TAIL has unknown flags {flags:#x}")));
        }
        let u = |i: usize| u64::from_le_bytes(b[24 + 8 * i..32 + 8 * i].try_into().unwrap());
        let t = Tail {
            version,
            flags,
            table_offset: u(0),
            meta_offset: u(1),
            body_len: u(2),
            entries: u(3),
            blocks: u(4),
            meta_sha256: b[64..96].try_into().unwrap(),
            body_sha256: b[96..].try_into().unwrap(),
        };
        let table_len = t
            .blocks
            .checked_mul(ROW_LEN as u64)
            .and_then(|n| n.checked_add(16));
        if t.table_offset >= t.meta_offset
            || t.meta_offset >= t.body_len
            || Some(t.meta_offset - t.table_offset) != table_len
            || t.body_len - t.meta_offset < 16
            || t.body_len - t.meta_offset > 16 + MAX_META_BODY
        {
            return Err(Error::corrupt(
                "TAIL's offsets do not describe TABLE and META before it",
            ));
        }
        if t.entries > t.blocks.saturating_mul(MAX_BLOCK_RECORDS) {
            return Err(Error::corrupt(
                "TAIL declares more entries than its blocks can hold",
            ));
        }
        Ok(t)
    }

    /// Checks the archive's real size against `body_len`.
    pub fn check_size(&self, size: u64, name: &str) -> Result<()> {
        match self.body_len.checked_add(TAIL_LEN as u64) {
            Some(n) if n == size => Ok(()),
            _ => Err(Error::corrupt(format!(
                "TAIL says the archive is {} bytes but {name} is {size} bytes (truncated or padded)",
                self.body_len.saturating_add(TAIL_LEN as u64)
            ))),
        }
    }
}

/// Checks the end of an archive of `size` bytes whose last bytes are
/// `last` (at least the last 64, ideally the last [`TAIL_LEN`]): a
/// version-2 TAIL or a version-1 FOOT, and that the archive is as long as
/// it says.
pub fn check_end(last: &[u8], size: u64, name: &str) -> Result<()> {
    use crate::format::footer::{FOOT_LEN, Footer};
    if last.len() >= TAIL_LEN && Tail::is_tail(&last[last.len() - TAIL_LEN..]) {
        let t: [u8; TAIL_LEN] = last[last.len() - TAIL_LEN..].try_into().unwrap();
        return Tail::decode(&t)?.check_size(size, name);
    }
    if last.len() < FOOT_LEN {
        return Err(Error::corrupt(format!(
            "{name} is {size} bytes, too short to be an archive"
        )));
    }
    let f: [u8; FOOT_LEN] = last[last.len() - FOOT_LEN..].try_into().unwrap();
    Footer::decode(&f)
        .map_err(|e| match e {
            Error::Corrupt(_) => Error::corrupt(
                "the archive does not end with a SYDRTAIL or SYDRFOOT frame (not a sydra-archive, or truncated)",
            ),
            e => e,
        })?
        .check_size(size, name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::v2::VERSION2;

    #[test]
    fn tail_round_trips_and_checks_its_offsets() {
        let t = Tail {
            version: VERSION2,
            flags: FLAG_NSEC,
            table_offset: 1000,
            meta_offset: 1000 + 16 + 64 * 2,
            body_len: 1000 + 16 + 128 + 100,
            entries: 7,
            blocks: 2,
            meta_sha256: [1; 32],
            body_sha256: [2; 32],
        };
        let b = t.encode();
        assert_eq!(Tail::decode(&b).unwrap(), t);
        t.check_size(t.body_len + 128, "x").unwrap();
        assert!(t.check_size(t.body_len + 127, "x").is_err());
        // A TAIL that points at itself, or rows that do not fit.
        for f in [
            |t: &mut Tail| t.meta_offset = t.body_len,
            |t: &mut Tail| t.table_offset = t.meta_offset,
            |t: &mut Tail| t.blocks = 3,
            |t: &mut Tail| t.blocks = u64::MAX,
            |t: &mut Tail| t.entries = 2 * 65_536 + 1,
        ] {
            let mut bad = t;
            f(&mut bad);
            assert!(Tail::decode(&bad.encode()).is_err(), "{bad:?}");
        }
        let mut b2 = b;
        b2[20] = 2;
        assert!(Tail::decode(&b2).unwrap_err().to_string().contains("flags"));
        b2[20] = 0;
        assert_eq!(Tail::decode(&b2).unwrap().flags, 0);
        let mut b3 = b;
        b3[16] = 4;
        assert!(matches!(
            Tail::decode(&b3),
            Err(Error::UnsupportedVersion(4))
        ));
        // Version 3 (an incremental) is read.
        b3[16] = 3;
        assert_eq!(Tail::decode(&b3).unwrap().version, 3);
    }
}
