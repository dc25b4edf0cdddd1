//! A repository is untrusted input (SEMANTICS: "A repository is untrusted
//! input"): a repository crafted object by object, holding every odd entry a
//! hostile one could, mounted for real.

mod common;

use std::io::ErrorKind;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;

/// A tree object's bytes, entries given as (mode, name, id) in the order to
/// store them (the test writes what an attacker would, unsorted if it likes).
fn raw_tree(entries: &[(&str, &[u8], git2::Oid)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (mode, name, oid) in entries {
        out.extend_from_slice(mode.as_bytes());
        out.push(b' ');
        out.extend_from_slice(name);
        out.push(0);
        out.extend_from_slice(oid.as_bytes());
    }
    out
}

struct Hostile {
    _r: TestRepo,
    bare: std::path::PathBuf,
    canary: std::path::PathBuf,
    root_tree: git2::Oid,
    evil_tree: git2::Oid,
}

/// main: a README, `evil/` holding a `.git/config` whose core.fsmonitor would
/// create the canary, `.GIT/`, aliases of `.git`, an empty name, an unknown
/// mode, a duplicate, a file and a directory of one name, empty and
/// NUL-holding symlink targets, a `.gitmodules` symlink. A branch naming a
/// tree and one naming a tag object.
fn hostile() -> Hostile {
    let r = TestRepo::new();
    r.write("README", b"hello\n");
    r.commit("init");
    let bare = r.publish();
    let canary = r.dir.path().join("CANARY");
    let repo = git2::Repository::open_bare(&bare).unwrap();
    let odb = repo.odb().unwrap();
    let blob = |data: &[u8]| odb.write(git2::ObjectType::Blob, data).unwrap();
    let tree = |entries: &[(&str, &[u8], git2::Oid)]| {
        odb.write(git2::ObjectType::Tree, &raw_tree(entries))
            .unwrap()
    };
    let config = blob(
        format!(
            "[core]\n\trepositoryformatversion = 0\n\tbare = false\n\tfsmonitor = \"touch {}; false\"\n",
            canary.display()
        )
        .as_bytes(),
    );
    let head = blob(b"ref: refs/heads/main\n");
    let hook = blob(format!("#!/bin/sh\ntouch {}\n", canary.display()).as_bytes());
    let hooks = tree(&[("100755", b"post-checkout", hook)]);
    let empty_tree = tree(&[]);
    let dotgit = tree(&[
        ("100644", b"HEAD", head),
        ("100644", b"config", config),
        ("40000", b"hooks", hooks),
        ("40000", b"objects", empty_tree),
        ("40000", b"refs", empty_tree),
    ]);
    let file = blob(b"inside evil\n");
    let evil = tree(&[("40000", b".git", dotgit), ("100644", b"file.txt", file)]);
    let readme = blob(b"hello\n");
    let first = blob(b"first\n");
    let second = blob(b"second\n");
    let clash_file = blob(b"the file\n");
    let clash_dir = tree(&[("100644", b"inner", file)]);
    let empty = blob(b"");
    let nul = blob(b"a\0b");
    let target = blob(b"README");
    let root = tree(&[
        ("100644", b"", readme),
        ("40000", b".GIT", dotgit),
        ("40000", b".git ", dotgit),
        ("40000", b".git.", dotgit),
        ("40000", "\u{200c}.git".as_bytes(), dotgit),
        ("120000", b".gitmodules", target),
        ("100644", b"README", readme),
        ("100644", b"clash", clash_file),
        ("40000", b"clash", clash_dir),
        ("100644", b"dup", first),
        ("100644", b"dup", second),
        ("120000", b"empty-link", empty),
        ("40000", b"evil", evil),
        ("40000", b"git~1", dotgit),
        ("120000", b"good-link", target),
        ("120000", b"nul-link", nul),
        ("777777", b"weird", readme),
    ]);
    let sig = git2::Signature::now("t", "t@example.com").unwrap();
    let parent = repo
        .find_commit(repo.refname_to_id("refs/heads/main").unwrap())
        .unwrap();
    // libgit2 would parse (and refuse) this tree: write the commit as bytes.
    let when = sig.when();
    let commit_bytes = format!(
        "tree {root}\nparent {}\nauthor t <t@example.com> {} +0000\ncommitter t <t@example.com> {} +0000\n\nhostile\n",
        parent.id(),
        when.seconds(),
        when.seconds()
    );
    let commit = odb
        .write(git2::ObjectType::Commit, commit_bytes.as_bytes())
        .unwrap();
    repo.reference("refs/heads/main", commit, true, "hostile")
        .unwrap();
    // A branch naming a tree, one naming an annotated tag object.
    repo.reference("refs/heads/treeref", evil, true, "tree")
        .unwrap();
    let tag = repo
        .tag("v1", parent.as_object(), &sig, "a tag", false)
        .unwrap();
    repo.reference("refs/heads/tagref", tag, true, "tag")
        .unwrap();
    Hostile {
        _r: r,
        bare,
        canary,
        root_tree: root,
        evil_tree: evil,
    }
}

fn names(dir: &Path) -> Vec<Vec<u8>> {
    let mut v: Vec<Vec<u8>> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().as_bytes().to_vec())
        .collect();
    v.sort();
    v
}

