//! The overlay: a mount's pending changes, in memory and durably on disk.
//!
//! A clean node of a branch is only an object id (`Kind::Tree`, `Kind::File`,
//! `Kind::Symlink`). A node that changes is *materialized* (see `view/write.rs`
//! for what each change does):
//! - a directory becomes `Kind::MDir`, and its children (name -> inode) move
//!   into the overlay, loaded once from its tree;
//! - a file becomes `Kind::MFile`, and its bytes move into a file of the
//!   overlay on disk (`wdata.rs`), copied from the blob unless the change
//!   truncates it;
//! - a new symlink is `Kind::MSymlink`, its target inline.
//!
//! The component [`Overlay`] owns what is pending: the in-memory [`Changes`]
//! behind one lock, the catalog and files on disk (`persist.rs`), and the
//! mtimes shown for committed files. Every change of names is recorded in
//! the catalog before it is acknowledged ([`Overlay::record`]); after a
//! commit or a followed move, the directories concerned are rewritten
//! ([`Overlay::rewrite`]).
//!
//! Invariants:
//! - Every ancestor of a materialized node, up to the branch's root, is an
//!   `MDir`: a commit only has to walk `MDir`s to find every change, and reuses
//!   the object id of every clean subtree.
//! - An `MDir`'s children in the overlay are exactly what the directory holds.
//! - An unlinked inode keeps its data (an open file stays readable and
//!   writable) until the kernel forgets it.
//!
//! Lock order: the view's `inodes` (write or read), then `changes`, then the
//! catalog's connection (`Persist::conn`, a leaf); a file's own `st` lock is
//! taken after both or alone. File data is read and written with neither of
//! the first two held.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::store::Oid;
use parking_lot::{Mutex, MutexGuard};

use crate::error::FsResult;
use crate::inodes::{Ino, Inodes, Kind};
use crate::model::Ts;

pub mod persist;
pub mod recover;
pub mod wdata;

use persist::{Persist, Row, Times};

/// A written file: its bytes (in memory while small, else in a spill file).
pub struct WFile {
    pub data: crate::overlay::wdata::Data,
    pub st: Mutex<WState>,
}

pub struct WState {
    pub size: u64,
    pub mtime: Ts,
    /// Bumped by every change of content.
    pub version: u64,
    /// The blob written for this file at the last commit, and the version it was.
    pub committed: Option<(u64, Oid)>,
    /// When it was last written to.
    pub last_write: Option<std::time::Instant>,
    /// This spill went back to being its blob: it must not be written to.
    pub retired: bool,
    /// Another writer's version took this file's place (see
    /// `follow/mod.rs`): no path names it, and it is never written again.
    pub replaced: bool,
}

impl WFile {
    pub fn new(data: crate::overlay::wdata::Data, st: WState) -> Arc<WFile> {
        Arc::new(WFile {
            data,
            st: Mutex::new(st),
        })
    }
}

impl WState {
    /// `size` bytes with that mtime, version 0, never committed, not
    /// written since it was made.
    pub fn new(size: u64, mtime: Ts) -> WState {
        WState {
            size,
            mtime,
            version: 0,
            committed: None,
            last_write: None,
            retired: false,
            replaced: false,
        }
    }

    /// The content changed and is now `size` bytes long.
    pub(crate) fn content_changed(&mut self, size: u64) {
        self.size = size;
        self.version += 1;
        self.mtime = Ts::now();
        self.last_write = Some(std::time::Instant::now());
    }
}

pub enum Mat {
    Dir(BTreeMap<Box<[u8]>, Ino>),
    File(Arc<WFile>),
}

/// What Git cannot store, kept in memory: permission bits beyond the
/// executable bit, the times (set by utimens, or by changes: a directory's
/// entries, a chmod), and whether the inode lost its last name.
#[derive(Debug, Default, Clone, Copy)]
pub struct Meta {
    pub perm: Option<u16>,
    pub mtime: Option<Ts>,
    pub atime: Option<Ts>,
    /// The last change of status (chmod, chown, utimens, a directory's
    /// entries, an unlink); the attributes show it as it is (utimens may
    /// set mtime later), or mtime where none was kept.
    pub ctime: Option<Ts>,
    /// Unlinked, still open: nlink 0.
    pub unlinked: bool,
}

impl Meta {
    /// The inode's status changed now (chmod, chown, utimens).
    pub(crate) fn touch_status(&mut self) {
        self.ctime = Some(Ts::now());
    }
}

/// A changed directory: its inode, its entries, its base tree's listing.
pub type ChangedDir<'a> = (
    Ino,
    &'a BTreeMap<Box<[u8]>, Ino>,
    Option<&'a Arc<crate::store::treeobj::Listing>>,
);

