//! The overlay on disk: what a mount has changed and not committed, kept so
//! that nothing acknowledged is lost when the daemon dies (SPEC section 4,
//! "The overlay"; EdenFS's model, `eden/fs/docs/InodeStorage.md`).
//!
//! Each mount that writes has one directory under the repository:
//! `COMMONDIR/commitfs/overlay/<start time>-<pid>/`, holding
//! - `lock`: flock'ed for the daemon's life. An overlay whose lock is free
//!   belongs to a daemon that is gone: the next mount adopts it (see
//!   `overlay/recover.rs`).
//! - `files/<id>`: the bytes of every written file that has a name, as a
//!   plain file of exactly the file's length. Writes go straight into it, so
//!   a write that returned success is in the kernel's page cache: it survives
//!   the daemon's death, and an fsync (fdatasync of it) makes it survive a
//!   power loss. Its mtime is the file's content mtime.
//! - `catalog.sqlite` (SQLite, WAL, `synchronous=NORMAL`: a transaction is in
//!   the page cache when it returns, durable after [`Persist::sync`]). Table
//!   `entry` holds, per materialized directory (keyed by its inode number in
//!   the mount that wrote it, never by path: a chain 100,000 levels deep costs
//!   one row per level), the entries that differ from the tree it was
//!   materialized from or last committed as: added, replaced, renamed or
//!   deleted names, and every materialized child. `meta` holds permission
//!   bits and times; `branch` names the branch of each root.
//!
//! What is written, and when: every change of a name writes its rows before
//! the request is answered; after each commit the rows of the committed
//! directories are rewritten to what is still uncommitted (`compact`). So the
//! catalog always holds exactly the mount's pending changes relative to the
//! commit the branch was last committed or followed to.
//!
//! Locks: `conn` is a leaf, taken under `inodes` and the overlay's `changes` (every change writes
//! its rows before it lets them go, so that the catalog sees changes in the
//! order memory did). Only this catalog's page-cache writes happen under it;
//! the fsyncs of `sync` take it too (a durable request is ordered after every
//! change acknowledged before it).

use nix::fcntl::{Flock, FlockArg};
use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::store::Oid;
use parking_lot::Mutex;
use rusqlite::{Connection, OptionalExtension, params};

use crate::error::{FsError, FsResult};
use crate::inodes::Ino;
use crate::model::Ts;
use crate::overlay::Meta;

/// The catalog's format. Format 1 (before directory rows named the tree
/// they are relative to) is still read; another value is a foreign overlay:
/// moved aside.
pub const FORMAT: i64 = 2;
const KIND: &str = "commitfs overlay";

/// A directory's rows, in name order.
pub type DirRows = Vec<(Box<[u8]>, Row)>;

/// One row of a directory's changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Row {
    /// The name is gone.
    Deleted,
    /// A materialized directory: its own rows are under its inode number,
    /// and are what differs from `base`.
    Dir { ino: Ino, base: DirBase },
    /// A written file, its bytes in `files/<file>`. `clean`: the blob it was
    /// last committed as, if no write came after (as far as the catalog knows:
    /// recovery checks the bytes).
    File {
        ino: Ino,
        file: u64,
        exec: bool,
        clean: Option<Oid>,
    },
    /// A symlink made here.
    Symlink { ino: Ino, target: Box<[u8]> },
    /// An object of the repository (moved here, or its mode changed): a tree,
    /// file, symlink or submodule by git mode.
    Object { ino: Ino, mode: u32, oid: Oid },
}

/// What a materialized directory's rows are relative to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DirBase {
    /// Nothing: made here (or what it tracked is gone); its rows are all of
    /// it.
    Empty,
    /// The tree its parent's tree has at its name: it stands where it was
    /// last committed or followed, and recovery keeps what the branch has
    /// there by then (another writer's later change of it stays). Also what
    /// a catalog of format 1 means by every directory row.
    AtItsName,
    /// This tree, brought from another name (a rename): recovery puts it
    /// at this name, in place of whatever the branch has there.
    Tree(Oid),
}

impl Row {
    pub fn ino(&self) -> Option<Ino> {
        match self {
            Row::Deleted => None,
            Row::Dir { ino, .. }
            | Row::File { ino, .. }
            | Row::Symlink { ino, .. }
            | Row::Object { ino, .. } => Some(*ino),
        }
    }
}

struct Open {
    conn: Connection,
    /// Held (flock'ed) for the daemon's life.
    _lock: Flock<File>,
    /// Rows were written since the last `sync`.
    unsynced: bool,
    /// The overlay's own directory entries were synced.
    dirs_synced: bool,
    /// A batch (`begin_batch`) is open: writes go into its transaction.
    batch: bool,
}

