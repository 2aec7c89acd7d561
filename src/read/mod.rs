//! Reading an archive as a stream: every frame, every tar member, every
//! file's digest, the index and the archive hash.
//!
//! The reader trusts nothing. In a version-1 archive, HEAD is validated
//! before any member is looked at and each member must be exactly the next
//! HEAD entry before a byte of it is handed on. In a version-2 archive,
//! each member is checked on its own (allowed type, legal path, tree
//! order) before a byte of it is handed on, and the index records the
//! data rebuilds must hash to exactly the records the INDEX blocks hold;
//! the blocks, TABLE, META and TAIL must all agree (see `FORMAT.md`). No
//! length from the archive is allocated before the bytes arrive, and no
//! list of entries is held for a version-2 archive.
//!
//! `source` opens an archive wherever it is (a path, stdin, an object,
//! encrypted or not) for every command to read through; `own` checks an
//! incremental's own members as they stream by.

pub mod data;
mod expect;
pub mod frames;
pub mod index;
pub mod input;
pub mod own;
mod pool;
mod sink;
pub mod source;
mod v2;
pub mod workers;

pub use sink::{FileSink, NullSink, Plan, Sink};
pub use v2::{list_from_end, plan_from_end, read_block, read_end, table_rows};

use std::cell::RefCell;
use std::io::Read;
use std::path::Path;
use std::sync::{Mutex, mpsc};

use serde::Deserialize;

use crate::read::workers::{Budget, Dispatch, Job, Pool, Queue, worker};

use crate::error::{Error, Result};
use crate::format::footer::{FOOT_LEN, Footer};
use crate::format::frame::{MAX_HEAD_BODY, MAX_SUMS_BODY, TAG_HEAD, TAG_SUMS};
use crate::format::head::{Entry, EntryKind, Head, WalPosition};
use crate::format::sums;
use crate::format::v2::{Head2, MAX_HEAD2_BODY, VERSION2};
use crate::read::data::DataDecoder;
use crate::read::expect::{Expect, HeadExpect, Seen};
use crate::read::frames::{read_skippable, read_skippable_header, walk_zstd_frames};
use crate::read::input::{Body, HashPipe, Input, truncated};

/// Most zero padding accepted after the tar end-of-archive block.
const MAX_TAR_PADDING: u64 = 1024 * 1024;
const CHUNK: usize = 256 * 1024;
/// Records (or digests) the reader lets wait for a worker before it
/// waits itself: bounds the memory of a directory of tiny files.
const MAX_WAITING: usize = 8192;

/// How much of the archive to check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Depth {
    /// Frames, archive hash, and the metadata's structure (HEAD and SUMS;
    /// the index, TABLE, META and TAIL); no decompression of the data.
    Quick,
    /// Everything: also decompress, check every tar member against the
    /// metadata and every file against its digest.
    Full,
}

/// What an archive says about itself, whatever its version.
#[derive(Debug, Clone, Default)]
pub struct Info {
    /// Format version (1, 2, or 3 for an incremental).
    pub version: u64,
    /// When the archive was written.
    pub created_unix_ms: u64,
    /// The writer.
    pub tool: String,
    /// The data directory as given to `create`.
    pub source: String,
    /// zstd level of the data.
    pub zstd_level: i32,
    /// File entries.
    pub files: u64,
    /// Directory entries.
    pub dirs: u64,
    /// Sum of the file sizes.
    pub total_bytes: u64,
    /// Top-level names left out.
    pub skipped: Vec<String>,
    /// The WAL position captured.
    pub wal: Vec<WalPosition>,
    /// Problems found while the data dir was read.
    pub warnings: Vec<String>,
    /// For an incremental archive (version 3): the archive it was made on.
    pub base: Option<crate::format::incremental::BaseRef>,
}

