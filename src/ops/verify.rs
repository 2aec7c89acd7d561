//! `verify` and `list`: checking an archive at a path, on stdin or in object
//! storage without writing anything.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use crate::error::{Error, Result};
use crate::extract::Patterns;
use crate::format::head::{Entry, EntryKind};
use crate::format::incremental::{CHANGES_PATH, Change, ChangeOrder, MAX_CHANGE_LINE, TAILS_DIR};
use crate::ops::chain::{Link, Trust, chain_of};
use crate::ops::source::open_archive;
use crate::progress::Progress;
use crate::read::{Depth, FileSink, Info, NullSink, Plan, ReadSummary, Sink, Visit};
use crate::store::location::Location;

/// Verifies the archive at `loc` to `depth`, counting the archive bytes
/// read in `progress`, decoding on `threads` threads (0: the cores hashing
/// leaves, see [`crate::read::read_archive_with`]).
pub fn verify(
    loc: &Location,
    depth: Depth,
    progress: Option<Arc<Progress>>,
    threads: usize,
) -> Result<ReadSummary> {
    let mut sink = OwnCheck::new(NullSink);
    let read = open_archive(loc, progress)?
        .with_threads(threads)
        .read_into(depth, &mut sink)?;
    if depth == Depth::Full {
        sink.check(&read.info)?;
    }
    Ok(read)
}

/// A sink that also checks an incremental's own members as they stream
/// by (FORMAT.md C.2, C.3): its operations parse, in order, and every
/// tail an append names is there. Everything else goes to `inner`.
pub struct OwnCheck<S> {
    /// The sink the members go to.
    pub inner: S,
    state: Arc<Mutex<OwnState>>,
}

#[derive(Default)]
struct OwnState {
    changes_seen: bool,
    error: Option<Error>,
    order: ChangeOrder,
    tails_needed: BTreeSet<String>,
    tails_seen: BTreeSet<String>,
}

/// Most tails an incremental's operations may name, checked in memory.
use crate::format::incremental::MAX_TAILS;

impl<S> OwnCheck<S> {
    /// Wraps `inner`.
    pub fn new(inner: S) -> Self {
        OwnCheck {
            inner,
            state: Arc::default(),
        }
    }

    /// After a full read: for an incremental, what its own members must be.
    pub fn check(&self, info: &Info) -> Result<()> {
        if info.base.is_none() {
            return Ok(());
        }
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(e) = st.error.take() {
            return Err(e);
        }
        if !st.changes_seen {
            return Err(Error::corrupt(format!(
                "an incremental archive without its {CHANGES_PATH}"
            )));
        }
        if let Some(t) = st.tails_needed.difference(&st.tails_seen).next() {
            return Err(Error::corrupt(format!(
                "an append's tail {t} is not in the archive"
            )));
        }
        Ok(())
    }
}

impl<S: Sink> Sink for OwnCheck<S> {
    type File = OwnFile<S::File>;

    fn plan(&mut self, plan: &Plan) -> Result<()> {
        self.inner.plan(plan)
    }

    fn dir(&self, entry: &Entry) -> Result<()> {
        self.inner.dir(entry)
    }

    fn file(&self, entry: &Entry) -> Result<Self::File> {
        let lines = if entry.path == CHANGES_PATH {
            let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
            st.changes_seen = true;
            Some((Arc::clone(&self.state), Vec::new()))
        } else {
            if entry.path.starts_with(TAILS_DIR) {
                let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
                if st.tails_seen.len() < MAX_TAILS {
                    st.tails_seen.insert(entry.path.clone());
                }
            }
            None
        };
        Ok(OwnFile {
            inner: self.inner.file(entry)?,
            lines,
        })
    }

    fn workers(&self, cores: usize) -> usize {
        self.inner.workers(cores)
    }
}

/// A member going through [`OwnCheck`].
pub struct OwnFile<F> {
    inner: F,
    /// For the operations member: the shared state and the line so far.
    lines: Option<(Arc<Mutex<OwnState>>, Vec<u8>)>,
}

