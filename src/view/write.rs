//! What each change of a branch does: create, mkdir, symlink, unlink,
//! rmdir, rename, link, write, truncate, setattr, and the materialization
//! they start from (a clean directory or file becomes an `MDir` or `MFile`
//! of the overlay; see `overlay/` for the model and its invariants).
//!
//! Every change takes the inode table (write), then the overlay's changes,
//! records its catalog rows before it is answered, and tells the committer
//! (`changed`). Lock order and the whole lock table: docs/DEVELOPMENT.md,
//! "Locks". File data is read and written with neither of the first two
//! held.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::error::{FsError, FsResult};
use crate::inodes::{Ino, Inodes, Kind, Node, ROOT, Snap, SnapSource};
use crate::model::{RENAME_EXCHANGE, RENAME_NOREPLACE, SetAttr, Ts};
use crate::overlay::{Changes, Mat, Meta, WFile, WState};
use crate::store::names::check_new_name;
use crate::view::{CommitFs, Entry};

fn branch_name(snap: &Snap) -> Option<&[u8]> {
    match &snap.source {
        SnapSource::Branch(b) => Some(b),
        SnapSource::Fixed => None,
    }
}

impl CommitFs {
    /// The snapshot of a node that may be written: a branch's, on a mount that
    /// is not read-only. EROFS for tags, commits, the root and namespaces.
    pub(crate) fn writable_snap(&self, n: &Node) -> FsResult<Arc<Snap>> {
        if self.config().read_only {
            return Err(FsError::ReadOnly);
        }
        match n.kind.snap() {
            Some(s) if branch_name(s).is_some() && !matches!(n.kind, Kind::Submodule { .. }) => {
                Ok(s.clone())
            }
            _ => Err(FsError::ReadOnly),
        }
    }

    /// Whether `n` is the root of its branch (the mount's root, or a branch
    /// directory under the root or a namespace).
    pub(crate) fn is_branch_root(&self, inodes: &Inodes, n: &Node) -> bool {
        n.ino == ROOT
            || inodes
                .get(n.parent)
                .is_some_and(|p| matches!(p.kind, Kind::Root | Kind::BranchNs(_)))
    }

    /// Materializes directory `ino` and its ancestors up to the branch root,
    /// top down, without recursion (a chain may be any number of levels deep).
    pub(crate) fn mat_dir(&self, inodes: &mut Inodes, ov: &mut Changes, ino: Ino) -> FsResult<()> {
        let mut chain = Vec::new();
        let mut at = ino;
        loop {
            let n = inodes.get(at).ok_or(FsError::NotFound)?;
            match &n.kind {
                Kind::MDir { .. } => break,
                Kind::Tree { .. } => {}
                Kind::Submodule { .. } => return Err(FsError::ReadOnly),
                k if k.is_dir() => return Err(FsError::ReadOnly),
                _ => return Err(FsError::NotDir),
            }
            chain.push(at);
            if self.is_branch_root(inodes, &n) {
                break;
            }
            at = n.parent;
        }
        for &dir in chain.iter().rev() {
            self.mat_one_dir(inodes, ov, dir)?;
        }
        if chain.is_empty() {
            return Ok(());
        }
        // The catalog learns the chain top down: the branch of its root,
        // then each directory in its parent.
        let mut names: Vec<(Ino, Box<[u8]>)> = Vec::new();
        for &dir in chain.iter().rev() {
            let n = inodes.get(dir).ok_or(FsError::NotFound)?;
            if self.is_branch_root(inodes, &n) {
                if let Some(b) = n.kind.snap().and_then(|s| branch_name(s)) {
                    self.overlay.set_branch(dir, b)?;
                }
            } else {
                names.push((n.parent, n.name.clone()));
            }
        }
        let names: Vec<(Ino, &[u8])> = names.iter().map(|(d, n)| (*d, &n[..])).collect();
        self.overlay.record(inodes, ov, &names, &[])
    }

    /// Materializes directory `ino`, whose parent is materialized (or which is
    /// the branch root): its children move into the overlay, and what its tree
    /// holds that the mount does not show is kept for its next tree.
    fn mat_one_dir(&self, inodes: &mut Inodes, ov: &mut Changes, ino: Ino) -> FsResult<()> {
        let n = inodes.get(ino).ok_or(FsError::NotFound)?;
        let Kind::Tree { oid, .. } = &n.kind else {
            return Ok(());
        };
        let entries = self.tree(*oid)?;
        ov.materialize(inodes, ino, &entries);
        Ok(())
    }

    fn children_mut(ov: &mut Changes, ino: Ino) -> FsResult<&mut BTreeMap<Box<[u8]>, Ino>> {
        match ov.mat_mut(ino) {
            Some(Mat::Dir(c)) => Ok(c),
            _ => Err(FsError::io("directory is not materialized")),
        }
    }

