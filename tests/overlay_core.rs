//! The persistent overlay, on the core: a daemon that dies (its memory
//! dropped, nothing committed on the way out) loses nothing it acknowledged;
//! the next one over the same repository shows it and commits it.

use std::path::Path;

mod common;
use common::core::{cat, ino, write_file};

use commitfs::model::SetAttr;
use commitfs::model::{FsConfig, Ts};
use commitfs::store::repo::Repo;
use commitfs::view::CommitFs;
use git2::{Oid, Repository, Signature};

fn cfg() -> FsConfig {
    FsConfig {
        author: Some("T <t@example.com>".into()),
        ..FsConfig::default()
    }
}

fn new_fs(dir: &Path) -> std::sync::Arc<CommitFs> {
    CommitFs::new(Repo::open(dir).unwrap(), cfg()).unwrap()
}

/// A bare repository whose `main` holds README and src/x.rs.
fn repo() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let repo = Repository::init_bare(dir.path()).unwrap();
    let mut tb = repo.treebuilder(None).unwrap();
    tb.insert("README", repo.blob(b"one\n").unwrap(), 0o100644)
        .unwrap();
    let mut src = repo.treebuilder(None).unwrap();
    src.insert("x.rs", repo.blob(b"x\n").unwrap(), 0o100644)
        .unwrap();
    tb.insert("src", src.write().unwrap(), 0o040000).unwrap();
    let tree = repo.find_tree(tb.write().unwrap()).unwrap();
    let sig = Signature::new("T", "t@example.com", &git2::Time::new(1_700_000_000, 0)).unwrap();
    repo.commit(Some("refs/heads/main"), &sig, &sig, "init", &tree, &[])
        .unwrap();
    repo.set_head("refs/heads/main").unwrap();
    dir
}

/// The blob at `path` in `main`'s tree, and its mode.
fn in_main(dir: &Path, path: &str) -> Option<(Vec<u8>, i32)> {
    let repo = Repository::open_bare(dir).unwrap();
    let tree = repo
        .revparse_single("main^{tree}")
        .unwrap()
        .peel_to_tree()
        .unwrap();
    let e = tree.get_path(Path::new(path)).ok()?;
    let blob = repo.find_blob(e.id()).ok()?;
    Some((blob.content().to_vec(), e.filemode()))
}

fn tip(dir: &Path) -> Oid {
    Repository::open_bare(dir)
        .unwrap()
        .refname_to_id("refs/heads/main")
        .unwrap()
}

/// Another writer commits `name` = `data` on top of `main`.
fn their_commit(dir: &Path, name: &str, data: &[u8]) -> Oid {
    let repo = Repository::open_bare(dir).unwrap();
    let head = repo.find_commit(tip(dir)).unwrap();
    let mut tb = repo.treebuilder(Some(&head.tree().unwrap())).unwrap();
    tb.insert(name, repo.blob(data).unwrap(), 0o100644).unwrap();
    let tree = repo.find_tree(tb.write().unwrap()).unwrap();
    let sig = Signature::now("O", "o@example.com").unwrap();
    repo.commit(
        Some("refs/heads/main"),
        &sig,
        &sig,
        "theirs",
        &tree,
        &[&head],
    )
    .unwrap()
}

