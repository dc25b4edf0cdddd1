//! Pushing small files into the kernel's page cache before they are read.
//!
//! A cold read of a small file through FUSE costs two round trips to the daemon:
//! the READ, and a GETATTR after it (the kernel invalidates atime when a READ
//! completes, and tools like `tar` stat the file again). For a tree of small
//! files those round trips are nearly all of the cost. When a readdirplus of a
//! snapshot directory has been answered and the kernel has processed the reply
//! (it sends the next readdirplus or the releasedir of the same handle only
//! then), the files it listed that are small are queued here; a background thread reads each blob (through the blob cache) and
//! stores it in the page cache with `FUSE_NOTIFY_STORE`. A program that then
//! reads the file finds its pages cached and sends nothing.
//!
//! This is only ever a hint. The queue is bounded and drops work rather than
//! block a request; a read that comes first goes to the daemon as usual and gets
//! the same bytes. Notifications are sent from this thread, never from a
//! request handler, so that no handler waits on the kernel while the kernel
//! waits on it.

use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};

use git2::Oid;

use crate::fs::CommitFs;
use crate::inodes::Ino;

/// Files larger than this are not pushed.
pub const MAX_FILE: u64 = 128 << 10;
/// At most this many bytes are pushed for one readdirplus reply.
pub const MAX_PER_LISTING: u64 = 4 << 20;
/// Jobs waiting; more are dropped.
const QUEUE: usize = 8192;

pub struct Job {
    pub ino: Ino,
    pub oid: Oid,
}

/// The sending side, held by the filesystem.
#[derive(Clone)]
pub struct Prefetcher {
    tx: SyncSender<Job>,
}

impl Prefetcher {
    pub fn new() -> (Prefetcher, Receiver<Job>) {
        let (tx, rx) = sync_channel(QUEUE);
        (Prefetcher { tx }, rx)
    }

    /// Queues a job; returns false (and drops it) when the queue is full.
    pub fn offer(&self, job: Job) -> bool {
        match self.tx.try_send(job) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => false,
        }
    }
}

/// Runs until the filesystem drops its sender: reads each queued blob and
/// stores it in the kernel's page cache for its inode.
pub fn run(fs: Arc<CommitFs>, rx: Receiver<Job>, notifier: fuser::Notifier) {
    for job in rx {
        let data = match fs.blob_for_prefetch(job.oid) {
            Ok(d) => d,
            Err(e) => {
                log::debug!("prefetch of {}: {e}", job.oid);
                continue;
            }
        };
        log::trace!(
            "prefetch: storing {} bytes for inode {}",
            data.len(),
            job.ino
        );
        if let Err(e) = notifier.store(fuser::INodeNo(job.ino), 0, &data) {
            // The connection is gone (unmounted) or the kernel refused: stop
            // quietly, prefetching is only a hint.
            log::debug!("prefetch store for inode {}: {e}", job.ino);
            if e.raw_os_error() == Some(libc::ENODEV) {
                return;
            }
        }
    }
}
