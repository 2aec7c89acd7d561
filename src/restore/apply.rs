//! Applying a verified incremental archive to a staged tree: the archive
//! was extracted whole into a private directory inside the staging tree
//! (`incoming`), and is applied only once every byte of it checked out:
//! its operations first (appends continue the staged base file, checked
//! against the digest the incremental recorded of it; deletes remove
//! what the base holds), then its members are moved into place by
//! renames. Every name is used relative to descriptors of the staging
//! tree, never by a path.

use std::collections::BTreeMap;
use std::fs::{self, File, FileTimes};
use std::io::Read;
use std::os::unix::fs::{FileExt, PermissionsExt};
use std::path::Path;
use std::time::{Duration, UNIX_EPOCH};

use sha2::{Digest, Sha256};

use crate::chain::Changes;
use crate::error::{Error, Result};
use crate::format::head::Entry;
use crate::format::incremental::{CHANGES_PATH, Change, INCREMENTAL_DIR, is_own, is_under};
use crate::format::sums::hex;
use crate::sys::{self, Dir, Kind};

const DIR_FLAGS: libc::c_int = libc::O_RDONLY | libc::O_DIRECTORY;

/// The directory holding `rel` below `root` (opened), and its last name.
fn parent_of<'r>(root: &File, rel: &'r str, shown: &Path) -> Result<(File, &'r str)> {
    let (dir, name) = match rel.rfind('/') {
        Some(i) => (&rel[..i], &rel[i + 1..]),
        None => (".", rel),
    };
    let d = sys::open_at(root, dir.as_bytes(), DIR_FLAGS, 0)
        .map_err(|e| Error::io("open", shown.join(dir), e))?;
    Ok((d, name))
}

/// What the appends of one restore left: each appended file's device,
/// inode, size and running SHA-256, so that the next link's append to it
/// continues the hash rather than reading the file again (a WAL file
/// appended to in every link of a chain was hashed whole once a link).
/// Only files this restore wrote itself, in its private staging tree,
/// and only while their identity and size are unchanged.
#[derive(Default)]
pub struct Appended(std::collections::HashMap<String, (u64, u64, u64, Sha256)>);

