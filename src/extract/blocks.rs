//! Finding the INDEX blocks that can hold a path, by their first paths
//! (from META when it has them, checked as blocks are read), reading as
//! few blocks as the search needs.

use std::collections::HashMap;

use crate::error::{Error, Result};
use crate::format::incremental::{is_under, tree_cmp};
use crate::format::v2::{Record, Row};
use crate::read::read_block;
use crate::read::source::RandomSource;

/// The INDEX blocks of an archive read at offsets, each checked against
/// its TABLE row when read; the ones read to search are kept for use.
/// With META's first paths (authenticated with TABLE by TAIL), the search
/// reads no block; each block read must start with the path META gives.
pub struct Blocks<'a> {
    src: &'a RandomSource,
    rows: &'a [Row],
    first_paths: Option<Vec<String>>,
    /// Blocks read: frame body, first and last record's path.
    cache: HashMap<usize, (Vec<u8>, String, String)>,
}

impl<'a> Blocks<'a> {
    /// The blocks of `rows` in `src`, with META's first paths if it has
    /// them.
    pub fn new(
        src: &'a RandomSource,
        rows: &'a [Row],
        first_paths: Option<Vec<String>>,
    ) -> Blocks<'a> {
        Blocks {
            src,
            rows,
            first_paths,
            cache: HashMap::new(),
        }
    }

    /// Block `i`'s frame body and its first and last record's paths.
    fn load(&mut self, i: usize) -> Result<&(Vec<u8>, String, String)> {
        if !self.cache.contains_key(&i) {
            let frame = read_block(
                &mut |at, buf| self.src.read_at(at, buf),
                &self.rows[i],
                i,
                &self.src.shown,
            )?;
            // The first record's path: decompressed no further than the
            // block declares.
            let (_, raw_len) =
                crate::format::v2::parse_block_opening(frame[..8].try_into().expect("8 bytes"))?;
            let raw = zstd::bulk::Decompressor::new()
                .and_then(|mut d| d.decompress(&frame[8..], raw_len as usize))
                .map_err(|e| Error::corrupt(format!("INDEX block {}: {e}", i + 1)))?;
            let (first, mut off) = Record::decode(&raw)?;
            let mut last = first.path.clone();
            while off < raw.len() {
                let (rec, len) = Record::decode(&raw[off..])?;
                off += len;
                last = rec.path;
            }
            if let Some(want) = self.first_paths.as_ref().map(|f| &f[i])
                && *want != first.path
            {
                return Err(Error::corrupt(format!(
                    "INDEX block {} starts with {:?}, not the {:?} META gives",
                    i + 1,
                    first.path,
                    want
                )));
            }
            self.cache.insert(i, (frame, first.path, last));
        }
        Ok(self.cache.get(&i).expect("inserted above"))
    }

    /// Block `i`'s first path: from META when it has them, else read.
    fn first(&mut self, i: usize) -> Result<String> {
        match &self.first_paths {
            Some(f) => Ok(f[i].clone()),
            None => Ok(self.load(i)?.1.clone()),
        }
    }

    /// Block `i`'s frame body (taken out of the cache).
    pub fn body(&mut self, i: usize) -> Result<Vec<u8>> {
        self.load(i)?;
        Ok(self.cache.remove(&i).expect("loaded").0)
    }

    /// The blocks that can hold `p` or what is below it: from the last
    /// block whose first path comes before it (in tree order) through the
    /// last one whose first path is not past its subtree.
    pub fn covering(&mut self, p: &str) -> Result<Vec<usize>> {
        let before = |q: &str| tree_cmp(q, p) != std::cmp::Ordering::Greater;
        let inside = |q: &str| is_under(q, p);
        let n = self.rows.len();
        if n == 0 {
            return Ok(Vec::new());
        }
        // The last block whose first path is at or before `p`.
        let (mut lo, mut hi) = (0usize, n);
        while hi - lo > 1 {
            let mid = (lo + hi) / 2;
            if before(&self.first(mid)?) {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        let mut out = vec![lo];
        let mut j = lo + 1;
        while j < n {
            let first = self.first(j)?;
            if !(before(&first) || inside(&first)) {
                break;
            }
            out.push(j);
            j += 1;
        }
        // META's first paths chose where to stop: unless the last block
        // taken already ends past the subtree, the block after it is read
        // too, so that its first path (checked against META's on reading)
        // proves nothing wanted is in it. A lying META fails; it cannot
        // make blocks be skipped.
        if self.first_paths.is_some() && j < n {
            let last = self.load(j - 1)?.2.clone();
            if before(&last) || inside(&last) {
                self.load(j)?;
            }
        }
        Ok(out)
    }
}
