//! Following refs that others move (SPEC section 5).
//!
//! When a ref moves to a commit this mount did not make, the directory that
//! shows it is re-pointed at the new tip, path by path ([`repoint_dir`], driven
//! by the view's `CommitFs::repoint` in `view/follow.rs`):
//!
//! - A path whose content the other side changed gets a new inode, as a file
//!   that `git checkout` or a rename replaced would: a descriptor opened before
//!   keeps reading the version it opened (its inode still holds that blob), and
//!   every new lookup, stat and open finds the new one. The kernel's cached
//!   entry for the name is dropped.
//! - A directory whose tree changed keeps its inode; its cached listing and
//!   attributes are dropped, and the same is done below it for the names that
//!   changed. Paths nobody changed keep their inode, their kernel caches and
//!   their mtime, so `make` after a pull rebuilds only what changed.
//! - In a branch with changes this mount has not committed yet, what the mount
//!   changed stays as it is (the mount's version wins); the paths the other side
//!   changed too are remembered and named in the next commit's message.
//!
//! Kernel invalidations are queued and sent by their own thread (see
//! `daemon/mod.rs`), never from a request: an invalidation waits for locks in the
//! kernel that a request in progress may hold.

pub mod watch;

use std::sync::Arc;

use crate::store::Oid;

use crate::error::FsResult;
use crate::inodes::{Ino, Inodes, Kind, Snap, tree_kind};
use crate::overlay::{Changes, Mat};
use crate::store::names::Paths;
use crate::store::repo::{EntryKind, TreeEntry};
use crate::store::treeobj::Listing;

/// What the invalidation thread is sent: invalidations to deliver, or a
/// question to answer once everything sent before is delivered.
pub enum InvalMsg {
    Batch(Vec<Inval>),
    /// Run once everything sent before is delivered.
    Then(Box<dyn FnOnce() + Send>),
}

/// A kernel cache entry to drop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inval {
    /// The name `name` in directory `parent`.
    Entry { parent: Ino, name: Box<[u8]> },
    /// The attributes and the pages (or cached listing) of an inode.
    Inode(Ino),
}

/// The names whose entries differ between two sorted tree listings, with the
/// entry on each side.
fn changed<'a>(
    a: &'a [TreeEntry],
    b: &'a [TreeEntry],
) -> Vec<(&'a [u8], Option<&'a TreeEntry>, Option<&'a TreeEntry>)> {
    let (mut i, mut j) = (0, 0);
    let mut out = Vec::new();
    while i < a.len() || j < b.len() {
        let ord = match (a.get(i), b.get(j)) {
            (Some(x), Some(y)) => x.name.cmp(&y.name),
            (Some(_), None) => std::cmp::Ordering::Less,
            _ => std::cmp::Ordering::Greater,
        };
        match ord {
            std::cmp::Ordering::Less => {
                out.push((&*a[i].name, Some(&a[i]), None));
                i += 1;
            }
            std::cmp::Ordering::Greater => {
                out.push((&*b[j].name, None, Some(&b[j])));
                j += 1;
            }
            std::cmp::Ordering::Equal => {
                if a[i].oid != b[j].oid || a[i].kind != b[j].kind {
                    out.push((&*a[i].name, Some(&a[i]), Some(&b[j])));
                }
                i += 1;
                j += 1;
            }
        }
    }
    out
}

