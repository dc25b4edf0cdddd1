//! Checks, detaching, mounting, signals and unmounting: everything between the
//! command line and the FUSE session.
//!
//! `commitfs mount` without `--foreground` checks everything it can (so that bad
//! input gets its one line on the terminal), then starts itself again as the
//! daemon, in a new session with its standard streams on /dev/null, and waits on a
//! pipe until the daemon says the mount answers (exit 0) or why it failed (exit 1).

pub mod cli;
pub mod control;
pub mod docs;
pub mod syslog;

use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;
use std::ffi::CString;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use nix::sys::signal::{SigSet, Signal};

use crate::daemon::cli::MountConfig;
use crate::fuse::FuseFs;
use crate::store::repo::Repo;
use crate::view::CommitFs;

/// The environment variable through which a detached daemon learns its ready pipe.
const READY_FD_ENV: &str = "COMMITFS_READY_FD";
/// FUSE worker threads.
const THREADS: usize = 8;
pub const FSTYPE: &str = "fuse.commitfs";

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// `commitfs mount`: returns once the mount answers (or, with `--foreground`, once
/// it is unmounted).
pub fn mount(mut cfg: MountConfig) -> Result<(), String> {
    make_absolute(&mut cfg)?;
    let ready = match std::env::var(READY_FD_ENV) {
        Ok(fd) => {
            // The detached daemon's command line names --remote without its
            // user and password (anyone may read a process's argv); the real
            // URL comes in the environment, which only its owner can read.
            if let Some(url) = std::env::var_os(REMOTE_ENV) {
                cfg.fs.remote = Some(url.to_string_lossy().into_owned());
            }
            let fd: i32 = fd
                .parse()
                .map_err(|_| format!("bad {READY_FD_ENV} '{fd}'"))?;
            // SAFETY: the parent passed this fd to us for exactly this purpose.
            Some(unsafe { File::from_raw_fd(fd) })
        }
        Err(_) => None,
    };
    let fs = match preflight(&cfg) {
        Ok(fs) => fs,
        Err(e) => {
            if let Some(mut r) = ready {
                let _ = writeln!(r, "{e}");
            }
            return Err(e);
        }
    };
    if cfg.foreground || ready.is_some() {
        return serve(&cfg, fs, ready);
    }
    drop(fs);
    detach(cfg.fs.remote.as_deref())
}

fn make_absolute(cfg: &mut MountConfig) -> Result<(), String> {
    let abs = |p: &Path| std::path::absolute(p).map_err(|e| format!("{}: {e}", p.display()));
    cfg.repo = abs(&cfg.repo)?;
    cfg.mountpoint = abs(&cfg.mountpoint)?;
    cfg.fs.spill_dir = abs(&cfg.fs.spill_dir)?;
    if let Some(l) = &cfg.log_file {
        cfg.log_file = Some(abs(l)?);
    }
    Ok(())
}

/// Everything that can be checked before mounting, each failure one sentence that
/// names the problem and the fix.
pub fn preflight(cfg: &MountConfig) -> Result<Arc<CommitFs>, String> {
    let repo = Repo::open(&cfg.repo).map_err(|e| e.to_string())?;
    check_mountpoint(&cfg.mountpoint)?;
    // Before "already mounted": `/` is always a mount point, and a mount
    // point above the repository is wrong whatever is mounted there.
    check_not_own_reader(&cfg.mountpoint, &used_dirs(cfg, &repo))?;
    check_not_mounted(&cfg.mountpoint)?;
    check_fuse()?;
    if !cfg.fs.spill_dir.is_dir() {
        return Err(format!(
            "spill directory {} does not exist: create it or give another with --spill-dir",
            cfg.fs.spill_dir.display()
        ));
    }
    if let Some(log) = &cfg.log_file {
        check_log_file(log)?;
    }
    if !cfg.fs.read_only {
        // `.keep` files of a daemon killed while it made a commit.
        crate::store::repo::clean_stale_keeps(&repo.common_dir().join("objects/pack"));
    }
    CommitFs::new(repo, cfg.fs.clone())
}

/// A directory the daemon reads or writes while it serves.
#[derive(Debug, Clone)]
pub struct UsedDir {
    /// How a refusal names it: `the repository`, `the spill directory`, ...
    pub what: &'static str,
    pub path: PathBuf,
    /// The daemon reads all over it (a repository, an objects directory), so
    /// a mount point inside it is refused too, not only one at or above it.
    pub whole_tree: bool,
    /// The end of the refusal: what to do instead.
    pub fix: &'static str,
}

/// How deep alternates of alternates are followed, as git and libgit2 do.
const ALTERNATES_DEPTH: usize = 5;
/// At most this many alternate object directories are looked at in all.
const ALTERNATES_MAX: usize = 64;
/// An `objects/info/alternates` file is read up to this many bytes.
const ALTERNATES_FILE_MAX: u64 = 64 << 10;

/// Every directory a mount of `repo` with `cfg` reads or writes while it
/// serves: the repository's git directory and common directory, the object
/// directories its alternates name (recursively, bounded), the spill
/// directory, the log file's directory and the control socket's.
pub fn used_dirs(cfg: &MountConfig, repo: &Repo) -> Vec<UsedDir> {
    const REPO_FIX: &str = "mount it beside the repository, neither above nor inside it";
    let mut dirs = vec![UsedDir {
        what: "the repository",
        path: repo.git_dir().to_path_buf(),
        whole_tree: true,
        fix: REPO_FIX,
    }];
    if normalize(repo.common_dir()) != normalize(repo.git_dir()) {
        dirs.push(UsedDir {
            what: "the repository's common directory",
            path: repo.common_dir().to_path_buf(),
            whole_tree: true,
            fix: REPO_FIX,
        });
    }
    for alt in alternates(&repo.common_dir().join("objects")) {
        dirs.push(UsedDir {
            what: "the alternate object directory",
            path: alt,
            whole_tree: true,
            fix: "mount it where it is neither above nor inside a directory the repository's objects/info/alternates names",
        });
    }
    dirs.push(UsedDir {
        what: "the spill directory",
        path: cfg.fs.spill_dir.clone(),
        whole_tree: false,
        fix: "give a --spill-dir outside the mount point",
    });
    if let Some(dir) = cfg.log_file.as_deref().and_then(Path::parent) {
        dirs.push(UsedDir {
            what: "the log file's directory",
            path: dir.to_path_buf(),
            whole_tree: false,
            fix: "give a --log-file outside the mount point",
        });
    }
    dirs.push(UsedDir {
        what: "the control socket directory",
        path: crate::daemon::control::own_socket_dir(),
        whole_tree: false,
        fix: "set XDG_RUNTIME_DIR to a directory outside the mount point",
    });
    dirs
}

