//! Inode numbers <-> paths.
//!
//! Invariants:
//! - An inode number is given to a path (a parent inode and a name) the first time
//!   the path is seen and is never given to another path for the life of the mount,
//!   so `st_ino` is stable per path and two paths never share one.
//! - The kernel's `forget` does not take a linked path's number away, because a
//!   later lookup of the same path must get the same one back: a clean path
//!   keeps only its place (a ghost), and ghosts beyond the most recent
//!   `GHOSTS_IN_MEMORY` are kept on disk (`inodes/ghosts.rs`). Memory follows the
//!   paths the kernel holds, not all it ever looked up.
//! - What a path *is* (its [`Kind`]) may be replaced; its number may not.

pub mod ghosts;

use std::sync::Arc;

use crate::store::Oid;

use crate::store::repo::{EntryKind, Snapshot, TreeEntry};

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

/// What a tree entry of snapshot `snap` is, as a node.
pub fn tree_kind(snap: &Arc<Snap>, e: &TreeEntry) -> Kind {
    let snap = snap.clone();
    match e.kind {
        EntryKind::Dir => Kind::Tree { snap, oid: e.oid },
        EntryKind::File { executable } => Kind::File {
            snap,
            oid: e.oid,
            executable,
        },
        EntryKind::Symlink => Kind::Symlink { snap, oid: e.oid },
        EntryKind::Submodule => Kind::Submodule { snap, oid: e.oid },
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
/// name and kind), one entry of `nodes` (by number) and one slot of
/// `by_path`, which holds only the number and the path's hash: the path it
/// stands for is the node's own `parent` and `name`, so no name is stored
/// twice (measured with `scripts/memory.sh`), and the hash kept spares the
/// table's growth hashing every path again. A clean path the kernel forgot keeps only its place
/// (a ghost); beyond the most recent `GHOSTS_IN_MEMORY`, ghosts move to disk
/// (`inodes/ghosts.rs`), so that the table's memory follows what the kernel holds,
/// not everything it ever looked up.
pub struct Inodes {
    next: Ino,
    /// Paths in memory: the numbers, with the hash of their (parent, name).
    by_path: hashbrown::HashTable<(u64, Ino)>,
    hasher: std::collections::hash_map::RandomState,
    /// By number: live nodes and ghosts in memory. A number in neither is
    /// on disk (`disk`), or dropped.
    nodes: hashbrown::HashMap<Ino, Slot>,
    live: usize,
    /// Ghosts in memory, and their numbers in the order they were made
    /// (some since made live again or dropped: skipped).
    ghosts: usize,
    ghost_order: std::collections::VecDeque<Ino>,
    /// Where ghosts go beyond `in_memory` (none: all stay here).
    disk: Option<Arc<crate::inodes::ghosts::Ghosts>>,
    in_memory: usize,
    /// A batch could not be written: no more go to disk (those there are
    /// still read).
    spill_off: bool,
    /// A batch being written to disk: still in memory, which is what
    /// counts for them until `spilled`.
    in_flight: Option<std::collections::HashSet<Ino>>,
}

/// Ghosts kept in memory (about 80 bytes each) before the oldest go to disk,
/// `SPILL_BATCH` at a time.
pub const GHOSTS_IN_MEMORY: usize = 128 << 10;
const SPILL_BATCH: usize = 8 << 10;

/// A batch of ghosts to write to disk (see [`Inodes::spill`]).
pub struct Spill {
    pub to: Arc<crate::inodes::ghosts::Ghosts>,
    pub batch: Vec<(Ino, Ino, Box<[u8]>)>,
}

/// What the table holds for a number in memory.
#[derive(Clone)]
enum Slot {
    /// The node, and how many times the kernel was handed it and has not
    /// forgotten it yet (its lookup count).
    Live(Arc<Node>, u32),
    /// A clean path the kernel forgot: only its place is kept, so that it
    /// gets the same number when it is looked up again (its node is made
    /// again from its directory's tree then).
    Ghost(Box<(Ino, Box<[u8]>)>),
}

impl Slot {
    fn place(&self) -> (Ino, &[u8]) {
        match self {
            Slot::Live(n, _) => (n.parent, &n.name),
            Slot::Ghost(g) => (g.0, &g.1),
        }
    }
}

/// The hash `by_path` keeps a path under.
fn place_hash(hasher: &std::collections::hash_map::RandomState, parent: Ino, name: &[u8]) -> u64 {
    use std::hash::{BuildHasher, Hash, Hasher};
    let mut h = hasher.build_hasher();
    parent.hash(&mut h);
    name.hash(&mut h);
    h.finish()
}

/// Whether a number of `by_path` is the one at (parent, name).
fn at<'a>(
    nodes: &'a hashbrown::HashMap<Ino, Slot>,
    parent: Ino,
    name: &'a [u8],
) -> impl Fn(&Ino) -> bool + 'a {
    move |i| nodes.get(i).is_some_and(|s| s.place() == (parent, name))
}

