//! Blob contents for reads: a memory LRU bounded in bytes, and spill files for
//! blobs too large to keep in it.
//!
//! Invariants:
//! - The memory cache never holds more than `capacity` bytes of blob content,
//!   each entry counted with what holding it costs (`ENTRY_COST`).
//!   Only blobs of at most `capacity / 4` (and at most [`MAX_MEMORY_BLOB`]) enter it.
//! - A larger blob is inflated once, by a background thread, into an unlinked
//!   temporary file (a *spill*); readers wait only until the bytes they asked for
//!   are there, so a cold sequential read runs alongside the inflate. The daemon
//!   then holds a few chunks of it in memory at most; the kernel's page cache holds
//!   the rest. While inflating, the thread computes the blob's SHA-1; a blob whose
//!   hash, length or zlib stream is wrong makes every later read of it fail (EIO).
//! - One spill per blob: a blob is claimed under the `spills` lock before its
//!   thread starts. Finished spills are kept for the [`SPILL_KEEP`] most recently
//!   used blobs; a spill still being written is never evicted, so the number of
//!   unfinished spills is at most the number of large blobs being read at once.
//! - A spill that fails because a resource ran out (the spill filesystem is
//!   full, a quota, descriptors) is dropped from the cache at once, so that its
//!   file is closed and its space freed as soon as the reads waiting on it have
//!   their error (ENOSPC, ...); the next read inflates the blob again. A spill
//!   that failed because the blob is damaged stays, answering EIO.
//!
//! Lock order: a spill's `state` lock is never held while taking the cache locks.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::{Arc, Weak};

use crate::store::Oid;
use lru::LruCache;
use parking_lot::{Condvar, Mutex};
use sha1::{Digest, Sha1};

use crate::store::error::{StoreError, StoreResult};
use crate::store::repo::Repo;

/// No blob larger than this is kept whole in memory, whatever the cache size.
pub const MAX_MEMORY_BLOB: u64 = 16 << 20;
/// Readers waiting on a spill are woken each time this much more is written.
const NOTIFY_EVERY: u64 = 1 << 20;
/// How many spill files are kept after their last handle closes.
pub const SPILL_KEEP: usize = 8;

struct Lru {
    map: LruCache<Oid, Arc<[u8]>>,
    bytes: usize,
}

pub struct BlobCache {
    /// Reads of cached blobs served from memory, and those that had to read
    /// the object (for `commitfs status`).
    hits: std::sync::atomic::AtomicU64,
    misses: std::sync::atomic::AtomicU64,
    capacity: usize,
    mem: Mutex<Lru>,
    spills: Arc<Spills>,
    spill_dir: PathBuf,
}

type Spills = Mutex<LruCache<Oid, Arc<Spill>>>;

/// Where the bytes of an opened blob come from.
#[derive(Clone)]
pub enum Content {
    /// Small enough for the memory cache: read through it by id at each read, so an
    /// open file pins nothing in memory.
    Cached(Oid),
    Spilled(Arc<Spill>),
}

