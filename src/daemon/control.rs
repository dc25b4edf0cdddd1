//! `commitfs status`: the daemon answers on a Unix socket of its own, served
//! by its own thread, so that it answers at once however busy the FUSE
//! threads are.
//!
//! The socket lives in `$XDG_RUNTIME_DIR/commitfs/` (else
//! `/tmp/commitfs-UID/`), a directory only its owner may enter; its name is
//! derived from the mount point's absolute path. A client sends one line,
//! `status` or `status json`, and reads the answer until the daemon closes.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::view::CommitFs;
pub use crate::view::status::{BranchStatus, CacheStatus, RemoteStatus, Status};

/// What `commitfs status` shows.
impl Status {
    pub fn text(&self) -> String {
        let mut s = format!(
            "{} (repository {}, daemon pid {})\n",
            self.mountpoint, self.repository, self.pid
        );
        if let Some(r) = &self.mounted_ref {
            let at = self
                .mounted_commit
                .as_deref()
                .map(|c| format!(" at {}", &c[..c.len().min(12)]))
                .unwrap_or_default();
            s.push_str(&format!("mounted ref: {r}{at}\n"));
        } else if self.branches.is_empty() {
            s.push_str("no branches\n");
        }
        for b in &self.branches {
            let tip = b
                .tip
                .as_deref()
                .map(|t| &t[..t.len().min(12)])
                .unwrap_or("(none)");
            s.push_str(&format!("branch {}: at {tip}", b.name));
            if b.uncommitted {
                s.push_str(&format!(
                    ", uncommitted changes for {:.1} s",
                    b.uncommitted_for.unwrap_or(0.0)
                ));
                if b.held_by_large_write {
                    s.push_str(" (waiting for a large file to stop changing)");
                } else if b.held_by_new_file {
                    s.push_str(" (waiting for a file being made to stop changing)");
                }
            } else {
                s.push_str(", nothing uncommitted");
            }
            s.push('\n');
            if let (Some(c), Some(m), Some(a)) =
                (&b.last_commit, &b.last_commit_message, b.last_commit_age)
            {
                s.push_str(&format!(
                    "  last commit {} {a:.0} s ago: {m}\n",
                    &c[..c.len().min(12)]
                ));
            }
            if let (Some(e), Some(a)) = (&b.last_error, b.last_error_age) {
                s.push_str(&format!("  last error {a:.0} s ago: {e}\n"));
            }
            if let Some(n) = b.unpushed {
                s.push_str(&format!("  {n} commit(s) not pushed yet\n"));
            }
        }
        let rate = self
            .cache
            .hit_rate
            .map(|r| format!("{:.0}%", r * 100.0))
            .unwrap_or_else(|| "-".into());
        s.push_str(&format!(
            "cache: {} of {} bytes, {} hits, {} misses (hit rate {rate})\n",
            self.cache.bytes, self.cache.capacity, self.cache.hits, self.cache.misses
        ));
        s.push_str(&format!(
            "paths: {} in memory, {} forgotten by the kernel (their numbers kept, {} of them on disk)\n",
            self.inodes, self.forgotten_paths, self.forgotten_on_disk
        ));
        let q = &self.requests;
        s.push_str(&format!(
            "requests: {} lookup, {} getattr, {} readdir, {} read, {} open, {} opendir, {} other\n",
            q.lookup, q.getattr, q.readdir, q.read, q.open, q.opendir, q.other
        ));
        match &self.remote {
            None => s.push_str("remote: none\n"),
            Some(r) => {
                let age = |a: Option<f64>| {
                    a.map(|a| format!("{a:.0} s ago"))
                        .unwrap_or_else(|| "never".into())
                };
                s.push_str(&format!(
                    "remote: {} (fetched {}, pushed {})\n",
                    r.url,
                    age(r.last_fetch_age),
                    age(r.last_push_age)
                ));
                if let (Some(e), Some(a)) = (&r.push_refused, r.push_refused_age) {
                    s.push_str(&format!("  push refused {a:.0} s ago: {e}\n"));
                }
                if let (Some(e), Some(a)) = (&r.last_error, r.last_error_age)
                    && r.push_refused.as_ref() != Some(e)
                {
                    s.push_str(&format!("  last sync error {a:.0} s ago: {e}\n"));
                }
                if let Some(n) = r.next_round_in {
                    s.push_str(&format!("  next sync within {n:.0} s\n"));
                }
            }
        }
        s
    }
}

/// Where this process's control sockets live: `$XDG_RUNTIME_DIR/commitfs`,
/// else `/tmp/commitfs-UID`. Not created here.
pub fn own_socket_dir() -> PathBuf {
    let uid = nix::unistd::getuid();
    match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(d) if !d.is_empty() => PathBuf::from(d).join("commitfs"),
        _ => PathBuf::from(format!("/tmp/commitfs-{uid}")),
    }
}

