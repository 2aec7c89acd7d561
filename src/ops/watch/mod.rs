//! `watch`: a data dir shipped as it changes. Every tick the data dir's
//! metadata is looked at (the top files, the WAL files, the segment hour
//! directories: a few dozen `stat`s, no request; a top file is read only
//! when its metadata changed, see `look.rs`); when it
//! differs from what the last shipped point saw, a point is shipped: an
//! incremental on the newest archive at the destination (a full one when
//! there is none, its chain is `max_chain` long, its full archive is
//! older than `full_every`, or an incremental cannot be written),
//! published atomically like any `create -o DEST/ --incremental`. A
//! point that fails is retried at the next tick; a point is counted
//! only once published. Killed at any moment, the next start continues
//! the chain it finds at the destination: every published point stays
//! restorable (a killed point leaves a temporary the next one removes).

use std::path::Path;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::store::crypt::Recipients;
use crate::store::location::Location;
use crate::store::s3::{RequestCounts, S3Options, request_counts};
use crate::write::{CreateOptions, CreateSummary};

use super::create::create_on;
use super::output::output_for;
use look::{Tops, read_state, signature, state_file, write_state};

mod levels;
mod look;
mod plan;
#[cfg(test)]
mod plan_model;

pub use plan::Levels;

/// How [`watch`] runs.
#[derive(Debug, Clone)]
pub struct WatchOptions {
    /// Time between two looks at the data dir.
    pub every: Duration,
    /// A new full archive once the chain's full one is this old (by its
    /// moment).
    pub full_every: Option<Duration>,
    /// Most archives in a chain: before a new full one, or with levels,
    /// that any point restores from.
    pub max_chain: u64,
    /// Compression settings of each point (its time is the point's).
    pub create: CreateOptions,
    /// Stop after this many points (or failures) were shipped (tried).
    pub points: Option<u64>,
    /// Look once, ship if something changed, and return.
    pub once: bool,
    /// Endpoint and region of an `s3://` destination.
    pub s3: S3Options,
    /// Points made on anchors by level, with retention by level (see
    /// [`Levels`]); `None`: each point on the newest archive.
    pub levels: Option<Levels>,
}

/// What [`watch`] has done so far.
#[derive(Debug, Clone, Default)]
pub struct WatchStats {
    /// Points published.
    pub points: u64,
    /// Of them, full archives.
    pub fulls: u64,
    /// Bytes published.
    pub bytes: u64,
    /// Points that failed (retried at the next tick).
    pub failures: u64,
    /// Failures in a row since the last point published.
    pub failing: u64,
    /// The newest published point's moment (ms), this run's.
    pub newest_unix_ms: Option<u64>,
    /// Looks at the data dir (one a tick).
    pub ticks: u64,
    /// Requests this run sent to object storage, and their bytes, as of
    /// the last event (the process's, since the run started: see
    /// [`crate::store::s3::request_counts`]).
    pub requests: RequestCounts,
}

