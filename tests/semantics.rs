//! docs/SEMANTICS.md, executable: every claim it marks (`<!-- claim: ID -->`)
//! is named by a test (`// claim: ID: "a clause quoted from the claim"`), and
//! the tests below check the claims no other test file does, on the core
//! (no mount) where the claim is the core's.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// A claim as docs/SEMANTICS.md marks it: its line and the text of the
/// paragraph, bullet or table row that follows the marker.
struct Claim {
    line: usize,
    text: String,
}

/// A test's reference to a claim.
struct Reference {
    at: String,
    id: String,
    quote: String,
}

const MARK: &str = "<!-- claim: ";

/// Whitespace (newlines included) collapsed to single spaces, markdown's `*`,
/// `` ` `` and `_` dropped: what a quote is compared as.
fn normalize(s: &str) -> String {
    let kept: String = s
        .chars()
        .filter(|c| !matches!(c, '*' | '`' | '_'))
        .collect();
    kept.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Whether `line` begins a new block: a list item, a table row, a heading,
/// or a blank line.
fn starts_block(line: &str) -> bool {
    let t = line.trim_start();
    if t.is_empty() || t.starts_with("- ") || t.starts_with('|') || t.starts_with('#') {
        return true;
    }
    let digits = t.bytes().take_while(u8::is_ascii_digit).count();
    digits > 0 && t[digits..].starts_with(". ")
}

/// The markers of `doc`, by id, each with its block; ids marked twice and
/// malformed markers are returned as errors.
fn claims(doc: &str) -> (BTreeMap<String, Claim>, Vec<String>) {
    let lines: Vec<&str> = doc.lines().collect();
    let mut out = BTreeMap::new();
    let mut errors = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let mut ids = Vec::new();
        let mut rest: &str = line;
        while let Some(at) = rest.find(MARK) {
            let after = &rest[at + MARK.len()..];
            let Some(end) = after.find("-->") else {
                errors.push(format!("SEMANTICS.md:{}: unclosed claim marker", i + 1));
                break;
            };
            let id = after[..end].trim().to_string();
            let well_formed = !id.is_empty()
                && id.split('-').all(|w| {
                    !w.is_empty()
                        && w.bytes()
                            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
                });
            if !well_formed {
                errors.push(format!(
                    "SEMANTICS.md:{}: claim id {id:?} is not lowercase words joined by '-'",
                    i + 1
                ));
            }
            ids.push(id);
            rest = &after[end + 3..];
        }
        if ids.is_empty() {
            continue;
        }
        // The block: the rest of the marker's line (or, for a marker on a
        // line of its own, the next line), then its continuation lines, up to
        // a blank line, the next list item, row or heading, or the next marker.
        let mut text = rest.to_string();
        let mut j = i + 1;
        if let Some(next) = lines.get(j).filter(|_| text.trim().is_empty()) {
            text = next.to_string();
            j += 1;
        }
        // A table row is one line.
        if !line.trim_start().starts_with('|') {
            while let Some(l) = lines
                .get(j)
                .filter(|l| !starts_block(l) && !l.contains(MARK))
            {
                text.push(' ');
                text.push_str(l);
                j += 1;
            }
        }
        for id in ids {
            let claim = Claim {
                line: i + 1,
                text: normalize(&text),
            };
            if let Some(first) = out.insert(id.clone(), claim) {
                errors.push(format!(
                    "SEMANTICS.md:{}: claim {id} is marked twice (first at line {})",
                    i + 1,
                    first.line
                ));
            }
        }
    }
    (out, errors)
}

fn rs_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            rs_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

/// Every `// claim: ID: "QUOTE"` line of the tests; malformed ones, and
/// ones that stand neither above a function nor inside one, as errors.
fn references(root: &Path) -> (Vec<Reference>, Vec<String>) {
    let mut files = Vec::new();
    rs_files(&root.join("tests"), &mut files);
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for f in files {
        let src = std::fs::read_to_string(&f).unwrap();
        let rel = f.strip_prefix(root).unwrap().display().to_string();
        let lines: Vec<&str> = src.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            let Some(body) = line.trim_start().strip_prefix("// claim: ") else {
                continue;
            };
            let at = format!("{rel}:{}", i + 1);
            let parsed = body.split_once(": \"").and_then(|(id, q)| {
                let q = q.trim_end().strip_suffix('"')?;
                Some((id.trim().to_string(), q.to_string()))
            });
            let Some((id, quote)) = parsed else {
                errors.push(format!("{at}: not `// claim: ID: \"QUOTE\"`"));
                continue;
            };
            // Above a function (through comments and attributes), or inside
            // one (indented).
            let indented = line.starts_with(' ');
            let above_fn = lines[i + 1..]
                .iter()
                .map(|l| l.trim_start())
                .find(|l| !l.starts_with("//") && !l.starts_with("#["))
                .is_some_and(|l| l.starts_with("fn ") || l.starts_with("pub fn "));
            if !indented && !above_fn {
                errors.push(format!(
                    "{at}: claim {id} is referenced neither above nor inside a test function"
                ));
            }
            out.push(Reference { at, id, quote });
        }
    }
    (out, errors)
}

/// What is wrong between the marked claims and the tests' references.
fn check(doc: &str, root: &Path) -> Vec<String> {
    let (claims, mut errors) = claims(doc);
    let (refs, ref_errors) = references(root);
    errors.extend(ref_errors);
    let mut referenced = BTreeSet::new();
    for r in &refs {
        match claims.get(&r.id) {
            None => errors.push(format!(
                "{}: claim {} is not marked in SEMANTICS.md",
                r.at, r.id
            )),
            Some(c) => {
                referenced.insert(r.id.as_str());
                let q = normalize(&r.quote);
                if q.is_empty() || !c.text.contains(&q) {
                    errors.push(format!(
                        "{}: the quote for claim {} is not in its text (SEMANTICS.md:{}): {:?}",
                        r.at, r.id, c.line, r.quote
                    ));
                }
            }
        }
    }
    for (id, c) in &claims {
        if !referenced.contains(id.as_str()) {
            errors.push(format!("SEMANTICS.md:{}: claim {id} has no test", c.line));
        }
    }
    errors
}

#[test]
fn every_claim_in_semantics_md_has_a_test() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let doc = std::fs::read_to_string(root.join("docs/SEMANTICS.md")).unwrap();
    let errors = check(&doc, root);
    assert!(
        errors.is_empty(),
        "docs/SEMANTICS.md and the tests disagree:\n{}",
        errors.join("\n")
    );
    let (claims, _) = claims(&doc);
    assert!(
        claims.len() >= 50,
        "only {} claims are marked",
        claims.len()
    );
}