/// Applies the incremental extracted into `incoming` (named
/// `incoming_name` in `root`) to the staged tree `root` (shown as
/// `shown`); `carried` are its directory members and `dirs` every
/// directory of the staged tree with the mode and time it must end with.
/// `name` names the incremental in errors. Its operations, from its
/// [`CHANGES_PATH`], are read and checked by the chain model's reader.
pub fn apply(
    root: &File,
    shown: &Path,
    incoming: &File,
    carried: &[Entry],
    dirs: &mut BTreeMap<String, Entry>,
    appended: &mut Appended,
    name: &str,
) -> Result<()> {
    // The base was verified whole before this: what does not fit it is
    // the incremental's fault.
    let broken = |reason: String| Error::corrupt(format!("{name}: {reason}"));
    let changes =
        sys::open_at(incoming, CHANGES_PATH.as_bytes(), libc::O_RDONLY, 0).map_err(|e| {
            Error::corrupt(format!(
                "{name}: an incremental archive without its {CHANGES_PATH}: {e}"
            ))
        })?;
    for c in Changes::new(changes) {
        match c? {
            Change::Delete { path } => {
                let (parent, last) = parent_of(root, &path, shown).map_err(|_| {
                    broken(format!("it deletes {path}, which its base does not hold"))
                })?;
                let st = Dir::from_file(&parent)
                    .and_then(|d| d.stat_at(last.as_bytes()))
                    .map_err(|_| {
                        broken(format!("it deletes {path}, which its base does not hold"))
                    })?;
                if st.kind == Kind::Dir {
                    let tree = sys::open_at(&parent, last.as_bytes(), DIR_FLAGS, 0)
                        .map_err(|e| Error::io("open", shown.join(&path), e))?;
                    sys::remove_tree_at(&parent, last.as_bytes(), &tree)
                        .map_err(|e| Error::io("remove", shown.join(&path), e))?;
                    forget_below(dirs, &path);
                } else {
                    sys::unlink_in(&parent, last.as_bytes(), 0)
                        .map_err(|e| Error::io("remove", shown.join(&path), e))?;
                }
            }
            Change::Append {
                path,
                from,
                offset,
                prefix_sha256,
                tail,
                size,
                sha256,
                mode,
                mtime,
                mtime_nsec,
            } => {
                let file = match sys::open_at(root, from.as_bytes(), libc::O_RDONLY, 0) {
                    Ok(f) => f,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        return Err(broken(format!(
                            "it continues {from}, which its base does not hold"
                        )));
                    }
                    Err(e) => return Err(Error::io("open", shown.join(&from), e)),
                };
                let st = sys::fstat(&file).map_err(|e| Error::io("stat", shown.join(&from), e))?;
                let mut h = match appended.0.remove(&from) {
                    Some((dev, ino, n, h))
                        if st.kind == Kind::File
                            && (st.dev, st.ino, st.size) == (dev, ino, n)
                            && n == offset =>
                    {
                        h
                    }
                    _ => {
                        let mut h = Sha256::new();
                        if st.kind == Kind::File && st.size == offset {
                            let at = shown.join(&from);
                            crate::write::hash_range(&file, 0, offset, &mut [&mut h], &at)?;
                        }
                        h
                    }
                };
                if st.kind != Kind::File
                    || st.size != offset
                    || hex(&h.clone().finalize()) != prefix_sha256
                {
                    return Err(broken(format!(
                        "it continues {from} as {offset} bytes with SHA-256 {prefix_sha256}, but its base holds {} bytes{}",
                        st.size,
                        if st.size == offset {
                            " with another SHA-256"
                        } else {
                            ""
                        }
                    )));
                }
                // Writable for the tail (the base may have kept it
                // read-only; its mode is set below).
                file.set_permissions(fs::Permissions::from_mode((st.mode & 0o777) | 0o600))
                    .map_err(|e| Error::io("set mode of", shown.join(&from), e))?;
                let file = sys::open_at(root, from.as_bytes(), libc::O_WRONLY, 0)
                    .map_err(|e| Error::io("open", shown.join(&from), e))?;
                if from != path {
                    let (fp, fname) = parent_of(root, &from, shown)?;
                    let (tp, tname) = parent_of(root, &path, shown)?;
                    // A file replaces a directory whole (the chain
                    // model's rule 4).
                    if Dir::from_file(&tp)
                        .and_then(|d| d.stat_at(tname.as_bytes()))
                        .is_ok_and(|st| st.kind == Kind::Dir)
                    {
                        let tree = sys::open_at(&tp, tname.as_bytes(), DIR_FLAGS, 0)
                            .map_err(|e| Error::io("open", shown.join(&path), e))?;
                        sys::remove_tree_at(&tp, tname.as_bytes(), &tree)
                            .map_err(|e| Error::io("remove", shown.join(&path), e))?;
                        forget_below(dirs, &path);
                    }
                    sys::rename_between(&fp, fname.as_bytes(), &tp, tname.as_bytes(), 0)
                        .map_err(|e| Error::io("rename", shown.join(&from), e))?;
                }
                let mut t =
                    sys::open_at(incoming, tail.as_bytes(), libc::O_RDONLY, 0).map_err(|e| {
                        Error::corrupt(format!("{name}: its tail {tail} is missing: {e}"))
                    })?;
                let mut at = offset;
                let mut buf = vec![0u8; 1 << 20];
                loop {
                    let n = match t.read(&mut buf) {
                        Ok(0) => break,
                        Ok(n) => n,
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                        Err(e) => return Err(Error::io("read", shown.join(&tail), e)),
                    };
                    file.write_all_at(&buf[..n], at)
                        .map_err(|e| Error::io("write", shown.join(&path), e))?;
                    h.update(&buf[..n]);
                    at += n as u64;
                }
                let running = h.clone();
                if at != size || hex(&h.finalize()) != sha256 {
                    return Err(Error::corrupt(format!(
                        "{name}: {path} with its tail is not the {size} bytes with SHA-256 {sha256} it records"
                    )));
                }
                if let Ok(now) = sys::fstat(&file) {
                    appended
                        .0
                        .insert(path.clone(), (now.dev, now.ino, at, running));
                }
                let t = UNIX_EPOCH + Duration::new(mtime, mtime_nsec.unwrap_or(0));
                file.set_times(FileTimes::new().set_modified(t).set_accessed(t))
                    .map_err(|e| Error::io("set times of", shown.join(&path), e))?;
                file.set_permissions(fs::Permissions::from_mode(mode & 0o777))
                    .map_err(|e| Error::io("set mode of", shown.join(&path), e))?;
                sys::close(file).map_err(|e| Error::io("close", shown.join(&path), e))?;
            }
        }
    }
    // Then the members, by renames: a directory the tree lacks moves
    // whole; one it has is merged name by name.
    let inc = Dir::from_file(incoming).map_err(|e| Error::io("open", shown, e))?;
    let top = root.try_clone().map_err(|e| Error::io("open", shown, e))?;
    let mut replaced = Vec::new();
    for n in inc.names().map_err(|e| Error::io("read", shown, e))? {
        if n == INCREMENTAL_DIR.as_bytes() {
            continue;
        }
        move_into(incoming, &top, &n, "", shown, &mut replaced)?;
    }
    // A directory a file replaced is gone, with what was below it.
    for gone in replaced {
        forget_below(dirs, &gone);
    }
    for d in carried.iter().filter(|d| !is_own(&d.path)) {
        dirs.insert(d.path.clone(), d.clone());
    }
    Ok(())
}

