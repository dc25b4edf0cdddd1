//! The FUSE requests the view served, by kind, for `commitfs status`.

use serde::Serialize;

/// FUSE requests served, by kind (what a walk costs the daemon: a warm walk
/// of a snapshot or an unchanged branch makes no lookup, getattr, readdir or
/// read).
#[derive(Debug, Serialize, Default, Clone, Copy, PartialEq, Eq)]
pub struct RequestCounts {
    pub lookup: u64,
    pub getattr: u64,
    pub readdir: u64,
    pub read: u64,
    pub open: u64,
    pub opendir: u64,
    pub other: u64,
}

/// The counters behind [`RequestCounts`].
#[derive(Default)]
pub struct Requests([std::sync::atomic::AtomicU64; 7]);

impl Requests {
    /// One request of kind `op` (a FUSE handler's name) was received.
    pub fn count(&self, op: &str) {
        let i = match op {
            "lookup" => 0,
            "getattr" => 1,
            "readdir" | "readdirplus" => 2,
            "read" => 3,
            "open" => 4,
            "opendir" => 5,
            _ => 6,
        };
        self.0[i].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    pub fn counts(&self) -> RequestCounts {
        let g = |i: usize| self.0[i].load(std::sync::atomic::Ordering::Relaxed);
        RequestCounts {
            lookup: g(0),
            getattr: g(1),
            readdir: g(2),
            read: g(3),
            open: g(4),
            opendir: g(5),
            other: g(6),
        }
    }
}
