//! Levels of points (`watch --levels 5m,1h,1d`): every point is made on
//! an anchor chosen by time, so that any point restores from a bounded
//! number of archives (`max_chain`, 12 by default), whatever the length
//! of the run:
//!
//! - depth 0: a full archive (the first, then every `--full-every`);
//! - depth 1..=n: an anchor of each level, coarsest first, each made on
//!   the newest anchor of the level above once the newest of its own is
//!   as old as its interval: with `5m,1h,1d`, a daily anchor on the full
//!   archive (what changed since it), an hourly one on the daily one, one
//!   every 5 minutes on the hourly one;
//! - deeper: points, each on the newest point above the finest anchor
//!   (what changed since the point before) while the chain stays within
//!   `max_chain`, else on the anchor itself.
//!
//! The depth, not a counter, says what each archive is, so a restart
//! finds its anchors in the listing. Retention by level: every archive
//! younger than the first `--keep` duration; for each level, the newest
//! archive of each of its windows younger than its `--keep` duration;
//! never one that a kept archive needs (a kept archive keeps its whole
//! chain) and never the newest. The rules are in `plan.rs`.

use std::time::Duration;

use crate::error::Result;
use crate::shelf::list::base_names;
use crate::shelf::points::moment;
use crate::shelf::{Shelf, location_of, ls};

use crate::store::location::Location;
use crate::store::s3::Listing;

use super::plan::{self, Choice, Levels, Node};

/// The archives at `shelf`, an encrypted one in a directory with its
/// whole SHA-256 (its base is told by it: without it, any encrypted
/// archive may be any one's base), as `prune` takes them.
fn listing(shelf: &Shelf) -> Result<Listing> {
    let mut listing = ls(shelf)?;
    if let Shelf::Dir(d) = shelf {
        for l in listing.archives.iter_mut() {
            if l.encrypted && l.sha256.is_none() {
                l.sha256 = Some(crate::format::sums::hex(&d.digest(l)?));
            }
        }
    }
    Ok(listing)
}

/// `d` as `--levels` takes it: `500ms`, `10s`, `5m`, `1h`, `1d`.
fn short(d: Duration) -> String {
    let ms = d.as_millis();
    for (unit, n) in [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
    ] {
        if ms.is_multiple_of(n) {
            return format!("{}{unit}", ms / n);
        }
    }
    format!("{ms}ms")
}

/// The listing as the rules see it.
fn nodes(listing: &Listing) -> Vec<Node> {
    let ok = crate::shelf::latest::restorable(listing);
    let index = |key: &str| listing.archives.iter().position(|c| c.key == key);
    listing
        .archives
        .iter()
        .zip(ok)
        .map(|(l, ok)| Node {
            moment: moment(l),
            depth: l.base.as_ref().map_or(0, |b| b.depth),
            bases: l.base.as_ref().map_or(Vec::new(), |b| {
                base_names(listing, l, b)
                    .iter()
                    .filter_map(|k| index(k))
                    .collect()
            }),
            ok,
        })
        .collect()
}

/// The base of the next point at `shelf` (`None`: a full archive), and
/// why, at `now_ms`.
pub(super) fn choose(
    shelf: &Shelf,
    levels: &Levels,
    full_every: Option<Duration>,
    max_chain: u64,
    now_ms: u64,
) -> Result<(Option<Location>, String)> {
    let listing = listing(shelf)?;
    let n = levels.every.len() as u64;
    Ok(
        match plan::choose(&nodes(&listing), levels, full_every, max_chain, now_ms) {
            Choice::Full(why) => (None, why.into()),
            Choice::On(i, depth) => {
                let why = if depth > n {
                    "a point".to_string()
                } else {
                    let every = levels.every[(n - depth) as usize];
                    format!("an anchor of level {}", short(every))
                };
                (Some(location_of(shelf, &listing.archives[i])), why)
            }
        },
    )
}

/// Deletes what the levels' retention does not keep at `shelf` (under
/// its prune lock, taken without waiting in a directory). Nothing is
/// deleted while an archive's chain is unknown (an encrypted one listed
/// without its key).
pub(super) fn expire(shelf: &Shelf, levels: &Levels, now_ms: u64) -> Result<Expired> {
    let mut out = Expired::default();
    // Not waiting for a create that reads a base here: the next point
    // tries again (shipping is never held up by retention).
    let _lock = match shelf {
        Shelf::Dir(d) => match crate::store::lock::try_lock_shelf(d.path())? {
            Some(l) => Some(l),
            None => {
                out.held = Some(format!(
                    "{} is in use by a create or a prune: expired nothing this time",
                    d.path().display()
                ));
                return Ok(out);
            }
        },
        Shelf::S3(r) => crate::store::lock::lock_prefix(r)?,
    };
    let listing = listing(shelf)?;
    if let Some(l) = listing.archives.iter().find(|l| !l.chain_known) {
        out.held = Some(format!(
            "the chain of {} is unknown (encrypted, listed without its key): expired nothing",
            l.url
        ));
        return Ok(out);
    }
    let keep = plan::keep(&nodes(&listing), levels, now_ms);
    let gone: Vec<_> = listing
        .archives
        .iter()
        .zip(keep)
        .filter(|(_, k)| !k)
        .map(|(l, _)| l.clone())
        .collect();
    let d = shelf.delete_all(&listing, gone);
    out.deleted = d.done.into_iter().map(|l| l.url).collect();
    out.failed = d
        .failed
        .into_iter()
        .map(|(l, why)| format!("{}: {why}", l.url))
        .collect();
    Ok(out)
}

/// What [`expire`] did.
#[derive(Debug, Default)]
pub(super) struct Expired {
    /// Archives deleted.
    pub(super) deleted: Vec<String>,
    /// Deletions that failed, with why (left in place).
    pub(super) failed: Vec<String>,
    /// Why nothing was looked at this time.
    pub(super) held: Option<String>,
}
