//! Pushing small files into the kernel's page cache before they are read.
//!
//! A cold read of a small file through FUSE costs two round trips to the daemon:
//! the READ, and a GETATTR after it (the kernel invalidates atime when a READ
//! completes, and tools like `tar` stat the file again). For a tree of small
//! files those round trips are nearly all of the cost. So the small files a
//! readdirplus of a snapshot directory lists are handed here as one batch as
//! soon as the reply is made, and a background thread starts reading their
//! blobs (through the blob cache) at once. It stores them in the page cache
//! with `FUSE_NOTIFY_STORE` only once the kernel has processed the reply and so
//! made their inodes (a store for an inode the kernel does not have yet is
//! dropped): the kernel sends the next readdirplus or the releasedir of the
//! same handle only then, and that opens the batch's [`Gate`]. A program that
//! then reads a file finds its pages cached and sends nothing. Reading while
//! the kernel takes in the reply keeps the stores ahead of a program reading
//! the files in listing order (`tar`, `cp -r`, `grep -r`).
//!
//! This is only ever a hint. The queue is bounded and drops work rather than
//! block a request; the bytes read ahead are bounded too ([`MAX_AHEAD`]); a read
//! that comes first goes to the daemon as usual and gets the same bytes.
//! Notifications are sent from this thread, never from a request handler, so
//! that no handler waits on the kernel while the kernel waits on it. The
//! kernel's side is a [`PageCache`], which the FUSE adapter implements.

use parking_lot::Mutex;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, TrySendError, sync_channel};
use std::sync::{Arc, OnceLock};
use std::thread::Thread;
use std::time::Duration;

use crate::store::Oid;

use crate::inodes::Ino;
use crate::view::CommitFs;

/// Files larger than this are not pushed.
pub const MAX_FILE: u64 = 128 << 10;
/// At most this many bytes are pushed for one readdirplus reply.
pub const MAX_PER_LISTING: u64 = 4 << 20;
/// Listings waiting (each of at most `fs::READDIR_BATCH`, 512, files: 8192
/// files in all); more are dropped.
const QUEUE: usize = 16;
/// Bytes read and not yet stored, at most: past it, nothing more is read
/// ahead, and the oldest listing still waiting for its gate is dropped.
pub const MAX_AHEAD: u64 = 8 << 20;

pub struct Job {
    pub ino: Ino,
    pub oid: Oid,
}

/// Who wakes the prefetch thread when a listing arrives or a gate opens.
#[derive(Default)]
struct Waker(OnceLock<Thread>);

impl Waker {
    fn wake(&self) {
        if let Some(t) = self.0.get() {
            t.unpark();
        }
    }
}

/// Opened once the kernel has processed the reply that listed a batch: from
/// then on its files may be stored.
pub struct Gate {
    open: AtomicBool,
    waker: Arc<Waker>,
}

impl Gate {
    pub fn open(&self) {
        self.open.store(true, Ordering::Release);
        self.waker.wake();
    }

    fn is_open(&self) -> bool {
        self.open.load(Ordering::Acquire)
    }
}

struct Batch {
    jobs: Vec<Job>,
    gate: Arc<Gate>,
}

/// The sending side, held by the filesystem.
#[derive(Clone)]
pub struct Prefetcher {
    tx: SyncSender<Batch>,
    waker: Arc<Waker>,
}

/// The receiving side, for [`run`].
pub struct Worker {
    rx: Receiver<Batch>,
    waker: Arc<Waker>,
}

impl Prefetcher {
    pub fn new() -> (Prefetcher, Worker) {
        let (tx, rx) = sync_channel(QUEUE);
        let waker = Arc::new(Waker::default());
        let w = waker.clone();
        (Prefetcher { tx, waker }, Worker { rx, waker: w })
    }

    /// Queues the files one reply listed, to be read at once and stored once
    /// the returned gate is opened. `None` (the batch dropped) when the queue
    /// is full.
    pub fn offer(&self, jobs: Vec<Job>) -> Option<Arc<Gate>> {
        let gate = Arc::new(Gate {
            open: AtomicBool::new(false),
            waker: self.waker.clone(),
        });
        let batch = Batch {
            jobs,
            gate: gate.clone(),
        };
        match self.tx.try_send(batch) {
            Ok(()) => {
                self.waker.wake();
                Some(gate)
            }
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => None,
        }
    }
}

/// A batch being worked on: `data` holds what was read of `jobs` so far, in
/// order (`None` for a blob that could not be read or was already stored).
struct Pending {
    jobs: Vec<Job>,
    data: Vec<Option<Arc<[u8]>>>,
    stored: usize,
    gate: Arc<Gate>,
}

#[derive(Debug, PartialEq)]
enum Step {
    Worked,
    Idle,
    /// The connection is gone.
    Gone,
}

/// What a step does with a job: read its blob, store bytes for an inode.
trait Io {
    fn read(&self, job: &Job) -> Option<Arc<[u8]>>;
    fn store(&self, ino: Ino, data: &[u8]) -> Step;
}

