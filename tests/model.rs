//! Reference-model property tests of the write side, on the core (no mount).
//!
//! Random sequences of create, write at offsets, truncate, rename, unlink,
//! mkdir, rmdir, chmod and fsync over a tiny name alphabet run against the core
//! and against a `BTreeMap` model of the branch ("only one definition of
//! correctness"). After every step the whole tree seen through the core must
//! equal the model, and the two must agree on success or the errno; after
//! every fsync the tree committed to the branch must equal the model's files.
//! Every failure found stays below as a named `regression_*` test.

use std::collections::BTreeMap;

use commitfs::error::FsError;
use commitfs::inodes::ROOT;
use commitfs::model::FsConfig;
use commitfs::model::{RENAME_NOREPLACE, SetAttr};
use commitfs::store::repo::Repo;
use commitfs::view::{CommitFs, FileKind};
use git2::{Repository, Signature};
use proptest::prelude::*;

type Path = Vec<Vec<u8>>;

#[derive(Debug, Clone, PartialEq)]
enum M {
    Dir,
    File(Vec<u8>, bool),
}

/// The model: every path in the branch (directories included).
#[derive(Debug, Clone, Default)]
struct Model {
    nodes: BTreeMap<Path, M>,
}

impl Model {
    fn children(&self, p: &Path) -> Vec<Path> {
        self.nodes
            .keys()
            .filter(|k| k.len() == p.len() + 1 && k.starts_with(p))
            .cloned()
            .collect()
    }
    /// Path resolution of everything before the last component, as namei does:
    /// a missing directory is ENOENT, a file in the way ENOTDIR.
    fn parent_ok(&self, p: &Path) -> Result<(), FsError> {
        for i in 1..p.len() {
            match self.nodes.get(&p[..i]) {
                Some(M::Dir) => {}
                Some(M::File(..)) => return Err(FsError::NotDir),
                None => return Err(FsError::NotFound),
            }
        }
        Ok(())
    }
    /// Files only, as Git stores them.
    fn files(&self) -> BTreeMap<Path, (Vec<u8>, bool)> {
        self.nodes
            .iter()
            .filter_map(|(k, v)| match v {
                M::File(d, x) => Some((k.clone(), (d.clone(), *x))),
                M::Dir => None,
            })
            .collect()
    }
}

#[derive(Debug, Clone)]
enum Op {
    Create(Path),
    Write(Path, u16, Vec<u8>),
    Truncate(Path, u16),
    Unlink(Path),
    Mkdir(Path),
    Rmdir(Path),
    Rename(Path, Path, bool),
    Chmod(Path, bool),
    Fsync,
    /// Commit, then let every clean written file go back to being its blob.
    Quiesce,
    /// The daemon dies (its memory is gone, nothing more is committed) and
    /// the next one starts on the same repository: it must show everything.
    Die,
}

fn name() -> impl Strategy<Value = Vec<u8>> {
    prop::sample::select(vec![b"a".to_vec(), b"b".to_vec(), b"c".to_vec()])
}

fn path() -> impl Strategy<Value = Path> {
    prop::collection::vec(name(), 1..4)
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => path().prop_map(Op::Create),
        4 => (path(), 0u16..300, prop::collection::vec(any::<u8>(), 0..100)).prop_map(|(p, o, d)| Op::Write(p, o, d)),
        1 => (path(), 0u16..300).prop_map(|(p, n)| Op::Truncate(p, n)),
        2 => path().prop_map(Op::Unlink),
        3 => path().prop_map(Op::Mkdir),
        1 => path().prop_map(Op::Rmdir),
        3 => (path(), path(), any::<bool>()).prop_map(|(a, b, n)| Op::Rename(a, b, n)),
        1 => (path(), any::<bool>()).prop_map(|(p, x)| Op::Chmod(p, x)),
        1 => Just(Op::Fsync),
        1 => Just(Op::Quiesce),
        1 => Just(Op::Die),
    ]
}

