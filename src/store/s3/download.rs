//! Reading objects: FOOT first with a ranged GET, then the object,
//! pinned to the ETag seen: as several ranged GETs in flight at once
//! ([`RangedReader`]), or as one stream ([`ObjectReader`]).

use std::io::{self, Read};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use object_store::aws::AmazonS3;
use object_store::path::Path as ObjPath;
use object_store::{Attribute, GetOptions, GetRange, ObjectStore};

use crate::error::{Error, Result};
use crate::format::footer::FOOT_LEN;

use super::{Remote, S3Url, SHA256_METADATA, ranged_error, remote_error, runtime};

/// What the ranged read of an object's end found.
#[derive(Debug, Clone)]
pub struct Probe {
    /// Object size.
    pub size: u64,
    /// The object's ETag.
    pub e_tag: Option<String>,
    /// The SHA-256 recorded in metadata, if any (hex).
    pub sha256: Option<String>,
    /// Last modification, Unix milliseconds.
    pub modified_unix_ms: i64,
    /// TAIL's `body_sha256`, for a version-2 archive.
    pub body_sha256: Option<[u8; 32]>,
    /// An age file.
    pub encrypted: bool,
    /// Its age header's chain record, if it has one.
    pub record: Option<crate::store::crypt::ChainRecord>,
}

/// Bytes read from an object's end: a version-2 TAIL, whose last 64
/// bytes hold a version-1 FOOT's place.
const END_LEN: usize = crate::format::v2::TAIL_LEN;

/// The probes of object versions (by URL, ETag and whether the end was
/// checked): an archive's end is the same bytes for its version.
static PROBES: super::pieces::Memo<Probe> = super::pieces::Memo::new(10_000);
/// The size and ETag the newest listing saw of each object.
static LISTED: super::pieces::Memo<(u64, String)> = super::pieces::Memo::new(10_000);

/// Probes the object at `path`; `size`, when the caller knows it (from a
/// listing), makes the read a bounded range and skips objects too small;
/// `e_tag` (from a listing too) pins the read to that version, which
/// makes a probe of it already done the answer.
pub(super) async fn probe_path(
    store: &AmazonS3,
    url: &S3Url,
    path: &ObjPath,
    size: Option<u64>,
    e_tag: Option<&str>,
) -> Result<Probe> {
    let p = probe_path_checked(store, url, path, size, true, e_tag).await?;
    if let Some(t) = &p.e_tag {
        LISTED.put(url.to_string(), (p.size, t.clone()));
    }
    Ok(p)
}

/// The version of `url` a listing saw at `size` bytes, if one did.
pub(super) fn listed_version(url: &S3Url, size: u64) -> Option<String> {
    LISTED
        .get(&url.to_string())
        .and_then(|(n, t)| (n == size).then_some(t))
}

/// [`probe_path`] of an object a listing saw, pinned to the version it
/// saw; unpinned when none did, or that version is gone.
pub(super) async fn probe_listed(store: &AmazonS3, url: &S3Url, path: &ObjPath) -> Result<Probe> {
    if let Some((size, t)) = LISTED.get(&url.to_string()) {
        match probe_path_checked(store, url, path, Some(size), true, Some(&t)).await {
            Ok(p) => return Ok(p),
            Err(_) => LISTED.remove(&url.to_string()),
        }
    }
    probe_path(store, url, path, None, None).await
}

/// An encrypted archive's probe: its start must be an age file's.
pub(super) async fn probe_encrypted(
    store: &AmazonS3,
    url: &S3Url,
    path: &ObjPath,
    size: u64,
) -> Result<Probe> {
    let got = store
        .get_opts(
            path,
            GetOptions {
                range: Some(GetRange::Bounded(
                    0..size.clamp(22, crate::store::crypt::MAX_HEADER as u64),
                )),
                ..Default::default()
            },
        )
        .await
        .map_err(|e| remote_error("read", url, e))?;
    let meta = got.meta.clone();
    let attrs = got.attributes.clone();
    let bytes = got
        .bytes()
        .await
        .map_err(|e| remote_error("read", url, e))?;
    if !crate::store::crypt::is_encrypted(&bytes) {
        return Err(Error::corrupt(format!("{url} is not an age file")));
    }
    Ok(Probe {
        size: meta.size,
        e_tag: meta.e_tag,
        sha256: attrs
            .get(&Attribute::Metadata(SHA256_METADATA.into()))
            .map(|v| v.as_ref().to_string()),
        modified_unix_ms: meta.last_modified.timestamp_millis(),
        body_sha256: None,
        encrypted: true,
        // A header that does not parse has no record to go by.
        record: crate::store::crypt::chain_record(&bytes).ok().flatten(),
    })
}

