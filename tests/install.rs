//! The install step and the systemd units, as a packager and a sysadmin use
//! them: `scripts/install.sh` into a scratch root (DESTDIR) puts the binary,
//! its man pages, completions and units where they belong, and every unit in
//! `contrib/` passes `systemd-analyze verify` against that installed tree.

use std::path::{Path, PathBuf};
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_commitfs");

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every file under `dir`, relative to it, sorted.
fn files_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p.strip_prefix(dir).unwrap().to_string_lossy().into_owned());
            }
        }
    }
    out.sort();
    out
}

/// `scripts/install.sh PREFIX` into a scratch root, with the binary the
/// tests built.
fn install_into(scratch: &Path, prefix: &str) {
    let out = Command::new("bash")
        .arg(root().join("scripts/install.sh"))
        .arg(prefix)
        .env("DESTDIR", scratch)
        .env("COMMITFS_BIN", BIN)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "install.sh: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

const INSTALLED: &[&str] = &[
    "usr/bin/commitfs",
    "usr/lib/systemd/user/commitfs@.service",
    "usr/share/bash-completion/completions/commitfs",
    "usr/share/doc/commitfs/examples/srv-data.automount",
    "usr/share/doc/commitfs/examples/srv-data.mount",
    "usr/share/fish/vendor_completions.d/commitfs.fish",
    "usr/share/man/man1/commitfs-completions.1",
    "usr/share/man/man1/commitfs-man.1",
    "usr/share/man/man1/commitfs-mount.1",
    "usr/share/man/man1/commitfs-status.1",
    "usr/share/man/man1/commitfs-unmount.1",
    "usr/share/man/man1/commitfs.1",
    "usr/share/man/man8/mount.commitfs.8",
    "usr/share/zsh/site-functions/_commitfs",
];

#[test]
fn the_install_step_puts_binary_man_pages_completions_and_units_in_place() {
    let scratch = tempfile::tempdir().unwrap();
    install_into(scratch.path(), "/usr");
    assert_eq!(files_under(scratch.path()), INSTALLED);
    let at = |rel: &str| scratch.path().join(rel);
    for rel in INSTALLED {
        assert!(
            std::fs::metadata(at(rel)).unwrap().len() > 0,
            "{rel} is empty"
        );
    }
    // The installed binary runs, and man(1) reads its pages.
    let v = Command::new(at("usr/bin/commitfs"))
        .arg("--version")
        .output()
        .unwrap();
    assert!(v.status.success());
    let page = Command::new("man")
        .env("MANPATH", at("usr/share/man"))
        .args(["-w", "8", "mount.commitfs"])
        .output()
        .unwrap();
    assert!(page.status.success(), "man finds mount.commitfs(8)");
    let bash =
        std::fs::read_to_string(at("usr/share/bash-completion/completions/commitfs")).unwrap();
    assert!(
        bash.contains("complete") && bash.contains("--remote"),
        "{bash}"
    );
    // Under another prefix, the user service names the binary there.
    let other = tempfile::tempdir().unwrap();
    install_into(other.path(), "/usr/local");
    let unit = std::fs::read_to_string(
        other
            .path()
            .join("usr/local/lib/systemd/user/commitfs@.service"),
    )
    .unwrap();
    assert!(
        unit.contains("ExecStart=/usr/local/bin/commitfs mount")
            && unit.contains("ExecStop=/usr/local/bin/commitfs unmount"),
        "{unit}"
    );
}

/// `systemd-analyze verify` of `units` (copied from contrib/, the
/// binary's path pointed at the scratch install), with the installed man
/// pages on MANPATH (it checks each unit's Documentation= too).
fn verify(scratch: &Path, units: &[(&str, &str)], name: &str) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    let bin = scratch.join("usr/bin/commitfs");
    for (file, text) in units {
        let text = text.replace("/usr/bin/commitfs", bin.to_str().unwrap());
        std::fs::write(dir.path().join(file), text).unwrap();
    }
    Command::new("systemd-analyze")
        .arg("verify")
        .arg(dir.path().join(name))
        .env("MANPATH", scratch.join("usr/share/man"))
        .current_dir(dir.path())
        .output()
        .unwrap()
}

