//! The bytes of a written file: a named file in the mount's overlay on disk
//! (`files/<id>`, see `persist.rs`), exactly as long as the file.
//!
//! Every write goes into that file before it is acknowledged, so that it
//! survives the daemon's death; [`Data::sync`] (the file's fsync) makes it
//! survive a power loss. Nothing of a written file is held in memory.
//!
//! A write that fails for lack of space (or any other reason) takes nothing
//! with it: a file that a failed write grew is cut back to its length
//! before, so the space it grabbed is free again at once and what was there
//! stays.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::RwLock;

use crate::error::{FsError, FsResult};
use crate::overlay::persist::Persist;

/// The contents of one written file. Its length is kept by the caller (the
/// overlay's `WState`) and is the file's.
pub struct Data {
    store: Arc<Persist>,
    id: u64,
    /// The file, and its length (every change goes through `Data`, so this
    /// is exact without asking the kernel).
    place: RwLock<(File, u64)>,
    /// The catalog names this file: it outlives this process. Until then (a
    /// copy that lost a race, a file never linked), dropping it removes it.
    kept: AtomicBool,
    /// Its name was removed (the file was unlinked or its bytes committed).
    gone: AtomicBool,
    /// Its directory entry was synced (by its first fsync).
    entry_synced: AtomicBool,
    /// How far writeback was started by sequential writes (see
    /// `repo::write_behind`): a large file written end to end is on its way
    /// to disk as it is written, so its fsync has little left to do, and an
    /// fsync of another file does not wait for all of it.
    started: std::sync::atomic::AtomicU64,
}

/// What [`Data::with`] hands out: the file that holds the bytes.
pub enum Contents<'a> {
    Disk(&'a File),
}

impl Data {
    /// An empty file in the overlay.
    pub fn new(store: &Arc<Persist>) -> FsResult<Data> {
        let (id, f) = store.new_file()?;
        Ok(Data {
            store: store.clone(),
            id,
            place: RwLock::new((f, 0)),
            kept: AtomicBool::new(false),
            gone: AtomicBool::new(false),
            entry_synced: AtomicBool::new(false),
            started: std::sync::atomic::AtomicU64::new(0),
        })
    }

    /// An overlay file already on disk (adopted from a dead overlay).
    pub fn adopted(store: &Arc<Persist>, id: u64, f: File) -> FsResult<Data> {
        let len = f
            .metadata()
            .map_err(|e| FsError::from_io(&e, "reading an overlay file's length"))?
            .len();
        Ok(Data {
            store: store.clone(),
            id,
            place: RwLock::new((f, len)),
            kept: AtomicBool::new(false),
            gone: AtomicBool::new(false),
            entry_synced: AtomicBool::new(false),
            started: std::sync::atomic::AtomicU64::new(0),
        })
    }

    /// The id of its file in the overlay (`files/<id>`).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The catalog now names this file: it stays when the process ends.
    pub fn keep(&self) {
        self.kept.store(true, Ordering::Release);
    }

    /// The file's name goes now (unlinked, or committed and given up); an
    /// open descriptor still reads and writes the bytes.
    pub fn remove_name(&self) {
        if !self.gone.swap(true, Ordering::AcqRel) {
            self.store.remove_file(self.id);
        }
    }

    /// The content mtime the file has on disk.
    pub fn mtime(&self) -> Option<std::time::SystemTime> {
        self.place.read().0.metadata().ok()?.modified().ok()
    }

    /// fsync/fdatasync: the bytes (and, for a file still named, its
    /// directory entry) survive a power loss.
    pub fn sync(&self) -> FsResult<()> {
        self.place
            .read()
            .0
            .sync_data()
            .map_err(|e| self.write_error(&e))?;
        if !self.gone.load(Ordering::Acquire) && !self.entry_synced.load(Ordering::Acquire) {
            self.store.sync_files_dir()?;
            self.entry_synced.store(true, Ordering::Release);
        }
        Ok(())
    }

    fn write_error(&self, e: &io::Error) -> FsError {
        FsError::from_io(
            e,
            format_args!(
                "writing overlay file {}",
                self.store
                    .file_path(self.id)
                    .map(|p| p.display().to_string())
                    .unwrap_or_default()
            ),
        )
    }

    /// Its length (what was written or set; the file on disk is as long).
    pub fn size(&self) -> u64 {
        self.place.read().1
    }

    /// Reads into `buf` from `offset` until it is full or the data ends;
    /// returns how many bytes were read.
    pub fn read_at(&self, buf: &mut [u8], offset: u64) -> FsResult<usize> {
        let p = self.place.read();
        Ok(read_up_to(&p.0, buf, offset)?)
    }

