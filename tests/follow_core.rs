//! Following another writer's ref moves, on the core (no mount): regressions
//! found by a review of follow/mod.rs, each once a silent loss or revert.

use commitfs::inodes::ROOT;
use commitfs::model::FsConfig;
use commitfs::store::repo::Repo;
use commitfs::view::CommitFs;
use git2::{Oid, Repository, Signature};

fn sig() -> Signature<'static> {
    Signature::now("T", "t@e").unwrap()
}

/// Other writer: apply `f` to the root tree of main and commit on top.
fn other(repo: &Repository, f: impl FnOnce(&Repository, &mut git2::TreeBuilder)) -> Oid {
    let tip = repo.refname_to_id("refs/heads/main").unwrap();
    let c = repo.find_commit(tip).unwrap();
    let mut tb = repo.treebuilder(Some(&c.tree().unwrap())).unwrap();
    f(repo, &mut tb);
    let t = repo.find_tree(tb.write().unwrap()).unwrap();
    repo.commit(Some("refs/heads/main"), &sig(), &sig(), "other", &t, &[&c])
        .unwrap()
}

fn setup(
    files: &[(&str, &str)],
    dirs: &[(&str, &[(&str, &str)])],
) -> (tempfile::TempDir, Repository) {
    let d = tempfile::tempdir().unwrap();
    let repo = Repository::init_bare(d.path()).unwrap();
    let tree = {
        let mut tb = repo.treebuilder(None).unwrap();
        for (n, c) in files {
            tb.insert(n, repo.blob(c.as_bytes()).unwrap(), 0o100644)
                .unwrap();
        }
        for (dn, fl) in dirs {
            let mut sb = repo.treebuilder(None).unwrap();
            for (n, c) in *fl {
                sb.insert(n, repo.blob(c.as_bytes()).unwrap(), 0o100644)
                    .unwrap();
            }
            tb.insert(dn, sb.write().unwrap(), 0o040000).unwrap();
        }
        tb.write().unwrap()
    };
    {
        let t = repo.find_tree(tree).unwrap();
        repo.commit(Some("refs/heads/main"), &sig(), &sig(), "init", &t, &[])
            .unwrap();
    }
    repo.set_head("refs/heads/main").unwrap();
    (d, repo)
}

fn fs_of(d: &tempfile::TempDir) -> std::sync::Arc<CommitFs> {
    CommitFs::new(
        Repo::open(d.path()).unwrap(),
        FsConfig {
            author: Some("M <m@m>".into()),
            ..FsConfig::default()
        },
    )
    .unwrap()
}

fn tip_blob(repo: &Repository, path: &str) -> Option<(Vec<u8>, i32)> {
    let tip = repo.refname_to_id("refs/heads/main").ok()?;
    let t = repo.find_commit(tip).unwrap().tree().unwrap();
    let e = t.get_path(std::path::Path::new(path)).ok()?;
    let mode = e.filemode();
    if mode == 0o040000 {
        return Some((b"<tree>".to_vec(), mode));
    }
    Some((repo.find_blob(e.id()).unwrap().content().to_vec(), mode))
}

fn follow(fs: &CommitFs, old: &commitfs::follow::watch::RefState) {
    let new = fs.ref_state().unwrap();
    fs.refs_changed(old, &new);
}

#[test]
fn a_committed_symlink_takes_the_other_writers_change() {
    let (d, repo) = setup(&[("a", "1")], &[]);
    let fs = fs_of(&d);
    let main = fs.lookup(ROOT, b"main").unwrap().attr.ino;
    fs.symlink(main, b"l", b"a").unwrap();
    fs.fsync(main).unwrap();
    let old = fs.ref_state().unwrap();
    other(&repo, |r, tb| {
        tb.insert("l", r.blob(b"zzz").unwrap(), 0o120000).unwrap();
    });
    let _ = env_logger::builder()
        .is_test(true)
        .filter_level(log::LevelFilter::Debug)
        .try_init();
    follow(&fs, &old);
    let x = fs.create(main, b"x", 0o644).unwrap().attr.ino;
    fs.write(x, 0, b"hi").unwrap();
    fs.fsync(x).unwrap();
    let msg = repo
        .find_commit(repo.refname_to_id("refs/heads/main").unwrap())
        .unwrap()
        .message()
        .unwrap()
        .to_string();
    eprintln!("msg: {msg}");
    assert_eq!(
        tip_blob(&repo, "l").unwrap().0,
        b"zzz",
        "other writer's symlink change reverted"
    );
}

