//! The one model of a chain: what the tree of an incremental archive is,
//! given its base's tree (see `FORMAT.md`, C.3, "What a chain means").
//! Every reader goes through it: `list`, `extract` and `verify --chain`
//! read its stream; `create --base` compares the data dir with it;
//! `restore` runs it over the whole chain before it stages a byte and
//! compares the staged tree with its last tree before it publishes.
//!
//! The rules, at each path `x` in tree order, where the base's entry at
//! `x`, the incremental's operation at `x` and its member at `x` meet:
//! 1. a base file that an append continues under another name leaves
//!    `x` first (it is checked against the append's prefix there);
//! 2. an operation and a member never share a path;
//! 3. `delete x` needs the base's entry at `x` (still there: not moved,
//!    not gone with a directory above) and takes everything below it;
//! 4. `append x from f` needs the base file `f` of `offset` bytes with
//!    `prefix_sha256`, a tail member of `size - offset` bytes, and
//!    replaces whatever the base had at `x` (a directory with everything
//!    below it);
//! 5. a member at `x` replaces the base's entry there; a directory member
//!    on a base directory keeps what is below it, a file member takes it;
//! 6. every tail member is used by exactly one append, and every base
//!    file continued under another name is there;
//! 7. the result is a tree: strictly increasing paths, and the entry
//!    above each path is a directory of the tree.

use std::collections::{BTreeMap, HashMap};
use std::iter::Peekable;

use crate::error::{Error, Result};
use crate::format::head::EntryKind;
use crate::format::incremental::{
    CHANGES_PATH, Change, MAX_RENAMES, MAX_TAILS, StateEntry, is_own, is_under, tree_cmp,
};
use crate::format::sums::hex;
use crate::format::v2::Record;

use super::Link;

/// A stream of a tree's entries, in tree order.
pub type Stream<'l> = Box<dyn Iterator<Item = Result<StateEntry>> + 'l>;

