//! Object storage: archives at `s3://bucket/key`, streamed up and down
//! through the `object_store` crate, with no local copy of the archive.
//!
//! - Uploads are multipart. The archive writer fills one part at a time;
//!   full parts go up on a small tokio runtime while the next one fills, at
//!   most [`PartPlan::in_flight`] at once, so memory is bounded by
//!   `(in_flight + 1) × part size`. The upload is completed only after FOOT
//!   was written; any error aborts it, and so does SIGINT/SIGTERM (through
//!   [`crate::cleanup::Pending`]). After SIGKILL the upload is never
//!   completed, so no object appears at the key.
//! - Downloads first read FOOT with a ranged GET (a truncated or foreign
//!   object fails before anything else happens), then stream the object
//!   pinned to the ETag they saw, so a concurrent overwrite cannot mix two
//!   archives.
//! - The archive's SHA-256 is stored in the object's metadata under
//!   [`SHA256_METADATA`]; readers check it when it is there.

use std::collections::VecDeque;
use std::fmt;
use std::io::{self, Read, Write};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use object_store::aws::{AmazonS3, AmazonS3Builder, AmazonS3ConfigKey};
use object_store::path::Path as ObjPath;
use object_store::{
    Attribute, AttributeValue, Attributes, BackoffConfig, ClientOptions, GetOptions, GetRange,
    MultipartUpload, ObjectStore, ObjectStoreExt, PutMultipartOptions, PutPayload, RetryConfig,
};

use crate::cleanup::{self, Pending};
use crate::error::{Error, Result};
use crate::footer::{FOOT_LEN, Footer};

/// The URL scheme this module serves.
pub const SCHEME: &str = "s3://";
/// User metadata key (`x-amz-meta-…`) holding the archive's SHA-256 (hex).
pub const SHA256_METADATA: &str = "sydra-archive-sha256";
/// Content type of uploaded archives.
pub const CONTENT_TYPE: &str = "application/zstd";
/// Object names `ls` and `prune` consider.
pub const ARCHIVE_SUFFIX: &str = ".tar.zst";
/// The largest object S3 copies in one request; larger archives keep their
/// SHA-256 only in the `create` result, not in metadata.
const MAX_COPY: u64 = 5 << 30;

/// Settings that override the standard `AWS_*` environment.
#[derive(Debug, Clone, Default)]
pub struct S3Options {
    /// Endpoint URL (like `AWS_ENDPOINT_URL`); an `http://` one allows plain http.
    pub endpoint: Option<String>,
    /// Region (like `AWS_REGION`).
    pub region: Option<String>,
}

/// A parsed `s3://bucket/key` URL; `key` may be empty or a prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Url {
    /// Bucket name.
    pub bucket: String,
    /// Object key or prefix, without a leading `/`.
    pub key: String,
}

impl S3Url {
    /// True if `s` is meant as an object-storage URL.
    pub fn is_s3(s: &str) -> bool {
        s.starts_with(SCHEME)
    }

    /// Parses `s3://bucket[/key]`.
    pub fn parse(s: &str) -> Result<S3Url> {
        let rest = s
            .strip_prefix(SCHEME)
            .ok_or_else(|| Error::Refused(format!("{s} is not an s3:// url")))?;
        let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(Error::Refused(format!("{s} names no bucket")));
        }
        Ok(S3Url {
            bucket: bucket.to_string(),
            key: key.to_string(),
        })
    }

    /// The key as an object path; refuses an empty key or one that names a
    /// "directory".
    fn object(&self) -> Result<ObjPath> {
        if self.key.is_empty() || self.key.ends_with('/') {
            return Err(Error::Refused(format!(
                "{self} names no object (give s3://bucket/name.tar.zst)"
            )));
        }
        ObjPath::parse(&self.key)
            .map_err(|e| Error::Refused(format!("{self} is not a usable object key: {e}")))
    }

    /// The key as a listing prefix (`a/b/` and `a/b` both mean `a/b/`).
    fn prefix(&self) -> Result<Option<ObjPath>> {
        let p = self.key.trim_end_matches('/');
        if p.is_empty() {
            return Ok(None);
        }
        ObjPath::parse(p)
            .map(Some)
            .map_err(|e| Error::Refused(format!("{self} is not a usable prefix: {e}")))
    }

    fn with_key(&self, key: &str) -> S3Url {
        S3Url {
            bucket: self.bucket.clone(),
            key: key.to_string(),
        }
    }
}