impl OwnState {
    fn line(&mut self, line: &[u8]) {
        if self.error.is_some() {
            return;
        }
        let c = match self.order.next(line) {
            Ok(c) => c,
            Err(e) => {
                self.error = Some(e);
                return;
            }
        };
        if let Change::Append { tail, .. } = &c {
            if self.tails_needed.len() >= MAX_TAILS {
                self.error = Some(Error::corrupt(format!(
                    "{CHANGES_PATH}: more than {MAX_TAILS} appends"
                )));
                return;
            }
            self.tails_needed.insert(tail.clone());
        }
    }
}

impl<F: FileSink> FileSink for OwnFile<F> {
    fn write(&mut self, data: &[u8]) -> Result<()> {
        if let Some((state, buf)) = &mut self.lines {
            let mut st = state.lock().unwrap_or_else(|e| e.into_inner());
            for chunk in data.split_inclusive(|&b| b == b'\n') {
                buf.extend_from_slice(chunk);
                if buf.last() == Some(&b'\n') {
                    st.line(&buf[..buf.len() - 1]);
                    buf.clear();
                } else if buf.len() > MAX_CHANGE_LINE {
                    st.error.get_or_insert(Error::corrupt(format!(
                        "{CHANGES_PATH}: a line longer than {MAX_CHANGE_LINE} bytes"
                    )));
                    buf.clear();
                }
            }
        }
        self.inner.write(data)
    }

    fn finish(self, entry: &Entry) -> Result<()> {
        if let Some((state, buf)) = &self.lines
            && !buf.is_empty()
        {
            let mut st = state.lock().unwrap_or_else(|e| e.into_inner());
            st.error.get_or_insert(Error::corrupt(format!(
                "{CHANGES_PATH}: its last line has no newline"
            )));
        }
        self.inner.finish(entry)
    }
}

/// Lists the archive at `loc` into `visit`, entry by entry, with each
/// file's SHA-256 when `sha256` is asked for (a version-2 archive always
/// has them). See [`crate::read::list_archive`] for what is checked and
/// when: an error after entries were handed on means they are not to be
/// trusted.
/// Only entries matching `patterns` (as [`crate::ops::extract`] takes
/// them; none: all) are handed on, and a pattern that matches nothing is
/// an error that names it.
pub fn list(
    loc: &Location,
    sha256: bool,
    patterns: &[String],
    visit: &mut Visit<'_>,
) -> Result<Info> {
    list_chain(loc, sha256, patterns, &[], &mut |e, d, _| visit(e, d)).map(|(info, _)| info)
}

/// What a chain listing is handed: each entry of the whole tree, its
/// SHA-256 (files), and, for an incremental, whether the archive named
/// carries it (`None` for an archive that is not an incremental).
pub type ChainVisit<'a> = dyn FnMut(&Entry, Option<&[u8; 32]>, Option<bool>) -> Result<()> + 'a;

/// [`list`], where an incremental archive (read at offsets) is listed as
/// the whole tree its chain describes (its bases found where it recorded
/// them or among `bases`, each checked, their indexes read at offsets),
/// each entry saying whether this archive carries it. Returns what the
/// archive says about itself and its chain (the full archive first; empty
/// for an archive that is not an incremental).
pub fn list_chain(
    loc: &Location,
    sha256: bool,
    patterns: &[String],
    bases: &[Location],
    visit: &mut ChainVisit<'_>,
) -> Result<(Info, Vec<String>)> {
    let reader = open_archive(loc, None)?;
    if let Some(src) = reader.random_access()?
        && src.has_tail()
    {
        drop(src);
        let link = Link::open(loc)?;
        if link.head.is_incremental() {
            let links = chain_of(link, bases, Trust::Hash)?;
            let last = links.len() - 1;
            let mut pats = Patterns::new(patterns);
            // The whole tree's totals, not the archive's own.
            let (mut files, mut dirs, mut bytes) = (0u64, 0u64, 0u64);
            for e in crate::ops::chain::state(&links)? {
                let e = e?;
                match e.kind {
                    EntryKind::File => {
                        files += 1;
                        bytes = bytes.saturating_add(e.size);
                    }
                    EntryKind::Dir => dirs += 1,
                }
                if !pats.wants(&e.path) {
                    continue;
                }
                let entry = e.entry();
                let d = (e.kind == EntryKind::File).then_some(&e.sha256);
                visit(&entry, d, Some(e.origin == last))?;
            }
            pats.check_all_used()?;
            let l = &links[last];
            let mut info = Info::of_head2(&l.head, &l.meta);
            (info.files, info.dirs, info.total_bytes) = (files, dirs, bytes);
            return Ok((info, links.iter().map(|l| l.loc.to_string()).collect()));
        }
    }
    let mut pats = Patterns::new(patterns);
    let mut filtered = |e: &crate::format::head::Entry, d: Option<&[u8; 32]>| {
        if pats.wants(&e.path) {
            visit(e, d, None)?;
        }
        Ok(())
    };
    let info = reader.list_into(sha256, &mut filtered)?;
    pats.check_all_used()?;
    Ok((info, Vec::new()))
}

