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
//! ignore files ignore (see `gitignore.rs`). The ref is moved with a
//! compare-and-swap on the tip the commit was built on; if someone else moved
//! it, this mount's changes since its last commit are applied on top of the
//! new tip instead, and where both changed a path, this mount's version wins
//! and the message says so.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use git2::{Oid, Repository};
use parking_lot::{Condvar, Mutex};

use crate::error::{FsError, FsResult};
use crate::fs::CommitFs;
use crate::inodes::{Ino, Inodes, Kind, Node, Snap, SnapSource};
use crate::repo::ObjectBatch;
use crate::treeobj::RawEntry;
use crate::wdata::Contents;

/// However many changes keep coming, a dirty branch is committed this long
/// after it became dirty.
pub const SETTLE_CAP: Duration = Duration::from_secs(3);
/// After a failed commit, the next try waits this long.
const RETRY_PAUSE: Duration = Duration::from_secs(5);
/// A committed file not written for this long gives up its spill file.
const DEMATERIALIZE_IDLE: Duration = Duration::from_secs(2);

/// A file at least this large that is still being written does not go into
/// the commits the settle cap forces (see `run_scheduler`).
pub const BIG_FILE: u64 = 32 << 20;

/// A branch this mount has written to.
pub struct BranchW {
    /// The ref name (below refs/heads/) now: a rename of the branch directory
    /// changes it, while the nodes keep the name they were made with.
    pub name: Mutex<Box<[u8]>>,
    pub root: Ino,
    pub st: Mutex<BranchSt>,
    /// One commit of a branch at a time.
    pub(crate) commit_lock: Mutex<()>,
}

pub struct BranchSt {
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
    /// Paths another writer changed that this mount changed too and keeps its
    /// version of: named in the next commit's message.
    pub overridden: Vec<Vec<u8>>,
    /// The last commit this mount made here, when, and its first line.
    pub last_commit: Option<(Oid, Instant, String)>,
    /// The last failure to commit, cleared by the next commit.
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
    pub kept: Vec<crate::repo::KeptPack>,
}

/// The scheduler's wake-up call.
#[derive(Default)]
pub struct Scheduler {
    stop: Mutex<bool>,
    wake: Condvar,
}

impl CommitFs {
    /// The branch `n` belongs to (made on first use).
    pub(crate) fn branch_for(&self, inodes: &Inodes, n: &Node) -> Option<Arc<BranchW>> {
        let crate::inodes::SnapSource::Branch(_) = &n.kind.snap()?.source else {
            return None;
        };
        // Walk up to the branch root: a branch is known by its root directory
        // (a renamed branch keeps it; a new branch of the old name has another).
        // However deep: every parent chain ends at a branch root (the bound
        // only guards against a broken table), and the walk stops at the
        // first directory whose root is known already.
        let mut at = inodes.get(n.ino)?;
        let mut walked = Vec::new();
        for _ in 0..=inodes.len() {
            if self.is_branch_root(inodes, &at) {
                break;
            }
            let known = self.branch_roots.lock().get(&at.ino).copied();
            if let Some(root) = known {
                at = inodes.get(root)?;
                break;
            }
            walked.push(at.ino);
            at = inodes.get(at.parent)?;
        }
        if !walked.is_empty() {
            let mut roots = self.branch_roots.lock();
            for w in walked {
                roots.insert(w, at.ino);
            }
        }
        if let Some(b) = self.branches.lock().values().find(|b| b.root == at.ino) {
            return Some(b.clone());
        }
        let crate::inodes::SnapSource::Branch(name) = &at.kind.snap()?.source else {
            return None;
        };
        // The root holds the tip the branch shows (a path below may still hold
        // the snapshot it was last changed in).
        let snap = at.kind.snap()?;
        let b = Arc::new(BranchW {
            name: Mutex::new(name.clone()),
            root: at.ino,
            st: Mutex::new(BranchSt {
                base: snap.snapshot.commit,
                view: snap.snapshot.tree,
                dirty: false,
                first_dirty: None,
                last_change: None,
                not_before: None,
                big_write: None,
                overridden: Vec::new(),
                last_commit: None,
                last_error: None,
                ref_unsynced: false,
                kept: Vec::new(),
            }),
            commit_lock: Mutex::new(()),
        });
        Some(
            self.branches
                .lock()
                .entry(name.clone())
                .or_insert(b)
                .clone(),
        )
    }

    /// Something in `ino`'s branch changed: restart its settle window.
    pub(crate) fn changed(&self, ino: Ino) {
        self.changed_file(ino, 0);
    }

    /// The content of `ino`, now `size` bytes long, changed.
    pub(crate) fn changed_file(&self, ino: Ino, size: u64) {
        let b = {
            let inodes = self.inodes.read();
            match inodes.get(ino) {
                Some(n) => self.branch_for(&inodes, &n),
                None => None,
            }
        };
        if let Some(b) = b {
            let now = Instant::now();
            let mut st = b.st.lock();
            let was_dirty = st.dirty;
            st.dirty = true;
            st.last_change = Some(now);
            st.first_dirty.get_or_insert(now);
            if size >= BIG_FILE {
                st.big_write = Some(now);
            }
            drop(st);
            // A branch that was dirty already has a deadline the scheduler sleeps
            // towards; a later change only moves it later, which the scheduler
            // sees when it wakes. Waking it on every write would cost a context
            // switch per request.
            if !was_dirty {
                self.sched.wake.notify_all();
            }
        }
    }

    /// fsync or fdatasync of a file: its bytes, and every change of names
    /// acknowledged before, are durable in the overlay when it returns (they
    /// survive a power loss). Not a commit: the branch is committed when its
    /// changes settle, or at a barrier (`fsync_as` of a directory).
    pub fn fsync_data(&self, ino: Ino) -> FsResult<()> {
        if self.is_stale(ino) {
            return Err(FsError::Stale);
        }
        let n = self.node_of(ino)?;
        if n.kind.is_dir() {
            return self.fsync(ino);
        }
        if let Some(wf) = self.wfile(ino) {
            wf.data.sync()?;
        }
        self.disk.sync()
    }

    /// fsync or fsyncdir asked by user `uid`. Only the mounting user's (and
    /// root's) are commit barriers: under `--allow-other` another user must
    /// not be able to force the owner's pending changes into a commit early.
    /// Theirs returns at once; the settle window commits as usual.
    pub fn fsync_as(&self, ino: Ino, uid: u32) -> FsResult<()> {
        if uid == self.config().uid || uid == 0 {
            return self.fsync(ino);
        }
        if self.is_stale(ino) {
            return Err(FsError::Stale);
        }
        self.node_of(ino)?;
        log::debug!(
            "fsync of inode {ino} by uid {uid}, not the mount's owner: not a commit barrier"
        );
        Ok(())
    }

