//! Publishing a staged tree: renamed into place, or swapped with the old
//! data dir (kept beside it under a name that never collides), by names
//! relative to the parent's descriptor; a failure before the swap removes
//! the staged tree, a problem after it is a warning.

use std::ffi::{OsStr, OsString};
use std::fs::{self, File};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::error::{Error, Result};
use crate::restore::staging::{STAGING_MARKER, remove_staging};
use crate::restore::target::{Target, TargetState};
use crate::store::cleanup::Pending;
use crate::store::publish::{NAME_MAX, open_dir, shorten, try_lock};
use crate::sys;

/// Renames the staged tree into place (or swaps it with the old data dir,
/// which is kept beside it), by names relative to the parent's descriptor
/// and only while the staging name still holds the tree this run made.
/// Fails only while nothing was replaced; once the data dir is replaced,
/// problems are warnings. Returns where the old tree was kept and the
/// warnings.
pub fn publish(
    pending: Pending,
    root: &File,
    staging: &OsStr,
    t: &Target,
) -> Result<(Option<PathBuf>, Vec<String>)> {
    // The data dir itself is not in the archive: it keeps the mode of the
    // directory it replaces, or gets the mode mkdir would give it.
    let root_mode = match fs::metadata(&t.path) {
        Ok(m) => m.permissions().mode() & 0o7777,
        Err(_) => 0o777 & !sys::current_umask(),
    };
    let (p, target) = (&t.parent_dir, &t.path);
    let (sname, tname) = (staging.as_bytes(), t.name.as_bytes());
    let staging_path = t.parent.join(staging);
    let published = pending.commit(|| -> Result<Option<(PathBuf, Option<String>)>> {
        // Anything that fails before the tree is in place leaves it
        // unpublished: it is removed, never kept.
        let unpublished = |e: Error| remove_staging(t, staging, root, e);
        if !sys::is_same_at(p, sname, root) {
            return Err(unpublished(Error::Refused(format!(
                "staging directory {} was replaced before it was published (someone else can write to {}); nothing was published",
                staging_path.display(),
                t.parent.display()
            ))));
        }
        // From the marker's removal to the rename, a run killed leaves an
        // unmarked tree that the next run only reports: as few steps as can
        // be (the mode comes after, as it may forbid the unlink).
        sys::unlink_in(root, STAGING_MARKER.as_bytes(), 0).map_err(|e| {
            unpublished(Error::io("remove", staging_path.join(STAGING_MARKER), e))
        })?;
        root.set_permissions(fs::Permissions::from_mode(root_mode))
            .map_err(|e| unpublished(Error::io("set mode of", &staging_path, e)))?;
        match t.state {
            TargetState::Absent => {
                let moved = match sys::rename_in(p, sname, tname, libc::RENAME_NOREPLACE) {
                    // Filesystems without RENAME_NOREPLACE: the target was
                    // absent a moment ago.
                    Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                        sys::rename_in(p, sname, tname, 0)
                    }
                    r => r,
                };
                moved.map_err(|e| unpublished(Error::io("rename into place", target, e)))?;
                Ok(None)
            }
            TargetState::Empty => {
                sys::rename_in(p, sname, tname, 0)
                    .map_err(|e| unpublished(Error::io("rename into place", target, e)))?;
                Ok(None)
            }
            TargetState::Full => {
                // Lock the old tree too, if no one else holds it, so that
                // under the staging name (between the swap and the rename
                // below) it is not taken for a leftover of a dead run.
                let old_lock = open_dir(target)
                    .ok()
                    .filter(|f| matches!(try_lock(f), Ok(true)));
                sys::rename_in(p, sname, tname, libc::RENAME_EXCHANGE)
                    .map_err(|e| unpublished(Error::io("swap into place", target, e)))?;
                // The staging name now holds the old tree: name it so.
                let kept = keep_old(t, staging, now_ms());
                drop(old_lock);
                Ok(Some(kept))
            }
        }
    })?;
    let mut warnings = Vec::new();
    let kept_old = published.map(|(kept, warning)| {
        warnings.extend(warning);
        kept
    });
    // The data dir is replaced: from here on, nothing is a failure.
    if let Err(e) = p.sync_all() {
        warnings.push(format!(
            "cannot fsync directory {}: {e}; the restore is complete but its rename may not be durable yet",
            t.parent.display()
        ));
    }
    Ok((kept_old, warnings))
}

/// `<name>.pre-restore.<ms>`, or with `.<n>` after it for `n > 0`; `name`
/// shortened so the whole fits `NAME_MAX`.
fn kept_name(name: &OsStr, ms: u128, n: u32) -> OsString {
    let suffix = if n == 0 {
        format!(".pre-restore.{ms}")
    } else {
        format!(".pre-restore.{ms}.{n}")
    };
    let mut v = shorten(name.as_bytes(), NAME_MAX - suffix.len()).to_vec();
    v.extend_from_slice(suffix.as_bytes());
    OsString::from_vec(v)
}

/// Gives the old tree, now at `old` (the staging name), the name
/// `<name>.pre-restore.<ms>` beside it — `.1`, `.2`... after it when that
/// is taken (by an earlier restore, or another one finishing in the same
/// millisecond). Never fails: the data dir is already replaced, so if the
/// rename fails for another reason the old tree stays at `old` and the
/// warning returned says where it is.
fn keep_old(t: &Target, old: &OsStr, ms: u128) -> (PathBuf, Option<String>) {
    keep_old_within(t, old, ms, KEPT_SUFFIXES)
}