    /// The written file behind `ino`, materializing it first (copying its blob
    /// unless `truncate`).
    pub(crate) fn mat_file(&self, ino: Ino, truncate: bool) -> FsResult<Arc<WFile>> {
        // Look first; copy the blob (it may be large) with no lock held; then
        // install the copy unless another thread got there first.
        let (snap, oid, executable) = {
            let inodes = self.inodes.read();
            let n = inodes.get(ino).ok_or(FsError::NotFound)?;
            match &n.kind {
                Kind::MFile { .. } => {
                    return self
                        .wfile(ino)
                        .ok_or_else(|| FsError::io("written file lost its data"));
                }
                Kind::File {
                    snap,
                    oid,
                    executable,
                } => {
                    self.writable_snap(&n)?;
                    (snap.clone(), *oid, *executable)
                }
                Kind::Symlink { .. } | Kind::MSymlink { .. } | Kind::Head => {
                    return Err(FsError::Invalid);
                }
                _ => return Err(FsError::IsDir),
            }
        };
        let file = self.overlay.new_data()?;
        let mut size = 0;
        if !truncate {
            let mut pos = 0u64;
            // A failure to store the copy (a full spill filesystem) is the
            // error, with its errno and what it says.
            let mut failed = None;
            let copied = self.repo.stream_blob(oid, &mut |chunk| {
                file.write_at(chunk, pos).map_err(|e| {
                    let errno = e.errno();
                    failed = Some(e);
                    std::io::Error::from_raw_os_error(errno)
                })?;
                pos += chunk.len() as u64;
                Ok(())
            });
            if let Some(e) = failed {
                return Err(e);
            }
            copied?;
            size = pos;
        }
        let mut inodes = self.inodes.write();
        let mut ov = self.overlay.lock();
        let n = inodes.get(ino).ok_or(FsError::NotFound)?;
        match &n.kind {
            Kind::File { oid: now, .. } if *now == oid => {}
            Kind::MFile { .. } => {
                return match ov.mat(ino) {
                    Some(Mat::File(f)) => Ok(f.clone()),
                    _ => Err(FsError::io("written file lost its data")),
                };
            }
            _ => {
                return Err(FsError::io(
                    "file changed while being opened for writing; try again",
                ));
            }
        }
        if inodes.is_linked(&n) {
            self.mat_dir(&mut inodes, &mut ov, n.parent)?;
        }
        let mtime = ov
            .meta(ino)
            .and_then(|m| m.mtime)
            .unwrap_or(Ts::from_secs(snap.snapshot.time));
        let wf = WFile::new(
            file,
            WState {
                committed: if truncate { None } else { Some((0, oid)) },
                ..WState::new(size, mtime)
            },
        );
        ov.set_mat(ino, Mat::File(wf.clone()));
        inodes.set_kind(ino, Kind::MFile { snap, executable });
        if inodes.is_linked(&n) {
            self.overlay
                .record(&inodes, &ov, &[(n.parent, &n.name)], &[])?;
        }
        Ok(wf)
    }

    /// After a commit: a written file that has not changed since it was
    /// committed, nor for `idle`, goes back to being its blob, and its spill
    /// file is closed. A file being written keeps its spill (an append after
    /// every commit would otherwise copy the whole file each time).
    pub fn dematerialize_clean(&self, idle: std::time::Duration) {
        let now = std::time::Instant::now();
        let mut inodes = self.inodes.write();
        let mut ov = self.overlay.lock();
        let candidates: Vec<Ino> = ov.files().collect();
        let mut back = Vec::new();
        for ino in candidates {
            let Some(n) = inodes.get(ino) else { continue };
            let Kind::MFile { snap, executable } = &n.kind else {
                continue;
            };
            if !inodes.is_linked(&n) {
                continue;
            }
            let Some(Mat::File(wf)) = ov.mat(ino) else {
                continue;
            };
            let wf = wf.clone();
            // A file whose lock is held is being written, or its blob is
            // being written by a commit (of a large file, for seconds): it is
            // not clean now, and waiting for it here, with the inode table
            // held, would stall every request of the mount.
            let Some(mut st) = wf.st.try_lock() else {
                continue;
            };
            let clean = matches!(st.committed, Some((v, _)) if v == st.version);
            let idle_enough = st.last_write.is_none_or(|t| now.duration_since(t) >= idle);
            let Some((_, oid)) = st.committed else {
                continue;
            };
            if !(clean && idle_enough) {
                continue;
            }
            let mtime = st.mtime;
            st.retired = true;
            drop(st);
            let kind = Kind::File {
                snap: snap.clone(),
                oid,
                executable: *executable,
            };
            ov.take_mat(ino);
            wf.data.remove_name();
            // Its time as shown: utimens's if one was set since the last
            // write, else the last write's.
            ov.meta_mut(ino).mtime.get_or_insert(mtime);
            inodes.set_kind(ino, kind);
            back.push((n.parent, n.name.clone(), ino));
        }
        // The catalog: these names have no change left (their blobs are
        // committed), and their times are kept.
        let names: Vec<(Ino, &[u8])> = back.iter().map(|(d, n, _)| (*d, &n[..])).collect();
        let inos: Vec<Ino> = back.iter().map(|(_, _, i)| *i).collect();
        let _ = self.overlay.record(&inodes, &ov, &names, &inos);
    }

