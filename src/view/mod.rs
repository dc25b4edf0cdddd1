//! The semantic core: what each filesystem operation does, as plain data.
//!
//! Nothing here knows about fuser; the adapter in `fuse/mod.rs` decodes a request, calls
//! one method here and replies. Tests drive this directly without a mount.
//!
//! State:
//! - `inodes`: path <-> inode number, permanent for the mount (see `inodes/mod.rs`).
//! - `trees`: parsed tree objects, an LRU bounded in entries; trees are immutable
//!   by id, so this cache is never wrong, only cold.
//! - `sizes`: blob sizes read from object headers, an LRU bounded in count.
//! - `blobs`: blob contents (see `store/blob_cache.rs`).
//! - `handles`: open directories (files need no handle: reads go by inode).
//! - `live`: changes running, and whether the daemon is going away.
//! - `readahead`: the prefetcher and the listings it waits on (`prefetch.rs`).
//!
//! Locks: every lock of the daemon, its order and what it guards are in one
//! table, docs/DEVELOPMENT.md "Locks". Here: `inodes` before `handles`; the
//! caches' locks and `branch_roots` are leaves.
//!
//! Snapshots: a branch directory shows the commit its branch pointed to when the
//! mount first looked it up. Tags and commits never change.

pub mod barriers;
pub mod branches;
pub mod follow;
pub mod prefetch;
pub mod recover;
pub mod requests;
pub mod status;
pub mod write;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::store::Oid;
use lru::LruCache;
use parking_lot::{Mutex, RwLock};

use crate::commit::Committer;
use crate::error::{FsError, FsResult};
use crate::inodes::{Ino, Inodes, Kind, Node, ROOT, Snap, SnapSource, tree_kind};
use crate::model::{FsConfig, RootSpec, Ts};
use crate::overlay::{Overlay, WFile};
use crate::store::blob_cache::BlobCache;
use crate::store::error::StoreError;
use crate::store::repo::{Head, Repo, valid_name};
use crate::store::treeobj::Listing;
use prefetch::{Job, Prefetcher, Worker};

/// How long the kernel may cache what a snapshot shows. Tags and commits never
/// change; a branch directory keeps the tip it was first looked up at.
pub const SNAPSHOT_TTL: Duration = Duration::from_secs(24 * 3600);
/// How long the kernel may cache the root, `.tags` and namespace directories, whose
/// contents follow the repository's refs.
pub const REFS_TTL: Duration = Duration::from_secs(1);
/// Total tree entries kept parsed in memory.
const TREE_CACHE_ENTRIES: usize = 512 * 1024;
/// Blob sizes remembered.
const SIZE_CACHE_ENTRIES: usize = 256 << 10;
/// st_blksize: the I/O size tools should use.
pub const BLKSIZE: u32 = 128 * 1024;
/// The longest symlink target served.
const PATH_MAX: u64 = 4096;
/// The id of the empty tree (the "tree" of a tag of a blob, which has none).
const EMPTY_TREE: [u8; 20] = [
    0x4b, 0x82, 0x5d, 0xc6, 0x42, 0xcb, 0x6e, 0xb9, 0xa0, 0x60, 0xe5, 0x4b, 0xf8, 0xd6, 0x92, 0x88,
    0xfb, 0xee, 0x49, 0x04,
];
/// Entries one readdir call prepares: more than a kernel buffer holds.
pub const READDIR_BATCH: usize = 512;
/// Tries of a readdir before it holds the exclusive lock throughout (see
/// `CommitFs::listed_entries`).
const READDIR_TRIES: usize = 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    Dir,
    File,
    Symlink,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attr {
    pub ino: Ino,
    pub kind: FileKind,
    pub perm: u16,
    pub size: u64,
    pub blocks: u64,
    pub nlink: u32,
    pub uid: u32,
    pub gid: u32,
    /// The three times POSIX keeps (see SEMANTICS, *Times*).
    pub atime: Ts,
    pub mtime: Ts,
    pub ctime: Ts,
}

/// The answer to a lookup or getattr: the attributes and how long the kernel may
/// keep them (and the name -> inode binding).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    pub attr: Attr,
    pub ttl: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Opened {
    pub fh: u64,
    /// The kernel may keep pages (or directory listings) cached across opens.
    pub keep_cache: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    pub ino: Ino,
    /// The offset to resume after this entry.
    pub next: u64,
    pub kind: FileKind,
    pub name: Box<[u8]>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Statfs {
    pub blocks: u64,
    pub bfree: u64,
    pub bavail: u64,
    pub files: u64,
    pub ffree: u64,
    pub bsize: u32,
    pub namelen: u32,
    pub frsize: u32,
}

/// An open directory. A listing of refs is taken at opendir, so that offsets
/// stay meaningful while refs change; a tree is shared with the tree cache.
enum Handle {
    Refs(Arc<[(Box<[u8]>, Kind)]>),
    Tree {
        snap: Arc<Snap>,
        /// The tree listed (the directory may be re-pointed since).
        oid: Oid,
        entries: Arc<Listing>,
    },
}

impl Handle {
    fn len(&self) -> usize {
        match self {
            Handle::Refs(l) => l.len(),
            Handle::Tree { entries, .. } => entries.len(),
        }
    }

    fn child(&self, i: usize) -> (Box<[u8]>, Kind) {
        match self {
            Handle::Refs(l) => l[i].clone(),
            Handle::Tree { snap, entries, .. } => {
                (entries[i].name.clone(), tree_kind(snap, &entries[i]))
            }
        }
    }
}

pub struct CommitFs {
    repo: Arc<Repo>,
    cfg: FsConfig,
    mount_time: i64,
    inodes: RwLock<Inodes>,
    /// Pending changes of branches, in memory and on disk (see `overlay/`).
    overlay: Overlay,
    /// Syncing with a Git server (see `sync.rs`).
    sync: crate::sync::Sync,
    /// Where kernel invalidations go (see `view/follow.rs`).
    inval_tx: Mutex<Option<std::sync::mpsc::Sender<crate::follow::InvalMsg>>>,
    /// The committer: the branches written here and the threads that
    /// commit them (see `commit/`).
    committer: Arc<Committer>,
    /// The branch root of each inode a change was made in (a node never moves
    /// to another branch, and numbers are never reused), so that finding the
    /// branch of a change deep in a tree does not walk every level each time.
    /// A leaf lock.
    branch_roots: Mutex<HashMap<Ino, Ino>>,
    /// Changes running, and whether the daemon is going away.
    live: Live,
    trees: Mutex<TreeCache>,
    sizes: Mutex<LruCache<Oid, u64>>,
    blobs: BlobCache,
    /// FUSE requests served, by kind (for `commitfs status`).
    pub requests: requests::Requests,
    /// Open directories.
    handles: Handles,
    /// What a listing's answer brings into the kernel's page cache.
    readahead: prefetch::Readahead,
    /// The branches and tips the last push at exit tried (see
    /// `push_before_exit`). A leaf lock.
    exit_push: Mutex<Option<Vec<(String, Oid)>>>,
}

/// Changes running now, and whether the daemon is going away (SIGTERM and
/// the like): every change after that is refused, so that the commit made
/// on the way out holds every change that was acknowledged. Counted first,
/// then checked, and the other way round in `stop`: either a change sees
/// `closing`, or going away sees the change.
#[derive(Default)]
struct Live {
    closing: std::sync::atomic::AtomicBool,
    changing: std::sync::atomic::AtomicUsize,
}

impl Live {
    fn enter(&self) -> FsResult<Changing<'_>> {
        use std::sync::atomic::Ordering::SeqCst;
        self.changing.fetch_add(1, SeqCst);
        let g = Changing(&self.changing);
        if self.closing.load(SeqCst) {
            return Err(FsError::ReadOnly);
        }
        Ok(g)
    }

    fn stop(&self) {
        use std::sync::atomic::Ordering::SeqCst;
        self.closing.store(true, SeqCst);
        while self.changing.load(SeqCst) > 0 {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }
}

/// Open directories, by handle (files need no handle: reads go by inode).
/// A leaf lock.
struct Handles {
    open: Mutex<HashMap<u64, Arc<Handle>>>,
    next: AtomicU64,
}

impl Handles {
    fn add(&self, h: Handle) -> u64 {
        let fh = self.next.fetch_add(1, Ordering::Relaxed);
        self.open.lock().insert(fh, Arc::new(h));
        fh
    }

    fn get(&self, fh: u64) -> Option<Arc<Handle>> {
        self.open.lock().get(&fh).cloned()
    }

    fn remove(&self, fh: u64) {
        self.open.lock().remove(&fh);
    }
}

/// One change running (see [`CommitFs::live`]).
pub(crate) struct Changing<'a>(&'a std::sync::atomic::AtomicUsize);

