//! `ls` and `prune` where archives are kept: a local directory or an
//! `s3://` prefix. Only what [`ls`] recognizes as an archive is ever
//! deleted, and never an archive that a kept one needs (see
//! [`crate::store::retention`]).

use std::path::Path;

use crate::error::Result;
use crate::store::dir::LocalShelf;
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
    match shelf {
        Shelf::Dir(d) => d.ls(),
        Shelf::S3(r) => crate::store::s3::ls(r),
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
}

/// Applies `policy` to the archives on `shelf`; deletes the ones it does
/// not keep when `delete` is true (else a dry run). An empty policy is
/// refused before anything is listed. A deletion that fails does not stop
/// the others; it is reported in `failed`.
pub fn prune(shelf: &Shelf, policy: &Policy, delete: bool) -> Result<Pruned> {
    policy.check()?;
    let listing = ls(shelf)?;
    let candidates: Vec<Candidate> = listing
        .archives
        .iter()
        .map(|l| Candidate {
            name: l.key.clone(),
            unix_ms: l.modified_unix_ms,
            // Every archive written today is a full one.
            base: None,
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
    Ok(Pruned {
        kept,
        deleted,
        others: listing.others,
        failed,
        dry_run: !delete,
    })
}