    /// Common start of every namespace change below `parent`: the parent must be
    /// a writable directory; it is materialized.
    fn begin_change(
        &self,
        inodes: &mut Inodes,
        ov: &mut Changes,
        parent: Ino,
    ) -> FsResult<Arc<Snap>> {
        let p = inodes.get(parent).ok_or(FsError::NotFound)?;
        if !p.kind.is_dir() {
            return Err(FsError::NotDir);
        }
        if Self::stale_in(inodes, ov, parent) {
            // Like a directory removed under a shell standing in it.
            return Err(FsError::NotFound);
        }
        let snap = self.writable_snap(&p)?;
        self.mat_dir(inodes, ov, parent)?;
        Ok(snap)
    }

    fn add_child(
        &self,
        inodes: &mut Inodes,
        ov: &mut Changes,
        parent: Ino,
        name: &[u8],
        kind: Kind,
    ) -> FsResult<Arc<Node>> {
        let children = Self::children_mut(ov, parent)?;
        if children.contains_key(name) {
            return Err(FsError::Exists);
        }
        let node = inodes.upsert(parent, name, kind);
        Self::children_mut(ov, parent)?.insert(name.into(), node.ino);
        ov.forget_meta(node.ino);
        ov.entries_changed(parent);
        Ok(node)
    }

    /// mknod(2): a regular file is made as by create; Git stores no devices,
    /// fifos or sockets (EPERM, or EROFS where nothing may change).
    pub fn mknod(&self, parent: Ino, name: &[u8], mode: u32) -> FsResult<Entry> {
        if mode & libc::S_IFMT == libc::S_IFREG {
            return self.create(parent, name, mode);
        }
        self.check_writable(parent)?;
        Err(FsError::NotPermitted)
    }

    /// link(2): Git has no hard links (EPERM, or EROFS where nothing may
    /// change).
    pub fn link(&self, ino: Ino, _new_parent: Ino, _new_name: &[u8]) -> FsResult<Entry> {
        self.check_writable(ino)?;
        Err(FsError::NotPermitted)
    }

    /// setxattr(2) and removexattr(2): Git stores no extended attributes
    /// (ENOTSUP, or EROFS where nothing may change).
    pub fn set_xattr(&self, ino: Ino) -> FsResult<()> {
        self.check_writable(ino)?;
        Err(FsError::NotSupported)
    }

    /// listxattr(2): there are none, on anything that exists.
    pub fn list_xattr(&self, ino: Ino) -> FsResult<Vec<u8>> {
        self.getattr(ino).map(|_| Vec::new())
    }

    /// create(2) and mknod(2) of a regular file.
    pub fn create(&self, parent: Ino, name: &[u8], mode: u32) -> FsResult<Entry> {
        let _live = self.live()?;
        check_new_name(name, false)?;
        let data = self.overlay.new_data()?;
        let st = WState {
            version: 1,
            last_write: Some(std::time::Instant::now()),
            ..WState::new(0, Ts::now())
        };
        let node = self.add_file(parent, name, data, st, mode & 0o100 != 0, Some(mode))?;
        self.changed(parent);
        self.getattr(node.ino)
    }

    /// Makes `name` in `parent` a written file with bytes `data` and state
    /// `st` (create, and recovery's `install_file`); `mode`: permission bits
    /// to keep.
    fn add_file(
        &self,
        parent: Ino,
        name: &[u8],
        data: crate::overlay::wdata::Data,
        st: WState,
        executable: bool,
        mode: Option<u32>,
    ) -> FsResult<Arc<Node>> {
        self.new_child(
            parent,
            name,
            |snap| Kind::MFile { snap, executable },
            Some(Mat::File(WFile::new(data, st))),
            |ov, ino| {
                if let Some(mode) = mode {
                    self.remember_perm(ov, ino, mode);
                }
            },
        )
    }

