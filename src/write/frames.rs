//! DATA as independent zstd frames, compressed in parallel: the tar stream
//! is cut into frames of at most a target size, each compressed on its own
//! by one of the worker threads, and written out in order. Skippable
//! frames (INDEX blocks) go between data frames, in the order the caller
//! writes them.
//!
//! Memory is bounded: at most `threads + 1` frames are in flight, and
//! their buffers are reused.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;

use super::hash::HashWriter;

/// A frame to compress.
struct Job {
    seq: u64,
    input: Vec<u8>,
    output: Vec<u8>,
}

/// A compressed frame.
struct Done {
    seq: u64,
    input: Vec<u8>,
    output: Vec<u8>,
    result: io::Result<()>,
}

/// The DATA writer.
pub(super) struct Frames<'a, W: Write> {
    out: HashWriter<'a, W>,
    target: usize,
    buf: Vec<u8>,
    /// Sequence number of the frame being filled.
    seq: u64,
    jobs: Option<mpsc::SyncSender<Job>>,
    done: mpsc::Receiver<Done>,
    workers: Workers,
    /// Next sequence number to write out.
    next_out: u64,
    arrived: BTreeMap<u64, Done>,
    spare: Vec<(Vec<u8>, Vec<u8>)>,
    max_in_flight: u64,
    /// Frames written since the caller last asked: (seq, archive offset).
    written: Vec<(u64, u64)>,
}

/// Address space a compression thread takes before it compresses: its
/// stack (the platform's 2 MiB default), its signal stack and guard pages.
const THREAD_ADDRESS_SPACE: u64 = 2 * 1024 * 1024 + 64 * 1024;

impl<'a, W: Write> Frames<'a, W> {
    pub(super) fn new(
        out: HashWriter<'a, W>,
        level: i32,
        threads: u32,
        target: usize,
    ) -> io::Result<Self> {
        let threads = threads.max(1) as usize;
        // Under an address-space limit, threads whose stacks would take
        // half of it are refused up front, the way zstd says it: starting
        // them until one fails leaves nothing for the allocations other
        // threads make meanwhile (which abort the process).
        if let Some(limit) = crate::sys::address_space_limit()
            && threads as u64 * THREAD_ADDRESS_SPACE > limit / 2
        {
            return Err(io::Error::other(format!(
                "Allocation error: {threads} compression threads do not fit the address-space limit of {limit} bytes"
            )));
        }
        let (job_tx, job_rx) = mpsc::sync_channel::<Job>(threads);
        let job_rx = Arc::new(Mutex::new(job_rx));
        let (done_tx, done_rx) = mpsc::channel::<Done>();
        let mut workers = Workers(Vec::with_capacity(threads));
        for _ in 0..threads {
            let rx = Arc::clone(&job_rx);
            let tx = done_tx.clone();
            let spawned = std::thread::Builder::new()
                .name("compress".into())
                .spawn(move || compress_loop(&rx, &tx, level));
            match spawned {
                Ok(h) => workers.0.push(h),
                // Said the way zstd says it, so the caller names what to
                // lower; the threads started are ended first (their stacks
                // are what ran out).
                Err(e) => {
                    drop(job_tx);
                    for h in workers.0.drain(..) {
                        let _ = h.join();
                    }
                    return Err(io::Error::other(format!(
                        "Allocation error: cannot start a compression thread: {e}"
                    )));
                }
            }
        }
        Ok(Frames {
            out,
            target,
            buf: Vec::with_capacity(target),
            seq: 0,
            jobs: Some(job_tx),
            done: done_rx,
            workers,
            next_out: 0,
            arrived: BTreeMap::new(),
            spare: Vec::new(),
            max_in_flight: threads as u64 + 1,
            written: Vec::new(),
        })
    }

    /// The frame the next tar byte goes to.
    pub(super) fn seq(&self) -> u64 {
        self.seq
    }

    /// Bytes in the frame being filled.
    pub(super) fn fill(&self) -> usize {
        self.buf.len()
    }

    /// Room left in the frame being filled.
    pub(super) fn room(&self) -> usize {
        self.target - self.buf.len()
    }

    /// Whether the frame being filled holds nothing yet.
    pub(super) fn is_fresh(&self) -> bool {
        self.buf.is_empty()
    }