/// The whole tree a chain describes, in tree order: the full archive's
/// records, each incremental merged on top by the rules above. Each
/// level's tree is checked to be a tree (rule 7).
pub fn state<'l>(links: &'l [Link]) -> Result<Stream<'l>> {
    // Made at the first link whose operations are large.
    let mut spill: Option<std::rc::Rc<super::Spill>> = None;
    let first = links[0].records().map(|r| r.map(|r| entry(r, 0)));
    let mut s: Stream<'l> = Box::new(Valid::new(first, links[0].loc.to_string()));
    for (level, l) in links.iter().enumerate().skip(1) {
        let mut tails = HashMap::new();
        for (path, rec) in l.own_records(MAX_TAILS)? {
            if rec.kind == EntryKind::File && path != CHANGES_PATH {
                tails.insert(path, rec.size);
            }
        }
        let merged = Merge {
            prev: s.peekable(),
            members: (Box::new(
                l.records()
                    .filter(|r| !r.as_ref().is_ok_and(|r| is_own(&r.path)))
                    .map(move |r| r.map(|r| entry(r, level))),
            ) as Stream<'l>)
                .peekable(),
            changes: (Box::new(l.changes_in(Some(&mut spill))?)
                as Box<dyn Iterator<Item = Result<Change>> + 'l>)
                .peekable(),
            level,
            pending: BTreeMap::new(),
            skipping: None,
            tails,
            name: l.loc.to_string(),
        };
        s = Box::new(Valid::new(merged, l.loc.to_string()));
    }
    Ok(s)
}

/// The model on trees in memory, for tests and fuzzing: the tree of an
/// incremental whose operations are `lines` (each checked as a reader
/// checks them), whose members are `members` (in tree order) and whose
/// tail members have the sizes `tails`, on the base tree `prev` (which
/// is checked to be a tree too).
pub fn apply_level(
    prev: Vec<StateEntry>,
    members: Vec<StateEntry>,
    lines: &[Vec<u8>],
    tails: HashMap<String, u64>,
) -> Result<Vec<StateEntry>> {
    let mut order = super::ChangeOrder::default();
    let changes: Vec<Result<Change>> = lines.iter().map(|l| order.next(l)).collect();
    let prev: Stream<'_> = Box::new(Valid::new(prev.into_iter().map(Ok), "base".into()));
    let merged = Merge {
        prev: prev.peekable(),
        members: (Box::new(members.into_iter().map(Ok)) as Stream<'_>).peekable(),
        changes: (Box::new(changes.into_iter()) as Box<dyn Iterator<Item = Result<Change>>>)
            .peekable(),
        level: 1,
        pending: BTreeMap::new(),
        skipping: None,
        tails,
        name: "incremental".into(),
    };
    Valid::new(merged, "incremental".into()).collect()
}

fn entry(r: Record, origin: usize) -> StateEntry {
    StateEntry {
        path: r.path,
        kind: r.kind,
        mode: r.mode,
        mtime: r.mtime,
        mtime_nsec: r.mtime_nsec,
        size: r.size,
        sha256: r.sha256,
        origin,
        frame: r.frame,
        offset: r.offset,
        appended: false,
    }
}

struct Merge<'l> {
    prev: Peekable<Stream<'l>>,
    members: Peekable<Stream<'l>>,
    changes: Peekable<Box<dyn Iterator<Item = Result<Change>> + 'l>>,
    level: usize,
    /// Base files continued under another name: (offset, prefix digest).
    pending: BTreeMap<String, (u64, String)>,
    /// A path whose base entries below it are gone (deleted, or replaced
    /// by a file).
    skipping: Option<String>,
    /// The tail members not yet used, with their sizes.
    tails: HashMap<String, u64>,
    name: String,
}

/// Takes a peeked error out of `it` (the stream ends with it).
fn peeked_error<T, I: Iterator<Item = Result<T>>>(it: &mut Peekable<I>) -> Result<()> {
    if matches!(it.peek(), Some(Err(_))) {
        return Err(it.next().expect("peeked").err().expect("an error"));
    }
    Ok(())
}

/// The path of a peeked entry (errors were taken out before).
fn path(e: Option<&Result<StateEntry>>) -> Option<&str> {
    e.map(|e| e.as_ref().expect("checked").path.as_str())
}

/// Which of the three streams' next paths is the smallest one, `x`:
/// `(at_prev, at_mem, at_chg)`, or `None` when all three ended. Compares
/// in place: a chain of `n` levels passes each entry through `n` merges.
fn smallest(p: Option<&str>, m: Option<&str>, c: Option<&str>) -> Option<(bool, bool, bool)> {
    let x = [p, m, c]
        .into_iter()
        .flatten()
        .min_by(|a, b| tree_cmp(a, b))?;
    Some((p == Some(x), m == Some(x), c == Some(x)))
}

impl Merge<'_> {
    /// Its base is the archive recorded (authenticated by its digest):
    /// what does not fit the base's tree is the incremental's fault.
    fn inconsistent(&self, why: String) -> Error {
        Error::corrupt(format!("{}: {why}", self.name))
    }

    fn step(&mut self) -> Result<Option<StateEntry>> {
        loop {
            peeked_error(&mut self.prev)?;
            if let Some(s) = &self.skipping {
                if let Some(Ok(b)) = self.prev.peek()
                    && is_under(&b.path, s)
                {
                    self.prev.next();
                    continue;
                }
                self.skipping = None;
            }
            peeked_error(&mut self.members)?;
            peeked_error(&mut self.changes)?;
            let at = smallest(
                path(self.prev.peek()),
                path(self.members.peek()),
                self.changes
                    .peek()
                    .map(|c| c.as_ref().expect("checked").path()),
            );
            let Some((at_prev, at_mem, at_chg)) = at else {
                if let Some(from) = self.pending.keys().next() {
                    return Err(self.inconsistent(format!(
                        "it continues {from}, which its base does not hold"
                    )));
                }
                if let Some(t) = self.tails.keys().min() {
                    return Err(self.inconsistent(format!("its tail {t} is used by no append")));
                }
                return Ok(None);
            };
            if at_mem && at_chg {
                let x = path(self.members.peek()).expect("peeked").to_string();
                return Err(Error::hostile(
                    &x,
                    format!("{CHANGES_PATH}: an operation on a path the archive also holds"),
                ));
            }
            // Rule 1: a base file continued under another name leaves.
            let mut base = None;
            if at_prev {
                let b = self.prev.next().expect("peeked")?;
                match self.pending.remove(&b.path) {
                    Some((offset, prefix)) => self.check_prefix(&b, offset, &prefix)?,
                    None => base = Some(b),
                }
            }
            if at_chg {
                let change = self.changes.next().expect("peeked")?;
                match change {
                    Change::Delete { path } => {
                        let Some(b) = base else {
                            return Err(self.inconsistent(format!(
                                "it deletes {path}, which its base does not hold"
                            )));
                        };
                        if b.kind == EntryKind::Dir {
                            self.skipping = Some(path);
                        }
                        continue;
                    }
                    Change::Append {
                        path,
                        from,
                        offset,
                        prefix_sha256,
                        tail,
                        size,
                        sha256,
                        mode,
                        mtime,
                        mtime_nsec,
                    } => {
                        if from == path {
                            let Some(b) = &base else {
                                return Err(self.inconsistent(format!(
                                    "it continues {path}, which its base does not hold"
                                )));
                            };
                            self.check_prefix(b, offset, &prefix_sha256)?;
                        } else {
                            if base.as_ref().is_some_and(|b| b.kind == EntryKind::Dir) {
                                self.skipping = Some(path.clone());
                            }
                            if self.pending.len() >= MAX_RENAMES
                                || self
                                    .pending
                                    .insert(from.clone(), (offset, prefix_sha256))
                                    .is_some()
                            {
                                return Err(Error::hostile(
                                    &path,
                                    format!(
                                        "{CHANGES_PATH}: {from} continued twice, or too many renames"
                                    ),
                                ));
                            }
                        }
                        match self.tails.remove(&tail) {
                            Some(n) if n == size - offset => {}
                            Some(n) => {
                                return Err(self.inconsistent(format!(
                                    "{path} is {size} bytes from {offset} continued, but its tail {tail} holds {n}"
                                )));
                            }
                            None => {
                                return Err(self.inconsistent(format!(
                                    "its tail {tail} is missing, or used twice"
                                )));
                            }
                        }
                        let sha = crate::format::sums::parse_hex32(&sha256)
                            .ok_or_else(|| Error::corrupt("an append's SHA-256 is not hex"))?;
                        return Ok(Some(StateEntry {
                            path,
                            kind: EntryKind::File,
                            mode,
                            mtime,
                            mtime_nsec,
                            size,
                            sha256: sha,
                            origin: self.level,
                            frame: 0,
                            offset: 0,
                            appended: true,
                        }));
                    }
                }
            }
            if at_mem {
                let e = self.members.next().expect("peeked")?;
                if e.kind != EntryKind::Dir
                    && base.as_ref().is_some_and(|b| b.kind == EntryKind::Dir)
                {
                    self.skipping = Some(e.path.clone());
                }
                return Ok(Some(e));
            }
            if let Some(b) = base {
                return Ok(Some(b));
            }
        }
    }

    fn check_prefix(&self, b: &StateEntry, offset: u64, prefix: &str) -> Result<()> {
        if b.kind != EntryKind::File || b.size != offset || hex(&b.sha256) != prefix {
            return Err(self.inconsistent(format!(
                "it continues {} as {offset} bytes with SHA-256 {prefix}, but its base holds {} bytes with SHA-256 {}",
                b.path,
                b.size,
                hex(&b.sha256)
            )));
        }
        Ok(())
    }
}