    /// Writes all of `data` at `offset`; a gap before it reads as zeros. If
    /// the write fails, the file is as long as it was (see the module's doc).
    pub fn write_at(&self, data: &[u8], offset: u64) -> FsResult<()> {
        let end = offset
            .checked_add(data.len() as u64)
            .ok_or_else(|| FsError::TooBig(format!("a write ending past {}", u64::MAX)))?;
        let mut p = self.place.write();
        let (f, flen) = &mut *p;
        let res = f.write_all_at(data, offset);
        let r = self.grown(f, flen, end, res);
        if r.is_ok() {
            // Appends only: writeback of what is behind the end. (Not
            // waited for: the writer keeps the page cache's speed.)
            let mut started = self.started.load(Ordering::Relaxed);
            if offset <= started + crate::store::repo::WRITE_BEHIND && end > started {
                crate::store::repo::write_behind(f, &mut started, end, false);
                self.started.store(started, Ordering::Relaxed);
            }
        }
        r
    }

    /// Sets the length to `len`, cutting off or adding zeros.
    pub fn set_len(&self, len: u64) -> FsResult<()> {
        let mut p = self.place.write();
        let (f, flen) = &mut *p;
        match f.set_len(len) {
            Ok(()) => {
                *flen = len;
                self.started.fetch_min(len, Ordering::Relaxed);
                Ok(())
            }
            Err(e) => Err(self.write_error(&e)),
        }
    }

    /// fallocate(2) mode 0 of `offset..offset + len`: the file is at least
    /// that long afterwards, and has the blocks for the range (ENOSPC now
    /// rather than at a later write). If it fails, the file is as long as it
    /// was.
    pub fn allocate(&self, offset: u64, len: u64) -> FsResult<()> {
        let end = offset
            .checked_add(len)
            .ok_or_else(|| FsError::TooBig(format!("an allocation ending past {}", u64::MAX)))?;
        let mut p = self.place.write();
        let (f, flen) = &mut *p;
        let (Ok(off), Ok(n)) = (libc::off_t::try_from(offset), libc::off_t::try_from(len)) else {
            return Err(FsError::TooBig(format!("an allocation ending at {end}")));
        };
        let rc = nix::fcntl::fallocate(&*f, nix::fcntl::FallocateFlags::empty(), off, n);
        let res = match rc {
            Ok(()) => Ok(()),
            Err(errno) => match io::Error::from(errno) {
                // A filesystem that cannot reserve: the length at least.
                e if e.raw_os_error() == Some(libc::EOPNOTSUPP) => {
                    if end > *flen {
                        f.set_len(end)
                    } else {
                        Ok(())
                    }
                }
                e => Err(e),
            },
        };
        self.grown(f, flen, end, res)
    }

    /// After a change of file `f` (`flen` bytes long before it) that reaches
    /// `end`: the new length if it worked; if not, what it may have put on
    /// disk past the old end (until the space ran out) is given back.
    fn grown(&self, f: &File, flen: &mut u64, end: u64, res: io::Result<()>) -> FsResult<()> {
        match res {
            Ok(()) => {
                *flen = (*flen).max(end);
                Ok(())
            }
            Err(e) => {
                if end > *flen
                    && let Err(e) = f.set_len(*flen)
                {
                    log::warn!(
                        "cannot cut an overlay file back to {flen} bytes after a failed write: {e}"
                    );
                }
                Err(self.write_error(&e))
            }
        }
    }

    /// Runs `f` on the contents (the first `size` bytes are the file).
    pub fn with<R>(&self, f: impl FnOnce(Contents<'_>) -> R) -> R {
        f(Contents::Disk(&self.place.read().0))
    }
}

impl Drop for Data {
    fn drop(&mut self) {
        if !self.kept.load(Ordering::Acquire) {
            self.remove_name();
        }
        // The last close of a large unlinked file frees its blocks, which on
        // ext4 takes a while (380 ms for 1 GiB, measured): a Data is often
        // dropped with the overlay's locks held, so the last descriptor is
        // closed by the reaper thread instead, and this close is quick.
        let (f, len) = &*self.place.get_mut();
        if *len >= REAP_AT
            && let Ok(dup) = f.try_clone()
        {
            reap(dup);
        }
    }
}

/// Files at least this long are closed by the reaper (see `Drop for Data`).
const REAP_AT: u64 = 4 << 20;

/// Closes `f` on the reaper thread (started on first use); inline if that
/// thread cannot be started.
fn reap(f: File) {
    use std::sync::mpsc::{Sender, channel};
    static REAPER: std::sync::OnceLock<Option<parking_lot::Mutex<Sender<File>>>> =
        std::sync::OnceLock::new();
    let tx = REAPER.get_or_init(|| {
        let (tx, rx) = channel::<File>();
        std::thread::Builder::new()
            .name("reaper".into())
            .spawn(move || {
                for f in rx {
                    drop(f);
                }
            })
            .ok()
            .map(|_| parking_lot::Mutex::new(tx))
    });
    if let Some(tx) = tx {
        // A failed send hands the file back, which then closes here.
        let _ = tx.lock().send(f);
    }
}

/// Reads into `buf` from `offset` until it is full or the file ends.
pub fn read_up_to(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match file.read_at(&mut buf[got..], offset + got as u64) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, Arc<Persist>) {
        let dir = tempfile::tempdir().unwrap();
        let s = Arc::new(Persist::new(dir.path()));
        (dir, s)
    }

