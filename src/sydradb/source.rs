//! The data directory as `create` opened it: every file below it is found
//! relative to directories held open since the scan, never by a path
//! walked again from the top (see [`crate::sys`]).
//!
//! The data dir itself and the top-level `wal` and `segments` may be
//! symlinks (followed once, when the scan opens them, and reported); below
//! them nothing is followed: a symlink, FIFO, socket or device met when a
//! file is opened, even one swapped in after the scan, is refused with the
//! error the scan gives for it.

use std::cell::RefCell;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::sys::{self, Dir, Kind, Stat};

/// An opened data directory.
#[derive(Debug)]
pub struct Tree {
    path: PathBuf,
    root: Dir,
    /// Top-level directories as the scan opened them.
    tops: Vec<(String, Dir)>,
    /// The directory of the last file opened (files come in tree order).
    last: RefCell<Option<(String, Dir)>>,
}

/// The error for a failed `op` ("open", "open directory") on `path` below
/// the layout: a symlink, socket or replaced directory met on the way is
/// the scan's own refusal; anything else an I/O error.
pub fn open_error(op: &'static str, path: PathBuf, e: io::Error) -> Error {
    if sys::is_symlink_error(&e) {
        not_regular(path, Kind::Symlink)
    } else if e.raw_os_error() == Some(libc::ENXIO) {
        not_regular(path, Kind::Socket)
    } else if e.raw_os_error() == Some(libc::ENOTDIR) {
        Error::Source {
            path,
            reason: "a directory of the layout was replaced by something else".into(),
        }
    } else {
        Error::io(op, path, e)
    }
}

/// The error for something that is not a regular file inside the layout.
pub fn not_regular(path: PathBuf, kind: Kind) -> Error {
    Error::Source {
        path,
        reason: format!("{} inside the layout is not archived", kind.describe()),
    }
}

impl Tree {
    /// Opens the data directory (following a symlink to it).
    pub fn open(path: &Path) -> Result<Tree> {
        let root = Dir::open(path).map_err(|e| match e.raw_os_error() {
            Some(libc::ENOTDIR) => Error::Refused(format!("{} is not a directory", path.display())),
            _ => Error::io("open directory", path, e),
        })?;
        Ok(Tree {
            path: path.to_path_buf(),
            root,
            tops: Vec::new(),
            last: RefCell::new(None),
        })
    }

    /// The data directory as given.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The data directory itself.
    pub fn root(&self) -> &Dir {
        &self.root
    }

    /// Keeps the top-level directory `name` as opened by the scan.
    pub fn hold_top(&mut self, name: &str, dir: Dir) {
        self.tops.push((name.to_string(), dir));
    }

    /// A top-level directory held by [`Tree::hold_top`].
    pub fn top(&self, name: &str) -> Option<&Dir> {
        self.tops.iter().find(|(n, _)| n == name).map(|(_, d)| d)
    }

    /// The full path of an archive path, for messages.
    pub fn full(&self, rel: &str) -> PathBuf {
        self.path.join(rel)
    }

    /// Runs `f` on the directory holding `rel` and `rel`'s last component.
    fn in_parent<T>(&self, rel: &str, f: impl FnOnce(&Dir, &[u8]) -> io::Result<T>) -> Result<T> {
        let Some((parent, name)) = rel.rsplit_once('/') else {
            return f(&self.root, rel.as_bytes()).map_err(|e| self.fail(rel, e));
        };
        {
            let last = self.last.borrow();
            if let Some((p, d)) = last.as_ref()
                && p == parent
            {
                return f(d, name.as_bytes()).map_err(|e| self.fail(rel, e));
            }
        }
        let mut parts = parent.split('/');
        let top = parts.next().unwrap_or_default();
        let Some(base) = self.top(top) else {
            return Err(Error::Source {
                path: self.full(rel),
                reason: "not below a directory of the layout".into(),
            });
        };
        let mut dir: Option<Dir> = None;
        // `parent[..end]`: the directories opened so far, for messages.
        let mut end = top.len();
        for part in parts {
            end += 1 + part.len();
            let at = dir.as_ref().unwrap_or(base);
            dir = Some(
                at.open_dir(part.as_bytes(), false)
                    .map_err(|e| self.fail(&parent[..end], e))?,
            );
        }
        let out = f(dir.as_ref().unwrap_or(base), name.as_bytes()).map_err(|e| self.fail(rel, e));
        if let Some(d) = dir {
            *self.last.borrow_mut() = Some((parent.to_string(), d));
        }
        out
    }