impl Drop for Changing<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

struct TreeCache {
    map: LruCache<Oid, Arc<Listing>>,
    entries: usize,
}

impl CommitFs {
    /// Builds the filesystem. With `RootSpec::Ref`, the ref must resolve: the error
    /// says so in a sentence for the user.
    pub fn new(repo: Repo, cfg: FsConfig) -> Result<Arc<CommitFs>, String> {
        let repo = Arc::new(repo);
        let committer = Arc::new(Committer::new(repo.clone(), &cfg)?);
        let root = match &cfg.root {
            RootSpec::Whole => Kind::Root,
            RootSpec::Ref(r) => {
                let snap = resolve_ref_arg(&repo, r)?;
                Kind::Tree {
                    oid: snap.snapshot.tree,
                    snap: Arc::new(snap),
                }
            }
        };
        let mount_time = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        let mut inodes = Inodes::new(root);
        // COMMITFS_GHOSTS_IN_MEMORY: for tests, to send ghosts to disk
        // without walking 128 Ki paths.
        let in_memory = std::env::var("COMMITFS_GHOSTS_IN_MEMORY")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(crate::inodes::GHOSTS_IN_MEMORY);
        inodes.keep_ghosts_in(
            Arc::new(crate::inodes::ghosts::Ghosts::new(repo.common_dir())),
            in_memory,
        );
        let fs = CommitFs {
            blobs: BlobCache::new(cfg.cache_size, cfg.spill_dir.clone()),
            requests: Default::default(),
            overlay: Overlay::new(repo.common_dir()),
            inval_tx: Mutex::new(None),
            sync: Default::default(),
            repo,
            cfg,
            mount_time,
            inodes: RwLock::new(inodes),
            trees: Mutex::new(TreeCache {
                map: LruCache::unbounded(),
                entries: 0,
            }),
            sizes: Mutex::new(LruCache::new(
                std::num::NonZeroUsize::new(SIZE_CACHE_ENTRIES).expect("nonzero"),
            )),
            handles: Handles {
                open: Mutex::new(HashMap::new()),
                next: AtomicU64::new(1),
            },
            readahead: prefetch::Readahead::default(),
            exit_push: Mutex::new(None),
            committer,
            branch_roots: Mutex::new(HashMap::new()),
            live: Live::default(),
        };
        // What a daemon that is gone left pending is shown again, and
        // committed once the committer runs (see `overlay/recover.rs`).
        fs.recover();
        let fs = Arc::new(fs);
        let weak: std::sync::Weak<dyn crate::commit::Pending> = Arc::downgrade(&fs) as _;
        fs.committer.start(weak);
        Ok(fs)
    }

