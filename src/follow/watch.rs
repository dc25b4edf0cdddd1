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
use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use git2::Oid;

use crate::store::repo::Head;
use crate::view::CommitFs;

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

impl CommitFs {
    /// Reads every branch, tag and HEAD.
    pub fn ref_state(&self) -> crate::error::FsResult<RefState> {
        let head = match self.repo.head()? {
            Head::Branch(b) => Some(b),
            Head::Detached(o) => Some(o.as_bytes().to_vec()),
            Head::Unborn => None,
        };
        Ok(RefState {
            branches: self.repo.refs("refs/heads/")?.into_iter().collect(),
            tags: self.repo.refs("refs/tags/")?.into_iter().collect(),
            head,
        })
    }
}

/// The watcher thread: never returns.
pub fn run(fs: Arc<CommitFs>) {
    let git_dir = fs.repo.git_dir().to_path_buf();
    let mut inotify = Inotify::new(&git_dir);
    if inotify.is_none() {
        log::info!(
            "no inotify for {}: reading the refs every second",
            git_dir.display()
        );
    }
    let mut known = fs.ref_state().unwrap_or_default();
    loop {
        match &mut inotify {
            Some(i) => i.wait(POLL),
            None => std::thread::sleep(POLL),
        }
        let now = match fs.ref_state() {
            Ok(s) => s,
            Err(e) => {
                // A ref being rewritten, or a damaged repository: the next read.
                log::debug!("reading the refs: {e}");
                continue;
            }
        };
        if now != known && fs.refs_changed(&known, &now) {
            known = now;
        }
    }
}

struct Inotify {
    fd: OwnedFd,
    refs: PathBuf,
}

const MASK: u32 = libc::IN_CLOSE_WRITE
    | libc::IN_MOVED_TO
    | libc::IN_MOVED_FROM
    | libc::IN_CREATE
    | libc::IN_DELETE;

impl Inotify {
    fn new(git_dir: &Path) -> Option<Inotify> {
        // SAFETY: plain syscall; the result is checked.
        let fd = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
        if fd < 0 {
            return None;
        }
        // SAFETY: fd is a new descriptor owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let i = Inotify {
            fd,
            refs: git_dir.join("refs"),
        };
        if !i.add(git_dir) {
            return None;
        }
        i.add_tree(&i.refs);
        Some(i)
    }

    fn add(&self, dir: &Path) -> bool {
        let Ok(c) = CString::new(dir.as_os_str().as_bytes()) else {
            return false;
        };
        // SAFETY: c is a valid C string; fd is open.
        unsafe { libc::inotify_add_watch(self.fd.as_raw_fd(), c.as_ptr(), MASK) >= 0 }
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
        let mut p = libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: p is one valid pollfd.
        let n = unsafe { libc::poll(&mut p, 1, timeout.as_millis() as i32) };
        if n <= 0 {
            return;
        }
        std::thread::sleep(COALESCE);
        let mut new_dirs = false;
        let mut buf = [0u8; 8192];
        loop {
            // SAFETY: buf is writable for its length.
            let got =
                unsafe { libc::read(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            if got <= 0 {
                break;
            }
            let mut off = 0usize;
            let header = std::mem::size_of::<libc::inotify_event>();
            while off + header <= got as usize {
                // SAFETY: the kernel wrote whole events; read_unaligned copes with
                // the buffer's alignment.
                let ev: libc::inotify_event =
                    unsafe { std::ptr::read_unaligned(buf.as_ptr().add(off).cast()) };
                if ev.mask & libc::IN_Q_OVERFLOW != 0
                    || (ev.mask & libc::IN_ISDIR != 0
                        && ev.mask & (libc::IN_CREATE | libc::IN_MOVED_TO) != 0)
                {
                    new_dirs = true;
                }
                off += header + ev.len as usize;
            }
        }
        if new_dirs {
            self.add_tree(&self.refs.clone());
        }
    }
}