/// A branch's changes as memory holds them (the catalog on disk holds the
/// same: see `persist.rs`), under the overlay's one lock: what each changed
/// inode is (a directory's entries, a file's written data), what Git cannot
/// store of it (`Meta`), which inodes another writer replaced, and each
/// changed directory's base tree.
#[derive(Default)]
pub struct Changes {
    mats: HashMap<Ino, Mat>,
    meta: HashMap<Ino, Meta>,
    /// Inodes another writer's change replaced or removed (see follow/mod.rs):
    /// still readable, never written again, and nothing is made below them.
    stale: std::collections::HashSet<Ino>,
    /// Of each materialized directory that came from a tree: that tree's
    /// listing (shared with the tree cache). Its hidden entries (see
    /// `treeobj`) go into the directory's next tree exactly as they were,
    /// unseen and untouched, and it tells which scratch names the branch
    /// tracks already.
    base: HashMap<Ino, Arc<crate::store::treeobj::Listing>>,
}

impl Changes {
    /// What changed inode `ino` is: a directory's entries or a file's data.
    pub fn mat(&self, ino: Ino) -> Option<&Mat> {
        self.mats.get(&ino)
    }

    pub fn mat_mut(&mut self, ino: Ino) -> Option<&mut Mat> {
        self.mats.get_mut(&ino)
    }

    /// Inode `ino` is now changed, as `m`.
    pub fn set_mat(&mut self, ino: Ino, m: Mat) {
        self.mats.insert(ino, m);
    }

    /// Inode `ino` is no longer changed (it went back to its blob, or was
    /// given up); what it was.
    pub fn take_mat(&mut self, ino: Ino) -> Option<Mat> {
        self.mats.remove(&ino)
    }

    /// Each changed file's inode.
    pub fn files(&self) -> impl Iterator<Item = Ino> + '_ {
        self.mats.iter().filter_map(|(&ino, m)| match m {
            Mat::File(_) => Some(ino),
            Mat::Dir(_) => None,
        })
    }

    /// Each changed directory: its inode, its entries, and its base tree's
    /// listing if it came from one.
    pub fn dirs(&self) -> impl Iterator<Item = ChangedDir<'_>> {
        self.mats.iter().filter_map(|(&ino, m)| match m {
            Mat::Dir(c) => Some((ino, c, self.base.get(&ino))),
            Mat::File(_) => None,
        })
    }

    /// What Git cannot store of `ino`, if anything was kept.
    pub fn meta(&self, ino: Ino) -> Option<&Meta> {
        self.meta.get(&ino)
    }

    /// What Git cannot store of `ino`, to change (kept from now on).
    pub fn meta_mut(&mut self, ino: Ino) -> &mut Meta {
        self.meta.entry(ino).or_default()
    }

    /// Nothing more is kept of `ino` beyond what Git stores.
    pub fn forget_meta(&mut self, ino: Ino) {
        self.meta.remove(&ino);
    }

    /// Another writer's change replaced or removed `ino`.
    pub fn mark_stale(&mut self, ino: Ino) {
        self.stale.insert(ino);
    }

    /// Whether `ino` itself (not a directory above it) was marked stale.
    pub fn marked_stale(&self, ino: Ino) -> bool {
        self.stale.contains(&ino)
    }

    /// Whether any inode was marked stale.
    pub fn any_stale(&self) -> bool {
        !self.stale.is_empty()
    }

    /// The listing of the tree changed directory `ino` came from.
    pub fn base(&self, ino: Ino) -> Option<&Arc<crate::store::treeobj::Listing>> {
        self.base.get(&ino)
    }

    /// Whether nothing at all is kept of `ino` (no change, no times, not
    /// stale, no base): memory may forget it.
    pub fn holds_nothing_of(&self, ino: Ino) -> bool {
        !self.mats.contains_key(&ino)
            && !self.meta.contains_key(&ino)
            && !self.stale.contains(&ino)
            && !self.base.contains_key(&ino)
    }

    /// `ino` is gone for good (its last name and descriptor): nothing of it
    /// is kept.
    pub fn forget(&mut self, ino: Ino) {
        self.mats.remove(&ino);
        self.meta.remove(&ino);
        self.base.remove(&ino);
    }

    /// An entry of directory `dir` was added, removed or renamed: its mtime
    /// and ctime are now (so a program that watches a directory's mtime, such
    /// as Python's import cache, sees the new entry).
    pub(crate) fn entries_changed(&mut self, dir: Ino) {
        let now = Ts::now();
        let m = self.meta.entry(dir).or_default();
        m.mtime = Some(now);
        m.ctime = Some(now);
    }

    /// Directory `ino` now stands for a tree with this listing.
    pub(crate) fn set_base(&mut self, ino: Ino, listing: &Arc<crate::store::treeobj::Listing>) {
        self.base.insert(ino, listing.clone());
    }

    /// Materializes directory `ino`, which shows the tree whose listing is
    /// `entries`: its children move into the overlay (each keeps the inode
    /// it has), and what the tree holds that the mount does not show is
    /// kept for its next tree. Nothing if it is not a directory showing a
    /// tree.
    pub fn materialize(
        &mut self,
        inodes: &mut Inodes,
        ino: Ino,
        entries: &Arc<crate::store::treeobj::Listing>,
    ) {
        let Some(n) = inodes.get(ino) else { return };
        let Kind::Tree { snap, .. } = &n.kind else {
            return;
        };
        let snap = snap.clone();
        let mut children = BTreeMap::new();
        for e in entries.iter() {
            let child = match inodes.child(ino, &e.name) {
                Some(c) => c.ino,
                None => {
                    inodes
                        .upsert(ino, &e.name, crate::inodes::tree_kind(&snap, e))
                        .ino
                }
            };
            children.insert(e.name.clone(), child);
        }
        self.mats.insert(ino, Mat::Dir(children));
        self.set_base(ino, entries);
        inodes.set_kind(ino, Kind::MDir { snap });
    }
}