    /// Lets one change run: `EROFS` once the daemon is going away (see
    /// `Live`); the guard holds the going-away off until the change is done.
    pub(crate) fn live(&self) -> FsResult<Changing<'_>> {
        self.live.enter()
    }

    /// The daemon is going away: changes in progress finish, later ones get
    /// `EROFS`. What is pending then is everything that was acknowledged.
    /// The committer's threads also commit branches whose changes settled
    /// (until then, only barriers commit).
    pub fn start_settling(&self) {
        self.committer.start_settling();
    }

    /// With `--remote`, at unmount and SIGTERM: one push of what was
    /// committed, waiting at most `--push-on-exit-timeout` (a push still
    /// running then is left to end with the process). Returns what stayed
    /// on this machine only, one line per branch (empty: the server has
    /// everything); `None` without a remote, with the timeout at zero, or
    /// when an earlier call tried these very tips (and said what it left).
    pub fn push_before_exit(&self) -> Option<Vec<String>> {
        let remote = self.cfg.remote.clone()?;
        let timeout = self.cfg.push_on_exit;
        if timeout.is_zero() {
            return None;
        }
        let to_push = match crate::sync::pushable(&self.repo) {
            Ok(t) => t,
            Err(e) => return Some(vec![format!("every branch: {e}")]),
        };
        // Tried already with these very tips (`commitfs unmount` asked, and
        // the daemon is now on its way out): said then.
        {
            let mut last = self.exit_push.lock();
            if last.as_ref() == Some(&to_push) {
                return None;
            }
            *last = Some(to_push.clone());
        }
        let repo = self.repo.clone();
        let (tx, rx) = std::sync::mpsc::channel();
        let started = std::thread::Builder::new()
            .name("commitfs-exit-push".into())
            .spawn(move || {
                let _ = tx.send(crate::sync::push_committed(&repo, &remote, &to_push));
            });
        if let Err(e) = started {
            return Some(vec![format!("every branch: cannot start the push ({e})")]);
        }
        Some(rx.recv_timeout(timeout).unwrap_or_else(|_| {
            vec![format!(
                "every branch ahead of the server: the push did not finish within {} s (--push-on-exit-timeout)",
                timeout.as_secs_f64()
            )]
        }))
    }

    /// The sync thread (`--remote`): never returns; at once without a remote.
    pub fn run_sync(&self) {
        if let Some(remote) = &self.cfg.remote {
            self.sync
                .run(&self.repo, &self.committer, remote, self.cfg.fetch_interval);
        }
    }

    /// Changes in progress finish, later ones get `EROFS`.
    pub fn stop_changes(&self) {
        self.live.stop();
    }

    /// Where this mount's overlay is (or its parent, before the first change).
    pub fn overlay_dir(&self) -> PathBuf {
        self.overlay.dir()
    }

    pub fn config(&self) -> &FsConfig {
        &self.cfg
    }

    pub fn blob_cache(&self) -> &BlobCache {
        &self.blobs
    }

    fn node(&self, ino: Ino) -> FsResult<Arc<Node>> {
        if let Some(n) = self.inodes.read().get(ino) {
            return Ok(n);
        }
        self.resurrect(ino)
    }

    /// The node of a number the kernel had forgotten (see `Inodes::make_ghost`)
    /// and asks for again: made again from its directory's tree, with its
    /// number. A chain of forgotten directories is made again top down.
    fn resurrect(&self, ino: Ino) -> FsResult<Arc<Node>> {
        let mut chain = Vec::new();
        let mut at = ino;
        loop {
            let inodes = self.inodes.read();
            let (parent, name) = inodes.ghost(at).ok_or(FsError::NotFound)?;
            chain.push((at, parent, name));
            if inodes.get(parent).is_some() {
                break;
            }
            if chain.len() > inodes.ghosts() {
                return Err(FsError::NotFound);
            }
            at = parent;
        }
        for (want, parent, name) in chain.into_iter().rev() {
            let p = self.inodes.read().get(parent).ok_or(FsError::NotFound)?;
            let got = self.lookup_node(&p, &name)?;
            if got.ino != want {
                return Err(FsError::Stale);
            }
        }
        self.inodes.read().get(ino).ok_or(FsError::NotFound)
    }

    /// The kernel was handed these numbers (entry replies, readdirplus).
    pub fn looked_up(&self, inos: &[Ino]) {
        let mut inodes = self.inodes.write();
        for &i in inos {
            inodes.looked_up(i);
        }
    }

    /// Paths with a node in memory, those kept only as a place, and of
    /// those the ones on disk.
    pub fn inode_counts(&self) -> (usize, usize, usize) {
        let inodes = self.inodes.read();
        (inodes.len(), inodes.ghosts(), inodes.ghosts_on_disk())
    }

    pub(crate) fn node_of(&self, ino: Ino) -> FsResult<Arc<Node>> {
        self.node(ino)
    }

    // ---- reading the namespace -------------------------------------------------

    pub fn lookup(&self, parent: Ino, name: &[u8]) -> FsResult<Entry> {
        if name.len() > crate::store::repo::NAME_MAX {
            return Err(FsError::NameTooLong);
        }
        let p = self.node(parent)?;
        let node = self.lookup_node(&p, name)?;
        self.entry(&node)
    }

    fn lookup_node(&self, p: &Node, name: &[u8]) -> FsResult<Arc<Node>> {
        if name == b"." {
            return self.node(p.ino);
        }
        if name == b".." {
            return self.node(p.parent);
        }
        let kind = match &p.kind {
            Kind::Root => {
                if name == b"HEAD" {
                    match self.repo.head()? {
                        Head::Unborn => return Err(FsError::NotFound),
                        _ => Kind::Head,
                    }
                } else if name == b".tags" {
                    Kind::TagsDir
                } else if name == b".commits" {
                    Kind::CommitsDir
                } else {
                    return self.lookup_in_namespace(p, b"refs/heads/", b"", name);
                }
            }
            Kind::BranchNs(prefix) => {
                return self.lookup_in_namespace(p, b"refs/heads/", prefix, name);
            }
            Kind::TagsDir => return self.lookup_in_namespace(p, b"refs/tags/", b"", name),
            Kind::TagNs(prefix) => return self.lookup_in_namespace(p, b"refs/tags/", prefix, name),
            Kind::CommitsDir => {
                if let Some(n) = self.inodes.read().child(p.ino, name) {
                    return Ok(n);
                }
                let rev = std::str::from_utf8(name).map_err(|_| FsError::NotFound)?;
                let snapshot = self.repo.resolve(rev)?.ok_or(FsError::NotFound)?;
                let snap = Arc::new(Snap {
                    snapshot,
                    source: SnapSource::Fixed,
                });
                Kind::Tree {
                    oid: snap.snapshot.tree,
                    snap,
                }
            }
            Kind::Tree { snap, oid } => {
                let entries = self.tree(*oid)?;
                let i = entries
                    .binary_search_by(|e| (*e.name).cmp(name))
                    .map_err(|_| FsError::NotFound)?;
                // A path the table has already: a shared lock is enough (the
                // same answer as below, which needs the exclusive one only to
                // give a new path its number).
                {
                    let inodes = self.inodes.read();
                    let current = inodes.get(p.ino).is_some_and(
                        |c| matches!(&c.kind, Kind::Tree { oid: now, .. } if now == oid),
                    );
                    if current
                        && let Some(existing) = inodes.child(p.ino, name)
                        && existing.kind.snap().is_some()
                    {
                        return Ok(existing);
                    }
                }
                let kind = tree_kind(snap, &entries[i]);
                // The tree was read without a lock: if the directory was
                // re-pointed meanwhile (follow/mod.rs), look again in the new one.
                let mut inodes = self.inodes.write();
                match inodes.get(p.ino).map(|c| c.kind.clone()) {
                    Some(Kind::Tree { oid: now, .. }) if now == *oid => {}
                    _ => {
                        drop(inodes);
                        let cur = self.node(p.ino)?;
                        return self.lookup_node(&cur, name);
                    }
                }
                if let Some(existing) = inodes.child(p.ino, name)
                    && existing.kind.snap().is_some()
                {
                    return Ok(existing);
                }
                return Ok(inodes.upsert(p.ino, name, kind));
            }
            Kind::MDir { .. } => {
                let ino = self.mat_child(p.ino, name).ok_or(FsError::NotFound)?;
                return self.node(ino);
            }
            Kind::Submodule { .. } => return Err(FsError::NotFound),
            Kind::File { .. }
            | Kind::Symlink { .. }
            | Kind::Head
            | Kind::MFile { .. }
            | Kind::MSymlink { .. } => {
                return Err(FsError::NotDir);
            }
        };
        Ok(self.upsert_keeping_snapshot(p.ino, name, kind))
    }

    /// Looks up `name` in a directory of refs: `refs_prefix` is `refs/heads/` or
    /// `refs/tags/`, `ns` the namespace path below it (empty at the top).
    fn lookup_in_namespace(
        &self,
        p: &Node,
        refs_prefix: &[u8],
        ns: &[u8],
        name: &[u8],
    ) -> FsResult<Arc<Node>> {
        if !shown_ref_component(refs_prefix, ns, name) {
            return Err(FsError::NotFound);
        }
        let short = join(ns, name);
        let is_branch = refs_prefix == b"refs/heads/";
        let full = join_raw(refs_prefix, &short);
        // The ref is read at every lookup, so that a deleted branch goes away and
        // a namespace can take its name; one that still exists keeps the snapshot
        // it was first looked up at.
        let kind = match self.repo.ref_target(&full)? {
            Some(target) => {
                if let Some(existing) = self.inodes.read().child(p.ino, name)
                    && existing.kind.snap().is_some()
                {
                    return Ok(existing);
                }
                let snapshot = match self.repo.snapshot(target) {
                    Ok(s) => s,
                    // A tag of a blob (or of a tag of one): a read-only file
                    // with the blob's bytes.
                    Err(StoreError::NotFound(_)) if !is_branch => {
                        let Some(blob) = self.repo.peel_to_blob(target)? else {
                            return Err(FsError::NotFound);
                        };
                        let snap = Arc::new(Snap {
                            snapshot: crate::store::repo::Snapshot {
                                commit: None,
                                tree: Oid::from_bytes(&EMPTY_TREE).map_err(StoreError::from)?,
                                time: 0,
                            },
                            source: SnapSource::Fixed,
                        });
                        let kind = Kind::File {
                            snap,
                            oid: blob,
                            executable: false,
                        };
                        return Ok(self.upsert_keeping_snapshot(p.ino, name, kind));
                    }
                    Err(e) => return Err(e.into()),
                };
                // Only a ref that names a commit can take commits: one under
                // refs/heads/ that names a tree or a tag object is shown
                // read-only (a commit on it could never be compared and
                // swapped in, and would block unmount).
                let source = if is_branch && snapshot.commit == Some(target) {
                    SnapSource::Branch(short.clone().into())
                } else {
                    SnapSource::Fixed
                };
                let snap = Arc::new(Snap { snapshot, source });
                Kind::Tree {
                    oid: snap.snapshot.tree,
                    snap,
                }
            }
            None => {
                // A namespace exists while some ref lives below it.
                let mut dir = short.clone();
                dir.push(b'/');
                let names = self
                    .repo
                    .refs(std::str::from_utf8(refs_prefix).unwrap_or(""))?;
                if !names.iter().any(|(n, _)| n.starts_with(&dir)) {
                    return Err(FsError::NotFound);
                }
                if is_branch {
                    Kind::BranchNs(short.into())
                } else {
                    Kind::TagNs(short.into())
                }
            }
        };
        Ok(self.upsert_keeping_snapshot(p.ino, name, kind))
    }

    /// Gives `name` its kind, unless another thread gave it a snapshot between our
    /// look and now: an inode the kernel caches must never switch snapshots.
    fn upsert_keeping_snapshot(&self, parent: Ino, name: &[u8], kind: Kind) -> Arc<Node> {
        let mut inodes = self.inodes.write();
        if kind.snap().is_some()
            && let Some(existing) = inodes.child(parent, name)
            && existing.kind.snap().is_some()
        {
            return existing;
        }
        inodes.upsert(parent, name, kind)
    }

    pub fn getattr(&self, ino: Ino) -> FsResult<Entry> {
        let n = self.node(ino)?;
        self.entry(&n)
    }

    fn entry(&self, n: &Node) -> FsResult<Entry> {
        // A snapshot's contents never change, but the name of a branch, tag or
        // revision directory follows the refs: that entry is cached briefly.
        let ttl = if n.kind.snap().is_some() && !self.is_ref_level(n) {
            SNAPSHOT_TTL
        } else {
            REFS_TTL
        };
        Ok(Entry {
            attr: self.attr(n)?,
            ttl,
        })
    }

    /// Whether `n` is a child of the root, `.tags`, `.commits` or a namespace.
    fn is_ref_level(&self, n: &Node) -> bool {
        self.is_ref_level_in(&self.inodes.read(), n)
    }

    pub(crate) fn is_ref_level_in(&self, inodes: &Inodes, n: &Node) -> bool {
        n.ino != ROOT
            && inodes.get(n.parent).is_some_and(|p| {
                matches!(
                    p.kind,
                    Kind::Root
                        | Kind::BranchNs(_)
                        | Kind::TagsDir
                        | Kind::TagNs(_)
                        | Kind::CommitsDir
                )
            })
    }

    /// The data of written file `n`, or, if it is no longer in the overlay
    /// since `n` was read, the node as it is now: it went back to being its
    /// blob (`dematerialize_clean`; `Err(now)`), or it was unlinked and the
    /// kernel forgot it (NotFound).
    fn written_data(&self, n: &Node) -> FsResult<Result<Arc<WFile>, Arc<Node>>> {
        if let Some(wf) = self.wfile(n.ino) {
            return Ok(Ok(wf));
        }
        // `node`: it may have been forgotten, and kept only as a place, since.
        let now = self.node(n.ino)?;
        if matches!(now.kind, Kind::MFile { .. }) {
            return self
                .wfile(n.ino)
                .map(Ok)
                .ok_or_else(|| FsError::io("written file lost its data"));
        }
        Ok(Err(now))
    }

    fn attr(&self, n: &Node) -> FsResult<Attr> {
        // A written file's own mtime, with nanoseconds.
        let mut written_mtime: Option<Ts> = None;
        let (kind, perm, size, time) = match &n.kind {
            Kind::Root | Kind::BranchNs(_) | Kind::TagsDir | Kind::TagNs(_) | Kind::CommitsDir => {
                (FileKind::Dir, 0o755, 0, self.mount_time)
            }
            Kind::Head => {
                let target = self.head_target()?;
                (
                    FileKind::Symlink,
                    0o777,
                    target.len() as u64,
                    self.mount_time,
                )
            }
            Kind::Tree { snap, .. } => (FileKind::Dir, 0o755, 0, snap.snapshot.time),
            Kind::Submodule { snap, .. } => (FileKind::Dir, 0o555, 0, snap.snapshot.time),
            Kind::File {
                snap,
                oid,
                executable,
            } => {
                let perm = if *executable { 0o755 } else { 0o644 };
                if matches!(snap.source, SnapSource::Branch(_)) {
                    // The time it showed when this or an earlier mount
                    // committed these bytes.
                    written_mtime = self.overlay.shown_mtime(*oid);
                }
                (
                    FileKind::File,
                    perm,
                    self.blob_size(*oid)?,
                    snap.snapshot.time,
                )
            }
            Kind::Symlink { snap, oid } => (
                FileKind::Symlink,
                0o777,
                self.blob_size(*oid)?,
                snap.snapshot.time,
            ),
            Kind::MDir { snap } => (FileKind::Dir, 0o755, 0, snap.snapshot.time),
            Kind::MFile { executable, .. } => {
                let wf = match self.written_data(n)? {
                    Ok(wf) => wf,
                    Err(now) => return self.attr(&now),
                };
                let st = wf.st.lock();
                let perm = if *executable { 0o755 } else { 0o644 };
                written_mtime = Some(st.mtime);
                (FileKind::File, perm, st.size, st.mtime.secs)
            }
            Kind::MSymlink { snap, target } => (
                FileKind::Symlink,
                0o777,
                target.len() as u64,
                snap.snapshot.time,
            ),
        };
        // What Git cannot store, kept in memory for this mount.
        let time = Ts::from_secs(time);
        let (perm, atime, mtime, ctime, nlink) = if n.kind.snap().is_some() {
            let m = self.meta_of(n.ino);
            let perm = match (m.perm, kind) {
                (Some(p), FileKind::File) | (Some(p), FileKind::Dir) => p,
                _ => perm,
            };
            let mtime = m.mtime.unwrap_or(match written_mtime {
                Some(t) => t,
                None => time,
            });
            // Every change of content or status sets ctime (see overlay.rs);
            // a path nothing changed has its commit's time for all three.
            let ctime = m.ctime.unwrap_or(mtime);
            let nlink = match kind {
                FileKind::Dir => 2,
                _ if m.unlinked => 0,
                _ => 1,
            };
            (perm, m.atime.unwrap_or(mtime), mtime, ctime, nlink)
        } else {
            let nlink = if kind == FileKind::Dir { 2 } else { 1 };
            (perm, time, time, time, nlink)
        };
        Ok(Attr {
            ino: n.ino,
            kind,
            perm,
            size,
            blocks: size.div_ceil(512),
            nlink,
            uid: self.cfg.uid,
            gid: self.cfg.gid,
            atime,
            mtime,
            ctime,
        })
    }

    pub(crate) fn blob_size(&self, oid: Oid) -> FsResult<u64> {
        if let Some(s) = self.sizes.lock().get(&oid) {
            return Ok(*s);
        }
        let s = self.repo.blob_size(oid)?;
        self.sizes.lock().put(oid, s);
        Ok(s)
    }

    fn tree(&self, oid: Oid) -> FsResult<Arc<Listing>> {
        if let Some(t) = self.trees.lock().map.get(&oid) {
            return Ok(t.clone());
        }
        let t = Arc::new(self.repo.read_tree(oid)?);
        let mut c = self.trees.lock();
        if let Some(old) = c.map.put(oid, t.clone()) {
            c.entries -= old.cost();
        }
        c.entries += t.cost();
        while c.entries > TREE_CACHE_ENTRIES && c.map.len() > 1 {
            match c.map.pop_lru() {
                Some((_, old)) => c.entries -= old.cost(),
                None => break,
            }
        }
        Ok(t)
    }

    fn head_target(&self) -> FsResult<Vec<u8>> {
        match self.repo.head()? {
            Head::Branch(b) => Ok(b),
            Head::Detached(oid) => Ok(format!(".commits/{oid}").into_bytes()),
            Head::Unborn => Err(FsError::NotFound),
        }
    }

    pub fn readlink(&self, ino: Ino) -> FsResult<Vec<u8>> {
        let n = self.node(ino)?;
        match &n.kind {
            Kind::Head => self.head_target(),
            Kind::Symlink { oid, .. } => {
                // A repository is untrusted: a "symlink" blob of gigabytes must
                // not be read into memory.
                let size = self.blob_size(*oid)?;
                if size > PATH_MAX {
                    return Err(FsError::io(format!(
                        "symlink {oid} has a target of {size} bytes, over PATH_MAX"
                    )));
                }
                let target = self.blobs.get(&self.repo, *oid)?;
                // An empty target would act as a link to its own directory, and
                // a NUL cannot be in a path: neither is a link Git could check out.
                if target.is_empty() || target.contains(&0) {
                    return Err(FsError::io(format!(
                        "symlink {oid} has an {} target; not served",
                        if target.is_empty() {
                            "empty"
                        } else {
                            "NUL-holding"
                        }
                    )));
                }
                Ok(target.to_vec())
            }
            Kind::MSymlink { target, .. } => Ok(target.to_vec()),
            _ => Err(FsError::Invalid),
        }
    }

    // ---- files ----------------------------------------------------------------

    /// Checks that a file may be opened; `write` is whether the open asks for
    /// write access or O_TRUNC. Files need no per-open state: reads go by inode,
    /// so the adapter lets the kernel skip open requests altogether (see
    /// `fuse/mod.rs`), and the kernel keeps the pages it cached across opens.
    pub fn open(&self, ino: Ino, write: bool) -> FsResult<Opened> {
        let n = self.node(ino)?;
        match &n.kind {
            Kind::File { .. } | Kind::MFile { .. } => {}
            Kind::Symlink { .. } | Kind::MSymlink { .. } | Kind::Head => {
                return Err(FsError::Invalid);
            }
            _ => return Err(FsError::IsDir),
        }
        if write {
            self.writable_snap(&n)?;
        }
        Ok(Opened {
            fh: 0,
            keep_cache: true,
        })
    }

    /// Reads `size` bytes at `offset` of a file (fewer at its end).
    pub fn read(&self, ino: Ino, offset: u64, size: u32) -> FsResult<Vec<u8>> {
        self.read_with(ino, offset, size, |d| d.to_vec())
    }

    /// Hands `f` the bytes a read asks for, without copying them first.
    pub fn read_with<R>(
        &self,
        ino: Ino,
        offset: u64,
        size: u32,
        f: impl FnOnce(&[u8]) -> R,
    ) -> FsResult<R> {
        let n = self.node(ino)?;
        let oid = match &n.kind {
            Kind::File { oid, .. } => *oid,
            Kind::MFile { .. } => {
                let wf = match self.written_data(&n)? {
                    Ok(wf) => wf,
                    // Gone back to its blob since: read that.
                    Err(now) => match now.kind {
                        Kind::File { oid, .. } => return self.read_blob_with(oid, offset, size, f),
                        _ => return Err(FsError::io("written file lost its data")),
                    },
                };
                let len = wf.st.lock().size;
                let end = offset.saturating_add(size as u64).min(len);
                let n = end.saturating_sub(offset) as usize;
                return crate::store::blob_cache::with_read_buf(n, |buf| {
                    // Holes and a concurrent truncate read as zeros, never garbage.
                    let got = wf.data.read_at(buf, offset)?;
                    buf[got..].fill(0);
                    Ok(f(buf))
                });
            }
            Kind::Symlink { .. } | Kind::MSymlink { .. } | Kind::Head => {
                return Err(FsError::Invalid);
            }
            _ => return Err(FsError::IsDir),
        };
        self.read_blob_with(oid, offset, size, f)
    }

    /// `read_with` of blob `oid`.
    fn read_blob_with<R>(
        &self,
        oid: Oid,
        offset: u64,
        size: u32,
        f: impl FnOnce(&[u8]) -> R,
    ) -> FsResult<R> {
        // A failure names the blob, so that the log says which object is damaged.
        let named = |e: FsError| match e {
            FsError::Io(s) if !s.contains(&oid.to_string()) => {
                FsError::io(format!("blob {oid}: {s}"))
            }
            e => e,
        };
        let blob_size = self.blob_size(oid).map_err(named)?;
        let content = (self.blobs.open(&self.repo, oid, blob_size)).map_err(|e| named(e.into()))?;
        self.blobs
            .read_with(&self.repo, &content, offset, size as usize, f)
            .map_err(|e| named(e.into()))
    }

    // ---- directories ----------------------------------------------------------

    pub fn opendir(&self, ino: Ino) -> FsResult<Opened> {
        let n = self.node(ino)?;
        let handle = match &n.kind {
            Kind::Root => {
                let mut v = Vec::new();
                if !matches!(self.repo.head()?, Head::Unborn) {
                    v.push((Box::from(&b"HEAD"[..]), Kind::Head));
                }
                v.push((Box::from(&b".commits"[..]), Kind::CommitsDir));
                v.push((Box::from(&b".tags"[..]), Kind::TagsDir));
                v.extend(self.namespace_listing(&n, b"refs/heads/", b"")?);
                Handle::Refs(v.into())
            }
            Kind::BranchNs(prefix) => {
                Handle::Refs(self.namespace_listing(&n, b"refs/heads/", prefix)?.into())
            }
            Kind::TagsDir => Handle::Refs(self.namespace_listing(&n, b"refs/tags/", b"")?.into()),
            Kind::TagNs(prefix) => {
                Handle::Refs(self.namespace_listing(&n, b"refs/tags/", prefix)?.into())
            }
            Kind::CommitsDir | Kind::Submodule { .. } => Handle::Refs(Vec::new().into()),
            Kind::Tree { snap, oid } => Handle::Tree {
                snap: snap.clone(),
                oid: *oid,
                entries: self.tree(*oid)?,
            },
            Kind::MDir { .. } => {
                let inodes = self.inodes.read();
                let list: Vec<(Box<[u8]>, Kind)> = self
                    .mat_children(n.ino)
                    .into_iter()
                    .filter_map(|(name, ino)| inodes.get(ino).map(|c| (name, c.kind.clone())))
                    .collect();
                Handle::Refs(list.into())
            }
            Kind::File { .. }
            | Kind::Symlink { .. }
            | Kind::Head
            | Kind::MFile { .. }
            | Kind::MSymlink { .. } => {
                return Err(FsError::NotDir);
            }
        };
        // The kernel keeps the listing of every directory of a snapshot or a
        // branch until it changes. A branch directory changes either through
        // the kernel (create, unlink, rename, ...: the kernel drops its
        // listing itself) or by another writer's move being followed (or a
        // sync), which invalidates every directory it re-points (see
        // `follow/mod.rs`). The root, `.tags` and namespaces follow the refs and
        // are listed afresh at each open.
        let cached = n.kind.snap().is_some();
        let fh = self.handles.add(handle);
        Ok(Opened {
            fh,
            keep_cache: cached,
        })
    }

    /// The children of a ref namespace: the next component of every ref below it.
    /// A child that is itself a ref is a snapshot (resolved now if it was never
    /// looked up); one that only has refs below it is a namespace.
    fn namespace_listing(
        &self,
        n: &Node,
        refs_prefix: &[u8],
        ns: &[u8],
    ) -> FsResult<Vec<(Box<[u8]>, Kind)>> {
        let refs = self
            .repo
            .refs(std::str::from_utf8(refs_prefix).unwrap_or(""))?;
        let dir = if ns.is_empty() {
            Vec::new()
        } else {
            join(ns, b"")
        };
        let mut out: Vec<(Box<[u8]>, Kind)> = Vec::new();
        for (name, _) in &refs {
            let Some(rest) = name.strip_prefix(&dir[..]) else {
                continue;
            };
            let (first, nested) = match rest.iter().position(|&b| b == b'/') {
                Some(i) => (&rest[..i], true),
                None => (rest, false),
            };
            if !shown_ref_component(refs_prefix, ns, first)
                || out.last().is_some_and(|(n, _)| &**n == first)
            {
                continue;
            }
            let kind = if nested {
                let short: Box<[u8]> = join(ns, first).into();
                if refs_prefix == b"refs/heads/" {
                    Kind::BranchNs(short)
                } else {
                    Kind::TagNs(short)
                }
            } else {
                match self.lookup_in_namespace(n, refs_prefix, ns, first) {
                    Ok(node) => node.kind.clone(),
                    Err(e) => {
                        log::warn!("ref {} cannot be shown: {e}", String::from_utf8_lossy(name));
                        continue;
                    }
                }
            };
            out.push((first.into(), kind));
        }
        Ok(out)
    }

    /// At most `max` entries from `offset` on (0 and 1 are `.` and `..`). The
    /// kernel asks again from the last entry's `next` until a call returns none,
    /// so a bounded batch keeps a wide directory linear rather than quadratic.
    pub fn readdir(&self, ino: Ino, fh: u64, offset: u64, max: usize) -> FsResult<Vec<DirEntry>> {
        let n = self.node(ino)?;
        let listing = self.handles.get(fh).ok_or(FsError::BadHandle)?;
        let mut out = Vec::new();
        if offset == 0 {
            out.push(DirEntry {
                ino: n.ino,
                next: 1,
                kind: FileKind::Dir,
                name: Box::from(&b"."[..]),
            });
        }
        if offset <= 1 {
            out.push(DirEntry {
                ino: n.parent,
                next: 2,
                kind: FileKind::Dir,
                name: Box::from(&b".."[..]),
            });
        }
        let start = offset.saturating_sub(2) as usize;
        if start >= listing.len() {
            return Ok(out);
        }
        let room = max.saturating_sub(out.len());
        // Optimistic tries with no lock while a tree is read; a directory
        // re-pointed meanwhile is tried again, and the last try holds the
        // exclusive lock throughout.
        let mut n = n;
        for attempt in 1..=READDIR_TRIES {
            let last = attempt == READDIR_TRIES;
            if let Some(mut listed) = self.listed_entries(&n, &listing, start, room, last)? {
                out.append(&mut listed);
                return Ok(out);
            }
            n = self.node(ino)?;
        }
        Ok(out)
    }

    /// Entries `start..start + room` of directory `n`'s listing on a handle.
    /// A directory re-pointed at another writer's tree since the handle was
    /// opened gives its names from the tree it shows now, so that no old
    /// version comes back (see view/follow.rs); that tree is read before any
    /// lock is taken, unless `locked`. Names that already have their inode
    /// (every one, in a listing read before) are answered under the shared
    /// lock; the exclusive one is taken only from the first name that needs
    /// an inode made. None if `n` changed meanwhile (re-pointed or made a
    /// changed directory): the caller tries again.
    fn listed_entries(
        &self,
        n: &Arc<Node>,
        listing: &Handle,
        start: usize,
        room: usize,
        locked: bool,
    ) -> FsResult<Option<Vec<DirEntry>>> {
        let now_of = |n: &Node| -> FsResult<Option<(Arc<Snap>, Arc<Listing>)>> {
            match (listing, &n.kind) {
                (Handle::Tree { oid, .. }, Kind::Tree { snap, oid: c }) if c != oid => {
                    Ok(Some((snap.clone(), self.tree(*c)?)))
                }
                _ => Ok(None),
            }
        };
        let end = start + room.min(listing.len() - start);
        let mut out = Vec::new();
        if locked {
            let mut inodes = self.inodes.write();
            let cur = inodes.get(n.ino).ok_or(FsError::NotFound)?;
            let now = now_of(&cur)?;
            listed_from(
                &mut inodes,
                &cur,
                listing,
                now.as_ref(),
                start..end,
                &mut out,
            );
            return Ok(Some(out));
        }
        let now = now_of(n)?;
        let same = |inodes: &Inodes| inodes.get(n.ino).is_some_and(|c| Arc::ptr_eq(&c, n));
        let mut i = start;
        {
            let inodes = self.inodes.read();
            if !same(&inodes) {
                return Ok(None);
            }
            while i < end {
                let Some((name, kind)) = listed_name(listing, now.as_ref(), i) else {
                    i += 1;
                    continue;
                };
                match listed_child(&inodes, n, &name, &kind) {
                    Listed::Gone => {}
                    Listed::Has(node) => out.push(dir_entry(&node, name, i)),
                    Listed::New => break,
                }
                i += 1;
            }
        }
        if i < end {
            let mut inodes = self.inodes.write();
            if !same(&inodes) {
                return Ok(None);
            }
            listed_from(&mut inodes, n, listing, now.as_ref(), i..end, &mut out);
        }
        Ok(Some(out))
    }

    /// The entry (attributes and TTL) of a child a readdir just listed. A child
    /// whose object cannot be read is still listed, with a zero TTL, so that the
    /// kernel asks again on the next stat or open and gets EIO there. A child
    /// removed since it was listed (unlinked, and forgotten by the kernel) is
    /// not: `None`.
    pub fn entry_of(&self, e: &DirEntry) -> Option<Entry> {
        Some(match self.getattr(e.ino) {
            Ok(x) => x,
            Err(FsError::NotFound) => {
                log::debug!(
                    "{}: removed since it was listed",
                    String::from_utf8_lossy(&e.name)
                );
                return None;
            }
            Err(err) => {
                log::warn!("{}: {err}", String::from_utf8_lossy(&e.name));
                Entry {
                    attr: Attr {
                        ino: e.ino,
                        kind: e.kind,
                        perm: 0,
                        size: 0,
                        blocks: 0,
                        nlink: 1,
                        uid: self.cfg.uid,
                        gid: self.cfg.gid,
                        atime: Ts::default(),
                        mtime: Ts::default(),
                        ctime: Ts::default(),
                    },
                    ttl: Duration::ZERO,
                }
            }
        })
    }

    /// Starts pushing small files of answered listings into the kernel's page
    /// cache (see `view/prefetch.rs`); the returned receiver is for the thread that
    /// sends the notifications.
    pub fn enable_prefetch(&self) -> Worker {
        let (p, worker) = Prefetcher::new();
        self.readahead.enable(p);
        worker
    }

    /// Stops prefetching; the prefetch thread ends when its queue is drained.
    pub fn disable_prefetch(&self) {
        self.readahead.disable();
    }

    /// Hands the prefetcher the small files just answered in a readdirplus on
    /// directory handle `fh`: it reads them at once, and stores them once the
    /// kernel has surely made their inodes, at the next readdirplus or the
    /// releasedir of the same handle (the kernel sends either only after it
    /// has processed this reply; see `prefetch_listed`). A store sent earlier
    /// could reach the kernel before the inode exists and be dropped.
    pub fn listed(&self, fh: u64, entries: &[DirEntry]) {
        let Some(p) = self.readahead.prefetcher() else {
            return;
        };
        let mut budget = prefetch::MAX_PER_LISTING;
        let mut jobs = Vec::new();
        {
            let inodes = self.inodes.read();
            let sizes = self.sizes.lock();
            for e in entries {
                let Some(n) = inodes.get(e.ino) else { continue };
                let Kind::File { oid, .. } = n.kind else {
                    continue;
                };
                let Some(&size) = sizes.peek(&oid) else {
                    continue;
                };
                if size == 0 || size > prefetch::MAX_FILE || size > budget {
                    continue;
                }
                budget -= size;
                jobs.push(Job { ino: e.ino, oid });
            }
        }
        if jobs.is_empty() {
            return;
        }
        log::trace!("prefetch: {} files listed on handle {fh}", jobs.len());
        if let Some(gate) = p.offer(jobs) {
            self.readahead.gate(fh, gate);
        }
    }

    /// The kernel has processed the last reply on handle `fh`: what it listed
    /// may be stored now.
    pub fn prefetch_listed(&self, fh: u64) {
        self.readahead.open(fh);
    }

    /// A small blob's bytes, for the prefetch thread.
    pub fn blob_for_prefetch(&self, oid: Oid) -> FsResult<Arc<[u8]>> {
        Ok(self.blobs.get_for_kernel(&self.repo, oid)?)
    }

    pub fn releasedir(&self, fh: u64) {
        self.prefetch_listed(fh);
        self.handles.remove(fh);
    }

    // ---- the rest -------------------------------------------------------------

    /// Every operation that would change something: the node must exist, and then
    /// the answer is EROFS (writes come with the write side).
    pub fn check_writable(&self, ino: Ino) -> FsResult<()> {
        let n = self.node(ino)?;
        self.writable_snap(&n).map(|_| ())
    }

    /// access(2): existence, EROFS for W_OK, EACCES for X_OK on a file that is
    /// not executable.
    pub fn access(&self, ino: Ino, mask: i32) -> FsResult<()> {
        let n = self.node(ino)?;
        if mask & libc::W_OK != 0 {
            self.writable_snap(&n)?;
        }
        if mask & libc::X_OK != 0
            && matches!(
                n.kind,
                Kind::File {
                    executable: false,
                    ..
                } | Kind::MFile {
                    executable: false,
                    ..
                }
            )
        {
            return Err(FsError::Access);
        }
        Ok(())
    }

    /// Space figures of the filesystem that holds the repository.
    pub fn statfs(&self) -> Statfs {
        match nix::sys::statvfs::statvfs(self.repo.git_dir()) {
            Ok(st) => Statfs {
                blocks: st.blocks(),
                bfree: st.blocks_free(),
                bavail: st.blocks_available(),
                files: st.files(),
                ffree: st.files_free(),
                bsize: st.block_size() as u32,
                namelen: crate::store::repo::NAME_MAX as u32,
                frsize: st.fragment_size() as u32,
            },
            Err(_) => Statfs {
                blocks: 0,
                bfree: 0,
                bavail: 0,
                files: 0,
                ffree: 0,
                bsize: 4096,
                namelen: crate::store::repo::NAME_MAX as u32,
                frsize: 4096,
            },
        }
    }

    /// How many inode numbers have been given out (for tests and diagnostics).
    pub fn inode_count(&self) -> usize {
        self.inodes.read().len()
    }
}