impl Open {
    /// Runs `body` in a transaction of its own, or in the open batch's.
    fn tx(
        &mut self,
        body: impl FnOnce(&Connection) -> rusqlite::Result<()>,
    ) -> rusqlite::Result<()> {
        if self.batch {
            return body(&self.conn);
        }
        let tx = self.conn.transaction()?;
        body(&tx)?;
        tx.commit()
    }
}

/// A mount's overlay directory (made on the first change).
pub struct Persist {
    /// `COMMONDIR/commitfs/overlay`.
    parent: PathBuf,
    dir: OnceLock<PathBuf>,
    conn: Mutex<Option<Open>>,
    next_file: AtomicU64,
}

fn sql(e: rusqlite::Error, what: &str, dir: &Path) -> FsError {
    if let rusqlite::Error::SqliteFailure(f, _) = &e {
        match f.code {
            rusqlite::ErrorCode::DiskFull => {
                return FsError::NoSpace(format!("{what} in {}", dir.display()));
            }
            rusqlite::ErrorCode::SystemIoFailure => {
                // SQLite says IOERR for a failed write; the errno is gone.
                return FsError::Io(format!("{what} in {}: {e}", dir.display()));
            }
            _ => {}
        }
    }
    FsError::Io(format!("{what} in {}: {e}", dir.display()))
}

fn ts_parts(t: Option<Ts>) -> (Option<i64>, Option<i64>) {
    match t {
        Some(t) => (Some(t.secs), Some(i64::from(t.nsec))),
        None => (None, None),
    }
}

fn ts_of(s: Option<i64>, n: Option<i64>) -> Option<Ts> {
    Some(Ts {
        secs: s?,
        nsec: u32::try_from(n.unwrap_or(0))
            .ok()
            .filter(|&n| n < 1_000_000_000)?,
    })
}

const SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS info(key TEXT PRIMARY KEY, value);
    CREATE TABLE IF NOT EXISTS branch(root INTEGER PRIMARY KEY, name BLOB NOT NULL);
    CREATE TABLE IF NOT EXISTS entry(
        dir INTEGER NOT NULL, name BLOB NOT NULL, kind INTEGER NOT NULL,
        ino INTEGER, file INTEGER, exec INTEGER, mode INTEGER, oid BLOB, target BLOB,
        PRIMARY KEY(dir, name)) WITHOUT ROWID;
    CREATE TABLE IF NOT EXISTS meta(ino INTEGER PRIMARY KEY, perm INTEGER,
        mtime_s INTEGER, mtime_n INTEGER, atime_s INTEGER, atime_n INTEGER,
        ctime_s INTEGER, ctime_n INTEGER);
";

/// WAL, synchronous=NORMAL. `exclusive`: the database has one connection
/// (an overlay's catalog, its directory flock'ed), so no file lock per
/// transaction and no shared-memory index; the times database is shared by
/// every mount of the repository and is not.
fn configure(conn: &Connection, exclusive: bool) -> rusqlite::Result<()> {
    if exclusive {
        conn.pragma_update(None, "locking_mode", "EXCLUSIVE")?;
    }
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    Ok(())
}

/// Takes the flock of an overlay's `lock` file, if no live daemon holds it.
fn try_lock(path: &Path) -> io::Result<Option<Flock<File>>> {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)?;
    match Flock::lock(f, FlockArg::LockExclusiveNonblock) {
        Ok(locked) => Ok(Some(locked)),
        Err((_, nix::errno::Errno::EWOULDBLOCK)) => Ok(None),
        Err((_, e)) => Err(e.into()),
    }
}

impl Persist {
    pub fn new(common_dir: &Path) -> Persist {
        Persist {
            parent: common_dir.join("commitfs").join("overlay"),
            dir: OnceLock::new(),
            conn: Mutex::new(None),
            next_file: AtomicU64::new(1),
        }
    }

    /// Where this mount's overlays live (`COMMONDIR/commitfs/overlay`).
    pub fn parent(&self) -> &Path {
        &self.parent
    }

    /// This mount's overlay directory, if it made one.
    pub fn dir(&self) -> Option<&Path> {
        self.dir.get().map(PathBuf::as_path)
    }

    fn files_dir(&self) -> FsResult<PathBuf> {
        self.with(|_| Ok(()))?;
        Ok(self
            .dir()
            .ok_or_else(|| FsError::io("no overlay"))?
            .join("files"))
    }

    /// Runs `f` on the open catalog, making the overlay first if need be.
    fn with<R>(&self, f: impl FnMut(&mut Open) -> rusqlite::Result<R>) -> FsResult<R> {
        self.with_reserve(false, f)
    }

