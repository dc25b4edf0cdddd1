//! The reference model of tests/common/model.rs through a real mount: the
//! same kinds of random operations (create, write at offsets, truncate,
//! rename with and without RENAME_NOREPLACE, unlink, mkdir, rmdir, chmod,
//! symlink, names the mount must refuse, commit barriers, clean remounts,
//! another writer's commits) made with std::fs, std::os::unix::fs::symlink
//! and libc calls on a mounted branch. After every step the mounted tree
//! (bytes, kinds, the executable bit, symlink targets) must equal the
//! model's, and the errno must be the model's; after every barrier (fsync of
//! the branch's directory) the branch's ref has moved, if the model says
//! there was anything to commit, and the committed tree (read with git2)
//! equals the model's files and symlinks. `MODEL_MOUNT_CASES` sets how many
//! cases (16 by default).

mod common;

use std::ffi::{CString, OsStr};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt, PermissionsExt};
use std::path::PathBuf;
use std::time::Duration;

use common::model::*;
use common::*;
use git2::{Oid, Repository};
use proptest::prelude::*;

/// One mounted repository with branch `main` (an empty commit).
struct Sut {
    _r: TestRepo,
    bare: PathBuf,
    mnt: PathBuf,
    mount: Option<Mount>,
    /// The tip after this test's last barrier or other writer's commit: if
    /// the branch is anywhere else, the settle cap committed meanwhile.
    known_tip: Oid,
}

/// No settle window to speak of: the mount commits at barriers (and at the
/// settle cap, 3 s after a first uncommitted change, see `their_commit`).
const ARGS: &[&str] = &["--settle", "600000"];

fn io(r: std::io::Result<()>) -> Result<(), i32> {
    r.map_err(|e| e.raw_os_error().expect("an errno"))
}

fn c(p: &std::path::Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).unwrap()
}

fn libc_rc(rc: i32) -> Result<(), i32> {
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error().raw_os_error().unwrap())
    }
}

impl Sut {
    fn new() -> Sut {
        let r = TestRepo::new();
        r.commit("empty");
        let bare = r.publish();
        let mnt = r.mountpoint("mnt");
        let mount = Mount::new(&bare, &mnt, ARGS);
        let known_tip = Self::tip_of(&bare);
        Sut {
            _r: r,
            bare,
            mnt,
            mount: Some(mount),
            known_tip,
        }
    }

    fn tip_of(bare: &std::path::Path) -> Oid {
        Repository::open_bare(bare)
            .unwrap()
            .refname_to_id("refs/heads/main")
            .unwrap()
    }

    fn tip(&self) -> Oid {
        Self::tip_of(&self.bare)
    }

    fn main(&self) -> PathBuf {
        self.mnt.join("main")
    }

    fn path(&self, p: &Path) -> PathBuf {
        let mut out = self.main();
        for c in p {
            out.push(OsStr::from_bytes(c));
        }
        out
    }

    fn committed(&self) -> std::collections::BTreeMap<Path, Blob> {
        committed_tree(&Repository::open_bare(&self.bare).unwrap())
    }

    /// The branch's entry in `commitfs status --json`.
    fn status(&self) -> serde_json::Value {
        branch_status(&self.mnt, "main")
    }

    /// A commit barrier, then (bounded) the ref: it must have moved if the
    /// model has anything the tip does not (and the barrier returned only
    /// after it did), and the committed tree must be the model's.
    fn barrier(&mut self, m: &Model, step: usize) -> Result<(), i32> {
        let old = self.tip();
        let old_tree = self.committed();
        io(std::fs::File::open(self.main()).and_then(|f| f.sync_all()))?;
        let moved_at_return = self.tip() != old;
        if old_tree != m.files() {
            let moved = wait_until(Duration::from_secs(10), || self.tip() != old);
            assert!(moved, "step {step}: the ref never moved after the barrier");
            assert!(
                moved_at_return,
                "step {step}: the barrier returned before the ref moved"
            );
        }
        assert_eq!(
            self.committed(),
            m.files(),
            "committed tree after step {step}"
        );
        self.known_tip = self.tip();
        Ok(())
    }

