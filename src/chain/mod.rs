//! Chains of incremental archives: finding an incremental's bases (from
//! what its HEAD records, or among archives the caller names), checking
//! each is the archive it was made on before a byte of it is used, and
//! the whole tree a chain describes, as a stream merged from the chain's
//! indexes and operations (see `FORMAT.md`, part C). Everything is read
//! at offsets (files, objects); nothing holds more than one INDEX block
//! per archive of the chain.

use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};
use std::io::{BufRead, BufReader, Read};
use std::rc::Rc;

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::format::frame::{TAG_HEAD, check_skippable_header};
use crate::format::head::EntryKind;
use crate::format::incremental::{
    BaseRef, CHANGES_PATH, Change, ChangeOrder, MAX_CHAIN, MAX_CHANGE_LINE, StateEntry, is_own,
    tree_cmp,
};
use crate::format::sums::hex;
use crate::format::v2::{Head2, MAX_HEAD2_BODY, Meta, Record, Row, Tail};
use crate::read::index::IndexSide;
use crate::read::source::{RandomSource, open_link};
use crate::read::{read_block, read_end, table_rows};
use crate::store::location::Location;
use crate::store::s3::S3Url;

mod model;
pub mod reference;
pub use model::{apply_level, state};

/// One archive of a chain, open for reads at offsets, its end (TAIL,
/// TABLE, META) and HEAD read and checked.
pub struct Link {
    /// Where it is.
    pub loc: Location,
    /// The archive, read at offsets.
    pub src: RandomSource,
    /// Its HEAD (covered only by the whole archive's digest).
    pub head: Head2,
    /// Its TAIL.
    pub tail: Tail,
    /// Its META (authenticated by TAIL).
    pub meta: Meta,
    rows: Vec<Row>,
    /// The SHA-256 object metadata recorded at upload, if any.
    pub recorded_sha256: Option<String>,
    /// The archive is encrypted: `src` reads its plaintext, and its
    /// SHA-256 is the ciphertext's.
    pub encrypted: bool,
}

impl Link {
    /// Opens the archive at `loc`; it must be a version-2 or -3 archive in
    /// a file or an object.
    pub fn open(loc: &Location) -> Result<Link> {
        // Never opened unless a regular file: a FIFO would block, and
        // nothing else can be read at offsets.
        let reader = open_link(loc)?;
        let recorded_sha256 = reader.recorded_sha256();
        let encrypted = reader.is_encrypted();
        // What `ls` and `prune` go by without the key, authenticated by
        // the age header's MAC once decrypted: it must say what HEAD says.
        let record = reader
            .age_start()
            .and_then(|s| crate::store::crypt::chain_record(s).ok().flatten());
        let Some(src) = reader.random_access()? else {
            return Err(Error::Refused(format!(
                "{loc} is not a file or an object: the archives of a chain are read at offsets"
            )));
        };
        let Some((tail, meta, table)) =
            read_end(src.size, &mut |at, buf| src.read_at(at, buf), &src.shown)?
        else {
            let mut end = [0u8; crate::format::footer::FOOT_LEN];
            let n = end.len() as u64;
            let v1 = src.size >= n
                && src.read_at(src.size - n, &mut end).is_ok()
                && end[8..16] == *b"SYDRFOOT";
            if v1 {
                return Err(Error::Refused(format!(
                    "{loc} is a version-1 archive: only version-2 archives (this tool's) can be bases of an incremental"
                )));
            }
            return Err(Error::corrupt(format!(
                "{loc} does not end with a TAIL (truncated, or not an archive)"
            )));
        };
        let mut h = [0u8; 16];
        src.read_at(0, &mut h)
            .map_err(|e| crate::error::from_io(e, "read", src.shown.as_ref()))?;
        let len = check_skippable_header(&h, &TAG_HEAD, MAX_HEAD2_BODY, 0)?;
        let mut body = vec![0u8; len as usize];
        src.read_at(16, &mut body)
            .map_err(|e| crate::error::from_io(e, "read", src.shown.as_ref()))?;
        let head = Head2::parse(&body)?;
        if head.version != tail.version {
            return Err(Error::corrupt(format!(
                "{loc}: TAIL says version {} but HEAD says version {}",
                tail.version, head.version
            )));
        }
        if let Some(r) = record
            && r.base != head.base
        {
            return Err(Error::corrupt(format!(
                "{loc}: the chain record in its age header is not the base its HEAD records"
            )));
        }
        let rows = table_rows(&table, tail.table_offset, 16 + len)?;
        Ok(Link {
            loc: loc.clone(),
            src,
            head,
            tail,
            meta,
            rows,
            recorded_sha256,
            encrypted,
        })
    }

