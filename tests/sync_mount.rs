//! Two machines syncing through a Git server (SPEC section 6), simulated as
//! two repositories with a mount each, and a server the tests start
//! themselves: a bare repository over file://, and `git daemon` (git://) on
//! loopback.

mod common;

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// A server repository with one commit, and two clones of it ("machines").
fn world() -> (tempfile::TempDir, PathBuf, PathBuf, PathBuf) {
    let r = TestRepo::new();
    r.write("a.txt", b"one\n");
    r.commit("initial");
    let server = r.publish();
    git(&server, &["config", "core.logAllRefUpdates", "always"]);
    let top = r.dir;
    let clone = |name: &str| {
        let p = top.path().join(name);
        git(
            top.path(),
            &["clone", "-q", "--bare", server.to_str().unwrap(), name],
        );
        p
    };
    let (a, b) = (clone("a.git"), clone("b.git"));
    (top, server, a, b)
}

fn mnt(top: &tempfile::TempDir, name: &str) -> PathBuf {
    let p = top.path().join(name);
    std::fs::create_dir_all(&p).unwrap();
    p
}

/// Commits `p`'s branch now: `p` itself if it is a directory, else its
/// directory (fsync of a directory is the commit barrier).
fn fsync(p: &Path) {
    if p.is_dir() {
        barrier(p);
    } else {
        commit_now(p);
    }
}

/// Every value `main` ever had on the server is in its final history.
fn nothing_dropped(server: &Path) {
    let log = git(
        server,
        &["reflog", "show", "--format=%H", "refs/heads/main"],
    );
    for v in log.lines() {
        let ok = Command::new("git")
            .arg("-C")
            .arg(server)
            .args(["merge-base", "--is-ancestor", v, "main"])
            .status()
            .unwrap();
        assert!(
            ok.success(),
            "{v} was main on the server and is still in its history"
        );
    }
}

struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `git daemon` serving `base` on loopback, pushes allowed.
fn git_daemon(base: &Path, port: u16) -> Daemon {
    // git-daemon itself (`git daemon` would run it as a child of its own, which
    // killing `git` leaves running).
    let exec_path = git(base, &["--exec-path"]);
    let child = Command::new(Path::new(&exec_path).join("git-daemon"))
        .args([
            "--reuseaddr",
            "--export-all",
            "--enable=receive-pack",
            "--listen=127.0.0.1",
        ])
        .arg(format!("--port={port}"))
        .arg(format!("--base-path={}", base.display()))
        .arg(base)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    assert!(
        wait_until(Duration::from_secs(5), || std::net::TcpStream::connect((
            "127.0.0.1",
            port
        ))
        .is_ok()),
        "git daemon listens"
    );
    Daemon(child)
}

/// `lighttpd` running `git http-backend` for the repositories in `base`
/// (smart HTTP, pushes allowed), on loopback.
fn http_server(top: &Path, base: &Path, port: u16) -> Daemon {
    let exec_path = git(base, &["--exec-path"]);
    let www = top.join("www");
    std::fs::create_dir_all(&www).unwrap();
    let conf = top.join("lighttpd.conf");
    std::fs::write(
        &conf,
        format!(
            r#"server.document-root = "{www}"
server.port = {port}
server.bind = "127.0.0.1"
server.errorlog = "{err}"
server.modules = ("mod_alias", "mod_setenv", "mod_cgi")
alias.url = ( "/git" => "{exec_path}/git-http-backend" )
$HTTP["url"] =~ "^/git" {{
    cgi.assign = ("" => "")
    setenv.add-environment = ( "GIT_PROJECT_ROOT" => "{base}", "GIT_HTTP_EXPORT_ALL" => "1" )
}}
"#,
            www = www.display(),
            err = top.join("lighttpd.err").display(),
            base = base.display(),
        ),
    )
    .unwrap();
    let bin = ["/usr/sbin/lighttpd", "lighttpd"]
        .into_iter()
        .find(|b| Command::new(b).arg("-v").output().is_ok())
        .expect("lighttpd is installed (scripts/setup.sh)");
    let child = Command::new(bin)
        .arg("-D")
        .arg("-f")
        .arg(&conf)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    assert!(
        wait_until(Duration::from_secs(5), || std::net::TcpStream::connect((
            "127.0.0.1",
            port
        ))
        .is_ok()),
        "lighttpd listens"
    );
    Daemon(child)
}

