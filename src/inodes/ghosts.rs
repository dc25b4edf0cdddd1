//! Forgotten paths on disk: the numbers of clean paths the kernel forgot,
//! beyond the most recent ones kept in memory (see `Inodes::make_ghost`), so
//! that a walk of any size costs the daemon a bounded amount of memory while
//! every path keeps its number for the life of the mount.
//!
//! One SQLite database per mount, `COMMONDIR/commitfs/ghosts-<pid>-<ns>`,
//! unlinked as soon as it is open (it is only this daemon's memory moved to
//! the repository's disk: nothing in it outlives the mount, and a killed
//! daemon leaves nothing behind). Its journal in memory (a batch that
//! fails is rolled back whole), no syncs, a 2 MiB page cache:
//! its pages live in the kernel's page cache, which gives them back under
//! pressure. Table `ghost(ino PRIMARY KEY, parent, name)` with an index on
//! (parent, name). A Bloom filter of fixed size (8 MiB, made at the first
//! spill) answers "not here" for almost every name never forgotten, so a
//! first walk of new paths does not query the database.
//!
//! Locks: `conn` is a leaf, taken under the inode table's lock (read or
//! write) for point queries and single-row deletes, and alone (no other lock
//! held) for the batch inserts of a spill. See docs/DEVELOPMENT.md, "Locks".

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use parking_lot::Mutex;
use rusqlite::{Connection, OptionalExtension, params};

use crate::inodes::Ino;

/// Bits of the Bloom filter (8 MiB), and the hashes per name.
const BLOOM_BITS: usize = 1 << 26;
const BLOOM_HASHES: u64 = 4;

/// The forgotten paths of one mount that are kept on disk.
pub struct Ghosts {
    dir: PathBuf,
    /// Opened at the first spill. `None` inside: it could not be made (a
    /// read-only repository): forgotten paths then stay in memory.
    conn: OnceLock<Option<Mutex<Connection>>>,
    bloom: OnceLock<Box<[AtomicU64]>>,
    keys: (u64, u64),
    rows: AtomicUsize,
    /// Numbers whose row could not be deleted: never read from disk again
    /// (until written there anew).
    distrust: Mutex<std::collections::HashSet<Ino>>,
}

impl Ghosts {
    /// The store of a mount of the repository whose common directory is
    /// `common_dir` (made on disk at the first spill).
    pub fn new(common_dir: &Path) -> Ghosts {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        Ghosts {
            dir: common_dir.join("commitfs"),
            conn: OnceLock::new(),
            bloom: OnceLock::new(),
            keys: (seed ^ 0x9E37_79B9_7F4A_7C15, u64::from(std::process::id())),
            rows: AtomicUsize::new(0),
            distrust: Mutex::new(Default::default()),
        }
    }

