//! The store: the repository's objects and refs. `repo` is the only module
//! that calls libgit2; `packs` reads sizes and whole blobs straight out of
//! mapped packs, `pack_stream` streams whole blobs out of packs,
//! `refs_file` reads refs by hand where libgit2 cannot, `treeobj` parses and
//! writes tree objects as bytes, `names` says which entry names may be shown
//! or made (git's `verify_path`), and `blob_cache` holds blob contents.

pub mod blob_cache;
pub mod names;
pub mod pack_stream;
pub mod packs;
pub mod refs_file;
pub mod repo;
pub mod treeobj;
