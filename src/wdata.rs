//! The bytes of a written file: in memory while the file is small, in an
//! unlinked spill file on disk once it grows.
//!
//! Creating a spill file costs a filesystem inode allocation (tens to hundreds
//! of microseconds on ext4 once its tables hold many recently freed inodes),
//! which dominated `cp -r` of many small files. So a file starts in memory and
//! moves to disk when it grows past [`SMALL`] bytes or when all in-memory files
//! together would pass the mount's budget. Memory therefore stays bounded by
//! the budget however many or however large the written files are.
//!
//! A write that fails for lack of space (or any other reason) takes nothing
//! with it: a spill file that a failed write grew is cut back to its length
//! before, so the space it grabbed is free again at once and what was there
//! stays; a file that cannot move from memory to disk stays in memory, whole.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use parking_lot::RwLock;

use crate::error::{FsError, FsResult};

/// A file larger than this lives on disk.
pub const SMALL: usize = 64 << 10;

/// Where written files keep their bytes, and how much memory they may use.
pub struct Store {
    spill_dir: PathBuf,
    limit: usize,
    used: AtomicUsize,
}

impl Store {
    pub fn new(spill_dir: PathBuf, limit: usize) -> Arc<Store> {
        Arc::new(Store {
            spill_dir,
            limit,
            used: AtomicUsize::new(0),
        })
    }

    /// Bytes of written files held in memory now.
    pub fn in_memory(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    /// Takes `n` bytes of the budget, if they are there.
    fn reserve(&self, n: usize) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |u| {
                u.checked_add(n).filter(|&t| t <= self.limit)
            })
            .is_ok()
    }

    fn release(&self, n: usize) {
        self.used.fetch_sub(n, Ordering::AcqRel);
    }

    fn spill_file(&self) -> FsResult<File> {
        tempfile::tempfile_in(&self.spill_dir).map_err(|e| {
            FsError::from_io(
                &e,
                format_args!("creating a spill file in {}", self.spill_dir.display()),
            )
        })
    }

    /// `e`, from writing a spill file, for the log and the caller.
    fn write_error(&self, e: &io::Error) -> FsError {
        FsError::from_io(
            e,
            format_args!("writing a spill file in {}", self.spill_dir.display()),
        )
    }
}

enum Place {
    /// The bytes, and how much of the budget their allocation holds.
    Mem(Vec<u8>, usize),
    /// The spill file, and its length (every change of it goes through
    /// `Data`, so this is exact without asking the kernel).
    Disk(File, u64),
}

/// The contents of one written file. Its length is kept by the caller (the
/// overlay's `WState`); past what was written, reads see zeros.
pub struct Data {
    store: Arc<Store>,
    place: RwLock<Place>,
}

