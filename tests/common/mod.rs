//! Shared test harness: repositories made with git in a temp dir, and real mounts
//! of them through the kernel, unmounted (and their daemons reaped) on drop.

#![allow(dead_code)]

pub mod core;
pub mod model;

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_commitfs");

/// Runs git with a fixed identity; panics with git's stderr if it fails.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .current_dir(dir)
        .args(["-c", "user.name=Test", "-c", "user.email=test@example.com"])
        .args(["-c", "init.defaultBranch=main", "-c", "gc.auto=0"])
        .args(args)
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

pub fn git_os(dir: &Path, args: &[&OsStr]) {
    let out = Command::new("git")
        .current_dir(dir)
        .args(["-c", "user.name=Test", "-c", "user.email=test@example.com"])
        .args(args)
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A work tree and the bare repository it pushes to.
pub struct TestRepo {
    pub dir: tempfile::TempDir,
}

impl TestRepo {
    pub fn new() -> TestRepo {
        TestRepo::new_in(&std::env::temp_dir())
    }

    /// A TestRepo below `parent` (editors skip their backups under /tmp:
    /// their tests live in /var/tmp).
    pub fn new_in(parent: &Path) -> TestRepo {
        let dir = tempfile::Builder::new()
            .prefix("commitfs-test")
            .tempdir_in(parent)
            .expect("tempdir");
        let r = TestRepo { dir };
        std::fs::create_dir(r.work()).unwrap();
        git(&r.work(), &["init", "-q", "-b", "main"]);
        r
    }

    pub fn work(&self) -> PathBuf {
        self.dir.path().join("work")
    }

    pub fn bare(&self) -> PathBuf {
        self.dir.path().join("repo.git")
    }

    pub fn write(&self, rel: &str, data: &[u8]) {
        let p = self.work().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, data).unwrap();
    }

    pub fn commit(&self, msg: &str) -> String {
        git(&self.work(), &["add", "-A"]);
        git(&self.work(), &["commit", "-q", "--allow-empty", "-m", msg]);
        git(&self.work(), &["rev-parse", "HEAD"])
    }

    /// Makes (or refreshes) the bare repository with every branch and tag.
    pub fn publish(&self) -> PathBuf {
        let bare = self.bare();
        if !bare.exists() {
            git(
                self.dir.path(),
                &["init", "-q", "--bare", "-b", "main", "repo.git"],
            );
        }
        git(
            &self.work(),
            &[
                "push",
                "-q",
                "--force",
                bare.to_str().unwrap(),
                "refs/heads/*:refs/heads/*",
                "refs/tags/*:refs/tags/*",
            ],
        );
        bare
    }

    pub fn mountpoint(&self, name: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        std::fs::create_dir_all(&p).unwrap();
        p
    }
}

/// Whether `path` is a mount point now.
pub fn is_mounted(path: &Path) -> bool {
    let text = std::fs::read("/proc/self/mountinfo").unwrap_or_default();
    let want = path.as_os_str().as_bytes();
    text.split(|&b| b == b'\n')
        .any(|l| l.split(|&b| b == b' ').nth(4) == Some(want))
}

/// Whether statfs(2) of `path` succeeds: it always reaches a FUSE daemon, so a
/// dead mount (ENOTCONN) fails it even while its attributes are cached.
pub fn statfs_ok(path: &Path) -> bool {
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    // SAFETY: c is a valid C string; st is written by the call.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    unsafe { libc::statfs(c.as_ptr(), &mut st) == 0 }
}

/// Polls `cond` every 10 ms for at most `limit`.
pub fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    cond()
}

/// A daemon started with --foreground by this test: unmounted and reaped on drop.
pub struct Mount {
    pub path: PathBuf,
    child: Option<Child>,
}

impl Mount {
    pub fn new(repo: &Path, mnt: &Path, extra: &[&str]) -> Mount {
        Mount::with_env(repo, mnt, extra, &[])
    }

