//! The command line: bad input gets one clear line and a non-zero exit; the
//! mount(8) helper form and fstab lines work; `mount` detaches and returns once
//! the mount answers.

mod common;

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use common::*;

fn small_repo() -> (TestRepo, PathBuf) {
    let r = TestRepo::new();
    r.write("a.txt", b"alpha\n");
    r.commit("one");
    git(&r.work(), &["tag", "v1"]);
    let bare = r.publish();
    (r, bare)
}

/// Exactly one line on stderr, containing every one of `words`; exit non-zero.
/// The command succeeded (else its stderr is the failure's message).
fn assert_succeeded(out: &Output) {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn assert_one_line_error(out: &Output, words: &[&str]) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "expected failure, got success; stderr: {err}"
    );
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err:?}");
    assert!(
        !err.contains("panicked") && !err.contains("RUST_BACKTRACE"),
        "{err}"
    );
    for w in words {
        assert!(err.contains(w), "{err:?} should mention {w:?}");
    }
}

fn os(s: &Path) -> &OsStr {
    s.as_os_str()
}

#[test]
// claim: repo-missing: "REPO missing | repository ... does not exist"
fn bad_input_gets_one_clear_line() {
    let (r, bare) = small_repo();
    let mnt = r.mountpoint("mnt");
    let missing = r.dir.path().join("no-such.git");
    let not_git = r.mountpoint("plain-dir");
    let file = r.dir.path().join("a-file");
    std::fs::write(&file, b"x").unwrap();
    let m = |repo: &Path, mp: &Path, extra: &[&str]| {
        let mut args: Vec<&OsStr> = vec![OsStr::new("mount"), os(repo), os(mp)];
        args.extend(extra.iter().map(OsStr::new));
        commitfs(&args)
    };
    assert_one_line_error(&m(&missing, &mnt, &[]), &["does not exist", "no-such.git"]);
    assert_one_line_error(&m(&not_git, &mnt, &[]), &["not a Git repository"]);
    assert_one_line_error(
        &m(&bare, &r.dir.path().join("nope"), &[]),
        &["does not exist", "mkdir"],
    );
    assert_one_line_error(&m(&bare, &file, &[]), &["not a directory"]);
    assert_one_line_error(
        &m(&bare, &mnt, &["--ref", "no-such-branch"]),
        &["no-such-branch", "does not resolve"],
    );
    assert_one_line_error(
        &m(&bare, &mnt, &["--frobnicate"]),
        &["unknown option '--frobnicate'", "--help"],
    );
    assert_one_line_error(
        &m(&bare, &mnt, &["--remot", "x"]),
        &[
            "unknown option '--remot'",
            "did you mean '--remote'",
            "--help",
        ],
    );
    assert_one_line_error(
        &commitfs(&[OsStr::new("status"), OsStr::new("--bogus"), os(&mnt)]),
        &["unknown option '--bogus'", "--help"],
    );
    assert_one_line_error(
        &m(&bare, &mnt, &["-o", "ref=main,frobnicate"]),
        &["unknown option", "frobnicate"],
    );
    assert_one_line_error(&m(&bare, &mnt, &["--cache-size", "lots"]), &["lots"]);
    assert_one_line_error(
        &m(&bare, &mnt, &["--fetch-interval", "0"]),
        &["fetch interval", "seconds"],
    );
    assert_one_line_error(&m(&bare, &mnt, &["-o", "fetch-interval=soon"]), &["soon"]);
    assert_one_line_error(
        &commitfs(&[OsStr::new("unmount"), os(&mnt)]),
        &["not mounted"],
    );
    // Already mounted.
    let first = Mount::new(&bare, &mnt, &[]);
    assert_one_line_error(&m(&bare, &mnt, &[]), &["already mounted"]);
    drop(first);
    assert!(!is_mounted(&mnt));
    // No fusermount3 on PATH.
    let out = Command::new(BIN)
        .env("PATH", r.dir.path().join("empty-bin"))
        .args([OsStr::new("mount"), os(&bare), os(&mnt)])
        .output()
        .unwrap();
    assert_one_line_error(&out, &["fusermount3", "fuse3"]);
    // Nothing was left mounted by any of the failures.
    assert!(!is_mounted(&mnt));
}

