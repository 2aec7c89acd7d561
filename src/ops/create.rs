//! `create`: scan a data dir and write its archive to a file (published
//! atomically), stdout or an object.

use std::fs::File;
use std::io::{self, IsTerminal};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use crate::chain::{self, Link, open_chain};
use crate::error::{Error, Result};
use crate::store::crypt::Recipients;
use crate::store::location::Location;
use crate::store::publish::AtomicFile;
use crate::store::s3::{Remote, S3Options, S3Url, Upload};
use crate::sydradb::scan::{Scan, scan};
use crate::write::{BaseState, CreateOptions, CreateSummary, write_sealed};

/// Where an archive goes.
#[derive(Debug, Clone)]
pub enum Output {
    /// Standard output (refused when it is a terminal).
    Stdout,
    /// A file, published atomically; an existing one is replaced only with `force`.
    File {
        /// Target path.
        path: PathBuf,
        /// Replace an existing target.
        force: bool,
    },
    /// An object, uploaded in parts and completed only once whole; an
    /// existing one is replaced only with `force`.
    S3 {
        /// Target object.
        url: S3Url,
        /// Endpoint and region overrides.
        options: S3Options,
        /// Replace an existing object.
        force: bool,
    },
}

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
    let out_loc = match output {
        Output::Stdout => None,
        Output::File { path, .. } => Some(Location::Local(path.clone())),
        Output::S3 { url, options, .. } => Some(Location::S3 {
            url: url.clone(),
            options: options.clone(),
        }),
    };
    if let (Some(b), Some(o)) = (base, &out_loc)
        && same_archive(b, o)
    {
        return Err(Error::Refused(format!(
            "{o} is the base of the archive to write: replacing it would break the chain; write the incremental elsewhere"
        )));
    }
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
    match output {
        Output::Stdout => {
            let stdout = io::stdout();
            if stdout.is_terminal() {
                return Err(Error::Refused(
                    "refusing to write an archive to a terminal; use -o FILE or redirect stdout"
                        .into(),
                ));
            }
            // Nothing goes out before the chain is known to be good: the
            // model runs over it once first (a file or an object is
            // simply not published when it refuses midway).
            if let Some(links) = &links {
                for e in chain::state(links)? {
                    e?;
                }
            }
            let scan = scan(data_dir)?;
            let _lock = stdout.lock();
            // A duplicate of fd 1, for unbuffered writes of large chunks;
            // closing it leaves stdout open.
            let fd = stdout
                .as_fd()
                .try_clone_to_owned()
                .map_err(|e| Error::io("write", "-", e))?;
            let (_, summary) = write_sealed(
                scan,
                base_state(&links, out_loc.as_ref())?,
                File::from(fd),
                Path::new("-"),
                opts,
                sealed,
            )?;
            Ok(summary)
        }
        Output::File { path, force } => {
            // Refuse an existing target before doing any work.
            check_out_path(path)?;
            crate::store::publish::check_target(path, *force)?;
            let inside = inside_data_dir(data_dir, path)?;
            let state = base_state(&links, out_loc.as_ref())?;
            let scan = scan(data_dir)?;
            let (mut file, removed) = AtomicFile::create(path, *force)?;
            let written = write_sealed(scan, state, file.writer(), path, opts, sealed);
            match written {
                Ok((_, mut summary)) => {
                    crate::sys::pause_point("publish");
                    if let Some(l) = links.as_ref().and_then(|l| l.last())
                        && let Err(e) = l.check_present()
                    {
                        let _ = file.abort();
                        return Err(e);
                    }
                    file.commit()?;
                    summary.removed_stale = removed;
                    summary.warnings.extend(inside);
                    Ok(summary)
                }
                Err(e) => {
                    // The archive error matters more than a failed cleanup.
                    let _ = file.abort();
                    Err(e)
                }
            }
        }
        Output::S3 {
            url,
            options,
            force,
        } => {
            // Refuse an existing object, and find out that the bucket is
            // reachable with these credentials, before doing any work.
            let remote = Remote::connect(url, options)?;
            remote.check_target(*force)?;
            let state = base_state(&links, out_loc.as_ref())?;
            let scan = scan(data_dir)?;
            let mut upload = Upload::start(&remote, estimate(&scan)?)?;
            let name = PathBuf::from(url.to_string());
            match write_sealed(scan, state, &mut upload, &name, opts, sealed) {
                Ok((_, mut summary)) => {
                    crate::sys::pause_point("publish");
                    if let Some(l) = links.as_ref().and_then(|l| l.last())
                        && let Err(e) = l.check_present()
                    {
                        let _ = upload.abort();
                        return Err(e);
                    }
                    let uploaded = upload.finish(&summary.sha256)?;
                    summary.warnings.extend(uploaded.warnings.iter().cloned());
                    summary.uploaded = Some(uploaded);
                    Ok(summary)
                }
                Err(e) => {
                    // The archive error matters more than a failed abort.
                    let _ = upload.abort();
                    Err(e)
                }
            }
        }
    }
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

/// Refuses an `OUT` that cannot be written before any work is done: one
/// that ends in `/`, or whose directory does not exist.
fn check_out_path(out: &Path) -> Result<()> {
    use std::os::unix::ffi::OsStrExt;
    if out.as_os_str().as_bytes().ends_with(b"/") {
        return Err(Error::Refused(format!(
            "{} ends in `/`: -o names the archive file, not a directory",
            out.display()
        )));
    }
    // A directory named without its `/`: say how to write into it.
    if std::fs::metadata(out).is_ok_and(|m| m.is_dir()) {
        return Err(Error::Refused(format!(
            "{} is a directory; to put a timestamped archive in it, write {}/",
            out.display(),
            out.display()
        )));
    }
    let (dir, _) = crate::store::publish::split(out)?;
    match std::fs::metadata(&dir) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(Error::Refused(format!(
            "{} is not a directory; cannot write {} into it",
            dir.display(),
            out.display()
        ))),
        Err(e) => Err(Error::io("find the directory of", out, e)),
    }
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

/// Whether two locations name the same archive (the same file, by device
/// and inode, or the same object).
fn same_archive(a: &Location, b: &Location) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (a, b) {
        (Location::Local(x), Location::Local(y)) => {
            match (std::fs::metadata(x), std::fs::metadata(y)) {
                (Ok(m), Ok(n)) => (m.dev(), m.ino()) == (n.dev(), n.ino()),
                _ => false,
            }
        }
        (Location::S3 { url: x, .. }, Location::S3 { url: y, .. }) => x == y,
        _ => false,
    }
}
