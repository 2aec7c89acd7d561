//! `extract`: some files out of an archive, without the rest.
//!
//! From a version-2 archive in a file or an object, only the end (TAIL,
//! TABLE, META, checked against TAIL's digest), the INDEX blocks (each
//! against its TABLE row) and the data frames that hold the wanted
//! members are read, at offsets. Anything else (a version-1 archive, a
//! pipe) is read whole as a stream, fully verified, and only the wanted
//! members are kept. Either way the files go to a private staging
//! directory inside the destination first, each checked against its
//! SHA-256, and are moved into place only once every one of them is
//! checked: a failure publishes nothing.

use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::format::head::{Entry, EntryKind};
use crate::format::incremental::{is_under, tree_cmp};
use crate::format::v2::{Record, Row, Tail};
use crate::ops::source::RandomSource;
use crate::read::{Depth, FileSink, Sink, read_block, read_end, table_rows};
use crate::store::location::Location;
use crate::sys;

/// Where extracted files go.
#[derive(Debug, Clone)]
pub enum ExtractTo {
    /// Into this directory (created if absent), at their archive paths.
    Dir(PathBuf),
    /// The one matching file, to this path (written atomically).
    File(PathBuf),
    /// The one matching file, to stdout (after it is checked).
    Stdout,
}

/// What to extract and where.
#[derive(Debug, Clone)]
pub struct ExtractOptions {
    /// Archive paths or globs (`*` and `?` within a path component); a
    /// directory's pattern takes everything below it. Empty: everything.
    pub patterns: Vec<String>,
    /// The destination.
    pub to: ExtractTo,
    /// Replace existing files.
    pub force: bool,
    /// For an incremental: bases it may have been made on, besides where
    /// it recorded them.
    pub bases: Vec<Location>,
}

/// What an extract did.
#[derive(Debug, Clone, Default)]
pub struct ExtractSummary {
    /// Files extracted.
    pub files: u64,
    /// Directories created for them.
    pub dirs: u64,
    /// Bytes of file data extracted.
    pub bytes: u64,
    /// Archive bytes read.
    pub read_bytes: u64,
    /// Reads at offsets (ranged GETs for an object); 0 when streamed.
    pub reads: u64,
    /// The archive was read whole as a stream (version 1, or a pipe).
    pub streamed: bool,
}

/// Whether glob `pat` matches `name` (`*` and `?` never match `/`).
fn glob(pat: &[u8], name: &[u8]) -> bool {
    let (mut p, mut n) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        if p < pat.len() && (pat[p] == name[n] || (pat[p] == b'?' && name[n] != b'/')) {
            p += 1;
            n += 1;
        } else if p < pat.len() && pat[p] == b'*' {
            star = Some((p, n));
            p += 1;
        } else if let Some((sp, sn)) = star
            && name[sn] != b'/'
        {
            star = Some((sp, sn + 1));
            p = sp + 1;
            n = sn + 1;
        } else {
            return false;
        }
    }
    while p < pat.len() && pat[p] == b'*' {
        p += 1;
    }
    p == pat.len()
}

/// The patterns, and which of them matched something.
pub(crate) struct Patterns {
    pats: Vec<(String, bool)>,
}

impl Patterns {
    pub(crate) fn new(pats: &[String]) -> Self {
        Patterns {
            pats: pats
                .iter()
                .map(|p| (p.trim_end_matches('/').to_string(), false))
                .collect(),
        }
    }

    /// Whether `path` (or a directory above it) matches a pattern.
    pub(crate) fn wants(&mut self, path: &str) -> bool {
        if self.pats.is_empty() {
            return true;
        }
        let b = path.as_bytes();
        let mut hit = false;
        for (pat, used) in &mut self.pats {
            let ends = b
                .iter()
                .enumerate()
                .filter(|&(_, &c)| c == b'/')
                .map(|(i, _)| i)
                .chain(std::iter::once(b.len()));
            if ends.into_iter().any(|i| glob(pat.as_bytes(), &b[..i])) {
                *used = true;
                hit = true;
            }
        }
        hit
    }

    /// The directories (or files) every match lies in or under: for each
    /// pattern, its components before the first one with `*` or `?`.
    /// `None` when a pattern can match anywhere (or there is none).
    fn prefixes(&self) -> Option<Vec<String>> {
        if self.pats.is_empty() {
            return None;
        }
        let mut out = Vec::new();
        for (p, _) in &self.pats {
            let lit: Vec<&str> = p
                .split('/')
                .take_while(|c| !c.contains(['*', '?']))
                .collect();
            if lit.is_empty() || lit.iter().any(|c| c.is_empty()) {
                return None;
            }
            out.push(lit.join("/"));
        }
        Some(out)
    }

