//! Walking a directory of the data dir in archive order without holding
//! its listing: names are sorted in memory up to a bound, and beyond it in
//! sorted runs spilled to unlinked temporary files and merged (an hour
//! directory of a busy server holds millions of segments).

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use crate::error::{Error, Result};
use crate::format::path as layout;
use crate::sydradb::source::{not_regular, open_error};
use crate::sys::{Dir, Kind, Stat};

/// Names sorted in memory before a run is spilled.
const RUN_NAMES: usize = 32 * 1024;
/// Name bytes sorted in memory before a run is spilled.
const RUN_BYTES: usize = 2 * 1024 * 1024;
/// Read buffer of each run while merging.
const RUN_BUFFER: usize = 16 * 1024;

/// The names of one directory in byte order, read back one at a time.
pub struct SortedNames {
    inner: Inner,
}

enum Inner {
    Memory(std::vec::IntoIter<Vec<u8>>),
    Merge {
        runs: Vec<BufReader<File>>,
        heap: BinaryHeap<Reverse<(Vec<u8>, usize)>>,
    },
}

fn spill(names: &mut Vec<Vec<u8>>) -> io::Result<File> {
    names.sort_unstable();
    let mut w = BufWriter::with_capacity(64 * 1024, tempfile::tempfile()?);
    for n in names.drain(..) {
        w.write_all(&(n.len() as u16).to_le_bytes())?;
        w.write_all(&n)?;
    }
    let mut f = w.into_inner().map_err(|e| e.into_error())?;
    f.seek(SeekFrom::Start(0))?;
    Ok(f)
}

fn next_in_run(r: &mut BufReader<File>) -> io::Result<Option<Vec<u8>>> {
    let mut len = [0u8; 2];
    match r.read_exact(&mut len) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let mut name = vec![0u8; u16::from_le_bytes(len) as usize];
    r.read_exact(&mut name)?;
    Ok(Some(name))
}

impl SortedNames {
    /// Lists `dir` (shown as `path` in errors).
    pub fn of(dir: &Dir, path: &Path) -> Result<SortedNames> {
        let mut names: Vec<Vec<u8>> = Vec::new();
        let mut bytes = 0usize;
        let mut runs: Vec<File> = Vec::new();
        let spill_err = |e: io::Error| {
            Error::io("sort the names of", path, e).also(format!(
                "the directory is sorted in temporary files in {} ($TMPDIR)",
                std::env::temp_dir().display()
            ))
        };
        let mut failed: Option<Error> = None;
        dir.each_name(|n| {
            names.push(n.to_vec());
            bytes += n.len();
            if names.len() >= RUN_NAMES || bytes >= RUN_BYTES {
                match spill(&mut names) {
                    Ok(f) => runs.push(f),
                    Err(e) => {
                        failed = Some(spill_err(e));
                        return Err(io::Error::other("spill failed"));
                    }
                }
                bytes = 0;
            }
            Ok(())
        })
        .map_err(|e| {
            failed
                .take()
                .unwrap_or_else(|| Error::io("read directory", path, e))
        })?;
        if runs.is_empty() {
            names.sort_unstable();
            return Ok(SortedNames {
                inner: Inner::Memory(names.into_iter()),
            });
        }
        if !names.is_empty() {
            runs.push(spill(&mut names).map_err(spill_err)?);
        }
        drop(names);
        let mut readers: Vec<BufReader<File>> = runs
            .into_iter()
            .map(|f| BufReader::with_capacity(RUN_BUFFER, f))
            .collect();
        let mut heap = BinaryHeap::with_capacity(readers.len());
        for (i, r) in readers.iter_mut().enumerate() {
            if let Some(n) = next_in_run(r).map_err(spill_err)? {
                heap.push(Reverse((n, i)));
            }
        }
        Ok(SortedNames {
            inner: Inner::Merge {
                runs: readers,
                heap,
            },
        })
    }

    /// The next name in byte order.
    pub fn next_name(&mut self) -> io::Result<Option<Vec<u8>>> {
        match &mut self.inner {
            Inner::Memory(it) => Ok(it.next()),
            Inner::Merge { runs, heap } => {
                let Some(Reverse((name, i))) = heap.pop() else {
                    return Ok(None);
                };
                if let Some(n) = next_in_run(&mut runs[i])? {
                    heap.push(Reverse((n, i)));
                }
                Ok(Some(name))
            }
        }
    }
}

