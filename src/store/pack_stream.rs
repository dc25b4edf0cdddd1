//! Streaming reads of whole (non-delta) blobs straight out of Git packfiles.
//!
//! libgit2 can stream only loose objects; for packed objects it inflates the whole object in
//! memory. This module finds a blob through the pack `.idx` (version 2, SHA-1) using positioned
//! reads only, and returns a reader that inflates the pack entry incrementally, so memory stays
//! bounded (one 64 KiB input buffer plus the zlib window) whatever the blob size.

use flate2::{Decompress, FlushDecompress, Status};
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Take};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// Magic of `.idx` files from version 2 on (`\377tOc`).
pub(crate) const IDX_MAGIC: [u8; 4] = [0xff, b't', b'O', b'c'];
/// End of the fanout table: magic + version + 256 big-endian u32.
const FANOUT_END: u64 = 8 + 256 * 4;
/// SHA-1 length; names, the pack checksum and the idx checksum all have this size.
const SHA1_LEN: u64 = 20;
const SHA256_LEN: u64 = 32;
/// Pack header: "PACK", version, object count.
const PACK_HEADER_LEN: u64 = 12;
/// Longest object header we accept (type + size varint); 16 bytes already allow > 2^64.
const MAX_OBJ_HEADER: u64 = 16;
const INPUT_BUF: usize = 64 * 1024;
const OBJ_BLOB: u8 = 3;

/// If `oid` (20 raw bytes of SHA-1) is stored in some pack under `objects_dir/pack/` as a
/// whole (non-delta) blob entry, returns a reader that yields its inflated content
/// (exactly the blob bytes) and the blob size. Returns Ok(None) if it is not in any pack,
/// or is stored as a delta (OFS_DELTA / REF_DELTA), or the repository uses SHA-256 / an
/// index version other than 2. Errors only for I/O errors or a corrupt pack/idx
/// (io::ErrorKind::InvalidData with a clear message).
pub fn open_packed_blob(
    objects_dir: &Path,
    oid: &[u8; 20],
) -> io::Result<Option<(Box<dyn Read + Send>, u64)>> {
    for idx_path in list_indexes(&objects_dir.join("pack"))? {
        let pack_path = idx_path.with_extension("pack");
        // A pack removed by a concurrent `git gc`/`repack` is simply skipped.
        let pack = match Pack::open(&idx_path, &pack_path) {
            Ok(Some(pack)) => pack,
            Ok(None) => continue,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        // The same object may be a delta in one pack and whole in another: keep looking.
        if let Some(found) = pack.open_blob(oid)? {
            return Ok(Some(found));
        }
    }
    Ok(None)
}

fn corrupt(path: &Path, what: impl std::fmt::Display) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("{}: {what}", path.display()),
    )
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// `*.idx` files in `pack_dir` that have a sibling `*.pack`, sorted by name.
fn list_indexes(pack_dir: &Path) -> io::Result<Vec<PathBuf>> {
    let entries = match std::fs::read_dir(pack_dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for entry in entries {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "idx") && path.with_extension("pack").is_file() {
            out.push(path);
        }
    }
    out.sort();
    Ok(out)
}

struct Pack {
    idx: File,
    idx_path: PathBuf,
    idx_len: u64,
    pack: File,
    pack_path: PathBuf,
    pack_len: u64,
    fanout: Vec<u32>,
}