    /// A new entry `name` in `parent`, of kind `kind` (given the branch's
    /// snapshot), with overlay state `mat` and the metadata `meta` sets,
    /// recorded in the catalog before it is acknowledged (create, mkdir,
    /// symlink).
    fn new_child(
        &self,
        parent: Ino,
        name: &[u8],
        kind: impl FnOnce(Arc<Snap>) -> Kind,
        mat: Option<Mat>,
        meta: impl FnOnce(&mut Changes, Ino),
    ) -> FsResult<Arc<Node>> {
        let mut inodes = self.inodes.write();
        let mut ov = self.overlay.lock();
        let snap = self.begin_change(&mut inodes, &mut ov, parent)?;
        let node = self.add_child(&mut inodes, &mut ov, parent, name, kind(snap))?;
        if let Some(m) = mat {
            ov.set_mat(node.ino, m);
        }
        meta(&mut ov, node.ino);
        self.overlay
            .record(&inodes, &ov, &[(parent, name)], &[node.ino, parent])?;
        Ok(node)
    }

    pub fn mkdir(&self, parent: Ino, name: &[u8], mode: u32) -> FsResult<Entry> {
        let _live = self.live()?;
        check_new_name(name, false)?;
        let p = self.node_of(parent)?;
        if let Some(ns) = crate::view::branches::branch_ns(&p) {
            return self.mkdir_branch(&p, ns, name);
        }
        let node = self.new_child(
            parent,
            name,
            |snap| Kind::MDir { snap },
            Some(Mat::Dir(BTreeMap::new())),
            |ov, ino| {
                self.remember_perm(ov, ino, mode);
                ov.meta_mut(ino).mtime = Some(Ts::now());
            },
        )?;
        self.changed(parent);
        self.getattr(node.ino)
    }

    pub fn symlink(&self, parent: Ino, name: &[u8], target: &[u8]) -> FsResult<Entry> {
        let _live = self.live()?;
        check_new_name(name, true)?;
        if target.is_empty() || target.len() > 4096 || target.contains(&0) {
            return Err(FsError::Invalid);
        }
        let node = self.new_child(
            parent,
            name,
            |snap| Kind::MSymlink {
                snap,
                target: target.into(),
            },
            None,
            |ov, ino| ov.meta_mut(ino).mtime = Some(Ts::now()),
        )?;
        self.changed(parent);
        self.getattr(node.ino)
    }

    /// Keeps the permission bits Git cannot store (only the executable bit
    /// goes into the tree).
    fn remember_perm(&self, ov: &mut Changes, ino: Ino, mode: u32) {
        let perm = (mode & 0o7777) as u16;
        if perm != 0 {
            ov.meta_mut(ino).perm = Some(perm);
        }
    }

    pub fn unlink(&self, parent: Ino, name: &[u8]) -> FsResult<()> {
        let _live = self.live()?;
        self.remove(parent, name, false)
    }

    pub fn rmdir(&self, parent: Ino, name: &[u8]) -> FsResult<()> {
        let _live = self.live()?;
        let p = self.node_of(parent)?;
        if let Some(ns) = crate::view::branches::branch_ns(&p) {
            return self.rmdir_branch(&p, ns, name);
        }
        self.remove(parent, name, true)
    }

    fn remove(&self, parent: Ino, name: &[u8], dir: bool) -> FsResult<()> {
        {
            let mut inodes = self.inodes.write();
            let mut ov = self.overlay.lock();
            self.begin_change(&mut inodes, &mut ov, parent)?;
            let ino = *Self::children_mut(&mut ov, parent)?
                .get(name)
                .ok_or(FsError::NotFound)?;
            let child = inodes.get(ino).ok_or(FsError::NotFound)?;
            match (dir, child.kind.is_dir()) {
                (false, true) => return Err(FsError::IsDir),
                (true, false) => return Err(FsError::NotDir),
                (true, true) if !self.dir_is_empty(&ov, &child)? => return Err(FsError::NotEmpty),
                _ => {}
            }
            Self::children_mut(&mut ov, parent)?.remove(name);
            inodes.unlink(parent, name);
            ov.entries_changed(parent);
            let m = ov.meta_mut(ino);
            m.unlinked = true;
            m.touch_status();
            Self::lost_name(&ov, ino);
            self.overlay
                .record_removal(&inodes, &ov, &[(parent, name)], &[ino, parent]);
        }
        self.changed(parent);
        Ok(())
    }

    /// Inode `ino` lost its last name: a written file's bytes leave the
    /// overlay's directory (an open descriptor keeps them until closed).
    fn lost_name(ov: &Changes, ino: Ino) {
        if let Some(Mat::File(f)) = ov.mat(ino) {
            f.data.remove_name();
        }
    }

