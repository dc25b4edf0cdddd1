//! Branch refs made, removed and renamed (mkdir, rmdir and rename of branch
//! directories: `view/branches.rs` decides when), and the signature commits
//! carry.

use git2::Repository;

use crate::store::error::{StoreError, StoreResult};
use crate::store::repo::{Head, ObjectBatch, Repo, Txn};

/// Whether Git accepts `full` (`refs/heads/...`) as a ref name.
pub fn valid_ref_name(full: &str) -> bool {
    git2::Reference::is_valid_name(full)
}

/// The signature of a commit made now: `author` (name, email) if given, else
/// the repository's `user.name` and `user.email`, else `commitfs` at this
/// host.
pub fn signature(
    repo: &Repository,
    author: Option<&(String, String)>,
) -> StoreResult<git2::Signature<'static>> {
    let (name, email) = match author {
        Some((n, e)) => (n.clone(), e.clone()),
        None => {
            let cfg = repo.config()?;
            match (cfg.get_string("user.name"), cfg.get_string("user.email")) {
                (Ok(n), Ok(e)) => (n, e),
                _ => ("commitfs".to_string(), format!("commitfs@{}", hostname())),
            }
        }
    };
    Ok(git2::Signature::now(&name, &email)?)
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".into())
}

impl Repo {
    /// Makes branch ref `full` where `head` points (the tip of HEAD's branch,
    /// or HEAD's detached commit); in a repository without commits, at a new
    /// empty root commit signed by `author`. `Exists` if the ref is there.
    pub fn create_branch(
        &self,
        full: &str,
        head: &Head,
        author: Option<&(String, String)>,
        msg: &str,
    ) -> StoreResult<()> {
        self.with(|repo| {
            if repo.find_reference(full).is_ok() {
                return Err(StoreError::Exists(full.to_string()));
            }
            let target = match head {
                Head::Branch(b) => {
                    let b = String::from_utf8_lossy(b);
                    repo.refname_to_id(&format!("refs/heads/{b}")).ok()
                }
                Head::Detached(oid) => Some(git2::Oid::from(*oid)),
                Head::Unborn => None,
            };
            match target {
                Some(oid) => {
                    repo.reference(full, oid, false, msg)?;
                }
                None => {
                    // An empty repository: the branch starts at an empty root
                    // commit, in a pack kept until the ref names it (see
                    // `Repo::release_packs`).
                    let txn = Txn::of(repo);
                    let mut batch = ObjectBatch::default();
                    let tree = batch.add_tree(&txn, Vec::new())?;
                    let commit = batch.add_commit_of(&txn, tree, &[], author, "Create branch")?;
                    batch.flush(&txn)?;
                    let made = repo.reference(full, git2::Oid::from(commit), false, msg);
                    self.release_packs(batch.take_kept());
                    made?;
                }
            }
            Ok(())
        })
    }

    /// Deletes ref `full` (its reflog keeps the commits); `NotFound` if it
    /// is not there.
    pub fn delete_ref(&self, full: &str) -> StoreResult<()> {
        self.with(|repo| {
            let mut r = repo
                .find_reference(full)
                .map_err(|_| StoreError::NotFound(full.into()))?;
            Ok(r.delete()?)
        })
    }

    /// Renames ref `old` to `new`, never over an existing one (`Exists`).
    pub fn rename_ref(&self, old: &str, new: &str, msg: &str) -> StoreResult<()> {
        self.with(|repo| {
            let mut r = repo
                .find_reference(old)
                .map_err(|_| StoreError::NotFound(old.into()))?;
            match r.rename(new, false, msg) {
                Ok(_) => Ok(()),
                Err(e) if e.code() == git2::ErrorCode::Exists => {
                    Err(StoreError::Exists(new.into()))
                }
                Err(e) => Err(e.into()),
            }
        })
    }
}