#[test]
fn a_listing_open_across_a_follow_never_brings_back_the_old_version() {
    let (d, repo) = setup(&[], &[("d", &[("f", "old"), ("g", "g")])]);
    let fs = fs_of(&d);
    let main = fs.lookup(ROOT, b"main").unwrap().attr.ino;
    let dd = fs.lookup(main, b"d").unwrap().attr.ino;
    fs.lookup(dd, b"f").unwrap();
    let fh = fs.opendir(dd).unwrap().fh;
    let old = fs.ref_state().unwrap();
    other(&repo, |r, tb| {
        let mut sb = r.treebuilder(None).unwrap();
        sb.insert("f", r.blob(b"new").unwrap(), 0o100644).unwrap();
        sb.insert("g", r.blob(b"g").unwrap(), 0o100644).unwrap();
        tb.insert("d", sb.write().unwrap(), 0o040000).unwrap();
    });
    follow(&fs, &old);
    fs.readdir(dd, fh, 0, 100).unwrap();
    let f = fs.lookup(dd, b"f").unwrap().attr.ino;
    eprintln!(
        "f reads {:?}",
        String::from_utf8_lossy(&fs.read(f, 0, 100).unwrap())
    );
    let g = fs.lookup(dd, b"g").unwrap().attr.ino;
    fs.write(g, 0, b"G").unwrap();
    fs.fsync(g).unwrap();
    assert_eq!(
        tip_blob(&repo, "d/f").unwrap().0,
        b"new",
        "other writer's change to d/f reverted"
    );
}

#[test]
fn a_clean_directory_the_other_writer_made_a_file_becomes_that_file() {
    let (d, repo) = setup(&[("a", "1")], &[("d", &[("f", "f")])]);
    let fs = fs_of(&d);
    let main = fs.lookup(ROOT, b"main").unwrap().attr.ino;
    let dd = fs.lookup(main, b"d").unwrap().attr.ino;
    let n = fs.create(dd, b"n", 0o644).unwrap().attr.ino;
    fs.write(n, 0, b"n").unwrap();
    fs.fsync(n).unwrap();
    let old = fs.ref_state().unwrap();
    other(&repo, |r, tb| {
        tb.insert("d", r.blob(b"now a file").unwrap(), 0o100644)
            .unwrap();
    });
    follow(&fs, &old);
    let x = fs.create(main, b"x", 0o644).unwrap().attr.ino;
    fs.write(x, 0, b"hi").unwrap();
    fs.fsync(x).unwrap();
    assert_eq!(
        tip_blob(&repo, "d").unwrap().0,
        b"now a file",
        "other writer's replacement of d reverted"
    );
}

#[test]
fn a_new_branch_with_a_renamed_branchs_old_name_commits_its_writes() {
    let (d, repo) = setup(&[("a", "1")], &[]);
    let fs = fs_of(&d);
    let main = fs.lookup(ROOT, b"main").unwrap().attr.ino;
    let x = fs.create(main, b"x", 0o644).unwrap().attr.ino;
    fs.write(x, 0, b"x").unwrap();
    fs.fsync(x).unwrap();
    fs.rename(ROOT, b"main", ROOT, b"dev", 0).unwrap();
    fs.mkdir(ROOT, b"main", 0o755).unwrap();
    let main2 = fs.lookup(ROOT, b"main").unwrap().attr.ino;
    let y = fs.create(main2, b"y", 0o644).unwrap().attr.ino;
    fs.write(y, 0, b"y").unwrap();
    fs.fsync(y).unwrap();
    fs.commit_all().unwrap();
    assert!(
        tip_blob(&repo, "y").is_some(),
        "write to new 'main' never committed"
    );
}