/// The entries of tree `oid` as stored, as (mode, name, id) lines of bytes.
fn stored(bare: &Path, oid: &str) -> Vec<u8> {
    let out = Command::new("git")
        .arg("-C")
        .arg(bare)
        .args(["cat-file", "tree", oid])
        .output()
        .unwrap();
    assert!(out.status.success());
    out.stdout
}

#[test]
// claim: dotgit-hidden: "not shown: absent from listings, ENOENT on lookup"
// claim: duplicate-names: "the first in Git's tree order is shown"
fn a_hostile_repository_plants_nothing_and_hides_no_sibling() {
    let h = hostile();
    let r2 = TestRepo::new();
    let mnt = r2.mountpoint("mnt");
    let log = r2.dir.path().join("daemon.log");
    let m = Mount::new(&h.bare, &mnt, &["--log-file", log.to_str().unwrap()]);
    let main = mnt.join("main");

    // Listings show the ordinary entries, and no name git would refuse.
    let shown = names(&main);
    let want: Vec<&[u8]> = vec![
        b"README",
        b"clash",
        b"dup",
        b"empty-link",
        b"evil",
        b"good-link",
        b"nul-link",
    ];
    assert_eq!(shown, want.iter().map(|n| n.to_vec()).collect::<Vec<_>>());
    assert_eq!(names(&main.join("evil")), vec![b"file.txt".to_vec()]);
    // Nor can they be looked up.
    for n in [
        &b".GIT"[..],
        b".git",
        b".git ",
        b".git.",
        "\u{200c}.git".as_bytes(),
        b"git~1",
        b"GIT~1",
        b"weird",
        b".gitmodules",
    ] {
        let p = main.join(std::ffi::OsStr::from_bytes(n));
        let e = std::fs::symlink_metadata(&p).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound, "{}", p.display());
    }
    assert_eq!(
        std::fs::symlink_metadata(main.join("evil/.git"))
            .unwrap_err()
            .kind(),
        ErrorKind::NotFound
    );

    // git inside the mount finds no repository there, so runs nothing planted.
    let st = Command::new("git")
        .arg("-C")
        .arg(main.join("evil"))
        .arg("status")
        .env("GIT_CEILING_DIRECTORIES", r2.dir.path())
        .output()
        .unwrap();
    assert!(!st.status.success(), "git found a repository in the mount");
    let st = Command::new("git")
        .arg("-C")
        .arg(main.join("evil"))
        .args(["rev-parse", "--git-dir"])
        .output()
        .unwrap();
    assert!(!st.status.success());
    assert!(!h.canary.exists(), "the planted fsmonitor command ran");

    // Siblings of odd entries read as they should; one rule each.
    assert_eq!(std::fs::read(main.join("README")).unwrap(), b"hello\n");
    assert_eq!(std::fs::read(main.join("dup")).unwrap(), b"first\n");
    assert!(
        std::fs::symlink_metadata(main.join("clash"))
            .unwrap()
            .is_file()
    );
    assert_eq!(std::fs::read(main.join("clash")).unwrap(), b"the file\n");
    assert_eq!(
        std::fs::read(main.join("evil/file.txt")).unwrap(),
        b"inside evil\n"
    );
    assert_eq!(
        std::fs::read_link(main.join("good-link")).unwrap(),
        Path::new("README")
    );
    for l in ["empty-link", "nul-link"] {
        let e = std::fs::read_link(main.join(l)).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EIO), "{l}");
    }

    // Nothing named like .git can be made either.
    for n in [".git", ".GIT", "git~1", ".git.", ".Git "] {
        let e = std::fs::create_dir(main.join(n)).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EINVAL), "mkdir {n}");
        let e = std::fs::write(main.join("evil").join(n), b"x").unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EINVAL), "create {n}");
    }
    let e = std::os::unix::fs::symlink("README", main.join(".gitmodules")).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EINVAL));

    // The branch still commits: a save at the top and one inside evil/, each
    // fsynced, and every hidden entry stays in the trees as it was stored.
    let before = git(&h.bare, &["rev-parse", "main"]);
    // A name a hidden entry has (`weird`, mode 777777): the mount's file is
    // the one the tree keeps, once.
    std::fs::write(main.join("weird"), b"made here\n").unwrap();
    std::fs::write(main.join("new.txt"), b"new\n").unwrap();
    commit_now(&main.join("new.txt"));
    std::fs::write(main.join("evil/more.txt"), b"more\n").unwrap();
    commit_now(&main.join("evil/more.txt"));
    let after = git(&h.bare, &["rev-parse", "main"]);
    assert_ne!(before, after);
    let root_now = git(&h.bare, &["rev-parse", "main^{tree}"]);
    let old_root = stored(&h.bare, &h.root_tree.to_string());
    let new_root = stored(&h.bare, &root_now);
    // Every entry of the old root but `evil` (whose tree changed) is there
    // byte for byte: the empty name, the unknown mode, the aliases; of the
    // duplicates (`dup` twice, `clash` a file and a directory) only the one
    // shown: a tree holding two entries of one name is one git fsck refuses.
    let (old_entries, evil_id) = split_entries(&old_root);
    let (new_entries, new_evil) = split_entries(&new_root);
    assert_eq!(evil_id, Some(h.evil_tree));
    // (git itself cannot walk paths of such a tree: the blob is read by id.)
    let new_txt = new_entries.iter().find(|e| e.1 == b"new.txt").unwrap().2;
    assert_eq!(show(&h.bare, &new_txt.to_string()).unwrap(), b"new\n");
    let weird: Vec<_> = new_entries.iter().filter(|e| e.1 == b"weird").collect();
    assert_eq!(weird.len(), 1, "one entry named weird");
    assert_eq!(&weird[0].0[..], b"100644");
    assert_eq!(
        show(&h.bare, &weird[0].2.to_string()).unwrap(),
        b"made here\n"
    );
    for name in [&b"dup"[..], b"clash"] {
        let kept: Vec<_> = new_entries.iter().filter(|e| e.1 == name).collect();
        assert_eq!(kept.len(), 1, "{}", String::from_utf8_lossy(name));
        assert_eq!(&kept[0].0[..], b"100644", "the file is the one shown");
    }
    assert_eq!(
        show(
            &h.bare,
            &new_entries
                .iter()
                .find(|e| e.1 == b"dup")
                .unwrap()
                .2
                .to_string()
        )
        .unwrap(),
        b"first\n"
    );
    for e in &old_entries {
        if e.1 != b"evil" && e.1 != b"dup" && e.1 != b"clash" && e.1 != b"weird" {
            assert!(
                new_entries.contains(e),
                "lost {:?}",
                String::from_utf8_lossy(&e.1)
            );
        }
    }
    let evil_now = stored(&h.bare, &new_evil.unwrap().to_string());
    let (evil_entries, _) = split_entries(&evil_now);
    assert!(evil_entries.iter().any(|e| e.1 == b".git"));
    assert!(evil_entries.iter().any(|e| e.1 == b"more.txt"));

    // Refs that name no commit are read-only, and never hold up unmount.
    for b in ["treeref", "tagref"] {
        let d = mnt.join(b);
        assert!(d.is_dir(), "{b} shown");
        let e = std::fs::write(d.join("x"), b"x").unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EROFS), "{b}");
    }
    assert!(names(&mnt.join("treeref")).contains(&b"file.txt".to_vec()));
    assert!(!names(&mnt.join("treeref")).contains(&b".git".to_vec()));

    m.unmount();
    assert!(wait_until(Duration::from_secs(5), || !is_mounted(&mnt)));
    assert!(!h.canary.exists());
    // One warning for the hostile root tree, naming what it hid, however
    // often it was listed and looked up in.
    let text = std::fs::read_to_string(&log).unwrap();
    let warned = format!("tree {}: ", h.root_tree);
    assert_eq!(text.matches(&warned).count(), 1, "{text}");
    let line = text.lines().find(|l| l.contains(&warned)).unwrap();
    for what in ["\".GIT\"", "\"git~1\"", "\"weird\"", "\"\" ("] {
        assert!(line.contains(what), "{what} in {line}");
    }
}