/// Applies `op` to the model; returns what the core must answer.
fn apply_model(m: &mut Model, op: &Op) -> Result<(), FsError> {
    match op {
        Op::Fsync | Op::Quiesce | Op::Die => {}
        Op::Rename(a, b, _) => {
            m.parent_ok(a)?;
            m.parent_ok(b)?;
        }
        Op::Create(p)
        | Op::Write(p, ..)
        | Op::Truncate(p, _)
        | Op::Unlink(p)
        | Op::Mkdir(p)
        | Op::Rmdir(p)
        | Op::Chmod(p, _) => m.parent_ok(p)?,
    }
    match op {
        Op::Create(p) => {
            m.parent_ok(p)?;
            if m.nodes.contains_key(p) {
                return Err(FsError::Exists);
            }
            m.nodes.insert(p.clone(), M::File(Vec::new(), false));
        }
        Op::Write(p, off, data) => match m.nodes.get_mut(p) {
            Some(M::File(_, _)) if data.is_empty() => {}
            Some(M::File(d, _)) => {
                let end = *off as usize + data.len();
                if d.len() < end {
                    d.resize(end, 0);
                }
                d[*off as usize..end].copy_from_slice(data);
            }
            Some(M::Dir) => return Err(FsError::IsDir),
            None => return Err(FsError::NotFound),
        },
        Op::Truncate(p, n) => match m.nodes.get_mut(p) {
            Some(M::File(d, _)) => d.resize(*n as usize, 0),
            Some(M::Dir) => return Err(FsError::IsDir),
            None => return Err(FsError::NotFound),
        },
        Op::Unlink(p) => match m.nodes.get(p) {
            Some(M::File(..)) => {
                m.nodes.remove(p);
            }
            Some(M::Dir) => return Err(FsError::IsDir),
            None => return Err(FsError::NotFound),
        },
        Op::Mkdir(p) => {
            m.parent_ok(p)?;
            if m.nodes.contains_key(p) {
                return Err(FsError::Exists);
            }
            m.nodes.insert(p.clone(), M::Dir);
        }
        Op::Rmdir(p) => match m.nodes.get(p) {
            Some(M::Dir) if !m.children(p).is_empty() => return Err(FsError::NotEmpty),
            Some(M::Dir) => {
                m.nodes.remove(p);
            }
            Some(M::File(..)) => return Err(FsError::NotDir),
            None => return Err(FsError::NotFound),
        },
        Op::Rename(a, b, noreplace) => {
            let Some(src) = m.nodes.get(a).cloned() else {
                return Err(FsError::NotFound);
            };
            m.parent_ok(b)?;
            if a == b {
                return Ok(());
            }
            if src == M::Dir && b.starts_with(a) {
                return Err(FsError::Invalid);
            }
            if let Some(dst) = m.nodes.get(b).cloned() {
                if *noreplace {
                    return Err(FsError::Exists);
                }
                match (&src, &dst) {
                    (M::Dir, M::File(..)) => return Err(FsError::NotDir),
                    (M::File(..), M::Dir) => return Err(FsError::IsDir),
                    (M::Dir, M::Dir) if !m.children(b).is_empty() => return Err(FsError::NotEmpty),
                    _ => {}
                }
                m.nodes.remove(b);
            }
            let moved: Vec<(Path, M)> = m
                .nodes
                .iter()
                .filter(|(k, _)| k.starts_with(a))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            for (k, _) in &moved {
                m.nodes.remove(k);
            }
            for (k, v) in moved {
                let mut nk = b.clone();
                nk.extend_from_slice(&k[a.len()..]);
                m.nodes.insert(nk, v);
            }
        }
        Op::Chmod(p, x) => match m.nodes.get_mut(p) {
            Some(M::File(_, e)) => *e = *x,
            Some(M::Dir) => {}
            None => return Err(FsError::NotFound),
        },
        Op::Fsync | Op::Quiesce | Op::Die => {}
    }
    Ok(())
}

struct Sut {
    _dir: tempfile::TempDir,
    git_dir: std::path::PathBuf,
    fs: Option<std::sync::Arc<CommitFs>>,
    root: u64,
}

fn cfg() -> FsConfig {
    FsConfig {
        author: Some("Model <model@example.com>".into()),
        ..FsConfig::default()
    }
}

fn sut() -> Sut {
    let dir = tempfile::tempdir().unwrap();
    let repo = Repository::init_bare(dir.path()).unwrap();
    let tree = repo.treebuilder(None).unwrap().write().unwrap();
    let tree = repo.find_tree(tree).unwrap();
    let sig = Signature::new("T", "t@example.com", &git2::Time::new(1_700_000_000, 0)).unwrap();
    repo.commit(Some("refs/heads/main"), &sig, &sig, "empty", &tree, &[])
        .unwrap();
    let fs = CommitFs::new(Repo::open(dir.path()).unwrap(), cfg()).unwrap();
    let root = fs.lookup(ROOT, b"main").unwrap().attr.ino;
    Sut {
        git_dir: dir.path().to_path_buf(),
        _dir: dir,
        fs: Some(fs),
        root,
    }
}

