//! What the kernel caches, through real mounts: a warm walk of a branch (or a
//! snapshot) costs the daemon no lookup, getattr, readdir or read, counted
//! by the daemon itself (`commitfs status --json`, `requests`); and a walk
//! after a change, this mount's own or another writer's, shows the new state
//! at once: no stale entry, no stale listing, no stale size.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;

/// The tests of this file run one at a time: one drops the kernel's caches,
/// which would make another's warm walk cold.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// A repository whose `main` has 12 directories of 20 files and a tag `v1`.
fn setup() -> (TestRepo, std::path::PathBuf, Mount) {
    setup_with(&[])
}

fn setup_with(env: &[(&str, &str)]) -> (TestRepo, std::path::PathBuf, Mount) {
    let r = TestRepo::new();
    for d in 0..12 {
        for f in 0..20 {
            r.write(
                &format!("d{d}/sub/f{f}.txt"),
                format!("file {d} {f}\n").as_bytes(),
            );
        }
    }
    r.write("top.txt", b"top\n");
    r.commit("initial");
    git(&r.work(), &["tag", "v1"]);
    // Branches and tags.
    let bare = r.publish();
    let mnt = r.mountpoint("mnt");
    let m = Mount::with_env(&bare, &mnt, &[], env);
    (r, bare, m)
}

/// Every path below `dir` with its kind and size.
fn walk(dir: &Path) -> BTreeMap<String, (bool, u64)> {
    walk_tree(dir, |md| (md.is_dir(), md.len()))
}

/// The daemon's request counters.
fn requests(m: &Path) -> serde_json::Value {
    status_json(m)["requests"].clone()
}

