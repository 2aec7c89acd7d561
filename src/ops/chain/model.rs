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
use crate::format::incremental::{CHANGES_PATH, Change, StateEntry, is_own, is_under, tree_cmp};
use crate::format::sums::hex;
use crate::format::v2::Record;

use super::{Changes, Link, Member};

/// A stream of a tree's entries, in tree order.
pub type Stream<'l> = Box<dyn Iterator<Item = Result<StateEntry>> + 'l>;

/// Most tail members one incremental may hold (each is one appended WAL
/// file; a data dir holds a few).
const MAX_TAILS: usize = 100_000;

/// The whole tree a chain describes, in tree order: the full archive's
/// records, each incremental merged on top by the rules above. Each
/// level's tree is checked to be a tree (rule 7).
pub fn state<'l>(links: &'l [Link]) -> Result<Stream<'l>> {
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
            changes: l.changes()?.peekable(),
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

fn entry(r: Record, origin: usize) -> StateEntry {
    StateEntry {
        path: r.path,
        kind: r.kind,
        mode: r.mode,
        mtime: r.mtime,
        size: r.size,
        sha256: r.sha256,
        origin,
        frame: r.frame,
        offset: r.offset,
        appended: false,
    }
}

/// Most appends one incremental may make on other names (rotations) that
/// wait for their base file.
const MAX_PENDING: usize = 10_000;

struct Merge<'l> {
    prev: Peekable<Stream<'l>>,
    members: Peekable<Stream<'l>>,
    changes: Peekable<Changes<Member<'l>>>,
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

fn peek_path<T, I: Iterator<Item = Result<T>>>(
    it: &mut Peekable<I>,
    path: impl Fn(&T) -> &str,
) -> Result<Option<String>> {
    match it.peek() {
        None => Ok(None),
        Some(Ok(t)) => Ok(Some(path(t).to_string())),
        Some(Err(_)) => Err(it.next().expect("peeked").err().expect("an error")),
    }
}

impl Merge<'_> {
    /// Its base is the archive recorded (authenticated by its digest):
    /// what does not fit the base's tree is the incremental's fault.
    fn inconsistent(&self, why: String) -> Error {
        Error::corrupt(format!("{}: {why}", self.name))
    }

    fn step(&mut self) -> Result<Option<StateEntry>> {
        loop {
            let p = peek_path(&mut self.prev, |e| &e.path)?;
            if let (Some(s), Some(pp)) = (&self.skipping, &p) {
                if is_under(pp, s) {
                    self.prev.next();
                    continue;
                }
                self.skipping = None;
            }
            let m = peek_path(&mut self.members, |e| &e.path)?;
            let c = peek_path(&mut self.changes, |c: &Change| c.path())?;
            let Some(x) = [&p, &m, &c]
                .into_iter()
                .flatten()
                .min_by(|a, b| tree_cmp(a, b))
                .cloned()
            else {
                if let Some(from) = self.pending.keys().next() {
                    return Err(self.inconsistent(format!(
                        "it continues {from}, which its base does not hold"
                    )));
                }
                if let Some(t) = self.tails.keys().next() {
                    return Err(self.inconsistent(format!("its tail {t} is used by no append")));
                }
                return Ok(None);
            };
            let (at_prev, at_mem, at_chg) = (
                p.as_ref() == Some(&x),
                m.as_ref() == Some(&x),
                c.as_ref() == Some(&x),
            );
            if at_mem && at_chg {
                return Err(Error::hostile(
                    &x,
                    format!("{CHANGES_PATH}: an operation on a path the archive also holds"),
                ));
            }
            // Rule 1: a base file continued under another name leaves.
            let mut base = None;
            if at_prev {
                let b = self.prev.next().expect("peeked")?;
                match self.pending.remove(&x) {
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
                            if self.pending.len() >= MAX_PENDING
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
            && tree_cmp(l, &e.path) != std::cmp::Ordering::Less
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
        self.last = Some(e.path.clone());
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