/// The object directories that `objects` (an objects directory) borrows
/// from through `info/alternates`, and those they borrow from, to
/// [`ALTERNATES_DEPTH`] levels and at most [`ALTERNATES_MAX`] in all.
/// Relative entries are relative to the objects directory that names them.
fn alternates(objects: &Path) -> Vec<PathBuf> {
    let start = std::fs::canonicalize(objects).unwrap_or_else(|_| normalize(objects));
    let mut out: Vec<PathBuf> = Vec::new();
    let mut level = vec![start.clone()];
    for _ in 0..ALTERNATES_DEPTH {
        let mut next = Vec::new();
        for dir in &level {
            for entry in read_alternates(&dir.join("info/alternates")) {
                let p = normalize(&dir.join(entry));
                let key = std::fs::canonicalize(&p).unwrap_or_else(|_| p.clone());
                if out.len() >= ALTERNATES_MAX {
                    return out;
                }
                if out.contains(&key) || key == start {
                    continue;
                }
                out.push(key.clone());
                next.push(key);
            }
        }
        level = next;
    }
    out
}

/// The paths an alternates file names: one a line, `#` comments and blank
/// lines skipped, a line in double quotes unquoted as git does.
fn read_alternates(file: &Path) -> Vec<PathBuf> {
    use std::os::unix::ffi::OsStringExt;
    let Ok(f) = File::open(file) else {
        return Vec::new();
    };
    let mut text = Vec::new();
    if f.take(ALTERNATES_FILE_MAX).read_to_end(&mut text).is_err() {
        return Vec::new();
    }
    text.split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        .filter(|l| !l.is_empty() && !l.starts_with(b"#"))
        .map(|l| {
            let l = match l.strip_prefix(b"\"").and_then(|l| l.strip_suffix(b"\"")) {
                Some(q) => unquote_c(q),
                None => l.to_vec(),
            };
            PathBuf::from(std::ffi::OsString::from_vec(l))
        })
        .collect()
}

/// Undoes git's C-style quoting (`\n`, `\"`, `\\`, `\ooo`, ...).
fn unquote_c(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i] != b'\\' || i + 1 == s.len() {
            out.push(s[i]);
            i += 1;
            continue;
        }
        let c = s[i + 1];
        i += 2;
        match c {
            b'a' => out.push(7),
            b'b' => out.push(8),
            b'f' => out.push(12),
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            b't' => out.push(b'\t'),
            b'v' => out.push(11),
            b'0'..=b'3'
                if i + 1 < s.len()
                    && (b'0'..=b'7').contains(&s[i])
                    && (b'0'..=b'7').contains(&s[i + 1]) =>
            {
                out.push((c - b'0') * 64 + (s[i] - b'0') * 8 + (s[i + 1] - b'0'));
                i += 2;
            }
            other => out.push(other),
        }
    }
    out
}

/// `p` and each of its ancestors, each with its device and inode when it
/// can be looked at.
fn ancestry(p: &Path) -> Vec<(PathBuf, Option<(u64, u64)>)> {
    use std::os::unix::fs::MetadataExt;
    p.ancestors()
        .map(|a| {
            let id = std::fs::metadata(a).ok().map(|m| (m.dev(), m.ino()));
            (a.to_path_buf(), id)
        })
        .collect()
}

/// Refuses a mount point whose mount the daemon would read through itself
/// (and hang, and with it every process that touches the mount): one that
/// is one of `dirs`, or above one of them, or inside one that the daemon
/// reads all over (`whole_tree`). Both sides are compared after resolving
/// symlinks, and by device and inode too, so that a symlink or a bind mount
/// naming the same directory under another path is caught as well.
pub fn check_not_own_reader(mnt: &Path, dirs: &[UsedDir]) -> Result<(), String> {
    let real = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| normalize(p));
    let mnt_real = real(mnt);
    let mnt_up = ancestry(&mnt_real);
    let mnt_id = mnt_up.first().and_then(|(_, id)| *id);
    for d in dirs {
        let d_real = real(&d.path);
        let d_up = ancestry(&d_real);
        let d_id = d_up.first().and_then(|(_, id)| *id);
        let same = mnt_real == d_real || (mnt_id.is_some() && mnt_id == d_id);
        let above = !same
            && (d_real.starts_with(&mnt_real)
                || mnt_id.is_some_and(|m| d_up.iter().any(|(_, id)| *id == Some(m))));
        let inside = !same
            && !above
            && d.whole_tree
            && (mnt_real.starts_with(&d_real)
                || d_id.is_some_and(|di| mnt_up.iter().any(|(_, id)| *id == Some(di))));
        let relation = if same {
            "is"
        } else if above {
            "is above"
        } else if inside {
            "is inside"
        } else {
            continue;
        };
        let shown = |given: &Path, real: &Path| {
            let given = normalize(given);
            if given == real {
                given.display().to_string()
            } else {
                format!("{} (that is {})", given.display(), real.display())
            }
        };
        return Err(format!(
            "mount point {} {relation} {} {}: the daemon would read through its own mount and hang; {}",
            shown(mnt, &mnt_real),
            d.what,
            shown(&d.path, &d_real),
            d.fix
        ));
    }
    Ok(())
}

