//! A second, deliberately simple statement of the chain model's rules
//! (see `model.rs`), on a map in memory: what the randomized test and
//! the fuzz target compare the streaming model with. It is not used by
//! any command: it states the rules declaratively (whole-tree edits in
//! tree order), where the model states them as a merge of streams.

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::format::head::EntryKind;
use crate::format::incremental::{Change, ChangeOrder, StateEntry, is_under};
use crate::format::sums::hex;

/// Tree order as a map key: the path's components.
fn key(p: &str) -> Vec<String> {
    p.split('/').map(str::to_string).collect()
}

/// The tree after one incremental, or why the model refuses it (a short
/// reason; only refusal itself is compared).
pub fn reference_level(
    prev: &[StateEntry],
    members: &[StateEntry],
    lines: &[Vec<u8>],
    tails: &HashMap<String, u64>,
) -> Result<Vec<StateEntry>, String> {
    let base: BTreeMap<Vec<String>, StateEntry> =
        prev.iter().map(|e| (key(&e.path), e.clone())).collect();
    let mut order = ChangeOrder::default();
    let mut changes = Vec::new();
    for l in lines {
        changes.push(order.next(l).map_err(|e| e.to_string())?);
    }
    if members
        .windows(2)
        .any(|w| key(&w[0].path) >= key(&w[1].path))
    {
        return Err("members out of tree order".into());
    }
    let member_paths: HashSet<&str> = members.iter().map(|m| m.path.as_str()).collect();
    if changes.iter().any(|c| member_paths.contains(c.path())) {
        return Err("an operation and a member share a path".into());
    }
    // What this incremental takes away from the base: deleted paths, and
    // directories a non-directory replaces (with everything below).
    let mut removed: Vec<&str> = Vec::new();
    for c in &changes {
        match c {
            Change::Delete { path } => removed.push(path),
            Change::Append { path, .. } => {
                if base
                    .get(&key(path))
                    .is_some_and(|b| b.kind == EntryKind::Dir)
                {
                    removed.push(path);
                }
            }
        }
    }
    for m in members {
        if m.kind != EntryKind::Dir
            && base
                .get(&key(&m.path))
                .is_some_and(|b| b.kind == EntryKind::Dir)
        {
            removed.push(&m.path);
        }
    }
    let gone_above = |p: &str| removed.iter().any(|r| p != *r && is_under(p, r));
    // Base files continued under another name leave their place first.
    let mut moved: HashSet<&str> = HashSet::new();
    let mut used_tails: HashSet<&str> = HashSet::new();
    for c in &changes {
        let Change::Append {
            path,
            from,
            offset,
            prefix_sha256,
            tail,
            size,
            ..
        } = c
        else {
            continue;
        };
        if from != path && !moved.insert(from) {
            return Err("a file continued twice".into());
        }
        if tails.get(tail.as_str()) != Some(&(size - offset)) || !used_tails.insert(tail) {
            return Err("a tail missing, of another size, or used twice".into());
        }
        let b = base
            .get(&key(from))
            .ok_or("continues a file the base lacks")?;
        if b.kind != EntryKind::File || b.size != *offset || hex(&b.sha256) != *prefix_sha256 {
            return Err("continues a file the base holds otherwise".into());
        }
        if gone_above(from) {
            return Err("continues a file gone with a directory".into());
        }
    }
    if used_tails.len() != tails.len() {
        return Err("a tail no append uses".into());
    }
    let mut tree = base.clone();
    for m in &moved {
        tree.remove(&key(m));
    }
    // Every change and member, in tree order.
    let mut steps: Vec<(Vec<String>, Result<&Change, &StateEntry>)> = changes
        .iter()
        .map(|c| (key(c.path()), Ok(c)))
        .chain(members.iter().map(|m| (key(&m.path), Err(m))))
        .collect();
    steps.sort_by(|a, b| a.0.cmp(&b.0));
    let remove_below = |tree: &mut BTreeMap<Vec<String>, StateEntry>, p: &str| {
        tree.retain(|_, e| !(e.path != p && is_under(&e.path, p)));
    };
    for (k, step) in steps {
        match step {
            Ok(Change::Delete { path }) => {
                if moved.contains(path.as_str()) || gone_above(path) || !base.contains_key(&k) {
                    return Err("deletes what the base does not hold".into());
                }
                tree.remove(&k);
                remove_below(&mut tree, path);
            }
            Ok(Change::Append {
                path,
                from,
                size,
                sha256,
                mode,
                mtime,
                mtime_nsec,
                ..
            }) => {
                if from == path && (moved.contains(path.as_str()) || gone_above(path)) {
                    return Err("continues a file that left".into());
                }
                tree.remove(&k);
                remove_below(&mut tree, path);
                tree.insert(
                    k,
                    StateEntry {
                        path: path.clone(),
                        kind: EntryKind::File,
                        mode: *mode,
                        mtime: *mtime,
                        mtime_nsec: *mtime_nsec,
                        size: *size,
                        sha256: crate::format::sums::parse_hex32(sha256).ok_or("bad hex")?,
                        origin: 1,
                        frame: 0,
                        offset: 0,
                        appended: true,
                    },
                );
            }
            Err(m) => {
                let keep_below = m.kind == EntryKind::Dir
                    && tree.get(&k).is_some_and(|t| t.kind == EntryKind::Dir);
                if !keep_below {
                    remove_below(&mut tree, &m.path);
                }
                tree.insert(k, m.clone());
            }
        }
    }
    // A tree: the entry above each path is a directory of it.
    for e in tree.values() {
        if let Some((parent, _)) = e.path.rsplit_once('/')
            && tree
                .get(&key(parent))
                .is_none_or(|p| p.kind != EntryKind::Dir)
        {
            return Err("not a tree".into());
        }
    }
    Ok(tree.into_values().collect())
}
