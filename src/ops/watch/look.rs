//! How `watch` looks at the data dir between points: a signature of its
//! layout from metadata (no file read while nothing changed), and the
//! state file that remembers, for `--once`, what the last point saw.

use std::collections::HashMap;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// The top files larger than this are told by their metadata alone.
const READ_AT_MOST: u64 = 1 << 20;

/// The content digests of the top files, each remembered with the
/// metadata it was read under.
#[derive(Debug, Default)]
pub(super) struct Tops {
    /// The digest last read, and the metadata it holds under (`None`:
    /// to be read again).
    seen: HashMap<PathBuf, (Option<[i64; 6]>, [u8; 32])>,
}

impl Tops {
    /// What `path` holds, for the signature: its size and the digest of
    /// its bytes, read again only when its metadata changed. The server
    /// rewrites `tags.json` about every 2 s even when idle (the same
    /// bytes: not a change), and a copy taken mid-rewrite is empty (the
    /// bytes seen before it stand). `None`: told by its metadata.
    fn content(&mut self, path: &Path, m: &std::fs::Metadata) -> Option<[u8; 32]> {
        if !m.is_file() || m.size() > READ_AT_MOST {
            return None;
        }
        let key = [
            m.size() as i64,
            m.mtime(),
            m.mtime_nsec(),
            m.ctime(),
            m.ctime_nsec(),
            m.ino() as i64,
        ];
        if let Some((Some(k), d)) = self.seen.get(path)
            && *k == key
        {
            return Some(*d);
        }
        // Opened so that a link or a FIFO put in its place reads nothing.
        let f = std::fs::File::options()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(path)
            .ok()?;
        if !f.metadata().ok()?.is_file() {
            return None;
        }
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut std::io::Read::take(f, READ_AT_MOST + 1), &mut bytes)
            .ok()?;
        if bytes.len() as u64 > READ_AT_MOST {
            return None;
        }
        // tags.json is never empty but mid-rewrite (`{}` when it has no
        // tag): the bytes seen before stand.
        let torn = bytes.is_empty() && path.file_name().is_some_and(|n| n == "tags.json");
        let digest: [u8; 32] = match self.seen.get(path) {
            Some((_, before)) if torn => *before,
            _ => Sha256::digest(&bytes).into(),
        };
        // Times set by a write still under way (the kernel sets them
        // before it copies the bytes; a write finishing within the same
        // timestamp leaves them as read): not remembered, read again at
        // the next look, until they are a second old.
        let recent = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(true, |now| {
                let now = now.as_secs() as i64;
                m.mtime() >= now - 1 || m.ctime() >= now - 1
            });
        self.seen
            .insert(path.to_path_buf(), ((!recent).then_some(key), digest));
        Some(digest)
    }
}

