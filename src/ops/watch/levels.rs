//! Levels of points (`watch --levels MINOR,MAJOR`): every point is made
//! on an anchor chosen by time, so that any point restores from at most
//! four archives, whatever the length of the run:
//!
//! - depth 0: a full archive (the first, then every `--full-every`);
//! - depth 1: a *major* anchor, an incremental on the full archive, every
//!   MAJOR (1 h by default): what changed since the full;
//! - depth 2: a *minor* anchor, on the newest major one, every MINOR
//!   (5 min): what changed since it;
//! - depth 3: every other point, on the newest minor anchor: what changed
//!   since it.
//!
//! A point carries more than the change since the point before (up to
//! MINOR of changes), and the depth, not a counter, says what each
//! archive is, so a restart finds its anchors in the listing. Retention
//! by level: points older than the first `--keep` duration, minor anchors
//! older than the second, major anchors and full archives older than the
//! third go, never one that a kept archive needs (a kept archive keeps
//! its whole chain) and never the newest point.

use std::time::Duration;

use crate::error::Result;
use crate::shelf::list::base_names;
use crate::shelf::points::moment;
use crate::shelf::{Shelf, location_of, ls};

use crate::store::location::Location;
use crate::store::s3::{Listed, Listing};

/// The intervals and retention of [`super::watch`]'s levels.
#[derive(Debug, Clone)]
pub struct Levels {
    /// A minor anchor every this long (5 min).
    pub minor: Duration,
    /// A major anchor every this long (1 h).
    pub major: Duration,
    /// Points kept this long (1 h), minor anchors (1 d), major anchors
    /// and full archives (7 d).
    pub keep_points: Duration,
    /// See `keep_points`.
    pub keep_minor: Duration,
    /// See `keep_points`.
    pub keep_major: Duration,
}

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

fn depth(l: &Listed) -> u64 {
    l.base.as_ref().map_or(0, |b| b.depth)
}

/// The newest listed archive of `depth` whose chain is there, made on
/// `on` (when given), by moment.
fn newest<'a>(
    listing: &'a Listing,
    restorable: &[bool],
    depth_is: u64,
    on: Option<&Listed>,
) -> Option<&'a Listed> {
    listing
        .archives
        .iter()
        .enumerate()
        .filter(|(i, l)| restorable[*i] && depth(l) == depth_is)
        .filter(|(_, l)| match (on, &l.base) {
            (None, _) => true,
            (Some(o), Some(b)) => base_names(listing, l, b).contains(&o.key),
            (Some(_), None) => false,
        })
        .map(|(_, l)| l)
        .max_by_key(|l| moment(l))
}

/// The base of the next point at `shelf` (`None`: a full archive), and
/// why, at `now_ms`.
pub(super) fn choose(
    shelf: &Shelf,
    levels: &Levels,
    full_every: Option<Duration>,
    now_ms: u64,
) -> Result<(Option<Location>, String)> {
    let listing = listing(shelf)?;
    let ok = crate::shelf::latest::restorable(&listing);
    let age = |l: &Listed| Duration::from_millis(now_ms.saturating_sub(moment(l).max(0) as u64));
    let Some(full) = newest(&listing, &ok, 0, None) else {
        return Ok((None, "the first point: a full archive".into()));
    };
    if full_every.is_some_and(|f| age(full) >= f) {
        return Ok((None, "a new full archive (--full-every)".into()));
    }
    let at = |l: &Listed| location_of(shelf, l);
    let major = newest(&listing, &ok, 1, Some(full));
    let Some(major) = major.filter(|m| age(m) < levels.major) else {
        return Ok((Some(at(full)), "a major anchor".into()));
    };
    let minor = newest(&listing, &ok, 2, Some(major));
    let Some(minor) = minor.filter(|m| age(m) < levels.minor) else {
        return Ok((Some(at(major)), "a minor anchor".into()));
    };
    Ok((Some(at(minor)), "a point".into()))
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
    let age = |l: &Listed| Duration::from_millis(now_ms.saturating_sub(moment(l).max(0) as u64));
    let newest_point = listing
        .archives
        .iter()
        .max_by_key(|l| moment(l))
        .map(|l| l.key.clone());
    let mut keep: Vec<bool> = listing
        .archives
        .iter()
        .map(|l| {
            let limit = match depth(l) {
                0 | 1 => levels.keep_major,
                2 => levels.keep_minor,
                _ => levels.keep_points,
            };
            age(l) < limit || Some(&l.key) == newest_point.as_ref()
        })
        .collect();
    // A kept archive keeps its whole chain (every archive that may be its
    // base, as `prune` decides it).
    let mut changed = true;
    while changed {
        changed = false;
        for i in 0..listing.archives.len() {
            let l = &listing.archives[i];
            let (true, Some(b)) = (keep[i], &l.base) else {
                continue;
            };
            for name in base_names(&listing, l, b) {
                if let Some(j) = listing.archives.iter().position(|c| c.key == name)
                    && !keep[j]
                {
                    keep[j] = true;
                    changed = true;
                }
            }
        }
    }
    for (l, k) in listing.archives.iter().zip(keep) {
        if k {
            continue;
        }
        match shelf.delete(l) {
            Ok(()) => out.deleted.push(l.url.clone()),
            Err(e) => out.failed.push(format!("{}: {e}", l.url)),
        }
    }
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