/// The checker itself: a claim without a test, a reference to no claim, a
/// quote from elsewhere and an id marked twice are each caught.
#[test]
fn the_claim_checker_catches_each_kind_of_mistake() {
    let doc = "Intro.\n\n- <!-- claim: one --> A `read` returns\n  the *bytes*.\n- Not a claim.\n\n<!-- claim: two -->\nA second paragraph.\n\n| <!-- claim: one --> a row | x |\n";
    let (c, errors) = claims(doc);
    assert_eq!(c["one"].text, "a row | x |");
    assert!(
        errors
            .iter()
            .any(|e| e.contains("claim one is marked twice")),
        "{errors:?}"
    );
    let (c, errors) = claims(&doc.replace("| <!-- claim: one -->", "|"));
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(c["one"].text, "A read returns the bytes.");
    assert_eq!(c["two"].text, "A second paragraph.");
    assert!(!c["one"].text.contains("Not a claim"));
    assert!(claims("<!-- claim: Bad_Id -->\nx\n").1.len() == 1);
}

// ---------------------------------------------------------------------------
// The claims no other test checks, on the core.

mod common;
use commitfs::error::FsError;
use commitfs::inodes::ROOT;
use commitfs::model::{FsConfig, SetAttr, Ts};
use commitfs::store::repo::Repo;
use commitfs::view::{CommitFs, FileKind};
use common::core::{cat, ino, write_file};
use git2::{Oid, Repository, Signature};
use std::sync::Arc;

const T1: i64 = 1_600_000_000;
const T2: i64 = 1_700_000_000;

/// Writes `files` (path, bytes, mode) as a tree and commits it on `branch`
/// at committer time `time`, on `parent`.
fn commit_files(
    repo: &Repository,
    branch: &str,
    files: &[(&str, &[u8], i32)],
    parent: Option<Oid>,
    time: i64,
) -> Oid {
    /// A file below the tree being built: path components, bytes, mode.
    type Below<'a> = (Vec<&'a str>, &'a [u8], i32);
    fn build(repo: &Repository, files: &[Below<'_>]) -> Oid {
        let mut tb = repo.treebuilder(None).unwrap();
        let mut dirs: BTreeMap<&str, Vec<Below<'_>>> = BTreeMap::new();
        for (p, data, mode) in files {
            if p.len() == 1 {
                tb.insert(p[0], repo.blob(data).unwrap(), *mode).unwrap();
            } else {
                dirs.entry(p[0])
                    .or_default()
                    .push((p[1..].to_vec(), data, *mode));
            }
        }
        for (name, sub) in dirs {
            tb.insert(name, build(repo, &sub), 0o040000).unwrap();
        }
        tb.write().unwrap()
    }
    let split: Vec<_> = files
        .iter()
        .map(|(p, d, m)| (p.split('/').collect::<Vec<_>>(), *d, *m))
        .collect();
    common::core::commit_tree(repo, branch, build(repo, &split), parent, time)
}

/// A bare repository: `main` at T2 holds README, src/x.rs, bin/run (0755);
/// its parent (T1) and the tag `v1` held README "one"; branch `other`.
fn sample() -> (tempfile::TempDir, Oid, Oid) {
    let dir = tempfile::tempdir().unwrap();
    let repo = Repository::init_bare(dir.path()).unwrap();
    let c1 = commit_files(
        &repo,
        "main",
        &[
            ("README", b"one\n", 0o100644),
            ("src/x.rs", b"x\n", 0o100644),
        ],
        None,
        T1,
    );
    let c2 = commit_files(
        &repo,
        "main",
        &[
            ("README", b"two\n", 0o100644),
            ("src/x.rs", b"x\n", 0o100644),
            ("bin/run", b"#!/bin/sh\n", 0o100755),
        ],
        Some(c1),
        T2,
    );
    repo.reference("refs/heads/other", c1, true, "").unwrap();
    repo.tag_lightweight("v1", &repo.find_object(c1, None).unwrap(), false)
        .unwrap();
    repo.set_head("refs/heads/main").unwrap();
    (dir, c1, c2)
}

fn cfg() -> FsConfig {
    FsConfig {
        author: Some("T <t@example.com>".into()),
        // Commits come from barriers only, unless a test says otherwise.
        settle: std::time::Duration::from_secs(3600),
        ..FsConfig::default()
    }
}

fn fs_with(dir: &Path, cfg: FsConfig) -> Arc<CommitFs> {
    CommitFs::new(Repo::open(dir).unwrap(), cfg).unwrap()
}

fn fs_of(dir: &Path) -> Arc<CommitFs> {
    fs_with(dir, cfg())
}

fn listing(fs: &CommitFs, path: &str) -> Vec<Vec<u8>> {
    common::core::names(fs, ino(fs, path).unwrap())
}

fn tip(dir: &Path, branch: &str) -> Oid {
    Repository::open_bare(dir)
        .unwrap()
        .refname_to_id(&format!("refs/heads/{branch}"))
        .unwrap()
}

/// The blob at `path` in `rev`'s tree, and its mode.
fn blob_at(dir: &Path, rev: &str, path: &str) -> Option<(Vec<u8>, i32)> {
    let repo = Repository::open_bare(dir).unwrap();
    let tree = repo.revparse_single(rev).unwrap().peel_to_tree().unwrap();
    let e = tree.get_path(Path::new(path)).ok()?;
    let blob = repo.find_blob(e.id()).ok()?;
    Some((blob.content().to_vec(), e.filemode()))
}

fn barrier(fs: &CommitFs, dir: &str) {
    fs.fsync(ino(fs, dir).unwrap()).unwrap();
}

// claim: head-symlink: "for a detached HEAD, to .commits/<sha>"
// claim: head-symlink: "absent if HEAD is unborn or names a missing branch"
#[test]
fn head_of_a_detached_or_unborn_head() {
    let (dir, c1, _) = sample();
    let repo = Repository::open_bare(dir.path()).unwrap();
    repo.set_head_detached(c1).unwrap();
    let fs = fs_of(dir.path());
    let head = ino(&fs, "HEAD").unwrap();
    assert_eq!(
        fs.readlink(head).unwrap(),
        format!(".commits/{c1}").into_bytes()
    );
    drop(fs);
    repo.set_head("refs/heads/nothing-here").unwrap();
    let fs = fs_of(dir.path());
    assert_eq!(ino(&fs, "HEAD"), Err(FsError::NotFound));
    assert!(!listing(&fs, "").contains(&b"HEAD".to_vec()));
}

// claim: tags-peeled: "a tag of a tree shows the tree"
#[test]
fn a_tag_of_a_tree_shows_the_tree() {
    let (dir, c1, _) = sample();
    let repo = Repository::open_bare(dir.path()).unwrap();
    let tree = repo.find_commit(c1).unwrap().tree_id();
    repo.tag_lightweight("tree-tag", &repo.find_object(tree, None).unwrap(), false)
        .unwrap();
    let fs = fs_of(dir.path());
    assert_eq!(cat(&fs, ".tags/tree-tag/README"), b"one\n");
    assert_eq!(
        fs.getattr(ino(&fs, ".tags/tree-tag").unwrap())
            .unwrap()
            .attr
            .kind,
        FileKind::Dir
    );
}

// claim: ref-option-order: "A branch name is tried first, then a tag, then a revision."
#[test]
fn ref_tries_a_branch_then_a_tag_then_a_revision() {
    let (dir, c1, c2) = sample();
    let repo = Repository::open_bare(dir.path()).unwrap();
    // A tag named like the branch, on the older commit; a branch named
    // like a revision.
    repo.tag_lightweight("main", &repo.find_object(c1, None).unwrap(), false)
        .unwrap();
    let short = c2.to_string()[..10].to_string();
    repo.reference(&format!("refs/heads/{short}"), c1, true, "")
        .unwrap();
    let root = |r: &str| {
        fs_with(
            dir.path(),
            FsConfig {
                root: commitfs::model::RootSpec::Ref(r.into()),
                ..cfg()
            },
        )
    };
    assert_eq!(
        cat(&root("main"), "README"),
        b"two\n",
        "the branch, not the tag"
    );
    assert_eq!(cat(&root("v1"), "README"), b"one\n");
    assert_eq!(
        cat(&root(&short), "README"),
        b"one\n",
        "the branch, not the revision"
    );
    assert_eq!(cat(&root("other^0"), "README"), b"one\n");
}

// claim: listing-byte-order: "Listings are in byte order of names."
// claim: names-are-bytes: "A tree entry name that is not UTF-8 is served as it is."
#[test]
fn listings_are_in_byte_order_and_names_are_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let repo = Repository::init_bare(dir.path()).unwrap();
    let blob = repo.blob(b"b").unwrap();
    let mut sub = repo.treebuilder(None).unwrap();
    sub.insert("f", blob, 0o100644).unwrap();
    let sub = sub.write().unwrap();
    let mut tb = repo.treebuilder(None).unwrap();
    use std::os::unix::ffi::OsStrExt;
    let latin1 = std::ffi::OsStr::from_bytes(b"caf\xe9");
    tb.insert(latin1, blob, 0o100644).unwrap();
    // Git orders the directory `a` as `a/`, after `a.b`; bytes put it first.
    tb.insert("a.b", blob, 0o100644).unwrap();
    tb.insert("a", sub, 0o040000).unwrap();
    tb.insert("B", blob, 0o100644).unwrap();
    let tree = repo.find_tree(tb.write().unwrap()).unwrap();
    let sig = Signature::now("T", "t@e").unwrap();
    repo.commit(Some("refs/heads/main"), &sig, &sig, "m", &tree, &[])
        .unwrap();
    let fs = fs_of(dir.path());
    let names = listing(&fs, "main");
    let want: Vec<Vec<u8>> = vec![
        b".".to_vec(),
        b"..".to_vec(),
        b"B".to_vec(),
        b"a".to_vec(),
        b"a.b".to_vec(),
        b"caf\xe9".to_vec(),
    ];
    assert_eq!(names, want);
    let main = ino(&fs, "main").unwrap();
    let f = fs.lookup(main, b"caf\xe9").unwrap().attr.ino;
    assert_eq!(fs.read(f, 0, 10).unwrap(), b"b");
}