impl Inodes {
    pub fn new(root: Kind) -> Inodes {
        let root = Arc::new(Node {
            ino: ROOT,
            parent: ROOT,
            name: Box::default(),
            kind: root,
        });
        let mut nodes = hashbrown::HashMap::new();
        nodes.insert(ROOT, Slot::Live(root, 1));
        Inodes {
            next: ROOT + 1,
            by_path: hashbrown::HashTable::new(),
            hasher: Default::default(),
            nodes,
            live: 1,
            ghosts: 0,
            ghost_order: Default::default(),
            disk: None,
            in_memory: GHOSTS_IN_MEMORY,
            spill_off: false,
            in_flight: None,
        }
    }

    /// Ghosts beyond the most recent `in_memory` (`GHOSTS_IN_MEMORY` in the
    /// daemon) go to `disk`.
    pub fn keep_ghosts_in(&mut self, disk: Arc<crate::inodes::ghosts::Ghosts>, in_memory: usize) {
        self.disk = Some(disk);
        self.in_memory = in_memory;
    }

    fn hash(&self, parent: Ino, name: &[u8]) -> u64 {
        place_hash(&self.hasher, parent, name)
    }

    fn node_ref(&self, ino: Ino) -> Option<&Arc<Node>> {
        match self.nodes.get(&ino)? {
            Slot::Live(n, _) => Some(n),
            Slot::Ghost(_) => None,
        }
    }

    /// Puts `node` at its number, keeping its lookup count.
    fn put(&mut self, node: Arc<Node>) {
        let count = match self.nodes.get(&node.ino) {
            Some(Slot::Live(_, c)) => *c,
            Some(Slot::Ghost(_)) => {
                self.ghosts -= 1;
                self.live += 1;
                0
            }
            None => {
                self.live += 1;
                0
            }
        };
        self.nodes.insert(node.ino, Slot::Live(node, count));
    }

    /// The kernel was handed `ino` once more (a lookup, a create, an entry
    /// of readdirplus).
    pub fn looked_up(&mut self, ino: Ino) {
        if let Some(Slot::Live(_, c)) = self.nodes.get_mut(&ino) {
            *c = c.saturating_add(1);
        }
    }

