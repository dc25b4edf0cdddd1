//! What `commitfs status` reports of a mount: per branch, the requests
//! served, the inode table, the cache, the remote (`daemon/control.rs`
//! serves it on the mount's socket and prints it).

use serde::Serialize;

use crate::view::CommitFs;
use crate::view::requests::RequestCounts;

#[derive(Debug, Serialize)]
pub struct Status {
    pub mountpoint: String,
    pub repository: String,
    pub pid: u32,
    /// The ref or revision a `--ref` mount shows at its root (`null`: the
    /// whole repository), and the commit it shows.
    pub mounted_ref: Option<String>,
    pub mounted_commit: Option<String>,
    /// The branches the mount shows: every branch, or on a `--ref` mount of
    /// a branch that one (none for a tag or a commit).
    pub branches: Vec<BranchStatus>,
    pub cache: CacheStatus,
    /// FUSE requests served since mounting, by kind.
    pub requests: RequestCounts,
    /// Paths with a node in memory, and paths the kernel forgot, kept only
    /// as their place so that they keep their numbers.
    pub inodes: u64,
    pub forgotten_paths: u64,
    /// Of the forgotten paths, those kept on disk (beyond the most recent
    /// ones kept in memory).
    #[serde(default)]
    pub forgotten_on_disk: u64,
    /// The Git server this mount syncs with (`--remote`), if any.
    pub remote: Option<RemoteStatus>,
}

#[derive(Debug, Serialize)]
pub struct RemoteStatus {
    /// The remote's name or URL, without any user or password.
    pub url: String,
    /// Seconds since the last successful fetch, and since the last push the
    /// server took whole (`null`: none yet).
    pub last_fetch_age: Option<f64>,
    pub last_push_age: Option<f64>,
    /// The newest failure to sync that still stands (a fetch's until a fetch
    /// succeeds, a push's until a push does), and its age.
    pub last_error: Option<String>,
    pub last_error_age: Option<f64>,
    /// The server refused the last push: why, with what the server said
    /// (its hooks' messages), and how long ago.
    pub push_refused: Option<String>,
    pub push_refused_age: Option<f64>,
    /// Seconds until the next round at the latest (a commit starts one
    /// sooner).
    pub next_round_in: Option<f64>,
    /// Rounds done since mounting (each a fetch, merges and a push, done or
    /// failed).
    pub rounds: u64,
}

#[derive(Debug, Serialize)]
pub struct BranchStatus {
    pub name: String,
    /// The commit the branch points to.
    pub tip: Option<String>,
    /// The commit whose tree the mount shows for it (this mount's last
    /// commit, or another writer's move once followed and the kernel told),
    /// for a branch this mount has written to.
    pub shown: Option<String>,
    /// This mount has changes in the branch that are not committed yet.
    pub uncommitted: bool,
    /// For how long, in seconds.
    pub uncommitted_for: Option<f64>,
    /// Past the settle cap, the commit waits only for a large file still
    /// being written to stop changing.
    #[serde(default)]
    pub held_by_large_write: bool,
    /// Past the settle cap, the commit waits for a file being made (a
    /// temporary, a copy) to stop changing, at most 10 s more.
    #[serde(default)]
    pub held_by_new_file: bool,
    /// The last commit this mount made on the branch, and its message's first line.
    pub last_commit: Option<String>,
    pub last_commit_message: Option<String>,
    /// Seconds since that commit.
    pub last_commit_age: Option<f64>,
    /// The last failure to commit (cleared by the next commit), and its age in seconds.
    pub last_error: Option<String>,
    pub last_error_age: Option<f64>,
    /// Commits the server does not have yet (with --remote).
    pub unpushed: Option<u64>,
    /// After a failed commit: seconds until the committer tries again.
    #[serde(default)]
    pub retry_in: Option<f64>,
}

#[derive(Debug, Serialize)]
pub struct CacheStatus {
    pub hits: u64,
    pub misses: u64,
    pub hit_rate: Option<f64>,
    pub bytes: usize,
    pub capacity: usize,
}

