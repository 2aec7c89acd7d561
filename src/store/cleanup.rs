//! Temporary things that must disappear on error, SIGINT or SIGTERM:
//! paths ([`Temp`]) and unfinished remote uploads ([`Pending`]).
//!
//! A temporary file or directory is registered while it exists. Committing
//! it (a rename into place) runs under the same lock the signal handler
//! takes, so a signal either arrives before the commit (the temporary is
//! removed and the target is untouched) or after it (nothing is left to
//! remove): never half way. A pending upload works the same way: its abort
//! action runs on a signal unless it was completed first.

use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use crate::sys::{Dir, Kind};

/// What a registered item is, and how the signal path gets rid of it.
enum Item {
    Path(PathBuf),
    Hook {
        what: String,
        run: Box<dyn FnMut() -> io::Result<()> + Send>,
    },
}

static REGISTRY: Mutex<Vec<(u64, Item)>> = Mutex::new(Vec::new());
static NEXT_ID: AtomicU64 = AtomicU64::new(1);
static STOPPING: AtomicBool = AtomicBool::new(false);

/// True once a signal asked the process to stop: code that creates files
/// inside a registered temporary directory checks it first, so the
/// directory can be removed.
pub fn stopping() -> bool {
    STOPPING.load(Ordering::SeqCst)
}

fn registry() -> MutexGuard<'static, Vec<(u64, Item)>> {
    REGISTRY.lock().unwrap_or_else(|e| e.into_inner())
}

/// Registers `item` and returns its id.
fn add(item: Item) -> u64 {
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    registry().push((id, item));
    id
}

/// Runs `f` with signals held off (under the registry lock), then
/// unregisters item `id`.
fn settle<T>(id: u64, f: impl FnOnce() -> T) -> T {
    let mut reg = registry();
    let out = f();
    reg.retain(|(i, _)| *i != id);
    out
}

/// A registered temporary path. Dropping it without [`Temp::commit`] or
/// [`Temp::remove`] keeps it registered, so a later signal still removes it.
#[derive(Debug)]
#[must_use = "a temporary path must be committed or removed"]
pub struct Temp {
    id: u64,
    path: PathBuf,
}

impl Temp {
    /// Registers `path` (a file or a directory) for removal on signal.
    pub fn register(path: &Path) -> Temp {
        Temp {
            id: add(Item::Path(path.to_path_buf())),
            path: path.to_path_buf(),
        }
    }

    /// The registered path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `publish` (e.g. a rename into place) with signals held off, then
    /// forgets the path: it is no longer temporary.
    pub fn commit<T>(self, publish: impl FnOnce(&Path) -> T) -> T {
        settle(self.id, || publish(&self.path))
    }

    /// Removes the path (file or whole directory) and forgets it.
    pub fn remove(self) -> io::Result<()> {
        settle(self.id, || remove_path(&self.path))
    }
}