// claim: owner: "Owner of every path is the mounting user and group."
#[test]
fn every_path_is_owned_by_the_mounting_user() {
    let (dir, _, _) = sample();
    let fs = fs_with(
        dir.path(),
        FsConfig {
            uid: 4321,
            gid: 8765,
            ..cfg()
        },
    );
    for p in [
        "",
        "HEAD",
        ".tags",
        ".commits",
        "main",
        "main/README",
        "main/src",
        ".tags/v1/README",
    ] {
        let a = fs.getattr(ino(&fs, p).unwrap()).unwrap().attr;
        assert_eq!((a.uid, a.gid), (4321, 8765), "{p:?}");
    }
}

// claim: st-size: "st_blocks = ceil(size / 512)."
// claim: st-size: "Directories have size 0 and st_nlink 2 (not a count of subdirectories)."
#[test]
fn sizes_blocks_and_directory_links() {
    let dir = tempfile::tempdir().unwrap();
    let repo = Repository::init_bare(dir.path()).unwrap();
    let big = vec![7u8; 1025];
    commit_files(
        &repo,
        "main",
        &[
            ("f", &big, 0o100644),
            ("d/a/x", b"x", 0o100644),
            ("d/b/x", b"x", 0o100644),
            ("d/c/x", b"x", 0o100644),
        ],
        None,
        T1,
    );
    let fs = fs_of(dir.path());
    let f = fs.getattr(ino(&fs, "main/f").unwrap()).unwrap().attr;
    assert_eq!((f.size, f.blocks), (1025, 3));
    for p in ["", ".tags", "main", "main/d", "main/d/a"] {
        let a = fs.getattr(ino(&fs, p).unwrap()).unwrap().attr;
        assert_eq!((a.size, a.nlink), (0, 2), "{p:?}");
    }
}

// claim: st-mtime: "at first, every path has the time of the commit it was first looked up in"
// claim: st-mtime: "The root, .tags, .commits and namespaces have the mount's start time."
#[test]
fn times_are_the_commits_and_the_mounts() {
    let (dir, _, _) = sample();
    let repo = Repository::open_bare(dir.path()).unwrap();
    let c1 = repo.revparse_single("main~1").unwrap().id();
    repo.reference("refs/heads/ns/leaf", c1, true, "").unwrap();
    let before = Ts::now().secs;
    let fs = fs_of(dir.path());
    let after = Ts::now().secs;
    let mtime = |p: &str| fs.getattr(ino(&fs, p).unwrap()).unwrap().attr.mtime.secs;
    assert_eq!(mtime("main/README"), T2);
    assert_eq!(mtime("main/src/x.rs"), T2);
    assert_eq!(mtime(".commits/main~1/README"), T1);
    assert_eq!(mtime(".tags/v1/src/x.rs"), T1);
    for p in ["", ".tags", ".commits", "ns"] {
        let t = mtime(p);
        assert!(
            (before..=after).contains(&t),
            "{p:?}: {t} not in {before}..={after}"
        );
    }
}

