//! The read side through a real mount: the mounted tree of each kind of ref equals
//! `git archive` of the same ref, byte for byte, mode for mode.

mod common;

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::io::ErrorKind;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;

use common::*;

/// A repository with branches `main` (3 commits) and `feature/x`, annotated tag
/// `v1.0`, a symlink, an executable, a nested tree, a submodule entry and a file
/// whose name is not UTF-8.
fn sample() -> (TestRepo, std::path::PathBuf) {
    let r = TestRepo::new();
    r.write("README.md", b"hello\n");
    r.write("src/lib.rs", b"pub fn f() {}\n");
    r.write("src/deep/a/b/c.txt", b"deep\n");
    r.write("bin/run.sh", b"#!/bin/sh\necho run\n");
    std::fs::set_permissions(
        r.work().join("bin/run.sh"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    std::os::unix::fs::symlink("src/lib.rs", r.work().join("link")).unwrap();
    std::os::unix::fs::symlink("../README.md", r.work().join("src/up")).unwrap();
    std::os::unix::fs::symlink("nowhere", r.work().join("dangling")).unwrap();
    let odd = r.work().join(OsStr::from_bytes(b"caf\xe9-latin1.txt"));
    std::fs::write(&odd, b"not utf-8 name\n").unwrap();
    r.write("empty", b"");
    r.commit("one");
    git(&r.work(), &["tag", "-a", "v1.0", "-m", "release 1.0"]);
    r.write("README.md", b"hello again\n");
    r.write("src/new.rs", b"// new\n");
    r.commit("two");
    git(&r.work(), &["branch", "feature/x"]);
    git(&r.work(), &["checkout", "-q", "feature/x"]);
    r.write("feature.txt", b"on the feature\n");
    r.commit("feature");
    git(&r.work(), &["checkout", "-q", "main"]);
    // A submodule entry (gitlink) without a .gitmodules checkout.
    let head = git(&r.work(), &["rev-parse", "HEAD"]);
    git(
        &r.work(),
        &[
            "update-index",
            "--add",
            "--cacheinfo",
            &format!("160000,{head},vendor/sub"),
        ],
    );
    git(&r.work(), &["commit", "-q", "-m", "three"]);
    let bare = r.publish();
    (r, bare)
}

/// `git archive REF` extracted into a fresh directory.
fn archive(bare: &Path, rev: &str, into: &Path) {
    std::fs::create_dir_all(into).unwrap();
    let status = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "git --git-dir='{}' archive '{}' | tar -x -C '{}'",
            bare.display(),
            rev,
            into.display()
        ))
        .status()
        .unwrap();
    assert!(status.success(), "git archive {rev}");
}

#[derive(Debug, PartialEq)]
enum Item {
    File { exec: bool, data: Vec<u8> },
    Link(Vec<u8>),
    Dir,
}

/// Every path below `root` with what it is, by name bytes.
fn snapshot(root: &Path) -> BTreeMap<Vec<u8>, Item> {
    let mut out = BTreeMap::new();
    fn walk(root: &Path, rel: &Path, out: &mut BTreeMap<Vec<u8>, Item>) {
        for e in std::fs::read_dir(root.join(rel)).unwrap() {
            let e = e.unwrap();
            let rel = rel.join(e.file_name());
            let p = root.join(&rel);
            let md = std::fs::symlink_metadata(&p).unwrap();
            let key = rel.as_os_str().as_bytes().to_vec();
            if md.file_type().is_symlink() {
                out.insert(
                    key,
                    Item::Link(
                        std::fs::read_link(&p)
                            .unwrap()
                            .as_os_str()
                            .as_bytes()
                            .to_vec(),
                    ),
                );
            } else if md.is_dir() {
                out.insert(key, Item::Dir);
                walk(root, &rel, out);
            } else {
                let exec = md.permissions().mode() & 0o111 != 0;
                out.insert(
                    key,
                    Item::File {
                        exec,
                        data: std::fs::read(&p).unwrap(),
                    },
                );
            }
        }
    }
    walk(root, Path::new(""), &mut out);
    out
}