/// Removes `path`: a file, or a directory with everything below it (read-only
/// directories included, see [`make_writable`]). An absent path is not an error.
pub(crate) fn remove_path(path: &Path) -> io::Result<()> {
    let res = match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(path).or_else(|e| {
            if e.kind() != io::ErrorKind::PermissionDenied {
                return Err(e);
            }
            make_writable(path);
            std::fs::remove_dir_all(path)
        }),
        Ok(_) => std::fs::remove_file(path),
        Err(e) => Err(e),
    };
    match res {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

/// Gives the owner full access to every directory of the tree at `path`
/// (symlinks are not followed), so that a tree with read-only directories
/// can be removed by a user who is not root. Best effort. It works relative
/// to open directories, so it reaches paths longer than `PATH_MAX`.
pub fn make_writable(path: &Path) {
    let Ok(m) = std::fs::symlink_metadata(path) else {
        return;
    };
    if !m.is_dir() {
        return;
    }
    // Never through a symlink, and never setuid, setgid or sticky.
    let mode = (m.permissions().mode() & 0o777) | 0o700;
    let _ = crate::sys::chmod_path_nofollow(path, mode);
    if let Ok(dir) = Dir::open_nofollow(path) {
        writable_below(&dir);
    }
}

fn writable_below(dir: &Dir) {
    let Ok(names) = dir.names() else {
        return;
    };
    for name in names {
        match dir.stat_at(&name) {
            Ok(st) if st.kind == Kind::Dir => {
                let _ = dir.chmod_at(&name, (st.mode & 0o777) | 0o700);
                if let Ok(child) = dir.open_dir(&name, false) {
                    writable_below(&child);
                }
            }
            _ => {}
        }
    }
}

/// A registered action that undoes something unfinished (an upload that
/// must not complete). Dropping it without [`Pending::commit`] or
/// [`Pending::forget`] keeps it registered, so a later signal still runs it.
#[must_use = "a pending action must be committed or forgotten"]
pub struct Pending {
    id: u64,
}

impl Pending {
    /// Registers `undo` for `what` ("the unfinished upload to s3://..."),
    /// to run if a signal arrives before the commit.
    pub fn register(
        what: impl Into<String>,
        undo: impl FnMut() -> io::Result<()> + Send + 'static,
    ) -> Pending {
        Pending {
            id: add(Item::Hook {
                what: what.into(),
                run: Box::new(undo),
            }),
        }
    }

    /// Runs `finish` (e.g. completing the upload) with signals held off,
    /// then unregisters the undo action.
    pub fn commit<T>(self, finish: impl FnOnce() -> T) -> T {
        settle(self.id, finish)
    }

    /// Unregisters the undo action (after it was run by hand).
    pub fn forget(self) {
        settle(self.id, || ());
    }
}

/// Removes every registered path, runs every pending undo action, and keeps
/// the lock held, so no commit can start afterwards. Meant for the signal
/// path, just before the process exits. Returns one line per item.
pub fn remove_all_and_hold() -> Vec<String> {
    STOPPING.store(true, Ordering::SeqCst);
    let mut reg = registry();
    let results = reg
        .iter_mut()
        .map(|(_, item)| match item {
            Item::Path(p) => {
                // A worker may still be creating a file it started before it
                // saw `stopping()`: try again for a moment.
                let mut r = remove_path(p);
                for _ in 0..40 {
                    if r.is_ok() {
                        break;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(25));
                    r = remove_path(p);
                }
                match r {
                    Ok(()) => format!("removed {}", p.display()),
                    Err(e) => format!("could not remove {}: {e}", p.display()),
                }
            }
            Item::Hook { what, run } => match run() {
                Ok(()) => format!("aborted {what}"),
                Err(e) => format!("could not abort {what}: {e}"),
            },
        })
        .collect();
    std::mem::forget(reg);
    results
}

/// The exit code of a process a signal stopped (see
/// [`install_signal_handlers`], [`set_signal_exit_code`]).
static SIGNAL_EXIT: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(2);

/// The exit code after SIGINT, SIGTERM or SIGHUP from now on: `watch`
/// makes a stop by its service manager a success (the point in progress
/// is abandoned cleanly, every point shipped is whole).
pub fn set_signal_exit_code(code: i32) {
    SIGNAL_EXIT.store(code, Ordering::SeqCst);
}

/// Installs SIGINT, SIGTERM and SIGHUP handling (a closed terminal or
/// ssh session ends the run as cleanly as a kill): a watcher thread
/// removes every registered temporary path, prints one line on stderr
/// and exits with `exit_code`.
pub fn install_signal_handlers(exit_code: i32) -> io::Result<()> {
    SIGNAL_EXIT.store(exit_code, Ordering::SeqCst);
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP])?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            if let Some(sig) = signals.forever().next() {
                let name = match sig {
                    SIGINT => "SIGINT",
                    SIGHUP => "SIGHUP",
                    _ => "SIGTERM",
                };
                let results = remove_all_and_hold();
                let mut msg = format!("sydra-archive: interrupted by {name}");
                for line in results {
                    msg.push_str("; ");
                    msg.push_str(&line);
                }
                // A closed or broken stderr must not keep the process
                // from exiting.
                let _ = writeln!(std::io::stderr(), "{msg}");
                std::process::exit(SIGNAL_EXIT.load(Ordering::SeqCst));
            }
        })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remove_and_commit() {
        let t = tempfile::tempdir().unwrap();
        let f = t.path().join("f");
        std::fs::write(&f, b"x").unwrap();
        let temp = Temp::register(&f);
        assert!(registered(&f));
        temp.remove().unwrap();
        assert!(!f.exists());
        assert!(!registered(&f));

        let d = t.path().join("d");
        std::fs::create_dir_all(d.join("x/y")).unwrap();
        let temp = Temp::register(&d);
        let moved = t.path().join("moved");
        temp.commit(|p| std::fs::rename(p, &moved)).unwrap();
        assert!(moved.join("x/y").is_dir());
        assert!(!registered(&d));

        let pending = Pending::register("abort x", || Ok(()));
        let id = pending.id;
        assert!(registry().iter().any(|(i, _)| *i == id));
        assert_eq!(pending.commit(|| 7), 7);
        assert!(!registry().iter().any(|(i, _)| *i == id));
    }

    #[test]
    fn read_only_trees_are_made_writable_and_removed() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("r");
        let deep = root.join("a/b/c");
        std::fs::create_dir_all(&deep).unwrap();
        std::fs::write(deep.join("f"), b"x").unwrap();
        std::os::unix::fs::symlink("/", root.join("a/link")).unwrap();
        for d in [&deep, &root.join("a/b"), &root.join("a"), &root] {
            std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o500)).unwrap();
        }
        make_writable(&root);
        for d in [&deep, &root.join("a/b"), &root.join("a"), &root] {
            let mode = std::fs::metadata(d).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o700, "{d:?}");
        }
        remove_path(&root).unwrap();
        assert!(!root.exists());
    }

    fn registered(path: &Path) -> bool {
        registry()
            .iter()
            .any(|(_, item)| matches!(item, Item::Path(p) if p == path))
    }
}
