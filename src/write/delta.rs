//! What an incremental archive leaves out: the data dir, as it is walked,
//! merged with its base's whole tree (both in tree order), so that only
//! what is new or changed becomes a member, what is gone becomes a
//! `delete`, and what a WAL file gained since the base becomes a tail and
//! an `append` (see `FORMAT.md`, part C). Nothing here grows with the
//! number of files: the base's tree is a stream, and only its `wal/`
//! subtree (a few WAL files; each holds 64 MiB) is held, once the walk
//! reaches `wal`, which sorts last among the layout's names.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::format::head::{Entry, EntryKind};
use crate::format::incremental::{
    BaseRef, CHANGES_PATH, Change, INCREMENTAL_DIR, MAX_CHANGE_LINE, StateEntry, TAILS_DIR,
    is_under, tail_path, tree_cmp,
};
use crate::format::path::MAX_NAME_LEN;
use crate::format::sums::hex;
use crate::sydradb::live::Content;

/// The base an incremental is made on: what HEAD records of it, and its
/// whole tree as a stream in tree order.
pub struct BaseState<'a> {
    /// What HEAD records.
    pub base: BaseRef,
    /// The base's whole tree, in tree order.
    pub entries: Box<dyn Iterator<Item = Result<StateEntry>> + 'a>,
}

/// What becomes of one WAL file of the data dir.
#[derive(Debug, Clone)]
pub(super) enum WalDecision {
    /// The same bytes as the base's file of that name: left out.
    Unchanged,
    /// Archived whole.
    Whole,
    /// The base file `from` continued: only the bytes from `offset` on.
    Append {
        from: String,
        offset: u64,
        prefix_sha256: [u8; 32],
        sha256: [u8; 32],
        tail_sha256: [u8; 32],
    },
}

/// Hashes `[from, to)` of `f` into each hasher (`path` names it in
/// errors), reading at offsets.
pub(crate) fn hash_range(
    f: &File,
    from: u64,
    to: u64,
    hashers: &mut [&mut Sha256],
    path: &Path,
) -> Result<()> {
    let mut buf = vec![0u8; 1 << 20];
    let mut at = from;
    while at < to {
        let n = buf.len().min((to - at) as usize);
        f.read_exact_at(&mut buf[..n], at)
            .map_err(|e| Error::io("read", path, e))?;
        for h in hashers.iter_mut() {
            h.update(&buf[..n]);
        }
        at += n as u64;
    }
    Ok(())
}

/// The WAL file the server appends to (the others are never written
/// again once rotated).
const CURRENT_WAL: &str = "wal/current.wal";

/// Whether `path` is a file directly in `wal/` whose tail member's name
/// fits the name limit (the only ones appended to: their tails are named
/// by their name alone).
fn top_wal(path: &str) -> bool {
    path.strip_prefix("wal/").is_some_and(|n| {
        !n.contains('/') && n.len() + crate::format::incremental::TAIL_SUFFIX.len() <= MAX_NAME_LEN
    })
}

/// What [`plan_wal`] decided: per WAL file of the data dir, the base
/// files continued under another name, and warnings.
pub(super) type WalPlan = (HashMap<String, WalDecision>, HashSet<String>, Vec<String>);

