//! Commits leave out the untracked paths that the branch's `.gitignore`
//! files, `info/exclude` and `core.excludesFile` ignore (SPEC section 4), on
//! the core (no mount): git's rules, checked against `git add -A` itself.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use commitfs::inodes::ROOT;
use commitfs::model::FsConfig;
use commitfs::store::repo::Repo;
use commitfs::view::CommitFs;
use git2::{Oid, Repository, Signature};
use proptest::prelude::*;

type Files = BTreeMap<String, Vec<u8>>;

fn files(v: &[(&str, &str)]) -> Files {
    v.iter()
        .map(|(p, c)| (p.to_string(), c.as_bytes().to_vec()))
        .collect()
}

/// The tree of `files` (paths with `/`), written into `repo`.
fn tree_of(repo: &Repository, files: &Files, prefix: &str) -> Oid {
    let mut tb = repo.treebuilder(None).unwrap();
    let mut dirs: BTreeMap<&str, ()> = BTreeMap::new();
    for (path, data) in files {
        let Some(rest) = path.strip_prefix(prefix) else {
            continue;
        };
        match rest.split_once('/') {
            Some((d, _)) => {
                dirs.insert(d, ());
            }
            None => {
                tb.insert(rest, repo.blob(data).unwrap(), 0o100644).unwrap();
            }
        }
    }
    for d in dirs.keys() {
        let t = tree_of(repo, files, &format!("{prefix}{d}/"));
        tb.insert(d, t, 0o040000).unwrap();
    }
    tb.write().unwrap()
}

/// A bare repository whose `main` holds `tracked` (however the ignore files
/// in it would have it).
fn setup(tracked: &Files) -> (tempfile::TempDir, Repository) {
    let d = tempfile::tempdir().unwrap();
    let repo = Repository::init_bare(d.path()).unwrap();
    let tree = tree_of(&repo, tracked, "");
    {
        let t = repo.find_tree(tree).unwrap();
        let sig = Signature::now("T", "t@e").unwrap();
        repo.commit(Some("refs/heads/main"), &sig, &sig, "init", &t, &[])
            .unwrap();
    }
    (d, repo)
}

fn fs_of(git_dir: &Path, gitignore: bool) -> std::sync::Arc<CommitFs> {
    CommitFs::new(
        Repo::open(git_dir).unwrap(),
        FsConfig {
            author: Some("M <m@m>".into()),
            gitignore,
            ..FsConfig::default()
        },
    )
    .unwrap()
}

/// The inode of directory `path` below `main`, made where missing.
fn dir(fs: &CommitFs, path: &str) -> u64 {
    let mut at = fs.lookup(ROOT, b"main").unwrap().attr.ino;
    for name in path.split('/').filter(|n| !n.is_empty()) {
        at = match fs.lookup(at, name.as_bytes()) {
            Ok(e) => e.attr.ino,
            Err(_) => fs.mkdir(at, name.as_bytes(), 0o755).unwrap().attr.ino,
        };
    }
    at
}

/// Writes `data` as the whole content of `path` below `main` (made, or
/// truncated and rewritten).
fn put(fs: &CommitFs, path: &str, data: &[u8]) -> u64 {
    let (parent, name) = path.rsplit_once('/').unwrap_or(("", path));
    let p = dir(fs, parent);
    let ino = match fs.lookup(p, name.as_bytes()) {
        Ok(e) => {
            fs.open(e.attr.ino, true).unwrap();
            fs.setattr(
                e.attr.ino,
                commitfs::model::SetAttr {
                    size: Some(0),
                    ..Default::default()
                },
            )
            .unwrap();
            e.attr.ino
        }
        Err(_) => fs.create(p, name.as_bytes(), 0o644).unwrap().attr.ino,
    };
    fs.write(ino, 0, data).unwrap();
    ino
}

fn cat(fs: &CommitFs, path: &str) -> Vec<u8> {
    let (parent, name) = path.rsplit_once('/').unwrap_or(("", path));
    let ino = fs
        .lookup(dir(fs, parent), name.as_bytes())
        .unwrap()
        .attr
        .ino;
    fs.read(ino, 0, 1 << 20).unwrap()
}

