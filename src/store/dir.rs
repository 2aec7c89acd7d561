//! Archives in a local directory: the `*.tar.zst` files directly in it
//! whose last bytes are a TAIL (or a version-1 FOOT) matching their size,
//! for `ls` and `prune`. The directory is opened once and held: every
//! file is looked at and deleted through that descriptor, never by a path
//! someone could swap. A name that is not UTF-8, a symlink or anything
//! but a regular file is reported and never touched; a file is deleted
//! only if it is still the one that was listed.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::format::v2::TAIL_LEN;
use crate::store::s3::{Listed, Listing};
use crate::sys;

/// A local directory of archives, held open.
pub struct LocalShelf {
    path: PathBuf,
    dir: File,
}

impl LocalShelf {
    /// Opens the directory `path` (a symlink to a directory is followed:
    /// the user named it).
    pub fn open(path: &Path) -> Result<LocalShelf> {
        let dir = sys::open_dir_path(path).map_err(|e| Error::io("open", path, e))?;
        Ok(LocalShelf {
            path: path.to_path_buf(),
            dir,
        })
    }

    /// The directory as named.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads `buf.len()` bytes at `at` of the file `name` in the
    /// directory (opened without following a link).
    pub fn read_at(&self, name: &str, at: u64, buf: &mut [u8]) -> Result<()> {
        use std::os::unix::fs::FileExt;
        let f = sys::open_at(
            &self.dir,
            name.as_bytes(),
            libc::O_RDONLY | libc::O_NONBLOCK,
            0,
        )
        .map_err(|e| Error::io("open", self.path.join(name), e))?;
        f.read_exact_at(buf, at)
            .map_err(|e| Error::io("read", self.path.join(name), e))
    }

    /// The archives directly in the directory, newest first (by
    /// modification time, then name), and the other `*.tar.zst` entries
    /// with the reason they are left alone.
    pub fn ls(&self) -> Result<Listing> {
        let d = sys::Dir::from_file(&self.dir).map_err(|e| Error::io("open", &self.path, e))?;
        let mut names = Vec::new();
        d.each_name(|n| {
            if crate::store::s3::archive_name(&String::from_utf8_lossy(n)) && !n.starts_with(b".") {
                names.push(n.to_vec());
            }
            Ok(())
        })
        .map_err(|e| Error::io("read", &self.path, e))?;
        let mut listing = Listing::default();
        for n in names {
            let shown = self
                .path
                .join(String::from_utf8_lossy(&n).as_ref())
                .display()
                .to_string();
            let Ok(name) = String::from_utf8(n.clone()) else {
                listing
                    .others
                    .push((shown, "the name is not UTF-8; left alone".into()));
                continue;
            };
            match probe(&d, &n, &shown) {
                Ok(Probed::Archive(size, modified_unix_ms, identity, body_sha256, enc)) => {
                    listing.archives.push(Listed {
                        url: shown,
                        key: name,
                        size,
                        modified_unix_ms,
                        sha256: None,
                        identity: Some(identity),
                        base: enc
                            .as_ref()
                            .and_then(|r| r.as_ref().and_then(|r| r.base.clone())),
                        body_sha256,
                        encrypted: enc.is_some(),
                        chain_known: enc.as_ref().is_none_or(Option::is_some),
                        created_unix_ms: None,
                    })
                }
                Ok(Probed::Other(why)) => listing.others.push((shown, why)),
                Err(e) => return Err(e),
            }
        }
        listing.stale = crate::store::publish::stale_temps_in(&self.path)?
            .into_iter()
            .map(|l| l.path.display().to_string())
            .collect();
        listing.sort();
        Ok(listing)
    }

    /// The whole SHA-256 of the archive `l` listed here (from the
    /// verified-digest cache when it is unchanged since it was hashed).
    pub fn digest(&self, l: &Listed) -> Result<[u8; 32]> {
        let d = sys::Dir::from_file(&self.dir).map_err(|e| Error::io("open", &self.path, e))?;
        let shown = self.path.join(&l.key);
        let (f, st) = d
            .open_file(l.key.as_bytes())
            .map_err(|e| Error::io("open", &shown, e))?;
        if st.kind != sys::Kind::File {
            return Err(Error::Refused(format!(
                "{} is not a regular file",
                shown.display()
            )));
        }
        crate::store::verified::digest(&f, &shown)
    }

    /// Removes the temporary files of killed runs here; returns their
    /// paths.
    pub fn remove_stale(&self) -> Result<Vec<String>> {
        let mut removed = Vec::new();
        for l in crate::store::publish::stale_temps_in(&self.path)? {
            if std::fs::remove_file(&l.path).is_ok() {
                removed.push(l.path.display().to_string());
            }
        }
        Ok(removed)
    }