/// Whether the mount's node shows exactly tree entry `e`, as it was last
/// committed or followed: a written file counts when it is committed and
/// unchanged since, a made symlink when its target is that blob.
fn shows(ov: &Changes, n: &crate::inodes::Node, e: &TreeEntry) -> bool {
    match (&n.kind, e.kind) {
        (
            Kind::File {
                oid, executable, ..
            },
            EntryKind::File { executable: x },
        ) => *oid == e.oid && *executable == x,
        (Kind::MFile { executable, .. }, EntryKind::File { executable: x }) if *executable == x => {
            match ov.mat(n.ino) {
                Some(Mat::File(wf)) => {
                    let st = wf.st.lock();
                    st.committed == Some((st.version, e.oid))
                }
                _ => false,
            }
        }
        (Kind::MSymlink { target, .. }, EntryKind::Symlink) => {
            crate::store::treeobj::hash_object("blob", target) == e.oid
        }
        (Kind::Tree { oid, .. }, EntryKind::Dir)
        | (Kind::Symlink { oid, .. }, EntryKind::Symlink)
        | (Kind::Submodule { oid, .. }, EntryKind::Submodule) => *oid == e.oid,
        _ => false,
    }
}

fn is_dir(e: Option<&TreeEntry>) -> Option<Oid> {
    e.filter(|e| e.kind == EntryKind::Dir).map(|e| e.oid)
}

/// A step of a re-pointing pass.
enum Step {
    /// Re-point directory `dir` from tree `base` to tree `new`.
    Visit {
        dir: Ino,
        base: Option<Oid>,
        new: Option<Oid>,
        path: usize,
    },
    /// After everything below `ino` (named `name` in `dir`, which both sides
    /// changed) was re-pointed: settle what is left of it.
    AfterMDir {
        dir: Ino,
        name: Box<[u8]>,
        ino: Ino,
        t: Option<TreeEntry>,
        here: usize,
    },
}

/// One re-pointing pass: the locks it holds and what it collects.
pub struct Pass<'a> {
    pub inodes: &'a mut Inodes,
    pub ov: &'a mut Changes,
    pub snap: &'a Arc<Snap>,
    pub invals: Vec<Inval>,
    /// Paths both sides changed, where the mount's version stays.
    pub overridden: Vec<Vec<u8>>,
}

/// Where a re-pointing pass reads trees (the view's tree cache).
pub trait Trees {
    fn tree_entries(&self, oid: Oid) -> FsResult<Arc<Listing>>;
}

/// Re-points directory `dir`, which showed `base` (None: it was not in the
/// base tree), at `new` (None: it is not in the new one), and everything
/// below it that changed. A loop over a stack of steps, not a recursion: a
/// tree may be any number of levels deep.
pub fn repoint_dir(
    trees: &dyn Trees,
    pass: &mut Pass<'_>,
    dir: Ino,
    base: Option<Oid>,
    new: Option<Oid>,
) -> FsResult<()> {
    let mut paths = Paths::default();
    let mut steps = vec![Step::Visit {
        dir,
        base,
        new,
        path: Paths::ROOT,
    }];
    while let Some(step) = steps.pop() {
        match step {
            Step::Visit {
                dir,
                base,
                new,
                path,
            } => repoint_one(trees, pass, &mut paths, &mut steps, dir, base, new, path)?,
            Step::AfterMDir {
                dir,
                name,
                ino,
                t,
                here,
            } => {
                // If they removed the directory or made it a file, what is
                // left is this mount's; nothing left, theirs wins.
                let emptied = matches!(pass.ov.mat(ino), Some(Mat::Dir(c)) if c.is_empty());
                if is_dir(t.as_ref()).is_none() {
                    if emptied {
                        replace(pass, dir, &name, Some(ino), t.as_ref());
                    } else {
                        pass.overridden.push(paths.full(here));
                    }
                }
            }
        }
    }
    Ok(())
}

