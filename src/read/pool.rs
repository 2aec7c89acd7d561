//! Data frames decoded apart: a version-2 archive's data frames are
//! independent, so the reader hands whole frames to a few threads and
//! takes their output back in order (see [`crate::read::data`]).

use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;

use zstd::zstd_safe::{DCtx, DParameter, get_error_name};

use crate::format::frame::MAX_WINDOW_LOG;

/// What a decoded frame comes back as: its bytes, or why it failed.
pub type Decoded = std::result::Result<Vec<u8>, DecodeError>;

/// Why a frame was not decoded.
#[derive(Debug)]
pub enum DecodeError {
    /// The frame is not what it declares (zstd's reason).
    Corrupt(String),
    /// No zstd decoder could be allocated.
    NoDecoder,
}

struct Job {
    src: Vec<u8>,
    content: usize,
    reply: mpsc::SyncSender<Decoded>,
}

/// Threads that decode whole zstd frames. Dropping the pool lets the
/// threads finish what they hold and joins them.
pub struct FramePool {
    jobs: Option<mpsc::Sender<Job>>,
    handles: Vec<JoinHandle<()>>,
}

impl FramePool {
    /// Starts `threads` decoding threads; `None` if none could start.
    pub fn new(threads: usize) -> Option<FramePool> {
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        let mut handles = Vec::with_capacity(threads);
        for i in 0..threads {
            let rx = Arc::clone(&rx);
            let spawned = std::thread::Builder::new()
                .name(format!("unzstd-{i}"))
                .spawn(move || decode_jobs(&rx));
            match spawned {
                Ok(h) => handles.push(h),
                Err(_) => break,
            }
        }
        if handles.is_empty() {
            return None;
        }
        Some(FramePool {
            jobs: Some(tx),
            handles,
        })
    }

    /// Queues the frame `src`, which declares `content` bytes; its result
    /// arrives on the returned channel.
    pub fn submit(&self, src: Vec<u8>, content: usize) -> mpsc::Receiver<Decoded> {
        let (reply, rx) = mpsc::sync_channel(1);
        let job = Job {
            src,
            content,
            reply,
        };
        if let Some(jobs) = &self.jobs {
            // A send fails only when every thread is gone: the dropped
            // reply then reads as a failed thread.
            let _ = jobs.send(job);
        }
        rx
    }

    /// The number of decoding threads.
    pub fn threads(&self) -> usize {
        self.handles.len()
    }
}

impl Drop for FramePool {
    fn drop(&mut self) {
        self.jobs.take();
        for h in self.handles.drain(..) {
            let _ = h.join();
        }
    }
}

fn decode_jobs(rx: &Mutex<mpsc::Receiver<Job>>) {
    let mut dctx = DCtx::try_create();
    if let Some(d) = dctx.as_mut() {
        let _ = d.set_parameter(DParameter::WindowLogMax(MAX_WINDOW_LOG));
    }
    loop {
        let job = match rx.lock().unwrap_or_else(|e| e.into_inner()).recv() {
            Ok(job) => job,
            Err(_) => return,
        };
        let out = match dctx.as_mut() {
            Some(d) => decode(d, &job.src, job.content),
            None => Err(DecodeError::NoDecoder),
        };
        drop(job.src);
        let _ = job.reply.send(out);
    }
}

/// Decodes one whole frame that declares `content` bytes.
fn decode(dctx: &mut DCtx<'_>, src: &[u8], content: usize) -> Decoded {
    let mut out = Vec::with_capacity(content);
    match dctx.decompress(&mut out, src) {
        Ok(n) if n == content => Ok(out),
        Ok(n) => Err(DecodeError::Corrupt(format!(
            "decodes to {n} bytes, not the {content} it declares"
        ))),
        Err(c) => Err(DecodeError::Corrupt(get_error_name(c).to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_come_back_decoded_or_with_the_reason() {
        let pool = FramePool::new(2).unwrap();
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 7) as u8).collect();
        let good = zstd::bulk::compress(&data, 3).unwrap();
        let bad = good[..good.len() - 1].to_vec();
        let a = pool.submit(good.clone(), data.len());
        let b = pool.submit(bad, data.len());
        let c = pool.submit(good, data.len() + 1);
        assert_eq!(a.recv().unwrap().unwrap(), data);
        assert!(b.recv().unwrap().is_err());
        assert!(c.recv().unwrap().is_err());
    }
}
