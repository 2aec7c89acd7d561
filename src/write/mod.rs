//! Writing a version-2 archive: HEAD, DATA as independent zstd frames
//! compressed in parallel with INDEX blocks between them, then TABLE,
//! META and TAIL, to any `Write` (a temporary file, stdout, an upload),
//! hashing everything written. Nothing grows with the number of files:
//! the data dir is walked as it is written (see `FORMAT.md`).

mod delta;
mod frames;
mod hash;
mod index;
mod members;
mod source;

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::format::frame::{TAG_HEAD, write_skippable, write_skippable_json};
use crate::format::head::{Entry, EntryKind};
use crate::format::v2::{
    Head2, MAX_HEAD2_BODY, MAX_META_BODY, Meta, TAG_META, TAG_TABLE, Tail, cap_warnings,
};
use crate::store::s3::Uploaded;
use crate::sydradb::live::{self, FileKind};
use crate::sydradb::scan::{Captured, Scan};
use crate::sydradb::source::{Tree, not_regular};
use crate::sydradb::walk::{Found, Walk};
use crate::sys::{Kind, Stat};

pub use delta::BaseState;
pub(crate) use delta::hash_range;
use delta::{Delta, Seen, WalDecision};
use frames::Frames;
use hash::HashWriter;
use members::{Members, Source};

/// Tar bytes per DATA frame, by default.
pub const DEFAULT_FRAME_BYTES: usize = 2 * 1024 * 1024;
/// Files listed ahead of writing, so the recently written ones among them
/// settle together (in the same rounds, one deadline).
const SETTLE_BATCH: usize = 256;

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
        };
        let path = tree.full(&wal_entry.path);
        let got = m.file(&e, &path, Source::Range { file, from: offset })?;
        if got != tail_sha256 {
            return Err(source::changed(&path, "while it was archived"));
        }
    }
    Ok(())
}

/// What [`seal`] wrote.
struct Sealed {
    bytes: u64,
    sha256: [u8; 32],
    files: u64,
    dirs: u64,
    data_bytes: u64,
}

/// Ends an archive whose DATA and INDEX frames are written: TABLE, META
/// and TAIL. Returns the output writer.
fn seal<W: Write>(
    m: Members<'_, '_, W>,
    version: u64,
    skipped: &[String],
    wal: &[crate::format::head::WalPosition],
    warnings: &[String],
    on_error: &OnError<'_>,
) -> Result<(W, Sealed)> {
    let wrap = |e| on_error.wrap(e);
    let Members {
        frames,
        index,
        files,
        dirs,
        data_bytes,
        ..
    } = m;
    let data_frames = frames.frames();
    let mut w = frames.into_out();

    // TABLE, META: hashed together for TAIL.
    let table_offset = w.count;
    let mut meta_hash = Sha256::new();
    let mut table = Vec::with_capacity(index.rows.len() * 64);
    for r in &index.rows {
        table.extend(r.encode());
    }
    let mut framed = Vec::with_capacity(16 + table.len());
    write_skippable(&mut framed, &TAG_TABLE, &table).map_err(wrap)?;
    meta_hash.update(&framed);
    w.write_all(&framed).map_err(wrap)?;
    let meta = Meta {
        files,
        dirs,
        total_bytes: data_bytes,
        frames: data_frames,
        skipped: skipped.to_vec(),
        wal: wal.to_vec(),
        warnings: warnings.to_vec(),
        first_paths: index.first_paths,
    };
    let meta_offset = w.count;
    let mut framed = Vec::new();
    write_skippable_json(&mut framed, &TAG_META, &meta, MAX_META_BODY).map_err(wrap)?;
    meta_hash.update(&framed);
    w.write_all(&framed).map_err(wrap)?;
    let tail = Tail {
        version,
        table_offset,
        meta_offset,
        body_len: w.count,
        entries: index.entries,
        blocks: index.rows.len() as u64,
        meta_sha256: meta_hash.finalize().into(),
        body_sha256: w.hasher.clone().finalize().into(),
    };
    w.write_all(&tail.encode()).map_err(wrap)?;
    w.flush().map_err(wrap)?;
    let bytes = w.count;
    let sha256: [u8; 32] = w.hasher.finalize().into();
    Ok((
        w.inner,
        Sealed {
            bytes,
            sha256,
            files,
            dirs,
            data_bytes,
        },
    ))
}

