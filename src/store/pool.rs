//! Archive files read at offsets through a fixed pool of descriptors: a
//! chain of a thousand archives is read with at most [`MAX_OPEN`] of them
//! open (the usual limit is 1,024 per process). A file whose descriptor
//! was closed is opened again by its path when it is next read, and used
//! only if it is still the file first opened: the same device, inode,
//! size, modification and change times (a file swapped in, or changed,
//! is an error, never read).

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

/// Most archive files held open at once.
pub const MAX_OPEN: usize = 32;

type Slot = Mutex<Option<File>>;

/// The open slots, least recently opened first.
static OPEN: Mutex<VecDeque<(u64, Weak<Slot>)>> = Mutex::new(VecDeque::new());
static NEXT_ID: AtomicU64 = AtomicU64::new(0);

/// What tells the file first opened: device, inode, size, mtime, ctime.
type Stamp = (u64, u64, u64, i64, i64, i64, i64);

fn stamp(f: &File) -> io::Result<Stamp> {
    let m = f.metadata()?;
    Ok((
        m.dev(),
        m.ino(),
        m.size(),
        m.mtime(),
        m.mtime_nsec(),
        m.ctime(),
        m.ctime_nsec(),
    ))
}

/// A regular file read at offsets, its descriptor in the pool.
#[derive(Debug)]
pub struct PooledFile {
    path: PathBuf,
    stamp: Stamp,
    slot: Arc<Slot>,
    id: u64,
}

impl PooledFile {
    /// The file `file`, opened at `path`, into the pool.
    pub fn new(path: &Path, file: File) -> io::Result<PooledFile> {
        let p = PooledFile {
            path: path.to_path_buf(),
            stamp: stamp(&file)?,
            slot: Arc::new(Mutex::new(Some(file))),
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
        };
        p.register();
        Ok(p)
    }

    /// Notes this slot as open, closing the oldest others past the limit.
    fn register(&self) {
        let mut open = OPEN.lock().unwrap_or_else(|e| e.into_inner());
        open.retain(|(id, w)| *id != self.id && w.strong_count() > 0);
        open.push_back((self.id, Arc::downgrade(&self.slot)));
        let mut tries = open.len();
        while open.len() > MAX_OPEN && tries > 0 {
            tries -= 1;
            let (id, w) = open.pop_front().expect("not empty");
            let Some(slot) = w.upgrade() else { continue };
            // A slot being read right now is left open (and kept listed).
            match slot.try_lock() {
                Ok(mut f) => drop(f.take()),
                Err(_) => open.push_back((id, w)),
            }
        }
    }

    /// Opens the file again by its path, if it is still the same file.
    fn reopen(&self) -> io::Result<File> {
        let file = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_CLOEXEC)
            .open(&self.path)?;
        if stamp(&file)? != self.stamp {
            return Err(io::Error::other(format!(
                "{} changed or was replaced while it was read",
                self.path.display()
            )));
        }
        Ok(file)
    }

    /// Runs `f` on the open file, opening it again if its descriptor was
    /// closed (and refusing it if it is no longer the same file).
    pub fn with<T>(&self, f: impl FnOnce(&File) -> io::Result<T>) -> io::Result<T> {
        let mut g = self.slot.lock().unwrap_or_else(|e| e.into_inner());
        if g.is_none() {
            *g = Some(self.reopen()?);
            drop(g);
            self.register();
            g = self.slot.lock().unwrap_or_else(|e| e.into_inner());
            if g.is_none() {
                // Closed again at once by a full pool: read without it.
                return f(&self.reopen()?);
            }
        }
        f(g.as_ref().expect("open"))
    }
}

impl Drop for PooledFile {
    fn drop(&mut self) {
        let mut open = OPEN.lock().unwrap_or_else(|e| e.into_inner());
        open.retain(|(id, _)| *id != self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::FileExt;

    #[test]
    fn many_files_few_descriptors_and_a_swap_is_refused() {
        let t = tempfile::tempdir().unwrap();
        let mut files = Vec::new();
        for i in 0..(MAX_OPEN * 3) {
            let p = t.path().join(format!("f{i}"));
            std::fs::write(&p, format!("file {i:04}")).unwrap();
            files.push(PooledFile::new(&p, File::open(&p).unwrap()).unwrap());
        }
        let open = |files: &[PooledFile]| {
            files
                .iter()
                .filter(|f| f.slot.lock().unwrap().is_some())
                .count()
        };
        assert!(open(&files) <= MAX_OPEN);
        for round in 0..2 {
            for (i, f) in files.iter().enumerate() {
                let mut b = [0u8; 4];
                f.with(|file| file.read_exact_at(&mut b, 5)).unwrap();
                assert_eq!(&b, format!("{i:04}").as_bytes(), "round {round}");
            }
        }
        assert!(open(&files) <= MAX_OPEN);
        // The first file's descriptor is closed by now; swapped, it is
        // refused when opened again.
        let p = t.path().join("f0");
        std::fs::remove_file(&p).unwrap();
        std::fs::write(&p, "file 9999").unwrap();
        let mut b = [0u8; 4];
        let e = files[0]
            .with(|file| file.read_exact_at(&mut b, 5))
            .unwrap_err();
        assert!(e.to_string().contains("changed or was replaced"), "{e}");
    }
}
