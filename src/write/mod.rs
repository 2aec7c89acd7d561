//! Writing a version-2 archive: HEAD, DATA as independent zstd frames
//! compressed in parallel with INDEX blocks between them, then TABLE,
//! META and TAIL, to any `Write` (a temporary file, stdout, an upload),
//! hashing everything written. Nothing grows with the number of files:
//! the data dir is walked as it is written (see `FORMAT.md`).
//!
//! Here, HEAD and the top level in archive order (and, for an
//! incremental, its own members last); `walk` (everything below
//! `segments/`, batched so hot segments settle together), `delta` (an
//! incremental: what is new, changed, deleted or appended, against the
//! base's tree), `members` and `source` (the tar members and the files
//! they come from), `frames` (independent frames compressed in
//! parallel), `index` (INDEX blocks), `end` (TABLE, META, TAIL), `hash`
//! (the archive's SHA-256), `encrypt` (the archive as one age stream),
//! `synthetic` (archives made in memory).

mod delta;
mod encrypt;
mod end;
mod frames;
mod hash;
mod index;
mod members;
mod source;
mod splice;
mod synthetic;
mod walk;

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result, from_io};
use crate::format::frame::{TAG_HEAD, write_skippable_json};
use crate::format::head::{Entry, EntryKind};
use crate::format::v2::{Head2, MAX_HEAD2_BODY, cap_warnings};
use crate::store::s3::Uploaded;
use crate::sydradb::live;
use crate::sydradb::scan::{Captured, Scan};
use crate::sydradb::source::Tree;

pub use delta::BaseState;
pub(crate) use delta::hash_range;
use delta::{Delta, Seen, WalDecision};
pub use encrypt::{seal_with, write_sealed};
use end::seal;
use frames::Frames;
use hash::HashWriter;
use members::{Members, Source};
pub use splice::{Splice, write_spliced};
pub use synthetic::write_synthetic;
use walk::write_walk;

/// Tar bytes per DATA frame, by default.
pub const DEFAULT_FRAME_BYTES: usize = 2 * 1024 * 1024;

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
    /// Tar bytes per DATA frame.
    pub frame_bytes: usize,
}

