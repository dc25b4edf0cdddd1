//! The only user of git2: objects in, objects out.
//!
//! `git2::Repository` is `Send` but not `Sync`, so [`Repo`] keeps a small pool of
//! handles to the same repository and lends one to each caller for the length of a
//! closure. No `git2` object with a lifetime ever leaves this module: callers get
//! plain data (`TreeEntry`, `Snapshot`, byte vectors).
//!
//! A repository is untrusted input. Tree entries whose names Git would never write
//! (`.`, `..`, empty, longer than NAME_MAX, containing `/` or NUL) are skipped with a
//! warning, and objects larger than the limits below are refused rather than read.

use std::io::Read;
use std::path::{Path, PathBuf};

use crate::store::Oid;
use crate::store::error::{StoreError, StoreResult};
use git2::{ObjectType, Repository, RepositoryOpenFlags};
use parking_lot::Mutex;

use crate::store::treeobj::Listing;

/// The longest name a tree entry may have to be served.
pub const NAME_MAX: usize = crate::store::names::NAME_MAX;
/// A tree object larger than this is refused with EIO (a 64 MiB tree holds about a
/// million entries; anything bigger is hostile or broken).
/// libgit2 stops listing loose refs, silently, at a directory nested 100
/// levels below where its walk starts (`refs/heads/` for the branches); from
/// this depth below `refs/` on, the refs are read by hand instead.
const LIBGIT2_REFS_DEPTH: usize = 90;

pub const MAX_TREE_BYTES: usize = 64 << 20;
/// Chunk size when streaming a blob.
const STREAM_CHUNK: usize = 256 << 10;

/// What one tree entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    File { executable: bool },
    Symlink,
    Dir,
    Submodule,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeEntry {
    pub name: Box<[u8]>,
    pub oid: Oid,
    pub kind: EntryKind,
}

/// A commit (or, for a tag of a bare tree, just a tree) as a mount shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Snapshot {
    pub commit: Option<Oid>,
    pub tree: Oid,
    /// Committer time, seconds since the epoch.
    pub time: i64,
}

/// libgit2's settings, once, before any thread starts:
/// - how much of the packs it keeps mapped: windows of 32 MiB, at most
///   128 MiB mapped in all (its defaults, 1 GiB and 8 GiB, let a walk of
///   large blobs keep gigabytes of pack pages in the daemon's RSS; measured
///   with `scripts/memory.sh`);
/// - no hash check of its own on every object read: blobs and trees are
///   checked here ([`check_id`]) with the `sha1` crate, which uses the CPU's
///   SHA instructions, where libgit2's collision-detecting SHA-1 was 8% of
///   the daemon's CPU in a cold read of 100,000 files (perf).
pub fn tune_libgit2() {
    git2::opts::strict_hash_verification(false);
    // SAFETY: called from main before any other thread exists (these set
    // libgit2 globals without synchronization).
    unsafe {
        let _ = git2::opts::set_mwindow_size(32 << 20);
        let _ = git2::opts::set_mwindow_mapped_limit(128 << 20);
    }
}

/// EIO unless `data` is the content of object `oid` of type `kind`: a
/// damaged object is never served as if it were sound.
fn check_id(kind: &str, oid: Oid, data: &[u8]) -> StoreResult<()> {
    if crate::store::treeobj::hash_object(kind, data) == oid {
        Ok(())
    } else {
        Err(StoreError::Corrupt {
            id: oid,
            what: "its content does not hash to its id".into(),
        })
    }
}

/// Why a repository could not be opened; each says what the user should do.
#[derive(Debug)]
pub enum OpenError {
    Missing(PathBuf),
    NotGit(PathBuf, String),
}

impl std::fmt::Display for OpenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OpenError::Missing(p) => write!(
                f,
                "repository {} does not exist: give the path of a bare repository or of a .git directory",
                p.display()
            ),
            OpenError::NotGit(p, why) => write!(
                f,
                "{} is not a Git repository ({why}): give a bare repository (data.git) or a .git directory",
                p.display()
            ),
        }
    }
}

pub struct Repo {
    git_dir: PathBuf,
    /// The common directory: the same as `git_dir`, except in a linked work
    /// tree's git directory (`.git/worktrees/NAME`), whose `commondir` names
    /// the main repository's.
    common_dir: PathBuf,
    /// Handles lent by `with`, each with the `generation` it was opened in.
    pool: Mutex<Vec<(u64, Repository)>>,
    /// Moves on when packs of ours were merged away: older handles are
    /// dropped rather than lent again.
    generation: std::sync::atomic::AtomicU64,
    /// Packs of ours that nothing keeps, by level (see `release_packs`). A
    /// leaf lock; no I/O under it.
    released: Mutex<Vec<Vec<PackInfo>>>,
    /// Trees already warned about (so a tree read again after the cache
    /// dropped it is not logged again).
    warned_trees: Mutex<lru::LruCache<Oid, ()>>,
    /// The refs were found damaged and that was logged.
    refs_warned: std::sync::atomic::AtomicBool,
    /// `packed-refs` as last looked at (mtime, size, inode) and whether it had
    /// bad lines. A leaf lock.
    #[allow(clippy::type_complexity)]
    packed_health: Mutex<Option<(Option<(Option<std::time::SystemTime>, u64, u64)>, bool)>>,
    /// Whole blobs read straight out of the packs (sizes, small blobs,
    /// large blobs stored whole, streamed), of the repository's own object
    /// directory and its alternates as they were at open; libgit2 for the
    /// rest.
    packs: Vec<crate::store::packs::Packs>,
}

impl Repo {
    /// Opens the repository at `path`: a bare repository, a `.git` directory, or a
    /// work tree (whose `.git` is used; the work tree itself is never touched).
    pub fn open(path: &Path) -> Result<Repo, OpenError> {
        // The commit path writes blobs into a pack batch that reaches the object
        // database only after the trees naming them are built (see ObjectBatch);
        // libgit2's check that every tree entry already exists would refuse
        // that. commitfs builds trees only from ids it read or wrote itself.
        git2::opts::strict_object_creation(false);
        // A server that hangs must not hold the sync thread for ever.
        // SAFETY: libgit2 global options, set before any network use.
        unsafe {
            let _ = git2::opts::set_server_connect_timeout_in_milliseconds(10_000);
            let _ = git2::opts::set_server_timeout_in_milliseconds(60_000);
        }
        if !path.exists() {
            return Err(OpenError::Missing(path.to_path_buf()));
        }
        let repo = Repository::open_ext(
            path,
            RepositoryOpenFlags::NO_SEARCH,
            std::iter::empty::<&std::ffi::OsStr>(),
        )
        .map_err(|e| OpenError::NotGit(path.to_path_buf(), e.message().to_string()))?;
        // Sanity: a repository whose objects directory is gone is no repository.
        if let Err(e) = repo.odb() {
            return Err(OpenError::NotGit(
                path.to_path_buf(),
                e.message().to_string(),
            ));
        }
        let git_dir = repo.path().to_path_buf();
        let common_dir = repo.commondir().to_path_buf();
        let packs = object_dirs(&repo)
            .iter()
            .map(|d| crate::store::packs::Packs::new(d))
            .collect();
        Ok(Repo {
            packs,
            git_dir,
            common_dir,
            pool: Mutex::new(vec![(0, repo)]),
            generation: std::sync::atomic::AtomicU64::new(0),
            released: Mutex::new(Vec::new()),
            refs_warned: std::sync::atomic::AtomicBool::new(false),
            packed_health: Mutex::new(None),
            warned_trees: Mutex::new(lru::LruCache::new(
                std::num::NonZeroUsize::new(4096).unwrap_or(std::num::NonZeroUsize::MIN),
            )),
        })
    }

    pub fn git_dir(&self) -> &Path {
        &self.git_dir
    }

    pub fn common_dir(&self) -> &Path {
        &self.common_dir
    }

    /// Runs `f` with a repository handle from the pool.
    pub(in crate::store) fn with<R>(
        &self,
        f: impl FnOnce(&Repository) -> StoreResult<R>,
    ) -> StoreResult<R> {
        let (generation, repo) = self.take_handle()?;
        let out = f(&repo);
        self.give_back(generation, repo);
        out
    }

