//! The rules of `watch --levels`, on a plain picture of the destination
//! (no I/O): which archive the next point is made on ([`choose`]) and
//! which archives retention keeps ([`keep`]). `levels.rs` turns a listing
//! into [`Node`]s and acts on the answers; the randomized test in
//! `plan_model.rs` runs the same functions over simulated weeks.
//!
//! Depth 0 is a full archive; depth `k` (1..=n) an anchor of the `k`-th
//! coarsest level, made on the newest anchor of depth `k - 1`; deeper
//! archives are points, each made on the newest point above the finest
//! anchor while the chain stays within `max_chain` archives, else on
//! the anchor itself.

use std::time::Duration;

use crate::error::{Error, Result};

/// The levels of [`super::watch`]: anchor intervals and retention.
#[derive(Debug, Clone)]
pub struct Levels {
    /// The levels' intervals, finest first (`5m,1h,1d`): an anchor of each
    /// once the newest of its level is this old.
    pub every: Vec<Duration>,
    /// How long every archive is kept, then (finest level first) how long
    /// the newest archive of each window of each level is: one more than
    /// `every`.
    pub keep: Vec<Duration>,
}

impl Levels {
    /// Levels of these intervals (finest first, each longer than the one
    /// before) kept `keep` long (see [`Levels::keep`]), or by default
    /// ([`Levels::default_keep`]).
    pub fn new(every: Vec<Duration>, keep: Option<Vec<Duration>>) -> Result<Levels> {
        if every.is_empty() || every.len() > 8 {
            return Err(Error::Refused(format!(
                "--levels takes 1 to 8 intervals, finest first (got {})",
                every.len()
            )));
        }
        if every.iter().any(|d| d.is_zero()) || every.windows(2).any(|w| w[0] >= w[1]) {
            return Err(Error::Refused(
                "--levels: each interval must be longer than the one before it (finest first, such as 5m,1h,1d)".into(),
            ));
        }
        let keep = keep.unwrap_or_else(|| Levels::default_keep(&every));
        if keep.len() != every.len() + 1 {
            return Err(Error::Refused(format!(
                "--keep takes {} durations with {} levels: how long every point is kept, then each level's (finest first)",
                every.len() + 1,
                every.len()
            )));
        }
        Ok(Levels { every, keep })
    }

    /// Every point an hour; a level of less than 5 minutes an hour, of
    /// less than an hour a day, of more a week (`5m,1h` keeps `1h,1d,7d`).
    pub fn default_keep(every: &[Duration]) -> Vec<Duration> {
        const H: u64 = 3600;
        let mut keep = vec![Duration::from_secs(H)];
        keep.extend(every.iter().map(|e| match e.as_secs() {
            s if s < 300 => Duration::from_secs(H),
            s if s < H => Duration::from_secs(24 * H),
            _ => Duration::from_secs(7 * 24 * H),
        }));
        keep
    }

    /// The fewest archives a point may restore from: the full one, an
    /// anchor of each level, the point.
    pub fn min_chain(&self) -> u64 {
        self.every.len() as u64 + 2
    }
}

/// One archive at the destination, as the rules see it.
#[derive(Debug, Clone)]
pub(super) struct Node {
    /// Its moment (ms since the epoch).
    pub(super) moment: i64,
    /// How many archives are below it (0: a full one).
    pub(super) depth: u64,
    /// The archives that may be its base (indexes).
    pub(super) bases: Vec<usize>,
    /// Its whole chain is there.
    pub(super) ok: bool,
}

/// Where the next point goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Choice {
    /// A full archive, and why.
    Full(&'static str),
    /// An incremental on this archive (index): an anchor of this depth,
    /// or a point (depth past the levels).
    On(usize, u64),
}

fn age(n: &Node, now_ms: u64) -> Duration {
    Duration::from_millis(now_ms.saturating_sub(n.moment.max(0) as u64))
}

/// An archive dated this far past now (a clock that ran ahead when it was
/// made) is not made a base: points would pile up on it.
const FUTURE_MS: i64 = 60_000;

/// Which archives have `anchor` in their chain (through any of their
/// bases), `anchor` included: one pass, shallowest first.
fn above(nodes: &[Node], shallow_first: &[usize], anchor: usize) -> Vec<bool> {
    let mut up = vec![false; nodes.len()];
    up[anchor] = true;
    for &i in shallow_first {
        let n = &nodes[i];
        if n.depth > nodes[anchor].depth
            && n.bases.iter().any(|&b| nodes[b].depth < n.depth && up[b])
        {
            up[i] = true;
        }
    }
    up
}

