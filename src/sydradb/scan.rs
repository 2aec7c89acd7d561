//! Scanning a data directory: which entries an archive of it holds, in
//! archive order, with their sizes, modes and times. Everything is looked
//! up relative to directories opened on the way down ([`crate::sydradb::source`]).

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::format::head::{Entry, EntryKind};
use crate::format::path::{self as layout, TopLevel};
use crate::sydradb::live::{self, Content, FileKind, WalPosition};
use crate::sydradb::source::{Tree, not_regular, open_error};
use crate::sydradb::walk::{Found, SortedNames, Walk};
use crate::sys::{Dir, Kind, Stat};

/// How `create` gets the content of an entry other than by opening it.
#[derive(Debug)]
pub enum Captured {
    /// Read and checked during the scan (MANIFEST, tags.json, hot segments).
    Settled(Content),
    /// A WAL file held open since the scan (rotation renames only the path).
    Held(File),
}

/// The result of scanning a data directory.
#[derive(Debug)]
pub struct Scan {
    /// The data directory, opened: files are read relative to it.
    pub tree: Tree,
    /// The entries listed by the scan, in archive order: the top level and
    /// everything below `wal/`. What is below `segments/` is not listed
    /// here (it can be millions of files): it is walked while it is
    /// archived ([`Scan::walk_segments`]), right after the `segments` entry.
    pub entries: Vec<Entry>,
    /// Top-level names that are not part of the layout and are left out.
    pub skipped: Vec<String>,
    /// Symlinks that were followed (the data dir, `wal`, `segments`).
    pub followed: Vec<String>,
    /// Content captured for some entries, by archive path.
    pub captured: HashMap<String, Captured>,
    /// What was found in each WAL file (and what was cut from it).
    pub wal: Vec<WalPosition>,
    /// Problems that did not stop the scan.
    pub warnings: Vec<String>,
    /// [`Scan::count`], once walked.
    counted: std::cell::OnceCell<(u64, u64)>,
}

impl Scan {
    /// The data directory as given.
    pub fn root(&self) -> &Path {
        self.tree.path()
    }

    /// A walk of everything below `segments/` in archive order, if the
    /// data dir has it.
    pub fn walk_segments(&self) -> Result<Option<Walk>> {
        let Some(dir) = self.tree.top("segments") else {
            return Ok(None);
        };
        let dir = dir
            .open_dir(b".", false)
            .map_err(|e| Error::io("open directory", self.tree.full("segments"), e))?;
        Walk::new(dir, "segments", &self.tree.full("segments")).map(Some)
    }

    /// Files and bytes in the listed entries and below `segments/`: a
    /// second walk, reading no file, for a progress total and an upload's
    /// part size (walked once, whoever asks first).
    pub fn count(&self) -> Result<(u64, u64)> {
        // Asked for the upload's part size and for the progress total: one
        // walk serves both.
        if let Some(&c) = self.counted.get() {
            return Ok(c);
        }
        let mut files = 0u64;
        let mut bytes = 0u64;
        for e in self.entries.iter().filter(|e| e.kind == EntryKind::File) {
            files += 1;
            bytes += e.size;
        }
        if let Some(mut w) = self.walk_segments()? {
            while let Some(f) = w.next_found()? {
                if let Found::File { stat, .. } = f {
                    files += 1;
                    bytes += stat.size;
                }
            }
        }
        Ok(*self.counted.get_or_init(|| (files, bytes)))
    }
}

/// Most skipped top-level names listed (the rest are counted).
const MAX_SKIPPED: usize = 100;

