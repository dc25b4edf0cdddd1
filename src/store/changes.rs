//! Changed paths between trees, and trees edited by a list of changes: the
//! diff that names a commit's changes and the merge that puts a mount's
//! changes on another writer's tip. Plain functions over the repository,
//! written without recursion (trees may be any number of levels deep).

use std::collections::HashMap;

use crate::store::Oid;
use git2::Repository;

use crate::store::error::{StoreError, StoreResult};
use crate::store::repo::{KeptPack, ObjectBatch, Repo, Txn};
use crate::store::treeobj::RawEntry;

/// One changed path between two trees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub status: char,
    pub path: Vec<u8>,
    /// The new (id, mode), or `None` for a deletion.
    pub new: Option<(Oid, i32)>,
}

/// The changed paths between two trees (for the sync's merges).
pub(crate) fn changed_paths(repo: &Repository, old: Oid, new: Oid) -> StoreResult<Vec<Change>> {
    diff_paths(repo, old, new)
}

/// Applies `changes` (files only, as `changed_paths` gives them) to tree
/// `base`, this side winning where `base` is in the way: a file where a
/// changed path needs a directory, or a directory where it puts a file, is
/// removed first; a deletion of what `base` no longer has is nothing to do.
#[cfg(test)]
pub(crate) fn apply_changes(repo: &Repository, base: Oid, changes: &[Change]) -> StoreResult<Oid> {
    let mut batch = ObjectBatch::default();
    let tree = apply_changes_in(repo, base, changes, &mut batch)?;
    batch.flush(&Txn::of(repo))?;
    Ok(tree)
}

/// [`apply_changes`], the trees it makes added to `batch` (written, kept,
/// when the caller flushes it).
pub(crate) fn apply_changes_in(
    repo: &Repository,
    base: Oid,
    changes: &[Change],
    batch: &mut ObjectBatch,
) -> StoreResult<Oid> {
    let base_id = base;
    let mut gone = std::collections::BTreeSet::new();
    for c in changes {
        // What `base` has at each prefix of the path, in one walk down (a
        // lookup per prefix from the top would be quadratic in the depth).
        let modes = modes_along(repo, base_id, &c.path)?;
        let at = |i: usize| modes.get(i).copied().flatten();
        let last = c.path.split(|&b| b == b'/').count() - 1;
        match c.new {
            None => {
                if at(last).is_some_and(|m| m != TREE_MODE) {
                    gone.insert(c.path.clone());
                }
            }
            Some(_) => {
                let slashes = c.path.iter().enumerate().filter(|(_, b)| **b == b'/');
                for (level, (i, _)) in slashes.enumerate() {
                    if at(level).is_some_and(|m| m != TREE_MODE) {
                        gone.insert(c.path[..i].to_vec());
                    }
                }
                if at(last) == Some(TREE_MODE) {
                    gone.insert(c.path.clone());
                }
            }
        }
    }
    // A path below a directory that goes as a whole goes with it.
    let under_gone = |p: &[u8]| {
        gone.iter()
            .any(|g| p.len() > g.len() && p.starts_with(g) && p[g.len()] == b'/')
    };
    let puts: Vec<(&[u8], Oid, i32)> = changes
        .iter()
        .filter_map(|c| c.new.map(|(oid, mode)| (&c.path[..], oid, mode)))
        .collect();
    let gone: Vec<&[u8]> = gone
        .iter()
        .filter(|p| !under_gone(p))
        .map(|p| &p[..])
        .collect();
    edit_tree(repo, base_id, &gone, &puts, batch)
}