/// [`probe_path`] without the check of the end (an encrypted archive).
pub(super) async fn probe_path_unchecked(
    store: &AmazonS3,
    url: &S3Url,
    path: &ObjPath,
) -> Result<Probe> {
    probe_path_checked(store, url, path, None, false, None).await
}

async fn probe_path_checked(
    store: &AmazonS3,
    url: &S3Url,
    path: &ObjPath,
    size: Option<u64>,
    check: bool,
    e_tag: Option<&str>,
) -> Result<Probe> {
    let memo = |t: &str| format!("{url}\0{t}\0{check}");
    if let Some(p) = e_tag.and_then(|t| PROBES.get(&memo(t)))
        && size.is_none_or(|n| n == p.size)
    {
        return Ok(p);
    }
    let range = match size {
        Some(n) if n < FOOT_LEN as u64 => {
            return Err(Error::corrupt(format!(
                "{url} is {n} bytes, too short to be an archive"
            )));
        }
        Some(n) => GetRange::Bounded(n - n.min(END_LEN as u64)..n),
        None => GetRange::Suffix(END_LEN as u64),
    };
    let got = async {
        let r = store
            .get_opts(
                path,
                GetOptions {
                    range: Some(range),
                    if_match: e_tag.map(str::to_string),
                    ..Default::default()
                },
            )
            .await?;
        let meta = r.meta.clone();
        let attrs = r.attributes.clone();
        let bytes = r.bytes().await?;
        Ok::<_, object_store::Error>((meta, attrs, bytes))
    };
    let (meta, attrs, bytes) = got.await.map_err(|e| remote_error("read", url, e))?;
    if meta.size < FOOT_LEN as u64 || bytes.len() as u64 != meta.size.min(END_LEN as u64) {
        return Err(Error::corrupt(format!(
            "{url} is {} bytes, too short to be an archive",
            meta.size
        )));
    }
    if check {
        crate::format::v2::check_end(&bytes, meta.size, &url.to_string())?;
    }
    let sha256 = attrs
        .get(&Attribute::Metadata(SHA256_METADATA.into()))
        .map(|v| v.as_ref().to_string());
    let p = Probe {
        size: meta.size,
        e_tag: meta.e_tag,
        sha256,
        modified_unix_ms: meta.last_modified.timestamp_millis(),
        body_sha256: crate::format::v2::Tail::body_sha256_of(&bytes),
        encrypted: false,
        record: None,
    };
    if let Some(t) = &p.e_tag {
        PROBES.put(memo(t), p.clone());
    }
    Ok(p)
}

/// Bytes gathered per block handed to the reading thread.
const READ_BLOCK: usize = 256 * 1024;
/// Blocks read ahead of the reading thread (at most 2 MiB).
const READ_AHEAD_BLOCKS: usize = 8;

/// A streaming reader of an object, reading ahead at most
/// `READ_AHEAD_BLOCKS` blocks of `READ_BLOCK` bytes.
pub struct ObjectReader {
    rx: tokio::sync::mpsc::Receiver<object_store::Result<Bytes>>,
    cur: Bytes,
    url: S3Url,
    task: tokio::task::JoinHandle<()>,
}

impl ObjectReader {
    /// Opens the whole object of `remote`, `size` bytes, pinned to `e_tag`
    /// when given: with the remote's concurrency of ranged GETs in flight
    /// (see [`RangedReader`]), or as one stream when it is 1.
    pub fn open(remote: &Remote, e_tag: Option<String>, size: u64) -> Result<Box<dyn Read + Send>> {
        match (remote.opts.concurrency(), &e_tag) {
            // Without an ETag pieces cannot be pinned: one stream.
            (1, _) | (_, None) => Ok(Box::new(ObjectReader::open_range(remote, e_tag, None)?)),
            (n, Some(_)) => Ok(Box::new(RangedReader::new(remote, e_tag, 0..size, n)?)),
        }
    }