/// How many `.<n>` suffixes [`keep_old`] tries after `.pre-restore.<ms>`
/// before it leaves the old tree where it is, with a warning.
const KEPT_SUFFIXES: u32 = 100_000;

/// [`keep_old`], trying the suffixes `.1` to `.<tries>`.
fn keep_old_within(t: &Target, old: &OsStr, ms: u128, tries: u32) -> (PathBuf, Option<String>) {
    let mut n = 0u32;
    loop {
        let kept = kept_name(&t.name, ms, n);
        match sys::rename_in(
            &t.parent_dir,
            old.as_bytes(),
            kept.as_bytes(),
            libc::RENAME_NOREPLACE,
        ) {
            Ok(()) => return (t.parent.join(kept), None),
            Err(e)
                if n < tries
                    && matches!(e.raw_os_error(), Some(libc::EEXIST | libc::ENOTEMPTY)) =>
            {
                n += 1
            }
            Err(e) => {
                let old = t.parent.join(old);
                let warning = format!(
                    "previous contents of {} are at {} (could not rename them to {}: {e})",
                    t.path.display(),
                    old.display(),
                    t.parent.join(kept).display()
                );
                return (old, Some(warning));
            }
        }
    }
}

fn now_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::restore::target::TargetState;
    use crate::store::publish::NAME_MAX;
    use crate::sys;
    use std::fs;
    use std::path::Path;

    /// A target `db` in `parent`, full.
    fn target_in(parent: &Path) -> Target {
        Target {
            path: parent.join("db"),
            parent: parent.to_path_buf(),
            parent_dir: sys::open_dir_path(parent).unwrap(),
            name: "db".into(),
            state: TargetState::Full,
        }
    }

    #[test]
    fn kept_names_never_collide_and_fit_name_max() {
        let t = tempfile::tempdir().unwrap();
        let parent = t.path();
        fs::create_dir(parent.join("db.pre-restore.7")).unwrap();
        fs::create_dir(parent.join("db.pre-restore.7.1")).unwrap();
        fs::write(parent.join("db.pre-restore.7.1/x"), b"earlier").unwrap();
        let old = parent.join(".db.sydra-staging.1.0");
        fs::create_dir(&old).unwrap();
        fs::write(old.join("x"), b"old").unwrap();
        let (kept, warning) = keep_old(&target_in(parent), old.file_name().unwrap(), 7);
        assert_eq!(warning, None);
        assert_eq!(kept, parent.join("db.pre-restore.7.2"));
        assert_eq!(fs::read(kept.join("x")).unwrap(), b"old");
        assert_eq!(
            fs::read(parent.join("db.pre-restore.7.1/x")).unwrap(),
            b"earlier"
        );

        let long = "n".repeat(NAME_MAX);
        for n in [0, 1, 99_999] {
            let k = kept_name(OsStr::new(&long), u128::from(u64::MAX), n);
            assert!(k.len() <= NAME_MAX, "{}", k.len());
            assert!(k.as_bytes().starts_with(b"nnnn"));
        }
    }

    /// Every name `db.pre-restore.<ms>` and `.1` to `.<tries>` taken: the
    /// search stops at its bound and the old tree stays where it is, with
    /// a warning that says so (no clock involved: `ms` is given).
    #[test]
    fn kept_name_collisions_take_the_next_suffix_up_to_a_bound() {
        let t = tempfile::tempdir().unwrap();
        let parent = t.path();
        let old = parent.join(".db.sydra-staging.1.0");
        fs::create_dir(&old).unwrap();
        fs::write(old.join("x"), b"old").unwrap();
        for n in 0..=3 {
            fs::create_dir(parent.join(kept_name(OsStr::new("db"), 7, n))).unwrap();
        }
        let target = target_in(parent);
        // Four taken, a fifth free: `.4`.
        let (kept, warning) = keep_old_within(&target, old.file_name().unwrap(), 7, 4);
        assert_eq!(
            (kept.clone(), warning),
            (parent.join("db.pre-restore.7.4"), None)
        );
        fs::rename(&kept, &old).unwrap();
        // Only three suffixes allowed: `.3` is the last name tried.
        let (kept, warning) = keep_old_within(&target, old.file_name().unwrap(), 7, 3);
        assert_eq!(kept, old);
        let w = warning.unwrap();
        assert!(
            w.starts_with(&format!(
                "previous contents of {} are at {} (could not rename them to {}: ",
                parent.join("db").display(),
                old.display(),
                parent.join("db.pre-restore.7.3").display()
            )),
            "{w}"
        );
        assert_eq!(fs::read(old.join("x")).unwrap(), b"old");
    }

    #[test]
    fn an_old_tree_that_cannot_be_renamed_is_a_warning() {
        let t = tempfile::tempdir().unwrap();
        let old = t.path().join(".db.sydra-staging.1.0");
        let target = t.path().join("db");
        // The rename fails (here: the old tree is not there), not with
        // EEXIST: the old tree is reported where it is.
        let (kept, warning) = keep_old(&target_in(t.path()), old.file_name().unwrap(), 7);
        assert_eq!(kept, old);
        let w = warning.unwrap();
        assert!(
            w.starts_with(&format!(
                "previous contents of {} are at {} (could not rename them to {}: ",
                target.display(),
                old.display(),
                t.path().join("db.pre-restore.7").display()
            )),
            "{w}"
        );
        assert!(!w.contains('\n'));
    }
}