impl Info {
    fn of_head(h: &Head) -> Info {
        let files = h.file_count() as u64;
        Info {
            version: h.version,
            created_unix_ms: h.created_unix_ms,
            tool: h.tool.clone(),
            source: h.source.clone(),
            zstd_level: h.zstd_level,
            files,
            dirs: h.entries.len() as u64 - files,
            total_bytes: h.total_bytes,
            skipped: h.skipped.clone(),
            wal: h.wal.clone(),
            warnings: h.warnings.clone(),
            base: None,
        }
    }

    pub(crate) fn of_head2(h: &Head2, m: &crate::format::v2::Meta) -> Info {
        Info {
            version: h.version,
            created_unix_ms: h.created_unix_ms,
            tool: h.tool.clone(),
            source: h.source.clone(),
            zstd_level: h.zstd_level,
            files: m.files,
            dirs: m.dirs,
            total_bytes: m.total_bytes,
            skipped: m.skipped.clone(),
            wal: m.wal.clone(),
            warnings: m.warnings.clone(),
            base: h.base.clone(),
        }
    }

    /// Files and directories.
    pub fn entries(&self) -> u64 {
        self.files + self.dirs
    }
}

/// What a successful read found.
#[derive(Debug, Clone)]
pub struct ReadSummary {
    /// What the archive says about itself.
    pub info: Info,
    /// Archive size in bytes.
    pub bytes: u64,
    /// SHA-256 of the whole archive.
    pub sha256: [u8; 32],
    /// Number of zstd data frames.
    pub frames: u64,
}

/// HEAD, by version.
enum Opened {
    V1(Head),
    V2(Head2),
}

#[derive(Deserialize)]
struct VersionProbe {
    format: Option<serde_json::Value>,
    version: Option<serde_json::Value>,
}

fn open_head<R: Read>(input: &mut Input<R>) -> Result<Opened> {
    let body = read_skippable(input, &TAG_HEAD, MAX_HEAD_BODY)?;
    let v2 = serde_json::from_slice::<VersionProbe>(&body).is_ok_and(|p| {
        p.format.as_ref().and_then(|f| f.as_str()) == Some(crate::format::head::FORMAT_NAME)
            && matches!(
                p.version.as_ref().and_then(|v| v.as_u64()),
                Some(VERSION2 | crate::format::incremental::VERSION3)
            )
    });
    if v2 {
        if body.len() as u64 > MAX_HEAD2_BODY {
            return Err(Error::corrupt(format!(
                "version-2 HEAD is {} bytes (at most {MAX_HEAD2_BODY})",
                body.len()
            )));
        }
        return Ok(Opened::V2(Head2::parse(&body)?));
    }
    Ok(Opened::V1(Head::parse(&body)?))
}

/// Reads a whole archive from `src`, feeding `sink`, and checks it to
/// `depth`, decoding data frames on the default threads (see
/// [`resolve_threads`]).
pub fn read_archive<R: Read, S: Sink>(
    src: R,
    name: &Path,
    depth: Depth,
    sink: &mut S,
) -> Result<ReadSummary> {
    read_archive_hashed(src, name, depth, sink, HashPipe::default(), 0)
}

/// [`read_archive`] with data decoded on `threads` threads (0: as many
/// as the cores left by the other stages, see [`resolve_threads`]; 1: data
/// frames are decoded as one stream by the reading thread).
pub fn read_archive_with<R: Read, S: Sink>(
    src: R,
    name: &Path,
    depth: Depth,
    sink: &mut S,
    threads: usize,
) -> Result<ReadSummary> {
    read_archive_hashed(src, name, depth, sink, HashPipe::default(), threads)
}

/// The cores of this machine.
fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The decoding threads for `threads`: itself, or for 0 the cores the
/// other stages leave (two: one hashes the archive, one or more hash and
/// write files), at least 1. On two cores a single decoding thread already
/// keeps both busy, and decoding apart only adds copies.
pub fn resolve_threads(threads: usize) -> usize {
    match threads {
        0 => cores().saturating_sub(2).max(1),
        n => n,
    }
}