    /// Whether this is the archive `b` names, by what its end says: its
    /// size and the SHA-256 of everything before TAIL (the whole
    /// archive's SHA-256 is checked when it is read).
    pub fn is(&self, b: &BaseRef) -> bool {
        self.src.size == b.size
            && hex(&self.tail.body_sha256) == b.body_sha256
            && self
                .recorded_sha256
                .as_ref()
                .is_none_or(|s| s.eq_ignore_ascii_case(&b.sha256))
    }

    /// Checks that this is, byte for byte, the archive `b` names: its
    /// whole SHA-256 (the stored bytes; see
    /// [`RandomSource::stored_sha256`]) is the one the link above
    /// recorded. `child` names that link in the error.
    pub fn authenticate(&self, b: &BaseRef, child: &Location) -> Result<()> {
        let got = match self.src.stored_sha256()? {
            Some(sha) => sha,
            None => {
                crate::read::source::open_archive(&self.loc, None)?
                    .stored_sha256()?
                    .0
            }
        };
        // It has the size and TAIL recorded, so it claims to be the base:
        // another SHA-256 is a corrupted (or forged) base, an archive
        // fault (exit 1), as restore finds it when it reads it.
        if !hex(&got).eq_ignore_ascii_case(&b.sha256) {
            return Err(Error::corrupt(format!(
                "{}, the base of {child}, hashes to {}, not the {} it was made on (its size and TAIL are the recorded ones: corrupted or forged)",
                self.loc,
                hex(&got),
                b.sha256
            )));
        }
        Ok(())
    }

    /// Checks that the archive is still where it was opened (a file: the
    /// same file under its name): an incremental is published only while
    /// its base is there.
    pub fn check_present(&self) -> Result<()> {
        use std::os::unix::fs::MetadataExt;
        let Location::Local(p) = &self.loc else {
            return Ok(());
        };
        let now = std::fs::metadata(p).ok().map(|m| (m.dev(), m.ino()));
        if now.is_none() || now != self.src.file_id() {
            return Err(Error::Refused(format!(
                "the base {} was removed or replaced while the incremental was written; nothing was published",
                self.loc
            )));
        }
        Ok(())
    }

    /// Its index records, in order, each block checked against its TABLE
    /// row and every record on its own before it is handed on.
    pub fn records(&self) -> Records<'_> {
        let buf: Rc<RefCell<VecDeque<Record>>> = Rc::default();
        let keep = Rc::clone(&buf);
        let index = IndexSide::checking(Some(Box::new(move |r: &Record| {
            keep.borrow_mut().push_back(r.clone());
            Ok(())
        })))
        .incremental(self.head.is_incremental());
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
            let (rec, len) = Record::decode(&raw[off..])?;
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

    /// The operations of an incremental, in order. Small ones (most: a
    /// night's changes) are read whole at once, so a merge of a long
    /// chain holds no decoder per archive; larger ones stream.
    pub fn changes(&self) -> Result<Changes<Box<dyn Read + '_>>> {
        self.changes_in(None)
    }

    /// [`Link::changes`], larger ones decoded into `spill` first (made
    /// then if there is none yet).
    pub fn changes_in(
        &self,
        spill: Option<&mut Option<Rc<Spill>>>,
    ) -> Result<Changes<Box<dyn Read + '_>>> {
        let Some(rec) = self.find_last(CHANGES_PATH)? else {
            return Err(Error::corrupt(format!(
                "{} is an incremental archive without its {CHANGES_PATH}",
                self.loc
            )));
        };
        let mut member = self.member(&rec)?;
        if rec.size > SMALL_CHANGES {
            return Ok(match spill {
                None => Changes::new(Box::new(member)),
                Some(slot) => {
                    if slot.is_none() {
                        *slot = Some(Rc::new(Spill::new()?));
                    }
                    let spill = slot.as_ref().expect("made");
                    let (at, end) = spill.put(&mut member, &self.loc.to_string())?;
                    Changes::new(Box::new(SpillRange {
                        spill: Rc::clone(spill),
                        at,
                        end,
                    }))
                }
            });
        }
        let mut all = Vec::with_capacity(rec.size as usize);
        member
            .read_to_end(&mut all)
            .map_err(|e| crate::error::from_io(e, "read", &self.loc.name()))?;
        Ok(Changes::new(Box::new(std::io::Cursor::new(all))))
    }
}