fn assert_same_tree(mounted: &Path, expected: &Path) {
    let a = snapshot(mounted);
    let b = snapshot(expected);
    assert_eq!(
        a.keys().collect::<Vec<_>>(),
        b.keys().collect::<Vec<_>>(),
        "same paths"
    );
    for (k, v) in &a {
        assert_eq!(Some(v), b.get(k), "{}", String::from_utf8_lossy(k));
    }
    let diff = Command::new("diff")
        .args(["-r", "--no-dereference"])
        .arg(mounted)
        .arg(expected)
        .output()
        .unwrap();
    assert!(
        diff.status.success(),
        "diff -r: {}",
        String::from_utf8_lossy(&diff.stdout)
    );
}

#[test]
fn every_kind_of_ref_matches_git_archive() {
    let (r, bare) = sample();
    let mnt = r.mountpoint("mnt");
    let m = Mount::new(&bare, &mnt, &[]);
    let short = git(&r.work(), &["rev-parse", "--short=7", "main~1"]);
    let cases = [
        ("main", "main".to_string()),
        ("feature/x", "feature/x".to_string()),
        ("v1.0", ".tags/v1.0".to_string()),
        (short.as_str(), format!(".commits/{short}")),
        ("main~1", ".commits/main~1".to_string()),
    ];
    for (rev, path) in &cases {
        let expected = r
            .dir
            .path()
            .join(format!("expected-{}", rev.replace('/', "_")));
        archive(&bare, rev, &expected);
        // git archive writes a submodule as an empty directory, as we show it.
        assert_same_tree(&m.path.join(path), &expected);
    }
    // The non-UTF-8 name is served as the same bytes.
    let names: Vec<Vec<u8>> = std::fs::read_dir(m.path.join("main"))
        .unwrap()
        .map(|e| e.unwrap().file_name().as_bytes().to_vec())
        .collect();
    assert!(names.contains(&b"caf\xe9-latin1.txt".to_vec()));
    let odd = m
        .path
        .join("main")
        .join(OsStr::from_bytes(b"caf\xe9-latin1.txt"));
    assert_eq!(std::fs::read(odd).unwrap(), b"not utf-8 name\n");
}

#[test]
// claim: mode-exec: "100755 blob | regular file | 0755"
// claim: mode-symlink: "120000 blob | symlink; target = blob bytes"
// claim: submodule-empty-dir: "160000 commit (submodule) | empty directory | 0555"
// claim: symlinks-as-stored: "targets are not checked or rewritten (a target may point outside the mount or nowhere)"
// claim: head-symlink: "symlink to the branch HEAD names (main)"
fn modes_symlinks_submodules_and_stat() {
    let (r, bare) = sample();
    let mnt = r.mountpoint("mnt");
    let m = Mount::new(&bare, &mnt, &[]);
    let main = m.path.join("main");
    let md = |p: &str| std::fs::symlink_metadata(main.join(p)).unwrap();
    assert_eq!(md("README.md").mode() & 0o7777, 0o644);
    assert_eq!(md("bin/run.sh").mode() & 0o7777, 0o755);
    assert_eq!(md("src").mode() & 0o7777, 0o755);
    assert!(md("src").is_dir());
    assert!(md("link").file_type().is_symlink());
    assert_eq!(
        std::fs::read_link(main.join("link")).unwrap(),
        Path::new("src/lib.rs")
    );
    assert_eq!(
        std::fs::read_link(main.join("dangling")).unwrap(),
        Path::new("nowhere")
    );
    assert_eq!(
        std::fs::read(main.join("link")).unwrap(),
        b"pub fn f() {}\n"
    );
    // Submodule: an empty read-only directory.
    let sub = md("vendor/sub");
    assert!(sub.is_dir());
    assert_eq!(sub.mode() & 0o7777, 0o555);
    assert_eq!(
        std::fs::read_dir(main.join("vendor/sub")).unwrap().count(),
        0
    );
    // Owner is the mounting user; size and blocks follow the blob.
    let readme = md("README.md");
    assert_eq!(readme.uid(), unsafe { libc::getuid() });
    assert_eq!(readme.gid(), unsafe { libc::getgid() });
    assert_eq!(readme.size(), 12);
    assert_eq!(readme.blocks(), 1);
    assert_eq!(md("empty").size(), 0);
    // mtime is the commit time of the snapshot.
    let t: i64 = git(&r.work(), &["log", "-1", "--format=%ct", "main"])
        .parse()
        .unwrap();
    assert_eq!(readme.mtime(), t);
    // Inode numbers: stable per path, different across paths.
    let a = md("README.md").ino();
    let b = md("src/lib.rs").ino();
    let c = std::fs::metadata(m.path.join(".tags/v1.0/README.md"))
        .unwrap()
        .ino();
    assert_ne!(a, b);
    assert_ne!(a, c);
    assert_eq!(md("README.md").ino(), a);
    // HEAD is a symlink to the branch HEAD names.
    assert_eq!(
        std::fs::read_link(m.path.join("HEAD")).unwrap(),
        Path::new("main")
    );
    assert_eq!(
        std::fs::read(m.path.join("HEAD/README.md")).unwrap(),
        b"hello again\n"
    );
}