/// (mode, name, id) of each entry of a raw tree, and the id of `evil`.
type Entries = Vec<(Vec<u8>, Vec<u8>, git2::Oid)>;
fn split_entries(data: &[u8]) -> (Entries, Option<git2::Oid>) {
    let mut out = Vec::new();
    let mut rest = data;
    while let Some(sp) = rest.iter().position(|&c| c == b' ') {
        let nul = sp + 1 + rest[sp + 1..].iter().position(|&c| c == 0).unwrap();
        let oid = git2::Oid::from_bytes(&rest[nul + 1..nul + 21]).unwrap();
        out.push((rest[..sp].to_vec(), rest[sp + 1..nul].to_vec(), oid));
        rest = &rest[nul + 21..];
    }
    let evil = out.iter().find(|e| e.1 == b"evil").map(|e| e.2);
    (out, evil)
}

#[test]
// claim: corrupt-packed-refs: "so every readable ref is shown"
fn a_corrupt_packed_refs_still_shows_the_readable_refs() {
    let r = TestRepo::new();
    r.write("a", b"a\n");
    r.commit("a");
    git(&r.work(), &["branch", "loose"]);
    git(&r.work(), &["tag", "v1"]);
    let bare = r.publish();
    git(&bare, &["pack-refs", "--all"]);
    git(&bare, &["branch", "still-loose", "main"]);
    // Damage one line of packed-refs.
    let p = bare.join("packed-refs");
    let mut text = std::fs::read_to_string(&p).unwrap();
    assert!(text.contains("refs/heads/loose"));
    text.push_str("THIS IS NOT A REF LINE\n");
    std::fs::write(&p, text).unwrap();
    let mnt = r.mountpoint("mnt");
    let log = r.dir.path().join("log");
    let m = Mount::new(&bare, &mnt, &["--log-file", log.to_str().unwrap()]);
    let root = names(&mnt);
    for b in [&b"main"[..], b"loose", b"still-loose"] {
        assert!(
            root.contains(&b.to_vec()),
            "{} in {root:?}",
            String::from_utf8_lossy(b)
        );
    }
    assert_eq!(names(&mnt.join(".tags")), vec![b"v1".to_vec()]);
    assert_eq!(std::fs::read(mnt.join("loose/a")).unwrap(), b"a\n");
    m.unmount();
    let log = std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(
        log.matches("reading them by hand").count(),
        1,
        "logged once: {log}"
    );
}

