//! Every request sent to object storage, counted where it is sent: each
//! client is built with [`Counting`], an HTTP connector that wraps the
//! standard one, so a request (a retry included) is counted once, by
//! kind, with the bytes of its body and of its response's body as they
//! are read. The counts are the process's, since it started.
//!
//! Requests to the credential services (instance metadata, container
//! credentials, STS) are not object-storage requests and are not
//! counted.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use object_store::client::{
    ClientOptions, HttpClient, HttpConnector, HttpError, HttpRequest, HttpResponse,
    HttpResponseBody, HttpService, ReqwestConnector,
};

/// Requests sent to object storage and the bytes of their bodies, by
/// kind (see [`request_counts`]). AWS bills PUT, POST and LIST as one
/// class ("class A"), GET and HEAD as another ("class B"); DELETE is free.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct RequestCounts {
    /// PUTs: whole objects, parts of a multipart upload, copies.
    pub put: u64,
    /// POSTs: a multipart upload started or completed.
    pub post: u64,
    /// Listings (GETs of a bucket with `list-type`, or of an upload's parts).
    pub list: u64,
    /// GETs of an object (whole or a range).
    pub get: u64,
    /// HEADs.
    pub head: u64,
    /// DELETEs (an object, or an aborted upload), and DeleteObjects POSTs
    /// (which `object_store` sends to delete one object).
    pub delete: u64,
    /// Bytes of the request bodies sent.
    pub bytes_up: u64,
    /// Bytes of the response bodies received.
    pub bytes_down: u64,
}

impl RequestCounts {
    /// PUT, POST and LIST requests (AWS "class A").
    pub fn class_a(&self) -> u64 {
        self.put + self.post + self.list
    }

    /// GET and HEAD requests (AWS "class B").
    pub fn class_b(&self) -> u64 {
        self.get + self.head
    }

    /// All requests.
    pub fn requests(&self) -> u64 {
        self.class_a() + self.class_b() + self.delete
    }

    /// What was counted after `earlier` (a snapshot taken before).
    pub fn since(&self, earlier: &RequestCounts) -> RequestCounts {
        RequestCounts {
            put: self.put.saturating_sub(earlier.put),
            post: self.post.saturating_sub(earlier.post),
            list: self.list.saturating_sub(earlier.list),
            get: self.get.saturating_sub(earlier.get),
            head: self.head.saturating_sub(earlier.head),
            delete: self.delete.saturating_sub(earlier.delete),
            bytes_up: self.bytes_up.saturating_sub(earlier.bytes_up),
            bytes_down: self.bytes_down.saturating_sub(earlier.bytes_down),
        }
    }

