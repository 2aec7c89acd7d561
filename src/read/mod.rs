//! Reading an archive as a stream: every frame, every tar member against
//! HEAD, every file against SUMS, and the footer hash.
//!
//! The reader trusts nothing: HEAD is validated before any member is looked
//! at, each member must be exactly the next HEAD entry (path, type, size)
//! before a byte of it is handed on, and no length from the archive is
//! allocated before the bytes arrive.

pub mod data;
pub mod frames;
pub mod input;
mod sink;
pub mod workers;

pub use sink::{FileSink, NullSink, Sink};

use std::io::Read;
use std::path::Path;
use std::sync::{Mutex, mpsc};

use crate::read::workers::{Budget, Dispatch, Job, Pool, Queue, worker};

use crate::error::{Error, Result};
use crate::format::footer::{FOOT_LEN, Footer};
use crate::format::frame::{MAX_HEAD_BODY, MAX_SUMS_BODY, TAG_HEAD, TAG_SUMS};
use crate::format::head::{Entry, EntryKind, Head};
use crate::format::sums;
use crate::read::data::DataDecoder;
use crate::read::frames::{read_skippable, read_skippable_header, walk_zstd_frames};
use crate::read::input::{Body, HashPipe, Input, truncated};

/// Most zero padding accepted after the tar end-of-archive block.
const MAX_TAR_PADDING: u64 = 1024 * 1024;
const CHUNK: usize = 256 * 1024;

/// How much of the archive to check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Depth {
    /// Frames, footer hash, HEAD and SUMS structure; no decompression.
    Quick,
    /// Everything: also decompress, match every tar member against HEAD and
    /// every file against SUMS.
    Full,
}

/// What a successful read found.
#[derive(Debug, Clone)]
pub struct ReadSummary {
    /// The archive's HEAD.
    pub head: Head,
    /// Archive size in bytes.
    pub bytes: u64,
    /// SHA-256 of the whole archive.
    pub sha256: [u8; 32],
    /// Number of zstd data frames.
    pub frames: u64,
}

/// Reads and validates only HEAD (for `list`).
pub fn read_head<R: Read>(src: R, name: &Path) -> Result<Head> {
    let mut input = Input::new(src, name);
    Head::parse(&read_skippable(&mut input, &TAG_HEAD, MAX_HEAD_BODY)?)
}

/// Reads a whole archive from `src`, feeding `sink`, and checks it to `depth`.
pub fn read_archive<R: Read, S: Sink>(
    src: R,
    name: &Path,
    depth: Depth,
    sink: &mut S,
) -> Result<ReadSummary> {
    read_archive_hashed(src, name, depth, sink, HashPipe::default())
}

/// [`read_archive`], with the archive's SHA-256 computed by `hasher`.
pub fn read_archive_hashed<R: Read, S: Sink>(
    src: R,
    name: &Path,
    depth: Depth,
    sink: &mut S,
    hasher: HashPipe,
) -> Result<ReadSummary> {
    let mut input = Input::with_hasher(src, name, hasher);
    let head = Head::parse(&read_skippable(&mut input, &TAG_HEAD, MAX_HEAD_BODY)?)?;
    sink.head(&head)?;
    let (digests, frames) = match depth {
        Depth::Full => {
            let (d, f) = read_data(&mut input, &head, &*sink)?;
            (Some(d), f)
        }
        Depth::Quick => (None, walk_zstd_frames(&mut input)?),
    };
    let sums_len = read_skippable_header(&mut input, &TAG_SUMS, MAX_SUMS_BODY)?;
    let mut body = Body::new(&mut input, sums_len);
    let checked = sums::check_stream(&mut body, &head, digests.as_deref(), &mut |i, d| {
        sink.file_sum(i, d)
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
        head,
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
        _ => Err("non-regular"),
    }
}

/// Decodes DATA, checks every member against HEAD, feeds `sink`, and
/// returns the SHA-256 of every file (in order) and the frame count.
///
/// The calling thread decompresses and checks members; file data goes in
/// bounded queues to worker threads that hash it and hand it to the sink.
/// All files of one directory go to the same worker.
fn read_data<R: Read, S: Sink>(
    input: &mut Input<R>,
    head: &Head,
    sink: &S,
) -> Result<(Vec<[u8; 32]>, u64)> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let workers = sink.workers(cores).clamp(1, 4);
    let failed: Mutex<Option<Error>> = Mutex::new(None);
    let budgets: Vec<Budget> = (0..workers).map(|_| Budget::default()).collect();
    let pool = Pool::new(CHUNK);
    std::thread::scope(|scope| {
        let mut queues = Vec::with_capacity(workers);
        let mut handles = Vec::with_capacity(workers);
        for budget in &budgets {
            let (tx, rx) = mpsc::channel();
            queues.push(Queue::new(tx, budget));
            let failed = &failed;
            let entries = &head.entries[..];
            let pool = &pool;
            handles.push(scope.spawn(move || worker(sink, entries, rx, budget, failed, pool)));
        }
        let mut dispatch = Dispatch::new(queues);
        let produced = produce(input, head, sink, &mut dispatch, &failed, &pool);
        drop(dispatch);
        let mut digests = vec![[0u8; 32]; head.file_count()];
        for h in handles {
            for (i, d) in h.join().expect("reader worker panicked") {
                digests[i] = d;
            }
        }
        if let Some(e) = failed.lock().unwrap_or_else(|e| e.into_inner()).take() {
            return Err(e);
        }
        let frames = produced?;
        Ok((digests, frames))
    })
}