/// [`read_archive`], with the archive's SHA-256 computed by `hasher` and
/// data decoded on `threads` threads (as [`read_archive_with`] takes them).
pub fn read_archive_hashed<R: Read, S: Sink>(
    src: R,
    name: &Path,
    depth: Depth,
    sink: &mut S,
    hasher: HashPipe,
    threads: usize,
) -> Result<ReadSummary> {
    let threads = resolve_threads(threads);
    let mut input = Input::with_hasher(src, name, hasher);
    match open_head(&mut input)? {
        Opened::V1(head) => read_v1(&mut input, head, depth, sink, None, threads),
        Opened::V2(head) => v2::read(&mut input, head, depth, sink, threads),
    }
}

/// What a listing is handed: each entry in archive order, with its
/// SHA-256 when it is a file and digests were asked for (or are free).
pub type Visit<'a> = dyn FnMut(&Entry, Option<&[u8; 32]>) -> Result<()> + 'a;

/// Lists the archive from `src` into `visit` and returns what it says
/// about itself and, when it was checked, its SHA-256.
///
/// A version-1 listing reads HEAD only (nothing is verified), unless
/// `sha256` is asked for: then the archive is checked as `verify --quick`
/// does before the first entry is handed on. A version-2 listing streams
/// the index as it reads the archive (checking it as `verify --quick`
/// does), so entries are handed on before the end is checked: an error
/// then means what was listed is not to be trusted.
pub fn list_archive<R: Read>(
    src: R,
    name: &Path,
    sha256: bool,
    visit: &mut Visit<'_>,
) -> Result<(Info, Option<[u8; 32]>)> {
    list_archive_hashed(src, name, sha256, HashPipe::default(), visit)
}

/// [`list_archive`], with the archive's SHA-256 computed by `hasher`.
pub fn list_archive_hashed<R: Read>(
    src: R,
    name: &Path,
    sha256: bool,
    hasher: HashPipe,
    visit: &mut Visit<'_>,
) -> Result<(Info, Option<[u8; 32]>)> {
    let mut input = Input::with_hasher(src, name, hasher);
    match open_head(&mut input)? {
        Opened::V1(head) => {
            if !sha256 {
                for e in &head.entries {
                    visit(e, None)?;
                }
                return Ok((Info::of_head(&head), None));
            }
            let mut sums = Vec::new();
            let s = read_v1(
                &mut input,
                head.clone(),
                Depth::Quick,
                &mut NullSink,
                Some(&mut sums),
                1,
            )?;
            let mut files = sums.iter();
            for e in &head.entries {
                let d = match e.kind {
                    EntryKind::File => files.next(),
                    EntryKind::Dir => None,
                };
                visit(e, d)?;
            }
            Ok((s.info, Some(s.sha256)))
        }
        Opened::V2(head) => v2::list(&mut input, head, visit).map(|s| (s.info, Some(s.sha256))),
    }
}