/// Scans `root`. Refuses a directory that holds none of the layout.
pub fn scan(root: &Path) -> Result<Scan> {
    let mut followed = Vec::new();
    if std::fs::symlink_metadata(root)
        .map_err(|e| Error::io("read", root, e))?
        .file_type()
        .is_symlink()
    {
        followed.push(root.display().to_string());
    }
    let mut scan = Scan {
        tree: Tree::open(root)?,
        entries: Vec::new(),
        skipped: Vec::new(),
        followed,
        captured: HashMap::new(),
        wal: Vec::new(),
        warnings: Vec::new(),
        counted: std::cell::OnceCell::new(),
    };
    let mut skipped = 0usize;
    let mut names = SortedNames::of(scan.tree.root(), root)?;
    while let Some(name) = names
        .next_name()
        .map_err(|e| Error::io("read directory", root, e))?
    {
        let name_str = match std::str::from_utf8(&name) {
            Ok(n) if layout::classify_top(&name) != TopLevel::Other => n,
            _ => {
                skipped += 1;
                if scan.skipped.len() < MAX_SKIPPED {
                    scan.skipped
                        .push(String::from_utf8_lossy(&name).into_owned());
                }
                continue;
            }
        };
        let path = root.join(name_str);
        match layout::classify_top(&name) {
            TopLevel::Other => unreachable!("skipped above"),
            TopLevel::File => {
                let st = scan
                    .tree
                    .root()
                    .stat_at(&name)
                    .map_err(|e| Error::io("stat", &path, e))?;
                if st.kind != Kind::File {
                    return Err(not_regular(path, st.kind));
                }
                push(
                    &mut scan.entries,
                    name_str.to_string(),
                    EntryKind::File,
                    &st,
                );
            }
            TopLevel::Dir => {
                let l = scan
                    .tree
                    .root()
                    .stat_at(&name)
                    .map_err(|e| Error::io("stat", &path, e))?;
                let follow = l.kind == Kind::Symlink;
                let dir = match scan.tree.root().open_dir(&name, follow) {
                    Ok(d) => d,
                    Err(e) if e.raw_os_error() == Some(libc::ENOTDIR) => {
                        return Err(Error::Source {
                            path,
                            reason: format!("{} where a directory belongs", l.kind.describe()),
                        });
                    }
                    Err(e) => return Err(Error::io("open directory", &path, e)),
                };
                if follow {
                    scan.followed.push(name_str.to_string());
                }
                let st = dir.stat().map_err(|e| Error::io("stat", &path, e))?;
                push(&mut scan.entries, name_str.to_string(), EntryKind::Dir, &st);
                if name_str == "wal" {
                    walk(&dir, &path, name_str, &mut scan.entries)?;
                }
                scan.tree.hold_top(name_str, dir);
            }
        }
    }
    if skipped > scan.skipped.len() {
        let more = skipped - scan.skipped.len();
        scan.skipped.push(format!("and {more} more"));
    }
    if scan.entries.is_empty() {
        return Err(Error::Refused(format!(
            "{} holds no SydraDB data (none of MANIFEST, tags.json, wal/, segments/); nothing written",
            root.display()
        )));
    }
    scan.capture_wal()?;
    scan.capture_hot()?;
    Ok(scan)
}

fn push(entries: &mut Vec<Entry>, path: String, kind: EntryKind, st: &Stat) {
    let size = if kind == EntryKind::File { st.size } else { 0 };
    entries.push(Entry {
        path,
        kind,
        size,
        mode: st.mode & 0o777,
        mtime: st.mtime.max(0),
        mtime_nsec: st.archived_nsec(),
    });
}

/// Lists `dir` (at `path`, archive path `rel`) and everything below it,
/// in archive order, never following a symlink.
fn walk(dir: &Dir, path: &Path, rel: &str, entries: &mut Vec<Entry>) -> Result<()> {
    for name in sorted_names(dir, path)? {
        let child = path.join(std::ffi::OsStr::from_bytes(&name));
        let Ok(name_str) = std::str::from_utf8(&name) else {
            return Err(Error::Source {
                path: child,
                reason: "name is not valid UTF-8".into(),
            });
        };
        let rel_path = format!("{rel}/{name_str}");
        if let Err(why) = layout::check_path(&rel_path, false) {
            return Err(Error::Source {
                path: child,
                reason: why,
            });
        }
        let st = dir
            .stat_at(&name)
            .map_err(|e| Error::io("stat", &child, e))?;
        match st.kind {
            Kind::Dir => {
                let sub = dir
                    .open_dir(&name, false)
                    .map_err(|e| open_error("open directory", child.clone(), e))?;
                push(entries, rel_path.clone(), EntryKind::Dir, &st);
                walk(&sub, &child, &rel_path, entries)?;
            }
            Kind::File => push(entries, rel_path, EntryKind::File, &st),
            other => return Err(not_regular(child, other)),
        }
    }
    Ok(())
}