/// Entries `range` of a handle's listing of `dir`, under the exclusive lock:
/// the names without an inode get one.
fn listed_from(
    inodes: &mut Inodes,
    dir: &Node,
    listing: &Handle,
    now: Option<&(Arc<Snap>, Arc<Listing>)>,
    range: std::ops::Range<usize>,
    out: &mut Vec<DirEntry>,
) {
    for i in range {
        let Some((name, kind)) = listed_name(listing, now, i) else {
            continue;
        };
        let node = match listed_child(inodes, dir, &name, &kind) {
            Listed::Gone => continue,
            Listed::Has(node) => node,
            Listed::New => inodes.upsert(dir.ino, &name, kind),
        };
        out.push(dir_entry(&node, name, i));
    }
}

/// The readdir entry of `node`, listed at position `i` of its directory.
fn dir_entry(node: &Node, name: Box<[u8]>, i: usize) -> DirEntry {
    DirEntry {
        ino: node.ino,
        next: i as u64 + 3,
        kind: file_kind(&node.kind),
        name,
    }
}

/// The name and kind of entry `i` of a handle's listing, taken from the tree
/// the directory shows `now` if it was re-pointed since; None if the name
/// is gone there.
fn listed_name(
    listing: &Handle,
    now: Option<&(Arc<Snap>, Arc<Listing>)>,
    i: usize,
) -> Option<(Box<[u8]>, Kind)> {
    let (name, mut kind) = listing.child(i);
    if let Some((snap, entries)) = now {
        match entries.binary_search_by(|e| (*e.name).cmp(&name)) {
            Ok(j) => kind = tree_kind(snap, &entries[j]),
            Err(_) => return None,
        }
    }
    Some((name, kind))
}

