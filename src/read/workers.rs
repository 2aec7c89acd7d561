//! The worker side of the reader: bounded queues that carry file data from
//! the thread that decompresses to the threads that hash it and hand it to
//! a sink.
//!
//! Small files travel many to a message; each queue is bounded by the bytes
//! in flight (not by messages), so the reader can run ahead by a whole
//! directory of small files while memory stays bounded. All files of one
//! directory go to one worker (no two threads create files in the same
//! directory); consecutive directories, and large files, alternate between
//! workers.

use std::sync::{Condvar, Mutex, mpsc};

use sha2::{Digest, Sha256};

use crate::error::Error;
use crate::format::head::Entry;
use crate::read::sink::{FileSink, Sink};

/// Bytes a worker may have queued (data plus a per-job overhead).
pub const BUDGET_BYTES: usize = 4 * 1024 * 1024;
/// What a queued job costs beyond its data (and a path).
const JOB_OVERHEAD: usize = 128;
/// A batch is sent once it holds this many jobs or this many bytes.
const BATCH_JOBS: usize = 64;
const BATCH_BYTES: usize = 256 * 1024;
/// Files at least this large are dealt to workers one by one.
const LARGE_FILE: u64 = 1024 * 1024;

/// One step of one file, in order.
pub enum Job {
    /// A file starts: its entry and its index among files.
    Start {
        /// The entry.
        entry: Box<Entry>,
        /// Index among file entries (for the digest).
        file: usize,
    },
    /// The next chunk of the current file.
    Data(Vec<u8>),
    /// The current file is complete.
    End,
}

/// Bytes in flight to one worker.
#[derive(Default)]
pub struct Budget {
    state: Mutex<InFlight>,
    cv: Condvar,
}

/// What a [`Budget`] guards.
#[derive(Default)]
struct InFlight {
    /// Bytes queued to the worker and not yet handled.
    bytes: usize,
    /// The worker has stopped: nothing more is accepted.
    closed: bool,
}

impl Budget {
    /// Waits until `n` more bytes fit (or nothing is in flight); false when
    /// the worker has stopped.
    fn acquire(&self, n: usize) -> bool {
        let mut g = self.state.lock().unwrap_or_else(|e| e.into_inner());
        while !g.closed && g.bytes > 0 && g.bytes + n > BUDGET_BYTES {
            g = self.cv.wait(g).unwrap_or_else(|e| e.into_inner());
        }
        if g.closed {
            return false;
        }
        g.bytes += n;
        true
    }

    fn release(&self, n: usize) {
        let mut g = self.state.lock().unwrap_or_else(|e| e.into_inner());
        g.bytes = g.bytes.saturating_sub(n);
        self.cv.notify_all();
    }

    fn close(&self) {
        let mut g = self.state.lock().unwrap_or_else(|e| e.into_inner());
        g.closed = true;
        self.cv.notify_all();
    }
}

/// Chunk buffers handed back by the workers, so the reader does not
/// allocate and zero a fresh one for every chunk. Holds at most
/// [`Pool::KEEP`] buffers, all of one size.
pub struct Pool {
    size: usize,
    bufs: Mutex<Vec<Vec<u8>>>,
}

impl Pool {
    /// Buffers kept at most (the bytes in flight are bounded by the
    /// budgets anyway; this bounds what is kept after a burst).
    const KEEP: usize = 32;

    /// A pool of `size`-byte buffers.
    pub fn new(size: usize) -> Self {
        Pool {
            size,
            bufs: Mutex::new(Vec::new()),
        }
    }

    /// A buffer of exactly `size` bytes (their content is unspecified).
    pub fn take(&self) -> Vec<u8> {
        let kept = self.bufs.lock().unwrap_or_else(|e| e.into_inner()).pop();
        match kept {
            Some(mut b) => {
                b.resize(self.size, 0);
                b
            }
            None => vec![0u8; self.size],
        }
    }