/// `verify --chain` of the archive at `loc`, after the archive itself is
/// verified: every base of an incremental is found (where recorded, or
/// among `bases`) and is, byte for byte, the archive recorded: its whole
/// SHA-256 is the one the link above recorded (hashed, or taken from the
/// verified-digest cache for a file unchanged since it was hashed); and
/// the chain model accepts the chain (every operation fits the base's
/// tree, every level is a tree). The bases' data frames are not
/// decompressed: with `read_data`, every base is also read whole and
/// checked as `verify` checks an archive (every frame, every member's
/// SHA-256), its SHA-256 taken as it is read. Returns the chain, the full
/// archive first (just `loc` for a full one).
pub fn verify_chain(
    loc: &Location,
    bases: &[Location],
    read_data: bool,
    threads: usize,
) -> Result<Vec<String>> {
    // Every link is authenticated through the descriptor the model reads
    // (cheap once cached); with `read_data` each base is then also read
    // whole by its path and checked, and must hash to the same.
    let links = chain_of(Link::open(loc)?, bases, Trust::Hash)?;
    let model = || -> Result<()> {
        for e in crate::ops::chain::state(&links)? {
            e?;
        }
        Ok(())
    };
    if !read_data {
        model()?;
        return Ok(links.iter().map(|l| l.loc.to_string()).collect());
    }
    // The model runs on its own thread while the bases are read (what it
    // reads of each link, its index and its own members, comes through
    // the descriptor whose whole SHA-256 was checked above); a base's
    // fault is reported first, as a lone `verify` of it would. Where no
    // thread can be started, the model runs after the reads.
    std::thread::scope(|s| {
        let modelled = std::thread::Builder::new()
            .name("chain model".into())
            .stack_size(crate::ops::chain::MODEL_STACK)
            .spawn_scoped(s, model);
        let read = read_bases(&links, loc, threads);
        let modelled = match modelled {
            Ok(h) => h.join(),
            Err(_) => Ok(read.as_ref().map_or(Ok(()), |_| model())),
        };
        read?;
        modelled.unwrap_or_else(|p| std::panic::resume_unwind(p))
    })?;
    Ok(links.iter().map(|l| l.loc.to_string()).collect())
}

/// `--read-data`: every base of `links` read whole and checked as
/// `verify` checks an archive, and hashing to what the link above
/// recorded.
fn read_bases(links: &[Link], loc: &Location, threads: usize) -> Result<()> {
    {
        for (i, l) in links.iter().enumerate().take(links.len() - 1) {
            let read = verify(&l.loc, Depth::Full, None, threads)
                .map_err(|e| e.also(format!("in {}, a base of {loc}", l.loc)))?;
            let above = &links[i + 1];
            let want = &above.head.base.as_ref().expect("an incremental").sha256;
            let got = crate::format::sums::hex(&read.sha256);
            if !got.eq_ignore_ascii_case(want) {
                return Err(Error::Base {
                    archive: above.loc.to_string(),
                    reason: format!(
                        "its base {} hashes to {got}, not the {want} it was made on",
                        l.loc
                    ),
                });
            }
        }
    }
    Ok(())
}