/// The data dir's WAL files (path, archived size, mode, mtime, held
/// file) matched with the base's: which continue a base file, which
/// are the same, which are new. Returns the decisions, the base files
/// continued under another name (a rotation), and warnings.
pub(super) fn plan_wal(
    current: &[(Entry, &File)],
    base: &[StateEntry],
    full: &dyn Fn(&str) -> std::path::PathBuf,
) -> Result<WalPlan> {
    let mut decisions = HashMap::new();
    let mut consumed: HashSet<String> = HashSet::new();
    let mut mismatched: Vec<(String, String)> = Vec::new();
    let by_path: HashMap<&str, &StateEntry> = base
        .iter()
        .filter(|b| b.kind == EntryKind::File)
        .map(|b| (b.path.as_str(), b))
        .collect();
    let mut unmatched: Vec<usize> = Vec::new();
    // The same name first. Only WAL files directly in wal/ (the server's)
    // are appended to: one below a directory there is archived whole.
    for (i, (e, f)) in current.iter().enumerate() {
        if !top_wal(&e.path) {
            // Never appended to; left out when it is the base's file, byte
            // for byte (it was carried again in every incremental).
            let same = match by_path.get(e.path.as_str()) {
                Some(b) if same_meta(b, e) => file_sha(f, e.size, &full(&e.path))? == b.sha256,
                _ => false,
            };
            if same {
                consumed.insert(e.path.clone());
            }
            let d = if same {
                WalDecision::Unchanged
            } else {
                WalDecision::Whole
            };
            decisions.insert(e.path.clone(), d);
            continue;
        }
        let Some(b) = by_path.get(e.path.as_str()) else {
            unmatched.push(i);
            continue;
        };
        let size = e.size;
        // A rotated WAL file is never written again (only current.wal
        // is): with the base's size, mode and mtime it is unchanged, as a
        // segment is. current.wal, and any WAL file whose size changed,
        // is checked by the digest of what the base archived.
        if e.path != CURRENT_WAL && b.size == size && same_meta(b, e) {
            consumed.insert(b.path.clone());
            decisions.insert(e.path.clone(), WalDecision::Unchanged);
            continue;
        }
        let mut prefix = Sha256::new();
        if b.size <= size {
            hash_range(f, 0, b.size, &mut [&mut prefix], &full(&e.path))?;
            if prefix.clone().finalize().as_slice() == b.sha256 {
                consumed.insert(b.path.clone());
                let d = if b.size == size && same_meta(b, e) {
                    WalDecision::Unchanged
                } else if b.size == 0 {
                    WalDecision::Whole
                } else {
                    append(f, &e.path, b, size, prefix, full)?
                };
                decisions.insert(e.path.clone(), d);
                continue;
            }
        }
        mismatched.push((e.path.clone(), b.path.clone()));
        unmatched.push(i);
    }
    // Then a base file under another name (a rotation), matched by the
    // digest of its bytes, never by name.
    let mut candidates: Vec<&StateEntry> = base
        .iter()
        .filter(|b| {
            b.kind == EntryKind::File
                && b.size > 0
                && top_wal(&b.path)
                && !consumed.contains(&b.path)
        })
        .collect();
    candidates.sort_by_key(|b| b.size);
    for i in unmatched {
        let (e, f) = &current[i];
        let mut h = Sha256::new();
        let mut at = 0u64;
        let mut found = None;
        // Only a file whose name comes after (as `current.wal` comes
        // after every `<epoch-ms>.wal`): a reader merges in tree order.
        for b in candidates
            .iter()
            .filter(|b| !consumed.contains(&b.path) && tree_cmp(&b.path, &e.path).is_gt())
        {
            if b.size > e.size {
                break;
            }
            hash_range(f, at, b.size, &mut [&mut h], &full(&e.path))?;
            at = b.size;
            if h.clone().finalize().as_slice() == b.sha256 {
                found = Some(*b);
                break;
            }
        }
        let d = match found {
            Some(b) => {
                consumed.insert(b.path.clone());
                append(f, &e.path, b, e.size, h, full)?
            }
            None => WalDecision::Whole,
        };
        decisions.insert(e.path.clone(), d);
    }
    // Never more appends than a reader takes (the model's limits).
    let appends = decisions
        .values()
        .filter(|d| matches!(d, WalDecision::Append { .. }))
        .count();
    let renames = decisions
        .iter()
        .filter(|(p, d)| matches!(d, WalDecision::Append { from, .. } if from != *p))
        .count();
    if appends > crate::format::incremental::MAX_TAILS
        || renames > crate::format::incremental::MAX_RENAMES
    {
        return Err(Error::NotIncremental(format!(
            "{appends} WAL files continued ({renames} renamed), more than a reader takes ({} and {})",
            crate::format::incremental::MAX_TAILS,
            crate::format::incremental::MAX_RENAMES
        )));
    }
    let warnings = mismatched
        .into_iter()
        .filter(|(_, b)| !consumed.contains(b))
        .map(|(p, _)| {
            format!("{p}: does not start with the bytes the base archived, and no WAL file here does (rewritten in the middle, truncated, or rotated and removed); archived whole")
        })
        .collect();
    // A base file consumed under its own name is not "moved": only
    // renamed ones are skipped when the base's tree is merged.
    let moved = decisions
        .values()
        .filter_map(|d| match d {
            WalDecision::Append { from, .. } => Some(from.clone()),
            _ => None,
        })
        .filter(|from| !current.iter().any(|(e, _)| e.path == *from))
        .collect();
    Ok((decisions, moved, warnings))
}