    fn fail(&self, rel: &str, e: io::Error) -> Error {
        open_error("open", self.full(rel), e)
    }

    /// Opens the regular file at archive path `rel` for reading, without
    /// following links or blocking; anything else is refused.
    pub fn open_file(&self, rel: &str) -> Result<(File, Stat)> {
        self.try_open_file(rel)?.ok_or_else(|| {
            let gone = io::Error::from_raw_os_error(libc::ENOENT);
            Error::io("open", self.full(rel), gone)
        })
    }

    /// Like [`Tree::open_file`], but `Ok(None)` when the file is not there
    /// at this instant (being replaced).
    pub fn try_open_file(&self, rel: &str) -> Result<Option<(File, Stat)>> {
        match self.in_parent(rel, |d, name| match d.open_file(name) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            r => r.map(Some),
        })? {
            Some((_, st)) if st.kind != Kind::File => Err(not_regular(self.full(rel), st.kind)),
            other => Ok(other),
        }
    }

    /// `lstat` of archive path `rel`, relative to its open directory.
    pub fn stat(&self, rel: &str) -> Result<Stat> {
        self.in_parent(rel, |d, name| d.stat_at(name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn files_below_the_layout_are_never_followed() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path().join("data");
        fs::create_dir_all(d.join("segments/3600")).unwrap();
        fs::write(d.join("segments/3600/a.seg"), b"seg").unwrap();
        fs::write(t.path().join("secret"), b"root only").unwrap();
        fs::write(d.join("tags.json"), b"{}").unwrap();
        let mut tree = Tree::open(&d).unwrap();
        let seg = tree.root().open_dir(b"segments", false).unwrap();
        tree.hold_top("segments", seg);
        assert_eq!(tree.open_file("segments/3600/a.seg").unwrap().1.size, 3);
        assert_eq!(tree.open_file("tags.json").unwrap().1.size, 2);

        // A file swapped for a symlink after the scan.
        fs::remove_file(d.join("tags.json")).unwrap();
        std::os::unix::fs::symlink(t.path().join("secret"), d.join("tags.json")).unwrap();
        let e = tree.open_file("tags.json").unwrap_err();
        assert!(e.to_string().contains("a symlink inside the layout"), "{e}");

        // A directory swapped for a symlink after the scan.
        fs::rename(d.join("segments/3600"), d.join("segments/moved")).unwrap();
        fs::create_dir(t.path().join("elsewhere")).unwrap();
        fs::write(t.path().join("elsewhere/a.seg"), b"other").unwrap();
        std::os::unix::fs::symlink(t.path().join("elsewhere"), d.join("segments/3600")).unwrap();
        *tree.last.borrow_mut() = None;
        let e = tree.open_file("segments/3600/a.seg").unwrap_err();
        assert!(e.to_string().contains("symlink"), "{e}");

        // The top directory swapped: the held one is still read.
        fs::rename(d.join("segments"), d.join("segments.old")).unwrap();
        fs::create_dir(d.join("segments")).unwrap();
        assert!(tree.open_file("segments/moved/a.seg").is_ok());
    }

    #[test]
    fn a_fifo_is_refused_at_once() {
        let t = tempfile::tempdir().unwrap();
        crate::sys::mkfifo(&t.path().join("MANIFEST")).unwrap();
        let tree = Tree::open(t.path()).unwrap();
        let e = tree.open_file("MANIFEST").unwrap_err();
        assert!(
            e.to_string()
                .contains("a fifo inside the layout is not archived"),
            "{e}"
        );
    }
}
