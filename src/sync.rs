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
//!    like any other writer's move (see `follow/mod.rs`);
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

use crate::store::Oid;
use parking_lot::{Condvar, Mutex};

use crate::commit::Committer;
use crate::error::FsResult;
use crate::store::error::{StoreError, StoreResult};
use crate::store::repo::Repo;
use crate::store::repo::{REMOTE_HEADS, REMOTE_TAGS, redact_url};

/// Where a branch's (and tag's) last agreed state with the server is kept: a
/// branch that has an entry here and is gone locally was deleted here; one
/// gone from the server was deleted there. Neither deletion is undone.
const SYNCED_HEADS: &str = "refs/commitfs/synced/heads/";
const SYNCED_TAGS: &str = "refs/commitfs/synced/tags/";

/// Why a round did not finish.
pub enum Failure {
    /// The server refused a push (it moved meanwhile, or a hook said no).
    Refused(String),
    /// Anything else: unreachable, bad credentials, a merge that failed.
    Other(String),
}

/// Whether a compare-and-swap of a ref moved it (false: another writer
/// moved it first, which the next round sees).
fn moved(r: StoreResult<()>) -> FsResult<bool> {
    match r {
        Ok(()) => Ok(true),
        Err(StoreError::CasLost(_)) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Refused pushes retried soon (a refusal is usually another machine's push
/// winning the race); more in a row take the usual backoff.
const QUICK_RETRIES: u32 = 5;

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

impl Sync {
    /// The sync thread's loop, with `remote` every `interval` and soon after
    /// each commit: never returns.
    pub fn run(&self, repo: &Repo, committer: &Committer, remote: &str, interval: Duration) {
        let round = Round {
            sync: self,
            repo,
            committer,
        };
        let shown = redact_url(remote);
        let mut wait = Duration::ZERO;
        let mut refusals = 0u32;
        loop {
            {
                let mut st = self.state.lock();
                if !st.kick && !wait.is_zero() {
                    self.wake.wait_for(&mut st, wait);
                }
                st.kick = false;
            }
            match round.sync_once(remote) {
                Ok(()) => {
                    refusals = 0;
                    wait = interval;
                }
                Err(Failure::Refused(msg)) if refusals < QUICK_RETRIES => {
                    // The server moved between our fetch and push (another
                    // machine pushed, or holds the ref's lock): fetch and merge
                    // again soon, a random while later so that two machines do
                    // not keep colliding; a few times, then the usual backoff.
                    refusals += 1;
                    log::info!("sync with {shown}: {msg}; fetching again");
                    self.state.lock().last_error = Some((Instant::now(), msg));
                    wait = interval.min(Duration::from_millis(50) + crate::commit::jitter(300));
                }
                Err(Failure::Refused(msg) | Failure::Other(msg)) => {
                    // Refused again (a hook, a protected branch) or failing:
                    // the usual backoff.
                    refusals = refusals.saturating_add(1);
                    log::warn!("sync with {shown}: {msg}");
                    self.state.lock().last_error = Some((Instant::now(), msg));
                    wait = (wait * 2).clamp(interval, MAX_BACKOFF.max(interval));
                }
            }
        }
    }
}

/// One round's view of the mount: the sync state, the repository, and the
/// committer (whose signature a merge carries).
struct Round<'a> {
    sync: &'a Sync,
    repo: &'a Repo,
    committer: &'a Committer,
}

impl Round<'_> {
    /// One round: fetch, bring local branches up to date, push. A branch that
    /// fails is reported and the others go on.
    fn sync_once(&self, remote: &str) -> Result<(), Failure> {
        log::debug!("sync round");
        let other = |e: StoreError| Failure::Other(e.to_string());
        self.repo
            .fetch_remote(remote)
            .map_err(|e| Failure::Other(e.to_string()))?;
        self.sync.state.lock().last_fetch = Some(Instant::now());
        let server: Vec<(Vec<u8>, Oid)> = self.repo.refs(REMOTE_HEADS).map_err(other)?;
        let local: Vec<(Vec<u8>, Oid)> = self.repo.refs("refs/heads/").map_err(other)?;
        let synced: Vec<(Vec<u8>, Oid)> = self.repo.refs(SYNCED_HEADS).map_err(other)?;
        let find = |v: &[(Vec<u8>, Oid)], n: &[u8]| v.iter().find(|(k, _)| k == n).map(|(_, o)| *o);
        let mut failed = Vec::new();
        for (name, s) in &server {
            let Ok(name_str) = std::str::from_utf8(name) else {
                continue;
            };
            if let Err(e) =
                self.bring_up_to_date(name_str, find(&local, name), *s, find(&synced, name))
            {
                failed.push(format!("{name_str}: {e}"));
            }
        }
        // Tags only the server has (and that were not deleted here).
        let local_tags = self.repo.refs("refs/tags/").map_err(other)?;
        let synced_tags = self.repo.refs(SYNCED_TAGS).map_err(other)?;
        for (name, t) in self.repo.refs(REMOTE_TAGS).map_err(other)? {
            let Ok(n) = std::str::from_utf8(&name) else {
                continue;
            };
            if find(&local_tags, &name).is_none() && find(&synced_tags, &name).is_none() {
                let made = self.repo.cas_ref(
                    &format!("refs/tags/{n}"),
                    None,
                    t,
                    "commitfs: tag from the server",
                );
                if made.is_ok() {
                    let _ = self.repo.cas_ref_force(&format!("{SYNCED_TAGS}{n}"), t);
                }
            } else if find(&local_tags, &name).is_some() && find(&synced_tags, &name) != Some(t) {
                let _ = self.repo.cas_ref_force(&format!("{SYNCED_TAGS}{n}"), t);
            }
        }
        // Push what the server lacks: a branch ahead of the server's, or one the
        // server never had (one it had and deleted stays unpushed).
        let local: Vec<(Vec<u8>, Oid)> = self.repo.refs("refs/heads/").map_err(other)?;
        let mut to_push = Vec::new();
        for (name, l) in &local {
            let Ok(n) = std::str::from_utf8(name) else {
                continue;
            };
            let ahead = match find(&server, name) {
                None => find(&synced, name).is_none(),
                Some(s) => s != *l && self.repo.is_ancestor(s, *l).unwrap_or(false),
            };
            if ahead {
                to_push.push((format!("refs/heads/{n}"), *l));
            }
        }
        let mut refused = Vec::new();
        if !to_push.is_empty() {
            // Exactly the commits checked above, not whatever the refs hold now.
            let specs: Vec<(String, Oid)> = to_push.clone();
            match self.repo.push_remote(remote, &specs) {
                Err(StoreError::Refused(msg)) => refused.push(msg),
                Err(e) => failed.push(e.to_string()),
                Ok(results) => {
                    self.sync.state.lock().last_push = Some(Instant::now());
                    for p in &results {
                        let Some((_, oid)) = to_push.iter().find(|(n, _)| *n == p.refname) else {
                            continue;
                        };
                        match &p.rejected {
                            None => {
                                // The server has it now: remember that, as a fetch would.
                                let short = &p.refname["refs/heads/".len()..];
                                let _ = self
                                    .repo
                                    .cas_ref_force(&format!("{REMOTE_HEADS}{short}"), *oid);
                                let _ = self
                                    .repo
                                    .cas_ref_force(&format!("{SYNCED_HEADS}{short}"), *oid);
                            }
                            Some(why) => refused.push(format!("{} ({why})", p.refname)),
                        }
                    }
                }
            }
        }
        if !failed.is_empty() {
            return Err(Failure::Other(failed.join("; ")));
        }
        if !refused.is_empty() {
            return Err(Failure::Refused(format!(
                "push refused for {}",
                refused.join(", ")
            )));
        }
        self.sync.state.lock().last_error = None;
        Ok(())
    }

    /// Brings local branch `name` (at `local`) up to date with the server's
    /// tip `server`. `was_synced`: where the branch last agreed with the
    /// server (if it ever did: then a missing local branch was deleted here,
    /// and stays so).
    fn bring_up_to_date(
        &self,
        name: &str,
        local: Option<Oid>,
        server: Oid,
        was_synced: Option<Oid>,
    ) -> FsResult<()> {
        let refname = format!("refs/heads/{name}");
        let synced = format!("{SYNCED_HEADS}{name}");
        match local {
            None if was_synced.is_some() => {} // deleted here
            None => {
                if moved(self.repo.cas_ref(
                    &refname,
                    None,
                    server,
                    "commitfs: branch from the server",
                ))? {
                    self.repo.cas_ref_force(&synced, server)?;
                }
            }
            // In sync: recorded once, not rewritten at every idle round.
            Some(l) if l == server => {
                if was_synced != Some(server) {
                    self.repo.cas_ref_force(&synced, server)?;
                }
            }
            Some(l) if self.repo.is_ancestor(l, server)? => {
                if moved(self.repo.cas_ref(
                    &refname,
                    Some(l),
                    server,
                    "commitfs: fast-forward to the server",
                ))? {
                    self.repo.cas_ref_force(&synced, server)?;
                }
            }
            Some(l) if self.repo.is_ancestor(server, l)? => {} // ahead: pushed below
            Some(l) => {
                // Its objects are kept until the ref names them (see
                // `Repo::release_packs`).
                let (merged, kept) =
                    self.repo
                        .merge_with_server(name, l, server, self.committer.author())?;
                #[cfg(debug_assertions)]
                crate::store::repo::test_gc_before_ref(self.repo.common_dir());
                let made =
                    self.repo
                        .cas_ref(&refname, Some(l), merged, "commitfs: merge with the server");
                self.repo.release_packs(kept);
                // Moved meanwhile: the next round merges again.
                moved(made)?;
            }
        }
        Ok(())
    }
}