    /// `with`; if `freeing` and the disk is full, the space kept in reserve
    /// is given up and `f` runs once more (its transaction was rolled back):
    /// so that a change that frees space, such as an unlink, is recorded on
    /// a full disk.
    fn with_reserve<R>(
        &self,
        freeing: bool,
        mut f: impl FnMut(&mut Open) -> rusqlite::Result<R>,
    ) -> FsResult<R> {
        let mut g = self.conn.lock();
        if g.is_none() {
            *g = Some(self.make()?);
        }
        let open = g.as_mut().ok_or_else(|| FsError::io("no overlay"))?;
        let dir = self.dir().unwrap_or(&self.parent);
        match f(open).map_err(|e| sql(e, "writing the overlay's catalog", dir)) {
            Err(FsError::NoSpace(why))
                if freeing && std::fs::remove_file(dir.join(RESERVE)).is_ok() =>
            {
                log::error!(
                    "the disk under the overlay {} is full: its reserve is used for the catalog until space is freed",
                    dir.display()
                );
                f(open)
                    .map_err(|e| sql(e, "writing the overlay's catalog", dir))
                    .map_err(|e| {
                        if let FsError::NoSpace(_) = e {
                            FsError::NoSpace(why)
                        } else {
                            e
                        }
                    })
            }
            r => r,
        }
    }

    /// Puts the reserve back if it was used and there is room again.
    pub fn refill_reserve(&self) {
        if let Some(d) = self.dir()
            && !d.join(RESERVE).exists()
        {
            make_reserve(d);
        }
    }

    fn make(&self) -> FsResult<Open> {
        let io_err = |e: io::Error, what: &str, p: &Path| {
            FsError::from_io(&e, format_args!("{what} {}", p.display()))
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let name = format!("{:020}-{}", now.as_nanos(), std::process::id());
        let dir = self.parent.join(name);
        std::fs::create_dir_all(dir.join("files"))
            .map_err(|e| io_err(e, "making the overlay directory", &dir))?;
        let lock = try_lock(&dir.join("lock"))
            .map_err(|e| io_err(e, "locking the overlay", &dir))?
            .ok_or_else(|| FsError::io(format!("overlay {} is in use", dir.display())))?;
        let db = dir.join("catalog.sqlite");
        let conn = Connection::open(&db).map_err(|e| sql(e, "opening the catalog", &dir))?;
        (|| -> rusqlite::Result<()> {
            configure(&conn, true)?;
            conn.execute_batch(SCHEMA)?;
            conn.execute(
                "INSERT OR REPLACE INTO info VALUES ('kind', ?1), ('format', ?2), ('syncs', 0)",
                params![KIND, FORMAT],
            )?;
            Ok(())
        })()
        .map_err(|e| sql(e, "making the catalog", &dir))?;
        make_reserve(&dir);
        // The directory entries of the overlay itself survive a power loss
        // once the first durable request syncs (see `sync`).
        let _ = self.dir.set(dir);
        Ok(Open {
            conn,
            _lock: lock,
            unsynced: true,
            dirs_synced: false,
            batch: false,
        })
    }

    /// A new, empty file for a written file's bytes: its id and the file.
    pub fn new_file(&self) -> FsResult<(u64, File)> {
        let files = self.files_dir()?;
        let id = self.next_file.fetch_add(1, Ordering::Relaxed);
        let path = files.join(id.to_string());
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| {
                FsError::from_io(&e, format_args!("making overlay file {}", path.display()))
            })?;
        Ok((id, f))
    }

    pub fn file_path(&self, id: u64) -> Option<PathBuf> {
        Some(self.dir()?.join("files").join(id.to_string()))
    }

