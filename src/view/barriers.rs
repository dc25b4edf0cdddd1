//! What the view asks of the committer, and what it gives it: the branch a
//! change belongs to, fsync and the commit barriers, and the view's side of
//! [`Pending`] (how the committer reads pending changes and says what
//! landed). The committer itself is `commit/`; this is the view's half.

use std::sync::Arc;

use crate::store::Oid;

use crate::commit::{BranchW, Pending};
use crate::error::{FsError, FsResult};
use crate::inodes::{Ino, Inodes, Node, Snap};
use crate::store::treeobj::Listing;
use crate::view::CommitFs;

/// A committed file not written for this long gives up its overlay file.
const DEMATERIALIZE_IDLE: std::time::Duration = std::time::Duration::from_secs(2);

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
        let crate::inodes::SnapSource::Branch(name) = &at.kind.snap()?.source else {
            return None;
        };
        // The root holds the tip the branch shows (a path below may still hold
        // the snapshot it was last changed in).
        let snap = at.kind.snap()?;
        Some(
            self.committer
                .branch(at.ino, name, snap.snapshot.commit, snap.snapshot.tree),
        )
    }

    /// Something in `ino`'s branch changed: restart its settle window.
    pub(crate) fn changed(&self, ino: Ino) {
        self.changed_file(ino, 0, false);
    }

    /// The content of `ino`, now `size` bytes long, changed; `fresh`: it is
    /// a file being made (never committed).
    pub(crate) fn changed_file(&self, ino: Ino, size: u64, fresh: bool) {
        // Every write comes here: the node, its branch and its name are
        // read under one hold of the table. A scratch file is never
        // committed, so never "being made" (a swap file written all the time
        // must not hold commits).
        let (b, fresh) = {
            let inodes = self.inodes.read();
            let Some(n) = inodes.get(ino) else { return };
            let fresh = fresh && !self.committer.is_scratch(&n.name);
            (self.branch_for(&inodes, &n), fresh)
        };
        if let Some(b) = b {
            self.committer.changed(&b, size, fresh);
        }
    }

    fn is_scratch_file(&self, ino: Ino) -> bool {
        self.inodes
            .read()
            .get(ino)
            .is_some_and(|n| self.committer.is_scratch(&n.name))
    }

    /// A name in `ino`'s branch was renamed: the branch changed, and a save
    /// in progress there is done.
    pub(crate) fn renamed_in(&self, ino: Ino) {
        if let Some(b) = self.branch_of(ino) {
            self.committer.changed(&b, 0, false);
            self.committer.renamed_in(&b);
        }
    }

    fn branch_of(&self, ino: Ino) -> Option<Arc<BranchW>> {
        let inodes = self.inodes.read();
        let n = inodes.get(ino)?;
        self.branch_for(&inodes, &n)
    }

    /// fsync or fdatasync of a file: its bytes, and every change of names
    /// acknowledged before, are durable in the overlay when it returns (they
    /// survive a power loss). Not a commit: the branch is committed when its
    /// changes settle, or at a barrier (`fsync_as` of a directory).
    ///
    /// A file another writer replaced since (stale) has nothing left to make
    /// durable: a file with acknowledged writes not yet committed is never
    /// replaced (this mount's version wins, see `follow/mod.rs`), so every
    /// write it took is in a commit already, and its fsync succeeds (a
    /// write through it would get `ESTALE`: its data would go nowhere).
    pub fn fsync_data(&self, ino: Ino) -> FsResult<()> {
        let n = match self.node_of(ino) {
            Ok(n) => Some(n),
            Err(FsError::Stale) => None,
            Err(e) => return Err(e),
        };
        if let Some(n) = &n
            && n.kind.is_dir()
        {
            return self.fsync(ino);
        }
        if n.is_none() || self.is_stale(ino) {
            // Every write it took is committed, unless one raced the follow
            // that replaced it: then the save did fail.
            let committed = self.wfile(ino).is_none_or(|wf| {
                let st = wf.st.lock();
                matches!(st.committed, Some((v, _)) if v == st.version)
            });
            if !committed {
                return Err(FsError::Stale);
            }
            log::debug!("fsync of inode {ino}, replaced by another writer after its commit");
            return Ok(());
        }
        if let Some(wf) = self.wfile(ino) {
            wf.data.sync()?;
            // A file being made, fsynced: its save ends with a rename.
            let fresh = wf.st.lock().committed.is_none() && !self.is_scratch_file(ino);
            if fresh && let Some(b) = self.branch_of(ino) {
                self.committer.fresh_fsynced(&b);
            }
        }
        self.overlay.sync()
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
            let scratch = !n.kind.is_dir() && self.committer.is_scratch(&n.name);
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
                String::from_utf8_lossy(&crate::commit::n_name(&self.inodes.read(), ino))
            );
            return Ok(());
        }
        match b {
            Some(b) => self.committer.barrier(&b),
            None if above_branches => self.committer.barrier_all(),
            None => Ok(()),
        }
    }

    /// After everything was committed on the way out: the catalog is
    /// durable, and an overlay left with no change (no scratch or ignored
    /// file either) is removed.
    pub fn finish_overlay(&self) {
        self.overlay.finish();
    }

    /// Rewrites the overlay's catalog rows of materialized directories
    /// `dirs` (all, and every branch's name, if `None`) from memory.
    pub(crate) fn resync(&self, dirs: Option<&[Ino]>) -> FsResult<()> {
        let branches: Vec<(Ino, Box<[u8]>)> = match dirs {
            Some(_) => Vec::new(),
            None => self
                .committer
                .all()
                .iter()
                .map(|b| (b.root, b.name()))
                .collect(),
        };
        let shown = {
            let inodes = self.inodes.read();
            let ch = self.overlay.lock();
            self.overlay.rewrite(&inodes, &ch, dirs, &branches)?
        };
        self.overlay.keep_times(shown);
        Ok(())
    }

    /// Commits every branch with changes, durably (unmount, SIGTERM).
    pub fn commit_all(&self) -> FsResult<()> {
        self.committer.barrier_all()
    }

    /// Settled branches are no longer committed on their own: the daemon
    /// goes away, and `commit_all` commits what is left.
    pub fn stop_scheduler(&self) {
        self.committer.stop_settling();
    }

    /// The daemon goes away: every pack kept for a branch is let go of.
    pub fn release_kept(&self) {
        self.committer.release_kept();
    }
}