impl Scan {
    /// Opens every WAL file and holds it open (see [`Scan::hold_wal`]),
    /// then takes each size once and cuts the torn tail.
    fn capture_wal(&mut self) -> Result<()> {
        let Some(wal_idx) = self.entries.iter().position(|e| e.path == "wal") else {
            return Ok(());
        };
        let held = self.hold_wal(wal_idx)?;
        // The WAL files are walked in parallel: hundreds of MB of small
        // records, all before the first byte can be compressed.
        let walked = {
            let jobs: Vec<(&File, &str, PathBuf)> = held
                .iter()
                .map(|(i, f)| {
                    let name = self.entries[*i].path.as_str();
                    (f, name, self.tree.full(name))
                })
                .collect();
            parallel_map(&jobs, |(f, name, path)| {
                let m = crate::sys::fstat(*f).map_err(|e| Error::io("stat", path, e))?;
                let pos =
                    live::scan_wal(f, name, m.size).map_err(|e| Error::io("read", path, e))?;
                Ok((m, pos))
            })
        };
        for ((i, f), walked) in held.into_iter().zip(walked) {
            let (m, pos) = walked?;
            if pos.cut_bytes() > 0 {
                self.warnings.push(format!(
                    "{}: left out {} bytes of an incomplete record at the end (a write in progress)",
                    pos.path,
                    pos.cut_bytes()
                ));
            }
            if !pos.damaged.is_empty() {
                self.warnings.push(format!(
                    "{}: damaged records at offsets {:?} (damage on disk, not a live write); archived as they are",
                    pos.path, pos.damaged
                ));
            }
            let e = &mut self.entries[i];
            e.size = pos.archived;
            e.mtime = m.mtime.max(0);
            e.mtime_nsec = m.archived_nsec();
            e.mode = m.mode & 0o777;
            self.wal.push(pos);
            let path = self.entries[i].path.clone();
            self.captured.insert(path, Captured::Held(f));
        }
        Ok(())
    }

