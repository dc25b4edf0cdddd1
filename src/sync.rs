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

/// What the sync thread did last (for `commitfs status`). Each failure is
/// kept until the thing that failed succeeds: a fetch's by the next fetch,
/// a merge's by the next round that merges all it must, a push's by the
/// next push the server takes whole (or a round with nothing to push).
#[derive(Default)]
pub struct SyncState {
    pub last_fetch: Option<Instant>,
    /// The last push the server took whole (every ref pushed landed).
    pub last_push: Option<Instant>,
    pub fetch_error: Option<(Instant, String)>,
    pub merge_error: Option<(Instant, String)>,
    /// The last push that failed; `refused` when the server refused it (its
    /// message is in the text).
    pub push_error: Option<(Instant, String)>,
    pub push_refused: bool,
    /// A round that failed otherwise (reading refs, a merge step), until a
    /// round succeeds.
    pub round_error: Option<(Instant, String)>,
    /// When the next round runs at the latest (the backoff).
    pub next_round: Option<Instant>,
    /// Rounds done (each ended, whatever its outcome).
    pub rounds: u64,
    /// A commit was made: push soon.
    pub kick: bool,
}

impl SyncState {
    /// The newest failure that still stands.
    pub fn last_error(&self) -> Option<&(Instant, String)> {
        [
            &self.fetch_error,
            &self.merge_error,
            &self.push_error,
            &self.round_error,
        ]
        .into_iter()
        .flatten()
        .max_by_key(|(t, _)| *t)
    }
}

/// How long the sync thread waits before its next round, from how the last
/// one ended: a full round waits the interval; a refused push is retried
/// soon, a few times in a row (another machine's push usually won the race),
/// then backs off; any other failure (the server unreachable) backs off,
/// doubling up to a minute, and is not counted as a refusal, so that the
/// first refusal after an outage is retried soon too.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    pub wait: Duration,
    pub refusals: u32,
}

/// How a round ended, for [`Backoff::after`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Done,
    Refused,
    Failed,
}

