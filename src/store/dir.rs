//! Archives in a local directory: the `*.tar.zst` files directly in it
//! whose last bytes are a TAIL (or a version-1 FOOT) matching their size,
//! for `ls` and `prune`. Names are read from the directory once opened,
//! each file is opened relative to it without following links, and a
//! deletion unlinks that name in that directory.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

use crate::error::{Error, Result};
use crate::format::v2::TAIL_LEN;
use crate::store::s3::{ARCHIVE_SUFFIX, Listed, Listing};
use crate::sys;

/// Lists the archives directly in `dir`, newest first (by modification
/// time, then name). Other `*.tar.zst` entries (not a regular file, or not
/// an archive) are reported with the reason and never touched.
pub fn ls_dir(dir: &Path) -> Result<Listing> {
    let d = sys::Dir::open(dir).map_err(|e| Error::io("open", dir, e))?;
    let mut listing = Listing::default();
    let mut names = Vec::new();
    d.each_name(|n| {
        if n.ends_with(ARCHIVE_SUFFIX.as_bytes()) && !n.starts_with(b".") {
            names.push(n.to_vec());
        }
        Ok(())
    })
    .map_err(|e| Error::io("read", dir, e))?;
    for n in names {
        let name = String::from_utf8_lossy(&n).into_owned();
        let path = dir.join(&name);
        match probe_file(&d, &n, &path) {
            Ok((size, modified_unix_ms)) => listing.archives.push(Listed {
                url: path.display().to_string(),
                key: name,
                size,
                modified_unix_ms,
                sha256: None,
            }),
            Err(e) if e.is_archive_fault() => listing
                .others
                .push((path.display().to_string(), e.to_string())),
            Err(e) => return Err(e),
        }
    }
    listing.archives.sort_by(|a, b| {
        b.modified_unix_ms
            .cmp(&a.modified_unix_ms)
            .then(b.key.cmp(&a.key))
    });
    listing.others.sort();
    Ok(listing)
}

/// The size and modification time of the archive `name` in `d`, after
/// checking its end.
fn probe_file(d: &sys::Dir, name: &[u8], path: &Path) -> Result<(u64, i64)> {
    let (f, st): (File, sys::Stat) = match d.open_file(name) {
        Ok(x) => x,
        Err(e) if sys::is_symlink_error(&e) => {
            return Err(Error::corrupt(format!(
                "{} is a symbolic link, not an archive",
                path.display()
            )));
        }
        Err(e) => return Err(Error::io("open", path, e)),
    };
    if st.kind != sys::Kind::File {
        return Err(Error::corrupt(format!(
            "{} is a {}, not an archive",
            path.display(),
            st.kind.describe()
        )));
    }
    let size = st.size;
    let n = size.min(TAIL_LEN as u64) as usize;
    let mut last = vec![0u8; n];
    f.read_exact_at(&mut last, size - n as u64)
        .map_err(|e| Error::io("read", path, e))?;
    crate::format::v2::check_end(&last, size, &path.display().to_string())?;
    Ok((size, st.mtime * 1000 + st.mtime_nsec / 1_000_000))
}

/// Deletes the archive `name` (a name listed by [`ls_dir`]) from `dir`.
pub fn delete_in_dir(dir: &Path, name: &str) -> Result<()> {
    if name.contains('/') || name.is_empty() || name.starts_with('.') {
        return Err(Error::Refused(format!("{name:?} is not an archive name")));
    }
    let d = sys::open_dir_path(dir).map_err(|e| Error::io("open", dir, e))?;
    match sys::unlink_in(&d, name.as_bytes(), 0) {
        // Already gone (another prune): what was asked for holds.
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        r => r.map_err(|e| Error::io("delete", dir.join(name), e))?,
    }
    d.sync_all()
        .map_err(|e| Error::io("fsync directory", dir, e))
}
