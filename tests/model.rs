//! Reference-model property tests of the write side, on the core (no mount).
//!
//! Random sequences of create, write at offsets, truncate, rename, unlink,
//! mkdir, rmdir, chmod, symlink, fsync, the daemon's death or clean restart,
//! and commits by another writer, over a tiny name alphabet (and the names
//! the core must refuse: `.git` and its aliases, a symlink `.gitmodules`, a
//! name of 256 bytes) run against the core and against the model of
//! tests/common/model.rs ("only one definition of correctness"; the mount
//! test runs the same model). The harness asks the core what the kernel
//! would before it passes a request on (the lookup of a name to create, the
//! checks rename(2) makes itself), so that the core answers what it would
//! be asked. After every step the whole tree seen through the core must
//! equal the model, and the two must agree on success or the errno; after
//! every commit barrier the tree committed to the branch must equal the
//! model's files and symlinks (modes included), and after another writer's
//! commit the branch's tip must hold it. Every failure found stays below as
//! a named `regression_*` test.

mod common;

use commitfs::error::FsError;
use commitfs::inodes::ROOT;
use commitfs::model::FsConfig;
use commitfs::model::{RENAME_NOREPLACE, SetAttr};
use commitfs::store::repo::Repo;
use commitfs::view::{CommitFs, FileKind};
use common::model::*;
use git2::{Repository, Signature};
use proptest::prelude::*;

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