    /// The requests by method, as metrics name them (`LIST` for a GET
    /// that lists).
    pub fn by_method(&self) -> [(&'static str, u64); 6] {
        [
            ("PUT", self.put),
            ("POST", self.post),
            ("LIST", self.list),
            ("GET", self.get),
            ("HEAD", self.head),
            ("DELETE", self.delete),
        ]
    }
}

/// The process's counters, one per [`Kind`] and two of bytes.
static COUNTS: [AtomicU64; 6] = [const { AtomicU64::new(0) }; 6];
static BYTES_UP: AtomicU64 = AtomicU64::new(0);
static BYTES_DOWN: AtomicU64 = AtomicU64::new(0);

/// The requests this process sent to object storage so far.
pub fn request_counts() -> RequestCounts {
    let n = |k: Kind| COUNTS[k as usize].load(Ordering::Relaxed);
    RequestCounts {
        put: n(Kind::Put),
        post: n(Kind::Post),
        list: n(Kind::List),
        get: n(Kind::Get),
        head: n(Kind::Head),
        delete: n(Kind::Delete),
        bytes_up: BYTES_UP.load(Ordering::Relaxed),
        bytes_down: BYTES_DOWN.load(Ordering::Relaxed),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Put,
    Post,
    List,
    Get,
    Head,
    Delete,
}

/// What kind of request `req` is; `None` for one not to count.
fn kind(req: &HttpRequest) -> Option<Kind> {
    let uri = req.uri();
    let host = uri.host().unwrap_or_default();
    // Credentials, not storage: EC2 instance metadata (IPv4 and IPv6),
    // ECS/EKS container credentials, STS.
    if host == "169.254.169.254"
        || host == "169.254.170.2"
        || host == "169.254.170.23"
        || host.trim_start_matches('[').starts_with("fd00:ec2::")
        || host.starts_with("sts.")
    {
        return None;
    }
    let has = |keys: &[&str]| {
        uri.query()
            .unwrap_or_default()
            .split('&')
            .any(|kv| keys.contains(&kv.split('=').next().unwrap_or_default()))
    };
    Some(match *req.method() {
        http::Method::PUT => Kind::Put,
        // DeleteObjects: `object_store` deletes even one object this way.
        http::Method::POST if has(&["delete"]) => Kind::Delete,
        http::Method::POST => Kind::Post,
        http::Method::HEAD => Kind::Head,
        http::Method::DELETE => Kind::Delete,
        // ListObjectsV2, ListMultipartUploads, ListParts.
        http::Method::GET if has(&["list-type", "uploads", "uploadId"]) => Kind::List,
        // Anything else reads.
        _ => Kind::Get,
    })
}

/// The connector every client is built with: the standard one, counted.
#[derive(Debug, Default)]
pub(super) struct Counting;

impl HttpConnector for Counting {
    fn connect(&self, options: &ClientOptions) -> object_store::Result<HttpClient> {
        let inner = ReqwestConnector::default().connect(options)?;
        Ok(HttpClient::new(CountingService(inner)))
    }
}

#[derive(Debug)]
struct CountingService(HttpClient);

#[async_trait::async_trait]
impl HttpService for CountingService {
    async fn call(&self, req: HttpRequest) -> Result<HttpResponse, HttpError> {
        let Some(k) = kind(&req) else {
            return self.0.execute(req).await;
        };
        COUNTS[k as usize].fetch_add(1, Ordering::Relaxed);
        #[cfg(debug_assertions)]
        if std::env::var_os("SYDRA_ARCHIVE_TEST_LOG_REQUESTS").is_some() {
            let range = req.headers().get("range").and_then(|v| v.to_str().ok());
            let pinned = req.headers().contains_key("if-match");
            eprintln!(
                "request: {} {} {} {pinned}",
                req.method(),
                req.uri(),
                range.unwrap_or("")
            );
        }
        BYTES_UP.fetch_add(req.body().content_length() as u64, Ordering::Relaxed);
        let res = self.0.execute(req).await?;
        let (parts, body) = res.into_parts();
        Ok(HttpResponse::from_parts(
            parts,
            HttpResponseBody::new(CountedBody(body)),
        ))
    }
}

/// A response body whose bytes are counted as they are read.
struct CountedBody(HttpResponseBody);

impl http_body::Body for CountedBody {
    type Data = Bytes;
    type Error = HttpError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, HttpError>>> {
        let polled = Pin::new(&mut self.0).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(data) = frame.data_ref()
        {
            BYTES_DOWN.fetch_add(data.len() as u64, Ordering::Relaxed);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.0.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(method: http::Method, uri: &str) -> HttpRequest {
        http::Request::builder()
            .method(method)
            .uri(uri)
            .body(object_store::client::HttpRequestBody::empty())
            .unwrap()
    }

    #[test]
    fn requests_are_told_apart_by_method_and_query() {
        use http::Method as M;
        let b = "http://127.0.0.1:9000/bucket";
        for (m, uri, want) in [
            (
                M::GET,
                format!("{b}?list-type=2&prefix=p%2F"),
                Some(Kind::List),
            ),
            (M::GET, format!("{b}/k?uploadId=1"), Some(Kind::List)),
            (M::GET, format!("{b}/k.tar.zst"), Some(Kind::Get)),
            (M::HEAD, format!("{b}/k.tar.zst"), Some(Kind::Head)),
            (
                M::PUT,
                format!("{b}/k?partNumber=1&uploadId=x"),
                Some(Kind::Put),
            ),
            (M::POST, format!("{b}/k?uploads"), Some(Kind::Post)),
            (M::DELETE, format!("{b}/k?uploadId=x"), Some(Kind::Delete)),
            (M::POST, format!("{b}?delete"), Some(Kind::Delete)),
            (M::POST, format!("{b}/k?uploadId=x"), Some(Kind::Post)),
            (
                M::PUT,
                "http://169.254.169.254/latest/api/token".to_string(),
                None,
            ),
            (
                M::POST,
                "https://sts.us-east-1.amazonaws.com/".to_string(),
                None,
            ),
        ] {
            assert_eq!(kind(&req(m.clone(), &uri)), want, "{m} {uri}");
        }
        let a = RequestCounts {
            put: 3,
            post: 2,
            list: 1,
            get: 5,
            head: 1,
            delete: 4,
            bytes_up: 10,
            bytes_down: 7,
        };
        assert_eq!((a.class_a(), a.class_b(), a.requests()), (6, 6, 16));
        assert_eq!(a.since(&a), RequestCounts::default());
        assert_eq!(RequestCounts::default().since(&a), RequestCounts::default());
    }
}