    fn read_all(d: &Data, len: usize) -> Vec<u8> {
        let mut buf = vec![0xAAu8; len];
        let n = d.read_at(&mut buf, 0).unwrap();
        buf[n..].fill(0);
        buf
    }

    fn disk_len(d: &Data) -> u64 {
        d.with(|Contents::Disk(f)| f.metadata().unwrap().len())
    }

    #[test]
    fn writes_land_in_a_named_file_of_the_overlay() {
        let (_d, s) = store();
        let a = Data::new(&s).unwrap();
        a.write_at(b"hello", 3).unwrap();
        assert_eq!(read_all(&a, 8), b"\0\0\0hello");
        let path = s.file_path(a.id()).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"\0\0\0hello");
        a.sync().unwrap();
        // Kept: it outlives the handle.
        a.keep();
        drop(a);
        assert!(path.exists());
        // Not kept: dropping it removes it.
        let b = Data::new(&s).unwrap();
        let pb = s.file_path(b.id()).unwrap();
        assert!(pb.exists());
        drop(b);
        assert!(!pb.exists());
    }

    #[test]
    fn set_len_both_ways() {
        let (_d, s) = store();
        let a = Data::new(&s).unwrap();
        a.write_at(b"abcdef", 0).unwrap();
        a.set_len(2).unwrap();
        a.set_len(4).unwrap();
        assert_eq!(read_all(&a, 4), b"ab\0\0");
        a.set_len(1 << 40).unwrap();
        let mut buf = [1u8; 4];
        assert_eq!(a.read_at(&mut buf, (1 << 40) - 4).unwrap(), 4);
        assert_eq!(buf, [0; 4]);
        a.set_len(3).unwrap();
        assert_eq!(read_all(&a, 3), b"ab\0");
    }

    #[test]
    fn allocate_reserves_the_blocks() {
        let (_d, s) = store();
        let a = Data::new(&s).unwrap();
        a.write_at(b"xy", 0).unwrap();
        a.allocate(4, 1 << 20).unwrap();
        assert_eq!(disk_len(&a), 4 + (1 << 20));
        let blocks = a.with(|Contents::Disk(f)| {
            std::os::unix::fs::MetadataExt::blocks(&f.metadata().unwrap())
        });
        assert!(blocks * 512 >= 1 << 20, "{blocks} blocks reserved");
        assert_eq!(&read_all(&a, 4)[..], b"xy\0\0");
    }

    /// ext4 holds files of up to 16 TiB: a write across that limit writes
    /// part of itself, fails (EFBIG), and leaves the file as long as it was.
    #[test]
    fn a_failed_write_leaves_the_file_as_long_as_it_was() {
        let (d, s) = store();
        let st = nix::sys::statfs::statfs(d.path()).unwrap();
        if st.filesystem_type() != nix::sys::statfs::EXT4_SUPER_MAGIC {
            eprintln!("skipped: the temporary directory is not on ext4");
            return;
        }
        let a = Data::new(&s).unwrap();
        let first = vec![3u8; 70_000];
        a.write_at(&first, 0).unwrap();
        let edge = (16u64 << 40) - 4096;
        let e = a.write_at(&[1u8; 8192], edge).unwrap_err();
        assert_eq!(e.errno(), libc::EFBIG, "{e}");
        assert_eq!(disk_len(&a), first.len() as u64);
        assert_eq!(read_all(&a, first.len()), first);
        let e = a.set_len(17 << 40).unwrap_err();
        assert_eq!(e.errno(), libc::EFBIG, "{e}");
        assert_eq!(disk_len(&a), first.len() as u64);
    }
}
