//! Inode numbers <-> paths.
//!
//! Invariants:
//! - An inode number is given to a path (a parent inode and a name) the first time
//!   the path is seen and is never given to another path for the life of the mount,
//!   so `st_ino` is stable per path and two paths never share one.
//! - The table only grows: the kernel's `forget` does not remove a number, because a
//!   later lookup of the same path must get the same one back. Its size is the
//!   number of distinct paths the kernel has looked up (about 100 bytes each).
//! - What a path *is* (its [`Kind`]) may be replaced; its number may not.

use std::collections::HashMap;
use std::sync::Arc;

use git2::Oid;

use crate::repo::Snapshot;

pub type Ino = u64;
pub const ROOT: Ino = 1;

/// Which ref a snapshot directory stands for, and so whether it may ever be written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SnapSource {
    /// A branch (refs/heads/NAME): writable once writes exist.
    Branch(Box<[u8]>),
    /// A tag, a commit or any other revision: read-only forever.
    Fixed,
}

#[derive(Debug, PartialEq, Eq)]
pub struct Snap {
    pub snapshot: Snapshot,
    pub source: SnapSource,
}

impl Snap {
    pub fn immutable(&self) -> bool {
        self.source == SnapSource::Fixed
    }
}

#[derive(Debug, Clone)]
pub enum Kind {
    /// The root of a whole-repository mount.
    Root,
    /// A directory made by a '/' in branch names: `feature/` for `feature/x`.
    BranchNs(Box<[u8]>),
    /// `.tags`.
    TagsDir,
    /// A directory made by a '/' in tag names, below `.tags`.
    TagNs(Box<[u8]>),
    /// `.commits`: resolves revisions on lookup, lists nothing.
    CommitsDir,
    /// The `HEAD` symlink at the root.
    Head,
    /// A directory of a snapshot (its root included).
    Tree {
        snap: Arc<Snap>,
        oid: Oid,
    },
    File {
        snap: Arc<Snap>,
        oid: Oid,
        executable: bool,
    },
    Symlink {
        snap: Arc<Snap>,
        oid: Oid,
    },
    /// A submodule (gitlink): an empty read-only directory.
    Submodule {
        snap: Arc<Snap>,
        oid: Oid,
    },
    /// A directory of a branch with changes below it: its children are listed
    /// in the overlay (see `overlay.rs`).
    MDir {
        snap: Arc<Snap>,
    },
    /// A file of a branch that has been written: its bytes are in a spill file
    /// in the overlay.
    MFile {
        snap: Arc<Snap>,
        executable: bool,
    },
    /// A symlink made in a branch.
    MSymlink {
        snap: Arc<Snap>,
        target: Box<[u8]>,
    },
}

impl Kind {
    pub fn snap(&self) -> Option<&Arc<Snap>> {
        match self {
            Kind::Tree { snap, .. }
            | Kind::File { snap, .. }
            | Kind::Symlink { snap, .. }
            | Kind::Submodule { snap, .. }
            | Kind::MDir { snap }
            | Kind::MFile { snap, .. }
            | Kind::MSymlink { snap, .. } => Some(snap),
            _ => None,
        }
    }

    pub fn is_dir(&self) -> bool {
        !matches!(
            self,
            Kind::File { .. }
                | Kind::Symlink { .. }
                | Kind::Head
                | Kind::MFile { .. }
                | Kind::MSymlink { .. }
        )
    }

    /// Whether this node or something below it has changed (it is in the overlay).
    pub fn materialized(&self) -> bool {
        matches!(
            self,
            Kind::MDir { .. } | Kind::MFile { .. } | Kind::MSymlink { .. }
        )
    }
}

#[derive(Debug)]
pub struct Node {
    pub ino: Ino,
    pub parent: Ino,
    pub name: Box<[u8]>,
    pub kind: Kind,
}

pub struct Inodes {
    next: Ino,
    by_path: HashMap<(Ino, Box<[u8]>), Ino>,
    nodes: HashMap<Ino, Arc<Node>>,
}

impl Inodes {
    pub fn new(root: Kind) -> Inodes {
        let mut nodes = HashMap::new();
        nodes.insert(
            ROOT,
            Arc::new(Node {
                ino: ROOT,
                parent: ROOT,
                name: Box::default(),
                kind: root,
            }),
        );
        Inodes {
            next: ROOT + 1,
            by_path: HashMap::new(),
            nodes,
        }
    }

    pub fn get(&self, ino: Ino) -> Option<Arc<Node>> {
        self.nodes.get(&ino).cloned()
    }