impl Iterator for Merge<'_> {
    type Item = Result<StateEntry>;

    fn next(&mut self) -> Option<Result<StateEntry>> {
        self.step().transpose()
    }
}

/// Rule 7: a stream of entries that is a tree, or an error.
struct Valid<I> {
    inner: I,
    /// The directories enclosing the last entry, outermost first.
    open: Vec<String>,
    last: Option<String>,
    name: String,
    done: bool,
}

impl<I> Valid<I> {
    fn new(inner: I, name: String) -> Self {
        Valid {
            inner,
            open: Vec::new(),
            last: None,
            name,
            done: false,
        }
    }
}

impl<I: Iterator<Item = Result<StateEntry>>> Valid<I> {
    fn check(&mut self, e: &StateEntry) -> Result<()> {
        if let Some(l) = &self.last
            && tree_cmp(l, &e.path).is_ge()
        {
            return Err(Error::corrupt(format!(
                "{}: the tree holds {} after {l} (out of order, or twice)",
                self.name, e.path
            )));
        }
        while let Some(d) = self.open.last() {
            if e.path.len() > d.len() && is_under(&e.path, d) {
                break;
            }
            self.open.pop();
        }
        if let Some((parent, _)) = e.path.rsplit_once('/')
            && self.open.last().map(String::as_str) != Some(parent)
        {
            return Err(Error::corrupt(format!(
                "{}: the tree holds {} but not a directory {parent} above it",
                self.name, e.path
            )));
        }
        if e.kind == EntryKind::Dir {
            self.open.push(e.path.clone());
        }
        // The last path's buffer is reused: no allocation per entry.
        match &mut self.last {
            Some(l) => {
                l.clear();
                l.push_str(&e.path);
            }
            None => self.last = Some(e.path.clone()),
        }
        Ok(())
    }
}

