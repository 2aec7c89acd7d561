//! The verified-digest cache: archives whose whole SHA-256 this user has
//! read and checked, by what tells a file that changed (device, inode,
//! size, modification and change times to the nanosecond). A base of a
//! chain is trusted only once its whole SHA-256 matches what the link
//! above recorded; the cache makes that check free for a file that has
//! not changed since it was last hashed (the nightly `create --base` on
//! a long chain would otherwise re-read the full archive every night).
//!
//! Why this key is enough: any write to a file, a `chmod`, a rename over
//! it or a `touch` sets its change time to now, which no user can set
//! back; a file put in its place has another inode or change time. The
//! cache itself is the user's own (`$SYDRA_ARCHIVE_CACHE_DIR`, else
//! `$XDG_CACHE_HOME/sydra-archive`, else `~/.cache/sydra-archive`), used
//! only when it is a regular file owned by this user and writable by no
//! one else; a cache that cannot be used is no cache (every base is
//! hashed). `SYDRA_ARCHIVE_CACHE_DIR=off` turns it off.

use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::PathBuf;

use crate::format::sums::{hex, parse_hex32};

/// What tells an archive that changed, as one word: for a file
/// `f:<device>:<inode>:<size>:<mtime>.<ns>:<ctime>.<ns>`; for an object
/// `o:` and the SHA-256 of its URL, ETag and size (an object's ETag
/// changes with its content).
pub type Key = String;

/// Most entries kept; older ones are dropped when the file is rewritten.
const MAX_ENTRIES: usize = 4096;
const FILE_NAME: &str = "verified-v1";

/// The key of the open file `f`.
pub fn key_of(f: &File) -> Option<Key> {
    let m = f.metadata().ok()?;
    m.is_file().then(|| {
        format!(
            "f:{}:{}:{}:{}.{}:{}.{}",
            m.dev(),
            m.ino(),
            m.size(),
            m.mtime(),
            m.mtime_nsec(),
            m.ctime(),
            m.ctime_nsec()
        )
    })
}

/// The key of the object at `url` with this ETag and size.
pub fn object_key(url: &str, e_tag: &str, size: u64) -> Key {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for part in [
        url.as_bytes(),
        e_tag.as_bytes(),
        size.to_string().as_bytes(),
    ] {
        h.update((part.len() as u64).to_le_bytes());
        h.update(part);
    }
    format!("o:{}", hex(&h.finalize()))
}

fn dir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("SYDRA_ARCHIVE_CACHE_DIR") {
        if d == "off" || d.is_empty() {
            return None;
        }
        return Some(PathBuf::from(d));
    }
    if let Some(d) = std::env::var_os("XDG_CACHE_HOME").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(d).join("sydra-archive"));
    }
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(|h| PathBuf::from(h).join(".cache").join("sydra-archive"))
}

/// A file of this user's cache directory named `name` (the directory
/// made if absent), where a command keeps a little state between runs;
/// `None` when the cache is off or the directory is not this user's own
/// (mode 0700 or stricter).
pub fn state_file(name: &str) -> Option<PathBuf> {
    let dir = dir()?;
    let _ = fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir);
    let m = fs::symlink_metadata(&dir).ok()?;
    (m.is_dir() && m.uid() == crate::sys::euid() && m.mode() & 0o077 == 0).then(|| dir.join(name))
}

/// Opens the cache file (made when `create`), if it is this user's own.
fn open(create: bool) -> Option<File> {
    let dir = dir()?;
    if create {
        let _ = fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir);
    }
    // The directory too must be this user's alone: in one others can
    // write to, the file could be swapped under its name.
    let d = fs::symlink_metadata(&dir).ok()?;
    if !d.is_dir() || d.uid() != crate::sys::euid() || d.mode() & 0o022 != 0 {
        return None;
    }
    let f = OpenOptions::new()
        .read(true)
        .append(true)
        .create(create)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(dir.join(FILE_NAME))
        .ok()?;
    let m = f.metadata().ok()?;
    let own = m.is_file() && m.uid() == crate::sys::euid() && m.mode() & 0o022 == 0;
    own.then_some(f)
}

fn parse(line: &str) -> Option<(Key, [u8; 32])> {
    let (key, sha) = line.split_once(' ')?;
    let ok = (key.starts_with("f:") || key.starts_with("o:"))
        && key.len() <= 256
        && !key.contains(char::is_whitespace);
    let sha = parse_hex32(sha)?;
    ok.then(|| (key.to_string(), sha))
}

/// The cache as read once by this process (later additions of this
/// process are added to it as they are made).
static LOADED: std::sync::OnceLock<std::sync::Mutex<std::collections::HashMap<Key, [u8; 32]>>> =
    std::sync::OnceLock::new();

