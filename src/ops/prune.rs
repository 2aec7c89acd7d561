//! `prune` where archives are kept: a local directory or an `s3://`
//! prefix (`ls` is [`crate::shelf::ls`]). Only what `ls` recognizes as an
//! archive is ever deleted, and never an archive that a kept one needs
//! (see [`crate::store::retention`]).

use crate::error::Result;
use crate::shelf::Shelf;
use crate::shelf::list::{base_names, by_digest, ls};
use crate::store::retention::{Candidate, Policy, Reason, decide};
use crate::store::s3::Listed;

/// An archive [`prune`] keeps, and why.
#[derive(Debug, Clone)]
pub struct Kept {
    /// The archive.
    pub archive: Listed,
    /// Every rule that keeps it.
    pub reasons: Vec<Reason>,
}

/// What [`prune`] kept and deleted (or would delete, on a dry run).
#[derive(Debug, Clone, Default)]
pub struct Pruned {
    /// Archives kept, newest first.
    pub kept: Vec<Kept>,
    /// Archives deleted, or to be deleted on a dry run, in the order they
    /// go: an archive before its base (deepest first), then newest first.
    pub deleted: Vec<Listed>,
    /// `*.tar.zst` entries that are not archives: never touched.
    pub others: Vec<(String, String)>,
    /// Archives that were to be deleted but could not be (or changed since
    /// they were listed), with the reason: left in place.
    pub failed: Vec<(Listed, String)>,
    /// True unless deletion was asked for.
    pub dry_run: bool,
    /// Kept incrementals whose base is not among the archives listed (it
    /// is elsewhere, or gone): the URL and the base its HEAD records.
    pub missing_bases: Vec<(String, String)>,
    /// Temporary files of killed runs: removed (or, on a dry run, that
    /// would be).
    pub stale: Vec<String>,
}

/// Applies `policy` to the archives on `shelf`; deletes the ones it does
/// not keep when `delete` is true (else a dry run). An empty policy is
/// refused before anything is listed. A deletion that fails does not stop
/// the others; it is reported in `failed`.
pub fn prune(shelf: &Shelf, policy: &Policy, delete: bool) -> Result<Pruned> {
    policy.check()?;
    // Deleting waits for the creates that read a base here (see
    // `store::lock`); a dry run deletes nothing and takes no lock.
    let _lock = match (shelf, delete) {
        (Shelf::Dir(d), true) => crate::store::lock::lock_shelf(d.path(), true)?,
        (Shelf::S3(r), true) => crate::store::lock::lock_prefix(r)?,
        (_, false) => None,
    };
    let mut listing = ls(shelf)?;
    // An encrypted base is told by its whole SHA-256 (its size and TAIL
    // are inside the encryption): hashed here where an incremental's base
    // is not found by its digest (a name alone may be a newer archive's;
    // object storage records the SHA-256 at upload, and an object without
    // it is kept as a possible base).
    let unmatched = listing.archives.iter().any(|l| {
        l.base.as_ref().is_some_and(|b| {
            !listing
                .archives
                .iter()
                .any(|c| c.key != l.key && by_digest(c, b))
        })
    });
    if let (true, Shelf::Dir(d)) = (unmatched, shelf) {
        for l in listing.archives.iter_mut() {
            if l.encrypted && l.sha256.is_none() {
                l.sha256 = Some(crate::format::sums::hex(&d.digest(l)?));
            }
        }
    }
    let candidates: Vec<Candidate> = listing
        .archives
        .iter()
        .map(|l| Candidate {
            name: l.key.clone(),
            unix_ms: l.modified_unix_ms,
            base: l
                .base
                .as_ref()
                .map_or_else(Vec::new, |b| base_names(&listing, l, b)),
            base_unknown: !l.chain_known,
        })
        .collect();
    let d = decide(policy, &candidates)?;
    let by_key = |name: &str| {
        listing
            .archives
            .iter()
            .find(|l| l.key == name)
            .cloned()
            .expect("decided from the listing")
    };
    let kept: Vec<Kept> = d
        .keep
        .into_iter()
        .map(|(c, reasons)| Kept {
            archive: by_key(&c.name),
            reasons,
        })
        .collect();
    let mut deleted: Vec<Listed> = d.forget.iter().map(|c| by_key(&c.name)).collect();
    crate::shelf::points::dependents_first(&mut deleted);
    let mut failed = Vec::new();
    let stale = match (shelf, delete) {
        (Shelf::Dir(d), true) => d.remove_stale()?,
        _ => listing.stale.clone(),
    };
    if delete {
        let d = shelf.delete_all(&listing, deleted);
        deleted = d.done;
        failed = d.failed;
    }
    let missing_bases = kept
        .iter()
        .filter_map(|k| {
            let b = k.archive.base.as_ref()?;
            base_names(&listing, &k.archive, b)
                .is_empty()
                .then(|| (k.archive.url.clone(), b.location.clone()))
        })
        .collect();
    Ok(Pruned {
        kept,
        deleted,
        others: listing.others,
        failed,
        dry_run: !delete,
        missing_bases,
        stale,
    })
}
