//! The view's side of following other writers (SPEC section 5): the refs the
//! watcher saw move are followed, each directory that shows one re-pointed
//! by `follow`'s pass under the inode and overlay locks, and the kernel's
//! caches of what changed dropped through the invalidation thread.

use std::sync::Arc;

use crate::store::Oid;

use crate::error::FsResult;
use crate::follow::watch::RefState;
use crate::follow::{Inval, InvalMsg, Pass, Trees, repoint_dir, warm_trees};
use crate::inodes::{Ino, Kind, ROOT, Snap, SnapSource};
use crate::store::treeobj::Listing;
use crate::view::CommitFs;

impl Trees for CommitFs {
    fn tree_entries(&self, oid: Oid) -> FsResult<Arc<Listing>> {
        self.tree(oid)
    }
}

impl CommitFs {
    /// The trees of directories that sit in a changed directory under a
    /// name its base tree does not have there (moved or copied in), and show
    /// a tree: at most `MOVED_TREES` of them.
    fn moved_trees(&self) -> Vec<Oid> {
        const MOVED_TREES: usize = 1024;
        let inodes = self.inodes.read();
        let ov = self.overlay.lock();
        let mut out = Vec::new();
        for (_, children, base) in ov.dirs() {
            for (name, ino) in children {
                let in_base =
                    base.is_some_and(|l| l.binary_search_by(|e| (*e.name).cmp(&**name)).is_ok());
                if in_base {
                    continue;
                }
                if let Some(n) = inodes.get(*ino)
                    && let Kind::Tree { oid, .. } = n.kind
                {
                    out.push(oid);
                    if out.len() >= MOVED_TREES {
                        return out;
                    }
                }
            }
        }
        out
    }

    /// Reads every branch, tag and HEAD.
    pub fn ref_state(&self) -> FsResult<RefState> {
        crate::follow::watch::ref_state(&self.repo)
    }

    /// The ref watcher's thread (`follow/watch.rs`): never returns.
    pub fn run_watcher(&self) {
        crate::follow::watch::run(&self.repo, &|old, new| self.refs_changed(old, new));
    }

    /// Makes directory `root` (a branch's or tag's root) show snapshot `snap`
    /// instead of tree `base`, the tree its unchanged entries come from.
    /// Returns the paths both sides changed (the mount's version stays).
    pub(crate) fn repoint(&self, root: Ino, base: Oid, snap: &Arc<Snap>) -> FsResult<Vec<Vec<u8>>> {
        // The trees the pass compares are read into the tree cache first, with
        // no lock held: the pass itself holds the inode table, and reading
        // objects there would stall every request during a large pull.
        warm_trees(self, Some(base), Some(snap.snapshot.tree));
        // And the trees of directories moved into a changed directory and
        // unchanged inside: where the other side made a directory of the
        // same name, the pass materializes the one moved here.
        for oid in self.moved_trees() {
            let _ = self.tree(oid);
        }
        let (invals, overridden) = {
            let mut inodes = self.inodes.write();
            let mut ov = self.overlay.lock();
            // Only from what the root shows: a follow that raced another
            // (the watcher's and a commit's) must not undo the newer one.
            if let Some(Kind::Tree { oid, .. }) = inodes.get(root).map(|n| n.kind.clone())
                && oid != base
            {
                return Ok(Vec::new());
            }
            let mut pass = Pass {
                inodes: &mut inodes,
                ov: &mut ov,
                snap,
                invals: Vec::new(),
                overridden: Vec::new(),
            };
            repoint_dir(self, &mut pass, root, Some(base), Some(snap.snapshot.tree))?;
            // The root takes the new snapshot even when its tree is the same.
            if let Some(n) = pass.inodes.get(root) {
                let kind = match &n.kind {
                    Kind::Tree { .. } => Some(Kind::Tree {
                        snap: snap.clone(),
                        oid: snap.snapshot.tree,
                    }),
                    Kind::MDir { .. } => Some(Kind::MDir { snap: snap.clone() }),
                    _ => None,
                };
                if let Some(k) = kind {
                    pass.inodes.set_kind(root, k);
                }
            }
            pass.invals.push(Inval::Inode(root));
            (pass.invals, pass.overridden)
        };
        self.invalidate(invals);
        Ok(overridden)
    }

    /// The refs changed from `old` to `new` (see `follow/watch.rs`): moved branches and
    /// tags are followed; names that came or went, and HEAD, are invalidated.
    /// Returns false if something could not be followed (the watcher then
    /// tries again at its next read).
    pub fn refs_changed(&self, old: &RefState, new: &RefState) -> bool {
        let mut all_followed = true;
        log::debug!("refs changed: {old:?} -> {new:?}");
        let mut invals = Vec::new();
        for (tags, (o, n)) in [
            (false, (&old.branches, &new.branches)),
            (true, (&old.tags, &new.tags)),
        ] {
            for (name, tip) in n {
                match o.get(name) {
                    Some(was) if was == tip => {}
                    was => {
                        // A new name may be an old one deleted and made again
                        // between two reads: a directory it still has follows.
                        if (was.is_some() || self.ref_dir(tags, name).is_some())
                            && let Err(e) = self.follow_ref(tags, name)
                        {
                            log::warn!("following {} to {tip}: {e}", String::from_utf8_lossy(name));
                            all_followed = false;
                        }
                        if was.is_none() {
                            invals.extend(self.ref_entry(tags, name));
                        }
                    }
                }
            }
            for name in o.keys().filter(|k| !n.contains_key(*k)) {
                invals.extend(self.ref_entry(tags, name));
            }
        }
        if old.head != new.head {
            if let Some(h) = self.inodes.read().child(ROOT, b"HEAD") {
                invals.push(Inval::Inode(h.ino));
            }
            invals.push(Inval::Entry {
                parent: ROOT,
                name: b"HEAD".as_slice().into(),
            });
        }
        self.invalidate(invals);
        all_followed
    }