/// The log file can be opened for appending (it is created if need be), so
/// that a detached daemon does not log into nowhere.
fn check_log_file(log: &Path) -> Result<(), String> {
    let dir = log.parent().unwrap_or(Path::new("/"));
    match std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
    {
        Ok(_) => Ok(()),
        Err(e) => Err(match e.raw_os_error() {
            Some(libc::ENOENT) => format!(
                "the directory {} of the log file {} does not exist: create it (mkdir -p {}) or give another --log-file",
                dir.display(),
                log.display(),
                dir.display()
            ),
            Some(libc::ENOTDIR) => format!(
                "the directory {} of the log file {} is not a directory (a part of its path is a file): give a --log-file in a directory you can write",
                dir.display(),
                log.display()
            ),
            Some(libc::EISDIR) => format!(
                "the log file {} is a directory: give the path of a file",
                log.display()
            ),
            _ => format!(
                "cannot write the log file {} ({e}): give a --log-file in a directory you can write",
                log.display()
            ),
        }),
    }
}

fn check_mountpoint(mnt: &Path) -> Result<(), String> {
    clean_up_dead_mount(mnt)?;
    let md = std::fs::metadata(mnt).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => format!(
            "mount point {} does not exist: create it with mkdir -p {}",
            mnt.display(),
            mnt.display()
        ),
        _ => format!("mount point {}: {e}", mnt.display()),
    })?;
    if !md.is_dir() {
        return Err(format!(
            "mount point {} is not a directory: give an empty directory",
            mnt.display()
        ));
    }
    Ok(())
}

fn check_not_mounted(mnt: &Path) -> Result<(), String> {
    if let Some(m) = find_mount(mnt) {
        return Err(format!(
            "{} is already mounted ({} from {}): unmount it first",
            mnt.display(),
            m.fstype,
            m.source
        ));
    }
    Ok(())
}

/// A FUSE mount whose daemon died (kill -9, a crash) answers every access with
/// ENOTCONN until it is unmounted. Mounting over it would fail or stack on a
/// dead mount: it is unmounted first, with a note. What the dead daemon had not
/// committed is gone with it; what it committed, or fsync returned for, is in
/// the repository.
fn clean_up_dead_mount(mnt: &Path) -> Result<(), String> {
    // statfs always reaches the daemon (a stat may be answered from the
    // kernel's attribute cache even on a dead mount).
    if !matches!(
        nix::sys::statfs::statfs(mnt),
        Err(nix::errno::Errno::ENOTCONN)
    ) {
        return Ok(());
    }
    let abs = normalize(mnt);
    match find_mount(&abs) {
        Some(m) if m.fstype.starts_with("fuse") => {
            unmount_path(&abs, true)?;
            eprintln!(
                "commitfs: {} was a FUSE mount whose daemon had died ({} from {}); unmounted it",
                abs.display(),
                m.fstype,
                m.source
            );
            Ok(())
        }
        _ => Ok(()),
    }
}

fn check_fuse() -> Result<(), String> {
    if !Path::new("/dev/fuse").exists() {
        return Err(
            "/dev/fuse is missing: load the fuse module (modprobe fuse), or give the container the device (--device /dev/fuse)"
                .into(),
        );
    }
    if find_in_path("fusermount3").is_none() {
        return Err(
            "fusermount3 is not installed: install the fuse3 package (apt-get install fuse3)"
                .into(),
        );
    }
    Ok(())
}

/// Looks `name` up in `$PATH`; mount(8) may start us with no `PATH` at all, and
/// then the standard one is searched, as `execvp` and the shell do.
fn find_in_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")
        .unwrap_or_else(|| "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into());
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

pub struct MountInfo {
    pub source: String,
    pub fstype: String,
    /// The `user_id=` of a FUSE mount: the user who mounted it.
    pub user_id: Option<u32>,
}

/// `a/./b/../c/` -> `a/c`, without looking at the filesystem.
pub fn normalize(p: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// The mount whose mount point is `mnt`, from /proc/self/mountinfo.
pub fn find_mount(mnt: &Path) -> Option<MountInfo> {
    let mnt = std::fs::canonicalize(mnt).unwrap_or_else(|_| normalize(mnt));
    let text = std::fs::read("/proc/self/mountinfo").ok()?;
    let mut found = None;
    for line in text.split(|&b| b == b'\n') {
        let fields: Vec<&[u8]> = line.split(|&b| b == b' ').collect();
        let Some(dash) = fields.iter().position(|f| *f == b"-") else {
            continue;
        };
        if fields.len() < dash + 3 || fields.len() < 5 {
            continue;
        }
        if unescape_mountinfo(fields[4]) == mnt.as_os_str().as_bytes() {
            // The last matching line is the mount on top.
            let user_id = fields.get(dash + 3).and_then(|opts| {
                opts.split(|&b| b == b',')
                    .find_map(|o| o.strip_prefix(b"user_id="))
                    .and_then(|v| std::str::from_utf8(v).ok()?.parse().ok())
            });
            found = Some(MountInfo {
                fstype: String::from_utf8_lossy(fields[dash + 1]).into_owned(),
                source: String::from_utf8_lossy(&unescape_mountinfo(fields[dash + 2])).into_owned(),
                user_id,
            });
        }
    }
    found
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape_mountinfo(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'\\'
            && i + 3 < s.len()
            && s[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (s[i + 1] - b'0') as u32 * 64
                + (s[i + 2] - b'0') as u32 * 8
                + (s[i + 3] - b'0') as u32;
            out.push(v as u8);
            i += 4;
        } else {
            out.push(s[i]);
            i += 1;
        }
    }
    out
}

/// Starts this program again as the daemon and waits for its word.
/// Where the detached daemon finds its --remote URL (see `mount`).
const REMOTE_ENV: &str = "COMMITFS_REMOTE_URL";

fn detach(remote: Option<&str>) -> Result<(), String> {
    let (read_end, write_end) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| format!("cannot make a pipe: {e}"))?;
    let read_end = File::from(read_end);
    let exe = std::env::current_exe().map_err(|e| format!("cannot find my own executable: {e}"))?;
    let wfd = std::os::fd::AsRawFd::as_raw_fd(&write_end);
    let mut cmd = std::process::Command::new(exe);
    let mut args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    if let Some(url) = remote {
        let shown = crate::store::repo::redact_url(url);
        if shown != url {
            for a in &mut args {
                let s = a.to_string_lossy();
                if s.contains(url) {
                    *a = s.replace(url, &shown).into();
                }
            }
            cmd.env(REMOTE_ENV, url);
        }
    }
    cmd.args(args)
        .env(READY_FD_ENV, wfd.to_string())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            use nix::fcntl::{FcntlArg, FdFlag, fcntl};
            let _ = nix::unistd::setsid();
            // SAFETY: wfd is the ready pipe's write end, open across the fork.
            let fd = std::os::fd::BorrowedFd::borrow_raw(wfd);
            if let Ok(flags) = fcntl(fd, FcntlArg::F_GETFD) {
                let flags = FdFlag::from_bits_truncate(flags) - FdFlag::FD_CLOEXEC;
                let _ = fcntl(fd, FcntlArg::F_SETFD(flags));
            }
            Ok(())
        });
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot start the daemon: {e}"))?;
    drop(write_end);
    let mut msg = String::new();
    let mut r = read_end;
    let _ = r.read_to_string(&mut msg);
    let msg = msg.trim();
    if msg == "ok" {
        return Ok(());
    }
    // The daemon failed; reap it so that no zombie is left behind.
    let status = child.wait().ok();
    if msg.is_empty() {
        return Err(format!(
            "the daemon exited before the mount was ready ({}); run with --foreground -v to see why",
            status.map(|s| s.to_string()).unwrap_or_default()
        ));
    }
    Err(msg.to_string())
}