    /// A commit barrier (fsyncdir; `fsync_data` of a directory): commits the
    /// branch of `ino` now, durably. Nothing to commit is fine.
    /// fsync of the root, `.tags`, `.commits` or a namespace directory commits
    /// every branch (this is how `commitfs unmount` flushes before unmounting);
    /// inside a tag or a commit there is nothing to commit.
    pub fn fsync(&self, ino: Ino) -> FsResult<()> {
        let (b, above_branches, scratch) = {
            let inodes = self.inodes.read();
            let n = inodes.get(ino).ok_or(FsError::NotFound)?;
            let scratch = !n.kind.is_dir() && self.is_scratch(&n.name);
            (
                self.branch_for(&inodes, &n),
                n.kind.snap().is_none(),
                scratch,
            )
        };
        if self.is_stale(ino) {
            return Err(FsError::Stale);
        }
        if scratch {
            // A swap, backup or lock file goes into no commit, so a commit
            // cannot make it durable; committing the branch here would only
            // catch a save half-way (vim fsyncs its swap file after renaming
            // the original to its backup name, before writing the new one).
            log::debug!(
                "fsync of scratch file {}: not a commit",
                String::from_utf8_lossy(&n_name(&self.inodes.read(), ino))
            );
            return Ok(());
        }
        match b {
            Some(b) => self.commit_branch(&b, true).map(|_| ()),
            None if above_branches => self.commit_all(),
            None => Ok(()),
        }
    }

    /// After everything was committed on the way out: the catalog is
    /// durable, and an overlay left with no change (no scratch or ignored
    /// file either) is removed.
    pub fn finish_overlay(&self) {
        if let Err(e) = self.disk.sync() {
            log::error!("cannot make the overlay's catalog durable: {e}");
            return;
        }
        self.disk.remove_if_empty();
    }

    /// Commits every dirty branch (unmount, SIGTERM, syncfs).
    pub fn commit_all(&self) -> FsResult<()> {
        let all: Vec<_> = self.branches.lock().values().cloned().collect();
        let mut result = Ok(());
        for b in all {
            if let Err(e) = self.commit_if_dirty(&b) {
                log_commit_failure(&b, &e);
                result = Err(e);
            }
        }
        result
    }

    /// Commits branch `b` durably if it has changes not committed yet. A commit
    /// in progress (which took the changes it saw) is waited for first: its
    /// changes are committed once it returns, or pending again if it failed.
    fn commit_if_dirty(&self, b: &BranchW) -> FsResult<Option<Oid>> {
        let one = b.commit_lock.lock();
        if !b.st.lock().dirty {
            return Ok(None);
        }
        self.commit_branch_locked(b, true, one)
    }

    /// Commits branch `b` if its view changed. Returns the new commit.
    pub fn commit_branch(&self, b: &BranchW, durable: bool) -> FsResult<Option<Oid>> {
        let one = b.commit_lock.lock();
        self.commit_branch_locked(b, durable, one)
    }

