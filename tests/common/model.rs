//! The reference model of a branch's write side, shared by tests/model.rs
//! (on the core) and tests/model_mount.rs (through a real mount): a
//! `BTreeMap` of every path the branch shows, the operations that change it,
//! and the errno each must fail with, in the order the kernel checks them
//! (the core only ever sees what the kernel passes it).
//!
//! Symlink targets are chosen so that they never resolve to anything (no
//! component is a name of the alphabet): a path through one, or an operation
//! that follows one (open, truncate, chmod), is `ENOENT`, as for any dangling
//! link.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;

pub type Path = Vec<Vec<u8>>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum M {
    Dir,
    /// Bytes, and whether the owner's executable bit is set.
    File(Vec<u8>, bool),
    /// The target.
    Symlink(Vec<u8>),
}

/// A blob of a committed tree: its bytes and its mode (100644, 100755 or
/// 120000).
pub type Blob = (Vec<u8>, u32);

/// The model: every path the branch shows (directories included), what the
/// branch's tip holds (files and symlinks: `base`, the tree the mount last
/// committed or followed), and the files the mount wrote (created, wrote,
/// truncated) since it last committed them.
#[derive(Debug, Clone, Default)]
pub struct Model {
    pub nodes: BTreeMap<Path, M>,
    base: BTreeMap<Path, M>,
    written: BTreeSet<Path>,
}

#[derive(Debug, Clone)]
pub enum Op {
    Create(Path),
    Write(Path, u16, Vec<u8>),
    Truncate(Path, u16),
    Unlink(Path),
    Mkdir(Path),
    Rmdir(Path),
    /// From, to, RENAME_NOREPLACE.
    Rename(Path, Path, bool),
    Chmod(Path, bool),
    /// symlink(target, path).
    Symlink(Path, Vec<u8>),
    /// A commit barrier: fsync of the branch's directory.
    Fsync,
    /// Commit, then let every clean written file go back to being its blob.
    Quiesce,
    /// The daemon dies (its memory is gone, nothing more is committed) and
    /// the next one starts on the same repository: it must show everything.
    Die,
    /// A clean stop (which commits everything) and a new daemon.
    Remount,
    /// Another writer commits a file of these bytes (mode 100644) at this
    /// path on top of the branch's tip, outside the mount; the mount follows.
    TheirCommit(Path, Vec<u8>),
}

impl Op {
    /// Whether the op changes the tree the mount shows (starts a change).
    pub fn is_change(&self) -> bool {
        !matches!(
            self,
            Op::Fsync | Op::Quiesce | Op::Die | Op::Remount | Op::TheirCommit(..)
        )
    }
}

/// Names the kernel passes and the core must refuse, with the errno: `.git`
/// in any case and its aliases (EINVAL), and a name of 256 bytes
/// (ENAMETOOLONG). See SEMANTICS, "A repository is untrusted input".
pub const DOTGIT_ALIASES: &[&str] = &[".git", ".GIT", ".Git", "git~1", "GIT~1", ".git.", ".git "];

/// The errno that making `name` fails with, if any: `symlink` for a
/// symlink (a symlink named `.gitmodules` is refused too).
pub fn refused_name(name: &[u8], symlink: bool) -> Option<i32> {
    if name.len() > 255 {
        return Some(libc::ENAMETOOLONG);
    }
    if DOTGIT_ALIASES.iter().any(|a| a.as_bytes() == name) || (symlink && name == b".gitmodules") {
        return Some(libc::EINVAL);
    }
    None
}

pub fn name() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        10 => prop::sample::select(vec![b"a".to_vec(), b"b".to_vec(), b"c".to_vec()]),
        1 => Just(b".gitmodules".to_vec()),
    ]
}

/// A last component for an operation that makes a name: mostly a good one,
/// sometimes one the core must refuse.
pub fn new_name() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        12 => name(),
        2 => prop::sample::select(DOTGIT_ALIASES.to_vec()).prop_map(|s| s.as_bytes().to_vec()),
        1 => Just(vec![b'n'; 256]),
    ]
}

