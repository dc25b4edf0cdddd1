//! Shared test harness: repositories made with git in a temp dir, and real mounts
//! of them through the kernel, unmounted (and their daemons reaped) on drop.

#![allow(dead_code)]

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
        let dir = tempfile::Builder::new()
            .prefix("commitfs-test")
            .tempdir()
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
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
        let kb: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
        kb * 1024
    }

    pub fn unmount(mut self) {
        self.do_unmount();
    }

    /// SIGKILL to the daemon, as a crash: the mount is left dead (ENOTCONN),
    /// for the next mount or `commitfs unmount` to clean up.
    pub fn kill9(mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
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