fn cstr(s: &str) -> std::ffi::CString {
    std::ffi::CString::new(s).unwrap()
}

/// The fd of directory `name` in directory `dir`.
fn open_dir_at(dir: i32, name: &str) -> i32 {
    let n = cstr(name);
    // SAFETY: a valid C string; the fd is owned by the caller.
    let fd = unsafe { libc::openat(dir, n.as_ptr(), libc::O_DIRECTORY | libc::O_RDONLY) };
    assert!(
        fd >= 0,
        "openat {name}: {}",
        std::io::Error::last_os_error()
    );
    fd
}

fn close(fd: i32) {
    // SAFETY: an fd this test opened.
    unsafe { libc::close(fd) };
}

/// A directory chain far deeper than any stack could recurse over, made
/// through the mount by ordinary syscalls (mkdirat and openat, one level at
/// a time, as `mkdir -p` does): made, written, fsynced, committed, listed and
/// removed, and the daemon lives.
#[test]
// claim: deep-chain: "A 100,000-deep chain is made, fsynced, committed, listed and removed through the mount"
fn a_100000_deep_chain_is_made_committed_listed_and_removed() {
    const DEPTH: usize = 100_000;
    let r = TestRepo::new();
    r.write("README", b"top\n");
    r.commit("init");
    let bare = r.publish();
    let mnt = r.mountpoint("mnt");
    let m = Mount::new(&bare, &mnt, &[]);
    let main = mnt.join("main");
    let d = cstr("d");

    let top = open_dir_at(libc::AT_FDCWD, main.to_str().unwrap());
    // SAFETY: top is open.
    let mut fd = unsafe { libc::dup(top) };
    for i in 0..DEPTH {
        // SAFETY: valid fd and C string.
        let rc = unsafe { libc::mkdirat(fd, d.as_ptr(), 0o755) };
        assert_eq!(
            rc,
            0,
            "mkdir at depth {i}: {}",
            std::io::Error::last_os_error()
        );
        let next = open_dir_at(fd, "d");
        close(fd);
        fd = next;
    }
    // A file at the bottom, fsynced, and its directory: the branch is
    // committed when that returns.
    let leaf = cstr("leaf.txt");
    // SAFETY: valid fd and C string.
    let f = unsafe { libc::openat(fd, leaf.as_ptr(), libc::O_CREAT | libc::O_WRONLY, 0o644) };
    assert!(f >= 0);
    // SAFETY: f is open; the buffer is valid.
    assert_eq!(unsafe { libc::write(f, b"deep\n".as_ptr().cast(), 5) }, 5);
    // SAFETY: f is open.
    assert_eq!(
        unsafe { libc::fsync(f) },
        0,
        "{}",
        std::io::Error::last_os_error()
    );
    close(f);
    // SAFETY: fd is open.
    assert_eq!(
        unsafe { libc::fsync(fd) },
        0,
        "{}",
        std::io::Error::last_os_error()
    );

    // The commit holds the whole chain (walked here level by level).
    let repo = git2::Repository::open_bare(&bare).unwrap();
    let mut tree = repo
        .find_commit(repo.refname_to_id("refs/heads/main").unwrap())
        .unwrap()
        .tree()
        .unwrap();
    for i in 0..DEPTH {
        let id = tree
            .get_name("d")
            .unwrap_or_else(|| panic!("no d at depth {i}"))
            .id();
        tree = repo.find_tree(id).unwrap();
    }
    let blob = tree.get_name("leaf.txt").unwrap().id();
    assert_eq!(repo.find_blob(blob).unwrap().content(), b"deep\n");
    assert!(tree.get_name("README").is_none());

    // Listed, at the bottom and at the top.
    let bottom = std::fs::read_dir(format!("/proc/self/fd/{fd}"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect::<Vec<_>>();
    assert_eq!(bottom, vec![std::ffi::OsString::from("leaf.txt")]);
    assert!(names(&main).contains(&b"d".to_vec()));

    // Removed from the bottom up, through `..`.
    // SAFETY: valid fd and C string.
    assert_eq!(unsafe { libc::unlinkat(fd, leaf.as_ptr(), 0) }, 0);
    let dotdot = cstr("..");
    for i in 0..DEPTH {
        // SAFETY: valid fd and C string.
        let up = unsafe { libc::openat(fd, dotdot.as_ptr(), libc::O_DIRECTORY | libc::O_RDONLY) };
        assert!(up >= 0, "up from depth {i}");
        close(fd);
        fd = up;
        // SAFETY: valid fd and C string.
        let rc = unsafe { libc::unlinkat(fd, d.as_ptr(), libc::AT_REMOVEDIR) };
        assert_eq!(
            rc,
            0,
            "rmdir at depth {i}: {}",
            std::io::Error::last_os_error()
        );
    }
    close(fd);
    // SAFETY: top is open.
    assert_eq!(unsafe { libc::fsync(top) }, 0);
    close(top);
    assert_eq!(names(&main), vec![b"README".to_vec()]);
    let t = git(&bare, &["ls-tree", "--name-only", "main"]);
    assert_eq!(t.trim(), "README");
    assert!(statfs_ok(&mnt), "the daemon lives");
    m.unmount();
    fsck(&bare);
}

/// A bug that panics in a request handler fails that request with EIO, is
/// logged in the log file, and loses nothing: the daemon goes on serving, and
/// what was written before is committed. (The daemon of debug builds panics
/// when it looks up the name in COMMITFS_TEST_PANIC_NAME.)
#[test]
// claim: panic-eio: "The request that panicked gets EIO; the worker thread goes on serving"
fn a_panicking_handler_fails_one_request_and_loses_nothing() {
    let r = TestRepo::new();
    r.write("README", b"top\n");
    r.commit("init");
    let bare = r.publish();
    let mnt = r.mountpoint("mnt");
    let log = r.dir.path().join("log");
    let m = Mount::with_env(
        &bare,
        &mnt,
        &["--log-file", log.to_str().unwrap(), "--settle", "60000"],
        &[("COMMITFS_TEST_PANIC_NAME", "boom")],
    );
    let main = mnt.join("main");
    std::fs::write(main.join("kept.txt"), b"kept\n").unwrap();
    // More panics than the daemon has worker threads.
    for _ in 0..12 {
        let e = std::fs::metadata(main.join("boom")).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EIO));
    }
    assert_eq!(std::fs::read(main.join("kept.txt")).unwrap(), b"kept\n");
    assert!(statfs_ok(&mnt));
    // The write is still pending (a 60 s settle window): unmount commits it.
    assert!(show(&bare, "main:kept.txt").is_none());
    m.unmount();
    assert_eq!(show(&bare, "main:kept.txt").unwrap(), b"kept\n");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("internal error"), "{text}");
    assert!(
        text.contains("COMMITFS_TEST_PANIC_NAME looked up"),
        "{text}"
    );
}