impl Sut {
    fn fs(&self) -> &CommitFs {
        self.fs.as_ref().expect("a daemon runs")
    }
    /// The daemon dies: whatever it held in memory is gone; the next one
    /// finds the overlay on disk.
    fn die(&mut self) {
        drop(self.fs.take());
        let fs = CommitFs::new(Repo::open(&self.git_dir).unwrap(), cfg()).unwrap();
        self.root = fs.lookup(ROOT, b"main").unwrap().attr.ino;
        self.fs = Some(fs);
    }
    fn ino(&self, p: &[Vec<u8>]) -> Result<u64, FsError> {
        let mut ino = self.root;
        for c in p {
            ino = self.fs().lookup(ino, c)?.attr.ino;
        }
        Ok(ino)
    }
    /// The parent directory's inode and the last name, resolving the parent
    /// as the kernel does (a file in the way is ENOTDIR).
    fn split<'a>(&self, p: &'a Path) -> Result<(u64, &'a [u8]), FsError> {
        let parent = self.ino(&p[..p.len() - 1])?;
        if self.fs().getattr(parent)?.attr.kind != FileKind::Dir {
            return Err(FsError::NotDir);
        }
        Ok((parent, &p[p.len() - 1]))
    }
    fn apply(&self, op: &Op) -> Result<(), FsError> {
        match op {
            Op::Create(p) => {
                let (d, n) = self.split(p)?;
                self.fs().create(d, n, 0o644).map(|_| ())
            }
            Op::Write(p, off, data) => {
                let i = self.ino(p)?;
                self.fs().open(i, true)?;
                self.fs().write(i, *off as u64, data).map(|_| ())
            }
            Op::Truncate(p, n) => {
                let i = self.ino(p)?;
                if self.fs().getattr(i)?.attr.kind == FileKind::Dir {
                    return Err(FsError::IsDir);
                }
                self.fs()
                    .setattr(
                        i,
                        SetAttr {
                            size: Some(*n as u64),
                            ..SetAttr::default()
                        },
                    )
                    .map(|_| ())
            }
            Op::Unlink(p) => {
                let (d, n) = self.split(p)?;
                self.fs().unlink(d, n)
            }
            Op::Mkdir(p) => {
                let (d, n) = self.split(p)?;
                self.fs().mkdir(d, n, 0o755).map(|_| ())
            }
            Op::Rmdir(p) => {
                let (d, n) = self.split(p)?;
                self.fs().rmdir(d, n)
            }
            Op::Rename(a, b, noreplace) => {
                let (d1, n1) = self.split(a)?;
                let (d2, n2) = self.split(b)?;
                self.fs().rename(
                    d1,
                    n1,
                    d2,
                    n2,
                    if *noreplace { RENAME_NOREPLACE } else { 0 },
                )
            }
            Op::Chmod(p, x) => {
                let i = self.ino(p)?;
                let mode = if *x { 0o755 } else { 0o644 };
                self.fs()
                    .setattr(
                        i,
                        SetAttr {
                            mode: Some(mode),
                            ..SetAttr::default()
                        },
                    )
                    .map(|_| ())
            }
            Op::Fsync => self.fs().fsync(self.root),
            Op::Die => Ok(()),
            Op::Quiesce => {
                self.fs().fsync(self.root)?;
                self.fs().dematerialize_clean(std::time::Duration::ZERO);
                Ok(())
            }
        }
    }

    /// The whole branch as the core shows it.
    fn seen(&self) -> Model {
        let mut m = Model::default();
        self.walk(self.root, Vec::new(), &mut m);
        m
    }
    fn walk(&self, ino: u64, prefix: Path, m: &mut Model) {
        let d = self.fs().opendir(ino).unwrap();
        let entries = self.fs().readdir(ino, d.fh, 0, 10_000).unwrap();
        self.fs().releasedir(d.fh);
        for e in entries.iter().skip(2) {
            let mut p = prefix.clone();
            p.push(e.name.to_vec());
            let a = self.fs().lookup(ino, &e.name).unwrap().attr;
            match a.kind {
                FileKind::Dir => {
                    m.nodes.insert(p.clone(), M::Dir);
                    self.walk(a.ino, p, m);
                }
                _ => {
                    let data = self.fs().read(a.ino, 0, 1 << 20).unwrap();
                    assert_eq!(data.len() as u64, a.size, "size of {p:?}");
                    m.nodes.insert(p, M::File(data, a.perm & 0o100 != 0));
                }
            }
        }
    }

    /// The files of the commit `main` points to.
    fn committed(&self) -> BTreeMap<Path, (Vec<u8>, bool)> {
        let repo = Repository::open_bare(&self.git_dir).unwrap();
        let tree = repo
            .revparse_single("main^{tree}")
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
                out.insert(p, (blob.content().to_vec(), e.filemode() == 0o100755));
            }
            git2::TreeWalkResult::Ok
        })
        .unwrap();
        out
    }
}