fn init_logging(cfg: &MountConfig, detached: bool) {
    // The adapter logs every error itself. fuser's own log adds one line when a
    // reply finds its request gone, which happens to the RELEASEDIR of
    // `commitfs unmount`'s syncfs at every unmount; it is shown from -v on.
    let (level, fuser) = match cfg.verbose {
        0 => ("warn", "off"),
        1 => ("info", "error"),
        2 => ("debug", "error"),
        _ => ("trace", "debug"),
    };
    let mut b = env_logger::Builder::from_env(
        env_logger::Env::default().default_filter_or(format!("{level},fuser={fuser}")),
    );
    // --log-file wins; without it a detached daemon logs to the system log
    // (the journal), each line naming the mount, and a foreground one to
    // stderr.
    let file = cfg.log_file.as_ref().map(|p| {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(p)
    });
    match file {
        Some(Ok(f)) => {
            b.target(env_logger::Target::Pipe(Box::new(f)));
        }
        _ if detached => {
            let mnt = cfg.mountpoint.display().to_string();
            let pid = std::process::id();
            b.format(move |buf, r| {
                writeln!(
                    buf,
                    "<{}>commitfs[{pid}]: {mnt}: {} {}: {}",
                    syslog::priority(r.level()),
                    r.level(),
                    r.target(),
                    r.args()
                )
            });
            b.target(env_logger::Target::Pipe(Box::new(syslog::Syslog::new(
                &syslog::socket_path(),
            ))));
        }
        _ => {}
    }
    let _ = b.try_init();
}

/// Mounts and serves until unmounted or signalled.
fn serve(cfg: &MountConfig, fs: Arc<CommitFs>, ready: Option<File>) -> Result<(), String> {
    let detached = ready.is_some();
    init_logging(cfg, detached);
    raise_fd_limit();
    // Blocked before any thread starts, so that every thread inherits the mask
    // and only the signal thread takes SIGTERM, SIGINT and SIGHUP.
    block_signals();
    let fuse = FuseFs::new(fs.clone());
    let mut fcfg = fuser::Config::default();
    fcfg.acl = if cfg.allow_other {
        fuser::SessionACL::All
    } else {
        fuser::SessionACL::Owner
    };
    fcfg.n_threads = Some(
        std::env::var("COMMITFS_THREADS")
            .ok()
            .and_then(|t| t.parse().ok())
            .unwrap_or(THREADS),
    );
    fcfg.clone_fd = true;
    let result = if is_root() {
        mount_as_root(cfg, fuse, fcfg)
    } else {
        let mut opts = vec![
            // fusermount3 splits options on ',' unless escaped.
            fuser::MountOption::FSName(
                cfg.repo
                    .to_string_lossy()
                    .replace('\\', "\\\\")
                    .replace(',', "\\,"),
            ),
            fuser::MountOption::Subtype("commitfs".into()),
            fuser::MountOption::NoSuid,
            fuser::MountOption::NoDev,
        ];
        if cfg.allow_other {
            opts.push(fuser::MountOption::DefaultPermissions);
        }
        if cfg.fs.read_only {
            opts.push(fuser::MountOption::RO);
        }
        fcfg.mount_options = opts;
        fuser::Session::new(fuse, &cfg.mountpoint, &fcfg)
    };
    let session = match result {
        Ok(s) => s,
        Err(e) => {
            let msg = format!("cannot mount {}: {e}", cfg.mountpoint.display());
            if let Some(mut r) = ready {
                let _ = writeln!(r, "{msg}");
            }
            return Err(msg);
        }
    };
    // Everything the mount needs is started before the caller hears "ok".
    let started = start_helpers(&fs, &session, &cfg.mountpoint);
    if let Err(e) = started {
        let _ = unmount_path(&cfg.mountpoint, true);
        if let Some(mut r) = ready {
            let _ = writeln!(r, "{e}");
        }
        return Err(e);
    }
    // `commitfs status` is a convenience: a mount without it still serves.
    let control =
        match crate::daemon::control::start(fs.clone(), &normalize(&cfg.mountpoint), &cfg.repo) {
            Ok(p) => Some(p),
            Err(e) => {
                log::warn!("commitfs status will not answer: {e}");
                None
            }
        };
    log::info!(
        "mounted {} at {}",
        cfg.repo.display(),
        cfg.mountpoint.display()
    );
    if let Some(mut r) = ready {
        let _ = writeln!(r, "ok");
        // Let go of the directory we were started in, like any daemon.
        let _ = std::env::set_current_dir("/");
    }
    let run = session.run();
    if let Some(p) = &control {
        let _ = std::fs::remove_file(p);
    }
    fs.disable_prefetch();
    fs.stop_scheduler();
    // Unmounted: commit everything still pending before the daemon exits,
    // and push it (with --remote; what `commitfs unmount` or SIGTERM had
    // pushed already, with the same tips, is not tried again).
    match fs.commit_all() {
        Ok(()) => fs.finish_overlay(),
        Err(e) => log::error!(
            "committing at unmount: {e}; the changes stay in the overlay under {} and are committed by the next mount",
            fs.overlay_dir().display()
        ),
    }
    if let Some(left) = fs.push_before_exit() {
        say_unpushed(&fs, &left, !detached);
    }
    fs.release_kept();
    if find_mount(&cfg.mountpoint).is_some_and(|m| m.fstype == FSTYPE) {
        // The session ended without an unmount (an error): leave no dead mount.
        let _ = unmount_path(&cfg.mountpoint, true);
    }
    log::info!("unmounted {}", cfg.mountpoint.display());
    match run {
        // The kernel ends the connection at unmount; a worker that was between
        // requests may see it as aborted rather than gone. Either is an end.
        Err(e) if e.raw_os_error() == Some(libc::ECONNABORTED) => Ok(()),
        other => other.map_err(|e| format!("FUSE session ended with an error: {e}")),
    }
}

