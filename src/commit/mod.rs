//! Overlay -> trees -> commit -> ref update; the settle window; scratch files.
//!
//! When commits are made (SPEC section 4):
//! - `fsync` of a file commits its branch at once, and returns once the objects
//!   and then the ref are on stable storage (`syncfs` of the repository).
//! - Every other change marks its branch dirty; the scheduler thread commits a
//!   dirty branch once no change has come for the settle window (`--settle`,
//!   200 ms), or once the branch has been dirty for `SETTLE_CAP` whatever comes.
//!   (The kernel sends no close to the daemon; the last writes of a close are
//!   the last change.)
//! - Unmount and SIGTERM commit every dirty branch (`commit_all`).
//!
//! A commit is built from this mount's view of the branch: clean subtrees keep
//! their ids, materialized directories are rebuilt, written files become blobs.
//! Scratch files (editor swap, backup, lock and probe files) that were made or
//! changed here never enter a tree, nor do untracked paths that the branch's
//! ignore files ignore (see `commit/gitignore.rs`). The ref is moved with a
//! compare-and-swap on the tip the commit was built on; if someone else moved
//! it, this mount's changes since its last commit are applied on top of the
//! new tip instead, and where both changed a path, this mount's version wins
//! and the message says so.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::store::Oid;
use parking_lot::{Condvar, Mutex};

use crate::error::{FsError, FsResult};
use crate::inodes::{Ino, Inodes, Kind, Node, Snap, SnapSource};
use crate::overlay::wdata::Contents;
use crate::store::error::StoreError;
use crate::store::repo::ObjectBatch;
use crate::store::repo::{Repo, Tip, Txn};
use crate::store::treeobj::RawEntry;

pub mod gitignore;

use crate::store::changes::{diff_paths_in, summary};

/// However many changes keep coming, a dirty branch is committed this long
/// after it became dirty.
pub const SETTLE_CAP: Duration = Duration::from_secs(3);
/// After a failed commit, the next try waits this long.
const RETRY_PAUSE: Duration = Duration::from_secs(5);

/// A file at least this large that is still being written does not go into
/// the commits the settle cap forces (see `run_scheduler`).
pub const BIG_FILE: u64 = 32 << 20;

/// Past the settle cap, how much longer a file being made holds the commit
/// at most: a stream of new files (`rsync`, `cp -r`, `tar x`) is committed
/// when it pauses, or this long after the cap.
pub const FRESH_HOLD: Duration = Duration::from_secs(10);

/// How long a file being made that was fsynced holds the commit, waiting
/// for the rename that ends its save (a crash-safe save and `rsync --fsync`
/// fsync a temporary file, then rename it into place): at most this long
/// after the fsync, so a file fsynced and kept is committed soon too.
pub const FRESH_FSYNC_HOLD: Duration = Duration::from_secs(2);

/// A branch this mount has written to.
pub struct BranchW {
    /// The ref name (below refs/heads/) now: a rename of the branch directory
    /// changes it, while the nodes keep the name they were made with.
    name: Mutex<Box<[u8]>>,
    pub root: Ino,
    st: Mutex<BranchSt>,
    /// One commit of a branch at a time.
    commit_lock: Mutex<()>,
    /// Barriers asked of the committer for this branch, and their answers.
    asked: Mutex<Asked>,
    answered: Condvar,
}

impl BranchW {
    /// The ref name below refs/heads/ now.
    pub fn name(&self) -> Box<[u8]> {
        self.name.lock().clone()
    }

    /// Runs `f` with no commit of the branch running: none starts until it
    /// returns (a rename of the ref, which a commit would move by its old
    /// name).
    pub fn without_commits<R>(&self, f: impl FnOnce() -> R) -> R {
        let _one = self.commit_lock.lock();
        f()
    }
}

/// What `commitfs status` shows of a branch's committer.
pub struct BranchReport {
    /// The commit whose tree the mount shows.
    pub shown: Option<Oid>,
    /// Changes not yet committed, and since how long.
    pub uncommitted: bool,
    pub uncommitted_for: Option<Duration>,
    /// Its commit waits for a large file being written.
    pub held_by_large_write: bool,
    /// Past the cap, its commit waits for a file being made (see
    /// `FRESH_HOLD`).
    pub held_by_new_file: bool,
    /// The last commit this mount made here, how long ago, its first line.
    pub last_commit: Option<(Oid, Duration, String)>,
    /// The last failure to commit (cleared by the next commit), how long ago.
    pub last_error: Option<(String, Duration)>,
    /// After a failed commit: how long until the committer tries again on
    /// its own (a barrier tries at once).
    pub retry_in: Option<Duration>,
}

pub(crate) struct BranchSt {
    /// The commit the last commit of this mount made (or found at first lookup).
    pub base: Option<Oid>,
    /// The tree of this mount's view at that commit.
    pub view: Oid,
    pub dirty: bool,
    pub first_dirty: Option<Instant>,
    pub last_change: Option<Instant>,
    /// After a failed commit, the scheduler waits until then.
    pub not_before: Option<Instant>,
    /// When a file of at least BIG_FILE bytes was last written.
    pub big_write: Option<Instant>,
    /// When a file being made (never committed: new, or truncated and
    /// written again) was last written.
    pub fresh_write: Option<Instant>,
    /// When such a file was last fsynced, if no rename in the branch came
    /// since (the save it belongs to is not done: see `FRESH_FSYNC_HOLD`).
    pub fresh_fsync: Option<Instant>,
    /// Paths another writer changed that this mount changed too and keeps its
    /// version of: named in the next commit's message.
    pub overridden: Vec<Vec<u8>>,
    /// The commit whose tree the mount shows, and the kernel was told of
    /// (a followed move is shown once its invalidations are delivered).
    pub shown: Option<Oid>,
    /// The last commit this mount made here, when, and its first line.
    pub last_commit: Option<(Oid, Instant, String)>,
    /// The last failure to commit, cleared by the next commit that
    /// succeeds (or finds nothing left to commit).
    pub last_error: Option<(Instant, String)>,
    /// The ref was moved to this mount's last commit but could not be made
    /// durable (its fsync failed): the next durable commit of the branch
    /// syncs it, even with nothing new to commit.
    pub ref_unsynced: bool,
    /// Packs kept for the branch: those of the commit this mount last made
    /// here (its trees and new blobs, which the mount goes on reading and
    /// diffing against, even if another writer moves the branch away and gc
    /// runs), and those of commits that failed or whose ref is not durable
    /// yet (their blobs are reused). Let go of when a later commit lands,
    /// and when the daemon goes away.
    pub kept: Vec<crate::store::repo::KeptPack>,
}

/// A barrier's request for a commit of one branch, and its answer.
#[derive(Default)]
struct Asked {
    /// Barriers asked so far, and how many a commit has answered: barrier
    /// `n` is answered once `done >= n` (a commit that started after it
    /// was asked holds every change acknowledged before it).
    asked: u64,
    done: u64,
    /// The last answer: None for a commit that landed (or had nothing to do).
    error: Option<FsError>,
}

/// The jobs of the committer's threads.
#[derive(Default)]
struct Queue {
    /// The mount is gone: the threads end.
    stop: bool,
    /// Whether settled branches are committed (the daemon turns this on;
    /// without it only barriers commit).
    settling: bool,
    /// Branches a barrier waits for, oldest first.
    asked: std::collections::VecDeque<Arc<BranchW>>,
    /// Branch roots a thread is committing now (one commit of a branch at a
    /// time; others are free to go on).
    busy: std::collections::HashSet<Ino>,
}

