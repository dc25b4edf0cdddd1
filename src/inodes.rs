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

/// The table. Per path it holds the node (an `Arc`: its number, parent,
/// name and kind), one slot of `nodes` (inode numbers are dense, so a
/// vector indexed by number) and one slot of `by_path`, which holds only the
/// number: the path it stands for is the node's own `parent` and `name`, so
/// no name is stored twice (measured with `scripts/memory.sh`).
pub struct Inodes {
    next: Ino,
    /// Linked paths: the numbers, hashed by their node's (parent, name).
    by_path: hashbrown::HashTable<Ino>,
    hasher: std::collections::hash_map::RandomState,
    /// By number. Index 0 is unused.
    nodes: Vec<Slot>,
    live: usize,
    ghosts: usize,
}

/// What the table holds for a number.
#[derive(Clone, Default)]
enum Slot {
    /// Dropped: an orphan the kernel forgot, or a forgotten path unlinked.
    #[default]
    Empty,
    /// The node, and how many times the kernel was handed it and has not
    /// forgotten it yet (its lookup count).
    Live(Arc<Node>, u32),
    /// A clean path the kernel forgot: only its place is kept, so that it
    /// gets the same number when it is looked up again (its node is made
    /// again from its directory's tree then).
    Ghost(Box<(Ino, Box<[u8]>)>),
}

impl Slot {
    fn place(&self) -> Option<(Ino, &[u8])> {
        match self {
            Slot::Live(n, _) => Some((n.parent, &n.name)),
            Slot::Ghost(g) => Some((g.0, &g.1)),
            Slot::Empty => None,
        }
    }
}

impl Inodes {
    pub fn new(root: Kind) -> Inodes {
        let root = Arc::new(Node {
            ino: ROOT,
            parent: ROOT,
            name: Box::default(),
            kind: root,
        });
        Inodes {
            next: ROOT + 1,
            by_path: hashbrown::HashTable::new(),
            hasher: Default::default(),
            nodes: vec![Slot::Empty, Slot::Live(root, 1)],
            live: 1,
            ghosts: 0,
        }
    }

    fn hash(&self, parent: Ino, name: &[u8]) -> u64 {
        use std::hash::{BuildHasher, Hash, Hasher};
        let mut h = self.hasher.build_hasher();
        parent.hash(&mut h);
        name.hash(&mut h);
        h.finish()
    }

    fn node_ref(&self, ino: Ino) -> Option<&Arc<Node>> {
        match self.nodes.get(usize::try_from(ino).ok()?)? {
            Slot::Live(n, _) => Some(n),
            _ => None,
        }
    }

    /// Puts `node` at its number (the slot exists: numbers are handed out
    /// in order), keeping its lookup count.
    fn put(&mut self, node: Arc<Node>) {
        let i = node.ino as usize;
        if i >= self.nodes.len() {
            self.nodes.resize(i + 1, Slot::Empty);
        }
        let count = match &self.nodes[i] {
            Slot::Live(_, c) => *c,
            Slot::Ghost(_) => {
                self.ghosts -= 1;
                self.live += 1;
                0
            }
            Slot::Empty => {
                self.live += 1;
                0
            }
        };
        self.nodes[i] = Slot::Live(node, count);
    }

    /// The kernel was handed `ino` once more (a lookup, a create, an entry
    /// of readdirplus).
    pub fn looked_up(&mut self, ino: Ino) {
        if let Some(Slot::Live(_, c)) = self.nodes.get_mut(ino as usize) {
            *c = c.saturating_add(1);
        }
    }

    /// The kernel forgot `n` of its lookups of `ino`; true if it holds none
    /// any more.
    pub fn forgotten(&mut self, ino: Ino, n: u64) -> bool {
        match self.nodes.get_mut(ino as usize) {
            Some(Slot::Live(_, c)) => {
                *c = c.saturating_sub(u32::try_from(n).unwrap_or(u32::MAX));
                *c == 0
            }
            _ => true,
        }
    }

    /// Keeps only the place of `ino`, a linked path the kernel holds no
    /// lookup of, so that it costs a few bytes instead of its node; the node
    /// is made again when the path is looked up, or the number asked for.
    pub fn make_ghost(&mut self, ino: Ino) {
        let Some(Slot::Live(n, 0)) = self.nodes.get(ino as usize) else {
            return;
        };
        if ino == ROOT || !self.is_linked(n) {
            return;
        }
        let g = Box::new((n.parent, n.name.clone()));
        self.nodes[ino as usize] = Slot::Ghost(g);
        self.live -= 1;
        self.ghosts += 1;
    }