#[test]
// claim: ls-shows-branches: "ls MNT shows branches and HEAD"
// claim: commits-revisions: ".commits yes; its entries never"
fn root_lists_branches_and_head_but_commits_are_resolved_not_listed() {
    let (r, bare) = sample();
    let mnt = r.mountpoint("mnt");
    let m = Mount::new(&bare, &mnt, &[]);
    let ls = Command::new("ls").arg(&m.path).output().unwrap();
    let shown = String::from_utf8(ls.stdout).unwrap();
    let shown: Vec<&str> = shown.lines().collect();
    assert_eq!(shown, vec!["HEAD", "feature", "main"]);
    let ls = Command::new("ls")
        .arg(m.path.join("feature"))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8(ls.stdout).unwrap(), "x\n");
    let tags: Vec<_> = std::fs::read_dir(m.path.join(".tags"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(tags, vec![std::ffi::OsString::from("v1.0")]);
    assert_eq!(
        std::fs::read_dir(m.path.join(".commits")).unwrap().count(),
        0
    );
    let full = git(&r.work(), &["rev-parse", "v1.0^{commit}"]);
    assert_eq!(
        std::fs::read(m.path.join(".commits").join(&full).join("README.md")).unwrap(),
        b"hello\n"
    );
    assert_eq!(
        std::fs::read(m.path.join(".commits/v1.0^/README.md"))
            .unwrap_err()
            .kind(),
        ErrorKind::NotFound
    );
    assert_eq!(
        std::fs::metadata(m.path.join(".commits/nonsense"))
            .unwrap_err()
            .kind(),
        ErrorKind::NotFound
    );
    assert_eq!(
        std::fs::metadata(m.path.join("nobranch"))
            .unwrap_err()
            .kind(),
        ErrorKind::NotFound
    );
}

/// A tag that points at a blob (git/git's `junio-gpg-pub` is one), or at a
/// tag of one, is a read-only file in `.tags` with the blob's bytes; the
/// listing shows it as a file.
#[test]
// claim: tag-of-a-blob: "a read-only file with the blob's bytes"
fn a_tag_of_a_blob_is_a_read_only_file() {
    let (r, bare) = sample();
    let key = b"-----BEGIN PGP PUBLIC KEY BLOCK-----\nnot really\n";
    let blob = {
        let f = r.work().join("key.asc");
        std::fs::write(&f, key).unwrap();
        git(&bare, &["hash-object", "-w", f.to_str().unwrap()])
    };
    git(&bare, &["tag", "key-light", &blob]);
    git(&bare, &["tag", "-a", "key-pub", "-m", "the key", &blob]);
    git(
        &bare,
        &[
            "tag",
            "-a",
            "key-again",
            "-m",
            "a tag of the tag",
            "key-pub",
        ],
    );
    let mnt = r.mountpoint("mnt");
    let m = Mount::new(&bare, &mnt, &[]);
    let tags = m.path.join(".tags");
    for name in ["key-light", "key-pub", "key-again"] {
        let p = tags.join(name);
        assert_eq!(std::fs::read(&p).unwrap(), key, "{name}");
        let md = std::fs::symlink_metadata(&p).unwrap();
        assert!(md.is_file(), "{name} is a file");
        assert_eq!(md.len(), key.len() as u64);
        let e = std::fs::write(&p, b"x").expect_err("a tag's blob is read-only");
        assert_eq!(e.raw_os_error(), Some(libc::EROFS), "{name}: {e}");
    }
    let listed: Vec<(String, bool)> = std::fs::read_dir(&tags)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                e.file_type().unwrap().is_file(),
            )
        })
        .collect();
    for name in ["key-light", "key-pub", "key-again"] {
        assert!(
            listed.contains(&(name.to_string(), true)),
            "{name} listed as a file in {listed:?}"
        );
    }
    // The annotated tag of a commit is still a directory.
    assert!(tags.join("v1.0").join("README.md").is_file());
}

