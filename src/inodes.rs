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
    },
}

impl Kind {
    pub fn snap(&self) -> Option<&Arc<Snap>> {
        match self {
            Kind::Tree { snap, .. }
            | Kind::File { snap, .. }
            | Kind::Symlink { snap, .. }
            | Kind::Submodule { snap } => Some(snap),
            _ => None,
        }
    }

    pub fn is_dir(&self) -> bool {
        !matches!(self, Kind::File { .. } | Kind::Symlink { .. } | Kind::Head)
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