    /// The place of a forgotten path's number.
    pub fn ghost(&self, ino: Ino) -> Option<(Ino, Box<[u8]>)> {
        match self.nodes.get(usize::try_from(ino).ok()?)? {
            Slot::Ghost(g) => Some((g.0, g.1.clone())),
            _ => None,
        }
    }

    /// Numbers kept only as places (see `make_ghost`).
    pub fn ghosts(&self) -> usize {
        self.ghosts
    }

    /// The number at (parent, name), if that path is linked.
    fn find(&self, parent: Ino, name: &[u8]) -> Option<Ino> {
        let h = self.hash(parent, name);
        let nodes = &self.nodes;
        self.by_path
            .find(h, |&i| {
                nodes[i as usize]
                    .place()
                    .is_some_and(|(p, n)| p == parent && n == name)
            })
            .copied()
    }

    /// Takes (parent, name) out of `by_path`; returns the number it had.
    fn take(&mut self, parent: Ino, name: &[u8]) -> Option<Ino> {
        let h = self.hash(parent, name);
        let nodes = &self.nodes;
        let ino = match self.by_path.find_entry(h, |&i| {
            nodes[i as usize]
                .place()
                .is_some_and(|(p, n)| p == parent && n == name)
        }) {
            Ok(e) => e.remove().0,
            Err(_) => return None,
        };
        Some(ino)
    }

    /// A forgotten path that no longer leads anywhere has nothing to keep.
    fn drop_ghost(&mut self, ino: Ino) {
        if let Some(slot @ Slot::Ghost(_)) = self.nodes.get_mut(ino as usize) {
            *slot = Slot::Empty;
            self.ghosts -= 1;
        }
    }

    /// Gives `ino` (live or forgotten) the place (parent, name).
    fn move_to(&mut self, ino: Ino, parent: Ino, name: &[u8]) {
        match self.nodes.get_mut(ino as usize) {
            Some(Slot::Ghost(g)) => **g = (parent, name.into()),
            Some(Slot::Live(old, _)) => {
                let node = Arc::new(Node {
                    ino,
                    parent,
                    name: name.into(),
                    kind: old.kind.clone(),
                });
                self.put(node);
            }
            _ => {}
        }
    }

    /// Links `ino` at the place its slot holds.
    fn link(&mut self, ino: Ino) {
        let Some((parent, name)) = self.nodes.get(ino as usize).and_then(|s| s.place()) else {
            return;
        };
        let h = self.hash(parent, name);
        let (hasher, nodes) = (&self.hasher, &self.nodes);
        self.by_path.insert_unique(h, ino, |&i| {
            use std::hash::{BuildHasher, Hash, Hasher};
            let (p, n) = nodes[i as usize].place().unwrap_or((0, &[]));
            let mut s = hasher.build_hasher();
            p.hash(&mut s);
            n.hash(&mut s);
            s.finish()
        });
    }

    pub fn get(&self, ino: Ino) -> Option<Arc<Node>> {
        self.node_ref(ino).cloned()
    }

    /// The node at `name` below `parent`, if the path was seen before (and
    /// is not forgotten: see `make_ghost`).
    pub fn child(&self, parent: Ino, name: &[u8]) -> Option<Arc<Node>> {
        let ino = self.find(parent, name)?;
        self.get(ino)
    }

    /// The number of `name` below `parent`, forgotten or not.
    pub fn number(&self, parent: Ino, name: &[u8]) -> Option<Ino> {
        self.find(parent, name)
    }

    /// Gives the path its number (the one it had, or a new one) and sets its kind.
    pub fn upsert(&mut self, parent: Ino, name: &[u8], kind: Kind) -> Arc<Node> {
        let (ino, new) = match self.find(parent, name) {
            Some(ino) => (ino, false),
            None => {
                let ino = self.next;
                self.next += 1;
                (ino, true)
            }
        };
        let node = Arc::new(Node {
            ino,
            parent,
            name: name.into(),
            kind,
        });
        self.put(node.clone());
        if new {
            self.link(ino);
        }
        node
    }

    /// Replaces what an existing inode is, keeping its number and place.
    pub fn set_kind(&mut self, ino: Ino, kind: Kind) -> Option<Arc<Node>> {
        let old = self.node_ref(ino)?.clone();
        let node = Arc::new(Node {
            ino,
            parent: old.parent,
            name: old.name.clone(),
            kind,
        });
        self.put(node.clone());
        Some(node)
    }