    /// A mount whose daemon gets `env` in its environment besides this one's.
    pub fn with_env(repo: &Path, mnt: &Path, extra: &[&str], env: &[(&str, &str)]) -> Mount {
        let mut cmd = Command::new(BIN);
        cmd.envs(env.iter().copied());
        cmd.arg("mount")
            .arg(repo)
            .arg(mnt)
            .arg("--foreground")
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        let mut child = cmd.spawn().expect("commitfs starts");
        // Mounted and answering (a dead mount left by a killed daemon is in the
        // mount table too, but answers ENOTCONN).
        // Twice, 20 ms apart: while a killed daemon's mount is being replaced,
        // one look can catch the old one on its way out.
        let answers = |p: &Path| is_mounted(p) && statfs_ok(p);
        let up = wait_until(Duration::from_secs(10), || {
            (answers(mnt) && {
                std::thread::sleep(Duration::from_millis(20));
                answers(mnt)
            }) || matches!(child.try_wait(), Ok(Some(_)))
        });
        if !answers(mnt) {
            let _ = child.kill();
            let status = child.wait();
            panic!("mount did not come up (up={up}, daemon: {status:?})");
        }
        Mount {
            path: mnt.to_path_buf(),
            child: Some(child),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// Peak resident set size of the daemon, in bytes.
    pub fn peak_rss(&self) -> u64 {
        self.proc_status_bytes("VmHWM:")
    }

    /// The daemon's own memory now (anonymous RSS), in bytes.
    #[allow(dead_code)] // not every test binary asks for it
    pub fn rss_anon(&self) -> u64 {
        self.proc_status_bytes("RssAnon:")
    }

    /// A "kB" line of the daemon's /proc/PID/status, in bytes.
    fn proc_status_bytes(&self, key: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        let line = status.lines().find(|l| l.starts_with(key)).unwrap();
        let kb: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
        kb * 1024
    }

    pub fn unmount(mut self) {
        self.do_unmount();
    }

    /// `commitfs unmount`, and what it printed; waits (bounded) for the
    /// daemon to exit.
    #[allow(dead_code)] // not every test binary asks for it
    pub fn unmount_output(mut self) -> Output {
        let out = Command::new(BIN)
            .arg("unmount")
            .arg(&self.path)
            .output()
            .expect("commitfs unmount runs");
        if let Some(mut child) = self.child.take() {
            if !wait_until(Duration::from_secs(30), || {
                matches!(child.try_wait(), Ok(Some(_)))
            }) {
                let _ = child.kill();
            }
            let _ = child.wait();
        }
        out
    }

    /// SIGKILL to the daemon, as a crash: the mount is left dead (ENOTCONN),
    /// for the next mount or `commitfs unmount` to clean up.
    pub fn kill9(mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM to the daemon, as a system shutdown sends it; waits (bounded)
    /// for it to exit. Returns whether it exited 0.
    pub fn terminate(mut self) -> bool {
        let Some(mut child) = self.child.take() else {
            return false;
        };
        // SAFETY: a pid of a child this test started and has not reaped.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let exited = wait_until(Duration::from_secs(30), || {
            matches!(child.try_wait(), Ok(Some(_)))
        });
        if !exited {
            let _ = child.kill();
        }
        let status = child.wait();
        if is_mounted(&self.path) {
            let _ = Command::new("umount").arg("-l").arg(&self.path).status();
        }
        exited && status.is_ok_and(|s| s.success())
    }

    fn do_unmount(&mut self) {
        if let Some(mut child) = self.child.take() {
            let out = Command::new(BIN).arg("unmount").arg(&self.path).output();
            if !matches!(&out, Ok(o) if o.status.success()) {
                if let Ok(o) = &out {
                    eprintln!(
                        "commitfs unmount {} failed: {}",
                        self.path.display(),
                        String::from_utf8_lossy(&o.stderr).trim()
                    );
                }
                let _ = Command::new("umount").arg("-l").arg(&self.path).status();
            }
            let exited = wait_until(Duration::from_secs(10), || {
                matches!(child.try_wait(), Ok(Some(_)))
            });
            if !exited {
                let _ = child.kill();
            }
            let _ = child.wait();
        }
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        self.do_unmount();
    }
}

/// Runs the commitfs binary and returns its output.
pub fn commitfs(args: &[&OsStr]) -> Output {
    Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("commitfs runs")
}

/// `git fsck --strict` of `repo` is clean (panics with its complaints).
pub fn fsck(repo: &Path) {
    let out = Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(["fsck", "--strict"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git fsck {}: {}",
        repo.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The blob at `spec` (`main:path`, `COMMIT:path`) in `repo`, if there is one.
pub fn show(repo: &Path, spec: &str) -> Option<Vec<u8>> {
    let out = Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(["cat-file", "blob", spec])
        .output()
        .unwrap();
    out.status.success().then_some(out.stdout)
}

/// Unmounts `path` when dropped, if it is still mounted (`commitfs unmount`,
/// else a lazy umount): a test that fails half-way leaves no mount behind.
pub struct UnmountOnDrop(pub PathBuf);

impl Drop for UnmountOnDrop {
    fn drop(&mut self) {
        if is_mounted(&self.0) {
            let ok = Command::new(BIN)
                .arg("unmount")
                .arg(&self.0)
                .output()
                .is_ok_and(|o| o.status.success());
            if !ok {
                let _ = Command::new("umount").arg("-l").arg(&self.0).status();
            }
        }
    }
}

/// For a test that needs root (it is also compiled `#[ignore]`d for builds
/// made by others, see build.rs): fails, never passes, when not run as root.
pub fn require_root() {
    // SAFETY: geteuid cannot fail.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(euid, 0, "this test needs root: run it as root");
}

/// One line of /proc/PID/mountinfo, the fields a test needs.
#[derive(Debug, Clone)]
pub struct MountLine {
    /// The minor of the mount's device: a FUSE mount's connection number in
    /// /sys/fs/fuse/connections.
    pub minor: u32,
    pub mount_point: PathBuf,
    pub fstype: String,
    pub source: PathBuf,
}

/// The mounts of the mount namespace of `pid` ("self" for ours), read from
/// the mount table without touching any of them.
pub fn mount_table(pid: &str) -> Vec<MountLine> {
    use std::os::unix::ffi::OsStringExt;
    let unescape = |s: &[u8]| {
        let mut out = Vec::new();
        let mut i = 0;
        while i < s.len() {
            if s[i] == b'\\'
                && i + 3 < s.len()
                && s[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
            {
                out.push((s[i + 1] - b'0') * 64 + (s[i + 2] - b'0') * 8 + (s[i + 3] - b'0'));
                i += 4;
            } else {
                out.push(s[i]);
                i += 1;
            }
        }
        PathBuf::from(std::ffi::OsString::from_vec(out))
    };
    let text = std::fs::read(format!("/proc/{pid}/mountinfo")).unwrap_or_default();
    let mut out = Vec::new();
    for line in text.split(|&b| b == b'\n') {
        let f: Vec<&[u8]> = line.split(|&b| b == b' ').collect();
        let Some(dash) = f.iter().position(|x| *x == b"-") else {
            continue;
        };
        if f.len() < 5 || f.len() < dash + 3 {
            continue;
        }
        let minor = String::from_utf8_lossy(f[2])
            .split(':')
            .nth(1)
            .and_then(|m| m.parse().ok())
            .unwrap_or(0);
        out.push(MountLine {
            minor,
            mount_point: unescape(f[4]),
            fstype: String::from_utf8_lossy(f[dash + 1]).into_owned(),
            source: unescape(f[dash + 2]),
        });
    }
    out
}

/// Mounts that a test which must mount nothing has made after all: in the
/// namespace of `pid` ("self", or a child's own), any mount at or under
/// `under`, and any FUSE mount whose source is under it (a commitfs mount's
/// source is its repository, wherever it was mounted).
pub fn stray_mounts(pid: &str, under: &Path) -> Vec<MountLine> {
    mount_table(pid)
        .into_iter()
        .filter(|m| {
            m.mount_point.starts_with(under)
                || (m.fstype.starts_with("fuse") && m.source.starts_with(under))
        })
        .collect()
}

/// Aborts the FUSE connection of `m` (which frees every process waiting on
/// it, the daemon too, even one that reads through its own mount), without
/// touching the mount: writes 1 to /sys/fs/fuse/connections/MINOR/abort.
/// Where the fusectl filesystem is not mounted, it is mounted in a private
/// mount namespace of its own for the one write, so that nothing is left
/// mounted and no other test's abort can lose it half-way. Only if the mount
/// still has that connection number (numbers are reused). Needs root; as
/// another user only the daemon's death ends the connection.
pub fn abort_fuse_connection(pid: &str, m: &MountLine) {
    let still = |t: &str| {
        mount_table(t)
            .iter()
            .any(|l| l.mount_point == m.mount_point && l.minor == m.minor)
    };
    if !still(pid) && !still("self") {
        return;
    }
    let conns = Path::new("/sys/fs/fuse/connections");
    let abort = conns.join(m.minor.to_string()).join("abort");
    let done = if mount_table("self").iter().any(|l| l.fstype == "fusectl") {
        std::fs::write(&abort, b"1").map_err(|e| e.to_string())
    } else {
        let script = format!(
            "mount -t fusectl fusectl {} && echo 1 > {}",
            conns.display(),
            abort.display()
        );
        Command::new("unshare")
            .args(["-m", "--propagation", "private", "sh", "-c", &script])
            .status()
            .map_err(|e| e.to_string())
            .and_then(|s| {
                s.success()
                    .then_some(())
                    .ok_or_else(|| format!("unshare ... sh -c '{script}': {s}"))
            })
    };
    match done {
        Ok(()) => eprintln!(
            "aborted FUSE connection {} (mounted at {})",
            m.minor,
            m.mount_point.display()
        ),
        Err(e) => eprintln!("cannot abort the FUSE connection {}: {e}", abort.display()),
    }
}

/// Detaches `path` lazily, without waiting on it (`umount -l`; `fusermount3
/// -u -z` for a user's FUSE mount when not root).
pub fn detach_mount(path: &Path) {
    let ok = Command::new("umount")
        .arg("-l")
        .arg(path)
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        let _ = Command::new("fusermount3").arg("-uz").arg(path).status();
    }
}

/// Processes of this binary whose command line has an argument under
/// `under` (the commitfs processes a test started, detached daemons too).
pub fn commitfs_pids_under(under: &Path) -> Vec<i32> {
    let want = under.as_os_str().as_bytes();
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in dir.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(cmd) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let mut args = cmd.split(|&b| b == 0);
        if args.next() != Some(BIN.as_bytes()) {
            continue;
        }
        if args.any(|a| a.starts_with(want)) {
            out.push(pid);
        }
    }
    out
}

/// Runs `cmd`, a commitfs command that must refuse before it mounts anything,
/// and returns its output. It must never wedge the machine, even if the check
/// it tests is gone: the wait is bounded, and if a mount comes up (at or
/// under `under`, or a FUSE mount of a repository under it), in our mount
/// namespace or in the command's own, its FUSE connection is aborted, it is
/// detached lazily, the commitfs processes are killed, and the test fails.
pub fn run_refused(mut cmd: Command, under: &Path) -> Output {
    let under = std::fs::canonicalize(under).unwrap_or_else(|_| under.to_path_buf());
    let stdout = tempfile::tempfile().expect("a temp file");
    let stderr = tempfile::tempfile().expect("a temp file");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(stdout.try_clone().expect("dup"))
        .stderr(stderr.try_clone().expect("dup"))
        .spawn()
        .expect("the command starts");
    let pid = child.id().to_string();
    let strays = |child_alive: bool| {
        let mut m = stray_mounts("self", &under);
        if child_alive {
            m.extend(stray_mounts(&pid, &under));
        }
        m
    };
    let mut status = None;
    wait_until(Duration::from_secs(30), || {
        if let Ok(Some(s)) = child.try_wait() {
            status = Some(s);
            return true;
        }
        !strays(true).is_empty()
    });
    let mut found = strays(status.is_none());
    found.sort_by(|a, b| (a.minor, &a.mount_point).cmp(&(b.minor, &b.mount_point)));
    found.dedup_by(|a, b| a.minor == b.minor && a.mount_point == b.mount_point);
    if !found.is_empty() || status.is_none() {
        for m in &found {
            abort_fuse_connection(&pid, m);
        }
        let table = mount_table("self");
        // Deepest first.
        let mut ours: Vec<&Path> = found
            .iter()
            .filter(|m| table.iter().any(|t| t.mount_point == m.mount_point))
            .map(|m| m.mount_point.as_path())
            .collect();
        ours.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
        ours.dedup();
        for p in ours {
            detach_mount(p);
        }
        let _ = child.kill();
        for p in commitfs_pids_under(&under) {
            // SAFETY: plain kill(2) of a process this test started.
            unsafe { libc::kill(p, libc::SIGKILL) };
        }
        // Bounded: a process stuck on a FUSE request it cannot abandon does
        // not die of SIGKILL; the test says so rather than wait for ever.
        let reaped = wait_until(Duration::from_secs(10), || {
            matches!(child.try_wait(), Ok(Some(_)))
        });
        let points: Vec<_> = found.iter().map(|m| m.mount_point.clone()).collect();
        panic!(
            "{:?} should have refused before mounting; it {} (mounted: {points:?}, aborted and detached{})",
            cmd,
            if status.is_some() || !found.is_empty() {
                "mounted"
            } else {
                "did not exit in 30 s"
            },
            if reaped {
                ""
            } else {
                "; the command did not die of SIGKILL"
            }
        );
    }
    let read = |mut f: std::fs::File| {
        use std::io::{Read, Seek};
        let mut v = Vec::new();
        f.seek(std::io::SeekFrom::Start(0)).expect("seek");
        f.read_to_end(&mut v).expect("read");
        v
    };
    Output {
        status: status.expect("exited"),
        stdout: read(stdout),
        stderr: read(stderr),
    }
}

/// Bytes that do not compress (git cannot make them smaller on disk), the
/// same for the same seed.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// A commit barrier: fsync of directory `dir` (what `sync DIR` does), which
/// returns once `dir`'s branch is committed and durable.
pub fn barrier(dir: &Path) {
    std::fs::File::open(dir).unwrap().sync_all().unwrap();
}

/// fsync of file `p` (durable in the overlay, no commit), then the barrier of
/// its directory: committed.
pub fn commit_now(p: &Path) {
    std::fs::File::open(p).unwrap().sync_all().unwrap();
    barrier(p.parent().unwrap());
}

/// `commitfs status --json` of mount `m`.
#[allow(dead_code)] // not every test binary asks for it
pub fn status_json(m: &Path) -> serde_json::Value {
    let out = commitfs(&[
        std::ffi::OsStr::new("status"),
        m.as_os_str(),
        std::ffi::OsStr::new("--json"),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Branch `name`'s entry in a `commitfs status --json` answer (`null` if it
/// has none).
pub fn branch_in(st: &serde_json::Value, name: &str) -> serde_json::Value {
    st["branches"]
        .as_array()
        .and_then(|bs| bs.iter().find(|b| b["name"] == name))
        .cloned()
        .unwrap_or(serde_json::Value::Null)
}

/// Branch `name`'s entry in the status of the mount at `mnt`, now.
pub fn branch_status(mnt: &Path, name: &str) -> serde_json::Value {
    branch_in(&status_json(mnt), name)
}

/// `renameat2(2)` of `from` to `to` with `flags`.
pub fn renameat2(from: &Path, to: &Path, flags: u32) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let a = std::ffi::CString::new(from.as_os_str().as_bytes()).unwrap();
    let b = std::ffi::CString::new(to.as_os_str().as_bytes()).unwrap();
    // SAFETY: two valid C strings, and no file descriptors.
    let rc = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            a.as_ptr(),
            libc::AT_FDCWD,
            b.as_ptr(),
            flags,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Every path below `dir` (relative, as text) with what `f` takes from its
/// lstat: read_dir and lstat as `find` does, no file read.
#[allow(dead_code)]
pub fn walk_tree<T>(
    dir: &Path,
    f: impl Fn(&std::fs::Metadata) -> T,
) -> std::collections::BTreeMap<String, T> {
    let mut out = std::collections::BTreeMap::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let md = std::fs::symlink_metadata(&p).unwrap();
            let rel = p.strip_prefix(dir).unwrap().to_string_lossy().into_owned();
            out.insert(rel, f(&md));
            if md.is_dir() {
                todo.push(p);
            }
        }
    }
    out
}