    pub(crate) fn check_all_used(&self) -> Result<()> {
        match self.pats.iter().find(|(_, used)| !used) {
            Some((p, _)) => Err(Error::Refused(format!(
                "{p:?} matches nothing in the archive"
            ))),
            None => Ok(()),
        }
    }
}

/// Extracts from the archive at `loc`.
pub fn extract(loc: &Location, opts: &ExtractOptions) -> Result<ExtractSummary> {
    let reader = crate::ops::source::open_archive(loc, None)?;
    if reader.is_encrypted() && matches!(opts.to, ExtractTo::Stdout) {
        return Err(Error::Refused(format!(
            "{loc} is encrypted: extracting to stdout would stage the plaintext in the temporary directory; use -o FILE or -C DIR"
        )));
    }
    let src = reader.random_access()?;
    let mut stage = Stage::new(&opts.to, opts.force)?;
    let mut pats = Patterns::new(&opts.patterns);
    let got = match &src {
        Some(src) => match read_end(src.size, &mut |at, buf| src.read_at(at, buf), &src.shown) {
            Ok(Some((tail, _, _))) if tail.version == crate::format::incremental::VERSION3 => {
                by_chain(loc, &opts.bases, &mut pats, &mut stage).map(Some)
            }
            Ok(Some((tail, meta, table))) => {
                by_index(src, &tail, &table, meta.first_paths, &mut pats, &mut stage).map(Some)
            }
            Ok(None) => Ok(None),
            Err(e) => Err(e),
        },
        None => Ok(None),
    };
    let mut summary = match got {
        Ok(Some(s)) => s,
        Ok(None) => {
            // Read whole: version 1, or not at offsets.
            let mut sink = StreamSink {
                pats: std::sync::Mutex::new(pats),
                stage: &stage,
            };
            let read = reader.read_into(Depth::Full, &mut sink);
            let files = stage.files.load(Ordering::Relaxed);
            let bytes = stage.bytes.load(Ordering::Relaxed);
            pats = sink.pats.into_inner().unwrap_or_else(|e| e.into_inner());
            match read {
                Ok(r) if r.info.base.is_some() => {
                    return Err(stage.abandon(Error::Refused(format!(
                        "{loc} is an incremental archive: extract from it where it can be read at offsets (a file or an object), so that its bases are found"
                    ))));
                }
                Ok(r) => ExtractSummary {
                    files,
                    bytes,
                    read_bytes: r.bytes,
                    streamed: true,
                    ..ExtractSummary::default()
                },
                Err(e) => return Err(stage.abandon(e)),
            }
        }
        Err(e) => return Err(stage.abandon(e)),
    };
    if let Err(e) = pats.check_all_used() {
        return Err(stage.abandon(e));
    }
    if let Some(src) = &src
        && !summary.streamed
        && summary.reads == 0
    {
        (summary.reads, summary.read_bytes) = src.counts();
    }
    summary.dirs = stage.publish()?;
    Ok(summary)
}

/// Extracts the wanted files of the whole tree an incremental's chain
/// describes: each from the archive of the chain that holds it, read at
/// offsets (an appended WAL file from its base's file and its tail),
/// checked against the SHA-256 the tree records for it.
fn by_chain(
    loc: &Location,
    bases: &[Location],
    pats: &mut Patterns,
    stage: &mut Stage,
) -> Result<ExtractSummary> {
    let links = crate::ops::chain::open_chain(loc, bases)?;
    let mut summary = ExtractSummary::default();
    for e in crate::ops::chain::state(&links)? {
        let e = e?;
        if !pats.wants(&e.path) {
            continue;
        }
        let entry = e.entry();
        if e.kind == EntryKind::Dir {
            stage.dir(&entry)?;
            continue;
        }
        stage.check_target(&e.path)?;
        let mut out = stage.file(&entry)?;
        let mut hasher = Sha256::new();
        let mut len = 0u64;
        crate::ops::chain::write_content(&links, &e, &mut |buf| {
            hasher.update(buf);
            len += buf.len() as u64;
            out.write(buf)
        })?;
        if len != e.size || hasher.finalize().as_slice() != e.sha256 {
            return Err(Error::corrupt(format!(
                "{}: its content does not match the size and SHA-256 its chain records",
                e.path
            )));
        }
        out.finish(&entry)?;
        summary.files += 1;
        summary.bytes += e.size;
    }
    for l in &links {
        let (reads, bytes) = l.src.counts();
        summary.reads += reads;
        summary.read_bytes += bytes;
    }
    summary.streamed = false;
    Ok(summary)
}