/// The commit the mount shows for `branch` (one it has written to).
fn shown(m: &Path, branch: &str) -> String {
    branch_status(m, branch)["shown"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// The requests that a cache in the kernel would have answered.
fn reads(q: &serde_json::Value) -> [u64; 4] {
    ["lookup", "getattr", "readdir", "read"].map(|k| q[k].as_u64().expect(k))
}

/// The first walk lists every directory (readdirplus: entries with their
/// attributes). The second lists none and looks nothing up; it asks once
/// for the attributes of each directory, because the kernel marks a
/// directory's atime stale after each listing it had to ask for (and only
/// then). The third walk costs the daemon nothing.
#[test]
// claim: kernel-cache-branches: "A warm walk of a branch costs what one of a snapshot costs: no lookup, readdir or read"
fn a_warm_walk_of_a_branch_or_a_snapshot_makes_no_requests() {
    let _one = serial();
    let (_r, _bare, m) = setup();
    for dir in ["main", ".tags/v1"] {
        let root = m.path.join(dir);
        let first = walk(&root);
        assert_eq!(first.len(), 12 * 22 + 1, "{dir}: {first:?}");
        let dirs = first.values().filter(|(d, _)| *d).count() as u64 + 1;
        let q1 = requests(&m.path);
        assert_eq!(walk(&root), first, "{dir}");
        let q2 = requests(&m.path);
        assert_eq!(walk(&root), first, "{dir}");
        let q3 = requests(&m.path);
        let (r1, r2, r3) = (reads(&q1), reads(&q2), reads(&q3));
        assert_eq!(
            [r1[0], r1[2], r1[3]],
            [r2[0], r2[2], r2[3]],
            "{dir}: the second walk looked up, listed or read: {q1} -> {q2}"
        );
        assert!(
            r2[1] - r1[1] <= dirs,
            "{dir}: the second walk made {} getattrs for {dirs} directories",
            r2[1] - r1[1]
        );
        assert_eq!(r2, r3, "{dir}: the third walk made requests: {q2} -> {q3}");
        // (Each read_dir still opens the directory: FUSE sends an opendir
        // for every open.)
        assert!(q3["opendir"].as_u64() > q2["opendir"].as_u64());
    }
}

#[test]
// claim: kernel-cache-branches: "so a walk after that sees no stale entry, listing or size"
fn a_walk_after_a_change_shows_it_at_once() {
    let _one = serial();
    let (r, bare, m) = setup();
    let main = m.path.join("main");
    let warm = walk(&main);
    assert_eq!(warm["d0/sub/f0.txt"], (false, 9));

    // This mount's own save: a new file, a longer file, a removed one.
    std::fs::write(main.join("d0/sub/new.txt"), b"new\n").unwrap();
    std::fs::write(main.join("d0/sub/f1.txt"), b"longer than it was\n").unwrap();
    std::fs::remove_file(main.join("d0/sub/f2.txt")).unwrap();
    let w = walk(&main);
    assert_eq!(w.get("d0/sub/new.txt"), Some(&(false, 4)));
    assert_eq!(w.get("d0/sub/f1.txt"), Some(&(false, 19)));
    assert_eq!(w.get("d0/sub/f2.txt"), None);
    Command::new("sync").arg(&main).status().unwrap();

    // Another writer's push: the same kinds of change in another directory,
    // on top of what this mount committed.
    git(&r.work(), &["pull", "-q", bare.to_str().unwrap(), "main"]);
    r.write("d5/sub/theirs.txt", b"theirs\n");
    r.write("d5/sub/f3.txt", b"changed by them, longer\n");
    std::fs::remove_file(r.work().join("d5/sub/f4.txt")).unwrap();
    std::fs::remove_dir_all(r.work().join("d6")).unwrap();
    r.commit("theirs");
    git(&r.work(), &["push", "-q", bare.to_str().unwrap(), "main"]);
    // The mount follows within a second or so: once `commitfs status` says
    // it shows their commit, the kernel has been told.
    let theirs = git(&r.work(), &["rev-parse", "HEAD"]);
    assert!(
        wait_until(Duration::from_secs(10), || shown(&m.path, "main") == theirs),
        "the mount never showed {theirs}"
    );
    let w = walk(&main);
    assert_eq!(w.get("d5/sub/theirs.txt"), Some(&(false, 7)));
    assert_eq!(w.get("d5/sub/f3.txt"), Some(&(false, 24)));
    assert_eq!(
        std::fs::read(main.join("d5/sub/f3.txt")).unwrap(),
        b"changed by them, longer\n"
    );
    assert_eq!(
        w.get("d5/sub/f4.txt"),
        None,
        "a deleted file is still listed"
    );
    assert!(
        !w.keys().any(|k| k.starts_with("d6")),
        "a deleted directory is still listed"
    );
    // This mount's committed save is still there.
    assert_eq!(w.get("d0/sub/new.txt"), Some(&(false, 4)));
    // And the walks after that are warm again (the second costs nothing).
    assert_eq!(walk(&main), w);
    let before = requests(&m.path);
    assert_eq!(walk(&main), w);
    assert_eq!(reads(&before), reads(&requests(&m.path)));
}

/// Paths with their inode numbers.
fn numbers(dir: &Path) -> BTreeMap<String, u64> {
    use std::os::unix::fs::MetadataExt;
    walk_tree(dir, |md| md.ino())
}

/// The daemon's count of paths it holds a node for, of those the kernel
/// forgot, and of those the ones kept on disk.
fn paths_held(m: &Path) -> (u64, u64, u64) {
    let v = status_json(m);
    (
        v["inodes"].as_u64().unwrap(),
        v["forgotten_paths"].as_u64().unwrap(),
        v["forgotten_on_disk"].as_u64().unwrap(),
    )
}

/// When the kernel forgets the paths of a walk (here: drop_caches), the
/// daemon keeps only their places, the oldest on disk (here beyond 16 in
/// memory): its count of nodes goes down, and the next walk gets every path
/// back with the number it had, and the bytes, also after they were
/// forgotten a second time.
#[test]
#[cfg_attr(commitfs_not_root, ignore = "needs root: drops the kernel's caches")]
// claim: forgotten-paths: "every path keeps its number for the life of the mount"
fn forgotten_paths_cost_little_and_keep_their_numbers() {
    require_root();
    let _one = serial();
    let (_r, _bare, m) = setup_with(&[("COMMITFS_GHOSTS_IN_MEMORY", "16")]);
    for dir in ["main", ".tags/v1", "main"] {
        let root = m.path.join(dir);
        let before = numbers(&root);
        assert_eq!(before.len(), 12 * 22 + 1);
        let (held, ..) = paths_held(&m.path);
        // The kernel forgets what it does not use (nothing is open there).
        std::fs::write("/proc/sys/vm/drop_caches", b"2").unwrap();
        assert!(
            wait_until(Duration::from_secs(10), || paths_held(&m.path).1 >= 200),
            "{dir}: the kernel's forgets did not reach the daemon: {:?}",
            paths_held(&m.path)
        );
        // Every path below a tree goes: what stays are the ref-level ones
        // (the root, main, .tags, v1, ...), whatever order the forgets of
        // a directory and its entries were served in.
        assert!(
            wait_until(Duration::from_secs(10), || paths_held(&m.path).0 <= 8),
            "{dir}: {held} -> {:?} nodes (in memory, forgotten, on disk)",
            paths_held(&m.path)
        );
        // Once the forgets are in, at most 16 (and a batch of 8 on its way)
        // stay in memory.
        assert!(
            wait_until(Duration::from_secs(10), || {
                let (_, forgotten, on_disk) = paths_held(&m.path);
                on_disk > 0 && forgotten - on_disk <= 16 + 8
            }),
            "{dir}: forgotten paths stay in memory: {:?}",
            paths_held(&m.path)
        );
        assert_eq!(
            numbers(&root),
            before,
            "{dir}: a path came back with another number"
        );
        assert_eq!(
            std::fs::read(root.join("d3/sub/f7.txt")).unwrap(),
            b"file 3 7\n"
        );
    }
}