pub fn path() -> impl Strategy<Value = Path> {
    prop::collection::vec(name(), 1..4)
}

pub fn new_path() -> impl Strategy<Value = Path> {
    (prop::collection::vec(name(), 0..3), new_name()).prop_map(|(mut p, n)| {
        p.push(n);
        p
    })
}

/// Targets that never resolve (no component is a name of the alphabet, no
/// component too long, never above the mount's root), one of them long.
pub fn target() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::sample::select(vec![
            b"x".to_vec(),
            b"x/y".to_vec(),
            b"../x".to_vec(),
            b"./zz".to_vec(),
            b"x y".to_vec(),
        ]),
        (1usize..1500).prop_map(|n| {
            let mut t = b"x/".repeat(n);
            t.push(b'y');
            t
        }),
    ]
}

/// Every op; `mount`: as the mount test runs them (no `Die`: a killed
/// daemon loses what was not fsynced, as on any filesystem).
pub fn op(mount: bool) -> impl Strategy<Value = Op> {
    let die = if mount { Op::Remount } else { Op::Die };
    prop_oneof![
        3 => new_path().prop_map(Op::Create),
        4 => (path(), 0u16..300, prop::collection::vec(any::<u8>(), 0..100)).prop_map(|(p, o, d)| Op::Write(p, o, d)),
        1 => (path(), 0u16..300).prop_map(|(p, n)| Op::Truncate(p, n)),
        2 => path().prop_map(Op::Unlink),
        3 => new_path().prop_map(Op::Mkdir),
        1 => path().prop_map(Op::Rmdir),
        3 => (path(), new_path(), any::<bool>()).prop_map(|(a, b, n)| Op::Rename(a, b, n)),
        1 => (path(), any::<bool>()).prop_map(|(p, x)| Op::Chmod(p, x)),
        2 => (new_path(), target()).prop_map(|(p, t)| Op::Symlink(p, t)),
        1 => Just(Op::Fsync),
        1 => Just(Op::Quiesce),
        1 => Just(die),
        1 => Just(Op::Remount),
        2 => (path(), prop::collection::vec(any::<u8>(), 0..20)).prop_map(|(p, d)| Op::TheirCommit(p, d)),
    ]
}

impl Model {
    pub fn children(&self, p: &Path) -> Vec<Path> {
        self.nodes
            .keys()
            .filter(|k| k.len() == p.len() + 1 && k.starts_with(p))
            .cloned()
            .collect()
    }

    /// Path resolution of everything before the last component, as namei
    /// does: a missing directory (or a dangling symlink in the way) is
    /// ENOENT, a file in the way ENOTDIR.
    pub fn parent_ok(&self, p: &Path) -> Result<(), i32> {
        for i in 1..p.len() {
            match self.nodes.get(&p[..i]) {
                Some(M::Dir) => {}
                Some(M::File(..)) => return Err(libc::ENOTDIR),
                Some(M::Symlink(_)) | None => return Err(libc::ENOENT),
            }
        }
        Ok(())
    }

    /// Files and symlinks, as Git stores them.
    pub fn files(&self) -> BTreeMap<Path, Blob> {
        blobs(&self.nodes)
    }

    /// The files and symlinks of the branch's tip, as the model knows it.
    pub fn tip(&self) -> BTreeMap<Path, Blob> {
        blobs(&self.base)
    }

    /// What the tip has at `p`: a directory if anything is below it.
    fn base_node(&self, p: &Path) -> Option<M> {
        if let Some(m) = self.base.get(p) {
            return Some(m.clone());
        }
        self.base
            .range(p.clone()..)
            .next()
            .filter(|(k, _)| k.len() > p.len() && k.starts_with(p))
            .map(|_| M::Dir)
    }

    /// Whether another writer can commit a file at `p` on top of the tip
    /// changing that one path: no file or symlink of the tip is in the way
    /// and `p` is not a directory there. Otherwise the op does nothing.
    pub fn theirs_applies(&self, p: &Path) -> bool {
        (1..p.len()).all(|i| matches!(self.base_node(&p[..i].to_vec()), None | Some(M::Dir)))
            && self.base_node(p) != Some(M::Dir)
    }

