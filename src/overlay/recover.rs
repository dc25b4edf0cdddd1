//! Adopting the overlays of daemons that are gone (SPEC section 4, "The
//! overlay"): every change a dead daemon acknowledged is shown again by the
//! next mount and committed by its committer.
//!
//! At mount, before anything is served, each overlay under
//! `COMMONDIR/commitfs/overlay/` whose lock is free (see `persist.rs`) is
//! replayed, oldest first, into this mount's overlay: for every directory row,
//! starting at each branch root, the named change is made again at the same
//! place of the branch as it is now (a directory made empty, kept, or made
//! from the tree it was renamed with, as its row says: see
//! `persist::DirBase`; a file's
//! bytes moved into this overlay, a name removed, a symlink or an object
//! put back), with its permission bits and times. The branch is then dirty,
//! and its changes are committed like any others: onto the tip, whoever
//! moved it meanwhile, with the mount's version winning where both changed a
//! path (SPEC section 5). Scratch and ignored files come back too, and stay
//! uncommitted. A written file that the dead daemon had committed and not
//! written since (its bytes hash to the blob the catalog names) is not
//! replayed: the branch has it.
//!
//! A written file the dead daemon had committed is not replayed when its
//! bytes still hash to that blob and the branch has a file of its name, but
//! its executable bit is.
//!
//! The dead overlay is removed only once all of it is in this mount's
//! overlay, so a daemon killed during recovery leaves both, and the next one
//! replays both (a change made twice is the same change). An overlay that
//! cannot be replayed here (its branch is gone, or this mount shows only
//! another ref) is left where it is, with one line in the log; a corrupt one
//! is moved aside (see `persist::dead_overlays`).

use crate::store::Oid;

use crate::error::{FsError, FsResult};
use crate::inodes::{Ino, Kind};
use crate::overlay::persist::{Dead, DirBase, Row};
use crate::overlay::wdata::Data;
use crate::overlay::{Meta, Overlay};
use crate::store::repo::TreeEntry;

/// The changes a replay makes, on the mount that adopts a dead overlay: the
/// view makes each as it makes a program's (`view/recover.rs`), in place of
/// whatever is at the name.
pub trait Replay {
    /// The root directory of branch `name` in this mount.
    fn branch_root(&self, name: &[u8]) -> FsResult<Ino>;
    /// The inode at `name` in directory `dir` now, and what it is.
    fn at(&self, dir: Ino, name: &[u8]) -> Option<(Ino, Kind)>;
    /// Removes `name` from `dir`, whatever it is; nothing there is fine.
    fn remove(&self, dir: Ino, name: &[u8]) -> FsResult<()>;
    /// A new empty directory at `name`.
    fn mkdir(&self, dir: Ino, name: &[u8]) -> FsResult<Ino>;
    /// A new symlink at `name`, in place of whatever is there.
    fn symlink(&self, dir: Ino, name: &[u8], target: &[u8]) -> FsResult<Ino>;
    /// The repository's object `e` at `name`, in place of whatever is there.
    fn put_object(&self, dir: Ino, name: &[u8], e: &TreeEntry) -> FsResult<Ino>;
    /// A written file with bytes `data` at `name`, in place of whatever is there.
    fn put_file(&self, dir: Ino, name: &[u8], data: Data, executable: bool) -> FsResult<Ino>;
    /// Sets or clears the executable bit of file `ino`.
    fn set_executable(&self, ino: Ino, executable: bool) -> FsResult<()>;
    /// Gives `ino` the permission bits and times the dead catalog kept.
    fn restore_meta(&self, ino: Ino, m: Meta) -> FsResult<()>;
    /// Whether the repository has object `oid`.
    fn has_object(&self, oid: Oid) -> FsResult<bool>;
}

/// Replays into `overlay`, through `to`, every overlay a gone daemon left
/// beside it (see the module's doc). Returns how many were adopted.
pub fn recover(overlay: &Overlay, to: &dyn Replay) -> usize {
    let mut adopted = 0;
    for dead in crate::overlay::persist::dead_overlays(overlay.store().parent()) {
        let pending: usize = dead.rows.values().map(Vec::len).sum();
        // One catalog transaction for the whole replay.
        let batch = overlay.store().begin_batch();
        let replayed = batch.and_then(|()| replay(overlay, to, &dead));
        let ended = overlay.store().end_batch();
        match replayed.and(ended) {
            Ok(()) => {
                adopted += 1;
                log::info!(
                    "adopted the overlay {} of a daemon that is gone: {pending} changes",
                    dead.dir.display()
                );
                // Everything is in this mount's catalog first.
                if let Err(e) = overlay.sync() {
                    log::error!(
                        "cannot make the adopted changes durable ({e}); keeping {}",
                        dead.dir.display()
                    );
                    continue;
                }
                if let Err(e) = std::fs::remove_dir_all(&dead.dir) {
                    log::warn!(
                        "cannot remove the adopted overlay {}: {e}",
                        dead.dir.display()
                    );
                }
            }
            Err(e) => log::error!(
                "cannot replay the overlay {} here ({e}); it stays for a mount that can",
                dead.dir.display()
            ),
        }
    }
    adopted
}

