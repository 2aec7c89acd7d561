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
    for (level, rec) in lineage(links, e)? {
        copy_member(&links[level], &rec, out)?;
    }
    Ok(())
}

/// The members whose contents, one after another, make the file `e`
/// of the tree of `links`: its member, or the member it started as and
/// every tail appended since, in order, each with the archive that holds
/// it (see [`write_content`]).
pub fn lineage(links: &[Link], e: &StateEntry) -> Result<Vec<(usize, Record)>> {
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
                mtime_nsec: e.mtime_nsec,
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
    let mut out = vec![first.expect("found")];
    for (level, tail) in tails.into_iter().rev() {
        let l = &links[level];
        let Some(t) = l.find_last(&tail)? else {
            return Err(Error::corrupt(format!(
                "{}: its tail {tail} is missing",
                l.loc
            )));
        };
        out.push((level, t));
    }
    Ok(out)
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