/// Operations up to this size are read whole (see [`Link::changes`]).
const SMALL_CHANGES: u64 = 16 * 1024;

/// Larger operations of a chain's links, decoded once into one unlinked
/// temporary file and read back at offsets: a merge of a long chain
/// holds no decoder, and no descriptor, per archive.
pub struct Spill {
    file: std::fs::File,
    end: std::cell::Cell<u64>,
}

impl Spill {
    /// A new, empty spill file (in `$TMPDIR`).
    pub fn new() -> Result<Spill> {
        let file = tempfile::tempfile().map_err(|e| {
            Error::io("create a temporary file for", CHANGES_PATH, e).also(format!(
                "the temporary directory is {} ($TMPDIR)",
                std::env::temp_dir().display()
            ))
        })?;
        Ok(Spill {
            file,
            end: std::cell::Cell::new(0),
        })
    }

    /// Appends all of `r`; returns where it landed.
    fn put(&self, r: &mut dyn Read, name: &str) -> Result<(u64, u64)> {
        use std::os::unix::fs::FileExt;
        let start = self.end.get();
        let mut at = start;
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = match r.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(crate::error::from_io(e, "read", name.as_ref())),
            };
            self.file
                .write_all_at(&buf[..n], at)
                .map_err(|e| Error::io("write", "a temporary file", e))?;
            at += n as u64;
        }
        self.end.set(at);
        Ok((start, at))
    }
}

/// A range of the spill file.
struct SpillRange {
    spill: Rc<Spill>,
    at: u64,
    end: u64,
}

impl Read for SpillRange {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        use std::os::unix::fs::FileExt;
        let n = (buf.len() as u64).min(self.end - self.at) as usize;
        if n == 0 {
            return Ok(0);
        }
        let got = self.spill.file.read_at(&mut buf[..n], self.at)?;
        self.at += got as u64;
        Ok(got)
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

/// An incremental's operations, each checked, in strict tree order.
pub struct Changes<R> {
    lines: BufReader<R>,
    order: ChangeOrder,
    line: Vec<u8>,
}

impl<R: Read> Changes<R> {
    /// The operations read from `r` (the content of [`CHANGES_PATH`]).
    pub fn new(r: R) -> Self {
        Changes {
            lines: BufReader::with_capacity(8 * 1024, r),
            order: ChangeOrder::default(),
            line: Vec::new(),
        }
    }
}

impl<R: Read> Iterator for Changes<R> {
    type Item = Result<Change>;