// claim: ino-stable: "The same content at two paths (a file in main and in .tags/v1.0) has two inode numbers."
// claim: ino-stable: "stable for a path, never shared"
#[test]
fn inode_numbers_are_per_path() {
    let (dir, _, _) = sample();
    let fs = fs_of(dir.path());
    let a = ino(&fs, "main/src/x.rs").unwrap();
    let b = ino(&fs, ".tags/v1/src/x.rs").unwrap();
    let c = ino(&fs, "other/src/x.rs").unwrap();
    assert!(a != b && b != c && a != c, "{a} {b} {c}");
    assert_eq!(ino(&fs, "main/src/x.rs").unwrap(), a);
    // Removed and made again at the same path, a path keeps its number;
    // no other path ever gets it.
    let main = ino(&fs, "main").unwrap();
    let readme = ino(&fs, "main/README").unwrap();
    fs.unlink(main, b"README").unwrap();
    let other = fs.create(main, b"README2", 0o644).unwrap().attr.ino;
    assert_ne!(other, readme);
}

// claim: open-refs-eisdir: "open O_RDONLY | OK | OK | EISDIR"
#[test]
fn opening_a_refs_directory_is_eisdir() {
    let (dir, _, _) = sample();
    let fs = fs_of(dir.path());
    for p in ["", ".tags", ".commits", "main"] {
        let i = ino(&fs, p).unwrap();
        assert_eq!(fs.open(i, false), Err(FsError::IsDir), "{p:?}");
        assert_eq!(fs.open(i, true), Err(FsError::IsDir), "{p:?}");
    }
}

// claim: write-hole: "past the end leaves a hole that reads as zeros"
#[test]
fn a_write_past_the_end_leaves_a_hole_of_zeros() {
    let (dir, _, _) = sample();
    let fs = fs_of(dir.path());
    let f = ino(&fs, "main/README").unwrap();
    fs.write(f, 10, b"x").unwrap();
    assert_eq!(fs.read(f, 0, 100).unwrap(), b"two\n\0\0\0\0\0\0x");
    barrier(&fs, "main");
    assert_eq!(
        blob_at(dir.path(), "main", "README").unwrap().0,
        b"two\n\0\0\0\0\0\0x"
    );
}

// claim: fallocate-modes: "FALLOC_FL_KEEP_SIZE succeeds (nothing to reserve); others EOPNOTSUPP"
// claim: fallocate-modes: "mode 0 extends and reserves the range on disk"
#[test]
fn fallocate_extends_keeps_size_or_is_eopnotsupp() {
    let (dir, _, _) = sample();
    let fs = fs_of(dir.path());
    let f = ino(&fs, "main/README").unwrap();
    fs.fallocate(f, 0, 100, libc::FALLOC_FL_KEEP_SIZE).unwrap();
    assert_eq!(fs.getattr(f).unwrap().attr.size, 4);
    fs.fallocate(f, 0, 100, 0).unwrap();
    assert_eq!(fs.getattr(f).unwrap().attr.size, 100);
    assert_eq!(&fs.read(f, 0, 200).unwrap()[..6], b"two\n\0\0");
    let e = fs
        .fallocate(
            f,
            0,
            10,
            libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
        )
        .unwrap_err();
    assert_eq!(e.errno(), libc::EOPNOTSUPP);
    let tagged = ino(&fs, ".tags/v1/README").unwrap();
    assert_eq!(fs.fallocate(tagged, 0, 10, 0), Err(FsError::ReadOnly));
}

// claim: rename-exdev: "rename to another branch or into a snapshot | EXDEV, so mv copies"
#[test]
fn a_rename_to_another_branch_or_a_snapshot_is_exdev() {
    let (dir, _, _) = sample();
    let fs = fs_of(dir.path());
    let main = ino(&fs, "main").unwrap();
    let other = ino(&fs, "other").unwrap();
    let other_src = ino(&fs, "other/src").unwrap();
    let tag = ino(&fs, ".tags/v1").unwrap();
    assert_eq!(
        fs.rename(main, b"README", other, b"R", 0),
        Err(FsError::CrossDevice)
    );
    assert_eq!(
        fs.rename(main, b"README", other_src, b"R", 0),
        Err(FsError::CrossDevice)
    );
    assert_eq!(
        fs.rename(main, b"README", tag, b"R", 0),
        Err(FsError::CrossDevice)
    );
    assert_eq!(cat(&fs, "main/README"), b"two\n", "nothing moved");
}

// claim: rmdir-not-empty: "rmdir | ENOTEMPTY unless empty"
#[test]
fn rmdir_of_a_directory_that_holds_something_is_enotempty() {
    let (dir, _, _) = sample();
    let fs = fs_of(dir.path());
    let main = ino(&fs, "main").unwrap();
    assert_eq!(fs.rmdir(main, b"src"), Err(FsError::NotEmpty));
    let src = ino(&fs, "main/src").unwrap();
    fs.unlink(src, b"x.rs").unwrap();
    fs.rmdir(main, b"src").unwrap();
    assert_eq!(ino(&fs, "main/src"), Err(FsError::NotFound));
}

// claim: chmod-exec-bit: "the executable bit (owner's) goes into the tree (100755/100644); all bits are kept in the overlay and shown"
#[test]
fn chmod_commits_the_owners_executable_bit_and_shows_every_bit() {
    let (dir, _, _) = sample();
    let fs = fs_of(dir.path());
    let readme = ino(&fs, "main/README").unwrap();
    let run = ino(&fs, "main/bin/run").unwrap();
    let mode = |m| SetAttr {
        mode: Some(m),
        ..Default::default()
    };
    fs.setattr(readme, mode(0o700)).unwrap();
    fs.setattr(run, mode(0o640)).unwrap();
    assert_eq!(fs.getattr(readme).unwrap().attr.perm & 0o7777, 0o700);
    assert_eq!(fs.getattr(run).unwrap().attr.perm & 0o7777, 0o640);
    barrier(&fs, "main");
    assert_eq!(blob_at(dir.path(), "main", "README").unwrap().1, 0o100755);
    assert_eq!(blob_at(dir.path(), "main", "bin/run").unwrap().1, 0o100644);
    // Group and others' executable bits alone are not the owner's.
    fs.setattr(readme, mode(0o655)).unwrap();
    barrier(&fs, "main");
    assert_eq!(blob_at(dir.path(), "main", "README").unwrap().1, 0o100644);
    assert_eq!(fs.getattr(readme).unwrap().attr.perm & 0o7777, 0o655);
}