/// Every kind of change a dead daemon had acknowledged is shown by the next
/// one and committed; scratch files come back and stay out of history.
#[test]
// claim: recovery: "each row's change is made again at the same place of the branch as it is now"
// claim: clean-unmount-removes: "removes the overlay; otherwise it stays for the next mount"
// claim: empty-dirs: "Empty directories exist in the overlay until they hold a file"
fn a_dead_daemons_changes_come_back_and_are_committed() {
    let dir = repo();
    let before = tip(dir.path());
    let stamp = Ts {
        secs: 1_000_000_000,
        nsec: 123_456_789,
    };
    {
        let fs = new_fs(dir.path());
        write_file(&fs, "main", "README", b"two\n");
        let n = write_file(&fs, "main/src", "new.txt", b"new\n");
        fs.setattr(
            n,
            SetAttr {
                mode: Some(0o755),
                mtime: Some(stamp),
                ..Default::default()
            },
        )
        .unwrap();
        let src = ino(&fs, "main/src").unwrap();
        fs.rename(src, b"x.rs", src, b"y.rs", 0).unwrap();
        let main = ino(&fs, "main").unwrap();
        fs.mkdir(main, b"empty", 0o755).unwrap();
        let mut d = main;
        for level in ["a", "b", "c"] {
            d = fs.mkdir(d, level.as_bytes(), 0o755).unwrap().attr.ino;
        }
        write_file(&fs, "main/a/b/c", "deep.txt", b"deep\n");
        write_file(&fs, "main", ".notes.txt.swp", b"swap\n");
        write_file(&fs, "main", "db-journal", b"journal\n");
        fs.symlink(main, b"link", b"README").unwrap();
        // Made and removed: leaves nothing.
        let t = write_file(&fs, "main", "temp", b"t");
        let _ = t;
        fs.unlink(main, b"temp").unwrap();
        // The daemon dies here: nothing was committed.
        assert_eq!(tip(dir.path()), before);
    }
    let fs = new_fs(dir.path());
    assert_eq!(cat(&fs, "main/README"), b"two\n");
    assert_eq!(cat(&fs, "main/src/new.txt"), b"new\n");
    let a = fs
        .getattr(ino(&fs, "main/src/new.txt").unwrap())
        .unwrap()
        .attr;
    assert_eq!(a.perm & 0o777, 0o755);
    assert_eq!(a.mtime, stamp, "utimens's time comes back");
    assert_eq!(cat(&fs, "main/src/y.rs"), b"x\n");
    assert!(
        ino(&fs, "main/src/x.rs").is_err(),
        "the rename's old name is gone"
    );
    assert!(
        ino(&fs, "main/empty").is_ok(),
        "an empty directory comes back"
    );
    assert_eq!(cat(&fs, "main/a/b/c/deep.txt"), b"deep\n");
    assert_eq!(cat(&fs, "main/.notes.txt.swp"), b"swap\n");
    assert_eq!(
        fs.readlink(ino(&fs, "main/link").unwrap()).unwrap(),
        b"README"
    );
    assert!(ino(&fs, "main/temp").is_err());
    fs.commit_all().unwrap();
    assert_ne!(
        tip(dir.path()),
        before,
        "the recovered changes are committed"
    );
    assert_eq!(in_main(dir.path(), "README").unwrap().0, b"two\n");
    assert_eq!(
        in_main(dir.path(), "src/new.txt").unwrap(),
        (b"new\n".to_vec(), 0o100755)
    );
    assert!(in_main(dir.path(), "src/x.rs").is_none());
    assert_eq!(in_main(dir.path(), "src/y.rs").unwrap().0, b"x\n");
    assert_eq!(in_main(dir.path(), "a/b/c/deep.txt").unwrap().0, b"deep\n");
    assert_eq!(
        in_main(dir.path(), "link").unwrap(),
        (b"README".to_vec(), 0o120000)
    );
    assert!(in_main(dir.path(), ".notes.txt.swp").is_none());
    assert!(in_main(dir.path(), "db-journal").is_none());
    // A clean unmount now: the scratch files still live in the overlay.
    fs.finish_overlay();
    let committed = tip(dir.path());
    drop(fs);
    let fs = new_fs(dir.path());
    assert_eq!(cat(&fs, "main/.notes.txt.swp"), b"swap\n");
    assert_eq!(cat(&fs, "main/db-journal"), b"journal\n");
    fs.commit_all().unwrap();
    assert_eq!(tip(dir.path()), committed, "nothing new to commit");
    // The empty directory is in the overlay only (Git has no empty trees):
    // it is there after this clean stop too. Once it and the scratch files
    // are gone, a clean unmount leaves no overlay.
    fs.finish_overlay();
    drop(fs);
    let fs = new_fs(dir.path());
    assert!(ino(&fs, "main/empty").is_ok(), "the empty directory stays");
    let main = ino(&fs, "main").unwrap();
    fs.unlink(main, b".notes.txt.swp").unwrap();
    fs.unlink(main, b"db-journal").unwrap();
    fs.rmdir(main, b"empty").unwrap();
    fs.commit_all().unwrap();
    fs.finish_overlay();
    drop(fs);
    let left: Vec<_> = std::fs::read_dir(dir.path().join("commitfs/overlay"))
        .unwrap()
        .collect();
    assert!(left.is_empty(), "overlays left: {left:?}");
    assert_eq!(tip(dir.path()), committed);
}