impl Backoff {
    pub fn after(self, outcome: Outcome, interval: Duration, jitter: Duration) -> Backoff {
        let longer = (self.wait * 2).clamp(interval, MAX_BACKOFF.max(interval));
        match outcome {
            Outcome::Done => Backoff {
                wait: interval,
                refusals: 0,
            },
            Outcome::Refused if self.refusals < QUICK_RETRIES => Backoff {
                wait: interval.min(Duration::from_millis(50) + jitter),
                refusals: self.refusals + 1,
            },
            Outcome::Refused => Backoff {
                wait: longer,
                refusals: self.refusals.saturating_add(1),
            },
            Outcome::Failed => Backoff {
                wait: longer,
                refusals: 0,
            },
        }
    }
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
        let mut b = Backoff {
            wait: Duration::ZERO,
            refusals: 0,
        };
        loop {
            {
                let mut st = self.state.lock();
                if !st.kick && !b.wait.is_zero() {
                    self.wake.wait_for(&mut st, b.wait);
                }
                st.kick = false;
            }
            let started = Instant::now();
            let result = round.sync_once(remote);
            {
                // A failure the round did not record as a fetch's, merge's
                // or push's still shows.
                let mut st = self.state.lock();
                match &result {
                    Ok(()) => st.round_error = None,
                    Err(Failure::Refused(m) | Failure::Other(m)) => {
                        if st.last_error().is_none_or(|(t, _)| *t < started) {
                            st.round_error = Some((Instant::now(), m.clone()));
                        }
                    }
                }
            }
            let outcome = match result {
                Ok(()) => Outcome::Done,
                Err(Failure::Refused(msg)) => {
                    // The server moved between our fetch and push (another
                    // machine pushed, or holds the ref's lock): fetched and
                    // merged again soon, a random while later so that two
                    // machines do not keep colliding; or a hook said no.
                    if b.refusals < QUICK_RETRIES {
                        log::info!("sync with {shown}: {msg}; fetching again");
                    } else {
                        log::warn!("sync with {shown}: {msg}");
                    }
                    Outcome::Refused
                }
                Err(Failure::Other(msg)) => {
                    log::warn!("sync with {shown}: {msg}");
                    Outcome::Failed
                }
            };
            b = b.after(outcome, interval, crate::commit::jitter(300));
            let mut st = self.state.lock();
            st.next_round = Some(Instant::now() + b.wait);
            st.rounds += 1;
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

/// The local branches the server lacks or is behind on, as last fetched
/// (one the server had and deleted stays unpushed), with their tips.
pub fn pushable(repo: &Repo) -> StoreResult<Vec<(String, Oid)>> {
    let server = repo.refs(REMOTE_HEADS)?;
    let synced = repo.refs(SYNCED_HEADS)?;
    let find = |v: &[(Vec<u8>, Oid)], n: &[u8]| v.iter().find(|(k, _)| k == n).map(|(_, o)| *o);
    let mut to_push = Vec::new();
    for (name, l) in repo.refs("refs/heads/")? {
        let Ok(n) = std::str::from_utf8(&name) else {
            continue;
        };
        let ahead = match find(&server, &name) {
            None => find(&synced, &name).is_none(),
            Some(s) => s != l && repo.is_ancestor(s, l).unwrap_or(false),
        };
        if ahead {
            to_push.push((format!("refs/heads/{n}"), l));
        }
    }
    Ok(to_push)
}

/// What one push did.
#[derive(Default)]
struct Pushed {
    /// The branches (full ref names) the server took.
    landed: Vec<String>,
    /// Refusals, each with the server's reason and message.
    refused: Vec<String>,
    /// The push failed as a whole (the server unreachable, credentials).
    failed: Option<String>,
}

/// Pushes exactly `to_push` (never forcing); what landed is remembered as
/// the server's, as a fetch would.
fn push(repo: &Repo, remote: &str, to_push: &[(String, Oid)]) -> Pushed {
    let mut out = Pushed::default();
    if to_push.is_empty() {
        return out;
    }
    match repo.push_remote(remote, to_push) {
        Err(StoreError::Refused(msg)) => out.refused.push(msg),
        Err(e) => out.failed = Some(e.to_string()),
        Ok(results) => {
            for p in &results {
                let Some((_, oid)) = to_push.iter().find(|(n, _)| *n == p.refname) else {
                    continue;
                };
                match &p.rejected {
                    None => {
                        let short = &p.refname["refs/heads/".len()..];
                        let _ = repo.cas_ref_force(&format!("{REMOTE_HEADS}{short}"), *oid);
                        let _ = repo.cas_ref_force(&format!("{SYNCED_HEADS}{short}"), *oid);
                        out.landed.push(p.refname.clone());
                    }
                    Some(why) => out.refused.push(format!("{} ({why})", p.refname)),
                }
            }
        }
    }
    out
}

/// Pushes `to_push` (see [`pushable`]) at exit (unmount, SIGTERM): what it
/// left on this machine only, one line per branch and why, empty when
/// everything committed is on the server.
pub fn push_committed(repo: &Repo, remote: &str, to_push: &[(String, Oid)]) -> Vec<String> {
    let p = push(repo, remote, to_push);
    let mut left = Vec::new();
    for (name, tip) in to_push {
        if p.landed.contains(name) {
            continue;
        }
        let short = &name["refs/heads/".len()..];
        let server = repo
            .ref_target(format!("{REMOTE_HEADS}{short}").as_bytes())
            .ok()
            .flatten();
        let n = repo.count_ahead(*tip, server, 100_000).unwrap_or(0);
        let why = p
            .failed
            .clone()
            .or_else(|| {
                p.refused
                    .iter()
                    .find(|r| r.starts_with(name.as_str()))
                    .or(p.refused.first())
                    .cloned()
            })
            .unwrap_or_else(|| "the server did not take it".into());
        left.push(format!("{short} ({n} commit(s)): {why}"));
    }
    left
}

impl Round<'_> {
    /// One round: fetch, bring local branches up to date, push. A branch that
    /// fails is reported and the others go on.
    fn sync_once(&self, remote: &str) -> Result<(), Failure> {
        log::debug!("sync round");
        let other = |e: StoreError| Failure::Other(e.to_string());
        if let Err(e) = self.repo.fetch_remote(remote) {
            self.sync.state.lock().fetch_error = Some((Instant::now(), e.to_string()));
            return Err(Failure::Other(e.to_string()));
        }
        {
            let mut st = self.sync.state.lock();
            st.last_fetch = Some(Instant::now());
            st.fetch_error = None;
        }
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
        let to_push = pushable(self.repo).map_err(other)?;
        let Pushed {
            refused,
            failed: push_failed,
            landed,
        } = push(self.repo, remote, &to_push);
        let now = Instant::now();
        let refused =
            (!refused.is_empty()).then(|| format!("push refused for {}", refused.join(", ")));
        {
            let mut st = self.sync.state.lock();
            st.merge_error = (!failed.is_empty()).then(|| (now, failed.join("; ")));
            match (&push_failed, &refused) {
                (Some(e), _) | (None, Some(e)) => {
                    st.push_error = Some((now, e.clone()));
                    st.push_refused = push_failed.is_none();
                }
                (None, None) => {
                    // Taken whole: every ref pushed landed (one the server
                    // did not report on is tried again next round).
                    if !to_push.is_empty() && landed.len() == to_push.len() {
                        st.last_push = Some(now);
                    }
                    st.push_error = None;
                    st.push_refused = false;
                }
            }
        }
        if let Some(e) = push_failed {
            failed.push(e);
        }
        if !failed.is_empty() {
            return Err(Failure::Other(failed.join("; ")));
        }
        if let Some(r) = refused {
            return Err(Failure::Refused(r));
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Refusals are retried soon a few times, then back off; an outage
    /// backs off without counting as refusals, so that the first refusal
    /// after it is retried soon again; a full round waits the interval.
    #[test]
    fn the_first_refusal_after_an_outage_is_retried_soon() {
        let i = Duration::from_millis(500);
        let j = Duration::from_millis(100);
        let start = Backoff {
            wait: Duration::ZERO,
            refusals: 0,
        };
        let mut b = start;
        for _ in 0..QUICK_RETRIES {
            b = b.after(Outcome::Refused, i, j);
            assert_eq!(b.wait, Duration::from_millis(150));
        }
        b = b.after(Outcome::Refused, i, j);
        assert_eq!(b.wait, i, "past the quick retries, the backoff");
        // An outage: backs off, doubling, to at most a minute.
        for _ in 0..20 {
            b = b.after(Outcome::Failed, i, j);
        }
        assert_eq!(b.wait, MAX_BACKOFF);
        assert_eq!(b.refusals, 0, "the outage's failures are not refusals");
        b = b.after(Outcome::Refused, i, j);
        assert_eq!(b.wait, Duration::from_millis(150), "retried soon");
        assert_eq!(
            b.after(Outcome::Done, i, j),
            Backoff {
                wait: i,
                refusals: 0
            }
        );
    }
}