/// Reads a version-1 archive after its HEAD. `sums`: where the SHA-256
/// SUMS lists are collected (for `list --sha256`).
fn read_v1<R: Read, S: Sink>(
    input: &mut Input<R>,
    head: Head,
    depth: Depth,
    sink: &mut S,
    sums: Option<&mut Vec<[u8; 32]>>,
    threads: usize,
) -> Result<ReadSummary> {
    let info = Info::of_head(&head);
    sink.plan(&Plan {
        files: info.files,
        dirs: info.dirs,
        total_bytes: info.total_bytes,
    })?;
    let (digests, frames) = match depth {
        Depth::Full => {
            let mut expect = HeadExpect::new(&head);
            let dec = DataDecoder::new(input)?.parallel(threads);
            let (frames, _) = read_data(dec, &mut expect, &*sink)?;
            (Some(expect.into_digests()), frames)
        }
        Depth::Quick => (None, walk_zstd_frames(input)?),
    };
    let sums_len = read_skippable_header(input, &TAG_SUMS, MAX_SUMS_BODY)?;
    let mut body = Body::new(input, sums_len);
    let mut collect = sums;
    let checked = sums::check_stream(&mut body, &head, digests.as_deref(), &mut |_, d| {
        if let Some(v) = collect.as_deref_mut() {
            v.push(*d);
        }
    });
    let unread = body.left();
    checked?;
    if unread != 0 {
        return Err(Error::corrupt("SUMS frame holds bytes after its JSON"));
    }
    let body_len = input.position();
    // The digest is collected after FOOT has been read and checked for
    // place, so a misplaced FOOT is reported as such.
    let body_mark = input.mark();
    if input.at_eof()? {
        return Err(Error::corrupt(
            "missing FOOT frame: archive ends after SUMS",
        ));
    }
    let mut foot = [0u8; FOOT_LEN];
    input.read_exact(&mut foot, "the FOOT frame")?;
    let footer = Footer::decode(&foot)?;
    if !input.at_eof()? {
        return Err(Error::corrupt("bytes after the FOOT frame"));
    }
    let body_sha = input.resolve(body_mark)?;
    footer.check(body_len, &body_sha)?;
    Ok(ReadSummary {
        info,
        bytes: input.position(),
        sha256: input.digest()?,
        frames,
    })
}

fn tar_err(e: std::io::Error) -> Error {
    match Error::from_carrier(e) {
        Ok(ours) => ours,
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => truncated("the tar stream"),
        Err(e) => Error::corrupt(format!("tar stream: {e}")),
    }
}
fn member_kind(t: tar::EntryType) -> std::result::Result<EntryKind, &'static str> {
    use tar::EntryType as T;
    match t {
        T::Regular => Ok(EntryKind::File),
        T::Directory => Ok(EntryKind::Dir),
        T::Symlink => Err("symlink"),
        T::Link => Err("hardlink"),
        T::Char | T::Block => Err("device"),
        T::Fifo => Err("fifo"),
        T::GNUSparse => Err("sparse file"),
        T::XGlobalHeader => Err("pax global header"),
        T::XHeader => Err("pax extended header"),
        T::GNULongLink => Err("GNU long link name"),
        _ => Err("non-regular"),
    }
}

/// Decodes DATA from `dec`, checks every member against `expect`, feeds
/// `sink`, and returns the frame count and the decoder (for what
/// follows DATA).
///
/// The calling thread decompresses and checks members; file data goes in
/// bounded queues to worker threads that hash it and hand it to the sink,
/// and their digests come back to `expect`. All files of one directory go
/// to the same worker.
fn read_data<'i, 'a, R: Read, S: Sink, E: Expect>(
    dec: DataDecoder<'a, 'i, R>,
    expect: &mut E,
    sink: &S,
) -> Result<(u64, DataDecoder<'a, 'i, R>)> {
    let workers = sink.workers(cores()).clamp(1, 4);
    let failed: Mutex<Option<Error>> = Mutex::new(None);
    let budgets: Vec<Budget> = (0..workers).map(|_| Budget::default()).collect();
    let pool = Pool::new(CHUNK);
    let (done_tx, done_rx) = mpsc::channel::<(usize, [u8; 32])>();
    let dec = RefCell::new(dec);
    let produced = std::thread::scope(|scope| {
        let mut queues = Vec::with_capacity(workers);
        let mut handles = Vec::with_capacity(workers);
        for budget in &budgets {
            let (tx, rx) = mpsc::channel();
            queues.push(Queue::new(tx, budget));
            let failed = &failed;
            let pool = &pool;
            let done = done_tx.clone();
            handles.push(scope.spawn(move || worker(sink, rx, budget, failed, pool, &done)));
        }
        drop(done_tx);
        let mut dispatch = Dispatch::new(queues);
        let produced = produce(&dec, expect, sink, &mut dispatch, &failed, &pool, &done_rx);
        drop(dispatch);
        for h in handles {
            h.join().expect("reader worker panicked");
        }
        produced
    });
    if let Some(e) = failed.lock().unwrap_or_else(|e| e.into_inner()).take() {
        return Err(e);
    }
    produced?;
    for (file, d) in done_rx.try_iter() {
        expect.digest(file, d)?;
    }
    expect.end()?;
    let mut dec = dec.into_inner();
    let frames = check_tar_end(&mut dec)?;
    Ok((frames, dec))
}