/// Another writer moved the branch while the daemon was dead: the recovered
/// changes go on top of their tip, and theirs stay.
#[test]
// claim: recovered-onto-tip: "onto its tip whoever moved it meanwhile"
fn recovered_changes_go_onto_a_tip_another_writer_moved() {
    let dir = repo();
    {
        let fs = new_fs(dir.path());
        write_file(&fs, "main", "mine.txt", b"mine\n");
        write_file(&fs, "main", "README", b"mine too\n");
    }
    // Theirs: a new file, on top of init.
    let theirs = their_commit(dir.path(), "theirs.txt", b"theirs\n");
    let fs = new_fs(dir.path());
    fs.commit_all().unwrap();
    assert_eq!(in_main(dir.path(), "mine.txt").unwrap().0, b"mine\n");
    assert_eq!(in_main(dir.path(), "README").unwrap().0, b"mine too\n");
    assert_eq!(in_main(dir.path(), "theirs.txt").unwrap().0, b"theirs\n");
    let repo = Repository::open_bare(dir.path()).unwrap();
    let head = repo.find_commit(tip(dir.path())).unwrap();
    assert_eq!(head.parent_id(0).unwrap(), theirs, "built on their tip");
}

/// A file the dead daemon had committed, and not written since, is not
/// replayed over a later change of another writer.
#[test]
// claim: committed-not-replayed: "A written file the dead daemon had committed and not written since (its bytes hash to the blob its row names) is not replayed."
fn a_committed_file_does_not_come_back_over_a_later_change() {
    let dir = repo();
    {
        let fs = new_fs(dir.path());
        write_file(&fs, "main", "README", b"mine\n");
        let main = ino(&fs, "main").unwrap();
        fs.fsync(main).unwrap();
        assert_eq!(in_main(dir.path(), "README").unwrap().0, b"mine\n");
        // Dies with README still materialized (committed, clean).
    }
    their_commit(dir.path(), "README", b"theirs\n");
    let fs = new_fs(dir.path());
    assert_eq!(cat(&fs, "main/README"), b"theirs\n");
    fs.commit_all().unwrap();
    assert_eq!(in_main(dir.path(), "README").unwrap().0, b"theirs\n");
}

/// A second live daemon on the same repository does not take the first
/// one's overlay (its lock is held).
#[test]
// claim: live-overlay-untouched: "a live mount's overlay is never touched by another"
fn a_live_daemons_overlay_is_left_alone() {
    let dir = repo();
    let a = new_fs(dir.path());
    write_file(&a, "main", "a.txt", b"a\n");
    let b = new_fs(dir.path());
    assert!(
        ino(&b, "main/a.txt").is_err(),
        "not replayed into a second live mount"
    );
    drop(b);
    a.commit_all().unwrap();
    assert_eq!(in_main(dir.path(), "a.txt").unwrap().0, b"a\n");
}

/// An overlay that is not ours (or is damaged) is moved aside, not dropped
/// and not fatal.
#[test]
// claim: damaged-overlay: "renamed to <name>.broken, never dropped"
fn a_corrupt_overlay_is_moved_aside_and_the_mount_works() {
    let dir = repo();
    let bad = dir.path().join("commitfs/overlay/00000000000000000001-1");
    std::fs::create_dir_all(bad.join("files")).unwrap();
    std::fs::write(bad.join("catalog.sqlite"), vec![7u8; 4096]).unwrap();
    let fs = new_fs(dir.path());
    assert_eq!(cat(&fs, "main/README"), b"one\n");
    assert!(!bad.exists());
    assert!(bad.with_extension("broken").join("catalog.sqlite").exists());
}

/// A file whose content did not change keeps the mtime it showed across a
/// clean remount (so `make` rebuilds only what changed); a file another
/// writer changed meanwhile shows a new time.
#[test]
fn committed_files_keep_their_mtime_across_remounts() {
    let dir = repo();
    let (kept, changed) = {
        let fs = new_fs(dir.path());
        let a = write_file(&fs, "main", "a.c", b"int a;\n");
        let b = write_file(&fs, "main", "b.c", b"int b;\n");
        let stamp = Ts {
            secs: 1_234_567_890,
            nsec: 5,
        };
        fs.setattr(
            b,
            SetAttr {
                mtime: Some(stamp),
                ..Default::default()
            },
        )
        .unwrap();
        fs.fsync(ino(&fs, "main").unwrap()).unwrap();
        let kept = fs.getattr(a).unwrap().attr.mtime;
        assert_eq!(fs.getattr(b).unwrap().attr.mtime, stamp);
        fs.finish_overlay();
        (kept, stamp)
    };
    // Someone else changes b.c.
    their_commit(dir.path(), "b.c", b"int b2;\n");
    let fs = new_fs(dir.path());
    let a = fs.getattr(ino(&fs, "main/a.c").unwrap()).unwrap().attr;
    assert_eq!(a.mtime, kept, "a.c did not change: same time");
    let b = fs.getattr(ino(&fs, "main/b.c").unwrap()).unwrap().attr;
    assert_ne!(b.mtime, changed, "b.c changed: a new time");
}