/// /dev/fuse missing: run in a private mount namespace whose /dev is an empty tmpfs.
#[test]
#[cfg_attr(commitfs_not_root, ignore = "needs root: unshare -m")]
// claim: no-dev-fuse: "no /dev/fuse, no fusermount3 | one line naming the fix"
fn missing_dev_fuse_is_reported() {
    require_root();
    let (r, bare) = small_repo();
    let mnt = r.mountpoint("mnt");
    let script = format!(
        "mount -t tmpfs none /dev && exec '{}' mount '{}' '{}' --foreground",
        BIN,
        bare.display(),
        mnt.display()
    );
    let out = Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c", &script])
        .output()
        .unwrap();
    assert_one_line_error(&out, &["/dev/fuse"]);
}

/// `commitfs mount REPO MNT` (detached), which must succeed.
fn mount_detached(repo: &Path, mnt: &Path) {
    let out = commitfs(&[OsStr::new("mount"), os(repo), os(mnt)]);
    assert_succeeded(&out);
}

/// A detached daemon with no --log-file logs to the system log: a failing
/// fetch reaches the syslog socket (one the test binds, named by
/// COMMITFS_SYSLOG) as one line with its priority and the mount point.
#[test]
// claim: detached-syslog: "the mount point in every line"
fn a_detached_daemon_logs_to_the_system_log() {
    let (r, bare) = small_repo();
    let mnt = r.mountpoint("mnt");
    let sock = r.dir.path().join("dev-log");
    let server = std::os::unix::net::UnixDatagram::bind(&sock).unwrap();
    server
        .set_read_timeout(Some(std::time::Duration::from_secs(20)))
        .unwrap();
    let gone = r.dir.path().join("no-such-server.git");
    let out = Command::new(BIN)
        .env("COMMITFS_SYSLOG", &sock)
        .args([OsStr::new("mount"), os(&bare), os(&mnt)])
        .args(["--fetch-interval", "0.2", "--remote"])
        .arg(format!("file://{}", gone.display()))
        .output()
        .unwrap();
    assert_succeeded(&out);
    let mut line = String::new();
    let mut buf = vec![0u8; 16384];
    for _ in 0..50 {
        let n = server
            .recv(&mut buf)
            .expect("a line reaches the syslog socket");
        line = String::from_utf8_lossy(&buf[..n]).into_owned();
        if line.contains("commitfs::sync") {
            break;
        }
    }
    assert!(line.starts_with("<28>commitfs["), "{line}");
    assert!(
        line.contains(&format!(": {}: WARN", mnt.display())),
        "{line}"
    );
    assert!(line.contains("no-such-server.git"), "{line}");
    assert!(!line.contains('\n'), "{line}");
    assert_succeeded(&commitfs(&[OsStr::new("unmount"), os(&mnt)]));
}

/// `commitfs mount` (no --foreground) returns once the mount answers, and the
/// daemon goes away after `commitfs unmount`.
#[test]
// claim: mount-detaches: "detaches; exits 0 once the mount answers"
// claim: unmount-cli: "commits every pending change durably"
fn mount_detaches_and_unmount_ends_the_daemon() {
    let (r, bare) = small_repo();
    let mnt = r.mountpoint("mnt");
    mount_detached(&bare, &mnt);
    // No waiting: the mount answers when mount returns.
    assert_eq!(std::fs::read(mnt.join("main/a.txt")).unwrap(), b"alpha\n");
    let daemons = || daemon_pids(&mnt);
    assert_eq!(daemons().len(), 1, "one daemon serves the mount");
    // A save just before unmount is in git the moment unmount returns.
    std::fs::write(mnt.join("main/last.txt"), b"last\n").unwrap();
    let out = commitfs(&[OsStr::new("unmount"), os(&mnt)]);
    assert_succeeded(&out);
    assert!(!is_mounted(&mnt));
    assert_eq!(git(&bare, &["show", "main:last.txt"]), "last");
    assert!(
        wait_until(Duration::from_secs(10), || daemons().is_empty()),
        "daemon exits"
    );
}

/// `commitfs unmount` of a mount a program holds a file open in fails with
/// one line, and the mount keeps serving; once the file is closed it
/// unmounts (the kernel's teardown runs in a child of its own: the command
/// returns once the mount is gone from the mount table).
#[test]
// claim: unmount-cli: "MNT is busy if a program is inside"
fn unmount_of_a_busy_mount_says_so_and_keeps_it() {
    let (r, bare) = small_repo();
    let mnt = r.mountpoint("mnt");
    mount_detached(&bare, &mnt);
    let held = std::fs::File::open(mnt.join("main/a.txt")).unwrap();
    let out = commitfs(&[OsStr::new("unmount"), os(&mnt)]);
    assert_one_line_error(&out, &["busy", "fuser -vm"]);
    assert!(is_mounted(&mnt));
    assert_eq!(std::fs::read(mnt.join("main/a.txt")).unwrap(), b"alpha\n");
    drop(held);
    let out = commitfs(&[OsStr::new("unmount"), os(&mnt)]);
    assert_succeeded(&out);
    assert!(!is_mounted(&mnt));
    assert!(
        wait_until(Duration::from_secs(10), || daemon_pids(&mnt).is_empty()),
        "daemon exits"
    );
}