/// How many branches are committed at once.
pub const COMMIT_THREADS: usize = 4;

/// What the committer reads of a branch's pending changes, and what it
/// tells the overlay once a commit landed. The view implements it; the
/// committer holds no lock of the view's while it reads or writes objects,
/// and each call here takes the view's locks only for as long as it runs.
pub trait Pending: Send + Sync {
    /// The node `ino` (an error if it is gone).
    fn node(&self, ino: Ino) -> FsResult<Arc<Node>>;
    /// The entries of a materialized directory, in name order.
    fn children(&self, dir: Ino) -> Vec<(Box<[u8]>, Ino)>;
    /// The tree a materialized directory was made from (or last committed as).
    fn base(&self, dir: Ino) -> Option<Arc<crate::store::treeobj::Listing>>;
    /// The bytes of a written file.
    fn file(&self, ino: Ino) -> Option<Arc<crate::overlay::WFile>>;
    /// The whole content of a file as the mount shows it, if it has at most
    /// `max` bytes (a `.gitignore`).
    fn read_file(&self, ino: Ino, max: usize) -> FsResult<Option<Vec<u8>>>;
    /// The size of a blob.
    fn blob_size(&self, oid: Oid) -> FsResult<u64>;
    /// A commit of branch `name` landed: each rebuilt directory now stands
    /// for the tree written for it.
    fn landed(&self, name: &str, bases: Vec<(Ino, Arc<crate::store::treeobj::Listing>)>);
    /// Branch root `root`, whose view was tree `view`, now shows `snap`
    /// (another writer's tip), its pending changes kept. Returns the paths
    /// both changed (this mount's version stays).
    fn follow(&self, root: Ino, view: Oid, snap: &Arc<Snap>) -> FsResult<Vec<Vec<u8>>>;
    /// After any commit that landed: committed files may give up their
    /// overlay files, a catalog that failed to write is written again, the
    /// server may be told.
    fn after_commit(&self);
    /// Runs `then` once the kernel has every invalidation sent so far
    /// (at once if there is no kernel to tell).
    fn after_invalidations(&self, then: Box<dyn FnOnce() + Send>);
}

/// The committer: a component that owns the branches this mount writes,
/// their commit state and the threads that commit them. The view tells it
/// of changes (`changed`) and asks for barriers (`barrier`,
/// `barrier_all`); its threads read the pending changes through
/// [`Pending`] and write objects, trees, commits and refs. No request
/// thread writes an object.
///
/// Locks (see docs/DEVELOPMENT.md, "Locks", for the whole table):
/// `queue` before `branches` before a branch's `st`; a branch's
/// `commit_lock` is taken by its committing thread (and by following)
/// before any of them and held for the whole commit, with object I/O;
/// `asked` (per branch) and `unsynced` are leaves.
pub struct Committer {
    repo: Arc<Repo>,
    /// `--author`, parsed at start.
    author: Option<(String, String)>,
    settle: Duration,
    scratch: globset::GlobSet,
    ignores: crate::commit::gitignore::Ignores,
    /// Branches this mount has written to, by ref name.
    branches: Mutex<HashMap<Box<[u8]>, Arc<BranchW>>>,
    /// Packs (by checksum) written by commits that failed before their
    /// fsync: the next commit syncs them before moving a ref.
    unsynced: Mutex<Vec<Oid>>,
    queue: Mutex<Queue>,
    wake: Condvar,
}

impl Committer {
    pub fn new(repo: Arc<Repo>, cfg: &crate::model::FsConfig) -> Result<Committer, String> {
        let author = match &cfg.author {
            Some(a) => Some(
                parse_author(a)
                    .ok_or_else(|| format!("--author '{a}' is not of the form \"Name <email>\""))?,
            ),
            None => None,
        };
        Ok(Committer {
            scratch: scratch_set(cfg)?,
            ignores: crate::commit::gitignore::Ignores::new(cfg.gitignore, repo.common_dir()),
            repo,
            author,
            settle: cfg.settle,
            branches: Mutex::new(HashMap::new()),
            unsynced: Mutex::new(Vec::new()),
            queue: Mutex::new(Queue::default()),
            wake: Condvar::new(),
        })
    }

