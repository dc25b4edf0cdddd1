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

use git2::{ObjectType, Oid, Repository, RepositoryOpenFlags};
use parking_lot::Mutex;

use crate::error::{FsError, FsResult};
use crate::treeobj::Listing;

/// The longest name a tree entry may have to be served.
pub const NAME_MAX: usize = crate::names::NAME_MAX;
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
    pool: Mutex<Vec<Repository>>,
    /// Trees already warned about (so a tree read again after the cache
    /// dropped it is not logged again).
    warned_trees: Mutex<lru::LruCache<Oid, ()>>,
    /// The refs were found damaged and that was logged.
    refs_warned: std::sync::atomic::AtomicBool,
    /// `packed-refs` as last looked at (mtime, size, inode) and whether it had
    /// bad lines. A leaf lock.
    #[allow(clippy::type_complexity)]
    packed_health: Mutex<Option<(Option<(Option<std::time::SystemTime>, u64, u64)>, bool)>>,
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
        Ok(Repo {
            git_dir,
            common_dir,
            pool: Mutex::new(vec![repo]),
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
    pub fn with<R>(&self, f: impl FnOnce(&Repository) -> FsResult<R>) -> FsResult<R> {
        let repo = match self.pool.lock().pop() {
            Some(r) => r,
            None => Repository::open_bare(&self.git_dir)?,
        };
        let out = f(&repo);
        self.pool.lock().push(repo);
        out
    }

    /// All refs under `prefix` (`refs/heads/` or `refs/tags/`), as (name without the
    /// prefix, target). Symbolic refs under the prefix are skipped. When
    /// libgit2 cannot read the refs (a corrupt `packed-refs` fails them all),
    /// they are read by hand instead, skipping only the lines that are bad,
    /// and the damage is logged once.
    pub fn refs(&self, prefix: &str) -> FsResult<Vec<(Vec<u8>, Oid)>> {
        let by_git = if self.packed_refs_damaged() {
            Err(FsError::io("packed-refs has lines that are not refs"))
        } else if crate::refs_file::nested_at_least(self.common_dir(), LIBGIT2_REFS_DEPTH) {
            Err(FsError::io(
                "refs/ holds directories nested deeper than libgit2 lists",
            ))
        } else {
            self.with(|repo| {
                let mut out = Vec::new();
                for r in repo.references_glob(&format!("{prefix}*"))? {
                    let r = r?;
                    let Some(target) = r.target() else { continue };
                    if let Some(short) = r.name_bytes().strip_prefix(prefix.as_bytes()) {
                        out.push((short.to_vec(), target));
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
                let all = crate::refs_file::read_refs(self.common_dir());
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
                .map(|d| crate::refs_file::parse_packed(&d).1 > 0)
                .unwrap_or(false);
        *known = Some((stamp, bad));
        bad
    }

    /// Logs, once for the mount, that the refs could not be read by libgit2.
    fn refs_damaged(&self, e: &FsError) {
        use std::sync::atomic::Ordering;
        if !self.refs_warned.swap(true, Ordering::Relaxed) {
            log::warn!(
                "the repository's refs cannot be read by libgit2 ({e}); reading them by hand, skipping what is damaged"
            );
        } else {
            log::debug!("refs still damaged: {e}");
        }
    }

    /// The commit a ref points to now, if the ref exists.
    pub fn ref_target(&self, full_name: &[u8]) -> FsResult<Option<Oid>> {
        let Ok(name) = std::str::from_utf8(full_name) else {
            // libgit2 takes ref names as C strings; a non-UTF-8 ref is looked up by scan.
            return Ok(self
                .refs("refs/")?
                .into_iter()
                .find(|(n, _)| full_name.strip_prefix(b"refs/") == Some(&n[..]))
                .map(|(_, o)| o));
        };
        let by_git = if self.packed_refs_damaged() {
            Err(FsError::io("packed-refs has lines that are not refs"))
        } else {
            self.with(|repo| match repo.find_reference(name) {
                Ok(r) => Ok(r.resolve().ok().and_then(|r| r.target())),
                Err(e) if e.code() == git2::ErrorCode::NotFound => Ok(None),
                Err(e) if e.code() == git2::ErrorCode::InvalidSpec => Ok(None),
                Err(e) => Err(e.into()),
            })
        };
        match by_git {
            Ok(v) => Ok(v),
            Err(e) => {
                self.refs_damaged(&e);
                Ok(crate::refs_file::read_refs(self.common_dir())
                    .refs
                    .into_iter()
                    .find(|(n, _)| n == full_name)
                    .map(|(_, o)| o))
            }
        }
    }

    /// What HEAD names: `Ok(Head::Branch(name))` for a symbolic HEAD on an existing
    /// branch, `Head::Detached(oid)` for a detached HEAD, `Head::Unborn` otherwise.
    pub fn head(&self) -> FsResult<Head> {
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
                Some(oid) => Head::Detached(oid),
                None => Head::Unborn,
            })
        })
    }

    /// Peels any object id (a commit, an annotated tag, a tree) to what a mount shows.
    pub fn snapshot(&self, oid: Oid) -> FsResult<Snapshot> {
        self.with(|repo| {
            let obj = repo.find_object(oid, None)?;
            snapshot_of(obj)
        })
    }

    /// Resolves a revision (`main~3`, an abbreviated SHA, `v1.0^{}`) to a snapshot.
    /// `Ok(None)` when it does not resolve or names something that is not a commit,
    /// a tag of one, or a tree.
    pub fn resolve(&self, rev: &str) -> FsResult<Option<Snapshot>> {
        self.with(|repo| {
            let obj = match repo.revparse_single(rev) {
                Ok(o) => o,
                Err(_) => return Ok(None),
            };
            match snapshot_of(obj) {
                Ok(s) => Ok(Some(s)),
                Err(FsError::NotFound) => Ok(None),
                Err(e) => Err(e),
            }
        })
    }

    /// A tree as the mount shows it: entries sorted by name bytes (so that
    /// lookups can binary-search), and those it does not show kept apart (see
    /// `treeobj`), with one warning per tree for what was skipped.
    pub fn read_tree(&self, oid: Oid) -> FsResult<Listing> {
        let mut listing =
            self.with(|repo| tree_object(repo, oid, |data| Ok(crate::treeobj::parse(data))))?;
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
    pub fn raw_tree(repo: &Repository, oid: Oid) -> FsResult<Vec<crate::treeobj::RawEntry>> {
        tree_object(repo, oid, |data| Ok(crate::treeobj::parse_raw(data).0))
    }

    /// A blob's size from its object header, without inflating it.
    pub fn blob_size(&self, oid: Oid) -> FsResult<u64> {
        self.with(|repo| {
            let (size, kind) = repo.odb()?.read_header(oid)?;
            if kind != ObjectType::Blob {
                return Err(FsError::io(format!("object {oid} is a {kind}, not a blob")));
            }
            Ok(size as u64)
        })
    }

    /// A whole blob in memory. For blobs the caller knows to be small; large ones
    /// go through [`Repo::stream_blob`]. libgit2 verifies the object's hash.
    pub fn read_blob(&self, oid: Oid) -> FsResult<Vec<u8>> {
        self.with(|repo| {
            let odb = repo.odb()?;
            let obj = odb.read(oid)?;
            if obj.kind() != ObjectType::Blob {
                return Err(FsError::io(format!(
                    "object {oid} is a {}, not a blob",
                    obj.kind()
                )));
            }
            Ok(obj.data().to_vec())
        })
    }

    /// Streams a blob to `sink` in chunks, holding no more than a chunk in memory
    /// when the object is loose or stored whole in a pack. A deltified packed blob
    /// has to be inflated once in memory (libgit2 cannot stream deltas).
    pub fn stream_blob(
        &self,
        oid: Oid,
        sink: &mut dyn FnMut(&[u8]) -> std::io::Result<()>,
    ) -> FsResult<u64> {
        self.with(|repo| {
            let odb = repo.odb()?;
            if let Ok((reader, size, kind)) = odb.reader(oid) {
                if kind != ObjectType::Blob {
                    return Err(FsError::io(format!("object {oid} is a {kind}, not a blob")));
                }
                return copy_exact(reader, size as u64, sink, oid);
            }
            let raw: [u8; 20] = oid
                .as_bytes()
                .try_into()
                .map_err(|_| FsError::io("object id is not SHA-1"))?;
            for dir in object_dirs(repo) {
                if let Some((reader, size)) = crate::pack_stream::open_packed_blob(&dir, &raw)
                    .map_err(|e| FsError::from_io(&e, format_args!("reading pack for {oid}")))?
                {
                    return copy_exact(reader, size, sink, oid);
                }
            }
            // A blob stored as a delta must be inflated whole; one at a time, so
            // that the memory this takes is bounded by the largest such blob.
            static WHOLE: Mutex<()> = Mutex::new(());
            let _one = WHOLE.lock();
            log::debug!("blob {oid} is deltified; inflating it whole once");
            let obj = odb.read(oid)?;
            if obj.kind() != ObjectType::Blob {
                return Err(FsError::io(format!("object {oid} is not a blob")));
            }
            sink(obj.data()).map_err(|e| {
                FsError::from_io(&e, format_args!("writing blob {oid} to a spill file"))
            })?;
            Ok(obj.len() as u64)
        })
    }
}

/// Writes the content of `file` (its first `size` bytes) as a loose blob in
/// one pass, hashing and compressing as it reads, and returns its id. For large
/// blobs: libgit2 deflates with the system zlib and hashes with collision
/// detection, several times slower than this (zlib-rs at its fastest level,
/// SHA-1 with the CPU's SHA extensions). Git reads any zlib stream.
pub fn write_loose_blob(objects_dir: &Path, file: &std::fs::File, size: u64) -> FsResult<Oid> {
    use sha1::{Digest, Sha1};
    use std::io::Write;
    use std::os::unix::fs::FileExt;
    let writing = || format!("writing an object in {}", objects_dir.display());
    let tmp = tempfile::NamedTempFile::new_in(objects_dir)
        .map_err(|e| FsError::from_io(&e, writing()))?;
    let header = format!("blob {size}\0");
    let mut hasher = Sha1::new();
    hasher.update(header.as_bytes());
    let out = std::io::BufWriter::with_capacity(1 << 20, tmp.as_file());
    let level = compression_for(file, size)?;
    let mut z = flate2::write::ZlibEncoder::new(out, level);
    z.write_all(header.as_bytes())
        .map_err(|e| FsError::from_io(&e, writing()))?;
    let mut buf = vec![0u8; STREAM_CHUNK * 4];
    let mut pos = 0u64;
    while pos < size {
        let n = (size - pos).min(buf.len() as u64) as usize;
        file.read_exact_at(&mut buf[..n], pos)?;
        hasher.update(&buf[..n]);
        z.write_all(&buf[..n])
            .map_err(|e| FsError::from_io(&e, writing()))?;
        pos += n as u64;
    }
    z.finish()
        .and_then(|mut w| w.flush())
        .map_err(|e| FsError::from_io(&e, writing()))?;
    let oid = Oid::from_bytes(&hasher.finalize())?;
    let hex = oid.to_string();
    let dir = objects_dir.join(&hex[..2]);
    let dest = dir.join(&hex[2..]);
    if dest.exists() {
        return Ok(oid);
    }
    std::fs::create_dir_all(&dir).map_err(|e| FsError::from_io(&e, writing()))?;
    let _ = std::fs::set_permissions(
        tmp.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o444),
    );
    tmp.persist(&dest)
        .map_err(|e| FsError::from_io(&e.error, format_args!("storing object {hex}")))?;
    Ok(oid)
}

/// Deflate works hardest on what it cannot shrink: a blob whose first 256 KiB
/// do not compress by a tenth is stored uncompressed (still a zlib stream; `git
/// gc` compresses it when it packs).
fn compression_for(file: &std::fs::File, size: u64) -> FsResult<flate2::Compression> {
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

fn snapshot_of(obj: git2::Object<'_>) -> FsResult<Snapshot> {
    if let Ok(commit) = obj.peel(ObjectType::Commit) {
        let commit = commit
            .into_commit()
            .map_err(|_| FsError::io("peeled object is not a commit"))?;
        return Ok(Snapshot {
            commit: Some(commit.id()),
            tree: commit.tree_id(),
            time: commit.committer().when().seconds(),
        });
    }
    match obj.peel(ObjectType::Tree) {
        Ok(tree) => Ok(Snapshot {
            commit: None,
            tree: tree.id(),
            time: 0,
        }),
        Err(_) => Err(FsError::NotFound),
    }
}

fn copy_exact(
    mut reader: impl Read,
    size: u64,
    sink: &mut dyn FnMut(&[u8]) -> std::io::Result<()>,
    oid: Oid,
) -> FsResult<u64> {
    let mut buf = vec![0u8; STREAM_CHUNK];
    let mut total = 0u64;
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(FsError::from_io(&e, format_args!("reading blob {oid}"))),
        };
        total += n as u64;
        if total > size {
            return Err(FsError::io(format!(
                "blob {oid} is longer than its header says"
            )));
        }
        sink(&buf[..n]).map_err(|e| {
            FsError::from_io(&e, format_args!("writing blob {oid} to a spill file"))
        })?;
    }
    if total != size {
        return Err(FsError::io(format!(
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

pub use crate::names::valid_name;

/// The bytes of tree object `oid`, given to `f`: EIO for an object that is
/// not a tree or is over MAX_TREE_BYTES (checked from its header first).
fn tree_object<R>(
    repo: &Repository,
    oid: Oid,
    f: impl FnOnce(&[u8]) -> FsResult<R>,
) -> FsResult<R> {
    let odb = repo.odb()?;
    let (size, kind) = odb.read_header(oid)?;
    if kind != ObjectType::Tree {
        return Err(FsError::io(format!("object {oid} is a {kind}, not a tree")));
    }
    if size > MAX_TREE_BYTES {
        return Err(FsError::io(format!(
            "tree {oid} is {size} bytes, over the limit of {MAX_TREE_BYTES}"
        )));
    }
    let obj = odb.read(oid)?;
    f(obj.data())
}

/// Writes a commit object of `tree` with `parents`, as bytes: libgit2's own
/// commit creation parses the tree first and refuses one that holds entries
/// a mount keeps unseen (an empty name, a mode over 16 bits).
pub fn write_commit(
    repo: &Repository,
    tree: Oid,
    parents: &[Oid],
    sig: &git2::Signature<'_>,
    msg: &str,
) -> FsResult<Oid> {
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
    Ok(repo.odb()?.write(ObjectType::Commit, &out)?)
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
    /// The server's reason for refusing it.
    pub rejected: Option<String>,
}

impl Repo {
    /// The remote `spec` names: a remote of the repository, or a URL.
    fn remote<'r>(repo: &'r Repository, spec: &str) -> FsResult<git2::Remote<'r>> {
        match repo.find_remote(spec) {
            Ok(r) => Ok(r),
            Err(_) => Ok(repo.remote_anonymous(spec)?),
        }
    }

    /// Fetches every branch and tag of the server into the REMOTE_HEADS and
    /// REMOTE_TAGS namespaces (the server's refs as they are, rewinds
    /// included); nothing of the user's refs is touched.
    pub fn fetch_remote(&self, spec: &str) -> FsResult<()> {
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
                FsError::io(format!(
                    "fetch from {}: {}",
                    redact_url(spec),
                    scrub(e.message(), spec)
                ))
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
    pub fn push_remote(&self, spec: &str, refs: &[(String, Oid)]) -> FsResult<Vec<Pushed>> {
        self.with(|repo| {
            let mut remote = Self::remote(repo, spec)?;
            let results = std::sync::Arc::new(parking_lot::Mutex::new(Vec::new()));
            let mut cb = remote_callbacks(repo.config().ok());
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
            remote.push(&specs, Some(&mut po)).map_err(|e| {
                FsError::io(format!(
                    "push to {}: {}",
                    redact_url(spec),
                    scrub(e.message(), spec)
                ))
            })?;
            let out = std::mem::take(&mut *results.lock());
            Ok(out)
        })
    }

    /// Sets `refname` to `oid` whatever it was (for commitfs's own refs only).
    pub fn cas_ref_force(&self, refname: &str, oid: Oid) -> FsResult<()> {
        self.with(|repo| {
            repo.reference(refname, oid, true, "commitfs: the server has it")?;
            Ok(())
        })
    }

    /// Whether `a` is `b` or one of its ancestors.
    pub fn is_ancestor(&self, a: Oid, b: Oid) -> FsResult<bool> {
        if a == b {
            return Ok(true);
        }
        self.with(|repo| Ok(repo.graph_descendant_of(b, a)?))
    }

    /// How many commits `b` has that `a` does not (at most `cap`).
    pub fn count_ahead(&self, b: Oid, a: Option<Oid>, cap: usize) -> FsResult<usize> {
        self.with(|repo| {
            let mut walk = repo.revwalk()?;
            walk.push(b)?;
            if let Some(a) = a {
                walk.hide(a)?;
            }
            Ok(walk.take(cap).count())
        })
    }

    /// Moves `refname` from `old` (None: it must not exist) to `new`, only if it
    /// is still at `old`. False if someone moved it first.
    pub fn cas_ref(&self, refname: &str, old: Option<Oid>, new: Oid, msg: &str) -> FsResult<bool> {
        self.with(|repo| {
            let r = match old {
                Some(o) => repo.reference_matching(refname, new, true, o, msg),
                None => repo.reference(refname, new, false, msg),
            };
            match r {
                Ok(_) => Ok(true),
                Err(e)
                    if matches!(
                        e.code(),
                        git2::ErrorCode::Modified
                            | git2::ErrorCode::Exists
                            | git2::ErrorCode::Locked
                    ) =>
                {
                    Ok(false)
                }
                Err(e) => Err(e.into()),
            }
        })
    }
}

/// Blobs written by one commit, gathered so that many small ones become one
/// packfile (one file and its index, one inode allocation each) instead of one
/// loose object file each; a handful are written loose as git would.
///
/// The ids are known at once (hashed on `add`), but the objects exist only after
/// `flush`: nothing may name them in a ref before that.
#[derive(Default)]
pub struct ObjectBatch {
    objects: Vec<(Oid, ObjectType, Vec<u8>)>,
    seen: std::collections::HashSet<Oid>,
    bytes: usize,
    /// A pack was written since the last `take_wrote_pack`.
    wrote_pack: bool,
}

impl ObjectBatch {
    /// Fewer blobs than this are written as loose objects.
    pub const PACK_MIN: usize = 32;
    /// A blob larger than this is not batched (the caller writes it itself).
    pub const MAX_OBJECT: u64 = 1 << 20;
    /// The batch is flushed once it holds this many bytes.
    pub const MAX_BYTES: usize = 32 << 20;

    /// Adds a blob; returns its id. The caller must `flush` before the id is used
    /// by anything that outlives the commit.
    pub fn add_blob(&mut self, repo: &Repository, data: Vec<u8>) -> FsResult<Oid> {
        self.add(repo, ObjectType::Blob, data)
    }

    /// Adds a tree object (its bytes, as `treeobj::serialize` gives them).
    pub fn add_tree(&mut self, repo: &Repository, data: Vec<u8>) -> FsResult<Oid> {
        self.add(repo, ObjectType::Tree, data)
    }

    fn add(&mut self, repo: &Repository, kind: ObjectType, data: Vec<u8>) -> FsResult<Oid> {
        let oid = crate::treeobj::hash_object(kind.str(), &data);
        if self.seen.insert(oid) {
            self.bytes += data.len();
            self.objects.push((oid, kind, data));
            if self.bytes >= Self::MAX_BYTES {
                self.flush(repo)?;
            }
        }
        Ok(oid)
    }

    pub fn is_empty(&self) -> bool {
        self.objects.is_empty()
    }

    /// Whether a pack was written since the last call (a pack is not fsynced by
    /// libgit2: the caller makes it durable).
    pub fn take_wrote_pack(&mut self) -> bool {
        std::mem::take(&mut self.wrote_pack)
    }

    /// Writes what was added: loose objects for a few, else one pack.
    pub fn flush(&mut self, repo: &Repository) -> FsResult<()> {
        let objects = std::mem::take(&mut self.objects);
        self.bytes = 0;
        if objects.len() < Self::PACK_MIN {
            let odb = repo.odb()?;
            for (oid, kind, data) in &objects {
                let wrote = odb.write(*kind, data)?;
                if wrote != *oid {
                    return Err(FsError::io(format!("{kind} {oid} was stored as {wrote}")));
                }
            }
            return Ok(());
        }
        let pack = encode_pack(&objects)?;
        let odb = repo.odb()?;
        let mut w = odb.packwriter()?;
        // git2 reports a failed append as a bare "Write error"; libgit2's own
        // message (which says "No space left on device") is its last error.
        if std::io::Write::write_all(&mut w, &pack).is_err() {
            return Err(git2::Error::last_error(-1).into());
        }
        w.commit()?;
        self.wrote_pack = true;
        // libgit2 finds a new pack on its next miss; make it look now, so
        // that nothing reads a batched id as missing in between.
        odb.refresh()?;
        Ok(())
    }
}

/// A version 2 packfile holding `objects` (blobs and trees, none deltified),
/// each deflated at the fastest level.
fn encode_pack(objects: &[(Oid, ObjectType, Vec<u8>)]) -> FsResult<Vec<u8>> {
    use sha1::{Digest, Sha1};
    use std::io::Write;
    let count =
        u32::try_from(objects.len()).map_err(|_| FsError::io("too many objects for one pack"))?;
    let mut out = Vec::with_capacity(
        objects
            .iter()
            .map(|(_, _, d)| d.len() / 2 + 16)
            .sum::<usize>()
            + 32,
    );
    out.extend_from_slice(b"PACK");
    out.extend_from_slice(&2u32.to_be_bytes());
    out.extend_from_slice(&count.to_be_bytes());
    for (_, kind, data) in objects {
        // The type (1 commit, 2 tree, 3 blob) and the size, 4 bits then 7 bits
        // per byte.
        let t: u8 = match kind {
            ObjectType::Commit => 1,
            ObjectType::Tree => 2,
            _ => 3,
        };
        let mut size = data.len() as u64;
        let mut c = (t << 4) | (size & 0x0f) as u8;
        size >>= 4;
        while size != 0 {
            out.push(c | 0x80);
            c = (size & 0x7f) as u8;
            size >>= 7;
        }
        out.push(c);
        let mut z = flate2::write::ZlibEncoder::new(&mut out, flate2::Compression::fast());
        z.write_all(data)?;
        z.finish()?;
    }
    let sum = Sha1::digest(&out);
    out.extend_from_slice(&sum);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn a_batch_writes_a_few_blobs_loose_and_many_as_one_pack() {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repository::init_bare(dir.path()).unwrap();
        let mut batch = ObjectBatch::default();
        let few: Vec<Oid> = (0..3)
            .map(|i| {
                batch
                    .add_blob(&repo, format!("few {i}\n").into_bytes())
                    .unwrap()
            })
            .collect();
        batch.flush(&repo).unwrap();
        assert!(!batch.take_wrote_pack());
        assert_eq!(packs(&repo), 0);
        let hex = few[0].to_string();
        assert!(
            dir.path()
                .join("objects")
                .join(&hex[..2])
                .join(&hex[2..])
                .exists()
        );

        let mut many = Vec::new();
        for i in 0..ObjectBatch::PACK_MIN * 2 {
            // Every blob twice, and one large enough for a multi-byte size header.
            let data = format!("many {i}\n").repeat(if i == 0 { 5000 } else { 1 });
            let oid = batch.add_blob(&repo, data.clone().into_bytes()).unwrap();
            assert_eq!(
                batch.add_blob(&repo, data.clone().into_bytes()).unwrap(),
                oid
            );
            many.push((oid, data));
        }
        batch.flush(&repo).unwrap();
        assert!(batch.take_wrote_pack());
        assert_eq!(packs(&repo), 1);
        // A fresh handle reads them back by id, as git does.
        let again = Repository::open_bare(dir.path()).unwrap();
        for (oid, data) in many {
            assert_eq!(again.find_blob(oid).unwrap().content(), data.as_bytes());
            assert_eq!(
                oid,
                Oid::hash_object(ObjectType::Blob, data.as_bytes()).unwrap()
            );
        }
        let fsck = std::process::Command::new("git")
            .args(["--git-dir"])
            .arg(dir.path())
            .args(["fsck", "--strict", "--no-dangling"])
            .output()
            .unwrap();
        assert!(
            fsck.status.success(),
            "{}",
            String::from_utf8_lossy(&fsck.stderr)
        );
    }
}