/// Processes of ours whose command line names `mnt` (the daemons this test started).
fn daemon_pids(mnt: &Path) -> Vec<u32> {
    let want = mnt.as_os_str().as_encoded_bytes();
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cmd) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        let zombie = stat
            .rsplit(')')
            .next()
            .is_some_and(|s| s.trim_start().starts_with('Z'));
        if !zombie && cmd.split(|&b| b == 0).any(|a| a == want) && cmd.starts_with(BIN.as_bytes()) {
            out.push(pid);
        }
    }
    out
}

/// Puts the binary where mount(8) looks for helpers (/usr/local/bin) for the
/// length of a test. Something else already there is left alone, and the test
/// fails saying so: mount(8) would run that instead of the binary under test.
struct Installed(bool);

impl Installed {
    fn new() -> Installed {
        let dst = Path::new("/usr/local/bin/commitfs");
        if let Ok(t) = std::fs::read_link(dst)
            && t == Path::new(BIN)
        {
            return Installed(false);
        }
        if dst.exists() {
            let same = std::fs::read(dst).ok() == std::fs::read(BIN).ok();
            assert!(
                same,
                "/usr/local/bin/commitfs is not the binary under test: remove it or install this build there"
            );
            return Installed(false);
        }
        std::os::unix::fs::symlink(BIN, dst).expect("can link the helper into /usr/local/bin");
        Installed(true)
    }
}

impl Drop for Installed {
    fn drop(&mut self) {
        if self.0 {
            let _ = std::fs::remove_file("/usr/local/bin/commitfs");
        }
    }
}

#[test]
#[cfg_attr(commitfs_not_root, ignore = "needs root: mount(8) with fuse.commitfs")]
// claim: mount8-helper: "commitfs REPO MNT -o OPTS | the mount(8) helper form"
fn mount8_helper_form_and_fstab_line() {
    require_root();
    let _installed = Installed::new();
    let (r, bare) = small_repo();
    // Whatever happens below, nothing stays mounted.
    let _guard = UnmountOnDrop(r.dir.path().join("mnt"));
    // mount -t fuse.commitfs REPO MNT -o ref=main
    let mnt = r.mountpoint("mnt");
    let st = Command::new("mount")
        .args(["-t", "fuse.commitfs"])
        .arg(&bare)
        .arg(&mnt)
        .args(["-o", "ref=main"])
        .status()
        .unwrap();
    assert!(st.success());
    assert_eq!(std::fs::read(mnt.join("a.txt")).unwrap(), b"alpha\n");
    // A branch mounted through mount(8) is writable; a plain umount commits.
    std::fs::write(mnt.join("b.txt"), b"beta\n").unwrap();
    assert!(Command::new("umount").arg(&mnt).status().unwrap().success());
    assert!(wait_until(Duration::from_secs(10), || daemon_pids(&mnt).is_empty()));
    assert_eq!(git(&bare, &["show", "main:b.txt"]), "beta");
    // An fstab line, with generic options mount(8) adds or implies.
    let fstab = r.dir.path().join("fstab");
    std::fs::write(
        &fstab,
        format!(
            "{} {} fuse.commitfs ref=v1,ro,nofail,noatime,x-systemd.automount 0 0\n",
            bare.display(),
            mnt.display()
        ),
    )
    .unwrap();
    let st = Command::new("mount")
        .arg("--fstab")
        .arg(&fstab)
        .arg(&mnt)
        .status()
        .unwrap();
    assert!(st.success());
    assert_eq!(std::fs::read(mnt.join("a.txt")).unwrap(), b"alpha\n");
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
    let line = mounts
        .lines()
        .find(|l| l.contains(&*mnt.to_string_lossy()))
        .unwrap();
    assert!(line.contains("fuse.commitfs ro,"), "{line}");
    let out = commitfs(&[OsStr::new("unmount"), os(&mnt)]);
    assert_succeeded(&out);
    assert!(wait_until(Duration::from_secs(10), || daemon_pids(&mnt).is_empty()));
}