impl fmt::Display for S3Url {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{SCHEME}{}/{}", self.bucket, self.key)
    }
}

/// The process-wide runtime that drives HTTP requests (two workers).
fn runtime() -> Result<&'static tokio::runtime::Runtime> {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    if let Some(rt) = RT.get() {
        return Ok(rt);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("s3-io")
        .enable_all()
        .build()
        .map_err(|e| Error::io("start", "the object-storage runtime", e))?;
    Ok(RT.get_or_init(|| rt))
}

/// Connection and retry settings: a dead endpoint fails within about a
/// minute (5 s to connect, 5 retries with backoff, 60 s in all); a stalled
/// transfer fails after 60 s without a byte. Any `AWS_*` client setting in
/// the environment wins.
fn store(
    url: &S3Url,
    opts: &S3Options,
    headers: Option<http_headers::HeaderMap>,
) -> Result<AmazonS3> {
    let mut client = ClientOptions::new()
        .with_connect_timeout(Duration::from_secs(5))
        .with_timeout_disabled()
        .with_read_timeout(Duration::from_secs(60));
    for (k, v) in std::env::vars() {
        if !k.starts_with("AWS_") {
            continue;
        }
        if let Ok(AmazonS3ConfigKey::Client(key)) = k.to_ascii_lowercase().parse() {
            client = client.with_config(key, v);
        }
    }
    let mut b = AmazonS3Builder::from_env().with_bucket_name(&url.bucket);
    if let Some(ep) = &opts.endpoint {
        b = b.with_endpoint(ep);
        if ep.starts_with("http://") {
            client = client.with_allow_http(true);
        }
    }
    if let Some(r) = &opts.region {
        b = b.with_region(r);
    }
    if let Some(h) = headers {
        client = client.with_default_headers(h);
    }
    b.with_client_options(client)
        .with_retry(RetryConfig {
            backoff: BackoffConfig::default(),
            max_retries: 5,
            retry_timeout: Duration::from_secs(60),
        })
        .build()
        .map_err(|e| {
            Error::Refused(format!(
                "cannot configure s3 access for {url}: {}",
                one_line(&e)
            ))
        })
}

/// Re-export of the header types `object_store` takes, kept private.
mod http_headers {
    pub use http::HeaderMap;
    pub use http::header::{HeaderName, HeaderValue};
}

fn one_line(e: &dyn fmt::Display) -> String {
    let s = e.to_string();
    let s = s.split_whitespace().collect::<Vec<_>>().join(" ");
    // Servers can send whole XML documents; a line is enough.
    if s.len() > 400 {
        format!("{}…", &s[..s.floor_char_boundary(400)])
    } else {
        s
    }
}

/// Turns an `object_store` error into the crate's error for `op` on `url`.
pub fn remote_error(op: &'static str, url: &S3Url, e: object_store::Error) -> Error {
    use object_store::Error as E;
    // Listing wraps the status in a generic error: look at the text too.
    let text = e.to_string();
    let denied = matches!(e, E::PermissionDenied { .. } | E::Unauthenticated { .. })
        || text.contains("403 Forbidden")
        || text.contains("401 Unauthorized");
    let reason = match &e {
        _ if denied => format!(
            "access denied; check AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and the bucket's policy ({})",
            one_line(&e)
        ),
        E::NotFound { .. } => "no such object or bucket".to_string(),
        E::Precondition { .. } => {
            "the object changed while it was being read (its ETag no longer matches)".to_string()
        }
        _ => one_line(&e),
    };
    Error::Remote {
        op,
        url: url.to_string(),
        reason,
    }
}

