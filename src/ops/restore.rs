//! `restore`: rebuild a data directory from an archive so that nothing in
//! the target changes until the whole archive has been verified.
//!
//! The command composes `crate::restore`: the target is checked first
//! (`target`), leftovers of killed runs are cleaned up, the archive (or,
//! for an incremental, its whole chain, each base checked to be the
//! archive recorded before a byte is restored) is extracted into a private
//! staging directory beside it (`staging`, `sink`; each incremental
//! applied with `apply`), and the verified, durable tree is published by a
//! rename (`publish`).

use std::fs::File;
use std::path::{Path, PathBuf};

use crate::chain::{Link, Trust, chain_of};
use crate::error::{Error, Result};
use crate::format::head::Entry;
use crate::read::source::open_archive;
use crate::read::{Depth, Plan, ReadSummary};
use crate::restore::apply;
use crate::restore::publish::publish;
use crate::restore::sink::StagingSink;
use crate::restore::space::space_needed;
use crate::restore::staging::{STAGING_MARKER, clean_leftovers, stage};
use crate::restore::target::resolve_target;
use crate::store::location::Location;
use crate::sys;

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
    let chain = match src.random_access()? {
        Some(r) if r.has_tail() => {
            prove_meta_if_short(&r, &t.parent)?;
            let link = Link::open(archive)?;
            match link.head.base {
                Some(_) => {
                    let links = chain_of(link, &opts.bases, Trust::AsRead)?;
                    // Whatever the chain model refuses, restore refuses,
                    // before a byte is staged. Its bases are hashed as
                    // they are read; if the model refuses, they are
                    // authenticated first, so a forged base is named as
                    // such, not the incremental above it.
                    let modelled = crate::chain::state(&links)
                        .and_then(|mut s| s.try_for_each(|e| e.map(drop)));
                    if let Err(e) = modelled {
                        for w in links.windows(2) {
                            let b = w[1].head.base.as_ref().expect("an incremental");
                            w[0].authenticate(b, &w[1].loc)?;
                        }
                        return Err(e);
                    }
                    Some(links)
                }
                None => None,
            }
        }
        _ => None,
    };
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
            sink.finish_dirs()?;
            Ok(read)
        })?,
        Some(links) => {
            drop(src);
            stage(&t, |root, shown, sink| {
                restore_chain(links, root, shown, sink, opts)
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

/// The name of the private directory, inside the staging tree, that each
/// incremental of a chain is extracted into before it is applied.
const INCOMING: &str = ".sydra-incoming";

/// Restores the chain `links` (the full archive first) into the staging
/// tree `root`: the full archive through `sink`, then each incremental
/// extracted whole into a private directory, verified completely and
/// checked to be made on the archive just restored (its SHA-256), and
/// only then applied. Returns the last archive's summary.
fn restore_chain(
    links: &[Link],
    root: &File,
    shown: &Path,
    sink: &mut StagingSink,
    opts: &RestoreOptions,
) -> Result<ReadSummary> {
    let mut dirs: std::collections::BTreeMap<String, Entry> = std::collections::BTreeMap::new();
    let mut last: Option<ReadSummary> = None;
    for (i, link) in links.iter().enumerate() {
        if let Some(prev) = &last {
            // Made on the archive just read, byte for byte.
            let want = link
                .head
                .base
                .as_ref()
                .expect("an incremental")
                .sha256
                .clone();
            let got = crate::format::sums::hex(&prev.sha256);
            if !got.eq_ignore_ascii_case(&want) {
                return Err(Error::Base {
                    archive: link.loc.to_string(),
                    reason: format!(
                        "its base {} hashes to {got}, not the {want} it was made on",
                        links[i - 1].loc
                    ),
                });
            }
        }
        let src = open_archive(&link.loc, opts.progress.clone())?.with_threads(opts.threads);
        let in_base = |e: Error| -> Error {
            if i + 1 < links.len() {
                e.also(format!(
                    "in {}, a base of {}",
                    link.loc,
                    links[links.len() - 1].loc
                ))
            } else {
                e
            }
        };
        let read = if i == 0 {
            let read = src.read_into(Depth::Full, sink).map_err(in_base)?;
            let got = sink.take_dirs();
            dirs.extend(got.into_iter().map(|d| (d.path.clone(), d)));
            read
        } else {
            let incoming = sys::make_private_dir(root, INCOMING.as_bytes())
                .map_err(|e| Error::io("create directory", shown.join(INCOMING), e))?;
            let mut isink =
                StagingSink::new(&incoming, shown.join(INCOMING), sink.parent().to_path_buf())?;
            let read = src.read_into(Depth::Full, &mut isink).map_err(in_base)?;
            let carried = isink.take_dirs();
            drop(isink);
            apply::apply(
                root,
                shown,
                &incoming,
                crate::chain::Changes::new,
                &carried,
                &mut dirs,
                &link.loc.to_string(),
            )
            .map_err(in_base)?;
            sys::remove_tree_at(root, INCOMING.as_bytes(), &incoming)
                .map_err(|e| Error::io("remove", shown.join(INCOMING), e))?;
            read
        };
        if read.info.base != link.head.base {
            return Err(crate::read::input::changed_while_read(&link.loc.name()));
        }
        last = Some(read);
    }
    apply::set_dirs(root, shown, &dirs)?;
    apply::check_staged(root, shown, &[STAGING_MARKER], crate::chain::state(links)?)?;
    Ok(last.expect("a chain is never empty"))
}

/// Before a restore refuses for want of space on what META says, META
/// is proven: the archive's body must hash to what TAIL records (a
/// tampered META is the archive's fault, not the disk's).
fn prove_meta_if_short(src: &crate::read::source::RandomSource, parent: &Path) -> Result<()> {
    let Some((tail, meta, _)) =
        crate::read::read_end(src.size, &mut |at, buf| src.read_at(at, buf), &src.shown)?
    else {
        return Ok(());
    };
    let space = sys::free_space(parent).map_err(|e| Error::io("statvfs", parent, e))?;
    let plan = Plan {
        files: meta.files,
        dirs: meta.dirs,
        total_bytes: meta.total_bytes,
    };
    if space_needed(&plan, space.block) <= space.bytes {
        return Ok(());
    }
    let (sha, n_all) =
        crate::store::verified::sha256_of(&mut src.stream(0, tail.body_len)?, src.shown.as_ref())?;
    if n_all != tail.body_len || sha != tail.body_sha256 {
        return Err(Error::corrupt(format!(
            "{}: the archive does not hash to what its TAIL records (its META, which asks for {} bytes, cannot be trusted)",
            src.shown, meta.total_bytes
        )));
    }
    Ok(())
}