    fn next(&mut self) -> Option<Result<Change>> {
        self.line.clear();
        let got = (&mut self.lines)
            .take(MAX_CHANGE_LINE as u64 + 1)
            .read_until(b'\n', &mut self.line);
        match got {
            Err(e) => return Some(Err(crate::error::from_io(e, "read", CHANGES_PATH.as_ref()))),
            Ok(0) => return None,
            Ok(_) => {}
        }
        if self.line.last() != Some(&b'\n') {
            return Some(Err(Error::corrupt(format!(
                "{CHANGES_PATH}: a line longer than {MAX_CHANGE_LINE} bytes, or the last one without its newline"
            ))));
        }
        Some(self.order.next(&self.line[..self.line.len() - 1]))
    }
}

/// Where an incremental's base is, from the location its HEAD records:
/// a relative name is beside the incremental (in its directory or its
/// prefix).
pub fn base_location(child: &Location, recorded: &str) -> Result<Location> {
    if S3Url::is_s3(recorded) {
        let options = match child {
            Location::S3 { options, .. } => options.clone(),
            Location::Local(_) => Default::default(),
        };
        return Location::parse(std::path::Path::new(recorded), &options);
    }
    if recorded.starts_with('/') {
        return Ok(Location::Local(recorded.into()));
    }
    if recorded.contains("..") && recorded.split('/').any(|c| c == "..") {
        return Err(Error::corrupt(format!(
            "the base location {recorded:?} climbs out of the archive's directory"
        )));
    }
    Ok(match child {
        Location::Local(p) => {
            let dir = p.parent().unwrap_or(std::path::Path::new(""));
            Location::Local(dir.join(recorded))
        }
        Location::S3 { url, options } => {
            let dir = url.key.rsplit_once('/').map_or("", |(d, _)| d);
            let key = if dir.is_empty() {
                recorded.to_string()
            } else {
                format!("{dir}/{recorded}")
            };
            Location::S3 {
                url: S3Url {
                    bucket: url.bucket.clone(),
                    key,
                },
                options: options.clone(),
            }
        }
    })
}

/// What HEAD records of a base found at `base` by an incremental that
/// goes to `out`: relative when they share a directory or prefix. A path
/// that is not UTF-8 cannot be recorded as it is (a lossy name would
/// never be found again): [`Error::NotIncremental`].
pub fn recorded_location(base: &Location, out: Option<&Location>) -> Result<String> {
    let s = recorded_lossy(base, out);
    if let Location::Local(b) = base
        && (b.to_str().is_none() || std::fs::canonicalize(b).is_ok_and(|r| r.to_str().is_none()))
    {
        return Err(Error::NotIncremental(format!(
            "the base's path {} is not UTF-8, and HEAD records it as text; rename it",
            b.display()
        )));
    }
    Ok(s)
}

fn recorded_lossy(base: &Location, out: Option<&Location>) -> String {
    // A base named through a symlink is recorded by the file it is (the
    // link may be repointed, and `ls` lists files, not links).
    let resolved;
    let base = match base {
        Location::Local(b) => match std::fs::canonicalize(b) {
            Ok(real) => {
                resolved = Location::Local(real);
                &resolved
            }
            Err(_) => base,
        },
        other => other,
    };
    match (base, out) {
        (Location::Local(b), Some(Location::Local(o))) => {
            let bd = b.parent().unwrap_or(std::path::Path::new(""));
            let od = o.parent().unwrap_or(std::path::Path::new(""));
            let same = match (
                std::fs::canonicalize(or_dot(bd)),
                std::fs::canonicalize(or_dot(od)),
            ) {
                (Ok(x), Ok(y)) => x == y,
                _ => bd == od,
            };
            match (same, b.file_name()) {
                (true, Some(n)) => n.to_string_lossy().into_owned(),
                _ => std::fs::canonicalize(b)
                    .unwrap_or_else(|_| b.clone())
                    .display()
                    .to_string(),
            }
        }
        (Location::Local(b), _) => std::fs::canonicalize(b)
            .unwrap_or_else(|_| b.clone())
            .display()
            .to_string(),
        (Location::S3 { url: b, .. }, Some(Location::S3 { url: o, .. })) => {
            let dir = |k: &str| {
                k.rsplit_once('/')
                    .map_or(String::new(), |(d, _)| d.to_string())
            };
            if b.bucket == o.bucket && dir(&b.key) == dir(&o.key) {
                b.key.rsplit('/').next().unwrap_or(&b.key).to_string()
            } else {
                b.to_string()
            }
        }
        (Location::S3 { url, .. }, _) => url.to_string(),
    }
}

fn or_dot(p: &std::path::Path) -> &std::path::Path {
    if p.as_os_str().is_empty() {
        std::path::Path::new(".")
    } else {
        p
    }
}

/// Finds the base `b` of the incremental `child`: among `extra` first
/// (any that is the archive `b` names), then where HEAD says it is
/// (a relative name beside `child`, then beside each of `later`, the
/// archives of the chain after it: a chain moved together with the
/// archive named). A missing base, or one that is another archive, is an
/// [`Error::Base`].
pub fn find_base(
    child: &Link,
    b: &BaseRef,
    extra: &[Location],
    later: &[Location],
    trust: Trust,
) -> Result<Link> {
    let mut not_it = Vec::new();
    for loc in extra {
        match Link::open(loc) {
            Ok(l) if l.is(b) => match trust.check(&l, b, &child.loc) {
                Ok(()) => return Ok(l),
                Err(e) => not_it.push(e.to_string()),
            },
            Ok(_) => not_it.push(format!("{loc} is another archive")),
            Err(e) => not_it.push(format!("{loc}: {e}")),
        }
    }
    let given = if not_it.is_empty() {
        String::new()
    } else {
        format!(" (of the --base archives, {})", not_it.join("; "))
    };
    let broken = |reason: String| Error::Base {
        archive: child.loc.to_string(),
        reason: format!("{reason}{given}"),
    };
    // A local archive's base is looked for locally only: a HEAD cannot
    // make this run contact object storage.
    if matches!(child.loc, Location::Local(_)) && S3Url::is_s3(&b.location) {
        return Err(broken(format!(
            "its base is recorded at {} (SHA-256 {}); give it with --base",
            b.location, b.sha256
        )));
    }
    let primary = base_location(&child.loc, &b.location)?;
    let mut places = vec![primary.clone()];
    let name = b
        .location
        .rsplit('/')
        .next()
        .unwrap_or(&b.location)
        .to_string();
    for l in std::iter::once(&child.loc).chain(later) {
        // Where recorded relative to each archive of the chain, then by its
        // name alone beside each (a chain moved together).
        for rec in [b.location.as_str(), name.as_str()] {
            let loc = base_location(l, rec)?;
            if !places.iter().any(|p| p.to_string() == loc.to_string()) {
                places.push(loc);
            }
        }
    }
    let mut first_error = None;
    for loc in &places {
        match Link::open(loc) {
            Ok(l) if l.is(b) => match trust.check(&l, b, &child.loc) {
                Ok(()) => return Ok(l),
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            },
            Ok(l) => {
                first_error.get_or_insert(broken(format!(
                    "its base {loc} is another archive ({} bytes, body SHA-256 {}) than the one it was made on ({} bytes, SHA-256 {}); give the right one with --base",
                    l.src.size,
                    hex(&l.tail.body_sha256),
                    b.size,
                    b.sha256
                )));
            }
            Err(e) if missing(&e) => {}
            Err(e) if e.is_archive_fault() => {
                first_error.get_or_insert(Error::corrupt(format!(
                    "{loc}, the base of {}: {e}",
                    child.loc
                )));
            }
            Err(e) => {
                first_error.get_or_insert(broken(format!("its base {loc} cannot be used: {e}")));
            }
        }
    }
    Err(first_error.unwrap_or_else(|| {
        broken(format!(
            "its base {primary} (SHA-256 {}) is missing; give it with --base",
            b.sha256
        ))
    }))
}

fn missing(e: &Error) -> bool {
    match e {
        Error::Io { source, .. } => source.kind() == std::io::ErrorKind::NotFound,
        Error::Remote { reason, .. } => {
            let r = reason.to_ascii_lowercase();
            r.contains("no such object")
                || r.contains("not found")
                || r.contains("nosuchkey")
                || r.contains("404")
        }
        _ => false,
    }
}

/// When a base found is trusted to be the archive its link recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trust {
    /// Now: its whole SHA-256 is checked ([`Link::authenticate`]) before
    /// a byte or index record of it is used.
    Hash,
    /// As it is read whole by the caller, who compares its SHA-256 with
    /// the recorded one before anything it gave is used (restore).
    AsRead,
}