/// An append of `[b.size, size)` of `f` to base file `b`; `prefix` has
/// hashed the first `b.size` bytes.
fn append(
    f: &File,
    path: &str,
    b: &StateEntry,
    size: u64,
    prefix: Sha256,
    full: &dyn Fn(&str) -> std::path::PathBuf,
) -> Result<WalDecision> {
    let prefix_sha256: [u8; 32] = prefix.clone().finalize().into();
    let mut whole = prefix;
    let mut tail = Sha256::new();
    hash_range(f, b.size, size, &mut [&mut whole, &mut tail], &full(path))?;
    Ok(WalDecision::Append {
        from: b.path.clone(),
        offset: b.size,
        prefix_sha256,
        sha256: whole.finalize().into(),
        tail_sha256: tail.finalize().into(),
    })
}

/// SHA-256 of the first `len` bytes of `f` (a file opened to be
/// compared with the base's).
pub(super) fn file_sha(f: &File, len: u64, path: &Path) -> Result<[u8; 32]> {
    let mut h = Sha256::new();
    hash_range(f, 0, len, &mut [&mut h], path)?;
    Ok(h.finalize().into())
}

/// SHA-256 of captured content.
pub(super) fn content_sha(c: &Content, path: &Path) -> Result<[u8; 32]> {
    match c {
        Content::Bytes(b) => Ok(Sha256::digest(b).into()),
        Content::Spooled(f) => {
            let len = f.metadata().map_err(|e| Error::io("stat", path, e))?.len();
            let mut h = Sha256::new();
            hash_range(f, 0, len, &mut [&mut h], path)?;
            Ok(h.finalize().into())
        }
    }
}

