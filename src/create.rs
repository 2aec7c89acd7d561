//! Writing an archive: HEAD, the zstd-compressed tar stream, SUMS, FOOT.

use std::fs::File;
use std::io::{self, BufReader, IsTerminal, Read, Seek, SeekFrom, Write};
use std::mem::ManuallyDrop;
use std::os::fd::FromRawFd;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::check::Checker;
use crate::error::{Error, Result};
use crate::footer::Footer;
use crate::frame::{MAX_HEAD_BODY, MAX_SUMS_BODY, TAG_HEAD, TAG_SUMS, write_skippable_json};
use crate::head::{EntryKind, FORMAT_NAME, Head, VERSION};
use crate::live::{self, Content, FileKind};
use crate::publish::AtomicFile;
use crate::remote::{Remote, S3Options, S3Url, Upload, Uploaded};
use crate::scan::{Captured, Scan, scan};
use crate::sums::SumsView;

/// Bytes of input per zstd compression job.
const MT_JOB_SIZE: u32 = 2 * 1024 * 1024;

/// Options for writing an archive.
#[derive(Debug, Clone)]
pub struct CreateOptions {
    /// zstd compression level (default 3).
    pub level: i32,
    /// zstd worker threads; 0 means one per available core.
    pub threads: u32,
    /// Creation time recorded in HEAD; `None` means now.
    pub created_unix_ms: Option<u64>,
    /// Counts source bytes read, out of the scanned total.
    pub progress: Option<std::sync::Arc<crate::progress::Progress>>,
}

impl Default for CreateOptions {
    fn default() -> Self {
        CreateOptions {
            level: 3,
            threads: 0,
            created_unix_ms: None,
            progress: None,
        }
    }
}

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

/// What a finished `create` did.
#[derive(Debug, Clone)]
pub struct CreateSummary {
    /// Archive size in bytes.
    pub bytes: u64,
    /// SHA-256 of the whole archive (as `sha256sum` prints it).
    pub sha256: [u8; 32],
    /// Number of files archived.
    pub files: u64,
    /// Number of directories archived.
    pub dirs: u64,
    /// Bytes of file data archived.
    pub data_bytes: u64,
    /// Top-level names left out.
    pub skipped: Vec<String>,
    /// Symlinks followed.
    pub followed: Vec<String>,
    /// Stale temporary files of killed runs that were removed.
    pub removed_stale: Vec<PathBuf>,
    /// Threads used for compression.
    pub threads: u32,
    /// The WAL position captured (see [`crate::live::WalPosition`]).
    pub wal: Vec<crate::live::WalPosition>,
    /// Problems that did not stop the archive (cut WAL tails, segments that
    /// stayed broken, files that never parsed).
    pub warnings: Vec<String>,
    /// For an upload: the object, its parts and whether its metadata holds
    /// the SHA-256.
    pub uploaded: Option<Uploaded>,
}

/// Worker threads to use for `threads` (0 = all cores).
pub fn effective_threads(threads: u32) -> u32 {
    if threads > 0 {
        threads
    } else {
        std::thread::available_parallelism()
            .map(|n| n.get() as u32)
            .unwrap_or(1)
    }
}