/// Tree `base` with the paths in `gone` removed (whatever they are), then
/// the files in `puts` put in (directories made as needed; a directory left
/// empty goes). Written by commitfs itself, so that entries libgit2 cannot
/// parse or would refuse to write (see `treeobj`) stay exactly as stored,
/// and without recursion: paths may be any number of levels deep.
fn edit_tree(
    repo: &Repository,
    base: Oid,
    gone: &[&[u8]],
    puts: &[(&[u8], Oid, i32)],
    batch: &mut ObjectBatch,
) -> StoreResult<Oid> {
    /// One directory or path the edit touches, in an arena: parents come
    /// before their children.
    struct Node {
        name: Box<[u8]>,
        parent: usize,
        children: Vec<usize>,
        by_name: HashMap<Box<[u8]>, usize>,
        gone: bool,
        put: Option<(Oid, i32)>,
        /// The tree at this path in `base` (after the removals), if any.
        base: Option<Oid>,
        /// The rebuilt tree: `None` for an empty directory.
        new: Option<Oid>,
    }
    let mut nodes = vec![Node {
        name: Box::default(),
        parent: 0,
        children: Vec::new(),
        by_name: HashMap::new(),
        gone: false,
        put: None,
        base: Some(base),
        new: None,
    }];
    let node_at = |nodes: &mut Vec<Node>, path: &[u8]| -> usize {
        let mut at = 0;
        for name in path.split(|&b| b == b'/') {
            at = match nodes[at].by_name.get(name) {
                Some(&i) => i,
                None => {
                    let i = nodes.len();
                    nodes.push(Node {
                        name: name.into(),
                        parent: at,
                        children: Vec::new(),
                        by_name: HashMap::new(),
                        gone: false,
                        put: None,
                        base: None,
                        new: None,
                    });
                    nodes[at].by_name.insert(name.into(), i);
                    nodes[at].children.push(i);
                    i
                }
            };
        }
        at
    };
    for p in gone {
        let i = node_at(&mut nodes, p);
        nodes[i].gone = true;
    }
    for (p, oid, mode) in puts {
        let i = node_at(&mut nodes, p);
        nodes[i].put = Some((*oid, *mode));
    }
    if nodes.len() == 1 {
        return Ok(base); // nothing to do
    }
    // Top down: what each directory was in `base` (nothing below a removal).
    let mut raw: HashMap<usize, Vec<RawEntry>> = HashMap::new();
    #[allow(clippy::needless_range_loop)] // nodes[i] and its parent are both read
    for i in 0..nodes.len() {
        if nodes[i].children.is_empty() {
            continue;
        }
        if i != 0 {
            let parent = nodes[i].parent;
            let found = match (nodes[i].gone, raw.get(&parent)) {
                (false, Some(entries)) => entries
                    .iter()
                    .find(|e| *e.name == *nodes[i].name && e.is_tree())
                    .map(|e| e.oid),
                _ => None,
            };
            nodes[i].base = found;
        }
        let entries = match nodes[i].base {
            Some(t) => crate::store::repo::Repo::raw_tree(repo, t)?,
            None => Vec::new(),
        };
        raw.insert(i, entries);
    }
    // Bottom up: each touched directory rebuilt from its base entries.
    for i in (0..nodes.len()).rev() {
        let mut entries = raw.remove(&i).unwrap_or_default();
        let children = std::mem::take(&mut nodes[i].children);
        if children.is_empty() {
            continue;
        }
        for &c in &children {
            let name = nodes[c].name.clone();
            entries.retain(|e| *e.name != *name);
            // A file put here, else the rebuilt directory (none if it was
            // removed, or left empty).
            let entry = match nodes[c].put {
                Some((oid, mode)) => Some((oid, format!("{mode:o}").into_bytes())),
                None => nodes[c].new.map(|o| (o, b"40000".to_vec())),
            };
            if let Some((oid, mode)) = entry {
                entries.push(RawEntry {
                    mode: mode.into(),
                    name,
                    oid,
                });
            }
        }
        if entries.is_empty() && i != 0 {
            nodes[i].new = None;
        } else {
            let oid = batch.add_tree(&Txn::of(repo), crate::store::treeobj::serialize(entries))?;
            nodes[i].new = Some(oid);
        }
        nodes[i].by_name = HashMap::new();
    }
    nodes[0]
        .new
        .ok_or_else(|| StoreError::io("the edited tree vanished"))
}

/// The mode of what tree `root` holds at each prefix of `path` (one component,
/// two, ... the whole path), from the entries as stored (hidden ones too: a
/// merge must see a `.git` this side deleted), walking down once; the list
/// ends where the path leaves what `root` has. Of entries sharing a name, the
/// first stored counts.
fn modes_along(repo: &Repository, root: Oid, path: &[u8]) -> StoreResult<Vec<Option<i32>>> {
    let mut out = Vec::new();
    let mut tree = Some(root);
    for name in path.split(|&b| b == b'/') {
        let Some(t) = tree.take() else { break };
        let entries = crate::store::repo::Repo::raw_tree(repo, t)?;
        let Some(e) = entries.iter().find(|e| *e.name == *name) else {
            break;
        };
        let mode = if e.is_tree() {
            tree = Some(e.oid);
            TREE_MODE
        } else {
            e.mode_num().map_or(0, |m| m as i32)
        };
        out.push(Some(mode));
    }
    Ok(out)
}