/// How an upload is cut into parts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartPlan {
    /// Size of the first 9,000 parts.
    pub base: usize,
    /// Parts uploading at once while the next one fills.
    pub in_flight: usize,
}

impl PartPlan {
    /// Smallest part (S3 requires 5 MiB for all but the last).
    pub const MIN_PART: usize = 8 << 20;
    /// Largest part S3 accepts.
    pub const MAX_PART: usize = 5 << 30;
    /// Most parts S3 accepts.
    pub const MAX_PARTS: usize = 10_000;
    /// Parts planned at the base size; the rest are headroom that grows.
    const PLANNED: usize = 9_000;
    /// Memory for part buffers, in flight and filling, while parts are small.
    const BUFFER_BUDGET: usize = 64 << 20;

    /// A plan for an archive of about `estimate` bytes: the estimate fits
    /// in 9,000 parts; after that, parts double every 250, so an archive
    /// that outgrows its estimate still fits in 10,000.
    pub fn for_estimate(estimate: u64) -> PartPlan {
        let want = estimate.div_ceil(Self::PLANNED as u64).div_ceil(1 << 20) << 20;
        let base = usize::try_from(want)
            .unwrap_or(Self::MAX_PART)
            .clamp(Self::MIN_PART, Self::MAX_PART);
        let in_flight = (Self::BUFFER_BUDGET / base).saturating_sub(1).clamp(1, 4);
        PartPlan { base, in_flight }
    }

    /// Size of part `n` (1-based).
    pub fn part_size(&self, n: usize) -> usize {
        if n <= Self::PLANNED {
            return self.base;
        }
        let shift = 1 + (n - Self::PLANNED - 1) / 250;
        self.base
            .checked_shl(shift as u32)
            .unwrap_or(Self::MAX_PART)
            .min(Self::MAX_PART)
    }

    /// Bytes 10,000 parts hold.
    pub fn capacity(&self) -> u64 {
        (1..=Self::MAX_PARTS)
            .map(|n| self.part_size(n) as u64)
            .sum()
    }

    /// Peak bytes of part buffers (the parts in flight and the one filling)
    /// while parts have the base size.
    pub fn buffer_bytes(&self) -> usize {
        (self.in_flight + 1) * self.base
    }
}

/// One part's bytes in its own anonymous mapping, returned to the kernel
/// when the part is dropped after its upload. (Through malloc, 8 MiB
/// buffers freed on other threads fragment the heap: peak RSS then grew
/// with timing, to 185 MiB for a 300 MiB upload under load.)
struct PartBuf {
    ptr: std::ptr::NonNull<u8>,
    cap: usize,
    len: usize,
}

// SAFETY: PartBuf owns its mapping exclusively; `&PartBuf` only reads.
unsafe impl Send for PartBuf {}
// SAFETY: as above.
unsafe impl Sync for PartBuf {}

impl PartBuf {
    fn new(cap: usize) -> io::Result<PartBuf> {
        // SAFETY: a fresh private anonymous mapping; checked for failure.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                cap,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr = std::ptr::NonNull::new(p.cast::<u8>()).ok_or_else(io::Error::last_os_error)?;
        Ok(PartBuf { ptr, cap, len: 0 })
    }

    fn room(&self) -> usize {
        self.cap - self.len
    }

    fn push(&mut self, data: &[u8]) -> usize {
        let n = self.room().min(data.len());
        // SAFETY: `len + n <= cap`, inside the mapping; no overlap with `data`.
        unsafe {
            std::ptr::copy_nonoverlapping(data.as_ptr(), self.ptr.as_ptr().add(self.len), n);
        }
        self.len += n;
        n
    }
}