    /// Runs `f` with a handle lent for one commit's work (see [`Txn`]); `f`
    /// fails with the store's errors or with its caller's.
    pub fn with_txn<R, E: From<StoreError>>(
        &self,
        f: impl FnOnce(&Txn<'_>) -> Result<R, E>,
    ) -> Result<R, E> {
        let (generation, git) = self.take_handle()?;
        let out = f(&Txn { git: &git });
        self.give_back(generation, git);
        out
    }

    /// A handle of the current generation from the pool, or a new one.
    fn take_handle(&self) -> StoreResult<(u64, Repository)> {
        use std::sync::atomic::Ordering;
        let now = self.generation.load(Ordering::Relaxed);
        loop {
            match self.pool.lock().pop() {
                Some((g, r)) if g == now => return Ok((g, r)),
                Some(_) => continue,
                None => return Ok((now, Repository::open_bare(&self.git_dir)?)),
            }
        }
    }

    /// Back into the pool, unless packs were merged away since it was opened.
    fn give_back(&self, generation: u64, repo: Repository) {
        if generation == self.generation.load(std::sync::atomic::Ordering::Relaxed) {
            self.pool.lock().push((generation, repo));
        }
    }

    /// All refs under `prefix` (`refs/heads/` or `refs/tags/`), as (name without the
    /// prefix, target). Symbolic refs under the prefix are skipped. When
    /// libgit2 cannot read the refs (a corrupt `packed-refs` fails them all),
    /// they are read by hand instead, skipping only the lines that are bad,
    /// and the damage is logged once.
    pub fn refs(&self, prefix: &str) -> StoreResult<Vec<(Vec<u8>, Oid)>> {
        let by_git = if self.packed_refs_damaged() {
            Err(StoreError::io("packed-refs has lines that are not refs"))
        } else if crate::store::refs_file::nested_at_least(self.common_dir(), LIBGIT2_REFS_DEPTH) {
            Err(StoreError::io(
                "refs/ holds directories nested deeper than libgit2 lists",
            ))
        } else {
            self.with(|repo| {
                let mut out = Vec::new();
                for r in repo.references_glob(&format!("{prefix}*"))? {
                    let r = r?;
                    let Some(target) = r.target() else { continue };
                    if let Some(short) = r.name_bytes().strip_prefix(prefix.as_bytes()) {
                        out.push((short.to_vec(), Oid::from(target)));
                    }
                }
                out.sort();
                Ok(out)
            })
        };
        match by_git {
            Ok(v) => Ok(v),
            Err(e) => {
                self.refs_damaged(&e);
                let all = crate::store::refs_file::read_refs(self.common_dir());
                let mut out: Vec<(Vec<u8>, Oid)> = all
                    .refs
                    .into_iter()
                    .filter_map(|(name, oid)| {
                        name.strip_prefix(prefix.as_bytes())
                            .map(|s| (s.to_vec(), oid))
                    })
                    .collect();
                out.sort();
                Ok(out)
            }
        }
    }

    /// Whether `packed-refs` holds lines that are not refs. libgit2 then
    /// drops every packed ref without a word (or fails them all), so the refs
    /// are read by hand instead. Parsed again only when the file changes.
    fn packed_refs_damaged(&self) -> bool {
        let path = self.common_dir().join("packed-refs");
        let stamp = std::fs::metadata(&path).ok().map(|m| {
            (
                m.modified().ok(),
                m.len(),
                std::os::unix::fs::MetadataExt::ino(&m),
            )
        });
        let mut known = self.packed_health.lock();
        if let Some((s, bad)) = &*known
            && *s == stamp
        {
            return *bad;
        }
        let bad = stamp.is_some()
            && std::fs::read(&path)
                .map(|d| crate::store::refs_file::parse_packed(&d).1 > 0)
                .unwrap_or(false);
        *known = Some((stamp, bad));
        bad
    }

    /// Logs, once for the mount, that the refs could not be read by libgit2.
    fn refs_damaged(&self, e: &StoreError) {
        use std::sync::atomic::Ordering;
        if !self.refs_warned.swap(true, Ordering::Relaxed) {
            log::warn!(
                "the repository's refs cannot be read by libgit2 ({e}); reading them by hand, skipping what is damaged"
            );
        } else {
            log::debug!("refs still damaged: {e}");
        }
    }

    /// Whether the repository has object `oid` (any kind, packed or loose).
    pub fn has_object(&self, oid: Oid) -> StoreResult<bool> {
        self.with(|r| Ok(r.odb()?.exists(git2::Oid::from(oid))))
    }

    /// Which of `oids` the repository does not have on disk now, asked of a
    /// handle opened for it: the pooled ones cache objects and go on reading
    /// packs that gc has deleted (they hold them open), so they can say an
    /// object is there when git would not find it.
    pub fn missing_on_disk(&self, oids: &[Oid]) -> StoreResult<Vec<Oid>> {
        if oids.is_empty() {
            return Ok(Vec::new());
        }
        let fresh = Repository::open_bare(&self.git_dir)?;
        let odb = fresh.odb()?;
        Ok(oids
            .iter()
            .copied()
            .filter(|o| !odb.exists(git2::Oid::from(*o)))
            .collect())
    }

    /// The commit a ref points to now, if the ref exists.
    pub fn ref_target(&self, full_name: &[u8]) -> StoreResult<Option<Oid>> {
        let Ok(name) = std::str::from_utf8(full_name) else {
            // libgit2 takes ref names as C strings; a non-UTF-8 ref is looked up by scan.
            return Ok(self
                .refs("refs/")?
                .into_iter()
                .find(|(n, _)| full_name.strip_prefix(b"refs/") == Some(&n[..]))
                .map(|(_, o)| o));
        };
        let by_git = if self.packed_refs_damaged() {
            Err(StoreError::io("packed-refs has lines that are not refs"))
        } else {
            self.with(|repo| match repo.find_reference(name) {
                Ok(r) => Ok(r.resolve().ok().and_then(|r| r.target()).map(Oid::from)),
                Err(e) if e.code() == git2::ErrorCode::NotFound => Ok(None),
                Err(e) if e.code() == git2::ErrorCode::InvalidSpec => Ok(None),
                Err(e) => Err(e.into()),
            })
        };
        match by_git {
            Ok(v) => Ok(v),
            Err(e) => {
                self.refs_damaged(&e);
                Ok(crate::store::refs_file::read_refs(self.common_dir())
                    .refs
                    .into_iter()
                    .find(|(n, _)| n == full_name)
                    .map(|(_, o)| o))
            }
        }
    }

    /// What HEAD names: `Ok(Head::Branch(name))` for a symbolic HEAD on an existing
    /// branch, `Head::Detached(oid)` for a detached HEAD, `Head::Unborn` otherwise.
    pub fn head(&self) -> StoreResult<Head> {
        self.with(|repo| {
            let head = match repo.find_reference("HEAD") {
                Ok(h) => h,
                Err(_) => return Ok(Head::Unborn),
            };
            if let Some(target) = head.symbolic_target_bytes() {
                let Some(branch) = target.strip_prefix(b"refs/heads/") else {
                    return Ok(Head::Unborn);
                };
                let exists = head.resolve().is_ok();
                return Ok(if exists {
                    Head::Branch(branch.to_vec())
                } else {
                    Head::Unborn
                });
            }
            Ok(match head.target() {
                Some(oid) => Head::Detached(Oid::from(oid)),
                None => Head::Unborn,
            })
        })
    }

    /// Peels any object id (a commit, an annotated tag, a tree) to what a mount shows.
    pub fn snapshot(&self, oid: Oid) -> StoreResult<Snapshot> {
        self.with(|repo| {
            let obj = repo.find_object(git2::Oid::from(oid), None)?;
            snapshot_of(obj)
        })
    }

    /// The blob `oid` names, if it is one or a chain of tags that ends at one
    /// (a tag of a public key, as git/git's `junio-gpg-pub`). Any other
    /// object is `None`.
    pub fn peel_to_blob(&self, oid: Oid) -> StoreResult<Option<Oid>> {
        self.with(|repo| {
            let obj = repo.find_object(git2::Oid::from(oid), None)?;
            match obj.peel(ObjectType::Blob) {
                Ok(b) if b.kind() == Some(ObjectType::Blob) => Ok(Some(Oid::from(b.id()))),
                _ => Ok(None),
            }
        })
    }

    /// Resolves a revision (`main~3`, an abbreviated SHA, `v1.0^{}`) to a snapshot.
    /// `Ok(None)` when it does not resolve or names something that is not a commit,
    /// a tag of one, or a tree.
    pub fn resolve(&self, rev: &str) -> StoreResult<Option<Snapshot>> {
        self.with(|repo| {
            let obj = match repo.revparse_single(rev) {
                Ok(o) => o,
                Err(_) => return Ok(None),
            };
            match snapshot_of(obj) {
                Ok(s) => Ok(Some(s)),
                Err(StoreError::NotFound(_)) => Ok(None),
                Err(e) => Err(e),
            }
        })
    }

    /// A tree as the mount shows it: entries sorted by name bytes (so that
    /// lookups can binary-search), and those it does not show kept apart (see
    /// `treeobj`), with one warning per tree for what was skipped.
    pub fn read_tree(&self, oid: Oid) -> StoreResult<Listing> {
        let mut listing = self
            .with(|repo| tree_object(repo, oid, |data| Ok(crate::store::treeobj::parse(data))))?;
        listing.tree = Some(oid);
        if !listing.skipped.is_empty() && self.warned_trees.lock().put(oid, ()).is_none() {
            let shown: Vec<String> = listing
                .skipped
                .iter()
                .take(8)
                .map(|(why, name)| {
                    format!("{:?} ({})", String::from_utf8_lossy(name), why.describe())
                })
                .collect();
            log::warn!(
                "tree {oid}: {} entr{} not shown: {}{}",
                listing.skipped.len(),
                if listing.skipped.len() == 1 {
                    "y"
                } else {
                    "ies"
                },
                shown.join(", "),
                if listing.skipped.len() > 8 {
                    ", ..."
                } else {
                    ""
                }
            );
        }
        // Said; the names are not kept twice in the tree cache.
        listing.skipped = Vec::new();
        Ok(listing)
    }

    /// Every entry of a tree as stored, hidden ones included (for diffs, which
    /// must see what changed however hostile).
    pub fn raw_tree(
        repo: &Repository,
        oid: Oid,
    ) -> StoreResult<Vec<crate::store::treeobj::RawEntry>> {
        tree_object(repo, oid, |data| {
            Ok(crate::store::treeobj::parse_raw(data).0)
        })
    }

    /// A blob's size from its object header, without inflating it.
    pub fn blob_size(&self, oid: Oid) -> StoreResult<u64> {
        if let Some(size) = self.packs.iter().find_map(|p| p.blob_size(oid.as_bytes())) {
            return Ok(size);
        }
        self.with(|repo| {
            let (size, kind) = repo.odb()?.read_header(git2::Oid::from(oid))?;
            if kind != ObjectType::Blob {
                return Err(StoreError::io(format!(
                    "object {oid} is a {kind}, not a blob"
                )));
            }
            Ok(size as u64)
        })
    }

    /// A whole blob in memory. For blobs the caller knows to be small; large ones
    /// go through [`Repo::stream_blob`] (whose caller checks the hash as it
    /// spills). Its hash is checked before it is returned.
    pub fn read_blob(&self, oid: Oid) -> StoreResult<std::sync::Arc<[u8]>> {
        // Read straight out of the packs when they hold it; bytes that do not
        // hash to the id are not served from there: libgit2 reads it again,
        // and its bytes are checked below (so a damaged object is EIO).
        if let Some(data) = self.packs.iter().find_map(|p| p.read_blob(oid.as_bytes()))
            && check_id("blob", oid, &data).is_ok()
        {
            return Ok(std::sync::Arc::from(data));
        }
        self.with(|repo| {
            let odb = repo.odb()?;
            let obj = odb
                .read(git2::Oid::from(oid))
                .map_err(|e| StoreError::reading(e, oid))?;
            if obj.kind() != ObjectType::Blob {
                return Err(StoreError::io(format!(
                    "object {oid} is a {}, not a blob",
                    obj.kind()
                )));
            }
            check_id("blob", oid, obj.data())?;
            // One copy, straight into what the cache keeps.
            Ok(std::sync::Arc::from(obj.data()))
        })
    }

    /// Streams a blob to `sink` in chunks, holding no more than a chunk in memory
    /// when the object is loose or stored whole in a pack. A deltified packed blob
    /// has to be inflated once in memory (libgit2 cannot stream deltas).
    pub fn stream_blob(
        &self,
        oid: Oid,
        sink: &mut dyn FnMut(&[u8]) -> std::io::Result<()>,
    ) -> StoreResult<u64> {
        self.with(|repo| {
            let odb = repo.odb()?;
            if let Ok((reader, size, kind)) = odb.reader(git2::Oid::from(oid)) {
                if kind != ObjectType::Blob {
                    return Err(StoreError::io(format!(
                        "object {oid} is a {kind}, not a blob"
                    )));
                }
                return copy_exact(reader, size as u64, sink, oid);
            }
            let whole = self
                .packs
                .iter()
                .find_map(|p| p.stream_blob(oid.as_bytes()));
            if let Some((reader, size)) = whole {
                return copy_exact(reader, size, sink, oid);
            }
            // A blob stored as a delta must be inflated whole; one at a time, so
            // that the memory this takes is bounded by the largest such blob.
            static WHOLE: Mutex<()> = Mutex::new(());
            let _one = WHOLE.lock();
            log::debug!("blob {oid} is deltified; inflating it whole once");
            let obj = odb
                .read(git2::Oid::from(oid))
                .map_err(|e| StoreError::reading(e, oid))?;
            if obj.kind() != ObjectType::Blob {
                return Err(StoreError::io(format!("object {oid} is not a blob")));
            }
            sink(obj.data()).map_err(|e| {
                StoreError::from_io(&e, format_args!("writing blob {oid} to a spill file"))
            })?;
            Ok(obj.len() as u64)
        })
    }
}

/// Deflate works hardest on what it cannot shrink: a blob whose first 256 KiB
/// do not compress by a tenth is stored uncompressed (still a zlib stream; `git
/// gc` compresses it when it packs).
fn compression_for(file: &std::fs::File, size: u64) -> StoreResult<flate2::Compression> {
    use std::io::Write;
    use std::os::unix::fs::FileExt;
    let n = size.min(256 << 10) as usize;
    let mut sample = vec![0u8; n];
    file.read_exact_at(&mut sample, 0)?;
    let mut z = flate2::write::ZlibEncoder::new(Vec::with_capacity(n), flate2::Compression::fast());
    z.write_all(&sample)?;
    let packed = z.finish()?.len();
    Ok(if packed * 10 > n * 9 {
        flate2::Compression::none()
    } else {
        flate2::Compression::fast()
    })
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Head {
    Branch(Vec<u8>),
    Detached(Oid),
    Unborn,
}

fn snapshot_of(obj: git2::Object<'_>) -> StoreResult<Snapshot> {
    if let Ok(commit) = obj.peel(ObjectType::Commit) {
        let commit = commit
            .into_commit()
            .map_err(|_| StoreError::io("peeled object is not a commit"))?;
        return Ok(Snapshot {
            commit: Some(Oid::from(commit.id())),
            tree: Oid::from(commit.tree_id()),
            time: commit.committer().when().seconds(),
        });
    }
    match obj.peel(ObjectType::Tree) {
        Ok(tree) => Ok(Snapshot {
            commit: None,
            tree: Oid::from(tree.id()),
            time: 0,
        }),
        Err(_) => Err(StoreError::NotFound(format!(
            "a commit or tree at {}",
            obj.id()
        ))),
    }
}

fn copy_exact(
    mut reader: impl Read,
    size: u64,
    sink: &mut dyn FnMut(&[u8]) -> std::io::Result<()>,
    oid: Oid,
) -> StoreResult<u64> {
    let mut buf = vec![0u8; STREAM_CHUNK];
    let mut total = 0u64;
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(StoreError::from_io(&e, format_args!("reading blob {oid}"))),
        };
        total += n as u64;
        if total > size {
            return Err(StoreError::io(format!(
                "blob {oid} is longer than its header says"
            )));
        }
        sink(&buf[..n]).map_err(|e| {
            StoreError::from_io(&e, format_args!("writing blob {oid} to a spill file"))
        })?;
    }
    if total != size {
        return Err(StoreError::io(format!(
            "blob {oid} ended after {total} of {size} bytes"
        )));
    }
    Ok(total)
}