fn loaded() -> &'static std::sync::Mutex<std::collections::HashMap<Key, [u8; 32]>> {
    LOADED.get_or_init(|| {
        let mut map = std::collections::HashMap::new();
        if let Some(f) = open(false) {
            for line in BufReader::new(f).lines() {
                let Ok(line) = line else { break };
                if let Some((k, sha)) = parse(&line) {
                    map.insert(k, sha);
                }
            }
        }
        std::sync::Mutex::new(map)
    })
}

/// The SHA-256 recorded for a file with this key, if any.
pub fn lookup(key: &Key) -> Option<[u8; 32]> {
    loaded()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(key)
        .copied()
}

/// Records that the file with this key hashed to `sha` (best effort: a
/// cache that cannot be written is no cache).
pub fn remember(key: &Key, sha: &[u8; 32]) {
    loaded()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(key.clone(), *sha);
    let Some(mut f) = open(true) else { return };
    let line = format!("{key} {}\n", hex(sha));
    let _ = f.write_all(line.as_bytes());
    // Bounded: past about twice the limit, the newest entries are kept,
    // read through the descriptor checked above and written to a new
    // file that follows no link and replaces nothing but the cache.
    let big = f
        .metadata()
        .is_ok_and(|m| m.len() > 2 * MAX_ENTRIES as u64 * 128);
    if let (true, Some(d)) = (big, dir()) {
        use std::io::{Read, Seek};
        let mut all = String::new();
        if f.seek(std::io::SeekFrom::Start(0)).is_err() || f.read_to_string(&mut all).is_err() {
            return;
        }
        let lines: Vec<&str> = all.lines().collect();
        let keep = lines[lines.len().saturating_sub(MAX_ENTRIES)..].join("\n") + "\n";
        let tmp = d.join(format!("{FILE_NAME}.{}", std::process::id()));
        let made = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&tmp)
            .and_then(|mut t| t.write_all(keep.as_bytes()));
        if made.is_ok() {
            let _ = fs::rename(&tmp, d.join(FILE_NAME));
        } else {
            let _ = fs::remove_file(&tmp);
        }
    }
}

/// The SHA-256 and length of everything `r` gives (`shown` names it in
/// errors; errors of ours that travel inside an I/O error come back out).
pub fn sha256_of(
    r: &mut dyn std::io::Read,
    shown: &std::path::Path,
) -> crate::error::Result<([u8; 32], u64)> {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    let mut n = 0u64;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        match r.read(&mut buf) {
            Ok(0) => return Ok((h.finalize().into(), n)),
            Ok(got) => {
                h.update(&buf[..got]);
                n += got as u64;
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                return Err(crate::error::Error::from_carrier(e)
                    .unwrap_or_else(|e| crate::error::Error::io("read", shown, e)));
            }
        }
    }
}

/// The SHA-256 of the whole file `f` (`shown` names it in errors): from
/// the cache when the file is unchanged since it was hashed, else read
/// whole through `f` and remembered (if it did not change meanwhile).
pub fn digest(f: &File, shown: &std::path::Path) -> crate::error::Result<[u8; 32]> {
    use sha2::{Digest, Sha256};
    use std::os::unix::fs::FileExt;
    let key = key_of(f);
    if let Some(sha) = key.as_ref().and_then(lookup) {
        return Ok(sha);
    }
    let started = std::time::SystemTime::now();
    let io = |e| crate::error::Error::io("read", shown, e);
    let len = f.metadata().map_err(io)?.len();
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut at = 0u64;
    while at < len {
        let n = buf.len().min((len - at) as usize);
        f.read_exact_at(&mut buf[..n], at).map_err(io)?;
        h.update(&buf[..n]);
        at += n as u64;
    }
    let sha: [u8; 32] = h.finalize().into();
    // Remembered only if the file did not change while it was read, and
    // its times are well before the read began: on a filesystem with
    // coarse timestamps, a write in the same tick as the read would not
    // show (git's rule for racily clean files).
    let settled = f.metadata().is_ok_and(|m| {
        let before = |secs: i64| {
            started
                .duration_since(std::time::UNIX_EPOCH)
                .is_ok_and(|now| secs + 2 < now.as_secs() as i64)
        };
        before(m.mtime()) && before(m.ctime())
    });
    if let Some(k) = key
        && settled
        && key_of(f).as_ref() == Some(&k)
    {
        remember(&k, &sha);
    }
    Ok(sha)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_round_trip_and_junk_is_ignored() {
        let sha = [7u8; 32];
        let key = "f:1:2:3:-4.5:6.7".to_string();
        let line = format!("{key} {}", hex(&sha));
        assert_eq!(parse(&line), Some((key, sha)));
        assert_eq!(parse("f:1:2:3"), None);
        assert_eq!(parse(&format!("{line} extra")), None);
        assert_eq!(parse(&format!("x:1 {}", hex(&sha))), None);
        let o = object_key("s3://b/k", "\"etag\"", 5);
        assert!(o.starts_with("o:") && o.len() == 66);
        assert_ne!(o, object_key("s3://b/k", "\"etag\"", 6));
    }
}