#[test]
fn help_and_version_succeed() {
    let out = commitfs(&[OsStr::new("--help")]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("mount") && text.contains("unmount"), "{text}");
    let out = commitfs(&[OsStr::new("mount"), OsStr::new("--help")]);
    let text = String::from_utf8_lossy(&out.stdout);
    for opt in [
        "--ref",
        "--read-only",
        "--cache-size",
        "--allow-other",
        "--verbose",
        "--foreground",
        "--author",
    ] {
        assert!(text.contains(opt), "mount --help lists {opt}");
    }
}

/// Without --allow-other only the mounting user gets in; with it, another user
/// can read what the modes allow.
#[test]
#[cfg_attr(commitfs_not_root, ignore = "needs root: acts as another user")]
// claim: allow-other: "with it, the kernel checks permissions against the modes shown"
fn allow_other_lets_other_users_in() {
    require_root();
    use std::os::unix::fs::PermissionsExt;
    let (r, bare) = small_repo();
    std::fs::set_permissions(r.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let as_nobody = |path: &Path| {
        Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "cat"])
            .arg(path)
            .output()
            .unwrap()
    };
    let closed = r.mountpoint("closed");
    let m = Mount::new(&bare, &closed, &[]);
    let out = as_nobody(&m.path.join("main/a.txt"));
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Permission denied"),
        "{out:?}"
    );
    drop(m);
    let open = r.mountpoint("open");
    let m = Mount::new(&bare, &open, &["-o", "allow_other"]);
    let out = as_nobody(&m.path.join("main/a.txt"));
    assert!(out.status.success(), "{out:?}");
    assert_eq!(out.stdout, b"alpha\n");
}

/// `-f -v` stays attached and logs to stderr; the daemon serves requests on
/// several FUSE threads.
#[test]
fn foreground_verbose_logs_and_serves_on_several_threads() {
    let (r, bare) = small_repo();
    let mnt = r.mountpoint("mnt");
    let mut child = Command::new(BIN)
        .args([
            OsStr::new("mount"),
            os(&bare),
            os(&mnt),
            OsStr::new("-f"),
            OsStr::new("-v"),
        ])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Unmounted even if an assertion below fails; the daemon exits with it.
    let _guard = UnmountOnDrop(mnt.clone());
    assert!(wait_until(Duration::from_secs(10), || is_mounted(&mnt)));
    assert_eq!(std::fs::read(mnt.join("main/a.txt")).unwrap(), b"alpha\n");
    let workers = || {
        std::fs::read_dir(format!("/proc/{}/task", child.id()))
            .unwrap()
            .filter(|t| {
                std::fs::read_to_string(t.as_ref().unwrap().path().join("comm"))
                    .is_ok_and(|c| c.starts_with("fuser-"))
            })
            .count()
    };
    // fuser starts its worker threads as the session runs, not all at once.
    assert!(
        wait_until(Duration::from_secs(5), || workers() >= 2),
        "{} FUSE worker threads",
        workers()
    );
    let out = commitfs(&[OsStr::new("unmount"), os(&mnt)]);
    assert_succeeded(&out);
    assert!(wait_until(Duration::from_secs(10), || matches!(
        child.try_wait(),
        Ok(Some(_))
    )));
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(
        log.contains("mounted") && log.contains("unmounted"),
        "{log}"
    );
}

/// On a `--ref` mount, `commitfs status` names the ref it shows and its
/// commit, and lists that branch only (none for a tag), not the
/// repository's other branches.
#[test]
// claim: status-ref-mount: "and only that branch if the ref is one (none for a tag or a commit)"
fn status_of_a_ref_mount_shows_the_mounted_ref() {
    let (r, bare) = small_repo();
    git(&bare, &["branch", "other"]);
    let tip = git(&bare, &["rev-parse", "main"]);
    for (spec, branches) in [("v1", vec![]), ("main", vec!["main"])] {
        let mnt = r.mountpoint(&format!("mnt-{spec}"));
        let m = Mount::new(&bare, &mnt, &["--ref", spec]);
        let out = commitfs(&[OsStr::new("status"), os(&mnt), OsStr::new("--json")]);
        assert_succeeded(&out);
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(json["mounted_ref"], spec, "{json}");
        assert_eq!(json["mounted_commit"], tip.as_str(), "{json}");
        let names: Vec<&str> = json["branches"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, branches, "{json}");
        let text = String::from_utf8(commitfs(&[OsStr::new("status"), os(&mnt)]).stdout).unwrap();
        assert!(
            text.contains(&format!("mounted ref: {spec} at {}", &tip[..12])),
            "{text}"
        );
        assert!(!text.contains("branch other"), "{text}");
        m.unmount();
    }
}