/// Writes a synthetic archive to `out`: the layout's top level and
/// `files` segment files of `file_bytes` bytes each (deterministic,
/// compressible content), `per_dir` to an hour directory, made in memory
/// by the real writer. For tests and benchmarks of memory and speed at
/// file counts no test machine should create on disk; returns the
/// archive's size and SHA-256.
pub fn write_synthetic<W: Write>(
    out: W,
    files: u64,
    file_bytes: usize,
    per_dir: u64,
    threads: u32,
) -> Result<(W, u64, [u8; 32])> {
    let name = Path::new("synthetic");
    let on_error = OnError {
        out_name: name,
        level: 3,
        threads,
    };
    let wrap = |e| on_error.wrap(e);
    let mut w = HashWriter::new(out, name);
    let head = Head2::new(
        1_800_000_000_000,
        "synthetic".into(),
        3,
        DEFAULT_FRAME_BYTES as u64,
    );
    write_skippable_json(&mut w, &TAG_HEAD, &head, MAX_HEAD2_BODY).map_err(wrap)?;
    let frames = Frames::new(w, 3, threads, DEFAULT_FRAME_BYTES).map_err(wrap)?;
    let mut m = Members::new(frames, None, &on_error);
    let e = |path: String, kind: EntryKind, size: u64| Entry {
        path,
        kind,
        size,
        mode: if kind == EntryKind::Dir { 0o755 } else { 0o644 },
        mtime: 1_800_000_000,
    };
    let bytes = |seed: u64, n: usize| -> Vec<u8> {
        let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..n)
            .map(|i| {
                if i % 8 == 0 {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                }
                // Half predictable, half not: about as compressible as
                // segments are.
                if i % 2 == 0 {
                    (x >> (i % 8 * 8)) as u8
                } else {
                    (i / 64) as u8
                }
            })
            .collect()
    };
    let file = |m: &mut Members<'_, '_, W>, path: String, data: Vec<u8>| {
        let en = e(path, EntryKind::File, data.len() as u64);
        m.file(
            &en,
            name,
            Source::Captured(Captured::Settled(live::Content::Bytes(data))),
        )
    };
    file(&mut m, "MANIFEST".into(), b"{}\n".to_vec())?;
    m.dir(&e("segments".into(), EntryKind::Dir, 0))?;
    let per_dir = per_dir.max(1);
    let mut i = 0u64;
    let mut hour = 1_748_736_000u64;
    while i < files {
        m.dir(&e(format!("segments/{hour}"), EntryKind::Dir, 0))?;
        for _ in 0..per_dir.min(files - i) {
            file(
                &mut m,
                format!("segments/{hour}/{i:012x}-{hour}.seg"),
                bytes(i, file_bytes),
            )?;
            i += 1;
        }
        hour += 3600;
    }
    file(&mut m, "tags.json".into(), b"{}".to_vec())?;
    m.dir(&e("wal".into(), EntryKind::Dir, 0))?;
    file(&mut m, "wal/current.wal".into(), Vec::new())?;
    m.finish()?;
    let (w, sealed) = seal(m, crate::format::v2::VERSION2, &[], &[], &[], &on_error)?;
    Ok((w, sealed.bytes, sealed.sha256))
}

fn entry(rel: String, kind: EntryKind, st: &Stat) -> Entry {
    Entry {
        path: rel,
        kind,
        size: if kind == EntryKind::File { st.size } else { 0 },
        mode: st.mode & 0o777,
        mtime: st.mtime.max(0),
    }
}