    /// The node at `name` below `parent`, if the path was seen before.
    pub fn child(&self, parent: Ino, name: &[u8]) -> Option<Arc<Node>> {
        let ino = self.by_path.get(&(parent, Box::<[u8]>::from(name)))?;
        self.nodes.get(ino).cloned()
    }

    /// Gives the path its number (the one it had, or a new one) and sets its kind.
    pub fn upsert(&mut self, parent: Ino, name: &[u8], kind: Kind) -> Arc<Node> {
        let key = (parent, Box::<[u8]>::from(name));
        let ino = match self.by_path.get(&key) {
            Some(&ino) => ino,
            None => {
                let ino = self.next;
                self.next += 1;
                self.by_path.insert(key, ino);
                ino
            }
        };
        let node = Arc::new(Node {
            ino,
            parent,
            name: name.into(),
            kind,
        });
        self.nodes.insert(ino, node.clone());
        node
    }

    /// Replaces what an existing inode is, keeping its number and place.
    pub fn set_kind(&mut self, ino: Ino, kind: Kind) -> Option<Arc<Node>> {
        let old = self.nodes.get(&ino)?.clone();
        let node = Arc::new(Node {
            ino,
            parent: old.parent,
            name: old.name.clone(),
            kind,
        });
        self.nodes.insert(ino, node.clone());
        Some(node)
    }

    /// Takes `name` out of `parent`: the inode keeps its data for as long as the
    /// kernel holds it (an open file stays readable), but no path leads to it.
    pub fn unlink(&mut self, parent: Ino, name: &[u8]) -> Option<Ino> {
        self.by_path.remove(&(parent, Box::<[u8]>::from(name)))
    }

    /// Moves the inode at `parent/name` to `new_parent/new_name`, as rename(2)
    /// does: the number goes with the object. An inode that was at the target
    /// is unlinked and returned.
    pub fn rename(
        &mut self,
        parent: Ino,
        name: &[u8],
        new_parent: Ino,
        new_name: &[u8],
    ) -> Option<Ino> {
        let ino = self.by_path.remove(&(parent, Box::<[u8]>::from(name)))?;
        let replaced = self
            .by_path
            .insert((new_parent, Box::<[u8]>::from(new_name)), ino);
        if let Some(old) = self.nodes.get(&ino).cloned() {
            self.nodes.insert(
                ino,
                Arc::new(Node {
                    ino,
                    parent: new_parent,
                    name: new_name.into(),
                    kind: old.kind.clone(),
                }),
            );
        }
        replaced
    }

    /// Swaps the inodes at two paths (RENAME_EXCHANGE).
    pub fn exchange(&mut self, p1: Ino, n1: &[u8], p2: Ino, n2: &[u8]) {
        let k1 = (p1, Box::<[u8]>::from(n1));
        let k2 = (p2, Box::<[u8]>::from(n2));
        let (Some(a), Some(b)) = (
            self.by_path.get(&k1).copied(),
            self.by_path.get(&k2).copied(),
        ) else {
            return;
        };
        self.by_path.insert(k1, b);
        self.by_path.insert(k2, a);
        for (ino, parent, name) in [(a, p2, n2), (b, p1, n1)] {
            if let Some(old) = self.nodes.get(&ino).cloned() {
                self.nodes.insert(
                    ino,
                    Arc::new(Node {
                        ino,
                        parent,
                        name: name.into(),
                        kind: old.kind.clone(),
                    }),
                );
            }
        }
    }

    /// Forgets an inode no path leads to any more.
    pub fn drop_orphan(&mut self, ino: Ino) {
        self.nodes.remove(&ino);
    }

    /// Whether a path leads to `ino`.
    pub fn is_linked(&self, n: &Node) -> bool {
        n.ino == ROOT
            || self
                .by_path
                .get(&(n.parent, n.name.clone()))
                .is_some_and(|&i| i == n.ino)
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_stable_per_path_and_never_shared() {
        let mut t = Inodes::new(Kind::Root);
        let a = t.upsert(ROOT, b"a", Kind::CommitsDir).ino;
        let b = t.upsert(ROOT, b"b", Kind::CommitsDir).ino;
        let a_again = t.upsert(ROOT, b"a", Kind::TagsDir).ino;
        let nested = t.upsert(a, b"a", Kind::TagsDir).ino;
        assert_eq!(a, a_again);
        assert_ne!(a, b);
        assert_ne!(nested, a);
        assert_ne!(nested, ROOT);
        assert!(matches!(t.get(a).unwrap().kind, Kind::TagsDir));
        assert_eq!(t.child(ROOT, b"b").unwrap().ino, b);
        assert!(t.child(ROOT, b"c").is_none());
    }
}
