//! Blob contents for reads: a memory LRU bounded in bytes, and spill files for
//! blobs too large to keep in it.
//!
//! Invariants:
//! - The memory cache never holds more than `capacity` bytes of blob content.
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
//!
//! Lock order: a spill's `state` lock is never held while taking the cache locks.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Arc;

use git2::Oid;
use lru::LruCache;
use parking_lot::{Condvar, Mutex};
use sha1::{Digest, Sha1};

use crate::error::{FsError, FsResult};
use crate::repo::Repo;

/// No blob larger than this is kept whole in memory, whatever the cache size.
pub const MAX_MEMORY_BLOB: u64 = 16 << 20;
/// How many spill files are kept after their last handle closes.
pub const SPILL_KEEP: usize = 8;

struct Lru {
    map: LruCache<Oid, Arc<[u8]>>,
    bytes: usize,
}

pub struct BlobCache {
    capacity: usize,
    mem: Mutex<Lru>,
    spills: Mutex<LruCache<Oid, Arc<Spill>>>,
    spill_dir: PathBuf,
}

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
            capacity,
            mem: Mutex::new(Lru {
                map: LruCache::unbounded(),
                bytes: 0,
            }),
            spills: Mutex::new(LruCache::unbounded()),
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
    pub fn memory_bytes(&self) -> usize {
        self.mem.lock().bytes
    }

    /// Whether a blob of `size` bytes is served from memory rather than spilled.
    pub fn fits_in_memory(&self, size: u64) -> bool {
        size <= MAX_MEMORY_BLOB.min(self.capacity as u64 / 4)
    }

    /// Prepares to read blob `oid` of `size` bytes.
    pub fn open(&self, repo: &Arc<Repo>, oid: Oid, size: u64) -> FsResult<Content> {
        if self.fits_in_memory(size) {
            return Ok(Content::Cached(oid));
        }
        let mut spills = self.spills.lock();
        // A spill that failed stays, and keeps answering EIO, until evicted:
        // a damaged blob is not inflated (and partly served) again and again.
        if let Some(s) = spills.get(&oid) {
            return Ok(Content::Spilled(s.clone()));
        }
        let spill = Spill::start(repo.clone(), oid, size, &self.spill_dir)?;
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
    pub fn read(
        &self,
        repo: &Repo,
        content: &Content,
        offset: u64,
        len: usize,
    ) -> FsResult<Vec<u8>> {
        match content {
            Content::Cached(oid) => {
                let data = self.get(repo, *oid)?;
                let start = (offset.min(data.len() as u64)) as usize;
                let end = start.saturating_add(len).min(data.len());
                Ok(data[start..end].to_vec())
            }
            Content::Spilled(s) => s.read_at(offset, len),
        }
    }

    /// The whole content of a small blob, through the cache.
    pub fn get(&self, repo: &Repo, oid: Oid) -> FsResult<Arc<[u8]>> {
        if let Some(d) = self.mem.lock().map.get(&oid) {
            return Ok(d.clone());
        }
        let data: Arc<[u8]> = repo.read_blob(oid)?.into();
        self.insert(oid, data.clone());
        Ok(data)
    }

    fn insert(&self, oid: Oid, data: Arc<[u8]>) {
        if data.len() > self.capacity {
            return;
        }
        let mut lru = self.mem.lock();
        if let Some(old) = lru.map.put(oid, data.clone()) {
            lru.bytes -= old.len();
        }
        lru.bytes += data.len();
        while lru.bytes > self.capacity {
            match lru.map.pop_lru() {
                Some((_, d)) => lru.bytes -= d.len(),
                None => break,
            }
        }
    }
}

#[derive(Default)]
struct SpillState {
    written: u64,
    done: bool,
    error: Option<String>,
}

/// A blob being (or already) inflated into an unlinked temporary file.
pub struct Spill {
    file: File,
    size: u64,
    state: Mutex<SpillState>,
    progress: Condvar,
}

impl Spill {
    fn start(repo: Arc<Repo>, oid: Oid, size: u64, dir: &std::path::Path) -> FsResult<Arc<Spill>> {
        let file = tempfile::tempfile_in(dir).map_err(|e| {
            FsError::io(format!(
                "cannot create a spill file in {}: {e}",
                dir.display()
            ))
        })?;
        let spill = Arc::new(Spill {
            file,
            size,
            state: Mutex::new(SpillState::default()),
            progress: Condvar::new(),
        });
        let writer = spill.clone();
        std::thread::Builder::new()
            .name("commitfs-spill".into())
            .spawn(move || writer.fill(&repo, oid))
            .map_err(|e| FsError::io(format!("cannot start a spill thread: {e}")))?;
        Ok(spill)
    }

    fn fill(&self, repo: &Repo, oid: Oid) {
        // Whatever happens below (even a panic), readers are woken and told.
        struct Finish<'a>(&'a Spill);
        impl Drop for Finish<'_> {
            fn drop(&mut self) {
                let mut st = self.0.state.lock();
                if !st.done && st.error.is_none() {
                    st.error = Some("spilling stopped unexpectedly".into());
                }
                st.done = true;
                drop(st);
                self.0.progress.notify_all();
            }
        }
        let _finish = Finish(self);
        let mut hasher = Sha1::new();
        hasher.update(format!("blob {}\0", self.size).as_bytes());
        let mut pos = 0u64;
        let result = repo.stream_blob(oid, &mut |chunk| {
            hasher.update(chunk);
            self.file.write_all_at(chunk, pos)?;
            pos += chunk.len() as u64;
            self.state.lock().written = pos;
            self.progress.notify_all();
            Ok(())
        });
        let error = match result {
            Ok(n) if n != self.size => {
                Some(format!("blob {oid}: got {n} bytes, expected {}", self.size))
            }
            Ok(_) if hasher.finalize().as_slice() != oid.as_bytes() => {
                Some(format!("blob {oid}: content does not match its SHA-1"))
            }
            Ok(_) => None,
            Err(e) => Some(e.to_string()),
        };
        if let Some(e) = &error {
            log::warn!("spilling blob {oid} failed: {e}");
        }
        let mut st = self.state.lock();
        st.error = error;
        st.done = true;
    }

    fn finished(&self) -> bool {
        self.state.lock().done
    }

    /// Waits until the range is inflated (or the inflate failed), then reads it.
    /// A read that reaches the end of the blob waits until the whole blob has
    /// been checked against its id, so a program that reads to the end never
    /// sees a clean end of file on damaged content: it gets EIO instead.
    pub fn read_at(&self, offset: u64, len: usize) -> FsResult<Vec<u8>> {
        let end = offset.saturating_add(len as u64).min(self.size);
        let to_the_end = end >= self.size;
        {
            let mut st = self.state.lock();
            loop {
                // A blob known to be damaged serves nothing more, even bytes
                // that were written before the damage was found.
                if let Some(e) = &st.error {
                    return Err(FsError::Io(e.clone()));
                }
                if st.written >= end && (!to_the_end || st.done) {
                    break;
                }
                self.progress.wait(&mut st);
            }
        }
        if offset >= end {
            return Ok(Vec::new());
        }
        let mut buf = vec![0u8; (end - offset) as usize];
        self.file.read_exact_at(&mut buf, offset)?;
        Ok(buf)
    }
}
