//! Opening an archive wherever it is (a path, stdin, an object) as one
//! source every command reads from, counting the bytes for progress.

use std::fs::File;
use std::io::Read;
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::format::sums::hex;
use crate::progress::Progress;
use crate::read::input::{HashPipe, changed_while_read};
use crate::read::{
    Depth, Info, Plan, ReadSummary, Sink, Visit, list_archive, list_archive_hashed, list_from_end,
    plan_from_end, read_archive, read_archive_hashed,
};
use crate::store::location::Location;
use crate::store::s3::{ObjectReader, Remote};

/// An open archive source: a file, stdin when the path is `-`, or an
/// object in object storage; counts the bytes read in an optional
/// [`Progress`].
pub struct ArchiveReader {
    inner: Inner,
    progress: Option<Arc<Progress>>,
    expected_sha256: Option<String>,
    name: PathBuf,
}

enum Inner {
    File {
        /// The file, or a duplicate of the stdin descriptor.
        file: File,
        stdin: bool,
    },
    Object {
        reader: Box<ObjectReader>,
        remote: Box<Remote>,
        size: u64,
        e_tag: Option<String>,
    },
}

impl ArchiveReader {
    /// What a version-2 archive holds, read from its end where the source
    /// allows it (a regular file, an object); `None` for a pipe or a
    /// version-1 archive (whose HEAD says it).
    fn plan(&self) -> Result<Option<Plan>> {
        let shown = self.name.display().to_string();
        let meta = match &self.inner {
            Inner::File { file, stdin: false } => {
                let m = file
                    .metadata()
                    .map_err(|e| Error::io("stat", &self.name, e))?;
                if !m.is_file() {
                    return Ok(None);
                }
                let mut read_at = |at: u64, buf: &mut [u8]| {
                    std::os::unix::fs::FileExt::read_exact_at(file, buf, at)
                };
                plan_from_end(m.len(), &mut read_at, &shown)?
            }
            Inner::File { .. } => None,
            Inner::Object {
                remote,
                size,
                e_tag,
                ..
            } => {
                let mut read_at = |at: u64, buf: &mut [u8]| {
                    remote
                        .read_at(at, buf, e_tag.as_deref())
                        .map_err(std::io::Error::other)
                };
                plan_from_end(*size, &mut read_at, &shown)?
            }
        };
        Ok(meta.map(|m| Plan {
            files: m.files,
            dirs: m.dirs,
            total_bytes: m.total_bytes,
        }))
    }

