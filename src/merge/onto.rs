//! `merge --onto`: one incremental on a link of the chain, equivalent to
//! every link above it (compaction). The tree at the base (`old`) and the
//! newest tree (`new`), both the chain model's, are walked together in
//! tree order: what is new or changed becomes a member, what is gone a
//! `delete`, and a WAL file that only grew since the base (over any
//! number of links, renames included) an `append` whose tail is every
//! byte appended above the base, the tails of several links one after
//! another. What an operation cannot say (a rename to a later name, a
//! tail name over 255 bytes) is carried whole.

use std::collections::HashSet;
use std::fs::File;
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::iter::Peekable;

use sha2::{Digest, Sha256};

use crate::chain::{Link, Piece, lineage};
use crate::error::{Error, Result};
use crate::format::head::{Entry, EntryKind};
use crate::format::incremental::{
    CHANGES_PATH, Change, INCREMENTAL_DIR, MAX_CHANGE_LINE, StateEntry, TAILS_DIR, tail_path,
    tree_cmp,
};
use crate::format::path::MAX_NAME_LEN;
use crate::format::sums::hex;
use crate::write::Splice;

use super::Sources;

type Tree<'l> = Peekable<Box<dyn Iterator<Item = Result<StateEntry>> + 'l>>;

/// A WAL file's tail: the pieces appended above the base.
struct Tail {
    path: String,
    pieces: Vec<Piece>,
    size: u64,
    mode: u32,
    mtime: i64,
    mtime_nsec: u32,
}

/// The walk of the two trees and what it has written.
pub(super) struct Onto<'l> {
    links: &'l [Link],
    /// The base's level in `links`.
    at: usize,
    old: Tree<'l>,
    /// Base files continued under another name: they leave the tree
    /// without a `delete`.
    moved: HashSet<String>,
    /// A subtree of the base that is gone with what replaced its top.
    gone: Option<String>,
    /// The new tree's directories above the current path, and whether
    /// each was written.
    dirs: Vec<(Entry, bool)>,
    ops: BufWriter<File>,
    ops_len: u64,
    ops_hash: Sha256,
    tails: Vec<Tail>,
    created_s: i64,
    /// Members written and operations.
    pub(super) members: u64,
    pub(super) operations: u64,
}

fn below(path: &str, top: &str) -> bool {
    path.len() > top.len() && path.starts_with(top) && path.as_bytes()[top.len()] == b'/'
}

