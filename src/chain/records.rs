//! Reading a link's index and members at offsets: its records block by
//! block, each block checked against its TABLE row and the whole against
//! TAIL and META; a record found from the last block back; a member's
//! content checked against its SHA-256.

use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};
use std::io::{BufReader, Read};
use std::rc::Rc;

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::format::incremental::{is_own, tree_cmp};
use crate::format::v2::Record;
use crate::read::index::IndexSide;
use crate::read::read_block;

use super::link::Link;

impl Link {
    /// Its index records, in order, each block checked against its TABLE
    /// row and every record on its own before it is handed on.
    pub fn records(&self) -> Records<'_> {
        let buf: Rc<RefCell<VecDeque<Record>>> = Rc::default();
        let keep = Rc::clone(&buf);
        let index = IndexSide::checking(Some(Box::new(move |r: &Record| {
            keep.borrow_mut().push_back(r.clone());
            Ok(())
        })))
        .incremental(self.head.is_incremental())
        .expect_nsec(self.tail.nsec());
        Records {
            link: self,
            next_row: 0,
            buf,
            index,
            done: false,
        }
    }

    /// The records of INDEX block `i` (checked against its TABLE row).
    fn block_records(&self, i: usize) -> Result<Vec<Record>> {
        let body = read_block(
            &mut |at, buf| self.src.read_at(at, buf),
            &self.rows[i],
            i,
            &self.src.shown,
        )?;
        let (_, raw_len) =
            crate::format::v2::parse_block_opening(body[..8].try_into().expect("8 bytes"))?;
        let raw = zstd::bulk::Decompressor::new()
            .and_then(|mut d| d.decompress(&body[8..], raw_len as usize))
            .map_err(|e| Error::corrupt(format!("INDEX block {}: {e}", i + 1)))?;
        let mut out = Vec::new();
        let mut off = 0;
        while off < raw.len() {
            let (rec, len) = Record::decode_in(&raw[off..], self.tail.nsec())?;
            off += len;
            out.push(rec);
        }
        Ok(out)
    }

    /// The record of the member at `path`, searched from the last block
    /// back (an incremental's own members are its last).
    pub fn find_last(&self, path: &str) -> Result<Option<Record>> {
        for i in (0..self.rows.len()).rev() {
            let recs = self.block_records(i)?;
            let first = recs.first().map(|r| r.path.clone());
            if let Some(rec) = recs.into_iter().find(|r| r.path == path) {
                return Ok(Some(rec));
            }
            if first.is_some_and(|f| tree_cmp(&f, path) == std::cmp::Ordering::Less) {
                break;
            }
        }
        Ok(None)
    }

    /// Its own members (the last records of an incremental), at most
    /// `cap` of them, by path.
    pub fn own_records(&self, cap: usize) -> Result<BTreeMap<String, Record>> {
        let mut out = BTreeMap::new();
        for i in (0..self.rows.len()).rev() {
            let mut before = false;
            for rec in self.block_records(i)? {
                if !is_own(&rec.path) {
                    before = true;
                    continue;
                }
                if out.len() >= cap {
                    return Err(Error::corrupt(format!(
                        "{}: more than {cap} own members",
                        self.loc
                    )));
                }
                out.insert(rec.path.clone(), rec);
            }
            if before {
                break;
            }
        }
        Ok(out)
    }

    /// The member `rec`'s content as a stream, checked against its
    /// SHA-256 when it ends (a mismatch is an error from the last read).
    pub fn member(&self, rec: &Record) -> Result<Member<'_>> {
        let stream = self.src.stream(rec.frame, self.tail.table_offset)?;
        let mut dec =
            zstd::stream::read::Decoder::with_buffer(BufReader::with_capacity(64 * 1024, stream))
                .map_err(|e| Error::io("decode", &self.src.shown, e))?;
        dec.window_log_max(crate::format::frame::MAX_WINDOW_LOG)
            .map_err(|e| Error::io("decode", &self.src.shown, e))?;
        let corrupt = |what: String| Error::corrupt(format!("{}: {}: {what}", self.loc, rec.path));
        let skipped = std::io::copy(&mut (&mut dec).take(rec.offset), &mut std::io::sink())
            .map_err(|e| corrupt(format!("data frame: {e}")))?;
        let mut h = [0u8; 512];
        if skipped != rec.offset || dec.read_exact(&mut h).is_err() {
            return Err(corrupt("the data ends before its member".into()));
        }
        crate::read::index::check_header(&h, rec).map_err(corrupt)?;
        Ok(Member {
            dec,
            left: rec.size,
            hasher: Sha256::new(),
            want: rec.sha256,
            name: format!("{}: {}", self.loc, rec.path),
        })
    }
}

/// A member's content, checked against its SHA-256 at its end.
pub struct Member<'a> {
    dec: zstd::stream::read::Decoder<'static, BufReader<Box<dyn Read + 'a>>>,
    left: u64,
    hasher: Sha256,
    want: [u8; 32],
    name: String,
}

impl Read for Member<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.left == 0 {
            return Ok(0);
        }
        let want = buf
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        let n = self.dec.read(&mut buf[..want])?;
        if n == 0 {
            return Err(std::io::Error::other(Error::corrupt(format!(
                "{}: the data ends inside the member",
                self.name
            ))));
        }
        self.hasher.update(&buf[..n]);
        self.left -= n as u64;
        if self.left == 0 && self.hasher.clone().finalize().as_slice() != self.want {
            return Err(std::io::Error::other(Error::corrupt(format!(
                "{}: content does not match its SHA-256 in the index",
                self.name
            ))));
        }
        Ok(n)
    }
}

/// An archive's index records, one block in memory at a time.
pub struct Records<'l> {
    link: &'l Link,
    next_row: usize,
    buf: Rc<RefCell<VecDeque<Record>>>,
    index: IndexSide<'static>,
    done: bool,
}

impl Records<'_> {
    fn end(&mut self) -> Result<()> {
        let l = self.link;
        let c = self.index.counted().expect("a checking index side counts");
        l.meta
            .check_first_paths(self.index.blocks, self.index.firsts.digest())?;
        if self.index.records != l.tail.entries
            || (c.files, c.dirs, c.bytes) != (l.meta.files, l.meta.dirs, l.meta.total_bytes)
        {
            return Err(Error::corrupt(format!(
                "{}: the index does not hold what TAIL and META count",
                l.loc
            )));
        }
        Ok(())
    }
}

impl Iterator for Records<'_> {
    type Item = Result<Record>;

    fn next(&mut self) -> Option<Result<Record>> {
        loop {
            if let Some(r) = self.buf.borrow_mut().pop_front() {
                return Some(Ok(r));
            }
            if self.done {
                return None;
            }
            let l = self.link;
            if self.next_row == l.rows.len() {
                self.done = true;
                return self.end().err().map(Err);
            }
            let i = self.next_row;
            self.next_row += 1;
            let r = &l.rows[i];
            let got = read_block(&mut |at, buf| l.src.read_at(at, buf), r, i, &l.src.shown)
                .and_then(|body| self.index.block(r.offset, r.len, &body));
            if let Err(e) = got {
                self.done = true;
                return Some(Err(e));
            }
        }
    }
}
