//! The daemon's real memory (its anonymous RSS, from /proc) against the
//! bound docs/SEMANTICS.md ("Memory", "The bound") promises, through a real
//! mount: many writers, walkers and readers at once stay within it, and once
//! they stop the daemon comes back down to what it held before, plus what
//! its bounded caches and the paths the kernel holds account for.

mod common;

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use common::*;

const MIB: u64 = 1 << 20;
/// SEMANTICS' bound: 128 MiB + --cache-size + 300 bytes per path in memory.
const FIXED: u64 = 128 * MIB;
const PER_PATH: u64 = 300;
/// What requests add while they run: each blob being loaded whole (at most a
/// quarter of the cache, 16 MiB), and a commit's batch of small blobs.
const COMMIT_BATCH: u64 = 32 * MIB;
const CACHE: u64 = 16 * MIB;
const READERS: usize = 8;
const WRITERS: usize = 8;
const WALKERS: usize = 3;

fn paths_in_memory(m: &Path) -> u64 {
    status_json(m)["inodes"].as_u64().unwrap()
}

/// Every path below `dir` stat'ed; a name that writers remove meanwhile may
/// be gone (ENOENT), and nothing else may fail. Returns how many were seen.
fn walk_while_written(dir: &Path) -> usize {
    let mut seen = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let entries = match std::fs::read_dir(&d) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => panic!("{}: {e}", d.display()),
        };
        for e in entries {
            let e = e.unwrap();
            match std::fs::symlink_metadata(e.path()) {
                Ok(md) => {
                    seen += 1;
                    if md.is_dir() {
                        stack.push(e.path());
                    }
                }
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
                Err(err) => panic!("{}: {err}", e.path().display()),
            }
        }
    }
    seen
}

/// The idle bound, in bytes, for a daemon holding `paths` paths.
fn idle_bound(paths: u64) -> u64 {
    FIXED + CACHE + PER_PATH * paths
}

#[test]
// claim: memory-bound: "stays below 128 MiB + --cache-size + 300 bytes per path in memory"
fn many_writers_walkers_and_readers_stay_within_the_bound_and_it_comes_back_down() {
    let r = TestRepo::new();
    for d in 0..20 {
        for f in 0..100 {
            r.write(
                &format!("d{d:02}/f{f:03}.txt"),
                format!("{d} {f}\n").as_bytes(),
            );
        }
    }
    // Large files, each read whole by one reader at a time (a quarter of the
    // cache: the largest blob the cache holds whole).
    let mut seed = 0x2545F4914F6CDD1Du64;
    for b in 0..READERS {
        let data: Vec<u8> = (0..CACHE / 4)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed as u8
            })
            .collect();
        r.write(&format!("big/b{b}.bin"), &data);
    }
    r.commit("initial");
    git(&r.work(), &["tag", "v1"]);
    // Branches and tags.
    let bare = r.publish();
    let mnt = r.mountpoint("mnt");
    let m = Mount::new(&bare, &mnt, &["--cache-size", "16M"]);
    let main = m.path.join("main");

    // Before: the tree walked once, so the paths the kernel holds are there.
    walk_tree(&main, |_| ());
    let before = m.rss_anon();
    let paths_before = paths_in_memory(&m.path);
    let busy_bound = |paths: u64| idle_bound(paths) + READERS as u64 * (CACHE / 4) + COMMIT_BATCH;

    let stop = AtomicBool::new(false);
    let peak = AtomicU64::new(0);
    let rounds = AtomicU64::new(0);
    std::thread::scope(|s| {
        // The daemon's memory, sampled for as long as the load runs.
        s.spawn(|| {
            while !stop.load(Ordering::SeqCst) {
                peak.fetch_max(m.rss_anon(), Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(5));
            }
        });
        let mut load = Vec::new();
        for w in 0..WRITERS {
            let main = &main;
            load.push(s.spawn(move || {
                let d = main.join(format!("w{w}"));
                std::fs::create_dir_all(&d).unwrap();
                let data = vec![w as u8; 64 << 10];
                for j in 0..150 {
                    let p = d.join(format!("f{:02}", j % 30));
                    std::fs::write(&p, &data).unwrap();
                    assert_eq!(std::fs::read(&p).unwrap().len(), data.len());
                    if j % 7 == 0 {
                        std::fs::remove_file(&p).unwrap();
                    }
                }
            }));
        }
        for _ in 0..WALKERS {
            let (m, rounds) = (&m, &rounds);
            load.push(s.spawn(move || {
                for _ in 0..4 {
                    assert!(walk_tree(&m.path.join(".tags/v1"), |_| ()).len() > 2000);
                    assert!(walk_while_written(&m.path.join("main")) > 2000);
                    rounds.fetch_add(1, Ordering::SeqCst);
                }
            }));
        }
        for b in 0..READERS {
            let main = &main;
            load.push(s.spawn(move || {
                for _ in 0..3 {
                    let got = std::fs::read(main.join(format!("big/b{b}.bin"))).unwrap();
                    assert_eq!(got.len() as u64, CACHE / 4);
                }
            }));
        }
        let joined: Vec<_> = load.into_iter().map(|t| t.join()).collect();
        // Everything written is committed.
        commit_now(&main);
        stop.store(true, Ordering::SeqCst);
        for j in joined {
            if let Err(e) = j {
                std::panic::resume_unwind(e);
            }
        }
    });
    assert_eq!(rounds.load(Ordering::SeqCst), 4 * WALKERS as u64);
    let paths = paths_in_memory(&m.path);
    let peak = peak.load(Ordering::SeqCst);
    assert!(
        peak <= busy_bound(paths),
        "peak {} MiB over the bound under load, {} MiB ({paths} paths in memory)",
        peak / MIB,
        busy_bound(paths) / MIB
    );
    // Idle: back within the bound, and back to what it held before, plus
    // the cache (now full) and the paths the kernel holds since.
    let back = before + CACHE + PER_PATH * paths.saturating_sub(paths_before) + 24 * MIB;
    let mut now = 0;
    let came_back = wait_until(Duration::from_secs(30), || {
        now = m.rss_anon();
        now <= back.min(idle_bound(paths_in_memory(&m.path)))
    });
    assert!(
        came_back,
        "idle at {} MiB: before the load {} MiB, peak {} MiB, allowed {} MiB",
        now / MIB,
        before / MIB,
        peak / MIB,
        back.min(idle_bound(paths)) / MIB
    );
    assert!(
        peak > now,
        "the load moved nothing: peak {peak}, idle {now}"
    );
    eprintln!(
        "anon RSS: before {} MiB, peak {} MiB (bound {} MiB), idle {} MiB (bound {} MiB); {paths} paths in memory",
        before / MIB,
        peak / MIB,
        busy_bound(paths) / MIB,
        now / MIB,
        idle_bound(paths) / MIB
    );
    m.unmount();
}