/// The changed paths between two trees: a merge-walk of their entries that
/// descends only into subtrees whose ids differ (libgit2's tree diff was the
/// largest cost of a small save in a large repository). A loop over a stack,
/// not a recursion: trees may be any number of levels deep. Every entry as
/// stored counts, shown or not.
fn diff_paths(repo: &Repository, old: Oid, new: Oid) -> StoreResult<Vec<Change>> {
    diff_paths_with(repo, old, new, None)
}

/// [`diff_paths`], reading the trees of `batch` not written yet from it.
pub fn diff_paths_in(
    repo: &Txn<'_>,
    old: Oid,
    new: Oid,
    batch: Option<&ObjectBatch>,
) -> StoreResult<Vec<Change>> {
    diff_paths_with(repo.git(), old, new, batch)
}

fn diff_paths_with(
    repo: &Repository,
    old: Oid,
    new: Oid,
    batch: Option<&ObjectBatch>,
) -> StoreResult<Vec<Change>> {
    let mut out = Vec::new();
    let mut paths = crate::store::names::Paths::default();
    let mut todo = vec![(Some(old), Some(new), crate::store::names::Paths::ROOT)];
    while let Some((old, new, prefix)) = todo.pop() {
        diff_one(
            repo, batch, old, new, prefix, &mut paths, &mut todo, &mut out,
        )?;
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

const TREE_MODE: i32 = 0o040000;

fn tree_entries(
    repo: &Repository,
    batch: Option<&ObjectBatch>,
    oid: Option<Oid>,
) -> StoreResult<Vec<(Vec<u8>, Oid, i32)>> {
    let Some(oid) = oid else {
        return Ok(Vec::new());
    };
    let raw = match batch.and_then(|b| b.get(oid)) {
        Some(data) => crate::store::treeobj::parse_raw(data).0,
        None => crate::store::repo::Repo::raw_tree(repo, oid)?,
    };
    let mut v: Vec<_> = raw
        .into_iter()
        .map(|e| {
            let mode = e.mode_num().map_or(0, |m| m as i32);
            (e.name.into_vec(), e.oid, mode)
        })
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(v)
}

type DiffTodo = Vec<(Option<Oid>, Option<Oid>, usize)>;

/// One pair of trees of [`diff_paths`]; the subtrees that differ go on `todo`.
#[allow(clippy::too_many_arguments)]
fn diff_one(
    repo: &Repository,
    batch: Option<&ObjectBatch>,
    old: Option<Oid>,
    new: Option<Oid>,
    prefix: usize,
    paths: &mut crate::store::names::Paths,
    todo: &mut DiffTodo,
    out: &mut Vec<Change>,
) -> StoreResult<()> {
    if old == new {
        return Ok(());
    }
    let a = tree_entries(repo, batch, old)?;
    let b = tree_entries(repo, batch, new)?;
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        let order = match (a.get(i), b.get(j)) {
            (Some(x), Some(y)) => x.0.cmp(&y.0),
            (Some(_), None) => std::cmp::Ordering::Less,
            _ => std::cmp::Ordering::Greater,
        };
        let (left, right) = match order {
            std::cmp::Ordering::Less => (a.get(i), None),
            std::cmp::Ordering::Greater => (None, b.get(j)),
            std::cmp::Ordering::Equal => (a.get(i), b.get(j)),
        };
        let name: &[u8] = left.or(right).map(|e| &e.0[..]).unwrap_or_default();
        let is_tree = |e: Option<&(Vec<u8>, Oid, i32)>| e.is_some_and(|e| e.2 == TREE_MODE);
        let same = matches!((left, right), (Some(x), Some(y)) if x.1 == y.1 && x.2 == y.2);
        if !same {
            let here = paths.add(prefix, name);
            // Subtrees: later (a tree on one side only is all adds or deletes).
            if is_tree(left) || is_tree(right) {
                let lt = left.filter(|e| e.2 == TREE_MODE).map(|e| e.1);
                let rt = right.filter(|e| e.2 == TREE_MODE).map(|e| e.1);
                todo.push((lt, rt, here));
            }
            // Files (or a file replacing a tree, or the other way round).
            let lf = left.filter(|e| e.2 != TREE_MODE);
            let rf = right.filter(|e| e.2 != TREE_MODE);
            let change = |status, new| Change {
                status,
                path: paths.full(here),
                new,
            };
            match (lf, rf) {
                (Some(_), Some(y)) => out.push(change('M', Some((y.1, y.2)))),
                (Some(_), None) => out.push(change('D', None)),
                (None, Some(y)) => out.push(change('A', Some((y.1, y.2)))),
                (None, None) => {}
            }
        }
        if left.is_some() {
            i += 1;
        }
        if right.is_some() {
            j += 1;
        }
    }
    Ok(())
}

/// `Update README.md`, or `Add 3 files, update 1, delete 2 in src/`, and the
/// paths in the body.
/// A path for a subject line: a very long one (a deep directory chain) keeps
/// its last components, `.../d/leaf.txt`; the body still names it whole.
fn short_path(path: &[u8]) -> String {
    const MAX: usize = 120;
    if path.len() <= MAX {
        return String::from_utf8_lossy(path).into_owned();
    }
    let tail = &path[path.len() - MAX..];
    let tail = match tail.iter().position(|&c| c == b'/') {
        Some(i) => &tail[i..],
        None => tail,
    };
    format!("...{}", String::from_utf8_lossy(tail))
}

pub fn summary(changes: &[Change]) -> String {
    let verb = |s: char| match s {
        'A' => "Add",
        'D' => "Delete",
        _ => "Update",
    };
    let line = if let [c] = changes {
        format!("{} {}", verb(c.status), short_path(&c.path))
    } else {
        let count = |s: char| changes.iter().filter(|c| c.status == s).count();
        let mut parts = Vec::new();
        for (s, word) in [('A', "add"), ('M', "update"), ('D', "delete")] {
            let n = count(s);
            if n > 0 {
                if parts.is_empty() {
                    parts.push(format!("{word} {n} file{}", if n == 1 { "" } else { "s" }));
                } else {
                    parts.push(format!("{word} {n}"));
                }
            }
        }
        let mut line = parts.join(", ");
        if let Some(first) = line.get_mut(0..1) {
            first.make_ascii_uppercase();
        }
        let dirs: HashMap<&[u8], ()> = changes
            .iter()
            .map(|c| match c.path.iter().rposition(|&b| b == b'/') {
                Some(i) => (&c.path[..=i], ()),
                None => (&b""[..], ()),
            })
            .collect();
        if dirs.len() == 1
            && let Some(d) = dirs.keys().next()
            && !d.is_empty()
        {
            line.push_str(&format!(" in {}", short_path(d)));
        }
        line
    };
    let body: Vec<String> = changes
        .iter()
        .map(|c| format!("{} {}", c.status, String::from_utf8_lossy(&c.path)))
        .collect();
    format!("{line}\n\n{}\n", body.join("\n"))
}

impl Repo {
    /// A commit with parents `server` and `local`: the server's tree with the
    /// local changes since their common ancestor applied on top.
    pub fn merge_with_server(
        &self,
        name: &str,
        local: Oid,
        server: Oid,
        author: Option<&(String, String)>,
    ) -> StoreResult<(Oid, Vec<KeptPack>)> {
        self.with(|repo| {
            let tree_of = |c: Oid| -> StoreResult<Oid> {
                Ok(Oid::from(repo.find_commit(git2::Oid::from(c))?.tree_id()))
            };
            // Unrelated histories (the server's branch was made anew): this
            // side's whole tree counts as its changes.
            let bt = match repo.merge_base(local.into(), server.into()) {
                Ok(base) => tree_of(Oid::from(base))?,
                Err(_) => Oid::from(repo.treebuilder(None)?.write()?),
            };
            let (lt, st) = (tree_of(local)?, tree_of(server)?);
            let ours = changed_paths(repo, bt, lt)?;
            let theirs = changed_paths(repo, bt, st)?;
            let mut batch = ObjectBatch::default();
            let tree = apply_changes_in(repo, st, &ours, &mut batch)?;
            let both: Vec<String> = ours
                .iter()
                .filter(|c| theirs.iter().any(|t| t.path == c.path))
                .map(|c| format!("  {}", String::from_utf8_lossy(&c.path)))
                .collect();
            let mut msg = format!("Merge {name} from the server");
            if !both.is_empty() {
                msg.push_str(&format!(
                    "\n\nChanged on both sides; this machine's version is kept, the server's stays in history:\n{}",
                    both.join("\n")
                ));
            }
            // Written as bytes: libgit2 would parse the tree first, and
            // refuses trees holding entries a mount keeps unseen.
            let merged =
                batch.add_commit_of(&Txn::of(repo), tree, &[server, local], author, &msg)?;
            // One pack, kept until the ref names the merge.
            batch.flush(&Txn::of(repo))?;
            log::info!("{name}: merged with the server ({merged})");
            Ok((merged, batch.take_kept()))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ch(status: char, path: &str) -> Change {
        Change {
            status,
            path: path.as_bytes().to_vec(),
            new: None,
        }
    }

    /// A tree `depth` directories `d` deep with `leaf` entries at the bottom.
    fn chain(odb: &git2::Odb<'_>, depth: usize, leaf: &[RawEntry]) -> Oid {
        let mut t = odb
            .write(
                git2::ObjectType::Tree,
                &crate::store::treeobj::serialize(leaf.to_vec()),
            )
            .unwrap();
        for _ in 0..depth {
            let e = RawEntry {
                mode: b"40000"[..].into(),
                name: b"d"[..].into(),
                oid: Oid::from(t),
            };
            t = odb
                .write(
                    git2::ObjectType::Tree,
                    &crate::store::treeobj::serialize(vec![e]),
                )
                .unwrap();
        }
        Oid::from(t)
    }

    fn file(name: &str, oid: Oid) -> RawEntry {
        RawEntry {
            mode: b"100644"[..].into(),
            name: name.as_bytes().into(),
            oid,
        }
    }

    fn dir(name: &str, oid: Oid) -> RawEntry {
        RawEntry {
            mode: b"40000"[..].into(),
            name: name.as_bytes().into(),
            oid,
        }
    }

    /// A new bare repository holding the blob `x\n`, and that blob's id.
    fn repo_with_blob() -> (tempfile::TempDir, Repository, Oid) {
        let t = tempfile::tempdir().unwrap();
        let repo = Repository::init_bare(t.path()).unwrap();
        let x = repo.blob(b"x\n").unwrap();
        (t, repo, Oid::from(x))
    }

    fn tree(odb: &git2::Odb<'_>, entries: Vec<RawEntry>) -> Oid {
        Oid::from(
            odb.write(
                git2::ObjectType::Tree,
                &crate::store::treeobj::serialize(entries),
            )
            .unwrap(),
        )
    }

    /// A merge applies a change at the bottom of a deep chain in time linear in
    /// the depth (each prefix was looked up from the top: quadratic, and a
    /// recursion in libgit2 as deep as the chain).
    #[test]
    fn changes_apply_at_the_bottom_of_a_deep_chain() {
        const DEPTH: usize = 20_000;
        let t = tempfile::tempdir().unwrap();
        let repo = Repository::init_bare(t.path()).unwrap();
        let odb = repo.odb().unwrap();
        let one = odb.write(git2::ObjectType::Blob, b"one\n").unwrap();
        let mine = odb.write(git2::ObjectType::Blob, b"mine\n").unwrap();
        let base = chain(&odb, DEPTH, &[file("leaf.txt", Oid::from(one))]);
        let mut path = b"d/".repeat(DEPTH);
        path.extend_from_slice(b"mine.txt");
        let change = Change {
            status: 'A',
            path,
            new: Some((Oid::from(mine), 0o100644)),
        };
        let merged = apply_changes(&repo, base, &[change]).unwrap();
        let want = chain(
            &odb,
            DEPTH,
            &[
                file("leaf.txt", Oid::from(one)),
                file("mine.txt", Oid::from(mine)),
            ],
        );
        assert_eq!(merged, want);
    }

    /// What is in the way of a change goes: a file where it needs a directory,
    /// a directory where it puts a file; a deletion of what is gone is nothing.
    #[test]
    fn changes_replace_what_is_in_the_way() {
        let (_t, repo, x) = repo_with_blob();
        let odb = repo.odb().unwrap();
        let sub = chain(&odb, 0, &[file("inner", x)]);
        let base = odb
            .write(
                git2::ObjectType::Tree,
                &crate::store::treeobj::serialize(vec![
                    file("a", x),
                    RawEntry {
                        mode: b"40000"[..].into(),
                        name: b"b"[..].into(),
                        oid: sub,
                    },
                    file("keep", x),
                ]),
            )
            .unwrap();
        let put = |p: &str| Change {
            status: 'A',
            path: p.as_bytes().to_vec(),
            new: Some((x, 0o100644)),
        };
        let changes = [put("a/new"), put("b"), ch('D', "gone/never")];
        let merged = repo
            .find_tree(git2::Oid::from(
                apply_changes(&repo, Oid::from(base), &changes).unwrap(),
            ))
            .unwrap();
        let names: Vec<String> = merged
            .iter()
            .map(|e| e.name().unwrap().to_string())
            .collect();
        assert_eq!(names, ["a", "b", "keep"]);
        assert_eq!(merged.get_name("a").unwrap().filemode(), 0o040000);
        assert_eq!(merged.get_name("b").unwrap().filemode(), 0o100644);
    }

    /// A merge keeps, exactly as stored, what the mount does not show (here
    /// `.git` and an empty name, which libgit2 would refuse to parse or
    /// write), and a directory a merge empties goes.
    #[test]
    fn a_merge_keeps_hidden_entries_and_drops_emptied_directories() {
        let (_t, repo, x) = repo_with_blob();
        let odb = repo.odb().unwrap();
        let tree = |entries: Vec<RawEntry>| tree(&odb, entries);
        let dotgit = tree(vec![file("config", x)]);
        let only = tree(vec![file("x", x)]);
        let base = tree(vec![
            file("", x),
            dir(".git", dotgit),
            dir("d", only),
            dir("e", only),
        ]);
        let changes = [
            Change {
                status: 'A',
                path: b"d/y".to_vec(),
                new: Some((x, 0o100755)),
            },
            ch('D', "d/x"),
            ch('D', "e/x"),
        ];
        let merged = apply_changes(&repo, base, &changes).unwrap();
        let root = crate::store::repo::Repo::raw_tree(&repo, merged).unwrap();
        let names: Vec<&[u8]> = root.iter().map(|e| &*e.name).collect();
        assert_eq!(names, vec![&b""[..], b".git", b"d"]);
        assert_eq!(root[1].oid, dotgit);
        let d = crate::store::repo::Repo::raw_tree(&repo, root[2].oid).unwrap();
        assert_eq!(d.len(), 1);
        assert_eq!((&*d[0].name, &*d[0].mode), (&b"y"[..], &b"100755"[..]));
    }

    /// This side renamed a directory holding a hidden `.git`; the server
    /// changed something else. The merge moves the directory whole: no
    /// second `.git`, no empty-looking directory left at the old name.
    #[test]
    fn a_merge_moves_hidden_entries_with_their_directory() {
        let (_t, repo, x) = repo_with_blob();
        let odb = repo.odb().unwrap();
        let tree = |entries: Vec<RawEntry>| tree(&odb, entries);
        let dotgit = tree(vec![file("config", x)]);
        let inner = tree(vec![dir(".git", dotgit), file("f", x)]);
        let base = tree(vec![dir("d", inner)]);
        let local = tree(vec![dir("e", inner)]);
        let server = tree(vec![dir("d", inner), file("s", x)]);
        let ours = changed_paths(&repo, base, local).unwrap();
        let merged = apply_changes(&repo, server, &ours).unwrap();
        let root = crate::store::repo::Repo::raw_tree(&repo, merged).unwrap();
        let names: Vec<&[u8]> = root.iter().map(|e| &*e.name).collect();
        assert_eq!(names, vec![&b"e"[..], b"s"]);
        assert_eq!(root[0].oid, inner, "e is the directory, whole");
    }

    #[test]
    fn messages_say_what_changed() {
        assert!(summary(&[ch('M', "README.md")]).starts_with("Update README.md\n"));
        let m = summary(&[
            ch('A', "src/a"),
            ch('A', "src/b"),
            ch('A', "src/c"),
            ch('M', "src/d"),
            ch('D', "src/e"),
            ch('D', "src/f"),
        ]);
        assert!(
            m.starts_with("Add 3 files, update 1, delete 2 in src/\n"),
            "{m}"
        );
        assert!(m.contains("\nD src/f"));
        assert!(summary(&[ch('D', "a"), ch('D', "b/c")]).starts_with("Delete 2 files\n"));
    }
}