fn errno(e: FsError) -> i32 {
    e.errno()
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
    /// The parent directory's inode and the last name, resolving the parent
    /// as the kernel does: a file in the way is ENOTDIR, a symlink in the
    /// way is followed (every target the model makes dangles: ENOENT).
    fn split<'a>(&self, p: &'a Path) -> Result<(u64, &'a [u8]), i32> {
        let mut ino = self.root;
        for c in &p[..p.len() - 1] {
            let a = self.fs().lookup(ino, c).map_err(errno)?.attr;
            match a.kind {
                FileKind::Dir => ino = a.ino,
                FileKind::File => return Err(libc::ENOTDIR),
                FileKind::Symlink => return Err(libc::ENOENT),
            }
        }
        Ok((ino, &p[p.len() - 1]))
    }
    /// The object at `p` as an operation that follows symlinks finds it
    /// (open, truncate, chmod): a dangling symlink is ENOENT.
    fn follow(&self, p: &Path) -> Result<(u64, FileKind), i32> {
        let (d, n) = self.split(p)?;
        let a = self.fs().lookup(d, n).map_err(errno)?.attr;
        if a.kind == FileKind::Symlink {
            return Err(libc::ENOENT);
        }
        Ok((a.ino, a.kind))
    }
    /// The lookup the kernel makes before it creates `n` in `d`: EEXIST if
    /// it is there, the lookup's error if it fails otherwise.
    fn absent(&self, d: u64, n: &[u8]) -> Result<Option<commitfs::view::Attr>, i32> {
        match self.fs().lookup(d, n) {
            Ok(e) => Ok(Some(e.attr)),
            Err(e) if e.errno() == libc::ENOENT => Ok(None),
            Err(e) => Err(e.errno()),
        }
    }
    fn make<'a>(&self, p: &'a Path) -> Result<(u64, &'a [u8]), i32> {
        let (d, n) = self.split(p)?;
        if self.absent(d, n)?.is_some() {
            return Err(libc::EEXIST);
        }
        Ok((d, n))
    }
    fn apply(&mut self, op: &Op, theirs_applies: bool) -> Result<(), i32> {
        match op {
            Op::Create(p) => {
                let (d, n) = self.make(p)?;
                self.fs().create(d, n, 0o644).map(|_| ()).map_err(errno)
            }
            Op::Mkdir(p) => {
                let (d, n) = self.make(p)?;
                self.fs().mkdir(d, n, 0o755).map(|_| ()).map_err(errno)
            }
            Op::Symlink(p, t) => {
                let (d, n) = self.make(p)?;
                self.fs().symlink(d, n, t).map(|_| ()).map_err(errno)
            }
            Op::Write(p, off, data) => {
                let (i, kind) = self.follow(p)?;
                if kind == FileKind::Dir {
                    return Err(libc::EISDIR);
                }
                self.fs().open(i, true).map_err(errno)?;
                if data.is_empty() {
                    // The kernel sends no request for a write of nothing.
                    return Ok(());
                }
                self.fs()
                    .write(i, *off as u64, data)
                    .map(|_| ())
                    .map_err(errno)
            }
            Op::Truncate(p, n) => {
                let (i, kind) = self.follow(p)?;
                if kind == FileKind::Dir {
                    return Err(libc::EISDIR);
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
                    .map_err(errno)
            }
            Op::Unlink(p) => {
                // The kernel looks the name up, and refuses a directory
                // itself (EISDIR).
                let (d, n) = self.split(p)?;
                if self.fs().lookup(d, n).map_err(errno)?.attr.kind == FileKind::Dir {
                    return Err(libc::EISDIR);
                }
                self.fs().unlink(d, n).map_err(errno)
            }
            Op::Rmdir(p) => {
                // The kernel looks the name up, and refuses anything but a
                // directory itself (ENOTDIR).
                let (d, n) = self.split(p)?;
                if self.fs().lookup(d, n).map_err(errno)?.attr.kind != FileKind::Dir {
                    return Err(libc::ENOTDIR);
                }
                self.fs().rmdir(d, n).map_err(errno)
            }
            Op::Rename(a, b, noreplace) => self.rename(a, b, *noreplace),
            Op::Chmod(p, x) => {
                let (i, _) = self.follow(p)?;
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
                    .map_err(errno)
            }
            Op::Fsync => self.fs().fsync(self.root).map_err(errno),
            Op::Die => {
                self.die();
                Ok(())
            }
            Op::Remount => {
                // What the daemon does on its way out (unmount, SIGTERM).
                self.fs().commit_all().map_err(errno)?;
                self.fs().finish_overlay();
                self.fs().release_kept();
                self.die();
                Ok(())
            }
            Op::Quiesce => {
                self.fs().fsync(self.root).map_err(errno)?;
                self.fs().dematerialize_clean(std::time::Duration::ZERO);
                Ok(())
            }
            Op::TheirCommit(p, data) => {
                if theirs_applies {
                    // As the ref watcher tells the core.
                    let old = self.fs().ref_state().map_err(errno)?;
                    let repo = Repository::open_bare(&self.git_dir).unwrap();
                    their_commit(&repo, p, data);
                    let new = self.fs().ref_state().map_err(errno)?;
                    self.fs().refs_changed(&old, &new);
                }
                Ok(())
            }
        }
    }

    /// rename(2): what the kernel checks itself before it sends RENAME (the
    /// lookups of both names, RENAME_NOREPLACE, one path above the other,
    /// the same inode, a directory against a non-directory), then the core.
    fn rename(&self, a: &Path, b: &Path, noreplace: bool) -> Result<(), i32> {
        let (d1, n1) = self.split(a)?;
        let (d2, n2) = self.split(b)?;
        let src = self.fs().lookup(d1, n1).map_err(errno)?.attr;
        let dst = self.absent(d2, n2)?;
        if noreplace && dst.is_some() {
            return Err(libc::EEXIST);
        }
        if b.len() > a.len() && b.starts_with(a) {
            return Err(libc::EINVAL);
        }
        if a.len() > b.len() && a.starts_with(b) {
            return Err(libc::ENOTEMPTY);
        }
        if let Some(dst) = dst {
            if dst.ino == src.ino {
                return Ok(());
            }
            match (src.kind == FileKind::Dir, dst.kind == FileKind::Dir) {
                (true, false) => return Err(libc::ENOTDIR),
                (false, true) => return Err(libc::EISDIR),
                _ => {}
            }
        }
        self.fs()
            .rename(d1, n1, d2, n2, if noreplace { RENAME_NOREPLACE } else { 0 })
            .map_err(errno)
    }

    /// The whole branch as the core shows it.
    fn seen(&self) -> std::collections::BTreeMap<Path, M> {
        let mut m = std::collections::BTreeMap::new();
        let mut todo = vec![(self.root, Path::new())];
        while let Some((ino, prefix)) = todo.pop() {
            let d = self.fs().opendir(ino).unwrap();
            let entries = self.fs().readdir(ino, d.fh, 0, 10_000).unwrap();
            self.fs().releasedir(d.fh);
            for e in entries.iter().skip(2) {
                let mut p = prefix.clone();
                p.push(e.name.to_vec());
                let a = self.fs().lookup(ino, &e.name).unwrap().attr;
                match a.kind {
                    FileKind::Dir => {
                        m.insert(p.clone(), M::Dir);
                        todo.push((a.ino, p));
                    }
                    FileKind::Symlink => {
                        let t = self.fs().readlink(a.ino).unwrap();
                        assert_eq!(t.len() as u64, a.size, "size of symlink {p:?}");
                        m.insert(p, M::Symlink(t));
                    }
                    FileKind::File => {
                        let data = self.fs().read(a.ino, 0, 1 << 20).unwrap();
                        assert_eq!(data.len() as u64, a.size, "size of {p:?}");
                        m.insert(p, M::File(data, a.perm & 0o100 != 0));
                    }
                }
            }
        }
        m
    }

    /// The files and symlinks of the commit `main` points to.
    fn committed(&self) -> std::collections::BTreeMap<Path, Blob> {
        committed_tree(&Repository::open_bare(&self.git_dir).unwrap())
    }
}