    /// Starts the committing threads; they read through `src` while it lives.
    pub fn start(self: &Arc<Self>, src: std::sync::Weak<dyn Pending>) {
        // The threads take no signal (they inherit the mask of the thread
        // that makes them): SIGTERM is for the daemon's signal thread, which
        // commits before going away; taken here it would kill the process.
        use nix::sys::signal::{SigSet, SigmaskHow};
        let old = SigSet::all().thread_swap_mask(SigmaskHow::SIG_BLOCK).ok();
        for i in 0..COMMIT_THREADS {
            let c = self.clone();
            let src = src.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("commit-{i}"))
                .spawn(move || c.work(&src));
            if let Err(e) = spawned {
                log::error!("cannot start a committing thread: {e}");
            }
        }
        // The mask this thread had is put back.
        if let Some(old) = old
            && let Err(e) = old.thread_set_mask()
        {
            log::warn!("cannot restore the signal mask: {e}");
        }
    }

    /// From now on, settled branches are committed (the daemon's mounts).
    pub fn start_settling(&self) {
        self.queue.lock().settling = true;
        self.wake.notify_all();
    }

    /// Settled branches are no longer committed on their own (going away:
    /// `barrier_all` commits what is left); barriers still are.
    pub fn stop_settling(&self) {
        self.queue.lock().settling = false;
    }

    /// The threads end once their commit is done (the mount is gone).
    pub fn stop(&self) {
        self.queue.lock().stop = true;
        self.wake.notify_all();
    }

    /// The branch whose root directory is `root`, made on first use with
    /// `name` and the commit and tree its root shows.
    pub fn branch(&self, root: Ino, name: &[u8], base: Option<Oid>, view: Oid) -> Arc<BranchW> {
        let mut all = self.branches.lock();
        if let Some(b) = all.values().find(|b| b.root == root) {
            return b.clone();
        }
        let b = Arc::new(BranchW {
            name: Mutex::new(name.into()),
            root,
            st: Mutex::new(BranchSt {
                base,
                view,
                shown: base,
                dirty: false,
                first_dirty: None,
                last_change: None,
                not_before: None,
                big_write: None,
                fresh_write: None,
                fresh_fsync: None,
                overridden: Vec::new(),
                last_commit: None,
                last_error: None,
                ref_unsynced: false,
                kept: Vec::new(),
            }),
            commit_lock: Mutex::new(()),
            asked: Mutex::new(Asked::default()),
            answered: Condvar::new(),
        });
        all.entry(name.into()).or_insert(b).clone()
    }

    /// The branch written here under ref name `name` (below refs/heads/).
    pub fn by_name(&self, name: &[u8]) -> Option<Arc<BranchW>> {
        self.branches.lock().get(name).cloned()
    }

    /// Every branch written here.
    pub fn all(&self) -> Vec<Arc<BranchW>> {
        self.branches.lock().values().cloned().collect()
    }

    /// Branch `name` was deleted.
    pub fn forget(&self, name: &[u8]) {
        self.branches.lock().remove(name);
    }

    /// Branch `b` is known by `name` from now on (its ref was renamed).
    pub fn renamed(&self, b: &Arc<BranchW>, name: &[u8]) {
        *b.name.lock() = name.into();
        let mut all = self.branches.lock();
        all.retain(|_, v| !Arc::ptr_eq(v, b));
        all.insert(name.into(), b.clone());
    }

    /// Something in branch `b` changed (a file is now `size` bytes long, or
    /// 0; `fresh`: a file being made, never committed): its settle window
    /// starts again.
    pub fn changed(&self, b: &BranchW, size: u64, fresh: bool) {
        let now = Instant::now();
        let mut st = b.st.lock();
        let was_dirty = st.dirty;
        st.dirty = true;
        st.last_change = Some(now);
        st.first_dirty.get_or_insert(now);
        if size >= BIG_FILE {
            st.big_write = Some(now);
        }
        if fresh {
            st.fresh_write = Some(now);
        }
        drop(st);
        // A branch that was dirty already has a deadline a thread sleeps
        // towards; a later change only moves it later, which the thread
        // sees when it wakes. Waking one on every write would cost a
        // context switch per request.
        if !was_dirty {
            drop(self.queue.lock());
            self.wake.notify_all();
        }
    }

    /// A file being made in branch `b` was fsynced: its save is not done
    /// until a rename (see `FRESH_FSYNC_HOLD`).
    pub fn fresh_fsynced(&self, b: &BranchW) {
        b.st.lock().fresh_fsync = Some(Instant::now());
    }

    /// A name in branch `b` was renamed: a save that fsynced a file being
    /// made is done.
    pub fn renamed_in(&self, b: &BranchW) {
        let held = b.st.lock().fresh_fsync.take().is_some();
        // The committing thread sleeps towards the held deadline: it is
        // earlier now.
        if held {
            drop(self.queue.lock());
            self.wake.notify_all();
        }
    }

    /// A commit barrier: commits branch `b` on a committing thread and
    /// returns once every change acknowledged before the call is in a
    /// commit on the branch, durably (or the commit's error).
    pub fn barrier(&self, b: &Arc<BranchW>) -> FsResult<()> {
        let n = self.ask(b);
        self.answer(b, n)
    }

    /// Commits every branch that has changes not committed yet (or a commit
    /// running, or a ref not durable yet), at once, and returns when all
    /// are answered: unmount, SIGTERM, fsync of the root.
    pub fn barrier_all(&self) -> FsResult<()> {
        let busy: Vec<Ino> = self.queue.lock().busy.iter().copied().collect();
        let asked: Vec<(Arc<BranchW>, u64)> = self
            .all()
            .into_iter()
            .filter(|b| {
                let st = b.st.lock();
                st.dirty || st.ref_unsynced || busy.contains(&b.root)
            })
            .map(|b| {
                let n = self.ask(&b);
                (b, n)
            })
            .collect();
        let mut result = Ok(());
        for (b, n) in asked {
            if let Err(e) = self.answer(&b, n) {
                result = Err(e);
            }
        }
        result
    }

    fn ask(&self, b: &Arc<BranchW>) -> u64 {
        let n = {
            let mut a = b.asked.lock();
            a.asked += 1;
            a.asked
        };
        let mut q = self.queue.lock();
        if !q.asked.iter().any(|x| Arc::ptr_eq(x, b)) {
            q.asked.push_back(b.clone());
        }
        drop(q);
        self.wake.notify_all();
        n
    }

    fn answer(&self, b: &BranchW, n: u64) -> FsResult<()> {
        let mut a = b.asked.lock();
        while a.done < n {
            if self.queue.lock().stop {
                return Err(FsError::io("the mount is going away; not committed"));
            }
            b.answered.wait_for(&mut a, Duration::from_secs(1));
        }
        match &a.error {
            Some(e) => Err(e.clone()),
            None => Ok(()),
        }
    }

    /// A committing thread: barriers first, then branches whose changes
    /// settled, one commit of a branch at a time.
    fn work(&self, src: &std::sync::Weak<dyn Pending>) {
        while let Some((b, barrier)) = self.next_job() {
            let Some(view) = src.upgrade() else {
                self.queue.lock().busy.remove(&b.root);
                return;
            };
            let n = b.asked.lock().asked;
            // A panic in a commit (a bug) fails this commit, not the thread:
            // the barrier gets its answer and the branch is tried again.
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                self.commit_branch(&*view, &b)
            }))
            .unwrap_or_else(|_| {
                b.st.lock().dirty = true;
                Err(FsError::io(
                    "the commit failed (a bug, logged above); the changes stay pending",
                ))
            });
            if let Err(e) = &result {
                log_commit_failure(&b, e);
            }
            drop(view);
            if barrier {
                let mut a = b.asked.lock();
                a.done = a.done.max(n);
                a.error = result.err();
                drop(a);
                b.answered.notify_all();
            }
            self.queue.lock().busy.remove(&b.root);
            self.wake.notify_all();
        }
    }

    fn next_job(&self) -> Option<(Arc<BranchW>, bool)> {
        let mut q = self.queue.lock();
        loop {
            if q.stop {
                return None;
            }
            if let Some(i) = q.asked.iter().position(|b| !q.busy.contains(&b.root)) {
                let b = q.asked.remove(i)?;
                q.busy.insert(b.root);
                return Some((b, true));
            }
            let mut next = None;
            if q.settling {
                let (due, at) = self.due(&q.busy);
                if let Some(b) = due {
                    q.busy.insert(b.root);
                    return Some((b, false));
                }
                next = at;
            }
            match next {
                Some(at) => {
                    self.wake.wait_until(&mut q, at);
                }
                None => {
                    self.wake.wait_for(&mut q, Duration::from_secs(1));
                }
            }
        }
    }

    /// A branch whose changes settled and that no thread commits now; else
    /// when the next one will have.
    fn due(
        &self,
        busy: &std::collections::HashSet<Ino>,
    ) -> (Option<Arc<BranchW>>, Option<Instant>) {
        let now = Instant::now();
        let mut next: Option<Instant> = None;
        for b in self.branches.lock().values() {
            if busy.contains(&b.root) {
                continue;
            }
            let st = b.st.lock();
            if !st.dirty {
                continue;
            }
            let (Some(last), Some(first)) = (st.last_change, st.first_dirty) else {
                continue;
            };
            let settled = last + self.settle;
            let mut at = settled.min(first + SETTLE_CAP);
            // A large file still being written is not committed half-written
            // at the cap (each such commit would store all of it again): the
            // branch waits for its writes to settle. So does a file being
            // made (a temporary of rsync or of a save, a copy), for at most
            // FRESH_HOLD past the cap.
            if self.large_write_holds(&st, now) || self.fresh_write_holds(&st, now) {
                at = settled;
            }
            // A file being made that was fsynced waits for the rename that
            // ends its save, a while, and never past the cap's own hold.
            if let Some(t) = st.fresh_fsync
                && t + FRESH_FSYNC_HOLD > now
            {
                at = at.max((t + FRESH_FSYNC_HOLD).min(first + SETTLE_CAP + FRESH_HOLD));
            }
            if let Some(nb) = st.not_before {
                at = at.max(nb);
            }
            if at <= now {
                return (Some(b.clone()), None);
            }
            next = Some(next.map_or(at, |n: Instant| n.min(at)));
        }
        (None, next)
    }

    /// Whether a large file written within the settle window keeps the
    /// branch from being committed at the settle cap.
    fn large_write_holds(&self, st: &BranchSt, now: Instant) -> bool {
        st.big_write.is_some_and(|t| t + self.settle > now)
    }

    /// Whether a file being made was written within the settle window, and
    /// the hold it gives has not run out (`FRESH_HOLD` past the cap).
    fn fresh_write_holds(&self, st: &BranchSt, now: Instant) -> bool {
        st.fresh_write.is_some_and(|t| t + self.settle > now)
            && st
                .first_dirty
                .is_some_and(|f| now < f + SETTLE_CAP + FRESH_HOLD)
    }

    /// What `commitfs status` shows of branch `b` at `now`.
    pub fn report(&self, b: &BranchW, now: Instant) -> BranchReport {
        let st = b.st.lock();
        BranchReport {
            shown: st.shown,
            uncommitted: st.dirty,
            uncommitted_for: st
                .first_dirty
                .filter(|_| st.dirty)
                .map(|t| now.duration_since(t)),
            held_by_large_write: self.held_by_large_write(&st, now),
            held_by_new_file: st.dirty
                && st.first_dirty.is_some_and(|f| f + SETTLE_CAP <= now)
                && self.fresh_write_holds(&st, now),
            last_commit: st
                .last_commit
                .as_ref()
                .map(|(c, t, m)| (*c, now.duration_since(*t), m.clone())),
            last_error: st
                .last_error
                .as_ref()
                .map(|(t, e)| (e.clone(), now.duration_since(*t))),
            retry_in: st.not_before.map(|t| t.saturating_duration_since(now)),
        }
    }

    /// Whether the branch is past the settle cap and waits only because a
    /// large file is still being written (`commitfs status`).
    fn held_by_large_write(&self, st: &BranchSt, now: Instant) -> bool {
        st.dirty
            && st.first_dirty.is_some_and(|f| f + SETTLE_CAP <= now)
            && self.large_write_holds(st, now)
    }

    /// Commits branch `b` if its view changed, durably: the objects and then
    /// the ref are on stable storage when it returns. Returns the new commit.
    fn commit_branch(&self, src: &dyn Pending, b: &Arc<BranchW>) -> FsResult<Option<Oid>> {
        let one = b.commit_lock.lock();
        self.commit_branch_locked(src, b, one)
    }

    fn commit_branch_locked(
        &self,
        src: &dyn Pending,
        b: &Arc<BranchW>,
        _one: parking_lot::MutexGuard<'_, ()>,
    ) -> FsResult<Option<Oid>> {
        {
            let mut st = b.st.lock();
            st.dirty = false;
            st.first_dirty = None;
        }
        let result = self.commit_locked(src, b).map_err(|e| {
            // A full disk, a quota: say whose, for the log, fsync's caller and
            // `commitfs status` (libgit2's messages name no path).
            if e.is_exhaustion() {
                e.context(format_args!(
                    "committing {} into {}",
                    String::from_utf8_lossy(&b.name.lock()),
                    self.repo.git_dir().display()
                ))
            } else {
                e
            }
        });
        if result.is_ok() {
            // What failed has succeeded now (a commit, or nothing left to
            // commit): the error is no longer shown.
            let mut st = b.st.lock();
            st.not_before = None;
            st.last_error = None;
            drop(st);
            src.after_commit();
        }
        if result.is_err() {
            // Nothing was lost: the changes stay pending and the scheduler
            // tries again after a pause (not at once, which would spin).
            let mut st = b.st.lock();
            st.dirty = true;
            st.first_dirty.get_or_insert(Instant::now());
            st.not_before = Some(Instant::now() + RETRY_PAUSE);
            if let Err(e) = &result {
                st.last_error = Some((Instant::now(), e.to_string()));
            }
        }
        result
    }

    fn commit_locked(&self, src: &dyn Pending, b: &Arc<BranchW>) -> FsResult<Option<Oid>> {
        let name = b.name.lock().clone();
        let name = std::str::from_utf8(&name)
            .map_err(|_| FsError::io("branch name is not UTF-8; libgit2 cannot update it"))?;
        let refname = format!("refs/heads/{name}");
        let repo_arc = self.repo.clone();
        // Every object this commit writes goes into packs kept (a `.keep`
        // each) until the ref names the commit, so that no `git gc
        // --prune=now` or `git prune` in between removes them; and then
        // until the next commit of the branch lands (see `BranchSt::kept`).
        // Those kept for the branch so far are held meanwhile, and let go of
        // once this commit lands.
        let mut w = Written::default();
        w.batch.hold(std::mem::take(&mut b.st.lock().kept));
        let result = repo_arc.with_txn(|repo| {
            // A reused blob found missing is written again, once.
            let mut rewrote = false;
            for attempt in 0..COMMIT_TRIES {
                if attempt >= 4 {
                    // Busy with other writers: step aside a little, differently
                    // each time, so that two mounts do not keep colliding.
                    std::thread::sleep(Duration::from_millis(5) + jitter(20));
                }
                w.next_try();
                // Someone else moved the branch: show their tip first (the mount's
                // own changes stay), so that the commit goes on top of it and
                // reverts nothing of theirs.
                let tip = repo.ref_target(&refname);
                if let Some(t) = tip {
                    match repo.tip(t)? {
                        Tip::Commit => {}
                        // Someone pointed the branch at a tree or a tag object: a
                        // commit on it would name a parent that is no commit.
                        Tip::NotCommit => {
                            return Err(FsError::io(format!(
                                "{refname} was moved to {t}, which is not a commit; not committing on it (the changes stay pending)"
                            )));
                        }
                        Tip::Missing => {
                            return Err(FsError::io(format!(
                                "{refname} names {t}, which the repository does not have (pruned?); not committing on it (the changes stay pending)"
                            )));
                        }
                    }
                }
                if let Some(t) = tip
                    && b.st.lock().base != Some(t)
                {
                    // Moved by another writer: a commit on it must not name
                    // a parent that gc has pruned (this process's handles
                    // may still read it from a deleted pack).
                    if !self.repo.missing_on_disk(&[t])?.is_empty() {
                        return Err(FsError::io(format!(
                            "{refname} names {t}, which the repository does not have (pruned?); not committing on it (the changes stay pending)"
                        )));
                    }
                    self.follow_locked(src, b, t)?;
                }
                let (base, view) = {
                    let st = b.st.lock();
                    (st.base, st.view)
                };
                let started = Instant::now();
                let new_view = self.build_tree(src, repo, b.root, &mut w)?.unwrap_or(view);
                let built = started.elapsed();
                // (A branch deleted by someone else while this mount has changes
                // in it is made again below, on this mount's last commit: nothing
                // is lost.)
                if new_view == view {
                    // Every blob the trees name is in the view already.
                    w.batch.drop_unflushed();
                    w.mark_committed();
                    log::debug!("{name}: nothing to commit");
                    // What the mount shows is what the branch has.
                    src.landed(name, std::mem::take(&mut w.bases));
                    if b.st.lock().ref_unsynced {
                        sync_ref(repo.common_dir(), &refname)?;
                        b.st.lock().ref_unsynced = false;
                    }
                    return Ok(None);
                }
                // Objects the new trees name that this commit did not write:
                // those the view had under the same name come with the tip,
                // which the ref protects; any other (a file moved or copied
                // here, a blob an earlier commit wrote) must still be there.
                let missing = self.missing_objects(src, &w)?;
                if !missing.is_empty() {
                    let again: Vec<_> = w
                        .reused
                        .iter()
                        .filter(|(_, _, o)| missing.iter().any(|(_, m)| m == o))
                        .cloned()
                        .collect();
                    if !again.is_empty() && !rewrote {
                        log::warn!(
                            "{name}: {} blob(s) committed before are gone from the repository (gc?); writing them again",
                            again.len()
                        );
                        for (wf, v, o) in again {
                            let mut st = wf.st.lock();
                            if st.committed == Some((v, o)) {
                                st.committed = None;
                            }
                        }
                        rewrote = true;
                        continue;
                    }
                    let shown: Vec<String> = missing
                        .iter()
                        .take(4)
                        .map(|(n, o)| format!("{} ({o})", String::from_utf8_lossy(n)))
                        .collect();
                    return Err(FsError::io(format!(
                        "the new tree of {name} names {} object(s) the repository does not have: {}; not committing it (the changes stay pending)",
                        missing.len(),
                        shown.join(", ")
                    )));
                }
                let changes = diff_paths_in(repo, view, new_view, Some(&w.batch))?;
                let mut msg = summary(&changes);
                let overridden = b.st.lock().overridden.clone();
                if !overridden.is_empty() {
                    msg.push_str(&format!(
                        "\n\nAlso changed by another writer since this mount's last commit; this mount's version is kept, the other stays in history:\n{}",
                        overridden
                            .iter()
                            .map(|p| format!("  {}", String::from_utf8_lossy(p)))
                            .collect::<Vec<_>>()
                            .join("\n")
                    ));
                }
                // Written as bytes: libgit2 would parse the tree first, and
                // refuses trees that hold entries the mount keeps unseen.
                let parents: Vec<Oid> = base.into_iter().collect();
                let commit =
                    w.batch.add_commit_of(repo, new_view, &parents, self.author(), &msg)?;
                // Blobs, trees and the commit are in kept packs from here on;
                // their files may say so.
                w.batch.flush(repo)?;
                let wrote = w.batch.take_new_packs();
                let pack_dir = repo.common_dir().join("objects/pack");
                // The packs go to stable storage before the ref that names
                // them: this commit's, and those of earlier commits that were
                // not synced.
                let mut all = std::mem::take(&mut *self.unsynced.lock());
                all.extend_from_slice(&wrote);
                if let Err(e) = crate::store::repo::sync_packs(&pack_dir, &all, SYNC_ONE_BY_ONE) {
                    self.unsynced.lock().extend_from_slice(&all);
                    return Err(e.into());
                }
                // Only now may the written files say that their bytes are a
                // blob: a file that says so can be given up for its blob
                // (`dematerialize_clean`, after any branch's commit), and its
                // overlay file must not go before the blob is on disk.
                w.mark_committed();
                #[cfg(debug_assertions)]
                crate::store::repo::test_gc_before_ref(repo.common_dir());
                // Compare-and-swap on the tip the commit was built on.
                match repo.move_ref(&refname, commit, tip, &first_line(&msg)) {
                    Ok(()) => {
                        src.landed(name, std::mem::take(&mut w.bases));
                        let mut st = b.st.lock();
                        st.base = Some(commit);
                        st.view = new_view;
                        st.overridden.clear();
                        st.last_commit = Some((commit, Instant::now(), first_line(&msg).to_string()));
                        st.last_error = None;
                        log::info!("{name}: {}", first_line(&msg));
                        // The branch is at the new commit whatever happens
                        // next: the state above says so first, so that a ref
                        // whose fsync fails is not taken, at the next commit,
                        // for another writer's move of it.
                        st.ref_unsynced = true;
                        drop(st);
                        // Shown once the kernel has what a follow of another
                        // writer in this commit invalidated (no waiting here:
                        // a barrier that waits for this commit may hold a
                        // directory the kernel needs for that). Its state's
                        // lock is let go of first: without a kernel to tell,
                        // this runs at once.
                        let shown_b = b.clone();
                        src.after_invalidations(Box::new(move || {
                            shown_b.st.lock().shown = Some(commit);
                        }));
                        sync_ref(repo.common_dir(), &refname)?;
                        b.st.lock().ref_unsynced = false;
                        // The ref names the commit, durably: it protects the objects now, and this
                        // commit's packs are kept for the mount's base
                        // instead of the last one's.
                        self.repo.release_packs(w.batch.take_held());
                        b.st.lock().kept = w.batch.take_kept();
                        log::debug!(
                            "{name}: {} objects written in {built:?}, committed durably in {:?}",
                            w.oids.len() + 1,
                            started.elapsed()
                        );
                        return Ok(Some(commit));
                    }
                    // Another writer moved the branch first (the compare-and-swap lost).
                    Err(StoreError::CasLost(_)) => {
                        // The objects written stay kept until the commit of a
                        // later try names them (its trees reuse them) or
                        // this call ends; then gc may take what no ref names.
                        log::info!("{name} moved under us; applying again on its new tip");
                        continue;
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            Err(FsError::io(format!("branch {name} keeps moving; will try again")))
        });
        // Packs written and not synced yet: the next durable commit syncs them.
        let left = w.batch.take_new_packs();
        if !left.is_empty() {
            self.unsynced.lock().extend_from_slice(&left);
        }
        let held = w.batch.take_held();
        let fresh = w.batch.take_kept();
        match &result {
            // Landed: `kept` was set above.
            Ok(Some(_)) => {}
            // Nothing to commit: the base stays what it was.
            Ok(None) => {
                b.st.lock().kept.extend(held);
                self.repo.release_packs(fresh);
            }
            // Failed (or the ref is not durable yet): what was written stays
            // kept for the next try, which reuses the blobs.
            Err(_) => b.st.lock().kept.extend(held.into_iter().chain(fresh)),
        }
        result
    }

    /// The daemon goes away: every pack kept for a branch is let go of (a
    /// later mount would remove their `.keep` files as stale anyway).
    pub fn release_kept(&self) {
        let all: Vec<_> = self.branches.lock().values().cloned().collect();
        for b in all {
            let kept = std::mem::take(&mut b.st.lock().kept);
            self.repo.release_packs(kept);
        }
    }

    /// The objects the trees of `w` name that `w` did not write, are not
    /// gitlinks, and are not what the directory's base had under that name
    /// (those the tip has, and its ref protects): each that the repository
    /// does not have, with its name.
    fn missing_objects(&self, src: &dyn Pending, w: &Written) -> FsResult<Vec<(Box<[u8]>, Oid)>> {
        let mut check = Vec::new();
        for (ino, listing) in &w.bases {
            let old = src.base(*ino);
            for e in listing.iter() {
                if e.kind == crate::store::repo::EntryKind::Submodule || w.batch.contains(e.oid) {
                    continue;
                }
                let inherited = old.as_ref().is_some_and(|l| {
                    l.binary_search_by(|o| (*o.name).cmp(&e.name))
                        .is_ok_and(|i| l[i].oid == e.oid)
                });
                if !inherited {
                    check.push((e.name.clone(), e.oid));
                }
            }
        }
        let oids: Vec<Oid> = check.iter().map(|(_, o)| *o).collect();
        let gone = self.repo.missing_on_disk(&oids)?;
        check.retain(|(_, o)| gone.contains(o));
        Ok(check)
    }

    /// Makes branch `b` (its commit lock held) show `tip`, a commit this mount
    /// did not make, keeping the changes it has not committed yet.
    /// Makes branch `b` show its ref's tip if another writer moved it (a
    /// ref watcher saw it move), keeping the changes not committed yet.
    pub fn follow(&self, src: &dyn Pending, b: &Arc<BranchW>) -> FsResult<()> {
        {
            let _one = b.commit_lock.lock();
            // What the watcher read may be older than a commit this mount
            // made since: the ref is read again under the commit lock, so
            // that the mount never follows its own past.
            let refname = [b"refs/heads/".as_slice(), &b.name.lock()].concat();
            match self.repo.ref_target(&refname)? {
                Some(now) => self.follow_locked(src, b, now)?,
                None => return Ok(()),
            }
        }
        // The kernel drops what it cached of the old tree before the move
        // counts as shown.
        let (shown_b, tip) = (b.clone(), b.st.lock().base);
        src.after_invalidations(Box::new(move || {
            shown_b.st.lock().shown = tip;
        }));
        Ok(())
    }

    fn follow_locked(&self, src: &dyn Pending, b: &BranchW, tip: Oid) -> FsResult<()> {
        let (base, view) = {
            let st = b.st.lock();
            (st.base, st.view)
        };
        if base == Some(tip) {
            return Ok(());
        }
        let snapshot = self.repo.snapshot(tip)?;
        let name = b.name.lock().clone();
        let snap = Arc::new(Snap {
            snapshot,
            source: SnapSource::Branch(name.clone()),
        });
        let overridden = src.follow(b.root, view, &snap)?;
        let mut st = b.st.lock();
        st.base = Some(tip);
        st.view = snapshot.tree;
        for p in overridden {
            if !st.overridden.contains(&p) {
                st.overridden.push(p);
            }
        }
        log::info!(
            "{}: now at {tip} (moved by another writer)",
            String::from_utf8_lossy(&name)
        );
        Ok(())
    }

    /// The tree of branch root `root` as this mount sees it. Trees are built
    /// bottom up with a stack, not a recursion (a branch may be any number of
    /// levels deep), and written by commitfs itself into the commit's batch:
    /// a directory keeps, exactly as stored, the entries of its tree that the
    /// mount does not show (`.git` and the like, see `treeobj`), which libgit2
    /// would refuse to write. An empty directory below the root has no tree
    /// (Git has no empty trees). Scratch files and ignored untracked paths
    /// are left out; the ignore files are read only in the directories
    /// walked, as the walk goes down.
    fn build_tree(
        &self,
        src: &dyn Pending,
        repo: &Txn<'_>,
        root: Ino,
        w: &mut Written,
    ) -> FsResult<Option<Oid>> {
        struct Frame {
            ino: Ino,
            name: Box<[u8]>,
            children: Vec<(Box<[u8]>, Ino)>,
            /// The tree this directory was materialized from (or followed to).
            base: Option<Arc<crate::store::treeobj::Listing>>,
            next: usize,
            out: Vec<RawEntry>,
            /// This directory or one above it is ignored: every untracked
            /// entry in it is left out (git's rule: nothing below an excluded
            /// directory can be re-included).
            excluded: bool,
        }
        let n = src.node(root)?;
        match &n.kind {
            Kind::Tree { oid, .. } => return Ok(Some(*oid)),
            Kind::MDir { .. } => {}
            _ => return Err(FsError::NotDir),
        }
        let frame = |ino: Ino, name: Box<[u8]>, excluded: bool| Frame {
            ino,
            name,
            children: src.children(ino),
            base: src.base(ino),
            next: 0,
            out: Vec::new(),
            excluded,
        };
        // The ignore files in force at each level of the stack (None with
        // `--no-gitignore`), and what each directory entered adds: its
        // `.gitignore`, read only in the directories walked here (git reads
        // none below an excluded directory either).
        let mut ign = self.ignores.walk(repo);
        let mut stack = vec![frame(root, Box::default(), false)];
        if let Some(walk) = ign.as_mut()
            && let Some(p) = self.ignores.gitignore_in(src, &stack[0].children)?
        {
            walk.add(p);
        }
        loop {
            let Some(top) = stack.last_mut() else {
                return Ok(None);
            };
            if let Some((name, child)) = top.children.get(top.next).cloned() {
                top.next += 1;
                let c = src.node(child)?;
                // A scratch-named file or symlink (editor swap, backup, lock)
                // goes into no tree, unless the branch tracks that name
                // already: then it stays as the branch has it. So a committed
                // file renamed to a backup name is a deletion, not an add.
                if !c.kind.is_dir() && self.is_scratch(&name) {
                    let tracked = top.base.as_ref().and_then(|l| l.get(&name)).cloned();
                    if let Some(e) =
                        tracked.filter(|e| e.kind != crate::store::repo::EntryKind::Dir)
                    {
                        top.out.push(RawEntry {
                            mode: crate::store::treeobj::mode_of_kind(e.kind).into(),
                            name,
                            oid: e.oid,
                        });
                    }
                    continue;
                }
                // An untracked entry that the ignore files ignore goes into no
                // tree (its blob is not even written); one the directory's
                // base tree has stays tracked, as in git, and is committed.
                let mut excluded_dir = top.excluded;
                if let Some(walk) = ign.as_mut() {
                    let is_dir = c.kind.is_dir();
                    if !tracked(top.base.as_deref(), &name, is_dir) {
                        if top.excluded || walk.ignored(&name, is_dir) {
                            continue;
                        }
                    } else if !top.excluded && matches!(c.kind, Kind::MDir { .. }) {
                        // A tracked directory that is ignored is walked: what
                        // it tracks stays, nothing new below it is added.
                        excluded_dir = walk.ignored(&name, true);
                    }
                }
                let entry: Option<(Oid, &'static [u8])> = match &c.kind {
                    Kind::Tree { oid, .. } => Some((*oid, b"40000")),
                    Kind::File {
                        oid, executable, ..
                    } => Some((*oid, file_mode(*executable))),
                    Kind::Symlink { oid, .. } => Some((*oid, b"120000")),
                    Kind::Submodule { oid, .. } => Some((*oid, b"160000")),
                    Kind::MDir { .. } => {
                        let f = frame(child, name, excluded_dir);
                        if let Some(walk) = ign.as_mut() {
                            walk.enter(&f.name);
                            if !f.excluded
                                && let Some(p) = self.ignores.gitignore_in(src, &f.children)?
                            {
                                walk.add(p);
                            }
                        }
                        stack.push(f);
                        continue;
                    }
                    Kind::MFile { .. } if self.in_transaction(src, &top.children, &name) => {
                        // A database in the middle of a transaction (its
                        // rollback journal or write-ahead log holds bytes):
                        // committed as it was, until the journal is gone.
                        let before = top.base.as_ref().and_then(|l| l.get(&name)).cloned();
                        log::debug!(
                            "{}: a transaction is open, committing its last settled version",
                            String::from_utf8_lossy(&name)
                        );
                        before
                            .filter(|e| e.kind != crate::store::repo::EntryKind::Dir)
                            .map(|e| (e.oid, crate::store::treeobj::mode_of_kind(e.kind)))
                    }
                    Kind::MFile { executable, .. } => {
                        let oid = self.write_blob(src, repo, child, w)?;
                        w.oids.push(oid);
                        Some((oid, file_mode(*executable)))
                    }
                    Kind::MSymlink { target, .. } => {
                        let oid = w.batch.add_blob(repo, target.to_vec())?;
                        w.oids.push(oid);
                        Some((oid, b"120000"))
                    }
                    _ => None,
                };
                if let Some((oid, mode)) = entry {
                    top.out.push(RawEntry {
                        mode: mode.into(),
                        name,
                        oid,
                    });
                }
                continue;
            }
            let Some(done) = stack.pop() else {
                return Ok(None);
            };
            if let Some(walk) = ign.as_mut() {
                walk.leave();
            }
            let mut out = done.out;
            if let Some(l) = done.base.as_ref().filter(|l| !l.hidden.is_empty()) {
                // What the mount does not show stays, except where the mount
                // now has an entry of that name (a tree must not hold two).
                let shown: std::collections::HashSet<&[u8]> =
                    out.iter().map(|e| &*e.name).collect();
                // A hidden second entry of a name the base showed goes too,
                // even if the mount deleted the shown one (it would come back
                // into view in its place).
                let keep: Vec<RawEntry> = l
                    .hidden
                    .iter()
                    .filter(|h| !shown.contains(&*h.name) && l.get(&h.name).is_none())
                    .cloned()
                    .collect();
                out.extend(keep);
            }
            let oid = if out.is_empty() && !stack.is_empty() {
                // No tree: it tracks nothing any more.
                w.bases.push((done.ino, Arc::default()));
                None
            } else {
                let bytes = crate::store::treeobj::serialize(out);
                let mut listing = crate::store::treeobj::parse(&bytes);
                let oid = w.batch.add_tree(repo, bytes)?;
                listing.tree = Some(oid);
                w.bases.push((done.ino, Arc::new(listing)));
                w.oids.push(oid);
                Some(oid)
            };
            match stack.last_mut() {
                None => return Ok(oid),
                Some(parent) => {
                    if let Some(oid) = oid {
                        parent.out.push(RawEntry {
                            mode: (*b"40000").into(),
                            name: done.name,
                            oid,
                        });
                    }
                }
            }
        }
    }

    /// Whether file `name` of a directory with `children` (in name order) is
    /// a database in a transaction: a sibling `NAME-journal` or `NAME-wal`
    /// that is not empty (sqlite's rollback journal, or its write-ahead log
    /// before the last connection checkpoints and removes it).
    fn in_transaction(
        &self,
        src: &dyn Pending,
        children: &[(Box<[u8]>, Ino)],
        name: &[u8],
    ) -> bool {
        [&b"-journal"[..], b"-wal"].iter().any(|suffix| {
            let j = [name, suffix].concat();
            let Ok(i) = children.binary_search_by(|(n, _)| (**n).cmp(&j)) else {
                return false;
            };
            let ino = children[i].1;
            match src.node(ino).map(|n| n.kind.clone()) {
                Ok(Kind::MFile { .. }) => src.file(ino).is_some_and(|f| f.st.lock().size > 0),
                Ok(Kind::File { oid, .. }) => src.blob_size(oid).is_ok_and(|s| s > 0),
                _ => false,
            }
        })
    }

    /// The blob of a written file (written once per version): a small one goes
    /// into the commit's batch, a large one is streamed into a kept pack of
    /// its own. Content that is the blob committed before (a file saved
    /// again unchanged) is not written again.
    fn write_blob(
        &self,
        src: &dyn Pending,
        repo: &Txn<'_>,
        ino: Ino,
        w: &mut Written,
    ) -> FsResult<Oid> {
        let wf = src
            .file(ino)
            .ok_or_else(|| FsError::io("written file lost its data"))?;
        let mut st = wf.st.lock();
        if let Some((v, oid)) = st.committed
            && v == st.version
        {
            w.reused.push((wf.clone(), v, oid));
            return Ok(oid);
        }
        // The blob of an earlier version: in the view (whose tip the ref
        // protects), in a pack kept for this branch, or found missing by
        // `missing_objects` and written again.
        let before = st.committed.map(|(_, o)| o);
        let size = st.size;
        let version = st.version;
        log::trace!("blob of inode {ino}: version {version}, {size} bytes");
        if size <= ObjectBatch::MAX_OBJECT {
            // A copy of the bytes (at most MAX_OBJECT): past what was written,
            // zeros.
            let mut buf = vec![0u8; size as usize];
            let n = wf
                .data
                .with(|Contents::Disk(f)| crate::overlay::wdata::read_up_to(f, &mut buf, 0))?;
            buf[n..].fill(0);
            let oid = crate::store::treeobj::hash_object("blob", &buf);
            if before == Some(oid) {
                st.committed = Some((version, oid));
                w.reused.push((wf.clone(), version, oid));
                return Ok(oid);
            }
            drop(st);
            w.batch.add_hashed_blob(repo, oid, buf)?;
            w.pending.push((wf.clone(), version, oid));
            return Ok(oid);
        }
        // Written by an earlier try of this commit: in a pack it keeps.
        if let Some(&(_, _, oid)) = w
            .big
            .iter()
            .find(|(f, v, _)| Arc::ptr_eq(f, &wf) && *v == version)
        {
            w.pending.push((wf.clone(), version, oid));
            return Ok(oid);
        }
        // Streamed with no lock held, from a descriptor of its own, so that
        // a stat of the file (or anything else that needs its state) does
        // not wait seconds for a large blob. If it was written meanwhile,
        // the blob may be torn: it is streamed again, the file held still
        // this time, so that the commit holds what was acknowledged.
        let dup = wf.data.with(|Contents::Disk(f)| f.try_clone());
        drop(st);
        let first = match dup {
            Ok(f) => w.batch.add_blob_file(repo, &f, size, before),
            Err(e) => Err(StoreError::from_io(&e, "opening a written file again")),
        };
        let mut st = wf.st.lock();
        let (oid, version) = match first {
            Ok(oid) if st.version == version => (oid, version),
            _ => {
                log::debug!("inode {ino} was written while its blob was: writing it again");
                let (size, version) = (st.size, st.version);
                let oid = wf
                    .data
                    .with(|Contents::Disk(f)| w.batch.add_blob_file(repo, f, size, before))?;
                (oid, version)
            }
        };
        if Some(oid) == before {
            st.committed = Some((version, oid));
            w.reused.push((wf.clone(), version, oid));
        } else {
            w.big.push((wf.clone(), version, oid));
            w.pending.push((wf.clone(), version, oid));
        }
        Ok(oid)
    }

    /// `--author` as name and email, if given (else commits are signed as
    /// the repository's user: see `store::branches::signature`).
    pub fn author(&self) -> Option<&(String, String)> {
        self.author.as_ref()
    }

    /// Whether `name` is a scratch file that never enters history.
    pub fn is_scratch(&self, name: &[u8]) -> bool {
        use std::os::unix::ffi::OsStrExt;
        self.scratch
            .is_match(std::path::Path::new(std::ffi::OsStr::from_bytes(name)))
    }
}

/// The scratch patterns in force: the defaults (unless turned off) and
/// `--scratch`.
fn scratch_set(cfg: &crate::model::FsConfig) -> Result<globset::GlobSet, String> {
    let mut b = globset::GlobSetBuilder::new();
    let defaults = if cfg.default_scratch {
        crate::model::DEFAULT_SCRATCH
    } else {
        &[]
    };
    for p in defaults
        .iter()
        .copied()
        .chain(cfg.scratch.iter().map(String::as_str))
    {
        let g = globset::GlobBuilder::new(p)
            .literal_separator(true)
            .backslash_escape(true)
            .build()
            .map_err(|e| format!("--scratch '{p}' is not a glob: {e}"))?;
        b.add(g);
    }
    b.build().map_err(|e| format!("scratch patterns: {e}"))
}

/// Whether a directory whose base tree is `base` tracks entry `name` as what
/// it is now: a directory as a tree (or a submodule), anything else as a
/// blob. (A file that replaced a tracked directory is new, and the other
/// way round.)
fn tracked(base: Option<&crate::store::treeobj::Listing>, name: &[u8], is_dir: bool) -> bool {
    base.and_then(|l| l.get(name)).is_some_and(|e| {
        let dir = matches!(
            e.kind,
            crate::store::repo::EntryKind::Dir | crate::store::repo::EntryKind::Submodule
        );
        dir == is_dir
    })
}

pub(crate) fn n_name(inodes: &Inodes, ino: Ino) -> Vec<u8> {
    inodes.get(ino).map(|n| n.name.to_vec()).unwrap_or_default()
}

/// A failed commit, in the log: a full disk is a warning (it is retried, and
/// the changes wait), anything else an error.
fn log_commit_failure(b: &BranchW, e: &FsError) {
    let level = if e.is_exhaustion() {
        log::Level::Warn
    } else {
        log::Level::Error
    };
    log::log!(
        level,
        "committing {}: {e}",
        String::from_utf8_lossy(&b.name.lock())
    );
}

fn file_mode(executable: bool) -> &'static [u8] {
    if executable { b"100755" } else { b"100644" }
}

fn first_line(msg: &str) -> String {
    msg.lines().next().unwrap_or("commitfs").to_string()
}

/// `Name <email>`.
pub fn parse_author(a: &str) -> Option<(String, String)> {
    let (name, rest) = a.split_once('<')?;
    let email = rest.strip_suffix('>')?;
    let name = name.trim();
    if name.is_empty() || email.is_empty() {
        return None;
    }
    Some((name.to_string(), email.to_string()))
}

/// What one commit writes.
#[derive(Default)]
struct Written {
    /// Every object the new trees name that this commit wrote or reused.
    oids: Vec<Oid>,
    /// Small blobs, written together once the trees are built; and the
    /// packs kept for the commit.
    batch: ObjectBatch,
    /// Files whose blob is in `batch`, with the version it holds: their
    /// `committed` is set once the batch is flushed.
    pending: Vec<(Arc<crate::overlay::WFile>, u64, Oid)>,
    /// Large files whose blob an earlier try of this commit wrote (into a
    /// pack it keeps): later tries reuse it. Not cleared between tries.
    big: Vec<(Arc<crate::overlay::WFile>, u64, Oid)>,
    /// Files whose blob was written before (their `committed`), reused.
    reused: Vec<(Arc<crate::overlay::WFile>, u64, Oid)>,
    /// Each rebuilt directory and the listing of the tree written for it:
    /// its new base once the commit lands (which names it tracks, what it
    /// holds unseen).
    bases: Vec<(Ino, Arc<crate::store::treeobj::Listing>)>,
}

impl Written {
    /// Ready for another try of the commit; the packs written stay kept.
    fn next_try(&mut self) {
        self.oids.clear();
        self.pending.clear();
        self.reused.clear();
        self.bases.clear();
        self.batch.drop_unflushed();
    }

    /// The blobs of `pending` are in the repository (or in the view): their
    /// files say so.
    fn mark_committed(&mut self) {
        for (wf, version, oid) in self.pending.drain(..) {
            let mut st = wf.st.lock();
            if st.version == version {
                st.committed = Some((version, oid));
            }
        }
    }
}

/// A commit whose compare-and-swap keeps losing to other writers is tried this
/// many times before the attempt fails (and is retried later).
const COMMIT_TRIES: u32 = 64;

/// A pause of less than `max_ms` milliseconds, different each time (from the
/// clock's nanoseconds): it keeps two writers that collided from colliding
/// again in step.
pub(crate) fn jitter(max_ms: u64) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    Duration::from_millis(u64::from(nanos) % max_ms.max(1))
}