    /// Removes `name` from `parent` whatever it is (a directory with all
    /// below it): recovery's deletion. Nothing there is fine.
    pub(crate) fn force_remove(&self, parent: Ino, name: &[u8]) -> FsResult<()> {
        {
            let mut inodes = self.inodes.write();
            let mut ov = self.overlay.lock();
            self.begin_change(&mut inodes, &mut ov, parent)?;
            let Some(ino) = Self::children_mut(&mut ov, parent)?.remove(name) else {
                return Ok(());
            };
            inodes.unlink(parent, name);
            ov.entries_changed(parent);
            ov.meta_mut(ino).unlinked = true;
            Self::lost_name(&ov, ino);
            self.overlay
                .record(&inodes, &ov, &[(parent, name)], &[ino, parent])?;
        }
        self.changed(parent);
        Ok(())
    }

    /// Puts a written file with bytes `data` at `name` in `parent`, in place
    /// of whatever is there (recovery).
    pub(crate) fn install_file(
        &self,
        parent: Ino,
        name: &[u8],
        data: crate::overlay::wdata::Data,
        executable: bool,
    ) -> FsResult<Ino> {
        self.force_remove(parent, name)?;
        let mtime = data.mtime().map(Ts::of).unwrap_or_else(Ts::now);
        let size = data.size();
        let st = WState {
            version: 1,
            ..WState::new(size, mtime)
        };
        let ino = self.add_file(parent, name, data, st, executable, None)?.ino;
        self.changed_file(ino, size, false);
        Ok(ino)
    }

    /// Puts an object of the repository (a tree, file, symlink or submodule)
    /// at `name` in `parent`, in place of whatever is there (recovery).
    pub(crate) fn install_object(
        &self,
        parent: Ino,
        name: &[u8],
        e: &crate::store::repo::TreeEntry,
    ) -> FsResult<Ino> {
        self.force_remove(parent, name)?;
        let ino = {
            let mut inodes = self.inodes.write();
            let mut ov = self.overlay.lock();
            let snap = self.begin_change(&mut inodes, &mut ov, parent)?;
            let kind = crate::inodes::tree_kind(&snap, e);
            let node = self.add_child(&mut inodes, &mut ov, parent, name, kind)?;
            self.overlay
                .record(&inodes, &ov, &[(parent, name)], &[node.ino, parent])?;
            node.ino
        };
        self.changed(parent);
        Ok(ino)
    }

    /// Gives `ino` the permission bits and times a dead daemon's catalog
    /// kept for it (recovery).
    pub(crate) fn restore_meta(&self, ino: Ino, m: Meta) -> FsResult<()> {
        let inodes = self.inodes.read();
        let mut ov = self.overlay.lock();
        let e = ov.meta_mut(ino);
        e.perm = m.perm.or(e.perm);
        e.mtime = m.mtime.or(e.mtime);
        e.atime = m.atime.or(e.atime);
        e.ctime = m.ctime.or(e.ctime);
        self.overlay.record(&inodes, &ov, &[], &[ino])
    }

    /// Whether directory `n` holds nothing (`ov` is the locked overlay).
    pub(crate) fn dir_is_empty(&self, ov: &Changes, n: &Node) -> FsResult<bool> {
        Ok(match &n.kind {
            Kind::MDir { .. } => match ov.mat(n.ino) {
                Some(Mat::Dir(c)) => c.is_empty(),
                _ => true,
            },
            Kind::Tree { oid, .. } => self.tree(*oid)?.is_empty(),
            _ => true,
        })
    }