/// The object directories to look for packs in: the repository's own (shared by
/// linked worktrees through the common dir) and its alternates, one level deep.
fn object_dirs(repo: &Repository) -> Vec<PathBuf> {
    let own = repo.commondir().join("objects");
    let mut dirs = vec![own.clone()];
    if let Ok(text) = std::fs::read(own.join("info/alternates")) {
        use std::os::unix::ffi::OsStrExt;
        for line in text.split(|&b| b == b'\n') {
            if line.is_empty() || line.starts_with(b"#") {
                continue;
            }
            let p = Path::new(std::ffi::OsStr::from_bytes(line));
            dirs.push(if p.is_absolute() {
                p.to_path_buf()
            } else {
                own.join(p)
            });
        }
    }
    dirs
}

pub use crate::store::names::valid_name;

/// The bytes of tree object `oid`, given to `f`: EIO for an object that is
/// not a tree or is over MAX_TREE_BYTES (checked from its header first).
fn tree_object<R>(
    repo: &Repository,
    oid: Oid,
    f: impl FnOnce(&[u8]) -> StoreResult<R>,
) -> StoreResult<R> {
    let odb = repo.odb()?;
    let (size, kind) = odb.read_header(git2::Oid::from(oid))?;
    if kind != ObjectType::Tree {
        return Err(StoreError::io(format!(
            "object {oid} is a {kind}, not a tree"
        )));
    }
    if size > MAX_TREE_BYTES {
        return Err(StoreError::io(format!(
            "tree {oid} is {size} bytes, over the limit of {MAX_TREE_BYTES}"
        )));
    }
    let obj = odb
        .read(git2::Oid::from(oid))
        .map_err(|e| StoreError::reading(e, oid))?;
    check_id("tree", oid, obj.data())?;
    f(obj.data())
}

/// The bytes of a commit object of `tree` with `parents`, made by hand:
/// libgit2's own commit creation parses the tree first and refuses one that
/// holds entries a mount keeps unseen (an empty name, a mode over 16 bits).
pub fn commit_bytes(tree: Oid, parents: &[Oid], sig: &git2::Signature<'_>, msg: &str) -> Vec<u8> {
    fn person(out: &mut Vec<u8>, what: &str, s: &git2::Signature<'_>) {
        let t = s.when();
        let off = t.offset_minutes();
        out.extend_from_slice(what.as_bytes());
        out.push(b' ');
        // Git's own rule: no '<', '>' or newline inside a name or an email.
        let clean = |b: &[u8]| -> Vec<u8> {
            b.iter()
                .copied()
                .filter(|c| !matches!(c, b'<' | b'>' | b'\n'))
                .collect()
        };
        out.extend_from_slice(&clean(s.name_bytes()));
        out.extend_from_slice(b" <");
        out.extend_from_slice(&clean(s.email_bytes()));
        out.extend_from_slice(
            format!(
                "> {} {}{:02}{:02}\n",
                t.seconds(),
                if off < 0 { '-' } else { '+' },
                off.abs() / 60,
                off.abs() % 60
            )
            .as_bytes(),
        );
    }
    let mut out = Vec::with_capacity(256 + msg.len());
    out.extend_from_slice(format!("tree {tree}\n").as_bytes());
    for p in parents {
        out.extend_from_slice(format!("parent {p}\n").as_bytes());
    }
    person(&mut out, "author", sig);
    person(&mut out, "committer", sig);
    out.push(b'\n');
    out.extend_from_slice(msg.as_bytes());
    out
}

/// Debug builds only: while `GITDIR/commitfs-test-gc-before-ref` exists, a
/// commit runs `git gc --prune=now` and `git prune --expire=now` on the
/// repository after writing its objects and before moving the ref (the
/// window a concurrent gc would hit), and waits for them.
#[cfg(debug_assertions)]
pub fn test_gc_before_ref(git_dir: &Path) {
    if !git_dir.join("commitfs-test-gc-before-ref").exists() {
        return;
    }
    for args in [
        &["gc", "--prune=now", "--quiet"][..],
        &["prune", "--expire=now"],
    ] {
        let out = std::process::Command::new("git")
            .arg("--git-dir")
            .arg(git_dir)
            .args(args)
            .stdin(std::process::Stdio::null())
            .output();
        match out {
            Ok(o) if o.status.success() => {}
            Ok(o) => log::warn!(
                "test hook: git {args:?} failed: {}",
                String::from_utf8_lossy(&o.stderr).trim()
            ),
            Err(e) => log::warn!("test hook: git {args:?} did not run: {e}"),
        }
    }
}

/// Where the server's branches and tags are remembered after a fetch (a
/// namespace of commitfs's own, apart from the user's remotes).
pub const REMOTE_HEADS: &str = "refs/commitfs/remote/heads/";
pub const REMOTE_TAGS: &str = "refs/commitfs/remote/tags/";

/// A URL with any user or password taken out, for logs and `status`.
pub fn redact_url(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let (auth, host) = match rest.split_once('/') {
                Some((a, p)) => (a, format!("/{p}")),
                None => (rest, String::new()),
            };
            match auth.rsplit_once('@') {
                Some((_, h)) => format!("{scheme}://***@{h}{host}"),
                None => url.to_string(),
            }
        }
        None => url.to_string(),
    }
}

/// `msg` with every user and password of URL `spec` taken out.
pub fn scrub(msg: &str, spec: &str) -> String {
    let mut out = msg.replace(spec, &redact_url(spec));
    if let Some((_, rest)) = spec.split_once("://")
        && let Some((auth, _)) = rest.split('/').next().unwrap_or("").rsplit_once('@')
    {
        for secret in auth.split(':').filter(|s| !s.is_empty()) {
            out = out.replace(secret, "***");
        }
    }
    out
}