/// One directory of [`repoint_dir`]: its own entries; what must
/// be done below it goes on `steps`.
#[allow(clippy::too_many_arguments)]
fn repoint_one(
    trees: &dyn Trees,
    pass: &mut Pass<'_>,
    paths: &mut Paths,
    steps: &mut Vec<Step>,
    dir: Ino,
    base: Option<Oid>,
    new: Option<Oid>,
    path: usize,
) -> FsResult<()> {
    let Some(n) = pass.inodes.get(dir) else {
        return Ok(());
    };
    let empty = Arc::new(Listing::default());
    let list = |o: Option<Oid>| -> FsResult<Arc<Listing>> {
        match o {
            Some(o) => trees.tree_entries(o),
            None => Ok(empty.clone()),
        }
    };
    match &n.kind {
        Kind::Tree { oid, .. } => {
            // Unchanged by this mount: it shows exactly `oid`.
            let Some(new) = new else { return Ok(()) };
            if *oid == new {
                return Ok(());
            }
            let (before, after) = (list(Some(*oid))?, list(Some(new))?);
            for (name, b, t) in changed(&before, &after) {
                let Some(child) = pass.inodes.child(dir, name) else {
                    continue; // never looked up: nothing cached
                };
                match (&child.kind, is_dir(b), is_dir(t)) {
                    (Kind::Tree { .. }, Some(bo), Some(to)) => steps.push(Step::Visit {
                        dir: child.ino,
                        base: Some(bo),
                        new: Some(to),
                        path: paths.add(path, name),
                    }),
                    _ => retire(pass, dir, name, child.ino),
                }
            }
            pass.inodes.set_kind(
                dir,
                Kind::Tree {
                    snap: pass.snap.clone(),
                    oid: new,
                },
            );
            pass.invals.push(Inval::Inode(dir));
        }
        Kind::MDir { .. } => {
            let (before, after) = (list(base)?, list(new)?);
            // What the new tree holds unseen is what the directory's next
            // tree keeps, and so is what this mount brought unseen (a
            // directory moved here keeps its own tree's hidden entries).
            let next = with_hidden_of(pass.ov.base(dir), &before, &after);
            pass.ov.set_base(dir, &next);
            for (name, b, t) in changed(&before, &after) {
                let here = paths.add(path, name);
                let ours = match pass.ov.mat(dir) {
                    Some(Mat::Dir(c)) => c.get(name).and_then(|&i| pass.inodes.get(i)),
                    _ => None,
                };
                let unchanged_by_us = match (&ours, b) {
                    (None, None) => true,
                    (Some(o), Some(b)) => shows(pass.ov, o, b),
                    _ => false,
                };
                if unchanged_by_us {
                    if log::log_enabled!(log::Level::Debug) {
                        log::debug!(
                            "follow: {} takes the other side's version",
                            String::from_utf8_lossy(&paths.full(here))
                        );
                    }
                    match (&ours, t) {
                        (Some(o), Some(t))
                            if matches!(o.kind, Kind::Tree { .. }) && t.kind == EntryKind::Dir =>
                        {
                            steps.push(Step::Visit {
                                dir: o.ino,
                                base: b.map(|b| b.oid),
                                new: Some(t.oid),
                                path: here,
                            });
                        }
                        (_, t) => replace(pass, dir, name, ours.as_ref().map(|o| o.ino), t),
                    }
                    continue;
                }
                // This mount changed the path too.
                match &ours {
                    Some(o)
                        if (matches!(o.kind, Kind::MDir { .. })
                            && (b.is_none() || is_dir(b).is_some()))
                            || (matches!(o.kind, Kind::Tree { .. })
                                && b.is_none()
                                && is_dir(t).is_some()) =>
                    {
                        // Both changed things inside a directory: per path
                        // below, then what is left of it (see `AfterMDir`).
                        // A directory this mount moved here unchanged, where
                        // they made one too, is made a changed one first.
                        if let Kind::Tree { oid, .. } = o.kind {
                            let entries = trees.tree_entries(oid)?;
                            pass.ov.materialize(pass.inodes, o.ino, &entries);
                        }
                        steps.push(Step::AfterMDir {
                            dir,
                            name: name.into(),
                            ino: o.ino,
                            t: t.cloned(),
                            here,
                        });
                        steps.push(Step::Visit {
                            dir: o.ino,
                            base: is_dir(b),
                            new: is_dir(t),
                            path: here,
                        });
                    }
                    Some(o) if t.is_some_and(|t| shows(pass.ov, o, t)) => {} // the same change
                    None if t.is_none() => {}                                // both deleted it
                    _ => pass.overridden.push(paths.full(here)),
                }
            }
            pass.invals.push(Inval::Inode(dir));
        }
        _ => {}
    }
    Ok(())
}