/// The catalog row (see `persist.rs`) of child `ino` as memory has it.
fn row_of(inodes: &Inodes, ch: &Changes, ino: Ino) -> Option<Row> {
    let n = inodes.get(ino)?;
    let object = |mode: u32, oid: Oid| Row::Object { ino, mode, oid };
    Some(match &n.kind {
        Kind::MDir { .. } => Row::Dir {
            ino,
            base: match ch.base.get(&ino).and_then(|l| l.tree) {
                Some(t) => persist::DirBase::Tree(t),
                None => persist::DirBase::Empty,
            },
        },
        Kind::MFile { executable, .. } => match ch.mats.get(&ino) {
            Some(Mat::File(f)) => {
                f.data.keep();
                // A file whose state is locked is being written or committed:
                // not known to be clean.
                let clean = f.st.try_lock().and_then(|st| match st.committed {
                    Some((v, oid)) if v == st.version => Some(oid),
                    _ => None,
                });
                Row::File {
                    ino,
                    file: f.data.id(),
                    exec: *executable,
                    clean,
                }
            }
            _ => return None,
        },
        Kind::MSymlink { target, .. } => Row::Symlink {
            ino,
            target: target.clone(),
        },
        Kind::Tree { oid, .. } => object(0o40000, *oid),
        Kind::File {
            oid, executable, ..
        } => object(if *executable { 0o100755 } else { 0o100644 }, *oid),
        Kind::Symlink { oid, .. } => object(0o120000, *oid),
        Kind::Submodule { oid, .. } => object(0o160000, *oid),
        _ => return None,
    })
}

/// What the catalog must hold for `name` in materialized directory `dir`:
/// nothing where memory shows what the directory's base tree has.
pub(crate) fn want_row(inodes: &Inodes, ch: &Changes, dir: Ino, name: &[u8]) -> Option<Row> {
    let child = match ch.mats.get(&dir) {
        Some(Mat::Dir(c)) => c.get(name).copied(),
        _ => None,
    };
    let base = ch.base.get(&dir).and_then(|l| l.get(name));
    let Some(child) = child else {
        return base.map(|_| Row::Deleted);
    };
    let mut row = row_of(inodes, ch, child)?;
    if let (Row::Dir { base: b, .. }, Some(e)) = (&mut row, &base)
        && *b == persist::DirBase::Tree(e.oid)
        && e.kind == crate::store::repo::EntryKind::Dir
    {
        *b = persist::DirBase::AtItsName;
    }
    if let (Row::Symlink { target, .. }, Some(e)) = (&row, &base)
        && e.kind == crate::store::repo::EntryKind::Symlink
        && crate::store::treeobj::hash_object("blob", target) == e.oid
    {
        // Made here and committed as it is.
        return None;
    }
    if let (Row::Object { mode, oid, .. }, Some(e)) = (&row, &base)
        && crate::store::treeobj::kind_of_mode(*mode) == Some(e.kind)
        && e.oid == *oid
    {
        return None;
    }
    Some(row)
}

