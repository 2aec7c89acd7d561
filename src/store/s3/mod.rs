//! Object storage: archives at `s3://bucket/key`, streamed up and down
//! through the `object_store` crate, with no local copy of the archive.
//!
//! - Uploads are multipart. The archive writer fills one part at a time;
//!   full parts go up on a small tokio runtime while the next one fills, at
//!   most [`PartPlan::in_flight`] at once, so memory is bounded by
//!   `(in_flight + 1) × part size`. The upload is completed only after FOOT
//!   was written; any error aborts it, and so does SIGINT/SIGTERM (through
//!   [`crate::store::cleanup::Pending`]). After SIGKILL the upload is never
//!   completed, so no object appears at the key.
//! - Downloads first read FOOT with a ranged GET (a truncated or foreign
//!   object fails before anything else happens), then stream the object
//!   pinned to the ETag they saw, so a concurrent overwrite cannot mix two
//!   archives.
//! - The archive's SHA-256 is stored in the object's metadata under
//!   [`SHA256_METADATA`]; readers check it when it is there.

use std::fmt;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use object_store::aws::{AmazonS3, AmazonS3Builder, AmazonS3ConfigKey};
use object_store::{BackoffConfig, ClientOptions, ObjectStoreExt, RetryConfig};

use crate::error::{Error, Result};

mod count;
mod download;
mod entry;
mod lease;
mod list;
mod parts;
mod pieces;
mod upload;
mod url;
mod watcher;

pub use count::{RequestCounts, request_counts};
pub use download::{ObjectReader, Probe, RangedReader};
pub use lease::{Lease, Side, take as take_lease};
pub use list::{Listed, Listing, delete, ls};
pub use parts::PartPlan;
pub use upload::{Upload, Uploaded};
pub use url::S3Url;
pub use watcher::take as take_watch_lease;

/// The URL scheme this module serves.
pub const SCHEME: &str = "s3://";
/// User metadata key (`x-amz-meta-…`) holding the archive's SHA-256 (hex).
pub const SHA256_METADATA: &str = "sydra-archive-sha256";
/// Content type of uploaded archives.
pub const CONTENT_TYPE: &str = "application/zstd";
/// Object names `ls` and `prune` consider.
pub const ARCHIVE_SUFFIX: &str = ".tar.zst";
/// The name suffix of an encrypted archive (listed too).
pub const ENCRYPTED_ARCHIVE_SUFFIX: &str = ".tar.zst.age";

/// Whether a name is one `ls` looks at: an archive's, or an encrypted one's.
pub fn archive_name(name: &str) -> bool {
    name.ends_with(ARCHIVE_SUFFIX) || name.ends_with(ENCRYPTED_ARCHIVE_SUFFIX)
}
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
    /// Ranged GETs in flight when an object is read whole (0: the
    /// default, [`DEFAULT_CONCURRENCY`]; 1: one streaming GET).
    pub concurrency: usize,
}

/// Ranged GETs in flight by default when an object is read whole.
pub const DEFAULT_CONCURRENCY: usize = 8;
/// The most ranged GETs in flight.
pub const MAX_CONCURRENCY: usize = 64;

impl S3Options {
    /// The concurrency in effect.
    pub fn concurrency(&self) -> usize {
        match self.concurrency {
            0 => DEFAULT_CONCURRENCY,
            n => n.min(MAX_CONCURRENCY),
        }
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
/// the environment wins. Every request is counted (see [`request_counts`]).
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
        .with_http_connector(count::Counting)
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
        // str::floor_char_boundary is newer than the rust-version.
        let cut = (0..=400)
            .rev()
            .find(|&i| s.is_char_boundary(i))
            .unwrap_or(0);
        format!("{}…", &s[..cut])
    } else {
        s
    }
}

/// Whether the store refused a request for lack of rights.
pub(crate) fn denied(e: &object_store::Error) -> bool {
    use object_store::Error as E;
    let text = e.to_string();
    matches!(e, E::PermissionDenied { .. } | E::Unauthenticated { .. })
        || text.contains("403 Forbidden")
        || text.contains("401 Unauthorized")
}

