//! A file's content out of a chain: its member, or for a file an
//! incremental appended to, the member it started as and every tail
//! appended since, each read at offsets and checked.

use std::io::Read;

use crate::error::{Error, Result};
use crate::format::head::EntryKind;
use crate::format::incremental::{Change, StateEntry, tree_cmp};
use crate::format::v2::Record;

use super::link::Link;

/// Writes the content of the file `e` of the tree of `links` (as
/// [`state`](super::state) gave it, which checked the chain) to `out`: its member, read
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
    for piece in lineage(links, e)? {
        copy_member(&links[piece.level], &piece.member, out)?;
    }
    Ok(())
}

/// One member of a file's content out of a chain (see [`lineage`]).
#[derive(Debug, Clone)]
pub struct Piece {
    /// The archive of the chain that holds the member.
    pub level: usize,
    /// Its record: the file's member, or a tail.
    pub member: Record,
    /// The file's name in that archive's tree.
    pub path: String,
    /// The whole file's size and SHA-256 there (with this piece).
    pub size: u64,
    /// See `size`.
    pub sha256: [u8; 32],
}

/// The members whose contents, one after another, make the file `e`
/// of the tree of `links`: its member, or the member it started as and
/// every tail appended since, in order, each with the archive that holds
/// it and what the file was there (see [`write_content`]).
pub fn lineage(links: &[Link], e: &StateEntry) -> Result<Vec<Piece>> {
    // Appends, newest first: (archive, the file's name there, the op).
    let mut appends: Vec<(usize, String, Appended)> = Vec::new();
    let mut first: Option<Piece> = None;
    if !e.appended {
        first = Some(Piece {
            level: e.origin,
            member: e.record(),
            path: e.path.clone(),
            size: e.size,
            sha256: e.sha256,
        });
    }
    let (mut path, mut level) = (e.path.clone(), e.origin);
    while first.is_none() {
        let l = &links[level];
        let Some(a) = append_of(l, &path)? else {
            return Err(Error::corrupt(format!("{}: no append of {path}", l.loc)));
        };
        let from = a.from.clone();
        appends.push((level, path.clone(), a));
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
                first = Some(Piece {
                    level: j,
                    path: from.clone(),
                    size: rec.size,
                    sha256: rec.sha256,
                    member: rec,
                });
                break;
            }
            if j > 0 && append_of(below, &from)?.is_some() {
                (path, level) = (from, j);
                break;
            }
        }
    }
    let mut out = vec![first.expect("found")];
    for (level, path, a) in appends.into_iter().rev() {
        let l = &links[level];
        let Some(t) = l.find_last(&a.tail)? else {
            return Err(Error::corrupt(format!(
                "{}: its tail {} is missing",
                l.loc, a.tail
            )));
        };
        out.push(Piece {
            level,
            member: t,
            path,
            size: a.size,
            sha256: a.sha256,
        });
    }
    Ok(out)
}

/// What an append says: the file it continues, its tail member, and
/// the whole file after it.
struct Appended {
    from: String,
    tail: String,
    size: u64,
    sha256: [u8; 32],
}

/// The append of an incremental to `path`.
fn append_of(l: &Link, path: &str) -> Result<Option<Appended>> {
    if l.head.base.is_none() {
        return Ok(None);
    }
    for c in l.changes()? {
        match c? {
            Change::Append {
                path: p,
                from,
                tail,
                size,
                sha256,
                ..
            } if p == path => {
                let sha256 = crate::format::sums::parse_hex32(&sha256).ok_or_else(|| {
                    Error::corrupt(format!("{}: the append of {path} has no SHA-256", l.loc))
                })?;
                return Ok(Some(Appended {
                    from,
                    tail,
                    size,
                    sha256,
                }));
            }
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