/// Every file of the tree of `rev`, with its content.
fn committed(repo: &Repository, rev: &str) -> Files {
    let tree = repo.revparse_single(rev).unwrap().peel_to_tree().unwrap();
    let mut out = Files::new();
    tree.walk(git2::TreeWalkMode::PreOrder, |root, e| {
        if e.kind() == Some(git2::ObjectType::Blob) {
            let blob = repo.find_blob(e.id()).unwrap();
            let name = String::from_utf8_lossy(e.name_bytes()).into_owned();
            out.insert(format!("{root}{name}"), blob.content().to_vec());
        }
        git2::TreeWalkResult::Ok
    })
    .unwrap();
    out
}

/// Every path any commit of any ref names, as `git log --all --name-only`.
fn all_history_paths(repo: &Repository) -> Vec<String> {
    let mut walk = repo.revwalk().unwrap();
    walk.push_glob("refs/*").unwrap();
    let mut out = Vec::new();
    for c in walk {
        let c = repo.find_commit(c.unwrap()).unwrap();
        out.extend(committed(repo, &c.id().to_string()).into_keys());
    }
    out.sort();
    out.dedup();
    out
}

fn tip(repo: &Repository) -> Oid {
    repo.refname_to_id("refs/heads/main").unwrap()
}

const GITIGNORE: &str = "*.o\nbuild/\n!keep.o\n";

#[test]
// claim: ignored-files: "is left out of every commit"
// claim: ignored-tracked-stays: "a file or directory the branch tracks stays tracked and is committed as it changes, even if ignored"
fn ignored_untracked_paths_are_left_out_and_tracked_ones_committed() {
    let (d, repo) = setup(&files(&[
        (".gitignore", GITIGNORE),
        ("old.o", "old\n"),
        ("README", "top\n"),
    ]));
    let fs = fs_of(d.path(), true);
    put(&fs, "a.c", b"int main;\n");
    put(&fs, "a.o", b"\x7fELF object\n");
    put(&fs, "keep.o", b"kept\n");
    put(&fs, "build/x", b"built\n");
    put(&fs, "old.o", b"changed\n");
    fs.commit_all().unwrap();
    assert_eq!(
        committed(&repo, "main"),
        files(&[
            (".gitignore", GITIGNORE),
            ("README", "top\n"),
            ("a.c", "int main;\n"),
            ("keep.o", "kept\n"),
            ("old.o", "changed\n"),
        ])
    );
    // Still in the mount, readable and writable.
    assert_eq!(cat(&fs, "a.o"), b"\x7fELF object\n");
    assert_eq!(cat(&fs, "build/x"), b"built\n");
    put(&fs, "a.o", b"relinked\n");
    assert_eq!(cat(&fs, "a.o"), b"relinked\n");
    let before = tip(&repo);
    fs.commit_all().unwrap();
    assert_eq!(
        tip(&repo),
        before,
        "a change to an ignored file commits nothing"
    );
    let history = all_history_paths(&repo);
    assert!(!history.iter().any(|p| p == "a.o" || p.starts_with("build")));
}

#[test]
// claim: ignored-files: "a save whose only changes are ignored files makes no commit"
// claim: nothing-to-commit: "Nothing to commit (only scratch or ignored files changed"
fn a_save_whose_only_change_is_ignored_makes_no_commit() {
    let (d, repo) = setup(&files(&[(".gitignore", GITIGNORE), ("README", "top\n")]));
    let fs = fs_of(d.path(), true);
    let before = tip(&repo);
    put(&fs, "a.o", b"obj\n");
    put(&fs, "build/deep/x", b"built\n");
    let a = fs.lookup(dir(&fs, ""), b"a.o").unwrap().attr.ino;
    // fsync of the ignored file is a barrier like any: nothing to commit.
    fs.fsync(a).unwrap();
    fs.commit_all().unwrap();
    assert_eq!(tip(&repo), before);
}

