//! Everything below `segments/`, written as the walk finds it: files
//! listed a batch ahead, so the recently written segments among them
//! settle together; for an incremental, each compared with the base's
//! tree before it is opened.

use std::io::{self, Write};

use crate::error::Result;
use crate::format::head::{Entry, EntryKind};
use crate::sydradb::live::{self, FileKind};
use crate::sydradb::scan::Captured;
use crate::sydradb::source::{Tree, not_regular};
use crate::sydradb::walk::{Found, Walk};
use crate::sys::{Kind, Stat};

use super::delta::{self, Delta, Seen};
use super::members::{Members, Source};
use super::{source, write_parents};

/// Files listed ahead of writing, so the recently written ones among them
/// settle together (in the same rounds, one deadline).
const SETTLE_BATCH: usize = 256;

fn entry(rel: String, kind: EntryKind, st: &Stat) -> Entry {
    Entry {
        path: rel,
        kind,
        size: if kind == EntryKind::File { st.size } else { 0 },
        mode: st.mode & 0o777,
        mtime: st.mtime.max(0),
        mtime_nsec: st.archived_nsec(),
    }
}

/// Writes everything below `segments/` as the walk finds it. Consecutive
/// files are listed a batch ahead, so the recently written segments among
/// them are read until they settle together.
pub(super) fn write_walk<W: Write>(
    m: &mut Members<'_, '_, W>,
    tree: &Tree,
    mut walk: Walk,
    mut delta: Option<&mut Delta<'_>>,
) -> Result<()> {
    // For an incremental: whether a listed file is new or changed (a
    // segment is compared by size, mode and mtime: written once, never
    // modified), before it is opened.
    let wanted = |delta: &mut Option<&mut Delta<'_>>, found: &Found| -> Result<bool> {
        let Some(d) = delta else { return Ok(true) };
        let (e, is_dir) = match found {
            Found::Dir { rel, stat } => (entry(rel.clone(), EntryKind::Dir, stat), true),
            Found::File { rel, stat, .. } => (entry(rel.clone(), EntryKind::File, stat), false),
        };
        let base = d.advance(Some((&e.path, e.kind)))?;
        if is_dir {
            return Ok(d.wanted(Seen::Dir(&e), base.as_ref()));
        }
        if live::kind_of(&e.path) == FileKind::Segment {
            return Ok(d.wanted(Seen::Segment(&e), base.as_ref()));
        }
        // Anything else below segments/ is not SydraDB's: compared by its
        // content too (when the base has a file of the same size there).
        let Found::File { dir, name, .. } = found else {
            unreachable!("a file")
        };
        let same_size = base
            .as_ref()
            .is_some_and(|b| b.kind == EntryKind::File && b.size == e.size);
        if !same_size {
            return Ok(d.wanted(Seen::Segment(&e), base.as_ref()));
        }
        let path = tree.full(&e.path);
        let sha = match dir.open_file(name) {
            Ok((f, _)) => delta::file_sha(&f, e.size, &path)?,
            // Gone or unreadable now: the write below says what it is.
            Err(_) => [0; 32],
        };
        Ok(d.wanted(Seen::Hashed(&e, sha), base.as_ref()))
    };
    let mut next = walk.next_found()?;
    while let Some(found) = next.take() {
        match found {
            Found::Dir { rel, stat } => {
                let dir = Found::Dir { rel, stat };
                if wanted(&mut delta, &dir)? {
                    let Found::Dir { rel, stat } = dir else {
                        unreachable!()
                    };
                    write_parents(m, delta.as_deref_mut(), &rel)?;
                    m.dir(&entry(rel, EntryKind::Dir, &stat))?;
                }
                next = walk.next_found()?;
            }
            file @ Found::File { .. } => {
                let mut batch = Vec::new();
                if wanted(&mut delta, &file)? {
                    batch.push(file);
                }
                next = walk.next_found()?;
                while batch.len() < SETTLE_BATCH && matches!(next, Some(Found::File { .. })) {
                    let file = next.take().expect("matched");
                    if wanted(&mut delta, &file)? {
                        batch.push(file);
                    }
                    next = walk.next_found()?;
                }
                if let Some(first) = batch.first()
                    && let Found::File { rel, .. } = first
                {
                    write_parents(m, delta.as_deref_mut(), rel)?;
                }
                write_batch(m, tree, batch)?;
            }
        }
    }
    Ok(())
}

fn write_batch<W: Write>(m: &mut Members<'_, '_, W>, tree: &Tree, batch: Vec<Found>) -> Result<()> {
    let now = live::unix_now();
    let hot: Vec<(usize, String, FileKind)> = batch
        .iter()
        .enumerate()
        .filter_map(|(i, f)| match f {
            Found::File { rel, stat, .. } => {
                let kind = live::kind_of(rel);
                (kind == FileKind::Segment && stat.mtime >= now - live::HOT_WINDOW_SECS)
                    .then(|| (i, rel.clone(), kind))
            }
            Found::Dir { .. } => None,
        })
        .collect();
    let mut settled: Vec<Option<live::Settled>> = Vec::new();
    if !hot.is_empty() {
        settled.resize_with(batch.len(), || None);
        for (i, s) in live::settle_all(tree, hot)? {
            settled[i] = Some(s);
        }
    }
    for (i, found) in batch.into_iter().enumerate() {
        let Found::File {
            rel,
            stat,
            dir,
            name,
        } = found
        else {
            continue;
        };
        let path = tree.full(&rel);
        if let Some(s) = settled.get_mut(i).and_then(Option::take) {
            if let Some(w) = s.warning {
                m.warnings.push(w);
            }
            let e = entry(rel, EntryKind::File, &s.stat);
            m.file(&e, &path, Source::Captured(Captured::Settled(s.content)))?;
            continue;
        }
        let (file, opened) = match dir.open_file(&name) {
            Ok(x) => x,
            Err(err) if err.kind() == io::ErrorKind::NotFound => {
                m.warnings.push(format!(
                    "{rel}: removed while the archive was written (compaction or retention); left out"
                ));
                continue;
            }
            Err(err) => return Err(crate::sydradb::source::open_error("open", path, err)),
        };
        if opened.kind != Kind::File {
            return Err(not_regular(path, opened.kind));
        }
        if opened.size != stat.size || opened.mtime != stat.mtime {
            return Err(source::changed(&path, "since it was listed"));
        }
        let e = entry(rel, EntryKind::File, &opened);
        m.file(&e, &path, Source::Opened { file, opened })?;
    }
    Ok(())
}
