//! A chain restored: the chain of an incremental opened and modelled
//! before a byte is staged, then each archive of it read into the
//! staging tree in turn (the full one through the staging sink, each
//! incremental extracted whole into a private directory, verified,
//! checked to be made on the archive just restored, and applied), and the
//! staged tree compared with the model's before it is published.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use crate::chain::{Link, Trust, chain_of};
use crate::error::{Error, Result};
use crate::format::head::Entry;
use crate::progress::Progress;
use crate::read::source::{ArchiveReader, open_archive};
use crate::read::{Depth, ReadSummary};
use crate::restore::apply;
use crate::restore::sink::StagingSink;
use crate::restore::space::prove_meta_if_short;
use crate::restore::staging::STAGING_MARKER;
use crate::store::location::Location;
use crate::sys;

/// The chain of the archive at `archive` (open as `src`) to restore into
/// `parent`: for an incremental read at offsets, its whole chain, the
/// full archive first, each base found (where recorded, or among
/// `bases`) and the chain model run over it; `None` for a full archive,
/// or one read as a stream. A version-2 archive's META is proven first
/// if the space it asks for is short.
pub fn chain_to_restore(
    src: &ArchiveReader,
    archive: &Location,
    parent: &Path,
    bases: &[Location],
) -> Result<Option<Vec<Link>>> {
    Ok(match src.random_access()? {
        Some(r) if r.has_tail() => {
            prove_meta_if_short(&r, parent)?;
            let link = Link::open(archive)?;
            match link.head.base {
                Some(_) => {
                    let links = chain_of(link, bases, Trust::AsRead)?;
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
pub fn restore_chain(
    links: &[Link],
    root: &File,
    shown: &Path,
    sink: &mut StagingSink,
    progress: Option<Arc<Progress>>,
    threads: usize,
) -> Result<ReadSummary> {
    let mut dirs: BTreeMap<String, Entry> = BTreeMap::new();
    let mut appended = apply::Appended::default();
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
        let src = open_archive(&link.loc, progress.clone())?.with_threads(threads);
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
            sink.apply_nsec()?;
            let got = sink.take_dirs();
            dirs.extend(got.into_iter().map(|d| (d.path.clone(), d)));
            read
        } else {
            let incoming = sys::make_private_dir(root, INCOMING.as_bytes())
                .map_err(|e| Error::io("create directory", shown.join(INCOMING), e))?;
            let mut isink =
                StagingSink::new(&incoming, shown.join(INCOMING), sink.parent().to_path_buf())?;
            let read = src.read_into(Depth::Full, &mut isink).map_err(in_base)?;
            isink.apply_nsec()?;
            let carried = isink.take_dirs();
            drop(isink);
            apply::apply(
                root,
                shown,
                &incoming,
                &carried,
                &mut dirs,
                &mut appended,
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
    let exact_nsec = apply::keeps_nsec(root, shown)?;
    apply::check_staged(
        root,
        shown,
        &[STAGING_MARKER],
        exact_nsec,
        crate::chain::state(links)?,
    )?;
    Ok(last.expect("a chain is never empty"))
}