#[test]
// claim: snapshot-erofs: "create, mknod S_IFREG | makes the file (see Opens) | EROFS | EROFS"
// claim: read-only-mount: "or through a tag, a commit or .commits, is EROFS"
fn every_write_to_a_snapshot_is_erofs() {
    let (r, bare) = sample();
    let mnt = r.mountpoint("mnt");
    let m = Mount::new(&bare, &mnt, &[]);
    // Branches are writable (tests/write_mount.rs); snapshots and the root's
    // files are not.
    for dir in [".tags/v1.0", ".commits/main~1", ""] {
        let d = m.path.join(dir);
        let erofs = |res: std::io::Result<()>, what: &str| {
            let e = res.expect_err(what);
            assert_eq!(
                e.raw_os_error(),
                Some(libc::EROFS),
                "{what} in {dir:?}: {e}"
            );
        };
        erofs(std::fs::write(d.join("new.txt"), b"x"), "create");
        if !dir.is_empty() {
            // (mkdir in the root makes a branch: tests/write_mount.rs)
            erofs(std::fs::create_dir(d.join("newdir")), "mkdir");
        }
        erofs(
            std::os::unix::fs::symlink("x", d.join("newlink")),
            "symlink",
        );
        if !dir.is_empty() {
            erofs(std::fs::write(d.join("README.md"), b"x"), "overwrite");
            erofs(
                std::fs::OpenOptions::new()
                    .append(true)
                    .open(d.join("README.md"))
                    .map(|_| ()),
                "append",
            );
            erofs(std::fs::remove_file(d.join("README.md")), "unlink");
            erofs(std::fs::rename(d.join("README.md"), d.join("R2")), "rename");
            erofs(
                std::fs::set_permissions(
                    d.join("README.md"),
                    std::fs::Permissions::from_mode(0o600),
                ),
                "chmod",
            );
            erofs(std::fs::remove_dir_all(d.join("src/deep")), "rmdir");
        }
    }
    // Nothing changed in the repository.
    assert_eq!(
        git(&bare, &["rev-parse", "main"]),
        git(&r.work(), &["rev-parse", "main"])
    );
}

#[test]
// claim: ref-option-order: "--ref REF mounts one tree as the root: a branch, a tag, or any revision"
fn ref_option_mounts_one_ref_as_root() {
    let (r, bare) = sample();
    // A branch is writable unless --read-only; a tag or revision never is.
    for (rev, extra) in [
        ("main", vec!["--read-only"]),
        ("v1.0", vec![]),
        ("main~1", vec![]),
    ] {
        let mnt = r.mountpoint(&format!("mnt-{}", rev.replace('~', "_")));
        let m = Mount::new(&bare, &mnt, &[&["--ref", rev][..], &extra[..]].concat());
        let expected = r.dir.path().join(format!("ex-{}", rev.replace('~', "_")));
        archive(&bare, rev, &expected);
        assert_same_tree(&m.path, &expected);
        let e = std::fs::write(m.path.join("x"), b"x").unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EROFS));
    }
}