impl Trust {
    fn check(self, l: &Link, b: &BaseRef, child: &Location) -> Result<()> {
        match self {
            Trust::Hash => l.authenticate(b, child),
            Trust::AsRead => Ok(()),
        }
    }
}

/// The stack a thread that runs the model over a whole chain needs: the
/// tree is merged level by level, one nested iterator per archive, and a
/// 1,000-link chain runs deep (only the pages used are committed).
pub const MODEL_STACK: usize = 256 << 20;

/// The chain of the archive at `target`: its full archive first, the
/// target last, each base found ([`find_base`]) and authenticated (its
/// whole SHA-256 is the one the next link recorded), and the depths
/// HEADs record consistent.
pub fn open_chain(target: &Location, extra: &[Location]) -> Result<Vec<Link>> {
    chain_of(Link::open(target)?, extra, Trust::Hash)
}

/// [`open_chain`] of the archive `target`, already open.
pub fn chain_of(target: Link, extra: &[Location], trust: Trust) -> Result<Vec<Link>> {
    let name = target.loc.clone();
    let mut links = vec![target];
    loop {
        let last = links.last().expect("one at least");
        let Some(b) = last.head.base.clone() else {
            break;
        };
        if links.len() > MAX_CHAIN {
            return Err(Error::corrupt(format!(
                "{name}: a chain of more than {MAX_CHAIN} archives"
            )));
        }
        let later: Vec<Location> = links.iter().rev().skip(1).map(|l| l.loc.clone()).collect();
        let base = find_base(last, &b, extra, &later, trust)?;
        let want = b.depth - 1;
        let got = base.head.base.as_ref().map_or(0, |bb| bb.depth);
        if got != want {
            return Err(Error::corrupt(format!(
                "{} says its base is incremental number {} of its chain, but {} is number {got}",
                last.loc, want, base.loc
            )));
        }
        links.push(base);
    }
    links.reverse();
    Ok(links)
}