/// The decoder, shared between the tar reader and the frame lookups.
struct Shared<'r, 'a, 'i, R>(&'r RefCell<DataDecoder<'a, 'i, R>>);

impl<R: Read> Read for Shared<'_, '_, '_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.0.borrow_mut().read(buf)
    }
}

impl<R: Read> std::io::Seek for Shared<'_, '_, '_, R> {
    fn seek(&mut self, to: std::io::SeekFrom) -> std::io::Result<u64> {
        self.0.borrow_mut().seek(to)
    }
}

/// The reading side: decompresses, checks each member and queues file
/// data to the worker that owns its directory.
fn produce<R: Read, S: Sink, E: Expect>(
    dec: &RefCell<DataDecoder<'_, '_, R>>,
    expect: &mut E,
    sink: &S,
    queues: &mut Dispatch<'_>,
    failed: &Mutex<Option<Error>>,
    pool: &Pool,
    done: &mpsc::Receiver<(usize, [u8; 32])>,
) -> Result<()> {
    // No buffer between the decoder and tar: file data is decompressed
    // straight into the chunk that goes to a worker.
    let mut ar = tar::Archive::new(Shared(dec));
    let mut file_no = 0usize;
    // Raw: every header comes here, so nothing tar-rs would apply on its
    // own (pax records, GNU long links, sparse maps) can make a member
    // mean something other than what was checked. The one extension the
    // format has, a GNU long-name record, is read here, bounded.
    let mut long_name: Option<Vec<u8>> = None;
    let worker_error = || {
        failed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
            .unwrap_or(Error::Interrupted)
    };
    for member in ar.entries_with_seek().map_err(tar_err)?.raw(true) {
        let mut member = member.map_err(tar_err)?;
        if member.header().entry_type() == tar::EntryType::GNULongName {
            if long_name.is_some() {
                return Err(Error::corrupt("two GNU long-name records in a row"));
            }
            long_name = Some(read_long_name(&mut member)?);
            continue;
        }
        let want = {
            let seen = seen(&member, dec, long_name.take())?;
            expect.member(&seen)?
        };
        match want.kind {
            EntryKind::Dir => sink.dir(&want)?,
            EntryKind::File => {
                let size = want.size;
                let q = queues.queue_for(&want);
                // A closed queue means a worker failed; its error is
                // reported instead.
                send_file(&mut member, size, q, want, file_no, pool)
                    .map_err(|e| e.unwrap_or_else(worker_error))?;
                file_no += 1;
            }
        }
        for (file, d) in done.try_iter() {
            expect.digest(file, d)?;
        }
        if expect.waiting() > MAX_WAITING {
            for q in queues.all() {
                if q.flush().is_err() {
                    return Err(worker_error());
                }
            }
            // A failed worker sends no more digests while the others
            // wait for work: the failure is looked for between waits.
            while expect.waiting() > MAX_WAITING / 2 {
                match done.recv_timeout(std::time::Duration::from_millis(50)) {
                    Ok((file, d)) => expect.digest(file, d)?,
                    Err(mpsc::RecvTimeoutError::Timeout) => {
                        let stopped = failed.lock().unwrap_or_else(|e| e.into_inner()).is_some();
                        if stopped {
                            return Err(worker_error());
                        }
                    }
                    Err(mpsc::RecvTimeoutError::Disconnected) => return Err(worker_error()),
                }
            }
        }
    }
    if long_name.is_some() {
        return Err(Error::corrupt(
            "a GNU long-name record is not followed by a member",
        ));
    }
    for q in queues.all() {
        if q.flush().is_err() {
            return Err(worker_error());
        }
    }
    Ok(())
}

