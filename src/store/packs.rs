//! Whole objects read straight out of the repository's packs, for the two
//! questions a walk asks of every file: its size, and for a small file its
//! bytes; and a large blob stored whole, streamed (`Packs::stream_blob`). The id is looked up in each pack's `.idx` (version 2, SHA-1), both
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
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Instant, SystemTime};

use flate2::{Decompress, FlushDecompress, Status};
use memmap2::Mmap;
use parking_lot::RwLock;

/// Magic of `.idx` files from version 2 on (`\377tOc`).
const IDX_MAGIC: [u8; 4] = [0xff, b't', b'O', b'c'];
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
/// What a streamed blob reads from its pack at a time: the memory a stream
/// takes is this and zlib's window, whatever the blob's size.
const STREAM_PIECE: usize = 64 * 1024;

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

/// Parses a pack object header: (type, inflated size, header length).
fn parse_object_header(buf: &[u8]) -> Option<(u8, u64, usize)> {
    let mut byte = *buf.first()?;
    let kind = (byte >> 4) & 7;
    let mut size = u64::from(byte & 0x0f);
    let mut shift = 4u32;
    let mut len = 1;
    while byte & 0x80 != 0 {
        byte = *buf.get(len)?;
        len += 1;
        let part = u64::from(byte & 0x7f);
        if shift >= 64 || part.leading_zeros() < shift {
            return None; // size does not fit in u64
        }
        size |= part << shift;
        shift += 7;
    }
    Some((kind, size, len))
}

/// Inflates a zlib stream that must produce exactly `size` bytes and end properly (adler32
/// verified); anything else is reported as an error instead of a short or wrong read.
struct BlobReader<R> {
    input: R,
    z: Decompress,
    size: u64,
    remaining: u64,
    ended: bool,
    path: PathBuf,
}

impl<R: BufRead> BlobReader<R> {
    fn new(input: R, size: u64, path: PathBuf) -> Self {
        BlobReader {
            input,
            z: Decompress::new(true),
            size,
            remaining: size,
            ended: false,
            path,
        }
    }
}

impl<R: BufRead> Read for BlobReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            if self.ended {
                if self.remaining != 0 {
                    let msg = format!(
                        "{}: blob data ended after {} of {} bytes",
                        self.path.display(),
                        self.size - self.remaining,
                        self.size
                    );
                    return Err(io::Error::new(io::ErrorKind::UnexpectedEof, msg));
                }
                return Ok(0);
            }
            // Once all bytes are out, keep driving zlib (into a 1-byte probe that must stay
            // empty) until the stream end, which is where the adler32 checksum is verified.
            let mut probe = [0u8; 1];
            let out: &mut [u8] = if self.remaining == 0 {
                &mut probe
            } else {
                let want = usize::try_from(self.remaining).unwrap_or(usize::MAX);
                let len = buf.len().min(want);
                &mut buf[..len]
            };
            let input = self.input.fill_buf()?;
            let eof = input.is_empty();
            let (in0, out0) = (self.z.total_in(), self.z.total_out());
            let status = self
                .z
                .decompress(input, out, FlushDecompress::None)
                .map_err(|e| corrupt(&self.path, format!("corrupt blob data: {e}")))?;
            let consumed = (self.z.total_in() - in0) as usize;
            let produced = (self.z.total_out() - out0) as usize;
            self.input.consume(consumed);
            if self.remaining == 0 && produced > 0 {
                return Err(corrupt(
                    &self.path,
                    format!("blob inflates to more than {} bytes", self.size),
                ));
            }
            self.remaining -= produced as u64;
            self.ended = status == Status::StreamEnd;
            if produced > 0 {
                return Ok(produced);
            }
            if !self.ended && consumed == 0 {
                let what = if eof { "truncated" } else { "stalled" };
                return Err(corrupt(&self.path, format!("zlib stream {what}")));
            }
        }
    }
}