/// Writes the content of the file `e` of the tree of `links` (as
/// [`state`] gave it, which checked the chain) to `out`: its member, read
/// at offsets, or for a file an incremental appended to, the member it
/// started as and every tail appended since, in order. The lineage is
/// found walking down the chain once, each archive's operations read at
/// most once and its index searched from its end (WAL files come last):
/// reads grow with the chain's length, not its square. The caller checks
/// the whole against `e.sha256`.
pub fn write_content(
    links: &[Link],
    e: &StateEntry,
    out: &mut dyn FnMut(&[u8]) -> Result<()>,
) -> Result<()> {
    // Tails to append, newest first: (archive, tail member).
    let mut tails: Vec<(usize, String)> = Vec::new();
    let mut first: Option<(usize, Record)> = None;
    if !e.appended {
        first = Some((
            e.origin,
            Record {
                path: e.path.clone(),
                kind: EntryKind::File,
                mode: e.mode,
                mtime: e.mtime,
                size: e.size,
                frame: e.frame,
                offset: e.offset,
                sha256: e.sha256,
            },
        ));
    }
    let (mut path, mut level) = (e.path.clone(), e.origin);
    while first.is_none() {
        let l = &links[level];
        let Some((from, tail)) = append_of(l, &path)? else {
            return Err(Error::corrupt(format!("{}: no append of {path}", l.loc)));
        };
        tails.push((level, tail));
        // The entry `from` at the level below: made by the newest archive
        // below that holds a member there or appended to it.
        let mut j = level;
        loop {
            if j == 0 {
                // The model accepts no such chain: the incremental's fault.
                return Err(Error::corrupt(format!(
                    "{}: it continues {from}, which its base does not hold",
                    l.loc
                )));
            }
            j -= 1;
            let below = &links[j];
            if let Some(rec) = below.find_last(&from)? {
                if rec.kind != EntryKind::File {
                    return Err(Error::corrupt(format!(
                        "{}: it continues {from}, which is not a file",
                        l.loc
                    )));
                }
                first = Some((j, rec));
                break;
            }
            if j > 0 && append_of(below, &from)?.is_some() {
                (path, level) = (from, j);
                break;
            }
        }
    }
    let (at, rec) = first.expect("found");
    copy_member(&links[at], &rec, out)?;
    for (level, tail) in tails.into_iter().rev() {
        let l = &links[level];
        let Some(t) = l.find_last(&tail)? else {
            return Err(Error::corrupt(format!(
                "{}: its tail {tail} is missing",
                l.loc
            )));
        };
        copy_member(l, &t, out)?;
    }
    Ok(())
}

/// The append of an incremental to `path`: the file it continues and
/// its tail member.
fn append_of(l: &Link, path: &str) -> Result<Option<(String, String)>> {
    if l.head.base.is_none() {
        return Ok(None);
    }
    for c in l.changes()? {
        match c? {
            Change::Append {
                path: p,
                from,
                tail,
                ..
            } if p == path => return Ok(Some((from, tail))),
            c if tree_cmp(c.path(), path).is_gt() => break,
            _ => {}
        }
    }
    Ok(None)
}

/// Copies the member `rec` of `l` to `out`, checked against its SHA-256.
fn copy_member(l: &Link, rec: &Record, out: &mut dyn FnMut(&[u8]) -> Result<()>) -> Result<()> {
    let mut r = l.member(rec)?;
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = match r.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(err) => return Err(crate::error::from_io(err, "read", &l.loc.name())),
        };
        out(&buf[..n])?;
    }
}
