//! Whole objects read straight out of the repository's packs, for the two
//! questions a walk asks of every file: its size, and for a small file its
//! bytes. The id is looked up in each pack's `.idx` (version 2, SHA-1), both
//! files mapped read-only, and the entry inflated by a decompressor kept per
//! thread: one index lookup, no lock held, no libgit2 handle taken. libgit2
//! answers everything else (loose objects, alternates, an object stored as a
//! delta, a pack this cannot read), so `None` here is never an error: the
//! caller asks libgit2, which gives the same answer or the same error as
//! before.
//!
//! Packs are immutable once written (git writes a new pack and renames it in
//! place), and one removed by `git gc` stays mapped, and readable, until it is
//! dropped from the set. A pack truncated in place under a running daemon
//! would fault its reads, as it would libgit2's own mappings.

use std::cell::RefCell;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Instant, SystemTime};

use flate2::{Decompress, FlushDecompress, Status};
use memmap2::Mmap;
use parking_lot::RwLock;

use crate::store::pack_stream::{IDX_MAGIC, parse_object_header};

/// Magic, version, 256 fanout entries.
const FANOUT_AT: usize = 8;
const NAMES_AT: usize = FANOUT_AT + 256 * 4;
const ID: usize = 20;
const OBJ_BLOB: u8 = 3;
const OFS_DELTA: u8 = 6;
const REF_DELTA: u8 = 7;
/// An object (or a delta, or a base of one) is read here only up to this
/// size (sizes, from the pack, are not trusted with larger allocations);
/// larger ones go through libgit2. The daemon asks for whole blobs only of
/// at most 16 MiB (the blob cache's largest; the prefetcher's are smaller).
pub const MAX_READ: u64 = 16 << 20;
/// Deltas followed to their base, at most (git's own `--depth` is 50).
const MAX_CHAIN: usize = 256;
/// Bases of deltas kept inflated, in bytes at most (each counted with 96
/// bytes for holding it): siblings in a walk share bases, which are then
/// inflated once.
const BASE_CACHE_BYTES: usize = 8 << 20;

/// One pack and its index, mapped.
struct Pack {
    /// Unique in this process: the key of its objects in the base cache.
    id: u64,
    idx_path: PathBuf,
    idx: Mmap,
    pack: Mmap,
    /// Objects in the pack.
    n: usize,
}

static PACK_IDS: AtomicU64 = AtomicU64::new(0);