    /// Takes `path` (a file of a dead overlay) as a new file of this one.
    pub fn adopt_file(&self, path: &Path) -> FsResult<(u64, File)> {
        let files = self.files_dir()?;
        let id = self.next_file.fetch_add(1, Ordering::Relaxed);
        let to = files.join(id.to_string());
        std::fs::rename(path, &to).map_err(|e| {
            FsError::from_io(
                &e,
                format_args!("moving {} into the overlay", path.display()),
            )
        })?;
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&to)
            .map_err(|e| FsError::from_io(&e, format_args!("opening {}", to.display())))?;
        Ok((id, f))
    }

    /// The file `id` lost its name (unlinked) or its bytes are committed
    /// and dropped: its name goes (an open descriptor keeps the data).
    pub fn remove_file(&self, id: u64) {
        if let Some(p) = self.file_path(id)
            && let Err(e) = std::fs::remove_file(&p)
            && e.kind() != io::ErrorKind::NotFound
        {
            log::warn!("cannot remove overlay file {}: {e}", p.display());
        }
    }

    /// Writes rows and metadata in one transaction (`None` row: the name has
    /// no change to keep; `None` meta: none kept). `freeing`: a change that
    /// frees space (a removal), which on a full disk may use the overlay's
    /// reserve.
    pub fn put(
        &self,
        freeing: bool,
        rows: &[(Ino, &[u8], Option<Row>)],
        metas: &[(Ino, Option<Meta>)],
    ) -> FsResult<()> {
        if rows.is_empty() && metas.is_empty() {
            return Ok(());
        }
        self.with_reserve(freeing, |o| {
            o.unsynced = true;
            o.tx(|tx| {
                for (dir, name, row) in rows {
                    match row {
                        Some(row) => put_row(tx, *dir, name, row)?,
                        None => {
                            tx.prepare_cached("DELETE FROM entry WHERE dir = ?1 AND name = ?2")?
                                .execute(params![*dir as i64, name])?;
                        }
                    }
                }
                for (ino, m) in metas {
                    put_meta(tx, *ino, m.as_ref())?;
                }
                Ok(())
            })
        })
    }

    /// Directory `dir`'s rows are now exactly `rows`.
    pub fn replace_dirs(&self, dirs: &[(Ino, DirRows)]) -> FsResult<()> {
        if dirs.is_empty() {
            return Ok(());
        }
        self.with(|o| {
            o.unsynced = true;
            o.tx(|tx| {
                for (dir, rows) in dirs {
                    tx.prepare_cached("DELETE FROM entry WHERE dir = ?1")?
                        .execute(params![*dir as i64])?;
                    for (name, row) in rows {
                        put_row(tx, *dir, name, row)?;
                    }
                }
                Ok(())
            })
        })
    }

    /// From here until `end_batch`, every write goes into one transaction
    /// (recovery's many small changes).
    pub fn begin_batch(&self) -> FsResult<()> {
        self.with(|o| {
            if !o.batch {
                o.conn.execute_batch("BEGIN")?;
                o.batch = true;
            }
            Ok(())
        })
    }

    pub fn end_batch(&self) -> FsResult<()> {
        self.with(|o| {
            if o.batch {
                o.batch = false;
                if !o.conn.is_autocommit() {
                    o.conn.execute_batch("COMMIT")?;
                }
            }
            Ok(())
        })
    }

    /// Root `root` is branch `name` (refs/heads/`name`).
    pub fn set_branch(&self, root: Ino, name: &[u8]) -> FsResult<()> {
        self.with(|o| {
            o.unsynced = true;
            o.conn
                .prepare_cached("INSERT OR REPLACE INTO branch VALUES (?1, ?2)")?
                .execute(params![root as i64, name])?;
            Ok(())
        })
    }

    /// Makes every row written so far survive a power loss (and the
    /// overlay's directory entries with them).
    pub fn sync(&self) -> FsResult<()> {
        let dirs = {
            let g = self.conn.lock();
            match g.as_ref() {
                None => return Ok(()),
                Some(o) if !o.unsynced && o.dirs_synced => return Ok(()),
                Some(o) => !o.dirs_synced,
            }
        };
        if dirs && let Some(d) = self.dir() {
            for p in [d.join("files"), d.to_path_buf(), self.parent.clone()] {
                sync_dir(&p)?;
            }
        }
        // A transaction committed with synchronous=FULL syncs the WAL, and
        // with it every frame before.
        self.with(|o| {
            if o.unsynced {
                o.conn.pragma_update(None, "synchronous", "FULL")?;
                let r = o
                    .conn
                    .execute("UPDATE info SET value = value + 1 WHERE key = 'syncs'", []);
                o.conn.pragma_update(None, "synchronous", "NORMAL")?;
                r?;
                o.unsynced = false;
            }
            o.dirs_synced |= dirs;
            Ok(())
        })
    }

    /// Makes file `id`'s directory entry durable (after a new file's fsync).
    pub fn sync_files_dir(&self) -> FsResult<()> {
        match self.dir() {
            Some(d) => sync_dir(&d.join("files")),
            None => Ok(()),
        }
    }

    /// Whether the catalog holds no change (nothing pending, no scratch or
    /// ignored file kept).
    pub fn is_empty(&self) -> FsResult<bool> {
        if self.conn.lock().is_none() {
            return Ok(true);
        }
        self.with(|o| {
            // Directories on the way to a change, directories standing
            // where a tree has them, and files committed as they are, are no
            // changes of their own; a directory made here with nothing below
            // it is (an empty directory: Git has no place for it, so only
            // the overlay keeps it).
            let n: i64 = o.conn.query_row(
                "SELECT count(*) FROM entry AS e
                 WHERE NOT (e.kind = 2 AND e.oid IS NOT NULL)
                   AND NOT (e.kind = 1 AND (e.exec = 1 OR e.oid IS NOT NULL
                        OR EXISTS (SELECT 1 FROM entry AS c WHERE c.dir = e.ino)))",
                [],
                |r| r.get(0),
            )?;
            Ok(n == 0)
        })
    }

    /// After a clean unmount with nothing left pending: the overlay goes.
    pub fn remove_if_empty(&self) {
        match self.is_empty() {
            Ok(true) => {}
            _ => return,
        }
        let Some(dir) = self.dir().map(Path::to_path_buf).filter(|d| d.exists()) else {
            return;
        };
        let mut g = self.conn.lock();
        *g = None;
        if let Err(e) = std::fs::remove_dir_all(&dir) {
            log::warn!("cannot remove the empty overlay {}: {e}", dir.display());
        }
    }
}

