//! `create`: scan a data dir and write its archive to a file (published
//! atomically), stdout or an object.

use std::fs::File;
use std::io::{self, IsTerminal, Read};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::format::incremental::BaseRef;
use crate::format::sums::hex;
use crate::ops::chain::{self, Link, open_chain};
use crate::store::crypt::Recipients;
use crate::store::location::Location;
use crate::store::publish::AtomicFile;
use crate::store::s3::{Remote, S3Options, S3Url, Upload};
use crate::sydradb::scan::{Scan, scan};
use crate::write::{BaseState, CreateOptions, CreateSummary, write_archive_on};

/// Where an archive goes.
#[derive(Debug, Clone)]
pub enum Output {
    /// Standard output (refused when it is a terminal).
    Stdout,
    /// A file, published atomically; an existing one is replaced only with `force`.
    File {
        /// Target path.
        path: PathBuf,
        /// Replace an existing target.
        force: bool,
    },
    /// An object, uploaded in parts and completed only once whole; an
    /// existing one is replaced only with `force`.
    S3 {
        /// Target object.
        url: S3Url,
        /// Endpoint and region overrides.
        options: S3Options,
        /// Replace an existing object.
        force: bool,
    },
}

/// Scans `data_dir` and writes its archive to `output`.
pub fn create(data_dir: &Path, output: &Output, opts: &CreateOptions) -> Result<CreateSummary> {
    create_on(data_dir, None, None, output, opts)
}