    /// Whether the mount has an uncommitted change of path `p` itself: what
    /// it shows is not what the tip has there (directories count as the
    /// same), or it is a file the mount wrote and has not committed since.
    fn pending(&self, p: &Path) -> bool {
        self.written.contains(p) || self.nodes.get(p).cloned() != self.base_node(p)
    }

    fn committed(&mut self) {
        self.base = self
            .nodes
            .iter()
            .filter(|(_, v)| **v != M::Dir)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        self.written.clear();
    }

    /// The other writer's commit, followed. SEMANTICS, "Other writers":
    /// "a path this mount changed (wrote, created, deleted, renamed,
    /// chmod-ed) shows the mount's version; every other path shows the new
    /// tip. A file this mount wrote that is committed and has not changed
    /// since counts as unchanged." So `p` shows theirs unless the mount
    /// changed `p`, or changed a directory above it into something that is
    /// not a directory (deleted it, made a file of it): then the mount's
    /// version stands there.
    fn theirs(&mut self, p: &Path, data: &[u8]) {
        if !self.theirs_applies(p) {
            return;
        }
        let ancestors: Vec<Path> = (1..p.len()).map(|i| p[..i].to_vec()).collect();
        // "An empty directory this mount made gives way to a file or symlink
        // another writer puts at its name".
        let empty_made_here = self.nodes.get(p) == Some(&M::Dir)
            && self.base_node(p).is_none()
            && self.children(p).is_empty();
        let blocked = (self.pending(p) && !empty_made_here)
            || ancestors
                .iter()
                .any(|q| self.nodes.get(q) != Some(&M::Dir) && self.pending(q));
        self.base.insert(p.clone(), M::File(data.to_vec(), false));
        if blocked {
            return;
        }
        for q in ancestors {
            self.nodes.insert(q, M::Dir);
        }
        self.nodes.insert(p.clone(), M::File(data.to_vec(), false));
    }

    /// Applies `op` to the model; returns the errno the system must fail
    /// with, if it must.
    pub fn apply(&mut self, op: &Op) -> Result<(), i32> {
        match op {
            Op::Fsync | Op::Quiesce | Op::Remount => {
                self.committed();
                Ok(())
            }
            Op::Die => Ok(()),
            Op::TheirCommit(p, data) => {
                self.theirs(p, data);
                Ok(())
            }
            Op::Create(p) => self.make(p, M::File(Vec::new(), false)),
            Op::Mkdir(p) => self.make(p, M::Dir),
            Op::Symlink(p, t) => self.make(p, M::Symlink(t.clone())),
            Op::Write(p, off, data) => {
                self.parent_ok(p)?;
                match self.nodes.get_mut(p) {
                    Some(M::File(_, _)) if data.is_empty() => {}
                    Some(M::File(d, _)) => {
                        let end = *off as usize + data.len();
                        if d.len() < end {
                            d.resize(end, 0);
                        }
                        d[*off as usize..end].copy_from_slice(data);
                        self.written.insert(p.clone());
                    }
                    Some(M::Dir) => return Err(libc::EISDIR),
                    Some(M::Symlink(_)) | None => return Err(libc::ENOENT),
                }
                Ok(())
            }
            Op::Truncate(p, n) => {
                self.parent_ok(p)?;
                match self.nodes.get_mut(p) {
                    Some(M::File(d, _)) => d.resize(*n as usize, 0),
                    Some(M::Dir) => return Err(libc::EISDIR),
                    Some(M::Symlink(_)) | None => return Err(libc::ENOENT),
                }
                self.written.insert(p.clone());
                Ok(())
            }
            Op::Unlink(p) => {
                self.parent_ok(p)?;
                match self.nodes.get(p) {
                    Some(M::File(..)) | Some(M::Symlink(_)) => {
                        self.nodes.remove(p);
                        self.written.remove(p);
                        Ok(())
                    }
                    Some(M::Dir) => Err(libc::EISDIR),
                    None => Err(libc::ENOENT),
                }
            }
            Op::Rmdir(p) => {
                self.parent_ok(p)?;
                match self.nodes.get(p) {
                    Some(M::Dir) if !self.children(p).is_empty() => Err(libc::ENOTEMPTY),
                    Some(M::Dir) => {
                        self.nodes.remove(p);
                        Ok(())
                    }
                    Some(M::File(..)) | Some(M::Symlink(_)) => Err(libc::ENOTDIR),
                    None => Err(libc::ENOENT),
                }
            }
            Op::Chmod(p, x) => {
                self.parent_ok(p)?;
                match self.nodes.get_mut(p) {
                    Some(M::File(_, e)) => *e = *x,
                    Some(M::Dir) => {}
                    Some(M::Symlink(_)) | None => return Err(libc::ENOENT),
                }
                Ok(())
            }
            Op::Rename(a, b, noreplace) => self.rename(a, b, *noreplace),
        }
    }

