//! A repository is untrusted input, driven through the core: random trees
//! with hostile names, modes and depths, written object by object (as an
//! attacker would, not through libgit2's checks), are listed and read through
//! `CommitFs`. Listing and reading never panic or hang, never show a name Git
//! would refuse, and every ordinary sibling of an odd entry is shown.

use std::collections::BTreeSet;

use commitfs::inodes::ROOT;
use commitfs::model::FsConfig;
use commitfs::store::names::{refused, valid_name};
use commitfs::store::repo::Repo;
use commitfs::view::{CommitFs, FileKind};
use git2::{ObjectType, Oid, Repository};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Child {
    Blob(Vec<u8>),
    Tree(Vec<Ent>),
}

#[derive(Debug, Clone)]
struct Ent {
    mode: &'static str,
    name: Vec<u8>,
    child: Child,
}

fn name() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        3 => prop::sample::select(vec!["a", "b", "dup", "x.txt"]).prop_map(|s| s.as_bytes().to_vec()),
        1 => prop::sample::select(vec![
            "", ".", "..", ".git", ".GIT", ".Git", "git~1", "GIT~1", ".git.", ".git ",
            ".git::$INDEX_ALLOCATION", ".git\\hooks", "\u{200c}.git", "\u{feff}.gIt",
            ".gitmodules", "gitmod~1", "a/b", "\u{e9}t\u{e9}",
        ])
        .prop_map(|s| s.as_bytes().to_vec()),
        1 => Just(vec![b'n'; 256]),
        1 => Just(b"\xff\xfe".to_vec()),
    ]
}

fn mode() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "100644", "100644", "100755", "120000", "40000", "40000", "160000", "777777", "0", "abc",
        "100664", "040000",
    ])
}

fn tree() -> impl Strategy<Value = Vec<Ent>> {
    let leaf = prop::collection::vec(
        (mode(), name(), prop::collection::vec(any::<u8>(), 0..20)).prop_map(
            |(mode, name, data)| Ent {
                mode,
                name,
                child: Child::Blob(data),
            },
        ),
        0..6,
    );
    leaf.prop_recursive(4, 40, 6, |inner| {
        prop::collection::vec(
            prop_oneof![
                (mode(), name(), prop::collection::vec(any::<u8>(), 0..20)).prop_map(
                    |(mode, name, data)| Ent {
                        mode,
                        name,
                        child: Child::Blob(data),
                    }
                ),
                (mode(), name(), inner).prop_map(|(mode, name, sub)| Ent {
                    mode,
                    name,
                    child: Child::Tree(sub),
                }),
            ],
            0..6,
        )
    })
}

/// Writes `entries` as a tree object, raw, in the order given. Returns its id
/// and, per name, whether the core should show it (see `treeobj`).
fn write_tree(repo: &Repository, entries: &[Ent]) -> Oid {
    let odb = repo.odb().unwrap();
    let mut bytes = Vec::new();
    for e in entries {
        let oid = match &e.child {
            Child::Blob(d) => odb.write(ObjectType::Blob, d).unwrap(),
            Child::Tree(sub) => write_tree(repo, sub),
        };
        bytes.extend_from_slice(e.mode.as_bytes());
        bytes.push(b' ');
        bytes.extend_from_slice(&e.name);
        bytes.push(0);
        bytes.extend_from_slice(oid.as_bytes());
    }
    odb.write(ObjectType::Tree, &bytes).unwrap()
}

/// The names a directory of `entries` must show: valid, not refused, of a
/// mode Git writes; each once.
fn expected(entries: &[Ent]) -> BTreeSet<Vec<u8>> {
    entries
        .iter()
        .filter(|e| {
            let known = matches!(
                e.mode,
                "100644" | "100755" | "120000" | "40000" | "160000" | "100664" | "040000"
            );
            known && valid_name(&e.name) && !refused(&e.name, e.mode == "120000")
        })
        .map(|e| e.name.clone())
        .collect()
}

/// Mounts (the core, no kernel) a repository whose `main` is `top`, wrapped
/// in a chain of `depth` directories named `d`.
fn fs_for(dir: &std::path::Path, top: &[Ent], depth: usize) -> (std::sync::Arc<CommitFs>, Oid) {
    let repo = Repository::init_bare(dir).unwrap();
    let mut tree = write_tree(&repo, top);
    let root = tree;
    let odb = repo.odb().unwrap();
    for _ in 0..depth {
        let mut bytes = b"40000 d\0".to_vec();
        bytes.extend_from_slice(tree.as_bytes());
        tree = odb.write(ObjectType::Tree, &bytes).unwrap();
    }
    let commit = format!(
        "tree {tree}\nauthor t <t@e> 1700000000 +0000\ncommitter t <t@e> 1700000000 +0000\n\nm\n"
    );
    let c = odb.write(ObjectType::Commit, commit.as_bytes()).unwrap();
    repo.reference("refs/heads/main", c, true, "m").unwrap();
    let fs = CommitFs::new(Repo::open(dir).unwrap(), FsConfig::default()).unwrap();
    (fs, root)
}