    /// The kernel forgot `n` of its lookups of `ino`; true if it holds none
    /// any more.
    pub fn forgotten(&mut self, ino: Ino, n: u64) -> bool {
        match self.nodes.get_mut(&ino) {
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
        let Some(Slot::Live(n, 0)) = self.nodes.get(&ino) else {
            return;
        };
        if ino == ROOT || !self.is_linked(n) {
            return;
        }
        let g = Box::new((n.parent, n.name.clone()));
        self.nodes.insert(ino, Slot::Ghost(g));
        self.live -= 1;
        self.ghosts += 1;
        self.ghost_order.push_back(ino);
        if self.ghost_order.len() > 2 * self.ghosts + SPILL_BATCH {
            // Most of the order is numbers made live again: keep the rest.
            let nodes = &self.nodes;
            let mut seen = std::collections::HashSet::new();
            self.ghost_order
                .retain(|i| matches!(nodes.get(i), Some(Slot::Ghost(_))) && seen.insert(*i));
        }
    }

    /// The oldest ghosts in memory, to be written to disk with no lock held
    /// (`Spill::to.put`) and then handed to [`Inodes::spilled`], once more
    /// than `in_memory` are in memory (and no other batch is out).
    pub fn spill(&mut self) -> Option<Spill> {
        if self.ghosts <= self.in_memory || self.in_flight.is_some() || self.spill_off {
            return None;
        }
        let to = self.disk.clone()?;
        let size = SPILL_BATCH.min(self.in_memory / 2).max(1);
        let mut batch = Vec::with_capacity(size);
        let mut in_flight = std::collections::HashSet::with_capacity(size);
        while batch.len() < size {
            let Some(ino) = self.ghost_order.pop_front() else {
                break;
            };
            if let Some(Slot::Ghost(g)) = self.nodes.get(&ino)
                && in_flight.insert(ino)
            {
                batch.push((ino, g.0, g.1.clone()));
            }
        }
        if batch.is_empty() {
            return None;
        }
        self.in_flight = Some(in_flight);
        Some(Spill { to, batch })
    }

    /// The batch of [`Inodes::spill`] is on disk (`written`), or could not
    /// be written: what is still the same ghost leaves memory; what was made
    /// live again, moved or dropped meanwhile leaves the disk.
    pub fn spilled(&mut self, s: Spill, written: bool) {
        self.in_flight = None;
        if !written {
            // It stays in memory (the write was one transaction: none of it
            // is on disk), and so do the ghosts to come; those on disk are
            // still found there.
            self.spill_off = true;
            self.ghost_order.extend(s.batch.iter().map(|b| b.0));
            return;
        }
        for (ino, parent, name) in s.batch {
            let same = match self.nodes.get(&ino) {
                Some(Slot::Ghost(g)) if g.0 == parent && g.1 == name => true,
                Some(Slot::Ghost(_)) => {
                    // Moved while the batch was out: still a ghost, to go
                    // to disk with a later batch.
                    self.ghost_order.push_back(ino);
                    false
                }
                _ => false,
            };
            if !same {
                s.to.remove(ino);
                continue;
            }
            let h = self.hash(parent, &name);
            if let Ok(e) = self.by_path.find_entry(h, |&(_, i)| i == ino) {
                e.remove();
            }
            self.nodes.remove(&ino);
            self.ghosts -= 1;
        }
    }

    /// The place of a forgotten path's number.
    pub fn ghost(&self, ino: Ino) -> Option<(Ino, Box<[u8]>)> {
        match self.nodes.get(&ino) {
            Some(Slot::Ghost(g)) => Some((g.0, g.1.clone())),
            Some(Slot::Live(..)) => None,
            None if self.in_flight.as_ref().is_some_and(|f| f.contains(&ino)) => None,
            None => self.disk.as_ref()?.place(ino),
        }
    }

    /// Numbers kept only as places (see `make_ghost`), in memory and on disk.
    pub fn ghosts(&self) -> usize {
        self.ghosts + self.disk.as_ref().map_or(0, |d| d.len())
    }

    /// Of those, the ones on disk.
    pub fn ghosts_on_disk(&self) -> usize {
        self.disk.as_ref().map_or(0, |d| d.len())
    }

    /// The number at (parent, name) in memory, if that path is linked.
    fn find_here(&self, parent: Ino, name: &[u8]) -> Option<Ino> {
        let h = self.hash(parent, name);
        let nodes = &self.nodes;
        let here = at(nodes, parent, name);
        self.by_path
            .find(h, |&(eh, i)| eh == h && here(&i))
            .map(|&(_, i)| i)
    }

    /// The number of a forgotten path on disk at (parent, name). What
    /// memory holds of a number (or a batch on its way) overrides the disk.
    fn find_on_disk(&self, parent: Ino, name: &[u8]) -> Option<Ino> {
        let ino = self.disk.as_ref()?.find(parent, name)?;
        let here = self.nodes.contains_key(&ino)
            || self.in_flight.as_ref().is_some_and(|f| f.contains(&ino));
        (!here).then_some(ino)
    }

    /// The number at (parent, name), if that path is linked.
    fn find(&self, parent: Ino, name: &[u8]) -> Option<Ino> {
        self.find_here(parent, name)
            .or_else(|| self.find_on_disk(parent, name))
    }

    /// Brings a forgotten path on disk at (parent, name) back into memory
    /// (as a ghost), so that what changes it changes memory only.
    fn pull(&mut self, parent: Ino, name: &[u8]) {
        if self.find_here(parent, name).is_some() {
            return;
        }
        let Some(ino) = self.find_on_disk(parent, name) else {
            return;
        };
        if let Some(d) = &self.disk {
            d.remove(ino);
        }
        self.nodes
            .insert(ino, Slot::Ghost(Box::new((parent, name.into()))));
        self.ghosts += 1;
        self.ghost_order.push_back(ino);
        self.link(ino);
    }

    /// Takes (parent, name) out of `by_path`; returns the number it had.
    fn take(&mut self, parent: Ino, name: &[u8]) -> Option<Ino> {
        self.pull(parent, name);
        let h = self.hash(parent, name);
        let nodes = &self.nodes;
        let here = at(nodes, parent, name);
        let ino = match self.by_path.find_entry(h, |&(eh, i)| eh == h && here(&i)) {
            Ok(e) => e.remove().0.1,
            Err(_) => return None,
        };
        Some(ino)
    }

    /// A forgotten path that no longer leads anywhere has nothing to keep.
    fn drop_ghost(&mut self, ino: Ino) {
        if let Some(Slot::Ghost(_)) = self.nodes.get(&ino) {
            self.nodes.remove(&ino);
            self.ghosts -= 1;
        }
    }

    /// Gives `ino` (live or forgotten) the place (parent, name).
    fn move_to(&mut self, ino: Ino, parent: Ino, name: &[u8]) {
        match self.nodes.get_mut(&ino) {
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
            None => {}
        }
    }

    /// Links `ino` at the place its slot holds.
    fn link(&mut self, ino: Ino) {
        let Some((parent, name)) = self.nodes.get(&ino).map(|s| s.place()) else {
            return;
        };
        let h = self.hash(parent, name);
        self.by_path.insert_unique(h, (h, ino), |&(eh, _)| eh);
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
        self.pull(parent, name);
        let (ino, new) = match self.find_here(parent, name) {
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
        self.pull(p1, n1);
        self.pull(p2, n2);
        let (Some(a), Some(b)) = (self.find_here(p1, n1), self.find_here(p2, n2)) else {
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
        {
            self.nodes.remove(&ino);
            self.live -= 1;
        }
    }

    /// Whether a path leads to `ino`.
    pub fn is_linked(&self, n: &Node) -> bool {
        n.ino == ROOT || self.find_here(n.parent, &n.name) == Some(n.ino)
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
        agree_with_a_map_of_paths(None);
    }

    /// The same, with at most 2 ghosts in memory and the rest on disk, and
    /// other changes made while a batch is on its way there.
    #[test]
    fn the_table_agrees_with_a_map_of_paths_with_ghosts_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        agree_with_a_map_of_paths(Some(dir.path()));
    }

    /// A batch that cannot be written stays in memory and ends spilling;
    /// what is already on disk is still found there, with its number.
    #[test]
    fn a_failed_spill_keeps_every_number() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(crate::inodes::ghosts::Ghosts::new(dir.path()));
        let mut t = Inodes::new(Kind::Root);
        t.keep_ghosts_in(store.clone(), 2);
        let names: Vec<Vec<u8>> = (0..8).map(|i| format!("n{i}").into_bytes()).collect();
        let inos: Vec<Ino> = names
            .iter()
            .map(|n| t.upsert(ROOT, n, Kind::CommitsDir).ino)
            .collect();
        for &i in &inos {
            t.make_ghost(i);
        }
        let s = t.spill().unwrap();
        let written = s.to.put(&s.batch);
        assert!(written);
        t.spilled(s, true);
        assert!(t.ghosts_on_disk() > 0);
        let s = t.spill().unwrap();
        t.spilled(s, false);
        assert!(t.spill().is_none(), "spilling goes on after a failure");
        for (n, &i) in names.iter().zip(&inos) {
            assert_eq!(t.number(ROOT, n), Some(i));
            assert!(t.ghost(i).is_some());
        }
    }

    fn agree_with_a_map_of_paths(disk: Option<&std::path::Path>) {
        use std::collections::HashMap;
        let mut t = Inodes::new(Kind::Root);
        let store = disk.map(|d| Arc::new(crate::inodes::ghosts::Ghosts::new(d)));
        if let Some(s) = &store {
            t.keep_ghosts_in(s.clone(), 2);
        }
        let mut out: Option<(Spill, bool)> = None;
        let mut most_on_disk = 0;
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
            if (r >> 40) % 5 == 1 {
                // A batch of ghosts is taken out, written, then handed back,
                // with other steps in between.
                match out.take() {
                    None => {
                        out = t.spill().map(|s| {
                            let written = s.to.put(&s.batch);
                            (s, written)
                        })
                    }
                    Some((s, written)) => t.spilled(s, written),
                }
                most_on_disk = most_on_disk.max(t.ghosts_on_disk());
                continue;
            }
            match (r >> 32) % 4 {
                0 => {
                    let ino = t.upsert(p, &n, Kind::CommitsDir).ino;
                    let want = *model.entry((p, n)).or_insert(ino);
                    assert_eq!(ino, want);
                }
                1 => {
                    assert_eq!(t.unlink(p, &n), model.remove(&(p, n.clone())));
                    assert_eq!(t.number(p, &n), None);
                }
                2 => {
                    if let Some(ino) = model.remove(&(p, n.clone())) {
                        let replaced = model.insert((p2, n2.clone()), ino);
                        assert_eq!(t.rename(p, &n, p2, &n2), replaced);
                        if (p, &n) != (p2, &n2) {
                            assert_eq!(t.number(p, &n), None);
                        }
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
        if let Some((s, written)) = out.take() {
            t.spilled(s, written);
        }
        if store.is_some() {
            assert!(most_on_disk >= 5, "{most_on_disk} on disk at most");
            assert!(t.ghosts() - t.ghosts_on_disk() <= 3);
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