fn corrupt(path: &Path, what: impl std::fmt::Display) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("{}: {what}", path.display()),
    )
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

    /// The blob `id` and its size, if a pack holds it whole: a reader that
    /// inflates it as it is read, from the pack file read a piece at a time
    /// (not through the mapping, so that a large blob's pages are not the
    /// daemon's memory), and fails (`InvalidData`, `UnexpectedEof`) unless
    /// it inflates to exactly its size and its zlib checksum holds. Not
    /// hash-checked here. `None` for a delta (libgit2 inflates those), or a
    /// pack gone since it was mapped.
    pub fn stream_blob(&self, id: &[u8]) -> Option<(Box<dyn Read + Send>, u64)> {
        let (p, at) = self.locate(id)?;
        let (kind, size, data) = p.entry(at)?;
        if kind != OBJ_BLOB {
            return None;
        }
        let path = p.idx_path.with_extension("pack");
        let mut f = File::open(&path).ok()?;
        f.seek(SeekFrom::Start(data as u64)).ok()?;
        let rest = (p.pack.len() - data) as u64;
        let input = BufReader::with_capacity(STREAM_PIECE, f.take(rest));
        Some((Box::new(BlobReader::new(input, size, path)), size))
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

    /// A blob stored whole streams out of the pack with its size and bytes,
    /// a large one included; one stored as a delta, a tree and an id no pack
    /// has do not (libgit2 answers those).
    #[test]
    fn whole_blobs_stream_out_of_the_pack_and_deltas_do_not() {
        let text = |changed: Option<usize>| -> Vec<u8> {
            (0..5000)
                .map(|i| {
                    if Some(i) == changed {
                        format!("this line {i} was changed in the second copy\n")
                    } else {
                        format!("line {i}: the quick brown fox {} jumps\n", i * 7919 % 1013)
                    }
                })
                .collect::<String>()
                .into_bytes()
        };
        let files: Vec<(&str, Vec<u8>)> = vec![
            ("big.bin", noise(5 * 1024 * 1024 + 123, 0x9e37_79b9)),
            ("small.txt", b"hello, packed world\n".to_vec()),
            ("empty", Vec::new()),
            // Two texts differing in one line: git stores one as a delta.
            ("a.txt", text(None)),
            ("b.txt", text(Some(2500))),
        ];
        let d = repo(&files, &["-f", "--window=50", "--depth=50"]);
        let packs = Packs::new(&d.path().join(".git/objects"));
        let mut deltas = 0;
        for (name, body) in &files {
            let hex = git(d.path(), &["rev-parse", &format!("HEAD:{name}")]);
            let delta = git(
                d.path(),
                &[
                    "cat-file",
                    "--batch-check=%(objectname) %(deltabase)",
                    "--batch-all-objects",
                ],
            )
            .lines()
            .any(|l| l.starts_with(&hex) && !l.ends_with(&"0".repeat(40)));
            match packs.stream_blob(&id(&hex)) {
                Some((mut r, size)) => {
                    assert!(!delta, "{name} is a delta but was streamed");
                    let mut got = Vec::new();
                    r.read_to_end(&mut got).unwrap();
                    assert_eq!(size, body.len() as u64, "{name}");
                    assert!(got == *body, "{name}: other bytes");
                }
                None => {
                    assert!(delta, "{name} is stored whole but was not streamed");
                    deltas += 1;
                }
            }
        }
        assert_eq!(deltas, 1, "one of a.txt and b.txt is a delta");
        let tree = id(&git(d.path(), &["rev-parse", "HEAD^{tree}"]));
        assert!(packs.stream_blob(&tree).is_none());
        assert!(packs.stream_blob(&[0xab; 20]).is_none());
    }

    /// Damaged bytes in a blob's stream fail the read, never a short or
    /// wrong blob.
    #[test]
    fn a_damaged_stream_is_an_error() {
        let files: Vec<(&str, Vec<u8>)> = vec![
            ("big.bin", noise(3 << 20, 11)),
            (
                "small.txt",
                b"hello, packed world, hello again\n".repeat(40),
            ),
        ];
        let d = repo(&files, &["--window=0"]);
        let objects = d.path().join(".git/objects");
        let packs = Packs::new(&objects);
        let pack = packs.set.read().packs[0].clone();
        let path = pack.idx_path.with_extension("pack");
        let _ =
            std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o644));
        let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        for (name, _) in &files {
            let oid = id(&git(d.path(), &["rev-parse", &format!("HEAD:{name}")]));
            let at = pack.find(oid[..].try_into().unwrap()).unwrap();
            let (_, _, data) = pack.entry(at).unwrap();
            let end = [pack.pack.len() - 20]
                .into_iter()
                .chain(
                    (0..pack.n)
                        .filter_map(|i| pack.offset(i))
                        .filter(|&o| o > at)
                        .map(|o| o as usize),
                )
                .min()
                .unwrap();
            let mid = (data + end) / 2;
            let b = [pack.pack[mid] ^ 0x55, pack.pack[mid + 1] ^ 0xaa];
            std::os::unix::fs::FileExt::write_all_at(&file, &b, mid as u64).unwrap();
            let (mut r, _) = packs.stream_blob(&oid).unwrap();
            let err = r.read_to_end(&mut Vec::new()).expect_err(name);
            assert!(
                matches!(
                    err.kind(),
                    io::ErrorKind::InvalidData | io::ErrorKind::UnexpectedEof
                ),
                "{name}: {err}"
            );
        }
    }

    fn zlib(data: &[u8]) -> Vec<u8> {
        use std::io::Write;
        let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn read_stream(z: &[u8], size: u64) -> io::Result<Vec<u8>> {
        let mut r = BlobReader::new(io::BufReader::with_capacity(7, z), size, "t".into());
        let mut v = Vec::new();
        r.read_to_end(&mut v)?;
        Ok(v)
    }

    #[test]
    fn size_and_checksum_are_enforced() {
        let data = noise(100_000, 7);
        let z = zlib(&data);
        assert_eq!(read_stream(&z, data.len() as u64).unwrap(), data);
        // Declared size larger than the stream: short read is an error, not EOF.
        let e = read_stream(&z, data.len() as u64 + 1).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof, "{e}");
        // Declared size smaller than the stream.
        let e = read_stream(&z, data.len() as u64 - 1).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{e}");
        // Truncated input (missing adler32 trailer, or missing data).
        for cut in [1, 4, 5, 1000] {
            let e = read_stream(&z[..z.len() - cut], data.len() as u64).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidData, "cut {cut}: {e}");
        }
        // Bad adler32.
        let mut bad = z.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        let e = read_stream(&bad, data.len() as u64).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{e}");
        // Empty blob.
        assert!(read_stream(&zlib(b""), 0).unwrap().is_empty());
    }

    #[test]
    fn object_header_parsing() {
        assert_eq!(parse_object_header(&[0x35]), Some((3, 5, 1)));
        assert_eq!(parse_object_header(&[0xb5, 0x01]), Some((3, 0x15, 2)));
        assert_eq!(parse_object_header(&[0xb5]), None);
        assert_eq!(parse_object_header(&[]), None);
        assert_eq!(parse_object_header(&[0xff; 16]), None);
        let mut max = vec![0xbf];
        max.extend_from_slice(&[0xff; 8]);
        max.push(0x0f);
        assert_eq!(parse_object_header(&max), Some((3, u64::MAX, 10)));
        max[9] = 0x1f;
        assert_eq!(parse_object_header(&max), None);
    }

    /// Hand-built pack + idx with the given hash length, idx version and object list
    /// (oid, type byte, content); offsets go through the large-offset table if `large`.
    fn synthetic(dir: &Path, hash_len: usize, v2: bool, large: bool, objs: &[([u8; 20], u8)]) {
        let pack_dir = dir.join("pack");
        std::fs::create_dir_all(&pack_dir).unwrap();
        let mut pack = b"PACK\0\0\0\x02".to_vec();
        pack.extend_from_slice(&(objs.len() as u32).to_be_bytes());
        let mut entries = Vec::new();
        for (oid, kind) in objs {
            let content = format!("content of {:02x}", oid[0]).into_bytes();
            entries.push((*oid, pack.len() as u64));
            let len = content.len();
            pack.push(0x80 | (kind << 4) | (len & 0x0f) as u8);
            pack.push((len >> 4) as u8);
            pack.extend_from_slice(&zlib(&content));
        }
        let checksum: Vec<u8> = (1..=hash_len as u8).collect();
        pack.extend_from_slice(&checksum);
        entries.sort();
        let mut idx = Vec::new();
        if v2 {
            idx.extend_from_slice(&IDX_MAGIC);
            idx.extend_from_slice(&2u32.to_be_bytes());
        }
        for b in 0..256 {
            let count = entries.iter().filter(|e| usize::from(e.0[0]) <= b).count();
            idx.extend_from_slice(&(count as u32).to_be_bytes());
        }
        for (oid, _) in &entries {
            idx.extend_from_slice(oid);
            idx.extend_from_slice(&vec![0; hash_len - 20]);
        }
        idx.extend_from_slice(&vec![0; 4 * entries.len()]); // CRC32s, unchecked
        for (j, (_, off)) in entries.iter().enumerate() {
            let small = if large {
                0x8000_0000 | j as u32
            } else {
                *off as u32
            };
            idx.extend_from_slice(&small.to_be_bytes());
        }
        if large {
            for (_, off) in &entries {
                idx.extend_from_slice(&off.to_be_bytes());
            }
        }
        idx.extend_from_slice(&checksum);
        idx.extend_from_slice(&vec![0xee; hash_len]);
        std::fs::write(pack_dir.join("pack-t.pack"), pack).unwrap();
        std::fs::write(pack_dir.join("pack-t.idx"), idx).unwrap();
    }

    /// Offsets in the index's 64-bit table are read, and an offset past
    /// that table, another index version and a SHA-256 layout are not.
    #[test]
    fn offsets_of_the_large_table_are_read() {
        let objs = [
            ([0x10; 20], 3),
            ([0x20; 20], 3),
            ([0x30; 20], 1),
            ([0x40; 20], 5),
        ];
        let content = |b: u8| format!("content of {b:02x}").into_bytes();
        let streamed = |packs: &Packs, b: u8| {
            packs.stream_blob(&[b; 20]).map(|(mut r, size)| {
                let mut v = Vec::new();
                r.read_to_end(&mut v).unwrap();
                (v, size)
            })
        };
        for large in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            synthetic(dir.path(), 20, true, large, &objs);
            let packs = Packs::new(dir.path());
            for b in [0x10u8, 0x20] {
                assert_eq!(packs.read_blob(&[b; 20]), Some(content(b)), "{large}");
                assert_eq!(
                    streamed(&packs, b),
                    Some((content(b), content(b).len() as u64))
                );
            }
            // A commit, an id not there, and an entry of no valid type.
            for b in [0x30u8, 0x15, 0x40] {
                assert_eq!(packs.read_blob(&[b; 20]), None);
                assert!(streamed(&packs, b).is_none());
            }
        }
        for (hash_len, v2) in [(32, true), (20, false)] {
            let dir = tempfile::tempdir().unwrap();
            synthetic(dir.path(), hash_len, v2, false, &objs);
            assert_eq!(Packs::new(dir.path()).read_blob(&[0x10; 20]), None);
        }
        let dir = tempfile::tempdir().unwrap();
        synthetic(dir.path(), 20, true, true, &objs[..1]);
        let idx_path = dir.path().join("pack/pack-t.idx");
        let mut idx = std::fs::read(&idx_path).unwrap();
        let at = NAMES_AT + 24;
        idx[at..at + 4].copy_from_slice(&0x8000_0001u32.to_be_bytes());
        std::fs::write(&idx_path, idx).unwrap();
        let packs = Packs::new(dir.path());
        assert_eq!(packs.read_blob(&[0x10; 20]), None);
        assert!(streamed(&packs, 0x10).is_none());
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