/// [`create`], or with `base` an incremental archive (format version 3)
/// of what changed since the archive at `base` (a full or an
/// incremental, whose own chain must be found: see
/// [`crate::ops::chain::open_chain`]).
///
/// With `sealed`, the whole archive is one age stream encrypted to its
/// recipients (see [`crate::store::crypt`]); the summary's size and
/// SHA-256 are then the ciphertext's, what is stored.
pub fn create_on(
    data_dir: &Path,
    base: Option<&Location>,
    sealed: Option<&Recipients>,
    output: &Output,
    opts: &CreateOptions,
) -> Result<CreateSummary> {
    let out_loc = match output {
        Output::Stdout => None,
        Output::File { path, .. } => Some(Location::Local(path.clone())),
        Output::S3 { url, options, .. } => Some(Location::S3 {
            url: url.clone(),
            options: options.clone(),
        }),
    };
    if let (Some(b), Some(o)) = (base, &out_loc)
        && same_archive(b, o)
    {
        return Err(Error::Refused(format!(
            "{o} is the base of the archive to write: replacing it would break the chain; write the incremental elsewhere"
        )));
    }
    // Serialised with a prune of the base's directory, and of the one the
    // incremental goes to (see `store::lock`).
    let mut _locks = Vec::new();
    if let Some(Location::Local(b)) = base {
        _locks.extend(crate::store::lock::lock_beside(b)?);
        if let Some(Location::Local(o)) = &out_loc {
            _locks.extend(crate::store::lock::lock_beside(o)?);
        }
    }
    let links = match base {
        Some(b) => Some(open_chain(b, &[])?),
        None => None,
    };
    // An incremental of an encrypted chain is encrypted too: its changes
    // are the same data.
    if let Some(links) = &links
        && sealed.is_none()
        && let Some(l) = links.iter().find(|l| l.encrypted)
    {
        return Err(Error::Refused(format!(
            "{} of the chain is encrypted: encrypt the incremental too (-r, -R or --passphrase-file)",
            l.loc
        )));
    }
    // Nor any archive of its chain: replacing one breaks the chain.
    if let (Some(links), Some(o)) = (&links, &out_loc)
        && let Some(l) = links.iter().find(|l| same_archive(&l.loc, o))
    {
        return Err(Error::Refused(format!(
            "{o} is {} of the chain the incremental is made on: replacing it would break the chain; write the incremental elsewhere",
            l.loc
        )));
    }
    match output {
        Output::Stdout => {
            let stdout = io::stdout();
            if stdout.is_terminal() {
                return Err(Error::Refused(
                    "refusing to write an archive to a terminal; use -o FILE or redirect stdout"
                        .into(),
                ));
            }
            // Nothing goes out before the chain is known to be good: the
            // model runs over it once first (a file or an object is
            // simply not published when it refuses midway).
            if let Some(links) = &links {
                for e in chain::state(links)? {
                    e?;
                }
            }
            let scan = scan(data_dir)?;
            let _lock = stdout.lock();
            // A duplicate of fd 1, for unbuffered writes of large chunks;
            // closing it leaves stdout open.
            let fd = stdout
                .as_fd()
                .try_clone_to_owned()
                .map_err(|e| Error::io("write", "-", e))?;
            let (_, summary) = write_sealed(
                scan,
                base_state(&links, out_loc.as_ref())?,
                File::from(fd),
                Path::new("-"),
                opts,
                sealed,
            )?;
            Ok(summary)
        }
        Output::File { path, force } => {
            // Refuse an existing target before doing any work.
            check_out_path(path)?;
            crate::store::publish::check_target(path, *force)?;
            let inside = inside_data_dir(data_dir, path)?;
            let state = base_state(&links, out_loc.as_ref())?;
            let scan = scan(data_dir)?;
            let (mut file, removed) = AtomicFile::create(path, *force)?;
            let written = write_sealed(scan, state, file.writer(), path, opts, sealed);
            match written {
                Ok((_, mut summary)) => {
                    if let Some(l) = links.as_ref().and_then(|l| l.last())
                        && let Err(e) = l.check_present()
                    {
                        let _ = file.abort();
                        return Err(e);
                    }
                    file.commit()?;
                    summary.removed_stale = removed;
                    summary.warnings.extend(inside);
                    Ok(summary)
                }
                Err(e) => {
                    // The archive error matters more than a failed cleanup.
                    let _ = file.abort();
                    Err(e)
                }
            }
        }
        Output::S3 {
            url,
            options,
            force,
        } => {
            // Refuse an existing object, and find out that the bucket is
            // reachable with these credentials, before doing any work.
            let remote = Remote::connect(url, options)?;
            remote.check_target(*force)?;
            let state = base_state(&links, out_loc.as_ref())?;
            let scan = scan(data_dir)?;
            let mut upload = Upload::start(&remote, estimate(&scan)?)?;
            let name = PathBuf::from(url.to_string());
            match write_sealed(scan, state, &mut upload, &name, opts, sealed) {
                Ok((_, mut summary)) => {
                    let uploaded = upload.finish(&summary.sha256)?;
                    summary.warnings.extend(uploaded.warnings.iter().cloned());
                    summary.uploaded = Some(uploaded);
                    Ok(summary)
                }
                Err(e) => {
                    // The archive error matters more than a failed abort.
                    let _ = upload.abort();
                    Err(e)
                }
            }
        }
    }
}

/// Refuses an output inside the data dir's layout (`wal/`, `segments/`,
/// wherever they point): the next `create` would archive the archive.
/// Elsewhere inside the data dir it is only worth a warning (left out of
/// later archives as not part of the layout).
fn inside_data_dir(data_dir: &Path, out: &Path) -> Result<Option<String>> {
    use std::os::unix::fs::MetadataExt;
    // Directories are compared by device and inode, not by path: a bind
    // mount or a symlink names the same directory by another path.
    let id = |p: &Path| std::fs::metadata(p).ok().map(|m| (m.dev(), m.ino()));
    let (Some(data), Ok((dir, _))) = (id(data_dir), crate::store::publish::split(out)) else {
        return Ok(None);
    };
    let Ok(dir) = std::fs::canonicalize(dir) else {
        return Ok(None);
    };
    let tops: Vec<(&str, (u64, u64))> = crate::format::path::TOP_DIRS
        .iter()
        .filter_map(|top| id(&data_dir.join(top)).map(|i| (*top, i)))
        .collect();
    let mut inside = false;
    for ancestor in dir.ancestors() {
        let Some(a) = id(ancestor) else { continue };
        if let Some((top, _)) = tops.iter().find(|(_, t)| *t == a) {
            return Err(Error::Refused(format!(
                "{} is inside the data dir's layout ({top}/ of {}): the next create would archive it; write it outside the data dir",
                out.display(),
                data_dir.display()
            )));
        }
        inside |= a == data;
    }
    Ok(inside.then(|| {
        format!(
            "the archive is written inside the data dir {}; later archives leave it out (it is not part of the layout), but it shares the database's disk",
            data_dir.display()
        )
    }))
}