impl BlobCache {
    pub fn new(capacity: usize, spill_dir: PathBuf) -> BlobCache {
        BlobCache {
            hits: Default::default(),
            misses: Default::default(),
            capacity,
            mem: Mutex::new(Lru {
                map: LruCache::unbounded(),
                bytes: 0,
            }),
            spills: Arc::new(Mutex::new(LruCache::unbounded())),
            spill_dir,
        }
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// How many spills exist now (finished or not).
    pub fn spill_count(&self) -> usize {
        self.spills.lock().len()
    }

    /// Bytes of blob content held in memory now.
    /// (hits, misses, bytes held, capacity) of the memory cache.
    pub fn stats(&self) -> (u64, u64, usize, usize) {
        use std::sync::atomic::Ordering::Relaxed;
        (
            self.hits.load(Relaxed),
            self.misses.load(Relaxed),
            self.memory_bytes(),
            self.capacity,
        )
    }

    pub fn memory_bytes(&self) -> usize {
        self.mem.lock().bytes
    }

    /// Blobs held in memory.
    pub fn memory_entries(&self) -> usize {
        self.mem.lock().map.len()
    }

    /// Whether a blob of `size` bytes is served from memory rather than spilled.
    pub fn fits_in_memory(&self, size: u64) -> bool {
        size <= MAX_MEMORY_BLOB.min(self.capacity as u64 / 4)
    }

    /// Prepares to read blob `oid` of `size` bytes.
    pub fn open(&self, repo: &Arc<Repo>, oid: Oid, size: u64) -> StoreResult<Content> {
        if self.fits_in_memory(size) {
            return Ok(Content::Cached(oid));
        }
        let mut spills = self.spills.lock();
        // A spill that failed on a damaged blob stays, and keeps answering EIO,
        // until evicted: a damaged blob is not inflated (and partly served)
        // again and again. (One that ran out of space has left already.)
        if let Some(s) = spills.get(&oid) {
            return Ok(Content::Spilled(s.clone()));
        }
        let spill = Spill::start(
            repo.clone(),
            oid,
            size,
            &self.spill_dir,
            Arc::downgrade(&self.spills),
        )?;
        spills.put(oid, spill.clone());
        // Evict the least recently used finished spills beyond the limit.
        while spills.len() > SPILL_KEEP {
            let victim = spills
                .iter()
                .rev()
                .find(|(_, s)| s.finished())
                .map(|(k, _)| *k);
            match victim {
                Some(k) => {
                    spills.pop(&k);
                }
                None => break,
            }
        }
        Ok(Content::Spilled(spill))
    }

    /// Reads `len` bytes at `offset` of an opened blob.
    /// Hands `f` the `len` bytes at `offset` of an opened blob (fewer at its end),
    /// without copying them out of the cache or a per-thread buffer.
    pub fn read_with<R>(
        &self,
        repo: &Repo,
        content: &Content,
        offset: u64,
        len: usize,
        f: impl FnOnce(&[u8]) -> R,
    ) -> StoreResult<R> {
        match content {
            Content::Cached(oid) => {
                let data = self.get(repo, *oid)?;
                let start = (offset.min(data.len() as u64)) as usize;
                let end = start.saturating_add(len).min(data.len());
                Ok(f(&data[start..end]))
            }
            Content::Spilled(s) => s.read_with(offset, len, f),
        }
    }

    /// The whole content of a small blob, through the cache.
    pub fn get(&self, repo: &Repo, oid: Oid) -> StoreResult<Arc<[u8]>> {
        self.get_as(repo, oid, true)
    }

    /// [`BlobCache::get`] for the prefetcher, which hands the bytes to the
    /// kernel's page cache: a blob it had to read is not kept here too (a
    /// cold walk would otherwise fill the cache with what the kernel holds).
    pub fn get_for_kernel(&self, repo: &Repo, oid: Oid) -> StoreResult<Arc<[u8]>> {
        self.get_as(repo, oid, false)
    }

    fn get_as(&self, repo: &Repo, oid: Oid, keep: bool) -> StoreResult<Arc<[u8]>> {
        if let Some(d) = self.mem.lock().map.get(&oid) {
            self.hits.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return Ok(d.clone());
        }
        self.misses
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let data = repo.read_blob(oid)?;
        if keep {
            self.insert(oid, data.clone());
        }
        Ok(data)
    }

    fn insert(&self, oid: Oid, data: Arc<[u8]>) {
        if cost(&data) > self.capacity {
            return;
        }
        let mut lru = self.mem.lock();
        if let Some(old) = lru.map.put(oid, data.clone()) {
            lru.bytes -= cost(&old);
        }
        lru.bytes += cost(&data);
        while lru.bytes > self.capacity {
            match lru.map.pop_lru() {
                Some((_, d)) => lru.bytes -= cost(&d),
                None => break,
            }
        }
    }
}

/// What an entry of the memory cache costs against its bound: its bytes and
/// what holding it costs besides (the LRU's node and map slot, the id, the
/// allocation's header), so that a cache of many tiny blobs stays within
/// its bound too.
pub const ENTRY_COST: usize = 96;

fn cost(data: &[u8]) -> usize {
    data.len() + ENTRY_COST
}

#[derive(Default)]
struct SpillState {
    written: u64,
    /// The writer has written all it will (not yet checked).
    streamed: bool,
    /// Written and checked (or failed).
    done: bool,
    error: Option<StoreError>,
}

/// A blob being (or already) inflated into an unlinked temporary file.
pub struct Spill {
    file: File,
    size: u64,
    state: Mutex<SpillState>,
    progress: Condvar,
}

impl Spill {
    /// Starts inflating blob `oid` into a new spill file in `dir`; `cache`
    /// is where the caller keeps it (the spill drops itself from there if it
    /// fails for want of a resource).
    fn start(
        repo: Arc<Repo>,
        oid: Oid,
        size: u64,
        dir: &std::path::Path,
        cache: Weak<Spills>,
    ) -> StoreResult<Arc<Spill>> {
        let file = tempfile::tempfile_in(dir).map_err(|e| {
            StoreError::from_io(
                &e,
                format_args!("creating a spill file in {}", dir.display()),
            )
        })?;
        let spill = Arc::new(Spill {
            file,
            size,
            state: Mutex::new(SpillState::default()),
            progress: Condvar::new(),
        });
        let writer = spill.clone();
        let dir = dir.to_path_buf();
        std::thread::Builder::new()
            .name("commitfs-spill".into())
            .spawn(move || {
                writer.fill(&repo, oid, &dir);
                writer.drop_if_exhausted(oid, &cache);
            })
            .map_err(|e| StoreError::from_io(&e, "starting a spill thread"))?;
        Ok(spill)
    }