#[derive(Clone, Copy, Debug)]
enum Transport {
    File,
    Git,
    Http,
}

/// The server repository behind one of the transports, which a test can stop
/// and start again.
struct Server {
    kind: Transport,
    top: PathBuf,
    repo: PathBuf,
    port: u16,
    running: Option<Daemon>,
}

impl Server {
    fn start(kind: Transport, top: &Path, repo: &Path) -> Server {
        git(repo, &["config", "http.receivepack", "true"]);
        let mut s = Server {
            kind,
            top: top.to_path_buf(),
            repo: repo.to_path_buf(),
            port: free_port(),
            running: None,
        };
        s.up();
        s
    }

    fn url(&self) -> String {
        match self.kind {
            Transport::File => format!("file://{}", self.repo.display()),
            Transport::Git => format!("git://127.0.0.1:{}/repo.git", self.port),
            Transport::Http => format!("http://127.0.0.1:{}/git/repo.git", self.port),
        }
    }

    fn up(&mut self) {
        let base = self.repo.parent().unwrap().to_path_buf();
        match self.kind {
            // A file:// server is "down" while its directory is elsewhere.
            Transport::File => {
                let away = base.join("repo.git.away");
                if away.exists() {
                    std::fs::rename(&away, &self.repo).unwrap();
                }
            }
            Transport::Git => self.running = Some(git_daemon(&base, self.port)),
            Transport::Http => self.running = Some(http_server(&self.top, &base, self.port)),
        }
    }

    fn down(&mut self) {
        match self.kind {
            Transport::File => std::fs::rename(
                &self.repo,
                self.repo.parent().unwrap().join("repo.git.away"),
            )
            .unwrap(),
            _ => self.running = None,
        }
    }
}