/// Credentials as git finds them: the ssh agent, then `~/.ssh` keys, for ssh;
/// the configured credential helpers for http(s). Each kind is tried once, so
/// that a server refusing them ends the attempt instead of looping.
fn remote_callbacks<'a>(config: Option<git2::Config>) -> git2::RemoteCallbacks<'a> {
    let mut cb = git2::RemoteCallbacks::new();
    let mut tried = std::collections::HashSet::new();
    cb.credentials(move |url, username, allowed| {
        use git2::{Cred, CredentialType};
        let user = username.unwrap_or("git");
        if allowed.contains(CredentialType::USERNAME) && tried.insert("username") {
            return Cred::username(user);
        }
        if allowed.contains(CredentialType::SSH_KEY) {
            if tried.insert("agent") {
                return Cred::ssh_key_from_agent(user);
            }
            let home = std::env::var_os("HOME")
                .map(PathBuf::from)
                .unwrap_or_default();
            for key in ["id_ed25519", "id_ecdsa", "id_rsa"] {
                let path = home.join(".ssh").join(key);
                if path.exists() && tried.insert(key) {
                    return Cred::ssh_key(user, None, &path, None);
                }
            }
        }
        if allowed.contains(CredentialType::USER_PASS_PLAINTEXT)
            && tried.insert("helper")
            && let Some(cfg) = &config
        {
            return Cred::credential_helper(cfg, url, username);
        }
        if allowed.contains(CredentialType::DEFAULT) && tried.insert("default") {
            return Cred::default();
        }
        Err(git2::Error::from_str("no credentials the server accepts"))
    });
    cb
}

/// What a push did to one ref.
pub struct Pushed {
    pub refname: String,
    /// The server's reason for refusing it, and what the server said while
    /// the push ran (its hooks' `remote:` lines), if anything.
    pub rejected: Option<String>,
}

/// The lines a server sent on its side band while a push ran (what its
/// hooks print, shown by git as `remote: ...`), at most a few KiB, as one
/// line: `; ` between them.
fn server_said(raw: &[u8]) -> String {
    const MAX: usize = 4096;
    let text = String::from_utf8_lossy(&raw[..raw.len().min(MAX)]);
    // Progress ("Resolving deltas:  33% (1/3)") is redrawn with `\r`; what
    // a hook says ends with `\n`.
    text.split('\n')
        .filter_map(|l| l.rsplit('\r').next())
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.contains("% ("))
        .collect::<Vec<_>>()
        .join("; ")
}

impl Repo {
    /// The remote `spec` names: a remote of the repository, or a URL.
    fn remote<'r>(repo: &'r Repository, spec: &str) -> StoreResult<git2::Remote<'r>> {
        match repo.find_remote(spec) {
            Ok(r) => Ok(r),
            Err(_) => Ok(repo.remote_anonymous(spec)?),
        }
    }

    /// Fetches every branch and tag of the server into the REMOTE_HEADS and
    /// REMOTE_TAGS namespaces (the server's refs as they are, rewinds
    /// included); nothing of the user's refs is touched.
    pub fn fetch_remote(&self, spec: &str) -> StoreResult<()> {
        self.with(|repo| {
            let mut remote = Self::remote(repo, spec)?;
            let mut fo = git2::FetchOptions::new();
            fo.remote_callbacks(remote_callbacks(repo.config().ok()));
            fo.download_tags(git2::AutotagOption::None);
            let specs = [
                format!("+refs/heads/*:{REMOTE_HEADS}*"),
                format!("+refs/tags/*:{REMOTE_TAGS}*"),
            ];
            remote.fetch(&specs, Some(&mut fo), None).map_err(|e| {
                StoreError::of_remote(
                    &e,
                    format!(
                        "fetch from {}: {}",
                        redact_url(spec),
                        scrub(e.message(), spec)
                    ),
                )
            })?;
            // Branches deleted on the server: their remembered tips go too.
            let listed: std::collections::HashSet<String> = remote
                .list()?
                .iter()
                .map(|h| h.name().to_string())
                .collect();
            let stale: Vec<String> = repo
                .references_glob(&format!("{REMOTE_HEADS}*"))?
                .flatten()
                .filter_map(|r| r.name().ok().map(str::to_string))
                .filter(|n| !listed.contains(&format!("refs/heads/{}", &n[REMOTE_HEADS.len()..])))
                .collect();
            for n in stale {
                if let Ok(mut r) = repo.find_reference(&n) {
                    let _ = r.delete();
                }
            }
            Ok(())
        })
    }

    /// Pushes each (full name under refs/heads/, commit) to that name on the
    /// server, exactly that commit, never forcing. Returns what happened to each.
    pub fn push_remote(&self, spec: &str, refs: &[(String, Oid)]) -> StoreResult<Vec<Pushed>> {
        self.with(|repo| {
            let mut remote = Self::remote(repo, spec)?;
            let results = std::sync::Arc::new(parking_lot::Mutex::new(Vec::new()));
            let said = std::sync::Arc::new(parking_lot::Mutex::new(Vec::<u8>::new()));
            let mut cb = remote_callbacks(repo.config().ok());
            let s2 = said.clone();
            cb.sideband_progress(move |data| {
                let mut s = s2.lock();
                if s.len() < 4096 {
                    s.extend_from_slice(data);
                }
                true
            });
            let r2 = results.clone();
            cb.push_update_reference(move |name, status| {
                r2.lock().push(Pushed {
                    refname: name.to_string(),
                    rejected: status.map(str::to_string),
                });
                Ok(())
            });
            let mut po = git2::PushOptions::new();
            po.remote_callbacks(cb);
            let specs: Vec<String> = refs.iter().map(|(r, oid)| format!("{oid}:{r}")).collect();
            let pushed = remote.push(&specs, Some(&mut po));
            let words = server_said(&said.lock());
            let words = scrub(&words, spec);
            let server = |m: String| {
                if words.is_empty() {
                    m
                } else {
                    format!("{m}; the server said: {words}")
                }
            };
            pushed.map_err(|e| {
                StoreError::of_remote(
                    &e,
                    server(format!(
                        "push to {}: {}",
                        redact_url(spec),
                        scrub(e.message(), spec)
                    )),
                )
            })?;
            let mut out = std::mem::take(&mut *results.lock());
            for p in &mut out {
                p.rejected = p.rejected.take().map(&server);
            }
            Ok(out)
        })
    }

    /// Sets `refname` to `oid` whatever it was (for commitfs's own refs only).
    pub fn cas_ref_force(&self, refname: &str, oid: Oid) -> StoreResult<()> {
        self.with(|repo| {
            repo.reference(
                refname,
                git2::Oid::from(oid),
                true,
                "commitfs: the server has it",
            )?;
            Ok(())
        })
    }

    /// Whether `a` is `b` or one of its ancestors.
    pub fn is_ancestor(&self, a: Oid, b: Oid) -> StoreResult<bool> {
        if a == b {
            return Ok(true);
        }
        self.with(|repo| Ok(repo.graph_descendant_of(b.into(), a.into())?))
    }

    /// How many commits `b` has that `a` does not (at most `cap`).
    pub fn count_ahead(&self, b: Oid, a: Option<Oid>, cap: usize) -> StoreResult<usize> {
        self.with(|repo| {
            let mut walk = repo.revwalk()?;
            walk.push(git2::Oid::from(b))?;
            if let Some(a) = a {
                walk.hide(git2::Oid::from(a))?;
            }
            Ok(walk.take(cap).count())
        })
    }

    /// Moves `refname` from `old` (None: it must not exist) to `new`, only if it
    /// is still at `old`. False if someone moved it first.
    pub fn cas_ref(&self, refname: &str, old: Option<Oid>, new: Oid, msg: &str) -> StoreResult<()> {
        self.with(|git| Txn::of(git).move_ref(refname, new, old, msg))
    }
}

/// The word the `.keep` files commitfs makes start with: `commitfs PID on HOST`.
const KEEP_WORD: &str = "commitfs";

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".into())
}

/// A pack this daemon wrote into `objects/pack`, with a `.keep` file beside
/// it from before the pack became visible until this is dropped.
///
/// `git gc` and `git repack -a -d` never delete a pack that has a `.keep`
/// (its objects are not even repacked unless bitmaps are written, and the
/// pack stays either way), and `git prune` deletes only loose objects: so
/// the objects of a commit in the making survive any gc until the ref names
/// them, after which the ref protects them and the `.keep` goes.
pub struct KeptPack {
    id: Oid,
    /// The `.keep` this daemon made (None: one was there already, not ours
    /// to remove).
    keep: Option<PathBuf>,
    /// What is in it, for merging it later (see [`Repo::release_packs`]).
    info: Option<PackInfo>,
}

/// A pack of this daemon's own: its length and where each object is in it.
struct PackInfo {
    id: Oid,
    len: u64,
    /// (id, CRC32 of its bytes, offset) of each object.
    entries: Vec<([u8; 20], u32, u64)>,
}

impl KeptPack {
    /// The pack's checksum, which names it (`pack-<id>.pack`).
    pub fn id(&self) -> Oid {
        self.id
    }

    /// Removes the `.keep`: the pack is gc's like any other from now on.
    pub fn release(self) {}
}

impl Drop for KeptPack {
    fn drop(&mut self) {
        if let Some(k) = self.keep.take()
            && let Err(e) = std::fs::remove_file(&k)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            log::warn!("cannot remove {}: {e}", k.display());
        }
    }
}

/// Where writing into `objects/pack` failed, for the error.
fn in_pack_dir(dir: &Path) -> String {
    format!("writing a pack in {}", dir.display())
}

/// The bytes of a pack as they are written: hashed for the trailer, and the
/// current object's CRC32 for the index.
struct PackOut {
    w: std::io::BufWriter<std::fs::File>,
    sha: sha1::Sha1,
    crc: flate2::Crc,
    pos: u64,
    /// Bytes of the file whose writeback was started (see `write_behind`).
    started: u64,
}

/// A large pack is written back as it is written, this much at a time, with
/// at most twice this much dirty: its final fsync then has little left to
/// do, and on ext4 (one journal, data=ordered) an fsync elsewhere (another
/// branch's save) does not wait for a gigabyte of it.
pub(crate) const WRITE_BEHIND: u64 = 8 << 20;

