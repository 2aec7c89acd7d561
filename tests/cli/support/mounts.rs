//! Mounts for the root-only tests (tmpfs for a full disk or another
//! filesystem, bind mounts), unmounted when the guard drops.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::runner::p;

/// A mount (its mount point), unmounted on drop.
pub struct Mount(pub PathBuf);

impl Mount {
    /// A tmpfs of `size` (e.g. "8m") at `at`.
    pub fn tmpfs(at: &Path, size: &str) -> Mount {
        Mount::run(&["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"], at)
    }

    /// `src` bind-mounted at `at`.
    pub fn bind(src: &Path, at: &Path) -> Mount {
        Mount::run(&["--bind", p(src)], at)
    }

    fn run(args: &[&str], at: &Path) -> Mount {
        std::fs::create_dir_all(at).unwrap();
        let s = Command::new("mount").args(args).arg(at).status().unwrap();
        assert!(s.success(), "mount {args:?} {}", at.display());
        Mount(at.to_path_buf())
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}