/// Takes `path`, and every directory below it, out of `dirs` (they are
/// gone from the staged tree).
fn forget_below(dirs: &mut BTreeMap<String, Entry>, path: &str) {
    let under: Vec<String> = dirs
        .range(path.to_string()..)
        .map(|(k, _)| k.clone())
        .take_while(|k| k.starts_with(path))
        .filter(|k| is_under(k, path))
        .collect();
    for k in under {
        dirs.remove(&k);
    }
}

/// Moves `name` of `from` to `to` (`rel` is the archive path of their
/// directory), merging into a directory that is there, replacing anything
/// else; the archive paths of directories a file replaced go to
/// `replaced`.
fn move_into(
    from: &File,
    to: &File,
    name: &[u8],
    rel: &str,
    shown: &Path,
    replaced: &mut Vec<String>,
) -> Result<()> {
    let here = {
        let n = String::from_utf8_lossy(name);
        if rel.is_empty() {
            n.into_owned()
        } else {
            format!("{rel}/{n}")
        }
    };
    let fd = Dir::from_file(from).map_err(|e| Error::io("open", shown, e))?;
    let td = Dir::from_file(to).map_err(|e| Error::io("open", shown, e))?;
    let shown_name = shown.join(String::from_utf8_lossy(name).as_ref());
    let src = fd
        .stat_at(name)
        .map_err(|e| Error::io("stat", &shown_name, e))?;
    let there = match td.stat_at(name) {
        Ok(st) => Some(st.kind),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(Error::io("stat", &shown_name, e)),
    };
    match (src.kind, there) {
        (Kind::Dir, Some(Kind::Dir)) => {
            let sub_from = sys::open_at(from, name, DIR_FLAGS, 0)
                .map_err(|e| Error::io("open", &shown_name, e))?;
            let sub_to = sys::open_at(to, name, DIR_FLAGS, 0)
                .map_err(|e| Error::io("open", &shown_name, e))?;
            let names = Dir::from_file(&sub_from)
                .and_then(|d| d.names())
                .map_err(|e| Error::io("read", &shown_name, e))?;
            for n in names {
                move_into(&sub_from, &sub_to, &n, &here, &shown_name, replaced)?;
            }
            return Ok(());
        }
        (_, Some(Kind::Dir)) => {
            let tree = sys::open_at(to, name, DIR_FLAGS, 0)
                .map_err(|e| Error::io("open", &shown_name, e))?;
            sys::remove_tree_at(to, name, &tree)
                .map_err(|e| Error::io("remove", &shown_name, e))?;
            replaced.push(here);
        }
        (Kind::Dir, Some(_)) => {
            sys::unlink_in(to, name, 0).map_err(|e| Error::io("remove", &shown_name, e))?;
        }
        _ => {}
    }
    sys::rename_between(from, name, to, name, 0).map_err(|e| Error::io("rename", &shown_name, e))
}

/// Gives every directory of `dirs` its mode and time, deepest first (a
/// directory's time changes as names in it change).
pub fn set_dirs(root: &File, shown: &Path, dirs: &BTreeMap<String, Entry>) -> Result<()> {
    for (path, d) in dirs.iter().rev() {
        let f = sys::open_at(root, path.as_bytes(), DIR_FLAGS, 0)
            .map_err(|e| Error::io("open", shown.join(path), e))?;
        let t = d.modified();
        f.set_times(FileTimes::new().set_modified(t).set_accessed(t))
            .map_err(|e| Error::io("set times of", shown.join(path), e))?;
        f.set_permissions(fs::Permissions::from_mode(d.mode & 0o777))
            .map_err(|e| Error::io("set mode of", shown.join(path), e))?;
    }
    Ok(())
}