impl Pack {
    /// Opens and sanity-checks an idx/pack pair. Ok(None) for idx versions other than 2 and
    /// for SHA-256 packs.
    fn open(idx_path: &Path, pack_path: &Path) -> io::Result<Option<Pack>> {
        let idx = File::open(idx_path)?;
        let pack = File::open(pack_path)?;
        let idx_len = idx.metadata()?.len();
        let pack_len = pack.metadata()?.len();
        if idx_len < FANOUT_END + 2 * SHA1_LEN {
            return Err(corrupt(idx_path, "index file too short"));
        }
        let mut head = [0u8; 8];
        idx.read_exact_at(&mut head, 0)?;
        if head[..4] != IDX_MAGIC || be32(&head[4..]) != 2 {
            return Ok(None); // version 1 (no magic) or an unknown version
        }
        if pack_len < PACK_HEADER_LEN + SHA1_LEN {
            return Err(corrupt(pack_path, "pack file too short"));
        }

        // The idx trailer is <pack checksum><idx checksum>; its pack checksum must equal the
        // pack's own trailer. This pairs the files and tells SHA-1 from SHA-256 cheaply.
        let tail_matches = |hash_len: u64| -> io::Result<bool> {
            if idx_len < FANOUT_END + 2 * hash_len || pack_len < PACK_HEADER_LEN + hash_len {
                return Ok(false);
            }
            let len = hash_len as usize;
            let mut a = [0u8; SHA256_LEN as usize];
            let mut b = [0u8; SHA256_LEN as usize];
            idx.read_exact_at(&mut a[..len], idx_len - 2 * hash_len)?;
            pack.read_exact_at(&mut b[..len], pack_len - hash_len)?;
            Ok(a[..len] == b[..len])
        };
        if !tail_matches(SHA1_LEN)? {
            if tail_matches(SHA256_LEN)? {
                return Ok(None);
            }
            return Err(corrupt(
                idx_path,
                "pack checksum in index does not match pack file",
            ));
        }

        let mut raw = vec![0u8; 256 * 4];
        idx.read_exact_at(&mut raw, 8)?;
        let fanout: Vec<u32> = raw.chunks_exact(4).map(be32).collect();
        if fanout.windows(2).any(|w| w[0] > w[1]) {
            return Err(corrupt(idx_path, "fanout table is not monotonic"));
        }
        let n = u64::from(fanout[255]);
        // names + CRC32s + 4-byte offsets + trailer, then 0..=n 8-byte large offsets.
        let fixed = FANOUT_END + n * (SHA1_LEN + 8) + 2 * SHA1_LEN;
        let extra = idx_len.checked_sub(fixed);
        if !extra.is_some_and(|x| x % 8 == 0 && x / 8 <= n) {
            return Err(corrupt(
                idx_path,
                format!("size {idx_len} inconsistent with {n} objects"),
            ));
        }

        let mut ph = [0u8; PACK_HEADER_LEN as usize];
        pack.read_exact_at(&mut ph, 0)?;
        let version = be32(&ph[4..8]);
        if &ph[..4] != b"PACK" || !(version == 2 || version == 3) {
            return Err(corrupt(pack_path, "bad pack header"));
        }
        if u64::from(be32(&ph[8..])) != n {
            return Err(corrupt(pack_path, "object count differs from its index"));
        }
        Ok(Some(Pack {
            idx,
            idx_path: idx_path.to_path_buf(),
            idx_len,
            pack,
            pack_path: pack_path.to_path_buf(),
            pack_len,
            fanout,
        }))
    }

    fn objects(&self) -> u64 {
        u64::from(self.fanout[255])
    }

    /// Position of `oid` in the sorted name table.
    fn find(&self, oid: &[u8; 20]) -> io::Result<Option<u64>> {
        let first = usize::from(oid[0]);
        let mut lo = if first == 0 {
            0
        } else {
            u64::from(self.fanout[first - 1])
        };
        let mut hi = u64::from(self.fanout[first]);
        let mut name = [0u8; SHA1_LEN as usize];
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            self.idx
                .read_exact_at(&mut name, FANOUT_END + mid * SHA1_LEN)?;
            match name.cmp(oid) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => return Ok(Some(mid)),
            }
        }
        Ok(None)
    }

    /// Pack offset of the object at name position `pos`.
    fn offset(&self, pos: u64) -> io::Result<u64> {
        let n = self.objects();
        let mut b4 = [0u8; 4];
        self.idx
            .read_exact_at(&mut b4, FANOUT_END + n * (SHA1_LEN + 4) + pos * 4)?;
        let small = be32(&b4);
        let offset = if small & 0x8000_0000 == 0 {
            u64::from(small)
        } else {
            let large_start = FANOUT_END + n * (SHA1_LEN + 8);
            let large_count = (self.idx_len - 2 * SHA1_LEN - large_start) / 8;
            let j = u64::from(small & 0x7fff_ffff);
            if j >= large_count {
                return Err(corrupt(&self.idx_path, "large offset index out of range"));
            }
            let mut b8 = [0u8; 8];
            self.idx.read_exact_at(&mut b8, large_start + j * 8)?;
            u64::from_be_bytes(b8)
        };
        if offset < PACK_HEADER_LEN || offset >= self.pack_len - SHA1_LEN {
            return Err(corrupt(
                &self.idx_path,
                format!("object offset {offset} out of range"),
            ));
        }
        Ok(offset)
    }

    fn open_blob(self, oid: &[u8; 20]) -> io::Result<Option<(Box<dyn Read + Send>, u64)>> {
        let Some(pos) = self.find(oid)? else {
            return Ok(None);
        };
        let offset = self.offset(pos)?;
        let data_end = self.pack_len - SHA1_LEN;
        let mut hdr = [0u8; MAX_OBJ_HEADER as usize];
        let avail = (data_end - offset).min(MAX_OBJ_HEADER) as usize;
        self.pack.read_exact_at(&mut hdr[..avail], offset)?;
        let (kind, size, hdr_len) = parse_object_header(&hdr[..avail])
            .ok_or_else(|| corrupt(&self.pack_path, format!("bad object header at {offset}")))?;
        match kind {
            OBJ_BLOB => {}
            1 | 2 | 4 | 6 | 7 => return Ok(None), // commit/tree/tag, or OFS/REF delta
            _ => {
                return Err(corrupt(
                    &self.pack_path,
                    format!("bad object type at {offset}"),
                ));
            }
        }
        let data_start = offset + hdr_len as u64;
        let mut file = self.pack;
        file.seek(SeekFrom::Start(data_start))?;
        let input = BufReader::with_capacity(INPUT_BUF, file.take(data_end - data_start));
        let reader: BlobReader<BufReader<Take<File>>> =
            BlobReader::new(input, size, self.pack_path);
        Ok(Some((Box::new(reader), size)))
    }
}