    /// create (O_CREAT|O_EXCL), mkdir, symlink: the kernel looks the name
    /// up first (a name over 255 bytes is ENAMETOOLONG there; one that
    /// exists EEXIST), then asks the filesystem, which refuses `.git`.
    fn make(&mut self, p: &Path, node: M) -> Result<(), i32> {
        self.parent_ok(p)?;
        let last = &p[p.len() - 1];
        if last.len() > 255 {
            return Err(libc::ENAMETOOLONG);
        }
        if self.nodes.contains_key(p) {
            return Err(libc::EEXIST);
        }
        if let Some(e) = refused_name(last, matches!(node, M::Symlink(_))) {
            return Err(e);
        }
        if matches!(node, M::File(..)) {
            self.written.insert(p.clone());
        }
        self.nodes.insert(p.clone(), node);
        Ok(())
    }

    /// rename(2) (renameat2 with RENAME_NOREPLACE), in the order Linux
    /// checks: both parents; the source's lookup (ENOENT), the target's
    /// (ENAMETOOLONG); EEXIST for RENAME_NOREPLACE; the source above the
    /// target (EINVAL), the target above the source (ENOTEMPTY); the same
    /// entry (success, nothing happens); a directory over a non-directory
    /// (ENOTDIR) and the reverse (EISDIR); then the filesystem: a name it
    /// refuses (EINVAL), a target directory that is not empty (ENOTEMPTY).
    fn rename(&mut self, a: &Path, b: &Path, noreplace: bool) -> Result<(), i32> {
        self.parent_ok(a)?;
        self.parent_ok(b)?;
        let Some(src) = self.nodes.get(a).cloned() else {
            return Err(libc::ENOENT);
        };
        let last = &b[b.len() - 1];
        if last.len() > 255 {
            return Err(libc::ENAMETOOLONG);
        }
        let dst = self.nodes.get(b).cloned();
        if noreplace && dst.is_some() {
            return Err(libc::EEXIST);
        }
        if b.len() > a.len() && b.starts_with(a) {
            return Err(libc::EINVAL);
        }
        if a.len() > b.len() && a.starts_with(b) {
            return Err(libc::ENOTEMPTY);
        }
        if a == b {
            return Ok(());
        }
        match (&src, &dst) {
            (M::Dir, Some(M::File(..) | M::Symlink(_))) => return Err(libc::ENOTDIR),
            (M::File(..) | M::Symlink(_), Some(M::Dir)) => return Err(libc::EISDIR),
            _ => {}
        }
        if let Some(e) = refused_name(last, matches!(src, M::Symlink(_))) {
            return Err(e);
        }
        if dst == Some(M::Dir) && !self.children(b).is_empty() {
            return Err(libc::ENOTEMPTY);
        }
        if dst.is_some() {
            self.nodes.remove(b);
            self.written.remove(b);
        }
        let moved: Vec<(Path, M)> = self
            .nodes
            .iter()
            .filter(|(k, _)| k.starts_with(a))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let moved_written: Vec<Path> = self
            .written
            .iter()
            .filter(|k| k.starts_with(a))
            .cloned()
            .collect();
        let to = |k: &Path| {
            let mut nk = b.clone();
            nk.extend_from_slice(&k[a.len()..]);
            nk
        };
        for (k, _) in &moved {
            self.nodes.remove(k);
        }
        for k in &moved_written {
            self.written.remove(k);
        }
        for (k, v) in moved {
            self.nodes.insert(to(&k), v);
        }
        for k in moved_written {
            self.written.insert(to(&k));
        }
        Ok(())
    }
}