/// The kernel's page cache, as the prefetcher pushes into it (the FUSE
/// adapter implements it with `FUSE_NOTIFY_STORE`).
pub trait PageCache {
    /// Stores `data` as the start of inode `ino`'s pages. `Err(Gone)` when
    /// the connection is gone (unmounted); a refusal (the inode forgotten
    /// since) is the implementation's to log, and `Ok`: a hint only.
    fn store(&self, ino: Ino, data: &[u8]) -> Result<(), Gone>;
}

/// The connection to the kernel is gone.
pub struct Gone;

struct Live<'a, C> {
    fs: &'a CommitFs,
    cache: &'a C,
}

impl<C: PageCache> Io for Live<'_, C> {
    fn read(&self, job: &Job) -> Option<Arc<[u8]>> {
        match self.fs.blob_for_prefetch(job.oid) {
            Ok(d) => Some(d),
            Err(e) => {
                log::debug!("prefetch of {}: {e}", job.oid);
                None
            }
        }
    }

    fn store(&self, ino: Ino, data: &[u8]) -> Step {
        log::trace!("prefetch: storing {} bytes for inode {ino}", data.len());
        match self.cache.store(ino, data) {
            Ok(()) => Step::Worked,
            Err(Gone) => Step::Gone,
        }
    }
}

/// Runs until the filesystem drops its sender: reads each queued blob and
/// stores it in the kernel's page cache for its inode.
pub fn run(fs: Arc<CommitFs>, worker: Worker, cache: impl PageCache) {
    let _ = worker.waker.0.set(std::thread::current());
    let io = Live {
        fs: &fs,
        cache: &cache,
    };
    let mut pending: VecDeque<Pending> = VecDeque::new();
    let mut held = 0u64;
    let mut connected = true;
    loop {
        while connected {
            match worker.rx.try_recv() {
                Ok(b) => pending.push_back(Pending {
                    data: Vec::with_capacity(b.jobs.len()),
                    jobs: b.jobs,
                    stored: 0,
                    gate: b.gate,
                }),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => connected = false,
            }
        }
        match step(&io, &mut pending, &mut held) {
            Step::Worked => continue,
            Step::Gone => return,
            Step::Idle => {}
        }
        if !connected {
            return;
        }
        if pending.is_empty() {
            match worker.rx.recv() {
                Ok(b) => pending.push_back(Pending {
                    data: Vec::with_capacity(b.jobs.len()),
                    jobs: b.jobs,
                    stored: 0,
                    gate: b.gate,
                }),
                Err(_) => return,
            }
        } else {
            // Waiting for a gate (or for room to read ahead): `Gate::open`
            // and `offer` wake this thread; the timeout is only a safety net.
            std::thread::park_timeout(Duration::from_millis(100));
        }
    }
}