/// The directory of the control sockets: created for this user only.
fn socket_dir() -> Result<PathBuf, String> {
    let uid = nix::unistd::getuid().as_raw();
    let dir = own_socket_dir();
    match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(format!("cannot create {}: {e}", dir.display())),
    }
    if !is_private_dir_of(&dir, uid) {
        return Err(format!(
            "{} is not a private directory of this user: remove it",
            dir.display()
        ));
    }
    Ok(dir)
}

/// `dir` is a directory (not a symlink) owned by `uid` that nobody else may enter.
fn is_private_dir_of(dir: &Path, uid: u32) -> bool {
    std::fs::symlink_metadata(dir)
        .is_ok_and(|md| md.is_dir() && md.uid() == uid && md.permissions().mode() & 0o077 == 0)
}

/// Where the daemon of a mount made by `owner` may have its socket, most
/// likely first: the asker's own directory if the mount is the asker's, then
/// the owner's `/run/user/UID/commitfs` and `/tmp/commitfs-UID` (a daemon
/// started by mount(8) or from another session may have had another
/// `XDG_RUNTIME_DIR`).
pub fn socket_dirs_of(owner: u32, me: u32, own: &Path) -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if owner == me {
        dirs.push(own.to_path_buf());
    }
    for d in [
        PathBuf::from(format!("/run/user/{owner}/commitfs")),
        PathBuf::from(format!("/tmp/commitfs-{owner}")),
    ] {
        if !dirs.contains(&d) {
            dirs.push(d);
        }
    }
    dirs
}

/// The file name of the control socket of the mount at `mnt` (an absolute,
/// normalized path).
fn socket_name(mnt: &Path) -> String {
    use sha1::{Digest, Sha1};
    let h = Sha1::digest(mnt.as_os_str().as_bytes());
    let name: String = h[..8].iter().map(|b| format!("{b:02x}")).collect();
    format!("{name}.sock")
}

/// The control socket of the mount at `mnt` (an absolute, normalized path).
pub fn socket_path(mnt: &Path) -> Result<PathBuf, String> {
    Ok(socket_dir()?.join(socket_name(mnt)))
}

/// The name of user `uid` in the password database, if it has one.
pub fn user_name(uid: u32) -> Option<String> {
    nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
        .ok()
        .flatten()
        .map(|u| u.name)
}

/// `uid 1000 (alice)`, or `uid 1000` for a user without a name.
fn describe_user(uid: u32) -> String {
    match user_name(uid) {
        Some(n) => format!("uid {uid} ({n})"),
        None => format!("uid {uid}"),
    }
}

/// Binds the control socket of `mnt` and answers on it from a thread of its
/// own. Returns the socket's path, to be removed at exit.
pub fn start(fs: Arc<CommitFs>, mnt: &Path, repo: &Path) -> Result<PathBuf, String> {
    let path = socket_path(mnt)?;
    // A socket left by a daemon that died: nobody answers on it.
    if UnixStream::connect(&path).is_err() {
        let _ = std::fs::remove_file(&path);
    }
    let listener = UnixListener::bind(&path)
        .map_err(|e| format!("cannot listen on {}: {e}", path.display()))?;
    let (mnt, repo) = (mnt.to_path_buf(), repo.to_path_buf());
    std::thread::Builder::new()
        .name("commitfs-control".into())
        .spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                if let Err(e) = answer(&fs, &mnt, &repo, conn) {
                    log::debug!("status request: {e}");
                }
            }
        })
        .map_err(|e| format!("cannot start the control thread: {e}"))?;
    Ok(path)
}

fn answer(fs: &Arc<CommitFs>, mnt: &Path, repo: &Path, conn: UnixStream) -> std::io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(2)))?;
    conn.set_write_timeout(Some(Duration::from_secs(2)))?;
    let mut line = String::new();
    BufReader::new((&conn).take(256)).read_line(&mut line)?;
    let out = match line.trim() {
        "status" => fs.status(mnt, repo).text(),
        "status json" => {
            serde_json::to_string_pretty(&fs.status(mnt, repo)).map_err(std::io::Error::other)?
                + "\n"
        }
        // `commitfs unmount`, once everything is committed: one push
        // (bounded), and what stayed unpushed, a line each.
        // On a thread of its own, so that `commitfs status` still answers
        // while it runs.
        "push" => {
            let fs = fs.clone();
            std::thread::Builder::new()
                .name("commitfs-push-request".into())
                .spawn(move || {
                    let out = match fs.push_before_exit() {
                        None => "none\n".to_string(),
                        Some(left) => {
                            crate::daemon::say_unpushed(&fs, &left, false);
                            left.iter()
                                .map(|l| format!("unpushed {l}\n"))
                                .collect::<String>()
                                + "done\n"
                        }
                    };
                    let _ = (&conn).write_all(out.as_bytes());
                })?;
            return Ok(());
        }
        other => format!("error: unknown request {other:?}\n"),
    };
    (&conn).write_all(out.as_bytes())
}

