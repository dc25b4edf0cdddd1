//! Watching the refs, so that moves made by anyone else (a `git push` into the
//! repository, a commit in a work tree beside it, another mount) show in the
//! mount within a second.
//!
//! inotify watches the git directory (`HEAD`, `packed-refs`) and every
//! directory below `refs/`; each burst of events (git writes a `.lock` file and
//! renames it) leads to one read of all refs, compared with the last one. A read
//! also happens every second whatever inotify says, which covers filesystems
//! without inotify, a full event queue, and directories made between a read and
//! their watch.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::store::Oid;
use inotify::{EventMask, WatchMask};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use std::os::fd::AsFd;

use crate::store::repo::{Head, Repo};

/// The longest a ref move goes unseen.
const POLL: Duration = Duration::from_secs(1);
/// After the first event, more of the same git operation are awaited this long.
const COALESCE: Duration = Duration::from_millis(20);

/// What the refs were at one read.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RefState {
    /// Branch name (below refs/heads/) -> commit.
    pub branches: BTreeMap<Vec<u8>, Oid>,
    /// Tag name (below refs/tags/) -> target.
    pub tags: BTreeMap<Vec<u8>, Oid>,
    /// Where HEAD points (a branch name, or a commit when detached).
    pub head: Option<Vec<u8>>,
}

/// Reads every branch, tag and HEAD.
pub fn ref_state(repo: &Repo) -> crate::error::FsResult<RefState> {
    let head = match repo.head()? {
        Head::Branch(b) => Some(b),
        Head::Detached(o) => Some(o.as_bytes().to_vec()),
        Head::Unborn => None,
    };
    Ok(RefState {
        branches: repo.refs("refs/heads/")?.into_iter().collect(),
        tags: repo.refs("refs/tags/")?.into_iter().collect(),
        head,
    })
}

/// The watcher thread: never returns. `moved` is told each change of the
/// refs, and says whether it followed it all (if not, the same change is
/// reported again at the next read).
pub fn run(repo: &Repo, moved: &dyn Fn(&RefState, &RefState) -> bool) {
    let git_dir = repo.git_dir().to_path_buf();
    let mut inotify = Inotify::new(&git_dir);
    if inotify.is_none() {
        log::info!(
            "no inotify for {}: reading the refs every second",
            git_dir.display()
        );
    }
    let mut known = ref_state(repo).unwrap_or_default();
    loop {
        match &mut inotify {
            Some(i) => i.wait(POLL),
            None => std::thread::sleep(POLL),
        }
        let now = match ref_state(repo) {
            Ok(s) => s,
            Err(e) => {
                // A ref being rewritten, or a damaged repository: the next read.
                log::debug!("reading the refs: {e}");
                continue;
            }
        };
        if now != known && moved(&known, &now) {
            known = now;
        }
    }
}

/// inotify, through the `inotify` crate, on the git directory and every
/// directory below `refs/`.
struct Inotify {
    inotify: inotify::Inotify,
    refs: PathBuf,
}

const MASK: WatchMask = WatchMask::CLOSE_WRITE
    .union(WatchMask::MOVED_TO)
    .union(WatchMask::MOVED_FROM)
    .union(WatchMask::CREATE)
    .union(WatchMask::DELETE);

impl Inotify {
    fn new(git_dir: &Path) -> Option<Inotify> {
        let i = Inotify {
            inotify: inotify::Inotify::init().ok()?,
            refs: git_dir.join("refs"),
        };
        if !i.add(git_dir) {
            return None;
        }
        i.add_tree(&i.refs);
        Some(i)
    }

    fn add(&self, dir: &Path) -> bool {
        self.inotify.watches().add(dir, MASK).is_ok()
    }

    /// Watches `dir` and every directory below it (adding a watch twice is
    /// harmless: inotify keeps one).
    fn add_tree(&self, dir: &Path) {
        if !self.add(dir) {
            return;
        }
        if let Ok(rd) = std::fs::read_dir(dir) {
            for e in rd.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    self.add_tree(&e.path());
                }
            }
        }
    }

    /// Returns after a burst of events, or after `timeout`.
    fn wait(&mut self, timeout: Duration) {
        let ready = {
            let mut fds = [PollFd::new(self.inotify.as_fd(), PollFlags::POLLIN)];
            let t = PollTimeout::try_from(timeout).unwrap_or(PollTimeout::MAX);
            // EINTR and the like: as if the timeout passed (the caller reads
            // the refs either way).
            poll(&mut fds, t).unwrap_or(0)
        };
        if ready == 0 {
            return;
        }
        std::thread::sleep(COALESCE);
        let mut new_dirs = false;
        let mut buf = [0u8; 8192];
        // The descriptor is non-blocking: read until nothing is left.
        while let Ok(events) = self.inotify.read_events(&mut buf) {
            let mut any = false;
            for ev in events {
                any = true;
                if ev.mask.contains(EventMask::Q_OVERFLOW)
                    || (ev.mask.contains(EventMask::ISDIR)
                        && ev.mask.intersects(EventMask::CREATE | EventMask::MOVED_TO))
                {
                    new_dirs = true;
                }
            }
            if !any {
                break;
            }
        }
        if new_dirs {
            self.add_tree(&self.refs.clone());
        }
    }
}