    /// Hands a buffer back; one of another capacity is dropped.
    pub fn give(&self, buf: Vec<u8>) {
        if buf.capacity() != self.size {
            return;
        }
        let mut bufs = self.bufs.lock().unwrap_or_else(|e| e.into_inner());
        if bufs.len() < Self::KEEP {
            bufs.push(buf);
        }
    }
}

/// The worker behind a queue has stopped (it failed; its error is kept).
#[derive(Debug)]
pub struct Stopped;

/// A worker's queue and the batch being filled for it.
pub struct Queue<'a> {
    tx: mpsc::Sender<(Vec<Job>, usize)>,
    budget: &'a Budget,
    batch: Vec<Job>,
    cost: usize,
}

impl<'a> Queue<'a> {
    /// A queue sending on `tx`, bounded by `budget`.
    pub fn new(tx: mpsc::Sender<(Vec<Job>, usize)>, budget: &'a Budget) -> Self {
        Queue {
            tx,
            budget,
            batch: Vec::new(),
            cost: 0,
        }
    }

    /// Adds a job; sends the batch when it is full. `Err` when the worker
    /// has stopped.
    pub fn push(&mut self, job: Job) -> Result<(), Stopped> {
        self.cost += JOB_OVERHEAD;
        match &job {
            Job::Data(d) => self.cost += d.len(),
            Job::Start { entry, .. } => self.cost += entry.path.len(),
            Job::End => {}
        }
        self.batch.push(job);
        if self.batch.len() >= BATCH_JOBS || self.cost >= BATCH_BYTES {
            self.flush()?;
        }
        Ok(())
    }

    /// Sends what is batched.
    pub fn flush(&mut self) -> Result<(), Stopped> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let cost = std::mem::take(&mut self.cost);
        if !self.budget.acquire(cost) {
            return Err(Stopped);
        }
        self.tx
            .send((std::mem::take(&mut self.batch), cost))
            .map_err(|_| Stopped)
    }
}

/// Chooses the worker for each file.
pub struct Dispatch<'a> {
    queues: Vec<Queue<'a>>,
    last_dir: String,
    dir_worker: usize,
    next: usize,
}

impl<'a> Dispatch<'a> {
    /// Deals files out to `queues`.
    pub fn new(queues: Vec<Queue<'a>>) -> Self {
        Dispatch {
            queues,
            last_dir: String::new(),
            dir_worker: 0,
            next: 0,
        }
    }

    fn take_next(&mut self) -> usize {
        let w = self.next % self.queues.len();
        self.next += 1;
        w
    }

    /// The queue for the file `entry`.
    pub fn queue_for(&mut self, entry: &Entry) -> &mut Queue<'a> {
        let w = self.worker_for(entry);
        &mut self.queues[w]
    }

    /// The index of the worker for the file `entry`.
    fn worker_for(&mut self, entry: &Entry) -> usize {
        if entry.size >= LARGE_FILE {
            self.take_next()
        } else {
            let dir = crate::format::path::parent(&entry.path).unwrap_or("");
            if dir != self.last_dir {
                self.last_dir = dir.to_string();
                self.dir_worker = self.take_next();
            }
            self.dir_worker
        }
    }

    /// Every queue.
    pub fn all(&mut self) -> impl Iterator<Item = &mut Queue<'a>> {
        self.queues.iter_mut()
    }
}

/// The file a worker is handling.
struct Current<F> {
    /// The entry.
    entry: Box<Entry>,
    /// Index among file entries.
    file: usize,
    /// The sink's state for it.
    sink: F,
    hasher: Sha256,
}