/// `commitfs status` shows uncommitted changes, the last commit and the cache,
/// as text and JSON, and answers while every request thread is busy.
#[test]
// claim: status: "so at once however busy the daemon is"
fn status_shows_branches_commits_and_cache_and_answers_while_busy() {
    let (r, bare) = small_repo();
    let mnt = r.mountpoint("mnt");
    let release = r.dir.path().join("release");
    let m = Mount::with_env(
        &bare,
        &mnt,
        &["--settle", "60000"],
        &[
            ("COMMITFS_TEST_BLOCK_PREFIX", "block-"),
            ("COMMITFS_TEST_BLOCK_RELEASE", release.to_str().unwrap()),
        ],
    );
    let status = |json: bool| {
        let mut args = vec![OsStr::new("status"), os(&mnt)];
        if json {
            args.push(OsStr::new("--json"));
        }
        let out = commitfs(&args);
        assert_succeeded(&out);
        String::from_utf8(out.stdout).unwrap()
    };
    std::fs::write(mnt.join("main/new.txt"), b"new\n").unwrap();
    let text = status(false);
    assert!(text.contains("branch main:"), "{text}");
    assert!(text.contains("uncommitted changes"), "{text}");
    assert!(text.contains("cache:"), "{text}");

    let st = Command::new("sync").arg(mnt.join("main")).status().unwrap();
    assert!(st.success());
    let json: serde_json::Value = serde_json::from_str(&status(true)).unwrap();
    let main = branch_in(&json, "main");
    let tip = git(&bare, &["rev-parse", "main"]);
    assert_eq!(main["uncommitted"], false);
    assert_eq!(main["last_commit"], tip.as_str());
    assert_eq!(main["tip"], tip.as_str());
    assert_eq!(main["last_commit_message"], "Add new.txt");
    assert!(json["cache"]["capacity"].as_u64().unwrap() > 0);

    // Busy: every request thread holds a lookup (the debug build's hook
    // keeps a lookup of `block-*` until the release file exists); status is
    // served by its own thread and still answers, while they are held.
    let lookups = || {
        let v: serde_json::Value = serde_json::from_str(&status(true)).unwrap();
        v["requests"]["lookup"].as_u64().unwrap()
    };
    let base = lookups();
    let held: Vec<_> = (0..12)
        .map(|i| {
            let p = mnt.join(format!("main/block-{i}"));
            std::thread::spawn(move || std::fs::metadata(&p).is_ok())
        })
        .collect();
    assert!(
        wait_until(Duration::from_secs(30), || lookups() >= base + 8),
        "all 8 request threads hold a lookup, and status answers meanwhile"
    );
    let text = status(false);
    assert!(text.contains("branch main:"), "{text}");
    assert!(
        held.iter().all(|t| !t.is_finished()),
        "the lookups were still held when status answered"
    );
    std::fs::write(&release, b"").unwrap();
    for t in held {
        assert!(!t.join().unwrap(), "block-* does not exist");
    }
    m.unmount();

    let out = commitfs(&[OsStr::new("status"), os(&mnt)]);
    assert_one_line_error(&out, &["not mounted"]);
}

/// `commitfs ARGS` as a command, for `run_refused`.
fn cmd(args: &[&OsStr]) -> Command {
    let mut c = Command::new(BIN);
    c.args(args);
    c
}