/// A 64 MiB blob reads back identical, loose and packed, with `cmp`, and from a
/// small cache (served from a spill file) as from the default one.
#[test]
fn large_blob_reads_back_identical() {
    let r = TestRepo::new();
    let data = noise(64 << 20, 7);
    r.write("big.bin", &data);
    r.write("medium.bin", &noise(3 << 20, 9));
    r.commit("big");
    let bare = r.publish();
    let original = r.work().join("big.bin");
    for packed in [false, true] {
        if packed {
            git(&bare, &["repack", "-a", "-d", "-q"]);
            git(&bare, &["prune-packed"]);
        }
        for cache in ["256M", "4M"] {
            let mnt = r.mountpoint(&format!("mnt-{packed}-{cache}"));
            let m = Mount::new(&bare, &mnt, &["--cache-size", cache]);
            let st = Command::new("cmp")
                .arg(m.path.join("main/big.bin"))
                .arg(&original)
                .status()
                .unwrap();
            assert!(st.success(), "cmp big.bin (packed={packed}, cache={cache})");
            let st = Command::new("cmp")
                .arg(m.path.join("main/medium.bin"))
                .arg(r.work().join("medium.bin"))
                .status()
                .unwrap();
            assert!(
                st.success(),
                "cmp medium.bin (packed={packed}, cache={cache})"
            );
            // Reads at random offsets agree too.
            use std::os::unix::fs::FileExt;
            let f = std::fs::File::open(m.path.join("main/big.bin")).unwrap();
            for off in [0u64, 4095, 1 << 20, (64 << 20) - 10, 33_333_333] {
                let mut buf = vec![0u8; 8192];
                let n = f.read_at(&mut buf, off).unwrap();
                let end = (off as usize + 8192).min(data.len());
                assert_eq!(&buf[..n], &data[off as usize..end], "offset {off}");
            }
        }
    }
}

/// A corrupt object gives EIO for that file; everything else keeps working.
#[test]
fn corrupt_object_is_eio_and_the_rest_works() {
    let r = TestRepo::new();
    r.write("good.txt", b"good\n");
    r.write("bad.txt", b"this blob will be damaged\n");
    r.commit("c");
    let bare = r.publish();
    let oid = git(&bare, &["rev-parse", "main:bad.txt"]);
    let obj = bare.join("objects").join(&oid[..2]).join(&oid[2..]);
    let mut perms = std::fs::metadata(&obj).unwrap().permissions();
    perms.set_mode(0o644);
    std::fs::set_permissions(&obj, perms).unwrap();
    let mut bytes = std::fs::read(&obj).unwrap();
    let n = bytes.len();
    for b in &mut bytes[n / 2..] {
        *b ^= 0x5a;
    }
    std::fs::write(&obj, &bytes).unwrap();
    let mnt = r.mountpoint("mnt");
    let m = Mount::new(&bare, &mnt, &[]);
    let e = std::fs::read(m.path.join("main/bad.txt")).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EIO), "{e}");
    assert_eq!(
        std::fs::read(m.path.join("main/good.txt")).unwrap(),
        b"good\n"
    );
    assert_eq!(std::fs::read_dir(m.path.join("main")).unwrap().count(), 2);
}

