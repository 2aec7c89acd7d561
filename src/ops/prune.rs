//! `ls` and `prune` where archives are kept: a local directory or an
//! `s3://` prefix. Only what [`ls`] recognizes as an archive is ever
//! deleted, and never an archive that a kept one needs (see
//! [`crate::store::retention`]).

use std::path::Path;

use crate::error::Result;
use crate::format::frame::{MAX_HEAD_BODY, TAG_HEAD, check_skippable_header};
use crate::format::incremental::BaseRef;
use crate::format::v2::{Head2, MAX_HEAD2_BODY, VERSION2};
use crate::store::dir::LocalShelf;
use crate::store::location::Location;
use crate::store::retention::{Candidate, Policy, Reason, decide};
use crate::store::s3::{Listed, Listing, Remote, S3Options, S3Url, SCHEME};

/// Where archives are kept.
pub enum Shelf {
    /// The archives directly in a local directory (held open).
    Dir(LocalShelf),
    /// The archives directly under an `s3://bucket/prefix/`.
    S3(Box<Remote>),
}

impl Shelf {
    /// `s3://…` is a prefix, anything else a directory.
    pub fn parse(arg: &str, opts: &S3Options) -> Result<Shelf> {
        if arg.starts_with(SCHEME) {
            let url = S3Url::parse(arg)?;
            return Ok(Shelf::S3(Box::new(Remote::connect(&url, opts)?)));
        }
        Ok(Shelf::Dir(LocalShelf::open(Path::new(arg))?))
    }

    /// The shelf as the user named it.
    pub fn shown(&self) -> String {
        match self {
            Shelf::Dir(d) => d.path().display().to_string(),
            Shelf::S3(r) => r.url().to_string(),
        }
    }
}

impl Shelf {
    /// Deletes the archive `l` that [`ls`] listed on this shelf, if it is
    /// still that archive (a file's device, inode, size and time; an
    /// object's ETag); refused otherwise.
    pub fn delete(&self, l: &Listed) -> Result<()> {
        match self {
            Shelf::Dir(dir) => dir.delete(l),
            Shelf::S3(r) => crate::store::s3::delete(r, l),
        }
    }
}

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
            if !l.chain_known {
                match base_of(shelf, &l) {
                    Ok(b) => {
                        l.base = b;
                        l.chain_known = true;
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
            Ok(b) => {
                l.base = b;
                archives.push(l);
            }
            Err(e) if e.is_archive_fault() => listing.others.push((l.url.clone(), e.to_string())),
            Err(e) => return Err(e),
        }
    }
    listing.archives = archives;
    Ok(listing)
}

/// The base HEAD names, for an incremental; `None` for a full archive
/// (version 1's HEAD is too large to be version 2's: it is a full one).
/// An archive whose HEAD is unreadable is not an archive (an error).
fn base_of(shelf: &Shelf, l: &Listed) -> Result<Option<BaseRef>> {
    // An encrypted archive's HEAD is inside its encryption: read with the
    // identities given (without them, nothing can be pruned safely).
    if l.encrypted {
        return Ok(crate::chain::Link::open(&location_of(shelf, l))?.head.base);
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
        return Ok(None);
    }
    let mut body = vec![0u8; len as usize];
    read(16, &mut body)?;
    #[derive(serde::Deserialize)]
    struct Probe {
        version: u64,
    }
    match serde_json::from_slice::<Probe>(&body) {
        Ok(p) if p.version >= VERSION2 => Ok(Head2::parse(&body)?.base),
        _ => Ok(None),
    }
}

/// Where the archive `l` that [`ls`] listed on `shelf` is.
pub(crate) fn location_of(shelf: &Shelf, l: &Listed) -> Location {
    match shelf {
        Shelf::Dir(d) => Location::Local(d.path().join(&l.key)),
        Shelf::S3(r) => Location::S3 {
            url: r.url().with_key_pub(&l.key),
            options: r.options().clone(),
        },
    }
}

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
    /// Archives deleted, or to be deleted on a dry run, newest first.
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
        _ => None,
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
    let mut failed = Vec::new();
    let stale = match (shelf, delete) {
        (Shelf::Dir(d), true) => d.remove_stale()?,
        _ => listing.stale.clone(),
    };
    if delete {
        let mut done = Vec::new();
        for l in deleted {
            match shelf.delete(&l) {
                Ok(()) => done.push(l),
                Err(e) => failed.push((l, e.to_string())),
            }
        }
        deleted = done;
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

/// The listed archives that may be the base `b` of `l`: every one with
/// the size and TAIL digest HEAD recorded (whatever its name: renamed,
/// named through a link, or a copy), and the one of the name HEAD
/// recorded (relative names are in the same directory or prefix),
/// whatever its size. All are kept: a look-alike never stands in for the
/// base (keeping one archive too many is safe; deleting a base is not).
pub(crate) fn base_names(listing: &Listing, l: &Listed, b: &BaseRef) -> Vec<String> {
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
fn by_digest(c: &Listed, b: &BaseRef) -> bool {
    (c.size == b.size && c.body_sha256.as_deref() == Some(b.body_sha256.as_str()))
        || c.sha256
            .as_deref()
            .is_some_and(|s| s.eq_ignore_ascii_case(&b.sha256))
}
