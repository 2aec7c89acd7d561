//! `merge`: the full archive of the tree an incremental's chain
//! describes, made from the chain's archives alone (see
//! [`crate::merge`]), written to a file, stdout or an object and
//! published only once whole.

use crate::chain::{Link, MODEL_STACK, Trust, chain_of};
use crate::error::{Error, Result};
use crate::merge::{MergeCounts, write_merged, write_merged_onto};
use crate::store::crypt::Recipients;
use crate::store::location::Location;
use crate::write::{CreateOptions, CreateSummary, seal_with};

use super::output::{Output, Target, same_archive};

/// What [`merge`] wrote.
#[derive(Debug, Clone)]
pub struct MergeSummary {
    /// The archive written (a full archive).
    pub archive: CreateSummary,
    /// What was copied and what was written anew.
    pub counts: MergeCounts,
    /// The archives of the chain, the full one first.
    pub chain: Vec<String>,
}

/// Writes the full archive of the tree the chain of `archive` (an
/// incremental; its bases found as for `restore`, or among `bases`)
/// describes to `output`, encrypted to `sealed` if given. Every link is
/// authenticated before it is used; nothing is published unless the
/// whole archive was written.
///
/// With `onto` (an archive of the chain), one incremental on it instead,
/// equivalent to every archive of the chain above it.
pub fn merge(
    archive: &Location,
    onto: Option<&Location>,
    bases: &[Location],
    sealed: Option<&Recipients>,
    output: &Output,
    opts: &CreateOptions,
) -> Result<MergeSummary> {
    let out_loc = output.location();
    // A prune of where the chain is (or where the archive goes) waits
    // until the merge is done with it (see `store::lock`).
    let mut _locks = Vec::new();
    _locks.extend(crate::store::lock::lock_location(archive)?);
    if let Some(o) = &out_loc {
        _locks.extend(crate::store::lock::lock_location(o)?);
    }
    let mut extra = bases.to_vec();
    extra.extend(onto.cloned());
    let target = Target::check(output)?;
    // Every archive below the newest is authenticated by the whole
    // SHA-256 the one above recorded before a byte of it is used; the
    // full archive of a full merge (unencrypted) as its frames are copied
    // instead (`merge::Base`), so that it is read once.
    let links = chain_of(Link::open(archive)?, &extra, Trust::AsRead)?;
    let copied = onto.is_none() && !links[0].encrypted && links.len() > 1;
    for i in usize::from(copied)..links.len().saturating_sub(1) {
        let above = &links[i + 1];
        let b = above
            .head
            .base
            .as_ref()
            .expect("a link above is an incremental");
        links[i].authenticate(b, &above.loc)?;
    }
    // The newest archive is authenticated by no link above it: checked
    // whole against its own TAIL (HEAD's time and name go into the
    // merged archive).
    links.last().expect("a chain is never empty").check_body()?;
    let at = match onto {
        None => None,
        Some(o) => match links.iter().position(|l| same_archive(&l.loc, o)) {
            Some(i) if i + 1 < links.len() => Some(i),
            Some(_) => {
                return Err(Error::Refused(format!(
                    "--onto {o} is {archive} itself: there is nothing above it to merge"
                )));
            }
            None => {
                return Err(Error::Refused(format!(
                    "--onto {o} is not an archive of the chain of {archive} (its chain: {})",
                    links
                        .iter()
                        .map(|l| l.loc.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
        },
    };
    if links.len() < 2 {
        return Err(Error::Refused(format!(
            "{archive} is a full archive already: merge writes the full archive of an incremental's chain"
        )));
    }
    if let Some(o) = &out_loc
        && let Some(l) = links.iter().find(|l| same_archive(&l.loc, o))
    {
        return Err(Error::Refused(format!(
            "{o} is {} of the chain being merged: write the merged archive elsewhere",
            l.loc
        )));
    }
    // The merge of an encrypted chain holds the same data.
    if sealed.is_none()
        && let Some(l) = links[at.map_or(0, |a| a + 1)..]
            .iter()
            .find(|l| l.encrypted)
    {
        return Err(Error::Refused(format!(
            "{} of the chain is encrypted: encrypt the merged archive too (-r, -R or --passphrase-file)",
            l.loc
        )));
    }
    let base = match at {
        Some(a) => Some(crate::chain::base_ref(&links[..=a], out_loc.as_ref())?),
        None => None,
    };
    // At most what the chain holds, and room for the frames re-made.
    let size: u64 = links.iter().map(|l| l.src.size).sum();
    let estimate = size + size / 8 + (1 << 20);
    let mut counts = MergeCounts::default();
    let chain = links.iter().map(|l| l.loc.to_string()).collect();
    let archive = target.write(
        estimate,
        |w, name| {
            seal_with(w, name, sealed, base.clone(), |w| {
                // The chain's model runs deep on a long chain: on a
                // thread with the stack it needs.
                let (summary, c) = std::thread::scope(|s| {
                    std::thread::Builder::new()
                        .name("merge".into())
                        .stack_size(MODEL_STACK)
                        .spawn_scoped(s, || match (at, &base) {
                            (Some(a), Some(b)) => {
                                write_merged_onto(&links, a, b.clone(), w, name, opts)
                                    .map(|(_, s, c)| (s, c))
                            }
                            _ => write_merged(&links, w, name, opts).map(|(_, s, c)| (s, c)),
                        })
                        .map_err(|e| Error::io("start", "the merge", e))?
                        .join()
                        .unwrap_or_else(|p| std::panic::resume_unwind(p))
                })?;
                counts = c;
                Ok(summary)
            })
            .map(|(_, s)| s)
        },
        || Ok(()),
    )?;
    Ok(MergeSummary {
        archive,
        counts,
        chain,
    })
}

/// When the archive at `loc` was written (its HEAD's time): a merge of
/// its chain is of that moment, and named by it in a directory.
pub fn created_unix_ms(loc: &Location) -> Result<u64> {
    Ok(crate::chain::Link::open(loc)?.head.created_unix_ms)
}
