//! Syncing with a Git server (`--remote`, SPEC section 6).
//!
//! One thread per mount. Every `--fetch-interval`, and soon after each commit
//! the mount makes, it:
//!
//! 1. fetches the server's branches and tags into `refs/commitfs/remote/`
//!    (the user's refs are not touched by the fetch itself);
//! 2. brings each local branch up to date with the server's:
//!    - nothing unpushed here: the branch moves forward to the server's tip;
//!    - both moved: a merge commit whose parents are the server's tip and the
//!      local one, and whose tree is the server's with this side's changes
//!      since their common ancestor applied on top (where both changed a path,
//!      this side's version wins and the message names the path). No commit
//!      of either side is dropped, nothing is force-pushed;
//!    - a branch or tag only the server has appears here, unless the server
//!      had it at the last fetch too (then it was deleted here, and stays so);
//!
//!    every local ref moves by compare-and-swap, and the mount follows it
//!    like any other writer's move (see `follow.rs`);
//! 3. pushes every local branch the server lacks or is behind on (never
//!    forcing). A refused push (the server moved) is resolved by the next
//!    round's fetch and merge.
//!
//! Failures (server down, refused, bad credentials) never block a save: the
//! commits wait, as commits, and the round is tried again with a backoff
//! (interval, doubling, at most a minute). Since what is unpushed is just the
//! difference between the local refs and the fetched ones, it survives a
//! restart of the daemon.

use std::time::{Duration, Instant};

use git2::Oid;
use parking_lot::{Condvar, Mutex};

use crate::error::{FsError, FsResult};
use crate::fs::CommitFs;
use crate::repo::{REMOTE_HEADS, REMOTE_TAGS, redact_url};

/// The longest wait between two tries while the server fails.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// What the sync thread did last (for `commitfs status`).
#[derive(Default)]
pub struct SyncState {
    pub last_fetch: Option<Instant>,
    pub last_push: Option<Instant>,
    pub last_error: Option<(Instant, String)>,
    /// A commit was made: push soon.
    pub kick: bool,
}

#[derive(Default)]
pub struct Sync {
    pub state: Mutex<SyncState>,
    wake: Condvar,
}

impl Sync {
    /// A commit was made: the sync thread pushes it without waiting for the
    /// next interval.
    pub fn kick(&self) {
        self.state.lock().kick = true;
        self.wake.notify_all();
    }
}

impl CommitFs {
    /// The sync thread: never returns.
    pub fn run_sync(&self) {
        let Some(remote) = self.config().remote.clone() else {
            return;
        };
        let interval = self.config().fetch_interval;
        let shown = redact_url(&remote);
        let mut wait = Duration::ZERO;
        loop {
            {
                let mut st = self.sync.state.lock();
                if !st.kick && !wait.is_zero() {
                    self.sync.wake.wait_for(&mut st, wait);
                }
                st.kick = false;
            }
            match self.sync_once(&remote) {
                Ok(()) => {
                    wait = interval;
                }
                Err(e) => {
                    let msg = e.to_string();
                    self.sync.state.lock().last_error = Some((Instant::now(), msg.clone()));
                    if msg.contains("cannot push") || msg.contains("push refused") {
                        // The server moved between our fetch and push (another
                        // machine pushed): the next round fetches and merges.
                        log::info!("sync with {shown}: {msg}; fetching again");
                        wait = interval.min(Duration::from_millis(200));
                    } else {
                        log::warn!("sync with {shown}: {msg}");
                        wait = (wait * 2).clamp(interval, MAX_BACKOFF.max(interval));
                    }
                }
            }
        }
    }