/// The tar stream from one data frame on, and where in it we are.
struct Cursor<'s> {
    frame: u64,
    pos: u64,
    dec: zstd::stream::read::Decoder<'static, BufReader<Box<dyn Read + 's>>>,
}

/// Extracts the wanted members of a version-2 archive read at offsets.
fn by_index(
    src: &RandomSource,
    tail: &Tail,
    table: &[u8],
    first_paths: Option<Vec<String>>,
    pats: &mut Patterns,
    stage: &mut Stage,
) -> Result<ExtractSummary> {
    let mut summary = ExtractSummary::default();
    let mut cursor: Option<Cursor<'_>> = None;
    // One index side for all blocks: tree order and frame offsets are
    // checked across them. The wanted records of each block are taken
    // out after it.
    let wanted: std::rc::Rc<std::cell::RefCell<Vec<Record>>> = Default::default();
    let keep = std::rc::Rc::clone(&wanted);
    let pats_prefixes = pats.prefixes();
    let on_record: crate::read::index::OnRecord<'_> = Box::new(move |rec: &Record| {
        if pats.wants(&rec.path) {
            keep.borrow_mut().push(rec.clone());
        }
        Ok(())
    });
    // Every block read: the whole tree order is checked; some: the strict
    // order of the records read.
    let mut index = if pats_prefixes.is_none() {
        crate::read::index::IndexSide::checking(Some(on_record))
    } else {
        crate::read::index::IndexSide::checking_some(Some(on_record))
    };
    let rows = table_rows(table, tail.table_offset, 0)?;
    if let Some(f) = &first_paths
        && f.len() != rows.len()
    {
        return Err(Error::corrupt(format!(
            "META lists {} first paths for {} INDEX blocks",
            f.len(),
            rows.len()
        )));
    }
    if let Some(f) = &first_paths
        && f.windows(2)
            .any(|w| w[0].split('/').cmp(w[1].split('/')) != std::cmp::Ordering::Less)
    {
        return Err(Error::corrupt("META's first paths are not in tree order"));
    }
    let mut blocks = Blocks {
        src,
        rows: &rows,
        first_paths,
        cache: std::collections::HashMap::new(),
    };
    // Only the blocks that can hold a match, found by their first paths
    // (records are in tree order), when every pattern has a literal start.
    let selected: Vec<usize> = match pats_prefixes {
        None => (0..rows.len()).collect(),
        Some(prefixes) => {
            let mut sel = std::collections::BTreeSet::new();
            for p in &prefixes {
                sel.extend(blocks.covering(p)?);
            }
            sel.into_iter().collect()
        }
    };
    for i in selected {
        let r = rows[i];
        let body = blocks.body(i)?;
        // The block's records, checked, the wanted ones kept (a block
        // holds at most 65,536).
        index.block(r.offset, r.len, &body)?;
        let taken = std::mem::take(&mut *wanted.borrow_mut());
        for rec in taken {
            // Before a byte is read, a file that may not be replaced.
            if rec.kind == EntryKind::File {
                stage.check_target(&rec.path)?;
            }
            let reuse = cursor
                .as_ref()
                .is_some_and(|c| c.frame == rec.frame && c.pos <= rec.offset);
            if !reuse {
                let stream = src.stream(rec.frame, tail.table_offset)?;
                // Small reads: the decoder pulls only what the member needs.
                let mut dec = zstd::stream::read::Decoder::with_buffer(BufReader::with_capacity(
                    16 * 1024,
                    stream,
                ))
                .map_err(|e| Error::io("decode", &src.shown, e))?;
                dec.window_log_max(crate::format::frame::MAX_WINDOW_LOG)
                    .map_err(|e| Error::io("decode", &src.shown, e))?;
                cursor = Some(Cursor {
                    frame: rec.frame,
                    pos: 0,
                    dec,
                });
            }
            let c = cursor.as_mut().expect("set above");
            let corrupt = |what: String| Error::corrupt(format!("{}: {what}", rec.path));
            let skip = rec.offset - c.pos;
            let skipped = io::copy(&mut (&mut c.dec).take(skip), &mut io::sink())
                .map_err(|e| corrupt(format!("data frame: {e}")))?;
            let mut h = [0u8; 512];
            if skipped != skip {
                return Err(corrupt("the data ends before its member".into()));
            }
            if let Err(e) = c.dec.read_exact(&mut h) {
                // A source's own archive fault (a chunk of an encrypted
                // archive that does not authenticate) says more.
                return Err(match Error::from_carrier(e) {
                    Ok(ours) if ours.is_archive_fault() => ours,
                    _ => corrupt("the data ends before its member".into()),
                });
            }
            c.pos = rec.offset + 512;
            crate::read::index::check_header(&h, &rec).map_err(&corrupt)?;
            let e = rec.entry();
            if rec.kind == EntryKind::Dir {
                stage.dir(&e)?;
                continue;
            }
            let mut out = stage.file(&e)?;
            let mut hasher = Sha256::new();
            let mut left = rec.size;
            let mut buf = vec![0u8; 256 * 1024];
            while left > 0 {
                let n = (left as usize).min(buf.len());
                c.dec
                    .read_exact(&mut buf[..n])
                    .map_err(|err| corrupt(format!("data frame: {err}")))?;
                hasher.update(&buf[..n]);
                out.write(&buf[..n])?;
                left -= n as u64;
            }
            c.pos += rec.size;
            if hasher.finalize().as_slice() != rec.sha256 {
                return Err(corrupt(
                    "content does not match its SHA-256 in the index".into(),
                ));
            }
            out.finish(&e)?;
            summary.files += 1;
            summary.bytes += rec.size;
        }
    }
    Ok(summary)
}