/// One unit of work: a store for a batch whose gate is open (oldest first;
/// a file not read yet is read now), else reading one file ahead, else, when
/// the bytes read ahead are at their bound, dropping the oldest batch.
fn step(io: &impl Io, pending: &mut VecDeque<Pending>, held: &mut u64) -> Step {
    pending.retain(|p| p.stored < p.jobs.len());
    for p in pending.iter_mut() {
        if !p.gate.is_open() {
            continue;
        }
        let data = if p.stored < p.data.len() {
            let d = p.data[p.stored].take();
            if let Some(d) = &d {
                *held -= d.len() as u64;
            }
            d
        } else {
            p.data.push(None);
            io.read(&p.jobs[p.stored])
        };
        let ino = p.jobs[p.stored].ino;
        p.stored += 1;
        return match data {
            Some(d) => io.store(ino, &d),
            None => Step::Worked,
        };
    }
    if *held < MAX_AHEAD {
        for p in pending.iter_mut() {
            if p.data.len() < p.jobs.len() {
                let d = io.read(&p.jobs[p.data.len()]);
                if let Some(d) = &d {
                    *held += d.len() as u64;
                }
                p.data.push(d);
                return Step::Worked;
            }
        }
    } else if let Some(p) = pending.pop_front() {
        // Read ahead as far as allowed and still not acknowledged: a hint only.
        log::debug!("prefetch: dropping a listing of {} files", p.jobs.len());
        *held -= p.data.iter().flatten().map(|d| d.len() as u64).sum::<u64>();
        return Step::Worked;
    }
    Step::Idle
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    /// Blobs of `size` bytes; records what was read and stored, in order.
    struct Fake {
        size: usize,
        log: RefCell<Vec<String>>,
    }

    impl Io for Fake {
        fn read(&self, job: &Job) -> Option<Arc<[u8]>> {
            self.log.borrow_mut().push(format!("read {}", job.ino));
            Some(vec![0u8; self.size].into())
        }
        fn store(&self, ino: Ino, _: &[u8]) -> Step {
            self.log.borrow_mut().push(format!("store {ino}"));
            Step::Worked
        }
    }

    fn batch(p: &Prefetcher, inos: std::ops::Range<Ino>) -> (Pending, Arc<Gate>) {
        let jobs: Vec<Job> = inos
            .map(|ino| Job {
                ino,
                oid: Oid::ZERO,
            })
            .collect();
        let gate = p.offer(Vec::new()).expect("room in the queue");
        let n = jobs.len();
        (
            Pending {
                jobs,
                data: Vec::with_capacity(n),
                stored: 0,
                gate: gate.clone(),
            },
            gate,
        )
    }

    fn run_steps(io: &Fake, pending: &mut VecDeque<Pending>, held: &mut u64) {
        while step(io, pending, held) == Step::Worked {}
    }

    /// Files are read while the kernel takes in the reply, stored only once
    /// the gate opens, each once, in listing order; nothing is held after.
    #[test]
    fn a_batch_is_read_ahead_and_stored_only_after_its_gate() {
        let (p, _w) = Prefetcher::new();
        let io = Fake {
            size: 10,
            log: RefCell::default(),
        };
        let (b, gate) = batch(&p, 1..4);
        let mut pending = VecDeque::from([b]);
        let mut held = 0;
        run_steps(&io, &mut pending, &mut held);
        assert_eq!(*io.log.borrow(), ["read 1", "read 2", "read 3"]);
        assert_eq!(held, 30);
        gate.open();
        run_steps(&io, &mut pending, &mut held);
        assert_eq!(io.log.borrow()[3..], ["store 1", "store 2", "store 3"]);
        assert_eq!(held, 0);
        assert!(pending.is_empty());
    }

    /// Stores for an opened batch come before reading ahead for a later one.
    #[test]
    fn an_open_batch_is_stored_before_more_is_read() {
        let (p, _w) = Prefetcher::new();
        let io = Fake {
            size: 10,
            log: RefCell::default(),
        };
        let (a, gate_a) = batch(&p, 1..3);
        let (b, _gate_b) = batch(&p, 10..12);
        gate_a.open();
        let mut pending = VecDeque::from([a, b]);
        let mut held = 0;
        run_steps(&io, &mut pending, &mut held);
        assert_eq!(
            *io.log.borrow(),
            [
                "read 1", "store 1", "read 2", "store 2", "read 10", "read 11"
            ]
        );
    }

    /// The bytes read ahead stay within MAX_AHEAD: past it the oldest batch
    /// still waiting for its gate is dropped, and reading goes on; what is
    /// left is stored once its gate opens.
    #[test]
    fn bytes_read_ahead_stay_within_the_bound() {
        let (p, _w) = Prefetcher::new();
        let size = (MAX_AHEAD / 4) as usize;
        let io = Fake {
            size,
            log: RefCell::default(),
        };
        let mut pending = VecDeque::new();
        let mut gates = Vec::new();
        for k in 0..4 {
            let (b, g) = batch(&p, k * 10..k * 10 + 3);
            pending.push_back(b);
            gates.push(g);
        }
        let mut held = 0;
        let mut most = 0;
        while step(&io, &mut pending, &mut held) == Step::Worked {
            most = most.max(held);
        }
        assert!(most <= MAX_AHEAD, "held {most}");
        // The older batches were dropped, the newest is read and waits.
        assert_eq!(pending.len(), 1);
        assert_eq!(held, 3 * size as u64);
        assert!(io.log.borrow().iter().all(|l| l.starts_with("read")));
        gates[3].open();
        run_steps(&io, &mut pending, &mut held);
        assert_eq!(
            io.log
                .borrow()
                .iter()
                .filter(|l| l.starts_with("store"))
                .count(),
            3
        );
        assert_eq!(held, 0);
    }
}

/// The prefetcher while it runs, and the gates of listings answered and not
/// yet known to the kernel, per directory handle. Both leaf locks.
#[derive(Default)]
pub(crate) struct Readahead {
    prefetcher: Mutex<Option<Prefetcher>>,
    listed: Mutex<HashMap<u64, Arc<Gate>>>,
}

impl Readahead {
    pub(crate) fn enable(&self, p: Prefetcher) {
        *self.prefetcher.lock() = Some(p);
    }

    pub(crate) fn disable(&self) {
        self.prefetcher.lock().take();
    }

    pub(crate) fn prefetcher(&self) -> Option<Prefetcher> {
        self.prefetcher.lock().clone()
    }

    /// The files of the listing just answered on handle `fh` wait on
    /// `gate`; one that waited before on this handle is let go (the kernel
    /// asked again, so it took in the earlier reply).
    pub(crate) fn gate(&self, fh: u64, gate: Arc<Gate>) {
        if let Some(earlier) = self.listed.lock().insert(fh, gate) {
            earlier.open();
        }
    }

    /// The kernel took in the last reply on handle `fh`.
    pub(crate) fn open(&self, fh: u64) {
        if let Some(gate) = self.listed.lock().remove(&fh) {
            gate.open();
        }
    }
}