impl AsRef<[u8]> for PartBuf {
    fn as_ref(&self) -> &[u8] {
        // SAFETY: the first `len` bytes of the mapping were written.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for PartBuf {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly the mapping made in `new`, once.
        unsafe {
            libc::munmap(self.ptr.as_ptr().cast(), self.cap);
        }
    }
}

/// What the writer and the signal path share: the upload (taken by
/// whoever completes or aborts it first) and handles to cancel the part
/// requests in flight, so that an abort is never overtaken by a part.
struct Live {
    upload: Option<Box<dyn MultipartUpload>>,
    parts: Vec<tokio::task::AbortHandle>,
}

type Shared = Arc<Mutex<Live>>;

fn lock(s: &Shared) -> std::sync::MutexGuard<'_, Live> {
    s.lock().unwrap_or_else(|e| e.into_inner())
}

/// Takes the upload out of `shared`, if it is still there, and aborts it,
/// waiting at most `limit`. Used by [`Upload::abort`] and by the signal path.
fn abort_shared(
    shared: &Shared,
    handle: &tokio::runtime::Handle,
    limit: Duration,
) -> std::result::Result<(), String> {
    let Some(mut up) = ({
        let mut live = lock(shared);
        for part in live.parts.drain(..) {
            part.abort();
        }
        live.upload.take()
    }) else {
        return Ok(());
    };
    // The timer must be made inside the runtime.
    let abort = async { tokio::time::timeout(limit, up.abort()).await };
    match handle.block_on(abort) {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(one_line(&e)),
        Err(_) => Err(format!("no answer within {} s", limit.as_secs())),
    }
}

/// A multipart upload being written; it becomes an object only through
/// [`Upload::finish`]. On failure call [`Upload::abort`].
pub struct Upload {
    url: S3Url,
    opts: S3Options,
    path: ObjPath,
    shared: Shared,
    pending: Option<Pending>,
    plan: PartPlan,
    buf: Option<PartBuf>,
    target: usize,
    in_flight: VecDeque<tokio::task::JoinHandle<object_store::Result<()>>>,
    parts: usize,
    bytes: u64,
}

/// What a finished upload did.
#[derive(Debug, Clone)]
pub struct Uploaded {
    /// The object's URL.
    pub url: String,
    /// Parts uploaded.
    pub parts: usize,
    /// The plan the parts followed.
    pub plan: PartPlan,
    /// The object's ETag, if the server gave one.
    pub e_tag: Option<String>,
    /// True if the SHA-256 is in the object's metadata.
    pub sha256_in_metadata: bool,
    /// Problems that did not stop the upload.
    pub warnings: Vec<String>,
}

/// One `s3://` URL (an object or a prefix) and one client for its bucket:
/// every request a command makes shares its connection pool.
pub struct Remote {
    url: S3Url,
    opts: S3Options,
    store: Arc<AmazonS3>,
}

impl Remote {
    /// Configures access to `url` (nothing is sent yet).
    pub fn connect(url: &S3Url, opts: &S3Options) -> Result<Remote> {
        Ok(Remote {
            url: url.clone(),
            opts: opts.clone(),
            store: Arc::new(store(url, opts, None)?),
        })
    }

    /// Refuses if an object exists at the URL (unless `force`); checks
    /// access before any work is done.
    pub fn check_target(&self, force: bool) -> Result<()> {
        let (url, path) = (&self.url, self.url.object()?);
        match runtime()?.block_on(self.store.head(&path)) {
            Ok(_) if !force => Err(Error::Refused(format!(
                "{url} already exists; use --force to replace it"
            ))),
            Ok(_) => Ok(()),
            Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(remote_error("check", url, e)),
        }
    }

    /// Reads the last 64 bytes of the object with a ranged GET and checks
    /// that they are a FOOT matching the object's size.
    pub fn probe(&self) -> Result<Probe> {
        let path = self.url.object()?;
        runtime()?.block_on(probe_path(&self.store, &self.url, &path, None))
    }
}