    /// How many forgotten paths are on disk.
    pub fn len(&self) -> usize {
        self.rows.load(Ordering::Relaxed)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn open(&self) -> Option<&Mutex<Connection>> {
        self.conn
            .get_or_init(|| match open_db(&self.dir) {
                Ok(c) => Some(Mutex::new(c)),
                Err(e) => {
                    log::warn!(
                        "cannot keep forgotten paths on disk in {} ({e}); they stay in memory",
                        self.dir.display()
                    );
                    None
                }
            })
            .as_ref()
    }

    /// The `BLOOM_HASHES` bit positions of (parent, name).
    fn bits(&self, parent: Ino, name: &[u8]) -> impl Iterator<Item = usize> {
        use std::hash::Hasher;
        let mut h = std::hash::DefaultHasher::new();
        h.write_u64(self.keys.0);
        h.write_u64(parent);
        h.write(name);
        let a = h.finish();
        h.write_u64(self.keys.1);
        let b = h.finish() | 1;
        (0..BLOOM_HASHES).map(move |i| (a.wrapping_add(i.wrapping_mul(b)) as usize) % BLOOM_BITS)
    }

    fn maybe_here(&self, parent: Ino, name: &[u8]) -> bool {
        let Some(bloom) = self.bloom.get() else {
            return false;
        };
        self.bits(parent, name)
            .all(|b| bloom[b / 64].load(Ordering::Relaxed) & (1 << (b % 64)) != 0)
    }

    /// Writes a batch of forgotten paths (number, parent, name), in one
    /// transaction. False if they could not be written: they stay in memory.
    pub fn put(&self, batch: &[(Ino, Ino, Box<[u8]>)]) -> bool {
        let Some(conn) = self.open() else {
            return false;
        };
        let bloom = self.bloom.get_or_init(|| {
            (0..BLOOM_BITS / 64)
                .map(|_| AtomicU64::new(0))
                .collect::<Vec<_>>()
                .into_boxed_slice()
        });
        // Set first: a path must never be on disk and missed by the filter.
        for (_, parent, name) in batch {
            for b in self.bits(*parent, name) {
                bloom[b / 64].fetch_or(1 << (b % 64), Ordering::Relaxed);
            }
        }
        let mut c = conn.lock();
        let r = (|| -> rusqlite::Result<usize> {
            let tx = c.transaction()?;
            let mut added = 0;
            {
                let mut st = tx.prepare_cached(
                    "INSERT OR REPLACE INTO ghost(ino, parent, name) VALUES (?1, ?2, ?3)",
                )?;
                for (ino, parent, name) in batch {
                    added += st.execute(params![*ino as i64, *parent as i64, &name[..]])?;
                }
            }
            tx.commit()?;
            Ok(added)
        })();
        match r {
            Ok(n) => {
                self.rows.fetch_add(n, Ordering::Relaxed);
                let mut d = self.distrust.lock();
                if !d.is_empty() {
                    for (ino, ..) in batch {
                        d.remove(ino);
                    }
                }
                true
            }
            Err(e) => {
                log::warn!("cannot write forgotten paths to disk ({e}); they stay in memory");
                false
            }
        }
    }

    /// The number of forgotten path (parent, name), if it is on disk.
    pub fn find(&self, parent: Ino, name: &[u8]) -> Option<Ino> {
        if self.is_empty() || !self.maybe_here(parent, name) {
            return None;
        }
        let c = self.conn.get()?.as_ref()?.lock();
        c.prepare_cached("SELECT ino FROM ghost WHERE parent = ?1 AND name = ?2")
            .and_then(|mut st| {
                st.query_row(params![parent as i64, name], |r| r.get::<_, i64>(0))
                    .optional()
            })
            .inspect_err(|e| log::error!("cannot read a forgotten path from disk: {e}"))
            .ok()
            .flatten()
            .map(|i| i as Ino)
            .filter(|i| !self.distrust.lock().contains(i))
    }

    /// The place (parent, name) of forgotten number `ino`, if it is on disk.
    pub fn place(&self, ino: Ino) -> Option<(Ino, Box<[u8]>)> {
        if self.is_empty() {
            return None;
        }
        let c = self.conn.get()?.as_ref()?.lock();
        c.prepare_cached("SELECT parent, name FROM ghost WHERE ino = ?1")
            .and_then(|mut st| {
                st.query_row(params![ino as i64], |r| {
                    Ok((r.get::<_, i64>(0)? as Ino, r.get::<_, Vec<u8>>(1)?.into()))
                })
                .optional()
            })
            .inspect_err(|e| log::error!("cannot read a forgotten path from disk: {e}"))
            .ok()
            .flatten()
            .filter(|_| !self.distrust.lock().contains(&ino))
    }

    /// `ino` is no longer a forgotten path on disk (it is in memory again,
    /// or gone).
    pub fn remove(&self, ino: Ino) {
        if self.is_empty() {
            return;
        }
        let Some(Some(conn)) = self.conn.get() else {
            return;
        };
        match conn
            .lock()
            .prepare_cached("DELETE FROM ghost WHERE ino = ?1")
            .and_then(|mut st| st.execute(params![ino as i64]))
        {
            Ok(n) => {
                self.rows.fetch_sub(n, Ordering::Relaxed);
            }
            Err(e) => {
                log::error!("cannot remove a forgotten path from disk: {e}");
                self.distrust.lock().insert(ino);
            }
        }
    }
}

fn open_db(dir: &Path) -> Result<Connection, String> {
    std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    let ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let path = dir.join(format!("ghosts-{}-{ns}", std::process::id()));
    let conn = Connection::open(&path).map_err(|e| e.to_string())?;
    let r = conn.execute_batch(
        "PRAGMA journal_mode = MEMORY;
         PRAGMA synchronous = OFF;
         PRAGMA locking_mode = EXCLUSIVE;
         PRAGMA cache_size = -2048;
         CREATE TABLE ghost(ino INTEGER PRIMARY KEY, parent INTEGER NOT NULL, name BLOB NOT NULL);
         CREATE INDEX ghost_place ON ghost(parent, name);",
    );
    // The database is this daemon's alone, for its life only.
    let _ = std::fs::remove_file(&path);
    r.map_err(|e| e.to_string())?;
    Ok(conn)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forgotten_paths_come_back_by_place_and_by_number() {
        let t = tempfile::tempdir().unwrap();
        let g = Ghosts::new(t.path());
        assert_eq!(g.find(1, b"a"), None);
        let batch: Vec<(Ino, Ino, Box<[u8]>)> = (0..1000u64)
            .map(|i| (i + 10, i % 7 + 1, format!("n{i}\u{ff}").into_bytes().into()))
            .collect();
        assert!(g.put(&batch));
        assert_eq!(g.len(), 1000);
        for (ino, parent, name) in &batch {
            assert_eq!(g.find(*parent, name), Some(*ino));
            assert_eq!(g.place(*ino), Some((*parent, name.clone())));
        }
        assert_eq!(g.find(1, b"never"), None);
        g.remove(10);
        g.remove(10);
        assert_eq!(g.len(), 999);
        assert_eq!(g.find(1, b"n0\xc3\xbf"), None);
        // Nothing is left on disk by name: the database is unlinked.
        let left: Vec<_> = std::fs::read_dir(t.path().join("commitfs"))
            .unwrap()
            .collect();
        assert!(left.is_empty());
    }
}