/// Lists a directory through opendir/readdir; `None` if it cannot be read.
fn list(fs: &CommitFs, ino: u64) -> Option<Vec<(Vec<u8>, u64, FileKind)>> {
    let d = fs.opendir(ino).ok()?;
    let entries = fs.readdir(ino, d.fh, 0, usize::MAX);
    fs.releasedir(d.fh);
    Some(
        entries
            .ok()?
            .into_iter()
            .skip(2)
            .map(|e| (e.name.to_vec(), e.ino, e.kind))
            .collect(),
    )
}

/// Walks everything below `start` with a stack (no recursion), checking
/// every listing; reads every file and link. Errors (EIO for a blob shown as
/// a tree, say) are fine; panics and forbidden names are not.
fn walk_all(fs: &CommitFs, start: u64, top: &[Ent]) {
    let mut todo: Vec<(u64, Option<Vec<Ent>>)> = vec![(start, Some(top.to_vec()))];
    while let Some((ino, model)) = todo.pop() {
        let Some(shown) = list(fs, ino) else { continue };
        let names: Vec<&Vec<u8>> = shown.iter().map(|s| &s.0).collect();
        let unique: BTreeSet<&Vec<u8>> = names.iter().copied().collect();
        assert_eq!(unique.len(), names.len(), "a name listed twice: {names:?}");
        for (name, child, kind) in &shown {
            assert!(valid_name(name), "listed {name:?}");
            assert!(
                !refused(name, *kind == FileKind::Symlink),
                "listed a name git refuses: {:?}",
                String::from_utf8_lossy(name)
            );
            let Ok(e) = fs.lookup(ino, name) else {
                continue;
            };
            assert_eq!(e.attr.ino, *child);
            match e.attr.kind {
                FileKind::Dir => {
                    let sub = model.as_ref().and_then(|m| {
                        // The entry shown: of the entries of this name Git
                        // would check out, the first in Git's order (what is
                        // not a tree, a submodule too, sorts before a tree of
                        // the same name); it is a tree only if no other wins.
                        let known = |x: &&Ent| {
                            &x.name == name && expected(std::slice::from_ref(*x)).contains(name)
                        };
                        let is_tree = |x: &&Ent| matches!(x.mode, "40000" | "040000");
                        match m.iter().filter(known).find(|x| !is_tree(x)) {
                            Some(_) => None,
                            None => m.iter().filter(known).find(is_tree),
                        }
                    });
                    let sub = sub.and_then(|s| match &s.child {
                        Child::Tree(t) => Some(t.clone()),
                        _ => None,
                    });
                    todo.push((*child, sub));
                }
                FileKind::File => {
                    if fs.open(*child, false).is_ok() {
                        let _ = fs.read(*child, 0, 1 << 16);
                    }
                }
                FileKind::Symlink => {
                    if let Ok(t) = fs.readlink(*child) {
                        assert!(!t.is_empty() && !t.contains(&0), "served link {t:?}");
                    }
                }
            }
        }
        // Every ordinary sibling is shown (where the model is the tree).
        if let Some(m) = &model {
            let want = expected(m);
            let got: BTreeSet<Vec<u8>> = shown.iter().map(|s| s.0.clone()).collect();
            assert_eq!(got, want, "listing of a tree");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    // claim: names-are-bytes: "holding / or NUL, of an unknown mode, or a second entry of one name, are not shown"
    fn hostile_trees_list_and_read_without_panic_or_forbidden_names(
        top in tree(),
        depth in prop_oneof![Just(0usize), 0usize..5, Just(3000usize)],
    ) {
        let dir = tempfile::tempdir().unwrap();
        let (fs, _root) = fs_for(dir.path(), &top, depth);
        let mut at = fs.lookup(ROOT, b"main").unwrap().attr.ino;
        for _ in 0..depth {
            at = fs.lookup(at, b"d").unwrap().attr.ino;
        }
        walk_all(&fs, at, &top);
    }
}

proptest! {
    /// Any bytes at all, stored as a tree object and read through the core.
    #[test]
    fn random_bytes_as_a_tree_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        let l = commitfs::store::treeobj::parse(&bytes);
        for e in l.entries.iter() {
            prop_assert!(valid_name(&e.name) && !refused(&e.name, true) || !refused(&e.name, false));
        }
        let dir = tempfile::tempdir().unwrap();
        let repo = Repository::init_bare(dir.path()).unwrap();
        let oid = repo.odb().unwrap().write(ObjectType::Tree, &bytes).unwrap();
        let r = Repo::open(dir.path()).unwrap();
        let listing = r.read_tree(oid.into()).unwrap();
        for e in listing.entries.iter() {
            prop_assert!(valid_name(&e.name));
        }
    }
}