impl Upload {
    /// Starts a multipart upload to the object of `remote` for an archive
    /// of about `estimate` bytes.
    pub fn start(remote: &Remote, estimate: u64) -> Result<Upload> {
        let (url, opts, store) = (&remote.url, &remote.opts, &remote.store);
        let path = url.object()?;
        let rt = runtime()?;
        let mut attributes = Attributes::new();
        attributes.insert(Attribute::ContentType, AttributeValue::from(CONTENT_TYPE));
        let upload = rt
            .block_on(store.put_multipart_opts(
                &path,
                PutMultipartOptions {
                    attributes,
                    ..Default::default()
                },
            ))
            .map_err(|e| remote_error("start upload to", url, e))?;
        let shared: Shared = Arc::new(Mutex::new(Live {
            upload: Some(upload),
            parts: Vec::new(),
        }));
        let for_signal = shared.clone();
        let handle = rt.handle().clone();
        let pending = Pending::register(format!("the unfinished upload to {url}"), move || {
            abort_shared(&for_signal, &handle, Duration::from_secs(10)).map_err(io::Error::other)
        });
        let plan = PartPlan::for_estimate(estimate);
        Ok(Upload {
            url: url.clone(),
            opts: opts.clone(),
            path,
            shared,
            pending: Some(pending),
            plan,
            buf: None,
            target: plan.part_size(1),
            in_flight: VecDeque::new(),
            parts: 0,
            bytes: 0,
        })
    }

    /// The plan the parts follow.
    pub fn plan(&self) -> PartPlan {
        self.plan
    }