/// A mount point the daemon would read through (the repository itself, inside
/// it, above it, through symlinks either side; the common directory of a
/// linked work tree; an alternate object directory; a spill directory or log
/// file inside the mount point) is refused with one line before anything is
/// mounted, in each command-line form.
#[test]
// claim: mount-point-refused: "refused before mounting: mount point MNT is inside the repository R"
fn a_mount_point_the_daemon_would_read_through_is_refused() {
    let (r, bare) = small_repo();
    let top = r.dir.path();
    let mnt = r.mountpoint("mnt");
    let own = "its own mount";
    let refused = |c: Command, words: &[&str]| {
        let out = run_refused(c, top);
        assert_one_line_error(&out, words);
        assert!(stray_mounts("self", top).is_empty());
    };
    let f = OsStr::new("--foreground");
    let mount = OsStr::new("mount");
    // The repository itself (a plain, detached mount).
    refused(
        cmd(&[mount, os(&bare), os(&bare)]),
        &["is the repository", own],
    );
    // Inside it: the mount(8) helper form, as issue 9 found it.
    refused(
        cmd(&[
            os(&bare),
            os(&bare.join("refs/heads")),
            OsStr::new("-o"),
            OsStr::new("ro"),
        ]),
        &["is inside the repository", own],
    );
    refused(
        cmd(&[mount, os(&bare), os(&bare.join("objects")), f]),
        &["is inside the repository", own],
    );
    // Above it: its parent.
    refused(
        cmd(&[mount, os(&bare), os(top), f]),
        &["is above the repository", own],
    );
    // Through symlinks: a mount point that is a link to the repository's
    // parent, or into the repository; a repository named through a link.
    let up = top.join("up");
    std::os::unix::fs::symlink(top, &up).unwrap();
    refused(
        cmd(&[mount, os(&bare), os(&up), f]),
        &["is above the repository", "that is", own],
    );
    let into = top.join("into");
    std::os::unix::fs::symlink(bare.join("refs/tags"), &into).unwrap();
    refused(
        cmd(&[mount, os(&bare), os(&into), f]),
        &["is inside the repository", own],
    );
    let alias = top.join("alias.git");
    std::os::unix::fs::symlink(&bare, &alias).unwrap();
    refused(
        cmd(&[mount, os(&alias), os(&bare.join("refs")), f]),
        &["is inside the repository", own],
    );
    // A linked work tree: its git directory is .git/worktrees/NAME, its
    // common directory the main .git.
    let linked = top.join("linked");
    git(
        &r.work(),
        &[
            "worktree",
            "add",
            "-q",
            "-b",
            "side",
            linked.to_str().unwrap(),
        ],
    );
    refused(
        cmd(&[mount, os(&linked), os(&r.work().join(".git/refs")), f]),
        &["is inside the repository's common directory", own],
    );
    // An alternate object directory.
    let borrower = top.join("borrower.git");
    git(top, &["init", "-q", "--bare", "borrower.git"]);
    std::fs::write(
        borrower.join("objects/info/alternates"),
        format!("{}\n", bare.join("objects").display()),
    )
    .unwrap();
    refused(
        cmd(&[mount, os(&borrower), os(&bare.join("objects/pack")), f]),
        &["is inside the alternate object directory", own],
    );
    // A spill directory or a log file inside the mount point.
    std::fs::create_dir(mnt.join("spill")).unwrap();
    refused(
        cmd(&[
            mount,
            os(&bare),
            os(&mnt),
            OsStr::new("--spill-dir"),
            os(&mnt.join("spill")),
            f,
        ]),
        &["is above the spill directory", "--spill-dir", own],
    );
    refused(
        cmd(&[
            os(&bare),
            os(&mnt),
            OsStr::new("-o"),
            OsStr::new(&format!("spill-dir={}", mnt.display())),
        ]),
        &["is the spill directory", own],
    );
    refused(
        cmd(&[
            mount,
            os(&bare),
            os(&mnt),
            OsStr::new("--log-file"),
            os(&mnt.join("log.txt")),
            f,
        ]),
        &["is the log file's directory", "--log-file", own],
    );
    assert!(
        !mnt.join("log.txt").exists(),
        "no log file was made in the mount point"
    );
    // Beside the repository, the same mount comes up.
    let m = Mount::new(&bare, &mnt, &[]);
    assert_eq!(std::fs::read(mnt.join("main/a.txt")).unwrap(), b"alpha\n");
    m.unmount();
}

/// `/` and `/tmp`-like ancestors of the repository, named through symlinks,
/// are refused too. Run in a private mount namespace, so that even a
/// regression could not stack a mount over the machine's `/` or `/tmp`.
#[test]
#[cfg_attr(commitfs_not_root, ignore = "needs root: unshare -m")]
fn a_mount_point_above_the_repository_through_a_symlink_to_root_is_refused() {
    require_root();
    let (r, bare) = small_repo();
    let top = r.dir.path();
    let to_root = top.join("to-root");
    std::os::unix::fs::symlink("/", &to_root).unwrap();
    let to_parent = top.join("to-parent");
    std::os::unix::fs::symlink(
        std::fs::canonicalize(top).unwrap().parent().unwrap(),
        &to_parent,
    )
    .unwrap();
    for link in [&to_parent, &to_root] {
        let mut c = Command::new("unshare");
        c.args(["-m", "--propagation", "private", BIN, "mount"])
            .arg(&bare)
            .arg(link)
            .arg("--foreground");
        let out = run_refused(c, top);
        assert_one_line_error(
            &out,
            &["is above the repository", "that is", "its own mount"],
        );
    }
}