    /// Takes `name` out of `parent`: the inode keeps its data for as long as the
    /// kernel holds it (an open file stays readable), but no path leads to it.
    pub fn unlink(&mut self, parent: Ino, name: &[u8]) -> Option<Ino> {
        let ino = self.take(parent, name)?;
        self.drop_ghost(ino);
        Some(ino)
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
        let ino = self.take(parent, name)?;
        let replaced = self.take(new_parent, new_name);
        if let Some(r) = replaced {
            self.drop_ghost(r);
        }
        self.move_to(ino, new_parent, new_name);
        self.link(ino);
        replaced
    }

    /// Swaps the inodes at two paths (RENAME_EXCHANGE).
    pub fn exchange(&mut self, p1: Ino, n1: &[u8], p2: Ino, n2: &[u8]) {
        if p1 == p2 && n1 == n2 {
            return;
        }
        let (Some(a), Some(b)) = (self.find(p1, n1), self.find(p2, n2)) else {
            return;
        };
        self.take(p1, n1);
        self.take(p2, n2);
        self.move_to(a, p2, n2);
        self.move_to(b, p1, n1);
        self.link(a);
        self.link(b);
    }

    /// Forgets an inode no path leads to any more.
    pub fn drop_orphan(&mut self, ino: Ino) {
        if let Some(n) = self.node_ref(ino).cloned()
            && !self.is_linked(&n)
            && let Some(slot) = self.nodes.get_mut(ino as usize)
        {
            *slot = Slot::Empty;
            self.live -= 1;
        }
    }

    /// Whether a path leads to `ino`.
    pub fn is_linked(&self, n: &Node) -> bool {
        n.ino == ROOT || self.find(n.parent, &n.name) == Some(n.ino)
    }

    pub fn len(&self) -> usize {
        self.live
    }

    pub fn is_empty(&self) -> bool {
        self.live == 0
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

    /// Random upserts, unlinks, renames and exchanges against a plain map of
    /// paths to numbers: every linked path finds its number, unlinked ones
    /// none, a path keeps its number, and no two paths share one.
    #[test]
    fn the_table_agrees_with_a_map_of_paths() {
        use std::collections::HashMap;
        let mut t = Inodes::new(Kind::Root);
        let mut model: HashMap<(Ino, Vec<u8>), Ino> = HashMap::new();
        let mut seed = 0x9E3779B97F4A7C15u64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let dirs = [ROOT, 2, 3];
        for _ in 0..20_000 {
            let r = next();
            let p = dirs[(r % 3) as usize];
            let n = format!("n{}", (r >> 8) % 12).into_bytes();
            let p2 = dirs[((r >> 16) % 3) as usize];
            let n2 = format!("n{}", (r >> 24) % 12).into_bytes();
            if (r >> 40) % 5 == 0 {
                // The kernel forgets a path: only its place stays, and it
                // keeps its number.
                if let Some(&ino) = model.get(&(p, n.clone())) {
                    t.make_ghost(ino);
                    assert!(t.child(p, &n).is_none() || t.get(ino).is_some());
                    assert_eq!(t.number(p, &n), Some(ino));
                }
                continue;
            }
            match (r >> 32) % 4 {
                0 => {
                    let ino = t.upsert(p, &n, Kind::CommitsDir).ino;
                    let want = *model.entry((p, n)).or_insert(ino);
                    assert_eq!(ino, want);
                }
                1 => {
                    assert_eq!(t.unlink(p, &n), model.remove(&(p, n)));
                }
                2 => {
                    if let Some(ino) = model.remove(&(p, n.clone())) {
                        let replaced = model.insert((p2, n2.clone()), ino);
                        assert_eq!(t.rename(p, &n, p2, &n2), replaced);
                    } else {
                        assert_eq!(t.rename(p, &n, p2, &n2), None);
                    }
                }
                _ => {
                    let (a, b) = (
                        model.get(&(p, n.clone())).copied(),
                        model.get(&(p2, n2.clone())).copied(),
                    );
                    t.exchange(p, &n, p2, &n2);
                    if let (Some(a), Some(b)) = (a, b) {
                        model.insert((p, n), b);
                        model.insert((p2, n2), a);
                    }
                }
            }
        }
        for ((p, n), ino) in &model {
            assert_eq!(t.number(*p, n), Some(*ino));
            // A forgotten one is made again with its number.
            let node = match t.child(*p, n) {
                Some(node) => node,
                None => t.upsert(*p, n, Kind::CommitsDir),
            };
            assert_eq!(node.ino, *ino);
            assert!(t.is_linked(&node));
        }
        let mut seen = std::collections::HashSet::new();
        assert!(model.values().all(|i| seen.insert(*i)));
    }
}