    /// The output, for skippable frames between data frames.
    pub(super) fn out(&mut self) -> &mut HashWriter<'a, W> {
        &mut self.out
    }

    /// Frames written out since the last call: (seq, archive offset).
    pub(super) fn take_written(&mut self) -> Vec<(u64, u64)> {
        std::mem::take(&mut self.written)
    }

    /// Appends tar bytes, starting a new frame whenever one is full.
    pub(super) fn write_tar(&mut self, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            let n = self.room().min(data.len());
            self.buf.extend_from_slice(&data[..n]);
            data = &data[n..];
            if self.buf.len() == self.target {
                self.cut()?;
            }
        }
        Ok(())
    }

    /// Ends the frame being filled (nothing if it is empty).
    pub(super) fn cut(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        while self.seq - self.next_out >= self.max_in_flight {
            self.wait_one()?;
        }
        let (mut input, output) = self
            .spare
            .pop()
            .unwrap_or_else(|| (Vec::with_capacity(self.target), Vec::new()));
        std::mem::swap(&mut input, &mut self.buf);
        let job = Job {
            seq: self.seq,
            input,
            output,
        };
        self.seq += 1;
        self.jobs
            .as_ref()
            .expect("jobs open until finish")
            .send(job)
            .map_err(|_| io::Error::other("a compression worker stopped"))?;
        self.write_ready()
    }

    /// Ends the frame being filled and adds `frame`, a whole zstd frame
    /// compressed elsewhere (copied from another archive), as the next
    /// frame, in order with the ones in flight.
    pub(super) fn raw(&mut self, frame: Vec<u8>) -> io::Result<()> {
        self.cut()?;
        while self.seq - self.next_out >= self.max_in_flight {
            self.wait_one()?;
        }
        let seq = self.seq;
        self.seq += 1;
        self.arrived.insert(
            seq,
            Done {
                seq,
                input: Vec::new(),
                output: frame,
                result: Ok(()),
            },
        );
        self.write_ready()
    }

    /// Writes every frame that is done and next in order.
    fn write_ready(&mut self) -> io::Result<()> {
        while let Ok(d) = self.done.try_recv() {
            self.arrived.insert(d.seq, d);
        }
        while let Some(d) = self.arrived.remove(&self.next_out) {
            self.emit(d)?;
        }
        Ok(())
    }

    /// Waits for the next frame in order and writes it.
    fn wait_one(&mut self) -> io::Result<()> {
        while !self.arrived.contains_key(&self.next_out) {
            let d = self
                .done
                .recv()
                .map_err(|_| io::Error::other("a compression worker stopped"))?;
            self.arrived.insert(d.seq, d);
        }
        self.write_ready()
    }

    fn emit(&mut self, d: Done) -> io::Result<()> {
        d.result?;
        let at = self.out.count;
        self.out.write_all(&d.output)?;
        self.written.push((d.seq, at));
        self.next_out += 1;
        let (mut input, mut output) = (d.input, d.output);
        input.clear();
        output.clear();
        if self.spare.len() < self.max_in_flight as usize {
            self.spare.push((input, output));
        }
        Ok(())
    }

    /// Cuts the last frame and writes every frame still in flight; the
    /// workers are stopped.
    pub(super) fn flush_all(&mut self) -> io::Result<()> {
        self.cut()?;
        while self.next_out < self.seq {
            self.wait_one()?;
        }
        self.jobs = None;
        for w in self.workers.0.drain(..) {
            w.join()
                .map_err(|_| io::Error::other("a compression worker panicked"))?;
        }
        Ok(())
    }

    /// Number of frames written.
    pub(super) fn frames(&self) -> u64 {
        self.next_out
    }

    /// The output writer, once everything is flushed.
    pub(super) fn into_out(self) -> HashWriter<'a, W> {
        self.out
    }
}

fn compress_loop(rx: &Mutex<mpsc::Receiver<Job>>, tx: &mpsc::Sender<Done>, level: i32) {
    let mut cctx = new_cctx(level);
    loop {
        let job = {
            let rx = rx.lock().unwrap_or_else(|e| e.into_inner());
            rx.recv()
        };
        let Ok(mut job) = job else { return };
        let result = match cctx.as_mut() {
            // A panic must not leave the writer waiting for this frame.
            Ok(c) => std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                compress(c, &job.input, &mut job.output)
            }))
            .unwrap_or_else(|_| Err(io::Error::other("a compression thread panicked"))),
            Err(e) => Err(io::Error::new(e.kind(), e.to_string())),
        };
        let done = Done {
            seq: job.seq,
            input: job.input,
            output: job.output,
            result,
        };
        if tx.send(done).is_err() {
            return;
        }
    }
}

fn new_cctx(level: i32) -> io::Result<zstd::bulk::Compressor<'static>> {
    let mut c = zstd::bulk::Compressor::new(level)?;
    c.include_checksum(true)?;
    c.include_contentsize(true)?;
    Ok(c)
}

fn compress(
    c: &mut zstd::bulk::Compressor<'static>,
    input: &[u8],
    output: &mut Vec<u8>,
) -> io::Result<()> {
    let bound = zstd::zstd_safe::compress_bound(input.len());
    output.clear();
    output.reserve(bound);
    c.compress_to_buffer(input, output)?;
    Ok(())
}

/// The compression threads. Dropped without [`Frames::flush_all`] (an
/// archive abandoned midway), they are not waited for: they end once the
/// job queue closes, and nothing is written.
struct Workers(Vec<JoinHandle<()>>);