    fn wait_oldest(&mut self) -> Result<()> {
        let Some(h) = self.in_flight.pop_front() else {
            return Ok(());
        };
        match runtime()?.block_on(h) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(remote_error("upload a part to", &self.url, e)),
            Err(e) => Err(Error::Remote {
                op: "upload a part to",
                url: self.url.to_string(),
                reason: one_line(&e),
            }),
        }
    }

    fn ship(&mut self) -> Result<()> {
        if cleanup::stopping() {
            return Err(Error::Interrupted);
        }
        while self.in_flight.len() >= self.plan.in_flight {
            self.wait_oldest()?;
        }
        if self.parts == PartPlan::MAX_PARTS {
            return Err(Error::Refused(format!(
                "the archive outgrew S3's 10,000 parts at {} bytes; write it to a file instead",
                self.bytes
            )));
        }
        self.parts += 1;
        self.target = self.plan.part_size(self.parts + 1);
        let data = match self.buf.take() {
            Some(b) => Bytes::from_owner(b),
            None => Bytes::new(),
        };
        let rt = runtime()?;
        let mut live = lock(&self.shared);
        let up = live.upload.as_mut().ok_or(Error::Interrupted)?;
        let task = rt.spawn(up.put_part(PutPayload::from(data)));
        live.parts.retain(|p| !p.is_finished());
        live.parts.push(task.abort_handle());
        drop(live);
        self.in_flight.push_back(task);
        Ok(())
    }

    /// Uploads what is left, completes the upload (the object appears now,
    /// whole) and records `sha256` in its metadata.
    /// On failure the upload is aborted.
    pub fn finish(mut self, sha256: &[u8; 32]) -> Result<Uploaded> {
        if let Err(e) = self.drain() {
            let _ = self.abort_inner();
            return Err(e);
        }
        let rt = runtime()?;
        let pending = self.pending.take().expect("an upload is finished once");
        let shared = self.shared.clone();
        let done = pending.commit(|| {
            let taken = lock(&shared).upload.take();
            match taken {
                Some(mut up) => rt.block_on(up.complete()).inspect_err(|_| {
                    // Put the upload back so that it can be aborted.
                    lock(&shared).upload = Some(up);
                }),
                None => Err(object_store::Error::Generic {
                    store: "S3",
                    source: "the upload was aborted".into(),
                }),
            }
        });
        let put = match done {
            Ok(put) => put,
            Err(e) => {
                let err = remote_error("complete upload to", &self.url, e);
                let _ = self.abort_inner();
                return Err(err);
            }
        };
        let mut warnings = Vec::new();
        let stored = if self.bytes > MAX_COPY {
            warnings.push(format!(
                "{} is over 5 GiB, which S3 cannot copy to add metadata: its SHA-256 is only in this result",
                self.url
            ));
            false
        } else {
            match self.store_sha256(sha256, put.e_tag.as_deref()) {
                Ok(()) => true,
                Err(e) => {
                    warnings.push(format!(
                        "uploaded, but could not store the SHA-256 in the object's metadata: {e}"
                    ));
                    false
                }
            }
        };
        Ok(Uploaded {
            url: self.url.to_string(),
            parts: self.parts,
            plan: self.plan,
            e_tag: put.e_tag,
            sha256_in_metadata: stored,
            warnings,
        })
    }

    fn drain(&mut self) -> Result<()> {
        if self.buf.as_ref().is_some_and(|b| b.len > 0) || self.parts == 0 {
            self.ship()?;
        }
        while !self.in_flight.is_empty() {
            self.wait_oldest()?;
        }
        Ok(())
    }

    /// Copies the object onto itself with metadata replaced (S3 sets user
    /// metadata only when an object is written), pinned to the ETag just
    /// uploaded so another writer's object is never labelled.
    fn store_sha256(&self, sha256: &[u8; 32], e_tag: Option<&str>) -> Result<()> {
        use http_headers::{HeaderMap, HeaderName, HeaderValue};
        let mut h = HeaderMap::new();
        let bad = |e: http::header::InvalidHeaderValue| Error::Remote {
            op: "label",
            url: self.url.to_string(),
            reason: e.to_string(),
        };
        h.insert(
            HeaderName::from_static("x-amz-metadata-directive"),
            HeaderValue::from_static("REPLACE"),
        );
        h.insert(
            HeaderName::from_static("x-amz-meta-sydra-archive-sha256"),
            HeaderValue::from_str(&crate::sums::hex(sha256)).map_err(bad)?,
        );
        h.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static(CONTENT_TYPE),
        );
        if let Some(tag) = e_tag {
            h.insert(
                HeaderName::from_static("x-amz-copy-source-if-match"),
                HeaderValue::from_str(tag).map_err(bad)?,
            );
        }
        let labeller = store(&self.url, &self.opts, Some(h))?;
        runtime()?
            .block_on(labeller.copy(&self.path, &self.path))
            .map_err(|e| remote_error("label", &self.url, e))
    }

    /// Aborts the upload; [`abort_shared`] cancels the parts in flight.
    fn abort_inner(&mut self) -> Result<()> {
        let result = abort_shared(&self.shared, runtime()?.handle(), Duration::from_secs(30))
            .map_err(|reason| Error::Remote {
                op: "abort upload to",
                url: self.url.to_string(),
                reason,
            });
        if let Some(p) = self.pending.take() {
            p.forget();
        }
        result
    }

    /// Aborts the upload: the parts are discarded and no object appears.
    pub fn abort(mut self) -> Result<()> {
        self.abort_inner()
    }
}

impl Write for Upload {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let buf = match &mut self.buf {
            Some(b) => b,
            None => self.buf.insert(PartBuf::new(self.target)?),
        };
        let n = buf.push(data);
        self.bytes += n as u64;
        if buf.room() == 0 {
            self.ship().map_err(io::Error::other)?;
        }
        Ok(n)
    }

    /// Parts go up when they are full; there is nothing to flush early.
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

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
}

