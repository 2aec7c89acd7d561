//! `create`: scan a data dir and write its archive to a file (published
//! atomically), stdout or an object.

use std::path::Path;

use crate::chain::{self, Link, open_chain};
use crate::error::{Error, Result};
use crate::store::crypt::Recipients;
use crate::store::location::Location;
use crate::sydradb::scan::{Scan, scan};

pub use super::output::Output;
use super::output::{Target, same_archive};
use crate::write::{BaseState, CreateOptions, CreateSummary, write_sealed};

/// Scans `data_dir` and writes its archive to `output`.
pub fn create(data_dir: &Path, output: &Output, opts: &CreateOptions) -> Result<CreateSummary> {
    create_on(data_dir, None, None, output, opts)
}

/// [`create`], or with `base` an incremental archive (format version 3)
/// of what changed since the archive at `base` (a full or an
/// incremental, whose own chain must be found: see
/// [`crate::chain::open_chain`]).
///
/// With `sealed`, the whole archive is one age stream encrypted to its
/// recipients (see [`crate::store::crypt`]); the summary's size and
/// SHA-256 are then the ciphertext's, what is stored.
pub fn create_on(
    data_dir: &Path,
    base: Option<&Location>,
    sealed: Option<&Recipients>,
    output: &Output,
    opts: &CreateOptions,
) -> Result<CreateSummary> {
    let out_loc = output.location();
    if let (Some(b), Some(o)) = (base, &out_loc)
        && same_archive(b, o)
    {
        return Err(Error::Refused(format!(
            "{o} is the base of the archive to write: replacing it would break the chain; write the incremental elsewhere"
        )));
    }
    // The output is checked before any work is done.
    let target = Target::check(output)?;
    // Serialised with a prune of the base's directory, and of the one the
    // incremental goes to (see `store::lock`).
    let mut _locks = Vec::new();
    if let Some(b) = base {
        _locks.extend(crate::store::lock::lock_location(b)?);
        if let Some(o) = &out_loc {
            _locks.extend(crate::store::lock::lock_location(o)?);
        }
    }
    let links = match base {
        Some(b) => Some(open_chain(b, &[])?),
        None => None,
    };
    // An incremental of an encrypted chain is encrypted too: its changes
    // are the same data.
    if let Some(links) = &links
        && sealed.is_none()
        && let Some(l) = links.iter().find(|l| l.encrypted)
    {
        return Err(Error::Refused(format!(
            "{} of the chain is encrypted: encrypt the incremental too (-r, -R or --passphrase-file)",
            l.loc
        )));
    }
    // Nor any archive of its chain: replacing one breaks the chain.
    if let (Some(links), Some(o)) = (&links, &out_loc)
        && let Some(l) = links.iter().find(|l| same_archive(&l.loc, o))
    {
        return Err(Error::Refused(format!(
            "{o} is {} of the chain the incremental is made on: replacing it would break the chain; write the incremental elsewhere",
            l.loc
        )));
    }
    // Nothing goes to stdout before the chain is known to be good: the
    // model runs over it once first (a file or an object is simply not
    // published when it refuses midway).
    if let (Output::Stdout, Some(links)) = (output, &links) {
        for e in chain::state(links)? {
            e?;
        }
    }
    let inside = match output {
        Output::File { path, .. } => inside_data_dir(data_dir, path)?,
        _ => None,
    };
    let state = base_state(&links, out_loc.as_ref())?;
    let scan = scan(data_dir)?;
    let estimate = if target.needs_estimate() {
        estimate(&scan)?
    } else {
        0
    };
    let mut summary = target.write(
        estimate,
        |w, name| write_sealed(scan, state, w, name, opts, sealed).map(|(_, s)| s),
        || {
            crate::sys::pause_point("publish");
            match links.as_ref().and_then(|l| l.last()) {
                Some(l) => l.check_present(),
                None => Ok(()),
            }
        },
    )?;
    summary.warnings.extend(inside);
    Ok(summary)
}

/// Refuses an output inside the data dir's layout (`wal/`, `segments/`,
/// wherever they point): the next `create` would archive the archive.
/// Elsewhere inside the data dir it is only worth a warning (left out of
/// later archives as not part of the layout).
fn inside_data_dir(data_dir: &Path, out: &Path) -> Result<Option<String>> {
    use std::os::unix::fs::MetadataExt;
    // Directories are compared by device and inode, not by path: a bind
    // mount or a symlink names the same directory by another path.
    let id = |p: &Path| std::fs::metadata(p).ok().map(|m| (m.dev(), m.ino()));
    let (Some(data), Ok((dir, _))) = (id(data_dir), crate::store::publish::split(out)) else {
        return Ok(None);
    };
    let Ok(dir) = std::fs::canonicalize(dir) else {
        return Ok(None);
    };
    let tops: Vec<(&str, (u64, u64))> = crate::format::path::TOP_DIRS
        .iter()
        .filter_map(|top| id(&data_dir.join(top)).map(|i| (*top, i)))
        .collect();
    let mut inside = false;
    for ancestor in dir.ancestors() {
        let Some(a) = id(ancestor) else { continue };
        if let Some((top, _)) = tops.iter().find(|(_, t)| *t == a) {
            return Err(Error::Refused(format!(
                "{} is inside the data dir's layout ({top}/ of {}): the next create would archive it; write it outside the data dir",
                out.display(),
                data_dir.display()
            )));
        }
        inside |= a == data;
    }
    Ok(inside.then(|| {
        format!(
            "the archive is written inside the data dir {}; later archives leave it out (it is not part of the layout), but it shares the database's disk",
            data_dir.display()
        )
    }))
}

/// An upper estimate of the archive size of `scan`: the data, tar's header
/// and padding and the index per file (a walk of the data dir, without
/// reading a file).
fn estimate(scan: &Scan) -> Result<u64> {
    let (files, bytes) = scan.count()?;
    Ok(bytes + files * 2048 + (1 << 20))
}

/// What the writer needs of the chain `links` (the base last) for an
/// incremental that goes to `out_loc`.
fn base_state<'l>(
    links: &'l Option<Vec<Link>>,
    out_loc: Option<&Location>,
) -> Result<Option<BaseState<'l>>> {
    let Some(links) = links else { return Ok(None) };
    Ok(Some(BaseState {
        base: chain::base_ref(links, out_loc)?,
        entries: chain::state(links)?,
    }))
}