#[test]
// claim: ignored-files: "one written or changed in the same save applies to it"
fn a_gitignore_written_in_the_same_save_applies_and_so_do_its_changes() {
    let (d, repo) = setup(&files(&[("README", "top\n")]));
    let fs = fs_of(d.path(), true);
    put(&fs, ".gitignore", b"*.tmp\n");
    put(&fs, "x.tmp", b"scratch\n");
    put(&fs, "y.txt", b"kept\n");
    fs.commit_all().unwrap();
    assert_eq!(
        committed(&repo, "main"),
        files(&[
            (".gitignore", "*.tmp\n"),
            ("README", "top\n"),
            ("y.txt", "kept\n"),
        ])
    );
    // The .gitignore is changed: x.tmp is no longer ignored, and goes in.
    put(&fs, ".gitignore", b"*.log\n");
    fs.commit_all().unwrap();
    assert_eq!(
        committed(&repo, "main").get("x.tmp").map(Vec::as_slice),
        Some(&b"scratch\n"[..])
    );
    // Now tracked: ignoring it again keeps it, and commits its changes.
    put(&fs, ".gitignore", b"*.tmp\n");
    put(&fs, "x.tmp", b"still tracked\n");
    fs.commit_all().unwrap();
    assert_eq!(
        committed(&repo, "main").get("x.tmp").map(Vec::as_slice),
        Some(&b"still tracked\n"[..])
    );
}

#[test]
// claim: ignored-files: "a deeper one wins over a shallower one"
fn a_nested_gitignore_applies_below_its_directory() {
    let (d, repo) = setup(&files(&[
        (".gitignore", "*.log\n"),
        ("sub/.gitignore", "!keep.log\n/local\nonly/here\n"),
    ]));
    let fs = fs_of(d.path(), true);
    for p in [
        "a.log",
        "local",
        "sub/keep.log",
        "sub/other.log",
        "sub/local",
        "sub/deeper/local",
        "sub/deeper/keep.log",
        "sub/only/here",
        "sub/x/only/here",
        "other/keep.log",
    ] {
        put(&fs, p, p.as_bytes());
    }
    fs.commit_all().unwrap();
    let got: Vec<String> = committed(&repo, "main").into_keys().collect();
    assert_eq!(
        got,
        [
            ".gitignore",
            "local",
            "sub/.gitignore",
            "sub/deeper/keep.log",
            "sub/deeper/local",
            "sub/keep.log",
            "sub/x/only/here",
        ]
    );
}

#[test]
// claim: ignored-tracked-stays: "an ignored directory that is tracked keeps what it tracks and takes nothing new"
fn nothing_below_an_ignored_directory_is_added_but_what_it_tracks_stays() {
    let (d, repo) = setup(&files(&[
        (".gitignore", "build/\n!build/keep\nout/*\n!out/keep\n"),
        ("build/tracked.txt", "v1\n"),
    ]));
    let fs = fs_of(d.path(), true);
    put(&fs, "build/tracked.txt", b"v2\n");
    put(&fs, "build/keep", b"no\n");
    put(&fs, "build/new.txt", b"no\n");
    // Not read: git reads no .gitignore below an excluded directory.
    put(&fs, "build/.gitignore", b"!*\n");
    put(&fs, "build/sub/x", b"no\n");
    // A directory's entries, not the directory, ignored: a negation works.
    put(&fs, "out/a", b"no\n");
    put(&fs, "out/keep", b"yes\n");
    fs.commit_all().unwrap();
    let got: Vec<String> = committed(&repo, "main").into_keys().collect();
    assert_eq!(got, [".gitignore", "build/tracked.txt", "out/keep"]);
    assert_eq!(cat(&fs, "build/sub/x"), b"no\n");
}

#[test]
fn a_tracked_file_renamed_to_an_ignored_name_is_a_deletion() {
    let (d, repo) = setup(&files(&[(".gitignore", "*.o\n"), ("a.c", "c\n")]));
    let fs = fs_of(d.path(), true);
    let main = dir(&fs, "");
    fs.rename(main, b"a.c", main, b"a.o", 0).unwrap();
    fs.commit_all().unwrap();
    let got: Vec<String> = committed(&repo, "main").into_keys().collect();
    assert_eq!(got, [".gitignore"]);
    assert_eq!(cat(&fs, "a.o"), b"c\n");
}

#[test]
// claim: ignored-files: "the repository's info/exclude (of its common directory) or the file named by core.excludesFile ignore"
fn info_exclude_and_core_excludes_file_apply() {
    let (d, repo) = setup(&files(&[(".gitignore", "!*.local\n")]));
    std::fs::create_dir_all(d.path().join("info")).unwrap();
    std::fs::write(d.path().join("info/exclude"), b"*.secret\n*.local\n").unwrap();
    let global = d.path().join("global-ignore");
    std::fs::write(&global, b"*.swo\n*.secret\n!keep.secret\n").unwrap();
    repo.config()
        .unwrap()
        .set_str("core.excludesFile", global.to_str().unwrap())
        .unwrap();
    let fs = fs_of(d.path(), true);
    for p in ["a.secret", "keep.secret", "x.swo", "b.local", "c.txt"] {
        put(&fs, p, b"x\n");
    }
    fs.commit_all().unwrap();
    let got: Vec<String> = committed(&repo, "main").into_keys().collect();
    // info/exclude wins over core.excludesFile; a .gitignore over both.
    assert_eq!(got, [".gitignore", "b.local", "c.txt"]);
}

