//! Tests that need root are compiled `#[ignore]`d when the build is not run
//! as root (`cfg(commitfs_tests_not_root)`), so that they show as ignored,
//! never as passed, for other users. Each also checks for root itself when it
//! runs (a build made as root may be tested by someone else), and fails if not.

fn main() {
    println!("cargo::rustc-check-cfg=cfg(commitfs_tests_not_root)");
    println!("cargo::rerun-if-changed=build.rs");
    // The effective uid is the second field of the Uid: line.
    let root = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|ids| ids.split_whitespace().nth(1).map(|e| e == "0"))
        })
        .unwrap_or(false);
    if !root {
        println!("cargo::rustc-cfg=commitfs_tests_not_root");
    }
}