    /// rename(2), with RENAME_NOREPLACE and RENAME_EXCHANGE.
    pub fn rename(
        &self,
        parent: Ino,
        name: &[u8],
        new_parent: Ino,
        new_name: &[u8],
        flags: u32,
    ) -> FsResult<()> {
        let _live = self.live()?;
        check_new_name(new_name, false)?;
        {
            // Branch directories (children of the root or a namespace) rename
            // branches; nothing moves between them and the inside of a branch.
            let p = self.node_of(parent)?;
            let np = self.node_of(new_parent)?;
            let from_refs = crate::view::branches::branch_ns(&p).is_some();
            let to_refs = crate::view::branches::branch_ns(&np).is_some();
            if from_refs && to_refs {
                return self.rename_branch(&p, name, &np, new_name, flags);
            }
            if from_refs || to_refs {
                return Err(if self.config().read_only {
                    FsError::ReadOnly
                } else {
                    FsError::CrossDevice
                });
            }
        }
        {
            let mut inodes = self.inodes.write();
            let mut ov = self.overlay.lock();
            let src_parent = inodes.get(parent).ok_or(FsError::NotFound)?;
            let dst_parent = inodes.get(new_parent).ok_or(FsError::NotFound)?;
            let src_snap = self.writable_snap(&src_parent)?;
            // Into another branch or a read-only snapshot: EXDEV, so that mv copies.
            let dst_snap = self
                .writable_snap(&dst_parent)
                .map_err(|_| FsError::CrossDevice)?;
            if branch_name(&src_snap) != branch_name(&dst_snap) {
                return Err(FsError::CrossDevice);
            }
            self.mat_dir(&mut inodes, &mut ov, parent)?;
            self.mat_dir(&mut inodes, &mut ov, new_parent)?;
            let src = *Self::children_mut(&mut ov, parent)?
                .get(name)
                .ok_or(FsError::NotFound)?;
            if crate::store::names::refused(new_name, true)
                && inodes
                    .get(src)
                    .is_some_and(|n| matches!(n.kind, Kind::Symlink { .. } | Kind::MSymlink { .. }))
            {
                // A symlink named `.gitmodules`: Git would refuse to check it out.
                return Err(FsError::Invalid);
            }
            let dst = Self::children_mut(&mut ov, new_parent)?
                .get(new_name)
                .copied();
            if dst == Some(src) {
                return Ok(());
            }
            let src_node = inodes.get(src).ok_or(FsError::NotFound)?;
            // A directory cannot move below itself.
            if src_node.kind.is_dir() {
                let mut at = new_parent;
                loop {
                    if at == src {
                        return Err(FsError::Invalid);
                    }
                    let Some(n) = inodes.get(at) else { break };
                    if self.is_branch_root(&inodes, &n) || n.parent == at {
                        break;
                    }
                    at = n.parent;
                }
            }
            if flags & RENAME_EXCHANGE != 0 {
                let dst = dst.ok_or(FsError::NotFound)?;
                Self::children_mut(&mut ov, parent)?.insert(name.into(), dst);
                Self::children_mut(&mut ov, new_parent)?.insert(new_name.into(), src);
                inodes.exchange(parent, name, new_parent, new_name);
            } else {
                if let Some(d) = dst {
                    if flags & RENAME_NOREPLACE != 0 {
                        return Err(FsError::Exists);
                    }
                    let dst_node = inodes.get(d).ok_or(FsError::NotFound)?;
                    match (src_node.kind.is_dir(), dst_node.kind.is_dir()) {
                        (true, false) => return Err(FsError::NotDir),
                        (false, true) => return Err(FsError::IsDir),
                        (true, true) if !self.dir_is_empty(&ov, &dst_node)? => {
                            return Err(FsError::NotEmpty);
                        }
                        _ => {}
                    }
                    // The file renamed over lost its name.
                    let m = ov.meta_mut(d);
                    m.unlinked = true;
                    m.touch_status();
                    Self::lost_name(&ov, d);
                }
                Self::children_mut(&mut ov, parent)?.remove(name);
                Self::children_mut(&mut ov, new_parent)?.insert(new_name.into(), src);
                inodes.rename(parent, name, new_parent, new_name);
            }
            // Both directories' entries changed; the moved inode's status too.
            ov.entries_changed(parent);
            ov.entries_changed(new_parent);
            ov.meta_mut(src).touch_status();
            let mut metas = vec![parent, new_parent, src];
            metas.extend(dst);
            self.overlay.record(
                &inodes,
                &ov,
                &[(parent, name), (new_parent, new_name)],
                &metas,
            )?;
        }
        // Both directories are in one branch (a rename across branches is
        // EXDEV, above).
        self.renamed_in(parent);
        Ok(())
    }

    /// Runs `f` on the written file behind `ino` with its state locked,
    /// materializing it first. A spill retired by `dematerialize_clean` between
    /// the two is never written to: the file is materialized again.
    fn modify<R>(
        &self,
        ino: Ino,
        truncate: bool,
        mut f: impl FnMut(&WFile, &mut WState) -> FsResult<R>,
    ) -> FsResult<R> {
        if self.is_stale(ino) {
            return Err(FsError::Stale);
        }
        loop {
            let wf = self.mat_file(ino, truncate)?;
            let mut st = wf.st.lock();
            if st.replaced {
                return Err(FsError::Stale);
            }
            if st.retired {
                continue;
            }
            return f(&wf, &mut st);
        }
    }

    /// write(2) at `offset`; a write past the end leaves a hole that reads as zeros.
    pub fn write(&self, ino: Ino, offset: u64, data: &[u8]) -> FsResult<u32> {
        let _live = self.live()?;
        if data.is_empty() {
            // A write of nothing changes nothing, not even the size.
            self.mat_file(ino, false)?;
            return Ok(0);
        }
        log::trace!("write of inode {ino}: {} bytes at {offset}", data.len());
        let (size, fresh) = self.modify(ino, false, |wf, st| {
            wf.data.write_at(data, offset)?;
            st.content_changed(st.size.max(offset.saturating_add(data.len() as u64)));
            Ok((st.size, st.committed.is_none()))
        })?;
        self.file_changed(ino, size, fresh);
        Ok(data.len() as u32)
    }