fn be32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn be64(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_be_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

fn map(path: &Path) -> std::io::Result<Mmap> {
    let f = File::open(path)?;
    // SAFETY: a read-only mapping of a pack or its index. Git never rewrites
    // these in place (a new pack is written under a temporary name and
    // renamed), so the bytes do not change while mapped; every access below
    // is bounds-checked against the mapping's length.
    unsafe { Mmap::map(&f) }
}

impl Pack {
    /// `None` for anything this does not read (another index version, a
    /// SHA-256 repository, a truncated or inconsistent file).
    fn open(idx_path: &Path) -> Option<Pack> {
        let idx = map(idx_path).ok()?;
        let pack = map(&idx_path.with_extension("pack")).ok()?;
        if idx.get(..4)? != IDX_MAGIC || be32(&idx, 4)? != 2 {
            return None;
        }
        let mut prev = 0;
        for i in 0..256 {
            let f = be32(&idx, FANOUT_AT + 4 * i)?;
            if f < prev {
                return None;
            }
            prev = f;
        }
        let n = prev as usize;
        // Names, CRCs and 32-bit offsets, then the two trailing checksums, at
        // least (a 64-bit offset table may sit between).
        if idx.len() < NAMES_AT + n * (ID + 8) + 2 * ID {
            return None;
        }
        if pack.get(..4)? != b"PACK" || be32(&pack, 8)? as usize != n {
            return None;
        }
        Some(Pack {
            id: PACK_IDS.fetch_add(1, Ordering::Relaxed),
            idx_path: idx_path.to_path_buf(),
            idx,
            pack,
            n,
        })
    }

    /// Where the object `id` starts in the pack, if it is in it. Ids are
    /// uniformly spread, so the search starts where the id's next bytes say it
    /// should be among those sharing its first byte, and widens from there:
    /// a few neighbouring cache lines of the index instead of a whole binary
    /// search's worth of distant ones.
    fn find(&self, id: &[u8; 20]) -> Option<u64> {
        let first = usize::from(id[0]);
        let lo = if first == 0 {
            0
        } else {
            be32(&self.idx, FANOUT_AT + 4 * (first - 1))? as usize
        };
        let hi = (be32(&self.idx, FANOUT_AT + 4 * first)? as usize).min(self.n);
        if lo >= hi {
            return None;
        }
        let names = self.idx.get(NAMES_AT..NAMES_AT + self.n * ID)?;
        let name = |i: usize| names.get(i * ID..i * ID + ID);
        let key = u64::from_be_bytes(id[1..9].try_into().ok()?);
        let guess = lo + ((u128::from(key) * (hi - lo) as u128) >> 64) as usize;
        // Bracket the id in [a, b) by steps doubling away from the guess.
        let (mut a, mut b) = match name(guess)?.cmp(&id[..]) {
            std::cmp::Ordering::Equal => return self.offset(guess),
            std::cmp::Ordering::Less => {
                let (mut a, mut step) = (guess + 1, 4);
                loop {
                    let next = a.saturating_add(step).min(hi);
                    if next >= hi || name(next)? > &id[..] {
                        break (a, next);
                    }
                    a = next;
                    step *= 2;
                }
            }
            std::cmp::Ordering::Greater => {
                let (mut b, mut step) = (guess, 4);
                loop {
                    let next = b.saturating_sub(step).max(lo);
                    if next <= lo || name(next)? <= &id[..] {
                        break (next, b);
                    }
                    b = next;
                    step *= 2;
                }
            }
        };
        while a < b {
            let mid = a + (b - a) / 2;
            match name(mid)?.cmp(&id[..]) {
                std::cmp::Ordering::Less => a = mid + 1,
                std::cmp::Ordering::Greater => b = mid,
                std::cmp::Ordering::Equal => return self.offset(mid),
            }
        }
        None
    }

    fn offset(&self, i: usize) -> Option<u64> {
        let offs = NAMES_AT + self.n * (ID + 4);
        let o = be32(&self.idx, offs + 4 * i)?;
        if o & 0x8000_0000 == 0 {
            return Some(u64::from(o));
        }
        let big = offs + 4 * self.n;
        be64(&self.idx, big + 8 * (o & 0x7fff_ffff) as usize)
    }

    /// The entry at `at`: its type, size, and where its data starts.
    fn entry(&self, at: u64) -> Option<(u8, u64, usize)> {
        let at = usize::try_from(at).ok()?;
        let (kind, size, len) = parse_object_header(self.pack.get(at..)?)?;
        Some((kind, size, at + len))
    }

    /// Where an OFS_DELTA's base starts, and where its delta data starts,
    /// for the entry at `at` whose header ends at `data`.
    fn ofs_base(&self, at: u64, data: usize) -> Option<(u64, usize)> {
        let mut i = data;
        let mut c = *self.pack.get(i)?;
        i += 1;
        let mut ofs = u64::from(c & 0x7f);
        while c & 0x80 != 0 {
            c = *self.pack.get(i)?;
            i += 1;
            if ofs >= 1 << 56 {
                return None;
            }
            ofs = ((ofs + 1) << 7) | u64::from(c & 0x7f);
        }
        let base = at.checked_sub(ofs).filter(|&b| b > 0)?;
        Some((base, i))
    }

    /// `size` bytes inflated from the zlib stream at `data`, exactly.
    fn inflate(&self, data: usize, size: u64) -> Option<Vec<u8>> {
        if size > MAX_READ {
            return None;
        }
        let input = self.pack.get(data..)?;
        let mut out = vec![0u8; size as usize];
        INFLATE.with(|d| {
            let mut d = d.borrow_mut();
            d.reset(true);
            match d.decompress(input, &mut out, FlushDecompress::Finish) {
                Ok(Status::StreamEnd) if d.total_out() == size => Some(()),
                _ => None,
            }
        })?;
        Some(out)
    }

    /// The first bytes of the zlib stream at `data` (at most `n`).
    fn inflate_prefix(&self, data: usize, n: usize) -> Option<Vec<u8>> {
        let input = self.pack.get(data..)?;
        let mut out = vec![0u8; n];
        INFLATE.with(|d| {
            let mut d = d.borrow_mut();
            d.reset(true);
            match d.decompress(input, &mut out, FlushDecompress::None) {
                Ok(_) => {
                    out.truncate(d.total_out() as usize);
                    Some(())
                }
                Err(_) => None,
            }
        })?;
        Some(out)
    }
}

/// A size in a delta's header (little-endian base-128).
fn delta_size(d: &[u8], i: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    let mut shift = 0;
    loop {
        let c = *d.get(*i)?;
        *i += 1;
        v |= u64::from(c & 0x7f).checked_shl(shift)?;
        if c & 0x80 == 0 {
            return Some(v);
        }
        shift += 7;
        if shift > 63 {
            return None;
        }
    }
}

/// `base` with `delta` applied (git's delta format: copies from the base and
/// literal inserts), or `None` if the delta does not fit the base.
fn apply_delta(base: &[u8], delta: &[u8]) -> Option<Vec<u8>> {
    let mut i = 0;
    if delta_size(delta, &mut i)? != base.len() as u64 {
        return None;
    }
    let size = delta_size(delta, &mut i)?;
    if size > MAX_READ {
        return None;
    }
    let size = size as usize;
    let mut out = Vec::with_capacity(size);
    while i < delta.len() {
        let c = delta[i];
        i += 1;
        if c & 0x80 != 0 {
            let (mut off, mut n) = (0usize, 0usize);
            for k in 0..4 {
                if c & (1 << k) != 0 {
                    off |= usize::from(*delta.get(i)?) << (8 * k);
                    i += 1;
                }
            }
            for k in 0..3 {
                if c & (0x10 << k) != 0 {
                    n |= usize::from(*delta.get(i)?) << (8 * k);
                    i += 1;
                }
            }
            if n == 0 {
                n = 0x10000;
            }
            let part = base.get(off..off.checked_add(n)?)?;
            if out.len() + n > size {
                return None;
            }
            out.extend_from_slice(part);
        } else if c != 0 {
            let n = usize::from(c);
            let part = delta.get(i..i + n)?;
            i += n;
            if out.len() + n > size {
                return None;
            }
            out.extend_from_slice(part);
        } else {
            return None;
        }
    }
    (out.len() == size).then_some(out)
}

thread_local! {
    /// One decompressor per thread, reset for each object.
    static INFLATE: RefCell<Decompress> = RefCell::new(Decompress::new(true));
}

/// The set of packs under `objects/pack/`, read again when a lookup misses
/// and the directory changed since.
pub struct Packs {
    dir: PathBuf,
    /// Cloned out for each lookup: no lock is held while a mapping is read
    /// (a page fault there is disk I/O).
    set: RwLock<Arc<Set>>,
    /// When the directory was last looked at (ms after `start`): at most
    /// once a second, so that a pack gc removed is unmapped (its disk space
    /// freed) soon, not only when a lookup misses.
    checked: AtomicU64,
    start: Instant,
    /// Where objects were last found, by their id's low bits: a walk asks
    /// for a file's size and then, soon after, for its bytes, and the second
    /// lookup is then no search of the index. A slot holds the whole id, so
    /// a hit is never another object's.
    recent: Box<[parking_lot::Mutex<Option<Found>>]>,
    /// Bases of deltas, inflated: (pack id, offset) -> bytes, at most
    /// `BASE_CACHE_BYTES` in all. Taken only to look up or insert.
    bases: parking_lot::Mutex<Bases>,
}

/// An object's type and bytes.
type Object = (u8, Arc<[u8]>);

struct Bases {
    /// (pack id, offset) -> the object there.
    map: lru::LruCache<(u64, u64), Object>,
    bytes: usize,
}

impl Bases {
    fn get(&mut self, key: (u64, u64)) -> Option<Object> {
        self.map.get(&key).cloned()
    }

    /// What an entry counts for: its bytes and what holding it costs (so
    /// that many tiny bases stay within the bound too).
    fn cost(d: &[u8]) -> usize {
        d.len() + 96
    }

    fn put(&mut self, key: (u64, u64), kind: u8, data: Arc<[u8]>) {
        if data.len() > BASE_CACHE_BYTES / 4 {
            return;
        }
        self.bytes += Bases::cost(&data);
        if let Some((_, old)) = self.map.put(key, (kind, data)) {
            self.bytes -= Bases::cost(&old);
        }
        while self.bytes > BASE_CACHE_BYTES {
            match self.map.pop_lru() {
                Some((_, (_, d))) => self.bytes -= Bases::cost(&d),
                None => break,
            }
        }
    }
}

/// An object's place: its id, the pack, where it starts.
#[derive(Clone)]
struct Found {
    id: [u8; 20],
    pack: Arc<Pack>,
    at: u64,
}

/// Slots of `Packs::recent` (about 48 bytes each).
const RECENT: usize = 1 << 14;

/// How often a lookup looks whether the pack directory changed.
const CHECK_EVERY_MS: u64 = 1000;

#[derive(Default)]
struct Set {
    packs: Vec<Arc<Pack>>,
    /// The directory's mtime when it was last read.
    seen: Option<SystemTime>,
}

impl Packs {
    pub fn new(objects_dir: &Path) -> Packs {
        let p = Packs {
            dir: objects_dir.join("pack"),
            set: RwLock::new(Arc::new(Set::default())),
            checked: AtomicU64::new(0),
            start: Instant::now(),
            recent: (0..RECENT).map(|_| parking_lot::Mutex::new(None)).collect(),
            bases: parking_lot::Mutex::new(Bases {
                map: lru::LruCache::unbounded(),
                bytes: 0,
            }),
        };
        p.rescan();
        p
    }

    /// Reads the directory again if it changed; true if it did.
    fn rescan(&self) -> bool {
        let mtime = std::fs::metadata(&self.dir).and_then(|m| m.modified()).ok();
        if mtime.is_some() && self.set.read().seen == mtime {
            return false;
        }
        let mut names: Vec<PathBuf> = match std::fs::read_dir(&self.dir) {
            Ok(rd) => rd
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "idx"))
                .collect(),
            Err(_) => Vec::new(),
        };
        // Newest first: recent objects are the ones looked up most.
        names.sort_by_key(|p| {
            std::cmp::Reverse(std::fs::metadata(p).and_then(|m| m.modified()).ok())
        });
        let old = self.set.read().packs.clone();
        let packs = names
            .iter()
            .filter_map(|p| match old.iter().find(|o| &o.idx_path == p) {
                Some(o) => Some(o.clone()),
                None => Pack::open(p).map(Arc::new),
            })
            .collect();
        *self.set.write() = Arc::new(Set { packs, seen: mtime });
        // No slot keeps a pack no longer in the set mapped (its disk space
        // held) after this.
        for slot in self.recent.iter() {
            *slot.lock() = None;
        }
        true
    }

    /// The pack and offset of the object `id`.
    fn locate(&self, id: &[u8]) -> Option<(Arc<Pack>, u64)> {
        let id: &[u8; 20] = id.try_into().ok()?;
        let now = self.start.elapsed().as_millis() as u64;
        let last = self.checked.load(Ordering::Relaxed);
        if now.saturating_sub(last) >= CHECK_EVERY_MS
            && self
                .checked
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            self.rescan();
        }
        let slot = &self.recent[usize::from(u16::from_le_bytes([id[18], id[19]])) % RECENT];
        let hit = slot
            .lock()
            .as_ref()
            .filter(|f| &f.id == id)
            .map(|f| (f.pack.clone(), f.at));
        if hit.is_some() {
            return hit;
        }
        let (p, at) = self.search(id)?;
        *slot.lock() = Some(Found {
            id: *id,
            pack: p.clone(),
            at,
        });
        Some((p, at))
    }

    /// The base of the delta at `at` in `p` whose header ends at `data`, and
    /// where the delta's own data starts.
    fn base_of(
        &self,
        p: &Arc<Pack>,
        kind: u8,
        at: u64,
        data: usize,
    ) -> Option<(Arc<Pack>, u64, usize)> {
        match kind {
            OFS_DELTA => {
                let (base, delta) = p.ofs_base(at, data)?;
                Some((p.clone(), base, delta))
            }
            REF_DELTA => {
                let id = p.pack.get(data..data + ID)?;
                let (bp, base) = self.locate(id)?;
                Some((bp, base, data + ID))
            }
            _ => None,
        }
    }

    /// The type and size of the object at `at` in `p`: a delta's size is in
    /// its own header, its type is its base's.
    fn header(&self, p: &Arc<Pack>, at: u64) -> Option<(u8, u64)> {
        let (kind, size, data) = p.entry(at)?;
        if (1..=4).contains(&kind) {
            return Some((kind, size));
        }
        let (mut bp, mut base, delta) = self.base_of(p, kind, at, data)?;
        let head = p.inflate_prefix(delta, 20)?;
        let mut i = 0;
        delta_size(&head, &mut i)?;
        let result = delta_size(&head, &mut i)?;
        for _ in 0..MAX_CHAIN {
            let (k, _, d) = bp.entry(base)?;
            if (1..=4).contains(&k) {
                return Some((k, result));
            }
            let next = self.base_of(&bp, k, base, d)?;
            (bp, base) = (next.0, next.1);
        }
        None
    }

    /// The type and bytes of the object at `at` in `p`, deltas applied to
    /// their bases (which are kept a while: siblings share them).
    fn object(&self, p: &Arc<Pack>, at: u64) -> Option<(u8, Vec<u8>)> {
        // The chain down to a whole object, or to a base inflated before.
        let mut chain: Vec<(Arc<Pack>, u64, usize, u64)> = Vec::new();
        let (mut cp, mut cat) = (p.clone(), at);
        let (kind, mut data): Object = loop {
            if chain.len() > MAX_CHAIN {
                return None;
            }
            if !chain.is_empty()
                && let Some(found) = self.bases.lock().get((cp.id, cat))
            {
                break found;
            }
            let (k, size, d) = cp.entry(cat)?;
            if (1..=4).contains(&k) {
                if chain.is_empty() {
                    return Some((k, cp.inflate(d, size)?));
                }
                let whole: Arc<[u8]> = cp.inflate(d, size)?.into();
                self.bases.lock().put((cp.id, cat), k, whole.clone());
                break (k, whole);
            }
            let (bp, base, delta) = self.base_of(&cp, k, cat, d)?;
            chain.push((cp, cat, delta, size));
            (cp, cat) = (bp, base);
        };
        // Applied from the innermost delta out; each result but the last is
        // a base another delta may want again.
        while let Some((dp, dat, delta, size)) = chain.pop() {
            let applied = apply_delta(&data, &dp.inflate(delta, size)?)?;
            if chain.is_empty() {
                return Some((kind, applied));
            }
            let applied: Arc<[u8]> = applied.into();
            self.bases.lock().put((dp.id, dat), kind, applied.clone());
            data = applied;
        }
        None
    }

    /// The pack and offset of `id`, the directory read again once if no
    /// pack has it and it changed.
    fn search(&self, id: &[u8; 20]) -> Option<(Arc<Pack>, u64)> {
        for attempt in 0..2 {
            let set = self.set.read().clone();
            let found = set
                .packs
                .iter()
                .find_map(|p| p.find(id).map(|at| (p.clone(), at)));
            if found.is_some() {
                return found;
            }
            if attempt == 0 && !self.rescan() {
                return None;
            }
        }
        None
    }

    /// The size of the blob `id` if a pack holds it (whole or as a delta).
    pub fn blob_size(&self, id: &[u8]) -> Option<u64> {
        let (p, at) = self.locate(id)?;
        match self.header(&p, at)? {
            (OBJ_BLOB, size) => Some(size),
            _ => None,
        }
    }

    /// The bytes of the blob `id` if a pack holds it (whole, or as deltas on
    /// a base in the packs) and it is at most [`MAX_READ`]; not hash-checked
    /// here.
    pub fn read_blob(&self, id: &[u8]) -> Option<Vec<u8>> {
        let (p, at) = self.locate(id)?;
        match self.object(&p, at)? {
            (OBJ_BLOB, data) => Some(data),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    fn git(dir: &Path, args: &[&str]) -> String {
        let out = Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(["-c", "user.name=t", "-c", "user.email=t@t"])
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }

    fn id(hex: &str) -> Vec<u8> {
        git2::Oid::from_str(hex).unwrap().as_bytes().to_vec()
    }

    /// A repository whose files are `files`, committed and packed with
    /// `repack` arguments.
    fn repo(files: &[(&str, Vec<u8>)], repack: &[&str]) -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        git(d.path(), &["init", "-q"]);
        for (name, body) in files {
            std::fs::write(d.path().join(name), body).unwrap();
        }
        git(d.path(), &["add", "."]);
        git(d.path(), &["commit", "-q", "-m", "c"]);
        let mut args = vec!["repack", "-adq"];
        args.extend_from_slice(repack);
        git(d.path(), &args);
        d
    }

    fn noise(n: usize, seed: u64) -> Vec<u8> {
        let mut x = seed | 1;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    #[test]
    fn whole_blobs_are_read_as_git_stores_them() {
        let files: Vec<(String, Vec<u8>)> = vec![
            ("empty".into(), Vec::new()),
            ("small".into(), b"hello\n".to_vec()),
            ("lines".into(), b"line\n".repeat(5000)),
            ("noise".into(), noise(300_000, 7)),
        ];
        let named: Vec<(&str, Vec<u8>)> =
            files.iter().map(|(n, b)| (n.as_str(), b.clone())).collect();
        let d = repo(&named, &["--window=0"]);
        let packs = Packs::new(&d.path().join(".git/objects"));
        for (name, body) in &files {
            let oid = id(&git(d.path(), &["rev-parse", &format!("HEAD:{name}")]));
            assert_eq!(packs.blob_size(&oid), Some(body.len() as u64), "{name}");
            assert_eq!(packs.read_blob(&oid).as_deref(), Some(&body[..]), "{name}");
        }
        // A tree is not a blob; an id no pack has is not found.
        let tree = id(&git(d.path(), &["rev-parse", "HEAD^{tree}"]));
        assert_eq!(packs.blob_size(&tree), None);
        assert_eq!(packs.read_blob(&[7u8; 20]), None);
        assert_eq!(packs.read_blob(&[7u8; 3]), None);
    }

    /// Blobs stored as chains of deltas (OFS and REF) are read with their
    /// sizes and bytes as git has them: every blob of a deeply deltified pack,
    /// against `git cat-file`.
    #[test]
    fn blobs_stored_as_deltas_are_read_as_git_has_them() {
        let base = noise(20_000, 3);
        let files: Vec<(String, Vec<u8>)> = (0..120)
            .map(|i| {
                let mut b = base.clone();
                b[i * 37 % 20_000] ^= 0x55;
                b.extend_from_slice(format!("version {i}\n").as_bytes());
                (format!("f{i:03}"), b)
            })
            .collect();
        let named: Vec<(&str, Vec<u8>)> =
            files.iter().map(|(n, b)| (n.as_str(), b.clone())).collect();
        // OFS_DELTA (git's default), then REF_DELTA (bases named by id).
        for offsets in ["true", "false"] {
            let d = repo(&named, &[]);
            git(
                d.path(),
                &[
                    "-c",
                    &format!("repack.useDeltaBaseOffset={offsets}"),
                    "repack",
                    "-adfq",
                    "--window=50",
                    "--depth=50",
                ],
            );
            let packs = Packs::new(&d.path().join(".git/objects"));
            let idx = std::fs::read_dir(d.path().join(".git/objects/pack"))
                .unwrap()
                .map(|e| e.unwrap().path())
                .find(|p| p.extension().is_some_and(|x| x == "idx"))
                .unwrap();
            let verify = git(d.path(), &["verify-pack", "-v", idx.to_str().unwrap()]);
            let deltas = verify
                .lines()
                .filter(|l| l.contains(" blob ") && l.split_whitespace().count() >= 7)
                .count();
            assert!(deltas > 50, "most blobs are stored as deltas ({deltas})");
            for (name, body) in &files {
                let oid = id(&git(d.path(), &["rev-parse", &format!("HEAD:{name}")]));
                assert_eq!(packs.blob_size(&oid), Some(body.len() as u64), "{name}");
                assert_eq!(packs.read_blob(&oid).as_deref(), Some(&body[..]), "{name}");
            }
        }
    }

    /// A delta that does not fit its base, or ends early, is refused.
    #[test]
    fn deltas_that_do_not_fit_are_refused() {
        let base = b"hello world";
        // base size 11, result 5: copy offset 0 size 5.
        assert_eq!(
            apply_delta(base, &[11, 5, 0x90, 5]).as_deref(),
            Some(&b"hello"[..])
        );
        // A base of another size.
        assert_eq!(apply_delta(base, &[12, 5, 0x90, 5]), None);
        // A copy past the base's end.
        assert_eq!(apply_delta(base, &[11, 5, 0x91, 9, 5]), None);
        // More than the result size says.
        assert_eq!(apply_delta(base, &[11, 3, 0x90, 5]), None);
        // Less.
        assert_eq!(apply_delta(base, &[11, 6, 0x90, 5]), None);
        // An insert, and the reserved command 0.
        assert_eq!(
            apply_delta(base, &[11, 2, 2, b'o', b'k']).as_deref(),
            Some(&b"ok"[..])
        );
        assert_eq!(apply_delta(base, &[11, 0, 0]), None);
        // Truncated.
        assert_eq!(apply_delta(base, &[11, 5, 0x90]), None);
    }

    #[test]
    fn a_pack_written_later_is_found() {
        let d = repo(&[("a", b"a\n".to_vec())], &[]);
        let packs = Packs::new(&d.path().join(".git/objects"));
        std::fs::write(d.path().join("b"), b"later\n").unwrap();
        git(d.path(), &["add", "b"]);
        git(d.path(), &["commit", "-q", "-m", "b"]);
        git(d.path(), &["repack", "-dq"]);
        let b = id(&git(d.path(), &["rev-parse", "HEAD:b"]));
        assert_eq!(packs.read_blob(&b).as_deref(), Some(&b"later\n"[..]));
    }

    /// A truncated index is not read; a damaged entry is not returned (the
    /// caller asks libgit2, which reports the damage).
    #[test]
    fn damaged_packs_are_not_trusted() {
        let body = b"some content that compresses\n".repeat(100);
        let d = repo(&[("a", body.clone())], &["--window=0"]);
        let objects = d.path().join(".git/objects");
        let oid = id(&git(d.path(), &["rev-parse", "HEAD:a"]));
        let pack_dir = objects.join("pack");
        let idx = std::fs::read_dir(&pack_dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.extension().is_some_and(|x| x == "idx"))
            .unwrap();
        let pack_path = idx.with_extension("pack");
        let packs = Packs::new(&objects);
        let at = {
            let set = packs.set.read().clone();
            set.packs[0].find(oid[..].try_into().unwrap()).unwrap()
        };
        // Damage the compressed bytes of the blob, in a copy of the pack.
        let mut bytes = std::fs::read(&pack_path).unwrap();
        let i = at as usize + 8;
        bytes[i] ^= 0xff;
        bytes[i + 1] ^= 0xff;
        let _ = std::fs::set_permissions(
            &pack_path,
            std::os::unix::fs::PermissionsExt::from_mode(0o644),
        );
        std::fs::remove_file(&pack_path).unwrap();
        std::fs::write(&pack_path, &bytes).unwrap();
        let fresh = Packs::new(&objects);
        assert_ne!(fresh.read_blob(&oid).as_deref(), Some(&body[..]));
        // A truncated index: no pack at all.
        let short = std::fs::read(&idx).unwrap();
        std::fs::remove_file(&idx).unwrap();
        std::fs::write(&idx, &short[..short.len() / 2]).unwrap();
        let truncated = Packs::new(&objects);
        assert_eq!(truncated.set.read().packs.len(), 0);
        assert_eq!(truncated.read_blob(&oid), None);
    }

    /// Every object of a pack is found where the index says, and ids next
    /// to them are not (the search that starts at the guessed place).
    #[test]
    fn every_object_is_found_and_no_other() {
        let files: Vec<(String, Vec<u8>)> = (0..3000)
            .map(|i| (format!("f{i}"), format!("file {i}\n").into_bytes()))
            .collect();
        let named: Vec<(&str, Vec<u8>)> =
            files.iter().map(|(n, b)| (n.as_str(), b.clone())).collect();
        let d = repo(&named, &[]);
        let packs = Packs::new(&d.path().join(".git/objects"));
        let set = packs.set.read().clone();
        let pack = &set.packs[0];
        let all = git(
            d.path(),
            &[
                "cat-file",
                "--batch-all-objects",
                "--batch-check=%(objectname)",
            ],
        );
        let mut found = 0;
        for hex in all.lines() {
            let mut raw: [u8; 20] = id(hex).try_into().unwrap();
            let at = pack.find(&raw).unwrap_or_else(|| panic!("{hex} not found"));
            assert!(pack.entry(at).is_some());
            found += 1;
            raw[19] ^= 1;
            if !all.contains(&git2::Oid::from_bytes(&raw).unwrap().to_string()) {
                assert_eq!(pack.find(&raw), None);
            }
        }
        assert_eq!(found, pack.n);
        assert_eq!(pack.find(&[0u8; 20]), None);
        assert_eq!(pack.find(&[0xffu8; 20]), None);
    }

    /// The base cache stays within its bytes, however many or small the
    /// bases put in it.
    #[test]
    fn the_base_cache_stays_within_its_bound() {
        let mut b = Bases {
            map: lru::LruCache::unbounded(),
            bytes: 0,
        };
        for i in 0..200_000u64 {
            b.put((1, i), OBJ_BLOB, Arc::from(&[][..]));
            assert!(b.bytes <= BASE_CACHE_BYTES);
        }
        for i in 0..100u64 {
            b.put((2, i), OBJ_BLOB, vec![0u8; 1 << 20].into());
            assert!(b.bytes <= BASE_CACHE_BYTES);
        }
        assert!(b.map.len() <= BASE_CACHE_BYTES / (1 << 20));
        assert_eq!(b.get((2, 99)).map(|(_, d)| d.len()), Some(1 << 20));
    }
}