impl CommitFs {
    /// What `commitfs status` shows (see `daemon/control.rs`). Takes only short locks,
    /// never a branch's commit lock, so that it answers while commits run.
    pub fn status(&self, mnt: &std::path::Path, repo: &std::path::Path) -> Status {
        let now = std::time::Instant::now();
        let tips: Vec<(Vec<u8>, crate::store::Oid)> =
            self.repo.refs("refs/heads/").unwrap_or_default();
        let written = self.committer.all();
        let mut names: Vec<Vec<u8>> = tips.iter().map(|(n, _)| n.clone()).collect();
        for b in &written {
            let n = b.name().to_vec();
            if !names.contains(&n) {
                names.push(n);
            }
        }
        names.sort();
        // A --ref mount shows one ref: its branch, if it is one, and no other.
        let (mounted_ref, mounted_commit) = match &self.config().root {
            crate::model::RootSpec::Whole => (None, None),
            crate::model::RootSpec::Ref(r) => {
                let snap = self
                    .inodes
                    .read()
                    .get(crate::inodes::ROOT)
                    .and_then(|n| n.kind.snap().cloned());
                let branch = match snap.as_ref().map(|s| &s.source) {
                    Some(crate::inodes::SnapSource::Branch(b)) => Some(b.to_vec()),
                    _ => None,
                };
                names.retain(|n| Some(n) == branch.as_ref());
                (
                    Some(r.clone()),
                    snap.and_then(|s| s.snapshot.commit).map(|c| c.to_string()),
                )
            }
        };
        let branches = names
            .into_iter()
            .map(|name| {
                let tip = tips
                    .iter()
                    .find(|(n, _)| *n == name)
                    .map(|(_, o)| o.to_string());
                let b = written.iter().find(|b| *b.name() == *name);
                let mut s = BranchStatus {
                    name: String::from_utf8_lossy(&name).into_owned(),
                    tip,
                    shown: None,
                    uncommitted: false,
                    uncommitted_for: None,
                    held_by_large_write: false,
                    held_by_new_file: false,
                    last_commit: None,
                    last_commit_message: None,
                    last_commit_age: None,
                    last_error: None,
                    last_error_age: None,
                    unpushed: None,
                    retry_in: None,
                };
                if self.config().remote.is_some()
                    && let Some(t) = tips.iter().find(|(n, _)| *n == name).map(|(_, o)| *o)
                {
                    let full = [crate::store::repo::REMOTE_HEADS.as_bytes(), &name].concat();
                    let server = self.repo.ref_target(&full).ok().flatten();
                    s.unpushed = self
                        .repo
                        .count_ahead(t, server, 100_000)
                        .ok()
                        .map(|n| n as u64);
                }
                if let Some(b) = b {
                    let r = self.committer.report(b, now);
                    s.shown = r.shown.map(|c| c.to_string());
                    s.uncommitted = r.uncommitted;
                    s.uncommitted_for = r.uncommitted_for.map(|d| d.as_secs_f64());
                    s.held_by_large_write = r.held_by_large_write;
                    s.held_by_new_file = r.held_by_new_file;
                    s.retry_in = r.retry_in.map(|d| d.as_secs_f64());
                    if let Some((c, age, m)) = r.last_commit {
                        s.last_commit = Some(c.to_string());
                        s.last_commit_message = Some(m);
                        s.last_commit_age = Some(age.as_secs_f64());
                    }
                    if let Some((e, age)) = r.last_error {
                        s.last_error = Some(e);
                        s.last_error_age = Some(age.as_secs_f64());
                    }
                }
                s
            })
            .collect();
        let (hits, misses, bytes, capacity) = self.blobs.stats();
        let paths = self.inode_counts();
        Status {
            mountpoint: mnt.display().to_string(),
            repository: repo.display().to_string(),
            pid: std::process::id(),
            mounted_ref,
            mounted_commit,
            branches,
            requests: self.requests.counts(),
            inodes: paths.0 as u64,
            forgotten_paths: paths.1 as u64,
            forgotten_on_disk: paths.2 as u64,
            cache: CacheStatus {
                hits,
                misses,
                hit_rate: (hits + misses > 0).then(|| hits as f64 / (hits + misses) as f64),
                bytes,
                capacity,
            },
            remote: self.config().remote.as_ref().map(|r| {
                let st = self.sync.state.lock();
                let age =
                    |t: Option<std::time::Instant>| t.map(|t| now.duration_since(t).as_secs_f64());
                let refused = st.push_error.as_ref().filter(|_| st.push_refused);
                RemoteStatus {
                    url: crate::store::repo::redact_url(r),
                    last_fetch_age: age(st.last_fetch),
                    last_push_age: age(st.last_push),
                    last_error: st.last_error().map(|(_, e)| e.clone()),
                    last_error_age: age(st.last_error().map(|(t, _)| *t)),
                    push_refused: refused.map(|(_, e)| e.clone()),
                    push_refused_age: age(refused.map(|(t, _)| *t)),
                    rounds: st.rounds,
                    next_round_in: st
                        .next_round
                        .map(|t| t.saturating_duration_since(now).as_secs_f64()),
                }
            }),
        }
    }
}