#[test]
// claim: ignored-files: "--no-gitignore turns all of this off."
fn no_gitignore_commits_everything() {
    let (d, repo) = setup(&files(&[(".gitignore", GITIGNORE)]));
    std::fs::create_dir_all(d.path().join("info")).unwrap();
    std::fs::write(d.path().join("info/exclude"), b"*.c\n").unwrap();
    let fs = fs_of(d.path(), false);
    put(&fs, "a.c", b"c\n");
    put(&fs, "a.o", b"o\n");
    put(&fs, "build/x", b"x\n");
    fs.commit_all().unwrap();
    let got: Vec<String> = committed(&repo, "main").into_keys().collect();
    assert_eq!(got, [".gitignore", "a.c", "a.o", "build/x"]);
}

/// A chain far deeper than a recursion could walk, with a root `.gitignore`
/// of name and anchored patterns: walked in time, the name patterns apply at
/// the bottom, the anchored ones only where they are anchored.
#[test]
// claim: deep-chain: "every walk over trees (listing, committing, diffing, following another writer's move, materializing a path) is a loop over an explicit stack, never a recursion"
fn a_100000_deep_chain_is_matched_level_by_level() {
    const DEPTH: usize = 100_000;
    let (d, repo) = setup(&files(&[(".gitignore", "*.o\n/d/top\nd/d/x\n")]));
    let fs = fs_of(d.path(), true);
    let mut at = dir(&fs, "");
    for _ in 0..DEPTH {
        at = fs.mkdir(at, b"d", 0o755).unwrap().attr.ino;
    }
    for name in [&b"leaf.o"[..], b"leaf.c", b"top", b"x"] {
        let f = fs.create(at, name, 0o644).unwrap().attr.ino;
        fs.write(f, 0, b"deep\n").unwrap();
    }
    let top = dir(&fs, "d");
    let f = fs.create(top, b"top", 0o644).unwrap().attr.ino;
    fs.write(f, 0, b"ignored\n").unwrap();
    fs.commit_all().unwrap();
    let mut tree = repo.find_commit(tip(&repo)).unwrap().tree().unwrap();
    assert!(tree.get_path(Path::new("d/top")).is_err());
    for i in 0..DEPTH {
        let id = tree
            .get_name("d")
            .unwrap_or_else(|| panic!("no d at depth {i}"))
            .id();
        tree = repo.find_tree(id).unwrap();
    }
    let mut names: Vec<String> = tree
        .iter()
        .map(|e| String::from_utf8_lossy(e.name_bytes()).into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["leaf.c", "top", "x"]);
}

// ---- against git itself ---------------------------------------------------

/// Runs git in `dir` with no configuration but the repository's (and a
/// fixed identity).
fn git(dir: &Path, home: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .current_dir(dir)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("HOME", home)
        .env("XDG_CONFIG_HOME", home)
        .args(["-c", "user.name=T", "-c", "user.email=t@e"])
        .args(args)
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// One case: what the branch tracks, what is written in the mount (new files
/// and changed ones, ignore files among them), `info/exclude` and
/// `core.excludesFile`. The commit's tree is the one `git add -A` makes of
/// the same work tree.
fn same_as_git(tracked: &Files, written: &Files, exclude: &str, excludes_file: &str) {
    let d = tempfile::tempdir().unwrap();
    let work = d.path().join("work");
    std::fs::create_dir(&work).unwrap();
    git(&work, d.path(), &["init", "-q", "-b", "main"]);
    let excludes = d.path().join("excludes");
    std::fs::write(&excludes, excludes_file).unwrap();
    git(
        &work,
        d.path(),
        &["config", "core.excludesFile", excludes.to_str().unwrap()],
    );
    std::fs::write(work.join(".git/info/exclude"), exclude).unwrap();
    let write = |files: &Files| {
        for (p, data) in files {
            let path = work.join(p);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, data).unwrap();
        }
    };
    write(tracked);
    git(&work, d.path(), &["add", "-A", "-f"]);
    git(
        &work,
        d.path(),
        &["commit", "-q", "--allow-empty", "-m", "base"],
    );
    let fs = fs_of(&work.join(".git"), true);
    for (p, data) in written {
        put(&fs, p, data);
    }
    fs.commit_all().unwrap();
    write(written);
    git(&work, d.path(), &["add", "-A"]);
    let want = git(&work, d.path(), &["write-tree"]);
    let repo = Repository::open(&work).unwrap();
    let got = repo
        .revparse_single("main")
        .unwrap()
        .peel_to_tree()
        .unwrap()
        .id();
    if got.to_string() != want {
        let want_files = committed(&repo, &want);
        let got_files = committed(&repo, &got.to_string());
        panic!(
            "git add -A keeps {:?}\ncommitfs committed {:?}",
            want_files.keys().collect::<Vec<_>>(),
            got_files.keys().collect::<Vec<_>>()
        );
    }
}