    /// Deletes the archive `l` that [`LocalShelf::ls`] listed, if its name
    /// still names that file: the name is first moved aside (never over
    /// anything), the file it names checked, then unlinked; anything else
    /// found under the name is put back and refused.
    pub fn delete(&self, l: &Listed) -> Result<()> {
        let name = l.key.as_bytes();
        let shown = self.path.join(&l.key);
        let aside = format!(".sydra-prune.{}", crate::store::publish::unique_suffix());
        sys::removal_step();
        match sys::rename_in(&self.dir, name, aside.as_bytes(), libc::RENAME_NOREPLACE) {
            // Already gone (another prune): what was asked for holds.
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            r => r.map_err(|e| Error::io("delete", &shown, e))?,
        }
        let d = sys::Dir::from_file(&self.dir).map_err(|e| Error::io("open", &self.path, e))?;
        let same = d
            .stat_at(aside.as_bytes())
            .is_ok_and(|st| Some(identity(&st)) == l.identity);
        if !same {
            return match sys::rename_in(&self.dir, aside.as_bytes(), name, libc::RENAME_NOREPLACE) {
                Ok(()) => Err(Error::Refused(format!(
                    "{} changed since it was listed; left alone",
                    shown.display()
                ))),
                Err(e) => Err(Error::Refused(format!(
                    "{} changed since it was listed and could not be put back ({e}); it is now {}",
                    shown.display(),
                    self.path.join(&aside).display()
                ))),
            };
        }
        sys::removal_step();
        sys::unlink_in(&self.dir, aside.as_bytes(), 0)
            .map_err(|e| Error::io("delete", &shown, e))?;
        self.dir
            .sync_all()
            .map_err(|e| Error::io("fsync directory", &self.path, e))
    }
}

/// What a listed entry turned out to be.
enum Probed {
    /// An archive: size, modification time, identity, TAIL's body
    /// digest, and for an encrypted one, its chain record (if it has one).
    Archive(u64, i64, String, Option<String>, Option<Encrypted>),
    /// Not an archive, and why.
    Other(String),
}

/// An encrypted archive's chain record, if its header has one.
type Encrypted = Option<crate::store::crypt::ChainRecord>;

/// Device, inode, size and modification time: what tells that a name
/// still names the file that was listed.
fn identity(st: &sys::Stat) -> String {
    format!(
        "{}:{}:{}:{}.{}",
        st.dev, st.ino, st.size, st.mtime, st.mtime_nsec
    )
}

/// Looks at the entry `name` of `d` without following a link or opening
/// anything but a regular file.
fn probe(d: &sys::Dir, name: &[u8], shown: &str) -> Result<Probed> {
    let st = match d.stat_at(name) {
        Ok(st) => st,
        Err(e) => return Ok(Probed::Other(format!("cannot look at it: {e}"))),
    };
    if st.kind != sys::Kind::File {
        return Ok(Probed::Other(format!(
            "it is {}, not an archive",
            st.kind.describe()
        )));
    }
    let (f, st) = match d.open_file(name) {
        Ok(x) => x,
        Err(e) => return Ok(Probed::Other(format!("cannot open it: {e}"))),
    };
    if st.kind != sys::Kind::File {
        return Ok(Probed::Other(format!(
            "it is {}, not an archive",
            st.kind.describe()
        )));
    }
    // An encrypted archive is an age file (its end is ciphertext, with no
    // TAIL to check or to name it by); any other ends with a TAIL.
    // An age file is told by its start, whatever its name.
    let mut start = vec![0u8; st.size.min(crate::store::crypt::MAX_HEADER as u64) as usize];
    let age = f.read_exact_at(&mut start, 0).is_ok() && crate::store::crypt::is_encrypted(&start);
    let mut encrypted = None;
    let body = if age {
        // A header that does not parse has no record to go by.
        encrypted = Some(crate::store::crypt::chain_record(&start).ok().flatten());
        None
    } else if name.ends_with(b".age") {
        return Ok(Probed::Other("not an age file".into()));
    } else {
        let n = st.size.min(TAIL_LEN as u64) as usize;
        let mut last = vec![0u8; n];
        if let Err(e) = f.read_exact_at(&mut last, st.size - n as u64) {
            return Ok(Probed::Other(format!("cannot read it: {e}")));
        }
        if let Err(e) = crate::format::v2::check_end(&last, st.size, shown) {
            if e.is_archive_fault() {
                return Ok(Probed::Other(e.to_string()));
            }
            return Err(e);
        }
        crate::format::v2::Tail::body_sha256_of(&last).map(|d| crate::format::sums::hex(&d))
    };
    let Some(ms) = st
        .mtime
        .checked_mul(1000)
        .and_then(|ms| ms.checked_add(st.mtime_nsec / 1_000_000))
    else {
        return Ok(Probed::Other(
            "its modification time is out of range".into(),
        ));
    };
    Ok(Probed::Archive(st.size, ms, identity(&st), body, encrypted))
}