/// What a line of [`CommitFs::push_before_exit`] means to the user.
fn unpushed_line(l: &str) -> String {
    format!(
        "not pushed: {l}; it stays committed in the repository, and a mount with --remote pushes it"
    )
}

/// Says what stayed unpushed at exit: in the log, and on stderr too when
/// `stderr` (the daemon's own exit; `commitfs unmount` says it on its own
/// stderr).
pub(crate) fn say_unpushed(fs: &CommitFs, left: &[String], stderr: bool) {
    let url = fs
        .config()
        .remote
        .as_deref()
        .map(crate::store::repo::redact_url)
        .unwrap_or_default();
    if left.is_empty() {
        log::info!("everything committed is on {url}");
    }
    for l in left {
        let line = format!("{url}: {}", unpushed_line(l));
        log::warn!("{line}");
        if stderr {
            eprintln!("commitfs: {line}");
        }
    }
}

/// Runs a helper thread's loop; if it panics (a bug: the panic hook logged
/// it), it is started again a second later, so that a bug in the commit, sync
/// or watch loop never stops commits for the rest of the mount.
fn restarting(what: &str, f: impl Fn()) {
    loop {
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(&f)) {
            Ok(()) => return,
            Err(_) => {
                log::error!("the {what} thread failed (a panic, logged above); starting it again");
                std::thread::sleep(std::time::Duration::from_secs(1));
            }
        }
    }
}

/// The prefetch, commit and signal threads.
fn start_helpers(
    fs: &Arc<CommitFs>,
    session: &fuser::Session<FuseFs>,
    mnt: &Path,
) -> Result<(), String> {
    // The committer's threads run from the start (barriers); from here on
    // they also commit branches whose changes settled.
    fs.start_settling();
    let rx = fs.enable_prefetch();
    let (pfs, notifier) = (fs.clone(), session.notifier());
    std::thread::Builder::new()
        .name("commitfs-prefetch".into())
        .spawn(move || crate::view::prefetch::run(pfs, rx, crate::fuse::PageCache(notifier)))
        .map_err(|e| format!("cannot start the prefetch thread: {e}"))?;
    // Kernel invalidations are sent from their own thread, never from a
    // request (see view/follow.rs).
    let (tx, rx) = std::sync::mpsc::channel::<crate::follow::InvalMsg>();
    fs.set_invalidator(tx);
    let notifier = session.notifier();
    std::thread::Builder::new()
        .name("commitfs-inval".into())
        .spawn(move || {
            use std::os::unix::ffi::OsStrExt;
            for msg in rx {
                let batch = match msg {
                    crate::follow::InvalMsg::Batch(b) => b,
                    crate::follow::InvalMsg::Then(f) => {
                        f();
                        continue;
                    }
                };
                for i in batch {
                    // ENOENT: the kernel does not have it cached; nothing to drop.
                    let _ = match i {
                        crate::follow::Inval::Entry { parent, name } => notifier.inval_entry(
                            fuser::INodeNo(parent),
                            std::ffi::OsStr::from_bytes(&name),
                        ),
                        crate::follow::Inval::Inode(ino) => {
                            notifier.inval_inode(fuser::INodeNo(ino), 0, 0)
                        }
                    };
                }
            }
        })
        .map_err(|e| format!("cannot start the invalidation thread: {e}"))?;
    if fs.config().remote.is_some() {
        let sfs = fs.clone();
        std::thread::Builder::new()
            .name("commitfs-sync".into())
            .spawn(move || restarting("sync", || sfs.run_sync()))
            .map_err(|e| format!("cannot start the sync thread: {e}"))?;
    }
    let wfs = fs.clone();
    std::thread::Builder::new()
        .name("commitfs-watch".into())
        .spawn(move || restarting("ref watcher", || wfs.run_watcher()))
        .map_err(|e| format!("cannot start the ref watcher: {e}"))?;
    let mnt = mnt.to_path_buf();
    let signals = block_signals();
    let sigfs = fs.clone();
    std::thread::Builder::new()
        .name("commitfs-signals".into())
        .spawn(move || wait_for_signal(signals, &mnt, &sigfs))
        .map_err(|e| format!("cannot start the signal thread: {e}"))?;
    Ok(())
}