    /// After `fill`: a spill that failed for want of a resource leaves the
    /// cache, so that its file closes (and its space is freed) once the
    /// readers that have it return. (No state lock is held here.)
    fn drop_if_exhausted(self: &Arc<Self>, oid: Oid, cache: &Weak<Spills>) {
        let exhausted = self
            .state
            .lock()
            .error
            .as_ref()
            .is_some_and(StoreError::is_exhaustion);
        if !exhausted {
            return;
        }
        if let Some(cache) = cache.upgrade() {
            let mut spills = cache.lock();
            if spills.peek(&oid).is_some_and(|s| Arc::ptr_eq(s, self)) {
                spills.pop(&oid);
            }
        }
    }

    fn fill(&self, repo: &Repo, oid: Oid, dir: &std::path::Path) {
        // Whatever happens below (even a panic), readers are woken and told.
        struct Finish<'a>(&'a Spill);
        impl Drop for Finish<'_> {
            fn drop(&mut self) {
                let mut st = self.0.state.lock();
                if !st.done && st.error.is_none() {
                    st.error = Some(StoreError::io("spilling stopped unexpectedly"));
                }
                st.done = true;
                drop(st);
                self.0.progress.notify_all();
            }
        }
        let _finish = Finish(self);
        // The SHA-1 is computed by a second thread that follows the writer
        // through the spill file, so that hashing does not slow the inflate
        // that readers are waiting on.
        let (result, digest) = std::thread::scope(|scope| {
            let hasher = scope.spawn(|| self.hash_behind_writer());
            // Tells the hasher the stream is over, even if streaming panics
            // (the scope joins the hasher before unwinding further).
            struct Streamed<'a>(&'a Spill);
            impl Drop for Streamed<'_> {
                fn drop(&mut self) {
                    self.0.state.lock().streamed = true;
                    self.0.progress.notify_all();
                }
            }
            let streamed = Streamed(self);
            let mut pos = 0u64;
            let mut told = 0u64;
            // A failure to write the spill file, with its errno.
            let mut failed = None;
            let result = repo.stream_blob(oid, &mut |chunk| {
                self.file.write_all_at(chunk, pos).inspect_err(|e| {
                    failed = Some(StoreError::from_io(
                        e,
                        format_args!("spilling blob {oid} into {}", dir.display()),
                    ));
                })?;
                pos += chunk.len() as u64;
                // Readers are woken every NOTIFY_EVERY bytes, not every chunk:
                // the kernel keeps several reads waiting, and waking them all
                // for each chunk costs more than the copying.
                if pos - told >= NOTIFY_EVERY {
                    self.state.lock().written = pos;
                    self.progress.notify_all();
                    told = pos;
                }
                Ok(())
            });
            self.state.lock().written = pos;
            drop(streamed);
            (result.map_err(|e| failed.unwrap_or(e)), hasher.join())
        });
        let error = match (result, digest) {
            (Err(e), _) => Some(e),
            (Ok(n), _) if n != self.size => Some(StoreError::io(format!(
                "blob {oid}: got {n} bytes, expected {}",
                self.size
            ))),
            (Ok(_), Ok(Ok(d))) if d.as_slice() == oid.as_bytes() => None,
            (Ok(_), Ok(Ok(_))) => Some(StoreError::io(format!(
                "blob {oid}: content does not match its SHA-1"
            ))),
            (Ok(_), Ok(Err(e))) => Some(StoreError::io(format!(
                "blob {oid}: cannot hash the spill file: {e}"
            ))),
            (Ok(_), Err(_)) => Some(StoreError::io(format!(
                "blob {oid}: the hashing thread failed"
            ))),
        };
        if let Some(e) = &error {
            log::warn!("spilling blob {oid} failed: {e}");
        }
        let mut st = self.state.lock();
        st.error = error;
        st.done = true;
    }

    /// Hashes the spill file as it is written, until the writer is through.
    fn hash_behind_writer(&self) -> std::io::Result<Vec<u8>> {
        let mut hasher = Sha1::new();
        hasher.update(format!("blob {}\0", self.size).as_bytes());
        let mut buf = vec![0u8; 1 << 20];
        let mut pos = 0u64;
        loop {
            let (written, streamed) = {
                let mut st = self.state.lock();
                while st.written <= pos && !st.streamed {
                    self.progress.wait(&mut st);
                }
                (st.written, st.streamed)
            };
            while pos < written {
                let n = (written - pos).min(buf.len() as u64) as usize;
                self.file.read_exact_at(&mut buf[..n], pos)?;
                hasher.update(&buf[..n]);
                pos += n as u64;
            }
            if streamed {
                return Ok(hasher.finalize().to_vec());
            }
        }
    }

    fn finished(&self) -> bool {
        self.state.lock().done
    }

    /// Waits until the range is inflated (or the inflate failed), then reads it.
    /// A read that reaches the end of the blob waits until the whole blob has
    /// been checked against its id, so a program that reads to the end never
    /// sees a clean end of file on damaged content: it gets EIO instead.
    pub fn read_with<R>(
        &self,
        offset: u64,
        len: usize,
        f: impl FnOnce(&[u8]) -> R,
    ) -> StoreResult<R> {
        let end = offset.saturating_add(len as u64).min(self.size);
        let to_the_end = end >= self.size;
        {
            let mut st = self.state.lock();
            loop {
                // A blob known to be damaged serves nothing more, even bytes
                // that were written before the damage was found.
                if let Some(e) = &st.error {
                    return Err(e.clone());
                }
                if st.written >= end && (!to_the_end || st.done) {
                    break;
                }
                self.progress.wait(&mut st);
            }
        }
        if offset >= end {
            return Ok(f(&[]));
        }
        let n = (end - offset) as usize;
        with_read_buf(n, |buf| {
            self.file.read_exact_at(buf, offset)?;
            Ok(f(buf))
        })
    }
}

/// Runs `f` with this thread's read buffer, `n` bytes long (contents unspecified).
pub fn with_read_buf<R, E>(n: usize, f: impl FnOnce(&mut [u8]) -> Result<R, E>) -> Result<R, E> {
    READ_BUF.with(|b| {
        let mut buf = b.borrow_mut();
        if buf.len() < n {
            buf.resize(n, 0);
        }
        f(&mut buf[..n])
    })
}

thread_local! {
    /// Each FUSE thread's buffer for reads from spill files (at most one request,
    /// 1 MiB, long).
    static READ_BUF: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}