    /// The directory that shows ref `name` (a branch, or a tag when `tag`), if
    /// the kernel has looked it up.
    fn ref_dir(&self, tag: bool, name: &[u8]) -> Option<Ino> {
        let inodes = self.inodes.read();
        let root = inodes.get(ROOT)?;
        if let Some(snap) = root.kind.snap() {
            // A --ref mount: the root is the ref, if it is this one.
            return match &snap.source {
                SnapSource::Branch(b) if !tag && **b == *name => Some(ROOT),
                _ => None,
            };
        }
        let mut at = if tag {
            inodes.child(ROOT, b".tags")?.ino
        } else {
            ROOT
        };
        for comp in name.split(|&c| c == b'/') {
            at = inodes.child(at, comp)?.ino;
        }
        Some(at)
    }

    /// The kernel's entry for the first name of ref `name` that the kernel
    /// knows (a ref that came or went may add or remove a namespace too).
    fn ref_entry(&self, tag: bool, name: &[u8]) -> Option<Inval> {
        let inodes = self.inodes.read();
        if inodes.get(ROOT)?.kind.snap().is_some() {
            return None;
        }
        let mut at = if tag {
            inodes.child(ROOT, b".tags")?.ino
        } else {
            ROOT
        };
        for comp in name.split(|&c| c == b'/') {
            match inodes.child(at, comp) {
                Some(c) => at = c.ino,
                None => {
                    return Some(Inval::Entry {
                        parent: at,
                        name: comp.into(),
                    });
                }
            }
        }
        let n = inodes.get(at)?;
        Some(Inval::Entry {
            parent: n.parent,
            name: n.name.clone(),
        })
    }

    /// Follows a branch or tag that moved to `tip`.
    fn follow_ref(&self, tag: bool, name: &[u8]) -> FsResult<()> {
        if !tag && let Some(b) = self.committer.by_name(name) {
            return self.committer.follow(self, &b);
        }
        let Some(dir) = self.ref_dir(tag, name) else {
            return Ok(()); // never looked up: the next lookup reads the ref
        };
        let Some(n) = self.inodes.read().get(dir) else {
            return Ok(());
        };
        let (snap, oid) = match &n.kind {
            Kind::Tree { snap, oid } => (snap, oid),
            // A changed directory the committer has no branch for yet (a
            // request made it one and then changed nothing: a failed rmdir)
            // is followed as a branch, under the branch's commit lock, so
            // that a commit made meanwhile is never undone by this older
            // follow.
            Kind::MDir { .. } if !tag => {
                let b = self.branch_for(&self.inodes.read(), &n);
                return match b {
                    Some(b) => self.committer.follow(self, &b),
                    None => Ok(()),
                };
            }
            _ => return Ok(()),
        };
        // What the watcher read may be old by now: the ref as it is.
        let prefix: &[u8] = if tag { b"refs/tags/" } else { b"refs/heads/" };
        let Some(tip) = self.repo.ref_target(&[prefix, name].concat())? else {
            return Ok(());
        };
        let snapshot = self.repo.snapshot(tip)?;
        if snap.snapshot == snapshot {
            return Ok(());
        }
        let new = Arc::new(Snap {
            snapshot,
            source: snap.source.clone(),
        });
        self.repoint(dir, *oid, &new)?;
        log::info!("{}: now at {tip}", String::from_utf8_lossy(name));
        Ok(())
    }

    /// Queues kernel invalidations for the invalidation thread; without one
    /// (no kernel: the core's tests) they are dropped.
    pub(crate) fn invalidate(&self, invals: Vec<Inval>) {
        if invals.is_empty() {
            return;
        }
        if let Some(tx) = &*self.inval_tx.lock() {
            let _ = tx.send(InvalMsg::Batch(invals));
        }
    }

    /// Runs `then` on the invalidation thread once the kernel got every
    /// invalidation sent so far; at once when there is none (no kernel, as
    /// in the core's tests). Nobody waits for it.
    pub(crate) fn after_invalidations(&self, then: Box<dyn FnOnce() + Send>) {
        let then = match &*self.inval_tx.lock() {
            Some(tx) => match tx.send(InvalMsg::Then(then)) {
                Ok(()) => return,
                Err(std::sync::mpsc::SendError(InvalMsg::Then(f))) => f,
                Err(_) => return,
            },
            None => then,
        };
        then();
    }

    /// Sets where invalidations go (the daemon's invalidation thread).
    pub fn set_invalidator(&self, tx: std::sync::mpsc::Sender<InvalMsg>) {
        *self.inval_tx.lock() = Some(tx);
    }
}