/// As root, mount(2) directly with the type `fuse.commitfs` (fuser's own mount
/// says only `fuse`), then hand the connection to fuser.
fn mount_as_root(
    cfg: &MountConfig,
    fuse: FuseFs,
    fcfg: fuser::Config,
) -> std::io::Result<fuser::Session<FuseFs>> {
    let dev = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/fuse")?;
    use std::os::fd::AsRawFd;
    let mut data = format!(
        "fd={},rootmode=40000,user_id={},group_id={}",
        dev.as_raw_fd(),
        cfg.fs.uid,
        cfg.fs.gid
    );
    if cfg.allow_other {
        data.push_str(",allow_other,default_permissions");
    }
    use nix::mount::MsFlags;
    let mut flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
    if cfg.fs.read_only {
        flags |= MsFlags::MS_RDONLY;
    }
    nix::mount::mount(
        Some(cfg.repo.as_path()),
        cfg.mountpoint.as_path(),
        Some(FSTYPE),
        flags,
        Some(data.as_str()),
    )?;
    let acl = fcfg.acl;
    fuser::Session::from_fd(fuse, OwnedFd::from(dev), acl, fcfg).inspect_err(|_| {
        let _ = unmount_path(&cfg.mountpoint, true);
    })
}

/// Files being written each hold a spill file open: take the hard limit on
/// open files, as FUSE daemons do.
fn raise_fd_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE)
        && soft < hard
        && let Err(e) = setrlimit(Resource::RLIMIT_NOFILE, hard, hard)
    {
        log::debug!("cannot raise the open files limit to {hard}: {e}");
    }
}

/// SIGTERM, SIGINT and SIGHUP, blocked in the calling thread (and so in every
/// thread it starts after): only the signal thread takes them, by `sigwait`.
fn block_signals() -> SigSet {
    let mut set = SigSet::empty();
    for s in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
        set.add(s);
    }
    if let Err(e) = set.thread_block() {
        log::warn!("cannot block SIGTERM, SIGINT and SIGHUP: {e}");
    }
    set
}

fn wait_for_signal(set: SigSet, mnt: &Path, fs: &CommitFs) {
    loop {
        let sig = match set.wait() {
            Ok(s) => s as i32,
            Err(e) => {
                log::warn!("waiting for a signal: {e}");
                continue;
            }
        };
        log::info!(
            "signal {sig}: committing what is pending, then unmounting {}",
            mnt.display()
        );
        // From here on no change is acknowledged: the commit below then holds
        // every write that returned success (a program still writing gets
        // EROFS).
        fs.stop_changes();
        if let Err(e) = fs.commit_all() {
            // Exiting now would drop what was acknowledged: stay mounted
            // (changes refused, everything readable) until a commit works,
            // at the next signal or `commitfs unmount`.
            log::error!(
                "committing on signal {sig}: {e}; staying mounted, with the pending changes, so that nothing is lost: fix the cause, then run `commitfs unmount {}` or send the signal again",
                mnt.display()
            );
            continue;
        }
        fs.finish_overlay();
        if let Some(left) = fs.push_before_exit() {
            say_unpushed(fs, &left, true);
        }
        fs.release_kept();
        if let Err(e) = unmount_path(mnt, false).or_else(|_| unmount_path(mnt, true)) {
            log::error!("cannot unmount {}: {e}", mnt.display());
        }
        // A lazy unmount leaves the connection up while files are open; do not
        // wait for them forever.
        std::thread::sleep(std::time::Duration::from_secs(2));
        std::process::exit(0);
    }
}

/// Unmounts `mnt` (lazily, detaching it even while busy, if `lazy`), in
/// this process: the kernel's teardown of what it cached runs here before
/// this returns (the daemon's own unmount; `commitfs unmount` does not wait
/// for it, see `unmount_returning_at_detach`).
pub fn unmount_path(mnt: &Path, lazy: bool) -> Result<(), String> {
    if is_root() {
        let flags = if lazy {
            nix::mount::MntFlags::MNT_DETACH
        } else {
            nix::mount::MntFlags::empty()
        };
        return match nix::mount::umount2(mnt, flags) {
            Ok(()) => Ok(()),
            Err(errno) => root_unmount_result(mnt, Ok(errno as i32)),
        };
    }
    fusermount_result(
        mnt,
        fusermount_u(mnt, lazy).output().map_err(|e| e.to_string()),
    )
}

/// umount2's path for `mnt`, made before a fork (see `start_unmount`).
fn umount2_target(mnt: &Path) -> Result<CString, String> {
    Ok(CString::new(mnt.as_os_str().as_bytes()).map_err(|_| "path contains a NUL byte")?)
}

/// `fusermount3 -u [-z] MNT`.
fn fusermount_u(mnt: &Path, lazy: bool) -> std::process::Command {
    let mut cmd = std::process::Command::new("fusermount3");
    cmd.arg("-u");
    if lazy {
        cmd.arg("-z");
    }
    cmd.arg(mnt);
    cmd
}

/// An unmount under way, in a child process.
enum Unmounting {
    /// A fork of this process calling umount2; it exits with the errno.
    Root(libc::pid_t),
    Fusermount(std::process::Child),
}

/// Starts unmounting `mnt` in a child process: the kernel tears the mount
/// down (forgets every inode it cached, 1–3 µs each) in the process that
/// unmounts, once the mount is detached.
fn start_unmount(mnt: &Path) -> Result<Unmounting, String> {
    if is_root() {
        // Raw libc here, not nix: between fork and _exit the child of a
        // threaded process may call only async-signal-safe functions, and
        // nix's umount2 may allocate its path.
        let target = umount2_target(mnt)?;
        // SAFETY: the child calls only async-signal-safe functions (umount2,
        // __errno_location, _exit) on memory made before the fork.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            // SAFETY: target is a valid C string.
            let r = unsafe { libc::umount2(target.as_ptr(), 0) };
            let code = if r == 0 {
                0
            } else {
                // SAFETY: reads this thread's errno.
                unsafe { *libc::__errno_location() }.clamp(1, 255)
            };
            // SAFETY: ends the child without running the parent's atexit
            // handlers or destructors.
            unsafe { libc::_exit(code) };
        }
        if pid < 0 {
            return Err(format!(
                "cannot unmount {}: {}",
                mnt.display(),
                std::io::Error::last_os_error()
            ));
        }
        return Ok(Unmounting::Root(pid));
    }
    fusermount_u(mnt, false)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map(Unmounting::Fusermount)
        .map_err(|e| format!("cannot run fusermount3: {e} (install the fuse3 package)"))
}