/// A log file whose directory is missing, or that cannot be written (under a
/// regular file; on a read-only file system), is refused before mounting;
/// one that can be written gets the detached daemon's log.
#[test]
// claim: log-file-refused: "whose directory is missing or cannot be written"
fn a_log_file_that_cannot_be_written_is_refused() {
    let (r, bare) = small_repo();
    let top = r.dir.path();
    let mnt = r.mountpoint("mnt");
    let file = top.join("a-file");
    std::fs::write(&file, b"x").unwrap();
    let mount = OsStr::new("mount");
    let missing = top.join("no-such-dir/commitfs.log");
    let out = run_refused(
        cmd(&[
            mount,
            os(&bare),
            os(&mnt),
            OsStr::new("--log-file"),
            os(&missing),
        ]),
        top,
    );
    assert_one_line_error(
        &out,
        &["no-such-dir", "does not exist", "mkdir -p", "--log-file"],
    );
    let under_file = file.join("commitfs.log");
    let opt = format!("log-file={}", under_file.display());
    let out = run_refused(
        cmd(&[os(&bare), os(&mnt), OsStr::new("-o"), OsStr::new(&opt)]),
        top,
    );
    assert_one_line_error(&out, &["a-file", "not a directory", "--log-file"]);
    // A directory as the log file.
    let out = run_refused(
        cmd(&[
            mount,
            os(&bare),
            os(&mnt),
            OsStr::new("--log-file"),
            os(top),
            OsStr::new("-f"),
        ]),
        top,
    );
    assert_one_line_error(&out, &["is a directory"]);
    assert!(!is_mounted(&mnt));
    // One that can be written gets the log.
    let log = top.join("logs/commitfs.log");
    std::fs::create_dir(top.join("logs")).unwrap();
    let _guard = UnmountOnDrop(mnt.clone());
    let out = commitfs(&[
        mount,
        os(&bare),
        os(&mnt),
        OsStr::new("--log-file"),
        os(&log),
        OsStr::new("-v"),
    ]);
    assert_succeeded(&out);
    let out = commitfs(&[OsStr::new("unmount"), os(&mnt)]);
    assert_succeeded(&out);
    assert!(
        wait_until(Duration::from_secs(10), || std::fs::read_to_string(&log)
            .is_ok_and(|l| l.contains("unmounted"))),
        "the daemon logs into {}",
        log.display()
    );
}

/// A log file on a read-only file system (a tmpfs mounted ro, in a mount
/// namespace of the test's own): root's mode bits do not stop it, EROFS does.
#[test]
#[cfg_attr(commitfs_not_root, ignore = "needs root: unshare -m, mount -t tmpfs")]
fn a_log_file_on_a_read_only_file_system_is_refused() {
    require_root();
    let (r, bare) = small_repo();
    let mnt = r.mountpoint("mnt");
    let ro = r.mountpoint("ro");
    let script = format!(
        "mount -t tmpfs -o ro none '{}' && exec '{}' mount '{}' '{}' --foreground --log-file '{}/commitfs.log'",
        ro.display(),
        BIN,
        bare.display(),
        mnt.display(),
        ro.display()
    );
    let mut c = Command::new("unshare");
    c.args(["-m", "--propagation", "private", "sh", "-c", &script]);
    let out = run_refused(c, &mnt);
    assert_one_line_error(
        &out,
        &[
            "cannot write the log file",
            "Read-only file system",
            "--log-file",
        ],
    );
}

