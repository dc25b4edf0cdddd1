//! The bytes of a written file: in memory while the file is small, in an
//! unlinked spill file on disk once it grows.
//!
//! Creating a spill file costs a filesystem inode allocation (tens to hundreds
//! of microseconds on ext4 once its tables hold many recently freed inodes),
//! which dominated `cp -r` of many small files. So a file starts in memory and
//! moves to disk when it grows past [`SMALL`] bytes or when all in-memory files
//! together would pass the mount's budget. Memory therefore stays bounded by
//! the budget however many or however large the written files are.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use parking_lot::RwLock;

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

    fn spill_file(&self) -> io::Result<File> {
        tempfile::tempfile_in(&self.spill_dir).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!(
                    "cannot create a spill file in {}: {e}",
                    self.spill_dir.display()
                ),
            )
        })
    }
}

enum Place {
    /// The bytes, and how much of the budget their allocation holds.
    Mem(Vec<u8>, usize),
    Disk(File),
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
    pub fn on_disk(store: &Arc<Store>) -> io::Result<Data> {
        Ok(Data {
            store: store.clone(),
            place: RwLock::new(Place::Disk(store.spill_file()?)),
        })
    }

    /// Whether the bytes are in a spill file.
    pub fn is_on_disk(&self) -> bool {
        matches!(*self.place.read(), Place::Disk(_))
    }

    /// Reads into `buf` from `offset` until it is full or the data ends;
    /// returns how many bytes were read.
    pub fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
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
            Place::Disk(f) => read_up_to(f, buf, offset),
        }
    }

    /// Writes all of `data` at `offset`; a gap before it reads as zeros.
    pub fn write_at(&self, data: &[u8], offset: u64) -> io::Result<()> {
        let end = offset
            .checked_add(data.len() as u64)
            .ok_or_else(|| io::Error::from_raw_os_error(libc::EFBIG))?;
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
            Place::Disk(f) => f.write_all_at(data, offset),
        }
    }

    /// Sets the length to `len`, cutting off or adding zeros.
    pub fn set_len(&self, len: u64) -> io::Result<()> {
        let mut place = self.place.write();
        self.make_room(&mut place, len)?;
        match &mut *place {
            Place::Mem(v, _) => {
                v.resize(len as usize, 0);
                Ok(())
            }
            Place::Disk(f) => f.set_len(len),
        }
    }

    /// Runs `f` on the contents (the first `size` bytes are the file; a spill
    /// file may be shorter, the rest being zeros).
    pub fn with<R>(&self, f: impl FnOnce(Contents<'_>) -> R) -> R {
        match &*self.place.read() {
            Place::Mem(v, _) => f(Contents::Mem(v)),
            Place::Disk(file) => f(Contents::Disk(file)),
        }
    }

    /// Makes room in memory for a file `len` bytes long, or moves the file to
    /// disk: afterwards it is in memory only if `len` bytes fit there.
    fn make_room(&self, place: &mut Place, len: u64) -> io::Result<()> {
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
        let file = self.store.spill_file()?;
        file.write_all_at(v, 0)?;
        self.store.release(*held);
        *place = Place::Disk(file);
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
}
