//! How an upload is cut into parts, and the part buffers.

use std::io;

/// How an upload is cut into parts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartPlan {
    /// Size of the first 9,000 parts.
    pub base: usize,
    /// Parts uploading at once while the next one fills.
    pub in_flight: usize,
}

impl PartPlan {
    /// Smallest part (S3 requires 5 MiB for all but the last).
    pub const MIN_PART: usize = 8 << 20;
    /// Largest part S3 accepts.
    pub const MAX_PART: usize = 5 << 30;
    /// Most parts S3 accepts.
    pub const MAX_PARTS: usize = 10_000;
    /// Parts planned at the base size; the rest are headroom that grows.
    const PLANNED: usize = 9_000;
    /// Memory for part buffers, in flight and filling, while parts are small.
    const BUFFER_BUDGET: usize = 64 << 20;

    /// A plan for an archive of about `estimate` bytes: the estimate fits
    /// in 9,000 parts; after that, parts double every 250, so an archive
    /// that outgrows its estimate still fits in 10,000.
    pub fn for_estimate(estimate: u64) -> PartPlan {
        let want = estimate.div_ceil(Self::PLANNED as u64).div_ceil(1 << 20) << 20;
        let base = usize::try_from(want)
            .unwrap_or(Self::MAX_PART)
            .clamp(Self::MIN_PART, Self::MAX_PART);
        let in_flight = (Self::BUFFER_BUDGET / base).saturating_sub(1).clamp(1, 4);
        PartPlan { base, in_flight }
    }

    /// Size of part `n` (1-based).
    pub fn part_size(&self, n: usize) -> usize {
        if n <= Self::PLANNED {
            return self.base;
        }
        let shift = 1 + (n - Self::PLANNED - 1) / 250;
        self.base
            .checked_shl(shift as u32)
            .unwrap_or(Self::MAX_PART)
            .min(Self::MAX_PART)
    }

    /// Bytes 10,000 parts hold.
    pub fn capacity(&self) -> u64 {
        (1..=Self::MAX_PARTS)
            .map(|n| self.part_size(n) as u64)
            .sum()
    }

    /// Peak bytes of part buffers (the parts in flight and the one filling)
    /// while parts have the base size.
    pub fn buffer_bytes(&self) -> usize {
        (self.in_flight + 1) * self.base
    }
}

/// One part's bytes in its own anonymous mapping, returned to the kernel
/// when the part is dropped after its upload. (Through malloc, 8 MiB
/// buffers freed on other threads fragment the heap: peak RSS then grew
/// with timing, to 185 MiB for a 300 MiB upload under load.)
pub(super) struct PartBuf {
    ptr: std::ptr::NonNull<u8>,
    cap: usize,
    len: usize,
}

impl PartBuf {
    /// Bytes filled so far.
    pub(super) fn filled(&self) -> usize {
        self.len
    }
}

// SAFETY: PartBuf owns its mapping exclusively; `&PartBuf` only reads.
unsafe impl Send for PartBuf {}
// SAFETY: as above.
unsafe impl Sync for PartBuf {}

impl PartBuf {
    pub(super) fn new(cap: usize) -> io::Result<PartBuf> {
        // SAFETY: a fresh private anonymous mapping; checked for failure.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                cap,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr = std::ptr::NonNull::new(p.cast::<u8>()).ok_or_else(io::Error::last_os_error)?;
        Ok(PartBuf { ptr, cap, len: 0 })
    }

    pub(super) fn room(&self) -> usize {
        self.cap - self.len
    }

    pub(super) fn push(&mut self, data: &[u8]) -> usize {
        let n = self.room().min(data.len());
        // SAFETY: `len + n <= cap`, inside the mapping; no overlap with `data`.
        unsafe {
            std::ptr::copy_nonoverlapping(data.as_ptr(), self.ptr.as_ptr().add(self.len), n);
        }
        self.len += n;
        n
    }
}

impl AsRef<[u8]> for PartBuf {
    fn as_ref(&self) -> &[u8] {
        // SAFETY: the first `len` bytes of the mapping were written.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for PartBuf {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly the mapping made in `new`, once.
        unsafe {
            libc::munmap(self.ptr.as_ptr().cast(), self.cap);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn part_plan_fits_five_terabytes() {
        const TB: u64 = 1_000_000_000_000;
        for estimate in [
            0,
            1 << 20,
            300 << 20,
            50 << 30,
            TB,
            5 * TB,
            5 * (1u64 << 40),
        ] {
            let p = PartPlan::for_estimate(estimate);
            assert!((PartPlan::MIN_PART..=PartPlan::MAX_PART).contains(&p.base));
            assert!(p.in_flight >= 1);
            // The planned parts hold the estimate; the headroom holds more.
            assert!(p.base as u64 * 9_000 >= estimate, "{estimate}");
            assert!(p.capacity() >= estimate.saturating_mul(3) / 2, "{estimate}");
            for n in 1..=PartPlan::MAX_PARTS {
                let s = p.part_size(n);
                assert!((PartPlan::MIN_PART..=PartPlan::MAX_PART).contains(&s));
            }
        }
        // Small and medium archives keep part buffers within 64 MiB.
        for estimate in [300 << 20, 50u64 << 30, 250 << 30] {
            assert!(PartPlan::for_estimate(estimate).buffer_bytes() <= 64 << 20);
        }
        // Parts grow only past the planned 9,000.
        let p = PartPlan::for_estimate(0);
        assert_eq!(p.part_size(9_000), p.base);
        assert_eq!(p.part_size(9_001), 2 * p.base);
        assert_eq!(p.part_size(10_000), 16 * p.base);
    }
}