impl Pending for CommitFs {
    fn node(&self, ino: Ino) -> FsResult<Arc<Node>> {
        self.node_of(ino)
    }

    fn children(&self, dir: Ino) -> Vec<(Box<[u8]>, Ino)> {
        self.mat_children(dir)
    }

    fn base(&self, dir: Ino) -> Option<Arc<Listing>> {
        self.overlay.base(dir)
    }

    fn file(&self, ino: Ino) -> Option<Arc<crate::overlay::WFile>> {
        self.wfile(ino)
    }

    fn read_file(&self, ino: Ino, max: usize) -> FsResult<Option<Vec<u8>>> {
        const CHUNK: u32 = 1 << 20;
        let mut text = Vec::new();
        loop {
            let got = self.read_with(ino, text.len() as u64, CHUNK, |d| {
                text.extend_from_slice(d);
                d.len()
            })?;
            if text.len() > max {
                return Ok(None);
            }
            if got < CHUNK as usize {
                return Ok(Some(text));
            }
        }
    }

    fn blob_size(&self, oid: Oid) -> FsResult<u64> {
        CommitFs::blob_size(self, oid)
    }

    /// The rebuilt directories stand for their new trees, and their catalog
    /// rows hold only what is still not committed.
    fn landed(&self, name: &str, bases: Vec<(Ino, Arc<Listing>)>) {
        let rebuilt: Vec<Ino> = {
            let mut ov = self.overlay.lock();
            let mut rebuilt = Vec::new();
            for (ino, listing) in bases {
                // A directory whose tree is what it was needs no new rows
                // (they were written against that same tree): a barrier
                // with nothing to commit then writes nothing, and the next
                // fsync has no catalog to sync.
                if matches!(ov.mat(ino), Some(crate::overlay::Mat::Dir(_)))
                    && ov.base(ino).is_none_or(|b| **b != *listing)
                {
                    ov.set_base(ino, &listing);
                    rebuilt.push(ino);
                }
            }
            rebuilt
        };
        // A directory's row in its parent names the tree it stands for: the
        // parent it has now (it may have been moved while the commit ran)
        // is written again too.
        let mut rebuilt = rebuilt;
        {
            let inodes = self.inodes.read();
            let parents: Vec<Ino> = rebuilt
                .iter()
                .filter_map(|i| inodes.get(*i))
                .filter(|n| n.parent != n.ino)
                .map(|n| n.parent)
                .collect();
            rebuilt.extend(parents);
        }
        rebuilt.sort_unstable();
        rebuilt.dedup();
        if let Err(e) = self.resync(Some(&rebuilt)) {
            log::error!(
                "{name}: the overlay's catalog could not be brought up to date ({e}); it is written again at the next commit"
            );
            self.overlay.rewrite_later();
        }
    }

    fn follow(&self, root: Ino, view: Oid, snap: &Arc<Snap>) -> FsResult<Vec<Vec<u8>>> {
        let overridden = self.repoint(root, view, snap)?;
        // What is pending is now relative to their tip.
        if let Err(e) = self.resync(None) {
            log::error!(
                "the overlay's catalog could not be written after following {}: {e}; written again at the next commit",
                snap.snapshot
                    .commit
                    .map(|c| c.to_string())
                    .unwrap_or_default()
            );
            self.overlay.rewrite_later();
        }
        Ok(overridden)
    }

    fn after_invalidations(&self, then: Box<dyn FnOnce() + Send>) {
        CommitFs::after_invalidations(self, then);
    }

    fn after_commit(&self) {
        if self.overlay.needs_rewrite()
            && let Err(e) = self.resync(None)
        {
            log::error!("the overlay's catalog could not be written again: {e}");
        }
        self.dematerialize_clean(DEMATERIALIZE_IDLE);
        self.overlay.refill_reserve();
        self.sync.kick();
    }
}