    /// Opens bytes `range` of the object (all of it for `None`).
    pub fn open_range(
        remote: &Remote,
        e_tag: Option<String>,
        range: Option<std::ops::Range<u64>>,
    ) -> Result<ObjectReader> {
        let url = &remote.url;
        let path = url.object()?;
        let rt = runtime()?;
        let result = rt
            .block_on(remote.store.get_opts(
                &path,
                GetOptions {
                    if_match: e_tag,
                    range: range.map(GetRange::Bounded),
                    ..Default::default()
                },
            ))
            .map_err(|e| remote_error("read", url, e))?;
        let (tx, rx) = tokio::sync::mpsc::channel(READ_AHEAD_BLOCKS);
        let task = rt.spawn(async move {
            // Servers send small chunks (4 KiB from some): gather them into
            // blocks so the reading thread wakes once per block, not per chunk.
            let mut stream = result.into_stream();
            let mut block = BytesMut::new();
            loop {
                match stream.next().await {
                    Some(Ok(chunk)) => {
                        if block.is_empty() && chunk.len() >= READ_BLOCK {
                            if tx.send(Ok(chunk)).await.is_err() {
                                return;
                            }
                            continue;
                        }
                        block.extend_from_slice(&chunk);
                        if block.len() >= READ_BLOCK
                            && tx.send(Ok(block.split().freeze())).await.is_err()
                        {
                            return;
                        }
                    }
                    Some(Err(e)) => {
                        if !block.is_empty() {
                            let _ = tx.send(Ok(block.split().freeze())).await;
                        }
                        let _ = tx.send(Err(e)).await;
                        return;
                    }
                    None => {
                        if !block.is_empty() {
                            let _ = tx.send(Ok(block.split().freeze())).await;
                        }
                        return;
                    }
                }
            }
        });
        Ok(ObjectReader {
            rx,
            cur: Bytes::new(),
            url: url.clone(),
            task,
        })
    }
}

impl Read for ObjectReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.cur.is_empty() {
            match self.rx.blocking_recv() {
                Some(Ok(b)) => self.cur = b,
                Some(Err(e)) => {
                    return Err(io::Error::other(remote_error("read", &self.url, e)));
                }
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.cur.len());
        buf[..n].copy_from_slice(&self.cur[..n]);
        let _ = self.cur.split_to(n);
        Ok(n)
    }
}