#[test]
fn reads_during_follows_never_fail() {
    let (d, repo) = setup(&[("a", "1"), ("f", "f")], &[]);
    let fs = fs_of(&d);
    let main = fs.lookup(ROOT, b"main").unwrap().attr.ino;
    let f = fs.lookup(main, b"f").unwrap().attr.ino;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let errs = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let r = {
        let (fs, stop, errs) = (fs.clone(), stop.clone(), errs.clone());
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                if let Err(e) = fs.read(f, 0, 10) {
                    errs.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    eprintln!("read: {e}");
                }
                if let Err(e) = fs.getattr(f) {
                    errs.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    eprintln!("getattr: {e}");
                }
            }
        })
    };
    for i in 0..200 {
        fs.write(f, 0, format!("v{i}").as_bytes()).unwrap();
        fs.fsync(f).unwrap();
        let old = fs.ref_state().unwrap();
        other(&repo, |r, tb| {
            tb.insert("a", r.blob(format!("{i}").as_bytes()).unwrap(), 0o100644)
                .unwrap();
        });
        follow(&fs, &old);
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    r.join().unwrap();
    assert_eq!(errs.load(std::sync::atomic::Ordering::Relaxed), 0);
}

#[test]
fn creating_in_a_directory_the_other_writer_removed_fails_and_loses_nothing() {
    let (d, repo) = setup(&[("a", "1")], &[("d", &[("f", "f")])]);
    let fs = fs_of(&d);
    let main = fs.lookup(ROOT, b"main").unwrap().attr.ino;
    let dd = fs.lookup(main, b"d").unwrap().attr.ino;
    let old = fs.ref_state().unwrap();
    other(&repo, |_r, tb| {
        tb.remove("d").unwrap();
    });
    follow(&fs, &old);
    // Like creating in a directory removed under a shell standing in it.
    let e = fs.create(dd, b"n", 0o644).unwrap_err();
    assert_eq!(e.errno(), libc::ENOENT);
    // A file the other writer replaced: its old inode still reads, but a write
    // (which would go nowhere) and an fsync are refused with ESTALE.
    let old = fs.ref_state().unwrap();
    let a = fs.lookup(main, b"a").unwrap().attr.ino;
    other(&repo, |r, tb| {
        tb.insert("a", r.blob(b"theirs").unwrap(), 0o100644)
            .unwrap();
    });
    follow(&fs, &old);
    let mut got = Vec::new();
    fs.read_with(a, 0, 16, |b| got = b.to_vec()).unwrap();
    assert_eq!(got, b"1", "the old inode reads the old version");
    assert_eq!(fs.write(a, 0, b"lost?").unwrap_err().errno(), libc::ESTALE);
    assert_eq!(fs.fsync(a).unwrap_err().errno(), libc::ESTALE);
    let a2 = fs.lookup(main, b"a").unwrap().attr.ino;
    assert_ne!(a2, a);
    fs.write(a2, 0, b"ours").unwrap();
    fs.fsync(a2).unwrap();
    assert_eq!(
        tip_blob(&repo, "a").unwrap().0,
        b"oursrs",
        "written over theirs"
    );
    assert!(tip_blob(&repo, "d/n").is_none());
}

#[test]
fn a_branch_deleted_and_made_again_is_followed() {
    let (d, repo) = setup(&[("a", "1")], &[]);
    let fs = fs_of(&d);
    // a second branch 'b' looked up by the kernel
    let tip = repo.refname_to_id("refs/heads/main").unwrap();
    repo.reference("refs/heads/b", tip, false, "").unwrap();
    let s0 = fs.ref_state().unwrap();
    let b = fs.lookup(ROOT, b"b").unwrap().attr.ino;
    fs.lookup(b, b"a").unwrap();
    repo.find_reference("refs/heads/b")
        .unwrap()
        .delete()
        .unwrap();
    let s1 = fs.ref_state().unwrap();
    fs.refs_changed(&s0, &s1);
    let new = other(&repo, |r, tb| {
        tb.insert("a", r.blob(b"2").unwrap(), 0o100644).unwrap();
    });
    repo.reference("refs/heads/b", new, false, "").unwrap();
    let s2 = fs.ref_state().unwrap();
    fs.refs_changed(&s1, &s2);
    let b = fs.lookup(ROOT, b"b").unwrap().attr.ino;
    let a = fs.lookup(b, b"a").unwrap().attr.ino;
    assert_eq!(fs.read(a, 0, 10).unwrap(), b"2");
}