/// The files and symlinks of a tree of nodes, as Git stores them.
pub fn blobs(nodes: &BTreeMap<Path, M>) -> BTreeMap<Path, Blob> {
    nodes
        .iter()
        .filter_map(|(k, v)| match v {
            M::File(d, x) => Some((k.clone(), (d.clone(), if *x { 0o100755 } else { 0o100644 }))),
            M::Symlink(t) => Some((k.clone(), (t.clone(), 0o120000))),
            M::Dir => None,
        })
        .collect()
}

/// Every blob of the tree of the commit `refs/heads/main` points to, with
/// its mode.
pub fn committed_tree(repo: &git2::Repository) -> BTreeMap<Path, Blob> {
    let tree = repo
        .revparse_single("refs/heads/main^{tree}")
        .unwrap()
        .peel_to_tree()
        .unwrap();
    let mut out = BTreeMap::new();
    tree.walk(git2::TreeWalkMode::PreOrder, |dir, e| {
        if e.kind() == Some(git2::ObjectType::Blob) {
            let mut p: Path = dir
                .split('/')
                .filter(|s| !s.is_empty())
                .map(|s| s.as_bytes().to_vec())
                .collect();
            p.push(e.name_bytes().to_vec());
            let blob = repo.find_blob(e.id()).unwrap();
            out.insert(p, (blob.content().to_vec(), e.filemode() as u32));
        }
        git2::TreeWalkResult::Ok
    })
    .unwrap();
    out
}

/// Another writer: a commit on top of `refs/heads/main` whose tree differs
/// from its parent's only in a file of bytes `data` (100644) at `p`, the
/// directories above it made as needed. Returns the new commit.
pub fn their_commit(repo: &git2::Repository, p: &Path, data: &[u8]) -> git2::Oid {
    fn put(
        repo: &git2::Repository,
        tree: Option<git2::Tree<'_>>,
        p: &[Vec<u8>],
        blob: git2::Oid,
    ) -> git2::Oid {
        let mut tb = repo.treebuilder(tree.as_ref()).unwrap();
        let name = std::str::from_utf8(&p[0]).unwrap();
        if p.len() == 1 {
            if let Some(e) = tree.as_ref().and_then(|t| t.get_name(name)) {
                assert_ne!(e.filemode(), 0o040000, "their file {p:?} is a tree");
            }
            tb.insert(name, blob, 0o100644).unwrap();
        } else {
            let sub = tree.as_ref().and_then(|t| t.get_name(name)).map(|e| {
                assert_eq!(e.filemode(), 0o040000, "in the way of {p:?}");
                repo.find_tree(e.id()).unwrap()
            });
            let id = put(repo, sub, &p[1..], blob);
            tb.insert(name, id, 0o040000).unwrap();
        }
        tb.write().unwrap()
    }
    let tip = repo.refname_to_id("refs/heads/main").unwrap();
    let parent = repo.find_commit(tip).unwrap();
    let blob = repo.blob(data).unwrap();
    let tree = put(repo, Some(parent.tree().unwrap()), p, blob);
    let tree = repo.find_tree(tree).unwrap();
    let sig = git2::Signature::now("Other", "other@example.com").unwrap();
    repo.commit(
        Some("refs/heads/main"),
        &sig,
        &sig,
        "their change",
        &tree,
        &[&parent],
    )
    .unwrap()
}

/// Path `a/b/c` as components.
pub fn p(s: &str) -> Path {
    s.split('/').map(|c| c.as_bytes().to_vec()).collect()
}