/// Every row materialized directory `dir` needs (see `want_row`).
pub(crate) fn dir_rows(inodes: &Inodes, ch: &Changes, dir: Ino) -> persist::DirRows {
    let mut names: Vec<Box<[u8]>> = match ch.mats.get(&dir) {
        Some(Mat::Dir(c)) => c.keys().cloned().collect(),
        _ => Vec::new(),
    };
    if let Some(l) = ch.base.get(&dir) {
        names.extend(l.iter().map(|e| e.name.clone()));
    }
    names.sort();
    names.dedup();
    names
        .into_iter()
        .filter_map(|n| want_row(inodes, ch, dir, &n).map(|r| (n, r)))
        .collect()
}

/// The mtimes committed files show (see [`Overlay::rewrite`]).
pub struct ShownTimes(Vec<(Oid, Ts)>);

/// The overlay component (see the module's documentation).
pub struct Overlay {
    changes: Mutex<Changes>,
    /// The catalog and the written files' bytes on disk.
    disk: Arc<Persist>,
    /// The mtimes committed files showed (see `persist::Times`).
    times: Times,
    /// A catalog write failed: the next rewrite writes all of it again.
    rewrite_all: AtomicBool,
}

impl Overlay {
    /// The overlay of a mount of the repository whose common directory is
    /// `common_dir` (made on disk at the first change).
    pub fn new(common_dir: &std::path::Path) -> Overlay {
        Overlay {
            changes: Mutex::new(Changes::default()),
            disk: Arc::new(Persist::new(common_dir)),
            times: Times::load(common_dir),
            rewrite_all: AtomicBool::new(false),
        }
    }

