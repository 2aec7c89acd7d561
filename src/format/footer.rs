//! FOOT: the fixed 64-byte frame that ends every archive.
//!
//! `skippable header (16 bytes, tag SYDRFOOT, n = 56) | u32 LE version |
//! u32 LE flags | u64 LE body_len | 32-byte SHA-256 of bytes [0, body_len)`.

use crate::error::{Error, Result};
use crate::format::frame::{SKIPPABLE_MAGIC, TAG_FOOT, skippable_header};
use crate::format::head::VERSION;

/// Total length of the FOOT frame.
pub const FOOT_LEN: usize = 64;
const BODY_LEN: usize = 48;

/// The decoded footer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Footer {
    /// Format version (1).
    pub version: u32,
    /// Flags (0).
    pub flags: u32,
    /// Archive length minus 64.
    pub body_len: u64,
    /// SHA-256 of the first `body_len` bytes.
    pub sha256: [u8; 32],
}

impl Footer {
    /// A version-1 footer for a body of `body_len` bytes with digest `sha256`.
    pub fn new(body_len: u64, sha256: [u8; 32]) -> Footer {
        Footer {
            version: VERSION as u32,
            flags: 0,
            body_len,
            sha256,
        }
    }

    /// The 64 bytes of the frame.
    pub fn encode(&self) -> [u8; FOOT_LEN] {
        let mut out = [0u8; FOOT_LEN];
        out[..16].copy_from_slice(&skippable_header(&TAG_FOOT, BODY_LEN).expect("small"));
        out[16..20].copy_from_slice(&self.version.to_le_bytes());
        out[20..24].copy_from_slice(&self.flags.to_le_bytes());
        out[24..32].copy_from_slice(&self.body_len.to_le_bytes());
        out[32..].copy_from_slice(&self.sha256);
        out
    }

    /// Decodes and checks the frame opening, version and flags.
    pub fn decode(b: &[u8; FOOT_LEN]) -> Result<Footer> {
        let magic = u32::from_le_bytes(b[..4].try_into().unwrap());
        let n = u32::from_le_bytes(b[4..8].try_into().unwrap());
        if magic != SKIPPABLE_MAGIC || b[8..16] != TAG_FOOT {
            return Err(Error::corrupt(
                "the last 64 bytes are not a SYDRFOOT frame (not a sydra-archive, or truncated)",
            ));
        }
        if n as usize != BODY_LEN + 8 {
            return Err(Error::corrupt(format!(
                "FOOT frame length is {n}, expected 56"
            )));
        }
        let version = u32::from_le_bytes(b[16..20].try_into().unwrap());
        if u64::from(version) != VERSION {
            return Err(Error::UnsupportedVersion(u64::from(version)));
        }
        let flags = u32::from_le_bytes(b[20..24].try_into().unwrap());
        if flags != 0 {
            return Err(Error::corrupt(format!("FOOT has unknown flags {flags:#x}")));
        }
        Ok(Footer {
            version,
            flags,
            body_len: u64::from_le_bytes(b[24..32].try_into().unwrap()),
            sha256: b[32..].try_into().unwrap(),
        })
    }

    /// Checks that an archive of `size` bytes is as long as the footer says
    /// (body and footer); a `body_len` so large the sum overflows is as
    /// wrong as any other.
    pub fn check_size(&self, size: u64, name: &str) -> Result<()> {
        match self.body_len.checked_add(FOOT_LEN as u64) {
            Some(n) if n == size => Ok(()),
            Some(n) => Err(Error::corrupt(format!(
                "FOOT says the archive is {n} bytes but {name} is {size} bytes (truncated or padded)"
            ))),
            None => Err(Error::corrupt(format!(
                "FOOT of {name} declares an impossible body of {} bytes",
                self.body_len
            ))),
        }
    }

    /// Checks the footer against the real body length and digest.
    pub fn check(&self, body_len: u64, sha256: &[u8; 32]) -> Result<()> {
        if self.body_len != body_len {
            return Err(Error::corrupt(format!(
                "FOOT says the body is {} bytes, it is {body_len}",
                self.body_len
            )));
        }
        if &self.sha256 != sha256 {
            return Err(Error::corrupt(
                "archive SHA-256 does not match FOOT (corrupted or tampered)",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_is_exact() {
        let f = Footer::new(0x0102_0304_0506_0708, [9; 32]);
        let b = f.encode();
        assert_eq!(&b[..4], &0x184D_2A53u32.to_le_bytes());
        assert_eq!(&b[4..8], &56u32.to_le_bytes());
        assert_eq!(&b[8..16], b"SYDRFOOT");
        assert_eq!(&b[16..20], &1u32.to_le_bytes());
        assert_eq!(&b[20..24], &[0; 4]);
        assert_eq!(&b[24..32], &[8, 7, 6, 5, 4, 3, 2, 1]);
        assert_eq!(&b[32..], &[9; 32]);
        assert_eq!(Footer::decode(&b).unwrap(), f);
    }

    #[test]
    fn every_field_is_checked() {
        let good = Footer::new(10, [1; 32]).encode();
        for (i, want_version) in [(0, false), (5, false), (12, false), (16, true), (20, false)] {
            let mut b = good;
            b[i] ^= 0x40;
            let e = Footer::decode(&b).unwrap_err();
            assert!(e.is_archive_fault());
            assert_eq!(
                matches!(e, Error::UnsupportedVersion(_)),
                want_version,
                "byte {i}"
            );
        }
        let f = Footer::decode(&good).unwrap();
        assert!(f.check(10, &[1; 32]).is_ok());
        assert!(f.check(11, &[1; 32]).is_err());
        assert!(f.check(10, &[2; 32]).is_err());
    }

    #[test]
    fn sizes_that_overflow_are_refused() {
        let f = Footer::new(10, [1; 32]);
        assert!(f.check_size(74, "x").is_ok());
        assert!(f.check_size(75, "x").unwrap_err().is_archive_fault());
        let huge = Footer::decode(&Footer::new(u64::MAX, [1; 32]).encode()).unwrap();
        let e = huge.check_size(u64::MAX, "s3://b/k").unwrap_err();
        assert!(e.is_archive_fault());
        assert!(e.to_string().contains("impossible body"), "{e}");
    }
}
