//! `verify` (quick, full, `--deep`, `--chain`) and `list`: checking an
//! archive at a path, on stdin or in object storage without writing
//! anything.

use std::sync::Arc;

use crate::chain::{Link, Trust, chain_of};
use crate::error::{Error, Result};
use crate::extract::Patterns;
use crate::format::head::{Entry, EntryKind};
use crate::progress::Progress;
use crate::read::own::OwnCheck;
use crate::read::source::open_archive;
use crate::read::{Depth, Info, NullSink, ReadSummary, Visit};
use crate::store::location::Location;
use crate::sydradb::deep::{DeepSink, Problem};

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

/// Verifies the archive fully and decodes every SydraDB file in it.
/// Returns the summary, the first problems, and how many there were.
pub fn verify_deep(
    loc: &Location,
    progress: Option<Arc<Progress>>,
    threads: usize,
) -> Result<DeepSummary> {
    let mut sink = OwnCheck::new(DeepSink::default());
    let read = open_archive(loc, progress)?
        .with_threads(threads)
        .read_into(Depth::Full, &mut sink)?;
    sink.check(&read.info)?;
    let (problems, problem_count) = sink.inner.into_problems();
    Ok(DeepSummary {
        read,
        problems,
        problem_count,
    })
}

/// What `verify --deep` found in an archive that verified.
#[derive(Debug, Clone)]
pub struct DeepSummary {
    /// What the full verification found.
    pub read: ReadSummary,
    /// The first problems SydraDB would trip over, in path order (at most
    /// [`MAX_PROBLEMS`](crate::sydradb::deep::MAX_PROBLEMS)).
    pub problems: Vec<Problem>,
    /// How many problems in all.
    pub problem_count: usize,
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
            for e in crate::chain::state(&links)? {
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
        for e in crate::chain::state(&links)? {
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
            .stack_size(crate::chain::MODEL_STACK)
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