/// A missing loose object and a damaged object in a pack give EIO for the
/// paths that need them, and only for those.
#[test]
// claim: missing-object-eio: "a loose object deleted or a pack damaged fails only the paths that need that object"
fn missing_and_damaged_objects_fail_only_their_paths() {
    let r = TestRepo::new();
    r.write("good.txt", b"good\n");
    // Random, so that the pack stores it whole (no delta) and a flipped byte
    // in its data cannot go unnoticed.
    r.write("packed.bin", &noise(64 << 10, 9));
    r.commit("packed");
    let bare = r.publish();
    git(&bare, &["repack", "-a", "-d", "-q"]);
    r.write("loose.txt", b"loose\n");
    r.commit("loose");
    r.publish();
    // The loose object goes away.
    let oid = git(&bare, &["rev-parse", "main:loose.txt"]);
    std::fs::remove_file(bare.join("objects").join(&oid[..2]).join(&oid[2..])).unwrap();
    // A byte in the middle of packed.bin's data in the pack is flipped.
    let blob = git(&bare, &["rev-parse", "main:packed.bin"]);
    let pack = std::fs::read_dir(bare.join("objects/pack"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "pack"))
        .unwrap();
    let idx = pack.with_extension("idx");
    let listing = git(&bare, &["verify-pack", "-v", idx.to_str().unwrap()]);
    let line = listing.lines().find(|l| l.starts_with(&blob)).unwrap();
    let f: Vec<&str> = line.split_whitespace().collect();
    let (size, offset): (usize, usize) = (f[3].parse().unwrap(), f[4].parse().unwrap());
    let mut bytes = std::fs::read(&pack).unwrap();
    bytes[offset + size / 2] ^= 0xff;
    let mut perms = std::fs::metadata(&pack).unwrap().permissions();
    perms.set_mode(0o644);
    std::fs::set_permissions(&pack, perms).unwrap();
    std::fs::write(&pack, &bytes).unwrap();

    let mnt = r.mountpoint("mnt");
    let m = Mount::new(&bare, &mnt, &[]);
    let main = m.path.join("main");
    for name in ["loose.txt", "packed.bin"] {
        let e = std::fs::read(main.join(name)).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EIO), "{name}: {e}");
    }
    assert_eq!(std::fs::read(main.join("good.txt")).unwrap(), b"good\n");
    let mut names: Vec<String> = std::fs::read_dir(&main)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["good.txt", "loose.txt", "packed.bin"],
        "the listing still works"
    );
    // The branch's history is still readable where it is whole.
    assert_eq!(
        std::fs::read(m.path.join(".commits/main~1/good.txt")).unwrap(),
        b"good\n"
    );
}

/// Listing a directory pushes its small files into the page cache: `fincore`
/// (which maps the file and asks the kernel, without reading it) finds their
/// pages resident, and what is read is the blob.
#[test]
// claim: prefetch: "are read in the background at once and pushed into the kernel's page cache (FUSE_NOTIFY_STORE)"
fn listing_prefetches_small_files_into_the_page_cache() {
    let r = TestRepo::new();
    for i in 0..50 {
        r.write(
            &format!("dir/f{i:02}.txt"),
            format!("file {i}\n").repeat(100).as_bytes(),
        );
    }
    r.write("dir/big.bin", &noise(1 << 20, 3));
    r.commit("files");
    let bare = r.publish();
    let mnt = r.mountpoint("mnt");
    let log = r.dir.path().join("daemon.log");
    let m = Mount::new(
        &bare,
        &mnt,
        &["-v", "-v", "-v", "--log-file", log.to_str().unwrap()],
    );
    let dir = m.path.join("main/dir");
    // readdirplus, as `ls -l` does; nothing is read.
    let mut listed = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        e.unwrap().metadata().unwrap();
        listed += 1;
    }
    assert_eq!(listed, 51);
    let resident = |name: &str| {
        let out = Command::new("fincore")
            .args(["--bytes", "--noheadings", "--output", "RES"])
            .arg(dir.join(name))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse::<u64>()
            .unwrap_or(0)
    };
    assert!(
        wait_until(std::time::Duration::from_secs(5), || (0..50)
            .all(|i| resident(&format!("f{i:02}.txt")) > 0)),
        "small files are in the page cache after a listing: {:?}\n{}",
        (0..50)
            .map(|i| resident(&format!("f{i:02}.txt")))
            .collect::<Vec<_>>(),
        String::from_utf8_lossy(&std::fs::read(&log).unwrap_or_default())
            .lines()
            .filter(|l| l.contains("DIR") || l.contains("prefetch") || l.contains("OPEN"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert_eq!(
        resident("big.bin"),
        0,
        "files over the prefetch limit are not pushed"
    );
    for i in 0..50 {
        let got = std::fs::read(dir.join(format!("f{i:02}.txt"))).unwrap();
        assert_eq!(got, format!("file {i}\n").repeat(100).into_bytes());
    }
}