#[test]
fn the_units_in_contrib_pass_systemd_analyze_verify() {
    let scratch = tempfile::tempdir().unwrap();
    install_into(scratch.path(), "/usr");
    let read = |f: &str| std::fs::read_to_string(root().join("contrib").join(f)).unwrap();
    let (mount, automount, service) = (
        read("srv-data.mount"),
        read("srv-data.automount"),
        read("commitfs@.service"),
    );
    let units = [
        ("srv-data.mount", mount.as_str()),
        ("srv-data.automount", automount.as_str()),
        ("commitfs@.service", service.as_str()),
    ];
    for name in [
        "srv-data.mount",
        "srv-data.automount",
        "commitfs@data.service",
    ] {
        let out = verify(scratch.path(), &units, name);
        assert!(
            out.status.success(),
            "{name}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // The check itself can fail: a unit naming a binary that is not there.
    let broken = service.replace("/usr/bin/commitfs mount", "/nonexistent/commitfs mount");
    let out = verify(
        scratch.path(),
        &[("commitfs@.service", broken.as_str())],
        "commitfs@data.service",
    );
    assert!(!out.status.success(), "a broken unit fails verify");
}

/// What the Debian package installs, besides its documentation.
const PACKAGED: &[&str] = &[
    "usr/bin/commitfs",
    "usr/lib/systemd/user/commitfs@.service",
    "usr/share/bash-completion/completions/commitfs",
    "usr/share/doc/commitfs/README.md",
    "usr/share/doc/commitfs/SEMANTICS.md",
    "usr/share/doc/commitfs/copyright",
    "usr/share/doc/commitfs/examples/srv-data.automount",
    "usr/share/doc/commitfs/examples/srv-data.mount",
    "usr/share/fish/vendor_completions.d/commitfs.fish",
    "usr/share/man/man1/commitfs-completions.1.gz",
    "usr/share/man/man1/commitfs-man.1.gz",
    "usr/share/man/man1/commitfs-mount.1.gz",
    "usr/share/man/man1/commitfs-status.1.gz",
    "usr/share/man/man1/commitfs-unmount.1.gz",
    "usr/share/man/man1/commitfs.1.gz",
    "usr/share/man/man8/mount.commitfs.8.gz",
    "usr/share/zsh/site-functions/_commitfs",
];

/// `scripts/package.sh` (cargo-deb) makes a package that dpkg installs into
/// a scratch root (its own dpkg database), with exactly the binary, man
/// pages, completions, units and documentation, depending on fuse3; the
/// installed binary runs, and man reads its pages.
#[test]
fn the_debian_package_installs_what_it_should_into_a_scratch_root() {
    let out = tempfile::tempdir().unwrap();
    let made = Command::new("bash")
        .arg(root().join("scripts/package.sh"))
        .arg(out.path())
        .env("COMMITFS_BIN", BIN)
        .output()
        .unwrap();
    assert!(
        made.status.success(),
        "package.sh: {}",
        String::from_utf8_lossy(&made.stderr)
    );
    let debs: Vec<PathBuf> = std::fs::read_dir(out.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "deb"))
        .collect();
    assert_eq!(debs.len(), 1, "{debs:?}");
    let field = |f: &str| {
        let o = Command::new("dpkg-deb")
            .arg("-f")
            .arg(&debs[0])
            .arg(f)
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    };
    assert_eq!(field("Package"), "commitfs");
    assert!(field("Depends").contains("fuse3"), "{}", field("Depends"));
    let scratch = tempfile::tempdir().unwrap();
    let admin = scratch.path().join("var/lib/dpkg");
    for d in ["updates", "info"] {
        std::fs::create_dir_all(admin.join(d)).unwrap();
    }
    std::fs::write(admin.join("status"), b"").unwrap();
    let installed = Command::new("dpkg")
        .arg(format!("--root={}", scratch.path().display()))
        .args([
            "--force-not-root",
            "--force-depends",
            "--force-script-chrootless",
            "-i",
        ])
        .arg(&debs[0])
        .output()
        .unwrap();
    assert!(
        installed.status.success(),
        "dpkg -i: {}",
        String::from_utf8_lossy(&installed.stderr)
    );
    let files: Vec<String> = files_under(scratch.path())
        .into_iter()
        .filter(|f| !f.starts_with("var/lib/dpkg"))
        .collect();
    assert_eq!(files, PACKAGED);
    let v = Command::new(scratch.path().join("usr/bin/commitfs"))
        .arg("--version")
        .output()
        .unwrap();
    assert!(v.status.success());
    let page = Command::new("man")
        .env("MANPATH", scratch.path().join("usr/share/man"))
        .args(["-w", "1", "commitfs-mount"])
        .output()
        .unwrap();
    assert!(page.status.success(), "man finds commitfs-mount(1)");
}

/// `cargo install --path .` puts `commitfs` on PATH (into the install
/// root's bin/, `~/.cargo/bin` by default): built here with the dev profile
/// into a scratch root, from the crates the suite already fetched.
#[test]
fn cargo_install_puts_commitfs_on_path() {
    let scratch = tempfile::tempdir().unwrap();
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"))
        .join("install-check");
    let out = Command::new(env!("CARGO"))
        .args(["install", "--locked", "--offline", "--debug", "--path"])
        .arg(root())
        .arg("--root")
        .arg(scratch.path())
        .env("CARGO_TARGET_DIR", &target)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cargo install: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let path = format!(
        "{}:{}",
        scratch.path().join("bin").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let v = Command::new("commitfs")
        .arg("--version")
        .env("PATH", path)
        .output()
        .unwrap();
    assert!(v.status.success());
    assert!(String::from_utf8_lossy(&v.stdout).starts_with("commitfs "));
}