/// Asks the daemon of `mnt` for its status.
pub fn query(mnt: &Path, json: bool) -> Result<String, String> {
    let req = if json { "status json\n" } else { "status\n" };
    ask(mnt, req, Duration::from_secs(5))
}

/// Asks the daemon of `mnt` to push what was committed (with `--remote`),
/// as `commitfs unmount` does before unmounting: what stayed unpushed, one
/// line per branch (`None`: the mount has no remote).
pub fn push_before_unmount(mnt: &Path) -> Result<Option<Vec<String>>, String> {
    // The daemon bounds the push (--push-on-exit-timeout, at most an hour).
    let out = ask(mnt, "push\n", Duration::from_secs(3700))?;
    if out.trim() == "none" {
        return Ok(None);
    }
    if !out.lines().any(|l| l == "done") {
        return Err(format!("the daemon's answer was cut short: {out:?}"));
    }
    Ok(Some(
        out.lines()
            .filter_map(|l| l.strip_prefix("unpushed "))
            .map(str::to_string)
            .collect(),
    ))
}

/// Sends request `req` to the daemon of `mnt` and reads its whole answer,
/// waiting at most `wait` for it.
fn ask(mnt: &Path, req: &str, wait: Duration) -> Result<String, String> {
    let abs = std::path::absolute(mnt).map_err(|e| format!("{}: {e}", mnt.display()))?;
    let abs = crate::daemon::normalize(&abs);
    let owner = match crate::daemon::find_mount(&abs) {
        Some(m) if m.fstype == crate::daemon::FSTYPE => m.user_id,
        Some(m) => {
            return Err(format!(
                "{} is a {} mount, not a commitfs one",
                abs.display(),
                m.fstype
            ));
        }
        None => return Err(format!("{} is not mounted", abs.display())),
    };
    // The owner: the user_id= the kernel keeps for every FUSE mount (read
    // from the mount table, without entering the mount: without allow_other
    // nobody else may even stat it); else the owner of its root.
    let owner = owner.or_else(|| std::fs::metadata(&abs).ok().map(|md| md.uid()));
    let (me, root) = (
        nix::unistd::getuid().as_raw(),
        nix::unistd::geteuid().is_root(),
    );
    let owner = owner.unwrap_or(me);
    if owner != me && !root {
        return Err(format!(
            "{} is mounted by another user, {}: its status is theirs to read (run commitfs status as that user)",
            abs.display(),
            describe_user(owner)
        ));
    }
    let name = socket_name(&abs);
    let dirs = socket_dirs_of(owner, me, &own_socket_dir());
    let mut last_err = None;
    let mut conn = None;
    for dir in &dirs {
        // Only a socket in the owner's private directory is the daemon's.
        if !is_private_dir_of(dir, owner) {
            continue;
        }
        match UnixStream::connect(dir.join(&name)) {
            Ok(c) => {
                conn = Some(c);
                break;
            }
            Err(e) => last_err = Some(e),
        }
    }
    let Some(mut conn) = conn else {
        let why = last_err
            .map(|e| e.to_string())
            .unwrap_or_else(|| "no control socket".into());
        let whose = if owner == me {
            String::new()
        } else {
            format!(", mounted by {},", describe_user(owner))
        };
        return Err(format!(
            "the daemon of {}{whose} does not answer ({why}): it may have died (commitfs unmount {} cleans up)",
            abs.display(),
            abs.display()
        ));
    };
    conn.set_read_timeout(Some(wait))
        .map_err(|e| e.to_string())?;
    conn.write_all(req.as_bytes()).map_err(|e| e.to_string())?;
    let mut out = String::new();
    conn.read_to_string(&mut out)
        .map_err(|e| format!("reading the daemon's answer: {e}"))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_dirs_of_the_asker_and_of_another_user() {
        let own = Path::new("/run/user/1000/commitfs");
        assert_eq!(
            socket_dirs_of(1000, 1000, own),
            [own.to_path_buf(), PathBuf::from("/tmp/commitfs-1000")]
        );
        let own = Path::new("/tmp/commitfs-0");
        assert_eq!(
            socket_dirs_of(1000, 0, own),
            [
                PathBuf::from("/run/user/1000/commitfs"),
                PathBuf::from("/tmp/commitfs-1000")
            ]
        );
        let own = Path::new("/home/me/run/commitfs");
        assert_eq!(socket_dirs_of(0, 0, own).len(), 3);
    }

    #[test]
    fn users_are_named_when_they_have_a_name() {
        assert_eq!(user_name(0).as_deref(), Some("root"));
        assert!(describe_user(0).starts_with("uid 0 (root)"));
        assert_eq!(describe_user(4_000_000_123), "uid 4000000123");
    }
}