/// Refuses an `OUT` that cannot be written before any work is done: one
/// that ends in `/`, or whose directory does not exist.
fn check_out_path(out: &Path) -> Result<()> {
    use std::os::unix::ffi::OsStrExt;
    if out.as_os_str().as_bytes().ends_with(b"/") {
        return Err(Error::Refused(format!(
            "{} ends in `/`: -o names the archive file, not a directory",
            out.display()
        )));
    }
    // A directory named without its `/`: say how to write into it.
    if std::fs::metadata(out).is_ok_and(|m| m.is_dir()) {
        return Err(Error::Refused(format!(
            "{} is a directory; to put a timestamped archive in it, write {}/",
            out.display(),
            out.display()
        )));
    }
    let (dir, _) = crate::store::publish::split(out)?;
    match std::fs::metadata(&dir) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(Error::Refused(format!(
            "{} is not a directory; cannot write {} into it",
            dir.display(),
            out.display()
        ))),
        Err(e) => Err(Error::io("find the directory of", out, e)),
    }
}

/// An upper estimate of the archive size of `scan`: the data, tar's header
/// and padding and the index per file (a walk of the data dir, without
/// reading a file).
fn estimate(scan: &Scan) -> Result<u64> {
    let (files, bytes) = scan.count()?;
    Ok(bytes + files * 2048 + (1 << 20))
}

/// The SHA-256 of the whole archive `l`: the one object metadata recorded
/// at upload, or hashed, checking on the way that everything before its
/// TAIL is what TAIL's `body_sha256` says: a corrupted base is refused
/// (an incremental recorded on it could never be restored, even from a
/// good copy).
fn whole_sha256(l: &Link) -> Result<String> {
    use sha2::{Digest, Sha256};
    if let Some(s) = &l.recorded_sha256 {
        return Ok(s.to_ascii_lowercase());
    }
    let body_len = l.tail.body_len;
    let mut r = l.src.stream(0, l.src.size)?;
    let mut h = Sha256::new();
    let mut at = 0u64;
    let mut body = None;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let want = if at < body_len {
            buf.len().min((body_len - at) as usize)
        } else {
            buf.len()
        };
        let n = match r.read(&mut buf[..want]) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(crate::write::from_io(e, "read", &l.loc.name())),
        };
        h.update(&buf[..n]);
        at += n as u64;
        if at == body_len {
            body = Some(h.clone().finalize());
        }
    }
    if at != l.src.size || body.as_deref() != Some(&l.tail.body_sha256[..]) {
        return Err(Error::corrupt(format!(
            "the base {} does not hash to what its TAIL records (corrupted or changed); verify it, or make a full archive",
            l.loc
        )));
    }
    if l.encrypted {
        // What is stored, and what a restore hashes, is the ciphertext:
        // hashed through the descriptor just read, never by reopening the
        // path (a swap in between would record another archive).
        let sha = match l.src.stored_sha256()? {
            Some(sha) => sha,
            None => {
                crate::ops::source::open_archive(&l.loc, None)?
                    .stored_sha256()?
                    .0
            }
        };
        return Ok(hex(&sha));
    }
    Ok(hex(&h.finalize()))
}