/// The errno child `pid` (see `start_unmount`) exited with, once it exits.
fn wait_child(pid: libc::pid_t) -> Result<i32, String> {
    loop {
        match waitpid(Pid::from_raw(pid), None) {
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.to_string()),
            Ok(status) => {
                if let Some(errno) = child_errno(status) {
                    return errno;
                }
            }
        }
    }
}

/// The errno an ended unmounting child reports; None while it runs.
fn child_errno(status: WaitStatus) -> Option<Result<i32, String>> {
    match status {
        WaitStatus::Exited(_, code) => Some(Ok(code)),
        WaitStatus::Signaled(_, sig, _) => Some(Err(format!(
            "the unmounting process was killed by signal {sig}"
        ))),
        _ => None,
    }
}

fn busy(mnt: &Path) -> String {
    format!(
        "{} is busy: a program has a file or its working directory there (see fuser -vm {})",
        mnt.display(),
        mnt.display()
    )
}

fn root_unmount_result(mnt: &Path, code: Result<i32, String>) -> Result<(), String> {
    match code {
        Ok(0) => Ok(()),
        Ok(libc::EBUSY) => Err(busy(mnt)),
        Ok(errno) => Err(format!(
            "cannot unmount {}: {}",
            mnt.display(),
            std::io::Error::from_raw_os_error(errno)
        )),
        Err(e) => Err(format!("cannot unmount {}: {e}", mnt.display())),
    }
}

fn fusermount_result(mnt: &Path, out: Result<std::process::Output, String>) -> Result<(), String> {
    let out = out.map_err(|e| format!("cannot run fusermount3: {e}"))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let err = err.trim().lines().next().unwrap_or("fusermount3 failed");
        if err.contains("busy") {
            return Err(busy(mnt));
        }
        return Err(format!("cannot unmount {}: {err}", mnt.display()));
    }
    Ok(())
}

