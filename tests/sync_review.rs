//! Review: merges that fail forever, and a server branch that never arrives.
//! cargo test --test review_sync -- --test-threads=1
mod common;
use common::*;
use std::path::{Path, PathBuf};
use std::time::Duration;

fn world() -> (tempfile::TempDir, PathBuf, PathBuf, PathBuf) {
    let r = TestRepo::new();
    r.write("a.txt", b"one\n");
    r.write("d/x.txt", b"x\n");
    r.commit("initial");
    let server = r.publish();
    let top = r.dir;
    git(
        top.path(),
        &["clone", "-q", "--bare", server.to_str().unwrap(), "a.git"],
    );
    let work = top.path().join("work");
    (top, server, top_path(&work), work)
}
fn top_path(w: &Path) -> PathBuf {
    w.parent().unwrap().join("a.git")
}

/// The server commits in its own work tree (top/work) and pushes.
fn server_commit(work: &Path, server: &Path, f: impl FnOnce(&Path)) {
    f(work);
    git(work, &["add", "-A"]);
    git(work, &["commit", "-q", "-m", "server side"]);
    git(work, &["push", "-q", server.to_str().unwrap(), "main:main"]);
}

fn mount(top: &tempfile::TempDir, a: &Path, server: &Path) -> Mount {
    let m = top.path().join("ma");
    std::fs::create_dir_all(&m).unwrap();
    Mount::new(
        a,
        &m,
        &[
            "--remote",
            &format!("file://{}", server.display()),
            "--fetch-interval",
            "0.3",
        ],
    )
}

fn merged(server: &Path, a: &Path) -> bool {
    let l = git(a, &["rev-parse", "main"]);
    std::process::Command::new("git")
        .arg("-C")
        .arg(server)
        .args(["merge-base", "--is-ancestor", &l, "main"])
        .status()
        .unwrap()
        .success()
}

fn check(kind: &str, local: impl FnOnce(&Path), srv: impl FnOnce(&Path)) {
    let (top, server, a, work) = world();
    let ma = mount(&top, &a, &server);
    server_commit(&work, &server, srv);
    local(&ma.path.join("main"));
    std::fs::File::open(ma.path.join("main"))
        .unwrap()
        .sync_all()
        .unwrap();
    let ok = wait_until(Duration::from_secs(5), || merged(&server, &a));
    let err = commitfs(&[std::ffi::OsStr::new("status"), ma.path.as_os_str()]);
    ma.unmount();
    assert!(
        ok,
        "{kind}: A's commit never reaches the server:\n{}",
        String::from_utf8_lossy(&err.stdout)
    );
}

#[test]
fn both_sides_delete_the_same_file() {
    check(
        "both delete a.txt",
        |m| std::fs::remove_file(m.join("a.txt")).unwrap(),
        |w| {
            std::fs::remove_file(w.join("a.txt")).unwrap();
            std::fs::write(w.join("s.txt"), b"s\n").unwrap();
        },
    );
}

#[test]
// claim: sync-merge-clears: "a file where this side made a directory"
fn file_becomes_directory_here() {
    check(
        "a.txt file -> dir",
        |m| {
            std::fs::remove_file(m.join("a.txt")).unwrap();
            std::fs::create_dir(m.join("a.txt")).unwrap();
            std::fs::write(m.join("a.txt/in"), b"in\n").unwrap();
        },
        |w| std::fs::write(w.join("s.txt"), b"s\n").unwrap(),
    );
}

#[test]
// claim: sync-merge-clears: "a directory where it put a file"
fn directory_becomes_file_here() {
    check(
        "d dir -> file",
        |m| {
            std::fs::remove_file(m.join("d/x.txt")).unwrap();
            std::fs::remove_dir(m.join("d")).unwrap();
            std::fs::write(m.join("d"), b"now a file\n").unwrap();
        },
        |w| std::fs::write(w.join("s.txt"), b"s\n").unwrap(),
    );
}

#[test]
fn server_deleted_dir_here_edited_inside_deleted() {
    check(
        "server rm d/, here rm d/x.txt + add y",
        |m| {
            std::fs::remove_file(m.join("d/x.txt")).unwrap();
            std::fs::write(m.join("y"), b"y\n").unwrap();
        },
        |w| std::fs::remove_dir_all(w.join("d")).unwrap(),
    );
}

/// A branch new on the server whose tracking ref was written by a round that
/// then failed is taken for "deleted here" by every later round.
#[test]
// claim: sync-new-branch: "a branch or tag only the server has is created here"
fn a_new_server_branch_arrives_even_after_a_failed_round() {
    let (top, server, a, work) = world();
    let ma = mount(&top, &a, &server);
    // main: both sides delete a.txt -> the merge fails, every round aborts
    server_commit(&work, &server, |w| {
        std::fs::remove_file(w.join("a.txt")).unwrap()
    });
    git(&work, &["push", "-q", server.to_str().unwrap(), "main:zzz"]);
    std::fs::remove_file(ma.path.join("main/a.txt")).unwrap();
    std::fs::File::open(ma.path.join("main"))
        .unwrap()
        .sync_all()
        .unwrap();
    // A few rounds, each of which fails at the merge.
    let rounds = || status_json(&ma.path)["remote"]["rounds"].as_u64().unwrap();
    let from = rounds();
    assert!(wait_until(Duration::from_secs(30), || rounds() >= from + 3));
    ma.unmount();
    // The user resolves main by hand: local main = server main.
    let s = git(&server, &["rev-parse", "main"]);
    git(&a, &["update-ref", "refs/heads/main", &s]);
    let ma = mount(&top, &a, &server);
    let ok = wait_until(Duration::from_secs(3), || {
        std::fs::metadata(ma.path.join("zzz")).is_ok()
    });
    ma.unmount();
    assert!(ok, "branch zzz, new on the server, never arrives");
}
