//! What an incremental's HEAD records of its base, the last archive of a
//! chain: its whole SHA-256 (checked on the way against what its TAIL
//! says of everything before it), size and TAIL digest, its location
//! relative to where the incremental goes, and its depth.

use std::io::Read;

use crate::error::{Error, Result, from_io};
use crate::format::incremental::{BaseRef, max_chain};
use crate::format::sums::hex;
use crate::read::source::open_archive;
use crate::store::location::Location;

use super::link::Link;

/// What the HEAD of an incremental made on the chain `links` (its base
/// last) and going to `out` records of its base; a chain already as long
/// as a reader follows is refused ([`Error::NotIncremental`]).
pub fn base_ref(links: &[Link], out: Option<&Location>) -> Result<BaseRef> {
    let last = links.last().expect("a chain is never empty");
    let depth = last.head.base.as_ref().map_or(0, |b| b.depth) + 1;
    if depth > max_chain() as u64 {
        return Err(Error::NotIncremental(format!(
            "{} ends a chain of {depth} archives, the most a reader follows",
            last.loc
        )));
    }
    Ok(BaseRef {
        sha256: whole_sha256(last)?,
        size: last.src.size,
        body_sha256: hex(&last.tail.body_sha256),
        location: recorded_location(&last.loc, out)?,
        depth,
    })
}

/// The SHA-256 of the whole archive `l`: the one object metadata recorded
/// at upload, or hashed, checking on the way that everything before its
/// TAIL is what TAIL's `body_sha256` says: a corrupted base is refused
/// (an incremental recorded on it could never be restored, even from a
/// good copy).
fn whole_sha256(l: &Link) -> Result<String> {
    use sha2::{Digest, Sha256};
    if let Some(s) = &l.recorded_sha256 {
        return Ok(s.to_ascii_lowercase());
    }
    let body_len = l.tail.body_len;
    let mut r = l.src.stream(0, l.src.size)?;
    let mut h = Sha256::new();
    let mut at = 0u64;
    let mut body = None;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let want = if at < body_len {
            buf.len().min((body_len - at) as usize)
        } else {
            buf.len()
        };
        let n = match r.read(&mut buf[..want]) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(from_io(e, "read", &l.loc.name())),
        };
        h.update(&buf[..n]);
        at += n as u64;
        if at == body_len {
            body = Some(h.clone().finalize());
        }
    }
    if at != l.src.size || body.as_deref() != Some(&l.tail.body_sha256[..]) {
        return Err(Error::corrupt(format!(
            "the base {} does not hash to what its TAIL records (corrupted or changed); verify it, or make a full archive",
            l.loc
        )));
    }
    if l.encrypted {
        // What is stored, and what a restore hashes, is the ciphertext:
        // hashed through the descriptor just read, never by reopening the
        // path (a swap in between would record another archive).
        let sha = match l.src.stored_sha256()? {
            Some(sha) => sha,
            None => open_archive(&l.loc, None)?.stored_sha256()?.0,
        };
        return Ok(hex(&sha));
    }
    Ok(hex(&h.finalize()))
}

/// What HEAD records of a base found at `base` by an incremental that
/// goes to `out`: relative when they share a directory or prefix. A path
/// that is not UTF-8 cannot be recorded as it is (a lossy name would
/// never be found again): [`Error::NotIncremental`].
pub fn recorded_location(base: &Location, out: Option<&Location>) -> Result<String> {
    let s = recorded_lossy(base, out);
    if let Location::Local(b) = base
        && (b.to_str().is_none() || std::fs::canonicalize(b).is_ok_and(|r| r.to_str().is_none()))
    {
        return Err(Error::NotIncremental(format!(
            "the base's path {} is not UTF-8, and HEAD records it as text; rename it",
            b.display()
        )));
    }
    Ok(s)
}

fn recorded_lossy(base: &Location, out: Option<&Location>) -> String {
    // A base named through a symlink is recorded by the file it is (the
    // link may be repointed, and `ls` lists files, not links).
    let resolved;
    let base = match base {
        Location::Local(b) => match std::fs::canonicalize(b) {
            Ok(real) => {
                resolved = Location::Local(real);
                &resolved
            }
            Err(_) => base,
        },
        other => other,
    };
    match (base, out) {
        (Location::Local(b), Some(Location::Local(o))) => {
            let bd = b.parent().unwrap_or(std::path::Path::new(""));
            let od = o.parent().unwrap_or(std::path::Path::new(""));
            let same = match (
                std::fs::canonicalize(or_dot(bd)),
                std::fs::canonicalize(or_dot(od)),
            ) {
                (Ok(x), Ok(y)) => x == y,
                _ => bd == od,
            };
            match (same, b.file_name()) {
                (true, Some(n)) => n.to_string_lossy().into_owned(),
                _ => std::fs::canonicalize(b)
                    .unwrap_or_else(|_| b.clone())
                    .display()
                    .to_string(),
            }
        }
        (Location::Local(b), _) => std::fs::canonicalize(b)
            .unwrap_or_else(|_| b.clone())
            .display()
            .to_string(),
        (Location::S3 { url: b, .. }, Some(Location::S3 { url: o, .. })) => {
            let dir = |k: &str| {
                k.rsplit_once('/')
                    .map_or(String::new(), |(d, _)| d.to_string())
            };
            if b.bucket == o.bucket && dir(&b.key) == dir(&o.key) {
                b.key.rsplit('/').next().unwrap_or(&b.key).to_string()
            } else {
                b.to_string()
            }
        }
        (Location::S3 { url, .. }, _) => url.to_string(),
    }
}

fn or_dot(p: &std::path::Path) -> &std::path::Path {
    if p.as_os_str().is_empty() {
        std::path::Path::new(".")
    } else {
        p
    }
}