    /// One round: fetch, bring local branches up to date, push.
    pub fn sync_once(&self, remote: &str) -> FsResult<()> {
        log::debug!("sync round");
        // What the server had at the last fetch: a branch it had then that is
        // not here any more was deleted here, and is not brought back.
        let known: Vec<(Vec<u8>, Oid)> = self.repo.refs(REMOTE_HEADS)?;
        self.repo.fetch_remote(remote)?;
        self.sync.state.lock().last_fetch = Some(Instant::now());
        let server: Vec<(Vec<u8>, Oid)> = self.repo.refs(REMOTE_HEADS)?;
        let local: Vec<(Vec<u8>, Oid)> = self.repo.refs("refs/heads/")?;
        let find = |v: &[(Vec<u8>, Oid)], n: &[u8]| v.iter().find(|(k, _)| k == n).map(|(_, o)| *o);
        for (name, s) in &server {
            let Ok(name_str) = std::str::from_utf8(name) else {
                continue;
            };
            let refname = format!("refs/heads/{name_str}");
            match find(&local, name) {
                None if find(&known, name).is_some() => {} // deleted here
                None => {
                    self.repo
                        .cas_ref(&refname, None, *s, "commitfs: branch from the server")?;
                }
                Some(l) if l == *s => {}
                Some(l) if self.repo.is_ancestor(l, *s)? => {
                    self.repo.cas_ref(
                        &refname,
                        Some(l),
                        *s,
                        "commitfs: fast-forward to the server",
                    )?;
                }
                Some(l) if self.repo.is_ancestor(*s, l)? => {} // ahead: pushed below
                Some(l) => {
                    let merged = self.merge_with_server(name_str, l, *s)?;
                    self.repo.cas_ref(
                        &refname,
                        Some(l),
                        merged,
                        "commitfs: merge with the server",
                    )?;
                }
            }
        }
        // Tags only the server has.
        let local_tags = self.repo.refs("refs/tags/")?;
        for (name, t) in self.repo.refs(REMOTE_TAGS)? {
            if find(&local_tags, &name).is_none()
                && let Ok(n) = std::str::from_utf8(&name)
            {
                self.repo.cas_ref(
                    &format!("refs/tags/{n}"),
                    None,
                    t,
                    "commitfs: tag from the server",
                )?;
            }
        }
        // Push what the server lacks.
        let local: Vec<(Vec<u8>, Oid)> = self.repo.refs("refs/heads/")?;
        let mut to_push = Vec::new();
        for (name, l) in &local {
            let Ok(n) = std::str::from_utf8(name) else {
                continue;
            };
            let ahead = match find(&server, name) {
                None => true,
                Some(s) => s != *l && self.repo.is_ancestor(s, *l)?,
            };
            if ahead {
                to_push.push((format!("refs/heads/{n}"), *l));
            }
        }
        if to_push.is_empty() {
            self.sync.state.lock().last_error = None;
            return Ok(());
        }
        let names: Vec<String> = to_push.iter().map(|(n, _)| n.clone()).collect();
        let results = self.repo.push_remote(remote, &names)?;
        let mut refused = Vec::new();
        for p in &results {
            match &p.rejected {
                None => {
                    // The server has it now: remember that, as a fetch would.
                    if let Some((_, oid)) = to_push.iter().find(|(n, _)| *n == p.refname) {
                        let tracking =
                            format!("{REMOTE_HEADS}{}", &p.refname["refs/heads/".len()..]);
                        let _ = self.repo.cas_ref_force(&tracking, *oid);
                    }
                }
                Some(why) => refused.push(format!("{} ({why})", p.refname)),
            }
        }
        self.sync.state.lock().last_push = Some(Instant::now());
        if !refused.is_empty() {
            // The server moved meanwhile: the next round fetches and merges.
            return Err(FsError::io(format!(
                "push refused for {}",
                refused.join(", ")
            )));
        }
        self.sync.state.lock().last_error = None;
        Ok(())
    }

    /// A commit with parents `server` and `local`: the server's tree with the
    /// local changes since their common ancestor applied on top.
    fn merge_with_server(&self, name: &str, local: Oid, server: Oid) -> FsResult<Oid> {
        let repo_arc = self.repo.clone();
        repo_arc.with(|repo| {
            let base = repo.merge_base(local, server)?;
            let tree_of = |c: Oid| -> FsResult<Oid> { Ok(repo.find_commit(c)?.tree_id()) };
            let (bt, lt, st) = (tree_of(base)?, tree_of(local)?, tree_of(server)?);
            let ours = crate::commit::changed_paths(repo, bt, lt)?;
            let theirs = crate::commit::changed_paths(repo, bt, st)?;
            let tree = crate::commit::apply_changes(repo, st, &ours)?;
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
            let sig = self.signature(repo)?;
            let tree = repo.find_tree(tree)?;
            let (s, l) = (repo.find_commit(server)?, repo.find_commit(local)?);
            let merged = repo.commit(None, &sig, &sig, &msg, &tree, &[&s, &l])?;
            log::info!("{name}: merged with the server ({merged})");
            Ok(merged)
        })
    }
}