impl<'l> Onto<'l> {
    pub(super) fn new(links: &'l [Link], at: usize, created_s: i64) -> Result<Onto<'l>> {
        let old: Box<dyn Iterator<Item = Result<StateEntry>> + 'l> =
            Box::new(crate::chain::state(&links[..=at])?);
        let spool = tempfile::tempfile()
            .map_err(|e| Error::io("create a temporary file for", CHANGES_PATH, e))?;
        Ok(Onto {
            links,
            at,
            old: old.peekable(),
            moved: HashSet::new(),
            gone: None,
            dirs: Vec::new(),
            ops: BufWriter::new(spool),
            ops_len: 0,
            ops_hash: Sha256::new(),
            tails: Vec::new(),
            created_s,
            members: 0,
            operations: 0,
        })
    }

    fn op(&mut self, c: &Change) -> Result<()> {
        let line = c.line();
        if line.len() > MAX_CHANGE_LINE + 1 {
            return Err(Error::NotIncremental(format!(
                "the operation on {} would take {} bytes in {CHANGES_PATH}, more than the {MAX_CHANGE_LINE} a reader accepts: merge into a full archive instead",
                c.path().escape_debug(),
                line.len() - 1
            )));
        }
        self.ops
            .write_all(&line)
            .map_err(|e| Error::io("write", CHANGES_PATH, e))?;
        self.ops_hash.update(&line);
        self.ops_len += line.len() as u64;
        self.operations += 1;
        Ok(())
    }

    /// Passes the base's entries before `path` (all, for `None`): each
    /// is gone (a `delete`), unless it went with a directory above it or
    /// was continued under another name.
    fn pass_old(&mut self, path: Option<&str>) -> Result<()> {
        loop {
            let o = match self.old.peek() {
                None => return Ok(()),
                Some(Err(_)) => return Err(self.old.next().expect("peeked").unwrap_err()),
                Some(Ok(o)) => o,
            };
            if path.is_some_and(|p| tree_cmp(&o.path, p).is_ge()) {
                return Ok(());
            }
            let o = self.old.next().expect("peeked")?;
            if self.gone.as_deref().is_some_and(|g| below(&o.path, g)) {
                continue;
            }
            self.gone = None;
            if self.moved.contains(&o.path) {
                continue;
            }
            self.op(&Change::Delete {
                path: o.path.clone(),
            })?;
            if o.kind == EntryKind::Dir {
                self.gone = Some(o.path);
            }
        }
    }

    /// The base's entry at `path`, if any (a base file continued under
    /// another name is not there any more).
    fn old_at(&mut self, path: &str) -> Result<Option<StateEntry>> {
        match self.old.peek() {
            Some(Ok(o)) if o.path == path => {}
            _ => return Ok(None),
        }
        let o = self.old.next().expect("peeked")?;
        if self.gone.as_deref().is_some_and(|g| below(&o.path, g)) || self.moved.contains(&o.path) {
            return Ok(None);
        }
        self.gone = None;
        Ok(Some(o))
    }

    /// Writes the directories above `path` not written yet.
    fn parents<W: Write>(&mut self, s: &mut Splice<'_, '_, W>, path: &str) -> Result<()> {
        self.dirs.retain(|(d, _)| below(path, &d.path));
        for (d, written) in &mut self.dirs {
            if !*written {
                s.begin(d, [0; 32])?;
                *written = true;
                self.members += 1;
            }
        }
        Ok(())
    }

    /// Takes the newest tree's entry `e` into the incremental.
    pub(super) fn entry<W: Write>(
        &mut self,
        s: &mut Splice<'_, '_, W>,
        src: &mut Sources<'l>,
        e: StateEntry,
    ) -> Result<()> {
        self.pass_old(Some(&e.path))?;
        let old = self.old_at(&e.path)?;
        self.dirs.retain(|(d, _)| below(&e.path, &d.path));
        let same_meta = |o: &StateEntry| {
            o.kind == e.kind
                && o.mode == e.mode
                && o.mtime == e.mtime
                && o.mtime_nsec.is_none_or(|n| Some(n) == e.mtime_nsec)
        };
        if e.kind == EntryKind::Dir {
            let changed = !old.as_ref().is_some_and(same_meta);
            if changed {
                self.parents(s, &e.path)?;
                s.begin(&e.entry(), [0; 32])?;
                self.members += 1;
            }
            self.dirs.push((e.entry(), changed));
            return Ok(());
        }
        // A file on a base directory takes what was below it.
        if old.as_ref().is_some_and(|o| o.kind == EntryKind::Dir) {
            self.gone = Some(e.path.clone());
        }
        if old
            .as_ref()
            .is_some_and(|o| same_meta(o) && o.size == e.size && o.sha256 == e.sha256)
        {
            return Ok(());
        }
        let pieces = if e.appended {
            lineage(self.links, &e)?
        } else {
            Vec::new()
        };
        if let Some(k) = self.continues(&e, &pieces) {
            let from = &pieces[k];
            self.op(&Change::Append {
                path: e.path.clone(),
                from: from.path.clone(),
                offset: from.size,
                prefix_sha256: hex(&from.sha256),
                tail: tail_path(&e.path),
                size: e.size,
                sha256: hex(&e.sha256),
                mode: e.mode,
                mtime: e.mtime,
                mtime_nsec: e.mtime_nsec,
            })?;
            if from.path != e.path {
                self.moved.insert(from.path.clone());
            }
            self.tails.push(Tail {
                path: e.path.clone(),
                size: e.size - from.size,
                pieces: pieces[k + 1..].to_vec(),
                mode: e.mode,
                mtime: e.mtime as i64,
                mtime_nsec: e.mtime_nsec.unwrap_or(0),
            });
            return Ok(());
        }
        // Carried whole.
        self.parents(s, &e.path)?;
        s.begin(&e.entry(), e.sha256)?;
        self.members += 1;
        let mut h = Sha256::new();
        let pieces: Vec<(usize, crate::format::v2::Record)> = if e.appended {
            pieces.into_iter().map(|p| (p.level, p.member)).collect()
        } else {
            vec![(e.origin, e.record())]
        };
        for (level, rec) in &pieces {
            src.content(*level, rec, &mut |b: &[u8]| {
                h.update(b);
                s.data(b)
            })?;
        }
        src.check(&e, h)?;
        s.pad(e.size)
    }

    /// For a file the newest tree appended to: the last of its pieces
    /// at or below the base, when the rest can be one `append` on the
    /// base's file (a WAL file directly in `wal/`, continued under its
    /// own name or one after it, with a tail name that fits).
    fn continues(&self, e: &StateEntry, pieces: &[Piece]) -> Option<usize> {
        let k = pieces.iter().rposition(|p| p.level <= self.at)?;
        let from = &pieces[k];
        let in_wal = |p: &str| p.strip_prefix("wal/").is_some_and(|n| !n.contains('/'));
        let name_fits = tail_path(&e.path)
            .rsplit('/')
            .next()
            .is_some_and(|n| n.len() <= MAX_NAME_LEN);
        (k + 1 < pieces.len()
            && from.size > 0
            && in_wal(&e.path)
            && in_wal(&from.path)
            && tree_cmp(&from.path, &e.path).is_ge()
            && !self.moved.contains(&from.path)
            && name_fits)
            .then_some(k)
    }

    /// The base's entries left are gone; then the incremental's own
    /// members: the operations and the tails.
    pub(super) fn finish<W: Write>(
        mut self,
        s: &mut Splice<'_, '_, W>,
        src: &mut Sources<'l>,
    ) -> Result<()> {
        self.pass_old(None)?;
        let dir = |path: &str| Entry {
            path: path.into(),
            kind: EntryKind::Dir,
            size: 0,
            mode: 0o755,
            mtime: self.created_s,
            mtime_nsec: 0,
        };
        s.begin(&dir(INCREMENTAL_DIR), [0; 32])?;
        let mut spool = self
            .ops
            .into_inner()
            .map_err(|e| Error::io("write", CHANGES_PATH, e.into_error()))?;
        spool
            .seek(SeekFrom::Start(0))
            .map_err(|e| Error::io("seek", CHANGES_PATH, e))?;
        let changes = Entry {
            path: CHANGES_PATH.into(),
            kind: EntryKind::File,
            size: self.ops_len,
            mode: 0o644,
            mtime: self.created_s,
            mtime_nsec: 0,
        };
        s.begin(&changes, self.ops_hash.finalize().into())?;
        let mut buf = vec![0u8; 256 * 1024];
        let mut left = self.ops_len;
        while left > 0 {
            let want = left.min(buf.len() as u64) as usize;
            let n = spool
                .read(&mut buf[..want])
                .map_err(|e| Error::io("read", CHANGES_PATH, e))?;
            if n == 0 {
                return Err(Error::io(
                    "read",
                    CHANGES_PATH,
                    std::io::ErrorKind::UnexpectedEof.into(),
                ));
            }
            s.data(&buf[..n])?;
            left -= n as u64;
        }
        s.pad(self.ops_len)?;
        if self.tails.is_empty() {
            return Ok(());
        }
        s.begin(&dir(TAILS_DIR), [0; 32])?;
        self.tails.sort_by_key(|t| tail_path(&t.path));
        for t in &self.tails {
            let e = Entry {
                path: tail_path(&t.path),
                kind: EntryKind::File,
                size: t.size,
                mode: t.mode,
                mtime: t.mtime,
                mtime_nsec: t.mtime_nsec,
            };
            s.begin_unhashed(&e)?;
            let mut h = Sha256::new();
            let mut n = 0u64;
            // Each tail of a link checked against its own record.
            for p in &t.pieces {
                let mut own = Sha256::new();
                src.content(p.level, &p.member, &mut |b: &[u8]| {
                    n += b.len() as u64;
                    h.update(b);
                    own.update(b);
                    s.data(b)
                })?;
                let got: [u8; 32] = own.finalize().into();
                if got != p.member.sha256 {
                    return Err(Error::corrupt(format!(
                        "{}: {} hashes to {}, not the {} its index records",
                        self.links[p.level].loc,
                        p.member.path,
                        hex(&got),
                        hex(&p.member.sha256)
                    )));
                }
            }
            if n != t.size {
                return Err(Error::corrupt(format!(
                    "the tails of {} above the base hold {n} bytes, not {}",
                    t.path, t.size
                )));
            }
            s.set_digest(h.finalize().into())?;
            s.pad(t.size)?;
        }
        Ok(())
    }
}