/// `commitfs status` of a mount that belongs to someone else says so, names
/// the owner, and leaves its status to them, whether or not the asker may
/// enter the mount (without allow_other not even stat reaches it); never
/// that the daemon died.
#[test]
#[cfg_attr(commitfs_not_root, ignore = "needs root: acts as another user")]
// claim: status-other-user: "MNT is mounted by another user, uid N (name): its status is theirs to read"
fn status_of_another_users_mount_names_its_owner() {
    require_root();
    use std::os::unix::fs::PermissionsExt;
    let (r, bare) = small_repo();
    std::fs::set_permissions(r.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let as_nobody = |args: &[&OsStr]| {
        Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", BIN])
            .args(args)
            .output()
            .unwrap()
    };
    for (name, extra) in [("closed", &[][..]), ("open", &["--allow-other"][..])] {
        let mnt = r.mountpoint(name);
        let m = Mount::new(&bare, &mnt, extra);
        for json in [false, true] {
            let mut args = vec![OsStr::new("status"), os(&mnt)];
            if json {
                args.push(OsStr::new("--json"));
            }
            let out = as_nobody(&args);
            assert_one_line_error(
                &out,
                &["another user", "uid 0 (root)", "theirs to read", name],
            );
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(
                !err.contains("died") && !err.contains("not mounted"),
                "{err}"
            );
        }
        // Its owner still reads it.
        let out = commitfs(&[OsStr::new("status"), os(&mnt)]);
        assert_succeeded(&out);
        m.unmount();
    }
}

/// Root asking about another user's mount reads that user's socket
/// directory (/tmp/commitfs-UID when the daemon had no XDG_RUNTIME_DIR).
/// The mount is made by a daemon whose real uid is 65534 (so that the mount
/// and its socket are that user's) and whose effective uid is root (/dev/fuse
/// here is root's only).
#[test]
#[cfg_attr(commitfs_not_root, ignore = "needs root: acts as another user")]
fn root_reads_the_status_of_another_users_mount() {
    require_root();
    use std::os::unix::fs::{DirBuilderExt, MetadataExt};
    let (r, bare) = small_repo();
    let mnt = r.mountpoint("mnt");
    let dir = Path::new("/tmp/commitfs-65534");
    let made = std::fs::DirBuilder::new().mode(0o700).create(dir).is_ok();
    if made {
        std::os::unix::fs::chown(dir, Some(65534), Some(65534)).unwrap();
    }
    let md = std::fs::symlink_metadata(dir).unwrap();
    assert!(
        md.is_dir() && md.uid() == 65534 && md.mode() & 0o077 == 0,
        "{} is not a private directory of uid 65534",
        dir.display()
    );
    let mut daemon = Command::new("setpriv")
        .args([
            "--ruid=65534",
            "--rgid=65534",
            "--clear-groups",
            BIN,
            "mount",
        ])
        .arg(&bare)
        .arg(&mnt)
        .arg("--foreground")
        .env_remove("XDG_RUNTIME_DIR")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let _guard = UnmountOnDrop(mnt.clone());
    let up = wait_until(Duration::from_secs(10), || {
        is_mounted(&mnt) || matches!(daemon.try_wait(), Ok(Some(_)))
    });
    assert!(up && is_mounted(&mnt), "the mount comes up");
    let table = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let line = table
        .lines()
        .find(|l| l.contains(&*mnt.to_string_lossy()))
        .unwrap();
    assert!(line.contains("user_id=65534"), "{line}");
    // The control socket is bound once the mount is up; ask until it answers.
    let mut last = None;
    let answered = wait_until(Duration::from_secs(10), || {
        let out = commitfs(&[OsStr::new("status"), os(&mnt)]);
        let ok = out.status.success();
        last = Some(out);
        ok
    });
    let out = last.unwrap();
    assert!(answered, "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("branch main:"), "{text}");
    // Not a commitfs unmount: root may not enter a mount without
    // allow_other; a plain umount, and the daemon exits.
    assert!(Command::new("umount").arg(&mnt).status().unwrap().success());
    let exited = wait_until(Duration::from_secs(10), || {
        matches!(daemon.try_wait(), Ok(Some(_)))
    });
    if !exited {
        let _ = daemon.kill();
    }
    let _ = daemon.wait();
    assert!(exited, "the daemon exits after umount");
    if made {
        let _ = std::fs::remove_dir(dir);
    }
}

/// `commitfs unmount` by a user who did not mount it goes through
/// fusermount3, which refuses: one line saying so, and the mount stays.
#[test]
#[cfg_attr(commitfs_not_root, ignore = "needs root: acts as another user")]
fn unmount_by_another_user_is_refused_and_keeps_the_mount() {
    require_root();
    use std::os::unix::fs::PermissionsExt;
    let (r, bare) = small_repo();
    std::fs::set_permissions(r.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let mnt = r.mountpoint("mnt");
    mount_detached(&bare, &mnt);
    let out = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            BIN,
            "unmount",
        ])
        .arg(&mnt)
        .output()
        .unwrap();
    assert_one_line_error(&out, &["cannot unmount", "fusermount3"]);
    assert!(is_mounted(&mnt));
    assert_eq!(std::fs::read(mnt.join("main/a.txt")).unwrap(), b"alpha\n");
    let out = commitfs(&[OsStr::new("unmount"), os(&mnt)]);
    assert_succeeded(&out);
    assert!(!is_mounted(&mnt));
}