/// The reading side: decompresses, checks each member against HEAD and
/// queues file data to the worker that owns its directory.
fn produce<R: Read, S: Sink>(
    input: &mut Input<R>,
    head: &Head,
    sink: &S,
    queues: &mut Dispatch<'_>,
    failed: &Mutex<Option<Error>>,
    pool: &Pool,
) -> Result<u64> {
    // No buffer between the decoder and tar: file data is decompressed
    // straight into the chunk that goes to a worker.
    let dec = DataDecoder::new(input)?;
    let mut ar = tar::Archive::new(dec);
    let mut idx = 0usize;
    let mut file_no = 0usize;
    let worker_error = || {
        failed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
            .unwrap_or(Error::Interrupted)
    };
    for member in ar.entries_with_seek().map_err(tar_err)? {
        let mut member = member.map_err(tar_err)?;
        let want = match_head(&member, head.entries.get(idx))?;
        match want.kind {
            EntryKind::Dir => sink.dir(want)?,
            EntryKind::File => {
                let q = queues.queue_for(want);
                // A closed queue means a worker failed; its error is
                // reported instead.
                send_file(&mut member, want.size, q, idx, file_no, pool)
                    .map_err(|e| e.unwrap_or_else(worker_error))?;
                file_no += 1;
            }
        }
        idx += 1;
    }
    if let Some(missing) = head.entries.get(idx) {
        return Err(Error::hostile(
            &missing.path,
            "HEAD entry missing from the tar stream",
        ));
    }
    for q in queues.all() {
        if q.flush().is_err() {
            return Err(worker_error());
        }
    }
    check_tar_end(ar.into_inner())
}

/// Checks that a tar member is exactly the next HEAD entry (`want`): its
/// path, type and size, before a byte of it is handed on.
fn match_head<'h, R: Read>(
    member: &tar::Entry<'_, R>,
    want: Option<&'h Entry>,
) -> Result<&'h Entry> {
    let raw = member.path_bytes();
    let shown = String::from_utf8_lossy(&raw).into_owned();
    let Some(want) = want else {
        return Err(Error::hostile(shown, "tar member not listed in HEAD"));
    };
    let kind = member_kind(member.header().entry_type()).map_err(|what| {
        Error::hostile(
            &shown,
            format!("{what} member: only files and directories are allowed"),
        )
    })?;
    let mut path: &[u8] = &raw;
    if kind == EntryKind::Dir && path.len() > 1 && path.ends_with(b"/") {
        path = &path[..path.len() - 1];
    }
    if path != want.path.as_bytes() {
        return Err(Error::hostile(
            shown,
            format!("tar member does not match HEAD entry {:?}", want.path),
        ));
    }
    if kind != want.kind {
        return Err(Error::hostile(
            shown,
            format!(
                "tar member is a {} but HEAD says {}",
                kind.as_str(),
                want.kind.as_str()
            ),
        ));
    }
    let size = member.size();
    if size != want.size {
        return Err(Error::hostile(
            shown,
            format!("tar member is {size} bytes but HEAD declares {}", want.size),
        ));
    }
    Ok(want)
}

/// Sends the `size` bytes of a file member to its worker's queue `q`, in
/// pooled chunks. `Err(None)`: the queue was closed by a failed worker.
fn send_file(
    member: &mut impl Read,
    size: u64,
    q: &mut Queue<'_>,
    entry: usize,
    file: usize,
    pool: &Pool,
) -> std::result::Result<(), Option<Error>> {
    let send = |q: &mut Queue<'_>, job| q.push(job).map_err(|_| None);
    send(q, Job::Start { entry, file })?;
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
fn check_tar_end<R: Read>(mut rest: DataDecoder<'_, R>) -> Result<u64> {
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