/// The INDEX blocks of an archive read at offsets, each checked against
/// its TABLE row when read; the ones read to search are kept for use.
/// With META's first paths (authenticated with TABLE by TAIL), the search
/// reads no block; each block read must start with the path META gives.
struct Blocks<'a> {
    src: &'a RandomSource,
    rows: &'a [Row],
    first_paths: Option<Vec<String>>,
    /// Blocks read: frame body, first and last record's path.
    cache: std::collections::HashMap<usize, (Vec<u8>, String, String)>,
}

impl Blocks<'_> {
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

    fn body(&mut self, i: usize) -> Result<Vec<u8>> {
        self.load(i)?;
        Ok(self.cache.remove(&i).expect("loaded").0)
    }

    /// The blocks that can hold `p` or what is below it: from the last
    /// block whose first path comes before it (in tree order) through the
    /// last one whose first path is not past its subtree.
    fn covering(&mut self, p: &str) -> Result<Vec<usize>> {
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

/// How extract's staging directories are named (`<mark><pid>.<nonce>`).
const STAGE_MARK: &str = ".sydra-extract.";

/// The private staging directory files are extracted into, and publishing
/// them from it.
struct Stage {
    to: ExtractTo,
    force: bool,
    /// The destination directory (for `Dir`) or the output's directory.
    root: File,
    root_path: PathBuf,
    name: Vec<u8>,
    dir: File,
    dirs_made: AtomicU64,
    /// Removes the staging tree if a signal comes first.
    pending: Option<crate::store::cleanup::Pending>,
    /// The destination directory was made by this run (removed again,
    /// if still empty, after a failure).
    made_root: bool,
    /// Files and bytes staged from a stream.
    files: AtomicU64,
    bytes: AtomicU64,
    /// The directories extracted, whose modes and times are set once the
    /// files are in place (a directory's time changes as files arrive).
    /// One per directory: a data dir has one per hour of segments.
    dir_entries: std::sync::Mutex<Vec<Entry>>,
    /// The directories publishing created (only those get the archive's
    /// modes and times: one that was there is left as it is).
    created_dirs: std::sync::Mutex<std::collections::HashSet<Vec<u8>>>,
    /// The files publishing moved into place, in order, each with whether
    /// it replaced one (swapped into the staging tree).
    moved: std::sync::Mutex<Vec<(Vec<u8>, bool)>>,
}

impl Stage {
    fn new(to: &ExtractTo, force: bool) -> Result<Stage> {
        let mut made_root = false;
        let root_path = match to {
            ExtractTo::Dir(d) => {
                made_root = !d.exists();
                std::fs::create_dir_all(d).map_err(|e| Error::io("create directory", d, e))?;
                d.clone()
            }
            ExtractTo::File(f) => match f.parent() {
                Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
                _ => PathBuf::from("."),
            },
            ExtractTo::Stdout => std::env::temp_dir(),
        };
        let root = sys::open_dir_path(&root_path)
            .map_err(|e| Error::io("open directory", &root_path, e))?;
        let name = format!(
            "{STAGE_MARK}{}.{:x}",
            std::process::id(),
            SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or_default()
                .subsec_nanos()
        )
        .into_bytes();
        // Staging directories of killed runs (their lock is free) go first:
        // they may hold plaintext of an encrypted archive.
        for old in crate::store::publish::unlocked_leftovers(
            &root_path,
            std::ffi::OsStr::new(STAGE_MARK),
            true,
        )? {
            if old.age >= crate::store::publish::STALE_AFTER
                && let Some(n) = old.path.file_name()
            {
                let _ = sys::remove_tree_at(
                    &root,
                    std::os::unix::ffi::OsStrExt::as_bytes(n),
                    &old._lock,
                );
            }
        }
        let dir = sys::make_private_dir(&root, &name)
            .map_err(|e| Error::io("create a staging directory in", &root_path, e))?;
        // Held until the run ends: a staging directory whose lock is free
        // is a killed run's.
        if let Err(e) = crate::store::publish::lock(&dir) {
            let _ = sys::remove_tree_at(&root, &name, &dir);
            return Err(Error::io("lock the staging directory in", &root_path, e));
        }
        let pending = {
            let (r, d, n) = (
                root.try_clone()
                    .map_err(|e| Error::io("open", &root_path, e))?,
                dir.try_clone()
                    .map_err(|e| Error::io("open", &root_path, e))?,
                name.clone(),
            );
            crate::store::cleanup::Pending::register(
                format!("staging directory in {}", root_path.display()),
                move || {
                    // A file being created as the signal came may land
                    // after the first pass: no new one starts once
                    // stopping, so a few passes empty it.
                    let mut tries = 0;
                    loop {
                        match sys::remove_tree_at(&r, &n, &d) {
                            Err(e)
                                if tries < 20
                                    && matches!(
                                        e.raw_os_error(),
                                        Some(libc::ENOTEMPTY | libc::ENOENT)
                                    ) =>
                            {
                                tries += 1;
                                std::thread::sleep(Duration::from_millis(10));
                            }
                            other => return other,
                        }
                    }
                },
            )
        };
        Ok(Stage {
            pending: Some(pending),
            made_root,
            to: to.clone(),
            force,
            root,
            root_path,
            name,
            dir,
            dirs_made: AtomicU64::new(0),
            files: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            dir_entries: std::sync::Mutex::new(Vec::new()),
            created_dirs: std::sync::Mutex::new(std::collections::HashSet::new()),
            moved: std::sync::Mutex::new(Vec::new()),
        })
    }

    fn shown(&self, rel: &str) -> PathBuf {
        match &self.to {
            ExtractTo::Dir(d) => d.join(rel),
            ExtractTo::File(f) => f.clone(),
            ExtractTo::Stdout => PathBuf::from("-"),
        }
    }

    /// Refuses a file that exists where `rel` goes, unless `--force`.
    fn check_target(&self, rel: &str) -> Result<()> {
        let target = match &self.to {
            ExtractTo::Dir(d) => d.join(rel),
            ExtractTo::File(f) => f.clone(),
            ExtractTo::Stdout => return Ok(()),
        };
        match std::fs::symlink_metadata(&target) {
            Ok(m) if m.is_file() && self.force => Ok(()),
            Ok(m) if m.is_file() => Err(Error::Refused(format!(
                "{} exists; use --force to replace it",
                target.display()
            ))),
            Ok(_) => Err(Error::Refused(format!(
                "{} exists and is not a regular file",
                target.display()
            ))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io("stat", &target, e)),
        }
    }

    /// The directories above `rel` in the staging directory.
    fn parents(&self, rel: &str) -> Result<()> {
        if crate::store::cleanup::stopping() {
            return Err(Error::Interrupted);
        }
        for (i, _) in rel.match_indices('/') {
            match sys::mkdir_at(&self.dir, &rel.as_bytes()[..i], 0o755) {
                Ok(()) => {
                    self.dirs_made.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(Error::io("create directory", self.shown(&rel[..i]), e)),
            }
        }
        Ok(())
    }

    fn dir(&self, e: &Entry) -> Result<()> {
        if !matches!(self.to, ExtractTo::Dir(_)) {
            return Ok(());
        }
        self.parents(&format!("{}/", e.path))?;
        self.dir_entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(e.clone());
        Ok(())
    }

    /// Sets the modes and times of the extracted directories that
    /// publishing created, deepest first (records are in tree order), once
    /// every file is in place.
    fn dir_times(&self) -> Result<()> {
        use std::os::unix::fs::PermissionsExt;
        let dirs = std::mem::take(&mut *self.dir_entries.lock().unwrap_or_else(|p| p.into_inner()));
        let created =
            std::mem::take(&mut *self.created_dirs.lock().unwrap_or_else(|p| p.into_inner()));
        for e in dirs.iter().rev() {
            if !created.contains(e.path.as_bytes()) {
                continue;
            }
            let shown = self.shown(&e.path);
            let d = sys::open_at(
                &self.root,
                e.path.as_bytes(),
                libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW,
                0,
            )
            .map_err(|err| Error::io("open", &shown, err))?;
            let mtime = SystemTime::UNIX_EPOCH + Duration::from_secs(e.mtime.max(0) as u64);
            d.set_modified(mtime)
                .and_then(|()| d.set_permissions(std::fs::Permissions::from_mode(e.mode & 0o777)))
                .map_err(|err| Error::io("set the mode and time of", &shown, err))?;
        }
        Ok(())
    }

    fn file(&self, e: &Entry) -> Result<StagedFile> {
        if crate::store::cleanup::stopping() {
            return Err(Error::Interrupted);
        }
        let rel = match &self.to {
            ExtractTo::Dir(_) => e.path.clone(),
            // One file: it takes a fixed name; a second one is refused.
            _ => "the-file".to_string(),
        };
        self.parents(&rel)?;
        let f = sys::open_at(
            &self.dir,
            rel.as_bytes(),
            libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL,
            0o600,
        )
        .map_err(|err| match err.kind() {
            io::ErrorKind::AlreadyExists if !matches!(self.to, ExtractTo::Dir(_)) => {
                Error::Refused("more than one file matches; -o takes exactly one".into())
            }
            io::ErrorKind::AlreadyExists => Error::hostile(&e.path, "duplicate path in the index"),
            _ => Error::io("create", self.shown(&e.path), err),
        })?;
        Ok(StagedFile {
            f,
            shown: self.shown(&e.path),
        })
    }

    /// Moves every staged file into place, then removes the staging
    /// directory. Returns the directories created.
    fn publish(mut self) -> Result<u64> {
        // Signals wait while files move into place: all or none of them.
        let pending = self.pending.take().expect("registered at creation");
        let (moved, removed) = pending.commit(|| {
            let moved = match &self.to {
                ExtractTo::Dir(_) => {
                    let r = self.publish_tree(b"");
                    if r.is_err() {
                        self.unpublish();
                    }
                    r.and_then(|()| self.dir_times())
                }
                ExtractTo::File(target) => self.publish_one(target),
                ExtractTo::Stdout => self.copy_to_stdout(),
            };
            (
                moved,
                sys::remove_tree_at(&self.root, &self.name, &self.dir),
            )
        });
        let made = self.dirs_made.load(Ordering::Relaxed);
        moved?;
        removed.map_err(|e| Error::io("remove the staging directory in", &self.root_path, e))?;
        Ok(made)
    }

    fn staged_one(&self) -> Result<File> {
        sys::open_at(&self.dir, b"the-file", libc::O_RDONLY, 0).map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                Error::Refused("no file matches; -o takes exactly one".into())
            } else {
                Error::io("read", &self.root_path, e)
            }
        })
    }

    fn publish_one(&self, target: &Path) -> Result<()> {
        self.staged_one()?;
        let name = target
            .file_name()
            .ok_or_else(|| Error::Refused(format!("{} names no file", target.display())))?;
        let flags = if self.force {
            0
        } else {
            libc::RENAME_NOREPLACE
        };
        sys::rename_between(
            &self.dir,
            b"the-file",
            &self.root,
            std::os::unix::ffi::OsStrExt::as_bytes(name),
            flags,
        )
        .map_err(|e| publish_error(e, target))
    }

    fn copy_to_stdout(&self) -> Result<()> {
        let mut f = self.staged_one()?;
        let out = io::stdout();
        let mut lock = out.lock();
        io::copy(&mut f, &mut lock)
            .and_then(|_| lock.flush())
            .map_err(|e| Error::io("write", "-", e))?;
        Ok(())
    }

    /// Moves the files below staging directory `rel` into the destination.
    fn publish_tree(&self, rel: &[u8]) -> Result<()> {
        let here = if rel.is_empty() {
            sys::Dir::from_file(&self.dir)
        } else {
            sys::Dir::from_file(&self.dir).and_then(|d| d.open_dir(rel, false))
        }
        .map_err(|e| Error::io("read", &self.root_path, e))?;
        let mut failed = None;
        here.each_name(|n| {
            let child: Vec<u8> = if rel.is_empty() {
                n.to_vec()
            } else {
                [rel, b"/", n].concat()
            };
            let st = here.stat_at(n)?;
            let r = if st.kind == sys::Kind::Dir {
                sys::mkdir_at(&self.root, &child, 0o755)
                    .map(|()| {
                        self.created_dirs
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .insert(child.clone());
                    })
                    .or_else(|e| {
                        if e.kind() == io::ErrorKind::AlreadyExists {
                            Ok(())
                        } else {
                            Err(e)
                        }
                    })
                    .map_err(|e| Error::io("create directory", self.shown(&lossy(&child)), e))
                    .and_then(|()| self.publish_tree(&child))
            } else {
                self.move_file(&child)
            };
            if let Err(e) = r {
                failed = Some(e);
                return Err(io::Error::other("stop"));
            }
            Ok(())
        })
        .map_err(|e| {
            failed
                .take()
                .unwrap_or_else(|| Error::io("read", &self.root_path, e))
        })
    }

    fn move_file(&self, rel: &[u8]) -> Result<()> {
        let (parent, name) = match rel.iter().rposition(|&b| b == b'/') {
            Some(i) => (&rel[..i], &rel[i + 1..]),
            None => (&b""[..], rel),
        };
        let open = |at: &File| -> io::Result<File> {
            if parent.is_empty() {
                at.try_clone()
            } else {
                sys::open_at(at, parent, libc::O_RDONLY | libc::O_DIRECTORY, 0)
            }
        };
        let shown = self.shown(&lossy(rel));
        let from = open(&self.dir).map_err(|e| Error::io("open", &shown, e))?;
        let to = open(&self.root).map_err(|e| Error::io("open", &shown, e))?;
        // Never over anything; with --force, an existing file is swapped
        // out (into the staging tree, removed with it), so a failure later
        // can put it back.
        let mut exchanged = false;
        if let Err(e) = sys::rename_between(&from, name, &to, name, libc::RENAME_NOREPLACE) {
            let is_file = sys::Dir::from_file(&to)
                .and_then(|d| d.stat_at(name))
                .is_ok_and(|st| st.kind == sys::Kind::File);
            if !(self.force && e.kind() == io::ErrorKind::AlreadyExists && is_file) {
                return Err(publish_error(e, &shown));
            }
            sys::rename_between(&from, name, &to, name, libc::RENAME_EXCHANGE)
                .map_err(|e| publish_error(e, &shown))?;
            exchanged = true;
        }
        self.moved
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((rel.to_vec(), exchanged));
        Ok(())
    }

    /// Takes back what a failed publication moved: every file moved goes
    /// back to the staging tree (a replaced one is swapped back), every
    /// directory made is removed if empty.
    fn unpublish(&self) {
        let moved = std::mem::take(&mut *self.moved.lock().unwrap_or_else(|p| p.into_inner()));
        for (rel, exchanged) in moved.into_iter().rev() {
            let (parent, name) = match rel.iter().rposition(|&b| b == b'/') {
                Some(i) => (&rel[..i], &rel[i + 1..]),
                None => (&b""[..], &rel[..]),
            };
            let open = |at: &File| -> io::Result<File> {
                if parent.is_empty() {
                    at.try_clone()
                } else {
                    sys::open_at(at, parent, libc::O_RDONLY | libc::O_DIRECTORY, 0)
                }
            };
            if let (Ok(from), Ok(to)) = (open(&self.dir), open(&self.root)) {
                let flags = if exchanged {
                    libc::RENAME_EXCHANGE
                } else {
                    libc::RENAME_NOREPLACE
                };
                let _ = sys::rename_between(&to, name, &from, name, flags);
            }
        }
        let mut made: Vec<Vec<u8>> = self
            .created_dirs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain()
            .collect();
        made.sort_by_key(|d| std::cmp::Reverse(d.len()));
        for d in made {
            // Only if empty: rmdir refuses anything else.
            let _ = sys::unlink_in(&self.root, &d, libc::AT_REMOVEDIR);
        }
    }

    /// Removes the staging directory after a failure; `e` is what failed.
    fn abandon(mut self, e: Error) -> Error {
        let removed = sys::remove_tree_at(&self.root, &self.name, &self.dir);
        if let Some(p) = self.pending.take() {
            p.forget();
        }
        if self.made_root && removed.is_ok() {
            // Only if still empty: rmdir refuses anything else.
            let _ = std::fs::remove_dir(&self.root_path);
        }
        match removed {
            Ok(()) => e,
            Err(err) => e.also(format!(
                "could not remove the staging directory in {}: {err}",
                self.root_path.display()
            )),
        }
    }
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn publish_error(e: io::Error, target: &Path) -> Error {
    if e.kind() == io::ErrorKind::AlreadyExists {
        Error::Refused(format!(
            "{} exists; use --force to replace it",
            target.display()
        ))
    } else {
        Error::io("move into place", target, e)
    }
}