/// The newest whole archive of `depth` (or deeper, with `deeper`), not
/// from the future, among `among` (all when `None`); `order` has every
/// index, newest first.
fn newest(
    nodes: &[Node],
    order: &[usize],
    depth_is: u64,
    deeper: bool,
    among: Option<&[bool]>,
    now_ms: u64,
) -> Option<usize> {
    order.iter().copied().find(|&i| {
        let n = &nodes[i];
        n.ok && n.moment <= now_ms as i64 + FUTURE_MS
            && (n.depth == depth_is || (deeper && n.depth > depth_is))
            && among.is_none_or(|a| a[i])
    })
}

/// The base of the next point, at `now_ms`.
pub(super) fn choose(
    nodes: &[Node],
    levels: &Levels,
    full_every: Option<Duration>,
    max_chain: u64,
    now_ms: u64,
) -> Choice {
    let mut order: Vec<usize> = (0..nodes.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse((nodes[i].moment, nodes[i].depth)));
    let mut shallow_first: Vec<usize> = (0..nodes.len()).collect();
    shallow_first.sort_by_key(|&i| nodes[i].depth);
    let Some(mut under) = newest(nodes, &order, 0, false, None, now_ms) else {
        return Choice::Full("the first point: a full archive");
    };
    if full_every.is_some_and(|f| age(&nodes[under], now_ms) >= f) {
        return Choice::Full("a new full archive (--full-every)");
    }
    // Coarsest level first: an anchor of each, on the one above, while
    // the newest is young enough.
    let n = levels.every.len() as u64;
    for (k, every) in (1..=n).zip(levels.every.iter().rev()) {
        let up = above(nodes, &shallow_first, under);
        match newest(nodes, &order, k, false, Some(&up), now_ms) {
            Some(a) if age(&nodes[a], now_ms) < *every => under = a,
            _ => return Choice::On(under, k),
        }
    }
    // A point: on the newest point above the finest anchor, while a
    // restore of it reads at most `max_chain` archives.
    let up = above(nodes, &shallow_first, under);
    match newest(nodes, &order, n + 1, true, Some(&up), now_ms) {
        Some(tip) if nodes[tip].depth + 2 <= max_chain => Choice::On(tip, nodes[tip].depth + 1),
        _ => Choice::On(under, n + 1),
    }
}

/// Which archives retention keeps at `now_ms`: every archive younger than
/// `keep[0]`; for each level (finest first), the newest whole archive of
/// each of its windows (`every[j]` long, from the epoch) younger than
/// `keep[j + 1]`; at each `keep` horizon, the newest whole archive older
/// than it (the data dir's state there, however long ago it was made:
/// after a quiet spell, the last point before it); the newest archive;
/// and every archive a kept one may need (its whole chain).
pub(super) fn keep(nodes: &[Node], levels: &Levels, now_ms: u64) -> Vec<bool> {
    let mut keep: Vec<bool> = nodes
        .iter()
        .map(|n| age(n, now_ms) < levels.keep[0])
        .collect();
    if let Some(newest) = (0..nodes.len()).max_by_key(|&i| nodes[i].moment) {
        keep[newest] = true;
    }
    for (every, limit) in levels.every.iter().zip(&levels.keep[1..]) {
        let w = every.as_millis().max(1) as i64;
        let mut window_newest: std::collections::HashMap<i64, usize> = Default::default();
        for (i, n) in nodes.iter().enumerate() {
            if !n.ok || age(n, now_ms) >= *limit {
                continue;
            }
            let e = window_newest.entry(n.moment.div_euclid(w)).or_insert(i);
            if (n.moment, n.depth) > (nodes[*e].moment, nodes[*e].depth) {
                *e = i;
            }
        }
        for i in window_newest.into_values() {
            keep[i] = true;
        }
    }
    for limit in &levels.keep {
        let at_horizon = (0..nodes.len())
            .filter(|&i| nodes[i].ok && age(&nodes[i], now_ms) >= *limit)
            .max_by_key(|&i| (nodes[i].moment, nodes[i].depth));
        if let Some(i) = at_horizon {
            keep[i] = true;
        }
    }
    // Every archive a kept one may need, and theirs.
    let mut todo: Vec<usize> = (0..nodes.len()).filter(|&i| keep[i]).collect();
    while let Some(i) = todo.pop() {
        for &b in &nodes[i].bases {
            if !keep[b] {
                keep[b] = true;
                todo.push(b);
            }
        }
    }
    keep
}