fn run(ops: &[Op]) {
    let mut s = sut();
    let mut m = Model::default();
    for (i, op) in ops.iter().enumerate() {
        let applies = matches!(op, Op::TheirCommit(p, _) if m.theirs_applies(p));
        let expected = m.apply(op);
        let got = s.apply(op, applies);
        assert_eq!(got, expected, "step {i} {op:?}: core, model (errno)");
        assert_eq!(s.seen(), m.nodes, "tree after step {i} {op:?}");
        if matches!(op, Op::Fsync | Op::Quiesce | Op::Remount) {
            assert_eq!(s.committed(), m.files(), "committed tree after step {i}");
        }
        if let Op::TheirCommit(p, data) = op {
            let theirs = m.nodes.get(p) == Some(&M::File(data.clone(), false));
            eprintln!("step {i}: their commit: applies {applies}, shows theirs {theirs}");
            assert_eq!(s.committed(), m.tip(), "the tip after step {i}");
        }
    }
    s.fs().commit_all().unwrap();
    assert_eq!(s.committed(), m.files(), "committed tree at the end");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: std::env::var("MODEL_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(128), ..ProptestConfig::default() })]

    #[test]
    fn random_operations_agree_with_the_model(ops in prop::collection::vec(op(false), 1..40)) {
        run(&ops);
    }
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

/// Found by the model with other writers, before the harness looked names
/// up as the kernel does: an unlink (or rmdir) of a name that is not there
/// fails with ENOENT and changes nothing, yet afterwards another writer's
/// new file in that directory never shows. SEMANTICS, "Other writers": a
/// path this mount did not change shows the new tip. The kernel looks a
/// name up before it sends UNLINK, so through a mount this needs its cached
/// entry to be stale (another writer removed the name, and its invalidation
/// has not reached the kernel yet).
#[test]
fn regression_a_failed_unlink_of_a_missing_name_does_not_hide_the_other_writers_file() {
    let mut s = sut();
    let main = s.root;
    assert_eq!(s.fs().unlink(main, b"a").unwrap_err().errno(), libc::ENOENT);
    let mut m = Model::default();
    let theirs = Op::TheirCommit(p("a"), b"theirs".to_vec());
    let applies = m.theirs_applies(&p("a"));
    m.apply(&theirs).unwrap();
    s.apply(&theirs, applies).unwrap();
    assert_eq!(s.committed(), m.tip(), "their commit is the tip");
    assert_eq!(s.seen(), m.nodes, "their new file `a` shows");
}

#[test]
fn regression_a_failed_rmdir_of_a_missing_name_does_not_hide_the_other_writers_file() {
    let mut s = sut();
    let main = s.root;
    assert_eq!(s.fs().rmdir(main, b"a").unwrap_err().errno(), libc::ENOENT);
    let mut m = Model::default();
    let theirs = Op::TheirCommit(p("b"), b"theirs".to_vec());
    let applies = m.theirs_applies(&p("b"));
    m.apply(&theirs).unwrap();
    s.apply(&theirs, applies).unwrap();
    assert_eq!(s.seen(), m.nodes, "their new file `b` shows");
}

/// Found by the mount's model (tests/model_mount.rs): SEMANTICS, "When
/// commits are made": "Empty directories exist in the overlay until they
/// hold a file (Git has no empty trees); they are there after a remount."
/// A clean stop removed an overlay whose only change was an empty
/// directory (its row was taken for one on the way to a change). The mount
/// test has it as `regression_an_empty_directory_survives_a_clean_remount`.
#[test]
fn regression_an_empty_directory_is_there_after_a_clean_remount() {
    run(&[Op::Mkdir(p("a")), Op::Remount]);
    run(&[Op::Mkdir(p("a")), Op::Mkdir(p("a/b")), Op::Remount]);
}

/// Found by the model with other writers: a directory this mount made (not
/// committed: it is empty, Git has no empty trees), where another writer
/// then commits a file. SEMANTICS, "Other writers": "An empty directory this
/// mount made gives way to a file or symlink another writer puts at its
/// name": kept, it would make the next commit delete their file.
// claim: pending-changes-win: "An empty directory this mount made gives way to a file or symlink another writer puts at its name"
#[test]
fn regression_an_empty_directory_the_mount_made_gives_way_to_their_file() {
    run(&[
        Op::Mkdir(p("a")),
        Op::TheirCommit(p("a"), b"theirs".to_vec()),
    ]);
}

/// Found by the model with other writers (1,000 cases): their commit, a
/// failed rmdir of the directory it made (not empty), their next commit: the
/// file of the second never showed.
#[test]
fn regression_a_failed_rmdir_then_their_commit_shows_it() {
    run(&[
        Op::TheirCommit(p("b/a"), Vec::new()),
        Op::Rmdir(p("b")),
        Op::TheirCommit(p("c"), Vec::new()),
    ]);
}

/// Found by the model with other writers (2,000 cases): a directory renamed
/// here (pending), and another writer's new file inside the directory of the
/// new name: it shows, as every path this mount did not change does.
// claim: pending-changes-win: "every other path shows the new tip"
#[test]
fn regression_their_file_in_a_directory_renamed_here_shows() {
    run(&[
        Op::TheirCommit(p("a/b/x"), Vec::new()),
        Op::Rename(p("a"), p("c"), false),
        Op::TheirCommit(p("c/a"), Vec::new()),
    ]);
}