/// Probes the object at `path`; `size`, when the caller knows it (from a
/// listing), makes the read a bounded range and skips objects too small.
async fn probe_path(
    store: &AmazonS3,
    url: &S3Url,
    path: &ObjPath,
    size: Option<u64>,
) -> Result<Probe> {
    let range = match size {
        Some(n) if n < FOOT_LEN as u64 => {
            return Err(Error::corrupt(format!(
                "{url} is {n} bytes, too short to be an archive"
            )));
        }
        Some(n) => GetRange::Bounded(n - FOOT_LEN as u64..n),
        None => GetRange::Suffix(FOOT_LEN as u64),
    };
    let got = async {
        let r = store
            .get_opts(
                path,
                GetOptions {
                    range: Some(range),
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
    if meta.size < FOOT_LEN as u64 || bytes.len() != FOOT_LEN {
        return Err(Error::corrupt(format!(
            "{url} is {} bytes, too short to be an archive",
            meta.size
        )));
    }
    let foot: [u8; FOOT_LEN] = bytes[..].try_into().expect("length checked");
    let footer = Footer::decode(&foot)?;
    footer.check_size(meta.size, &url.to_string())?;
    let sha256 = attrs
        .get(&Attribute::Metadata(SHA256_METADATA.into()))
        .map(|v| v.as_ref().to_string());
    Ok(Probe {
        size: meta.size,
        e_tag: meta.e_tag,
        sha256,
        modified_unix_ms: meta.last_modified.timestamp_millis(),
    })
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
    /// Opens the object of `remote`, pinned to `e_tag` when given.
    pub fn open(remote: &Remote, e_tag: Option<String>) -> Result<ObjectReader> {
        let url = &remote.url;
        let path = url.object()?;
        let rt = runtime()?;
        let result = rt
            .block_on(remote.store.get_opts(
                &path,
                GetOptions {
                    if_match: e_tag,
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

/// One archive object found by [`ls`].
#[derive(Debug, Clone, serde::Serialize)]
pub struct Listed {
    /// Its URL.
    pub url: String,
    /// Its key.
    pub key: String,
    /// Size in bytes.
    pub size: u64,
    /// Last modification (upload completion), Unix milliseconds.
    pub modified_unix_ms: i64,
    /// SHA-256 from the object's metadata, if recorded.
    pub sha256: Option<String>,
}

/// What [`ls`] found under a prefix.
#[derive(Debug, Clone, Default)]
pub struct Listing {
    /// Archives (a `.tar.zst` name and a valid FOOT that matches the
    /// size), newest first.
    pub archives: Vec<Listed>,
    /// `.tar.zst` objects that are not sydra-archives, with the reason.
    pub others: Vec<(String, String)>,
}

/// Lists the archives directly under the prefix `url` (`s3://b/p/` and
/// `s3://b/p` both mean the "directory" `p/`): every `*.tar.zst` object
/// whose last 64 bytes are a FOOT matching its size. Newest first.
pub fn ls(remote: &Remote) -> Result<Listing> {
    let (url, store) = (&remote.url, &remote.store);
    let prefix = url.prefix()?;
    let rt = runtime()?;
    let listed = rt
        .block_on(store.list_with_delimiter(prefix.as_ref()))
        .map_err(|e| remote_error("list", url, e))?;
    let candidates: Vec<_> = listed
        .objects
        .into_iter()
        .filter(|m| m.location.as_ref().ends_with(ARCHIVE_SUFFIX))
        .collect();
    let mut listing = Listing::default();
    // Eight ranged reads at a time.
    let results: Vec<_> = rt.block_on(
        futures_util::stream::iter(candidates.into_iter().map(|m| {
            let obj = url.with_key(m.location.as_ref());
            async move {
                let probed = probe_path(store, &obj, &m.location, Some(m.size)).await;
                (m, obj, probed)
            }
        }))
        .buffer_unordered(8)
        .collect(),
    );
    for (m, obj, probed) in results {
        match probed {
            Ok(p) => listing.archives.push(Listed {
                url: obj.to_string(),
                key: m.location.to_string(),
                size: p.size,
                modified_unix_ms: p.modified_unix_ms,
                sha256: p.sha256,
            }),
            Err(e) if e.is_archive_fault() => listing.others.push((obj.to_string(), e.to_string())),
            Err(e) => return Err(e),
        }
    }
    listing.archives.sort_by(|a, b| {
        b.modified_unix_ms
            .cmp(&a.modified_unix_ms)
            .then(b.key.cmp(&a.key))
    });
    listing.others.sort();
    Ok(listing)
}

/// What [`prune`] kept and deleted (or would delete, on a dry run).
#[derive(Debug, Clone, Default)]
pub struct Pruned {
    /// Archives kept, newest first.
    pub kept: Vec<Listed>,
    /// Archives deleted, or to be deleted on a dry run.
    pub deleted: Vec<Listed>,
    /// `.tar.zst` objects that are not archives: never touched.
    pub others: Vec<(String, String)>,
    /// True unless deletion was asked for.
    pub dry_run: bool,
}

/// Keeps the `keep_last` newest archives under `url` and deletes the older
/// ones when `delete` is true. Only objects [`ls`] recognizes as archives
/// are ever deleted.
pub fn prune(remote: &Remote, keep_last: usize, delete: bool) -> Result<Pruned> {
    if keep_last == 0 {
        return Err(Error::Refused("--keep-last must be at least 1".into()));
    }
    let listing = ls(remote)?;
    let mut archives = listing.archives;
    let old = archives.split_off(keep_last.min(archives.len()));
    if delete && !old.is_empty() {
        let rt = runtime()?;
        for a in &old {
            let obj = remote.url.with_key(&a.key);
            rt.block_on(remote.store.delete(&obj.object()?))
                .map_err(|e| remote_error("delete", &obj, e))?;
        }
    }
    Ok(Pruned {
        kept: archives,
        deleted: old,
        others: listing.others,
        dry_run: !delete,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse() {
        let u = S3Url::parse("s3://b/x/y.tar.zst").unwrap();
        assert_eq!((u.bucket.as_str(), u.key.as_str()), ("b", "x/y.tar.zst"));
        assert_eq!(u.to_string(), "s3://b/x/y.tar.zst");
        assert!(u.object().is_ok());
        assert!(S3Url::parse("s3://").is_err());
        assert!(S3Url::parse("/tmp/x").is_err());
        assert!(S3Url::parse("s3://b/dir/").unwrap().object().is_err());
        assert!(S3Url::parse("s3://b").unwrap().object().is_err());
        assert_eq!(S3Url::parse("s3://b").unwrap().prefix().unwrap(), None);
        assert_eq!(
            S3Url::parse("s3://b/p/").unwrap().prefix().unwrap(),
            S3Url::parse("s3://b/p").unwrap().prefix().unwrap()
        );
    }

    #[test]
    fn part_plan_fits_five_terabytes() {
        const TB: u64 = 1_000_000_000_000;
        for estimate in [
            0,
            1 << 20,
            300 << 20,
            50 << 30,
            TB,
            5 * TB,
            5 * (1u64 << 40),
        ] {
            let p = PartPlan::for_estimate(estimate);
            assert!((PartPlan::MIN_PART..=PartPlan::MAX_PART).contains(&p.base));
            assert!(p.in_flight >= 1);
            // The planned parts hold the estimate; the headroom holds more.
            assert!(p.base as u64 * 9_000 >= estimate, "{estimate}");
            assert!(p.capacity() >= estimate.saturating_mul(3) / 2, "{estimate}");
            for n in 1..=PartPlan::MAX_PARTS {
                let s = p.part_size(n);
                assert!((PartPlan::MIN_PART..=PartPlan::MAX_PART).contains(&s));
            }
        }
        // Small and medium archives keep part buffers within 64 MiB.
        for estimate in [300 << 20, 50u64 << 30, 250 << 30] {
            assert!(PartPlan::for_estimate(estimate).buffer_bytes() <= 64 << 20);
        }
        // Parts grow only past the planned 9,000.
        let p = PartPlan::for_estimate(0);
        assert_eq!(p.part_size(9_000), p.base);
        assert_eq!(p.part_size(9_001), 2 * p.base);
        assert_eq!(p.part_size(10_000), 16 * p.base);
    }
}