impl Default for CreateOptions {
    fn default() -> Self {
        CreateOptions {
            level: 3,
            threads: 0,
            created_unix_ms: None,
            progress: None,
            frame_bytes: DEFAULT_FRAME_BYTES,
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
    /// For an incremental: the archive it was made on.
    pub base: Option<crate::format::incremental::BaseRef>,
    /// The archive is encrypted (its size and SHA-256 are the
    /// ciphertext's).
    pub encrypted: bool,
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
/// returns the writer. The stream is complete, TAIL included, when this
/// returns `Ok`; nothing is flushed or finished by `Drop`.
pub fn write_archive<W: Write>(
    scan: Scan,
    out: W,
    out_name: &Path,
    opts: &CreateOptions,
) -> Result<(W, CreateSummary)> {
    write_archive_on(scan, None, out, out_name, opts)
}

/// [`write_archive`], or with `base` an incremental archive (format
/// version 3) of what changed since `base`.
pub fn write_archive_on<W: Write>(
    scan: Scan,
    base: Option<BaseState<'_>>,
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
    let frame_bytes = opts.frame_bytes.clamp(4 * 1024, 64 * 1024 * 1024);
    let mut w = HashWriter::new(out, out_name);
    let created_ms = opts.created_unix_ms.unwrap_or_else(now_ms);
    let mut head = Head2::new(
        created_ms,
        scan.root().display().to_string(),
        opts.level,
        frame_bytes as u64,
    );
    // For an incremental: the walk merged with the base's tree; at the
    // `wal` directory, its WAL files matched with the base's (a rotation
    // renames a WAL file to a name that comes before it, so they are
    // matched all at once, before the first of them is written).
    let mut incremental = None;
    let mut plan_warnings = Vec::new();
    if let Some(base) = base {
        head = head.incremental(base.base.clone());
        incremental = Some((
            Delta::new(base.entries, Default::default())?,
            std::collections::HashMap::new(),
        ));
    }
    let version = head.version;
    write_skippable_json(&mut w, &TAG_HEAD, &head, MAX_HEAD2_BODY).map_err(wrap)?;
    if let Some(p) = &opts.progress {
        p.set_total(scan.count()?.1);
    }
    let mut segments = scan.walk_segments()?;
    let Scan {
        tree,
        entries,
        mut captured,
        skipped,
        followed,
        wal,
        mut warnings,
        ..
    } = scan;
    let frames = Frames::new(w, opts.level, threads, frame_bytes).map_err(wrap)?;
    let mut m = Members::new(frames, opts.progress.as_deref(), &on_error);
    let (mut delta, mut decisions) = match incremental {
        Some((d, dec)) => (Some(d), dec),
        None => (None, Default::default()),
    };
    // Appended WAL files: their tails are written last.
    let mut tails: Vec<(Entry, std::fs::File, WalDecision)> = Vec::new();
    for e in &entries {
        let path = tree.full(&e.path);
        let base = match &mut delta {
            Some(d) => d.advance(Some((&e.path, e.kind)))?,
            None => None,
        };
        if e.path == "wal"
            && e.kind == EntryKind::Dir
            && let Some(d) = &mut delta
        {
            let current: Vec<(Entry, &std::fs::File)> = entries
                .iter()
                .filter_map(|e| match captured.get(&e.path) {
                    Some(Captured::Held(f)) if e.kind == EntryKind::File => Some((e.clone(), f)),
                    _ => None,
                })
                .collect();
            let rest = d.take_rest()?;
            let (planned, moved, mut w) = delta::plan_wal(&current, &rest, &|p| tree.full(p))?;
            d.resume(rest, moved);
            decisions = planned;
            plan_warnings.append(&mut w);
        }
        match e.kind {
            EntryKind::Dir => {
                let wanted = match &mut delta {
                    Some(d) => d.wanted(Seen::Dir(e), base.as_ref()),
                    None => true,
                };
                if wanted {
                    write_parents(&mut m, delta.as_mut(), &e.path)?;
                    m.dir(e)?;
                }
                if e.path == "segments"
                    && let Some(walk) = segments.take()
                {
                    write_walk(&mut m, &tree, walk, delta.as_mut())?;
                }
            }
            EntryKind::File => {
                let src = match captured.remove(&e.path) {
                    Some(c) => Source::Captured(c),
                    None => {
                        let (file, opened) = tree.open_file(&e.path)?;
                        if opened.size != e.size || opened.mtime.max(0) != e.mtime {
                            return Err(source::changed(&path, "since the scan"));
                        }
                        Source::Opened { file, opened }
                    }
                };
                if let Some(d) = &mut delta {
                    let wanted = match &src {
                        Source::Captured(Captured::Held(file)) => {
                            match decisions
                                .get(&e.path)
                                .cloned()
                                .unwrap_or(WalDecision::Whole)
                            {
                                WalDecision::Unchanged => false,
                                WalDecision::Whole => true,
                                a @ WalDecision::Append { .. } => {
                                    d.appended(e, &a)?;
                                    let file = file
                                        .try_clone()
                                        .map_err(|err| Error::io("read", &path, err))?;
                                    tails.push((e.clone(), file, a));
                                    false
                                }
                            }
                        }
                        Source::Captured(Captured::Settled(c)) => {
                            let sha = delta::content_sha(c, &path)?;
                            d.wanted(Seen::Hashed(e, sha), base.as_ref())
                        }
                        // Not SydraDB's own (a file in wal/ that is not a
                        // WAL file): compared by content too.
                        Source::Opened { file, .. } => {
                            let sha = delta::file_sha(file, e.size, &path)?;
                            d.wanted(Seen::Hashed(e, sha), base.as_ref())
                        }
                        _ => d.wanted(Seen::Segment(e), base.as_ref()),
                    };
                    if !wanted {
                        continue;
                    }
                }
                write_parents(&mut m, delta.as_mut(), &e.path)?;
                m.file(e, &path, src)?;
            }
        }
    }
    if let Some(mut d) = delta {
        d.advance(None)?;
        write_own(&mut m, d, tails, created_ms, &tree)?;
    }
    m.finish()?;
    warnings.append(&mut plan_warnings);
    let mut all_warnings = warnings;
    all_warnings.append(&mut m.warnings);
    let all_warnings = cap_warnings(all_warnings);
    let (w, sealed) = seal(m, version, &skipped, &wal, &all_warnings, &on_error)?;
    Ok((
        w,
        CreateSummary {
            bytes: sealed.bytes,
            sha256: sealed.sha256,
            files: sealed.files,
            dirs: sealed.dirs,
            data_bytes: sealed.data_bytes,
            skipped,
            followed,
            removed_stale: Vec::new(),
            threads,
            wal,
            warnings: all_warnings,
            uploaded: None,
            base: head.base,
            encrypted: false,
        },
    ))
}

/// Writes the directories above `path` that an incremental held back
/// (unchanged ones, needed before a member below them).
fn write_parents<W: Write>(
    m: &mut Members<'_, '_, W>,
    delta: Option<&mut Delta<'_>>,
    path: &str,
) -> Result<()> {
    if let Some(d) = delta {
        for p in d.parents_of(path) {
            m.dir(&p)?;
        }
    }
    Ok(())
}

/// An incremental's own members, last: the operations, then the WAL
/// tails (each checked against the digest taken when it was planned: the
/// bytes must not have changed since).
fn write_own<W: Write>(
    m: &mut Members<'_, '_, W>,
    delta: Delta<'_>,
    mut tails: Vec<(Entry, std::fs::File, WalDecision)>,
    created_ms: u64,
    tree: &Tree,
) -> Result<()> {
    let (dir, changes, tails_dir) = delta::OWN;
    let mtime = (created_ms / 1000) as i64;
    let (spool, len) = delta.finish()?;
    m.dir(&delta::own_dir(dir, mtime))?;
    let e = Entry {
        path: changes.into(),
        kind: EntryKind::File,
        size: len,
        mode: 0o644,
        mtime,
        mtime_nsec: 0,
    };
    m.file(
        &e,
        Path::new(changes),
        Source::Captured(Captured::Settled(live::Content::Spooled(spool))),
    )?;
    if tails.is_empty() {
        return Ok(());
    }
    m.dir(&delta::own_dir(tails_dir, mtime))?;
    tails.sort_by(|a, b| {
        crate::format::incremental::tail_path(&a.0.path)
            .cmp(&crate::format::incremental::tail_path(&b.0.path))
    });
    for (wal_entry, file, d) in tails {
        let WalDecision::Append {
            offset,
            tail_sha256,
            ..
        } = d
        else {
            continue;
        };
        let e = Entry {
            path: crate::format::incremental::tail_path(&wal_entry.path),
            kind: EntryKind::File,
            size: wal_entry.size - offset,
            mode: wal_entry.mode,
            mtime: wal_entry.mtime,
            mtime_nsec: wal_entry.mtime_nsec,
        };
        let path = tree.full(&wal_entry.path);
        let got = m.file(&e, &path, Source::Range { file, from: offset })?;
        if got != tail_sha256 {
            return Err(source::changed(&path, "while it was archived"));
        }
    }
    Ok(())
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
