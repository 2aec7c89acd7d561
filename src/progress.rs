//! Progress counters the library updates and a front end reads (the
//! binary draws a bar or prints NDJSON from them; the library draws
//! nothing itself).

use std::sync::atomic::{AtomicU64, Ordering};

/// Bytes done out of a total (0 when the total is not known).
#[derive(Debug, Default)]
pub struct Progress {
    done: AtomicU64,
    total: AtomicU64,
}

impl Progress {
    /// Adds `n` bytes done.
    pub fn add(&self, n: u64) {
        self.done.fetch_add(n, Ordering::Relaxed);
    }

    /// Sets the total.
    pub fn set_total(&self, n: u64) {
        self.total.store(n, Ordering::Relaxed);
    }

    /// Bytes done so far.
    pub fn done(&self) -> u64 {
        self.done.load(Ordering::Relaxed)
    }

    /// The total, 0 if unknown.
    pub fn total(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts() {
        let p = Progress::default();
        p.set_total(10);
        p.add(3);
        p.add(4);
        assert_eq!((p.done(), p.total()), (7, 10));
    }
}