/// Scans `data_dir` and writes its archive to `output`.
pub fn create(data_dir: &Path, output: &Output, opts: &CreateOptions) -> Result<CreateSummary> {
    match output {
        Output::Stdout => {
            let stdout = io::stdout();
            if stdout.is_terminal() {
                return Err(Error::Refused(
                    "refusing to write an archive to a terminal; use -o FILE or redirect stdout"
                        .into(),
                ));
            }
            let scan = scan(data_dir)?;
            let _lock = stdout.lock();
            // SAFETY: fd 1 is open for the life of the process; ManuallyDrop
            // keeps it from being closed. Unbuffered writes of large chunks.
            let mut out = ManuallyDrop::new(unsafe { File::from_raw_fd(1) });
            let (_, summary) = write_archive(scan, &mut *out, Path::new("-"), opts)?;
            Ok(summary)
        }
        Output::File { path, force } => {
            // Refuse an existing target before doing any work.
            crate::publish::check_target(path, *force)?;
            let inside = inside_data_dir(data_dir, path)?;
            let scan = scan(data_dir)?;
            let (mut file, removed) = AtomicFile::create(path, *force)?;
            let written = write_archive(scan, file.writer(), path, opts);
            match written {
                Ok((_, mut summary)) => {
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
            let scan = scan(data_dir)?;
            let mut upload = Upload::start(&remote, estimate(&scan))?;
            let name = PathBuf::from(url.to_string());
            match write_archive(scan, &mut upload, &name, opts) {
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
    let (Ok(data), Some(Ok(dir))) = (
        std::fs::canonicalize(data_dir),
        crate::publish::split(out)
            .ok()
            .map(|(dir, _)| std::fs::canonicalize(dir)),
    ) else {
        return Ok(None);
    };
    for top in crate::layout::TOP_DIRS {
        if let Ok(t) = std::fs::canonicalize(data.join(top))
            && dir.starts_with(&t)
        {
            return Err(Error::Refused(format!(
                "{} is inside the data dir's layout ({top}/ of {}): the next create would archive it; write it outside the data dir",
                out.display(),
                data_dir.display()
            )));
        }
    }
    Ok(dir.starts_with(&data).then(|| {
        format!(
            "the archive is written inside the data dir {}; later archives leave it out (it is not part of the layout), but it shares the database's disk",
            data_dir.display()
        )
    }))
}

/// An upper estimate of the archive size of `scan`: the data, tar's header
/// and padding per entry, and the HEAD and SUMS JSON.
fn estimate(scan: &Scan) -> u64 {
    scan.total_bytes + scan.entries.len() as u64 * 2048 + (1 << 20)
}

/// Writes the archive of `scan` to `out` (`out_name` names it in errors) and
/// returns the writer. The stream is complete, FOOT included, when this
/// returns `Ok`; nothing is flushed or finished by `Drop`.
pub fn write_archive<W: Write>(
    scan: Scan,
    out: W,
    out_name: &Path,
    opts: &CreateOptions,
) -> Result<(W, CreateSummary)> {
    let threads = effective_threads(opts.threads);
    let wrap = |e: io::Error| {
        // zstd's ZSTD_error_memory_allocation: say what to lower.
        if e.to_string().starts_with("Allocation error") {
            return Error::Refused(format!(
                "zstd could not allocate the memory for --level {} with {threads} threads; lower --threads or --level",
                opts.level
            ));
        }
        from_io(e, "write", out_name)
    };
    let mut w = HashWriter::new(out, out_name);
    let created_unix_ms = opts.created_unix_ms.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0)
    });
    let Scan {
        tree,
        entries,
        skipped,
        followed,
        total_bytes,
        captured,
        wal,
        warnings,
    } = scan;
    let head = Head {
        format: FORMAT_NAME.into(),
        version: VERSION,
        created_unix_ms,
        tool: format!("sydra-archive {}", env!("CARGO_PKG_VERSION")),
        source: tree.path().display().to_string(),
        zstd_level: opts.level,
        entries,
        total_bytes,
        skipped,
        wal,
        warnings,
    };
    write_skippable_json(&mut w, &TAG_HEAD, &head, MAX_HEAD_BODY).map_err(wrap)?;
    let progress = opts.progress.as_deref();
    if let Some(p) = progress {
        p.set_total(head.total_bytes);
    }

    let mut enc = zstd::stream::write::Encoder::new(&mut w, opts.level).map_err(wrap)?;
    enc.include_checksum(true).map_err(wrap)?;
    enc.multithread(threads).map_err(wrap)?;
    // zstd's default job (4 windows) makes each worker hold ~16 MiB; 2 MiB
    // jobs keep create's peak RSS near 32 MiB at no cost in speed or size.
    enc.set_parameter(zstd::zstd_safe::CParameter::JobSize(MT_JOB_SIZE))
        .map_err(wrap)?;
    // zstd's multi-threaded stream costs a lot per call: feed it 1 MiB at a
    // time, not tar's 512-byte headers and small files one by one.
    let mut tar = tar::Builder::new(io::BufWriter::with_capacity(1 << 20, enc));
    let mut digests: Vec<[u8; 32]> = Vec::with_capacity(head.file_count());
    let (mut files, mut dirs) = (0u64, 0u64);
    let mut warnings = head.warnings.clone();
    let mut captured = captured;
    for (i, e) in head.entries.iter().enumerate() {
        let mut header = tar::Header::new_gnu();
        header.set_mode(e.mode);
        header.set_mtime(e.mtime as u64);
        header.set_uid(0);
        header.set_gid(0);
        match e.kind {
            EntryKind::Dir => {
                header.set_entry_type(tar::EntryType::Directory);
                header.set_size(0);
                tar.append_data(&mut header, &e.path, io::empty())
                    .map_err(wrap)?;
                dirs += 1;
            }
            EntryKind::File => {
                header.set_entry_type(tar::EntryType::Regular);
                header.set_size(e.size);
                let path = tree.full(&e.path);
                // Big reads for big files; a small file gets a small buffer
                // (a new one is zeroed whole, and most segments are a few KiB).
                let buffer = (e.size as usize).clamp(8 * 1024, 256 * 1024);
                let mut append = |src: &mut dyn Read,
                                  check: Option<Checker>|
                 -> Result<([u8; 32], Option<Checker>)> {
                    let mut src = BufReader::with_capacity(
                        buffer,
                        SourceReader::new(src, &path, e.size, progress, check),
                    );
                    tar.append_data(&mut header, &e.path, &mut src)
                        .map_err(wrap)?;
                    Ok(src.into_inner().finish())
                };
                let digest = match captured.remove(&i) {
                    Some(Captured::Settled(Content::Bytes(bytes))) => {
                        append(&mut &bytes[..], None)?.0
                    }
                    Some(Captured::Settled(Content::Spooled(file)) | Captured::Held(file)) => {
                        let mut f: &File = &file;
                        f.seek(SeekFrom::Start(0))
                            .map_err(|err| Error::io("seek", &path, err))?;
                        append(&mut f, None)?.0
                    }
                    None => {
                        // Opened relative to the directories the scan held,
                        // never following a link; checked as it streams.
                        let (mut file, opened) = tree.open_file(&e.path)?;
                        if opened.size != e.size || opened.mtime.max(0) != e.mtime {
                            return Err(changed(&path, "since the scan"));
                        }
                        let kind = live::kind_of(&e.path);
                        let check = (kind != FileKind::Other).then(|| Checker::new(kind));
                        let (digest, check) = append(&mut file, check)?;
                        let now = crate::sys::fstat(&file)
                            .map_err(|err| Error::io("stat", &path, err))?;
                        if now.key() != opened.key() {
                            return Err(changed(&path, "while it was read"));
                        }
                        if let Some((off, why)) = check.and_then(Checker::finish) {
                            warnings.push(format!(
                                "{}: {why} at offset {off}; not modified for {}s, archived as it is",
                                e.path,
                                live::unix_now() - opened.mtime
                            ));
                        }
                        digest
                    }
                };
                digests.push(digest);
                files += 1;
            }
        }
    }
    let buffered = tar.into_inner().map_err(wrap)?;
    let enc = buffered.into_inner().map_err(|e| wrap(e.into_error()))?;
    enc.finish().map_err(wrap)?;

    drop(captured);
    let sums = SumsView {
        entries: &head.entries,
        digests: &digests,
    };
    write_skippable_json(&mut w, &TAG_SUMS, &sums, MAX_SUMS_BODY).map_err(wrap)?;
    let footer = Footer::new(w.count, w.hasher.clone().finalize().into());
    w.write_all(&footer.encode()).map_err(wrap)?;
    w.flush().map_err(wrap)?;
    let bytes = w.count;
    let sha256: [u8; 32] = w.hasher.finalize().into();
    Ok((
        w.inner,
        CreateSummary {
            bytes,
            sha256,
            files,
            dirs,
            data_bytes: head.total_bytes,
            skipped: head.skipped,
            followed,
            removed_stale: Vec::new(),
            threads,
            wal: head.wal,
            warnings,
            uploaded: None,
        },
    ))
}

/// Turns an `io::Error` that came back through tar/zstd into the crate's
/// error: ours travel inside `io::Error::other`, anything else is an I/O
/// failure of `op` on `path`.
pub(crate) fn from_io(e: io::Error, op: &'static str, path: &Path) -> Error {
    Error::from_carrier(e).unwrap_or_else(|e| Error::io(op, path, e))
}

/// The error for a file that changed while `create` archived it: its
/// size is already in HEAD, so no consistent copy can be made now.
fn changed(path: &Path, when: &str) -> Error {
    Error::Source {
        path: path.to_path_buf(),
        reason: format!("file changed {when} (it is being written); run create again"),
    }
}

/// Reads exactly the scanned size of a source, hashes it and feeds its
/// checker.
struct SourceReader<'a, R> {
    file: R,
    path: &'a Path,
    remaining: u64,
    hasher: Sha256,
    progress: Option<&'a crate::progress::Progress>,
    check: Option<Checker>,
}

impl<'a, R: Read> SourceReader<'a, R> {
    fn new(
        file: R,
        path: &'a Path,
        size: u64,
        progress: Option<&'a crate::progress::Progress>,
        check: Option<Checker>,
    ) -> Self {
        SourceReader {
            file,
            path,
            remaining: size,
            hasher: Sha256::new(),
            progress,
            check,
        }
    }

    fn finish(self) -> ([u8; 32], Option<Checker>) {
        (self.hasher.finalize().into(), self.check)
    }
}

impl<R: Read> Read for SourceReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.remaining == 0 || buf.is_empty() {
            return Ok(0);
        }
        let want = buf
            .len()
            .min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
        let n = loop {
            match self.file.read(&mut buf[..want]) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(io::Error::other(Error::io("read", self.path, e))),
            }
        };
        if n == 0 {
            return Err(io::Error::other(Error::Source {
                path: self.path.to_path_buf(),
                reason: format!(
                    "file shrank while being archived ({} bytes missing)",
                    self.remaining
                ),
            }));
        }
        self.hasher.update(&buf[..n]);
        if let Some(c) = &mut self.check {
            c.feed(&buf[..n]);
        }
        self.remaining -= n as u64;
        if let Some(p) = self.progress {
            p.add(n as u64);
        }
        Ok(n)
    }
}

/// Counts and hashes everything written through it; write errors carry the
/// output's name.
struct HashWriter<'a, W> {
    inner: W,
    name: &'a Path,
    count: u64,
    hasher: Sha256,
}

impl<'a, W: Write> HashWriter<'a, W> {
    fn new(inner: W, name: &'a Path) -> Self {
        HashWriter {
            inner,
            name,
            count: 0,
            hasher: Sha256::new(),
        }
    }
}

impl<W: Write> Write for HashWriter<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf).map_err(|e| {
            if e.kind() == io::ErrorKind::Interrupted {
                return e;
            }
            // The output's own errors (an upload's) pass through as they are.
            match Error::from_carrier(e) {
                Ok(ours) => io::Error::other(ours),
                Err(e) => io::Error::other(Error::io("write", self.name, e)),
            }
        })?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner
            .flush()
            .map_err(|e| io::Error::other(Error::io("flush", self.name, e)))
    }
}