impl Drop for ObjectReader {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Bytes in flight for a [`RangedReader`], shared by its requests (a
/// request is at least [`MIN_PIECE`] and at most [`MAX_PIECE`]).
const RANGED_BUDGET: u64 = 8 * 1024 * 1024;
const MIN_PIECE: u64 = 128 * 1024;
const MAX_PIECE: u64 = 8 * 1024 * 1024;
/// Tries per piece whose body breaks off: again after 0.2, 0.4 and 0.8 s.
const PIECE_TRIES: u32 = 4;

/// Reads a range of an object as consecutive pieces fetched by up to
/// `concurrency` ranged GETs at once, each pinned to the ETag first seen
/// (an overwrite in between fails the read: no two versions are mixed)
/// and retried on its own; pieces are handed out in order. Memory is
/// bounded by the pieces in flight (about [`RANGED_BUDGET`]).
pub struct RangedReader {
    /// Asks for the next piece only when the reader needs it, each piece
    /// twice the one before (up to [`MAX_PIECE`]): a reader that stops
    /// early has fetched at most as much again as it used.
    lazy: bool,
    /// Requests made and bytes asked for, shared with whoever counts them.
    requests: Arc<AtomicU64>,
    fetched: Arc<AtomicU64>,
    remote: Remote,
    path: ObjPath,
    e_tag: Option<String>,
    next: u64,
    end: u64,
    piece: u64,
    concurrency: usize,
    pending: std::collections::VecDeque<tokio::task::JoinHandle<Result<Bytes>>>,
    cur: Bytes,
    rt: &'static tokio::runtime::Runtime,
}

impl RangedReader {
    /// Reads `range` of the object of `remote` with `concurrency`
    /// requests in flight.
    pub fn new(
        remote: &Remote,
        e_tag: Option<String>,
        range: std::ops::Range<u64>,
        concurrency: usize,
    ) -> Result<RangedReader> {
        let concurrency = concurrency.max(1);
        let piece = (RANGED_BUDGET / concurrency as u64).clamp(MIN_PIECE, MAX_PIECE);
        Ok(RangedReader {
            lazy: false,
            requests: Arc::new(AtomicU64::new(0)),
            fetched: Arc::new(AtomicU64::new(0)),
            path: remote.url.object()?,
            remote: remote.clone(),
            e_tag,
            next: range.start,
            end: range.end,
            piece,
            concurrency,
            pending: std::collections::VecDeque::new(),
            cur: Bytes::new(),
            rt: runtime()?,
        })
    }

    /// Reads `range` one piece at a time, as it is needed: the first of
    /// `first` bytes, each next one twice as large; each request counted
    /// in `requests`, the bytes asked for in `fetched`.
    pub fn lazy(
        remote: &Remote,
        e_tag: Option<String>,
        range: std::ops::Range<u64>,
        first: u64,
        (requests, fetched): (Arc<AtomicU64>, Arc<AtomicU64>),
    ) -> Result<RangedReader> {
        let mut r = RangedReader::new(remote, e_tag, range, 1)?;
        r.lazy = true;
        r.piece = first.clamp(1, MAX_PIECE);
        r.requests = requests;
        r.fetched = fetched;
        Ok(r)
    }

    /// Starts requests until `concurrency` are in flight or none is left.
    fn refill(&mut self) {
        while self.pending.len() < self.concurrency && self.next < self.end {
            let to = self.end.min(self.next + self.piece);
            let range = self.next..to;
            self.next = to;
            self.requests.fetch_add(1, AtomicOrdering::Relaxed);
            self.fetched
                .fetch_add(range.end - range.start, AtomicOrdering::Relaxed);
            if self.lazy {
                self.piece = (self.piece * 2).min(MAX_PIECE);
            }
            let remote = self.remote.clone();
            let path = self.path.clone();
            let e_tag = self.e_tag.clone();
            self.pending.push_back(
                self.rt
                    .spawn(fetch_piece(remote, path, e_tag, range, self.lazy)),
            );
        }
    }
}

/// One piece. A request that fails was already retried by the object
/// store client (its retry budget); a body that breaks off after the
/// response started is asked for again, up to [`PIECE_TRIES`] times in
/// all. A piece shorter than asked for means the object changed.
///
/// With `keep` (a read of a few pieces, as of an index, not a download
/// whole), a piece of a version already read comes from memory, and one
/// read is kept (see [`super::pieces`]).
pub(super) async fn fetch_piece(
    remote: Remote,
    path: ObjPath,
    e_tag: Option<String>,
    range: std::ops::Range<u64>,
    keep: bool,
) -> Result<Bytes> {
    let url = remote.url.to_string();
    let kept = e_tag.as_ref().filter(|_| keep);
    if let Some(t) = kept
        && let Some(b) = super::pieces::get(&url, t, &range)
    {
        return Ok(b);
    }
    let piece = fetch_piece_from_store(remote, path, e_tag.clone(), range.clone()).await?;
    if let Some(t) = kept {
        super::pieces::put(&url, t, &range, &piece);
    }
    Ok(piece)
}

async fn fetch_piece_from_store(
    remote: Remote,
    path: ObjPath,
    e_tag: Option<String>,
    range: std::ops::Range<u64>,
) -> Result<Bytes> {
    let want = range.end - range.start;
    let mut delay = std::time::Duration::from_millis(200);
    let mut tries = 0;
    loop {
        tries += 1;
        let r = remote
            .store
            .get_opts(
                &path,
                GetOptions {
                    if_match: e_tag.clone(),
                    range: Some(GetRange::Bounded(range.clone())),
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| ranged_error(&remote.url, e))?;
        // Into one buffer of the piece's size: no doubling copies.
        let mut out = BytesMut::with_capacity(want as usize);
        let mut body = r.into_stream();
        let mut broke = None;
        while let Some(chunk) = body.next().await {
            match chunk {
                Ok(c) => {
                    out.extend_from_slice(&c);
                    if out.len() as u64 > want {
                        break;
                    }
                }
                Err(e) => {
                    broke = Some(e);
                    break;
                }
            }
        }
        match broke {
            None if out.len() as u64 == want => return Ok(out.freeze()),
            None => {
                return Err(Error::Remote {
                    op: "read",
                    url: remote.url.to_string(),
                    reason: format!(
                        "the object changed while it was being read (bytes {}..{} came back as {} bytes)",
                        range.start,
                        range.end,
                        out.len()
                    ),
                });
            }
            Some(e) if tries >= PIECE_TRIES => return Err(remote_error("read", &remote.url, e)),
            Some(_) => {
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
        }
    }
}

impl Read for RangedReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.cur.is_empty() {
            self.refill();
            let Some(next) = self.pending.pop_front() else {
                return Ok(0);
            };
            self.cur = match self.rt.block_on(next) {
                Ok(Ok(b)) => b,
                Ok(Err(e)) => return Err(io::Error::other(e)),
                Err(e) => {
                    return Err(io::Error::other(Error::Refused(format!(
                        "a read of {} failed: {e}",
                        self.remote.url
                    ))));
                }
            };
            if !self.lazy {
                self.refill();
            }
        }
        let n = buf.len().min(self.cur.len());
        buf[..n].copy_from_slice(&self.cur[..n]);
        let _ = self.cur.split_to(n);
        Ok(n)
    }
}

impl Drop for RangedReader {
    fn drop(&mut self) {
        for h in self.pending.drain(..) {
            h.abort();
        }
    }
}
