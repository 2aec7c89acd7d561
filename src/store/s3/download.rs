//! Reading objects: FOOT first with a ranged GET, then the object
//! streamed, pinned to the ETag seen.

use std::io::{self, Read};

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use object_store::aws::AmazonS3;
use object_store::path::Path as ObjPath;
use object_store::{Attribute, GetOptions, GetRange, ObjectStore};

use crate::error::{Error, Result};
use crate::format::footer::FOOT_LEN;

use super::{Remote, S3Url, SHA256_METADATA, remote_error, runtime};

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

/// Bytes read from an object's end: a version-2 TAIL, whose last 64
/// bytes hold a version-1 FOOT's place.
const END_LEN: usize = crate::format::v2::TAIL_LEN;

/// Probes the object at `path`; `size`, when the caller knows it (from a
/// listing), makes the read a bounded range and skips objects too small.
pub(super) async fn probe_path(
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
        Some(n) => GetRange::Bounded(n - n.min(END_LEN as u64)..n),
        None => GetRange::Suffix(END_LEN as u64),
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
    if meta.size < FOOT_LEN as u64 || bytes.len() as u64 != meta.size.min(END_LEN as u64) {
        return Err(Error::corrupt(format!(
            "{url} is {} bytes, too short to be an archive",
            meta.size
        )));
    }
    crate::format::v2::check_end(&bytes, meta.size, &url.to_string())?;
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
        ObjectReader::open_range(remote, e_tag, None)
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
