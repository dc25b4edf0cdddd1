//! The view's side of recovery (`overlay/recover.rs`): each change a dead
//! daemon's overlay holds is made again here as the same request from a
//! program would make it, through the write path and its catalog records.

use crate::store::Oid;

use crate::error::{FsError, FsResult};
use crate::inodes::{Ino, Kind, ROOT, SnapSource};
use crate::model::SetAttr;
use crate::overlay::Meta;
use crate::overlay::recover::Replay;
use crate::overlay::wdata::Data;
use crate::store::repo::TreeEntry;
use crate::view::CommitFs;

impl CommitFs {
    /// Replays every overlay a gone daemon left (see `overlay/recover.rs`).
    /// Returns how many were adopted.
    pub fn recover(&self) -> usize {
        if self.config().read_only {
            return 0;
        }
        crate::overlay::recover::recover(&self.overlay, self)
    }
}

impl Replay for CommitFs {
    fn branch_root(&self, name: &[u8]) -> FsResult<Ino> {
        let root = self.node_of(ROOT)?;
        if let Some(s) = root.kind.snap() {
            return match &s.source {
                SnapSource::Branch(b) if **b == *name => Ok(ROOT),
                _ => Err(FsError::io(format!(
                    "it holds changes of branch {}, and this mount shows another ref",
                    String::from_utf8_lossy(name)
                ))),
            };
        }
        let mut at = ROOT;
        for part in name.split(|&c| c == b'/') {
            at = self
                .lookup(at, part)
                .map_err(|e| {
                    FsError::io(format!(
                        "branch {} is not there ({e})",
                        String::from_utf8_lossy(name)
                    ))
                })?
                .attr
                .ino;
        }
        Ok(at)
    }

    fn at(&self, dir: Ino, name: &[u8]) -> Option<(Ino, Kind)> {
        let e = self.lookup(dir, name).ok()?;
        let n = self.node_of(e.attr.ino).ok()?;
        Some((n.ino, n.kind.clone()))
    }

    fn remove(&self, dir: Ino, name: &[u8]) -> FsResult<()> {
        self.force_remove(dir, name)
    }

    fn mkdir(&self, dir: Ino, name: &[u8]) -> FsResult<Ino> {
        Ok(CommitFs::mkdir(self, dir, name, 0o755)?.attr.ino)
    }

    fn symlink(&self, dir: Ino, name: &[u8], target: &[u8]) -> FsResult<Ino> {
        self.force_remove(dir, name)?;
        Ok(CommitFs::symlink(self, dir, name, target)?.attr.ino)
    }

    fn put_object(&self, dir: Ino, name: &[u8], e: &TreeEntry) -> FsResult<Ino> {
        self.install_object(dir, name, e)
    }

    fn put_file(&self, dir: Ino, name: &[u8], data: Data, executable: bool) -> FsResult<Ino> {
        self.install_file(dir, name, data, executable)
    }

    fn set_executable(&self, ino: Ino, executable: bool) -> FsResult<()> {
        let mode = if executable { 0o755 } else { 0o644 };
        self.setattr(
            ino,
            SetAttr {
                mode: Some(mode),
                ..Default::default()
            },
        )
        .map(|_| ())
    }

    fn restore_meta(&self, ino: Ino, m: Meta) -> FsResult<()> {
        CommitFs::restore_meta(self, ino, m)
    }

    fn has_object(&self, oid: Oid) -> FsResult<bool> {
        Ok(self.repo.has_object(oid)?)
    }
}
