//! A shelf listed: its archives, newest first, each with the base its
//! HEAD names (read at its start; an encrypted one's from its chain
//! record or, with the key, its HEAD), and the `*.tar.zst` entries that
//! are not archives; which listed archives may be the base of another.

use crate::error::Result;
use crate::format::frame::{MAX_HEAD_BODY, TAG_HEAD, check_skippable_header};
use crate::format::incremental::BaseRef;
use crate::format::v2::{Head2, MAX_HEAD2_BODY, VERSION2};
use crate::store::s3::{Listed, Listing};

use super::{Shelf, location_of};

/// The archives on `shelf`, newest first, and the `*.tar.zst` entries
/// that are not archives (with the reason).
pub fn ls(shelf: &Shelf) -> Result<Listing> {
    let mut listing = match shelf {
        Shelf::Dir(d) => d.ls()?,
        Shelf::S3(r) => crate::store::s3::ls(r)?,
    };
    // Each archive's kind and base, from its HEAD (one read at its start).
    // A HEAD that is not one is not an archive; one that cannot be read
    // (I/O, network) stops the listing: a prune must know every chain.
    let mut archives = Vec::new();
    for mut l in std::mem::take(&mut listing.archives) {
        if l.encrypted {
            // Its header's chain record, or with the key, its HEAD; or
            // unknown (prune then keeps every other archive with it).
            if l.chain_known {
                // Its moment is inside the encryption: read with the key,
                // if one was given (else its modification time stands in).
                if let Ok((_, t)) = base_of(shelf, &l) {
                    l.created_unix_ms = t;
                }
            } else {
                match base_of(shelf, &l) {
                    Ok((b, t)) => {
                        l.base = b;
                        l.chain_known = true;
                        l.created_unix_ms = t;
                    }
                    Err(crate::error::Error::Key { .. }) => {}
                    Err(e) if e.is_archive_fault() => {
                        listing.others.push((l.url.clone(), e.to_string()));
                        continue;
                    }
                    Err(e) => return Err(e),
                }
            }
            archives.push(l);
            continue;
        }
        match base_of(shelf, &l) {
            Ok((b, t)) => {
                l.base = b;
                l.created_unix_ms = t;
                archives.push(l);
            }
            Err(e) if e.is_archive_fault() => listing.others.push((l.url.clone(), e.to_string())),
            Err(e) => return Err(e),
        }
    }
    listing.archives = archives;
    // Ties of modification time broken by the HEAD times now known.
    listing.sort();
    Ok(listing)
}

/// The base HEAD names, for an incremental (`None` for a full archive),
/// and HEAD's time (version 1's HEAD is too large to be version 2's: it
/// is a full one, its time not read). An archive whose HEAD is
/// unreadable is not an archive (an error).
fn base_of(shelf: &Shelf, l: &Listed) -> Result<(Option<BaseRef>, Option<u64>)> {
    // An encrypted archive's HEAD is inside its encryption: read with the
    // identities given (without them, nothing can be pruned safely).
    if l.encrypted {
        let head = crate::chain::Link::open(&location_of(shelf, l))?.head;
        return Ok((head.base, Some(head.created_unix_ms)));
    }
    let read = |at: u64, buf: &mut [u8]| -> Result<()> {
        match shelf {
            Shelf::Dir(d) => d.read_at(&l.key, at, buf),
            Shelf::S3(r) => r.at_key(&l.key).read_at(at, buf, l.identity.as_deref()),
        }
    };
    let mut h = [0u8; 16];
    read(0, &mut h)?;
    let len = check_skippable_header(&h, &TAG_HEAD, MAX_HEAD_BODY, 0)?;
    if len > MAX_HEAD2_BODY || len + 16 > l.size {
        return Ok((None, None));
    }
    let mut body = vec![0u8; len as usize];
    read(16, &mut body)?;
    #[derive(serde::Deserialize)]
    struct Probe {
        version: u64,
    }
    match serde_json::from_slice::<Probe>(&body) {
        Ok(p) if p.version >= VERSION2 => {
            let head = Head2::parse(&body)?;
            Ok((head.base, Some(head.created_unix_ms)))
        }
        _ => Ok((None, None)),
    }
}

/// The listed archives that may be the base `b` of `l`: every one with
/// the size and TAIL digest HEAD recorded (whatever its name: renamed,
/// named through a link, or a copy), and the one of the name HEAD
/// recorded (relative names are in the same directory or prefix),
/// whatever its size. All are kept: a look-alike never stands in for the
/// base (keeping one archive too many is safe; deleting a base is not).
pub fn base_names(listing: &Listing, l: &Listed, b: &BaseRef) -> Vec<String> {
    let dir = l.key.rsplit_once('/').map_or("", |(d, _)| d);
    let recorded = b.location.as_str();
    let others = || listing.archives.iter().filter(|c| c.key != l.key);
    let mut names: Vec<String> = others()
        .filter(|c| {
            let name = c.key.rsplit('/').next().unwrap_or(&c.key);
            let cdir = c.key.rsplit_once('/').map_or("", |(d, _)| d);
            by_digest(c, b)
                || (cdir == dir && name == recorded)
                || c.url == recorded
                || c.key == recorded
        })
        .map(|c| c.key.clone())
        .collect();
    // Not known here by its digest: any archive whose digest is not known
    // (an encrypted one whose SHA-256 was not taken) may be it.
    if !others().any(|c| by_digest(c, b)) {
        for c in others().filter(|c| c.encrypted && c.sha256.is_none()) {
            if !names.contains(&c.key) {
                names.push(c.key.clone());
            }
        }
    }
    names
}

/// Whether `c` is the archive `b` names by its digests: its whole SHA-256,
/// or its size and TAIL digest.
pub fn by_digest(c: &Listed, b: &BaseRef) -> bool {
    (c.size == b.size && c.body_sha256.as_deref() == Some(b.body_sha256.as_str()))
        || c.sha256
            .as_deref()
            .is_some_and(|s| s.eq_ignore_ascii_case(&b.sha256))
}