// claim: chown-self-only: "to the mounting user and group: OK, nothing changes; to anyone else EPERM"
#[test]
fn chown_to_the_mounting_user_only() {
    let (dir, _, _) = sample();
    let me = cfg();
    let fs = fs_of(dir.path());
    let readme = ino(&fs, "main/README").unwrap();
    let before = tip(dir.path(), "main");
    let to = |uid, gid| SetAttr {
        uid,
        gid,
        ..Default::default()
    };
    let a = fs
        .setattr(readme, to(Some(me.uid), Some(me.gid)))
        .unwrap()
        .attr;
    assert_eq!((a.uid, a.gid), (me.uid, me.gid));
    assert_eq!(
        fs.setattr(readme, to(Some(me.uid + 1), None)).unwrap_err(),
        FsError::NotPermitted
    );
    assert_eq!(
        fs.setattr(readme, to(None, Some(me.gid + 1))).unwrap_err(),
        FsError::NotPermitted
    );
    barrier(&fs, "main");
    assert_eq!(tip(dir.path(), "main"), before, "nothing changes");
}

// claim: chown-snapshot: "chown, chgrp | to the mounting user and group: OK, nothing changes; to anyone else EPERM | EROFS | EROFS"
#[test]
fn chown_in_a_snapshot_or_the_refs_is_erofs() {
    let (dir, _, _) = sample();
    let me = cfg();
    let fs = fs_of(dir.path());
    for p in [".tags/v1/README", ".tags/v1", ".tags", ""] {
        let i = ino(&fs, p).unwrap();
        for (uid, gid) in [
            (Some(me.uid), None),
            (None, Some(me.gid)),
            (Some(me.uid + 1), None),
        ] {
            let got = fs.setattr(
                i,
                SetAttr {
                    uid,
                    gid,
                    ..Default::default()
                },
            );
            assert_eq!(got.err(), Some(FsError::ReadOnly), "{p:?} {uid:?} {gid:?}");
        }
    }
}

// claim: utimens-not-committed: "atime and mtime kept in the overlay, to the nanosecond, and shown; ctime set to now; not committed"
#[test]
fn utimens_is_shown_to_the_nanosecond_and_not_committed() {
    let (dir, _, _) = sample();
    let fs = fs_of(dir.path());
    let readme = ino(&fs, "main/README").unwrap();
    let before = tip(dir.path(), "main");
    let set = Ts {
        secs: 1_234_567_890,
        nsec: 987_654_321,
    };
    let call = Ts::now();
    let a = fs
        .setattr(
            readme,
            SetAttr {
                atime: Some(set),
                mtime: Some(set),
                ..Default::default()
            },
        )
        .unwrap()
        .attr;
    assert_eq!((a.atime, a.mtime), (set, set));
    assert!(
        a.ctime >= call,
        "ctime {:?} is the call's, not before {call:?}",
        a.ctime
    );
    barrier(&fs, "main");
    assert_eq!(tip(dir.path(), "main"), before, "times are not committed");
    assert_eq!(fs.getattr(readme).unwrap().attr.mtime, set);
}

// claim: access-write: "access W_OK | OK | EROFS | EROFS"
// claim: access-exec: "access X_OK | EACCES on a file that is not executable | same | OK"
#[test]
fn access_on_branches_snapshots_and_refs() {
    let (dir, _, _) = sample();
    let fs = fs_of(dir.path());
    let i = |p| ino(&fs, p).unwrap();
    assert_eq!(fs.access(i("main/README"), libc::W_OK), Ok(()));
    assert_eq!(
        fs.access(i(".tags/v1/README"), libc::W_OK),
        Err(FsError::ReadOnly)
    );
    assert_eq!(fs.access(i(".tags"), libc::W_OK), Err(FsError::ReadOnly));
    assert_eq!(
        fs.access(i(".tags/v1/README"), libc::X_OK),
        Err(FsError::Access)
    );
    assert_eq!(fs.access(i("main/bin/run"), libc::X_OK), Ok(()));
    for refs in ["", ".tags", ".commits"] {
        assert_eq!(fs.access(i(refs), libc::X_OK), Ok(()), "{refs:?}");
    }
}

// claim: statfs-repo: "statfs | the figures of the filesystem holding the repository; name length 255"
#[test]
fn statfs_is_the_repositorys_filesystem_with_names_of_255() {
    let (dir, _, _) = sample();
    let fs = fs_of(dir.path());
    let s = fs.statfs();
    assert_eq!(s.namelen, 255);
    let host = nix::sys::statvfs::statvfs(dir.path()).unwrap();
    assert_eq!(
        s.blocks * u64::from(s.frsize),
        host.blocks() * host.fragment_size()
    );
}

// claim: mkdir-branch-errors: "EEXIST if the branch exists; EINVAL for a name Git refuses (git check-ref-format), one starting with ., or HEAD."
// claim: mkdir-branch: "creates branch NAME or feature/NAME at the tip of the branch HEAD names"
#[test]
fn mkdir_in_the_root_makes_a_branch_at_heads_tip_or_says_why_not() {
    let (dir, _, c2) = sample();
    let fs = fs_of(dir.path());
    fs.mkdir(ROOT, b"topic", 0o755).unwrap();
    assert_eq!(tip(dir.path(), "topic"), c2);
    let ns = fs.mkdir(ROOT, b"feature", 0o755);
    // `feature` alone is a branch too; a branch below a namespace:
    assert!(ns.is_ok());
    let repo = Repository::open_bare(dir.path()).unwrap();
    repo.reference("refs/heads/team/a", c2, true, "").unwrap();
    let team = ino(&fs, "team").unwrap();
    fs.mkdir(team, b"b", 0o755).unwrap();
    assert_eq!(tip(dir.path(), "team/b"), c2);
    assert_eq!(fs.mkdir(ROOT, b"main", 0o755).unwrap_err(), FsError::Exists);
    for bad in [
        &b"HEAD"[..],
        b".hidden",
        b"a..b",
        b"x.lock",
        b"sp ace",
        b"t~1",
        b"q?",
    ] {
        assert_eq!(
            fs.mkdir(ROOT, bad, 0o755).unwrap_err(),
            FsError::Invalid,
            "{}",
            String::from_utf8_lossy(bad)
        );
    }
}