/// Runs `cmd` with `args` as uid/gid 65534 (nobody); true if it succeeded.
fn as_nobody(cmd: &str, args: &[&std::ffi::OsStr]) -> bool {
    Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(cmd)
        .args(args)
        .status()
        .unwrap()
        .success()
}

/// Under --allow-other another user can read the mount, but cannot force
/// the owner's pending changes into a commit: their fsyncdir (`sync DIR`,
/// `sync MNT`) is not a commit barrier, nor is their fsync of a file (which
/// commits for nobody); the owner's fsyncdir is.
#[test]
#[cfg_attr(
    commitfs_not_root,
    ignore = "needs root: runs a command as another user"
)]
// claim: other-user-fsync: "returns 0 and commits nothing"
fn another_users_sync_is_not_a_commit_barrier() {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "needs root (built as root, run as another user?)"
    );
    let r = TestRepo::new();
    r.write("README", b"top\n");
    r.commit("init");
    let bare = r.publish();
    // The other user must be able to reach the mount point.
    std::fs::set_permissions(
        r.dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let mnt = r.mountpoint("mnt");
    let m = Mount::new(&bare, &mnt, &["--allow-other", "--settle", "60000"]);
    let main = mnt.join("main");
    let before = git(&bare, &["rev-parse", "main"]);
    std::fs::write(main.join("pending.txt"), b"owner's\n").unwrap();
    // The other user can read it, and sync it: sync returns, nothing commits.
    assert!(as_nobody("cat", &[main.join("pending.txt").as_os_str()]));
    assert!(as_nobody("sync", &[main.join("pending.txt").as_os_str()]));
    assert_eq!(git(&bare, &["rev-parse", "main"]), before);
    assert!(as_nobody("sync", &[main.as_os_str()]));
    assert!(as_nobody("sync", &[mnt.as_os_str()]));
    assert_eq!(
        git(&bare, &["rev-parse", "main"]),
        before,
        "another user's sync committed"
    );
    // The owner's sync of the directory is a barrier: committed when it
    // returns.
    let st = Command::new("sync").arg(&main).status().unwrap();
    assert!(st.success());
    assert_ne!(git(&bare, &["rev-parse", "main"]), before);
    assert_eq!(show(&bare, "main:pending.txt").unwrap(), b"owner's\n");
    m.unmount();
}