impl<I: Iterator<Item = Result<StateEntry>>> Iterator for Valid<I> {
    type Item = Result<StateEntry>;

    fn next(&mut self) -> Option<Result<StateEntry>> {
        if self.done {
            return None;
        }
        let got = self.inner.next();
        if let Some(Ok(e)) = &got
            && let Err(err) = self.check(e)
        {
            self.done = true;
            return Some(Err(err));
        }
        if matches!(got, Some(Err(_)) | None) {
            self.done = true;
        }
        got
    }
}

/// The own directory of an incremental sorts after every path of the
/// layout (it must, for its members to come last).
const _: () = assert!(crate::format::incremental::INCREMENTAL_DIR.as_bytes()[0] > b'w');

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::incremental::tail_path;

    /// splitmix64: a seeded generator for the randomized tests.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
        fn chance(&mut self, percent: u64) -> bool {
            self.next() % 100 < percent
        }
    }

    const PATHS: &[&str] = &[
        "MANIFEST",
        "segments",
        "segments/1",
        "segments/1/a.seg",
        "segments/1/b.seg",
        "segments/2",
        "segments/2/a.seg",
        "tags.json",
        "wal",
        "wal/1.wal",
        "wal/1.wal/x",
        "wal/2.wal",
        "wal/3.wal",
        "wal/current.wal",
    ];
    const WAL: &[&str] = &["wal/1.wal", "wal/2.wal", "wal/3.wal", "wal/current.wal"];

    fn file(path: &str, size: u64, fill: u8, origin: usize) -> StateEntry {
        StateEntry {
            path: path.into(),
            kind: EntryKind::File,
            mode: 0o644,
            mtime: 1,
            mtime_nsec: Some(5),
            size,
            sha256: [fill; 32],
            origin,
            frame: 0,
            offset: 0,
            appended: false,
        }
    }

    fn dir(path: &str, origin: usize) -> StateEntry {
        StateEntry {
            kind: EntryKind::Dir,
            size: 0,
            sha256: [0; 32],
            ..file(path, 0, 0, origin)
        }
    }

    /// A random tree of `PATHS` (each path's parent a directory of it).
    fn tree(rng: &mut Rng, origin: usize) -> Vec<StateEntry> {
        let mut out: Vec<StateEntry> = Vec::new();
        for p in PATHS {
            if !rng.chance(70) {
                continue;
            }
            if let Some((parent, _)) = p.rsplit_once('/')
                && !out
                    .iter()
                    .any(|e| e.path == parent && e.kind == EntryKind::Dir)
            {
                continue;
            }
            let is_dir = matches!(*p, "segments" | "segments/1" | "segments/2" | "wal")
                || (*p == "wal/1.wal" && rng.chance(30));
            out.push(if is_dir {
                dir(p, origin)
            } else {
                file(p, rng.below(3) as u64, rng.below(3) as u8, origin)
            });
        }
        out
    }

    #[test]
    fn the_model_and_the_reference_agree_on_random_incrementals() {
        let seeds: u64 = std::env::var("SYDRA_MODEL_SEEDS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(20_000);
        let (mut accepted, mut refused) = (0, 0);
        for seed in 0..seeds {
            let mut rng = Rng(seed);
            let prev = tree(&mut rng, 0);
            let mut members: Vec<StateEntry> = tree(&mut rng, 1)
                .into_iter()
                .filter(|_| rng.chance(30))
                .collect();
            if rng.chance(5) {
                members.reverse();
            }
            let mut changes: Vec<Change> = Vec::new();
            let mut tails = HashMap::new();
            for _ in 0..rng.below(4) {
                if rng.chance(50) {
                    changes.push(Change::Delete {
                        path: PATHS[rng.below(PATHS.len())].into(),
                    });
                    continue;
                }
                let path = WAL[rng.below(WAL.len())];
                let from = if rng.chance(50) {
                    path
                } else {
                    WAL[rng.below(WAL.len())]
                };
                // Mostly true to the base's file, sometimes not.
                let b = prev.iter().find(|e| e.path == from);
                let (offset, fill) = match b {
                    Some(b) if rng.chance(85) => (b.size, b.sha256[0]),
                    _ => (rng.below(3) as u64, rng.below(3) as u8),
                };
                let size = offset + rng.below(3) as u64;
                let tail = tail_path(path);
                let tail_size = if rng.chance(90) {
                    size - offset
                } else {
                    size + 1
                };
                tails.insert(tail.clone(), tail_size);
                changes.push(Change::Append {
                    path: path.into(),
                    from: from.into(),
                    offset,
                    prefix_sha256: hex(&[fill; 32]),
                    tail,
                    size,
                    sha256: hex(&[9; 32]),
                    mode: 0o600,
                    mtime: 2,
                    mtime_nsec: Some(7),
                });
            }
            if rng.chance(90) {
                changes.sort_by(|a, b| tree_cmp(a.path(), b.path()));
                changes.dedup_by(|a, b| a.path() == b.path());
            }
            if rng.chance(5) {
                tails.insert(tail_path("wal/zzz.wal"), 1);
            }
            let lines: Vec<Vec<u8>> = changes
                .iter()
                .map(|c| {
                    let mut l = c.line();
                    l.pop();
                    l
                })
                .collect();
            let model = apply_level(prev.clone(), members.clone(), &lines, tails.clone());
            let reference =
                crate::chain::reference::reference_level(&prev, &members, &lines, &tails);
            match (&model, &reference) {
                (Ok(m), Ok(r)) => {
                    assert_eq!(m, r, "seed {seed}: the trees differ");
                    accepted += 1;
                }
                (Err(_), Err(_)) => refused += 1,
                _ => panic!(
                    "seed {seed}: model {:?} but reference {:?}\nprev {:#?}\nmembers {:#?}\nchanges {:#?}\ntails {tails:?}",
                    model.as_ref().map(|_| "accepts").map_err(|e| e.to_string()),
                    reference.as_ref().map(|_| "accepts"),
                    prev.iter()
                        .map(|e| (&e.path, e.kind, e.size))
                        .collect::<Vec<_>>(),
                    members
                        .iter()
                        .map(|e| (&e.path, e.kind))
                        .collect::<Vec<_>>(),
                    changes
                ),
            }
        }
        // The generator reaches both sides.
        assert!(
            accepted > seeds / 20 && refused > seeds / 20,
            "{accepted} {refused}"
        );
    }
}
