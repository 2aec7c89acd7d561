//! `verify --deep`'s checks: decode what SydraDB would read from a
//! restored archive, as the archive streams by.
//!
//! Every WAL record's length, type and CRC; every segment's header and
//! body; tags.json and MANIFEST as JSON: all streaming, any size, with the
//! checkers `create` uses ([`crate::sydradb::check`]). A problem is reported with its
//! path and byte offset.

use crate::error::Result;
use crate::format::head::Entry;
use crate::read::{FileSink, Sink};
use crate::sydradb::check::Checker;
use crate::sydradb::live::{self, FileKind};
use std::sync::{Arc, Mutex};

/// Most problems kept (the first ones).
pub const MAX_PROBLEMS: usize = 20;

/// One thing SydraDB would trip over.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Problem {
    /// Archive path of the file.
    pub path: String,
    /// Byte offset in the file.
    pub offset: u64,
    /// What is wrong.
    pub reason: String,
}

/// Per-file state of the deep check.
pub enum DeepFile {
    /// Not a file SydraDB reads.
    Skip,
    /// A SydraDB file, checked as it streams (any size, bounded memory).
    Check(Checker, Arc<Found>),
}

/// Problems found so far (shared by the worker threads).
#[derive(Default)]
pub struct Found {
    inner: Mutex<(Vec<Problem>, usize)>,
}

impl Found {
    fn add(&self, mut found: Vec<Problem>) {
        if found.is_empty() {
            return;
        }
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        g.1 += found.len();
        found.truncate(KEEP.saturating_sub(g.0.len()));
        g.0.extend(found);
    }
}

/// Problems kept before sorting and cutting to [`MAX_PROBLEMS`].
const KEEP: usize = 1000;

/// The sink that checks each file as SydraDB would read it.
#[derive(Default)]
pub struct DeepSink {
    found: Arc<Found>,
}

impl DeepSink {
    /// The first problems in archive path order, and how many there were.
    pub fn into_problems(self) -> (Vec<Problem>, usize) {
        let found = Arc::try_unwrap(self.found).unwrap_or_default();
        let (mut problems, total) = found.inner.into_inner().unwrap_or_else(|e| e.into_inner());
        problems.sort_by(|a, b| (&a.path, a.offset).cmp(&(&b.path, b.offset)));
        problems.truncate(MAX_PROBLEMS);
        (problems, total)
    }
}

impl Sink for DeepSink {
    type File = DeepFile;

    fn file(&self, entry: &Entry) -> Result<DeepFile> {
        Ok(match live::kind_of(&entry.path) {
            FileKind::Other => DeepFile::Skip,
            kind => DeepFile::Check(Checker::new(kind), self.found.clone()),
        })
    }
}

impl FileSink for DeepFile {
    fn write(&mut self, data: &[u8]) -> Result<()> {
        if let DeepFile::Check(c, _) = self {
            c.feed(data);
        }
        Ok(())
    }

    fn finish(self, entry: &Entry) -> Result<()> {
        if let DeepFile::Check(c, found) = self
            && let Some((offset, reason)) = c.finish()
        {
            found.add(vec![Problem {
                path: entry.path.clone(),
                offset,
                reason,
            }]);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::head::EntryKind;
    use crate::sydradb::wal_record;

    fn check(path: &str, content: &[u8], chunk: usize) -> Vec<Problem> {
        let e = Entry {
            path: path.into(),
            kind: EntryKind::File,
            size: content.len() as u64,
            mode: 0o644,
            mtime: 0,
            mtime_nsec: 0,
        };
        let s = DeepSink::default();
        let mut f = s.file(&e).unwrap();
        for c in content.chunks(chunk.max(1)) {
            f.write(c).unwrap();
        }
        f.finish(&e).unwrap();
        s.into_problems().0
    }

    #[test]
    fn wal_checked_in_any_chunking() {
        let mut w = Vec::new();
        for i in 0..10 {
            w.extend(wal_record(7, i, i as f64));
        }
        for chunk in [1, 3, 33, 34, 1000] {
            assert!(check("wal/current.wal", &w, chunk).is_empty(), "{chunk}");
            let torn = check("wal/current.wal", &w[..w.len() - 5], chunk);
            assert_eq!(torn.len(), 1);
            assert_eq!(torn[0].offset, 33 * 9);
            assert_eq!(torn[0].path, "wal/current.wal");
            let mut bad = w.clone();
            bad[33 * 4 + 20] ^= 1;
            let p = check("wal/current.wal", &bad, chunk);
            assert_eq!(
                (p[0].offset, p[0].reason.as_str()),
                (132, "record CRC mismatch")
            );
        }
    }

    #[test]
    fn json_and_segments() {
        assert!(check("tags.json", b"{}", 1).is_empty());
        assert_eq!(check("tags.json", b"", 1)[0].path, "tags.json");
        assert!(!check("MANIFEST", b"{\"a\":1}", 2).is_empty());
        let seg = crate::sydradb::encode_segment(1, 0, &[(1, 1.0), (2, 2.0)]);
        assert!(check("segments/0/a.seg", &seg, 5).is_empty());
        assert!(!check("segments/0/a.seg", &seg[..seg.len() - 1], 5).is_empty());
    }
}
