//! commitfs: a Git repository as a filesystem, every branch a directory.
//!
//! Layers, each with one job:
//! - `cli`: the command line and `-o` options -> a plain [`cli::MountConfig`].
//! - `daemon`: checks, detaching, mounting, signals, unmounting.
//! - `fuse`: the thin adapter from fuser's requests to the core.
//! - `fs`: the semantic core (lookup, getattr, read, readdir, ...).
//! - `inodes`: inode numbers <-> paths.
//! - `overlay`: a branch's pending changes (materialized directories and files).
//! - `branches`: mkdir, rmdir and rename of branch directories.
//! - `commit`: overlay -> trees -> commit -> ref; the settle window; scratch files.
//! - `gitignore`: which untracked paths the branch's ignore files leave out of commits.
//! - `prefetch`: pushes small files of listed directories into the page cache.
//! - `blob_cache`: blob contents, an LRU bounded in bytes plus spill files.
//! - `names`: which entry names may be shown or made (git's `verify_path`).
//! - `treeobj`: tree objects parsed and written as bytes (hostile ones too).
//! - `repo`: the only user of git2; `pack_stream` streams whole blobs out of packs.

pub mod barriers;
pub mod blob_cache;
pub mod branches;
pub mod cli;
pub mod commit;
pub mod control;
pub mod daemon;
pub mod error;
pub mod follow;
pub mod fs;
pub mod fuse;
pub mod ghosts;
pub mod gitignore;
pub mod inodes;
pub mod names;
pub mod overlay;
pub mod pack_stream;
pub mod prefetch;
pub mod recover;
pub mod refs_file;
pub mod repo;
pub mod sync;
pub mod treeobj;
pub mod watch;
pub mod write;