// claim: rmdir-branch: "ENOTEMPTY otherwise, and for a namespace."
// claim: rename-branch: "EEXIST if a branch or namespace has the new name; EPERM for a namespace; EXDEV between a branch's inside and the root."
#[test]
fn rmdir_and_rename_of_branches_say_why_not() {
    let (dir, _, c2) = sample();
    let repo = Repository::open_bare(dir.path()).unwrap();
    repo.reference("refs/heads/team/a", c2, true, "").unwrap();
    let fs = fs_of(dir.path());
    assert_eq!(fs.rmdir(ROOT, b"main").unwrap_err(), FsError::NotEmpty);
    assert_eq!(fs.rmdir(ROOT, b"team").unwrap_err(), FsError::NotEmpty);
    assert_eq!(
        fs.rename(ROOT, b"other", ROOT, b"main", 0).unwrap_err(),
        FsError::Exists
    );
    assert_eq!(
        fs.rename(ROOT, b"other", ROOT, b"team", 0).unwrap_err(),
        FsError::Exists
    );
    assert_eq!(
        fs.rename(ROOT, b"team", ROOT, b"squad", 0).unwrap_err(),
        FsError::NotPermitted
    );
    let main = ino(&fs, "main").unwrap();
    assert_eq!(
        fs.rename(main, b"README", ROOT, b"README", 0).unwrap_err(),
        FsError::CrossDevice
    );
    assert_eq!(
        fs.rename(ROOT, b"other", main, b"other", 0).unwrap_err(),
        FsError::CrossDevice
    );
    // And the one that works: the branch is renamed.
    fs.rename(ROOT, b"other", ROOT, b"renamed", 0).unwrap();
    assert!(repo.find_reference("refs/heads/other").is_err());
    assert!(repo.find_reference("refs/heads/renamed").is_ok());
}

/// Commits on `branch` since `since` (first-parent), newest first.
fn commits_since(dir: &Path, branch: &str, since: Oid) -> Vec<git2::Commit<'static>> {
    let repo = Box::leak(Box::new(Repository::open_bare(dir).unwrap()));
    let mut out = Vec::new();
    let mut c = repo.find_commit(tip(dir, branch)).unwrap();
    while c.id() != since {
        let parent = c.parent(0).unwrap();
        out.push(c);
        c = parent;
    }
    out
}

// claim: fsync-file-commits-nothing: "make the file durable in the overlay and commit nothing: the rename that follows lands in the same commit."
// claim: barrier: "A barrier returns 0 once the branch's changes are in a commit that the branch ref points to"
#[test]
fn a_files_fsync_commits_nothing_and_a_directorys_commits_at_once() {
    let (dir, _, c2) = sample();
    let fs = fs_of(dir.path());
    let main = ino(&fs, "main").unwrap();
    // A crash-safe save: write a temporary file, fsync it, rename it over
    // the original, fsync the directory.
    let t = write_file(&fs, "main", "README.tmp", b"three\n");
    fs.fsync_data(t).unwrap();
    assert_eq!(
        tip(dir.path(), "main"),
        c2,
        "fsync of a file commits nothing"
    );
    fs.rename(main, b"README.tmp", main, b"README", 0).unwrap();
    fs.fsync(main).unwrap();
    let made = commits_since(dir.path(), "main", c2);
    assert_eq!(made.len(), 1, "one commit");
    assert_eq!(blob_at(dir.path(), "main", "README").unwrap().0, b"three\n");
    assert!(blob_at(dir.path(), "main", "README.tmp").is_none());
}

// claim: packs-not-loose: "are written as one packfile in objects/pack (deflated at the fastest level, no deltas), never as loose objects"
#[test]
fn a_commit_writes_a_pack_and_no_loose_object() {
    let (dir, _, _) = sample();
    let loose = || {
        std::fs::read_dir(dir.path().join("objects"))
            .unwrap()
            .map(|e| e.unwrap())
            .filter(|e| e.file_name().len() == 2)
            .map(|e| std::fs::read_dir(e.path()).unwrap().count())
            .sum::<usize>()
    };
    let packs = || {
        std::fs::read_dir(dir.path().join("objects/pack"))
            .map(|d| {
                d.filter(|e| {
                    e.as_ref()
                        .unwrap()
                        .path()
                        .extension()
                        .is_some_and(|x| x == "pack")
                })
                .count()
            })
            .unwrap_or(0)
    };
    let (l0, p0) = (loose(), packs());
    let fs = fs_of(dir.path());
    write_file(&fs, "main", "new.txt", b"brand new content\n");
    write_file(&fs, "main/src", "y.rs", b"y\n");
    barrier(&fs, "main");
    assert_eq!(loose(), l0, "no loose object written");
    assert_eq!(packs(), p0 + 1, "one pack");
    assert_eq!(blob_at(dir.path(), "main", "src/y.rs").unwrap().0, b"y\n");
}

// claim: nothing-to-commit: "Nothing to commit (only scratch or ignored files changed, or the tree is as it was) makes no commit."
#[test]
fn a_save_that_leaves_the_tree_as_it_was_makes_no_commit() {
    let (dir, _, c2) = sample();
    let fs = fs_of(dir.path());
    write_file(&fs, "main", "README", b"two\n");
    write_file(&fs, "main", ".README.swp", b"swap");
    write_file(&fs, "main", "temp", b"t");
    let main = ino(&fs, "main").unwrap();
    fs.unlink(main, b"temp").unwrap();
    barrier(&fs, "main");
    assert_eq!(tip(dir.path(), "main"), c2);
}

// claim: scratch: "A committed file renamed to a scratch name (vim's and emacs's backup: notes.txt to notes.txt~) is a deletion in the commit, not an add."
// claim: scratch: "live in the mount like any file but are left out of every tree commitfs writes"
#[test]
fn scratch_names_stay_out_of_commits_and_a_rename_to_one_is_a_deletion() {
    let (dir, _, c2) = sample();
    let fs = fs_with(
        dir.path(),
        FsConfig {
            scratch: vec!["*.tmp".into()],
            ..cfg()
        },
    );
    let main = ino(&fs, "main").unwrap();
    for name in [
        ".x.swp",
        "4913",
        "#a#",
        ".#lock",
        "db-journal",
        "out.tmp",
        "a.kate-swp",
    ] {
        write_file(&fs, "main", name, b"scratch");
    }
    fs.rename(main, b"README", main, b"README~", 0).unwrap();
    barrier(&fs, "main");
    let made = commits_since(dir.path(), "main", c2);
    assert_eq!(made.len(), 1);
    let tree = made[0].tree().unwrap();
    let names: Vec<_> = tree.iter().map(|e| e.name().unwrap().to_string()).collect();
    assert_eq!(names, ["bin", "src"], "README deleted, no scratch added");
    assert_eq!(cat(&fs, "main/README~"), b"two\n");
    assert_eq!(cat(&fs, "main/out.tmp"), b"scratch");
}