/// What the writer needs of the chain `links` (the base last) for an
/// incremental that goes to `out_loc`.
fn base_state<'l>(
    links: &'l Option<Vec<Link>>,
    out_loc: Option<&Location>,
) -> Result<Option<BaseState<'l>>> {
    let Some(links) = links else { return Ok(None) };
    let last = links.last().expect("a chain is never empty");
    let depth = last.head.base.as_ref().map_or(0, |b| b.depth) + 1;
    if depth > crate::format::incremental::MAX_CHAIN as u64 {
        return Err(Error::NotIncremental(format!(
            "{} ends a chain of {depth} archives, the most a reader follows",
            last.loc
        )));
    }
    Ok(Some(BaseState {
        base: BaseRef {
            sha256: whole_sha256(last)?,
            size: last.src.size,
            body_sha256: hex(&last.tail.body_sha256),
            location: chain::recorded_location(&last.loc, out_loc)?,
            depth,
        },
        entries: chain::state(links)?,
    }))
}

/// For `create --incremental` into the directory or prefix `shelf`: the
/// newest archive there as the base, unless there is none, or its chain
/// already holds `max_chain` archives (a full then starts a new chain),
/// or it cannot be used as a base (said in the second value: a full is
/// written instead).
pub fn choose_base(
    shelf: &str,
    options: &crate::store::s3::S3Options,
    max_chain: u64,
) -> Result<(Option<Location>, Option<String>)> {
    let s = crate::ops::prune::Shelf::parse(shelf, options)?;
    let listing = crate::ops::prune::ls(&s)?;
    let Some(newest) = listing.archives.first() else {
        return Ok((None, None));
    };
    let loc = match &s {
        crate::ops::prune::Shelf::Dir(d) => Location::Local(d.path().join(&newest.key)),
        crate::ops::prune::Shelf::S3(_) => Location::S3 {
            url: S3Url::parse(&newest.url)?,
            options: options.clone(),
        },
    };
    // The whole chain must be there: an incremental on a broken chain
    // could never be restored.
    match open_chain(&loc, &[]).map(|links| links.into_iter().next_back()) {
        Ok(Some(l)) => {
            let archives = l.head.base.as_ref().map_or(0, |b| b.depth) + 1;
            if archives >= max_chain {
                Ok((
                    None,
                    Some(format!(
                        "the newest archive {loc} ends a chain of {archives} {} (--max-chain {max_chain}): writing a full archive",
                        if archives == 1 { "archive" } else { "archives" }
                    )),
                ))
            } else {
                Ok((Some(loc), None))
            }
        }
        Ok(None) => Ok((None, None)),
        Err(e) => Ok((
            None,
            Some(format!(
                "the newest archive {loc} cannot be a base ({e}): writing a full archive"
            )),
        )),
    }
}

/// Whether two locations name the same archive (the same file, by device
/// and inode, or the same object).
fn same_archive(a: &Location, b: &Location) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (a, b) {
        (Location::Local(x), Location::Local(y)) => {
            match (std::fs::metadata(x), std::fs::metadata(y)) {
                (Ok(m), Ok(n)) => (m.dev(), m.ino()) == (n.dev(), n.ino()),
                _ => false,
            }
        }
        (Location::S3 { url: x, .. }, Location::S3 { url: y, .. }) => x == y,
        _ => false,
    }
}