/// Space kept in the overlay for its catalog, given up when the disk is full.
const RESERVE: &str = "reserve";
const RESERVE_BYTES: i64 = 256 << 10;

fn make_reserve(dir: &Path) {
    let p = dir.join(RESERVE);
    let Ok(f) = File::create(&p) else { return };
    if nix::fcntl::fallocate(&f, nix::fcntl::FallocateFlags::empty(), 0, RESERVE_BYTES).is_err() {
        let _ = std::fs::remove_file(&p);
    }
}

/// The mtimes mounts showed for the blobs they committed, so that a file
/// whose content did not change keeps its time across remounts (`make` after
/// a remount rebuilds only what changed). In `COMMONDIR/commitfs/times.sqlite`,
/// shared by every mount of the repository; keyed by blob id (the same bytes
/// at two paths share a time). In memory: the most recent `TIMES_KEPT`.
/// Locks: `map` and `conn` are leaves; `record` writes with neither
/// `inodes` nor `changes` held.
pub struct Times {
    path: PathBuf,
    map: Mutex<HashMap<Oid, Ts>>,
    conn: Mutex<Option<Connection>>,
}

/// Blob times held in memory (about 60 bytes each).
pub const TIMES_KEPT: usize = 256 * 1024;

impl Times {
    /// Loads what earlier mounts recorded (nothing if there is no file yet).
    pub fn load(common_dir: &Path) -> Times {
        let path = common_dir.join("commitfs").join("times.sqlite");
        let mut map = HashMap::new();
        if path.exists() {
            let r = (|| -> rusqlite::Result<()> {
                let c =
                    Connection::open_with_flags(&path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
                c.busy_timeout(std::time::Duration::from_secs(5))?;
                let mut st =
                    c.prepare("SELECT oid, secs, nsec FROM shown ORDER BY rowid DESC LIMIT ?1")?;
                let mut q = st.query(params![TIMES_KEPT as i64])?;
                while let Some(r) = q.next()? {
                    let (Ok(oid), Some(t)) = (
                        Oid::from_bytes(&r.get::<_, Vec<u8>>(0)?),
                        ts_of(r.get(1)?, r.get(2)?),
                    ) else {
                        continue;
                    };
                    map.entry(oid).or_insert(t);
                }
                Ok(())
            })();
            if let Err(e) = r {
                log::warn!(
                    "cannot read the times of committed files in {}: {e}",
                    path.display()
                );
            }
        }
        Times {
            path,
            map: Mutex::new(map),
            conn: Mutex::new(None),
        }
    }

    /// The mtime shown for blob `oid` when a mount committed it.
    pub fn get(&self, oid: Oid) -> Option<Ts> {
        self.map.lock().get(&oid).copied()
    }

    /// Blobs just committed, and the mtime each showed.
    pub fn record(&self, items: &[(Oid, Ts)]) {
        if items.is_empty() {
            return;
        }
        {
            let mut m = self.map.lock();
            if m.len() + items.len() > TIMES_KEPT {
                m.clear();
            }
            for (o, t) in items {
                m.insert(*o, *t);
            }
        }
        let mut g = self.conn.lock();
        let r = (|| -> rusqlite::Result<()> {
            if g.is_none() {
                if let Some(d) = self.path.parent() {
                    let _ = std::fs::create_dir_all(d);
                }
                let c = Connection::open(&self.path)?;
                configure(&c, false)?;
                c.execute_batch(
                    "CREATE TABLE IF NOT EXISTS shown(oid BLOB PRIMARY KEY, secs INTEGER, nsec INTEGER)",
                )?;
                *g = Some(c);
            }
            let Some(c) = g.as_mut() else { return Ok(()) };
            let tx = c.transaction()?;
            for (o, t) in items {
                tx.prepare_cached("INSERT OR REPLACE INTO shown VALUES (?1, ?2, ?3)")?
                    .execute(params![o.as_bytes(), t.secs, i64::from(t.nsec)])?;
            }
            tx.commit()?;
            // Kept to a bound: the oldest go.
            c.execute(
                "DELETE FROM shown WHERE rowid <= (SELECT max(rowid) FROM shown) - ?1",
                params![(4 * TIMES_KEPT) as i64],
            )?;
            Ok(())
        })();
        if let Err(e) = r {
            log::warn!(
                "cannot record the times of committed files in {}: {e}",
                self.path.display()
            );
        }
    }
}

fn sync_dir(p: &Path) -> FsResult<()> {
    File::open(p)
        .and_then(|f| f.sync_all())
        .map_err(|e| FsError::from_io(&e, format_args!("syncing {}", p.display())))
}

fn put_row(tx: &Connection, dir: Ino, name: &[u8], row: &Row) -> rusqlite::Result<()> {
    let mut st = tx.prepare_cached(
        "INSERT OR REPLACE INTO entry(dir, name, kind, ino, file, exec, mode, oid, target)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?;
    // The columns each kind of row fills: kind, ino, file, exec, mode,
    // oid, target.
    type Cols<'a> = (
        i64,
        Option<i64>,
        Option<i64>,
        Option<i64>,
        Option<i64>,
        Option<&'a [u8]>,
        Option<&'a [u8]>,
    );
    let (kind, ino, file, exec, mode, oid, target): Cols<'_> = match row {
        Row::Deleted => (0, None, None, None, None, None, None),
        // exec 1: at its name; an oid: a tree brought here; neither: empty.
        Row::Dir { ino, base } => (
            1,
            Some(*ino as i64),
            None,
            Some((*base == DirBase::AtItsName) as i64),
            None,
            match base {
                DirBase::Tree(t) => Some(t.as_bytes()),
                DirBase::Empty | DirBase::AtItsName => None,
            },
            None,
        ),
        Row::File {
            ino,
            file,
            exec,
            clean,
        } => (
            2,
            Some(*ino as i64),
            Some(*file as i64),
            Some(*exec as i64),
            None,
            clean.as_ref().map(|o| o.as_bytes()),
            None,
        ),
        Row::Symlink { ino, target } => (
            3,
            Some(*ino as i64),
            None,
            None,
            None,
            None,
            Some(&target[..]),
        ),
        Row::Object { ino, mode, oid } => (
            4,
            Some(*ino as i64),
            None,
            None,
            Some(*mode as i64),
            Some(oid.as_bytes()),
            None,
        ),
    };
    st.execute(params![
        dir as i64, name, kind, ino, file, exec, mode, oid, target
    ])?;
    Ok(())
}