/// Unmounts `mnt` and returns as soon as the mount is gone from the mount
/// table, or the unmount failed. The kernel's teardown of what it cached
/// (seconds after a walk of millions of paths) goes on in the child that
/// unmounts, and the daemon exits once it is done.
fn unmount_returning_at_detach(mnt: &Path) -> Result<(), String> {
    let id = top_mount_id(mnt);
    let mut u = start_unmount(mnt)?;
    loop {
        match &mut u {
            Unmounting::Root(pid) => {
                match waitpid(Pid::from_raw(*pid), Some(WaitPidFlag::WNOHANG)) {
                    Ok(status) => {
                        if let Some(errno) = child_errno(status) {
                            return root_unmount_result(mnt, errno);
                        }
                    }
                    Err(_) => return root_unmount_result(mnt, wait_child(*pid)),
                }
            }
            Unmounting::Fusermount(child) => {
                let exited = child
                    .try_wait()
                    .map_err(|e| format!("cannot unmount {}: {e}", mnt.display()))?;
                if let Some(status) = exited {
                    let mut stderr = Vec::new();
                    if let Some(mut e) = child.stderr.take() {
                        use std::io::Read;
                        let _ = e.read_to_end(&mut stderr);
                    }
                    let out = std::process::Output {
                        status,
                        stdout: Vec::new(),
                        stderr,
                    };
                    return fusermount_result(mnt, Ok(out));
                }
            }
        }
        if id.is_some_and(|id| !mount_id_present(id)) {
            return Ok(());
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
}

/// The id (mountinfo's first field) of the mount on top at `mnt`.
fn top_mount_id(mnt: &Path) -> Option<u64> {
    let text = std::fs::read("/proc/self/mountinfo").ok()?;
    let mut found = None;
    for line in text.split(|&b| b == b'\n') {
        let fields: Vec<&[u8]> = line.split(|&b| b == b' ').collect();
        if fields.len() > 4 && unescape_mountinfo(fields[4]) == mnt.as_os_str().as_bytes() {
            found = std::str::from_utf8(fields[0]).ok()?.parse().ok();
        }
    }
    found
}

/// Whether the mount with id `id` is still in the mount table.
fn mount_id_present(id: u64) -> bool {
    let Ok(text) = std::fs::read("/proc/self/mountinfo") else {
        return true;
    };
    let id = id.to_string();
    text.split(|&b| b == b'\n')
        .any(|line| line.split(|&b| b == b' ').next() == Some(id.as_bytes()))
}

/// `commitfs unmount`: commit what is pending, then unmount.
pub fn unmount(mnt: &Path) -> Result<(), String> {
    let abs = std::path::absolute(mnt).map_err(|e| format!("{}: {e}", mnt.display()))?;
    // Lexically, without touching the mount: a dead one answers nothing.
    let abs = normalize(&abs);
    match find_mount(&abs) {
        Some(m) if m.fstype == FSTYPE => {}
        Some(m) => {
            return Err(format!(
                "{} is a {} mount, not a commitfs one: use umount",
                abs.display(),
                m.fstype
            ));
        }
        None => return Err(format!("{} is not mounted", abs.display())),
    }
    // fsync of the mount's root commits every pending change and returns once
    // it is durable (syncfs would not reach the daemon: Linux sends it only to
    // virtiofs). A failure keeps the mount, so that nothing pending is dropped.
    match File::open(&abs) {
        Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => {
            eprintln!(
                "commitfs: the daemon of {} had died; what it had not committed is lost, what it committed is in the repository",
                abs.display()
            );
            return unmount_path(&abs, true);
        }
        Err(_) => {}
        Ok(d) => {
            if let Err(e) = d.sync_all() {
                return Err(format!(
                    "cannot commit what is pending in {} ({e}); it stays mounted: see the daemon's log (--log-file), or umount it to drop those changes",
                    abs.display()
                ));
            }
            // With --remote: one push of what was committed, bounded by
            // the daemon; what stayed unpushed is said here, and unmounting
            // goes on (it stays committed in the repository). A daemon that
            // cannot be asked (its control socket did not start) pushes on
            // its way out all the same, and says it in its log.
            if let Ok(Some(left)) = crate::daemon::control::push_before_unmount(&abs) {
                for l in left {
                    eprintln!("commitfs: {}", unpushed_line(&l));
                }
            }
        }
    }
    unmount_returning_at_detach(&abs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo_dir(p: &Path) -> UsedDir {
        UsedDir {
            what: "the repository",
            path: p.to_path_buf(),
            whole_tree: true,
            fix: "elsewhere",
        }
    }

    fn spill_dir(p: &Path) -> UsedDir {
        UsedDir {
            what: "the spill directory",
            path: p.to_path_buf(),
            whole_tree: false,
            fix: "elsewhere",
        }
    }

    #[test]
    fn a_mount_point_at_above_or_inside_the_repository_is_refused() {
        let t = tempfile::tempdir().unwrap();
        let repo = t.path().join("a/b/repo.git");
        std::fs::create_dir_all(repo.join("refs/heads")).unwrap();
        std::fs::create_dir_all(t.path().join("beside")).unwrap();
        let dirs = [repo_dir(&repo)];
        let refused = |mnt: &Path, word: &str| {
            let e = check_not_own_reader(mnt, &dirs).unwrap_err();
            assert!(e.contains(word) && !e.contains('\n'), "{mnt:?}: {e}");
            assert!(e.contains("its own mount"), "{e}");
        };
        refused(&repo, "is the repository");
        refused(&repo.join("refs/heads"), "is inside the repository");
        refused(&repo.join("refs/heads/../.."), "is the repository");
        refused(&t.path().join("a"), "is above the repository");
        refused(Path::new("/"), "is above the repository");
        // Through symlinks, either side.
        std::os::unix::fs::symlink(t.path().join("a"), t.path().join("to-a")).unwrap();
        refused(&t.path().join("to-a"), "is above");
        std::os::unix::fs::symlink("/", t.path().join("to-root")).unwrap();
        refused(&t.path().join("to-root"), "is above");
        std::os::unix::fs::symlink(&repo, t.path().join("repo-link")).unwrap();
        let via_link = [repo_dir(&t.path().join("repo-link"))];
        let e = check_not_own_reader(&t.path().join("a/b"), &via_link).unwrap_err();
        assert!(e.contains("is above") && e.contains("that is"), "{e}");
        // Beside it is fine.
        assert!(check_not_own_reader(&t.path().join("beside"), &dirs).is_ok());
    }

    #[test]
    fn a_spill_directory_is_refused_only_at_or_below_the_mount_point() {
        let t = tempfile::tempdir().unwrap();
        let mnt = t.path().join("mnt");
        std::fs::create_dir_all(mnt.join("spill")).unwrap();
        let e = check_not_own_reader(&mnt, &[spill_dir(&mnt.join("spill"))]).unwrap_err();
        assert!(e.contains("is above the spill directory"), "{e}");
        assert!(check_not_own_reader(&mnt, &[spill_dir(&mnt)]).is_err());
        // A mount point under the spill directory (/var/tmp/mnt) is fine.
        assert!(check_not_own_reader(&mnt, &[spill_dir(t.path())]).is_ok());
    }

    #[test]
    fn alternates_are_followed_bounded_and_unquoted() {
        let t = tempfile::tempdir().unwrap();
        let objs: Vec<PathBuf> = (0..8).map(|i| t.path().join(format!("o{i}"))).collect();
        for o in &objs {
            std::fs::create_dir_all(o.join("info")).unwrap();
        }
        // o0 -> o1 (relative, with a comment), o1 -> "o2" (quoted), o2 -> o3 ... o7,
        // and o3 -> o0 (a cycle).
        std::fs::write(objs[0].join("info/alternates"), "# comment\n\n../o1\n").unwrap();
        std::fs::write(
            objs[1].join("info/alternates"),
            format!("\"{}\"\n", objs[2].display()),
        )
        .unwrap();
        for i in 2..7 {
            let mut text = format!("{}\n", objs[i + 1].display());
            if i == 3 {
                text.push_str(&format!("{}\n", objs[0].display()));
            }
            std::fs::write(objs[i].join("info/alternates"), text).unwrap();
        }
        let found = alternates(&objs[0]);
        let real = |p: &Path| std::fs::canonicalize(p).unwrap();
        assert_eq!(
            found,
            objs[1..=ALTERNATES_DEPTH]
                .iter()
                .map(|p| real(p))
                .collect::<Vec<_>>(),
            "five levels, the cycle ignored"
        );
        assert_eq!(unquote_c(br#"a\"b\\c\ntab\t\101"#), b"a\"b\\c\ntab\tA");
    }

    #[test]
    fn a_log_file_needs_a_directory_that_can_be_written() {
        let t = tempfile::tempdir().unwrap();
        assert!(check_log_file(&t.path().join("log")).is_ok());
        let e = check_log_file(&t.path().join("missing/log")).unwrap_err();
        assert!(
            e.contains("does not exist") && e.contains("mkdir -p"),
            "{e}"
        );
        let e = check_log_file(&t.path().join("log/x")).unwrap_err();
        assert!(e.contains("is not a directory"), "{e}");
        let e = check_log_file(t.path()).unwrap_err();
        assert!(e.contains("is a directory"), "{e}");
    }
}
