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

fn show(repo: &Path, spec: &str) -> Option<Vec<u8>> {
    let out = Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(["cat-file", "blob", spec])
        .output()
        .unwrap();
    out.status.success().then_some(out.stdout)
}

fn fsck(repo: &Path) {
    let out = Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(["fsck", "--strict"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "fsck {}: {}",
        repo.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn status_json(m: &Path) -> serde_json::Value {
    let out = commitfs(&[OsStr::new("status"), m.as_os_str(), OsStr::new("--json")]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn fsync(p: &Path) {
    std::fs::File::open(p).unwrap().sync_all().unwrap();
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

#[test]
fn a_save_on_one_machine_shows_on_the_other() {
    let (top, server, a, b) = world();
    let url = format!("file://{}", server.display());
    let ma = Mount::new(
        &a,
        &mnt(&top, "ma"),
        &["--remote", &url, "--fetch-interval", "1"],
    );
    let mb = Mount::new(
        &b,
        &mnt(&top, "mb"),
        &[
            "--remote",
            server.to_str().unwrap(),
            "--fetch-interval",
            "1",
        ],
    );
    std::fs::write(ma.path.join("main/from-a.txt"), b"hello from A\n").unwrap();
    fsync(&ma.path.join("main/from-a.txt"));
    let saved = Instant::now();
    assert!(
        wait_until(Duration::from_secs(2), || std::fs::read(
            mb.path.join("main/from-a.txt")
        )
        .is_ok_and(|c| c == b"hello from A\n")),
        "B reads A's save within the fetch interval plus a second"
    );
    eprintln!("A -> B took {:?}", saved.elapsed());
    // A branch made on B (mkdir) reaches the server and A.
    std::fs::create_dir(mb.path.join("topic")).unwrap();
    std::fs::write(mb.path.join("topic/t.txt"), b"topic\n").unwrap();
    fsync(&mb.path.join("topic/t.txt"));
    assert!(wait_until(Duration::from_secs(3), || std::fs::read(
        ma.path.join("topic/t.txt")
    )
    .is_ok()));
    // A tag made on the server shows on both.
    git(&server, &["tag", "v9", "main"]);
    assert!(
        wait_until(Duration::from_secs(3), || std::fs::read(ma.path.join(".tags/v9/a.txt")).is_ok()
            && std::fs::read(mb.path.join(".tags/v9/a.txt")).is_ok()),
        "a tag from the server appears"
    );
    let st = status_json(&ma.path);
    assert!(st["remote"]["url"].as_str().unwrap().ends_with("repo.git"));
    ma.unmount();
    mb.unmount();
    for r in [&server, &a, &b] {
        fsck(r);
    }
}

/// Both machines edit the same file and different files at the same time:
/// every acknowledged write of both is in the final history, the final tree
/// has each machine's own files as it last wrote them, and nothing is ever
/// dropped or forced on the server.
#[test]
fn both_machines_editing_at_once_lose_nothing() {
    let (top, server, a, b) = world();
    let url = format!("file://{}", server.display());
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
    for i in 0..12 {
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
    // Let both settle: the same tip everywhere.
    let same = || {
        let t = |r: &Path| git(r, &["rev-parse", "main"]);
        let (s, x, y) = (t(&server), t(&a), t(&b));
        s == x && s == y
    };
    assert!(
        wait_until(Duration::from_secs(20), same),
        "the machines agree in the end"
    );
    ma.unmount();
    mb.unmount();
    // Every acknowledged write is in some commit of the final history.
    for (path, data) in &acked {
        let commits = git(
            &server,
            &["log", "--full-history", "--format=%H", "main", "--", path],
        );
        assert!(
            commits
                .lines()
                .any(|c| show(&server, &format!("{c}:{path}")).as_deref() == Some(data.as_slice())),
            "{path} = {:?} is in the history",
            String::from_utf8_lossy(data)
        );
    }
    // Each machine's own files end as it last wrote them.
    for who in ["a", "b"] {
        for k in 0..3 {
            let last = (0..12).rev().find(|i| i % 3 == k).unwrap();
            assert_eq!(
                show(&server, &format!("main:{who}-{k}.txt")).unwrap(),
                format!("{who} write {last}\n").into_bytes()
            );
        }
    }
    nothing_dropped(&server);
    for r in [&server, &a, &b] {
        fsck(r);
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

/// The server goes down while A keeps saving: every save succeeds, status
/// shows the unpushed commits and the error; once the server is back (A's
/// daemon restarted meanwhile), everything reaches B.
#[test]
fn saves_go_on_while_the_server_is_down_and_arrive_later() {
    let (top, server, a, b) = world();
    let port = free_port();
    let url = format!("git://127.0.0.1:{port}/repo.git");
    let base = server.parent().unwrap().to_path_buf();
    let d = git_daemon(&base, port);
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

    drop(d);
    for i in 0..3 {
        let p = ma.path.join(format!("main/down-{i}.txt"));
        std::fs::write(&p, format!("saved while down {i}\n")).unwrap();
        fsync(&p);
    }
    assert!(
        wait_until(Duration::from_secs(5), || {
            let st = status_json(&ma.path);
            let main = st["branches"]
                .as_array()
                .unwrap()
                .iter()
                .find(|b| b["name"] == "main")
                .cloned()
                .unwrap();
            main["unpushed"].as_u64().unwrap_or(0) >= 3 && !st["remote"]["last_error"].is_null()
        }),
        "status shows the unpushed commits and the error"
    );
    // A's daemon restarts while the server is still down.
    let ma_path = ma.path.clone();
    ma.unmount();
    let ma = Mount::new(&a, &ma_path, &["--remote", &url, "--fetch-interval", "0.5"]);
    std::fs::write(ma.path.join("main/after-restart.txt"), b"after restart\n").unwrap();
    fsync(&ma.path.join("main/after-restart.txt"));

    let _d = git_daemon(&base, port);
    assert!(
        wait_until(Duration::from_secs(10), || (0..3)
            .all(
                |i| std::fs::read(mb.path.join(format!("main/down-{i}.txt"))).is_ok()
            )
            && std::fs::read(mb.path.join("main/after-restart.txt")).is_ok()),
        "everything reaches B once the server is back"
    );
    assert!(wait_until(Duration::from_secs(5), || {
        status_json(&ma.path)["branches"][0]["unpushed"].as_u64() == Some(0)
    }));
    ma.unmount();
    mb.unmount();
    nothing_dropped(&server);
    for r in [&server, &a, &b] {
        fsck(r);
    }
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

/// The same over smart HTTP: saves cross between the machines both ways, and
/// a push refused because the server moved is resolved by fetching and
/// merging, never by force.
#[test]
fn machines_sync_over_smart_http() {
    let (top, server, a, b) = world();
    git(&server, &["config", "http.receivepack", "true"]);
    let port = free_port();
    let _h = http_server(top.path(), server.parent().unwrap(), port);
    let url = format!("http://127.0.0.1:{port}/git/repo.git");
    let ma = Mount::new(
        &a,
        &mnt(&top, "ma"),
        &["--remote", &url, "--fetch-interval", "1"],
    );
    let mb = Mount::new(
        &b,
        &mnt(&top, "mb"),
        &["--remote", &url, "--fetch-interval", "1"],
    );
    std::fs::write(ma.path.join("main/a.txt"), b"A's version\n").unwrap();
    fsync(&ma.path.join("main/a.txt"));
    assert!(
        wait_until(Duration::from_secs(2), || std::fs::read(
            mb.path.join("main/a.txt")
        )
        .is_ok_and(|c| c == b"A's version\n")),
        "B reads A's save within the fetch interval plus a second"
    );
    // Both save at once: one of the pushes is refused and merged.
    std::fs::write(ma.path.join("main/x.txt"), b"from A\n").unwrap();
    std::fs::write(mb.path.join("main/y.txt"), b"from B\n").unwrap();
    fsync(&ma.path.join("main/x.txt"));
    fsync(&mb.path.join("main/y.txt"));
    assert!(
        wait_until(Duration::from_secs(8), || {
            std::fs::read(ma.path.join("main/y.txt")).is_ok()
                && std::fs::read(mb.path.join("main/x.txt")).is_ok()
        }),
        "each machine has the other's save"
    );
    ma.unmount();
    mb.unmount();
    assert_eq!(show(&server, "main:x.txt").unwrap(), b"from A\n");
    assert_eq!(show(&server, "main:y.txt").unwrap(), b"from B\n");
    nothing_dropped(&server);
    for r in [&server, &a, &b] {
        fsck(r);
    }
}

/// A password in the remote's URL never shows: not in the log, not in status.
#[test]
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