    /// After a file's content changed: its mtime is the write's again (not one
    /// utimens set), and its branch's settle window restarts.
    fn file_changed(&self, ino: Ino, size: u64, fresh: bool) {
        let had_mtime = {
            let mut ov = self.overlay.lock();
            let m = ov.meta_mut(ino);
            m.ctime = Some(Ts::now());
            m.mtime.take().is_some()
        };
        if had_mtime {
            // The catalog kept a utimens time: it goes (the file's own mtime
            // on disk is the write's). `inodes` before `ov`, as everywhere.
            let inodes = self.inodes.read();
            let ov = self.overlay.lock();
            let _ = self.overlay.record(&inodes, &ov, &[], &[ino]);
        }
        self.changed_file(ino, size, fresh);
    }

    /// chmod, chown, truncate, utimens.
    pub fn setattr(&self, ino: Ino, a: SetAttr) -> FsResult<Entry> {
        let _live = self.live()?;
        let n = self.node_of(ino)?;
        // chown and chgrp too: nothing changes where nothing may (EROFS),
        // even to the owner it already has.
        let any_change = a.mode.is_some()
            || a.size.is_some()
            || a.atime.is_some()
            || a.mtime.is_some()
            || a.uid.is_some()
            || a.gid.is_some();
        if any_change {
            self.writable_snap(&n)?;
        }
        let me = (self.config().uid, self.config().gid);
        if a.uid.is_some_and(|u| u != me.0) || a.gid.is_some_and(|g| g != me.1) {
            return Err(FsError::NotPermitted);
        }
        if let Some(size) = a.size {
            let fresh = self.modify(ino, size == 0, |wf, st| {
                wf.data.set_len(size)?;
                st.content_changed(size);
                Ok(st.committed.is_none())
            })?;
            self.file_changed(ino, size, fresh);
        }
        if let Some(mode) = a.mode {
            let executable = mode & 0o100 != 0;
            let changed = {
                let mut inodes = self.inodes.write();
                let mut ov = self.overlay.lock();
                let n = inodes.get(ino).ok_or(FsError::NotFound)?;
                ov.meta_mut(ino).perm = Some((mode & 0o7777) as u16);
                let new_kind = match &n.kind {
                    Kind::File {
                        snap,
                        oid,
                        executable: e,
                    } if *e != executable => Some(Kind::File {
                        snap: snap.clone(),
                        oid: *oid,
                        executable,
                    }),
                    Kind::MFile {
                        snap,
                        executable: e,
                    } if *e != executable => Some(Kind::MFile {
                        snap: snap.clone(),
                        executable,
                    }),
                    _ => None,
                };
                let changed = match new_kind {
                    Some(k) => {
                        // The executable bit goes into the tree: the parent must be
                        // materialized for the commit to see it.
                        if inodes.is_linked(&n) {
                            self.mat_dir(&mut inodes, &mut ov, n.parent)?;
                        }
                        inodes.set_kind(ino, k);
                        true
                    }
                    None => false,
                };
                ov.meta_mut(ino).touch_status();
                let names: &[(Ino, &[u8])] = if changed && inodes.is_linked(&n) {
                    &[(n.parent, &n.name)]
                } else {
                    &[]
                };
                self.overlay.record(&inodes, &ov, names, &[ino])?;
                changed
            };
            if changed {
                self.changed(ino);
            }
        }
        if a.mode.is_none() && (a.uid.is_some() || a.gid.is_some()) {
            self.overlay.lock().meta_mut(ino).touch_status();
        }
        if a.atime.is_some() || a.mtime.is_some() {
            let inodes = self.inodes.read();
            let mut ov = self.overlay.lock();
            let m = ov.meta_mut(ino);
            m.touch_status();
            if a.atime.is_some() {
                m.atime = a.atime;
            }
            if a.mtime.is_some() {
                m.mtime = a.mtime;
            }
            self.overlay.record(&inodes, &ov, &[], &[ino])?;
        }
        self.getattr(ino)
    }

    /// fallocate(2): mode 0 extends the file and reserves the range in its
    /// spill file (ENOSPC if the spill filesystem lacks the room); KEEP_SIZE
    /// reserves nothing (there is nothing to reserve in Git) and succeeds;
    /// other modes are EOPNOTSUPP.
    pub fn fallocate(&self, ino: Ino, offset: u64, len: u64, mode: i32) -> FsResult<()> {
        let _live = self.live()?;
        let n = self.node_of(ino)?;
        self.writable_snap(&n)?;
        if mode & !libc::FALLOC_FL_KEEP_SIZE != 0 {
            return Err(FsError::NotSupported);
        }
        let end = offset.checked_add(len).ok_or(FsError::Invalid)?;
        let keep_size = mode & libc::FALLOC_FL_KEEP_SIZE != 0;
        let grew = self.modify(ino, false, |wf, st| {
            if keep_size || end <= st.size {
                return Ok(None);
            }
            wf.data.allocate(offset, len)?;
            st.content_changed(end);
            Ok(Some(st.committed.is_none()))
        })?;
        if let Some(fresh) = grew {
            self.file_changed(ino, end, fresh);
        }
        Ok(())
    }