    fn commit_branch_locked(
        &self,
        b: &BranchW,
        durable: bool,
        _one: parking_lot::MutexGuard<'_, ()>,
    ) -> FsResult<Option<Oid>> {
        {
            let mut st = b.st.lock();
            st.dirty = false;
            st.first_dirty = None;
        }
        let result = self.commit_locked(b, durable).map_err(|e| {
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
            b.st.lock().not_before = None;
            if self.resync_needed.load(std::sync::atomic::Ordering::SeqCst)
                && let Err(e) = self.resync(None)
            {
                log::error!("the overlay's catalog could not be written again: {e}");
            }
            self.dematerialize_clean(DEMATERIALIZE_IDLE);
            self.disk.refill_reserve();
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

    fn commit_locked(&self, b: &BranchW, durable: bool) -> FsResult<Option<Oid>> {
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
        let result = repo_arc.with(|repo| {
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
                let tip = repo.refname_to_id(&refname).ok();
                if let Some(t) = tip {
                    match repo.find_object(t, None).map(|o| o.kind()) {
                        Ok(Some(git2::ObjectType::Commit)) => {}
                        // Someone pointed the branch at a tree or a tag object: a
                        // commit on it would name a parent that is no commit.
                        Ok(_) => {
                            return Err(FsError::io(format!(
                                "{refname} was moved to {t}, which is not a commit; not committing on it (the changes stay pending)"
                            )));
                        }
                        Err(e) if e.code() == git2::ErrorCode::NotFound => {
                            return Err(FsError::io(format!(
                                "{refname} names {t}, which the repository does not have (pruned?); not committing on it (the changes stay pending)"
                            )));
                        }
                        Err(e) => return Err(e.into()),
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
                    self.follow_locked(b, t)?;
                }
                let (base, view) = {
                    let st = b.st.lock();
                    (st.base, st.view)
                };
                let started = Instant::now();
                let new_view = self.build_tree(repo, b.root, &mut w)?.unwrap_or(view);
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
                    self.settle_bases(name, &mut w);
                    if durable && b.st.lock().ref_unsynced {
                        sync_ref(repo.commondir(), &refname)?;
                        b.st.lock().ref_unsynced = false;
                    }
                    return Ok(None);
                }
                // Objects the new trees name that this commit did not write:
                // those the view had under the same name come with the tip,
                // which the ref protects; any other (a file moved or copied
                // here, a blob an earlier commit wrote) must still be there.
                let missing = self.missing_objects(&w)?;
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
                let sig = self.signature(repo)?;
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
                let commit = w.batch.add_commit(
                    repo,
                    crate::repo::commit_bytes(new_view, &parents, &sig, &msg),
                )?;
                // Blobs, trees and the commit are in kept packs from here on;
                // their files may say so.
                w.batch.flush(repo)?;
                let mut wrote = w.batch.take_new_packs();
                let pack_dir = repo.commondir().join("objects/pack");
                if !durable {
                    // A large pack of a settle-window commit is synced here,
                    // on the committer's thread: left for the next durable
                    // commit, it would be a barrier on another branch that
                    // waited for it (a 1 GiB pack's fsync takes a second).
                    let big: Vec<Oid> = wrote
                        .iter()
                        .copied()
                        .filter(|id| {
                            std::fs::metadata(pack_dir.join(format!("pack-{id}.pack")))
                                .is_ok_and(|m| m.len() >= SYNC_ALONE)
                        })
                        .collect();
                    if !big.is_empty() && crate::repo::sync_packs(&pack_dir, &big, usize::MAX).is_ok() {
                        wrote.retain(|id| !big.contains(id));
                    }
                }
                // The packs go to stable storage before the ref that names
                // them: this commit's, and those of earlier commits that were
                // not synced.
                if durable {
                    let mut all = std::mem::take(&mut *self.unsynced.lock());
                    all.extend_from_slice(&wrote);
                    if let Err(e) = crate::repo::sync_packs(&pack_dir, &all, SYNC_ONE_BY_ONE) {
                        self.unsynced.lock().extend_from_slice(&all);
                        return Err(e);
                    }
                }
                // Only now may the written files say that their bytes are a
                // blob: a file that says so can be given up for its blob
                // (`dematerialize_clean`, after any branch's commit), and its
                // overlay file must not go before the blob is on disk.
                w.mark_committed();
                #[cfg(debug_assertions)]
                crate::repo::test_gc_before_ref(repo.commondir());
                // Compare-and-swap on the tip the commit was built on.
                let updated = match tip {
                    Some(t) => repo.reference_matching(&refname, commit, true, t, &first_line(&msg)),
                    None => repo.reference(&refname, commit, false, &first_line(&msg)),
                };
                match updated {
                    Ok(_) => {
                        if !durable {
                            self.unsynced.lock().extend_from_slice(&wrote);
                        }
                        self.settle_bases(name, &mut w);
                        let mut st = b.st.lock();
                        st.base = Some(commit);
                        st.view = new_view;
                        st.overridden.clear();
                        self.sync.kick();
                        st.last_commit = Some((commit, Instant::now(), first_line(&msg).to_string()));
                        st.last_error = None;
                        log::info!("{name}: {}", first_line(&msg));
                        // The branch is at the new commit whatever happens
                        // next: the state above says so first, so that a ref
                        // whose fsync fails is not taken, at the next commit,
                        // for another writer's move of it.
                        if durable {
                            st.ref_unsynced = true;
                            drop(st);
                            sync_ref(repo.commondir(), &refname)?;
                            b.st.lock().ref_unsynced = false;
                        } else {
                            drop(st);
                        }
                        // The ref names the commit (durably, for a durable
                        // one): it protects the objects now, and this
                        // commit's packs are kept for the mount's base
                        // instead of the last one's.
                        self.repo.release_packs(w.batch.take_held());
                        b.st.lock().kept = w.batch.take_kept();
                        log::debug!(
                            "{name}: {} objects written in {built:?}, committed{} in {:?}",
                            w.oids.len() + 1,
                            if durable { " durably" } else { "" },
                            started.elapsed()
                        );
                        return Ok(Some(commit));
                    }
                    Err(e) if matches!(e.code(), git2::ErrorCode::Modified | git2::ErrorCode::Exists | git2::ErrorCode::Locked) => {
                        // The objects written stay kept until the commit of a
                        // later try names them (its trees reuse them) or
                        // this call ends; then gc may take what no ref names.
                        if !durable {
                            self.unsynced.lock().extend_from_slice(&wrote);
                        }
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
    fn missing_objects(&self, w: &Written) -> FsResult<Vec<(Box<[u8]>, Oid)>> {
        let mut check = Vec::new();
        for (ino, listing) in &w.bases {
            let old = self.ov.lock().base.get(ino).cloned();
            for e in listing.iter() {
                if e.kind == crate::repo::EntryKind::Submodule || w.batch.contains(e.oid) {
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

    /// After a commit of the trees `w` built (or finding them committed
    /// already): the rebuilt directories stand for their new trees, and
    /// their catalog rows hold only what is still not committed.
    fn settle_bases(&self, name: &str, w: &mut Written) {
        let rebuilt: Vec<Ino> = {
            let mut ov = self.ov.lock();
            let mut rebuilt = Vec::new();
            for (ino, listing) in w.bases.drain(..) {
                // A directory whose tree is what it was needs no new rows
                // (they were written against that same tree): a barrier
                // with nothing to commit then writes nothing, and the next
                // fsync has no catalog to sync.
                if matches!(ov.mats.get(&ino), Some(crate::overlay::Mat::Dir(_)))
                    && ov.base.get(&ino).is_none_or(|b| **b != *listing)
                {
                    ov.set_base(ino, &listing);
                    rebuilt.push(ino);
                }
            }
            rebuilt
        };
        if let Err(e) = self.resync(Some(&rebuilt)) {
            log::error!(
                "{name}: the overlay's catalog could not be brought up to date ({e}); it is written again at the next commit"
            );
            self.resync_needed
                .store(true, std::sync::atomic::Ordering::SeqCst);
        }
    }

    /// Makes branch `b` (its commit lock held) show `tip`, a commit this mount
    /// did not make, keeping the changes it has not committed yet.
    pub(crate) fn follow_locked(&self, b: &BranchW, tip: Oid) -> FsResult<()> {
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
        let overridden = self.repoint(b.root, view, &snap)?;
        // What is pending is now relative to their tip.
        if let Err(e) = self.resync(None) {
            log::error!(
                "the overlay's catalog could not be written after following {tip}: {e}; written again at the next commit"
            );
            self.resync_needed
                .store(true, std::sync::atomic::Ordering::SeqCst);
        }
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
    fn build_tree(&self, repo: &Repository, root: Ino, w: &mut Written) -> FsResult<Option<Oid>> {
        struct Frame {
            ino: Ino,
            name: Box<[u8]>,
            children: Vec<(Box<[u8]>, Ino)>,
            /// The tree this directory was materialized from (or followed to).
            base: Option<Arc<crate::treeobj::Listing>>,
            next: usize,
            out: Vec<RawEntry>,
            /// This directory or one above it is ignored: every untracked
            /// entry in it is left out (git's rule: nothing below an excluded
            /// directory can be re-included).
            excluded: bool,
        }
        let n = self.node_of(root)?;
        match &n.kind {
            Kind::Tree { oid, .. } => return Ok(Some(*oid)),
            Kind::MDir { .. } => {}
            _ => return Err(FsError::NotDir),
        }
        let frame = |ino: Ino, name: Box<[u8]>, excluded: bool| Frame {
            ino,
            name,
            children: self.mat_children(ino),
            base: self.ov.lock().base.get(&ino).cloned(),
            next: 0,
            out: Vec::new(),
            excluded,
        };
        // The ignore files in force at each level of the stack (None with
        // `--no-gitignore`), and what each directory entered adds: its
        // `.gitignore`, read only in the directories walked here (git reads
        // none below an excluded directory either).
        let mut ign = self.ignore_walk(repo);
        let mut stack = vec![frame(root, Box::default(), false)];
        if let Some(walk) = ign.as_mut()
            && let Some(p) = self.gitignore_in(&stack[0].children)?
        {
            walk.add(p);
        }
        loop {
            let Some(top) = stack.last_mut() else {
                return Ok(None);
            };
            if let Some((name, child)) = top.children.get(top.next).cloned() {
                top.next += 1;
                let c = self.node_of(child)?;
                // A scratch-named file or symlink (editor swap, backup, lock)
                // goes into no tree, unless the branch tracks that name
                // already: then it stays as the branch has it. So a committed
                // file renamed to a backup name is a deletion, not an add.
                if !c.kind.is_dir() && self.is_scratch(&name) {
                    let tracked = top.base.as_ref().and_then(|l| l.get(&name)).cloned();
                    if let Some(e) = tracked.filter(|e| e.kind != crate::repo::EntryKind::Dir) {
                        top.out.push(RawEntry {
                            mode: crate::treeobj::mode_of_kind(e.kind).into(),
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
                                && let Some(p) = self.gitignore_in(&f.children)?
                            {
                                walk.add(p);
                            }
                        }
                        stack.push(f);
                        continue;
                    }
                    Kind::MFile { .. } if self.in_transaction(&top.children, &name) => {
                        // A database in the middle of a transaction (its
                        // rollback journal or write-ahead log holds bytes):
                        // committed as it was, until the journal is gone.
                        let before = top.base.as_ref().and_then(|l| l.get(&name)).cloned();
                        log::debug!(
                            "{}: a transaction is open, committing its last settled version",
                            String::from_utf8_lossy(&name)
                        );
                        before
                            .filter(|e| e.kind != crate::repo::EntryKind::Dir)
                            .map(|e| (e.oid, crate::treeobj::mode_of_kind(e.kind)))
                    }
                    Kind::MFile { executable, .. } => {
                        let oid = self.write_blob(repo, child, w)?;
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
                let bytes = crate::treeobj::serialize(out);
                w.bases
                    .push((done.ino, Arc::new(crate::treeobj::parse(&bytes))));
                let oid = w.batch.add_tree(repo, bytes)?;
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
    fn in_transaction(&self, children: &[(Box<[u8]>, Ino)], name: &[u8]) -> bool {
        [&b"-journal"[..], b"-wal"].iter().any(|suffix| {
            let j = [name, suffix].concat();
            let Ok(i) = children.binary_search_by(|(n, _)| (**n).cmp(&j)) else {
                return false;
            };
            let ino = children[i].1;
            match self.node_of(ino).map(|n| n.kind.clone()) {
                Ok(Kind::MFile { .. }) => self.wfile(ino).is_some_and(|f| f.st.lock().size > 0),
                Ok(Kind::File { oid, .. }) => self.blob_size(oid).is_ok_and(|s| s > 0),
                _ => false,
            }
        })
    }

    /// The blob of a written file (written once per version): a small one goes
    /// into the commit's batch, a large one is streamed into a kept pack of
    /// its own. Content that is the blob committed before (a file saved
    /// again unchanged) is not written again.
    fn write_blob(&self, repo: &Repository, ino: Ino, w: &mut Written) -> FsResult<Oid> {
        let wf = self
            .wfile(ino)
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
                .with(|Contents::Disk(f)| crate::wdata::read_up_to(f, &mut buf, 0))?;
            buf[n..].fill(0);
            let oid = crate::treeobj::hash_object("blob", &buf);
            if before == Some(oid) {
                st.committed = Some((version, oid));
                w.reused.push((wf.clone(), version, oid));
                return Ok(oid);
            }
            drop(st);
            w.batch.add_hashed(repo, oid, git2::ObjectType::Blob, buf)?;
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
        let oid = wf
            .data
            .with(|Contents::Disk(f)| w.batch.add_blob_file(repo, f, size, before))?;
        if Some(oid) == before {
            st.committed = Some((version, oid));
            w.reused.push((wf.clone(), version, oid));
        } else {
            w.big.push((wf.clone(), version, oid));
            w.pending.push((wf.clone(), version, oid));
        }
        Ok(oid)
    }

    pub(crate) fn signature(&self, repo: &Repository) -> FsResult<git2::Signature<'static>> {
        let (name, email) = match &self.config().author {
            Some(a) => parse_author(a).ok_or_else(|| FsError::io(format!("bad --author '{a}'")))?,
            None => {
                let cfg = repo.config()?;
                match (cfg.get_string("user.name"), cfg.get_string("user.email")) {
                    (Ok(n), Ok(e)) => (n, e),
                    _ => ("commitfs".to_string(), format!("commitfs@{}", hostname())),
                }
            }
        };
        Ok(git2::Signature::now(&name, &email)?)
    }

    /// What `commitfs status` shows (see `control.rs`). Takes only short locks,
    /// never a branch's commit lock, so that it answers while commits run.
    pub fn status(&self, mnt: &std::path::Path, repo: &std::path::Path) -> crate::control::Status {
        use crate::control::{BranchStatus, CacheStatus, RemoteStatus, Status};
        let now = Instant::now();
        let tips: Vec<(Vec<u8>, Oid)> = self.repo.refs("refs/heads/").unwrap_or_default();
        let written: HashMap<Box<[u8]>, Arc<BranchW>> = self.branches.lock().clone();
        let mut names: Vec<Vec<u8>> = tips.iter().map(|(n, _)| n.clone()).collect();
        for b in written.values() {
            let n = b.name.lock().to_vec();
            if !names.contains(&n) {
                names.push(n);
            }
        }
        names.sort();
        let branches = names
            .into_iter()
            .map(|name| {
                let tip = tips
                    .iter()
                    .find(|(n, _)| *n == name)
                    .map(|(_, o)| o.to_string());
                let b = written.values().find(|b| **b.name.lock() == *name);
                let mut s = BranchStatus {
                    name: String::from_utf8_lossy(&name).into_owned(),
                    tip,
                    uncommitted: false,
                    uncommitted_for: None,
                    last_commit: None,
                    last_commit_message: None,
                    last_commit_age: None,
                    last_error: None,
                    last_error_age: None,
                    unpushed: None,
                };
                if self.config().remote.is_some()
                    && let Some(t) = tips.iter().find(|(n, _)| *n == name).map(|(_, o)| *o)
                {
                    let full = [crate::repo::REMOTE_HEADS.as_bytes(), &name].concat();
                    let server = self.repo.ref_target(&full).ok().flatten();
                    s.unpushed = self
                        .repo
                        .count_ahead(t, server, 100_000)
                        .ok()
                        .map(|n| n as u64);
                }
                if let Some(b) = b {
                    let st = b.st.lock();
                    s.uncommitted = st.dirty;
                    s.uncommitted_for = st
                        .first_dirty
                        .filter(|_| st.dirty)
                        .map(|t| now.duration_since(t).as_secs_f64());
                    if let Some((c, t, m)) = &st.last_commit {
                        s.last_commit = Some(c.to_string());
                        s.last_commit_message = Some(m.clone());
                        s.last_commit_age = Some(now.duration_since(*t).as_secs_f64());
                    }
                    if let Some((t, e)) = &st.last_error {
                        s.last_error = Some(e.clone());
                        s.last_error_age = Some(now.duration_since(*t).as_secs_f64());
                    }
                }
                s
            })
            .collect();
        let (hits, misses, bytes, capacity) = self.blobs.stats();
        Status {
            mountpoint: mnt.display().to_string(),
            repository: repo.display().to_string(),
            pid: std::process::id(),
            branches,
            cache: CacheStatus {
                hits,
                misses,
                hit_rate: (hits + misses > 0).then(|| hits as f64 / (hits + misses) as f64),
                bytes,
                capacity,
            },
            remote: self.config().remote.as_ref().map(|r| {
                let st = self.sync.state.lock();
                let age = |t: Option<Instant>| t.map(|t| now.duration_since(t).as_secs_f64());
                RemoteStatus {
                    url: crate::repo::redact_url(r),
                    last_fetch_age: age(st.last_fetch),
                    last_push_age: age(st.last_push),
                    last_error: st.last_error.as_ref().map(|(_, e)| e.clone()),
                    last_error_age: age(st.last_error.as_ref().map(|(t, _)| *t)),
                }
            }),
        }
    }

    /// The scheduler's loop: commits each dirty branch once it has settled.
    pub fn run_scheduler(&self) {
        loop {
            let now = Instant::now();
            let mut next: Option<Instant> = None;
            let mut due = Vec::new();
            for b in self.branches.lock().values() {
                let st = b.st.lock();
                if !st.dirty {
                    continue;
                }
                let (Some(last), Some(first)) = (st.last_change, st.first_dirty) else {
                    continue;
                };
                let settled = last + self.config().settle;
                let mut at = settled.min(first + SETTLE_CAP);
                // A large file still being written is not committed half-written
                // at the cap (each such commit would store all of it again): the
                // branch waits for its writes to settle.
                if st.big_write.is_some_and(|t| t + self.config().settle > now) {
                    at = settled;
                }
                if let Some(nb) = st.not_before {
                    at = at.max(nb);
                }
                if at <= now {
                    due.push(b.clone());
                } else {
                    next = Some(next.map_or(at, |n: Instant| n.min(at)));
                }
            }
            for b in due {
                // Durable like a barrier's (objects, then the ref, fsynced on
                // this thread): a written file gives up its overlay file once
                // committed, so the commit must survive a power loss first.
                if let Err(e) = self.commit_branch(&b, true) {
                    log_commit_failure(&b, &e);
                }
            }
            let mut stop = self.sched.stop.lock();
            if *stop {
                return;
            }
            match next {
                Some(at) => {
                    let _ = self.sched.wake.wait_until(&mut stop, at);
                }
                None => {
                    let _ = self.sched.wake.wait_for(&mut stop, Duration::from_secs(1));
                }
            }
            if *stop {
                return;
            }
        }
    }

    pub fn stop_scheduler(&self) {
        *self.sched.stop.lock() = true;
        self.sched.wake.notify_all();
    }

    /// Whether `name` is a scratch file that never enters history.
    pub fn is_scratch(&self, name: &[u8]) -> bool {
        use std::os::unix::ffi::OsStrExt;
        self.scratch
            .is_match(std::path::Path::new(std::ffi::OsStr::from_bytes(name)))
    }
}

/// Whether a directory whose base tree is `base` tracks entry `name` as what
/// it is now: a directory as a tree (or a submodule), anything else as a
/// blob. (A file that replaced a tracked directory is new, and the other
/// way round.)
fn tracked(base: Option<&crate::treeobj::Listing>, name: &[u8], is_dir: bool) -> bool {
    base.and_then(|l| l.get(name)).is_some_and(|e| {
        let dir = matches!(
            e.kind,
            crate::repo::EntryKind::Dir | crate::repo::EntryKind::Submodule
        );
        dir == is_dir
    })
}

fn n_name(inodes: &Inodes, ino: Ino) -> Vec<u8> {
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
    bases: Vec<(Ino, Arc<crate::treeobj::Listing>)>,
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
/// A pack at least this large that a settle-window commit wrote is synced by
/// that commit itself, not left to the next durable one.
const SYNC_ALONE: u64 = 16 << 20;

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".into())
}

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

/// One changed path between two trees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub status: char,
    pub path: Vec<u8>,
    /// The new (id, mode), or `None` for a deletion.
    pub new: Option<(Oid, i32)>,
}

/// The changed paths between two trees (for the sync's merges).
pub(crate) fn changed_paths(repo: &Repository, old: Oid, new: Oid) -> FsResult<Vec<Change>> {
    diff_paths(repo, old, new)
}

/// Applies `changes` (files only, as `changed_paths` gives them) to tree
/// `base`, this side winning where `base` is in the way: a file where a
/// changed path needs a directory, or a directory where it puts a file, is
/// removed first; a deletion of what `base` no longer has is nothing to do.
#[cfg(test)]
pub(crate) fn apply_changes(repo: &Repository, base: Oid, changes: &[Change]) -> FsResult<Oid> {
    let mut batch = ObjectBatch::default();
    let tree = apply_changes_in(repo, base, changes, &mut batch)?;
    batch.flush(repo)?;
    Ok(tree)
}

/// [`apply_changes`], the trees it makes added to `batch` (written, kept,
/// when the caller flushes it).
pub(crate) fn apply_changes_in(
    repo: &Repository,
    base: Oid,
    changes: &[Change],
    batch: &mut ObjectBatch,
) -> FsResult<Oid> {
    let base_id = base;
    let mut gone = std::collections::BTreeSet::new();
    for c in changes {
        // What `base` has at each prefix of the path, in one walk down (a
        // lookup per prefix from the top would be quadratic in the depth).
        let modes = modes_along(repo, base_id, &c.path)?;
        let at = |i: usize| modes.get(i).copied().flatten();
        let last = c.path.split(|&b| b == b'/').count() - 1;
        match c.new {
            None => {
                if at(last).is_some_and(|m| m != TREE_MODE) {
                    gone.insert(c.path.clone());
                }
            }
            Some(_) => {
                let slashes = c.path.iter().enumerate().filter(|(_, b)| **b == b'/');
                for (level, (i, _)) in slashes.enumerate() {
                    if at(level).is_some_and(|m| m != TREE_MODE) {
                        gone.insert(c.path[..i].to_vec());
                    }
                }
                if at(last) == Some(TREE_MODE) {
                    gone.insert(c.path.clone());
                }
            }
        }
    }
    // A path below a directory that goes as a whole goes with it.
    let under_gone = |p: &[u8]| {
        gone.iter()
            .any(|g| p.len() > g.len() && p.starts_with(g) && p[g.len()] == b'/')
    };
    let puts: Vec<(&[u8], Oid, i32)> = changes
        .iter()
        .filter_map(|c| c.new.map(|(oid, mode)| (&c.path[..], oid, mode)))
        .collect();
    let gone: Vec<&[u8]> = gone
        .iter()
        .filter(|p| !under_gone(p))
        .map(|p| &p[..])
        .collect();
    edit_tree(repo, base_id, &gone, &puts, batch)
}

/// Tree `base` with the paths in `gone` removed (whatever they are), then
/// the files in `puts` put in (directories made as needed; a directory left
/// empty goes). Written by commitfs itself, so that entries libgit2 cannot
/// parse or would refuse to write (see `treeobj`) stay exactly as stored,
/// and without recursion: paths may be any number of levels deep.
fn edit_tree(
    repo: &Repository,
    base: Oid,
    gone: &[&[u8]],
    puts: &[(&[u8], Oid, i32)],
    batch: &mut ObjectBatch,
) -> FsResult<Oid> {
    /// One directory or path the edit touches, in an arena: parents come
    /// before their children.
    struct Node {
        name: Box<[u8]>,
        parent: usize,
        children: Vec<usize>,
        by_name: HashMap<Box<[u8]>, usize>,
        gone: bool,
        put: Option<(Oid, i32)>,
        /// The tree at this path in `base` (after the removals), if any.
        base: Option<Oid>,
        /// The rebuilt tree: `None` for an empty directory.
        new: Option<Oid>,
    }
    let mut nodes = vec![Node {
        name: Box::default(),
        parent: 0,
        children: Vec::new(),
        by_name: HashMap::new(),
        gone: false,
        put: None,
        base: Some(base),
        new: None,
    }];
    let node_at = |nodes: &mut Vec<Node>, path: &[u8]| -> usize {
        let mut at = 0;
        for name in path.split(|&b| b == b'/') {
            at = match nodes[at].by_name.get(name) {
                Some(&i) => i,
                None => {
                    let i = nodes.len();
                    nodes.push(Node {
                        name: name.into(),
                        parent: at,
                        children: Vec::new(),
                        by_name: HashMap::new(),
                        gone: false,
                        put: None,
                        base: None,
                        new: None,
                    });
                    nodes[at].by_name.insert(name.into(), i);
                    nodes[at].children.push(i);
                    i
                }
            };
        }
        at
    };
    for p in gone {
        let i = node_at(&mut nodes, p);
        nodes[i].gone = true;
    }
    for (p, oid, mode) in puts {
        let i = node_at(&mut nodes, p);
        nodes[i].put = Some((*oid, *mode));
    }
    if nodes.len() == 1 {
        return Ok(base); // nothing to do
    }
    // Top down: what each directory was in `base` (nothing below a removal).
    let mut raw: HashMap<usize, Vec<RawEntry>> = HashMap::new();
    #[allow(clippy::needless_range_loop)] // nodes[i] and its parent are both read
    for i in 0..nodes.len() {
        if nodes[i].children.is_empty() {
            continue;
        }
        if i != 0 {
            let parent = nodes[i].parent;
            let found = match (nodes[i].gone, raw.get(&parent)) {
                (false, Some(entries)) => entries
                    .iter()
                    .find(|e| *e.name == *nodes[i].name && e.is_tree())
                    .map(|e| e.oid),
                _ => None,
            };
            nodes[i].base = found;
        }
        let entries = match nodes[i].base {
            Some(t) => crate::repo::Repo::raw_tree(repo, t)?,
            None => Vec::new(),
        };
        raw.insert(i, entries);
    }
    // Bottom up: each touched directory rebuilt from its base entries.
    for i in (0..nodes.len()).rev() {
        let mut entries = raw.remove(&i).unwrap_or_default();
        let children = std::mem::take(&mut nodes[i].children);
        if children.is_empty() {
            continue;
        }
        for &c in &children {
            let name = nodes[c].name.clone();
            entries.retain(|e| *e.name != *name);
            // A file put here, else the rebuilt directory (none if it was
            // removed, or left empty).
            let entry = match nodes[c].put {
                Some((oid, mode)) => Some((oid, format!("{mode:o}").into_bytes())),
                None => nodes[c].new.map(|o| (o, b"40000".to_vec())),
            };
            if let Some((oid, mode)) = entry {
                entries.push(RawEntry {
                    mode: mode.into(),
                    name,
                    oid,
                });
            }
        }
        if entries.is_empty() && i != 0 {
            nodes[i].new = None;
        } else {
            let oid = batch.add_tree(repo, crate::treeobj::serialize(entries))?;
            nodes[i].new = Some(oid);
        }
        nodes[i].by_name = HashMap::new();
    }
    nodes[0]
        .new
        .ok_or_else(|| FsError::io("the edited tree vanished"))
}

/// The mode of what tree `root` holds at each prefix of `path` (one component,
/// two, ... the whole path), from the entries as stored (hidden ones too: a
/// merge must see a `.git` this side deleted), walking down once; the list
/// ends where the path leaves what `root` has. Of entries sharing a name, the
/// first stored counts.
fn modes_along(repo: &Repository, root: Oid, path: &[u8]) -> FsResult<Vec<Option<i32>>> {
    let mut out = Vec::new();
    let mut tree = Some(root);
    for name in path.split(|&b| b == b'/') {
        let Some(t) = tree.take() else { break };
        let entries = crate::repo::Repo::raw_tree(repo, t)?;
        let Some(e) = entries.iter().find(|e| *e.name == *name) else {
            break;
        };
        let mode = if e.is_tree() {
            tree = Some(e.oid);
            TREE_MODE
        } else {
            e.mode_num().map_or(0, |m| m as i32)
        };
        out.push(Some(mode));
    }
    Ok(out)
}

/// The changed paths between two trees: a merge-walk of their entries that
/// descends only into subtrees whose ids differ (libgit2's tree diff was the
/// largest cost of a small save in a large repository). A loop over a stack,
/// not a recursion: trees may be any number of levels deep. Every entry as
/// stored counts, shown or not.
fn diff_paths(repo: &Repository, old: Oid, new: Oid) -> FsResult<Vec<Change>> {
    diff_paths_in(repo, old, new, None)
}

/// [`diff_paths`], reading the trees of `batch` not written yet from it.
fn diff_paths_in(
    repo: &Repository,
    old: Oid,
    new: Oid,
    batch: Option<&ObjectBatch>,
) -> FsResult<Vec<Change>> {
    let mut out = Vec::new();
    let mut paths = crate::names::Paths::default();
    let mut todo = vec![(Some(old), Some(new), crate::names::Paths::ROOT)];
    while let Some((old, new, prefix)) = todo.pop() {
        diff_one(
            repo, batch, old, new, prefix, &mut paths, &mut todo, &mut out,
        )?;
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

const TREE_MODE: i32 = 0o040000;

fn tree_entries(
    repo: &Repository,
    batch: Option<&ObjectBatch>,
    oid: Option<Oid>,
) -> FsResult<Vec<(Vec<u8>, Oid, i32)>> {
    let Some(oid) = oid else {
        return Ok(Vec::new());
    };
    let raw = match batch.and_then(|b| b.get(oid)) {
        Some(data) => crate::treeobj::parse_raw(data).0,
        None => crate::repo::Repo::raw_tree(repo, oid)?,
    };
    let mut v: Vec<_> = raw
        .into_iter()
        .map(|e| {
            let mode = e.mode_num().map_or(0, |m| m as i32);
            (e.name.into_vec(), e.oid, mode)
        })
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(v)
}

type DiffTodo = Vec<(Option<Oid>, Option<Oid>, usize)>;

/// One pair of trees of [`diff_paths`]; the subtrees that differ go on `todo`.
#[allow(clippy::too_many_arguments)]
fn diff_one(
    repo: &Repository,
    batch: Option<&ObjectBatch>,
    old: Option<Oid>,
    new: Option<Oid>,
    prefix: usize,
    paths: &mut crate::names::Paths,
    todo: &mut DiffTodo,
    out: &mut Vec<Change>,
) -> FsResult<()> {
    if old == new {
        return Ok(());
    }
    let a = tree_entries(repo, batch, old)?;
    let b = tree_entries(repo, batch, new)?;
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        let order = match (a.get(i), b.get(j)) {
            (Some(x), Some(y)) => x.0.cmp(&y.0),
            (Some(_), None) => std::cmp::Ordering::Less,
            _ => std::cmp::Ordering::Greater,
        };
        let (left, right) = match order {
            std::cmp::Ordering::Less => (a.get(i), None),
            std::cmp::Ordering::Greater => (None, b.get(j)),
            std::cmp::Ordering::Equal => (a.get(i), b.get(j)),
        };
        let name: &[u8] = left.or(right).map(|e| &e.0[..]).unwrap_or_default();
        let is_tree = |e: Option<&(Vec<u8>, Oid, i32)>| e.is_some_and(|e| e.2 == TREE_MODE);
        let same = matches!((left, right), (Some(x), Some(y)) if x.1 == y.1 && x.2 == y.2);
        if !same {
            let here = paths.add(prefix, name);
            // Subtrees: later (a tree on one side only is all adds or deletes).
            if is_tree(left) || is_tree(right) {
                let lt = left.filter(|e| e.2 == TREE_MODE).map(|e| e.1);
                let rt = right.filter(|e| e.2 == TREE_MODE).map(|e| e.1);
                todo.push((lt, rt, here));
            }
            // Files (or a file replacing a tree, or the other way round).
            let lf = left.filter(|e| e.2 != TREE_MODE);
            let rf = right.filter(|e| e.2 != TREE_MODE);
            let change = |status, new| Change {
                status,
                path: paths.full(here),
                new,
            };
            match (lf, rf) {
                (Some(_), Some(y)) => out.push(change('M', Some((y.1, y.2)))),
                (Some(_), None) => out.push(change('D', None)),
                (None, Some(y)) => out.push(change('A', Some((y.1, y.2)))),
                (None, None) => {}
            }
        }
        if left.is_some() {
            i += 1;
        }
        if right.is_some() {
            j += 1;
        }
    }
    Ok(())
}

/// `Update README.md`, or `Add 3 files, update 1, delete 2 in src/`, and the
/// paths in the body.
/// A path for a subject line: a very long one (a deep directory chain) keeps
/// its last components, `.../d/leaf.txt`; the body still names it whole.
fn short_path(path: &[u8]) -> String {
    const MAX: usize = 120;
    if path.len() <= MAX {
        return String::from_utf8_lossy(path).into_owned();
    }
    let tail = &path[path.len() - MAX..];
    let tail = match tail.iter().position(|&c| c == b'/') {
        Some(i) => &tail[i..],
        None => tail,
    };
    format!("...{}", String::from_utf8_lossy(tail))
}

pub fn summary(changes: &[Change]) -> String {
    let verb = |s: char| match s {
        'A' => "Add",
        'D' => "Delete",
        _ => "Update",
    };
    let line = if let [c] = changes {
        format!("{} {}", verb(c.status), short_path(&c.path))
    } else {
        let count = |s: char| changes.iter().filter(|c| c.status == s).count();
        let mut parts = Vec::new();
        for (s, word) in [('A', "add"), ('M', "update"), ('D', "delete")] {
            let n = count(s);
            if n > 0 {
                if parts.is_empty() {
                    parts.push(format!("{word} {n} file{}", if n == 1 { "" } else { "s" }));
                } else {
                    parts.push(format!("{word} {n}"));
                }
            }
        }
        let mut line = parts.join(", ");
        if let Some(first) = line.get_mut(0..1) {
            first.make_ascii_uppercase();
        }
        let dirs: HashMap<&[u8], ()> = changes
            .iter()
            .map(|c| match c.path.iter().rposition(|&b| b == b'/') {
                Some(i) => (&c.path[..=i], ()),
                None => (&b""[..], ()),
            })
            .collect();
        if dirs.len() == 1
            && let Some(d) = dirs.keys().next()
            && !d.is_empty()
        {
            line.push_str(&format!(" in {}", short_path(d)));
        }
        line
    };
    let body: Vec<String> = changes
        .iter()
        .map(|c| format!("{} {}", c.status, String::from_utf8_lossy(&c.path)))
        .collect();
    format!("{line}\n\n{}\n", body.join("\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ch(status: char, path: &str) -> Change {
        Change {
            status,
            path: path.as_bytes().to_vec(),
            new: None,
        }
    }

    /// A tree `depth` directories `d` deep with `leaf` entries at the bottom.
    fn chain(odb: &git2::Odb<'_>, depth: usize, leaf: &[RawEntry]) -> Oid {
        let mut t = odb
            .write(
                git2::ObjectType::Tree,
                &crate::treeobj::serialize(leaf.to_vec()),
            )
            .unwrap();
        for _ in 0..depth {
            let e = RawEntry {
                mode: b"40000"[..].into(),
                name: b"d"[..].into(),
                oid: t,
            };
            t = odb
                .write(git2::ObjectType::Tree, &crate::treeobj::serialize(vec![e]))
                .unwrap();
        }
        t
    }

    fn file(name: &str, oid: Oid) -> RawEntry {
        RawEntry {
            mode: b"100644"[..].into(),
            name: name.as_bytes().into(),
            oid,
        }
    }

    fn dir(name: &str, oid: Oid) -> RawEntry {
        RawEntry {
            mode: b"40000"[..].into(),
            name: name.as_bytes().into(),
            oid,
        }
    }

    /// A new bare repository holding the blob `x\n`, and that blob's id.
    fn repo_with_blob() -> (tempfile::TempDir, Repository, Oid) {
        let t = tempfile::tempdir().unwrap();
        let repo = Repository::init_bare(t.path()).unwrap();
        let x = repo.blob(b"x\n").unwrap();
        (t, repo, x)
    }

    fn tree(odb: &git2::Odb<'_>, entries: Vec<RawEntry>) -> Oid {
        odb.write(git2::ObjectType::Tree, &crate::treeobj::serialize(entries))
            .unwrap()
    }

    /// A merge applies a change at the bottom of a deep chain in time linear in
    /// the depth (each prefix was looked up from the top: quadratic, and a
    /// recursion in libgit2 as deep as the chain).
    #[test]
    fn changes_apply_at_the_bottom_of_a_deep_chain() {
        const DEPTH: usize = 20_000;
        let t = tempfile::tempdir().unwrap();
        let repo = Repository::init_bare(t.path()).unwrap();
        let odb = repo.odb().unwrap();
        let one = odb.write(git2::ObjectType::Blob, b"one\n").unwrap();
        let mine = odb.write(git2::ObjectType::Blob, b"mine\n").unwrap();
        let base = chain(&odb, DEPTH, &[file("leaf.txt", one)]);
        let mut path = b"d/".repeat(DEPTH);
        path.extend_from_slice(b"mine.txt");
        let change = Change {
            status: 'A',
            path,
            new: Some((mine, 0o100644)),
        };
        let merged = apply_changes(&repo, base, &[change]).unwrap();
        let want = chain(
            &odb,
            DEPTH,
            &[file("leaf.txt", one), file("mine.txt", mine)],
        );
        assert_eq!(merged, want);
    }

    /// What is in the way of a change goes: a file where it needs a directory,
    /// a directory where it puts a file; a deletion of what is gone is nothing.
    #[test]
    fn changes_replace_what_is_in_the_way() {
        let (_t, repo, x) = repo_with_blob();
        let odb = repo.odb().unwrap();
        let sub = chain(&odb, 0, &[file("inner", x)]);
        let base = odb
            .write(
                git2::ObjectType::Tree,
                &crate::treeobj::serialize(vec![
                    file("a", x),
                    RawEntry {
                        mode: b"40000"[..].into(),
                        name: b"b"[..].into(),
                        oid: sub,
                    },
                    file("keep", x),
                ]),
            )
            .unwrap();
        let put = |p: &str| Change {
            status: 'A',
            path: p.as_bytes().to_vec(),
            new: Some((x, 0o100644)),
        };
        let changes = [put("a/new"), put("b"), ch('D', "gone/never")];
        let merged = repo
            .find_tree(apply_changes(&repo, base, &changes).unwrap())
            .unwrap();
        let names: Vec<String> = merged
            .iter()
            .map(|e| e.name().unwrap().to_string())
            .collect();
        assert_eq!(names, ["a", "b", "keep"]);
        assert_eq!(merged.get_name("a").unwrap().filemode(), 0o040000);
        assert_eq!(merged.get_name("b").unwrap().filemode(), 0o100644);
    }

    /// A merge keeps, exactly as stored, what the mount does not show (here
    /// `.git` and an empty name, which libgit2 would refuse to parse or
    /// write), and a directory a merge empties goes.
    #[test]
    fn a_merge_keeps_hidden_entries_and_drops_emptied_directories() {
        let (_t, repo, x) = repo_with_blob();
        let odb = repo.odb().unwrap();
        let tree = |entries: Vec<RawEntry>| tree(&odb, entries);
        let dotgit = tree(vec![file("config", x)]);
        let only = tree(vec![file("x", x)]);
        let base = tree(vec![
            file("", x),
            dir(".git", dotgit),
            dir("d", only),
            dir("e", only),
        ]);
        let changes = [
            Change {
                status: 'A',
                path: b"d/y".to_vec(),
                new: Some((x, 0o100755)),
            },
            ch('D', "d/x"),
            ch('D', "e/x"),
        ];
        let merged = apply_changes(&repo, base, &changes).unwrap();
        let root = crate::repo::Repo::raw_tree(&repo, merged).unwrap();
        let names: Vec<&[u8]> = root.iter().map(|e| &*e.name).collect();
        assert_eq!(names, vec![&b""[..], b".git", b"d"]);
        assert_eq!(root[1].oid, dotgit);
        let d = crate::repo::Repo::raw_tree(&repo, root[2].oid).unwrap();
        assert_eq!(d.len(), 1);
        assert_eq!((&*d[0].name, &*d[0].mode), (&b"y"[..], &b"100755"[..]));
    }

    /// This side renamed a directory holding a hidden `.git`; the server
    /// changed something else. The merge moves the directory whole: no
    /// second `.git`, no empty-looking directory left at the old name.
    #[test]
    fn a_merge_moves_hidden_entries_with_their_directory() {
        let (_t, repo, x) = repo_with_blob();
        let odb = repo.odb().unwrap();
        let tree = |entries: Vec<RawEntry>| tree(&odb, entries);
        let dotgit = tree(vec![file("config", x)]);
        let inner = tree(vec![dir(".git", dotgit), file("f", x)]);
        let base = tree(vec![dir("d", inner)]);
        let local = tree(vec![dir("e", inner)]);
        let server = tree(vec![dir("d", inner), file("s", x)]);
        let ours = changed_paths(&repo, base, local).unwrap();
        let merged = apply_changes(&repo, server, &ours).unwrap();
        let root = crate::repo::Repo::raw_tree(&repo, merged).unwrap();
        let names: Vec<&[u8]> = root.iter().map(|e| &*e.name).collect();
        assert_eq!(names, vec![&b"e"[..], b"s"]);
        assert_eq!(root[0].oid, inner, "e is the directory, whole");
    }

    #[test]
    fn messages_say_what_changed() {
        assert!(summary(&[ch('M', "README.md")]).starts_with("Update README.md\n"));
        let m = summary(&[
            ch('A', "src/a"),
            ch('A', "src/b"),
            ch('A', "src/c"),
            ch('M', "src/d"),
            ch('D', "src/e"),
            ch('D', "src/f"),
        ]);
        assert!(
            m.starts_with("Add 3 files, update 1, delete 2 in src/\n"),
            "{m}"
        );
        assert!(m.contains("\nD src/f"));
        assert!(summary(&[ch('D', "a"), ch('D', "b/c")]).starts_with("Delete 2 files\n"));
    }

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
