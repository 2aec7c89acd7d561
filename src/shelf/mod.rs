//! A shelf: where archives are kept, a local directory or an `s3://`
//! prefix. `list` lists it, each archive with the base its HEAD (or its
//! chain record) names, and says which listed archives may be whose
//! base; `latest` chooses the newest archive that can be restored, or
//! be the base of the next incremental.

use std::path::Path;

use crate::error::Result;
use crate::store::dir::LocalShelf;
use crate::store::location::Location;
use crate::store::s3::{Listed, Listing, Remote, S3Options, S3Url, SCHEME};

pub mod latest;
pub mod list;
pub mod points;

pub use list::ls;

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

/// Where the archive `l` that [`ls`] listed on `shelf` is.
pub fn location_of(shelf: &Shelf, l: &Listed) -> Location {
    match shelf {
        Shelf::Dir(d) => Location::Local(d.path().join(&l.key)),
        Shelf::S3(r) => Location::S3 {
            url: r.url().with_key_pub(&l.key),
            options: r.options().clone(),
        },
    }
}

/// What [`Shelf::delete_all`] did.
#[derive(Debug, Default)]
pub struct Deleted {
    /// Deleted, in the order they went.
    pub done: Vec<Listed>,
    /// Not deleted, with why.
    pub failed: Vec<(Listed, String)>,
}

impl Shelf {
    /// Deletes `gone` (archives of `listing`) from this shelf, each
    /// before any base of it: killed at any step, every archive left has
    /// its whole chain. An archive whose deletion failed keeps every
    /// archive it may need (they are left, and said as failed).
    pub fn delete_all(&self, listing: &Listing, mut gone: Vec<Listed>) -> Deleted {
        points::dependents_first(&mut gone);
        let mut out = Deleted::default();
        let mut needed = std::collections::HashSet::new();
        for l in gone {
            let kept_by = needed.contains(&l.key);
            let r = if kept_by {
                Err("an archive made on it could not be deleted: kept".to_string())
            } else {
                self.delete(&l).map_err(|e| e.to_string())
            };
            match r {
                Ok(()) => out.done.push(l),
                Err(why) => {
                    if let Some(b) = &l.base {
                        needed.extend(list::base_names(listing, &l, b));
                    }
                    out.failed.push((l, why));
                }
            }
        }
        out
    }
}