#[test]
// claim: ignored-files: "Patterns are git's"
fn the_rules_are_gits() {
    same_as_git(
        &files(&[
            (".gitignore", "*.o\nbuild/\n!keep.o\n/top\nsub/a/\n"),
            ("old.o", "1"),
            ("build/t", "1"),
            ("sub/.gitignore", "!*.o\n*.log\n"),
        ]),
        &files(&[
            ("a.o", "2"),
            ("keep.o", "2"),
            ("old.o", "2"),
            ("build/t", "2"),
            ("build/n", "2"),
            ("top", "2"),
            ("x/top", "2"),
            ("sub/a/f", "2"),
            ("sub/b.o", "2"),
            ("sub/c.log", "2"),
            ("sub/d/e.log", "2"),
            ("x/sub/a/f", "2"),
            ("n/.gitignore", "*\n!*.txt\n"),
            ("n/f.txt", "2"),
            ("n/g", "2"),
            ("n/m/f.txt", "2"),
        ]),
        "*.secret\n",
        "*.bak\n!n/\n",
    );
}

/// Names that collide and nest, patterns of every kind git has.
fn case() -> impl Strategy<Value = (Files, Files, String, String)> {
    let name = prop::sample::select(vec!["a", "b.o", "keep.o", "x.log", "sub", "build"]);
    let path = prop::collection::vec(name, 1..4).prop_map(|v| v.join("/"));
    let line = prop::sample::select(vec![
        "*.o",
        "!keep.o",
        "build/",
        "/a",
        "sub/a",
        "**/x.log",
        "!*.log",
        "*.log",
        "b.o/",
        "sub/**",
        "!sub/b.o",
        "a/",
        "!a",
        "*",
        "!sub/",
        "/sub/build/",
        "build/*",
        "!build/a",
        "a/**/b.o",
        "#a",
    ]);
    let text = prop::collection::vec(line, 0..5).prop_map(|v| v.join("\n") + "\n");
    let ignore_dir = prop::sample::select(vec!["", "sub/", "build/", "sub/sub/", "a/"]);
    let ignores = prop::collection::vec((ignore_dir, text.clone(), any::<u8>()), 0..4);
    let entries = prop::collection::vec((path, any::<u8>()), 0..12);
    (entries, ignores, text.clone(), text).prop_map(|(entries, ignores, exclude, global)| {
        // Each path tracked only, written only, or both (changed).
        let mut all: Vec<(String, String, u8)> = entries
            .into_iter()
            .map(|(p, w)| (p.clone(), format!("{p}\n"), w))
            .collect();
        for (d, text, w) in ignores {
            all.push((format!("{d}.gitignore"), text, w));
        }
        // A path is a file or a directory, not both.
        let names: Vec<String> = all.iter().map(|(p, _, _)| p.clone()).collect();
        all.retain(|(p, _, _)| !names.iter().any(|q| q.starts_with(&format!("{p}/"))));
        let (mut tracked, mut written) = (Files::new(), Files::new());
        for (p, text, w) in all {
            if w % 3 != 1 {
                tracked.insert(p.clone(), text.clone().into_bytes());
            }
            if w % 3 != 0 {
                written.insert(p, format!("{text}changed\n").into_bytes());
            }
        }
        (tracked, written, exclude, global)
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn what_is_committed_is_what_git_add_all_stages((tracked, written, exclude, global) in case()) {
        same_as_git(&tracked, &written, &exclude, &global);
    }
}