/// What the data dir looks like, cheaply: the size and bytes of the top
/// files (read only when their metadata changed, see [`Tops`]); the name,
/// size, mode, times and inode of every entry directly in `wal/`, and of
/// `segments/` and every directory directly in it (whose times change
/// when a segment is added or removed; the server never rewrites one).
/// Between changes nothing is read but directory entries and inodes.
pub(super) fn signature(data_dir: &Path, tops: &mut Tops) -> Result<[u8; 32]> {
    let mut h = Sha256::new();
    let mut add = |path: &Path, m: Option<std::fs::Metadata>, tops: &mut Tops| {
        h.update(path.as_os_str().as_encoded_bytes());
        h.update([0]);
        let Some(m) = m else { return };
        if crate::format::path::TOP_FILES
            .iter()
            .any(|t| path.file_name().is_some_and(|n| n == *t))
            && let Some(d) = tops.content(path, &m)
        {
            h.update(b"bytes");
            h.update(d);
            h.update(m.mode().to_le_bytes());
            return;
        }
        for v in [
            m.size() as i64,
            i64::from(m.mode()),
            m.mtime(),
            m.mtime_nsec(),
            m.ctime(),
            m.ctime_nsec(),
            m.ino() as i64,
        ] {
            h.update(v.to_le_bytes());
        }
    };
    // The data dir itself must be there, but its own times are not
    // looked at: anything else at its top (a pid file, the destination
    // itself) is not part of an archive.
    let m = std::fs::metadata(data_dir).map_err(|e| Error::io("look at", data_dir, e))?;
    if !m.is_dir() {
        return Err(Error::Refused(format!(
            "{} is not a directory",
            data_dir.display()
        )));
    }
    for top in crate::format::path::TOP_FILES
        .iter()
        .chain(crate::format::path::TOP_DIRS.iter())
    {
        let p = data_dir.join(top);
        let m = std::fs::metadata(&p).ok();
        let is_dir = m.as_ref().is_some_and(std::fs::Metadata::is_dir);
        add(&p, m, tops);
        if !is_dir {
            continue;
        }
        let mut names: Vec<_> = std::fs::read_dir(&p)
            .map_err(|e| Error::io("list", &p, e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        names.sort();
        for n in names {
            let m = std::fs::symlink_metadata(&n).ok();
            // Below `wal/`, every entry; below `segments/`, the hour
            // directories (their times tell a segment added or gone).
            if *top == "wal" || m.as_ref().is_some_and(std::fs::Metadata::is_dir) {
                add(&n, m, tops);
            }
        }
    }
    Ok(h.finalize().into())
}

/// Where the last point shipped from `data_dir` to `dest` is remembered
/// (see [`crate::store::verified::state_file`]).
pub(super) fn state_file(data_dir: &Path, dest: &str) -> Option<std::path::PathBuf> {
    let dir = std::fs::canonicalize(data_dir).ok()?;
    let mut h = Sha256::new();
    h.update(dir.as_os_str().as_encoded_bytes());
    h.update([0]);
    // A directory by what it is, however it is named.
    match std::fs::canonicalize(dest) {
        Ok(d) if !dest.starts_with(crate::store::s3::SCHEME) => {
            h.update(d.as_os_str().as_encoded_bytes())
        }
        _ => h.update(dest.as_bytes()),
    }
    let id = crate::format::sums::hex(&h.finalize());
    crate::store::verified::state_file(&format!("watch-{}", &id[..32]))
}

/// The signature and the archive's name (its last component) a state
/// file holds.
pub(super) fn read_state(f: &Path) -> Option<([u8; 32], String)> {
    let text = std::fs::read_to_string(f).ok()?;
    let (sig, name) = text.trim_end_matches('\n').split_once(' ')?;
    Some((crate::format::sums::parse_hex32(sig)?, name.to_string()))
}

/// Remembers (best effort) that `archive` was shipped when the data dir
/// looked like `sig`.
pub(super) fn write_state(f: &Path, sig: &[u8; 32], archive: &str) {
    let name = archive.rsplit('/').next().unwrap_or(archive);
    let tmp = f.with_extension(format!("tmp.{}", std::process::id()));
    let line = format!("{} {name}\n", crate::format::sums::hex(sig));
    if std::fs::write(&tmp, line).is_ok() && std::fs::rename(&tmp, f).is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_files_are_told_by_their_bytes() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path();
        std::fs::create_dir_all(d.join("wal")).unwrap();
        let tags = d.join("tags.json");
        std::fs::write(&tags, b"{\"a=b\":[1]}").unwrap();
        let mut tops = Tops::default();
        let first = signature(d, &mut tops).unwrap();
        // Rewritten with the same bytes (new times, a new inode).
        std::fs::remove_file(&tags).unwrap();
        std::fs::write(&tags, b"{\"a=b\":[1]}").unwrap();
        assert_eq!(signature(d, &mut tops).unwrap(), first);
        // Caught mid-rewrite, empty: the bytes seen before stand.
        std::fs::write(&tags, b"").unwrap();
        assert_eq!(signature(d, &mut tops).unwrap(), first);
        // Other bytes of the same size.
        std::fs::write(&tags, b"{\"a=c\":[1]}").unwrap();
        assert_ne!(signature(d, &mut tops).unwrap(), first);
        // A FIFO in its place is told by its metadata, not read.
        std::fs::remove_file(&tags).unwrap();
        let c = std::ffi::CString::new(tags.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        assert_ne!(signature(d, &mut tops).unwrap(), first);
        // A new WAL file is a change.
        let before = signature(d, &mut tops).unwrap();
        std::fs::write(d.join("wal/current.wal"), b"x").unwrap();
        assert_ne!(signature(d, &mut tops).unwrap(), before);
    }
}
