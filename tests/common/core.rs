//! Helpers for the tests that drive the core (`CommitFs`) without a mount.
#![allow(dead_code)] // not every test binary uses each

use commitfs::error::FsError;
use commitfs::inodes::ROOT;
use commitfs::model::SetAttr;
use commitfs::view::CommitFs;

/// The inode at `path` below the mount's root ("" is the root).
pub fn ino(fs: &CommitFs, path: &str) -> Result<u64, FsError> {
    let mut at = ROOT;
    for c in path.split('/').filter(|c| !c.is_empty()) {
        at = fs.lookup(at, c.as_bytes())?.attr.ino;
    }
    Ok(at)
}

/// The whole content of the file at `path`.
pub fn cat(fs: &CommitFs, path: &str) -> Vec<u8> {
    let i = ino(fs, path).unwrap();
    let size = fs.getattr(i).unwrap().attr.size;
    fs.read(i, 0, size as u32 + 1).unwrap()
}

/// Makes `dir/name` hold exactly `data` (creating it if needed), as a save
/// would; returns its inode.
pub fn write_file(fs: &CommitFs, dir: &str, name: &str, data: &[u8]) -> u64 {
    let d = ino(fs, dir).unwrap();
    let f = match fs.lookup(d, name.as_bytes()) {
        Ok(e) => e.attr.ino,
        Err(_) => fs.create(d, name.as_bytes(), 0o644).unwrap().attr.ino,
    };
    fs.setattr(
        f,
        SetAttr {
            size: Some(0),
            ..Default::default()
        },
    )
    .unwrap();
    fs.write(f, 0, data).unwrap();
    f
}

/// Commits `tree` on `branch` (made or moved), with `parent` if any, at
/// `time` (seconds): the signature every core test uses.
pub fn commit_tree(
    repo: &git2::Repository,
    branch: &str,
    tree: git2::Oid,
    parent: Option<git2::Oid>,
    time: i64,
) -> git2::Oid {
    let tree = repo.find_tree(tree).unwrap();
    let sig = git2::Signature::new("T", "t@example.com", &git2::Time::new(time, 0)).unwrap();
    let parents: Vec<_> = parent
        .map(|p| repo.find_commit(p).unwrap())
        .into_iter()
        .collect();
    let refs: Vec<_> = parents.iter().collect();
    repo.commit(
        Some(&format!("refs/heads/{branch}")),
        &sig,
        &sig,
        "m",
        &tree,
        &refs,
    )
    .unwrap()
}

/// The names directory `ino` lists, `.` and `..` included.
pub fn names(fs: &CommitFs, ino: u64) -> Vec<Vec<u8>> {
    let d = fs.opendir(ino).unwrap();
    let out = fs
        .readdir(ino, d.fh, 0, 10_000)
        .unwrap()
        .into_iter()
        .map(|e| e.name.to_vec())
        .collect();
    fs.releasedir(d.fh);
    out
}