/// Turns an `object_store` error into the crate's error for `op` on `url`.
pub fn remote_error(op: &'static str, url: &S3Url, e: object_store::Error) -> Error {
    use object_store::Error as E;
    // Listing wraps the status in a generic error: look at the text too.
    let text = e.to_string();
    let denied = denied(&e);
    // A bucket that does not exist: S3 says NoSuchBucket (in the body of a
    // 404); a listing answered 404 can mean nothing else.
    let no_bucket = text.contains("NoSuchBucket")
        || (op == "list" && (matches!(e, E::NotFound { .. }) || text.contains("404 Not Found")));
    if no_bucket && !denied {
        return Error::Remote {
            op,
            url: url.to_string(),
            reason: format!(
                "bucket {} does not exist (or is not reachable with these credentials)",
                url.bucket
            ),
        };
    }
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

/// [`remote_error`] of a ranged read within the size first seen: a range
/// that is gone (416) means the object was replaced by a shorter one (by a
/// server that ignores `If-Match`).
pub(crate) fn ranged_error(url: &S3Url, e: object_store::Error) -> Error {
    if e.to_string().contains("416 Range Not Satisfiable") {
        return Error::Remote {
            op: "read",
            url: url.to_string(),
            reason:
                "the object changed while it was being read (it no longer holds a range it had)"
                    .to_string(),
        };
    }
    remote_error("read", url, e)
}

/// One `s3://` URL (an object or a prefix) and one client for its bucket:
/// every request a command makes shares its connection pool.
#[derive(Clone)]
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

    /// The object's size and ETag now; `None` when there is no object.
    pub fn head(&self) -> Result<Option<(u64, Option<String>)>> {
        let path = self.url.object()?;
        match runtime()?.block_on(self.store.head(&path)) {
            Ok(m) => Ok(Some((m.size, m.e_tag))),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(remote_error("check", &self.url, e)),
        }
    }

    /// The URL this remote serves.
    pub fn url(&self) -> &S3Url {
        &self.url
    }

    /// The settings it was made with.
    pub fn options(&self) -> &S3Options {
        &self.opts
    }

    /// The same client for the object `key` of the bucket.
    pub fn at_key(&self, key: &str) -> Remote {
        Remote {
            url: self.url.with_key(key),
            ..self.clone()
        }
    }

    /// Reads `buf.len()` bytes at `at` of the object with a ranged GET,
    /// pinned to `e_tag` when given: one piece of a
    /// [`download::RangedReader`], with its checks and retries.
    pub fn read_at(&self, at: u64, buf: &mut [u8], e_tag: Option<&str>) -> Result<()> {
        let range = at..at + buf.len() as u64;
        let piece = download::fetch_piece(
            self.clone(),
            self.url.object()?,
            e_tag.map(str::to_string),
            range,
            true,
        );
        buf.copy_from_slice(&runtime()?.block_on(piece)?);
        Ok(())
    }

    /// Reads the last bytes of the object with a ranged GET and checks
    /// that they are a TAIL (or a version-1 FOOT) matching its size.
    pub fn probe(&self) -> Result<Probe> {
        let path = self.url.object()?;
        runtime()?.block_on(download::probe_listed(&self.store, &self.url, &path))
    }

    /// The object's size, ETag and recorded SHA-256, whatever it holds (an
    /// encrypted archive does not end with a TAIL).
    pub fn probe_unchecked(&self) -> Result<Probe> {
        let path = self.url.object()?;
        runtime()?.block_on(download::probe_path_unchecked(
            &self.store,
            &self.url,
            &path,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn generic(text: &str) -> object_store::Error {
        object_store::Error::Generic {
            store: "S3",
            source: text.to_string().into(),
        }
    }

    #[test]
    fn a_missing_bucket_is_named_in_one_line() {
        let url = S3Url::parse("s3://nobucket/").unwrap();
        let want = "cannot list s3://nobucket/: bucket nobucket does not exist (or is not reachable with these credentials)";
        // What object_store says of a listing of a bucket that is not there.
        let body = "Error performing list request: Error performing GET http://127.0.0.1:9/nobucket?list-type=2 in 1ms - Server returned non-2xx status code: 404 Not Found: <?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>NoSuchBucket</Code><Message>The specified bucket does not exist</Message></Error>";
        assert_eq!(remote_error("list", &url, generic(body)).to_string(), want);
        let not_found = object_store::Error::NotFound {
            path: String::new(),
            source: "404".to_string().into(),
        };
        assert_eq!(remote_error("list", &url, not_found).to_string(), want);
        // A read names the bucket when S3 says which is missing ...
        let obj = S3Url::parse("s3://nobucket/a.tar.zst").unwrap();
        assert_eq!(
            remote_error("read", &obj, generic(body)).to_string(),
            "cannot read s3://nobucket/a.tar.zst: bucket nobucket does not exist (or is not reachable with these credentials)"
        );
        // ... and a missing object stays a missing object; a denial a denial.
        let gone = object_store::Error::NotFound {
            path: "a.tar.zst".into(),
            source: "404".to_string().into(),
        };
        assert!(
            remote_error("read", &obj, gone)
                .to_string()
                .ends_with("no such object or bucket")
        );
        let denied = generic("Server returned non-2xx status code: 403 Forbidden: NoSuchBucket");
        assert!(
            remote_error("list", &url, denied)
                .to_string()
                .contains("access denied")
        );
    }
}