/// What [`Data::with`] hands out: the bytes, or the spill file that holds them.
pub enum Contents<'a> {
    Mem(&'a [u8]),
    Disk(&'a File),
}

impl Data {
    /// An empty file, in memory.
    pub fn new(store: &Arc<Store>) -> Data {
        Data {
            store: store.clone(),
            place: RwLock::new(Place::Mem(Vec::new(), 0)),
        }
    }

    /// An empty file that goes straight to disk (it is known to be large).
    pub fn on_disk(store: &Arc<Store>) -> FsResult<Data> {
        Ok(Data {
            store: store.clone(),
            place: RwLock::new(Place::Disk(store.spill_file()?, 0)),
        })
    }

    /// Whether the bytes are in a spill file.
    pub fn is_on_disk(&self) -> bool {
        matches!(*self.place.read(), Place::Disk(..))
    }

    /// Reads into `buf` from `offset` until it is full or the data ends;
    /// returns how many bytes were read.
    pub fn read_at(&self, buf: &mut [u8], offset: u64) -> FsResult<usize> {
        match &*self.place.read() {
            Place::Mem(v, _) => {
                let Ok(start) = usize::try_from(offset) else {
                    return Ok(0);
                };
                if start >= v.len() {
                    return Ok(0);
                }
                let n = buf.len().min(v.len() - start);
                buf[..n].copy_from_slice(&v[start..start + n]);
                Ok(n)
            }
            Place::Disk(f, _) => Ok(read_up_to(f, buf, offset)?),
        }
    }

    /// Writes all of `data` at `offset`; a gap before it reads as zeros. If
    /// the write fails, the file is as long as it was (see the module's doc).
    pub fn write_at(&self, data: &[u8], offset: u64) -> FsResult<()> {
        let end = offset
            .checked_add(data.len() as u64)
            .ok_or_else(|| FsError::TooBig(format!("a write ending past {}", u64::MAX)))?;
        let mut place = self.place.write();
        // In memory after this only if `end` bytes fit there.
        self.make_room(&mut place, end)?;
        match &mut *place {
            Place::Mem(v, _) => {
                let (start, end) = (offset as usize, end as usize);
                if v.len() < end {
                    v.resize(end, 0);
                }
                v[start..end].copy_from_slice(data);
                Ok(())
            }
            Place::Disk(f, flen) => {
                let res = f.write_all_at(data, offset);
                self.grown(f, flen, end, res)
            }
        }
    }

    /// Sets the length to `len`, cutting off or adding zeros.
    pub fn set_len(&self, len: u64) -> FsResult<()> {
        let mut place = self.place.write();
        self.make_room(&mut place, len)?;
        match &mut *place {
            Place::Mem(v, _) => {
                v.resize(len as usize, 0);
                Ok(())
            }
            Place::Disk(f, flen) => match f.set_len(len) {
                Ok(()) => {
                    *flen = len;
                    Ok(())
                }
                Err(e) => Err(self.store.write_error(&e)),
            },
        }
    }

    /// fallocate(2) mode 0 of `offset..offset + len`: the file is at least
    /// that long afterwards, and a spill file has the blocks for the range
    /// (ENOSPC now rather than at a later write). A file in memory has its
    /// room already. If it fails, the file is as long as it was.
    pub fn allocate(&self, offset: u64, len: u64) -> FsResult<()> {
        let end = offset
            .checked_add(len)
            .ok_or_else(|| FsError::TooBig(format!("an allocation ending past {}", u64::MAX)))?;
        let mut place = self.place.write();
        self.make_room(&mut place, end)?;
        match &mut *place {
            Place::Mem(v, _) => {
                if v.len() < end as usize {
                    v.resize(end as usize, 0);
                }
                Ok(())
            }
            Place::Disk(f, flen) => {
                use std::os::fd::AsRawFd;
                let (Ok(off), Ok(n)) = (libc::off_t::try_from(offset), libc::off_t::try_from(len))
                else {
                    return Err(FsError::TooBig(format!("an allocation ending at {end}")));
                };
                // SAFETY: f is an open descriptor; fallocate only reads its arguments.
                let rc = unsafe { libc::fallocate(f.as_raw_fd(), 0, off, n) };
                let res = if rc == 0 {
                    Ok(())
                } else {
                    match io::Error::last_os_error() {
                        // A filesystem that cannot reserve: the length at least.
                        e if e.raw_os_error() == Some(libc::EOPNOTSUPP) => {
                            if end > *flen {
                                f.set_len(end)
                            } else {
                                Ok(())
                            }
                        }
                        e => Err(e),
                    }
                };
                self.grown(f, flen, end, res)
            }
        }
    }

    /// After a change of spill file `f` (`flen` bytes long before it) that
    /// reaches `end`: the new length if it worked; if not, what it may have
    /// put on disk past the old end (until the space ran out) is given back.
    fn grown(&self, f: &File, flen: &mut u64, end: u64, res: io::Result<()>) -> FsResult<()> {
        match res {
            Ok(()) => {
                *flen = (*flen).max(end);
                Ok(())
            }
            Err(e) => {
                if end > *flen {
                    self.cut_back(f, *flen);
                }
                Err(self.store.write_error(&e))
            }
        }
    }

    /// After a failed change that grew spill file `f`: back to `len` bytes,
    /// which frees what the change took. (Shrinking needs no space.)
    fn cut_back(&self, f: &File, len: u64) {
        if let Err(e) = f.set_len(len) {
            log::warn!(
                "cannot cut a spill file in {} back to {len} bytes after a failed write: {e}",
                self.store.spill_dir.display()
            );
        }
    }

    /// Runs `f` on the contents (the first `size` bytes are the file; a spill
    /// file may be shorter, the rest being zeros).
    pub fn with<R>(&self, f: impl FnOnce(Contents<'_>) -> R) -> R {
        match &*self.place.read() {
            Place::Mem(v, _) => f(Contents::Mem(v)),
            Place::Disk(file, _) => f(Contents::Disk(file)),
        }
    }

    /// Makes room in memory for a file `len` bytes long, or moves the file to
    /// disk: afterwards it is in memory only if `len` bytes fit there. If the
    /// move fails (the spill filesystem is full), the file stays in memory as
    /// it was, and the change that needed the room fails.
    fn make_room(&self, place: &mut Place, len: u64) -> FsResult<()> {
        let Place::Mem(v, held) = place else {
            return Ok(());
        };
        if len <= v.len() as u64 {
            return Ok(());
        }
        if len <= SMALL as u64 {
            let len = len as usize;
            // Grow by doubling (up to SMALL), so that a file written in small
            // appends is not copied once per append.
            let want = len.max(v.capacity().saturating_mul(2)).min(SMALL);
            if want <= *held || self.store.reserve(want - *held) {
                if want > *held {
                    *held = want;
                }
                v.reserve_exact(want - v.len());
                return Ok(());
            }
        }
        // Too large, or the budget is spent: to disk, with what was written.
        // Until the copy is whole, the bytes stay where they were; a copy that
        // fails closes its file, which frees what it took.
        let file = self.store.spill_file()?;
        file.write_all_at(v, 0)
            .map_err(|e| self.store.write_error(&e))?;
        let flen = v.len() as u64;
        self.store.release(*held);
        *place = Place::Disk(file, flen);
        Ok(())
    }
}

impl Drop for Data {
    fn drop(&mut self) {
        if let Place::Mem(_, held) = &*self.place.get_mut() {
            self.store.release(*held);
        }
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

    fn store(limit: usize) -> (tempfile::TempDir, Arc<Store>) {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::new(dir.path().to_path_buf(), limit);
        (dir, s)
    }

    fn read_all(d: &Data, len: usize) -> Vec<u8> {
        let mut buf = vec![0xAAu8; len];
        let n = d.read_at(&mut buf, 0).unwrap();
        buf[n..].fill(0);
        buf
    }

    #[test]
    fn small_files_stay_in_memory_and_large_ones_spill() {
        let (_d, s) = store(1 << 20);
        let a = Data::new(&s);
        a.write_at(b"hello", 3).unwrap();
        assert!(!a.is_on_disk());
        assert_eq!(read_all(&a, 8), b"\0\0\0hello");
        a.write_at(&vec![7u8; SMALL], 10).unwrap();
        assert!(a.is_on_disk(), "past SMALL the file moves to disk");
        let all = read_all(&a, SMALL + 10);
        assert_eq!(&all[..8], b"\0\0\0hello");
        assert!(all[10..].iter().all(|&b| b == 7));
        drop(a);
        assert_eq!(s.in_memory(), 0, "a spilled file holds no budget");
    }

    #[test]
    fn the_budget_bounds_memory_and_is_given_back() {
        let (_d, s) = store(3 * SMALL);
        let files: Vec<Data> = (0..8)
            .map(|i| {
                let d = Data::new(&s);
                d.write_at(&vec![i as u8; SMALL - 1], 0).unwrap();
                d
            })
            .collect();
        assert!(s.in_memory() <= 3 * SMALL);
        assert_eq!(files.iter().filter(|d| !d.is_on_disk()).count(), 3);
        for (i, d) in files.iter().enumerate() {
            assert_eq!(read_all(d, SMALL - 1), vec![i as u8; SMALL - 1]);
        }
        drop(files);
        assert_eq!(s.in_memory(), 0);
    }

    #[test]
    fn set_len_both_ways_in_memory_and_on_disk() {
        let (_d, s) = store(1 << 20);
        let a = Data::new(&s);
        a.write_at(b"abcdef", 0).unwrap();
        a.set_len(2).unwrap();
        a.set_len(4).unwrap();
        assert_eq!(read_all(&a, 4), b"ab\0\0");
        // A large sparse length goes to disk without writing the zeros.
        a.set_len(1 << 40).unwrap();
        assert!(a.is_on_disk());
        let mut buf = [1u8; 4];
        assert_eq!(a.read_at(&mut buf, (1 << 40) - 4).unwrap(), 4);
        assert_eq!(buf, [0; 4]);
        a.set_len(3).unwrap();
        assert_eq!(read_all(&a, 3), b"ab\0");
    }

    fn spill_len(d: &Data) -> u64 {
        d.with(|c| match c {
            Contents::Disk(f) => f.metadata().unwrap().len(),
            Contents::Mem(_) => panic!("in memory"),
        })
    }

    #[test]
    fn allocate_reserves_the_blocks_of_a_spill_file() {
        let (_d, s) = store(1 << 20);
        let a = Data::new(&s);
        a.allocate(0, 10).unwrap();
        assert!(!a.is_on_disk(), "a small allocation stays in memory");
        assert_eq!(read_all(&a, 10), [0u8; 10]);
        a.write_at(b"xy", 0).unwrap();
        a.allocate(4, 1 << 20).unwrap();
        assert!(a.is_on_disk());
        assert_eq!(spill_len(&a), 4 + (1 << 20));
        let blocks = a.with(|c| match c {
            Contents::Disk(f) => std::os::unix::fs::MetadataExt::blocks(&f.metadata().unwrap()),
            Contents::Mem(_) => 0,
        });
        assert!(blocks * 512 >= 1 << 20, "{blocks} blocks reserved");
        assert_eq!(&read_all(&a, 4)[..], b"xy\0\0");
    }

    /// ext4 holds files of up to 16 TiB: a write across that limit writes
    /// part of itself, fails (EFBIG), and leaves the file as long as it was.
    #[test]
    fn a_failed_write_leaves_the_spill_file_as_long_as_it_was() {
        let (d, s) = store(1 << 20);
        let c = std::ffi::CString::new(d.path().as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: c is a valid C string; st is written by the call.
        let mut st: libc::statfs = unsafe { std::mem::zeroed() };
        assert_eq!(unsafe { libc::statfs(c.as_ptr(), &mut st) }, 0);
        if st.f_type != 0xEF53 {
            eprintln!("skipped: the temporary directory is not on ext4");
            return;
        }
        let a = Data::new(&s);
        let first = vec![3u8; SMALL + 10];
        a.write_at(&first, 0).unwrap();
        let edge = (16u64 << 40) - 4096;
        let e = a.write_at(&[1u8; 8192], edge).unwrap_err();
        assert_eq!(e.errno(), libc::EFBIG, "{e}");
        assert_eq!(spill_len(&a), first.len() as u64);
        assert_eq!(read_all(&a, first.len()), first);
        let e = a.set_len(17 << 40).unwrap_err();
        assert_eq!(e.errno(), libc::EFBIG, "{e}");
        assert_eq!(spill_len(&a), first.len() as u64);
    }
}