    /// The pending changes in memory, for a change of the view (taken after
    /// the inode table).
    pub fn lock(&self) -> MutexGuard<'_, Changes> {
        self.changes.lock()
    }

    /// The bytes of written file `ino`.
    pub fn file(&self, ino: Ino) -> Option<Arc<WFile>> {
        match self.changes.lock().mats.get(&ino) {
            Some(Mat::File(f)) => Some(f.clone()),
            _ => None,
        }
    }

    /// The tree materialized directory `dir` stands for.
    pub fn base(&self, dir: Ino) -> Option<Arc<crate::store::treeobj::Listing>> {
        self.changes.lock().base.get(&dir).cloned()
    }

    /// The metadata set on `ino` (mode, times).
    pub fn meta(&self, ino: Ino) -> Meta {
        self.changes
            .lock()
            .meta
            .get(&ino)
            .copied()
            .unwrap_or_default()
    }

    /// A new, empty file for written bytes.
    pub fn new_data(&self) -> FsResult<wdata::Data> {
        wdata::Data::new(&self.disk)
    }

    /// The store on disk (recovery adopts a dead overlay's files into it).
    pub(crate) fn store(&self) -> &Arc<Persist> {
        &self.disk
    }

    /// The mtime a committed blob showed when it was last a written file.
    pub fn shown_mtime(&self, oid: Oid) -> Option<Ts> {
        self.times.get(oid)
    }

    /// Where this overlay is on disk (or where it will be).
    pub fn dir(&self) -> std::path::PathBuf {
        self.disk.dir().unwrap_or(self.disk.parent()).to_path_buf()
    }

    /// Writes to the catalog what memory now holds for the names `names`
    /// (directory, name) and the metadata of `metas`, before the change is
    /// acknowledged (`inodes` and the changes held, so that the catalog sees
    /// changes in memory's order). If the catalog cannot be written, the
    /// change stays in memory (it is committed as usual) and the whole
    /// catalog is written again at the next rewrite; the caller is told
    /// (ENOSPC on a full disk).
    pub fn record(
        &self,
        inodes: &Inodes,
        ch: &Changes,
        names: &[(Ino, &[u8])],
        metas: &[Ino],
    ) -> FsResult<()> {
        self.record_as(false, inodes, ch, names, metas)
    }

    /// `record` for a removal, which frees space: on a full disk it may use
    /// the overlay's reserve, and if even that fails the removal is still
    /// acknowledged (it is in memory, and written with the whole catalog at
    /// the next rewrite): a full disk must not stop a user from freeing it.
    pub fn record_removal(
        &self,
        inodes: &Inodes,
        ch: &Changes,
        names: &[(Ino, &[u8])],
        metas: &[Ino],
    ) {
        let _ = self.record_as(true, inodes, ch, names, metas);
    }

    fn record_as(
        &self,
        freeing: bool,
        inodes: &Inodes,
        ch: &Changes,
        names: &[(Ino, &[u8])],
        metas: &[Ino],
    ) -> FsResult<()> {
        let rows: Vec<(Ino, &[u8], Option<Row>)> = names
            .iter()
            .map(|&(d, n)| (d, n, want_row(inodes, ch, d, n)))
            .collect();
        let metas: Vec<(Ino, Option<Meta>)> = metas
            .iter()
            .map(|i| (*i, ch.meta.get(i).filter(|m| !m.unlinked).copied()))
            .collect();
        self.disk.put(freeing, &rows, &metas).inspect_err(|e| {
            self.rewrite_all.store(true, Ordering::SeqCst);
            log::error!("the overlay's catalog could not be written ({e}); the change stays in memory and is written again at the next commit");
        })
    }

    /// Records that branch root `root` is the branch `name`.
    pub fn set_branch(&self, root: Ino, name: &[u8]) -> FsResult<()> {
        self.disk
            .set_branch(root, name)
            .inspect_err(|_| self.rewrite_all.store(true, Ordering::SeqCst))
    }

    /// Whether a catalog write failed since the last whole rewrite.
    pub fn needs_rewrite(&self) -> bool {
        self.rewrite_all.load(Ordering::SeqCst)
    }

    /// A rewrite of the catalog failed: the next one writes all of it.
    pub fn rewrite_later(&self) {
        self.rewrite_all.store(true, Ordering::SeqCst);
    }

    /// Rewrites the catalog rows of materialized directories `dirs` (all of
    /// them, with every metadata row and the `branches`' names, if `None`)
    /// from memory: after a commit (what it committed is no longer a
    /// change), after following another writer, after a failed catalog
    /// write. Returns the mtimes the committed files show, for
    /// [`Overlay::keep_times`] once the caller's locks are let go of.
    pub fn rewrite(
        &self,
        inodes: &Inodes,
        ch: &Changes,
        dirs: Option<&[Ino]>,
        branches: &[(Ino, Box<[u8]>)],
    ) -> FsResult<ShownTimes> {
        let all = dirs.is_none();
        if all {
            self.rewrite_all.store(false, Ordering::SeqCst);
        }
        let mut committed = Vec::new();
        let r = (|| {
            let list: Vec<Ino> = match dirs {
                Some(d) => d.to_vec(),
                None => ch
                    .mats
                    .iter()
                    .filter(|(_, m)| matches!(m, Mat::Dir(_)))
                    .map(|(i, _)| *i)
                    .collect(),
            };
            let rows: Vec<(Ino, persist::DirRows)> = list
                .iter()
                .filter(|i| matches!(ch.mats.get(i), Some(Mat::Dir(_))))
                .map(|&d| (d, dir_rows(inodes, ch, d)))
                .collect();
            self.disk.replace_dirs(&rows)?;
            // The times the committed files show, for later mounts.
            for (_, rows) in &rows {
                for (_, row) in rows {
                    if let Row::File {
                        ino,
                        clean: Some(oid),
                        ..
                    } = row
                        && let Some(Mat::File(f)) = ch.mats.get(ino)
                        && let Some(st) = f.st.try_lock()
                    {
                        let shown = ch.meta.get(ino).and_then(|m| m.mtime).unwrap_or(st.mtime);
                        committed.push((*oid, shown));
                    }
                }
            }
            if all {
                let metas: Vec<(Ino, Option<Meta>)> = ch
                    .meta
                    .iter()
                    .filter(|(_, m)| !m.unlinked)
                    .map(|(i, m)| (*i, Some(*m)))
                    .collect();
                self.disk.put(false, &[], &metas)?;
                for (root, name) in branches {
                    self.disk.set_branch(*root, name)?;
                }
            }
            Ok(())
        })();
        if r.is_err() && all {
            self.rewrite_all.store(true, Ordering::SeqCst);
        }
        r.map(|()| ShownTimes(committed))
    }

    /// Remembers the mtimes committed files showed, for later mounts (its
    /// own database: called with no lock of the view's held).
    pub fn keep_times(&self, t: ShownTimes) {
        self.times.record(&t.0);
    }

    /// fsync of a file: every change of names acknowledged so far survives
    /// a power loss.
    pub fn sync(&self) -> FsResult<()> {
        self.disk.sync()
    }

    /// After a commit freed space: the reserve for removals on a full disk
    /// is whole again.
    pub fn refill_reserve(&self) {
        self.disk.refill_reserve();
    }

    /// After everything was committed on the way out: the catalog is
    /// durable, and an overlay left with no change (no scratch or ignored
    /// file either) is removed.
    pub fn finish(&self) {
        if let Err(e) = self.disk.sync() {
            log::error!("cannot make the overlay's catalog durable: {e}");
            return;
        }
        self.disk.remove_if_empty();
    }
}
