//! Sets `commitfs_not_root` when the tests are built by a user other than
//! root, so that tests that need root (they mount a tmpfs) show as ignored,
//! with the reason, instead of passing without having run.

fn main() {
    println!("cargo::rustc-check-cfg=cfg(commitfs_not_root)");
    println!("cargo::rerun-if-changed=build.rs");
    // A change of user (sudo, su) is a change of these.
    for var in ["USER", "SUDO_UID", "LOGNAME"] {
        println!("cargo::rerun-if-env-changed={var}");
    }
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let euid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .map(str::to_string);
    if euid.as_deref() != Some("0") {
        println!("cargo::rustc-cfg=commitfs_not_root");
    }
}