/// A file being written into the staging directory.
struct StagedFile {
    f: File,
    shown: PathBuf,
}

impl StagedFile {
    fn write(&mut self, data: &[u8]) -> Result<()> {
        self.f
            .write_all(data)
            .map_err(|e| Error::io("write", &self.shown, e))
    }

    fn finish(self, e: &Entry) -> Result<()> {
        use std::os::unix::fs::PermissionsExt;
        let mtime = SystemTime::UNIX_EPOCH + Duration::from_secs(e.mtime.max(0) as u64);
        self.f
            .set_modified(mtime)
            .and_then(|()| {
                self.f
                    .set_permissions(std::fs::Permissions::from_mode(e.mode & 0o777))
            })
            .and_then(|()| self.f.sync_all())
            .map_err(|err| Error::io("finish", &self.shown, err))
    }
}

/// Keeps the wanted members of an archive read whole as a stream.
struct StreamSink<'s> {
    pats: std::sync::Mutex<Patterns>,
    stage: &'s Stage,
}

/// One member of [`StreamSink`]: written to staging, or dropped.
struct StreamFile<'s> {
    staged: Option<StagedFile>,
    stage: &'s Stage,
}

impl<'s> Sink for StreamSink<'s> {
    type File = StreamFile<'s>;

    fn dir(&self, e: &Entry) -> Result<()> {
        let wanted = self
            .pats
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .wants(&e.path);
        if wanted {
            self.stage.dir(e)?;
        }
        Ok(())
    }

