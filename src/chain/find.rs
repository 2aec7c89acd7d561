//! Finding a chain: where a base is (the location HEAD records, read
//! beside the incremental), the base found there or among the archives
//! given and trusted, and the chain found link by link.

use crate::error::{Error, Result};
use crate::format::incremental::{BaseRef, max_chain};
use crate::format::sums::hex;
use crate::store::location::Location;
use crate::store::s3::S3Url;

use super::link::{Link, Trust};

/// Where an incremental's base is, from the location its HEAD records:
/// a relative name is beside the incremental (in its directory or its
/// prefix).
pub fn base_location(child: &Location, recorded: &str) -> Result<Location> {
    if S3Url::is_s3(recorded) {
        let options = match child {
            Location::S3 { options, .. } => options.clone(),
            Location::Local(_) => Default::default(),
        };
        return Location::parse(std::path::Path::new(recorded), &options);
    }
    if recorded.starts_with('/') {
        return Ok(Location::Local(recorded.into()));
    }
    if recorded.contains("..") && recorded.split('/').any(|c| c == "..") {
        return Err(Error::corrupt(format!(
            "the base location {recorded:?} climbs out of the archive's directory"
        )));
    }
    Ok(match child {
        Location::Local(p) => {
            let dir = p.parent().unwrap_or(std::path::Path::new(""));
            Location::Local(dir.join(recorded))
        }
        Location::S3 { url, options } => {
            let dir = url.key.rsplit_once('/').map_or("", |(d, _)| d);
            let key = if dir.is_empty() {
                recorded.to_string()
            } else {
                format!("{dir}/{recorded}")
            };
            Location::S3 {
                url: S3Url {
                    bucket: url.bucket.clone(),
                    key,
                },
                options: options.clone(),
            }
        }
    })
}

/// Finds the base `b` of the incremental `child`: among `extra` first
/// (any that is the archive `b` names), then where HEAD says it is
/// (a relative name beside `child`, then beside each of `later`, the
/// archives of the chain after it: a chain moved together with the
/// archive named). A missing base, or one that is another archive, is an
/// [`Error::Base`].
pub fn find_base(
    child: &Link,
    b: &BaseRef,
    extra: &[Location],
    later: &[Location],
    trust: Trust,
) -> Result<Link> {
    let mut not_it = Vec::new();
    for loc in extra {
        match Link::open(loc) {
            Ok(l) if l.is(b) => match trust.check(&l, b, &child.loc) {
                Ok(()) => return Ok(l),
                Err(e) => not_it.push(e.to_string()),
            },
            Ok(_) => not_it.push(format!("{loc} is another archive")),
            Err(e) => not_it.push(format!("{loc}: {e}")),
        }
    }
    let given = if not_it.is_empty() {
        String::new()
    } else {
        format!(" (of the --base archives, {})", not_it.join("; "))
    };
    let broken = |reason: String| Error::Base {
        archive: child.loc.to_string(),
        reason: format!("{reason}{given}"),
    };
    // A local archive's base is looked for locally only: a HEAD cannot
    // make this run contact object storage.
    if matches!(child.loc, Location::Local(_)) && S3Url::is_s3(&b.location) {
        return Err(broken(format!(
            "its base is recorded at {} (SHA-256 {}); give it with --base",
            b.location, b.sha256
        )));
    }
    let primary = base_location(&child.loc, &b.location)?;
    let mut places = vec![primary.clone()];
    let name = b
        .location
        .rsplit('/')
        .next()
        .unwrap_or(&b.location)
        .to_string();
    for l in std::iter::once(&child.loc).chain(later) {
        // Where recorded relative to each archive of the chain, then by its
        // name alone beside each (a chain moved together).
        for rec in [b.location.as_str(), name.as_str()] {
            let loc = base_location(l, rec)?;
            if !places.iter().any(|p| p.to_string() == loc.to_string()) {
                places.push(loc);
            }
        }
    }
    let mut first_error = None;
    for loc in &places {
        match Link::open(loc) {
            Ok(l) if l.is(b) => match trust.check(&l, b, &child.loc) {
                Ok(()) => return Ok(l),
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            },
            Ok(l) => {
                first_error.get_or_insert(broken(format!(
                    "its base {loc} is another archive ({} bytes, body SHA-256 {}) than the one it was made on ({} bytes, SHA-256 {}); give the right one with --base",
                    l.src.size,
                    hex(&l.tail.body_sha256),
                    b.size,
                    b.sha256
                )));
            }
            Err(e) if missing(&e) => {}
            Err(e) if e.is_archive_fault() => {
                first_error.get_or_insert(Error::corrupt(format!(
                    "{loc}, the base of {}: {e}",
                    child.loc
                )));
            }
            Err(e) => {
                first_error.get_or_insert(broken(format!("its base {loc} cannot be used: {e}")));
            }
        }
    }
    Err(first_error.unwrap_or_else(|| {
        broken(format!(
            "its base {primary} (SHA-256 {}) is missing; give it with --base",
            b.sha256
        ))
    }))
}

fn missing(e: &Error) -> bool {
    match e {
        Error::Io { source, .. } => source.kind() == std::io::ErrorKind::NotFound,
        Error::Remote { reason, .. } => {
            let r = reason.to_ascii_lowercase();
            r.contains("no such object")
                || r.contains("not found")
                || r.contains("nosuchkey")
                || r.contains("404")
        }
        _ => false,
    }
}

/// The chain of the archive at `target`: its full archive first, the
/// target last, each base found ([`find_base`]) and authenticated (its
/// whole SHA-256 is the one the next link recorded), and the depths
/// HEADs record consistent.
pub fn open_chain(target: &Location, extra: &[Location]) -> Result<Vec<Link>> {
    chain_of(Link::open(target)?, extra, Trust::Hash)
}

/// [`open_chain`] of the archive `target`, already open.
pub fn chain_of(target: Link, extra: &[Location], trust: Trust) -> Result<Vec<Link>> {
    let name = target.loc.clone();
    let mut links = vec![target];
    loop {
        let last = links.last().expect("one at least");
        let Some(b) = last.head.base.clone() else {
            break;
        };
        if links.len() > max_chain() {
            return Err(Error::corrupt(format!(
                "{name}: a chain of more than {} archives",
                max_chain()
            )));
        }
        let later: Vec<Location> = links.iter().rev().skip(1).map(|l| l.loc.clone()).collect();
        let base = find_base(last, &b, extra, &later, trust)?;
        let want = b.depth - 1;
        let got = base.head.base.as_ref().map_or(0, |bb| bb.depth);
        if got != want {
            return Err(Error::corrupt(format!(
                "{} says its base is incremental number {} of its chain, but {} is number {got}",
                last.loc, want, base.loc
            )));
        }
        links.push(base);
    }
    links.reverse();
    Ok(links)
}