fn run(ops: &[Op]) {
    let mut s = sut();
    let mut m = Model::default();
    for (i, op) in ops.iter().enumerate() {
        let expected = apply_model(&mut m, op);
        if matches!(op, Op::Die) {
            s.die();
        }
        let got = s.apply(op);
        assert_eq!(
            got.is_ok(),
            expected.is_ok(),
            "step {i} {op:?}: core {got:?}, model {expected:?}"
        );
        if let (Err(g), Err(e)) = (&got, &expected) {
            assert_eq!(g.errno(), e.errno(), "step {i} {op:?}: errno");
        }
        assert_eq!(s.seen().nodes, m.nodes, "tree after step {i} {op:?}");
        if matches!(op, Op::Fsync | Op::Quiesce) {
            assert_eq!(s.committed(), m.files(), "committed tree after step {i}");
        }
    }
    s.fs().commit_all().unwrap();
    assert_eq!(s.committed(), m.files(), "committed tree at the end");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: std::env::var("MODEL_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(128), ..ProptestConfig::default() })]

    #[test]
    fn random_operations_agree_with_the_model(ops in prop::collection::vec(op(), 1..40)) {
        run(&ops);
    }
}

fn p(s: &str) -> Path {
    s.split('/').map(|c| c.as_bytes().to_vec()).collect()
}

/// Found by the property test: a zero-length write past the end claimed a
/// size the spill file did not have, and the commit failed to read it.
#[test]
fn regression_empty_write_past_the_end_changes_nothing() {
    run(&[
        Op::Create(p("a")),
        Op::Write(p("a"), 1, Vec::new()),
        Op::Fsync,
    ]);
}

#[test]
fn written_files_that_went_back_to_blobs_can_be_written_again() {
    run(&[
        Op::Create(p("a")),
        Op::Write(p("a"), 0, b"first".to_vec()),
        Op::Quiesce,
        Op::Write(p("a"), 5, b" second".to_vec()),
        Op::Chmod(p("a"), true),
        Op::Quiesce,
        Op::Truncate(p("a"), 3),
        Op::Fsync,
    ]);
}

#[test]
fn regression_rename_directory_over_empty_directory_then_commit() {
    run(&[
        Op::Mkdir(p("a")),
        Op::Create(p("a/b")),
        Op::Mkdir(p("c")),
        Op::Rename(p("a"), p("c"), false),
        Op::Write(p("c/b"), 3, b"xyz".to_vec()),
        Op::Fsync,
        Op::Unlink(p("c/b")),
        Op::Fsync,
    ]);
}

/// Found in a clean clone's CI run: a committed file's chmod, then the
/// daemon's death. The file's bytes are its committed blob, so recovery
/// does not replay them; its mode change must come back all the same.
#[test]
fn regression_chmod_of_a_committed_file_then_death() {
    run(&[
        Op::Create(p("a")),
        Op::Fsync,
        Op::Chmod(p("a"), true),
        Op::Die,
    ]);
}

/// Found by a longer run of the model: a committed file renamed, then the
/// daemon's death. Its bytes are its committed blob, but the branch has no
/// file of its new name: recovery must put it there.
#[test]
fn regression_a_new_directory_where_a_committed_one_was_renamed_from_then_death() {
    // CI found this one: the new `a` is empty, the committed `a/a` moved to
    // `b/a`; recovery made `a` from the branch's tree again.
    run(&[
        Op::Mkdir(p("a")),
        Op::Create(p("a/a")),
        Op::Fsync,
        Op::Rename(p("a"), p("b"), false),
        Op::Mkdir(p("a")),
        Op::Die,
    ]);
}

#[test]
fn regression_a_changed_committed_directory_renamed_to_a_new_name_then_death() {
    // Its rows are relative to its tree, which is not at its new name
    // (Quiesce: `a/a` is its blob again, no row of its own).
    run(&[
        Op::Mkdir(p("a")),
        Op::Create(p("a/a")),
        Op::Quiesce,
        Op::Create(p("a/b")),
        Op::Rename(p("a"), p("c"), false),
        Op::Die,
    ]);
}

#[test]
fn regression_two_committed_directories_swapped_then_death() {
    // Each now stands where the other's tree was.
    run(&[
        Op::Mkdir(p("a")),
        Op::Create(p("a/x")),
        Op::Mkdir(p("b")),
        Op::Create(p("b/y")),
        Op::Quiesce,
        Op::Rename(p("a"), p("c"), false),
        Op::Rename(p("b"), p("a"), false),
        Op::Rename(p("c"), p("b"), false),
        Op::Create(p("a/z")),
        Op::Die,
    ]);
}

#[test]
fn regression_rename_of_a_committed_file_then_death() {
    run(&[
        Op::Create(p("a")),
        Op::Fsync,
        Op::Rename(p("a"), p("b"), false),
        Op::Die,
    ]);
}
