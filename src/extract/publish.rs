//! Publishing what was staged: every file moved into place (never over
//! anything; with `--force`, an existing file swapped out so it can be put
//! back), or the one file renamed to `-o FILE` or copied to stdout; a
//! failure part way takes back what moved. Directories made get the
//! archive's modes and times last.

use std::fs::File;
use std::io::{self, Write};
use std::path::Path;
use std::sync::atomic::Ordering;

use crate::error::{Error, Result};
use crate::extract::ExtractTo;
use crate::extract::stage::Stage;
use crate::sys;

impl Stage {
    /// Moves every staged file into place, then removes the staging
    /// directory. Returns the directories created.
    pub fn publish(mut self) -> Result<u64> {
        // Signals wait while files move into place: all or none of them.
        let pending = self.pending.take().expect("registered at creation");
        let (moved, removed) = pending.commit(|| {
            let moved = match &self.to {
                ExtractTo::Dir(_) => {
                    let r = self.publish_tree(b"");
                    if r.is_err() {
                        self.unpublish();
                    }
                    r.and_then(|()| self.dir_times())
                }
                ExtractTo::File(target) => self.publish_one(target),
                ExtractTo::Stdout => self.copy_to_stdout(),
            };
            (
                moved,
                sys::remove_tree_at(&self.root, &self.name, &self.dir),
            )
        });
        let made = self.dirs_made.load(Ordering::Relaxed);
        moved?;
        removed.map_err(|e| Error::io("remove the staging directory in", &self.root_path, e))?;
        Ok(made)
    }