/// Starts writeback of `file` from `*started` to `end` once that is at least
/// `WRITE_BEHIND`, and waits for the step before it to be on disk (so that
/// dirty bytes stay bounded). Best effort: errors show at the fsync.
pub(crate) fn write_behind(file: &std::fs::File, started: &mut u64, end: u64, wait: bool) {
    use std::os::fd::AsRawFd;
    if end < *started + WRITE_BEHIND {
        return;
    }
    let (Ok(off), Ok(len)) = (i64::try_from(*started), i64::try_from(end - *started)) else {
        return;
    };
    // SAFETY: file is an open descriptor; sync_file_range only reads its
    // arguments.
    unsafe {
        if wait && off >= WRITE_BEHIND as i64 {
            libc::sync_file_range(
                file.as_raw_fd(),
                off - WRITE_BEHIND as i64,
                WRITE_BEHIND as i64,
                libc::SYNC_FILE_RANGE_WAIT_BEFORE
                    | libc::SYNC_FILE_RANGE_WRITE
                    | libc::SYNC_FILE_RANGE_WAIT_AFTER,
            );
        }
        libc::sync_file_range(file.as_raw_fd(), off, len, libc::SYNC_FILE_RANGE_WRITE);
    }
    *started = end;
}

impl std::io::Write for PackOut {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        use sha1::Digest;
        let n = self.w.write(buf)?;
        self.sha.update(&buf[..n]);
        self.crc.update(&buf[..n]);
        self.pos += n as u64;
        let on_disk = self.pos - self.w.buffer().len() as u64;
        write_behind(self.w.get_ref(), &mut self.started, on_disk, true);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.w.flush()
    }
}

/// A version 2 pack being written under a temporary name in `objects/pack`:
/// objects whole (no deltas), deflated at the fastest level. Nothing sees it
/// until [`PackWriter::finish`]; dropped before that, it is removed.
struct PackWriter {
    dir: PathBuf,
    tmp: tempfile::NamedTempFile,
    out: PackOut,
    count: u32,
    /// (id, CRC32 of its bytes in the pack, offset) of each object.
    entries: Vec<([u8; 20], u32, u64)>,
}

/// The name a temporary file of this daemon gets in `objects/pack` (git
/// deletes only its own `tmp_*` and `.tmp-<pid>-*` files there; stale ones of
/// ours are removed at the next start, see [`clean_stale_keeps`]).
fn pack_tmp(dir: &Path) -> std::io::Result<tempfile::NamedTempFile> {
    tempfile::Builder::new()
        .prefix(&format!(".{KEEP_WORD}-{}-", std::process::id()))
        .suffix(".tmp")
        .tempfile_in(dir)
}

impl PackWriter {
    /// A pack of exactly `count` objects in `dir` (`objects/pack`).
    fn new(dir: &Path, count: usize) -> StoreResult<PackWriter> {
        use std::io::Write;
        let count =
            u32::try_from(count).map_err(|_| StoreError::io("too many objects for one pack"))?;
        let tmp = pack_tmp(dir).map_err(|e| StoreError::from_io(&e, in_pack_dir(dir)))?;
        let file = tmp
            .as_file()
            .try_clone()
            .map_err(|e| StoreError::from_io(&e, in_pack_dir(dir)))?;
        let mut out = PackOut {
            w: std::io::BufWriter::with_capacity(1 << 20, file),
            sha: sha1::Digest::new(),
            crc: flate2::Crc::new(),
            pos: 0,
            started: 0,
        };
        let mut head = Vec::with_capacity(12);
        head.extend_from_slice(b"PACK");
        head.extend_from_slice(&2u32.to_be_bytes());
        head.extend_from_slice(&count.to_be_bytes());
        out.write_all(&head)
            .map_err(|e| StoreError::from_io(&e, in_pack_dir(dir)))?;
        Ok(PackWriter {
            dir: dir.to_path_buf(),
            tmp,
            out,
            count,
            entries: Vec::new(),
        })
    }

    /// Starts an object: its type (1 commit, 2 tree, 3 blob) and size, 4 bits
    /// then 7 bits a byte.
    fn begin(&mut self, kind: ObjectType, size: u64) -> std::io::Result<u64> {
        use std::io::Write;
        let t: u8 = match kind {
            ObjectType::Commit => 1,
            ObjectType::Tree => 2,
            _ => 3,
        };
        let offset = self.out.pos;
        self.out.crc.reset();
        let mut head = Vec::with_capacity(10);
        let mut size = size;
        let mut c = (t << 4) | (size & 0x0f) as u8;
        size >>= 4;
        while size != 0 {
            head.push(c | 0x80);
            c = (size & 0x7f) as u8;
            size >>= 7;
        }
        head.push(c);
        self.out.write_all(&head)?;
        Ok(offset)
    }

    /// Adds an object whose bytes are at hand; `oid` is their id.
    fn add(&mut self, oid: Oid, kind: ObjectType, data: &[u8]) -> StoreResult<()> {
        use std::io::Write;
        let dir = self.dir.clone();
        let err = |e: std::io::Error| StoreError::from_io(&e, in_pack_dir(&dir));
        let offset = self.begin(kind, data.len() as u64).map_err(err)?;
        let mut z = flate2::write::ZlibEncoder::new(&mut self.out, flate2::Compression::fast());
        z.write_all(data).map_err(err)?;
        z.finish().map_err(err)?;
        self.entry(oid, offset)
    }

    /// Adds the first `size` bytes of `file` as a blob, hashing and
    /// compressing as it reads; returns the blob's id.
    fn add_file(&mut self, file: &std::fs::File, size: u64) -> StoreResult<Oid> {
        use sha1::{Digest, Sha1};
        use std::io::Write;
        use std::os::unix::fs::FileExt;
        let dir = self.dir.clone();
        let err = |e: std::io::Error| StoreError::from_io(&e, in_pack_dir(&dir));
        let level = compression_for(file, size)?;
        let offset = self.begin(ObjectType::Blob, size).map_err(err)?;
        let mut hasher = Sha1::new();
        hasher.update(format!("blob {size}\0").as_bytes());
        let mut z = flate2::write::ZlibEncoder::new(&mut self.out, level);
        let mut buf = vec![0u8; STREAM_CHUNK * 4];
        let mut pos = 0u64;
        while pos < size {
            let n = (size - pos).min(buf.len() as u64) as usize;
            file.read_exact_at(&mut buf[..n], pos)?;
            hasher.update(&buf[..n]);
            z.write_all(&buf[..n]).map_err(err)?;
            pos += n as u64;
        }
        z.finish().map_err(err)?;
        let oid = Oid::from_bytes(&hasher.finalize())?;
        self.entry(oid, offset)?;
        Ok(oid)
    }

    /// Adds an object's bytes as another pack of ours holds them (its
    /// header and deflated data, no delta).
    fn add_raw(&mut self, oid: Oid, bytes: &[u8]) -> StoreResult<()> {
        use std::io::Write;
        let offset = self.out.pos;
        self.out.crc.reset();
        self.out
            .write_all(bytes)
            .map_err(|e| StoreError::from_io(&e, in_pack_dir(&self.dir)))?;
        self.entry(oid, offset)
    }

    fn entry(&mut self, oid: Oid, offset: u64) -> StoreResult<()> {
        let raw: [u8; 20] = oid
            .as_bytes()
            .try_into()
            .map_err(|_| StoreError::io("object id is not SHA-1"))?;
        self.entries.push((raw, self.out.crc.sum(), offset));
        Ok(())
    }

    /// Ends the pack and makes it visible, kept: the `.keep` first, then the
    /// pack, then its index (which is what git and libgit2 look for). Not
    /// fsynced: see [`sync_packs`].
    fn finish(mut self) -> StoreResult<KeptPack> {
        use sha1::Digest;
        use std::io::Write;
        let dir = self.dir.clone();
        let err = |e: std::io::Error| StoreError::from_io(&e, in_pack_dir(&dir));
        if self.entries.len() != self.count as usize {
            return Err(StoreError::io(format!(
                "a pack of {} objects got {}",
                self.count,
                self.entries.len()
            )));
        }
        let sum: [u8; 20] = self.out.sha.finalize_reset().into();
        self.out.w.write_all(&sum).map_err(err)?;
        self.out.w.flush().map_err(err)?;
        let id = Oid::from_bytes(&sum)?;
        let idx = encode_idx(&mut self.entries, &sum);
        let mut idx_tmp = pack_tmp(&dir).map_err(err)?;
        idx_tmp.write_all(&idx).map_err(err)?;
        let base = dir.join(format!("pack-{id}"));
        let keep_path = base.with_extension("keep");
        let keep = match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&keep_path)
        {
            Ok(mut f) => {
                f.write_all(
                    format!("{KEEP_WORD} {} on {}\n", std::process::id(), host_name()).as_bytes(),
                )
                .map_err(err)?;
                Some(keep_path)
            }
            // Kept already (the same pack, written before): not ours to remove.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => None,
            Err(e) => return Err(err(e)),
        };
        let info = PackInfo {
            id,
            len: self.out.pos + 20,
            entries: std::mem::take(&mut self.entries),
        };
        let kept = KeptPack {
            id,
            keep,
            info: Some(info),
        };
        for f in [self.tmp.as_file(), idx_tmp.as_file()] {
            let _ = f.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o444));
        }
        self.tmp
            .persist(base.with_extension("pack"))
            .map_err(|e| err(e.error))?;
        if let Err(e) = idx_tmp.persist(base.with_extension("idx")) {
            let _ = std::fs::remove_file(base.with_extension("pack"));
            return Err(err(e.error));
        }
        Ok(kept)
    }
}

/// A version 2 pack index of `entries` (sorted here by id) for the pack whose
/// checksum is `pack_sum`.
fn encode_idx(entries: &mut [([u8; 20], u32, u64)], pack_sum: &[u8; 20]) -> Vec<u8> {
    use sha1::{Digest, Sha1};
    entries.sort_by_key(|e| e.0);
    let mut out = Vec::with_capacity(8 + 1024 + entries.len() * 28 + 40);
    out.extend_from_slice(b"\xfftOc");
    out.extend_from_slice(&2u32.to_be_bytes());
    let mut fan = [0u32; 256];
    for (id, _, _) in entries.iter() {
        fan[id[0] as usize] += 1;
    }
    let mut total = 0u32;
    for n in fan {
        total += n;
        out.extend_from_slice(&total.to_be_bytes());
    }
    for (id, _, _) in entries.iter() {
        out.extend_from_slice(id);
    }
    for (_, crc, _) in entries.iter() {
        out.extend_from_slice(&crc.to_be_bytes());
    }
    // Offsets past 2^31 go into a table of 64-bit ones, named by index.
    let mut large = Vec::new();
    for (_, _, off) in entries.iter() {
        if *off < 0x8000_0000 {
            out.extend_from_slice(&(*off as u32).to_be_bytes());
        } else {
            out.extend_from_slice(&(0x8000_0000 | large.len() as u32).to_be_bytes());
            large.push(*off);
        }
    }
    for off in large {
        out.extend_from_slice(&off.to_be_bytes());
    }
    out.extend_from_slice(pack_sum);
    let sum = Sha1::digest(&out);
    out.extend_from_slice(&sum);
    out
}