fn put_meta(tx: &Connection, ino: Ino, m: Option<&Meta>) -> rusqlite::Result<()> {
    let Some(m) = m.filter(|m| {
        m.perm.is_some() || m.mtime.is_some() || m.atime.is_some() || m.ctime.is_some()
    }) else {
        tx.prepare_cached("DELETE FROM meta WHERE ino = ?1")?
            .execute(params![ino as i64])?;
        return Ok(());
    };
    let (ms, mn) = ts_parts(m.mtime);
    let (as_, an) = ts_parts(m.atime);
    let (cs, cn) = ts_parts(m.ctime);
    tx.prepare_cached("INSERT OR REPLACE INTO meta VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)")?
        .execute(params![
            ino as i64,
            m.perm.map(i64::from),
            ms,
            mn,
            as_,
            an,
            cs,
            cn
        ])?;
    Ok(())
}

/// An overlay left by a daemon that is gone, read whole.
pub struct Dead {
    pub dir: PathBuf,
    /// Its lock, held while it is replayed.
    _lock: Flock<File>,
    pub branches: Vec<(Ino, Vec<u8>)>,
    /// Directory -> its rows, in name order.
    pub rows: HashMap<Ino, DirRows>,
    pub meta: HashMap<Ino, Meta>,
}

impl Dead {
    pub fn file_path(&self, id: u64) -> PathBuf {
        self.dir.join("files").join(id.to_string())
    }
}

/// What is found under `COMMONDIR/commitfs/overlay`: the overlays of daemons
/// that are gone, oldest first, each locked and read. A corrupt or foreign
/// one is logged in one line and moved aside (renamed `*.broken`), never
/// dropped.
pub fn dead_overlays(parent: &Path) -> Vec<Dead> {
    let Ok(rd) = std::fs::read_dir(parent) else {
        return Vec::new();
    };
    let mut dirs: Vec<PathBuf> = rd
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.is_dir()
                && p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| !n.contains('.'))
        })
        .collect();
    dirs.sort();
    let mut out = Vec::new();
    for dir in dirs {
        let lock = match try_lock(&dir.join("lock")) {
            Ok(Some(l)) => l,
            Ok(None) => continue, // a live mount's
            Err(e) => {
                log::error!("cannot lock overlay {}: {e}; leaving it", dir.display());
                continue;
            }
        };
        match read_dead(&dir) {
            Ok((branches, rows, meta)) => out.push(Dead {
                dir,
                _lock: lock,
                branches,
                rows,
                meta,
            }),
            Err(why) => move_aside(&dir, &why),
        }
    }
    out
}