/// The name a GNU long-name record holds (at most a path's length and
/// its NUL; read whole only once its size is checked).
fn read_long_name(member: &mut impl Read) -> Result<Vec<u8>> {
    let limit = crate::format::path::MAX_PATH_LEN as u64 + 1;
    let mut name = Vec::new();
    member
        .take(limit + 1)
        .read_to_end(&mut name)
        .map_err(tar_err)?;
    if name.len() as u64 > limit {
        return Err(Error::corrupt(format!(
            "a GNU long-name record longer than {limit} bytes"
        )));
    }
    if name.last() == Some(&0) {
        name.pop();
    }
    Ok(name)
}

/// What a tar member says about itself (its path from `long_name` when a
/// GNU long-name record came before it), and where its header is.
fn seen<'m, R: Read>(
    member: &'m tar::Entry<'_, Shared<'_, '_, '_, R>>,
    dec: &RefCell<DataDecoder<'_, '_, R>>,
    long_name: Option<Vec<u8>>,
) -> Result<Seen<'m>> {
    let raw = match long_name {
        Some(n) => std::borrow::Cow::Owned(n),
        None => member.path_bytes(),
    };
    let shown = String::from_utf8_lossy(&raw).into_owned();
    let kind = member_kind(member.header().entry_type()).map_err(|what| {
        Error::hostile(
            &shown,
            format!("{what} member: only files and directories are allowed"),
        )
    })?;
    let header = member.header();
    let bad = |what: &str| Error::hostile(&shown, format!("tar header has an invalid {what}"));
    let mode = header.mode().map_err(|_| bad("mode"))?;
    let mtime = header.mtime().map_err(|_| bad("mtime"))?;
    let pos = member.raw_header_position();
    let frame = dec.borrow_mut().frame_of(pos);
    Ok(Seen {
        path: raw,
        kind,
        size: member.size(),
        mode,
        mtime,
        frame,
    })
}

/// Sends the `size` bytes of a file member to its worker's queue `q`, in
/// pooled chunks. `Err(None)`: the queue was closed by a failed worker.
fn send_file(
    member: &mut impl Read,
    size: u64,
    q: &mut Queue<'_>,
    entry: Entry,
    file: usize,
    pool: &Pool,
) -> std::result::Result<(), Option<Error>> {
    let send = |q: &mut Queue<'_>, job| q.push(job).map_err(|_| None);
    send(
        q,
        Job::Start {
            entry: Box::new(entry),
            file,
        },
    )?;
    let mut got = 0u64;
    loop {
        let left = (size - got).max(1);
        let mut buf = if left >= CHUNK as u64 {
            pool.take()
        } else {
            vec![0u8; left as usize]
        };
        let n = member.read(&mut buf).map_err(|e| Some(tar_err(e)))?;
        if n == 0 {
            break;
        }
        buf.truncate(n);
        got += n as u64;
        send(q, Job::Data(buf))?;
    }
    if got != size {
        return Err(Some(truncated("the tar stream")));
    }
    send(q, Job::End)
}

/// tar-rs stops after the first zero block; the rest of DATA must be the
/// second zero block and at most some more zero padding. Returns the
/// number of zstd frames DATA held.
fn check_tar_end<R: Read>(rest: &mut DataDecoder<'_, '_, R>) -> Result<u64> {
    let mut buf = vec![0u8; CHUNK];
    let mut padding = 0u64;
    loop {
        let n = rest.read(&mut buf).map_err(tar_err)?;
        if n == 0 {
            break;
        }
        if buf[..n].iter().any(|&b| b != 0) {
            return Err(Error::corrupt("data after the end of the tar stream"));
        }
        padding += n as u64;
        if padding > MAX_TAR_PADDING {
            return Err(Error::corrupt(
                "more than 1 MiB of padding after the tar stream",
            ));
        }
    }
    if padding < 512 {
        return Err(Error::corrupt(
            "tar stream lacks its end-of-archive zero blocks",
        ));
    }
    Ok(rest.frames())
}