/// One thing the walk found.
pub enum Found {
    /// A directory; its contents follow.
    Dir {
        /// Archive path.
        rel: String,
        /// Its metadata.
        stat: Stat,
    },
    /// A regular file (as listed: open it with [`Found::open`]).
    File {
        /// Archive path.
        rel: String,
        /// Its metadata when listed.
        stat: Stat,
        /// The directory that holds it.
        dir: Rc<Dir>,
        /// Its name there.
        name: Vec<u8>,
    },
}

struct Level {
    dir: Rc<Dir>,
    rel: String,
    path: PathBuf,
    names: SortedNames,
}

/// A depth-first walk in archive order below one directory of the
/// layout; nothing is followed, and the memory it holds is bounded by the
/// depth (a few MiB per level at most).
pub struct Walk {
    stack: Vec<Level>,
}

impl Walk {
    /// Walks below `dir` (archive path `rel`, shown as `path`).
    pub fn new(dir: Dir, rel: &str, path: &Path) -> Result<Walk> {
        let names = SortedNames::of(&dir, path)?;
        Ok(Walk {
            stack: vec![Level {
                dir: Rc::new(dir),
                rel: rel.to_string(),
                path: path.to_path_buf(),
                names,
            }],
        })
    }

    /// The next entry, or `None` when the walk is done.
    pub fn next_found(&mut self) -> Result<Option<Found>> {
        loop {
            let Some(top) = self.stack.last_mut() else {
                return Ok(None);
            };
            let name = top
                .names
                .next_name()
                .map_err(|e| Error::io("read the sorted names of", &top.path, e))?;
            let Some(name) = name else {
                self.stack.pop();
                continue;
            };
            let child = top.path.join(std::ffi::OsStr::from_bytes(&name));
            let Ok(name_str) = std::str::from_utf8(&name) else {
                return Err(Error::Source {
                    path: child,
                    reason: "name is not valid UTF-8".into(),
                });
            };
            let rel = format!("{}/{name_str}", top.rel);
            if let Err(why) = layout::check_path(&rel, false) {
                return Err(Error::Source {
                    path: child,
                    reason: why,
                });
            }
            let stat = match top.dir.stat_at(&name) {
                Ok(s) => s,
                // Gone between the listing and now (compaction, retention):
                // not part of this archive.
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(Error::io("stat", &child, e)),
            };
            match stat.kind {
                Kind::Dir => {
                    let sub = top
                        .dir
                        .open_dir(&name, false)
                        .map_err(|e| open_error("open directory", child.clone(), e))?;
                    let names = SortedNames::of(&sub, &child)?;
                    self.stack.push(Level {
                        dir: Rc::new(sub),
                        rel: rel.clone(),
                        path: child,
                        names,
                    });
                    return Ok(Some(Found::Dir { rel, stat }));
                }
                Kind::File => {
                    return Ok(Some(Found::File {
                        rel,
                        stat,
                        dir: Rc::clone(&top.dir),
                        name,
                    }));
                }
                other => return Err(not_regular(child, other)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorts_beyond_memory_through_runs() {
        let t = tempfile::tempdir().unwrap();
        let n = RUN_NAMES * 2 + 77;
        for i in 0..n {
            // Names whose byte order is not their creation order.
            std::fs::write(t.path().join(format!("{:x}.seg", i * 7919 % n)), b"").unwrap();
        }
        let dir = Dir::open(t.path()).unwrap();
        let mut s = SortedNames::of(&dir, t.path()).unwrap();
        assert!(matches!(s.inner, Inner::Merge { .. }));
        let mut got = Vec::new();
        while let Some(name) = s.next_name().unwrap() {
            got.push(name);
        }
        let mut want = dir.names().unwrap();
        want.sort();
        assert_eq!(got.len(), n);
        assert_eq!(got, want);
    }

    #[test]
    fn walks_depth_first_in_byte_order() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path().join("segments");
        for p in ["1/b", "1/a", "1-2/c", "10/d"] {
            let f = d.join(p);
            std::fs::create_dir_all(f.parent().unwrap()).unwrap();
            std::fs::write(f, b"x").unwrap();
        }
        let mut w = Walk::new(Dir::open(&d).unwrap(), "segments", &d).unwrap();
        let mut seen = Vec::new();
        while let Some(f) = w.next_found().unwrap() {
            seen.push(match f {
                Found::Dir { rel, .. } => format!("{rel}/"),
                Found::File { rel, .. } => rel,
            });
        }
        assert_eq!(
            seen,
            [
                "segments/1/",
                "segments/1/a",
                "segments/1/b",
                "segments/1-2/",
                "segments/1-2/c",
                "segments/10/",
                "segments/10/d"
            ]
        );
    }
}
