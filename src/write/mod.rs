//! Writing an archive: HEAD, the zstd-compressed tar stream of the data
//! dir's members (DATA), SUMS and FOOT, to any `Write` (a temporary file,
//! stdout, an upload), hashing everything written.

mod hash;
mod members;
mod source;

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use sha2::Digest;

use crate::error::{Error, Result};
use crate::format::footer::Footer;
use crate::format::frame::{
    MAX_HEAD_BODY, MAX_SUMS_BODY, TAG_HEAD, TAG_SUMS, write_skippable_json,
};
use crate::format::head::{FORMAT_NAME, Head, VERSION};
use crate::format::sums::SumsView;
use crate::store::s3::Uploaded;
use crate::sydradb::scan::Scan;

use hash::HashWriter;
use members::Members;

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
    /// The WAL position captured (see [`crate::format::head::WalPosition`]).
    pub wal: Vec<crate::format::head::WalPosition>,
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

/// How write errors are reported: zstd running out of memory says what to
/// lower; anything else names the output.
struct OnError<'a> {
    out_name: &'a Path,
    level: i32,
    threads: u32,
}

impl OnError<'_> {
    fn wrap(&self, e: io::Error) -> Error {
        // zstd's ZSTD_error_memory_allocation.
        if e.to_string().starts_with("Allocation error") {
            return Error::Refused(format!(
                "zstd could not allocate the memory for --level {} with {} threads; lower --threads or --level",
                self.level, self.threads
            ));
        }
        from_io(e, "write", self.out_name)
    }
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
    let on_error = OnError {
        out_name,
        level: opts.level,
        threads,
    };
    let wrap = |e| on_error.wrap(e);
    let mut w = HashWriter::new(out, out_name);
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
        created_unix_ms: opts.created_unix_ms.unwrap_or_else(now_ms),
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
    if let Some(p) = &opts.progress {
        p.set_total(head.total_bytes);
    }

    let encoder = data_encoder(&mut w, opts.level, threads).map_err(wrap)?;
    let mut members = Members::new(
        encoder,
        &tree,
        captured,
        opts.progress.as_deref(),
        &on_error,
    );
    for (i, e) in head.entries.iter().enumerate() {
        members.append(i, e)?;
    }
    let done = members.finish()?;

    let sums = SumsView {
        entries: &head.entries,
        digests: &done.digests,
    };
    write_skippable_json(&mut w, &TAG_SUMS, &sums, MAX_SUMS_BODY).map_err(wrap)?;
    let footer = Footer::new(w.count, w.hasher.clone().finalize().into());
    w.write_all(&footer.encode()).map_err(wrap)?;
    w.flush().map_err(wrap)?;
    let bytes = w.count;
    let sha256: [u8; 32] = w.hasher.finalize().into();
    let mut all_warnings = head.warnings;
    all_warnings.extend(done.warnings);
    Ok((
        w.inner,
        CreateSummary {
            bytes,
            sha256,
            files: done.files,
            dirs: done.dirs,
            data_bytes: head.total_bytes,
            skipped: head.skipped,
            followed,
            removed_stale: Vec::new(),
            threads,
            wal: head.wal,
            warnings: all_warnings,
            uploaded: None,
        },
    ))
}

/// The DATA encoder: multi-threaded zstd with frame checksums.
fn data_encoder<W: Write>(
    w: W,
    level: i32,
    threads: u32,
) -> io::Result<zstd::stream::write::Encoder<'static, W>> {
    let mut enc = zstd::stream::write::Encoder::new(w, level)?;
    enc.include_checksum(true)?;
    enc.multithread(threads)?;
    // zstd's default job (4 windows) makes each worker hold ~16 MiB; 2 MiB
    // jobs keep create's peak RSS near 32 MiB at no cost in speed or size.
    enc.set_parameter(zstd::zstd_safe::CParameter::JobSize(MT_JOB_SIZE))?;
    Ok(enc)
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Turns an `io::Error` that came back through tar/zstd into the crate's
/// error: ours travel inside `io::Error::other`, anything else is an I/O
/// failure of `op` on `path`.
pub(crate) fn from_io(e: io::Error, op: &'static str, path: &Path) -> Error {
    Error::from_carrier(e).unwrap_or_else(|e| Error::io(op, path, e))
}