/// Writes everything below `segments/` as the walk finds it. Consecutive
/// files are listed a batch ahead, so the recently written segments among
/// them are read until they settle together.
fn write_walk<W: Write>(
    m: &mut Members<'_, '_, W>,
    tree: &Tree,
    mut walk: Walk,
    mut delta: Option<&mut Delta<'_>>,
) -> Result<()> {
    // For an incremental: whether a listed file is new or changed (a
    // segment is compared by size, mode and mtime: written once, never
    // modified), before it is opened.
    let wanted = |delta: &mut Option<&mut Delta<'_>>, found: &Found| -> Result<bool> {
        let Some(d) = delta else { return Ok(true) };
        let (e, is_dir) = match found {
            Found::Dir { rel, stat } => (entry(rel.clone(), EntryKind::Dir, stat), true),
            Found::File { rel, stat, .. } => (entry(rel.clone(), EntryKind::File, stat), false),
        };
        let base = d.advance(Some((&e.path, e.kind)))?;
        if is_dir {
            return Ok(d.wanted(Seen::Dir(&e), base.as_ref()));
        }
        if live::kind_of(&e.path) == FileKind::Segment {
            return Ok(d.wanted(Seen::Segment(&e), base.as_ref()));
        }
        // Anything else below segments/ is not SydraDB's: compared by its
        // content too (when the base has a file of the same size there).
        let Found::File { dir, name, .. } = found else {
            unreachable!("a file")
        };
        let same_size = base
            .as_ref()
            .is_some_and(|b| b.kind == EntryKind::File && b.size == e.size);
        if !same_size {
            return Ok(d.wanted(Seen::Segment(&e), base.as_ref()));
        }
        let path = tree.full(&e.path);
        let sha = match dir.open_file(name) {
            Ok((f, _)) => delta::file_sha(&f, e.size, &path)?,
            // Gone or unreadable now: the write below says what it is.
            Err(_) => [0; 32],
        };
        Ok(d.wanted(Seen::Hashed(&e, sha), base.as_ref()))
    };
    let mut next = walk.next_found()?;
    while let Some(found) = next.take() {
        match found {
            Found::Dir { rel, stat } => {
                let dir = Found::Dir { rel, stat };
                if wanted(&mut delta, &dir)? {
                    let Found::Dir { rel, stat } = dir else {
                        unreachable!()
                    };
                    write_parents(m, delta.as_deref_mut(), &rel)?;
                    m.dir(&entry(rel, EntryKind::Dir, &stat))?;
                }
                next = walk.next_found()?;
            }
            file @ Found::File { .. } => {
                let mut batch = Vec::new();
                if wanted(&mut delta, &file)? {
                    batch.push(file);
                }
                next = walk.next_found()?;
                while batch.len() < SETTLE_BATCH && matches!(next, Some(Found::File { .. })) {
                    let file = next.take().expect("matched");
                    if wanted(&mut delta, &file)? {
                        batch.push(file);
                    }
                    next = walk.next_found()?;
                }
                if let Some(first) = batch.first()
                    && let Found::File { rel, .. } = first
                {
                    write_parents(m, delta.as_deref_mut(), rel)?;
                }
                write_batch(m, tree, batch)?;
            }
        }
    }
    Ok(())
}

fn write_batch<W: Write>(m: &mut Members<'_, '_, W>, tree: &Tree, batch: Vec<Found>) -> Result<()> {
    let now = live::unix_now();
    let hot: Vec<(usize, String, FileKind)> = batch
        .iter()
        .enumerate()
        .filter_map(|(i, f)| match f {
            Found::File { rel, stat, .. } => {
                let kind = live::kind_of(rel);
                (kind == FileKind::Segment && stat.mtime >= now - live::HOT_WINDOW_SECS)
                    .then(|| (i, rel.clone(), kind))
            }
            Found::Dir { .. } => None,
        })
        .collect();
    let mut settled: Vec<Option<live::Settled>> = Vec::new();
    if !hot.is_empty() {
        settled.resize_with(batch.len(), || None);
        for (i, s) in live::settle_all(tree, hot)? {
            settled[i] = Some(s);
        }
    }
    for (i, found) in batch.into_iter().enumerate() {
        let Found::File {
            rel,
            stat,
            dir,
            name,
        } = found
        else {
            continue;
        };
        let path = tree.full(&rel);
        if let Some(s) = settled.get_mut(i).and_then(Option::take) {
            if let Some(w) = s.warning {
                m.warnings.push(w);
            }
            let e = entry(rel, EntryKind::File, &s.stat);
            m.file(&e, &path, Source::Captured(Captured::Settled(s.content)))?;
            continue;
        }
        let (file, opened) = match dir.open_file(&name) {
            Ok(x) => x,
            Err(err) if err.kind() == io::ErrorKind::NotFound => {
                m.warnings.push(format!(
                    "{rel}: removed while the archive was written (compaction or retention); left out"
                ));
                continue;
            }
            Err(err) => return Err(crate::sydradb::source::open_error("open", path, err)),
        };
        if opened.kind != Kind::File {
            return Err(not_regular(path, opened.kind));
        }
        if opened.size != stat.size || opened.mtime != stat.mtime {
            return Err(source::changed(&path, "since it was listed"));
        }
        let e = entry(rel, EntryKind::File, &opened);
        m.file(&e, &path, Source::Opened { file, opened })?;
    }
    Ok(())
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
