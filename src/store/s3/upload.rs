//! Multipart uploads: parts go up while the next one fills; completed
//! only once the archive is whole, aborted on any error or signal.

use std::collections::VecDeque;
use std::io::{self, Write};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use object_store::path::Path as ObjPath;
use object_store::{
    Attribute, AttributeValue, Attributes, MultipartUpload, ObjectStore, ObjectStoreExt,
    PutMultipartOptions, PutPayload,
};

use crate::error::{Error, Result};
use crate::store::cleanup::{self, Pending};

use super::parts::PartBuf;
use super::{
    CONTENT_TYPE, MAX_COPY, PartPlan, Remote, S3Options, S3Url, http_headers, one_line,
    remote_error, runtime, store,
};

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
        if self.buf.as_ref().is_some_and(|b| b.filled() > 0) || self.parts == 0 {
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
            HeaderValue::from_str(&crate::format::sums::hex(sha256)).map_err(bad)?,
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