/// Whether the filesystem of the staged tree keeps nanoseconds of
/// mtimes exactly (ext3, ext4 with small inodes, FAT, many FUSE
/// filesystems do not): a probe file's time is set and read back.
pub fn keeps_nsec(root: &File, shown: &Path) -> Result<bool> {
    const PROBE: &[u8] = b".sydra-nsec-probe";
    let io = |e| Error::io("probe the times kept in", shown, e);
    let f = sys::open_at(
        root,
        PROBE,
        libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL,
        0o600,
    )
    .map_err(io)?;
    let kept = sys::set_times_in(root, PROBE, 1, 999_999_999)
        .and_then(|()| sys::fstat(&f))
        .map(|st| st.mtime_nsec == 999_999_999);
    drop(f);
    sys::unlink_in(root, PROBE, 0).map_err(io)?;
    kept.map_err(io)
}

/// Compares the staged tree below `root` (but for the names `skip` at its
/// top) with `tree`, the chain model's last tree: the same paths, kinds,
/// sizes, permission bits and modification times (to the nanosecond
/// where the archives record them and, `exact_nsec`, the filesystem
/// keeps them; else whole seconds). A
/// restore publishes only a tree the model describes; contents were
/// checked against their digests as they were written.
pub fn check_staged(
    root: &File,
    shown: &Path,
    skip: &[&str],
    exact_nsec: bool,
    tree: impl Iterator<Item = Result<crate::format::incremental::StateEntry>>,
) -> Result<()> {
    use crate::format::head::EntryKind;
    let mismatch = |what: String| {
        Error::corrupt(format!(
            "the restored tree differs from what the chain describes: {what}"
        ))
    };
    let mut want = tree;
    // Directories being walked: (relative path, its handle, names left
    // in reverse order).
    let top = Dir::from_file(root).map_err(|e| Error::io("open", shown, e))?;
    let mut names = top.names().map_err(|e| Error::io("read", shown, e))?;
    names.retain(|n| !skip.iter().any(|s| s.as_bytes() == n.as_slice()));
    names.sort_unstable_by(|a, b| b.cmp(a));
    let mut stack: Vec<(String, Dir, Vec<Vec<u8>>)> = vec![(String::new(), top, names)];
    while let Some((rel, dir, names)) = stack.last_mut() {
        let Some(name) = names.pop() else {
            stack.pop();
            continue;
        };
        let n = String::from_utf8(name.clone())
            .map_err(|_| mismatch(format!("a name that is not UTF-8 in {rel:?}")))?;
        let path = if rel.is_empty() {
            n
        } else {
            format!("{rel}/{n}")
        };
        let st = dir
            .stat_at(&name)
            .map_err(|e| Error::io("stat", shown.join(&path), e))?;
        let Some(e) = want.next().transpose()? else {
            return Err(mismatch(format!("{path} is not in it")));
        };
        if e.path != path {
            return Err(mismatch(format!("{} where it has {}", path, e.path)));
        }
        let kind_ok = matches!(
            (st.kind, e.kind),
            (Kind::File, EntryKind::File) | (Kind::Dir, EntryKind::Dir)
        );
        if !kind_ok
            || (e.kind == EntryKind::File && st.size != e.size)
            || st.mode & 0o777 != e.mode & 0o777
            || st.mtime != e.mtime as i64
            || (exact_nsec && st.mtime_nsec != i64::from(e.mtime_nsec.unwrap_or(0)))
        {
            return Err(mismatch(format!(
                "{path} is {} of {} bytes, mode {:o}, mtime {}.{:09}; it should be a {:?} of {} bytes, mode {:o}, mtime {}.{:09}",
                st.kind.describe(),
                st.size,
                st.mode & 0o777,
                st.mtime,
                st.mtime_nsec,
                e.kind,
                e.size,
                e.mode & 0o777,
                e.mtime,
                e.mtime_nsec.unwrap_or(0)
            )));
        }
        if st.kind == Kind::Dir {
            let sub = dir
                .open_dir(&name, false)
                .map_err(|e| Error::io("open", shown.join(&path), e))?;
            let mut names = sub
                .names()
                .map_err(|e| Error::io("read", shown.join(&path), e))?;
            names.sort_unstable_by(|a, b| b.cmp(a));
            stack.push((path, sub, names));
        }
    }
    if let Some(e) = want.next().transpose()? {
        return Err(mismatch(format!("{} is missing", e.path)));
    }
    Ok(())
}