    /// Reads `buf.len()` bytes at `at`, where the source allows it.
    fn random_access(&self) -> Result<Option<RandomAccess<'_>>> {
        Ok(match &self.inner {
            Inner::File { file, stdin: false } => {
                let m = file
                    .metadata()
                    .map_err(|e| Error::io("stat", &self.name, e))?;
                m.is_file().then_some(RandomAccess::File(file, m.len()))
            }
            Inner::File { .. } => None,
            Inner::Object {
                remote,
                size,
                e_tag,
                ..
            } => Some(RandomAccess::Object(remote, *size, e_tag.as_deref())),
        })
    }

    /// Lists the archive into `visit`. A version-2 archive in a file or
    /// an object is listed from its index alone, with reads at offsets
    /// (TAIL, TABLE, META, INDEX blocks), each checked before it is used;
    /// with `sha256` the whole archive is first checked as `verify
    /// --quick` does, so no digest is printed from an archive that fails.
    /// Anything else is listed as it streams by (see
    /// [`crate::read::list_archive`]).
    pub fn list_into(self, sha256: bool, visit: &mut Visit<'_>) -> Result<Info> {
        let shown = self.name.display().to_string();
        let indexed = match self.random_access()? {
            Some(ra) => {
                // Only the end decides: a version-1 archive has no TAIL.
                let mut t = [0u8; crate::format::v2::TAIL_LEN];
                let size = ra.size();
                size >= t.len() as u64
                    && ra.reader()(size - t.len() as u64, &mut t).is_ok()
                    && crate::format::v2::Tail::is_tail(&t)
            }
            None => false,
        };
        if indexed {
            let ra = self.random_access()?.expect("random access checked above");
            let (size, owned) = (ra.size(), ra.owned(&self.name)?);
            // The file listed must be the one verified: unchanged between.
            let path = self.name.clone();
            let before = owned.stamp(&path)?;
            if sha256 {
                self.read_into(Depth::Quick, &mut crate::read::NullSink)?;
            }
            let info = list_from_end(size, &mut owned.reader(), &shown, visit)?;
            if owned.stamp(&path)? != before {
                return Err(changed_while_read(&path));
            }
            return Ok(info.expect("a TAIL was found"));
        }
        let name = self.name.clone();
        let expected = self.expected_sha256.clone();
        let local = self.local_file(Depth::Quick)?;
        let (info, digest) = match local {
            Some(file) => quick_in_parallel(file, &name, |hasher| {
                list_archive_hashed(self, &name, sha256, hasher, visit)
            })?,
            None => list_archive(self, &name, sha256, visit)?,
        };
        if let (Some(want), Some(got)) = (expected, digest) {
            let got = hex(&got);
            if !want.eq_ignore_ascii_case(&got) {
                return Err(Error::corrupt(format!(
                    "the archive hashes to {got} but its object metadata recorded {want} at upload"
                )));
            }
        }
        Ok(info)
    }

    /// A second descriptor of a regular file, for hashing apart while a
    /// quick check parses.
    fn local_file(&self, depth: Depth) -> Result<Option<File>> {
        // Only a regular file can be read twice at once; a fifo (such as
        // `<(curl …)`) or a device is read once, like stdin.
        match &self.inner {
            Inner::File { file, stdin: false }
                if depth == Depth::Quick && file.metadata().is_ok_and(|m| m.is_file()) =>
            {
                Ok(Some(
                    file.try_clone()
                        .map_err(|e| Error::io("read", &self.name, e))?,
                ))
            }
            _ => Ok(None),
        }
    }

    /// Reads the whole archive to `depth` into `sink`, then checks its
    /// SHA-256 against the one object metadata recorded at upload, if any.
    pub fn read_into<S: Sink>(self, depth: Depth, sink: &mut S) -> Result<ReadSummary> {
        if let Some(plan) = self.plan()? {
            sink.plan(&plan)?;
        }
        let expected = self.expected_sha256.clone();
        let name = self.name.clone();
        let local = self.local_file(depth)?;
        let summary = match local {
            Some(file) => quick_in_parallel(file, &name, |hasher| {
                read_archive_hashed(self, &name, depth, sink, hasher)
            })?,
            None => read_archive(self, &name, depth, sink)?,
        };
        let got = hex(&summary.sha256);
        match expected {
            Some(want) if !want.eq_ignore_ascii_case(&got) => Err(Error::corrupt(format!(
                "the archive hashes to {got} but its object metadata recorded {want} at upload"
            ))),
            _ => Ok(summary),
        }
    }
}

/// What tells a file that changed: size, mtime and ctime (with ns).
type Stamp = (u64, i64, i64, i64, i64);

/// Reads at offsets of a file or an object.
enum RandomAccess<'s> {
    File(&'s File, u64),
    Object(&'s Remote, u64, Option<&'s str>),
}

/// [`RandomAccess`] that owns what it reads.
enum OwnedAccess {
    File(File),
    Object(Box<Remote>, Option<String>),
}

impl RandomAccess<'_> {
    fn size(&self) -> u64 {
        match self {
            RandomAccess::File(_, n) | RandomAccess::Object(_, n, _) => *n,
        }
    }

    fn owned(&self, name: &Path) -> Result<OwnedAccess> {
        Ok(match self {
            RandomAccess::File(f, _) => {
                OwnedAccess::File(f.try_clone().map_err(|e| Error::io("read", name, e))?)
            }
            RandomAccess::Object(r, _, e) => {
                OwnedAccess::Object(Box::new((*r).clone()), e.map(str::to_string))
            }
        })
    }

    /// Reads at an offset; our errors travel inside the `io::Error`.
    fn reader(&self) -> impl FnMut(u64, &mut [u8]) -> std::io::Result<()> + '_ {
        move |at, buf| match self {
            RandomAccess::File(f, _) => std::os::unix::fs::FileExt::read_exact_at(*f, buf, at),
            RandomAccess::Object(r, _, e) => r.read_at(at, buf, *e).map_err(std::io::Error::other),
        }
    }
}