/// One thing [`watch`] did.
#[derive(Debug)]
pub enum WatchEvent<'a> {
    /// A point was published.
    Shipped {
        /// Where (as `-o DEST/` named it).
        archive: &'a str,
        /// What `create` said of it.
        summary: &'a CreateSummary,
        /// Why it is a full archive, if it is one and not the first.
        note: Option<&'a str>,
        /// How long it took.
        seconds: f64,
        /// The requests it sent to object storage (its base chosen, its
        /// upload, its lock), and their bytes.
        requests: RequestCounts,
    },
    /// A point failed (nothing was published); retried at the next tick.
    Failed(&'a Error),
    /// With `once`: nothing changed since the newest point.
    Unchanged,
    /// A tick found the data dir as the newest point left it: nothing was
    /// sent.
    Idle,
    /// Started: the stats hold the newest point found at the destination.
    Started,
    /// With levels: archives the retention deleted after a point.
    Expired(&'a [String]),
    /// Something that did not stop the shipping (an expiry that could
    /// not be done, or not whole).
    Warning(&'a str),
}

/// Ships `data_dir` to `dest` (a directory or an `s3://` prefix, ending
/// in `/`) whenever it changes, until a signal stops the process (or
/// `opts.points` points, or once); `on` hears of every point. Returns
/// what was done.
pub fn watch(
    data_dir: &Path,
    dest: &str,
    sealed: Option<&Recipients>,
    opts: &WatchOptions,
    on: &mut dyn FnMut(&WatchEvent<'_>, &WatchStats),
) -> Result<WatchStats> {
    if !dest.ends_with('/') {
        return Err(Error::Refused(format!(
            "watch ships points into a directory or a prefix: DEST must end in / (got {dest})"
        )));
    }
    if let Some(l) = &opts.levels
        && opts.max_chain < l.min_chain()
    {
        return Err(Error::Refused(format!(
            "--max-chain {} leaves no room for {} levels: a point restores from the full archive, an anchor of each level and itself (at least {})",
            opts.max_chain,
            l.every.len(),
            l.min_chain()
        )));
    }
    let mut stats = WatchStats::default();
    let before = request_counts();
    // Every event carries this run's requests so far.
    let mut on = |ev: &WatchEvent<'_>, stats: &mut WatchStats| {
        stats.requests = request_counts().since(&before);
        on(ev, stats);
    };
    let started = Instant::now();
    let mut swept_again = false;
    // What the data dir looked like when the last point was taken
    // (nothing yet: the first look ships a point, which also checks the
    // chain found at the destination).
    // One watch a directory or prefix (two would fork the chain);
    // temporaries of killed runs (their writer gone) go now, whether a
    // point is shipped or not.
    let shelf = crate::shelf::Shelf::parse(dest, &opts.s3)?;
    let _watcher = match &shelf {
        crate::shelf::Shelf::Dir(d) => {
            let held = crate::store::lock::lock_watcher(d.path())?;
            d.remove_stale()?;
            held
        }
        crate::shelf::Shelf::S3(remote) => crate::store::lock::lock_prefix_watcher(remote)?,
    };
    // The destination as found, listed once: its newest point (the RPO
    // is measured from it until this run ships one) and newest archive.
    let listing = crate::shelf::ls(&shelf)?;
    stats.newest_unix_ms = crate::shelf::points::points(&listing)
        .first()
        .map(|p| p.unix_ms.max(0) as u64);
    let newest_name = listing
        .archives
        .first()
        .map(|l| l.key.rsplit('/').next().unwrap_or(&l.key).to_string());
    on(&WatchEvent::Started, &mut stats);
    let mut tops = Tops::default();
    let state = state_file(data_dir, dest);
    let mut shipped: Option<[u8; 32]> = None;
    // What an earlier run shipped last, if it is still the newest archive
    // at the destination and the data dir looks the same: nothing to ship.
    if let Some((sig, name)) = state.as_deref().and_then(read_state)
        && sig == signature(data_dir, &mut tops)?
        && newest_name.is_some_and(|n| n == name)
    {
        shipped = Some(sig);
    }
    let mut next = Instant::now();
    loop {
        if crate::store::cleanup::stopping() {
            return Ok(stats);
        }
        stats.ticks += 1;
        // A data dir gone for a moment (moved, remounted) is a failed
        // point, retried at the next tick.
        let seen = match signature(data_dir, &mut tops) {
            Ok(s) => Some(s),
            Err(e) => {
                stats.failures += 1;
                stats.failing += 1;
                on(&WatchEvent::Failed(&e), &mut stats);
                if opts.once {
                    return Err(e);
                }
                None
            }
        };
        if let Some(seen) = seen
            && Some(seen) != shipped
        {
            let started = Instant::now();
            let sent = request_counts();
            match ship(data_dir, dest, sealed, opts) {
                Ok((archive, summary, note, created)) => {
                    shipped = Some(seen);
                    if let Some(f) = &state {
                        write_state(f, &seen, &archive);
                    }
                    stats.points += 1;
                    stats.fulls += u64::from(summary.base.is_none());
                    stats.bytes += summary.bytes;
                    stats.failing = 0;
                    stats.newest_unix_ms = Some(created);
                    on(
                        &WatchEvent::Shipped {
                            archive: &archive,
                            summary: &summary,
                            note: note.as_deref(),
                            seconds: started.elapsed().as_secs_f64(),
                            requests: request_counts().since(&sent),
                        },
                        &mut stats,
                    );
                    if let Some(levels) = &opts.levels {
                        // A failed expiry is said and tried again after
                        // the next point: it never stops the shipping.
                        let expired = crate::shelf::Shelf::parse(dest, &opts.s3)
                            .and_then(|shelf| levels::expire(&shelf, levels, created));
                        match expired {
                            Ok(x) => {
                                if !x.deleted.is_empty() {
                                    on(&WatchEvent::Expired(&x.deleted), &mut stats);
                                }
                                for w in x.failed.iter().chain(x.held.iter()) {
                                    on(&WatchEvent::Warning(w), &mut stats);
                                }
                            }
                            Err(e) => {
                                on(&WatchEvent::Warning(&format!("expiry: {e}")), &mut stats);
                            }
                        }
                    }
                }
                Err(e @ Error::Interrupted) => return Err(e),
                Err(e) => {
                    stats.failures += 1;
                    stats.failing += 1;
                    on(&WatchEvent::Failed(&e), &mut stats);
                    if opts.once {
                        return Err(e);
                    }
                }
            }
            if opts
                .points
                .is_some_and(|n| stats.points + stats.failures >= n)
            {
                return Ok(stats);
            }
        } else if seen.is_some() && stats.failing > 0 {
            // Back as the newest point has it (a failed change undone):
            // nothing is failing any more.
            stats.failing = 0;
            on(&WatchEvent::Idle, &mut stats);
        } else if opts.once && seen.is_some() {
            on(&WatchEvent::Unchanged, &mut stats);
        } else if seen.is_some() {
            on(&WatchEvent::Idle, &mut stats);
        }
        if opts.once {
            return Ok(stats);
        }
        // A killed run's temporary younger than the stale age at the
        // start goes once it is old enough.
        if !swept_again && started.elapsed() > Duration::from_secs(3) {
            swept_again = true;
            if let Ok(crate::shelf::Shelf::Dir(d)) = crate::shelf::Shelf::parse(dest, &opts.s3) {
                let _ = d.remove_stale();
            }
        }
        // The next tick: on the beat, or at once when a point took
        // longer than the interval.
        next += opts.every;
        let now = Instant::now();
        if next < now {
            next = now;
        }
        while Instant::now() < next {
            if crate::store::cleanup::stopping() {
                return Ok(stats);
            }
            std::thread::sleep((next - Instant::now()).min(Duration::from_millis(100)));
        }
    }
}

/// One point: an incremental on the newest archive at `dest`, or a full
/// one; where it went, what was written, and why it is full.
fn ship(
    data_dir: &Path,
    dest: &str,
    sealed: Option<&Recipients>,
    opts: &WatchOptions,
) -> Result<(String, CreateSummary, Option<String>, u64)> {
    // Held from the choice of the base to the publication: a prune of
    // the destination waits (see `store::lock`).
    let _lock = crate::store::lock::lock_for_create(dest, &opts.s3)?;
    let created = opts.create.created_unix_ms.unwrap_or_else(now_ms);
    let (mut base, mut note) = match &opts.levels {
        Some(levels) => {
            let shelf = crate::shelf::Shelf::parse(dest, &opts.s3)?;
            let (b, why) =
                levels::choose(&shelf, levels, opts.full_every, opts.max_chain, created)?;
            (b, Some(why))
        }
        None => crate::shelf::latest::choose_base(dest, &opts.s3, opts.max_chain)?,
    };
    if opts.levels.is_none()
        && let (Some(b), Some(age)) = (&base, opts.full_every)
        && let Some(why) = full_is_old(b, age)?
    {
        base = None;
        note = Some(why);
    }
    let create = CreateOptions {
        created_unix_ms: Some(created),
        ..opts.create.clone()
    };
    let (output, archive) =
        output_for(Path::new(dest), false, &opts.s3, created, sealed.is_some())?;
    let summary = match create_on(data_dir, base.as_ref(), sealed, &output, &create) {
        // A full archive where an incremental cannot be written: the
        // shipping goes on.
        Err(Error::NotIncremental(why)) if base.is_some() => {
            note = Some(format!("cannot write an incremental: {why}"));
            create_on(data_dir, None, sealed, &output, &create)?
        }
        // An anchor that cannot be a base after all (its chain broken in
        // a way the listing cannot tell, encrypted to a key not given, or
        // encrypted while these points are not): a full archive, so that
        // shipping goes on, as without levels.
        Err(e) if base.is_some() && opts.levels.is_some() && crate::shelf::latest::skip(&e) => {
            note = Some(format!("its anchor cannot be used ({e}): a full archive"));
            create_on(data_dir, None, sealed, &output, &create)?
        }
        r => r?,
    };
    Ok((archive, summary, note, created))
}

/// Why the chain of `base` needs a new full archive: its full one is of
/// a moment more than `age` ago.
fn full_is_old(base: &Location, age: Duration) -> Result<Option<String>> {
    let links = crate::chain::open_chain(base, &[])?;
    let full = links[0].head.created_unix_ms;
    let old = now_ms().saturating_sub(full);
    Ok((u128::from(old) > age.as_millis()).then(|| {
        format!(
            "the chain's full archive {} is {} s old (--full-every {} s)",
            links[0].loc,
            old / 1000,
            age.as_secs()
        )
    }))
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