/// Parses a pack object header: (type, inflated size, header length).
pub(crate) fn parse_object_header(buf: &[u8]) -> Option<(u8, u64, usize)> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::process::Command;

    fn git(dir: &Path, args: &[&str]) -> Vec<u8> {
        let out = Command::new("git")
            .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
            .args([
                "-c",
                "commit.gpgsign=false",
                "-c",
                "init.defaultBranch=main",
            ])
            .args(args)
            .current_dir(dir)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .output()
            .expect("run git");
        assert!(
            out.status.success(),
            "git {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }

    fn hex_to_oid(hex: &str) -> [u8; 20] {
        let mut oid = [0u8; 20];
        for (i, b) in oid.iter_mut().enumerate() {
            *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).expect("hex");
        }
        oid
    }

    fn pseudo_random(len: usize, mut seed: u64) -> Vec<u8> {
        let mut v = Vec::with_capacity(len + 8);
        while v.len() < len {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            v.extend_from_slice(&seed.to_le_bytes());
        }
        v.truncate(len);
        v
    }

    fn text(lines: usize, changed: Option<usize>) -> Vec<u8> {
        let mut v = Vec::new();
        for i in 0..lines {
            if Some(i) == changed {
                writeln!(v, "this line {i} was changed in the second copy").unwrap();
            } else {
                writeln!(v, "line {i}: the quick brown fox {} jumps", i * 7919 % 1013).unwrap();
            }
        }
        v
    }

    struct Repo {
        _dir: tempfile::TempDir,
        work: PathBuf,
        objects: PathBuf,
        /// file name -> (hex oid, content)
        files: Vec<(&'static str, String, Vec<u8>)>,
    }

    /// One row of `git verify-pack -v`: (hex oid, type, size, size in pack, offset, is delta).
    fn verify_pack(repo: &Repo) -> Vec<(String, String, u64, u64, u64, bool)> {
        let mut rows = Vec::new();
        for idx in list_indexes(&repo.objects.join("pack")).unwrap() {
            let out = git(&repo.work, &["verify-pack", "-v", idx.to_str().unwrap()]);
            for line in String::from_utf8(out).unwrap().lines() {
                let f: Vec<&str> = line.split_whitespace().collect();
                if f.len() >= 5 && f[0].len() == 40 {
                    let num = |s: &str| s.parse::<u64>().unwrap();
                    rows.push((
                        f[0].to_string(),
                        f[1].to_string(),
                        num(f[2]),
                        num(f[3]),
                        num(f[4]),
                        f.len() >= 7,
                    ));
                }
            }
        }
        rows
    }

    fn make_repo() -> Repo {
        let dir = tempfile::tempdir().unwrap();
        let work = dir.path().join("w");
        std::fs::create_dir(&work).unwrap();
        git(&work, &["init", "-q"]);
        let files: Vec<(&'static str, Vec<u8>)> = vec![
            (
                "big.bin",
                pseudo_random(5 * 1024 * 1024 + 123, 0x9e37_79b9_7f4a_7c15),
            ),
            ("small.txt", b"hello, packed world\n".to_vec()),
            ("empty", Vec::new()),
            // Two ~200 KiB texts differing in one line: git stores one as a delta.
            ("a.txt", text(5000, None)),
            ("b.txt", text(5000, Some(2500))),
        ];
        let mut with_oids = Vec::new();
        for (name, content) in files {
            std::fs::write(work.join(name), &content).unwrap();
            let oid = git(&work, &["hash-object", "-w", name]);
            let oid = String::from_utf8(oid).unwrap().trim().to_string();
            with_oids.push((name, oid, content));
        }
        git(&work, &["add", "-A"]);
        git(&work, &["commit", "-q", "-m", "c"]);
        git(&work, &["repack", "-adfq", "--window=50", "--depth=50"]);
        git(&work, &["prune-packed"]);
        let objects = work.join(".git/objects");
        Repo {
            _dir: dir,
            work,
            objects,
            files: with_oids,
        }
    }

    fn read_all(objects: &Path, hex: &str) -> io::Result<Option<(Vec<u8>, u64)>> {
        match open_packed_blob(objects, &hex_to_oid(hex))? {
            None => Ok(None),
            Some((mut r, size)) => {
                let mut v = Vec::new();
                r.read_to_end(&mut v)?;
                Ok(Some((v, size)))
            }
        }
    }

    #[test]
    fn streams_whole_blobs_and_skips_deltas_and_non_blobs() {
        let repo = make_repo();
        let rows = verify_pack(&repo);
        let is_delta = |hex: &str| rows.iter().any(|r| r.0 == hex && r.5);
        for (name, hex, content) in &repo.files {
            assert!(rows.iter().any(|r| &r.0 == hex), "{name} not packed");
            let expected = git(&repo.work, &["cat-file", "blob", hex]);
            assert_eq!(&expected, content);
            let got = read_all(&repo.objects, hex).unwrap();
            if is_delta(hex) {
                assert!(got.is_none(), "{name} is a delta but was streamed");
            } else {
                let (bytes, size) = got.unwrap_or_else(|| panic!("{name} not found"));
                assert_eq!(size, expected.len() as u64, "{name} size");
                assert!(bytes == expected, "{name} content differs");
            }
        }
        let deltas: Vec<_> = repo.files.iter().filter(|f| is_delta(&f.1)).collect();
        assert_eq!(
            deltas.len(),
            1,
            "expected exactly one of a.txt/b.txt as a delta"
        );
        assert!(deltas[0].0 == "a.txt" || deltas[0].0 == "b.txt");

        // Missing object, and packed non-blob objects (commit, tree).
        assert!(
            open_packed_blob(&repo.objects, &[0xab; 20])
                .unwrap()
                .is_none()
        );
        for rev in ["HEAD", "HEAD^{tree}"] {
            let hex = String::from_utf8(git(&repo.work, &["rev-parse", rev])).unwrap();
            assert!(
                read_all(&repo.objects, hex.trim()).unwrap().is_none(),
                "{rev}"
            );
        }
        // No pack directory at all.
        let empty = tempfile::tempdir().unwrap();
        assert!(open_packed_blob(empty.path(), &[0; 20]).unwrap().is_none());
    }

    #[test]
    fn corrupted_blob_data_is_an_error() {
        let repo = make_repo();
        let rows = verify_pack(&repo);
        let pack = list_indexes(&repo.objects.join("pack")).unwrap()[0].with_extension("pack");
        let mut perms = std::fs::metadata(&pack).unwrap().permissions();
        #[allow(clippy::permissions_set_readonly_false)]
        perms.set_readonly(false);
        std::fs::set_permissions(&pack, perms).unwrap();
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&pack)
            .unwrap();
        for name in ["big.bin", "small.txt"] {
            let hex = &repo.files.iter().find(|f| f.0 == name).unwrap().1;
            let row = rows.iter().find(|r| &r.0 == hex).unwrap();
            let at = row.4 + row.3 / 2 + 1;
            let mut b = [0u8; 2];
            file.read_exact_at(&mut b, at).unwrap();
            file.write_all_at(&[b[0] ^ 0x55, b[1] ^ 0xaa], at).unwrap();
            let (mut r, _) = open_packed_blob(&repo.objects, &hex_to_oid(hex))
                .unwrap()
                .unwrap();
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

    #[test]
    fn corrupt_index_never_panics() {
        let repo = make_repo();
        let idx = list_indexes(&repo.objects.join("pack")).unwrap()[0].clone();
        let orig = std::fs::read(&idx).unwrap();
        let hex = &repo.files.iter().find(|f| f.0 == "small.txt").unwrap().1;
        let mut perms = std::fs::metadata(&idx).unwrap().permissions();
        #[allow(clippy::permissions_set_readonly_false)]
        perms.set_readonly(false);
        std::fs::set_permissions(&idx, perms).unwrap();
        let mut seed = 12345u64;
        for round in 0..300 {
            let mut bad = orig.clone();
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
            let r = (seed >> 33) as usize;
            match round % 3 {
                0 => bad.truncate(r % orig.len()),
                // Anywhere, or only in names / CRCs / offsets / trailer (past the fanout).
                1 => bad[r % orig.len()] = (seed >> 13) as u8,
                _ => {
                    let start = FANOUT_END as usize;
                    bad[start + r % (orig.len() - start)] ^= 1 << (seed % 8);
                }
            }
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            std::fs::write(&idx, &bad).unwrap();
            // Any outcome but a panic is fine; errors must carry a message.
            if let Err(e) = read_all(&repo.objects, hex) {
                assert!(!e.to_string().is_empty());
            }
        }
        // Truncated idx is reported as corrupt.
        std::fs::write(&idx, &orig[..orig.len() - 7]).unwrap();
        let err = read_all(&repo.objects, hex).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{err}");
        // An idx without its pack is ignored.
        std::fs::write(&idx, &orig).unwrap();
        std::fs::remove_file(idx.with_extension("pack")).unwrap();
        assert!(read_all(&repo.objects, hex).unwrap().is_none());
    }

    fn zlib(data: &[u8]) -> Vec<u8> {
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
        let data = pseudo_random(100_000, 7);
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

    #[test]
    fn synthetic_packs() {
        let objs = [
            ([0x10; 20], 3),
            ([0x20; 20], 3),
            ([0x30; 20], 1),
            ([0x40; 20], 5),
        ];
        let content = |b: u8| format!("content of {b:02x}").into_bytes();
        for large in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            synthetic(dir.path(), 20, true, large, &objs);
            for b in [0x10u8, 0x20] {
                let (v, size) = read_all(dir.path(), &hex([b; 20])).unwrap().unwrap();
                assert_eq!((v, size), (content(b), content(b).len() as u64));
            }
            assert!(read_all(dir.path(), &hex([0x30; 20])).unwrap().is_none()); // commit
            assert!(read_all(dir.path(), &hex([0x15; 20])).unwrap().is_none()); // missing
            let e = read_all(dir.path(), &hex([0x40; 20])).unwrap_err(); // invalid type 5
            assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{e}");
        }
        // SHA-256 layout and idx version 1 are not supported: Ok(None), not an error.
        for (hash_len, v2) in [(32, true), (20, false)] {
            let dir = tempfile::tempdir().unwrap();
            synthetic(dir.path(), hash_len, v2, false, &objs);
            assert!(read_all(dir.path(), &hex([0x10; 20])).unwrap().is_none());
        }
        // Large-offset index pointing past the large-offset table.
        let dir = tempfile::tempdir().unwrap();
        synthetic(dir.path(), 20, true, true, &objs[..1]);
        let idx_path = dir.path().join("pack/pack-t.idx");
        let mut idx = std::fs::read(&idx_path).unwrap();
        let at = FANOUT_END as usize + 24;
        idx[at..at + 4].copy_from_slice(&0x8000_0001u32.to_be_bytes());
        std::fs::write(&idx_path, idx).unwrap();
        let e = read_all(dir.path(), &hex([0x10; 20])).unwrap_err();
        assert!(e.to_string().contains("large offset"), "{e}");
    }

    fn hex(oid: [u8; 20]) -> String {
        oid.iter().map(|b| format!("{b:02x}")).collect()
    }
}