impl OwnedAccess {
    /// What tells a file that changed (size, mtime, ctime); an object is
    /// pinned to its ETag instead.
    fn stamp(&self, name: &Path) -> Result<Option<Stamp>> {
        match self {
            OwnedAccess::File(f) => {
                let m = f.metadata().map_err(|e| Error::io("stat", name, e))?;
                Ok(Some((
                    m.len(),
                    m.mtime(),
                    m.mtime_nsec(),
                    m.ctime(),
                    m.ctime_nsec(),
                )))
            }
            OwnedAccess::Object(..) => Ok(None),
        }
    }

    /// Reads at an offset; our errors travel inside the `io::Error`.
    fn reader(&self) -> impl FnMut(u64, &mut [u8]) -> std::io::Result<()> + '_ {
        move |at, buf| match self {
            OwnedAccess::File(f) => std::os::unix::fs::FileExt::read_exact_at(f, buf, at),
            OwnedAccess::Object(r, e) => r
                .read_at(at, buf, e.as_deref())
                .map_err(std::io::Error::other),
        }
    }
}

/// Runs `check` with the archive file hashed by a thread of its own, in
/// parallel: `verify --quick` then takes as long as hashing alone, not
/// hashing plus parsing HEAD and SUMS. The parse and the hash read the file
/// separately, so the file must not change in between: its size, mtime
/// and ctime are compared before and after.
fn quick_in_parallel<T>(
    file: File,
    name: &Path,
    check: impl FnOnce(HashPipe) -> Result<T>,
) -> Result<T> {
    let stamp = |f: &File| -> Result<Stamp> {
        let m = f.metadata().map_err(|e| Error::io("stat", name, e))?;
        Ok((
            m.len(),
            m.mtime(),
            m.mtime_nsec(),
            m.ctime(),
            m.ctime_nsec(),
        ))
    };
    let before = stamp(&file)?;
    let apart = file
        .try_clone()
        .and_then(|f| HashPipe::apart(f, before.0))
        .map_err(|e| Error::io("read", name, e))?;
    let result = check(apart);
    if stamp(&file)? != before {
        return Err(changed_while_read(name));
    }
    result
}

impl Read for ArchiveReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = match &mut self.inner {
            Inner::File { file, .. } => file.read(buf)?,
            Inner::Object { reader, .. } => reader.read(buf)?,
        };
        if let Some(p) = &self.progress {
            p.add(n as u64);
        }
        Ok(n)
    }
}

/// Opens an archive for reading; a local `-` is stdin. Directories are
/// refused. An object is first checked with a ranged read of its FOOT. The
/// progress total is the size (unknown for stdin).
pub fn open_archive(loc: &Location, progress: Option<Arc<Progress>>) -> Result<ArchiveReader> {
    let path = match loc {
        Location::Local(p) => p,
        Location::S3 { url, options } => {
            let remote = Remote::connect(url, options)?;
            let probe = remote.probe()?;
            if let Some(p) = &progress {
                p.set_total(probe.size);
            }
            let reader = ObjectReader::open(&remote, probe.e_tag.clone())?;
            return Ok(ArchiveReader {
                inner: Inner::Object {
                    reader: Box::new(reader),
                    remote: Box::new(remote),
                    size: probe.size,
                    e_tag: probe.e_tag,
                },
                progress,
                expected_sha256: probe.sha256,
                name: loc.name(),
            });
        }
    };
    if path == Path::new("-") {
        // A duplicate of fd 0: closing it leaves stdin open.
        let stdin = std::io::stdin()
            .as_fd()
            .try_clone_to_owned()
            .map_err(|e| Error::io("read", path, e))?;
        return Ok(ArchiveReader {
            inner: Inner::File {
                file: File::from(stdin),
                stdin: true,
            },
            progress,
            expected_sha256: None,
            name: path.clone(),
        });
    }
    let f = File::open(path).map_err(|e| Error::io("open", path, e))?;
    let m = f.metadata().map_err(|e| Error::io("stat", path, e))?;
    if m.is_dir() {
        return Err(Error::Refused(format!(
            "{} is a directory, not an archive",
            path.display()
        )));
    }
    if let Some(p) = &progress {
        p.set_total(m.len());
    }
    Ok(ArchiveReader {
        inner: Inner::File {
            file: f,
            stdin: false,
        },
        progress,
        expected_sha256: None,
        name: path.clone(),
    })
}