    /// Opens every WAL file below entry `wal_idx` and lists `wal/` again,
    /// until no rotation happened in between (same names, each still the
    /// file held): the WAL files as one consistent set, held open.
    fn hold_wal(&mut self, wal_idx: usize) -> Result<Vec<(usize, File)>> {
        let wal_path = self.tree.full("wal");
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut held: Vec<(usize, File)> = Vec::new();
            let mut moved = false;
            for (i, e) in self.entries.iter().enumerate().skip(wal_idx + 1) {
                if e.kind != EntryKind::File || live::kind_of(&e.path) != FileKind::Wal {
                    continue;
                }
                match self.tree.try_open_file(&e.path)? {
                    Some((f, _)) => held.push((i, f)),
                    None => moved = true,
                }
            }
            // Listed again: same names, and each name still the file we hold?
            let before: Vec<String> = self.entries[wal_idx + 1..]
                .iter()
                .map(|e| e.path.clone())
                .collect();
            self.entries.truncate(wal_idx + 1);
            let wal_dir = self.tree.top("wal").expect("the scan holds wal/");
            walk(wal_dir, &wal_path, "wal", &mut self.entries)?;
            let after: Vec<&str> = self.entries[wal_idx + 1..]
                .iter()
                .map(|e| e.path.as_str())
                .collect();
            let same_names = !moved && before.iter().map(String::as_str).eq(after.iter().copied());
            let same_files = same_names
                && held.iter().all(|(i, f)| {
                    let by_path = self.tree.stat(&self.entries[*i].path);
                    match (by_path, crate::sys::fstat(f)) {
                        (Ok(a), Ok(b)) => a.ino == b.ino && a.dev == b.dev,
                        _ => false,
                    }
                });
            if same_files {
                return Ok(held);
            }
            if attempt >= 20 {
                return Err(Error::Source {
                    path: wal_path,
                    reason: "WAL files kept being renamed while they were opened".into(),
                });
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }

    /// Reads MANIFEST and tags.json until they settle (in the same rounds,
    /// one deadline), and keeps their content for `create`. Recently
    /// written segments are settled while they are archived.
    fn capture_hot(&mut self) -> Result<()> {
        let hot: Vec<(usize, String, FileKind)> = self
            .entries
            .iter()
            .enumerate()
            .filter(|(_, e)| e.kind == EntryKind::File)
            .filter_map(|(i, e)| {
                let kind = live::kind_of(&e.path);
                matches!(kind, FileKind::Manifest | FileKind::Tags)
                    .then(|| (i, e.path.clone(), kind))
            })
            .collect();
        for (i, s) in live::settle_all(&self.tree, hot)? {
            if let Some(w) = s.warning {
                self.warnings.push(w);
            }
            let e = &mut self.entries[i];
            e.size = s.stat.size;
            e.mtime = s.stat.mtime.max(0);
            e.mode = s.stat.mode & 0o777;
            self.captured
                .insert(e.path.clone(), Captured::Settled(s.content));
        }
        Ok(())
    }
}

fn sorted_names(dir: &Dir, path: &Path) -> Result<Vec<Vec<u8>>> {
    let mut names = dir
        .names()
        .map_err(|e| Error::io("read directory", path, e))?;
    names.sort_unstable();
    Ok(names)
}

/// `f` of every item, on up to as many threads as there are cores; the
/// results in order.
fn parallel_map<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .clamp(1, 8)
        .min(items.len());
    if threads <= 1 {
        return items.iter().map(f).collect();
    }
    let next = std::sync::atomic::AtomicUsize::new(0);
    let mut out: Vec<(usize, R)> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    let mut done = Vec::new();
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(item) = items.get(i) else { break };
                        done.push((i, f(item)));
                    }
                    done
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().expect("parallel_map worker panicked"))
            .collect()
    });
    out.sort_unstable_by_key(|(i, _)| *i);
    out.into_iter().map(|(_, r)| r).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn names(s: &Scan) -> Vec<&str> {
        s.entries.iter().map(|e| e.path.as_str()).collect()
    }

    #[test]
    fn order_skips_and_symlinks() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path();
        fs::write(d.join("tags.json"), b"{}").unwrap();
        fs::write(d.join("MANIFEST"), b"").unwrap();
        fs::write(d.join("0123456789abcdef"), b"leftover").unwrap();
        fs::create_dir_all(d.join("segments/7200")).unwrap();
        fs::create_dir_all(d.join("segments/-3600")).unwrap();
        fs::write(d.join("segments/7200/b.seg"), b"bb").unwrap();
        fs::write(d.join("segments/7200/a.seg"), b"a").unwrap();
        fs::create_dir_all(t.path().join("walreal")).unwrap();
        fs::write(d.join("walreal/current.wal"), [0u8; 33]).unwrap();
        let data = d.join("data");
        fs::create_dir(&data).unwrap();
        for n in ["tags.json", "MANIFEST", "0123456789abcdef"] {
            fs::rename(d.join(n), data.join(n)).unwrap();
        }
        fs::rename(d.join("segments"), data.join("segments")).unwrap();
        std::os::unix::fs::symlink(d.join("walreal"), data.join("wal")).unwrap();

        let s = scan(&data).unwrap();
        // Below segments/ nothing is listed: it is walked as it is written.
        assert_eq!(
            names(&s),
            [
                "MANIFEST",
                "segments",
                "tags.json",
                "wal",
                "wal/current.wal"
            ]
        );
        let mut walk = s.walk_segments().unwrap().unwrap();
        let mut below = Vec::new();
        while let Some(f) = walk.next_found().unwrap() {
            below.push(match f {
                Found::Dir { rel, .. } | Found::File { rel, .. } => rel,
            });
        }
        assert_eq!(
            below,
            [
                "segments/-3600",
                "segments/7200",
                "segments/7200/a.seg",
                "segments/7200/b.seg"
            ]
        );
        assert_eq!(s.skipped, ["0123456789abcdef"]);
        assert_eq!(s.followed, ["wal"]);
        assert_eq!(s.count().unwrap(), (5, 2 + 1 + 2 + 33));
    }

    #[test]
    fn refusals() {
        let t = tempfile::tempdir().unwrap();
        fs::write(t.path().join("other"), b"x").unwrap();
        assert!(matches!(scan(t.path()), Err(Error::Refused(_))));

        fs::create_dir(t.path().join("wal")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", t.path().join("wal/evil")).unwrap();
        let e = scan(t.path()).unwrap_err();
        assert!(matches!(e, Error::Source { .. }), "{e}");
        assert!(
            e.to_string().contains("wal/evil") && e.to_string().contains("symlink"),
            "{e}"
        );
    }
}