/// A tree written as bytes, as any writer may (libgit2's tree builder
/// refuses names such as `.git`): `(mode, name, id)` in git's order.
fn raw_tree(repo: &Repository, entries: &[(&str, &str, Oid)]) -> Oid {
    let mut bytes = Vec::new();
    for (mode, name, id) in entries {
        bytes.extend_from_slice(format!("{mode} {name}\0").as_bytes());
        bytes.extend_from_slice(id.as_bytes());
    }
    repo.odb()
        .unwrap()
        .write(git2::ObjectType::Tree, &bytes)
        .unwrap()
}

/// Found in review: a directory moved here, where the other writer then
/// made a directory of the same name, is merged with theirs per path; what
/// its own tree held unseen (a `.git` entry the mount never shows) stays
/// in the next commit, as it does for a directory moved and not merged.
#[test]
fn a_moved_directory_merged_with_theirs_keeps_its_hidden_entries() {
    let (d, repo) = setup(&[("top", "t")], &[]);
    let hidden = repo.blob(b"hidden").unwrap();
    let a = raw_tree(
        &repo,
        &[
            ("100644", ".git", hidden),
            ("100644", "f", repo.blob(b"f").unwrap()),
        ],
    );
    other(&repo, |_, tb| {
        tb.insert("a", a, 0o040000).unwrap();
    });
    let fs = fs_of(&d);
    let main = fs.lookup(ROOT, b"main").unwrap().attr.ino;
    fs.lookup(main, b"a").unwrap();
    fs.rename(main, b"a", main, b"b", 0).unwrap();
    let old = fs.ref_state().unwrap();
    other(&repo, |r, tb| {
        let mut sb = r.treebuilder(None).unwrap();
        sb.insert("n", r.blob(b"theirs").unwrap(), 0o100644)
            .unwrap();
        tb.insert("b", sb.write().unwrap(), 0o040000).unwrap();
    });
    follow(&fs, &old);
    fs.fsync(main).unwrap();
    let tip = repo.refname_to_id("refs/heads/main").unwrap();
    let t = repo.find_commit(tip).unwrap().tree().unwrap();
    let b = repo
        .find_tree(t.get_name("b").expect("b committed").id())
        .unwrap();
    let names: Vec<Vec<u8>> = b.iter().map(|e| e.name_bytes().to_vec()).collect();
    assert_eq!(
        names,
        [b".git".to_vec(), b"f".to_vec(), b"n".to_vec()],
        "b holds its own hidden entry, its file and theirs"
    );
    assert_eq!(b.get_name(".git").unwrap().id(), hidden);
    assert!(t.get_name("a").is_none(), "the move here stays");
}

/// A file this mount wrote and committed, then another writer replaced:
/// its fsync succeeds (every write it took is in a commit; issue 13's
/// ESTALE of a committed save), while a write through it is refused with
/// ESTALE (its data would go nowhere).
#[test]
fn fsync_of_a_committed_file_another_writer_replaced_succeeds() {
    let (d, repo) = setup(&[("a", "1")], &[]);
    let fs = fs_of(&d);
    let main = fs.lookup(ROOT, b"main").unwrap().attr.ino;
    let f = fs.create(main, b"f", 0o644).unwrap().attr.ino;
    fs.write(f, 0, b"mine").unwrap();
    fs.fsync(main).unwrap();
    assert_eq!(tip_blob(&repo, "f").unwrap().0, b"mine");
    let old = fs.ref_state().unwrap();
    other(&repo, |r, tb| {
        tb.insert("f", r.blob(b"theirs").unwrap(), 0o100644)
            .unwrap();
    });
    follow(&fs, &old);
    assert_eq!(fs.fsync_data(f), Ok(()), "the save did not fail");
    assert_eq!(
        fs.write(f, 0, b"late").map_err(|e| e.errno()),
        Err(libc::ESTALE)
    );
    let now = fs.lookup(main, b"f").unwrap().attr.ino;
    assert_eq!(fs.read(now, 0, 100).unwrap(), b"theirs");
    assert_eq!(tip_blob(&repo, "f").unwrap().0, b"theirs");
}
