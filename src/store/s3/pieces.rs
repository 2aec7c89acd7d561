//! Ranged reads of one version of an object, kept for the process:
//! a HEAD, a TAIL or an index block of an archive pinned by its ETag is
//! the same bytes however often it is asked for, and `watch` asks for
//! those of every archive of the chain (the full one's index too) at every
//! point. Reads of a few pieces only (an index, a HEAD), never a whole
//! download. Bounded: pieces up to [`MAX_PIECE`], [`BUDGET`] bytes in all,
//! the oldest let go first.
//! Only reads pinned by an ETag (`If-Match`) are kept: what comes back
//! is what the store would send again for that version, and it is
//! checked against its digests by whoever reads it, as before.

use std::collections::{HashMap, VecDeque};
use std::ops::Range;
use std::sync::Mutex;

use bytes::Bytes;

/// The largest piece kept.
pub(super) const MAX_PIECE: u64 = 1024 * 1024;
/// Bytes kept in all.
const BUDGET: usize = 8 << 20;

type Key = (String, String, u64, u64);

#[derive(Default)]
struct Pieces {
    held: HashMap<Key, Bytes>,
    order: VecDeque<Key>,
    bytes: usize,
}

static PIECES: Mutex<Option<Pieces>> = Mutex::new(None);

fn key(url: &str, e_tag: &str, range: &Range<u64>) -> Key {
    (url.to_string(), e_tag.to_string(), range.start, range.end)
}

/// The piece `range` of `url` at version `e_tag`, if it was read.
pub(super) fn get(url: &str, e_tag: &str, range: &Range<u64>) -> Option<Bytes> {
    let g = PIECES.lock().ok()?;
    g.as_ref()?.held.get(&key(url, e_tag, range)).cloned()
}

/// Keeps a piece just read (a small one).
pub(super) fn put(url: &str, e_tag: &str, range: &Range<u64>, piece: &Bytes) {
    if piece.len() as u64 > MAX_PIECE {
        return;
    }
    let Ok(mut g) = PIECES.lock() else { return };
    let p = g.get_or_insert_with(Pieces::default);
    let k = key(url, e_tag, range);
    if p.held.contains_key(&k) {
        return;
    }
    while p.bytes + piece.len() > BUDGET {
        let Some(old) = p.order.pop_front() else {
            break;
        };
        if let Some(b) = p.held.remove(&old) {
            p.bytes -= b.len();
        }
    }
    p.bytes += piece.len();
    p.order.push_back(k.clone());
    p.held.insert(k, piece.clone());
}

/// A [`Memo`]'s entries and their order of arrival.
type Entries<V> = (HashMap<String, V>, VecDeque<String>);

/// A map kept for the process, at most `cap` entries (the oldest let go
/// first): the probes of object versions, and the versions the newest
/// listing saw.
pub(super) struct Memo<V> {
    inner: Mutex<Option<Entries<V>>>,
    cap: usize,
}

impl<V: Clone> Memo<V> {
    pub(super) const fn new(cap: usize) -> Memo<V> {
        Memo {
            inner: Mutex::new(None),
            cap,
        }
    }

    pub(super) fn get(&self, k: &str) -> Option<V> {
        let g = self.inner.lock().ok()?;
        g.as_ref()?.0.get(k).cloned()
    }

    pub(super) fn put(&self, k: String, v: V) {
        let Ok(mut g) = self.inner.lock() else { return };
        let (map, order) = g.get_or_insert_with(Default::default);
        if map.insert(k.clone(), v).is_none() {
            order.push_back(k);
        }
        while map.len() > self.cap {
            let Some(old) = order.pop_front() else { break };
            map.remove(&old);
        }
    }

    pub(super) fn remove(&self, k: &str) {
        if let Ok(mut g) = self.inner.lock()
            && let Some((map, _)) = g.as_mut()
        {
            map.remove(k);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_are_kept_by_version_and_bounded() {
        let r = 0..4;
        put("s3://b/k", "\"e1\"", &r, &Bytes::from_static(b"abcd"));
        assert_eq!(get("s3://b/k", "\"e1\"", &r).unwrap(), &b"abcd"[..]);
        assert!(get("s3://b/k", "\"e2\"", &r).is_none(), "another version");
        assert!(
            get("s3://b/k", "\"e1\"", &(0..3)).is_none(),
            "another range"
        );
        // A big piece is not kept; many small ones stay within the budget.
        let big = Bytes::from(vec![0u8; MAX_PIECE as usize + 1]);
        put("s3://b/big", "\"e\"", &(0..big.len() as u64), &big);
        assert!(get("s3://b/big", "\"e\"", &(0..big.len() as u64)).is_none());
        let piece = Bytes::from(vec![1u8; MAX_PIECE as usize]);
        for i in 0..(BUDGET as u64 / MAX_PIECE + 8) {
            put("s3://b/many", "\"e\"", &(i..i + MAX_PIECE), &piece);
        }
        assert!(PIECES.lock().unwrap().as_ref().unwrap().bytes <= BUDGET);
        assert!(
            get("s3://b/many", "\"e\"", &(0..MAX_PIECE)).is_none(),
            "the oldest went"
        );
    }
}