/// The base a changed directory takes when it follows from `before` to
/// `after`: `after`, with the hidden entries of its base `ours` that
/// `before` did not have (this mount brought them: a directory moved here
/// holds its own tree's), each in place of any hidden entry of that name.
fn with_hidden_of(
    ours: Option<&Arc<Listing>>,
    before: &Listing,
    after: &Arc<Listing>,
) -> Arc<Listing> {
    let Some(ours) = ours else {
        return after.clone();
    };
    let brought: Vec<&crate::store::treeobj::RawEntry> = ours
        .hidden
        .iter()
        .filter(|h| !before.hidden.contains(h))
        .collect();
    if brought.is_empty() {
        return after.clone();
    }
    let mut next = Listing::clone(after);
    next.hidden
        .retain(|h| !brought.iter().any(|b| b.name == h.name));
    next.hidden.extend(brought.into_iter().cloned());
    Arc::new(next)
}

/// Takes `name` out of `dir` (an inode the other side replaced or removed:
/// still readable through what holds it, never written again).
fn retire(pass: &mut Pass<'_>, dir: Ino, name: &[u8], ino: Ino) {
    pass.inodes.unlink(dir, name);
    pass.ov.mark_stale(ino);
    // Under the file's own lock, so that a write that got hold of the file
    // before this pass is refused from now on (`modify`), never acknowledged
    // into a file no path names.
    if let Some(Mat::File(wf)) = pass.ov.mat(ino) {
        wf.st.lock().replaced = true;
    }
    pass.invals.push(Inval::Entry {
        parent: dir,
        name: name.into(),
    });
}

/// Makes `name` in materialized directory `dir` show entry `t` (None:
/// removed), in place of inode `old`.
fn replace(pass: &mut Pass<'_>, dir: Ino, name: &[u8], old: Option<Ino>, t: Option<&TreeEntry>) {
    if let Some(old) = old {
        retire(pass, dir, name, old);
    } else {
        pass.invals.push(Inval::Entry {
            parent: dir,
            name: name.into(),
        });
    }
    let node = t.map(|t| pass.inodes.upsert(dir, name, tree_kind(pass.snap, t)));
    if let Some(Mat::Dir(map)) = pass.ov.mat_mut(dir) {
        match &node {
            Some(node) => {
                map.insert(name.into(), node.ino);
            }
            None => {
                map.remove(name);
            }
        }
    }
    if let Some(node) = node {
        pass.ov.forget_meta(node.ino);
    }
}

/// Reads the trees of every directory that differs between `a` and `b`
/// into the tree cache, at most `WARM_DEPTH` levels down and `WARM_TREES`
/// trees in all. Only a hint: a tree that cannot be read is left for the
/// pass to report if it needs it.
pub fn warm_trees(trees: &dyn Trees, a: Option<Oid>, b: Option<Oid>) {
    const WARM_DEPTH: usize = 256;
    const WARM_TREES: usize = 65536;
    let mut todo = vec![(a, b, 0usize)];
    let mut read_count = 0;
    while let Some((a, b, depth)) = todo.pop() {
        if a == b || depth > WARM_DEPTH || read_count > WARM_TREES {
            continue;
        }
        let read = |o: Option<Oid>| match o {
            Some(o) => trees.tree_entries(o).ok(),
            None => Some(Arc::new(Listing::default())),
        };
        read_count += 2;
        let (Some(la), Some(lb)) = (read(a), read(b)) else {
            continue;
        };
        for (_, x, y) in changed(&la, &lb) {
            let (dx, dy) = (is_dir(x), is_dir(y));
            if dx.is_some() || dy.is_some() {
                todo.push((dx, dy, depth + 1));
            }
        }
    }
}