    fn remount(&mut self, m: &Model, step: usize) {
        self.mount.take().unwrap().unmount();
        assert!(!is_mounted(&self.mnt), "step {step}: still mounted");
        assert_eq!(
            self.committed(),
            m.files(),
            "committed at the unmount of step {step}"
        );
        self.known_tip = self.tip();
        self.mount = Some(Mount::new(&self.bare, &self.mnt, ARGS));
    }

    /// Before another writer's commit: whether the mount's changes are
    /// pending must be the model's, so if the settle cap committed since the
    /// last barrier, or might before the other writer's commit is followed,
    /// a barrier first (in the model too).
    fn before_theirs(&mut self, m: &mut Model, step: usize) {
        let st = self.status();
        let old = st["uncommitted_for"].as_f64().unwrap_or(0.0) > 1.0;
        if self.tip() != self.known_tip || old {
            eprintln!("step {step}: a barrier before their commit");
            m.apply(&Op::Fsync).unwrap();
            self.barrier(m, step)
                .expect("the barrier before their commit");
        }
    }

    /// Another writer's commit, then (bounded) until the mount has followed
    /// it: `commitfs status` says it shows that commit (for a branch it has
    /// written to), or, for one it has not, the tree shows it.
    fn their_commit(&mut self, p: &Path, data: &[u8], m: &Model, step: usize) {
        let repo = Repository::open_bare(&self.bare).unwrap();
        let new = their_commit(&repo, p, data);
        self.known_tip = new;
        let followed = wait_until(Duration::from_secs(10), || {
            let st = self.status();
            match st["shown"].as_str() {
                Some(s) => s == new.to_string(),
                None => self.seen() == m.nodes,
            }
        });
        assert!(
            followed,
            "step {step}: the mount never followed {new} (status {})",
            self.status()
        );
    }

    fn apply(&mut self, op: &Op) -> Result<(), i32> {
        match op {
            Op::Create(p) => io(std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o644)
                .open(self.path(p))
                .map(drop)),
            Op::Write(p, off, data) => io(std::fs::OpenOptions::new()
                .write(true)
                .open(self.path(p))
                .and_then(|f| f.write_all_at(data, *off as u64))),
            Op::Truncate(p, n) => {
                // SAFETY: a valid C string.
                libc_rc(unsafe { libc::truncate(c(&self.path(p)).as_ptr(), *n as libc::off_t) })
            }
            Op::Unlink(p) => io(std::fs::remove_file(self.path(p))),
            Op::Mkdir(p) => io(std::fs::DirBuilder::new().mode(0o755).create(self.path(p))),
            Op::Rmdir(p) => io(std::fs::remove_dir(self.path(p))),
            Op::Rename(a, b, noreplace) => {
                let flags = if *noreplace {
                    libc::RENAME_NOREPLACE
                } else {
                    0
                };
                io(renameat2(&self.path(a), &self.path(b), flags))
            }
            Op::Chmod(p, x) => io(std::fs::set_permissions(
                self.path(p),
                std::fs::Permissions::from_mode(if *x { 0o755 } else { 0o644 }),
            )),
            Op::Symlink(p, t) => io(std::os::unix::fs::symlink(
                OsStr::from_bytes(t),
                self.path(p),
            )),
            Op::Fsync | Op::Quiesce | Op::Die | Op::Remount | Op::TheirCommit(..) => {
                unreachable!("run() makes these")
            }
        }
    }

    /// The branch as the mount shows it: read_dir, lstat, read, readlink.
    fn seen(&self) -> std::collections::BTreeMap<Path, M> {
        let mut out = std::collections::BTreeMap::new();
        let mut todo = vec![(self.main(), Path::new())];
        while let Some((dir, prefix)) = todo.pop() {
            for e in std::fs::read_dir(&dir).unwrap() {
                let e = e.unwrap();
                let mut p = prefix.clone();
                p.push(e.file_name().as_bytes().to_vec());
                let md = std::fs::symlink_metadata(e.path()).unwrap();
                if md.is_dir() {
                    out.insert(p.clone(), M::Dir);
                    todo.push((e.path(), p));
                } else if md.file_type().is_symlink() {
                    let t = std::fs::read_link(e.path()).unwrap();
                    assert_eq!(md.len(), t.as_os_str().len() as u64, "size of {p:?}");
                    out.insert(p, M::Symlink(t.as_os_str().as_bytes().to_vec()));
                } else {
                    let data = std::fs::read(e.path()).unwrap();
                    assert_eq!(md.len(), data.len() as u64, "size of {p:?}");
                    out.insert(p, M::File(data, md.permissions().mode() & 0o100 != 0));
                }
            }
        }
        out
    }
}

