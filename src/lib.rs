//! commitfs: a Git repository as a filesystem, every branch a directory.
//!
//! Layers, each a folder with one job, from the kernel down to the repository
//! (docs/DEVELOPMENT.md has the module graph, the locks and two request
//! traces). Imports point one way, down this list:
//! - `daemon`: the process: the command line and `-o` options (`cli`),
//!   checks, detaching, mounting, signals, unmounting, and `commitfs status`
//!   (`control`).
//! - `fuse`: the adapter from fuser's requests to the view, and the page
//!   cache the view's prefetcher pushes into.
//! - `view`: what each path is and what each operation does: refs, snapshots
//!   and branches, lookup, readdir, attributes, reads (`mod.rs`); writes
//!   (`write`) and branch directories (`branches`); the prefetch that follows
//!   a listing (`prefetch`); the requests served (`requests`); its side of
//!   the committer (`barriers`), of other writers (`follow`) and of recovery
//!   (`recover`), each implementing the lower layer's trait.
//! - `sync`: fetch, merge and push with a remote.
//! - `commit`: overlay -> trees -> commit -> ref; the settle window; what
//!   commits leave out (`gitignore`).
//! - `follow`: other writers of the repository's refs: the re-pointing pass,
//!   and the watcher (`watch`: inotify).
//! - `overlay`: a branch's pending changes, persistent on disk (`persist`,
//!   `wdata`), and what the next mount finds of them (`recover`).
//! - `inodes`: inode numbers <-> paths (forgotten ones on disk: `ghosts`).
//! - `model`: plain data every layer shares (configuration, timestamps).
//! - `store`: objects and refs, the one layer that names libgit2 (but for
//!   the commit itself, in `commit`: docs/DEVELOPMENT.md says what is left).
//! - `error`: the one errno table.

pub mod commit;
pub mod daemon;
pub mod error;
pub mod follow;
pub mod fuse;
pub mod inodes;
pub mod model;
pub mod overlay;
pub mod store;
pub mod sync;
pub mod view;