// claim: sqlite-transaction: "goes into a commit as the branch had it (left out if it is new)"
// claim: sqlite-transaction: "It is committed once the journal is gone or empty"
#[test]
fn a_database_with_a_live_journal_is_committed_as_before() {
    let (dir, _, _) = sample();
    let fs = fs_of(dir.path());
    let main = ino(&fs, "main").unwrap();
    write_file(&fs, "main", "app.db", b"v1");
    barrier(&fs, "main");
    assert_eq!(blob_at(dir.path(), "main", "app.db").unwrap().0, b"v1");
    // A transaction: the journal holds bytes while the database changes.
    write_file(&fs, "main", "app.db-journal", b"rollback");
    write_file(&fs, "main", "app.db", b"v2-half");
    write_file(&fs, "main", "new.db", b"n");
    write_file(&fs, "main", "new.db-wal", b"wal");
    write_file(&fs, "main", "README", b"three\n");
    barrier(&fs, "main");
    assert_eq!(blob_at(dir.path(), "main", "README").unwrap().0, b"three\n");
    assert_eq!(
        blob_at(dir.path(), "main", "app.db").unwrap().0,
        b"v1",
        "as the branch had it"
    );
    assert!(
        blob_at(dir.path(), "main", "new.db").is_none(),
        "a new one is left out"
    );
    // Commit of the transaction: the journal is emptied, then removed.
    write_file(&fs, "main", "app.db", b"v2");
    write_file(&fs, "main", "app.db-journal", b"");
    fs.unlink(main, b"new.db-wal").unwrap();
    barrier(&fs, "main");
    assert_eq!(blob_at(dir.path(), "main", "app.db").unwrap().0, b"v2");
    assert_eq!(blob_at(dir.path(), "main", "new.db").unwrap().0, b"n");
    assert!(blob_at(dir.path(), "main", "app.db-journal").is_none());
}

// claim: commit-message: "one line that says what changed (Update README.md, Add 3 files, update 1, delete 2 in src/), a blank line, and one line per path (A, M, D)."
#[test]
fn a_commit_message_says_what_changed_and_lists_each_path() {
    let (dir, _, c2) = sample();
    let fs = fs_of(dir.path());
    write_file(&fs, "main", "README", b"three\n");
    barrier(&fs, "main");
    let c = &commits_since(dir.path(), "main", c2)[0];
    assert_eq!(c.message().unwrap(), "Update README\n\nM README\n");
    let mid = c.id();
    let src = ino(&fs, "main/src").unwrap();
    write_file(&fs, "main/src", "a.rs", b"a");
    write_file(&fs, "main/src", "b.rs", b"b");
    write_file(&fs, "main/src", "x.rs", b"changed");
    fs.unlink(src, b"x.rs").unwrap();
    write_file(&fs, "main/src", "x.rs", b"again");
    barrier(&fs, "main");
    let c = &commits_since(dir.path(), "main", mid)[0];
    let msg = c.message().unwrap();
    let mut lines = msg.lines();
    assert_eq!(lines.next(), Some("Add 2 files, update 1 in src/"), "{msg}");
    assert_eq!(lines.next(), Some(""));
    let rest: BTreeSet<&str> = lines.collect();
    assert_eq!(
        rest,
        BTreeSet::from(["A src/a.rs", "A src/b.rs", "M src/x.rs"]),
        "{msg}"
    );
}

// claim: author: "else the repository's user.name and user.email, else commitfs <commitfs@HOSTNAME>."
#[test]
fn the_author_is_the_option_else_the_repositorys_else_commitfs() {
    let (dir, _, _) = sample();
    let who = |c: &git2::Commit| {
        let (a, m) = (c.author(), c.committer());
        assert_eq!(
            (a.name(), a.email()),
            (m.name(), m.email()),
            "author is committer"
        );
        (
            a.name().unwrap().to_string(),
            a.email().unwrap().to_string(),
        )
    };
    let save = |author: Option<&str>, data: &[u8]| {
        let fs = fs_with(
            dir.path(),
            FsConfig {
                author: author.map(Into::into),
                ..cfg()
            },
        );
        write_file(&fs, "main", "README", data);
        barrier(&fs, "main");
        fs.finish_overlay();
        let repo = Repository::open_bare(dir.path()).unwrap();
        let c = repo.find_commit(tip(dir.path(), "main")).unwrap();
        who(&c)
    };
    assert_eq!(
        save(Some("Ann Other <ann@example.org>"), b"1"),
        ("Ann Other".into(), "ann@example.org".into())
    );
    let repo = Repository::open_bare(dir.path()).unwrap();
    let mut conf = repo
        .config()
        .unwrap()
        .open_level(git2::ConfigLevel::Local)
        .unwrap();
    // Without a user.name of the repository's own, the user's or the
    // system's may apply: only check the fallback when none is set.
    let global = repo.config().unwrap().get_string("user.name").ok();
    if global.is_none() {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
        let host = host.trim();
        assert_eq!(
            save(None, b"2"),
            ("commitfs".into(), format!("commitfs@{host}"))
        );
    }
    conf.set_str("user.name", "Repo Person").unwrap();
    conf.set_str("user.email", "repo@example.net").unwrap();
    assert_eq!(
        save(None, b"3"),
        ("Repo Person".into(), "repo@example.net".into())
    );
}

// claim: symlink-bad-target: "symlink with such a target: EINVAL"
#[test]
fn a_symlink_with_an_empty_or_nul_or_overlong_target_is_einval() {
    let (dir, _, _) = sample();
    let fs = fs_of(dir.path());
    let main = ino(&fs, "main").unwrap();
    for target in [&b""[..], b"a\0b", &[b'x'; 4097]] {
        assert_eq!(
            fs.symlink(main, b"l", target).unwrap_err(),
            FsError::Invalid
        );
    }
    fs.symlink(main, b"l", &[b'x'; 4096]).unwrap();
    assert_eq!(
        fs.readlink(ino(&fs, "main/l").unwrap()).unwrap(),
        vec![b'x'; 4096]
    );
}

// claim: symlink-bad-blob: "a symlink whose target is empty or holds NUL | listed; readlink gives EIO"
#[test]
fn a_stored_symlink_with_an_empty_or_nul_target_is_listed_and_eio() {
    let dir = tempfile::tempdir().unwrap();
    let repo = Repository::init_bare(dir.path()).unwrap();
    commit_files(
        &repo,
        "main",
        &[
            ("empty", b"", 0o120000),
            ("nul", b"a\0b", 0o120000),
            ("ok", b"x", 0o120000),
        ],
        None,
        T1,
    );
    let fs = fs_of(dir.path());
    let names = listing(&fs, "main");
    for n in ["empty", "nul", "ok"] {
        assert!(names.contains(&n.as_bytes().to_vec()), "{n} listed");
    }
    assert!(matches!(
        fs.readlink(ino(&fs, "main/empty").unwrap()),
        Err(FsError::Io(_))
    ));
    assert!(matches!(
        fs.readlink(ino(&fs, "main/nul").unwrap()),
        Err(FsError::Io(_))
    ));
    assert_eq!(fs.readlink(ino(&fs, "main/ok").unwrap()).unwrap(), b"x");
}