/// What a readdir answers for a listed child of directory `dir`.
enum Listed {
    /// Removed since the handle was opened: not listed.
    Gone,
    /// The inode it has.
    Has(Arc<Node>),
    /// It has none yet: one is made, of the listed kind.
    New,
}

fn listed_child(inodes: &Inodes, dir: &Node, name: &[u8], kind: &Kind) -> Listed {
    match inodes.child(dir.ino, name) {
        // Keep what a lookup already decided (a branch's snapshot).
        Some(e) if e.kind.snap().is_some() || !kind.is_dir() => Listed::Has(e),
        // Every child of a changed directory has its node: a name without
        // one was removed since the handle was opened (making it again
        // would make a written file without its data).
        None if matches!(dir.kind, Kind::MDir { .. }) => Listed::Gone,
        _ => Listed::New,
    }
}

fn file_kind(k: &Kind) -> FileKind {
    match k {
        Kind::File { .. } | Kind::MFile { .. } => FileKind::File,
        Kind::Symlink { .. } | Kind::MSymlink { .. } | Kind::Head => FileKind::Symlink,
        _ => FileKind::Dir,
    }
}

/// Whether a ref name component is shown as a directory. Git never writes a
/// component that begins with '.', nor the branch `HEAD`; a hostile repository
/// that has one must not shadow `.tags`, `.commits` or the `HEAD` symlink. Nor
/// is a name Git refuses to check out (`git~1`, `\u{200c}.git`) shown here,
/// as it is not inside a tree.
fn shown_ref_component(refs_prefix: &[u8], ns: &[u8], name: &[u8]) -> bool {
    valid_name(name)
        && !name.starts_with(b".")
        && !crate::store::names::refused(name, false)
        && (refs_prefix != b"refs/heads/" || !ns.is_empty() || name != b"HEAD")
}