/// A pre-receive hook on `server` that refuses every push, saying `why`;
/// removing the returned file lets pushes through again.
fn refusing_hook(server: &Path, why: &str) -> PathBuf {
    let hook = server.join("hooks/pre-receive");
    std::fs::write(&hook, format!("#!/bin/sh\necho '{why}' >&2\nexit 1\n")).unwrap();
    std::fs::set_permissions(&hook, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    hook
}

fn main_of(st: &serde_json::Value) -> serde_json::Value {
    branch_in(st, "main")
}

/// A save on A is readable on B within the fetch interval plus a second; a
/// branch made on B and a tag made on the server reach the other side. A
/// names the server by a remote of its repository; B gives the URL as -o.
// claim: sync-forward: "the branch moves forward to the server's tip"
fn save_shows_on_the_other_machine(kind: Transport) {
    let (top, server, a, b) = world();
    let srv = Server::start(kind, top.path(), &server);
    let url = srv.url();
    git(&a, &["remote", "set-url", "origin", &url]);
    let ma = Mount::new(
        &a,
        &mnt(&top, "ma"),
        &["--remote", "origin", "--fetch-interval", "1"],
    );
    let mb = Mount::new(
        &b,
        &mnt(&top, "mb"),
        &["-o", &format!("remote={url},fetch-interval=1")],
    );
    std::fs::write(ma.path.join("main/from-a.txt"), b"hello from A\n").unwrap();
    fsync(&ma.path.join("main/from-a.txt"));
    let saved = Instant::now();
    assert!(
        wait_until(Duration::from_secs(2), || std::fs::read(
            mb.path.join("main/from-a.txt")
        )
        .is_ok_and(|c| c == b"hello from A\n")),
        "{kind:?}: B reads A's save within the fetch interval plus a second"
    );
    eprintln!("{kind:?}: A -> B took {:?}", saved.elapsed());
    std::fs::create_dir(mb.path.join("topic")).unwrap();
    std::fs::write(mb.path.join("topic/t.txt"), b"topic\n").unwrap();
    fsync(&mb.path.join("topic/t.txt"));
    assert!(
        wait_until(Duration::from_secs(3), || std::fs::read(
            ma.path.join("topic/t.txt")
        )
        .is_ok()),
        "{kind:?}: a branch made on B reaches A"
    );
    git(&server, &["tag", "v9", "main"]);
    assert!(
        wait_until(Duration::from_secs(3), || std::fs::read(
            ma.path.join(".tags/v9/a.txt")
        )
        .is_ok()
            && std::fs::read(mb.path.join(".tags/v9/a.txt")).is_ok()),
        "{kind:?}: a tag from the server appears"
    );
    assert_eq!(status_json(&ma.path)["remote"]["url"], "origin");
    let st = status_json(&mb.path);
    assert!(st["remote"]["url"].as_str().unwrap().ends_with("repo.git"));
    ma.unmount();
    mb.unmount();
    for r in [&server, &a, &b] {
        fsck(r);
    }
}

/// Both machines edit the same file and different files at the same time:
/// every acknowledged write of both is in the final history, each machine's
/// own files end as it last wrote them, pushes refused because the server
/// moved are resolved by fetching and merging, and nothing is ever dropped
/// or forced on the server.
fn both_machines_editing_lose_nothing(kind: Transport) {
    let (top, server, a, b) = world();
    let srv = Server::start(kind, top.path(), &server);
    let url = srv.url();
    let ma = Mount::new(
        &a,
        &mnt(&top, "ma"),
        &["--remote", &url, "--fetch-interval", "0.5"],
    );
    let mb = Mount::new(
        &b,
        &mnt(&top, "mb"),
        &["--remote", &url, "--fetch-interval", "0.5"],
    );
    let mut acked: Vec<(String, Vec<u8>)> = Vec::new();
    for i in 0..10 {
        for (who, m) in [("a", &ma), ("b", &mb)] {
            let own = format!("{who}-{}.txt", i % 3);
            let data = format!("{who} write {i}\n").into_bytes();
            std::fs::write(m.path.join("main").join(&own), &data).unwrap();
            let shared = format!("{who} shared {i}\n").into_bytes();
            std::fs::write(m.path.join("main/shared.txt"), &shared).unwrap();
            fsync(&m.path.join("main/shared.txt"));
            acked.push((own, data));
            acked.push(("shared.txt".into(), shared));
        }
        std::thread::sleep(Duration::from_millis(150));
    }
    let same = || {
        let t = |r: &Path| git(r, &["rev-parse", "main"]);
        let (s, x, y) = (t(&server), t(&a), t(&b));
        s == x && s == y
    };
    assert!(
        wait_until(Duration::from_secs(20), same),
        "{kind:?}: the machines agree in the end"
    );
    ma.unmount();
    mb.unmount();
    for (path, data) in &acked {
        let commits = git(
            &server,
            &["log", "--full-history", "--format=%H", "main", "--", path],
        );
        assert!(
            commits
                .lines()
                .any(|c| show(&server, &format!("{c}:{path}")).as_deref() == Some(data.as_slice())),
            "{kind:?}: {path} = {:?} is in the history",
            String::from_utf8_lossy(data)
        );
    }
    for who in ["a", "b"] {
        for k in 0..3 {
            let last = (0..10).rev().find(|i| i % 3 == k).unwrap();
            assert_eq!(
                show(&server, &format!("main:{who}-{k}.txt")).unwrap(),
                format!("{who} write {last}\n").into_bytes()
            );
        }
    }
    let merges = git(&server, &["rev-list", "--merges", "--count", "main"]);
    eprintln!("{kind:?}: {merges} merges resolved refused pushes");
    nothing_dropped(&server);
    for r in [&server, &a, &b] {
        fsck(r);
    }
}

/// The server goes down while A keeps saving: every save succeeds, status
/// shows the unpushed commits and the error; A's daemon is restarted while
/// the server is still down; once the server is back everything reaches B.
// claim: sync-never-blocking: "Saving never waits on the network."
fn saves_go_on_while_the_server_is_down(kind: Transport) {
    let (top, server, a, b) = world();
    let mut srv = Server::start(kind, top.path(), &server);
    let url = srv.url();
    let ma = Mount::new(
        &a,
        &mnt(&top, "ma"),
        &["--remote", &url, "--fetch-interval", "0.5"],
    );
    let mb = Mount::new(
        &b,
        &mnt(&top, "mb"),
        &["--remote", &url, "--fetch-interval", "0.5"],
    );
    std::fs::write(ma.path.join("main/up.txt"), b"while up\n").unwrap();
    fsync(&ma.path.join("main/up.txt"));
    assert!(wait_until(Duration::from_secs(3), || std::fs::read(
        mb.path.join("main/up.txt")
    )
    .is_ok()));

    srv.down();
    for i in 0..3 {
        let p = ma.path.join(format!("main/down-{i}.txt"));
        std::fs::write(&p, format!("saved while down {i}\n")).unwrap();
        fsync(&p);
    }
    assert!(
        wait_until(Duration::from_secs(5), || {
            let st = status_json(&ma.path);
            main_of(&st)["unpushed"].as_u64().unwrap_or(0) >= 3
                && !st["remote"]["last_error"].is_null()
        }),
        "{kind:?}: status shows the unpushed commits and the error"
    );
    let ma_path = ma.path.clone();
    ma.unmount();
    let ma = Mount::new(&a, &ma_path, &["--remote", &url, "--fetch-interval", "0.5"]);
    std::fs::write(ma.path.join("main/after-restart.txt"), b"after restart\n").unwrap();
    fsync(&ma.path.join("main/after-restart.txt"));

    srv.up();
    assert!(
        wait_until(Duration::from_secs(10), || (0..3)
            .all(
                |i| std::fs::read(mb.path.join(format!("main/down-{i}.txt"))).is_ok()
            )
            && std::fs::read(mb.path.join("main/after-restart.txt")).is_ok()),
        "{kind:?}: everything reaches B once the server is back"
    );
    assert!(wait_until(Duration::from_secs(5), || main_of(
        &status_json(&ma.path)
    )["unpushed"]
        .as_u64()
        == Some(0)));
    ma.unmount();
    mb.unmount();
    nothing_dropped(&server);
    for r in [&server, &a, &b] {
        fsck(r);
    }
}

#[test]
fn file_save_shows_on_the_other_machine() {
    save_shows_on_the_other_machine(Transport::File);
}
#[test]
fn git_daemon_save_shows_on_the_other_machine() {
    save_shows_on_the_other_machine(Transport::Git);
}
#[test]
fn smart_http_save_shows_on_the_other_machine() {
    save_shows_on_the_other_machine(Transport::Http);
}
#[test]
fn file_both_machines_editing_lose_nothing() {
    both_machines_editing_lose_nothing(Transport::File);
}
#[test]
fn git_daemon_both_machines_editing_lose_nothing() {
    both_machines_editing_lose_nothing(Transport::Git);
}
#[test]
fn smart_http_both_machines_editing_lose_nothing() {
    both_machines_editing_lose_nothing(Transport::Http);
}
#[test]
fn file_saves_go_on_while_the_server_is_down() {
    saves_go_on_while_the_server_is_down(Transport::File);
}
#[test]
fn git_daemon_saves_go_on_while_the_server_is_down() {
    saves_go_on_while_the_server_is_down(Transport::Git);
}
#[test]
fn smart_http_saves_go_on_while_the_server_is_down() {
    saves_go_on_while_the_server_is_down(Transport::Http);
}

/// A password in the remote's URL never shows: not in the log, not in status.
#[test]
// claim: credentials-hidden: "every log line and commitfs status show the URL as scheme://***@host/..."
fn no_secret_in_logs_or_status() {
    let (top, _server, a, _b) = world();
    let port = free_port(); // nothing listens there: every sync fails
    let url = format!("http://alice:s3cr3t-pw@127.0.0.1:{port}/git/repo.git");
    let log = top.path().join("daemon.log");
    let ma = Mount::new(
        &a,
        &mnt(&top, "ma"),
        &[
            "--remote",
            &url,
            "--fetch-interval",
            "0.2",
            "-v",
            "-v",
            "--log-file",
            log.to_str().unwrap(),
        ],
    );
    std::fs::write(ma.path.join("main/f.txt"), b"f\n").unwrap();
    fsync(&ma.path.join("main/f.txt"));
    assert!(wait_until(Duration::from_secs(5), || !status_json(
        &ma.path
    )["remote"]["last_error"]
        .is_null()));
    let out = commitfs(&[OsStr::new("status"), ma.path.as_os_str()]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let json = serde_json::to_string(&status_json(&ma.path)).unwrap();
    ma.unmount();
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(logged.contains("sync"), "the failures are logged");
    for (what, s) in [
        ("log", &logged),
        ("status", &text),
        ("status --json", &json),
    ] {
        assert!(!s.contains("s3cr3t-pw"), "{what} shows the password:\n{s}");
    }
    assert!(text.contains("***@127.0.0.1"), "{text}");
}

/// Both machines change the branch (and the same file) before either has
/// the other's commit: the second to sync merges, never forces. The merge
/// has both tips as parents, keeps its own version of the file both changed
/// and names it; the other version stays in history.
#[test]
// claim: sync-merge: "a merge commit whose parents are the server's tip and the local one"
fn diverged_branches_are_merged_never_forced() {
    let (top, server, a, b) = world();
    let url = format!("file://{}", server.display());
    // Fetches only when a commit kicks a round.
    let ma = Mount::new(
        &a,
        &mnt(&top, "ma"),
        &["--remote", &url, "--fetch-interval", "600"],
    );
    let mb = Mount::new(
        &b,
        &mnt(&top, "mb"),
        &["--remote", &url, "--fetch-interval", "600"],
    );
    std::fs::write(ma.path.join("main/a.txt"), b"A's\n").unwrap();
    fsync(&ma.path.join("main/a.txt"));
    let a_tip = git(&a, &["rev-parse", "main"]);
    assert!(wait_until(Duration::from_secs(5), || git(
        &server,
        &["rev-parse", "main"]
    ) == a_tip));
    std::fs::write(mb.path.join("main/a.txt"), b"B's\n").unwrap();
    std::fs::write(mb.path.join("main/b.txt"), b"only B\n").unwrap();
    fsync(&mb.path.join("main/a.txt"));
    let b_commit = git(&b, &["rev-parse", "main"]);
    assert!(
        wait_until(Duration::from_secs(5), || {
            git(&server, &["rev-list", "--merges", "--count", "main"]) == "1"
        }),
        "B merged and pushed"
    );
    let parents = git(&server, &["log", "-1", "--format=%P", "main"]);
    assert!(parents.contains(&a_tip), "{parents}");
    let msg = git(&server, &["log", "-1", "--format=%B", "main"]);
    assert!(
        msg.contains("Changed on both sides") && msg.contains("  a.txt"),
        "{msg}"
    );
    assert_eq!(show(&server, "main:a.txt").unwrap(), b"B's\n");
    assert_eq!(show(&server, "main:b.txt").unwrap(), b"only B\n");
    assert_eq!(show(&server, &format!("{a_tip}:a.txt")).unwrap(), b"A's\n");
    let ok = Command::new("git")
        .arg("-C")
        .arg(&server)
        .args(["merge-base", "--is-ancestor", &b_commit, "main"])
        .status()
        .unwrap();
    assert!(ok.success(), "B's own commit is in the history");
    nothing_dropped(&server);
    ma.unmount();
    mb.unmount();
    for r in [&server, &a, &b] {
        fsck(r);
    }
}

/// The merge with the server survives `git gc --prune=now` and `git prune
/// --expire=now` run between the moment its objects are written and the
/// moment the branch moves to it (debug builds run them there while
/// GITDIR/commitfs-test-gc-before-ref exists): the branch names a merge
/// whose objects are all there, and it reaches the server.
#[test]
fn a_merge_with_the_server_survives_gc_before_its_ref() {
    let (top, server, a, b) = world();
    let url = format!("file://{}", server.display());
    let ma = Mount::new(
        &a,
        &mnt(&top, "ma"),
        &["--remote", &url, "--fetch-interval", "600"],
    );
    let mb = Mount::new(
        &b,
        &mnt(&top, "mb"),
        &["--remote", &url, "--fetch-interval", "600"],
    );
    std::fs::write(ma.path.join("main/a.txt"), b"A's\n").unwrap();
    fsync(&ma.path.join("main/a.txt"));
    let a_tip = git(&a, &["rev-parse", "main"]);
    assert!(wait_until(Duration::from_secs(5), || git(
        &server,
        &["rev-parse", "main"]
    ) == a_tip));
    std::fs::write(b.join("commitfs-test-gc-before-ref"), b"").unwrap();
    std::fs::write(mb.path.join("main/b.txt"), b"only B\n").unwrap();
    fsync(&mb.path.join("main/b.txt"));
    assert!(
        wait_until(Duration::from_secs(20), || {
            git(&server, &["rev-list", "--merges", "--count", "main"]) == "1"
        }),
        "B merged and pushed"
    );
    std::fs::remove_file(b.join("commitfs-test-gc-before-ref")).unwrap();
    assert_eq!(show(&b, "main:b.txt").unwrap(), b"only B\n");
    assert_eq!(show(&b, "main:a.txt").unwrap(), b"A's\n");
    ma.unmount();
    mb.unmount();
    for r in [&server, &a, &b] {
        fsck(r);
    }
}

/// A branch deleted on one machine is not brought back from the server by
/// the next fetch (and the server keeps it: deletions do not propagate); a
/// branch new on the server does arrive.
#[test]
// claim: sync-no-deletion: "one deleted here (rmdir, git branch -D) stays deleted here and stays on the server"
fn a_branch_deleted_here_is_not_brought_back() {
    let (top, server, a, _b) = world();
    git(&server, &["branch", "old", "main"]);
    let url = format!("file://{}", server.display());
    let ma = Mount::new(
        &a,
        &mnt(&top, "ma"),
        &["--remote", &url, "--fetch-interval", "0.2"],
    );
    assert!(
        wait_until(Duration::from_secs(3), || std::fs::metadata(
            ma.path.join("old")
        )
        .is_ok()),
        "a branch new on the server arrives"
    );
    git(&a, &["branch", "-D", "old"]);
    // Several rounds, each with a fetch that still has the branch.
    let rounds = |m: &Mount| status_json(&m.path)["remote"]["rounds"].as_u64().unwrap();
    let from = rounds(&ma);
    assert!(wait_until(Duration::from_secs(30), || rounds(&ma) >= from + 3));
    let here = Command::new("git")
        .arg("-C")
        .arg(&a)
        .args(["rev-parse", "-q", "--verify", "refs/heads/old"])
        .output()
        .unwrap();
    assert!(
        !here.status.success(),
        "the deleted branch stays deleted here"
    );
    assert!(
        !std::fs::read_dir(&ma.path)
            .unwrap()
            .any(|e| e.unwrap().file_name() == "old"),
        "and is not in the mount"
    );
    git(&server, &["rev-parse", "old"]);
    ma.unmount();
}

/// A detached daemon's command line (readable by every user in /proc) names
/// the remote without its password; the sync still uses the real URL.
#[test]
// claim: credentials-hidden: "The detached daemon's command line (which any user can read in /proc) shows the URL the same way"
fn the_daemons_command_line_hides_the_password() {
    let (top, server, a, _b) = world();
    git(&server, &["config", "http.receivepack", "true"]);
    let port = free_port();
    let _h = http_server(top.path(), server.parent().unwrap(), port);
    let url = format!("http://alice:s3cr3t-pw@127.0.0.1:{port}/git/repo.git");
    let m = mnt(&top, "ma");
    let out = commitfs(&[
        OsStr::new("mount"),
        a.as_os_str(),
        m.as_os_str(),
        OsStr::new("--remote"),
        OsStr::new(&url),
        OsStr::new("--fetch-interval"),
        OsStr::new("0.5"),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Unmounted even if an assertion below fails.
    let _guard = UnmountOnDrop(m.clone());
    let pid = status_json(&m)["pid"].as_u64().unwrap();
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
    std::fs::write(m.join("main/f.txt"), b"over http with a password\n").unwrap();
    fsync(&m.join("main/f.txt"));
    let arrived = wait_until(Duration::from_secs(5), || {
        show(&server, "main:f.txt").is_some()
    });
    let out = commitfs(&[OsStr::new("unmount"), m.as_os_str()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!cmdline.contains("s3cr3t-pw"), "{cmdline}");
    assert!(cmdline.contains("***@127.0.0.1"), "{cmdline}");
    assert!(arrived, "the sync used the real URL");
}

/// Every path below `dir` with its size.
fn sizes(dir: &Path) -> std::collections::BTreeMap<String, u64> {
    walk_tree(dir, |md| md.len())
}

/// B's kernel caches the listings of main; A's save reaches B through the
/// server (fetch, merge, the ref moved); once B says it shows the new tip,
/// a walk on B shows A's new file and A's longer file: no stale listing or
/// size survives a sync.
#[test]
fn a_walk_after_a_sync_shows_the_other_machines_save_at_once() {
    let (top, server, a, b) = world();
    let srv = Server::start(Transport::File, top.path(), &server);
    let url = srv.url();
    let opts = ["--remote", url.as_str(), "--fetch-interval", "1"];
    let ma = Mount::new(&a, &mnt(&top, "ma"), &opts);
    let mb = Mount::new(&b, &mnt(&top, "mb"), &opts);
    // B writes to main too (so that its status says what it shows), then
    // walks it: its kernel caches the listing and the sizes.
    std::fs::write(mb.path.join("main/from-b.txt"), b"b\n").unwrap();
    fsync(&mb.path.join("main"));
    let before = sizes(&mb.path.join("main"));
    assert_eq!(before.get("a.txt"), Some(&4));
    std::fs::write(ma.path.join("main/from-a.txt"), b"hello from A\n").unwrap();
    std::fs::write(ma.path.join("main/a.txt"), b"one, and longer\n").unwrap();
    fsync(&ma.path.join("main"));
    // B has A's save once its main (as B shows it) has from-a.txt.
    let shown_has_a = || {
        let shown = main_of(&status_json(&mb.path))["shown"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        !shown.is_empty()
            && Command::new("git")
                .arg("--git-dir")
                .arg(&b)
                .args(["cat-file", "-e", &format!("{shown}:from-a.txt")])
                .status()
                .is_ok_and(|s| s.success())
    };
    assert!(
        wait_until(Duration::from_secs(15), shown_has_a),
        "B never showed A's save"
    );
    let after = sizes(&mb.path.join("main"));
    assert_eq!(after.get("from-a.txt"), Some(&13), "{after:?}");
    assert_eq!(after.get("a.txt"), Some(&16), "{after:?}");
    assert_eq!(after.get("from-b.txt"), Some(&2));
    ma.unmount();
    mb.unmount();
}

/// A server whose hook refuses every push: `commitfs status` shows the
/// refusal with the server's own message, and no successful push; once the
/// hook lets pushes through, the next push lands and the refusal and the
/// error are gone, with the time of that push.
#[test]
// claim: status-push-refused: "the server's own message"
fn a_refused_push_shows_the_servers_message_until_a_push_lands() {
    let (top, server, a, _b) = world();
    let hook = refusing_hook(&server, "policy: main is frozen for the release");
    let srv = Server::start(Transport::Git, top.path(), &server);
    let url = srv.url();
    let ma = Mount::new(
        &a,
        &mnt(&top, "ma"),
        &["--remote", &url, "--fetch-interval", "0.5"],
    );
    std::fs::write(ma.path.join("main/f.txt"), b"refused\n").unwrap();
    fsync(&ma.path.join("main/f.txt"));
    let mut seen = serde_json::Value::Null;
    assert!(
        wait_until(Duration::from_secs(10), || {
            seen = status_json(&ma.path);
            seen["remote"]["push_refused"]
                .as_str()
                .is_some_and(|m| m.contains("policy: main is frozen for the release"))
        }),
        "the refusal shows the server's message: {seen}"
    );
    assert!(seen["remote"]["last_push_age"].is_null(), "{seen}");
    assert!(seen["remote"]["last_error"].is_string(), "{seen}");
    let text =
        String::from_utf8(commitfs(&[OsStr::new("status"), ma.path.as_os_str()]).stdout).unwrap();
    assert!(text.contains("pushed never"), "{text}");
    assert!(text.contains("policy: main is frozen"), "{text}");

    std::fs::remove_file(&hook).unwrap();
    // A commit starts a round at once, whatever the backoff.
    std::fs::write(ma.path.join("main/g.txt"), b"let through\n").unwrap();
    fsync(&ma.path.join("main/g.txt"));
    assert!(
        wait_until(Duration::from_secs(10), || {
            seen = status_json(&ma.path);
            seen["remote"]["push_refused"].is_null()
                && seen["remote"]["last_error"].is_null()
                && seen["remote"]["last_push_age"].is_number()
        }),
        "a push that lands clears the refusal: {seen}"
    );
    assert_eq!(
        show(&server, "main:f.txt").as_deref(),
        Some(&b"refused\n"[..])
    );
    ma.unmount();
}

/// `commitfs unmount` of a mount with `--remote` pushes what was committed
/// (the sync thread was backing off after the server was down), and says on
/// stderr what stayed unpushed: the server's refusal, or a push that did not
/// finish within `--push-on-exit-timeout`.
#[test]
// claim: push-on-exit: "says on stderr, and in the log, what stayed unpushed"
fn unmount_pushes_what_was_committed_and_says_what_stayed() {
    let (top, server, a, _b) = world();
    let mut srv = Server::start(Transport::Git, top.path(), &server);
    let url = srv.url();
    let args = ["--remote", url.as_str(), "--fetch-interval", "3600"];

    // Lands: committed while the server was down, pushed at unmount.
    srv.down();
    let ma = Mount::new(&a, &mnt(&top, "ma"), &args);
    std::fs::write(ma.path.join("main/f.txt"), b"while down\n").unwrap();
    fsync(&ma.path.join("main/f.txt"));
    assert!(
        wait_until(Duration::from_secs(10), || status_json(&ma.path)["remote"]
            ["last_error"]
            .is_string()),
        "the sync thread failed and backs off"
    );
    srv.up();
    let out = ma.unmount_output();
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "{err}");
    assert!(!err.contains("not pushed"), "{err}");
    assert_eq!(
        show(&server, "main:f.txt").as_deref(),
        Some(&b"while down\n"[..])
    );

    // Refused by the server's hook: said, with the server's message.
    let hook = refusing_hook(&server, "policy: frozen");
    let ma = Mount::new(&a, &mnt(&top, "ma"), &args);
    std::fs::write(ma.path.join("main/g.txt"), b"refused\n").unwrap();
    fsync(&ma.path.join("main/g.txt"));
    let out = ma.unmount_output();
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "{err}");
    assert!(err.contains("not pushed: main (1 commit(s))"), "{err}");
    assert!(err.contains("policy: frozen"), "{err}");
    assert!(show(&server, "main:g.txt").is_none());
    assert!(
        show(&a, "main:g.txt").is_some(),
        "it stays committed in the repository"
    );

    // SIGTERM pushes too, and the log says what stayed.
    let log = top.path().join("daemon.log");
    let mut with_log = args.to_vec();
    with_log.extend(["--log-file", log.to_str().unwrap()]);
    let ma = Mount::new(&a, &mnt(&top, "ma"), &with_log);
    std::fs::write(ma.path.join("main/t.txt"), b"terminated\n").unwrap();
    assert!(ma.terminate(), "the daemon exits 0 on SIGTERM");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("not pushed: main (2 commit(s))") && text.contains("policy: frozen"),
        "{text}"
    );
    assert!(show(&a, "main:t.txt").is_some(), "committed at SIGTERM");
    std::fs::remove_file(&hook).unwrap();

    // A server that takes the connection and never answers: the push is
    // given up after --push-on-exit-timeout, and that is said.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    // Connections are accepted and held, unanswered, until the test ends.
    std::thread::spawn(move || {
        let _held: Vec<_> = silent.incoming().flatten().collect();
    });
    let url = format!("git://127.0.0.1:{port}/repo.git");
    let ma = Mount::new(
        &a,
        &mnt(&top, "ma"),
        &[
            "--remote",
            &url,
            "--fetch-interval",
            "3600",
            "--push-on-exit-timeout",
            "1",
        ],
    );
    std::fs::write(ma.path.join("main/h.txt"), b"silent\n").unwrap();
    fsync(&ma.path.join("main/h.txt"));
    let out = ma.unmount_output();
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "{err}");
    assert!(err.contains("did not finish within 1 s"), "{err}");
    assert!(!is_mounted(&top.path().join("ma")));
}