fn replay(overlay: &Overlay, to: &dyn Replay, dead: &Dead) -> FsResult<()> {
    // Every branch must be here before anything is replayed.
    let mut roots = Vec::new();
    for (old, name) in &dead.branches {
        roots.push((*old, to.branch_root(name)?));
    }
    for (old_root, new_root) in roots {
        let mut stack = vec![(old_root, new_root)];
        while let Some((old, new)) = stack.pop() {
            let Some(rows) = dead.rows.get(&old) else {
                continue;
            };
            for (name, row) in rows {
                let ino = match replay_row(overlay, to, dead, new, name, row) {
                    Ok(i) => i,
                    Err(e) => {
                        // One name that cannot be made again (say, a
                        // directory now in its way is a snapshot) does
                        // not stop the rest.
                        log::error!(
                            "recovery: cannot replay {} in directory {new}: {e}",
                            String::from_utf8_lossy(name)
                        );
                        continue;
                    }
                };
                if let (Some(new_ino), Some(old_ino)) = (ino, row.ino()) {
                    if let Some(m) = dead.meta.get(&old_ino) {
                        to.restore_meta(new_ino, *m)?;
                    }
                    if let Row::Dir { ino, .. } = row {
                        stack.push((*ino, new_ino));
                    }
                }
            }
        }
    }
    Ok(())
}

/// Makes the change of one row again; the inode that now has the name.
/// The catalog is read as untrusted as the repository it sits in: a name
/// the mount would refuse to make (`.git` and its aliases) is refused
/// here too, and an object that is not in the repository is not put in.
fn replay_row(
    overlay: &Overlay,
    to: &dyn Replay,
    dead: &Dead,
    dir: Ino,
    name: &[u8],
    row: &Row,
) -> FsResult<Option<Ino>> {
    if !matches!(row, Row::Deleted) {
        crate::store::names::check_new_name(
            name,
            matches!(
                row,
                Row::Symlink { .. } | Row::Object { mode: 0o120000, .. }
            ),
        )?;
    }
    if let Row::Object { oid, .. }
    | Row::Dir {
        base: DirBase::Tree(oid),
        ..
    } = row
        && !to.has_object(*oid)?
    {
        return Err(FsError::io(format!(
            "object {oid} is not in the repository"
        )));
    }
    match row {
        Row::Deleted => {
            to.remove(dir, name)?;
            Ok(None)
        }
        Row::Dir { base, .. } => {
            // The directory its rows go onto (see `DirBase`).
            if let Some((ino, kind)) = to.at(dir, name) {
                let keep = match (&kind, base) {
                    (Kind::Tree { .. } | Kind::MDir { .. }, DirBase::AtItsName) => true,
                    (Kind::Tree { oid, .. }, DirBase::Tree(t)) => oid == t,
                    _ => false,
                };
                if keep {
                    return Ok(Some(ino));
                }
                to.remove(dir, name)?;
            }
            match base {
                DirBase::Tree(oid) => {
                    // Renamed here: its tree comes with it.
                    let e = TreeEntry {
                        name: name.into(),
                        oid: *oid,
                        kind: crate::store::repo::EntryKind::Dir,
                    };
                    Ok(Some(to.put_object(dir, name, &e)?))
                }
                DirBase::Empty | DirBase::AtItsName => Ok(Some(to.mkdir(dir, name)?)),
            }
        }
        Row::File {
            file, exec, clean, ..
        } => {
            let path = dead.file_path(*file);
            if !path.exists() {
                log::warn!(
                    "recovery: the bytes of {} ({}) are missing; skipped",
                    String::from_utf8_lossy(name),
                    path.display()
                );
                return Ok(None);
            }
            if let Some(oid) = clean
                && crate::store::treeobj::hash_blob_file(&path).ok() == Some(*oid)
                && let Some((ino, kind)) = to.at(dir, name)
            {
                // Committed, and not written since, and the branch has
                // a file of that name: the bytes are not replayed
                // (another writer's later change of them stays), but a
                // change of the executable bit made after the commit
                // is. (A file renamed here after its commit is not at
                // this name in the branch: its bytes are replayed.)
                let shown = match kind {
                    Kind::File { executable, .. } | Kind::MFile { executable, .. } => {
                        Some(executable)
                    }
                    _ => None,
                };
                if shown.is_some_and(|x| x != *exec) {
                    to.set_executable(ino, *exec)?;
                }
                return Ok(Some(ino));
            }
            let (id, f) = overlay.store().adopt_file(&path)?;
            let data = Data::adopted(overlay.store(), id, f)?;
            Ok(Some(to.put_file(dir, name, data, *exec)?))
        }
        Row::Symlink { target, .. } => Ok(Some(to.symlink(dir, name, target)?)),
        Row::Object { mode, oid, .. } => {
            let kind = crate::store::treeobj::kind_of_mode(*mode)
                .ok_or_else(|| FsError::io(format!("mode {mode:o} in the catalog")))?;
            let e = TreeEntry {
                name: name.into(),
                oid: *oid,
                kind,
            };
            Ok(Some(to.put_object(dir, name, &e)?))
        }
    }
}