// claim: refs-heads-non-commit: "shown read-only, like a tag (EROFS on every write)"
#[test]
fn a_branch_that_names_a_tree_is_read_only() {
    let (dir, c1, _) = sample();
    let tree = Repository::open_bare(dir.path())
        .unwrap()
        .find_commit(c1)
        .unwrap()
        .tree_id();
    std::fs::write(dir.path().join("refs/heads/treeish"), format!("{tree}\n")).unwrap();
    let fs = fs_of(dir.path());
    assert_eq!(cat(&fs, "treeish/README"), b"one\n");
    let d = ino(&fs, "treeish").unwrap();
    let f = ino(&fs, "treeish/README").unwrap();
    assert_eq!(fs.create(d, b"new", 0o644).unwrap_err(), FsError::ReadOnly);
    assert_eq!(fs.write(f, 0, b"x").unwrap_err(), FsError::ReadOnly);
    assert_eq!(fs.unlink(d, b"README").unwrap_err(), FsError::ReadOnly);
    assert_eq!(fs.mkdir(d, b"dir", 0o755).unwrap_err(), FsError::ReadOnly);
    assert_eq!(fs.open(f, true).unwrap_err(), FsError::ReadOnly);
    // It holds up no barrier either.
    fs.fsync(ROOT).unwrap();
}

/// Makes an empty directory in `main`, commits, and remounts (after a
/// clean unmount, or after the daemon died): the directory is still there,
/// and takes a file that is then committed.
fn empty_directory_across_a_remount(clean: bool) {
    let (dir, _, c2) = sample();
    let fs = fs_of(dir.path());
    let main = ino(&fs, "main").unwrap();
    fs.mkdir(main, b"empty", 0o755).unwrap();
    fs.commit_all().unwrap();
    assert_eq!(tip(dir.path(), "main"), c2, "an empty tree is no commit");
    if clean {
        fs.finish_overlay();
    }
    drop(fs);
    let fs = fs_of(dir.path());
    assert!(
        listing(&fs, "main").contains(&b"empty".to_vec()),
        "there after a remount (clean unmount: {clean})"
    );
    write_file(&fs, "main/empty", "f", b"f");
    barrier(&fs, "main");
    assert_eq!(blob_at(dir.path(), "main", "empty/f").unwrap().0, b"f");
}

// claim: empty-dirs: "Empty directories exist in the overlay until they hold a file (Git has no empty trees); they are there after a remount."
#[test]
fn an_empty_directory_is_there_after_the_daemon_died() {
    empty_directory_across_a_remount(false);
}

// claim: empty-dirs: "they are there after a remount"
#[test]
fn an_empty_directory_is_there_after_a_clean_unmount() {
    empty_directory_across_a_remount(true);
}

// claim: git-names-einval: "creating, by create, mkdir, symlink or rename, a name that would not be shown"
#[test]
fn names_git_would_not_check_out_cannot_be_made() {
    let (dir, _, _) = sample();
    let fs = fs_of(dir.path());
    let main = ino(&fs, "main").unwrap();
    for bad in [&b".git"[..], b".GIT", b"git~1", b".git.", b".git "] {
        let n = String::from_utf8_lossy(bad);
        assert_eq!(
            fs.create(main, bad, 0o644).unwrap_err(),
            FsError::Invalid,
            "create {n}"
        );
        assert_eq!(
            fs.mkdir(main, bad, 0o755).unwrap_err(),
            FsError::Invalid,
            "mkdir {n}"
        );
        assert_eq!(
            fs.symlink(main, bad, b"x").unwrap_err(),
            FsError::Invalid,
            "symlink {n}"
        );
        assert_eq!(
            fs.rename(main, b"README", main, bad, 0).unwrap_err(),
            FsError::Invalid,
            "rename {n}"
        );
    }
    assert_eq!(
        fs.symlink(main, b".gitmodules", b"x").unwrap_err(),
        FsError::Invalid
    );
    // A regular .gitmodules is fine.
    fs.create(main, b".gitmodules", 0o644).unwrap();
}

// claim: times-reads: "reads do not move atime"
// claim: times-reads: "atime is mtime unless utimens set it"
#[test]
fn reads_do_not_move_atime_and_atime_is_mtime() {
    let (dir, _, _) = sample();
    let fs = fs_of(dir.path());
    for p in ["main/README", ".tags/v1/README"] {
        let f = ino(&fs, p).unwrap();
        let before = fs.getattr(f).unwrap().attr;
        assert_eq!(before.atime, before.mtime, "{p}");
        fs.read(f, 0, 100).unwrap();
        assert_eq!(fs.getattr(f).unwrap().attr.atime, before.atime, "{p}");
    }
    let f = ino(&fs, "main/README").unwrap();
    fs.write(f, 0, b"new").unwrap();
    let a = fs.getattr(f).unwrap().attr;
    assert_eq!(a.atime, a.mtime, "a write moves mtime, and atime with it");
    fs.read(f, 0, 100).unwrap();
    assert_eq!(fs.getattr(f).unwrap().attr.atime, a.atime);
}

// claim: no-command: "commitfs with no command | missing command, exit 2"
#[test]
fn no_command_is_a_usage_error() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_commitfs"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("missing command"), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
}

// claim: times-content: "a write, truncate or fallocate sets the file's mtime (and so its ctime) to now"
#[test]
fn a_write_truncate_or_fallocate_sets_mtime_and_ctime_to_now() {
    let (dir, _, _) = sample();
    let fs = fs_of(dir.path());
    let f = ino(&fs, "main/README").unwrap();
    for what in ["write", "truncate", "fallocate"] {
        let before = fs.getattr(f).unwrap().attr;
        let now = Ts::now();
        assert!(
            before.mtime <= now,
            "{what}: the old mtime is not after now"
        );
        match what {
            "write" => {
                fs.write(f, 0, b"x").unwrap();
            }
            "truncate" => {
                let size = SetAttr {
                    size: Some(2),
                    ..Default::default()
                };
                fs.setattr(f, size).unwrap();
            }
            _ => fs.fallocate(f, 0, 4096, 0).unwrap(),
        }
        let after = fs.getattr(f).unwrap().attr;
        assert!(
            after.mtime >= now,
            "{what}: mtime {:?} < {now:?}",
            after.mtime
        );
        assert!(
            after.ctime >= after.mtime,
            "{what}: ctime {:?}",
            after.ctime
        );
    }
}
