//! The newest archive of a directory or an `s3://` prefix that can be
//! restored: for `restore DIR/` (its chain opened and its tree modelled)
//! and for `ls` (decided from the listing alone); and the newest one as
//! the base of `create --incremental` (its whole chain there).

use crate::chain::{Link, Trust, chain_of, open_chain, state};
use crate::error::{Error, Result};
use crate::format::incremental::max_chain;
use crate::shelf::list::base_names;
use crate::shelf::{Shelf, location_of, ls};
use crate::store::location::Location;
use crate::store::s3::{Listed, Listing, S3Options, S3Url};

/// What [`newest_restorable`] chose: the archive, the newer ones skipped
/// (URL, why), and where the archives of its chain are.
pub type Chosen = (Location, Vec<(String, String)>, Vec<Location>);

/// The newest archive on `shelf` that can be restored, and the newer ones
/// skipped (URL, why), newest first. Archives are tried newest first; one
/// is taken when its whole chain is found (where HEAD records each base,
/// or among `bases`), each base is the archive recorded (by its size and
/// TAIL digest), and the tree the chain describes is consistent. Its data
/// is not read: the restore verifies every byte. One whose chain is
/// broken, that cannot be decrypted with the keys given, or that is not a
/// sound archive is skipped; a failure to read the shelf (I/O, network)
/// stops the choice. [`Error::NoneRestorable`] when none is left.
pub fn newest_restorable(shelf: &Shelf, bases: &[Location]) -> Result<Chosen> {
    let listing = ls(shelf)?;
    // A base is looked for among the archives of the shelf too (renamed,
    // it is found by its size and TAIL, as `ls` finds it).
    let mut extra = bases.to_vec();
    extra.extend(listing.archives.iter().map(|l| location_of(shelf, l)));
    let mut skipped = Vec::new();
    for l in &listing.archives {
        let loc = location_of(shelf, l);
        match check(&loc, l, &extra) {
            Ok(chain) => return Ok((loc, skipped, chain)),
            Err(e) if skip(&e) => skipped.push((l.url.clone(), e.to_string())),
            Err(e) => return Err(e),
        }
    }
    Err(Error::NoneRestorable {
        shelf: shelf.shown(),
        skipped,
    })
}

/// Opens the chain of `l` at `loc` and walks the tree it describes;
/// returns where its archives are.
pub(super) fn check(loc: &Location, l: &Listed, bases: &[Location]) -> Result<Vec<Location>> {
    // A version-1 archive (no TAIL) is always a full one: nothing to
    // chain; the restore checks it whole.
    if !l.encrypted && l.body_sha256.is_none() && l.base.is_none() {
        return Ok(vec![loc.clone()]);
    }
    let links = chain_of(Link::open(loc)?, bases, Trust::AsRead)?;
    for e in state(&links)? {
        e?;
    }
    Ok(links.into_iter().map(|l| l.loc).collect())
}

/// Whether `e` says this archive cannot be restored (then an older one is
/// tried), rather than that the shelf cannot be read.
pub(crate) fn skip(e: &Error) -> bool {
    match e {
        Error::Base { .. } | Error::Key { .. } | Error::Refused(_) => true,
        Error::Io { source, .. } => source.kind() == std::io::ErrorKind::NotFound,
        e => e.is_archive_fault(),
    }
}

/// For each archive of `listing` (in its order), whether its chain is
/// complete among the archives listed: a full archive is; an incremental
/// is when one of the archives that may be its base (by the rules
/// `prune` keeps bases by) is. An encrypted archive whose chain is
/// unknown (listed without its key and without a chain record) is not.
/// Nothing is read: the archives' contents and keys are not checked.
pub fn restorable(listing: &Listing) -> Vec<bool> {
    let mut memo = vec![None; listing.archives.len()];
    (0..listing.archives.len())
        .map(|i| complete(listing, i, 0, &mut memo))
        .collect()
}

fn complete(listing: &Listing, i: usize, depth: usize, memo: &mut [Option<bool>]) -> bool {
    if let Some(v) = memo[i] {
        return v;
    }
    if depth > max_chain() {
        return false;
    }
    let l = &listing.archives[i];
    let v = l.chain_known
        && match &l.base {
            None => true,
            Some(b) => base_names(listing, l, b).iter().any(|name| {
                listing
                    .archives
                    .iter()
                    .position(|c| &c.key == name)
                    .is_some_and(|j| complete(listing, j, depth + 1, memo))
            }),
        };
    memo[i] = Some(v);
    v
}

/// For `create --incremental` into the directory or prefix `shelf`: the
/// newest archive there as the base, unless there is none, or its chain
/// already holds `max_chain` archives (a full then starts a new chain),
/// or it cannot be used as a base (said in the second value: a full is
/// written instead).
pub fn choose_base(
    shelf: &str,
    options: &S3Options,
    max_chain: u64,
) -> Result<(Option<Location>, Option<String>)> {
    let s = Shelf::parse(shelf, options)?;
    let listing = ls(&s)?;
    let Some(newest) = listing.archives.first() else {
        return Ok((None, None));
    };
    let loc = match &s {
        Shelf::Dir(d) => Location::Local(d.path().join(&newest.key)),
        Shelf::S3(_) => Location::S3 {
            url: S3Url::parse(&newest.url)?,
            options: options.clone(),
        },
    };
    // The whole chain must be there: an incremental on a broken chain
    // could never be restored.
    match open_chain(&loc, &[]).map(|links| links.into_iter().next_back()) {
        Ok(Some(l)) => {
            let archives = l.head.base.as_ref().map_or(0, |b| b.depth) + 1;
            if archives >= max_chain {
                Ok((
                    None,
                    Some(format!(
                        "the newest archive {loc} ends a chain of {archives} {} (--max-chain {max_chain}): writing a full archive",
                        if archives == 1 { "archive" } else { "archives" }
                    )),
                ))
            } else {
                Ok((Some(loc), None))
            }
        }
        Ok(None) => Ok((None, None)),
        Err(e) => Ok((
            None,
            Some(format!(
                "the newest archive {loc} cannot be a base ({e}): writing a full archive"
            )),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::incremental::BaseRef;

    fn listed(key: &str, base: Option<&str>) -> Listed {
        Listed {
            url: format!("/b/{key}"),
            key: key.into(),
            size: 100,
            modified_unix_ms: 0,
            sha256: None,
            identity: None,
            base: base.map(|b| BaseRef {
                location: b.into(),
                size: 1,
                sha256: "00".into(),
                body_sha256: "00".into(),
                depth: 1,
            }),
            body_sha256: Some("ff".into()),
            encrypted: false,
            chain_known: true,
            created_unix_ms: None,
        }
    }

    #[test]
    fn an_incremental_is_restorable_when_its_chain_is_listed() {
        let mut unknown = listed("e.tar.zst.age", None);
        unknown.chain_known = false;
        let listing = Listing {
            archives: vec![
                listed("d.tar.zst", Some("gone.tar.zst")),
                listed("c.tar.zst", Some("b.tar.zst")),
                listed("b.tar.zst", Some("a.tar.zst")),
                listed("a.tar.zst", None),
                unknown,
                // A cycle is not a chain.
                listed("x.tar.zst", Some("y.tar.zst")),
                listed("y.tar.zst", Some("x.tar.zst")),
            ],
            ..Listing::default()
        };
        assert_eq!(
            restorable(&listing),
            [false, true, true, true, false, false, false]
        );
    }
}