/// Logs why overlay `dir` cannot be used, and renames it out of the way.
pub fn move_aside(dir: &Path, why: &str) {
    let to = dir.with_extension("broken");
    match std::fs::rename(dir, &to) {
        Ok(()) => log::error!(
            "overlay {} {why}: moved aside to {} (its files are under files/, its catalog is SQLite)",
            dir.display(),
            to.display()
        ),
        Err(e) => log::error!(
            "overlay {} {why}, and cannot be moved aside: {e}",
            dir.display()
        ),
    }
}

type Read = (
    Vec<(Ino, Vec<u8>)>,
    HashMap<Ino, Vec<(Box<[u8]>, Row)>>,
    HashMap<Ino, Meta>,
);

fn read_dead(dir: &Path) -> Result<Read, String> {
    let db = dir.join("catalog.sqlite");
    if !db.exists() {
        return Err("has no catalog".into());
    }
    let conn = Connection::open_with_flags(&db, rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE)
        .map_err(|e| format!("cannot be opened ({e})"))?;
    let r = (|| -> rusqlite::Result<Result<Read, String>> {
        configure(&conn, true)?;
        let kind: Option<String> = conn
            .query_row("SELECT value FROM info WHERE key = 'kind'", [], |r| {
                r.get(0)
            })
            .optional()?;
        let format: Option<i64> = conn
            .query_row("SELECT value FROM info WHERE key = 'format'", [], |r| {
                r.get(0)
            })
            .optional()?;
        if kind.as_deref() != Some(KIND) || !matches!(format, Some(1) | Some(FORMAT)) {
            return Ok(Err(format!(
                "is not a commitfs overlay of format {FORMAT} (kind {kind:?}, format {format:?})"
            )));
        }
        let mut branches = Vec::new();
        let mut st = conn.prepare("SELECT root, name FROM branch")?;
        let mut q = st.query([])?;
        while let Some(r) = q.next()? {
            branches.push((r.get::<_, i64>(0)? as Ino, r.get::<_, Vec<u8>>(1)?));
        }
        let mut rows: HashMap<Ino, DirRows> = HashMap::new();
        let mut st = conn.prepare(
            "SELECT dir, name, kind, ino, file, exec, mode, oid, target FROM entry ORDER BY dir, name",
        )?;
        let mut q = st.query([])?;
        while let Some(r) = q.next()? {
            let dir = r.get::<_, i64>(0)? as Ino;
            let name: Vec<u8> = r.get(1)?;
            let kind: i64 = r.get(2)?;
            let ino = r.get::<_, Option<i64>>(3)?.unwrap_or(0) as Ino;
            let oid = |b: Option<Vec<u8>>| b.and_then(|b| Oid::from_bytes(&b).ok());
            let row = match kind {
                0 => Row::Deleted,
                1 => Row::Dir {
                    ino,
                    base: match (format, r.get::<_, Option<i64>>(5)?, oid(r.get(7)?)) {
                        (Some(1), _, _) | (_, Some(1), _) => DirBase::AtItsName,
                        (_, _, Some(t)) => DirBase::Tree(t),
                        _ => DirBase::Empty,
                    },
                },
                2 => Row::File {
                    ino,
                    file: r.get::<_, Option<i64>>(4)?.unwrap_or(0) as u64,
                    exec: r.get::<_, Option<i64>>(5)?.unwrap_or(0) != 0,
                    clean: oid(r.get(7)?),
                },
                3 => Row::Symlink {
                    ino,
                    target: r.get::<_, Option<Vec<u8>>>(8)?.unwrap_or_default().into(),
                },
                4 => match oid(r.get(7)?) {
                    Some(oid) => Row::Object {
                        ino,
                        mode: r.get::<_, Option<i64>>(6)?.unwrap_or(0) as u32,
                        oid,
                    },
                    None => return Ok(Err("has an object row without an id".into())),
                },
                k => return Ok(Err(format!("has a row of unknown kind {k}"))),
            };
            rows.entry(dir).or_default().push((name.into(), row));
        }
        let mut meta = HashMap::new();
        let mut st = conn.prepare(
            "SELECT ino, perm, mtime_s, mtime_n, atime_s, atime_n, ctime_s, ctime_n FROM meta",
        )?;
        let mut q = st.query([])?;
        while let Some(r) = q.next()? {
            let m = Meta {
                perm: r
                    .get::<_, Option<i64>>(1)?
                    .and_then(|p| u16::try_from(p).ok()),
                mtime: ts_of(r.get(2)?, r.get(3)?),
                atime: ts_of(r.get(4)?, r.get(5)?),
                ctime: ts_of(r.get(6)?, r.get(7)?),
                unlinked: false,
            };
            meta.insert(r.get::<_, i64>(0)? as Ino, m);
        }
        Ok(Ok((branches, rows, meta)))
    })();
    match r {
        Ok(x) => x,
        Err(e) => Err(format!("has a catalog that cannot be read ({e})")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_row_keeps_what_it_is_relative_to() {
        let t = tempfile::tempdir().unwrap();
        let p = Persist::new(t.path());
        let oid = "0123456789012345678901234567890123456789"
            .parse::<Oid>()
            .unwrap();
        p.set_branch(1, b"main").unwrap();
        let bases = [DirBase::Empty, DirBase::AtItsName, DirBase::Tree(oid)];
        let names: [&[u8]; 3] = [b"a", b"b", b"c"];
        let rows: Vec<(Ino, &[u8], Option<Row>)> = (0..3)
            .map(|i| {
                let row = Row::Dir {
                    ino: 2 + i as Ino,
                    base: bases[i],
                };
                (1, names[i], Some(row))
            })
            .collect();
        p.put(false, &rows, &[]).unwrap();
        p.sync().unwrap();
        let db = p.dir().unwrap().join("catalog.sqlite");
        drop(p);
        let overlays = t.path().join("commitfs/overlay");
        let dead = dead_overlays(&overlays);
        let got: Vec<DirBase> = dead[0].rows[&1]
            .iter()
            .map(|(_, r)| match r {
                Row::Dir { base, .. } => *base,
                r => panic!("{r:?}"),
            })
            .collect();
        assert_eq!(got, bases);
        drop(dead);
        // A catalog of format 1 said nothing: each directory row is relative
        // to the tree at its name.
        Connection::open(&db)
            .unwrap()
            .execute("UPDATE info SET value = 1 WHERE key = 'format'", [])
            .unwrap();
        let dead = dead_overlays(&overlays);
        assert!(dead[0].rows[&1].iter().all(|(_, r)| matches!(
            r,
            Row::Dir {
                base: DirBase::AtItsName,
                ..
            }
        )));
    }

    #[test]
    fn rows_and_meta_come_back_from_a_dead_overlay() {
        let t = tempfile::tempdir().unwrap();
        let p = Persist::new(t.path());
        let oid = "0123456789012345678901234567890123456789"
            .parse::<Oid>()
            .unwrap();
        p.set_branch(1, b"main").unwrap();
        p.put(
            false,
            &[
                (
                    1,
                    &b"a"[..],
                    Some(Row::Dir {
                        ino: 2,
                        base: DirBase::Empty,
                    }),
                ),
                (
                    2,
                    b"f",
                    Some(Row::File {
                        ino: 3,
                        file: 7,
                        exec: true,
                        clean: Some(oid),
                    }),
                ),
                (2, b"gone", Some(Row::Deleted)),
                (
                    1,
                    b"l",
                    Some(Row::Symlink {
                        ino: 4,
                        target: b"t\xff".to_vec().into(),
                    }),
                ),
                (
                    1,
                    b"o",
                    Some(Row::Object {
                        ino: 5,
                        mode: 0o100644,
                        oid,
                    }),
                ),
                (1, b"x", Some(Row::Deleted)),
                (1, b"x", None),
            ],
            &[(
                3,
                Some(Meta {
                    perm: Some(0o600),
                    mtime: Some(Ts { secs: 5, nsec: 6 }),
                    ..Default::default()
                }),
            )],
        )
        .unwrap();
        p.sync().unwrap();
        // A live overlay is not dead.
        assert!(dead_overlays(p.parent()).is_empty());
        drop(p);
        let dead = dead_overlays(&t.path().join("commitfs/overlay"));
        assert_eq!(dead.len(), 1);
        let d = &dead[0];
        assert_eq!(d.branches, vec![(1, b"main".to_vec())]);
        assert_eq!(d.rows[&1].len(), 3);
        assert_eq!(
            d.rows[&2],
            vec![
                (
                    b"f"[..].into(),
                    Row::File {
                        ino: 3,
                        file: 7,
                        exec: true,
                        clean: Some(oid)
                    }
                ),
                (b"gone"[..].into(), Row::Deleted)
            ]
        );
        assert_eq!(d.meta[&3].perm, Some(0o600));
        assert_eq!(d.meta[&3].mtime, Some(Ts { secs: 5, nsec: 6 }));
    }

    #[test]
    fn a_foreign_overlay_is_moved_aside() {
        let t = tempfile::tempdir().unwrap();
        let parent = t.path().join("commitfs/overlay");
        let bad = parent.join("00000000000000000001-1");
        std::fs::create_dir_all(&bad).unwrap();
        std::fs::write(bad.join("catalog.sqlite"), b"not sqlite at all, not at all").unwrap();
        assert!(dead_overlays(&parent).is_empty());
        assert!(!bad.exists());
        assert!(parent.join("00000000000000000001-1.broken").exists());
    }
}