/// Writes the archive of `scan` to `out`, or with `sealed` an age stream
/// of it: the summary's size and SHA-256 are then the ciphertext's, what
/// `out` receives. The age stream is finished explicitly.
fn write_sealed<W: std::io::Write + Send>(
    scan: crate::sydradb::scan::Scan,
    state: Option<BaseState<'_>>,
    out: W,
    name: &Path,
    opts: &CreateOptions,
    sealed: Option<&Recipients>,
) -> Result<(W, CreateSummary)> {
    use sha2::Digest;
    use std::io::Write;
    let Some(r) = sealed else {
        return write_archive_on(scan, state, out, name, opts);
    };
    let stored = Stored {
        inner: out,
        count: 0,
        hasher: sha2::Sha256::new(),
    };
    let record = crate::store::crypt::ChainRecord {
        base: state.as_ref().map(|s| s.base.clone()),
    };
    let mut enc = r.encrypt(stored, &record)?;
    // Encryption, the ciphertext's hash and the output run on a thread of
    // their own, fed 1 MiB at a time: they overlap the compression.
    std::thread::scope(|s| {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(4);
        // `None`: the stream ended early (the writer stopped, for its own
        // reason).
        let sealer = s.spawn(move || -> Result<Option<Stored<W>>> {
            // An empty chunk says the archive is complete: only then is the
            // age stream finished. A failed run leaves it visibly
            // truncated (age refuses it), never a clean, shorter stream.
            let mut complete = false;
            for chunk in rx {
                if chunk.is_empty() {
                    complete = true;
                    break;
                }
                enc.write_all(&chunk)
                    .map_err(|e| crate::write::from_io(e, "write", name))?;
            }
            if !complete {
                return Ok(None);
            }
            enc.finish()
                .map(Some)
                .map_err(|e| crate::write::from_io(e, "write", name))
        });
        let pipe = Chunks {
            tx: Some(tx),
            buf: Vec::with_capacity(CHUNK),
        };
        let written = write_archive_on(scan, state, pipe, name, opts).and_then(|(mut pipe, s)| {
            pipe.send()
                .and_then(|()| pipe.end())
                .map_err(|e| crate::write::from_io(e, "write", name))?;
            Ok(s)
        });
        // The sealer's own error (a full disk, a failed upload) says more
        // than the closed channel the writer saw.
        let sealed = sealer
            .join()
            .unwrap_or_else(|_| Err(Error::Refused("the encrypting thread panicked".into())));
        // The sealer's own error first; else the writer's (a refusal by
        // the chain model, a source error: the sealer only saw the stream
        // end early).
        let mut summary = match (written, sealed) {
            (Ok(s), Ok(Some(stored))) => (s, stored),
            (_, Err(e)) | (Err(e), Ok(_)) => return Err(e),
            (Ok(_), Ok(None)) => {
                return Err(Error::Refused("the archive was not completed".into()));
            }
        };
        let stored = summary.1;
        summary.0.bytes = stored.count;
        summary.0.sha256 = stored.hasher.finalize().into();
        summary.0.encrypted = true;
        Ok((stored.inner, summary.0))
    })
}

/// Bytes handed to the sealing thread at a time.
const CHUNK: usize = 1 << 20;

/// A writer that hands what it is given to another thread in chunks.
struct Chunks {
    tx: Option<std::sync::mpsc::SyncSender<Vec<u8>>>,
    buf: Vec<u8>,
}

impl Chunks {
    fn send(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let full = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK));
        match &self.tx {
            Some(tx) => tx
                .send(full)
                .map_err(|_| io::Error::other("the encrypting thread stopped")),
            None => Err(io::Error::other("the encrypting thread stopped")),
        }
    }
}

impl Chunks {
    /// Says the archive is complete (an empty chunk).
    fn end(&mut self) -> io::Result<()> {
        match &self.tx {
            Some(tx) => tx
                .send(Vec::new())
                .map_err(|_| io::Error::other("the encrypting thread stopped")),
            None => Err(io::Error::other("the encrypting thread stopped")),
        }
    }
}

impl std::io::Write for Chunks {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = data.len().min(CHUNK - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == CHUNK {
            self.send()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for Chunks {
    fn drop(&mut self) {
        // Closing the channel ends the sealing thread's loop (what was not
        // sent is not written: only a failed run drops unsent bytes).
        self.tx.take();
    }
}

/// Counts and hashes what is stored (the ciphertext).
struct Stored<W> {
    inner: W,
    count: u64,
    hasher: sha2::Sha256,
}

impl<W: std::io::Write> std::io::Write for Stored<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        use sha2::Digest;
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}