    fn file(&self, e: &Entry) -> Result<StreamFile<'s>> {
        let wanted = self
            .pats
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .wants(&e.path);
        let staged = if wanted {
            self.stage.check_target(&e.path)?;
            Some(self.stage.file(e)?)
        } else {
            None
        };
        Ok(StreamFile {
            staged,
            stage: self.stage,
        })
    }
}

impl FileSink for StreamFile<'_> {
    fn write(&mut self, data: &[u8]) -> Result<()> {
        match &mut self.staged {
            Some(s) => s.write(data),
            None => Ok(()),
        }
    }

    fn finish(self, e: &Entry) -> Result<()> {
        if let Some(s) = self.staged {
            s.finish(e)?;
            self.stage.files.fetch_add(1, Ordering::Relaxed);
            self.stage.bytes.fetch_add(e.size, Ordering::Relaxed);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_stay_within_a_component() {
        assert!(glob(b"segments/*/a.seg", b"segments/3600/a.seg"));
        assert!(glob(b"wal/*.wal", b"wal/current.wal"));
        assert!(!glob(b"wal/*.wal", b"wal/x/current.wal"));
        assert!(glob(b"seg*", b"segments"));
        assert!(!glob(b"seg*", b"segments/3600"));
        assert!(glob(b"?AL", b"WAL"));
        assert!(!glob(b"?", b"/"));
        assert!(glob(b"*", b""));
        assert!(!glob(b"a", b"ab"));
    }

    #[test]
    fn a_directory_pattern_takes_what_is_below_it_and_unused_ones_are_named() {
        let mut p = Patterns::new(&["segments/3600/".into(), "tags.json".into(), "x*".into()]);
        assert!(p.wants("segments/3600"));
        assert!(p.wants("segments/3600/a.seg"));
        assert!(!p.wants("segments/36000/a.seg"));
        assert!(!p.wants("segments"));
        assert!(p.wants("tags.json"));
        let e = p.check_all_used().unwrap_err();
        assert!(e.to_string().contains("\"x*\" matches nothing"), "{e}");
        assert!(Patterns::new(&[]).wants("anything"));
    }
}