/// While one branch commits a large file (its blob hashed and packed for
/// seconds), a save on another branch (write, barrier), lookups anywhere and
/// a stat of the very file being committed go on: they finish before that
/// commit does. The committer holds only its branch's commit lock while it
/// writes objects.
#[test]
// claim: no-hold-up: "saves and their fsyncs on other branches, and every lookup and read, go on"
fn a_large_commit_holds_up_no_other_branch_and_no_lookup() {
    let dir = repo();
    {
        let repo = Repository::open_bare(dir.path()).unwrap();
        let head = repo.find_commit(tip(dir.path())).unwrap();
        repo.branch("other", &head, false).unwrap();
    }
    let fs = new_fs(dir.path());
    let main = ino(&fs, "main").unwrap();
    let big = fs.create(main, b"big.bin", 0o644).unwrap().attr.ino;
    // Incompressible bytes, so that the whole blob is hashed and written.
    let chunk = common::noise(1 << 20, 0x2545F4914F6CDD1D);
    for i in 0..256u64 {
        fs.write(big, i << 20, &chunk).unwrap();
    }
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let committer = {
        let (fs, done) = (fs.clone(), done.clone());
        std::thread::spawn(move || {
            fs.fsync(main).unwrap();
            done.store(true, std::sync::atomic::Ordering::SeqCst);
        })
    };
    let other = ino(&fs, "other").unwrap();
    for i in 0..3 {
        let name = format!("save{i}.txt");
        let f = fs.create(other, name.as_bytes(), 0o644).unwrap().attr.ino;
        fs.write(f, 0, b"saved\n").unwrap();
        fs.fsync(other).unwrap();
        assert_eq!(cat(&fs, "main/README"), b"one\n");
        assert!(ino(&fs, "main/src/x.rs").is_ok());
        assert_eq!(fs.getattr(big).unwrap().attr.size, 256 << 20);
    }
    let first = done.load(std::sync::atomic::Ordering::SeqCst);
    committer.join().unwrap();
    assert!(
        !first,
        "the saves on other waited for main's commit of 256 MiB"
    );
    let repo = Repository::open_bare(dir.path()).unwrap();
    let t = repo
        .revparse_single("other^{tree}")
        .unwrap()
        .peel_to_tree()
        .unwrap();
    assert!(t.get_name("save2.txt").is_some());
    let t = repo
        .revparse_single("main^{tree}")
        .unwrap()
        .peel_to_tree()
        .unwrap();
    assert!(t.get_name("big.bin").is_some());
}

/// A catalog is as untrusted as the repository it sits in: rows naming
/// `.git` or an object the repository does not have are not replayed; the
/// rest is.
#[test]
fn a_hostile_catalog_plants_no_dotgit_and_no_missing_object() {
    let dir = repo();
    {
        let fs = new_fs(dir.path());
        write_file(&fs, "main", "fine.txt", b"fine\n");
    }
    // Doctor the dead overlay's catalog: a `.git` file row and an object
    // row naming a blob that does not exist, in the branch root's directory.
    let ov = std::fs::read_dir(dir.path().join("commitfs/overlay"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let c = rusqlite::Connection::open(ov.join("catalog.sqlite")).unwrap();
    let (root, file): (i64, i64) = c
        .query_row(
            "SELECT dir, file FROM entry WHERE name = CAST('fine.txt' AS BLOB)",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    c.execute(
        "INSERT INTO entry(dir, name, kind, ino, file, exec) VALUES (?1, CAST('.GIT' AS BLOB), 2, 999, ?2, 0)",
        rusqlite::params![root, file],
    )
    .unwrap();
    c.execute(
        "INSERT INTO entry(dir, name, kind, ino, mode, oid) VALUES (?1, CAST('ghost' AS BLOB), 4, 998, 33188, ?2)",
        rusqlite::params![root, vec![0xabu8; 20]],
    )
    .unwrap();
    drop(c);
    let fs = new_fs(dir.path());
    assert_eq!(cat(&fs, "main/fine.txt"), b"fine\n");
    assert!(ino(&fs, "main/.GIT").is_err());
    assert!(ino(&fs, "main/ghost").is_err());
    fs.commit_all().unwrap();
    assert_eq!(in_main(dir.path(), "fine.txt").unwrap().0, b"fine\n");
    assert!(in_main(dir.path(), ".GIT").is_none());
}