fn run(ops: &[Op]) {
    let mut s = Sut::new();
    let mut m = Model::default();
    for (i, op) in ops.iter().enumerate() {
        if matches!(op, Op::TheirCommit(..)) {
            s.before_theirs(&mut m, i);
        }
        let applies = matches!(op, Op::TheirCommit(p, _) if m.theirs_applies(p));
        let expected = m.apply(op);
        let got = match op {
            Op::Fsync | Op::Quiesce => s.barrier(&m, i),
            Op::Remount | Op::Die => {
                s.remount(&m, i);
                Ok(())
            }
            Op::TheirCommit(p, data) => {
                if applies {
                    s.their_commit(p, data, &m, i);
                }
                Ok(())
            }
            _ => s.apply(op),
        };
        assert_eq!(got, expected, "step {i} {op:?}: mount, model (errno)");
        assert_eq!(s.seen(), m.nodes, "tree after step {i} {op:?}");
        if let Op::TheirCommit(p, data) = op {
            let theirs = m.nodes.get(p) == Some(&M::File(data.clone(), false));
            eprintln!("step {i}: their commit: applies {applies}, shows theirs {theirs}");
            assert_eq!(s.committed(), m.tip(), "the tip after step {i}");
        }
    }
    s.mount.take().unwrap().unmount();
    assert_eq!(s.committed(), m.files(), "committed tree at the unmount");
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("MODEL_MOUNT_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(16),
        max_shrink_iters: 256,
        ..ProptestConfig::default()
    })]

    #[test]
    fn random_operations_through_a_mount_agree_with_the_model(ops in prop::collection::vec(op(true), 1..40)) {
        run(&ops);
    }
}

/// Each kind of op once, through the mount.
#[test]
fn every_kind_of_operation_once() {
    run(&[
        Op::Mkdir(p("a")),
        Op::Create(p("a/b")),
        Op::Write(p("a/b"), 3, b"xyz".to_vec()),
        Op::Chmod(p("a/b"), true),
        Op::Symlink(p("a/c"), b"../x".to_vec()),
        Op::Symlink(p(".gitmodules"), b"x".to_vec()),
        Op::Mkdir(p(".GIT")),
        Op::Create(vec![vec![b'n'; 256]]),
        Op::Fsync,
        Op::Rename(p("a/b"), p("b"), true),
        Op::Truncate(p("b"), 1),
        Op::TheirCommit(p("c"), b"theirs".to_vec()),
        Op::TheirCommit(p("b"), b"theirs".to_vec()),
        Op::Remount,
        Op::Unlink(p("a/c")),
        Op::Rmdir(p("a")),
        Op::Quiesce,
    ]);
}

/// An empty directory (only the overlay keeps it: Git has no empty trees)
/// is there after a clean unmount and the next mount; a clean stop once
/// removed an overlay whose only change it was.
#[test]
fn regression_an_empty_directory_survives_a_clean_remount() {
    run(&[Op::Mkdir(p("a")), Op::Remount]);
    run(&[Op::Mkdir(p("a")), Op::Mkdir(p("a/b")), Op::Remount]);
}