/// Names git's verify_path refuses (core.protectHFS and protectNTFS on) that
/// a byte-for-byte or UTF-8-only reading would let through: `.git` followed by
/// bytes git cannot decode (it takes the name to end there), a `.gitmodules`
/// symlink after a backslash (NTFS reads each part as a name); and refs named
/// like `.git`. None is shown; ordinary neighbours are.
#[test]
// claim: dotgit-hidden: ".git followed by bytes git cannot decode as UTF-8"
fn names_git_takes_for_dotgit_by_its_own_reading_are_hidden() {
    let r = TestRepo::new();
    r.write("README", b"hello\n");
    r.commit("init");
    let bare = r.publish();
    let repo = git2::Repository::open_bare(&bare).unwrap();
    let odb = repo.odb().unwrap();
    let blob = odb.write(git2::ObjectType::Blob, b"x\n").unwrap();
    let target = odb.write(git2::ObjectType::Blob, b"README").unwrap();
    let hidden: [(&str, &[u8]); 7] = [
        ("100644", b".git\xff"),
        ("100644", b".GIT\x80"),
        ("100644", b".git\xef\xbf\xbf"),
        ("100644", b".g\xe2\x80\x8cit\xed\xa0\x80"),
        ("120000", b"x\\.gitmodules"),
        ("120000", b"a\\gitmod~1"),
        ("120000", b".gitmodules\xff"),
    ];
    let shown: [(&str, &[u8]); 3] = [
        ("100644", b".gi\xfft"),
        ("100644", b"\xff.git"),
        ("120000", b".gitmodules\\x"),
    ];
    let mut entries: Vec<(&str, &[u8], git2::Oid)> = Vec::new();
    for (mode, name) in hidden.iter().chain(shown.iter()) {
        let oid = if *mode == "120000" { target } else { blob };
        entries.push((mode, name, oid));
    }
    let root = odb
        .write(git2::ObjectType::Tree, &raw_tree(&entries))
        .unwrap();
    let head = repo.refname_to_id("refs/heads/main").unwrap();
    let commit = odb
        .write(
            git2::ObjectType::Commit,
            format!(
                "tree {root}\nparent {head}\nauthor t <t@example.com> 1 +0000\ncommitter t <t@example.com> 1 +0000\n\nnames\n"
            )
            .as_bytes(),
        )
        .unwrap();
    repo.reference("refs/heads/main", commit, true, "names")
        .unwrap();
    // Refs git would never write, named like .git on NTFS or HFS+.
    for name in ["git~1", "\u{200c}.git"] {
        std::fs::write(bare.join("refs/heads").join(name), format!("{commit}\n")).unwrap();
    }
    let mnt = r.mountpoint("mnt");
    let m = Mount::new(&bare, &mnt, &[]);
    let mut want: Vec<Vec<u8>> = shown.iter().map(|(_, n)| n.to_vec()).collect();
    want.sort();
    assert_eq!(names(&mnt.join("main")), want);
    for (_, n) in hidden {
        let p = mnt.join("main").join(std::ffi::OsStr::from_bytes(n));
        let e = std::fs::symlink_metadata(&p).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound, "{}", p.display());
    }
    assert_eq!(
        names(&mnt),
        vec![
            b".commits".to_vec(),
            b".tags".to_vec(),
            b"HEAD".to_vec(),
            b"main".to_vec()
        ]
    );
    for name in ["git~1", "\u{200c}.git"] {
        let e = std::fs::symlink_metadata(mnt.join(name)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound, "{name}");
    }
    m.unmount();
}

/// libgit2 stops listing loose refs, without an error, at a directory nested
/// 100 levels down: a repository holding `refs/heads/a/a/.../a` would hide
/// every branch sorting after it. The refs are then read by hand.
#[test]
fn a_deeply_nested_refs_directory_hides_no_branch() {
    let r = TestRepo::new();
    r.write("README", b"hello\n");
    r.commit("init");
    git(&r.work(), &["branch", "zz"]);
    let bare = r.publish();
    let deep: std::path::PathBuf = std::iter::repeat_n("a", 120).collect();
    std::fs::create_dir_all(bare.join("refs/heads").join(deep)).unwrap();
    let mnt = r.mountpoint("mnt");
    let m = Mount::new(&bare, &mnt, &[]);
    let root = names(&mnt);
    for b in [&b"main"[..], b"zz", b"HEAD"] {
        assert!(
            root.contains(&b.to_vec()),
            "{} in {root:?}",
            String::from_utf8_lossy(b)
        );
    }
    m.unmount();
}
