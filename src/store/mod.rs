//! The store: the repository's objects and refs, and the only layer that
//! calls libgit2. `repo` wraps the repository; `changes` diffs trees, edits
//! them by a list of changed paths and merges two branches' changes;
//! `branches` makes, removes and renames branch refs and signs commits;
//! `packs` reads sizes and whole blobs straight out of mapped packs (and
//! streams large blobs stored whole), `error` is the store's error type,
//! `refs_file` reads refs by hand where libgit2 cannot, `treeobj` parses and
//! writes tree objects as bytes, `names` says which entry names may be shown
//! or made (git's `verify_path`), and `blob_cache` holds blob contents.

pub use oid::Oid;

pub mod blob_cache;
pub mod branches;
pub mod changes;
pub mod error;
pub mod names;
pub mod oid;
pub mod packs;
pub mod refs_file;
pub mod repo;
pub mod treeobj;
