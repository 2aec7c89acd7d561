//! `restore`: rebuild a data directory from an archive so that nothing in
//! the target changes until the whole archive has been verified.
//!
//! The command composes `crate::restore`: the target is checked first
//! (`target`), an incremental's chain opened and modelled (`chain`),
//! leftovers of killed runs are cleaned up, the archive (or its whole
//! chain, each base checked to be the archive recorded before a byte is
//! restored) is extracted into a private staging directory beside it
//! (`staging`, `sink`; each incremental applied by `chain` with `apply`),
//! and the verified, durable tree is published by a rename (`publish`).

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::read::source::open_archive;
use crate::read::{Depth, ReadSummary};
use crate::restore::chain::{chain_to_restore, restore_chain};
use crate::restore::publish::publish;
use crate::restore::staging::{clean_leftovers, stage};
use crate::restore::target::resolve_target;
use crate::store::location::Location;

/// Options for [`restore`].
#[derive(Debug, Clone, Default)]
pub struct RestoreOptions {
    /// Replace a non-empty data directory (the old one is kept beside it).
    pub force: bool,
    /// Counts the archive bytes read (total: the archive size, if known).
    pub progress: Option<std::sync::Arc<crate::progress::Progress>>,
    /// Threads decoding data (0: the cores hashing leaves, see
    /// [`crate::read::read_archive_with`]; 1: on the reading thread).
    pub threads: usize,
    /// Where an incremental's bases may be, besides where it recorded
    /// them (each one used only if it is the archive recorded).
    pub bases: Vec<Location>,
}

/// What a finished restore did.
#[derive(Debug, Clone)]
pub struct RestoreSummary {
    /// What the reader verified (of the archive named; for a chain, its
    /// last archive).
    pub read: ReadSummary,
    /// For an incremental: every archive of its chain, the full one first.
    pub chain: Vec<String>,
    /// The data directory that now holds the archive's tree.
    pub data_dir: PathBuf,
    /// Where the previous contents were moved (with `force`).
    pub kept_old: Option<PathBuf>,
    /// Staging directories of killed runs that were removed.
    pub removed_leftovers: Vec<PathBuf>,
    /// Leftovers of killed runs that may hold data, left in place.
    pub reported_leftovers: Vec<PathBuf>,
    /// Problems that came after the data dir was replaced and so do not
    /// make the restore fail (the old tree could not be renamed, the parent
    /// could not be fsynced), one line each.
    pub warnings: Vec<String>,
}

/// Restores the archive at `archive` into `data_dir`.
pub fn restore(
    archive: &Location,
    data_dir: &Path,
    opts: &RestoreOptions,
) -> Result<RestoreSummary> {
    let t = resolve_target(data_dir, opts.force)?;
    let src = open_archive(archive, opts.progress.clone())?.with_threads(opts.threads);
    // An incremental (read at offsets) brings its chain, each base found
    // and checked to be the archive recorded before a byte is restored.
    let chain = chain_to_restore(&src, archive, &t.parent, &opts.bases)?;
    let (removed_leftovers, reported_leftovers) =
        clean_leftovers(&t.parent, &t.parent_dir, &t.name)?;
    let staged = match &chain {
        None => stage(&t, |_, _, sink| {
            let name = src.name().display().to_string();
            let read = src.read_into(Depth::Full, sink)?;
            if read.info.base.is_some() {
                return Err(Error::Refused(format!(
                    "{name} is an incremental archive: restore it from a file or an object, where its bases can be found"
                )));
            }
            // Verified: now give directories their modes and times,
            // deepest first.
            // Files' nanoseconds first: the directories' modes, set last,
            // may take away the search bit their names are found by.
            sink.apply_nsec()?;
            sink.finish_dirs()?;
            Ok(read)
        })?,
        Some(links) => {
            drop(src);
            stage(&t, |root, shown, sink| {
                restore_chain(
                    links,
                    root,
                    shown,
                    sink,
                    opts.progress.clone(),
                    opts.threads,
                )
            })?
        }
    };
    let (kept_old, warnings) = publish(staged.pending, &staged.root, &staged.name, &t)?;
    drop(staged.root); // the lock goes last
    Ok(RestoreSummary {
        read: staged.read,
        chain: chain.iter().flatten().map(|l| l.loc.to_string()).collect(),
        data_dir: t.path,
        kept_old,
        removed_leftovers,
        reported_leftovers,
        warnings,
    })
}