/// `ns/name`, or `name` at the top.
fn join(ns: &[u8], name: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(ns.len() + name.len() + 1);
    if !ns.is_empty() {
        v.extend_from_slice(ns);
        v.push(b'/');
    }
    v.extend_from_slice(name);
    v
}

fn join_raw(a: &[u8], b: &[u8]) -> Vec<u8> {
    let mut v = a.to_vec();
    v.extend_from_slice(b);
    v
}

/// Resolves `--ref`: a branch name (writable once writes exist), a tag, or any
/// revision (read-only).
fn resolve_ref_arg(repo: &Repo, r: &str) -> Result<Snap, String> {
    let fail = |e: StoreError| format!("cannot read ref '{r}': {e}");
    for (prefix, branch) in [("refs/heads/", true), ("refs/tags/", false), ("", false)] {
        let full = if prefix.is_empty() && r.starts_with("refs/") {
            r.to_string()
        } else if prefix.is_empty() {
            continue;
        } else {
            format!("{prefix}{r}")
        };
        if let Some(target) = repo.ref_target(full.as_bytes()).map_err(fail)? {
            let snapshot = repo.snapshot(target).map_err(fail)?;
            let is_branch = branch || full.starts_with("refs/heads/");
            // As in a whole-repository mount: only a ref naming a commit is
            // writable.
            let source = if is_branch && snapshot.commit == Some(target) {
                let short = full.strip_prefix("refs/heads/").unwrap_or(&full);
                SnapSource::Branch(short.as_bytes().into())
            } else {
                SnapSource::Fixed
            };
            return Ok(Snap { snapshot, source });
        }
    }
    match repo.resolve(r).map_err(fail)? {
        Some(snapshot) => Ok(Snap {
            snapshot,
            source: SnapSource::Fixed,
        }),
        None => Err(format!(
            "ref '{r}' does not resolve to a commit in this repository: give a branch, a tag, or a revision such as main~1 or an abbreviated SHA"
        )),
    }
}

impl Drop for CommitFs {
    /// The committer's threads end (each holds the mount only while it
    /// commits).
    fn drop(&mut self) {
        self.committer.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_builds_ref_paths() {
        assert_eq!(join(b"", b"main"), b"main");
        assert_eq!(join(b"feature", b"x"), b"feature/x");
        assert_eq!(
            join_raw(b"refs/heads/", b"feature/x"),
            b"refs/heads/feature/x"
        );
    }
}