    fn staged_one(&self) -> Result<File> {
        sys::open_at(&self.dir, b"the-file", libc::O_RDONLY, 0).map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                Error::Refused("no file matches; -o takes exactly one".into())
            } else {
                Error::io("read", &self.root_path, e)
            }
        })
    }

    fn publish_one(&self, target: &Path) -> Result<()> {
        self.staged_one()?;
        let name = target
            .file_name()
            .ok_or_else(|| Error::Refused(format!("{} names no file", target.display())))?;
        let flags = if self.force {
            0
        } else {
            libc::RENAME_NOREPLACE
        };
        sys::rename_between(
            &self.dir,
            b"the-file",
            &self.root,
            std::os::unix::ffi::OsStrExt::as_bytes(name),
            flags,
        )
        .map_err(|e| publish_error(e, target))
    }

    fn copy_to_stdout(&self) -> Result<()> {
        let mut f = self.staged_one()?;
        let out = io::stdout();
        let mut lock = out.lock();
        io::copy(&mut f, &mut lock)
            .and_then(|_| lock.flush())
            .map_err(|e| Error::io("write", "-", e))?;
        Ok(())
    }

    /// Moves the files below staging directory `rel` into the destination.
    fn publish_tree(&self, rel: &[u8]) -> Result<()> {
        let here = if rel.is_empty() {
            sys::Dir::from_file(&self.dir)
        } else {
            sys::Dir::from_file(&self.dir).and_then(|d| d.open_dir(rel, false))
        }
        .map_err(|e| Error::io("read", &self.root_path, e))?;
        let mut failed = None;
        here.each_name(|n| {
            let child: Vec<u8> = if rel.is_empty() {
                n.to_vec()
            } else {
                [rel, b"/", n].concat()
            };
            let st = here.stat_at(n)?;
            let r = if st.kind == sys::Kind::Dir {
                sys::mkdir_at(&self.root, &child, 0o755)
                    .map(|()| {
                        self.created_dirs
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .insert(child.clone());
                    })
                    .or_else(|e| {
                        if e.kind() == io::ErrorKind::AlreadyExists {
                            Ok(())
                        } else {
                            Err(e)
                        }
                    })
                    .map_err(|e| Error::io("create directory", self.shown(&lossy(&child)), e))
                    .and_then(|()| self.publish_tree(&child))
            } else {
                self.move_file(&child)
            };
            if let Err(e) = r {
                failed = Some(e);
                return Err(io::Error::other("stop"));
            }
            Ok(())
        })
        .map_err(|e| {
            failed
                .take()
                .unwrap_or_else(|| Error::io("read", &self.root_path, e))
        })
    }

    fn move_file(&self, rel: &[u8]) -> Result<()> {
        let (parent, name) = match rel.iter().rposition(|&b| b == b'/') {
            Some(i) => (&rel[..i], &rel[i + 1..]),
            None => (&b""[..], rel),
        };
        let open = |at: &File| -> io::Result<File> {
            if parent.is_empty() {
                at.try_clone()
            } else {
                sys::open_at(at, parent, libc::O_RDONLY | libc::O_DIRECTORY, 0)
            }
        };
        let shown = self.shown(&lossy(rel));
        let from = open(&self.dir).map_err(|e| Error::io("open", &shown, e))?;
        let to = open(&self.root).map_err(|e| Error::io("open", &shown, e))?;
        // Never over anything; with --force, an existing file is swapped
        // out (into the staging tree, removed with it), so a failure later
        // can put it back.
        let mut exchanged = false;
        if let Err(e) = sys::rename_between(&from, name, &to, name, libc::RENAME_NOREPLACE) {
            let is_file = sys::Dir::from_file(&to)
                .and_then(|d| d.stat_at(name))
                .is_ok_and(|st| st.kind == sys::Kind::File);
            if !(self.force && e.kind() == io::ErrorKind::AlreadyExists && is_file) {
                return Err(publish_error(e, &shown));
            }
            sys::rename_between(&from, name, &to, name, libc::RENAME_EXCHANGE)
                .map_err(|e| publish_error(e, &shown))?;
            exchanged = true;
        }
        self.moved
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((rel.to_vec(), exchanged));
        Ok(())
    }

    /// Takes back what a failed publication moved: every file moved goes
    /// back to the staging tree (a replaced one is swapped back), every
    /// directory made is removed if empty.
    fn unpublish(&self) {
        let moved = std::mem::take(&mut *self.moved.lock().unwrap_or_else(|p| p.into_inner()));
        for (rel, exchanged) in moved.into_iter().rev() {
            let (parent, name) = match rel.iter().rposition(|&b| b == b'/') {
                Some(i) => (&rel[..i], &rel[i + 1..]),
                None => (&b""[..], &rel[..]),
            };
            let open = |at: &File| -> io::Result<File> {
                if parent.is_empty() {
                    at.try_clone()
                } else {
                    sys::open_at(at, parent, libc::O_RDONLY | libc::O_DIRECTORY, 0)
                }
            };
            if let (Ok(from), Ok(to)) = (open(&self.dir), open(&self.root)) {
                let flags = if exchanged {
                    libc::RENAME_EXCHANGE
                } else {
                    libc::RENAME_NOREPLACE
                };
                let _ = sys::rename_between(&to, name, &from, name, flags);
            }
        }
        let mut made: Vec<Vec<u8>> = self
            .created_dirs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain()
            .collect();
        made.sort_by_key(|d| std::cmp::Reverse(d.len()));
        for d in made {
            // Only if empty: rmdir refuses anything else.
            let _ = sys::unlink_in(&self.root, &d, libc::AT_REMOVEDIR);
        }
    }

    /// Sets the modes and times of the extracted directories that
    /// publishing created, deepest first (records are in tree order), once
    /// every file is in place.
    fn dir_times(&self) -> Result<()> {
        use std::os::unix::fs::PermissionsExt;
        let dirs = std::mem::take(&mut *self.dir_entries.lock().unwrap_or_else(|p| p.into_inner()));
        let created =
            std::mem::take(&mut *self.created_dirs.lock().unwrap_or_else(|p| p.into_inner()));
        for e in dirs.iter().rev() {
            if !created.contains(e.path.as_bytes()) {
                continue;
            }
            let shown = self.shown(&e.path);
            let d = sys::open_at(
                &self.root,
                e.path.as_bytes(),
                libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW,
                0,
            )
            .map_err(|err| Error::io("open", &shown, err))?;
            let mtime = e.modified();
            d.set_modified(mtime)
                .and_then(|()| d.set_permissions(std::fs::Permissions::from_mode(e.mode & 0o777)))
                .map_err(|err| Error::io("set the mode and time of", &shown, err))?;
        }
        Ok(())
    }
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn publish_error(e: io::Error, target: &Path) -> Error {
    if e.kind() == io::ErrorKind::AlreadyExists {
        Error::Refused(format!(
            "{} exists; use --force to replace it",
            target.display()
        ))
    } else {
        Error::io("move into place", target, e)
    }
}