    /// The kernel forgot `nlookup` of its lookups of `ino`. Once it holds
    /// none: an unlinked inode's data goes; a clean path of a tree (not
    /// changed here) keeps only its place, so that a walk the kernel has
    /// forgotten costs a few bytes per path (see `Inodes::make_ghost`).
    pub fn forget(&self, ino: Ino, nlookup: u64) {
        let mut inodes = self.inodes.write();
        if !inodes.forgotten(ino, nlookup) {
            return;
        }
        let Some(n) = inodes.get(ino) else { return };
        if inodes.is_linked(&n) {
            let clean = matches!(
                n.kind,
                Kind::Tree { .. }
                    | Kind::File { .. }
                    | Kind::Symlink { .. }
                    | Kind::Submodule { .. }
            );
            // Only below a clean directory of a tree: its node is made again
            // from that tree (a ref-level or changed directory's children
            // are few, or have state of their own). A directory already
            // forgotten is such a one: the forgets of a parent and its child
            // are served by different threads, in either order.
            let under_tree = match inodes.get(n.parent) {
                Some(p) => {
                    matches!(p.kind, Kind::Tree { .. }) && !self.is_ref_level_in(&inodes, &n)
                }
                None => inodes.ghost(n.parent).is_some(),
            };
            if clean && under_tree {
                let ov = self.overlay.lock();
                if ov.holds_nothing_of(ino) {
                    drop(ov);
                    inodes.make_ghost(ino);
                    // The nodes freed are small blocks amid others: glibc
                    // keeps their pages until asked (every 64 Ki forgotten
                    // paths, a few milliseconds).
                    let trim = inodes.ghosts().is_multiple_of(64 << 10);
                    // Beyond the ghosts memory keeps, the oldest go to disk,
                    // written with no lock held, batch after batch until
                    // memory is within its bound (the forgets of other
                    // threads meanwhile find a batch out, and leave theirs
                    // to this loop).
                    let mut spill = inodes.spill();
                    drop(inodes);
                    while let Some(s) = spill {
                        let written = s.to.put(&s.batch);
                        let mut inodes = self.inodes.write();
                        inodes.spilled(s, written);
                        spill = inodes.spill();
                    }
                    #[cfg(all(target_os = "linux", target_env = "gnu"))]
                    if trim {
                        // SAFETY: malloc_trim only returns free memory.
                        unsafe {
                            libc::malloc_trim(0);
                        }
                    }
                }
            }
            return;
        }
        self.overlay.lock().forget(ino);
        inodes.drop_orphan(ino);
    }

    /// The written data of a materialized file, for reads and commits.
    pub(crate) fn wfile(&self, ino: Ino) -> Option<Arc<WFile>> {
        match self.overlay.lock().mat(ino) {
            Some(Mat::File(f)) => Some(f.clone()),
            _ => None,
        }
    }

    /// The children of a materialized directory, in name order.
    /// Whether `ino` or a directory above it was replaced or removed by another
    /// writer's change.
    pub(crate) fn is_stale(&self, ino: Ino) -> bool {
        let inodes = self.inodes.read();
        let ov = self.overlay.lock();
        Self::stale_in(&inodes, &ov, ino)
    }

    pub(crate) fn stale_in(inodes: &Inodes, ov: &Changes, ino: Ino) -> bool {
        if !ov.any_stale() {
            return false;
        }
        let mut at = ino;
        for _ in 0..=inodes.len() {
            if ov.marked_stale(at) {
                return true;
            }
            match inodes.get(at) {
                Some(n) if n.parent != at => at = n.parent,
                _ => return false,
            }
        }
        false
    }

    pub(crate) fn mat_children(&self, ino: Ino) -> Vec<(Box<[u8]>, Ino)> {
        match self.overlay.lock().mat(ino) {
            Some(Mat::Dir(c)) => c.iter().map(|(k, v)| (k.clone(), *v)).collect(),
            _ => Vec::new(),
        }
    }

    pub(crate) fn mat_child(&self, ino: Ino, name: &[u8]) -> Option<Ino> {
        match self.overlay.lock().mat(ino) {
            Some(Mat::Dir(c)) => c.get(name).copied(),
            _ => None,
        }
    }

    pub(crate) fn meta_of(&self, ino: Ino) -> Meta {
        self.overlay.lock().meta(ino).copied().unwrap_or_default()
    }
}