/// Up to this many new packs are fsynced file by file (a pack and its index
/// each); more are made durable with one syncfs, which on ext4 costs one
/// journal commit instead of one per file.
const SYNC_ONE_BY_ONE: usize = 16;

/// fsyncs a loose ref and the directories above it up to `refs/`; a packed
/// ref is synced through packed-refs.
fn sync_ref(git_dir: &std::path::Path, refname: &str) -> FsResult<()> {
    // Debug builds only: a test makes this fsync fail while the file exists.
    #[cfg(debug_assertions)]
    if git_dir.join("commitfs-test-fail-ref-sync").exists() {
        return Err(FsError::io("fsync of the ref failed (test)"));
    }
    // The ref is a loose file, or (once `git gc` or `git pack-refs` moved it,
    // at any moment, even between two of these calls) a line of packed-refs:
    // whichever is there is synced, with the directories above it.
    let loose = git_dir.join(refname);
    let packed = git_dir.join("packed-refs");
    let not_found = |e: &std::io::Error| e.kind() == std::io::ErrorKind::NotFound;
    let mut target = None;
    for _ in 0..8 {
        for p in [&loose, &packed] {
            match std::fs::File::open(p).and_then(|f| f.sync_all()) {
                Ok(()) => {
                    target = Some(p.clone());
                    break;
                }
                Err(e) if not_found(&e) => {}
                Err(e) => return Err(e.into()),
            }
        }
        if target.is_some() {
            break;
        }
    }
    let target = target.ok_or_else(|| {
        FsError::io(format!(
            "{refname} is neither a loose ref nor in packed-refs"
        ))
    })?;
    let mut dir = target.parent();
    while let Some(d) = dir {
        match std::fs::File::open(d).and_then(|f| f.sync_all()) {
            Ok(()) => {}
            // An empty ref directory that pack-refs removed.
            Err(e) if not_found(&e) => {}
            Err(e) => return Err(e.into()),
        }
        if d == git_dir {
            break;
        }
        dir = d.parent();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ref_that_gc_packed_is_synced_in_packed_refs() {
        let t = tempfile::tempdir().unwrap();
        let gd = t.path();
        std::fs::create_dir_all(gd.join("refs/heads")).unwrap();
        // Loose.
        std::fs::write(gd.join("refs/heads/main"), b"0000\n").unwrap();
        sync_ref(gd, "refs/heads/main").unwrap();
        // Packed by gc: the loose file and its empty directory are gone.
        std::fs::remove_file(gd.join("refs/heads/main")).unwrap();
        std::fs::write(gd.join("packed-refs"), b"0000 refs/heads/main\n").unwrap();
        sync_ref(gd, "refs/heads/main").unwrap();
        sync_ref(gd, "refs/heads/feature/x").unwrap();
        // Neither: an error, not a success.
        std::fs::remove_file(gd.join("packed-refs")).unwrap();
        assert!(sync_ref(gd, "refs/heads/main").is_err());
    }

    #[test]
    fn authors_parse() {
        assert_eq!(
            parse_author("A B <a@b>"),
            Some(("A B".into(), "a@b".into()))
        );
        assert_eq!(parse_author("nobody"), None);
    }
}
