//! Branches through the root (SPEC section 2): `mkdir` in the root or in a
//! namespace directory creates a branch at the tip of the branch HEAD names (an
//! empty root commit in an empty repository); `rmdir` of an empty branch
//! directory deletes the branch (its reflog keeps the commits); `rename` of a
//! branch directory renames the branch.

use crate::error::{FsError, FsResult};
use crate::inodes::{Kind, Node, SnapSource};
use crate::view::{CommitFs, Entry};

/// `refs/heads/NS/NAME`, if Git accepts it as a branch name.
fn full_ref(ns: &[u8], name: &[u8]) -> FsResult<String> {
    if name.starts_with(b".") || (ns.is_empty() && name == b"HEAD") {
        return Err(FsError::Invalid);
    }
    let mut short = ns.to_vec();
    if !short.is_empty() {
        short.push(b'/');
    }
    short.extend_from_slice(name);
    let short = String::from_utf8(short).map_err(|_| FsError::Invalid)?;
    let full = format!("refs/heads/{short}");
    if !crate::store::branches::valid_ref_name(&full) {
        return Err(FsError::Invalid);
    }
    Ok(full)
}

/// The ref namespace a directory of refs stands for: the root or `feature/`.
pub(crate) fn branch_ns(n: &Node) -> Option<&[u8]> {
    match &n.kind {
        Kind::Root => Some(b""),
        Kind::BranchNs(p) => Some(p),
        _ => None,
    }
}

impl CommitFs {
    pub(crate) fn mkdir_branch(&self, parent: &Node, ns: &[u8], name: &[u8]) -> FsResult<Entry> {
        if self.config().read_only {
            return Err(FsError::ReadOnly);
        }
        let full = full_ref(ns, name)?;
        let head = self.repo.head()?;
        let msg = format!("commitfs: mkdir {}", &full["refs/heads/".len()..]);
        self.repo
            .create_branch(&full, &head, self.committer.author(), &msg)?;
        self.lookup(parent.ino, name)
    }

    pub(crate) fn rmdir_branch(&self, parent: &Node, ns: &[u8], name: &[u8]) -> FsResult<()> {
        if self.config().read_only {
            return Err(FsError::ReadOnly);
        }
        let full = full_ref(ns, name).map_err(|_| FsError::NotFound)?;
        let ino = self.lookup(parent.ino, name)?.attr.ino;
        let node = self.node_of(ino)?;
        match &node.kind {
            Kind::BranchNs(_) => return Err(FsError::NotEmpty),
            k if k.snap().is_some() => {}
            _ => return Err(FsError::NotDir),
        }
        if !self.dir_is_empty(&self.overlay.lock(), &node)? {
            return Err(FsError::NotEmpty);
        }
        // What the branch has pending (deleting its last files) is committed
        // first, so that the reflog keeps it.
        let b = {
            let inodes = self.inodes.read();
            self.branch_for(&inodes, &node)
        };
        if let Some(b) = &b {
            self.committer.barrier(b)?;
        }
        self.repo.delete_ref(&full)?;
        self.inodes.write().unlink(parent.ino, name);
        if let Some(SnapSource::Branch(key)) = node.kind.snap().map(|s| &s.source) {
            self.committer.forget(key);
        }
        Ok(())
    }

    pub(crate) fn rename_branch(
        &self,
        parent: &Node,
        name: &[u8],
        new_parent: &Node,
        new_name: &[u8],
        flags: u32,
    ) -> FsResult<()> {
        if self.config().read_only {
            return Err(FsError::ReadOnly);
        }
        let (Some(ns), Some(new_ns)) = (branch_ns(parent), branch_ns(new_parent)) else {
            return Err(FsError::CrossDevice);
        };
        let old = full_ref(ns, name).map_err(|_| FsError::NotFound)?;
        let new = full_ref(new_ns, new_name)?;
        let ino = self.lookup(parent.ino, name)?.attr.ino;
        let node = self.node_of(ino)?;
        if !matches!(
            node.kind.snap().map(|s| &s.source),
            Some(SnapSource::Branch(_))
        ) {
            // Renaming a namespace would rename every branch below it.
            return Err(FsError::NotPermitted);
        }
        if flags & crate::model::RENAME_EXCHANGE != 0 {
            return Err(FsError::NotSupported);
        }
        // An existing branch or namespace is never replaced.
        if self.lookup(new_parent.ino, new_name).is_ok() {
            return Err(FsError::Exists);
        }
        let b = {
            let inodes = self.inodes.read();
            self.branch_for(&inodes, &node)
        }
        .ok_or_else(|| FsError::io("not a branch"))?;
        self.committer.barrier(&b)?;
        // No commit of the branch runs while its ref is renamed (it would
        // move the old name).
        b.without_commits(|| {
            let msg = format!("commitfs: rename {} to {}", &old[11..], &new[11..]);
            self.repo.rename_ref(&old, &new, &msg)?;
            let new_short: Box<[u8]> = new.as_bytes()["refs/heads/".len()..].into();
            // Known by its new name from now on (a new branch may take the old one).
            self.committer.renamed(&b, &new_short);
            self.overlay.set_branch(b.root, &new_short)?;
            self.inodes
                .write()
                .rename(parent.ino, name, new_parent.ino, new_name);
            Ok(())
        })
    }
}
