//! Plain data every layer shares: the mount's configuration, timestamps, and
//! what a setattr asks for. Nothing here does I/O or holds a lock.

use std::path::PathBuf;
use std::time::Duration;

/// What to mount at the root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RootSpec {
    /// Every branch as a directory, `.tags/`, `.commits/`, `HEAD`.
    Whole,
    /// One ref or revision as the root.
    Ref(String),
}

#[derive(Debug, Clone)]
pub struct FsConfig {
    pub root: RootSpec,
    pub read_only: bool,
    pub uid: u32,
    pub gid: u32,
    pub cache_size: usize,
    pub spill_dir: PathBuf,
    /// "Name <email>" for commits; else the repository's user.name/user.email.
    pub author: Option<String>,
    /// How long after the last change a branch is committed.
    pub settle: Duration,
    /// The Git server to sync with (`--remote`): a remote's name or a URL.
    pub remote: Option<String>,
    /// How often to fetch from it (`--fetch-interval`).
    pub fetch_interval: Duration,
    /// How long the push at unmount and SIGTERM may take at most
    /// (`--push-on-exit-timeout`; zero: no push then).
    pub push_on_exit: Duration,
    /// More scratch patterns (`--scratch`).
    pub scratch: Vec<String>,
    /// Whether the default scratch patterns apply (`--no-default-scratch`).
    pub default_scratch: bool,
    /// Whether untracked paths that the branch's `.gitignore` files,
    /// `info/exclude` and `core.excludesFile` ignore are left out of commits
    /// (`--no-gitignore` turns it off).
    pub gitignore: bool,
}

/// Editor swap, backup, lock and probe files: never committed.
pub const DEFAULT_SCRATCH: &[&str] = &[
    ".*.sw[a-p]",
    ".*.sw[a-p]x",
    "*~",
    ".#*",
    "#*#",
    "4913",
    ".~lock.*#",
    "*.kate-swp",
    ".*.kate-swp",
    ".goutputstream-*",
    ".nfs*",
    "*-journal",
    "*-wal",
    "*-shm",
];

/// Seconds since the epoch, now.
pub fn now_secs() -> i64 {
    Ts::now().secs
}

/// A point in time: seconds since the epoch and nanoseconds.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Ts {
    pub secs: i64,
    pub nsec: u32,
}

impl Ts {
    pub fn now() -> Ts {
        Ts::of(std::time::SystemTime::now())
    }

    pub fn from_secs(secs: i64) -> Ts {
        Ts { secs, nsec: 0 }
    }

    pub fn of(t: std::time::SystemTime) -> Ts {
        match t.duration_since(std::time::UNIX_EPOCH) {
            Ok(d) => Ts {
                secs: d.as_secs() as i64,
                nsec: d.subsec_nanos(),
            },
            Err(e) => {
                // Before the epoch: round down to whole seconds and count up.
                let d = e.duration();
                let (mut secs, mut nsec) = (-(d.as_secs() as i64), d.subsec_nanos());
                if nsec > 0 {
                    secs -= 1;
                    nsec = 1_000_000_000 - nsec;
                }
                Ts { secs, nsec }
            }
        }
    }

    pub fn to_system(self) -> std::time::SystemTime {
        let base = if self.secs >= 0 {
            std::time::UNIX_EPOCH + std::time::Duration::from_secs(self.secs as u64)
        } else {
            std::time::UNIX_EPOCH - std::time::Duration::from_secs(self.secs.unsigned_abs())
        };
        base + std::time::Duration::from_nanos(u64::from(self.nsec))
    }
}

impl Default for FsConfig {
    fn default() -> Self {
        FsConfig {
            root: RootSpec::Whole,
            read_only: false,
            uid: nix::unistd::getuid().as_raw(),
            gid: nix::unistd::getgid().as_raw(),
            cache_size: 256 << 20,
            spill_dir: default_spill_dir(),
            author: None,
            settle: Duration::from_millis(200),
            remote: None,
            fetch_interval: Duration::from_secs(5),
            push_on_exit: Duration::from_secs(10),
            scratch: Vec::new(),
            default_scratch: true,
            gitignore: true,
        }
    }
}

/// `$TMPDIR`, else `/var/tmp` (disk-backed by convention, unlike `/tmp`).
pub fn default_spill_dir() -> PathBuf {
    match std::env::var_os("TMPDIR") {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => PathBuf::from("/var/tmp"),
    }
}

/// What a setattr asks for.
#[derive(Debug, Default, Clone, Copy)]
pub struct SetAttr {
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub size: Option<u64>,
    pub atime: Option<Ts>,
    pub mtime: Option<Ts>,
}

/// rename(2)'s flags, as the kernel passes them.
pub const RENAME_NOREPLACE: u32 = 1;
pub const RENAME_EXCHANGE: u32 = 2;