/// A worker: hashes each file and hands it to the sink; sends the digest
/// of every file it handled, by file index, on `done`. On error it records
/// the error in `failed`, closes its budget and returns (its queue then
/// refuses).
pub fn worker<S: Sink>(
    sink: &S,
    rx: mpsc::Receiver<(Vec<Job>, usize)>,
    budget: &Budget,
    failed: &Mutex<Option<Error>>,
    pool: &Pool,
    done: &mpsc::Sender<(usize, [u8; 32])>,
) {
    // A panic (in a sink) must not leave the reader waiting for this
    // worker: it is recorded as a failure and the budget closed.
    struct OnPanic<'a> {
        failed: &'a Mutex<Option<Error>>,
        budget: &'a Budget,
    }
    impl Drop for OnPanic<'_> {
        fn drop(&mut self) {
            if std::thread::panicking() {
                self.failed
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .get_or_insert(Error::Refused("a reader worker panicked".into()));
                self.budget.close();
            }
        }
    }
    let _guard = OnPanic { failed, budget };
    let mut current: Option<Current<S::File>> = None;
    for (batch, cost) in rx {
        for job in batch {
            let step = match job {
                Job::Start { entry, file } => sink.file(&entry).map(|f| {
                    current = Some(Current {
                        entry,
                        file,
                        sink: f,
                        hasher: Sha256::new(),
                    })
                }),
                Job::Data(chunk) => {
                    let c = current.as_mut().expect("Start comes first");
                    c.hasher.update(&chunk);
                    let wrote = c.sink.write(&chunk);
                    pool.give(chunk);
                    wrote
                }
                Job::End => {
                    let c = current.take().expect("Start comes first");
                    // The reader may have stopped listening (it failed).
                    let _ = done.send((c.file, c.hasher.finalize().into()));
                    c.sink.finish(&c.entry)
                }
            };
            if let Err(e) = step {
                failed
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .get_or_insert(e);
                budget.close();
                return;
            }
        }
        budget.release(cost);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::head::EntryKind;

    fn entry(path: &str, size: u64) -> Entry {
        Entry {
            path: path.into(),
            kind: EntryKind::File,
            size,
            mode: 0o644,
            mtime: 0,
            mtime_nsec: 0,
        }
    }

    #[test]
    fn directories_alternate_and_large_files_are_dealt_one_by_one() {
        let budgets = [Budget::default(), Budget::default()];
        let queues = budgets
            .iter()
            .map(|b| Queue::new(mpsc::channel().0, b))
            .collect();
        let mut d = Dispatch::new(queues);
        let mut pick = |e: &Entry| d.worker_for(e);
        let a1 = pick(&entry("segments/1/a", 10));
        assert_eq!(
            pick(&entry("segments/1/b", 10)),
            a1,
            "same directory, same worker"
        );
        let b1 = pick(&entry("segments/2/a", 10));
        assert_ne!(a1, b1, "next directory, next worker");
        let w1 = pick(&entry("wal/1.wal", 64 << 20));
        let w2 = pick(&entry("wal/2.wal", 64 << 20));
        assert_ne!(w1, w2, "large files alternate");
    }

    #[test]
    fn pool_hands_back_full_size_buffers_and_keeps_a_bounded_number() {
        let pool = Pool::new(16);
        let mut b = pool.take();
        assert_eq!(b.len(), 16);
        b[0] = 7;
        b.truncate(3);
        let ptr = b.as_ptr();
        pool.give(b);
        let again = pool.take();
        assert_eq!(
            (again.len(), again.as_ptr()),
            (16, ptr),
            "reused, full length"
        );
        pool.give(Vec::with_capacity(5));
        assert_eq!(
            pool.bufs.lock().unwrap().len(),
            0,
            "other sizes are dropped"
        );
        for _ in 0..Pool::KEEP + 5 {
            pool.give(vec![0u8; 16]);
        }
        assert_eq!(pool.bufs.lock().unwrap().len(), Pool::KEEP);
    }

    #[test]
    fn budget_blocks_until_released_and_fails_when_closed() {
        let b = Budget::default();
        assert!(b.acquire(BUDGET_BYTES));
        std::thread::scope(|s| {
            let waiter = s.spawn(|| b.acquire(10));
            std::thread::sleep(std::time::Duration::from_millis(20));
            b.release(BUDGET_BYTES);
            assert!(waiter.join().unwrap());
        });
        b.close();
        assert!(!b.acquire(BUDGET_BYTES * 2));
    }
}