/// What a member of the data dir is compared by: its metadata, and for
/// files other than segments, its content.
pub(super) enum Seen<'a> {
    Dir(&'a Entry),
    /// A segment: written once, never modified; compared by size, mode
    /// and mtime.
    Segment(&'a Entry),
    /// Another file, with its content's SHA-256.
    Hashed(&'a Entry, [u8; 32]),
}

/// The merge of the data dir with the base's tree.
pub(super) struct Delta<'a> {
    base: std::iter::Peekable<Box<dyn Iterator<Item = Result<StateEntry>> + 'a>>,
    /// Base WAL files continued under another name: not deleted.
    moved: HashSet<String>,
    /// The directories enclosing the walk's position, each with whether
    /// it was written (an unchanged one is written only before a member
    /// below it).
    open: Vec<(Entry, bool)>,
    /// The operations, spooled (they are written last).
    changes: BufWriter<File>,
    changes_len: u64,
    pub(super) ops: u64,
    pub(super) unchanged: u64,
}

impl<'a> Delta<'a> {
    pub(super) fn new(
        base: Box<dyn Iterator<Item = Result<StateEntry>> + 'a>,
        moved: HashSet<String>,
    ) -> Result<Self> {
        let spool = tempfile::tempfile().map_err(|e| {
            Error::io("create a temporary file for", CHANGES_PATH, e).also(format!(
                "the temporary directory is {} ($TMPDIR)",
                std::env::temp_dir().display()
            ))
        })?;
        Ok(Delta {
            base: base.peekable(),
            moved,
            open: Vec::new(),
            changes: BufWriter::new(spool),
            changes_len: 0,
            ops: 0,
            unchanged: 0,
        })
    }

    /// What is left of the base's tree once the walk is at the data dir's
    /// `wal` directory: its `wal/` subtree (`wal` sorts last in the layout,
    /// and the path rules allow nothing after it), read into memory for
    /// [`plan_wal`] (the base's tree before it was a stream). Hand it back
    /// with [`Delta::resume`]: one pass of the chain model, not two.
    pub(super) fn take_rest(&mut self) -> Result<Vec<StateEntry>> {
        let mut rest = Vec::new();
        for e in self.base.by_ref() {
            rest.push(e?);
        }
        Ok(rest)
    }

    /// Merges on from `rest` (what [`Delta::take_rest`] took), with the
    /// base WAL files continued under another name ([`plan_wal`]'s
    /// `moved`): they leave the tree without a `delete`.
    pub(super) fn resume(&mut self, rest: Vec<StateEntry>, moved: HashSet<String>) {
        self.base = (Box::new(rest.into_iter().map(Ok))
            as Box<dyn Iterator<Item = Result<StateEntry>> + 'a>)
            .peekable();
        self.moved = moved;
    }

    fn change(&mut self, c: &Change) -> Result<()> {
        let line = c.line();
        // Never what a reader refuses: it reads lines of at most
        // MAX_CHANGE_LINE bytes.
        if line.len() > MAX_CHANGE_LINE + 1 {
            // The path shown short and escaped: a message is one line.
            let mut shown: String = c
                .path()
                .chars()
                .take(80)
                .flat_map(|ch| {
                    if ch.is_control() {
                        format!("\\x{:02x}", ch as u32).chars().collect::<Vec<_>>()
                    } else {
                        vec![ch]
                    }
                })
                .collect();
            if c.path().chars().count() > 80 {
                shown.push('…');
            }
            return Err(Error::NotIncremental(format!(
                "the operation on {shown} takes {} bytes in {CHANGES_PATH}, more than the {MAX_CHANGE_LINE} a reader accepts",
                line.len() - 1
            )));
        }
        self.changes
            .write_all(&line)
            .map_err(|e| Error::io("write", CHANGES_PATH, e))?;
        self.changes_len += line.len() as u64;
        self.ops += 1;
        Ok(())
    }

    /// Passes the base's entries that come before `path` (or all of them,
    /// for `None`): they are gone, so each is deleted (a directory with
    /// everything below it). Returns the base's entry at `path`, if any;
    /// when `kind` there is a file and the base has a directory, what
    /// the base holds below it goes with it, without a `delete` (the
    /// chain model's rule 5: a file replaces a directory whole).
    pub(super) fn advance(
        &mut self,
        path: Option<(&str, EntryKind)>,
    ) -> Result<Option<StateEntry>> {
        let got = self.pass(path.map(|(p, _)| p))?;
        if let (Some(b), Some((_, EntryKind::File))) = (&got, path)
            && b.kind == EntryKind::Dir
        {
            while let Some(Ok(n)) = self.base.peek() {
                if !is_under(&n.path, &b.path) {
                    break;
                }
                self.base.next();
            }
        }
        Ok(got)
    }

    fn pass(&mut self, path: Option<&str>) -> Result<Option<StateEntry>> {
        loop {
            let Some(next) = self.base.peek() else {
                return Ok(None);
            };
            let b = match next {
                Ok(b) => b,
                Err(_) => return Err(self.base.next().expect("peeked").expect_err("an error")),
            };
            match path.map(|p| tree_cmp(&b.path, p)) {
                Some(std::cmp::Ordering::Equal) => {
                    return self.base.next().transpose();
                }
                Some(std::cmp::Ordering::Greater) => return Ok(None),
                _ => {}
            }
            let gone = self.base.next().expect("peeked")?;
            if self.moved.contains(&gone.path) {
                continue;
            }
            self.change(&Change::Delete {
                path: gone.path.clone(),
            })?;
            if gone.kind == EntryKind::Dir {
                // Everything below it goes with it.
                while let Some(Ok(b)) = self.base.peek() {
                    if !is_under(&b.path, &gone.path) {
                        break;
                    }
                    self.base.next();
                }
            }
        }
    }

    /// Whether the member `seen` must be written (new or changed), given
    /// the base's entry at its path. Directories: an unchanged one is
    /// held back until a member below it is written.
    pub(super) fn wanted(&mut self, seen: Seen<'_>, base: Option<&StateEntry>) -> bool {
        let (e, same) = match seen {
            Seen::Dir(e) => (
                e,
                base.is_some_and(|b| b.kind == EntryKind::Dir && same_meta(b, e)),
            ),
            Seen::Segment(e) => (
                e,
                base.is_some_and(|b| b.kind == EntryKind::File && same_meta(b, e)),
            ),
            Seen::Hashed(e, sha) => (
                e,
                base.is_some_and(|b| {
                    b.kind == EntryKind::File && same_meta(b, e) && b.sha256 == sha
                }),
            ),
        };
        if e.kind == EntryKind::Dir {
            self.close_to(&e.path);
            self.open.push((e.clone(), !same));
        } else if same {
            self.unchanged += 1;
        }
        !same
    }

    /// Pops the directories that do not enclose `path`.
    fn close_to(&mut self, path: &str) {
        while let Some((d, _)) = self.open.last() {
            if path.len() > d.path.len() && is_under(path, &d.path) {
                break;
            }
            self.open.pop();
        }
    }

    /// The directories enclosing `path` that are still to be written
    /// (before a member below them), in order.
    pub(super) fn parents_of(&mut self, path: &str) -> Vec<Entry> {
        self.close_to(path);
        let mut out = Vec::new();
        for (d, written) in &mut self.open {
            if !*written && is_under(path, &d.path) && d.path != path {
                *written = true;
                out.push(d.clone());
            }
        }
        out
    }

    /// Records an append (its tail is written at the end).
    pub(super) fn appended(&mut self, e: &Entry, d: &WalDecision) -> Result<()> {
        let WalDecision::Append {
            from,
            offset,
            prefix_sha256,
            sha256,
            ..
        } = d
        else {
            return Ok(());
        };
        self.change(&Change::Append {
            path: e.path.clone(),
            from: from.clone(),
            offset: *offset,
            prefix_sha256: hex(prefix_sha256),
            tail: tail_path(&e.path),
            size: e.size,
            sha256: hex(sha256),
            mode: e.mode,
            mtime: e.mtime as u64,
            mtime_nsec: Some(e.mtime_nsec),
        })
    }

    /// The spooled operations, ready to be read from the start, and their
    /// length.
    pub(super) fn finish(self) -> Result<(File, u64)> {
        let mut f = self
            .changes
            .into_inner()
            .map_err(|e| Error::io("write", CHANGES_PATH, e.into_error()))?;
        f.seek(SeekFrom::Start(0))
            .map_err(|e| Error::io("seek", CHANGES_PATH, e))?;
        Ok((f, self.changes_len))
    }
}

/// The same size, mode and mtime; the nanoseconds only where the base
/// recorded them (an archive written before records carried them has
/// whole seconds: a file is not taken for changed for want of them, or
/// every segment would be carried again once).
fn same_meta(b: &StateEntry, e: &Entry) -> bool {
    b.mode == e.mode
        && b.mtime == e.mtime.max(0) as u64
        && b.mtime_nsec.is_none_or(|n| n == e.mtime_nsec)
        && b.size == e.size
}

/// The entries of an incremental's own directories.
pub(super) fn own_dir(path: &str, mtime: i64) -> Entry {
    Entry {
        path: path.into(),
        kind: EntryKind::Dir,
        size: 0,
        mode: 0o755,
        mtime,
        mtime_nsec: 0,
    }
}

// Only the `wal/` subtree is ever held: `wal` sorts after every other
// name of the layout.
const _: () = {
    let wal = crate::format::path::TOP_DIRS[1].as_bytes();
    assert!(wal.len() == 3 && wal[0] == b'w');
    let others = [
        crate::format::path::TOP_FILES[0].as_bytes(),
        crate::format::path::TOP_FILES[1].as_bytes(),
        crate::format::path::TOP_DIRS[0].as_bytes(),
    ];
    let mut i = 0;
    while i < others.len() {
        assert!(others[i][0] < b'w');
        i += 1;
    }
};

/// The paths of the own members.
pub(super) const OWN: (&str, &str, &str) = (INCREMENTAL_DIR, CHANGES_PATH, TAILS_DIR);