/// Released packs of one level are merged, this many at a time, into one of
/// the next level: commitfs's own packs stay few (libgit2 rescans the pack
/// directory in time proportional to packs times files, on every miss)
/// while each object is copied about log8(commits) times.
const MERGE_FAN: usize = 8;
/// Packs larger than this are not merged (each holds enough to be worth its
/// place; `git gc` packs them as usual).
const MERGE_MAX_INPUT: u64 = 4 << 20;

/// Merges `sources` (packs of ours that nothing keeps) into one pack: their
/// objects' bytes copied as they are, each object once. The new pack is
/// fsynced before the sources are removed, so that a crash in between
/// loses nothing. A source that is gone (gc replaced it) or that someone
/// keeps is left out. `None` when fewer than two were left.
fn merge_packs(dir: &Path, sources: &[PackInfo]) -> StoreResult<Option<PackInfo>> {
    use std::os::unix::fs::FileExt;
    let mut open = Vec::new();
    for s in sources {
        let base = dir.join(format!("pack-{}", s.id));
        if base.with_extension("keep").exists() {
            continue;
        }
        match std::fs::File::open(base.with_extension("pack")) {
            Ok(f) if f.metadata().is_ok_and(|m| m.len() == s.len) => open.push((s, f)),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
    }
    if open.len() < 2 {
        return Ok(None);
    }
    // Each object once, with the byte range it has in its pack.
    let mut seen = std::collections::HashSet::new();
    let mut plan = Vec::new();
    for (i, (s, _)) in open.iter().enumerate() {
        let mut at: Vec<&([u8; 20], u32, u64)> = s.entries.iter().collect();
        at.sort_by_key(|e| e.2);
        for (k, e) in at.iter().enumerate() {
            let end = at.get(k + 1).map_or(s.len - 20, |n| n.2);
            if end < e.2 {
                return Err(StoreError::io(format!("pack {} is not as written", s.id)));
            }
            if seen.insert(e.0) {
                plan.push((i, e.0, e.2, end));
            }
        }
    }
    let mut w = PackWriter::new(dir, plan.len())?;
    let mut buf = Vec::new();
    for (i, oid, from, to) in plan {
        buf.resize((to - from) as usize, 0);
        open[i].1.read_exact_at(&mut buf, from)?;
        w.add_raw(Oid::from_bytes(&oid)?, &buf)?;
    }
    let mut kept = w.finish()?;
    sync_packs(dir, &[kept.id], usize::MAX)?;
    for (s, _) in &open {
        if s.id == kept.id {
            continue;
        }
        // The index first: it is what makes a pack visible.
        for ext in ["idx", "pack"] {
            match std::fs::remove_file(dir.join(format!("pack-{}.{ext}", s.id))) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    let info = kept.info.take();
    kept.release();
    Ok(info)
}

impl Repo {
    /// Lets go of packs a commit kept (the ref names it now, or it will not
    /// be made): their `.keep` files go, and once MERGE_FAN of ours of a
    /// level have gathered they are merged into one. Never fails: a merge
    /// that cannot be made leaves the packs as they are.
    pub fn release_packs(&self, packs: Vec<KeptPack>) {
        {
            let mut levels = self.released.lock();
            for mut p in packs {
                let info = p
                    .info
                    .take()
                    .filter(|i| p.keep.is_some() && i.len <= MERGE_MAX_INPUT);
                p.release();
                if let Some(i) = info {
                    if levels.is_empty() {
                        levels.push(Vec::new());
                    }
                    levels[0].push(i);
                }
            }
        }
        let dir = self.common_dir.join("objects/pack");
        loop {
            // Taken out under the lock, merged without it.
            let (level, group) = {
                let mut levels = self.released.lock();
                let Some(l) = levels.iter().position(|v| v.len() >= MERGE_FAN) else {
                    return;
                };
                let group: Vec<PackInfo> = levels[l].drain(..MERGE_FAN).collect();
                (l, group)
            };
            match merge_packs(&dir, &group) {
                Ok(Some(merged)) => {
                    log::debug!(
                        "merged {} packs into pack-{} ({} bytes)",
                        group.len(),
                        merged.id,
                        merged.len
                    );
                    // Handles that saw the merged packs are not lent again
                    // (libgit2 never forgets a pack it found).
                    self.generation
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if merged.len <= MERGE_MAX_INPUT {
                        let mut levels = self.released.lock();
                        while levels.len() <= level + 1 {
                            levels.push(Vec::new());
                        }
                        levels[level + 1].push(merged);
                    }
                }
                Ok(None) => {}
                Err(e) => log::warn!("merging commitfs's packs in {}: {e}", dir.display()),
            }
        }
    }
}

/// fsyncs the packs named (by checksum), their indexes and `objects/pack`;
/// more than `one_by_one` of them, the whole filesystem at once (one journal
/// commit instead of one per file). A pack gc has already replaced is gone,
/// which is fine: gc's own pack holds its objects.
pub fn sync_packs(pack_dir: &Path, ids: &[Oid], one_by_one: usize) -> StoreResult<()> {
    if ids.is_empty() {
        return Ok(());
    }
    if ids.len() > one_by_one {
        let d = std::fs::File::open(pack_dir)?;
        nix::unistd::syncfs(&d).map_err(std::io::Error::from)?;
        return Ok(());
    }
    for id in ids {
        for ext in ["pack", "idx"] {
            match std::fs::File::open(pack_dir.join(format!("pack-{id}.{ext}"))) {
                Ok(f) => f.sync_all()?,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    std::fs::File::open(pack_dir)?.sync_all()?;
    Ok(())
}

/// Removes the `.keep` files (and temporary files) in `objects/pack` that a
/// commitfs daemon of this host made and that no running one holds any more
/// (one killed between writing a pack and moving its ref): the pack is then
/// either named by a ref or garbage, for gc either way. Others' `.keep`
/// files stay. Returns how many were removed.
pub fn clean_stale_keeps(pack_dir: &Path) -> usize {
    let Ok(dir) = std::fs::read_dir(pack_dir) else {
        return 0;
    };
    let host = host_name();
    let me = std::process::id();
    // Ours at start-up: nothing of this process is in flight yet, so a pid
    // of ours in a file is an earlier process's that had the same pid.
    let gone = |pid: u32| {
        pid == me
            || i32::try_from(pid).is_ok_and(|p| {
                // Signal 0 only checks that the process exists.
                nix::sys::signal::kill(nix::unistd::Pid::from_raw(p), None)
                    == Err(nix::errno::Errno::ESRCH)
            })
    };
    let mut removed = 0;
    for e in dir.flatten() {
        let name = e.file_name();
        let name = name.as_encoded_bytes();
        let stale = if name.starts_with(b"pack-") && name.ends_with(b".keep") {
            let mut text = [0u8; 256];
            let n = std::fs::File::open(e.path())
                .and_then(|mut f| f.read(&mut text))
                .unwrap_or(0);
            let text = String::from_utf8_lossy(&text[..n]);
            let mut words = text.split_whitespace();
            words.next() == Some(KEEP_WORD)
                && words
                    .next()
                    .and_then(|p| p.parse::<u32>().ok())
                    .is_some_and(|pid| {
                        words.next() == Some("on")
                            && words.next() == Some(host.as_str())
                            && gone(pid)
                    })
        } else if let Some(rest) = name
            .strip_prefix(format!(".{KEEP_WORD}-").as_bytes())
            .filter(|_| name.ends_with(b".tmp"))
        {
            let pid = rest.split(|&b| b == b'-').next().unwrap_or_default();
            std::str::from_utf8(pid)
                .ok()
                .and_then(|p| p.parse::<u32>().ok())
                .is_some_and(gone)
        } else {
            false
        };
        if stale {
            match std::fs::remove_file(e.path()) {
                Ok(()) => {
                    log::info!(
                        "removed {}, left by a commitfs that is gone",
                        e.path().display()
                    );
                    removed += 1;
                }
                Err(err) => log::warn!("cannot remove {}: {err}", e.path().display()),
            }
        }
    }
    removed
}

/// The objects one commit writes: blobs, trees and the commit itself, each
/// batch one pack (see [`KeptPack`]) instead of one loose file each, and each
/// large blob streamed into a pack of its own.
///
/// The ids are known at once (hashed on `add`), but an object exists in the
/// repository only after `flush`; until then [`ObjectBatch::get`] has its
/// bytes. The packs stay kept until the batch lets go of them
/// ([`ObjectBatch::take_kept`]): after the ref names the commit.
#[derive(Default)]
pub struct ObjectBatch {
    objects: Vec<(Oid, ObjectType, Vec<u8>)>,
    /// Where each object not flushed yet is in `objects`.
    index: std::collections::HashMap<Oid, usize>,
    /// Objects in the packs this batch wrote.
    written: std::collections::HashSet<Oid>,
    bytes: usize,
    /// The packs this batch wrote.
    kept: Vec<KeptPack>,
    /// Packs of earlier commits kept with them (see `hold`).
    held: Vec<KeptPack>,
    /// Packs written since the last `take_new_packs` (by checksum).
    new_packs: Vec<Oid>,
}

/// A repository handle lent for one commit's work ([`Repo::with_txn`]): the
/// ref it goes on, its objects ([`ObjectBatch`]), its compare-and-swap. It
/// holds one pooled libgit2 handle for the whole try, so that every object
/// written is visible to the next read; libgit2 stays behind it.
pub struct Txn<'a> {
    git: &'a Repository,
}

/// What the ref a commit goes on names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tip {
    /// A commit: the new one goes on top.
    Commit,
    /// A tree, a blob or a tag object: no commit can have it as parent.
    NotCommit,
    /// An object the repository does not have (pruned).
    Missing,
}

impl<'a> Txn<'a> {
    pub(in crate::store) fn of(git: &'a Repository) -> Txn<'a> {
        Txn { git }
    }

    pub(in crate::store) fn git(&self) -> &'a Repository {
        self.git
    }

    /// The common git directory.
    pub fn common_dir(&self) -> &Path {
        self.git.commondir()
    }

    /// Where `refname` points now, if it exists.
    pub fn ref_target(&self, refname: &str) -> Option<Oid> {
        self.git.refname_to_id(refname).ok().map(Oid::from)
    }

    /// What `oid`, a ref's target, is.
    pub fn tip(&self, oid: Oid) -> StoreResult<Tip> {
        match self.git.find_object(oid.into(), None).map(|o| o.kind()) {
            Ok(Some(ObjectType::Commit)) => Ok(Tip::Commit),
            Ok(_) => Ok(Tip::NotCommit),
            Err(e) if e.code() == git2::ErrorCode::NotFound => Ok(Tip::Missing),
            Err(e) => Err(e.into()),
        }
    }

    /// Moves `refname` to `new` if it still names `expected` (None: if it
    /// does not exist): false if another writer moved it first (the
    /// compare-and-swap lost).
    pub fn move_ref(
        &self,
        refname: &str,
        new: Oid,
        expected: Option<Oid>,
        msg: &str,
    ) -> StoreResult<()> {
        let moved = match expected {
            Some(t) => self
                .git
                .reference_matching(refname, new.into(), true, t.into(), msg),
            None => self.git.reference(refname, new.into(), false, msg),
        };
        match moved {
            Ok(_) => Ok(()),
            Err(e) if StoreError::is_cas_lost(&e) => Err(StoreError::CasLost(refname.into())),
            Err(e) => Err(e.into()),
        }
    }

    /// `core.excludesFile`, if the configuration sets it.
    pub fn excludes_file(&self) -> Option<PathBuf> {
        self.git
            .config()
            .ok()
            .and_then(|c| c.get_path("core.excludesFile").ok())
    }
}

impl ObjectBatch {
    /// A blob larger than this is not batched but streamed into a pack of its
    /// own ([`ObjectBatch::add_blob_file`]).
    pub const MAX_OBJECT: u64 = 1 << 20;
    /// The batch is flushed once it holds this many bytes.
    pub const MAX_BYTES: usize = 32 << 20;

    /// Adds a blob; returns its id. The caller must `flush` before the id is used
    /// by anything that outlives the commit.
    pub fn add_blob(&mut self, repo: &Txn<'_>, data: Vec<u8>) -> StoreResult<Oid> {
        self.add(repo, ObjectType::Blob, data)
    }

    /// Adds a tree object (its bytes, as `treeobj::serialize` gives them).
    pub fn add_tree(&mut self, repo: &Txn<'_>, data: Vec<u8>) -> StoreResult<Oid> {
        self.add(repo, ObjectType::Tree, data)
    }

    /// Adds a commit object (its bytes, as [`commit_bytes`] gives them).
    pub fn add_commit(&mut self, repo: &Txn<'_>, data: Vec<u8>) -> StoreResult<Oid> {
        self.add(repo, ObjectType::Commit, data)
    }

    /// Adds the commit of tree `tree` with `parents` and message `msg`,
    /// signed now by `author` (else the repository's user: see
    /// `branches::signature`).
    pub fn add_commit_of(
        &mut self,
        repo: &Txn<'_>,
        tree: Oid,
        parents: &[Oid],
        author: Option<&(String, String)>,
        msg: &str,
    ) -> StoreResult<Oid> {
        let sig = crate::store::branches::signature(repo.git, author)?;
        self.add_commit(repo, commit_bytes(tree, parents, &sig, msg))
    }

    fn add(&mut self, repo: &Txn<'_>, kind: ObjectType, data: Vec<u8>) -> StoreResult<Oid> {
        let oid = crate::store::treeobj::hash_object(kind.str(), &data);
        self.add_object(repo, oid, kind, data)?;
        Ok(oid)
    }

    /// Adds a blob whose id the caller has computed (`hash_object`).
    pub fn add_hashed_blob(&mut self, repo: &Txn<'_>, oid: Oid, data: Vec<u8>) -> StoreResult<()> {
        self.add_object(repo, oid, ObjectType::Blob, data)
    }

    fn add_object(
        &mut self,
        repo: &Txn<'_>,
        oid: Oid,
        kind: ObjectType,
        data: Vec<u8>,
    ) -> StoreResult<()> {
        if !self.contains(oid) {
            self.bytes += data.len();
            self.index.insert(oid, self.objects.len());
            self.objects.push((oid, kind, data));
            if self.bytes >= Self::MAX_BYTES {
                self.flush(repo)?;
            }
        }
        Ok(())
    }

    /// Streams the first `size` bytes of `file` into a kept pack of its own
    /// as a blob, and returns the blob's id; unless the id is `unless` (a
    /// blob the caller knows is there): then nothing is written.
    pub fn add_blob_file(
        &mut self,
        repo: &Txn<'_>,
        file: &std::fs::File,
        size: u64,
        unless: Option<Oid>,
    ) -> StoreResult<Oid> {
        let mut w = PackWriter::new(&repo.git.commondir().join("objects/pack"), 1)?;
        let oid = w.add_file(file, size)?;
        if Some(oid) == unless || self.contains(oid) {
            return Ok(oid);
        }
        self.kept.push(w.finish()?);
        self.written.insert(oid);
        self.new_packs.push(oid_of_last(&self.kept));
        repo.git.odb()?.refresh()?;
        Ok(oid)
    }

    /// Whether the object is in this batch, flushed or not.
    pub fn contains(&self, oid: Oid) -> bool {
        self.index.contains_key(&oid) || self.written.contains(&oid)
    }

    /// The bytes of an object added and not flushed yet.
    pub fn get(&self, oid: Oid) -> Option<&[u8]> {
        self.index.get(&oid).map(|&i| &self.objects[i].2[..])
    }

    pub fn is_empty(&self) -> bool {
        self.objects.is_empty()
    }

    /// Forgets what was added and not flushed (a try that will not commit).
    pub fn drop_unflushed(&mut self) {
        self.objects.clear();
        self.index.clear();
        self.bytes = 0;
    }

    /// Takes the packs this batch wrote: dropping them removes their `.keep`.
    pub fn take_kept(&mut self) -> Vec<KeptPack> {
        std::mem::take(&mut self.kept)
    }

    /// Keeps `packs` (of earlier commits) while this batch is at work.
    pub fn hold(&mut self, packs: Vec<KeptPack>) {
        self.held.extend(packs);
    }

    /// Takes the packs given to `hold`.
    pub fn take_held(&mut self) -> Vec<KeptPack> {
        std::mem::take(&mut self.held)
    }

    /// The checksums of the packs written since the last call (not fsynced:
    /// the caller makes them durable, see [`sync_packs`]).
    pub fn take_new_packs(&mut self) -> Vec<Oid> {
        std::mem::take(&mut self.new_packs)
    }

    /// Writes what was added as one kept pack.
    pub fn flush(&mut self, repo: &Txn<'_>) -> StoreResult<()> {
        if self.objects.is_empty() {
            return Ok(());
        }
        let mut w = PackWriter::new(
            &repo.git.commondir().join("objects/pack"),
            self.objects.len(),
        )?;
        for (oid, kind, data) in &self.objects {
            w.add(*oid, *kind, data)?;
        }
        self.kept.push(w.finish()?);
        self.new_packs.push(oid_of_last(&self.kept));
        self.written.extend(self.objects.iter().map(|(o, _, _)| *o));
        self.drop_unflushed();
        // libgit2 finds a new pack on its next miss; make it look now, so
        // that nothing reads a batched id as missing in between.
        repo.git.odb()?.refresh()?;
        Ok(())
    }
}

fn oid_of_last(kept: &[KeptPack]) -> Oid {
    kept.last().map_or(Oid::ZERO, KeptPack::id)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fetch's or push's failure is classified by libgit2's code and class,
    /// whatever its message says.
    #[test]
    fn remote_failures_are_typed_by_code_and_class() {
        use git2::{Error, ErrorClass, ErrorCode};
        let of = |code, class| StoreError::of_remote(&Error::new(code, class, "words"), "m".into());
        assert!(matches!(
            of(ErrorCode::NotFastForward, ErrorClass::Reference),
            StoreError::Refused(_)
        ));
        for class in [
            ErrorClass::Net,
            ErrorClass::Ssh,
            ErrorClass::Http,
            ErrorClass::Ssl,
        ] {
            assert!(matches!(
                of(ErrorCode::GenericError, class),
                StoreError::Network(_)
            ));
        }
        assert!(matches!(
            of(ErrorCode::Auth, ErrorClass::Callback),
            StoreError::Remote(_)
        ));
        assert_eq!(of(ErrorCode::GenericError, ErrorClass::Os).to_string(), "m");
    }

    fn packs(repo: &Repository) -> usize {
        std::fs::read_dir(repo.path().join("objects/pack"))
            .map(|d| {
                d.filter(|e| {
                    e.as_ref()
                        .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "pack"))
                })
                .count()
            })
            .unwrap_or(0)
    }

    fn git(dir: &Path, args: &[&str]) -> std::process::Output {
        std::process::Command::new("git")
            .arg("--git-dir")
            .arg(dir)
            .args(args)
            .output()
            .unwrap()
    }

    fn keeps(dir: &Path) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(dir.join("objects/pack"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "keep"))
            .collect();
        v.sort();
        v
    }

    fn has(dir: &Path, oid: Oid) -> bool {
        git(dir, &["cat-file", "-e", &oid.to_string()])
            .status
            .success()
    }

    fn gc(dir: &Path) {
        for args in [
            &["gc", "--prune=now", "--quiet"][..],
            &["prune", "--expire=now"],
        ] {
            let out = git(dir, args);
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }

    /// A loose object whose bytes are not what its id says is refused as
    /// `Corrupt`, with its id, and is EIO to a program.
    #[test]
    fn a_damaged_object_is_corrupt_with_its_id() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let git = Repository::init_bare(dir.path()).unwrap();
        let blob = Oid::from(git.blob(b"sound bytes\n").unwrap());
        let mut tb = git.treebuilder(None).unwrap();
        tb.insert("f", git2::Oid::from(blob), 0o100644).unwrap();
        let tree = Oid::from(tb.write().unwrap());
        // Each object's file is replaced by a well-formed object of other
        // bytes (the same kind and a valid zlib stream, so only the hash can
        // tell).
        for (id, kind) in [(blob, "blob"), (tree, "tree")] {
            let hex = id.to_string();
            let path = dir.path().join("objects").join(&hex[..2]).join(&hex[2..]);
            let body: &[u8] = if kind == "blob" {
                b"other bytes\n"
            } else {
                b""
            };
            let mut raw = format!("{kind} {}\0", body.len()).into_bytes();
            raw.extend_from_slice(body);
            let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
            z.write_all(&raw).unwrap();
            let mut perm = std::fs::metadata(&path).unwrap().permissions();
            #[allow(clippy::permissions_set_readonly_false)]
            perm.set_readonly(false);
            std::fs::set_permissions(&path, perm).unwrap();
            std::fs::write(&path, z.finish().unwrap()).unwrap();
        }
        let repo = Repo::open(dir.path()).unwrap();
        match repo.read_blob(blob) {
            Err(StoreError::Corrupt { id, .. }) => assert_eq!(id, blob),
            other => panic!("a damaged blob read as {other:?}"),
        }
        match repo.read_tree(tree) {
            Err(StoreError::Corrupt { id, .. }) => assert_eq!(id, tree),
            other => panic!("a damaged tree read as {:?}", other.map(|_| ())),
        }
        let e = crate::error::FsError::from(repo.read_blob(blob).unwrap_err());
        assert_eq!(e.errno(), libc::EIO);
        assert!(e.to_string().contains(&blob.to_string()), "{e}");
    }

    #[test]
    fn a_batch_is_one_pack_kept_until_let_go() {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repository::init_bare(dir.path()).unwrap();
        let mut batch = ObjectBatch::default();
        let mut blobs = Vec::new();
        for i in 0..40 {
            // Every blob twice, and one large enough for a multi-byte size header.
            let data = format!("blob {i}\n").repeat(if i == 0 { 5000 } else { 1 });
            let oid = batch
                .add_blob(&Txn::of(&repo), data.clone().into_bytes())
                .unwrap();
            assert_eq!(
                batch
                    .add_blob(&Txn::of(&repo), data.clone().into_bytes())
                    .unwrap(),
                oid
            );
            assert_eq!(batch.get(oid), Some(data.as_bytes()));
            blobs.push((oid, data));
        }
        let tree = batch
            .add_tree(
                &Txn::of(&repo),
                crate::store::treeobj::serialize(vec![crate::store::treeobj::RawEntry {
                    mode: (*b"100644").into(),
                    name: (*b"a").into(),
                    oid: blobs[1].0,
                }]),
            )
            .unwrap();
        let sig = git2::Signature::new("T", "t@example.com", &git2::Time::new(1, 0)).unwrap();
        let commit = batch
            .add_commit(&Txn::of(&repo), commit_bytes(tree, &[], &sig, "one\n"))
            .unwrap();
        assert_eq!(packs(&repo), 0, "nothing is written before the flush");
        batch.flush(&Txn::of(&repo)).unwrap();
        assert!(batch.is_empty() && batch.get(tree).is_none() && batch.contains(tree));
        assert_eq!(packs(&repo), 1);
        assert_eq!(batch.take_new_packs().len(), 1);
        // Kept, by a .keep that says whose it is.
        let k = keeps(dir.path());
        assert_eq!(k.len(), 1);
        let text = std::fs::read_to_string(&k[0]).unwrap();
        assert_eq!(
            text,
            format!("commitfs {} on {}\n", std::process::id(), host_name())
        );
        let idx = k[0].with_extension("idx");
        let out = git(dir.path(), &["verify-pack", idx.to_str().unwrap()]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        // A fresh handle reads them back by id, as git does.
        let again = Repository::open_bare(dir.path()).unwrap();
        for (oid, data) in &blobs {
            assert_eq!(
                again.find_blob(git2::Oid::from(*oid)).unwrap().content(),
                data.as_bytes()
            );
        }
        assert_eq!(
            again
                .find_commit(git2::Oid::from(commit))
                .unwrap()
                .tree_id(),
            tree
        );
        // Nothing names them, and gc at its most eager leaves them.
        gc(dir.path());
        assert!(has(dir.path(), commit) && has(dir.path(), blobs[0].0));
        // Let go: the .keep goes, and gc may take them.
        for p in batch.take_kept() {
            p.release();
        }
        assert!(keeps(dir.path()).is_empty());
        gc(dir.path());
        assert!(!has(dir.path(), commit) && !has(dir.path(), blobs[0].0));
    }

    #[test]
    fn a_large_blob_streams_into_a_pack_of_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repository::init_bare(dir.path()).unwrap();
        let mut batch = ObjectBatch::default();
        // Compressible, then not (stored), each over 2 MiB.
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let noise: Vec<u8> = (0..3 << 20)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        for data in [b"large and compressible\n".repeat(100_000), noise] {
            let mut f = tempfile::tempfile().unwrap();
            std::io::Write::write_all(&mut f, &data).unwrap();
            // One byte more in the file than in the blob: only `size` counts.
            std::io::Write::write_all(&mut f, b"!").unwrap();
            let size = data.len() as u64;
            let before = packs(&repo);
            let oid = batch
                .add_blob_file(&Txn::of(&repo), &f, size, None)
                .unwrap();
            assert_eq!(oid, crate::store::treeobj::hash_object("blob", &data));
            assert_eq!(packs(&repo), before + 1);
            assert_eq!(
                repo.find_blob(git2::Oid::from(oid)).unwrap().content(),
                &data[..]
            );
            // The same content again, known to be there: nothing is written.
            let mut other = ObjectBatch::default();
            assert_eq!(
                other
                    .add_blob_file(&Txn::of(&repo), &f, size, Some(oid))
                    .unwrap(),
                oid
            );
            assert_eq!(packs(&repo), before + 1);
            assert!(other.take_kept().is_empty());
        }
        let fsck = git(dir.path(), &["fsck", "--strict"]);
        assert!(
            fsck.status.success(),
            "{}",
            String::from_utf8_lossy(&fsck.stderr)
        );
        assert_eq!(keeps(dir.path()).len(), 2);
        gc(dir.path());
        assert_eq!(batch.take_kept().len(), 2);
        assert!(keeps(dir.path()).is_empty());
        // No temporary file is left in the pack directory.
        let left: Vec<_> = std::fs::read_dir(dir.path().join("objects/pack"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .filter(|n| n.as_encoded_bytes().ends_with(b".tmp"))
            .collect();
        assert!(left.is_empty(), "{left:?}");
    }

    #[test]
    fn an_index_names_offsets_past_2_gib_as_git_reads_them() {
        let mut entries = vec![
            ([0xee; 20], 7u32, 5u64 << 30),
            ([0x11; 20], 1, 12),
            ([0x80; 20], 2, (1 << 31) - 1),
            ([0x81; 20], 3, 1 << 31),
        ];
        let idx = encode_idx(&mut entries, &[0xab; 20]);
        let mut child = std::process::Command::new("git")
            .arg("show-index")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        std::io::Write::write_all(child.stdin.as_mut().unwrap(), &idx).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success());
        let text = String::from_utf8(out.stdout).unwrap();
        let hex = |b: u8| format!("{b:02x}").repeat(20);
        let expect = format!(
            "12 {} (00000001)\n2147483647 {} (00000002)\n2147483648 {} (00000003)\n5368709120 {} (00000007)\n",
            hex(0x11),
            hex(0x80),
            hex(0x81),
            hex(0xee)
        );
        assert_eq!(text, expect);
    }

    #[test]
    fn stale_keeps_of_daemons_gone_are_removed_and_no_others() {
        let dir = tempfile::tempdir().unwrap();
        let pack = dir.path().join("pack");
        std::fs::create_dir(&pack).unwrap();
        // A pid that is surely gone: a child that ran and was reaped.
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        let host = host_name();
        let write = |name: &str, text: &str| std::fs::write(pack.join(name), text).unwrap();
        write("pack-1.keep", &format!("commitfs {dead} on {host}\n"));
        write("pack-2.keep", &format!("commitfs 1 on {host}\n")); // alive
        write("pack-3.keep", &format!("commitfs {dead} on elsewhere\n"));
        write("pack-4.keep", ""); // the user's
        write("pack-5.keep", &format!("receive-pack {dead} on {host}\n"));
        write(
            "pack-6.keep",
            &format!("commitfs {} on {host}\n", std::process::id()),
        );
        write(&format!(".commitfs-{dead}-abc.tmp"), "half a pack");
        write(".commitfs-1-abc.tmp", "another daemon's");
        write("tmp_pack_x", "git's own");
        assert_eq!(clean_stale_keeps(&pack), 3);
        let mut left: Vec<String> = std::fs::read_dir(&pack)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(
            left,
            [
                ".commitfs-1-abc.tmp",
                "pack-2.keep",
                "pack-3.keep",
                "pack-4.keep",
                "pack-5.keep",
                "tmp_pack_x"
            ]
        );
    }

    #[test]
    fn released_packs_of_ours_are_merged_eight_into_one() {
        let dir = tempfile::tempdir().unwrap();
        Repository::init_bare(dir.path()).unwrap();
        let r = Repo::open(dir.path()).unwrap();
        let mut all = Vec::new();
        for i in 0..MERGE_FAN + 1 {
            r.with(|repo| {
                let mut batch = ObjectBatch::default();
                // The same blob in every pack: the merged pack has it once.
                all.push(batch.add_blob(&Txn::of(repo), b"in every pack\n".to_vec())?);
                all.push(batch.add_blob(&Txn::of(repo), format!("pack {i}\n").into_bytes())?);
                batch.flush(&Txn::of(repo))?;
                r.release_packs(batch.take_kept());
                Ok(())
            })
            .unwrap();
        }
        let repo = Repository::open_bare(dir.path()).unwrap();
        assert_eq!(packs(&repo), 2, "eight merged into one, and the ninth");
        assert!(keeps(dir.path()).is_empty());
        for oid in &all {
            assert!(
                repo.find_blob(git2::Oid::from(*oid)).is_ok(),
                "{oid} is there"
            );
        }
        for e in std::fs::read_dir(dir.path().join("objects/pack")).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "idx") {
                let out = git(dir.path(), &["verify-pack", p.to_str().unwrap()]);
                assert!(
                    out.status.success(),
                    "{}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }
        // The handles that knew the merged packs are not lent again.
        r.with(|repo| {
            for oid in &all {
                assert!(repo.find_blob(git2::Oid::from(*oid)).is_ok());
            }
            Ok(())
        })
        .unwrap();
    }
}
