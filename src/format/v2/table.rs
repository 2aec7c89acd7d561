//! TABLE: one 64-byte row per INDEX block (where it is, how many records
//! it holds, their length, the SHA-256 of its body).

use super::ROW_LEN;

/// One TABLE row: where an INDEX block is and what it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Row {
    /// Archive offset of the INDEX frame.
    pub offset: u64,
    /// Length of the whole frame (16-byte opening included).
    pub len: u64,
    /// Records in the block.
    pub records: u64,
    /// Decompressed length of the records.
    pub raw_len: u64,
    /// SHA-256 of the frame's body.
    pub sha256: [u8; 32],
}

impl Row {
    /// The row's 64 bytes.
    pub fn encode(&self) -> [u8; ROW_LEN] {
        let mut b = [0u8; ROW_LEN];
        b[..8].copy_from_slice(&self.offset.to_le_bytes());
        b[8..16].copy_from_slice(&self.len.to_le_bytes());
        b[16..24].copy_from_slice(&self.records.to_le_bytes());
        b[24..32].copy_from_slice(&self.raw_len.to_le_bytes());
        b[32..].copy_from_slice(&self.sha256);
        b
    }

    /// Decodes a row.
    pub fn decode(b: &[u8; ROW_LEN]) -> Row {
        let u = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().unwrap());
        Row {
            offset: u(0),
            len: u(8),
            records: u(16),
            raw_len: u(24),
            sha256: b[32..].try_into().unwrap(),
        }
    }
}
